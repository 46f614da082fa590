"""The scale-out backend: a PostgreSQL database through psycopg 3.

Same schema, same named queries (PostgreSQL's own text where the dialects differ, in
``postgres/queries.sql``), same semantics. Claims lock rows with ``FOR UPDATE SKIP
LOCKED``, so workers on many connections and machines never take the same task nor wait
on each other's. The threads of a process draw connections from a small pool
(psycopg_pool): they neither queue behind one connection nor need a process lock, and a
connection the server dropped (restart, terminated backend) is replaced the next time it
is taken. psycopg errors never leave this module untranslated.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import StorageError, TransactionConflictError, ValidationError, shown
from .base import Session, SQLDatabase, Tracer

try:
    import psycopg
    from psycopg import sql as pgsql
    from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout
except ImportError:  # the optional extra is not installed
    psycopg = None

# SQLSTATEs of a transaction the server aborted for a deadlock or a serialization failure:
# run again, it succeeds (SQLDatabase.atomic does). A lock timeout (55P03) is not one.
_CONFLICTS = {"40P01", "40001"}
_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@|(password=)[^&\s]*")
TIMESTAMPTZ_OID, TIMESTAMP_OID = 1184, 1114
INTEGER_OIDS = {20, 21, 23}  # bigint, smallint, integer


def is_postgres_url(target: Any) -> bool:
    return isinstance(target, str) and target.startswith(("postgresql://", "postgres://"))


def shown_target(target: Any) -> str:
    """A database path or URL as it may be printed: without the URL's password."""
    return _PASSWORD.sub(lambda m: f"{m.group(1)}***@" if m.group(1) else f"{m.group(2)}***",
                         str(target))


@dataclass
class _Rows:
    """A statement's whole result, read before its connection went back to the pool."""

    description: Any
    rows: list[tuple]

    def fetchall(self) -> list[tuple]:
        return self.rows


log = logging.getLogger(__name__)


class _Listener:
    """This process's ear for a database: a thread on a connection of its own that
    LISTENs for other processes' announcements of work (``work_notify``) and wakes this
    process's waiting claimers. Started by the first waiter, stopped when the last
    PostgresDatabase of the database closes; a lost connection is reopened with a growing
    pause, and waiters poll meanwhile (a notification sent while nobody listened is lost:
    the listener wakes everyone once it listens again)."""

    def __init__(self, url: str, shown: str, sql: dict[str, str], wakeups: Any):
        self.url, self.shown, self.sql, self.wakeups = url, shown, sql, wakeups
        self.users = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._listen, daemon=True,
                                                name=f"athena-orch listener {self.shown}")
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _listen(self) -> None:
        pause = 0.1
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True) as conn:
                    schema = conn.execute(self.sql["current_schema"]).fetchone()[0]
                    conn.execute(self.sql["work_listen"])
                    self.wakeups.notify()  # what was announced while nobody listened
                    pause = 0.1
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload == schema:
                                self.wakeups.notify()
            except psycopg.Error as exc:
                log.warning("listening on %s failed (%s); retrying in %.1f s",
                            self.shown, exc, pause)
                self._stop.wait(pause)
                pause = min(pause * 2, 5.0)


_listeners: dict[str, _Listener] = {}
_listeners_lock = threading.Lock()


class _ThreadSession(threading.local):
    session: Session | None = None  # the connection this thread holds, if any


