"""claim_tasks / complete_tasks: the bulk worker's path keeps every single-task rule."""

import pandas as pd
import pytest

from athena_orch import exceptions
from athena_orch.models import TaskStatus


@pytest.fixture
def worker(registry):
    registry.register_agent("w", ["python"], {"max_concurrent_tasks": 3})
    return "w"


def test_claim_tasks_stops_at_free_capacity_in_queue_order(queue, worker, clock):
    low = queue.create_task("low", "t", "low")
    clock.advance(0.001)
    high = [queue.create_task(f"high {i}", "t", "high") for i in range(3)]
    clock.advance(0.001)
    queue.create_task("medium", "t", "medium")
    claimed = queue.claim_tasks(worker, 10)
    assert [t.id for t in claimed] == high
    assert all(t.status is TaskStatus.ASSIGNED and t.assigned_to == worker for t in claimed)
    assert queue.claim_tasks(worker, 10) == []          # at capacity
    queue.start_task(high[0])
    queue.complete_task(high[0], "ok")
    assert [t.content for t in queue.claim_tasks(worker, 10)] == ["medium"]
    assert queue.get_task_status(low).status is TaskStatus.PENDING


def test_claim_tasks_skips_what_the_agent_cannot_do_or_is_not_ready(queue, worker):
    first = queue.create_task("first", "t")
    queue.create_task("needs rust", "t", requirements=["rust"])
    queue.create_task("waits", "t", dependencies=[first])
    assert [t.id for t in queue.claim_tasks(worker, 5)] == [first]


def test_claim_tasks_with_start_runs_them_and_logs_both_steps(queue, worker):
    ids = [queue.create_task(f"t{i}", "t") for i in range(2)]
    claimed = queue.claim_tasks(worker, 2, start=True)
    assert [t.status for t in claimed] == [TaskStatus.RUNNING] * 2
    assert all(t.started_at is not None for t in claimed)
    steps = [(h["from_status"], h["to_status"]) for h in queue.get_task_history(ids[0])]
    assert steps == [(None, "pending"), ("pending", "assigned"), ("assigned", "running")]


def test_claim_tasks_bad_input(queue, worker):
    queue.create_task("t", "t")
    assert queue.claim_tasks(worker, 0) == []
    with pytest.raises(exceptions.ValidationError, match="n"):
        queue.claim_tasks(worker, -1)
    with pytest.raises(exceptions.AgentNotFoundError, match="ghost"):
        queue.claim_tasks("ghost", 1)
    assert queue.get_queue_statistics().pending_count == 1


def test_complete_tasks_releases_dependents_and_counts_each_success(queue, registry, worker):
    a, b = queue.create_task("a", "t"), queue.create_task("b", "t")
    both = queue.create_task("after both", "t", dependencies=[a, b])
    queue.claim_tasks(worker, 2, start=True)
    done = queue.complete_tasks(pd.DataFrame({"task_id": [b, a], "result": ["rb", "ra"],
                                              "duration_ms": [20, 10]}))
    assert [(t.id, t.result, t.execution_duration_ms) for t in done] == [(b, "rb", 20), (a, "ra", 10)]
    assert queue.get_task_status(a).result == "ra"
    assert queue.get_dependency_status(both)["ready"]
    health = registry.get_agent_health(worker)
    assert (health["total_completed"], health["avg_completion_ms"], health["current_load"]) == (2, 15.0, 0)


def test_complete_tasks_is_all_or_nothing(queue, registry, worker):
    a, b = queue.create_task("a", "t"), queue.create_task("b", "t")
    queue.claim_tasks(worker, 1, start=True)          # a runs, b stays pending
    with pytest.raises(exceptions.InvalidTransitionError, match=b):
        queue.complete_tasks({a: "ok", b: "ok"})
    with pytest.raises(exceptions.TaskNotFoundError, match="nope"):
        queue.complete_tasks({a: "ok", "nope": "ok"})
    with pytest.raises(exceptions.ValidationError, match="twice"):
        queue.complete_tasks([{"task_id": a, "result": "x"}, {"task_id": a, "result": "y"}])
    with pytest.raises(exceptions.ValidationError, match="result"):
        queue.complete_tasks({a: 42})
    assert queue.get_task_status(a).status is TaskStatus.RUNNING
    assert queue.get_task_status(a).result is None
    assert registry.get_agent_health(worker)["total_completed"] == 0
    assert queue.complete_tasks({}) == []
