"""athena_orch.Worker in one process, on both backends: handlers, results, failures,
time limits, leases, stopping. Real threads and a real queue; no mocks.

Leases and intervals are short (a lease of 0.3 s, polls of 0.05 s) so the file runs in
seconds; nothing asserts on wall-clock durations, only on what the queue recorded.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
from pathlib import Path

import pytest
from invariants import check_invariants

import athena_orch
from athena_orch.exceptions import (
    AgentNotFoundError,
    OrchestrationError,
    ValidationError,
)
from athena_orch.models import TaskStatus
from athena_orch.worker import DoNotRetry, Result, Summary, Worker

PATIENCE = 30  # seconds a test waits for something that takes milliseconds
README = Path(__file__).resolve().parent.parent / "README.md"


@pytest.fixture
def fast(orch):
    """Retries without a back-off, so one idle run sees a task's every attempt."""
    orch.queue.retry_backoff_seconds = 0
    return orch


def make(orch, handlers=None, **settings):
    settings.setdefault("capabilities", [])
    settings.setdefault("poll_seconds", 0.05)
    return Worker(orch, settings.pop("agent_id", "bot"), handlers, **settings)


def wait_until(condition, what):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.01)


def history(orch, task_id):
    return [(h["from_status"], h["to_status"], h["agent_id"], h["detail"])
            for h in orch.queue.get_task_history(task_id)]


def completions(orch, task_id):
    return sum(1 for h in history(orch, task_id) if h[1] == "completed")


# ---------------------------------------------------------------------- results
def test_results_are_stored_as_text_or_json(fast):
    q = fast.queue
    ids = {kind: q.create_task(kind, kind) for kind in ("text", "json", "measured", "none")}
    worker = make(fast, {"text": lambda t: f"echo {t.content}",
                         "json": lambda t: {"n": 1, "items": ["ä", 2.5, None]},
                         "measured": lambda t: Result("ok", duration_ms=1234),
                         "none": lambda t: None})
    summary = worker.run(until_idle=True)
    assert summary == Summary(completed=4)
    task = {kind: q.get_task_status(i) for kind, i in ids.items()}
    assert task["text"].result == "echo text"
    assert task["json"].result == '{"n": 1, "items": ["ä", 2.5, null]}'
    assert task["measured"].result == "ok" and task["measured"].execution_duration_ms == 1234
    assert task["none"].result == "null"
    for t in task.values():
        assert t.status is TaskStatus.COMPLETED and t.assigned_to == "bot"
        assert [h[1] for h in history(fast, t.id)] == ["pending", "assigned", "running",
                                                        "completed"]
    assert fast.registry.get_agent("bot").total_completed == 4
    check_invariants(fast)


def test_one_callable_takes_every_task_the_agent_can_do(fast):
    q = fast.queue
    q.create_task("a", "alpha")
    q.create_task("b", "beta")
    q.create_task("c", "gamma", requirements=["gpu"])  # bot lacks the capability
    worker = make(fast, lambda task: task.task_type)
    assert worker.task_types is None
    assert worker.run(until_idle=True).completed == 2
    assert sorted(t.result for t in q.poll_tasks(status="completed")) == ["alpha", "beta"]
    assert [t.content for t in q.poll_tasks(status="pending")] == ["c"]


def test_a_worker_claims_only_the_types_it_handles(fast):
    q = fast.queue
    mine = q.create_task("mine", "research")
    theirs = q.create_task("theirs", "coding", priority="high")  # first in queue order
    worker = make(fast)

    @worker.handles("research")
    def research(task):
        return "found"

    assert worker.task_types == ["research"]
    assert worker.run(until_idle=True).completed == 1
    assert q.get_task_status(mine).status is TaskStatus.COMPLETED
    theirs_now = q.get_task_status(theirs)
    assert theirs_now.status is TaskStatus.PENDING and theirs_now.attempt == 0


