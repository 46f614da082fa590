"""Fenced attempts: each hand-out of a task is a new attempt, and a caller that names an
attempt which is no longer current is refused (StaleAttemptError) and changes nothing.

The classic lease-without-fencing bug: a worker whose lease ran out finishes the attempt
of the agent the task was handed to next. These tests run on both backends."""

from __future__ import annotations

from datetime import datetime

import pandas as pd
import pytest
from conftest import FakeClock
from invariants import check_invariants
from together import at_once

import athena_orch
from athena_orch.exceptions import (
    DuplicateTaskError,
    InvalidTransitionError,
    StaleAttemptError,
    ValidationError,
)
from athena_orch.models import TaskStatus
from athena_orch.stores import PostgresDatabase


@pytest.fixture
def team(orch):
    for agent in ("alice", "bob"):
        orch.registry.register_agent(agent, ["python"])
    orch.queue.lease_seconds = 10
    return orch


def _handed_to_bob(orch, clock):
    """A task alice claimed and started (attempt 1) whose lease ran out, requeued and now
    running under bob (attempt 2)."""
    q = orch.queue
    task_id = q.create_task("build", "code", requirements=["python"])
    first = q.claim_task("alice")
    q.start_task(task_id, agent_id="alice", attempt=first.attempt)
    clock.advance(11)
    assert q.requeue_stale() == [task_id]
    clock.advance(60)  # past the retry back-off
    second = q.claim_task("bob")
    q.start_task(task_id, agent_id="bob", attempt=second.attempt)
    return task_id, first, second


def test_every_hand_out_is_a_new_attempt(team, clock):
    q = team.queue
    task_id = q.create_task("build", "code", requirements=["python"])
    assert q.get_task_status(task_id).attempt == 0
    claimed = q.claim_task("alice")
    assert claimed.attempt == 1 and q.get_task_status(task_id).attempt == 1
    q.fail_task(task_id, "flaky", agent_id="alice", attempt=1)
    assert q.get_task_status(task_id).attempt == 1  # requeued: over, until handed out again
    assert q.assign_task(task_id, "bob").attempt == 2
    started = q.start_task(task_id, agent_id="bob", attempt=2)
    assert started.attempt == 2 and started.status is TaskStatus.RUNNING
    batch = q.create_tasks([{"content": f"t{i}", "task_type": "code"} for i in range(3)])
    assert [t.attempt for t in q.claim_tasks("alice", 3, start=True)] == [1, 1, 1]
    assert {q.get_task_status(t).attempt for t in batch} == {1}


def test_a_stale_attempt_is_refused_everywhere_and_changes_nothing(team, clock, unchanged):
    q = team.queue
    task_id, first, second = _handed_to_bob(team, clock)
    assert (first.attempt, second.attempt) == (1, 2)
    stale = {"agent_id": "alice", "attempt": 1}
    with unchanged():
        with pytest.raises(StaleAttemptError, match="attempt 1 of agent 'alice' is no longer "
                                                    "current; attempt 2 is held by 'bob'"):
            q.complete_task(task_id, "late result", **stale)
        with pytest.raises(StaleAttemptError):
            q.fail_task(task_id, "late failure", **stale)
        with pytest.raises(StaleAttemptError):
            q.heartbeat(task_id, **stale)
        with pytest.raises(StaleAttemptError):
            q.start_task(task_id, **stale)
        with pytest.raises(StaleAttemptError):  # the right agent, an old attempt
            q.complete_task(task_id, "late", agent_id="bob", attempt=1)
        with pytest.raises(StaleAttemptError):  # only the agent named
            q.complete_task(task_id, "late", agent_id="alice")
        with pytest.raises(StaleAttemptError):
            q.complete_tasks([{"task_id": task_id, "result": "late", "attempt": 1}],
                             agent_id="alice")
    # the rightful attempt goes on and finishes
    assert q.heartbeat(task_id, agent_id="bob", attempt=2) == [task_id]
    done = q.complete_task(task_id, "bob's result", agent_id="bob", attempt=2)
    assert (done.status, done.result, done.assigned_to) == (TaskStatus.COMPLETED,
                                                             "bob's result", "bob")
    assert team.registry.get_agent("bob").total_completed == 1
    assert team.registry.get_agent("alice").total_completed == 0


def test_a_stale_error_is_an_invalid_transition(team, clock):
    task_id, _, _ = _handed_to_bob(team, clock)
    with pytest.raises(InvalidTransitionError) as info:
        team.queue.fail_task(task_id, "late", agent_id="alice", attempt=1)
    assert isinstance(info.value, StaleAttemptError)
    assert (info.value.task_id, info.value.status, info.value.action) == (
        task_id, "running", "fail")


