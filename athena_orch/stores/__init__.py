"""Storage: the only package with SQL. One :class:`Database`, three stores over it."""

from .database import Database
from .episodic import EpisodicStore
from .graph import GraphStore
from .meta import MetaMemoryStore, MetaStore

__all__ = ["Database", "EpisodicStore", "GraphStore", "MetaStore", "MetaMemoryStore"]