def test_concurrency_is_respected_and_used(fast):
    q = fast.queue
    q.create_tasks([{"content": str(i), "task_type": "t"} for i in range(6)])
    lock, now, most = threading.Lock(), [0], [0]
    both = threading.Barrier(2, timeout=PATIENCE)

    def handler(task):
        with lock:
            now[0] += 1
            most[0] = max(most[0], now[0])
        if int(task.content) < 2:
            both.wait()  # the first two run at the same time
        time.sleep(0.01)
        with lock:
            now[0] -= 1

    worker = make(fast, {"t": handler}, concurrency=2)
    assert fast.registry.get_agent("bot").max_concurrent_tasks == 2
    assert worker.run(until_idle=True).completed == 6
    assert most[0] == 2


def test_async_handlers_share_the_workers_loop_without_blocking_each_other(fast):
    q = fast.queue
    ids = q.create_tasks([{"content": str(i), "task_type": "io"} for i in range(3)])
    loops, arrived = set(), []

    class Crawler:  # an object whose __call__ is async def counts as async too
        async def __call__(self, task):
            loops.add(asyncio.get_running_loop())
            arrived.append(task.id)
            while len(arrived) < 3:  # only finishes once all three run at once
                await asyncio.sleep(0.005)
            return {"page": task.content}

    worker = make(fast, {"io": Crawler()}, concurrency=3, time_limit=PATIENCE)
    assert worker.run(until_idle=True).completed == 3
    assert len(loops) == 1
    assert sorted(q.get_task_status(i).result for i in ids) == [
        '{"page": "0"}', '{"page": "1"}', '{"page": "2"}']


# ---------------------------------------------------------------------- failures
def test_an_exception_fails_the_task_with_type_message_and_traceback(fast):
    q = fast.queue
    task_id = q.create_task("parse", "parse", max_retries=1)

    def parse_report(task):
        raise ValueError(f"cannot parse {task.content!r}")

    summary = make(fast, {"parse": parse_report}).run(until_idle=True)
    assert (summary.retried, summary.failed, summary.completed) == (1, 1, 0)
    task = q.get_task_status(task_id)
    assert task.status is TaskStatus.FAILED and task.retry_count == 1
    first_line, _, rest = task.error.partition("\n")
    assert first_line == "ValueError: cannot parse 'parse'"
    assert "Traceback (most recent call last):" in rest and "in parse_report" in rest
    assert summary.last_error == f"task {task_id}: ValueError: cannot parse 'parse'"
    retry = [h for h in history(fast, task_id) if h[1] == "pending" and h[0] == "running"]
    assert retry[0][3].startswith("retry 1 of 1: ValueError: cannot parse 'parse'\n")
    assert "in parse_report" in retry[0][3]
    assert fast.registry.get_agent("bot").total_failed == 2
    check_invariants(fast)


def test_do_not_retry_fails_at_once(fast):
    q = fast.queue
    task_id = q.create_task("x", "t", max_retries=3)
    after = q.create_task("y", "t", dependencies=[task_id])

    def handler(task):
        raise DoNotRetry("the input is corrupt")

    summary = make(fast, {"t": handler}).run(until_idle=True)
    assert (summary.failed, summary.retried) == (1, 0)
    task = q.get_task_status(task_id)
    assert task.status is TaskStatus.FAILED and task.retry_count == 0
    assert task.error.startswith("athena_orch.worker.DoNotRetry: the input is corrupt\n")
    assert q.get_task_status(after).status is TaskStatus.BLOCKED


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), SystemExit(3), GeneratorExit(),
                                 RecursionError("deep")], ids=lambda e: type(e).__name__)
def test_nothing_a_handler_raises_stops_the_worker(fast, exc):
    q = fast.queue
    bad = q.create_task("bad", "t", max_retries=0)
    good = q.create_task("good", "t", priority="low")

    def handler(task):
        if task.content == "bad":
            raise exc
        return "fine"

    summary = make(fast, {"t": handler}).run(until_idle=True)
    assert (summary.failed, summary.completed) == (1, 1)
    assert q.get_task_status(bad).error.startswith(type(exc).__name__)
    assert q.get_task_status(good).result == "fine"


