"""The storage seam: schema versions, the SQL tracer, bound parameters, error translation."""

import duckdb
import pytest

import athena_orch as ao
from athena_orch import exceptions
from athena_orch.stores import Database
from athena_orch.stores.sql import migrations, queries


def test_a_new_file_records_every_migration(tmp_path):
    path = tmp_path / "v.duckdb"
    with ao.connect(path) as orch:
        assert orch.db.schema_version == max(v for v, _, _ in migrations())
    with ao.connect(path) as orch:  # reopening applies nothing twice
        assert orch.db.schema_version == max(v for v, _, _ in migrations())


def test_a_file_from_a_newer_release_is_refused_untouched(tmp_path):
    path = tmp_path / "future.duckdb"
    ao.connect(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_migrations VALUES (999, 'future', now())")
    con.close()
    with pytest.raises(exceptions.SchemaVersionError, match="999"):
        ao.connect(path)
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchone()[0] == 999
    con.close()


def test_a_file_that_is_not_ours_is_a_storage_error(tmp_path):
    path = tmp_path / "other.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE unrelated (x INT)")
    con.close()
    with pytest.raises(exceptions.StorageError, match="schema"):
        ao.connect(path, read_only=True)


def test_the_tracer_sees_every_statement_with_bound_values():
    seen = []
    with ao.connect(tracer=lambda sql, params: seen.append((sql, params))) as orch:
        orch.queue.create_task("x'); DROP TABLE episodic_events; --", "t")
    inserts = [(sql, p) for sql, p in seen if "INSERT INTO episodic_events" in sql]
    assert inserts and all("DROP TABLE" not in sql for sql, _ in seen)


def test_every_named_query_binds_named_dollar_parameters():
    for query in queries().values():
        assert "?" not in query.text, query.name
    assert queries()["tasks_query"].params == (
        "statuses", "agent_id", "task_type", "priority", "created_after", "limit", "offset")


def test_database_errors_come_back_translated_and_chained():
    db = Database(":memory:")
    with pytest.raises(exceptions.StorageError) as caught:
        db.fetch_rows("task_states", task_ids=42)  # not a list: DuckDB refuses the bind
    assert isinstance(caught.value.__cause__, duckdb.Error)
    db.close()


def test_the_stores_are_typed_against_the_seam_not_a_backend():
    """Each store runs on either backend, so its ``db`` is the seam, SQLDatabase."""
    import typing

    from athena_orch import stores

    classes = [stores.EpisodicStore, stores.GraphStore, stores.MetaStore,
               stores.SubscriptionStore]
    typed = {cls.__name__: typing.get_type_hints(cls.__init__)["db"] for cls in classes}
    on_seam = {name for name, hint in typed.items() if hint is stores.SQLDatabase}
    assert set(typed) == on_seam
