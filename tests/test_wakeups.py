"""Wake-ups instead of polling: a claim that waits returns as soon as a write makes a task
it can take ready, in this process (both backends) and from another process (PostgreSQL
NOTIFY). The waiting claimers here poll only every ten minutes, so a test passes only if
the wake-up itself arrived."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import postgres_only

import athena_orch
from athena_orch.exceptions import ValidationError
from athena_orch.models import TaskStatus

HERE = Path(__file__).resolve().parent
NEVER = 600.0  # seconds: longer than any test may take


class Waiter(threading.Thread):
    """A claimer that waits (up to NEVER seconds) in a thread of its own."""

    def __init__(self, queue, agent_id: str, **options):
        super().__init__(daemon=True)
        self.queue, self.agent_id, self.options, self.got = queue, agent_id, options, None

    def run(self) -> None:
        self.got = self.queue.claim_task(self.agent_id, wait=NEVER, **self.options)

    def result(self, within: float = 30.0):
        self.join(within)
        assert not self.is_alive(), "the waiting claim was never woken"
        return self.got


@pytest.fixture
def quiet(orch):
    orch.queue.wait_poll_seconds = NEVER
    orch.registry.register_agent("alice", ["python"], {"max_concurrent_tasks": 1})
    return orch


def _wait_for(orch, **options) -> Waiter:
    """A waiter for alice, returned once it is asleep (so what wakes it is a wake-up, not
    its first look)."""
    waiter = Waiter(orch.queue, "alice", **options)
    asleep = orch.db.wakeups.waiting
    waiter.start()
    while orch.db.wakeups.waiting == asleep:
        assert waiter.is_alive(), f"the claim returned {waiter.got} at once"
        time.sleep(0.001)
    return waiter


def test_a_new_task_wakes_a_waiting_claim(quiet):
    waiter = _wait_for(quiet)
    task_id = quiet.queue.create_task("now", "code", requirements=["python"])
    assert waiter.result().id == task_id


def test_a_completed_dependency_wakes_a_claim_for_its_dependent(quiet):
    q = quiet.queue
    quiet.registry.register_agent("bob", [])
    first = q.create_task("first", "code")
    second = q.create_task("second", "code", dependencies=[first])
    q.claim_tasks("bob", 1, start=True)
    waiter = _wait_for(quiet)
    q.complete_task(first, "done", agent_id="bob", attempt=1)
    assert waiter.result().id == second


def test_a_freed_slot_wakes_a_claim_of_an_agent_at_capacity(quiet):
    q = quiet.queue
    held, waiting = q.create_tasks([{"content": "a", "task_type": "t"},
                                    {"content": "b", "task_type": "t"}])
    q.claim_tasks("alice", 1, start=True)
    waiter = _wait_for(quiet)  # alice is at capacity: nothing to claim yet
    q.complete_task(held, "done", agent_id="alice", attempt=1)
    assert waiter.result().id == waiting


@pytest.mark.parametrize("how", ["retry", "release", "requeue"])
def test_a_task_back_in_the_queue_wakes_a_waiting_claim(quiet, clock, how):
    q = quiet.queue
    q.retry_backoff_seconds = 0.0
    quiet.registry.register_agent("bob", [])
    task_id = q.create_task("flaky", "code")
    q.claim_tasks("bob", 1, start=True)
    waiter = _wait_for(quiet)
    if how == "retry":
        q.fail_task(task_id, "flaky", agent_id="bob", attempt=1)
    elif how == "release":
        q.release_task(task_id, agent_id="bob", attempt=1)
    else:
        clock.advance(q.lease_seconds + 1)
        assert q.requeue_stale() == [task_id]
    got = waiter.result()
    assert (got.id, got.attempt) == (task_id, 2)


def test_an_agent_given_a_capability_wakes_its_waiting_claim(quiet):
    q = quiet.queue
    task_id = q.create_task("ml work", "code", requirements=["ml"])
    waiter = _wait_for(quiet)
    quiet.registry.learn_new_capability("alice", "ml")
    assert waiter.result().id == task_id


def test_a_wait_only_takes_the_task_types_asked_for(quiet):
    q = quiet.queue
    waiter = _wait_for(quiet, task_types=["review"])
    q.create_task("not mine", "code")
    q.create_task("mine", "review")
    got = waiter.result()
    assert got.task_type == "review"
    assert [t.task_type for t in q.poll_tasks()] == ["code"]


def test_a_wait_with_nothing_to_claim_returns_none_when_it_runs_out(quiet):
    quiet.queue.wait_poll_seconds = 0.05
    assert quiet.queue.claim_task("alice", wait=0.2) is None
    assert quiet.queue.claim_tasks("alice", 3, wait=0.1) == []


def test_a_rolled_back_write_wakes_nobody_and_a_late_one_still_does(quiet):
    q = quiet.queue
    before = quiet.db.wakeups.generation
    with pytest.raises(ValidationError):
        q.create_tasks([{"content": "ok", "task_type": "t"}, {"content": "", "task_type": "t"}])
    assert quiet.db.wakeups.generation == before
    waiter = _wait_for(quiet)
    task_id = q.create_task("later", "t")
    assert waiter.result().id == task_id


@pytest.mark.parametrize("wait, message", [
    (-1, "wait must be between"), (float("nan"), "wait must be a number"),
    ("1", "wait must be a number"), (10**7, "wait must be between"),
])
def test_bad_waits_are_validation_errors(quiet, unchanged, wait, message):
    with unchanged(), pytest.raises(ValidationError, match=message):
        quiet.queue.claim_task("alice", wait=wait)


def test_bad_task_types_are_validation_errors(quiet, unchanged):
    for task_types, message in (("code", "task_types must be a list"),
                                ([""], "task_types item must not be empty")):
        with unchanged(), pytest.raises(ValidationError, match=message):
            quiet.queue.claim_task("alice", task_types=task_types)


@postgres_only
def test_a_write_in_another_process_wakes_a_waiting_claim_through_notify(database_url):
    """The waiter polls every ten minutes: only NOTIFY can wake it in time."""
    url = database_url()
    with athena_orch.connect(url) as orch:
        orch.registry.register_agent("alice", ["python"])
        orch.queue.wait_poll_seconds = NEVER
        waiter = _wait_for(orch)
        assert waiter.is_alive()
        subprocess.run([sys.executable, "-c", (
            "import sys, athena_orch\n"
            "with athena_orch.connect(sys.argv[1]) as orch:\n"
            "    print(orch.queue.create_task('from afar', 'code', requirements=['python']))"),
            url], check=True, capture_output=True, text=True, timeout=60)
        got = waiter.result()
        assert got.content == "from afar" and got.status is TaskStatus.ASSIGNED


@postgres_only
def test_a_notify_from_another_schema_wakes_no_one_here(database_url):
    """Databases sharing a server do not wake each other's claimers: the announcement
    names its schema."""
    here, there = database_url(), database_url()
    with athena_orch.connect(here) as orch, athena_orch.connect(there) as other:
        orch.queue.wait_poll_seconds = NEVER
        orch.registry.register_agent("alice", [])
        waiter = _wait_for(orch)
        wakeups = orch.db.wakeups
        seen = wakeups.generation
        while wakeups.wait(seen, 0.5) != seen:  # until the listener is up and quiet
            seen = wakeups.generation
        other.queue.create_task("elsewhere", "code")
        assert wakeups.wait(seen, 1.0) == seen  # nothing heard within a second
        assert waiter.is_alive()
        orch.queue.create_task("here", "code")
        assert waiter.result().content == "here"


def test_a_wait_ends_early_once_its_until_event_is_set(quiet):
    stopping = threading.Event()
    waiter = _wait_for(quiet, until=stopping)
    stopping.set()
    quiet.queue.wakeups.notify()
    assert waiter.result() is None
    assert quiet.queue.claim_task("alice", wait=5, until=stopping) is None  # set: no wait
    with pytest.raises(ValidationError, match="until must be a threading.Event"):
        quiet.queue.claim_task("alice", wait=1, until=True)