def test_async_handler_failures_are_kept_too(fast):
    q = fast.queue
    a = q.create_task("a", "t", max_retries=0)
    b = q.create_task("b", "t", max_retries=0)

    async def handler(task):
        await asyncio.sleep(0)
        if task.content == "a":
            raise KeyError("missing")
        raise SystemExit("would stop an event loop")

    summary = make(fast, {"t": handler}).run(until_idle=True)
    assert summary.failed == 2
    assert q.get_task_status(a).error.startswith("KeyError: 'missing'\n")
    assert q.get_task_status(b).error.startswith("SystemExit: would stop an event loop\n")


def test_failure_text_is_always_storable(fast):
    q = fast.queue
    task_id = q.create_task("x", "t", max_retries=0)

    def handler(task):
        raise RuntimeError("nul \x00 and a lone \udc80 surrogate")

    assert make(fast, {"t": handler}).run(until_idle=True).failed == 1
    error = q.get_task_status(task_id).error
    assert error.startswith("RuntimeError: nul \\x00 and a lone \\udc80 surrogate\n")


def test_a_huge_traceback_is_cut_in_the_middle(fast):
    q = fast.queue
    task_id = q.create_task("x", "t", max_retries=0)

    def handler(task):
        raise ValueError("start " + "x" * 100_000 + " end")

    make(fast, {"t": handler}).run(until_idle=True)
    error = q.get_task_status(task_id).error
    assert len(error) < 21_000 and "characters left out" in error
    assert error.startswith("ValueError: start xxx") and error.rstrip().endswith("end")


class Unserialisable:
    pass


def _circular():
    loop = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(("value", "reason"), [
    (Unserialisable(), "Object of type Unserialisable is not JSON serializable"),
    (float("nan"), "Out of range float values are not JSON compliant"),
    ({"x": float("inf")}, "Out of range float values are not JSON compliant"),
    (b"bytes", "Object of type bytes is not JSON serializable"),
    (_circular(), "Circular reference detected"),
    ("nul \x00 inside", "contains a NUL character"),
    ("lone \udc80", "is not valid text"),
    (["lone \udc80"], "is not valid text"),
    (Result("ok", duration_ms=-5), "duration_ms"),
], ids=["object", "nan", "inf", "bytes", "circular", "nul", "surrogate", "nested-surrogate",
        "bad-duration"])
def test_a_result_that_cannot_be_stored_fails_the_task_for_good(fast, value, reason):
    q = fast.queue
    task_id = q.create_task("x", "t", max_retries=3)
    summary = make(fast, {"t": lambda task: value}).run(until_idle=True)
    assert (summary.failed, summary.completed, summary.retried) == (1, 0, 0)
    task = q.get_task_status(task_id)
    assert task.status is TaskStatus.FAILED and task.retry_count == 0
    assert task.error.startswith("the result cannot be stored: ") and reason in task.error


# ---------------------------------------------------------------------- time limits
def test_a_thread_past_its_time_limit_fails_and_its_late_result_is_dropped(fast):
    q = fast.queue
    task_id = q.create_task("slow", "t", max_retries=0)
    release = threading.Event()

    def stuck_in_here(task):
        release.wait(PATIENCE)
        return "too late"

    worker = make(fast, {"t": stuck_in_here}, time_limit=0.2)
    try:
        summary = worker.run(until_idle=True)
        assert (summary.timed_out, summary.failed, summary.abandoned) == (1, 1, 1)
        task = q.get_task_status(task_id)
        assert task.status is TaskStatus.FAILED
        assert task.error.startswith("TimeLimitExceeded: the handler ran longer than 0.2 s")
        assert "The handler was at:" in task.error and "in stuck_in_here" in task.error
    finally:
        release.set()
    wait_until(lambda: worker.summary.abandoned == 0, "the abandoned thread to end")
    assert q.get_task_status(task_id).status is TaskStatus.FAILED
    assert completions(fast, task_id) == 0


