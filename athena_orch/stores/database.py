"""The default backend: one embedded DuckDB file (or ``":memory:"``).

DuckDB allows one writer process, and within it runs one database instance per file:
two connections to one file would each run their own transactions and lose write-write
conflicts to each other ("Conflict on update"). So every ``Database`` of one file in a
process shares one connection, its lock and its transaction (a registry keyed by the
file's real path, counting users); statements run under that lock, and callers never
retry write-write conflicts. DuckDB errors never leave this module untranslated.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from ..exceptions import (
    DatabaseLockedError,
    StorageError,
    TransactionConflictError,
    ValidationError,
)
from .base import Session, SQLDatabase, Tracer

_LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.*?) \(PID (\d+)\)")
# DuckDB adds this to its lock error only when the process holding the file just reads it.
_HOLDER_ONLY_READS = "would be able to open this database in read-only mode"


@dataclass(eq=False)
class _Handle(Session):
    """A DuckDB connection of this process, its lock, and how many Databases use it.
    A reader beside this process's writer has a handle of its own whose ``parent`` is
    the writer's."""

    lock: threading.RLock = field(default_factory=threading.RLock)
    users: int = 1
    read_only: bool = False
    key: str | None = None  # its entry in _open_files; None for ":memory:"
    parent: _Handle | None = None


_open_files: dict[str, _Handle] = {}
_open_files_lock = threading.Lock()


class Database(SQLDatabase):
    """A DuckDB database (a file path, or ``":memory:"``) with the athena-orch schema.

    Opening a file this process already has open shares that connection; ``close()``
    closes it when its last user closes. A read-only open beside this process's writer
    gets a connection of its own to the same database, whose transactions are read-only:
    it can read while the writer writes, and can never write. ``":memory:"`` is never
    shared: each is a database of its own.
    """

    dialect = "duckdb"
    one_writer = True

    def __init__(
        self, path: str | Path = ":memory:", *, read_only: bool = False, tracer: Tracer | None = None
    ):
        self.path = str(path)
        self._handle: _Handle | None = None
        super().__init__(read_only=read_only, tracer=tracer)

    def _open(self) -> None:
        key = None if self.path.startswith(":memory:") else os.path.realpath(self.path)
        with _open_files_lock:
            shared = _open_files.get(key) if key else None
            if shared is None:
                self._handle = _Handle(self._connect(), read_only=self.read_only, key=key)
                if key:
                    _open_files[key] = self._handle
            elif shared.read_only == self.read_only:
                shared.users += 1
                self._handle = shared
                return
            elif self.read_only:  # beside this process's writer: same database, own cursor
                with shared.lock:
                    cursor = shared.conn.cursor()
                shared.users += 1
                self._handle = _Handle(cursor, read_only=True, parent=shared)
                self._begin = "begin_read_only"
            else:
                raise StorageError(
                    f"{self.path} is already open read-only in this process, and DuckDB opens "
                    "a file in one mode per process: close those read-only connections "
                    "before opening it for writing")
        self._run(self._queries["session_setup"].text, {}, label="session_setup")

    def _wakeup_key(self) -> str:
        """One file, one set of waiters, however it was opened; each ``":memory:"``
        database is its own."""
        if self._handle.key is None and self._handle.parent is None:
            return f"duckdb:memory:{id(self._handle)}"
        return f"duckdb:{(self._handle.parent or self._handle).key}"

    def _connect(self) -> duckdb.DuckDBPyConnection:
        try:
            return duckdb.connect(self.path, read_only=self.read_only)
        except duckdb.IOException as exc:
            match = _LOCK_HOLDER.search(str(exc))
            if match is None:
                raise StorageError(f"cannot open {self.path}: {exc}") from exc
            holder, pid = match.groups()
            if _HOLDER_ONLY_READS in str(exc):
                raise DatabaseLockedError(
                    f"{self.path} is open read-only in another process (PID {pid}, {holder}), "
                    "and DuckDB lets no process write a file that another process reads: close "
                    "that reader (a notebook's or a script's read_only=True connection) and "
                    "retry, or open it read-only here too "
                    "(athena_orch.connect(path, read_only=True)), which works beside it."
                ) from exc
            raise DatabaseLockedError(
                f"{self.path} is open for writing in another process (PID {pid}, {holder}). "
                "DuckDB allows one writer process: send work through that process's MCP "
                "HTTP server (athena-orch mcp --http), or open read-only for analysis "
                "once the writer has closed it (athena_orch.connect(path, read_only=True)); "
                "for many writer processes, use the PostgreSQL backend."
            ) from exc
        except duckdb.Error as exc:
            raise StorageError(f"cannot open {self.path}: {exc}") from exc

    @contextmanager
    def _hold(self) -> Iterator[_Handle]:
        handle = self._handle
        if handle is None:
            raise StorageError(f"{self.path} is closed")
        with handle.lock:
            yield handle

    def _statement(self) -> AbstractContextManager[Any]:
        """A reader beside a writer reads in a read-only transaction, even one statement:
        its connection could write otherwise."""
        if self._handle is not None and self._handle.parent is not None:
            return self.transaction()
        return self._hold()

    def _run(self, sql: str, params: dict, label: str) -> duckdb.DuckDBPyConnection:
        if self.tracer is not None:
            self.tracer(sql, params)
        with self._hold() as handle:
            try:
                return handle.conn.execute(sql, params or None)
            except duckdb.TransactionException as exc:
                if "Conflict" not in str(exc):
                    raise StorageError(f"{label} failed: {exc}") from exc
                raise TransactionConflictError(
                    f"{label} lost a write-write conflict with another connection and was "
                    f"rolled back: {exc}") from exc
            except duckdb.Error as exc:
                raise StorageError(f"{label} failed: {exc}") from exc

    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        with self._statement():
            return self.execute(name, **params).df()

    def fetch_arrow(self, name: str, /, **params: Any) -> pa.Table:
        """The named query's rows as an Arrow table, DuckDB's columns handed over whole
        (through ``sql``: ``execute``'s result would copy them once more)."""
        query = self._queries.get(name)
        if query is None:
            raise ValidationError(f"there is no query named {name!r} in queries.sql")
        bound = query.bind(params)
        with self._statement(), self._hold() as handle:
            if self.tracer is not None:
                self.tracer(query.text, bound)
            try:
                return handle.conn.sql(query.text, params=bound or None).to_arrow_table()
            except duckdb.Error as exc:
                raise StorageError(f"{name} failed: {exc}") from exc

    def insert_frame(self, name: str, frame: pd.DataFrame, /, **params: Any) -> None:
        """Run a named bulk statement that reads ``frame`` as the relation ``incoming``."""
        if frame.empty:
            return
        with self._hold() as handle:
            try:
                handle.conn.register("incoming", frame)
            except duckdb.Error as exc:  # e.g. a column type DuckDB cannot read
                raise StorageError(f"{name} failed: {exc}") from exc
            try:
                self.execute(name, **params)
            finally:
                with suppress(duckdb.Error):  # in an aborted transaction; ROLLBACK clears it
                    handle.conn.unregister("incoming")

    def close(self) -> None:
        """Stop using the connection; it closes when its last user closes. Closing twice
        is harmless."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        owner = handle.parent or handle
        with _open_files_lock:
            owner.users -= 1
            last = owner.users == 0
            if last and owner.key:
                del _open_files[owner.key]
        # outside the registry's lock: a transaction on another thread may still hold it
        if handle is not owner:
            with handle.lock:
                handle.conn.close()
        if last:
            with owner.lock:
                owner.conn.close()
