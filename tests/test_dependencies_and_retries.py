"""Dependencies (readiness, blocking through several levels) and bounded retries."""

from __future__ import annotations

from datetime import timedelta

import pytest

from athena_orch import exceptions
from athena_orch.models import TaskStatus


def _close_to(actual, expected, tol_s=0.002):
    assert actual is not None, "expected a datetime, got None"
    assert abs((actual - expected).total_seconds()) <= tol_s, (actual, expected)


def _run_to_completion(queue, tid, agent="w"):
    queue.assign_task(tid, agent)
    queue.start_task(tid)
    queue.complete_task(tid, f"result of {tid}")


def _status(queue, tid):
    return queue.get_task_status(tid).status


# ------------------------------------------------------------------------ readiness


def test_claim_skips_tasks_with_uncompleted_dependencies(queue, registry, clock):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 10})
    root = queue.create_task("root", "t", priority="low")
    clock.advance(0.001)
    child = queue.create_task("child", "t", priority="high", dependencies=[root])
    t = queue.claim_task("bot")
    assert t.id == root  # the high-priority child is not ready
    assert queue.claim_task("bot") is None
    assert _status(queue, child) == TaskStatus.PENDING
    queue.start_task(root)
    queue.complete_task(root, "done")
    t = queue.claim_task("bot")
    assert t is not None and t.id == child


def test_task_is_ready_only_when_every_dependency_completed(queue, registry):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 10})
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t")
    c = queue.create_task("c", "t", dependencies=[a, b])
    _run_to_completion(queue, a)
    claimed = queue.claim_task("bot")
    assert claimed.id == b  # c still waits on b
    assert queue.claim_task("bot") is None
    queue.start_task(b)
    queue.complete_task(b, "ok")
    assert queue.claim_task("bot").id == c


def test_assign_task_with_uncompleted_dependency_raises(queue, state):
    root = queue.create_task("root", "t")
    child = queue.create_task("child", "t", dependencies=[root])
    queue.assign_task(root, "w")  # assigned, not completed
    before = state()
    with pytest.raises(exceptions.DependencyError) as err:
        queue.assign_task(child, "w")
    assert child in str(err.value) or root in str(err.value)
    assert state() == before
    assert _status(queue, child) == TaskStatus.PENDING


def test_assign_task_after_dependency_completed(queue):
    root = queue.create_task("root", "t")
    child = queue.create_task("child", "t", dependencies=[root])
    _run_to_completion(queue, root)
    assert queue.assign_task(child, "w").status == TaskStatus.ASSIGNED


@pytest.mark.parametrize("deps_kind", ["only-unknown", "one-known-one-unknown"])
def test_unknown_dependency_raises_and_writes_nothing(queue, state, deps_kind):
    known = queue.create_task("known", "t")
    deps = ["does-not-exist"] if deps_kind == "only-unknown" else [known, "does-not-exist"]
    before = state()
    with pytest.raises(exceptions.DependencyError, match="does-not-exist"):
        queue.create_task("orphan", "t", dependencies=deps)
    assert state() == before
    assert set(queue.dependency_graph().edges()) == set()


# ------------------------------------------------------------------------ blocking


def _chain(queue, n=4):
    ids = [queue.create_task("step 0", "t")]
    for i in range(1, n):
        ids.append(queue.create_task(f"step {i}", "t", dependencies=[ids[-1]]))
    return ids


def _diamond(queue):
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t", dependencies=[a])
    c = queue.create_task("c", "t", dependencies=[a])
    d = queue.create_task("d", "t", dependencies=[b, c])
    return a, b, c, d


def _assert_blocked_by(queue, tids, root):
    for tid in tids:
        t = queue.get_task_status(tid)
        assert t.status == TaskStatus.BLOCKED, (tid, t.status)
        assert t.blocked_by == root
        assert t.error is not None and root in t.error