def test_an_abandoned_thread_holds_no_slot_and_never_serves_a_later_run(fast):
    q = fast.queue
    stuck = q.create_task("stuck", "t", priority="high", max_retries=0)
    after = q.create_task("after", "t")
    release = threading.Event()

    def handler(task):
        if task.content == "stuck":
            release.wait(PATIENCE)
        return task.content

    worker = make(fast, {"t": handler}, time_limit=0.3)  # concurrency 1
    summary = worker.run(until_idle=True)
    assert (summary.timed_out, summary.completed, summary.abandoned) == (1, 1, 1)
    assert q.get_task_status(after).result == "after"
    release.set()  # the stuck thread returns after its run ended
    wait_until(lambda: worker.summary.abandoned == 0, "the abandoned thread to return")
    later = q.create_task("later", "later")
    worker.handles("later", time_limit=PATIENCE)(handler)
    worker.start()
    try:
        wait_until(lambda: worker.summary.completed == 1, "the next run to do its task")
    finally:
        summary = worker.stop()
    assert summary.timed_out == 0 and q.get_task_status(later).result == "later"
    assert q.get_task_status(stuck).status is TaskStatus.FAILED


def test_a_handlers_own_time_limit_wins_and_async_handlers_are_cancelled(orch):
    q = orch.queue
    q.retry_backoff_seconds = 60
    slow = q.create_task("slow", "slow")
    quick = q.create_task("quick", "quick")
    cancelled = []
    worker = make(orch, time_limit=PATIENCE)

    @worker.handles("slow", time_limit=0.2)
    async def slow_handler(task):
        try:
            await asyncio.sleep(PATIENCE)
        except asyncio.CancelledError:
            cancelled.append(task.id)
            raise

    @worker.handles("quick")
    async def quick_handler(task):
        return "quick"

    summary = worker.run(until_idle=True)
    assert (summary.timed_out, summary.retried, summary.completed) == (1, 1, 1)
    assert cancelled == [slow]
    assert q.get_task_status(slow).status is TaskStatus.PENDING  # retried by the usual rules
    assert q.get_task_status(quick).result == "quick"


# ---------------------------------------------------------------------- leases
def test_a_handler_running_longer_than_the_lease_keeps_its_task(fast):
    q = fast.queue
    q.lease_seconds = 0.3
    task_id = q.create_task("long", "t")
    stop_requeueing = threading.Event()
    requeued = []

    def requeue_all_the_time():  # another process's janitor, as eager as it gets
        while not stop_requeueing.is_set():
            requeued.extend(q.requeue_stale())
            time.sleep(0.02)

    janitor = threading.Thread(target=requeue_all_the_time)
    janitor.start()
    try:
        summary = make(fast, {"t": lambda task: time.sleep(1.2) or "done"}).run(
            until_idle=True)
    finally:
        stop_requeueing.set()
        janitor.join()
    assert requeued == []
    assert summary == Summary(completed=1)
    task = q.get_task_status(task_id)
    assert task.status is TaskStatus.COMPLETED and task.attempt == 1 and task.retry_count == 0


def test_a_task_taken_away_while_its_handler_runs_is_lost_not_completed(fast):
    q = fast.queue
    cancelled = q.create_task("cancelled meanwhile", "t")
    release = threading.Event()

    def handler(task):
        release.wait(PATIENCE)
        return "late"

    worker = make(fast, {"t": handler})
    worker.start()
    try:
        wait_until(lambda: q.get_task_status(cancelled).status is TaskStatus.RUNNING, "start")
        q.cancel_task(cancelled, "not needed any more")
        release.set()
        wait_until(lambda: worker.summary.lost == 1, "the worker to notice")
    finally:
        release.set()
        summary = worker.stop()
    assert (summary.lost, summary.completed, summary.errors) == (1, 0, 0)
    assert q.get_task_status(cancelled).status is TaskStatus.CANCELLED


