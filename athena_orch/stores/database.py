"""The default backend: one embedded DuckDB file (or ``":memory:"``).

DuckDB allows one writer process, and a connection must not be used by two threads at
once, so every statement runs under the connection's lock and callers never retry
write-write conflicts. DuckDB errors never leave this module untranslated.
"""

from __future__ import annotations

import re
from contextlib import suppress
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from ..exceptions import DatabaseLockedError, StorageError, TransactionConflictError
from .base import SQLDatabase, Tracer

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")


class Database(SQLDatabase):
    """A DuckDB database (a file path, or ``":memory:"``) with the athena-orch schema."""

    dialect = "duckdb"

    def __init__(
        self, path: str | Path = ":memory:", *, read_only: bool = False, tracer: Tracer | None = None
    ):
        self.path = str(path)
        super().__init__(read_only=read_only, tracer=tracer)

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
                    "once the writer has closed it (athena_orch.connect(path, read_only=True)); "
                    "for many writer processes, use the PostgreSQL backend."
                ) from exc
            raise StorageError(f"cannot open {self.path}: {exc}") from exc
        except duckdb.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc

    def _run(self, sql: str, params: dict, label: str) -> duckdb.DuckDBPyConnection:
        if self.tracer is not None:
            self.tracer(sql, params)
        try:
            return self._conn.execute(sql, params or None)
        except duckdb.TransactionException as exc:
            if "Conflict" not in str(exc):
                raise StorageError(f"{label} failed: {exc}") from exc
            raise TransactionConflictError(f"{label} lost a write-write conflict with another "
                                           f"connection and was rolled back: {exc}") from exc
        except duckdb.Error as exc:
            raise StorageError(f"{label} failed: {exc}") from exc

    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        with self._lock:
            return self.execute(name, **params).df()

    def insert_frame(self, name: str, frame: pd.DataFrame, /, **params: Any) -> None:
        """Run a named bulk statement that reads ``frame`` as the relation ``incoming``."""
        if frame.empty:
            return
        with self._lock:
            try:
                self._conn.register("incoming", frame)
            except duckdb.Error as exc:  # e.g. a column type DuckDB cannot read
                raise StorageError(f"{name} failed: {exc}") from exc
            try:
                self.execute(name, **params)
            finally:
                with suppress(duckdb.Error):  # in an aborted transaction; ROLLBACK clears it
                    self._conn.unregister("incoming")

    def close(self) -> None:
        with self._lock:
            self._conn.close()
