"""How many statements each queue call sends to the database, pinned through the tracer
(issue 17): on a DuckDB file every statement costs milliseconds, so a count that creeps
up is a call that got slower. BEGIN and COMMIT count like any other statement.

DuckDB runs a call whose writes are one statement without BEGIN/COMMIT (a lone
statement commits atomically); PostgreSQL does too where no read locks anything (create,
start, heartbeat), and keeps its transaction where reads lock (the agent's row before a
claim, the tasks in id order before a completion or release), plus its NOTIFY of work.
Each scenario also checks that the call did its whole job (history, results, figures),
so a count cannot drop by losing a write.
"""

from __future__ import annotations

import pytest

import athena_orch
from athena_orch.exceptions import StaleAttemptError

#: statements per call: DuckDB file, PostgreSQL
EXPECTED = {
    "duckdb": {"create": 1, "claim": 2, "start": 1, "heartbeat": 1, "complete": 3,
               "fail_retry": 5, "fail_for_good": 6, "release": 2, "stale_complete": 1},
    "postgresql": {"create": 2, "claim": 5, "start": 1, "heartbeat": 1, "complete": 6,
                   "fail_retry": 6, "fail_for_good": 7, "release": 5, "stale_complete": 3},
}
LIFECYCLE_GOAL = 8  # create + claim + start + complete on DuckDB, BEGIN/COMMIT included


@pytest.fixture
def traced(database_url, request, tmp_path):
    """(manager, statements seen) on a DuckDB file or a fresh PostgreSQL schema, with
    one agent able to do everything the scenarios create."""
    backend = request.node.callspec.params["database_url"]
    target = database_url() or str(tmp_path / "counts.duckdb")
    seen: list[str] = []
    orch = athena_orch.connect(target, tracer=lambda sql, params: seen.append(sql))
    orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 10})
    orch.queue.create_task("warm-up", "t")  # PostgreSQL reads column types once
    orch.queue.cancel_task(orch.queue.poll_tasks()[0].id)
    try:
        yield backend, orch, seen
    finally:
        orch.close()


def _count(seen: list[str], call):
    seen.clear()
    result = call()
    return result, len(seen)


def test_lifecycle_counts(traced):
    backend, orch, seen = traced
    q, want = orch.queue, EXPECTED[backend]
    tid, n_create = _count(seen, lambda: q.create_task("c", "t", requirements=["x"]))
    task, n_claim = _count(seen, lambda: q.claim_task("w"))
    assert task.id == tid and task.attempt == 1
    _, n_start = _count(seen, lambda: q.start_task(tid, agent_id="w", attempt=1))
    _, n_heartbeat = _count(seen, lambda: q.heartbeat(tid, agent_id="w", attempt=1))
    done, n_complete = _count(seen, lambda: q.complete_task(tid, "ok", agent_id="w",
                                                             attempt=1))
    got = {"create": n_create, "claim": n_claim, "start": n_start, "heartbeat": n_heartbeat,
           "complete": n_complete}
    assert got == {k: want[k] for k in got}
    if backend == "duckdb":
        assert n_create + n_claim + n_start + n_complete <= LIFECYCLE_GOAL
    # every write of the lifecycle happened
    assert [(h["from_status"], h["to_status"], h["detail"]) for h in q.get_task_history(tid)] == [
        (None, "pending", "created"), ("pending", "assigned", "claimed"),
        ("assigned", "running", "started"), ("running", "completed", "completed")]
    stored = q.get_task_status(tid)
    assert (stored.status.value, stored.result, stored.result_task_id) == (
        "completed", "ok", done.result_task_id)
    agent = orch.registry.get_agent("w")
    assert (agent.total_completed, agent.total_failed) == (1, 0)


def test_claim_with_start_writes_both_steps_in_its_statements(traced):
    backend, orch, seen = traced
    q = orch.queue
    ids = q.create_tasks([{"content": f"c{i}", "task_type": "t"} for i in range(3)])
    tasks, n = _count(seen, lambda: q.claim_tasks("w", 3, start=True))
    assert n == EXPECTED[backend]["claim"]
    assert sorted(t.id for t in tasks) == sorted(ids)
    for tid in ids:
        assert [h["detail"] for h in q.get_task_history(tid)] == ["created", "claimed",
                                                                  "started"]


def test_failure_and_release_counts(traced):
    backend, orch, seen = traced
    q, want = orch.queue, EXPECTED[backend]
    tid = q.create_task("c", "t", max_retries=1)
    q.claim_task("w")
    retried, n_retry = _count(seen, lambda: q.fail_task(tid, "boom"))
    assert retried.status.value == "pending" and retried.retry_count == 1
    q.assign_task(tid, "w")
    failed, n_fail = _count(seen, lambda: q.fail_task(tid, "boom again"))
    assert failed.status.value == "failed"
    other = q.create_task("d", "t")
    q.claim_task("w")
    released, n_release = _count(seen, lambda: q.release_task(other))
    assert released.status.value == "pending"
    assert {"fail_retry": n_retry, "fail_for_good": n_fail, "release": n_release} == {
        k: want[k] for k in ("fail_retry", "fail_for_good", "release")}
    assert orch.registry.get_agent("w").total_failed == 2


def test_a_refused_completion_changes_nothing_and_costs_little(traced):
    backend, orch, seen = traced
    q = orch.queue
    tid = q.create_task("c", "t")
    q.claim_tasks("w", 1, start=True)
    before = orch.db.table_contents()
    seen.clear()
    with pytest.raises(StaleAttemptError):
        q.complete_task(tid, "late", agent_id="w", attempt=7)
    assert len(seen) == EXPECTED[backend]["stale_complete"]
    assert orch.db.table_contents() == before


def test_bulk_calls_cost_the_same_for_many_tasks(traced):
    """create_tasks, claim_tasks and complete_tasks send as many statements for 200
    tasks as for one."""
    backend, orch, seen = traced
    q, want = orch.queue, EXPECTED[backend]
    orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 1000})
    ids, n_create = _count(seen, lambda: q.create_tasks(
        [{"content": f"c{i}", "task_type": "t", "requirements": ["x"]} for i in range(200)]))
    tasks, n_claim = _count(seen, lambda: q.claim_tasks("w", 200, start=True))
    done, n_complete = _count(seen, lambda: q.complete_tasks({t.id: "ok" for t in tasks}))
    assert (len(tasks), len(done)) == (200, 200)
    assert (n_create, n_claim, n_complete) == (want["create"], want["claim"], want["complete"])
    assert orch.registry.get_agent("w").total_completed == 200
    assert q.get_queue_statistics().completed_count == 200