def test_a_task_whose_lease_ran_out_elsewhere_is_dropped_at_the_next_heartbeat(fast):
    q = fast.queue
    q.lease_seconds = 0.3
    task_id = q.create_task("x", "t")
    release = threading.Event()
    worker = make(fast, {"t": lambda task: release.wait(PATIENCE) and "late"},
                  heartbeat_seconds=0.1)
    worker.start()
    try:
        wait_until(lambda: q.get_task_status(task_id).status is TaskStatus.RUNNING, "start")
        # as if the worker had been frozen past its lease: another process requeues it
        from datetime import timedelta
        assert q.requeue_stale(now=q.clock() + timedelta(seconds=1)) == [task_id]
        wait_until(lambda: worker.summary.lost == 1, "the heartbeat to find out")
    finally:
        release.set()
        worker.stop()
    task = q.get_task_status(task_id)
    assert completions(fast, task_id) <= 1  # the next attempt may have run; never twice
    assert task.retry_count == 1


def test_a_database_that_goes_away_is_counted_not_fatal(fast):
    q = fast.queue
    task_id = q.create_task("x", "t")
    started, release = threading.Event(), threading.Event()

    def handler(task):
        started.set()
        release.wait(PATIENCE)
        return "done"

    worker = make(fast, {"t": handler}, grace_seconds=0.2, heartbeat_seconds=0.05)
    worker.start()
    try:
        assert started.wait(PATIENCE) and task_id
        fast.close()  # every queue call fails from now on: claims, heartbeats, outcomes
        release.set()
        wait_until(lambda: worker.summary.errors >= 3, "the worker to keep trying")
    finally:
        release.set()
        summary = worker.stop()
    assert summary.completed == 0 and summary.running == 0
    assert "is closed" in summary.last_error and not worker.is_running


# ---------------------------------------------------------------------- assigned work
def test_a_worker_also_runs_what_is_assigned_to_its_agent_under_that_attempt(fast):
    q = fast.queue
    routed = q.create_task("routed", "t", priority="low")
    claimable = q.create_task("claimable", "t")
    worker = make(fast, {"t": lambda task: task.content}, concurrency=2)
    attempt = q.assign_task(routed, "bot").attempt
    assert worker.run(until_idle=True) == Summary(completed=2)
    for task_id in (routed, claimable):
        assert q.get_task_status(task_id).result == q.get_task_status(task_id).content
    assert history(fast, routed)[1:] == [
        ("pending", "assigned", "bot", "assigned"), ("assigned", "running", "bot", "started"),
        ("running", "completed", "bot", "completed")]
    assert q.get_task_status(routed).attempt == attempt  # the assignment's, not a new one
    assert history(fast, claimable)[1][3] == "claimed"
    check_invariants(fast)


def test_workers_of_one_process_each_run_what_is_assigned_to_their_own_agent(fast):
    q = fast.queue
    ids = {agent: [q.create_task(f"{agent} {i}", "t") for i in range(3)] for agent in "ab"}
    workers = {agent: make(fast, {"t": lambda task: task.content}, agent_id=agent,
                           assigned_only=True, concurrency=3) for agent in "ab"}
    for agent, task_ids in ids.items():
        for task_id in task_ids:
            q.assign_task(task_id, agent)
    for worker in workers.values():
        worker.start()
    try:
        wait_until(lambda: all(w.summary.completed == 3 for w in workers.values()), "both")
    finally:
        for worker in workers.values():
            worker.stop()
    for agent, task_ids in ids.items():
        assert {q.get_task_status(t).assigned_to for t in task_ids} == {agent}
        assert all(completions(fast, t) == 1 for t in task_ids)


