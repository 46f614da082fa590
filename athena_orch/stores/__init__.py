"""Storage: the only package with SQL. One database (DuckDB by default, or PostgreSQL),
three stores over it."""

from __future__ import annotations

from pathlib import Path

from ..exceptions import ValidationError
from .base import SQLDatabase, Tracer
from .database import Database
from .episodic import EpisodicStore
from .graph import GraphStore
from .meta import MetaMemoryStore, MetaStore
from .postgres import PostgresDatabase, is_postgres_url
from .subscriptions import SubscriptionStore


def open_database(target: str | Path | None = None, *, read_only: bool = False,
                  tracer: Tracer | None = None, pool_size: int | None = None,
                  pool_timeout: float | None = None) -> SQLDatabase:
    """A ``postgresql://`` URL opens PostgreSQL; a file path DuckDB; nothing, DuckDB in memory.
    PostgreSQL only: ``pool_size``, how many connections this process's threads may use at
    once (default 4), and ``pool_timeout``, how long a call waits for one (default 30 s)."""
    pool = {name: value for name, value in
            (("pool_size", pool_size), ("pool_timeout", pool_timeout)) if value is not None}
    if is_postgres_url(target):
        return PostgresDatabase(target, read_only=read_only, tracer=tracer, **pool)
    if pool:
        raise ValidationError(f"pool settings ({', '.join(pool)}) are for PostgreSQL: a DuckDB "
                              "file has one connection per process, shared by its threads")
    return Database(target or ":memory:", read_only=read_only, tracer=tracer)


__all__ = ["Database", "PostgresDatabase", "SQLDatabase", "open_database", "EpisodicStore",
           "GraphStore", "MetaStore", "MetaMemoryStore", "SubscriptionStore"]