def test_an_attempt_ends_when_its_task_is_requeued(team, clock, unchanged):
    """Between the requeue and the next hand-out the task is pending: the old attempt is
    over, although no one holds a newer one yet."""
    q = team.queue
    task_id = q.create_task("build", "code")
    claimed = q.claim_task("alice")
    clock.advance(11)
    q.requeue_stale()
    with unchanged(), pytest.raises(StaleAttemptError, match="it is pending"):
        q.complete_task(task_id, "late", agent_id="alice", attempt=claimed.attempt)


def test_a_late_heartbeat_before_the_requeue_still_counts(team, clock):
    q = team.queue
    task_id = q.create_task("build", "code")
    claimed = q.claim_task("alice")
    clock.advance(11)  # the lease ran out, but nobody requeued it yet
    assert q.heartbeat(task_id, agent_id="alice", attempt=claimed.attempt) == [task_id]
    assert q.requeue_stale() == []


def test_the_current_attempt_in_the_wrong_state_is_an_invalid_transition(team, unchanged):
    q = team.queue
    task_id = q.create_task("build", "code")
    claimed = q.claim_task("alice")
    with unchanged(), pytest.raises(InvalidTransitionError) as info:
        q.complete_task(task_id, "not started", agent_id="alice", attempt=claimed.attempt)
    assert not isinstance(info.value, StaleAttemptError)
    assert info.value.status == "assigned"


def test_calls_that_name_no_attempt_behave_as_before(team, clock):
    """Athena-style code names no attempt: the late completion is not fenced."""
    q = team.queue
    task_id, _, _ = _handed_to_bob(team, clock)
    done = q.complete_task(task_id, "whoever finishes")
    assert done.status is TaskStatus.COMPLETED and done.assigned_to == "bob"


def test_a_bulk_completion_with_one_stale_task_refuses_the_whole_batch(team, clock, unchanged):
    q = team.queue
    stale_id, _, _ = _handed_to_bob(team, clock)
    fresh_id = q.create_task("other", "code")
    fresh = q.claim_tasks("bob", 1, start=True)[0]
    assert fresh.id == fresh_id
    records = pd.DataFrame({"task_id": [fresh_id, stale_id], "result": ["ok", "late"],
                            "attempt": [fresh.attempt, 1]})
    with unchanged(), pytest.raises(StaleAttemptError, match=stale_id):
        q.complete_tasks(records, agent_id="bob")
    records.loc[1, "attempt"] = 2
    done = q.complete_tasks(records, agent_id="bob")
    assert [t.status for t in done] == [TaskStatus.COMPLETED] * 2


@pytest.mark.parametrize("fence, message", [
    ({"attempt": -1}, "attempt must be a non-negative integer"),
    ({"attempt": "1"}, "attempt must be a non-negative integer"),
    ({"attempt": True}, "attempt must be a non-negative integer"),
    ({"attempt": 2**31}, "attempt is too large"),
    ({"agent_id": ""}, "agent_id must not be empty"),
    ({"agent_id": 7}, "agent_id must be a string"),
])
def test_bad_fences_are_validation_errors(team, unchanged, fence, message):
    q = team.queue
    task_id = q.create_task("build", "code")
    q.claim_tasks("alice", 1, start=True)
    with unchanged():
        for call in (lambda: q.complete_task(task_id, "r", **fence),
                     lambda: q.fail_task(task_id, "e", **fence),
                     lambda: q.start_task(task_id, **fence),
                     lambda: q.heartbeat(task_id, **fence)):
            with pytest.raises(ValidationError, match=message):
                call()
    with unchanged(), pytest.raises(ValidationError, match=message):
        q.complete_tasks([{"task_id": task_id, "result": "r", **fence}],
                         agent_id=fence.get("agent_id"))


def test_a_naive_clock_is_refused_before_anything_is_written(team, unchanged):
    q = team.queue
    task_id = q.create_task("build", "code")
    q.claim_task("alice")
    q.fail_task(task_id, "flaky")  # pending again, with a retry back-off to compare with
    q.clock = lambda: datetime(2030, 1, 1, 12, 0)  # no tzinfo
    with unchanged():
        for call in (lambda: q.create_task("x", "code"), lambda: q.claim_task("alice"),
                     lambda: q.get_dependency_status(task_id), lambda: q.requeue_stale()):
            with pytest.raises(ValidationError, match="aware datetime"):
                call()


@pytest.mark.parametrize("change", [
    {"priority": "high"}, {"requirements": ["python"]}, {"max_retries": 0},
    {"estimated_duration_ms": 5}, {"task_type": "other"}, {"content": "other"},
])
def test_an_idempotency_key_reused_with_anything_else_is_refused(team, unchanged, change):
    q = team.queue
    dep = q.create_task("first", "code")
    fields = {"content": "job", "task_type": "code", "dependencies": [dep],
              "idempotency_key": "job-1"}
    task_id = q.create_task(**fields)
    assert q.create_task(**fields) == task_id  # the same task again: the same id
    with unchanged(), pytest.raises(DuplicateTaskError, match="job-1"):
        q.create_task(**{**fields, **change})
    other = q.create_task("second", "code")
    with unchanged(), pytest.raises(DuplicateTaskError, match="dependencies"):
        q.create_task(**{**fields, "dependencies": [other]})