def test_a_stream_of_claimable_work_does_not_starve_an_assigned_task(fast):
    q = fast.queue
    fast.registry.register_agent("bot", [], {"max_concurrent_tasks": 5})  # claims never short
    q.create_tasks([{"content": f"backlog {i}", "task_type": "t"} for i in range(6)])
    routed = q.create_task("routed", "t", priority="low")  # last in queue order
    order = []

    def handler(task):
        if not order:
            q.assign_task(routed, "bot")
            time.sleep(0.1)  # longer than poll_seconds: assigned work is due a look
        order.append(task.content)
        return "ok"

    worker = Worker(fast, "bot", {"t": handler}, poll_seconds=0.05)
    assert worker.run(until_idle=True).completed == 7
    assert order[:2] == ["backlog 0", "routed"]


def test_assigned_only_runs_what_a_dispatcher_assigns_and_claims_nothing(fast):
    q = fast.queue
    q.wait_poll_seconds = 10 * PATIENCE  # only a wake-up can bring the routed task in time
    anyones = q.create_task("for anyone", "t")
    unhandled = q.create_task("no handler here", "other")
    routed = q.create_task("routed", "t")
    worker = make(fast, {"t": lambda task: "done"}, assigned_only=True, concurrency=2,
                  poll_seconds=10 * PATIENCE)
    q.assign_task(unhandled, "bot")
    assert worker.run(until_idle=True) == Summary()
    worker.start()
    try:
        q.assign_task(routed, "bot")  # wakes the idle worker
        wait_until(lambda: worker.summary.completed == 1, "the routed task to be done")
    finally:
        worker.stop()
    assert q.get_task_status(routed).status is TaskStatus.COMPLETED
    assert q.get_task_status(anyones).attempt == 0  # never claimed
    assert q.get_task_status(unhandled).status is TaskStatus.ASSIGNED  # left to its lease


# ---------------------------------------------------------------------- stopping
def test_stop_lets_a_running_handler_finish_within_the_grace_period(fast):
    q = fast.queue
    task_id = q.create_task("x", "t")
    started, release = threading.Event(), threading.Event()

    def handler(task):
        started.set()
        release.wait(PATIENCE)
        return "finished in grace"

    worker = make(fast, {"t": handler}, grace_seconds=PATIENCE)
    worker.start()
    assert started.wait(PATIENCE)
    threading.Timer(0.2, release.set).start()
    summary = worker.stop()
    assert (summary.completed, summary.released, summary.running) == (1, 0, 0)
    assert q.get_task_status(task_id).result == "finished in grace"
    assert not worker.is_running


def test_stop_hands_back_a_task_still_running_after_the_grace_period(fast):
    q = fast.queue
    task_id = q.create_task("x", "t", max_retries=0)
    other = q.create_task("y", "t", priority="low")
    started, release = threading.Event(), threading.Event()

    def handler(task):
        started.set()
        release.wait(PATIENCE)
        return "too late"

    worker = make(fast, {"t": handler}, grace_seconds=0.2)
    worker.start()
    assert started.wait(PATIENCE)
    summary = worker.stop()
    assert (summary.released, summary.completed, summary.abandoned) == (1, 0, 1)
    task = q.get_task_status(task_id)
    assert task.status is TaskStatus.PENDING and task.retry_count == 0  # no retry used
    assert history(fast, task_id)[-1][:3] == ("running", "pending", "bot")
    assert history(fast, task_id)[-1][3].startswith("released: the worker stopped")
    assert q.get_task_status(other).status is TaskStatus.PENDING  # never claimed
    assert fast.registry.get_agent("bot").total_failed == 0
    release.set()  # the abandoned handler returns: its result goes nowhere
    wait_until(lambda: worker.summary.abandoned == 0, "the abandoned thread to end")
    assert q.get_task_status(task_id).status is TaskStatus.PENDING

    again = make(fast, {"t": lambda t: "done once"}, agent_id="second")
    assert again.run(until_idle=True).completed == 2
    assert completions(fast, task_id) == 1 and q.get_task_status(task_id).attempt == 2
    check_invariants(fast)


