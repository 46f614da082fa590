"""The DuckDB schema (stores/migrations/) and the PostgreSQL one (stores/postgres/) are
written twice, once per dialect; these tests keep them the same schema.

A fresh database of each dialect is migrated through ``open_database``, then its own
catalog is read with its own client (duckdb_columns(), information_schema, pg_indexes)
and brought to one vocabulary: tables, columns, types up to :data:`TYPES`, nullability,
defaults, primary keys and unique constraints, sequences, the indexes listed below, and
the migration versions recorded. Any difference fails, naming what differs.
"""

from __future__ import annotations

import re

import duckdb
import pytest

from athena_orch.stores import open_database
from athena_orch.stores.sql import migrations

# DuckDB's name of a column type -> PostgreSQL's (information_schema.columns.data_type).
# A type missing here (HUGEINT, UBIGINT, MAP, lists...) has no agreed counterpart: using
# it in a migration fails the test until the mapping says what it becomes.
TYPES = {
    "BIGINT": "bigint",
    "INTEGER": "integer",
    "SMALLINT": "smallint",
    "BOOLEAN": "boolean",
    "DOUBLE": "double precision",
    "VARCHAR": "text",
    "TIMESTAMP WITH TIME ZONE": "timestamp with time zone",
}

# Secondary indexes (not those behind a PRIMARY KEY or UNIQUE): name -> (table, columns,
# partial). Both dialects have SHARED; each has its own on top, for the reasons given.
SHARED_INDEXES = {
    "idx_context_task": ("episodic_events", ("context_task",), False),  # a task's history
    "idx_depends_on": ("task_dependencies", ("depends_on",), False),  # releasing dependents
}
POSTGRES_ONLY_INDEXES = {
    # DuckDB dropped these in migration 002 (an UPDATE of an indexed column rewrites every
    # index entry of the row there); PostgreSQL updates them cheaply and plans with them.
    "idx_task_status": ("episodic_events", ("task_status",), False),
    "idx_assigned_to": ("episodic_events", ("assigned_to",), False),
    "idx_task_type": ("episodic_events", ("task_type",), False),
    # The claim's queue order over pending rows only; DuckDB has no partial indexes.
    "idx_pending_order": ("episodic_events", ("priority_rank", "created_at", "id"), True),
}
DUCKDB_ONLY_INDEXES: dict[str, tuple[str, tuple[str, ...], bool]] = {}


def _default(text: str | None) -> str | None:
    """A column default without PostgreSQL's casts: ``'x'::text`` and ``'x'`` agree."""
    return None if text is None else re.sub(r"::[a-z ]+", "", text)


def duckdb_catalog(path: str) -> dict:
    con = duckdb.connect(path, read_only=True)
    try:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM duckdb_tables() "
            "WHERE database_name = current_database() AND NOT internal").fetchall()}
        columns = {}
        for table, column, data_type, nullable, default in con.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default "
                "FROM duckdb_columns() WHERE database_name = current_database() "
                "AND NOT internal").fetchall():
            columns[table, column] = (TYPES.get(data_type, f"{data_type} (no PostgreSQL "
                                                           "type in TYPES)"),
                                      nullable, _default(default))
        keys = {(table, kind, tuple(cols)) for table, kind, cols in con.execute(
            "SELECT table_name, constraint_type, constraint_column_names "
            "FROM duckdb_constraints() WHERE database_name = current_database() "
            "AND constraint_type IN ('PRIMARY KEY', 'UNIQUE')").fetchall()}
        indexes = {name: (table, tuple(c.strip() for c in expressions.strip("[]").split(",")),
                          " WHERE " in sql.upper())
                   for name, table, expressions, sql in con.execute(
                       "SELECT index_name, table_name, expressions, sql FROM duckdb_indexes() "
                       "WHERE database_name = current_database()").fetchall()}
        sequences = {r[0] for r in con.execute(
            "SELECT sequence_name FROM duckdb_sequences() "
            "WHERE database_name = current_database()").fetchall()}
        applied = [r[0] for r in con.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]
    finally:
        con.close()
    return {"tables": tables, "columns": columns, "keys": keys, "indexes": indexes,
            "sequences": sequences, "migrations": applied}