def test_requeue_stale_from_many_callers_at_once_requeues_each_task_once(team, clock):
    """Every process may run requeue_stale: each stale task is requeued by one caller, the
    others skip it without error (on PostgreSQL, four connections; on DuckDB, threads of
    the one process that may write the file)."""
    q = team.queue
    team.registry.register_agent("carol", [], {"max_concurrent_tasks": 40})
    task_ids = q.create_tasks([{"content": f"t{i}", "task_type": "t"} for i in range(40)])
    assert len(q.claim_tasks("carol", 40)) == 40
    clock.advance(11)
    others = ([athena_orch.connect(team.db.url) for _ in range(3)]
              if isinstance(team.db, PostgresDatabase) else [team] * 3)
    try:
        for manager in others:
            manager.queue.clock = clock
        managers = [team, *others]
        requeued = at_once(4, lambda i: managers[i].queue.requeue_stale())
    finally:
        for manager in others:
            if manager is not team:
                manager.close()
    assert sorted(t for ids in requeued for t in ids) == sorted(task_ids)
    assert team.registry.get_agent("carol").total_failed == 40
    assert {q.get_task_status(t).retry_count for t in task_ids} == {1}


def _statements_to_requeue(url, n: int) -> int:
    """Statements ``requeue_stale`` runs for ``n`` expired tasks, half of them without a
    retry left and each of those with a task waiting on it (to block)."""
    statements: list[str] = []
    with athena_orch.connect(url, tracer=lambda sql, params: statements.append(sql)) as orch:
        orch.queue.clock = clock = FakeClock()
        orch.registry.register_agent("a", [], {"max_concurrent_tasks": n})
        records = [{"key": f"k{i}", "content": f"t{i}", "task_type": "t",
                    "max_retries": i % 2} for i in range(n)]
        records += [{"content": f"after {i}", "task_type": "t", "dependencies": [f"k{i}"]}
                    for i in range(0, n, 2)]
        orch.queue.create_tasks(records)
        assert len(orch.queue.claim_tasks("a", n)) == n
        clock.advance(orch.queue.lease_seconds + 1)
        statements.clear()
        assert len(orch.queue.requeue_stale()) == n
        stats = orch.queue.get_queue_statistics()
        assert (stats.pending_count, stats.failed_count, stats.blocked_count) == (
            n // 2, n // 2, n // 2)
    return len(statements)


def test_requeue_stale_runs_the_same_few_statements_for_any_number_of_tasks(database_url):
    """One call, a bounded number of statements: a mass expiry does not hold the DuckDB
    lock for a statement per task."""
    few, many = _statements_to_requeue(database_url(), 4), _statements_to_requeue(
        database_url(), 400)
    assert few == many <= 16


def test_a_released_attempt_goes_back_to_the_queue_without_using_a_retry(team, clock):
    """A worker that stops hands its attempt back: pending again at once, no retry used,
    no failure counted, and the next hand-out is a new attempt."""
    q = team.queue
    task_id = q.create_task("build", "code")
    claimed = q.claim_tasks("alice", 1, start=True)[0]
    released = q.release_task(task_id, agent_id="alice", attempt=claimed.attempt,
                              reason="worker stopping")
    assert (released.status, released.retry_count, released.assigned_to,
            released.retry_until) == (TaskStatus.PENDING, 0, None, None)
    assert team.registry.get_agent("alice").total_failed == 0
    history = q.get_task_history(task_id)[-1]
    assert (history["from_status"], history["to_status"], history["detail"]) == (
        "running", "pending", "released: worker stopping")
    again = q.claim_task("bob")
    assert (again.id, again.attempt) == (task_id, claimed.attempt + 1)
    check_invariants(team)


def test_a_stale_or_wrong_release_is_refused_and_changes_nothing(team, clock, unchanged):
    q = team.queue
    task_id, _, _ = _handed_to_bob(team, clock)
    pending = q.create_task("waiting", "code", dependencies=[task_id])
    with unchanged():
        with pytest.raises(StaleAttemptError):
            q.release_task(task_id, agent_id="alice", attempt=1)
        with pytest.raises(InvalidTransitionError, match="cannot release task .*: it is pending"):
            q.release_task(pending)
        with pytest.raises(ValidationError, match="reason must be a string"):
            q.release_task(task_id, agent_id="bob", attempt=2, reason=5)