def test_stop_without_release_leaves_tasks_to_their_leases_as_a_crash_would(fast):
    q = fast.queue
    q.lease_seconds = 0.3
    task_id = q.create_task("x", "t")
    started, release = threading.Event(), threading.Event()

    def handler(task):
        started.set()
        release.wait(PATIENCE)
        return "after the crash"

    worker = make(fast, {"t": handler}, grace_seconds=PATIENCE)
    worker.start()
    assert started.wait(PATIENCE)
    held = q.get_task_status(task_id)
    summary = worker.stop(release=False)  # no grace period, nothing handed back
    assert (summary.released, summary.completed, summary.running, summary.abandoned) == (
        0, 0, 0, 1)
    release.set()
    wait_until(lambda: worker.summary.abandoned == 0, "the abandoned handler to return")
    task = q.get_task_status(task_id)
    assert (task.status, task.assigned_to, task.attempt) == (TaskStatus.RUNNING, "bot",
                                                             held.attempt)
    wait_until(lambda: q.requeue_stale() == [task_id], "the lease to run out")
    assert history(fast, task_id)[-1][3].endswith("lease expired (agent bot)")
    assert make(fast, {"t": lambda t: "done once"}).run(until_idle=True).completed == 1
    assert completions(fast, task_id) == 1 and q.get_task_status(task_id).retry_count == 1
    check_invariants(fast)


def test_sigint_stops_run_on_the_main_thread_and_restores_the_handler(fast):
    q = fast.queue
    task_id = q.create_task("x", "t")
    started = threading.Event()

    def handler(task):
        started.set()
        time.sleep(0.3)
        return "done"

    def interrupt():
        started.wait(PATIENCE)
        os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    threading.Thread(target=interrupt).start()
    summary = make(fast, {"t": handler}, grace_seconds=PATIENCE).run()  # no until_idle
    assert summary.completed == 1 and summary.released == 0
    assert q.get_task_status(task_id).status is TaskStatus.COMPLETED
    assert signal.getsignal(signal.SIGINT) is before


def test_a_handler_may_stop_its_own_worker(fast):
    q = fast.queue
    q.create_tasks([{"content": str(i), "task_type": "t"} for i in range(3)])
    worker = make(fast)

    @worker.handles("t")
    def handler(task):
        worker.stop()  # does not wait for itself
        return "last one"

    worker.start()
    wait_until(lambda: not worker.is_running, "the worker to stop")
    assert worker.summary.completed == 1
    assert q.get_queue_statistics().pending_count == 2


def test_start_wakes_for_new_work_and_draws_a_live_widget(fast):
    q = fast.queue
    worker = make(fast, {"t": lambda task: task.content.upper()})
    view = worker.widget()
    worker.start()
    try:
        task_id = q.create_task("hello", "t")
        wait_until(lambda: worker.summary.completed == 1, "the task to be done")
        wait_until(lambda: "completed 1" in view.value, "the widget to be redrawn")
        with pytest.raises(OrchestrationError, match="already running"):
            worker.start()
        assert "running" in worker._repr_html_() and "running" in repr(worker)
    finally:
        worker.stop()
    assert q.get_task_status(task_id).result == "HELLO"
    assert "stopped" in view.value
    worker.start()  # a stopped worker starts again
    worker.stop()


def test_run_until_idle_leaves_what_waits_on_others_and_back_offs(orch):
    q = orch.queue
    q.retry_backoff_seconds = 60
    blocker = q.create_task("someone else's", "other")
    waiting = q.create_task("waits", "t", dependencies=[blocker])
    flaky = q.create_task("flaky", "t")
    fine = q.create_task("fine", "t")

    def handler(task):
        if task.content == "flaky":
            raise ConnectionError("try later")
        return "ok"

    summary = make(orch, {"t": handler}).run(until_idle=True)
    assert summary == Summary(completed=1, retried=1, last_error=summary.last_error)
    assert q.get_task_status(fine).status is TaskStatus.COMPLETED
    assert q.get_task_status(flaky).status is TaskStatus.PENDING  # its back-off is 60 s
    assert q.get_task_status(waiting).status is TaskStatus.PENDING


