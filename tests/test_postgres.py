"""What only the PostgreSQL backend promises: many processes and connections claiming
from one queue, SKIP LOCKED claims that never wait on each other, capacity that holds
across processes, and clear errors for a server that is not there.

The rest of the suite runs on PostgreSQL too, through the parametrised ``orch``/``db``
fixtures in conftest.py.
"""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from conftest import postgres_only
from invariants import check_invariants
from together import at_once, run_workers

import athena_orch
from athena_orch.exceptions import StorageError
from athena_orch.stores import PostgresDatabase, open_database
from athena_orch.stores.postgres import shown_target
from athena_orch.stores.sql import migrations

HERE = Path(__file__).resolve().parent


@postgres_only
@pytest.mark.parametrize("batch", [0, 5], ids=["one-at-a-time", "batches"])
def test_eight_processes_claim_every_task_exactly_once(database_url, batch, tmp_path):
    url = database_url()
    agents = [f"worker-{i}" for i in range(8)]
    with athena_orch.connect(url) as orch:
        for agent in agents:
            orch.registry.register_agent(agent, ["python"], {"max_concurrent_tasks": 20})
        ids = orch.queue.create_tasks(
            [{"content": f"task {i}", "task_type": "t", "requirements": ["python"]}
             for i in range(400)])

    reports = run_workers(HERE / "pg_claim_worker.py",
                          [[url, a, str(tmp_path), str(batch)] for a in agents], tmp_path)

    done = [tid for r in reports for tid in r["completed"]]
    assert sorted(done) == sorted(ids)  # every task once, none twice
    assert sum(1 for r in reports if r["completed"]) >= 2  # the work really was shared
    with athena_orch.connect(url) as orch:
        frame = orch.queue.to_frame()
        assert set(frame["status"]) == {"completed"}
        by_agent = Counter(frame["assigned_to"])
        assert by_agent == Counter({r["agent_id"]: r["cycles"] for r in reports if r["cycles"]})
        for tid in ids[:50]:
            claims = [h for h in orch.queue.get_task_history(tid) if h["to_status"] == "assigned"]
            assert len(claims) == 1
        for agent in agents:
            assert orch.registry.get_agent(agent).total_completed == by_agent.get(agent, 0)
        check_invariants(orch)


@postgres_only
def test_connections_claiming_for_one_agent_never_exceed_its_capacity(database_url):
    url = database_url()
    with athena_orch.connect(url) as orch:
        orch.registry.register_agent("solo", ["python"], {"max_concurrent_tasks": 3})
        orch.queue.create_tasks([{"content": f"t{i}", "task_type": "t", "requirements": ["python"]}
                                 for i in range(40)])
    managers = [athena_orch.connect(url) for _ in range(6)]
    try:
        held = at_once(6, lambda i: len(managers[i].queue.claim_tasks("solo", 3)))
    finally:
        for m in managers:
            m.close()
    assert sum(held) == 3  # six connections asked for 3 each; the agent holds 3 at most
    with athena_orch.connect(url) as orch:
        assert orch.registry.get_agent("solo").current_load == 3


@postgres_only
def test_a_claim_skips_rows_another_connection_holds_instead_of_waiting(database_url):
    url = database_url()
    first, second = athena_orch.connect(url), athena_orch.connect(url)
    try:
        for agent in ("a", "b"):
            first.registry.register_agent(agent, ["python"], {"max_concurrent_tasks": 5})
        first.queue.create_tasks([{"content": f"t{i}", "task_type": "t", "requirements": ["python"]}
                                  for i in range(4)])
        result: dict = {}
        with first.db.transaction():  # holds its claimed rows locked until the block ends
            mine = first.queue.claim_tasks("a", 2)
            worker = threading.Thread(
                target=lambda: result.update(tasks=second.queue.claim_tasks("b", 5)))
            worker.start()
            worker.join(timeout=30)
            assert not worker.is_alive(), "the second claim waited on the first's locks"
        theirs = result["tasks"]
        assert len(mine) == 2 and len(theirs) == 2
        assert not {t.id for t in mine} & {t.id for t in theirs}
    finally:
        first.close()
        second.close()


@postgres_only
def test_a_failed_statement_rolls_back_and_the_connection_stays_usable(database_url):
    url = database_url()
    with athena_orch.connect(url) as orch:
        orch.queue.create_task("keep", "t")
        with pytest.raises(StorageError, match="no_such_query_table"), orch.db.transaction():
            orch.db._run("SELECT * FROM no_such_query_table", {}, label="probe")
        assert [t.content for t in orch.queue.query_tasks()] == ["keep"]


@postgres_only
def test_connections_opening_a_new_database_at_once_migrate_it_once(database_url):
    url = database_url()

    def open_it(_: int) -> int:
        with athena_orch.connect(url) as orch:
            return orch.db.schema_version

    versions = [version for version, _, _ in migrations("postgresql")]
    opened = at_once(4, open_it)
    assert opened == [versions[-1]] * 4
    db = open_database(url)
    try:
        assert [r[0] for r in db.fetch_rows("migrations_applied")] == versions
    finally:
        db.close()


@postgres_only
def test_read_only_connection_refuses_writes(database_url):
    url = database_url()
    with athena_orch.connect(url) as orch:
        orch.queue.create_task("one", "t")
    with athena_orch.connect(url, read_only=True) as reader:
        assert len(reader.queue.to_frame()) == 1
        with pytest.raises(StorageError, match="read-only"):
            reader.queue.create_task("two", "t")


def test_unreachable_server_is_a_storage_error_without_the_password():
    with pytest.raises(StorageError, match="cannot connect") as caught:
        PostgresDatabase("postgresql://someone:hunter2@127.0.0.1:1/nothing?connect_timeout=2")
    assert "hunter2" not in str(caught.value)


def test_urls_are_shown_without_passwords():
    assert shown_target("postgresql://u:pw@h:5432/db") == "postgresql://u:***@h:5432/db"
    assert shown_target("postgresql://u@h/db?password=pw&x=1") == "postgresql://u@h/db?password=***&x=1"
    assert shown_target("orch.duckdb") == "orch.duckdb"


@postgres_only
def test_connections_submitting_one_idempotency_key_at_once_get_one_task(database_url):
    url = database_url()
    managers = [athena_orch.connect(url) for _ in range(4)]
    try:
        ids = at_once(4, lambda i: managers[i].queue.create_task(
            "once", "t", idempotency_key="job-1"))
        assert len(ids) == 4 and len(set(ids)) == 1
        assert len(managers[0].queue.query_tasks()) == 1
    finally:
        for m in managers:
            m.close()


def test_without_psycopg_the_error_says_what_to_install(monkeypatch):
    import athena_orch.stores.postgres as backend

    monkeypatch.setattr(backend, "psycopg", None)
    with pytest.raises(StorageError, match=r"athena-orch\[postgres\]"):
        athena_orch.connect("postgresql://u@127.0.0.1:1/db")
