"""The one object users hold: a database, its stores, the queue, registry and router."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from .agent_registry import AgentRegistry
from .capability_router import CapabilityRouter
from .exceptions import OrchestrationError
from .stores import EpisodicStore, GraphStore, MetaStore, open_database
from .task_queue import TaskQueue

logger = logging.getLogger(__name__)


class OrchestrationManager:
    """Everything on one database. Use :func:`athena_orch.connect` to make one.

    PostgreSQL only: ``pool_size`` caps the connections this process's threads use at once,
    ``pool_timeout`` is how long a call waits for one. Other keyword settings are passed to the queue (``lease_seconds``,
    ``retry_backoff_seconds``, ``retry_backoff_max_seconds``, ``clock``).
    """

    def __init__(self, path: str | Path | None = None, *, read_only: bool = False,
                 tracer: Any = None, pool_size: int | None = None,
                 pool_timeout: float | None = None, **queue_settings: Any):
        self._closed = False
        self.db = open_database(path, read_only=read_only, tracer=tracer, pool_size=pool_size,
                                pool_timeout=pool_timeout)
        self.episodic = EpisodicStore(self.db)
        self.graph = GraphStore(self.db)
        self.meta = MetaStore(self.db)
        self.queue = TaskQueue(self.episodic, self.graph, self.meta, **queue_settings)
        self.registry = AgentRegistry(self.graph, self.meta, clock=self.now)
        self.router = CapabilityRouter(self.registry, self.meta, clock=self.now)
        self.events = self.queue.events

    def now(self) -> datetime:
        """The one clock of the queue, registry and router: ``queue.clock`` (set it to
        run on simulated time), checked to be timezone-aware."""
        return self.queue._now()

    @property
    def path(self) -> str:
        return self.db.path

    @property
    def closed(self) -> bool:
        """Whether ``close()`` was called: nothing can be read or written any more."""
        return self._closed

    def close(self) -> None:
        """Write the decisions still waiting, stop event delivery, close the database.
        If the waiting decisions cannot be written (the database failed), that is logged
        and the manager closes all the same."""
        if self._closed:
            return
        self._closed = True
        try:
            self.router.log.close()
        except OrchestrationError as exc:
            logger.warning("closing %s: %d routing decisions could not be written: %s",
                           self.db.path, self.router.log.pending, exc)
        finally:
            self.events.close()
            self.db.close()

    def __enter__(self) -> OrchestrationManager:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _repr_html_(self) -> str:
        from .display import manager_html
        return manager_html(self)

    def __repr__(self) -> str:
        stats = self.queue.get_queue_statistics()
        agents = self.registry.get_agent_statistics()
        return (f"<OrchestrationManager {self.db.path!r}: {stats.total_count} tasks "
                f"({stats.pending_count} pending, {stats.running_count} running), "
                f"{agents.total_agents} agents>")


def connect(path: str | Path | None = None, *, read_only: bool = False,
            **settings: Any) -> OrchestrationManager:
    """Open (or create) an orchestration database: a DuckDB file path, a
    ``postgresql://`` URL, or nothing for an in-memory DuckDB."""
    return OrchestrationManager(path, read_only=read_only, **settings)