def test_final_failure_blocks_a_chain(queue):
    a, b, c, d = _chain(queue)
    queue.assign_task(a, "w")
    queue.start_task(a)
    queue.fail_task(a, "disk on fire", should_retry=False)
    root = queue.get_task_status(a)
    assert root.status == TaskStatus.FAILED and root.error == "disk on fire"
    assert root.blocked_by is None
    _assert_blocked_by(queue, [b, c, d], a)
    assert queue.get_queue_statistics().blocked_count == 3


def test_cancel_blocks_a_diamond(queue):
    a, b, c, d = _diamond(queue)
    queue.cancel_task(a, reason="not needed")
    assert _status(queue, a) == TaskStatus.CANCELLED
    _assert_blocked_by(queue, [b, c, d], a)


def test_failure_in_the_middle_blocks_only_downstream(queue):
    a, b, c, d = _diamond(queue)
    _run_to_completion(queue, a)
    queue.assign_task(b, "w")
    queue.fail_task(b, "nope", should_retry=False)
    assert _status(queue, a) == TaskStatus.COMPLETED
    assert _status(queue, c) == TaskStatus.PENDING  # sibling untouched
    _assert_blocked_by(queue, [d], b)


def test_running_root_cancelled_blocks_chain(queue):
    a, b, c = _chain(queue, 3)
    queue.assign_task(a, "w")
    queue.start_task(a)
    queue.cancel_task(a)
    _assert_blocked_by(queue, [b, c], a)


def test_exhausted_retries_block_downstream(queue, clock):
    a, b, c = _chain(queue, 3)
    for _ in range(2):
        queue.assign_task(a, "w")
        queue.fail_task(a, "flaky")
        clock.advance(60)
    assert _status(queue, b) == TaskStatus.PENDING  # retries left: nothing blocked yet
    queue.assign_task(a, "w")
    queue.start_task(a)
    queue.fail_task(a, "still flaky")
    queue.assign_task(a, "w")
    queue.fail_task(a, "last straw")
    assert _status(queue, a) == TaskStatus.FAILED
    _assert_blocked_by(queue, [b, c], a)


def test_blocking_leaves_final_downstream_tasks_alone(queue):
    a, b, c = _chain(queue, 3)
    queue.cancel_task(c, reason="dropped early")
    queue.assign_task(a, "w")
    queue.fail_task(a, "x", should_retry=False)
    _assert_blocked_by(queue, [b], a)
    t = queue.get_task_status(c)
    assert t.status == TaskStatus.CANCELLED
    assert "dropped early" in t.error


def test_retry_does_not_block_downstream(queue):
    a, b = _chain(queue, 2)
    queue.assign_task(a, "w")
    queue.fail_task(a, "transient")
    assert _status(queue, a) == TaskStatus.PENDING
    assert _status(queue, b) == TaskStatus.PENDING


@pytest.mark.parametrize("how", ["failed", "cancelled"])
def test_creating_on_a_final_dependency_gives_blocked_task(queue, how):
    dep = queue.create_task("dep", "t")
    if how == "failed":
        queue.assign_task(dep, "w")
        queue.fail_task(dep, "x", should_retry=False)
    else:
        queue.cancel_task(dep)
    tid = queue.create_task("late", "t", dependencies=[dep])
    _assert_blocked_by(queue, [tid], dep)


def test_creating_on_a_blocked_dependency_gives_blocked_task(queue):
    root, mid = _chain(queue, 2)
    queue.cancel_task(root)
    tid = queue.create_task("late", "t", dependencies=[mid])
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.BLOCKED
    # DESIGN names the root for propagation; for creation either the root or the
    # blocked dependency is a fair reading.
    assert t.blocked_by in (root, mid)


def test_creating_with_mixed_dependencies_one_failed_is_blocked(queue):
    ok = queue.create_task("ok", "t")
    _run_to_completion(queue, ok)
    bad = queue.create_task("bad", "t")
    queue.assign_task(bad, "w")
    queue.fail_task(bad, "x", should_retry=False)
    tid = queue.create_task("late", "t", dependencies=[ok, bad])
    _assert_blocked_by(queue, [tid], bad)


def test_blocked_tasks_are_never_claimed(queue, registry):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 10})
    a, b = _chain(queue, 2)
    queue.cancel_task(a)
    assert queue.claim_task("bot") is None
    assert _status(queue, b) == TaskStatus.BLOCKED