def postgres_catalog(url: str) -> dict:
    import psycopg

    with psycopg.connect(url, autocommit=True) as con:
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'").fetchall()}
        columns = {(table, column): (data_type, nullable == "YES", _default(default))
                   for table, column, data_type, nullable, default in con.execute(
                       "SELECT table_name, column_name, data_type, is_nullable, column_default "
                       "FROM information_schema.columns "
                       "WHERE table_schema = current_schema()").fetchall()}
        keys = {(table, kind, tuple(cols)) for table, kind, cols in con.execute(
            "SELECT tc.table_name, tc.constraint_type, "
            "       array_agg(k.column_name::text ORDER BY k.ordinal_position) "
            "FROM information_schema.table_constraints tc "
            "JOIN information_schema.key_column_usage k "
            "  ON k.constraint_name = tc.constraint_name "
            " AND k.constraint_schema = tc.constraint_schema "
            "WHERE tc.table_schema = current_schema() "
            "  AND tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE') "
            "GROUP BY tc.table_name, tc.constraint_type, tc.constraint_name").fetchall()}
        indexes = {}
        for name, table, definition in con.execute(
                "SELECT i.indexname, i.tablename, i.indexdef FROM pg_indexes i "
                "WHERE i.schemaname = current_schema() AND NOT EXISTS ("
                "  SELECT 1 FROM pg_constraint c WHERE c.conindid = "
                "  (quote_ident(i.schemaname) || '.' || quote_ident(i.indexname))::regclass)"
                ).fetchall():
            cols = re.search(r"USING \w+ \(([^)]*)\)", definition).group(1)
            indexes[name] = (table, tuple(c.strip() for c in cols.split(",")),
                             " WHERE " in definition)
        sequences = {r[0] for r in con.execute(
            "SELECT sequence_name FROM information_schema.sequences "
            "WHERE sequence_schema = current_schema()").fetchall()}
        applied = [r[0] for r in con.execute(
            "SELECT version FROM schema_migrations ORDER BY version").fetchall()]
    return {"tables": tables, "columns": columns, "keys": keys, "indexes": indexes,
            "sequences": sequences, "migrations": applied}


def differences(duck: dict, pg: dict) -> list[str]:
    """What the two catalogs disagree on, one line each (empty when they agree)."""
    found = []
    for what in ("tables", "sequences", "keys"):
        for item in sorted(duck[what] - pg[what], key=str):
            found.append(f"{what}: {item} only in DuckDB")
        for item in sorted(pg[what] - duck[what], key=str):
            found.append(f"{what}: {item} only in PostgreSQL")
    for column in sorted(duck["columns"].keys() | pg["columns"].keys()):
        ours, theirs = duck["columns"].get(column), pg["columns"].get(column)
        if ours != theirs:
            found.append(f"column {'.'.join(column)}: DuckDB (type, nullable, default) "
                         f"{ours}, PostgreSQL {theirs}")
    expected = {"DuckDB": (duck["indexes"], SHARED_INDEXES | DUCKDB_ONLY_INDEXES),
                "PostgreSQL": (pg["indexes"], SHARED_INDEXES | POSTGRES_ONLY_INDEXES)}
    for dialect, (indexes, wanted) in expected.items():
        if indexes != wanted:
            found.append(f"indexes of {dialect}: {indexes}, expected {wanted}")
    if duck["migrations"] != pg["migrations"]:
        found.append(f"migrations applied: DuckDB {duck['migrations']}, "
                     f"PostgreSQL {pg['migrations']}")
    return found


def migrated_duckdb(tmp_path) -> str:
    path = str(tmp_path / "fresh.duckdb")
    open_database(path).close()
    return path


@pytest.fixture
def postgres_url(database_url):
    """A fresh, migrated PostgreSQL schema (skipped, saying why, without a server)."""
    url = database_url()
    open_database(url).close()
    return url


