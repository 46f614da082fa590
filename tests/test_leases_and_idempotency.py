"""Leases (claim/start/heartbeat/requeue_stale), cancellation and idempotent creation.

Time comes from a fake clock installed on the queue (``orch.queue.clock``), so leases and
back-offs are exact. ``check_invariants`` runs after every scenario.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from invariants import check_invariants

import athena_orch
from athena_orch.exceptions import (
    AgentNotFoundError,
    DuplicateTaskError,
    InvalidTransitionError,
    OrchestrationError,
    StaleAttemptError,
    TaskNotFoundError,
    ValidationError,
)
from athena_orch.models import TaskStatus

LEASE = 30.0
BACKOFF = 2.0


@pytest.fixture
def q(orch, clock):
    """The queue with a fake clock, a 30 s lease and a 2 s first back-off."""
    orch.queue.lease_seconds = LEASE
    orch.queue.retry_backoff_seconds = BACKOFF
    return orch.queue


@pytest.fixture
def reg(orch):
    orch.registry.register_agent("alice", ["py"], {"max_concurrent_tasks": 10})
    orch.registry.register_agent("bob", ["py"], {"max_concurrent_tasks": 10})
    return orch.registry


def lease(seconds=LEASE):
    return timedelta(seconds=seconds)


def statuses(q, ids):
    return [q.get_task_status(t).status.value for t in ids]


# --------------------------------------------------------------------------- lease setting


def test_connect_passes_lease_and_backoff_settings_to_the_queue():
    with athena_orch.connect(lease_seconds=7, retry_backoff_seconds=0.5) as orch:
        assert orch.queue.lease_seconds == 7
        assert orch.queue.retry_backoff_seconds == 0.5


def test_claim_and_assign_set_lease_to_now_plus_lease_seconds(orch, q, reg, clock):
    a, b = q.create_task("a", "t", requirements=["py"]), q.create_task("b", "t")
    claimed = q.claim_task("alice")
    assert claimed.id == a
    assert claimed.lease_until == clock.now + lease()
    assert q.get_task_status(a).lease_until == clock.now + lease()
    clock.advance(5)
    assigned = q.assign_task(b, "bob")
    assert assigned.lease_until == clock.now + lease()
    check_invariants(orch)


def test_start_and_heartbeat_renew_the_lease(orch, q, reg, clock):
    tid = q.create_task("a", "t")
    q.claim_task("alice")
    clock.advance(10)
    started = q.start_task(tid)
    assert started.lease_until == clock.now + lease()
    clock.advance(20)
    assert q.heartbeat(tid) == [tid]
    assert q.get_task_status(tid).lease_until == clock.now + lease()
    # a changed setting applies to the next renewal
    q.lease_seconds = 90
    clock.advance(1)
    q.heartbeat(task_id=tid)
    assert q.get_task_status(tid).lease_until == clock.now + lease(90)
    check_invariants(orch)


def test_heartbeat_by_agent_renews_all_and_only_that_agents_tasks(orch, q, reg, clock):
    ids = q.create_tasks([{"content": f"c{i}", "task_type": "t"} for i in range(5)])
    first = clock.now
    mine = [q.claim_task("alice").id for _ in range(3)]
    theirs = q.claim_task("bob").id
    q.start_task(mine[0])  # running and assigned tasks both count
    clock.advance(25)
    renewed = q.heartbeat(agent_id="alice")
    assert sorted(renewed) == sorted(mine)
    for tid in mine:
        assert q.get_task_status(tid).lease_until == clock.now + lease()
    assert q.get_task_status(theirs).lease_until == first + lease()
    untouched = (set(ids) - set(mine) - {theirs}).pop()
    assert q.get_task_status(untouched).lease_until is None
    # an agent holding nothing renews nothing
    reg.register_agent("carol", [])
    assert q.heartbeat(agent_id="carol") == []
    check_invariants(orch)


@pytest.mark.parametrize("state", ["pending", "completed", "failed", "cancelled", "blocked"])
def test_heartbeat_on_a_task_not_held_is_an_invalid_transition(orch, q, reg, clock, state):
    root = q.create_task("root", "t", max_retries=0)
    tid = q.create_task("x", "t", dependencies=[root]) if state == "blocked" else root
    if state in ("completed", "failed", "blocked"):
        q.assign_task(root, "alice")
        q.start_task(root)
        if state == "completed":
            q.complete_task(root, "ok")
        else:
            q.fail_task(root, "boom")
    elif state == "cancelled":
        q.cancel_task(tid)
    assert q.get_task_status(tid).status.value == state
    before = q.get_task_status(tid)
    with pytest.raises(InvalidTransitionError) as info:
        q.heartbeat(tid)
    assert tid in str(info.value) and state in str(info.value)
    assert q.get_task_status(tid) == before
    check_invariants(orch)


def test_heartbeat_errors_name_what_is_wrong(orch, q, reg):
    with pytest.raises(TaskNotFoundError):
        q.heartbeat("no-such-task")
    with pytest.raises(AgentNotFoundError, match="ghost"):
        q.heartbeat(agent_id="ghost")
    tid = q.create_task("a", "t")
    q.assign_task(tid, "alice")
    with pytest.raises(ValidationError):
        q.heartbeat()
    with pytest.raises(ValidationError, match="attempt needs the task_id"):
        q.heartbeat(attempt=1)
    assert q.heartbeat(tid, agent_id="alice") == [tid]  # with a task id, agent_id fences
    with pytest.raises(StaleAttemptError, match="agent 'bob' is no longer current"):
        q.heartbeat(tid, agent_id="bob")
    check_invariants(orch)


# --------------------------------------------------------------------------- requeue_stale


def test_requeue_stale_retries_expired_leases_and_leaves_fresh_ones(orch, q, reg, clock):
    stale_a, stale_b, fresh = q.create_tasks(
        [{"content": f"c{i}", "task_type": "t"} for i in range(3)])
    q.assign_task(stale_a, "alice")
    q.assign_task(stale_b, "alice")
    q.start_task(stale_b)
    q.assign_task(fresh, "bob")
    assert reg.get_agent("alice").current_load == 2
    clock.advance(LEASE - 1)
    q.heartbeat(fresh)
    assert q.requeue_stale() == []  # nothing has run out yet
    clock.advance(2)  # alice's leases are 1 s past due, bob's has 29 s left
    now = clock.now
    requeued = q.requeue_stale(now)
    assert sorted(requeued) == sorted([stale_a, stale_b])
    for tid in requeued:
        t = q.get_task_status(tid)
        assert t.status is TaskStatus.PENDING
        assert t.retry_count == 1
        assert t.assigned_to is None and t.lease_until is None
        assert t.retry_until == now + timedelta(seconds=BACKOFF)
        assert "lease" in t.error
        history = q.get_task_history(tid)
        assert history[-1]["to_status"] == "pending"
        assert history[-1]["from_status"] in ("assigned", "running")
    alice = reg.get_agent("alice")
    assert alice.current_load == 0 and alice.total_failed == 2
    f = q.get_task_status(fresh)
    assert f.status is TaskStatus.ASSIGNED and f.assigned_to == "bob" and f.retry_count == 0
    assert reg.get_agent("bob").total_failed == 0
    # a second pass finds nothing more; the back-off holds the retried tasks back
    assert q.requeue_stale(now) == []
    assert q.claim_task("alice") is None
    clock.advance(BACKOFF)
    assert q.claim_task("alice").id in requeued
    check_invariants(orch)


def test_requeue_stale_without_now_uses_the_queue_clock(orch, q, reg, clock):
    tid = q.create_task("a", "t")
    q.claim_task("alice")
    clock.advance(LEASE + 0.001)
    assert q.requeue_stale() == [tid]
    check_invariants(orch)


def test_an_agent_that_keeps_dying_fails_the_task_after_max_retries_plus_one(
        orch, q, reg, clock):
    root = q.create_task("flaky", "t", max_retries=2)
    mid = q.create_task("mid", "t", dependencies=[root])
    leaf = q.create_task("leaf", "t", dependencies=[mid])
    side = q.create_task("side", "t", dependencies=[root, leaf])
    other = q.create_task("independent", "t")
    q.assign_task(other, "bob")
    attempts = 0
    while q.get_task_status(root).status is TaskStatus.PENDING:
        clock.advance(1000)  # past any back-off
        q.heartbeat(agent_id="bob")
        got = q.claim_task("alice")
        assert got is not None and got.id == root
        attempts += 1
        if attempts % 2:
            q.start_task(root)  # dies while running, or before starting
        clock.advance(LEASE + 1)
        q.heartbeat(agent_id="bob")  # bob is alive: his lease is fresh
        assert q.requeue_stale() == [root]
        check_invariants(orch)
    assert attempts == 3
    t = q.get_task_status(root)
    assert t.status is TaskStatus.FAILED and t.retry_count == 2 and t.assigned_to == "alice"
    for tid in (mid, leaf, side):
        d = q.get_task_status(tid)
        assert d.status is TaskStatus.BLOCKED and d.blocked_by == root
    assert q.get_task_status(other).status is TaskStatus.ASSIGNED
    alice = reg.get_agent("alice")
    assert alice.total_failed == 3 and alice.current_load == 0
    to = [h["to_status"] for h in q.get_task_history(root)]
    assert to.count("assigned") == 3 and to.count("pending") == 3 and to[-1] == "failed"
    check_invariants(orch)


# --------------------------------------------------------------------------- cancellation


@pytest.mark.parametrize("state", ["pending", "assigned", "running"])
def test_cancel_blocks_every_level_downstream_and_frees_the_agent(orch, q, reg, clock, state):
    ids = q.create_tasks([
        {"key": "root", "content": "root", "task_type": "t"},
        {"key": "a", "content": "a", "task_type": "t", "dependencies": ["root"]},
        {"key": "b", "content": "b", "task_type": "t", "dependencies": ["root"]},
        {"key": "c", "content": "c", "task_type": "t", "dependencies": ["a", "b"]},
        {"key": "d", "content": "d", "task_type": "t", "dependencies": ["c"]},
        {"key": "e", "content": "e", "task_type": "t", "dependencies": ["d"]},
        {"key": "free", "content": "free", "task_type": "t"},
    ])
    root, *downstream, free = ids
    if state != "pending":
        q.assign_task(root, "alice")
    if state == "running":
        q.start_task(root)
    q.assign_task(free, "alice")
    assert reg.get_agent("alice").current_load == (2 if state != "pending" else 1)
    cancelled = q.cancel_task(root, "no longer needed")
    assert cancelled.status is TaskStatus.CANCELLED
    assert cancelled.error == "no longer needed"
    assert cancelled.lease_until is None
    for tid in downstream:
        t = q.get_task_status(tid)
        assert t.status is TaskStatus.BLOCKED, tid
        assert t.blocked_by == root
    assert q.get_task_status(free).status is TaskStatus.ASSIGNED
    alice = reg.get_agent("alice")
    assert alice.current_load == 1
    assert alice.total_failed == 0  # a cancellation is not the agent's failure
    assert q.requeue_stale(clock.now + lease(10 * LEASE)) == [free]  # the cancelled one is gone
    # a task created on a cancelled (or blocked) dependency is born blocked by the root
    late = q.create_task("late", "t", dependencies=[downstream[-1]])
    assert q.get_task_status(late).status is TaskStatus.BLOCKED
    assert q.get_task_status(late).blocked_by == root
    with pytest.raises(InvalidTransitionError):
        q.cancel_task(root)
    check_invariants(orch)


def test_cancelling_a_blocked_task_and_finished_tasks(orch, q, reg, clock):
    root = q.create_task("root", "t")
    child = q.create_task("child", "t", dependencies=[root])
    done = q.create_task("done", "t")
    q.cancel_task(root)
    assert q.cancel_task(child, "tidy").status is TaskStatus.CANCELLED
    assert [h["to_status"] for h in q.get_task_history(child)][-2:] == ["blocked", "cancelled"]
    q.assign_task(done, "bob")
    q.start_task(done)
    q.complete_task(done, "ok")
    with pytest.raises(InvalidTransitionError, match="cancel"):
        q.cancel_task(done)
    with pytest.raises(TaskNotFoundError):
        q.cancel_task("nope")
    assert q.get_task_status(done).status is TaskStatus.COMPLETED
    check_invariants(orch)


# --------------------------------------------------------------------------- idempotency


def test_create_task_twice_with_the_same_key_returns_the_same_id(orch, q, reg):
    first = q.create_task("build it", "build", idempotency_key="job-1")
    again = q.create_task("build it", "build", idempotency_key="job-1")
    assert again == first
    assert len(q.to_frame()) == 1
    assert len(q.get_task_history(first)) == 1  # one creation, no second one
    assert q.get_task_status(first).idempotency_key == "job-1"
    # still the same id once the task has moved on; its state is not touched
    q.assign_task(first, "alice")
    q.start_task(first)
    q.complete_task(first, "done")
    assert q.create_task("build it", "build", idempotency_key="job-1") == first
    assert q.get_task_status(first).status is TaskStatus.COMPLETED
    check_invariants(orch)


@pytest.mark.parametrize("other", [("build that", "build"), ("build it", "deploy")])
def test_same_key_with_other_content_is_a_duplicate_and_writes_nothing(orch, q, reg, state,
                                                                      other):
    first = q.create_task("build it", "build", idempotency_key="job-1")
    before = state(["alice"])
    with pytest.raises(DuplicateTaskError, match="job-1"):
        q.create_task(*other, idempotency_key="job-1")
    # in a batch, the whole batch is refused
    with pytest.raises(DuplicateTaskError):
        q.create_tasks([{"content": "fresh", "task_type": "t"},
                        {"content": other[0], "task_type": other[1], "idempotency_key": "job-1"}])
    assert state(["alice"]) == before
    assert [t.id for t in q.poll_tasks(limit=100)] == [first]
    check_invariants(orch)


def test_create_tasks_rerun_with_idempotency_keys_returns_the_same_ids(orch, q, reg):
    records = [
        {"key": "a", "content": "fetch", "task_type": "io", "idempotency_key": "run-7/fetch"},
        {"key": "b", "content": "parse", "task_type": "cpu", "dependencies": ["a"],
         "idempotency_key": "run-7/parse"},
        {"key": "c", "content": "store", "task_type": "io", "dependencies": ["a", "b"],
         "idempotency_key": "run-7/store"},
    ]
    ids = q.create_tasks([dict(r) for r in records])
    assert len(set(ids)) == 3
    again = q.create_tasks([dict(r) for r in records])
    assert again == ids
    assert len(q.to_frame()) == 3
    assert q.get_task_status(ids[2]).dependencies == [ids[0], ids[1]]
    # a re-run that adds a record: old ones reused (keys still resolve), the new one created
    extended = [dict(r) for r in records] + [
        {"content": "report", "task_type": "io", "dependencies": ["c"],
         "idempotency_key": "run-7/report"}]
    more = q.create_tasks(extended)
    assert more[:3] == ids
    assert more[3] not in ids
    assert q.get_task_status(more[3]).dependencies == [ids[2]]
    assert len(q.to_frame()) == 4
    assert q.create_tasks(extended) == more
    check_invariants(orch)


def test_idempotent_create_of_a_task_whose_dependency_failed_meanwhile(orch, q, reg):
    dep = q.create_task("dep", "t", max_retries=0)
    tid = q.create_task("child", "t", dependencies=[dep], idempotency_key="k")
    q.assign_task(dep, "alice")
    q.fail_task(dep, "broken")
    assert q.get_task_status(tid).status is TaskStatus.BLOCKED
    assert q.create_task("child", "t", dependencies=[dep], idempotency_key="k") == tid
    assert len(q.to_frame()) == 2
    check_invariants(orch)


def test_every_error_path_above_is_an_orchestration_error():
    for exc in (AgentNotFoundError, DuplicateTaskError, InvalidTransitionError,
                TaskNotFoundError, ValidationError):
        assert issubclass(exc, OrchestrationError)


# --------------------------------------------------------------------------- known bugs


def test_backoff_after_1024_retries(tmp_path):
    """Regression: 2**retry_count used to overflow a float from the 1024th retry on, and
    requeue_stale then failed for every stale task, not just that one."""
    import duckdb

    path = tmp_path / "long_lived.duckdb"
    with athena_orch.connect(path) as orch:
        forever = orch.queue.create_task("retry a lot", "t", max_retries=100_000)
        other = orch.queue.create_task("ordinary", "t")
    # a task that has been retried 1024 times already (too slow to do through the API)
    with duckdb.connect(str(path)) as raw:
        raw.execute("UPDATE episodic_events SET retry_count = 1024 WHERE task_id = ?", [forever])
    with athena_orch.connect(path) as orch:
        q = orch.queue
        q.assign_task(forever, "alice")
        q.assign_task(other, "alice")
        later = datetime.now(UTC) + timedelta(days=1)
        stale = q.requeue_stale(later)
        assert sorted(stale) == sorted([forever, other])
        assert q.get_task_status(forever).retry_count == 1025
        assert q.get_task_status(forever).retry_until <= later + timedelta(
            seconds=q.retry_backoff_max_seconds)


def test_bug_requeue_stale_at_the_end_of_time(orch, q, reg):
    tid = q.create_task("a", "t")
    q.assign_task(tid, "alice")
    try:
        assert q.requeue_stale(datetime.max.replace(tzinfo=UTC)) == [tid]
    except ValidationError as exc:
        assert "now" in str(exc)
    check_invariants(orch)
