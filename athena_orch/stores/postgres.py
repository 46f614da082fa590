"""The scale-out backend: a PostgreSQL database through psycopg 3.

Same schema, same named queries (PostgreSQL's own text where the dialects differ, in
``postgres/queries.sql``), same semantics. Each process holds its own connection; claims
lock rows with ``FOR UPDATE SKIP LOCKED``, so workers on many connections and machines
never take the same task nor wait on each other's. psycopg errors never leave this
module untranslated.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from ..exceptions import StorageError, TransactionConflictError
from .base import SQLDatabase, Tracer

try:
    import psycopg
    from psycopg import sql as pgsql
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


class PostgresDatabase(SQLDatabase):
    """A PostgreSQL database (``postgresql://user@host:port/db``) with the athena-orch
    schema, created on first connect."""

    dialect = "postgresql"

    def __init__(self, url: str, *, read_only: bool = False, tracer: Tracer | None = None):
        if psycopg is None:
            raise StorageError("the PostgreSQL backend needs psycopg: "
                               "pip install 'athena-orch[postgres]'")
        self.url = url
        self.path = shown_target(url)  # shown in reprs and errors
        self._table_types: dict[str, dict[str, str]] = {}
        super().__init__(read_only=read_only, tracer=tracer)

    def _open(self) -> Any:
        try:
            conn = psycopg.connect(self.url, autocommit=True)
        except psycopg.Error as exc:
            raise StorageError(f"cannot connect to {self.path}: {exc}") from exc
        if self.read_only:
            conn.execute("SET default_transaction_read_only = on")
        return conn

    def _run(self, sql: Any, params: dict, label: str) -> Any:
        if self.tracer is not None:
            self.tracer(sql if isinstance(sql, str) else sql.as_string(self._conn), params)
        try:
            return self._conn.execute(sql, params or None)
        except psycopg.Error as exc:
            raise _translated(exc, label) from exc

    def fetch_frame(self, name: str, /, **params: Any) -> pd.DataFrame:
        """The rows as a DataFrame typed as DuckDB's ``.df()`` types them: timestamps as
        datetime64 in UTC, integer columns with NULLs as float."""
        with self._lock:
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
        with self._lock:
            if self.tracer is not None:
                self.tracer(statement.as_string(self._conn), {"rows": len(frame)})
            try:
                with self._conn.cursor() as cursor, cursor.copy(statement) as copy:
                    for row in rows:
                        copy.write_row([_plain(value, is_int) for value, is_int in zip(row, integer)])
            except psycopg.Error as exc:
                raise StorageError(f"{name} failed: {exc}") from exc

    def _column_types(self, table: str) -> dict[str, str]:
        if table not in self._table_types:
            rows = self._conn.execute(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = %s AND table_schema = current_schema()", (table,)).fetchall()
            self._table_types[table] = dict(rows)
        return self._table_types[table]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _translated(exc: Exception, label: str) -> StorageError:
    """A psycopg error as athena-orch's: conflicts that a retry resolves get their own class."""
    if getattr(exc, "sqlstate", None) in _CONFLICTS:
        return TransactionConflictError(f"{label} lost a conflict with another transaction "
                                        f"and was rolled back: {exc}")
    return StorageError(f"{label} failed: {exc}")


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
