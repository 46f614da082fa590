"""Shared fixtures for the black-box tests of athena_orch's core library.

Everything here goes through the public API named in DESIGN.md:
``athena_orch.connect()``, the manager's ``queue`` / ``registry`` / ``router``, and the
seed-compatible stores ``Database``, ``EpisodicStore``, ``GraphStore``, ``MetaStore``.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta

import pg_cluster
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


# --------------------------------------------------------------------------- backends
# Every test that takes ``orch`` (or ``db``) runs twice: on an in-memory DuckDB and on a
# fresh schema of a PostgreSQL server. The server is $ATHENA_TEST_PG when set (.ci/run
# starts one), else a throw-away cluster this session starts when PostgreSQL's server
# binaries are installed; without either, the PostgreSQL runs skip and say why.

BACKENDS = ["duckdb", "postgresql"]


@pytest.fixture(scope="session")
def postgres_server():
    """The URL of a PostgreSQL server the tests may create schemas in."""
    url = os.environ.get("ATHENA_TEST_PG")
    if url:
        yield url
        return
    with pg_cluster.throwaway("ATHENA_TEST_PG is not set (.ci/run starts one)") as (url, _):
        yield url


@pytest.fixture
def database_url(request):
    """A factory of fresh, empty databases of the test's backend: ``None`` for an
    in-memory DuckDB, or a PostgreSQL URL with a schema of its own (dropped afterwards)."""
    backend = getattr(request, "param", "duckdb")
    if backend == "duckdb":
        yield lambda: None
        return
    import psycopg

    server = request.getfixturevalue("postgres_server")
    schemas = []

    def fresh() -> str:
        schema = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        schemas.append(schema)
        separator = "&" if "?" in server else "?"
        return f"{server}{separator}options=-csearch_path%3D{schema}"

    yield fresh
    with psycopg.connect(server, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def pytest_generate_tests(metafunc):
    """Parametrise every test that reaches a database fixture over both backends, unless
    it names its backend itself (``postgres_only``)."""
    if "database_url" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        if "database_url" in marker.args[0]:
            return
    metafunc.parametrize("database_url", BACKENDS, indirect=True)


postgres_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


# --------------------------------------------------------------------------- manager


@pytest.fixture
def orch(database_url):
    """A fresh OrchestrationManager on the test's backend, closed after the test."""
    manager = athena_orch.connect(database_url())
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
def db(database_url):
    from athena_orch.stores import open_database

    database = open_database(database_url())
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


@pytest.fixture
def unchanged(orch):
    """``with unchanged():`` asserts that every table's contents (not just its row counts)
    are the same after the block as before it: a refused call changed nothing."""
    from contextlib import contextmanager

    @contextmanager
    def _unchanged(manager=None):
        db = (manager or orch).db
        (manager or orch).router.log.flush()  # decisions are written behind
        before = db.table_contents()
        yield
        after = db.table_contents()
        for table in before:
            assert after[table] == before[table], f"{table} changed"

    return _unchanged
