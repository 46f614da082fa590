"""Storage: the only package with SQL. One database (DuckDB by default, or PostgreSQL),
three stores over it."""

from __future__ import annotations

from pathlib import Path

from .base import SQLDatabase, Tracer
from .database import Database
from .episodic import EpisodicStore
from .graph import GraphStore
from .meta import MetaMemoryStore, MetaStore
from .postgres import PostgresDatabase, is_postgres_url


def open_database(target: str | Path | None = None, *, read_only: bool = False,
                  tracer: Tracer | None = None) -> SQLDatabase:
    """A ``postgresql://`` URL opens PostgreSQL; a file path DuckDB; nothing, DuckDB in memory."""
    if is_postgres_url(target):
        return PostgresDatabase(target, read_only=read_only, tracer=tracer)
    return Database(target or ":memory:", read_only=read_only, tracer=tracer)


__all__ = ["Database", "PostgresDatabase", "SQLDatabase", "open_database", "EpisodicStore",
           "GraphStore", "MetaStore", "MetaMemoryStore"]
