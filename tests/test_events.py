"""Task events for subscribers (the seed's Phase 2): ``orch.events.subscribe`` delivers
every committed change of a task, by callback or iterator, recorded in
``event_subscriptions``; a subscriber's failure never breaks a write."""

from __future__ import annotations

import logging

import pytest

from athena_orch.exceptions import ValidationError
from athena_orch.models import TaskEvent


@pytest.fixture
def team(orch, clock):
    orch.registry.register_agent("alice", ["python"])
    orch.registry.register_agent("bob", ["python"])
    orch.queue.retry_backoff_seconds = 0.0
    return orch


def _kinds(events: list[TaskEvent]) -> list[tuple[str, str]]:
    return [(e.event_type, e.task_id) for e in events]


def test_a_callback_sees_a_task_s_whole_life_in_order_with_its_result(team):
    seen: list[TaskEvent] = []
    team.events.subscribe(seen.append)
    q = team.queue
    task_id = q.create_task("build", "code")
    claimed = q.claim_task("alice")
    q.start_task(task_id, agent_id="alice", attempt=claimed.attempt)
    q.complete_task(task_id, "built", agent_id="alice", attempt=claimed.attempt)
    assert team.events.flush()
    assert [e.event_type for e in seen] == ["task_created", "task_assigned", "task_started",
                                            "task_completed"]
    done = seen[-1]
    assert (done.task_id, done.from_status, done.to_status, done.agent_id, done.result) == (
        task_id, "running", "completed", "alice", "built")
    assert done.to_dict()["at"] == done.at.isoformat()


def test_a_pattern_selects_event_types(team):
    bad: list[TaskEvent] = []
    team.events.subscribe(bad.append, pattern="task_(retried|failed|blocked)")
    q = team.queue
    root = q.create_task("root", "code", max_retries=1)
    child = q.create_task("child", "code", dependencies=[root])
    for _ in range(2):
        attempt = q.claim_task("alice").attempt
        q.fail_task(root, "broken", agent_id="alice", attempt=attempt)
    assert team.events.flush()
    assert _kinds(bad) == [("task_retried", root), ("task_failed", root),
                           ("task_blocked", child)]


def test_an_iterated_subscription_gets_events_until_it_is_closed(team):
    q = team.queue
    with team.events.subscribe(pattern="task_created", agent_id="reader") as created:
        ids = q.create_tasks([{"content": f"t{i}", "task_type": "t"} for i in range(3)])
        q.claim_task("alice")  # not a creation: not delivered here
        got = [created.get(timeout=10) for _ in ids]
        assert [e.task_id for e in got] == ids
        assert created.get(timeout=0.05) is None
    assert list(created) == []  # closed: iteration ends


def test_a_callback_that_raises_is_reported_and_breaks_nothing(team, caplog):
    def broken(event: TaskEvent) -> None:
        raise RuntimeError(f"cannot handle {event.event_type}")

    good: list[TaskEvent] = []
    failing = team.events.subscribe(broken, agent_id="broken")
    team.events.subscribe(good.append, agent_id="good")
    with caplog.at_level(logging.WARNING, logger="athena_orch.events"):
        task_id = team.queue.create_task("build", "code")
        team.queue.claim_task("alice")
        assert team.events.flush()
    assert team.queue.get_task_status(task_id).status.value == "assigned"
    assert (failing.errors, failing.last_error) == (
        2, "RuntimeError: cannot handle task_assigned")
    assert "cannot handle task_created" in caplog.text
    assert _kinds(good) == [("task_created", task_id), ("task_assigned", task_id)]


def test_a_rolled_back_write_publishes_nothing(team):
    seen: list[TaskEvent] = []
    team.events.subscribe(seen.append)
    with pytest.raises(RuntimeError), team.db.transaction():
        team.queue.create_task("never", "code")
        raise RuntimeError("the caller's transaction fails")
    kept = team.queue.create_task("kept", "code")
    assert team.events.flush()
    assert _kinds(seen) == [("task_created", kept)]


def test_subscriptions_are_recorded_with_their_figures(team):
    first = team.events.subscribe(lambda e: None, pattern="task_created", agent_id="auditor")
    again = team.events.subscribe(lambda e: None, pattern="task_created", agent_id="auditor")
    assert first.id == again.id  # one row per subscriber and pattern
    team.queue.create_task("a", "code")
    assert team.events.flush()
    row = team.events.subscriptions().set_index("agent_id").loc["auditor"]
    assert (row["event_pattern"], bool(row["is_active"]), int(row["trigger_count"])) == (
        "task_created", True, 2)
    first.close()
    again.close()
    again.close()  # twice is harmless
    row = team.events.subscriptions().set_index("agent_id").loc["auditor"]
    assert (bool(row["is_active"]), int(row["trigger_count"])) == (False, 2)
    assert row["last_triggered"] is not None


@pytest.mark.parametrize("arguments, message", [
    ({"pattern": "task_(unclosed"}, "is not a regular expression"),
    ({"pattern": ""}, "pattern must not be empty"),
    ({"agent_id": ""}, "agent_id must not be empty"),
    ({"agent_id": "a\x00b"}, "agent_id"),
    ({"callback": "print"}, "callback must be callable"),
])
def test_bad_subscriptions_are_refused_and_change_nothing(team, unchanged, arguments, message):
    with unchanged(), pytest.raises(ValidationError, match=message):
        team.events.subscribe(**arguments)


def test_a_callback_subscription_has_nothing_to_get(team):
    subscription = team.events.subscribe(lambda e: None)
    with pytest.raises(ValidationError, match="delivers to its callback"):
        subscription.get(timeout=0)
