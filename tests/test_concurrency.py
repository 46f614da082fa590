"""Threads sharing one manager on a file database: no double claims, no lost work."""

from __future__ import annotations

import threading
from collections import Counter

import pytest

import athena_orch
from athena_orch.models import TaskStatus

JOIN_TIMEOUT_S = 60


@pytest.fixture
def file_orch(tmp_path):
    manager = athena_orch.connect(str(tmp_path / "concurrency.duckdb"))
    try:
        yield manager
    finally:
        manager.close()


def _run_threads(n, target):
    """Run ``target(i)`` in n threads started together; return exceptions raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []
    lock = threading.Lock()

    def runner(i):
        try:
            barrier.wait(timeout=JOIN_TIMEOUT_S)
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=runner, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(JOIN_TIMEOUT_S)
    assert not any(t.is_alive() for t in threads), "a worker thread hung"
    return errors


def test_eight_threads_claim_each_task_exactly_once(file_orch):
    q, reg = file_orch.queue, file_orch.registry
    agents = [f"worker-{i}" for i in range(8)]
    for a in agents:
        reg.register_agent(a, ["py"], {"max_concurrent_tasks": 1000})
    ids = q.create_tasks([{"content": f"job {i}", "task_type": "t", "requirements": ["py"]}
                          for i in range(64)])
    claims: dict[str, list[str]] = {a: [] for a in agents}

    def worker(i):
        agent = agents[i]
        while True:
            task = q.claim_task(agent)
            if task is None:
                return
            assert task.assigned_to == agent
            claims[agent].append(task.id)

    errors = _run_threads(8, worker)
    assert errors == []
    all_claims = [tid for lst in claims.values() for tid in lst]
    dupes = [tid for tid, n in Counter(all_claims).items() if n > 1]
    assert dupes == []
    assert sorted(all_claims) == sorted(ids)
    for agent, got in claims.items():
        for tid in got:
            t = q.get_task_status(tid)
            assert t.status == TaskStatus.ASSIGNED and t.assigned_to == agent
        assert reg.get_agent_health(agent)["current_load"] == len(got)
    assert q.poll_tasks(status="pending") == []


def test_concurrent_claims_never_exceed_capacity(file_orch):
    q, reg = file_orch.queue, file_orch.registry
    reg.register_agent("a", [], {"max_concurrent_tasks": 3})
    reg.register_agent("b", [], {"max_concurrent_tasks": 3})
    q.create_tasks([{"content": f"job {i}", "task_type": "t"} for i in range(20)])
    got: list[tuple[str, str]] = []
    lock = threading.Lock()

    def worker(i):
        agent = "ab"[i % 2]
        for _ in range(6):
            task = q.claim_task(agent)
            if task is not None:
                with lock:
                    got.append((agent, task.id))

    errors = _run_threads(8, worker)
    assert errors == []
    per_agent = Counter(a for a, _ in got)
    assert per_agent == {"a": 3, "b": 3}
    assert len({tid for _, tid in got}) == 6
    assert reg.get_agent_health("a")["current_load"] == 3
    assert reg.get_agent_health("b")["current_load"] == 3
    assert q.get_queue_statistics().pending_count == 14


def test_four_threads_create_claim_start_complete(file_orch):
    q, reg = file_orch.queue, file_orch.registry
    per_thread = 10
    for i in range(4):
        reg.register_agent(f"w{i}", [f"cap-{i}"], {"max_concurrent_tasks": 2})
    made: dict[int, list[str]] = {i: [] for i in range(4)}

    def worker(i):
        agent = f"w{i}"
        for n in range(per_thread):
            tid = q.create_task(f"w{i} job {n}", "t", requirements=[f"cap-{i}"])
            made[i].append(tid)
            task = q.claim_task(agent)
            assert task is not None and task.id == tid
            q.start_task(tid)
            q.complete_task(tid, f"result {i}-{n}", metrics={"duration_ms": 10})

    errors = _run_threads(4, worker)
    assert errors == []
    all_ids = [tid for lst in made.values() for tid in lst]
    assert len(set(all_ids)) == 4 * per_thread
    stats = q.get_queue_statistics()
    assert stats.completed_count == 4 * per_thread
    assert stats.pending_count == stats.assigned_count == stats.running_count == 0
    for i, ids in made.items():
        health = reg.get_agent_health(f"w{i}")
        assert health["total_completed"] == per_thread
        assert health["current_load"] == 0
        for n, tid in enumerate(ids):
            t = q.get_task_status(tid)
            assert t.result == f"result {i}-{n}" and t.assigned_to == f"w{i}"
    assert len(q.query_tasks({"limit": 1000})) == 4 * per_thread