postgres_half = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def test_both_dialects_carry_the_same_migrations():
    duck = [(version, name) for version, name, _ in migrations("duckdb")]
    pg = [(version, name) for version, name, _ in migrations("postgresql")]
    assert duck == pg
    assert [version for version, _ in duck] == list(range(1, len(duck) + 1))


def test_the_duckdb_catalog_is_read_whole(tmp_path):
    """The DuckDB half on its own, so a machine without PostgreSQL still checks that the
    reading sees every table, the listed indexes and every migration."""
    duck = duckdb_catalog(migrated_duckdb(tmp_path))
    assert duck["tables"] >= {"episodic_events", "task_dependencies", "event_subscriptions",
                              "graph_entities", "graph_relations", "agent_metrics",
                              "agent_skill_metrics", "routing_decisions", "store_versions",
                              "schema_migrations"}
    assert duck["indexes"] == SHARED_INDEXES | DUCKDB_ONLY_INDEXES
    assert duck["migrations"] == [version for version, _, _ in migrations("duckdb")]
    assert ("episodic_events", "PRIMARY KEY", ("id",)) in duck["keys"]
    assert duck["columns"]["episodic_events", "confidence"] == ("double precision", True, None)


@postgres_half
def test_the_two_schemas_agree(tmp_path, postgres_url):
    assert differences(duckdb_catalog(migrated_duckdb(tmp_path)),
                       postgres_catalog(postgres_url)) == []


@postgres_half
def test_a_column_added_to_one_dialect_is_a_difference(tmp_path, postgres_url):
    """The comparison above can fail: a column, an index or a type changed on one side
    only is reported, by name."""
    import psycopg

    duck = duckdb_catalog(migrated_duckdb(tmp_path))
    with psycopg.connect(postgres_url, autocommit=True) as con:
        con.execute("ALTER TABLE episodic_events ADD COLUMN only_here TEXT")
        con.execute("CREATE INDEX idx_only_here ON graph_entities(kind)")
        con.execute("ALTER TABLE graph_relations ALTER COLUMN confidence TYPE real")
    found = "\n".join(differences(duck, postgres_catalog(postgres_url)))
    assert "episodic_events.only_here" in found
    assert "idx_only_here" in found
    assert "graph_relations.confidence" in found and "real" in found


@postgres_half
def test_both_fresh_databases_hold_the_same_rows(database_url):
    """The migrations seed the same rows (the change counters) in both dialects."""
    duck, pg = open_database(), open_database(database_url())
    try:
        ours, theirs = duck.table_contents(), pg.table_contents()
    finally:
        duck.close()
        pg.close()
    assert ours == theirs
    assert ours["store_versions"]


@postgres_half
def test_a_postgres_database_migrated_before_version_2_existed_still_opens(database_url):
    """PostgreSQL databases migrated before 002 existed recorded 1, 3, 4, 5: they open,
    keep their rows, and record 2 (which changes nothing) on their next read-write open."""
    import psycopg

    url = database_url()
    with psycopg.connect(url, autocommit=True) as con, con.transaction():
        con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
        for version, name, script in migrations("postgresql"):
            if version in (1, 3, 4, 5):
                con.execute(script)
                con.execute("INSERT INTO schema_migrations VALUES (%s, %s, now())",
                            (version, name))
        con.execute("INSERT INTO graph_entities VALUES ('agent:old', 'agent', 'old', '{}', "
                    "now(), now())")
    reader = open_database(url, read_only=True)  # a reader does not migrate, and accepts it
    try:
        assert reader.schema_version == 5
        assert [r[0] for r in reader.fetch_rows("migrations_applied")] == [1, 3, 4, 5]
    finally:
        reader.close()
    db = open_database(url)
    try:
        assert [r[0] for r in db.fetch_rows("migrations_applied")] == [
            version for version, _, _ in migrations("postgresql")]
        assert [r[0] for r in db.table_contents()["graph_entities"]] == ["agent:old"]
    finally:
        db.close()

