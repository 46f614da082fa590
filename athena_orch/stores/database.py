"""The storage seam: one DuckDB connection, named queries, transactions, error translation.

Every statement runs under one process-level lock (DuckDB allows one writer process and
a connection must not be used by two threads at once), so callers never retry
write-write conflicts. DuckDB errors never leave this module untranslated.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ..exceptions import DatabaseLockedError, SchemaVersionError, StorageError
from .sql import Query, migrations, queries

Tracer = Callable[[str, dict], None]
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


def utcnow() -> datetime:
    return datetime.now(UTC)


class Database:
    """A DuckDB database (a file path, or ``":memory:"``) with the athena-orch schema.

    ``tracer``, if given, is called with ``(sql, params)`` before every statement.
    """

    dialect = "duckdb"

    def __init__(
        self, path: str | Path = ":memory:", *, read_only: bool = False, tracer: Tracer | None = None
    ):
        self.path = str(path)
        self.read_only = read_only
        self.tracer = tracer
        self._lock = threading.RLock()
        self._depth = 0  # nesting of transaction()
        self._conn = self._open()
        self.execute("session_setup")
        if not read_only:
            self._migrate()
        self._check_version()

    # ------------------------------------------------------------------ opening
    def _open(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(self.path, read_only=self.read_only)
        except duckdb.IOException as exc:
            match = _LOCK_HOLDER.search(str(exc))
            if match:
                holder, pid = match.groups()
                raise DatabaseLockedError(
                    f"{self.path} is open for writing in another process (PID {pid}, {holder}). "
                    "DuckDB allows one writer process: send work through that process's MCP "
                    "HTTP server (athena-orch mcp --http), or open read-only for analysis "
                    "once the writer has closed it (athena_orch.connect(path, read_only=True))."
                ) from exc
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        """Apply the numbered migrations this file has not seen, each in one transaction."""
        with self.transaction():
            self.execute("migrations_table")
            applied = {row[0] for row in self.fetch_rows("migrations_applied")}
            for version, name, script in migrations():
                if version in applied:
                    continue
                self._run(script, {}, label=f"migration {version}")
                self.execute("migration_record", version=version, name=name, now=utcnow())

    def _check_version(self) -> None:
        known = max(v for v, _, _ in migrations())
        try:
            found = max((row[0] for row in self.fetch_rows("migrations_applied")), default=0)
        except StorageError as exc:
            raise StorageError(f"{self.path} has no athena-orch schema") from exc
        if found > known:
            raise SchemaVersionError(
                f"{self.path} has schema version {found}; this athena-orch knows up to {known}: "
                "upgrade athena-orch to open it"
            )
        self.schema_version = found

    # ------------------------------------------------------------------ running SQL
    def _run(self, sql: str, params: dict, label: str) -> duckdb.DuckDBPyConnection:
        if self.tracer is not None:
            self.tracer(sql, params)
        try:
            return self._conn.execute(sql, params or None)
        except duckdb.Error as exc:
            raise StorageError(f"{label} failed: {exc}") from exc

    def execute(self, name: str, /, **params: Any) -> duckdb.DuckDBPyConnection:
        """Run the named query of ``queries.sql`` with these parameters."""
        query: Query = queries()[name]
        with self._lock:
            return self._run(query.text, query.bind(params), label=name)

    def fetch_rows(self, name: str, /, **params: Any) -> list[tuple]:
        with self._lock:
            return self.execute(name, **params).fetchall()

    def fetch_dicts(self, name: str, /, **params: Any) -> list[dict[str, Any]]:
        with self._lock:
            cursor = self.execute(name, **params)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def fetch_one(self, name: str, /, **params: Any) -> dict[str, Any] | None:
        rows = self.fetch_dicts(name, **params)
        return rows[0] if rows else None

    def fetch_value(self, name: str, /, **params: Any) -> Any:
        rows = self.fetch_rows(name, **params)
        return rows[0][0] if rows else None

    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        with self._lock:
            return self.execute(name, **params).df()

    def insert_frame(self, name: str, frame: pd.DataFrame, /,
                     **params: Any) -> list[dict[str, Any]]:
        """Run a named bulk statement that reads ``frame`` as the relation ``incoming``;
        returns the rows of its RETURNING clause, if any."""
        if frame.empty:
            return []
        with self._lock:
            try:
                self._conn.register("incoming", frame)
            except duckdb.Error as exc:  # e.g. a column type DuckDB cannot read
                raise StorageError(f"{name} failed: {exc}") from exc
            try:
                cursor = self.execute(name, **params)
                columns = [d[0] for d in cursor.description]
                return [dict(zip(columns, row)) for row in cursor.fetchall()]
            finally:
                with suppress(duckdb.Error):  # in an aborted transaction; ROLLBACK clears it
                    self._conn.unregister("incoming")

    @contextmanager
    def transaction(self) -> Iterator[Database]:
        """All statements inside commit together or not at all; nesting joins the outer one."""
        with self._lock:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            self._run("BEGIN TRANSACTION", {}, label="begin")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                self._run("ROLLBACK", {}, label="rollback")
                raise
            self._depth = 0
            self._run("COMMIT", {}, label="commit")

    # ------------------------------------------------------------------ change counters
    def version(self, name: str) -> int:
        """Change counter of an in-memory index ('agents', 'dag')."""
        return int(self.fetch_value("store_version", name=name))

    def bump_version(self, name: str) -> None:
        self.execute("store_version_bump", name=name)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return f"Database({self.path!r}, {mode}, schema v{getattr(self, 'schema_version', '?')})"