class PostgresDatabase(SQLDatabase):
    """A PostgreSQL database (``postgresql://user@host:port/db``) with the athena-orch
    schema, created on first connect.

    ``pool_size``: how many connections this process's threads may use at once (one is
    kept open; more open on demand and close after ten idle minutes). ``pool_timeout``:
    how many seconds a call waits for a connection, when all are busy or the server
    cannot be reached, before it raises :class:`StorageError`.
    """

    dialect = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False, tracer: Tracer | None = None,
                 pool_size: int = 4, pool_timeout: float = 30.0):
        if psycopg is None:
            raise StorageError("the PostgreSQL backend needs psycopg and psycopg_pool: "
                               "pip install 'athena-orch[postgres]'")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int) or pool_size < 1:
            raise ValidationError(f"pool_size must be an int of at least 1, not {shown(pool_size)}")
        if (isinstance(pool_timeout, bool) or not isinstance(pool_timeout, (int, float))
                or not pool_timeout > 0):
            raise ValidationError(f"pool_timeout must be a positive number of seconds, "
                                  f"not {shown(pool_timeout)}")
        self.url = url
        self.path = shown_target(url)  # shown in reprs and errors
        self.pool_size, self.pool_timeout = pool_size, float(pool_timeout)
        self._table_types: dict[str, dict[str, str]] = {}
        self._local = _ThreadSession()
        self._pool: ConnectionPool | None = None
        self._listener: _Listener | None = None
        super().__init__(read_only=read_only, tracer=tracer)
        with _listeners_lock:
            listener = _listeners.get(self.url)
            if listener is None:
                sql = {name: self._queries[name].text for name in ("current_schema", "work_listen")}
                listener = _listeners[self.url] = _Listener(self.url, self.path, sql, self.wakeups)
            listener.users += 1
            self._listener = listener
        self.wakeups.when_waited(listener.start)

    def _announce_elsewhere(self) -> None:
        """NOTIFY, delivered when the transaction commits, to every listening process."""
        self.execute("work_notify")

    def _open(self) -> None:
        try:  # one plain connect first: the server's own reason, at once, if it fails
            psycopg.connect(self.url, autocommit=True).close()
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self.path}: {exc}") from exc
        self._pool = ConnectionPool(
            self.url, kwargs={"autocommit": True}, min_size=1, max_size=self.pool_size,
            timeout=self.pool_timeout, configure=self._configure, check=self._check,
            name=f"athena-orch {self.path}", open=False)
        try:
            self._pool.open(wait=True, timeout=self.pool_timeout)
        except PoolTimeout as exc:
            raise StorageError(f"cannot connect to {self.path}: no connection within "
                               f"{self.pool_timeout:g} s") from exc

    def _configure(self, conn: Any) -> None:
        """Set up each new pooled connection: read-only when asked, then session_setup."""
        names = ["session_read_only", "session_setup"] if self.read_only else ["session_setup"]
        for name in names:
            self._execute(conn, self._queries[name].text, {}, name)

    def _check(self, conn: Any) -> None:
        """The pool's test of a connection before handing it out. One that broke usually
        broke with its idle siblings (a server restart, terminated backends): test them
        all at once, rather than each behind the pool's growing back-off."""
        try:
            ConnectionPool.check_connection(conn)
        except psycopg.Error:
            pool = self._pool
            if pool is not None:  # not closed meanwhile
                pool.check()
            raise

    @contextmanager
    def _hold(self) -> Iterator[Session]:
        session = self._local.session
        if session is not None:
            yield session
            return
        pool = self._pool
        if pool is None:
            raise StorageError(f"{self.path} is closed")
        try:
            conn = pool.getconn()
        except PoolTimeout as exc:
            raise StorageError(
                f"no connection to {self.path} within {self.pool_timeout:g} s: the server "
                f"cannot be reached, or all {self.pool_size} connections of this process "
                "are busy (pool_size)") from exc
        except PoolClosed as exc:
            raise StorageError(f"{self.path} is closed") from exc
        self._local.session = session = Session(conn)
        try:
            yield session
        finally:
            self._local.session = None
            pool.putconn(conn)  # a broken one is discarded and replaced

    def _in_transaction(self) -> bool:
        session = self._local.session  # without taking a connection just to ask
        return session is not None and session.depth > 0

    def _run(self, sql: Any, params: dict, label: str) -> Any:
        """Run on this thread's connection. A statement that borrowed its connection just
        for itself gives it back at once, so its rows are read here, whole."""
        borrowed = self._local.session is None
        with self._hold() as session:
            cursor = self._execute(session.conn, sql, params, label, session.depth)
            if borrowed:
                return _Rows(cursor.description,
                             cursor.fetchall() if cursor.description else [])
            return cursor

    def _execute(self, conn: Any, sql: Any, params: dict, label: str, depth: int = 0) -> Any:
        if self.tracer is not None:
            self.tracer(sql if isinstance(sql, str) else sql.as_string(conn), params)
        try:
            return conn.execute(sql, params or None)
        except psycopg.Error as exc:
            raise self._translated(exc, conn, label, depth) from exc

    def _translated(self, exc: Exception, conn: Any, label: str, depth: int) -> StorageError:
        """A psycopg error as athena-orch's: conflicts that a retry resolves get their own
        class, and a broken connection says what became of the work."""
        if getattr(exc, "sqlstate", None) in _CONFLICTS:
            return TransactionConflictError(f"{label} lost a conflict with another "
                                            f"transaction and was rolled back: {exc}")
        if not (conn.closed or conn.broken):
            return StorageError(f"{label} failed: {exc}")
        lost = f"the connection to {self.path} broke ({exc})"
        if label == "commit":
            return StorageError(f"{lost} during COMMIT: whether the transaction was applied "
                                "is unknown; check before doing it again")
        if label == "rollback":
            return StorageError(f"{lost}; the server rolls back the transaction of a lost "
                                "connection itself")
        if depth or label == "begin":
            return StorageError(f"{lost}; {label} failed and the transaction was rolled back: "
                                "nothing of it was applied. The next call uses a new connection.")
        return StorageError(f"{lost}; {label} failed (a write outside a transaction may or "
                            "may not have been applied). The next call uses a new connection.")

    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        """The rows as a DataFrame typed as DuckDB's ``.df()`` types them: timestamps as
        datetime64 in UTC, integer columns with NULLs as float."""
        with self._hold():
            cursor = self.execute(name, **params)
            rows = cursor.fetchall()
            description = cursor.description
        columns = [d.name for d in description]
        frame = pd.DataFrame.from_records(rows, columns=columns, coerce_float=False)
        for d in description:
            values = frame[d.name]
            if d.type_code in (TIMESTAMPTZ_OID, TIMESTAMP_OID):
                frame[d.name] = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
            elif d.type_code in INTEGER_OIDS:
                has_null = values.isna().any()
                frame[d.name] = values.astype("float64" if has_null else "int64")
        return frame

    def insert_frame(self, name: str, frame: pd.DataFrame, /, **params: Any) -> None:
        """Stream ``frame`` into the table of the named ``COPY`` statement."""
        if frame.empty:
            return
        statement = pgsql.SQL(self._queries[name].text.replace("%%", "%")).format(
            columns=pgsql.SQL(", ").join(map(pgsql.Identifier, frame.columns)))
        table = re.search(r"COPY (\w+)", self._queries[name].text).group(1)
        integer = [self._column_types(table).get(c) in ("bigint", "integer", "smallint")
                   for c in frame.columns]
        rows = frame.astype(object).where(frame.notna(), None).itertuples(index=False, name=None)
        with self._hold() as session:
            conn = session.conn
            if self.tracer is not None:
                self.tracer(statement.as_string(conn), {"rows": len(frame)})
            try:
                with conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row([_plain(value, is_int) for value, is_int in zip(row, integer)])
            except psycopg.Error as exc:
                raise self._translated(exc, conn, name, session.depth) from exc

    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._table_types:
            self._table_types[table] = dict(self.fetch_rows("column_types", table=table))
        return self._table_types[table]

    def close(self) -> None:
        """Close every pooled connection (one in use closes when its call ends). Closing
        twice is harmless."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()
        listener, self._listener = self._listener, None
        if listener is not None:
            with _listeners_lock:
                listener.users -= 1
                if not listener.users:
                    listener.stop()
                    del _listeners[self.url]


def _plain(value: Any, integer: bool) -> Any:
    """A DataFrame cell as psycopg can write it: numpy scalars as Python values, and
    whole floats in integer columns (pandas stores nullable ints as float) as ints."""
    if isinstance(value, np.generic):
        value = value.item()
    if integer and isinstance(value, float):
        return int(value)
    if isinstance(value, (list, np.ndarray)):
        return list(value)
    return value