# ---------------------------------------------------------------------- set-up
def test_capabilities_register_or_update_the_agent(orch):
    registry = orch.registry
    registry.register_agent("bot", ["old"], {"max_concurrent_tasks": 9, "team": "blue"})
    registry.set_active("bot", False)
    Worker(orch, "bot", lambda t: None, capabilities=["py", "sql"], concurrency=3)
    agent = registry.get_agent("bot")
    assert agent.capabilities == ["py", "sql"] and agent.max_concurrent_tasks == 3
    assert agent.metadata == {"team": "blue"} and agent.active is False  # kept
    Worker(orch, "new", lambda t: None, capabilities=["py"])
    assert registry.get_agent("new").max_concurrent_tasks == 1


def test_an_unregistered_agent_is_refused_without_capabilities(orch, unchanged):
    with unchanged(), pytest.raises(AgentNotFoundError, match="'ghost' is not registered"):
        Worker(orch, "ghost", lambda t: None)


def test_a_worker_without_handlers_does_not_start(orch):
    worker = make(orch)
    with pytest.raises(ValidationError, match="has no handlers"):
        worker.run()
    with pytest.raises(ValidationError, match="has no handlers"):
        worker.start()


@pytest.mark.parametrize(("settings", "named"), [
    ({"agent_id": ""}, "agent_id"),
    ({"agent_id": 7}, "agent_id"),
    ({"concurrency": 0}, "concurrency"),
    ({"concurrency": "2"}, "concurrency"),
    ({"concurrency": True}, "concurrency"),
    ({"time_limit": 0}, "time_limit"),
    ({"time_limit": -1}, "time_limit"),
    ({"time_limit": float("nan")}, "time_limit"),
    ({"time_limit": float("inf")}, "time_limit"),
    ({"grace_seconds": -1}, "grace_seconds"),
    ({"grace_seconds": "5"}, "grace_seconds"),
    ({"heartbeat_seconds": 300}, "heartbeat_seconds"),
    ({"heartbeat_seconds": 0}, "heartbeat_seconds"),
    ({"poll_seconds": 0}, "poll_seconds"),
    ({"assigned_only": "yes"}, "assigned_only"),
    ({"capabilities": "py"}, "capabilities"),
    ({"capabilities": ["py", ""]}, "capabilities"),
    ({"handlers": 5}, "handlers"),
    ({"handlers": "module:attr"}, "handlers"),
    ({"handlers": {"t": "not callable"}}, "handler of 't'"),
    ({"handlers": {"": print}}, "task_type"),
    ({"handlers": {3: print}}, "task_type"),
])
def test_bad_arguments_are_refused_and_write_nothing(orch, unchanged, settings, named):
    settings = {"agent_id": "bot", "capabilities": ["py"], **settings}
    handlers = settings.pop("handlers", print)
    with unchanged(), pytest.raises(ValidationError, match=named):
        Worker(orch, settings.pop("agent_id"), handlers, **settings)


def test_bad_handler_registrations_are_refused(orch):
    worker = make(orch)
    with pytest.raises(ValidationError, match="task_type"):
        worker.handles("")
    with pytest.raises(ValidationError, match="time_limit"):
        worker.handles("t", time_limit=-1)
    with pytest.raises(ValidationError, match="must be callable"):
        worker.handles("t")(42)
    with pytest.raises(ValidationError, match="until_idle"):
        make(orch, print).run(until_idle="yes")
    with pytest.raises(ValidationError, match="release"):
        make(orch, print).stop(release="no")
    assert worker.task_types == []


def test_the_worker_is_exported_lazily():
    assert athena_orch.Worker is Worker


def test_the_readme_worker_example_runs_as_written(capsys):
    example = re.search(r"^## Workers\n.*?```python\n(.*?)```", README.read_text(),
                        flags=re.DOTALL | re.MULTILINE).group(1)
    assert len(example.strip().splitlines()) <= 10
    exec(compile(example, str(README), "exec"), {})
    assert capsys.readouterr().out == "1\n"  # as its comment says
