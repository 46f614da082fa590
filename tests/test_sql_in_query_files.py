"""Every statement athena-orch runs is a named query of stores/queries.sql or
stores/postgres/queries.sql (or a numbered migration): so the tracer sees it under its
name, errors are translated at the seam, and a reviewer reads all data access in two
files. This scans the string literals of every module for SQL statements."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import athena_orch
from athena_orch.exceptions import StorageError, ValidationError
from athena_orch.stores import open_database
from athena_orch.stores.sql import queries

PACKAGE = Path(athena_orch.__file__).parent

# Shapes of a SQL statement (not of prose that names a keyword, such as "during COMMIT",
# nor of labels: transaction control and LISTEN count in capitals only).
STATEMENT = re.compile(
    r"""\bSELECT\b[\s\S]*\bFROM\b | \bSELECT\s+(\d|\*|NULL|current_\w+|pg_\w+)
      | \bINSERT\s+INTO\b | \bUPDATE\s+\w+\s+SET\b | \bDELETE\s+FROM\b
      | \b(CREATE|DROP|ALTER)\s+(TABLE|INDEX|SEQUENCE|SCHEMA|VIEW)\b
      | \bCOPY\s+\w+\s*\( | (?-i:\b(LISTEN|NOTIFY|UNLISTEN)\s+\w+) | \bpg_\w+\s*\(
      | \bSET\s+\w+\s*(=|\bTO\b) | (?-i:^\s*(BEGIN|COMMIT|ROLLBACK|START\s+TRANSACTION)\b)""",
    re.IGNORECASE | re.VERBOSE)

# (module, the literal's first 40 characters): strings that look like SQL and are not run.
ALLOWED: set[tuple[str, str]] = set()


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring nodes: prose about SQL is allowed."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def sql_literals(source: str) -> list[str]:
    """The string literals (f-string parts included) of ``source`` that hold a statement."""
    tree = ast.parse(source)
    skip = _docstrings(tree)
    return [node.value for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in skip and STATEMENT.search(node.value)]


def test_no_module_holds_sql_outside_the_query_files():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = str(path.relative_to(PACKAGE))
        for text in sql_literals(path.read_text()):
            if (module, text[:40]) not in ALLOWED:
                found.append(f"{module}: {text[:80]!r}")
    assert found == []


def test_the_scan_finds_statements_and_leaves_prose():
    """The scan above can fail: each of these is a statement it must report."""
    statements = ['conn.execute("SELECT id FROM episodic_events")',
                  "run('INSERT INTO t VALUES (1)')", 'x = "update episodic_events set a = 1"',
                  'x = "DELETE FROM t"', 'x = f"ALTER TABLE {t} ADD COLUMN c INT"',
                  'x = "SET default_transaction_read_only = on"', 'x = "LISTEN athena"',
                  'x = "SELECT pg_notify(1)"', 'x = "COMMIT"', 'x = "BEGIN TRANSACTION READ ONLY"',
                  'x = "COPY episodic_events (a) FROM STDIN"', 'x = "SELECT 1"']
    for line in statements:
        assert sql_literals(line), line
    prose = ['def f():\n    """Runs SELECT ... FROM in one statement."""',
             'x = "the connection broke during COMMIT: whether it was applied is unknown"',
             'x = "pick a task off the queue"',
             'UPDATE = "update"', 'label = "commit"', 'x = "cannot listen on port"']
    for line in prose:
        assert not sql_literals(line), line


def test_transaction_control_and_read_only_sessions_run_as_named_queries(database_url, tmp_path):
    """BEGIN, COMMIT, ROLLBACK and the read-only set-up are queries of the files: the
    tracer sees their text, on both backends (a DuckDB reader beside this process's
    writer begins read-only transactions; a PostgreSQL reader sets its sessions
    read-only)."""
    target = database_url() or str(tmp_path / "f.duckdb")
    writer = open_database(target)
    seen: list[str] = []
    reader = open_database(target, read_only=True, tracer=lambda sql, _: seen.append(sql))
    try:
        with reader.transaction():
            reader.fetch_rows("task_status_counts")
        with pytest.raises(StorageError), reader.transaction():
            reader.execute("store_version_bump", name="agents")  # a reader cannot write
        named = queries(reader.dialect)
        expected = {"duckdb": ["begin_read_only", "commit", "rollback"],
                    "postgresql": ["session_read_only", "begin", "commit", "rollback"]}
        for name in expected[reader.dialect]:
            assert named[name].text in seen, name
        assert writer.version("agents") == 0  # the refused write changed nothing
    finally:
        reader.close()
        writer.close()


def test_a_query_is_run_by_its_name_with_its_parameters():
    db = open_database()
    try:
        with pytest.raises(ValidationError, match="no_such_query"):
            db.execute("no_such_query")
        with pytest.raises(ValidationError, match="needs parameters.*name"):
            db.execute("store_version")
        assert db.version("agents") == 0
    finally:
        db.close()
    with pytest.raises(ValidationError, match="oracle"):
        queries("oracle")
