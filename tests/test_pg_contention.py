"""Many processes on one PostgreSQL queue, hostile on purpose: a fan-in DAG (children
shared by many parents, so completions release the same rows at once), leases short
enough to run out while workers stall, and every worker running ``requeue_stale``.

What must hold: no error reaches a caller but the refusal of a stale attempt; each task is
completed exactly once, by the agent holding its current attempt; every lease that ran out
is counted once; the queue's invariants hold."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest
from conftest import postgres_only
from invariants import check_invariants
from together import run_workers

import athena_orch

HERE = Path(__file__).resolve().parent
WORKERS = 8


def _fan_in_dag(orch, seed: int = 7) -> list[str]:
    """Three layers: 48 roots; 24 tasks each waiting on 10 roots; 8 waiting on 8 of those."""
    rng = random.Random(seed)
    records = [{"key": f"a{i}", "content": f"root {i}", "task_type": "t",
                "max_retries": 1000} for i in range(48)]
    records += [{"key": f"b{i}", "content": f"mid {i}", "task_type": "t", "max_retries": 1000,
                 "dependencies": [f"a{j}" for j in rng.sample(range(48), 10)]}
                for i in range(24)]
    records += [{"key": f"c{i}", "content": f"top {i}", "task_type": "t", "max_retries": 1000,
                 "dependencies": [f"b{j}" for j in rng.sample(range(24), 8)]} for i in range(8)]
    return orch.queue.create_tasks(records)


@postgres_only
@pytest.mark.parametrize("batch", [0, 4], ids=["one-at-a-time", "batches"])
def test_hostile_workers_complete_each_task_once_by_its_current_attempt(database_url, batch,
                                                                        tmp_path):
    url = database_url()
    agents = [f"worker-{i}" for i in range(WORKERS)]
    with athena_orch.connect(url) as orch:
        for agent in agents:
            orch.registry.register_agent(agent, [], {"max_concurrent_tasks": 8})
        task_ids = _fan_in_dag(orch)
    reports = run_workers(HERE / "pg_contention_worker.py",
                          [[url, a, str(tmp_path), str(batch), str(i)]
                           for i, a in enumerate(agents)], tmp_path)

    assert [r["errors"] for r in reports] == [[]] * WORKERS
    completed_by = Counter(t for r in reports for t in r["completed"])
    assert sorted(completed_by) == sorted(task_ids)
    assert set(completed_by.values()) == {1}, "a task was reported completed twice"
    requeued = sum(r["requeued"] for r in reports)
    print(f"\n{WORKERS} workers, {len(task_ids)} tasks: {requeued} leases ran out, "
          f"{sum(r['stale'] for r in reports)} stale attempts refused, 0 errors")
    assert requeued > 0, "no lease ran out: the test did not test fencing"
    with athena_orch.connect(url) as orch:
        for report in reports:
            for task_id, attempt in report["completed"].items():
                task = orch.queue.get_task_status(task_id)
                assert (task.status.value, task.assigned_to, task.attempt) == (
                    "completed", report["agent_id"], attempt)
        history = orch.queue.history_frame()
        assert (history["to_status"] == "completed").sum() == len(task_ids)
        team = orch.registry.to_frame()
        assert team["total_completed"].sum() == len(task_ids)
        assert team["total_failed"].sum() == requeued  # each expiry counted once
        check_invariants(orch)
