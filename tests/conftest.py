"""Shared fixtures for the black-box tests of athena_orch's core library.

Everything here goes through the public API named in DESIGN.md:
``athena_orch.connect()``, the manager's ``queue`` / ``registry`` / ``router``, and the
seed-compatible stores ``Database``, ``EpisodicStore``, ``GraphStore``, ``MetaStore``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

import athena_orch

# A fixed, aware UTC start for the fake clock: tests never depend on the wall clock.
CLOCK_START = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


class FakeClock:
    """A zero-arg callable returning an aware UTC datetime; ``advance`` moves it forward."""

    def __init__(self, start: datetime = CLOCK_START):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now = self.now + timedelta(seconds=seconds)
        return self.now


def _close(obj) -> None:
    close = getattr(obj, "close", None)
    if callable(close):
        close()


# --------------------------------------------------------------------------- manager


@pytest.fixture
def orch():
    """An in-memory OrchestrationManager, closed after the test."""
    manager = athena_orch.connect()
    try:
        yield manager
    finally:
        manager.close()


@pytest.fixture
def queue(orch):
    return orch.queue


@pytest.fixture
def registry(orch):
    return orch.registry


@pytest.fixture
def router(orch):
    return orch.router


@pytest.fixture
def clock(orch):
    """A fake clock installed on ``orch.queue`` (the queue reads time only through it)."""
    fake = FakeClock()
    orch.queue.clock = fake
    return fake


@pytest.fixture
def make_clock():
    """Factory for fake clocks, for tests that build their own manager (e.g. hypothesis)."""
    return FakeClock


# --------------------------------------------------------------- seed-style fixtures


@pytest.fixture
def db():
    from athena_orch.stores import Database

    database = Database(":memory:")
    try:
        yield database
    finally:
        _close(database)


@pytest.fixture
def episodic_store(db):
    from athena_orch.stores import EpisodicStore

    return EpisodicStore(db)


@pytest.fixture
def graph_store(db):
    from athena_orch.stores import GraphStore

    return GraphStore(db)


@pytest.fixture
def meta_store(db):
    from athena_orch.stores import MetaStore

    return MetaStore(db)


# -------------------------------------------------------------------------- helpers


def snapshot_state(orch, agent_ids=()):
    """Everything a caller can observe about tasks and the given agents."""
    tasks = orch.queue.query_tasks({"limit": 100_000})
    agents = {}
    for agent_id in agent_ids:
        agent = orch.registry.get_agent(agent_id)
        agents[agent_id] = None if agent is None else agent.to_dict()
    stats = orch.registry.get_agent_statistics()
    return {
        "tasks": {t.id: t.to_dict() for t in tasks},
        "order": [t.id for t in tasks],
        "history": {t.id: len(orch.queue.get_task_history(t.id)) for t in tasks},
        "agents": agents,
        "agent_health": {a: orch.registry.get_agent_health(a) for a in agent_ids},
        "total_agents": stats.total_agents,
        "skills": dict(stats.skill_distribution),
        "queue_stats": orch.queue.get_queue_statistics().to_dict(),
    }


@pytest.fixture
def state(orch):
    """``state(agent_ids=())`` -> a snapshot to compare before/after an error path."""

    def _state(agent_ids=()):
        return snapshot_state(orch, agent_ids)

    return _state


@pytest.fixture
def transitions():
    """``transitions(history)`` -> the to_status list, without a leading creation entry."""

    def _transitions(history):
        statuses = [str(h["to_status"]) for h in history]
        if history and statuses[0] == "pending" and not history[0].get("from_status"):
            statuses = statuses[1:]
        return statuses

    return _transitions