def test_blocked_task_can_be_cancelled(queue):
    a, b = _chain(queue, 2)
    queue.cancel_task(a)
    assert queue.cancel_task(b, reason="cleanup").status == TaskStatus.CANCELLED


# ------------------------------------------------------------------------- retries


def test_bounded_retries_with_doubling_backoff(queue, registry, clock):
    registry.register_agent("bot", [])
    tid = queue.create_task("flaky", "t", max_retries=3)
    assert queue.retry_backoff_seconds == 1.0
    assert queue.retry_backoff_max_seconds == 300.0
    attempts = 0
    for retry in range(3):
        t = queue.claim_task("bot")
        assert t is not None and t.id == tid
        attempts += 1
        queue.start_task(tid)
        t = queue.fail_task(tid, f"boom {attempts}")
        assert t.status == TaskStatus.PENDING
        t = queue.get_task_status(tid)
        assert t.status == TaskStatus.PENDING
        assert t.retry_count == retry + 1
        assert t.assigned_to is None
        backoff = 2 ** retry  # 1, 2, 4 seconds
        _close_to(t.retry_until, clock() + timedelta(seconds=backoff))
        assert queue.claim_task("bot") is None  # still backing off
        clock.advance(backoff - 0.01)
        assert queue.claim_task("bot") is None
        assert queue.get_task_status(tid).status == TaskStatus.PENDING
        clock.advance(0.02)
    t = queue.claim_task("bot")
    assert t is not None and t.id == tid
    attempts += 1
    queue.start_task(tid)
    t = queue.fail_task(tid, "boom 4")
    assert attempts == 4
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.FAILED
    assert t.retry_count == 3
    assert t.error == "boom 4"
    health = registry.get_agent_health("bot")
    assert health["total_failed"] == 4
    assert health["current_load"] == 0
    assert health["success_rate"] == 0.0


def test_backoff_settings_and_cap(queue, clock):
    queue.retry_backoff_seconds = 100.0
    queue.retry_backoff_max_seconds = 150.0
    tid = queue.create_task("x", "t", max_retries=5)
    expected = [100, 150, 150]  # 100, 200 -> capped, 400 -> capped
    for backoff in expected:
        queue.assign_task(tid, "w")  # allowed during back-off
        queue.fail_task(tid, "e")
        _close_to(queue.get_task_status(tid).retry_until, clock() + timedelta(seconds=backoff))
        clock.advance(1)


def test_assign_is_allowed_during_backoff(queue, clock):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w")
    queue.fail_task(tid, "e")
    t = queue.assign_task(tid, "w2")
    assert t.status == TaskStatus.ASSIGNED and t.assigned_to == "w2"


def test_backoff_task_still_listed_as_pending(queue, clock):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w")
    queue.fail_task(tid, "e")
    assert [t.id for t in queue.poll_tasks(status="pending")] == [tid]


def test_fail_without_retry_fails_at_once(queue, registry):
    registry.register_agent("bot", [])
    tid = queue.create_task("x", "t", max_retries=3)
    queue.claim_task("bot")
    t = queue.fail_task(tid, "fatal: bad input", should_retry=False)
    assert t.status == TaskStatus.FAILED
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.FAILED
    assert t.error == "fatal: bad input"
    assert t.retry_count == 0
    assert registry.get_agent_health("bot")["total_failed"] == 1
    assert registry.get_agent_health("bot")["current_load"] == 0


def test_zero_max_retries_fails_on_first_failure(queue):
    tid = queue.create_task("x", "t", max_retries=0)
    queue.assign_task(tid, "w")
    queue.fail_task(tid, "once")
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.FAILED and t.retry_count == 0 and t.error == "once"


def test_error_is_stored_verbatim(queue):
    msg = "Traceback (most recent call last):\n  File \"x\", line 1\nValueError: 'quoted' \"both\""
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w")
    queue.fail_task(tid, msg, should_retry=False)
    assert queue.get_task_status(tid).error == msg
