"""What every storage backend shares: named queries, nested transactions and their
retries, migrations and change counters.

A backend (DuckDB in ``database.py``, PostgreSQL in ``postgres.py``) decides how a thread
gets a connection (``_hold``), runs one statement, reads a frame and bulk-inserts one;
everything else is here, so the queue's logic never forks by backend. Backend errors
never leave a backend untranslated.
"""

from __future__ import annotations

import itertools
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pyarrow as pa

from ..exceptions import (
    SchemaVersionError,
    StorageError,
    TransactionConflictError,
    ValidationError,
    shown,
)
from .sql import migrations, queries
from .wakeups import Wakeups, wakeups_for

Tracer = Callable[[str, dict], None]


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(eq=False)
class Session:
    """A connection held by one thread, and how deep its open transaction is nested
    (0: none). A transaction keeps its session, so its statements share one connection."""

    conn: Any
    depth: int = 0
    after_commit: list[Callable[[], None]] = field(default_factory=list)  # run once committed


class SQLDatabase(ABC):
    """A database with the athena-orch schema; subclasses supply the connections.

    ``tracer``, if given, is called with ``(sql, params)`` before every statement.
    A connection is never used by two threads at once: a thread holds it (``_hold``) for
    one statement and its fetch, or for a whole transaction.
    """

    dialect: str = ""
    _begin = "begin"  # the named query that starts a transaction
    #: How often :meth:`atomic` runs a transaction that keeps losing conflicts, and the
    #: back-off between runs: jittered, from ``retry_delay`` doubling up to ``retry_delay_max``.
    retry_attempts: int = 8
    retry_delay: float = 0.002
    retry_delay_max: float = 0.1
    #: One writer at a time (DuckDB): a lone statement outside a transaction is atomic and
    #: nothing of this process runs between the statements of a held session, so a call
    #: whose writes are one statement needs no BEGIN/COMMIT (:meth:`at_once`).
    one_writer: bool = False

    def __init__(self, *, read_only: bool = False, tracer: Tracer | None = None):
        self.read_only = read_only
        self.tracer = tracer
        self._queries = queries(self.dialect)
        try:
            self._open()
            self.wakeups: Wakeups = wakeups_for(self._wakeup_key())
            if not read_only:
                self._migrate()
            self._check_version()
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ backend hooks
    path: str

    @abstractmethod
    def _open(self) -> None:
        """Open the connection(s), each set up by the ``session_setup`` query (errors as
        StorageError)."""

    @abstractmethod
    def _hold(self) -> AbstractContextManager[Session]:
        """This thread's session, held until the block ends; reentrant, so a transaction
        and every statement inside it hold the same one."""

    @abstractmethod
    def _run(self, sql: str, params: dict, label: str) -> Any:
        """Run one statement on this thread's session; return a cursor with
        ``description`` and ``fetchall()``, to be read while the session is held."""

    def _statement(self) -> AbstractContextManager[Any]:
        """What one statement and the reading of its rows run under."""
        return self._hold()

    def _wakeup_key(self) -> str:
        """Which databases share wake-ups in this process: the same one, however opened."""
        return f"{self.dialect}:{self.path}"

    def _announce_elsewhere(self) -> None:  # noqa: B027 - most backends need nothing
        """Tell other processes, in the current transaction, that work may be ready (a
        backend whose other processes cannot write needs nothing here)."""

    @abstractmethod
    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        """The named query's rows as a DataFrame (timestamps as datetime64 in UTC)."""

    def fetch_arrow(self, name: str, /, **params: Any) -> pa.Table:
        """The named query's rows as an Arrow table (a backend that can hands its columns
        over whole, with no Python object per value; this one goes through a frame)."""
        return pa.Table.from_pandas(self.fetch_frame(name, **params), preserve_index=False)

    @abstractmethod
    def insert_frame(self, name: str, frame: pd.DataFrame, /, **params: Any) -> None:
        """Insert the rows of ``frame`` with the named bulk statement."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    # ------------------------------------------------------------------ schema
    def _migrate(self) -> None:
        """Apply the numbered migrations this database has not seen, in one transaction."""
        with self.transaction():
            self.execute("migrations_lock")
            self.execute("migrations_table")
            applied = {row[0] for row in self.fetch_rows("migrations_applied")}
            for version, name, script in migrations(self.dialect):
                if version in applied:
                    continue
                self._run(script, {}, label=f"migration {version}")
                self.execute("migration_record", version=version, name=name, now=utcnow())

    def _check_version(self) -> None:
        known = max(v for v, _, _ in migrations(self.dialect))
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
    def execute(self, name: str, /, **params: Any) -> Any:
        """Run the named query of ``queries.sql`` with these parameters."""
        query = self._queries.get(name)
        if query is None:
            raise ValidationError(f"there is no query named {shown(name)} in queries.sql")
        with self._statement():
            return self._run(query.text, query.bind(params), label=name)

    def _run_named(self, name: str) -> Any:
        """Run a named query without parameters on this thread's session, not under
        ``_statement`` (which may open a transaction): transaction control."""
        return self._run(self._queries[name].text, {}, label=name)

    def reading(self) -> AbstractContextManager[Any]:
        """Hold this thread's session for one statement and the reading of its rows (no
        transaction where none is needed)."""
        return self._statement()

    def fetch_rows(self, name: str, /, **params: Any) -> list[tuple]:
        with self._statement():
            return self.execute(name, **params).fetchall()

    def fetch_dicts(self, name: str, /, **params: Any) -> list[dict[str, Any]]:
        with self._statement():
            cursor = self.execute(name, **params)
            columns = [d[0] for d in cursor.description]
            return [dict(zip(columns, row)) for row in cursor.fetchall()]

    def fetch_one(self, name: str, /, **params: Any) -> dict[str, Any] | None:
        rows = self.fetch_dicts(name, **params)
        return rows[0] if rows else None

    def fetch_value(self, name: str, /, **params: Any) -> Any:
        rows = self.fetch_rows(name, **params)
        return rows[0][0] if rows else None

    @contextmanager
    def transaction(self) -> Iterator[SQLDatabase]:
        """All statements inside commit together or not at all; nesting (on the same
        thread) joins the outer one. A failed ROLLBACK (a connection that broke) never
        hides the error that caused it: it is added as a note."""
        with self._hold() as session:
            if session.depth:
                session.depth += 1
                try:
                    yield self
                finally:
                    session.depth -= 1
                return
            self._run_named(self._begin)
            session.depth = 1
            try:
                yield self
            except BaseException as exc:
                session.depth = 0
                session.after_commit = []
                try:
                    self._run_named("rollback")
                except StorageError as failed:
                    exc.add_note(f"and the rollback failed: {failed}")
                raise
            session.depth = 0
            callbacks, session.after_commit = session.after_commit, []
            self._run_named("commit")
            for callback in callbacks:
                callback()

    def atomic(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` in one transaction; returns its result.

        PostgreSQL aborts one of two transactions that wait on each other (deadlock) or
        that would not serialise; the victim would succeed if run again. So the outermost
        ``atomic`` rolls back and runs ``fn`` again after a short jittered back-off, at
        most ``retry_attempts`` times, then raises :class:`StorageError`. Inside an outer
        transaction it only joins it: the conflict aborted the whole outer transaction, so
        only its owner can retry. ``fn`` must therefore be safe to run again: it should
        only touch the database (and return what it read).
        """
        if self._in_transaction():
            with self.transaction():
                return fn(*args, **kwargs)
        return self._retried(self.transaction, fn, args, kwargs)

    def at_once(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` whose writes are one statement (its other statements only
        read, to explain a refusal). On a one-writer backend, outside a transaction, it
        runs without BEGIN/COMMIT: on a file each statement costs milliseconds, and a lone
        statement commits atomically on its own. Its session is held throughout, so no
        other thread of this process runs between its statements; conflicts are retried
        as :meth:`atomic` retries them. Elsewhere it is :meth:`atomic`."""
        if not self.one_writer:
            return self.atomic(fn, *args, **kwargs)
        return self.alone(fn, *args, **kwargs)

    def alone(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)`` whose only write is one statement and whose reads lock
        nothing (they only explain a refusal): outside a transaction it runs without
        BEGIN/COMMIT on every backend, as a lone statement commits atomically, holding
        this thread's session; conflicts are retried as :meth:`atomic` retries them.
        Inside a transaction it joins it."""
        if self._in_transaction():
            return self.atomic(fn, *args, **kwargs)
        return self._retried(self._hold, fn, args, kwargs)

    def _retried(self, scope: Callable[[], AbstractContextManager[Any]], fn: Callable[..., Any],
                 args: tuple, kwargs: dict) -> Any:
        """``fn`` run inside ``scope()``, again after a jittered back-off while it loses
        conflicts, at most ``retry_attempts`` times."""
        for attempt in itertools.count(1):
            try:
                with scope():
                    return fn(*args, **kwargs)
            except TransactionConflictError as exc:
                if attempt >= self.retry_attempts:
                    raise StorageError(
                        f"gave up after {attempt} attempts: the transaction kept losing "
                        f"deadlock or serialization conflicts ({exc})") from exc
                backoff = min(self.retry_delay_max, self.retry_delay * 2 ** (attempt - 1))
                time.sleep(random.uniform(backoff / 2, backoff))

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (never if it rolls back;
        at once outside a transaction); the same callback twice runs once."""
        with self._hold() as session:
            if not session.depth:
                callback()
            elif callback not in session.after_commit:
                session.after_commit.append(callback)

    def announce_work(self) -> None:
        """Work may have become ready: wake this database's waiting claimers once the
        current transaction commits, in this process and, where the backend carries it,
        in others."""
        self._announce_elsewhere()
        self.after_commit(self.wakeups.notify)

    def _in_transaction(self) -> bool:
        """Whether this thread is inside a transaction of this database."""
        with self._hold() as session:
            return session.depth > 0

    def table_contents(self) -> dict[str, list[tuple]]:
        """Every row of every athena-orch table, in key order: what a test or an audit
        compares to show that a refused call changed nothing."""
        return {name.removeprefix("contents_"): self.fetch_rows(name)
                for name in self._queries if name.startswith("contents_")}

    # ------------------------------------------------------------------ change counters
    def version(self, name: str) -> int:
        """Change counter of an in-memory index ('agents', 'dag')."""
        return int(self.fetch_value("store_version", name=name))

    def bump_version(self, name: str) -> None:
        self.execute("store_version_bump", name=name)

    def __repr__(self) -> str:
        mode = "read-only" if self.read_only else "read-write"
        return (f"{type(self).__name__}({self.path!r}, {mode}, "
                f"schema v{getattr(self, 'schema_version', '?')})")
