"""Input validation, illegal transitions, unknown ids, SQL-looking strings.

Every error path checks that nothing observable changed.
"""

from __future__ import annotations

import pytest

from athena_orch import exceptions
from athena_orch.models import TaskStatus

AGENTS = ["w1", "w2"]

# ------------------------------------------------------------- transition table

STATES = ["pending", "assigned", "running", "completed", "failed", "blocked", "cancelled"]
CALLS = ["assign", "start", "complete", "fail", "fail_final", "cancel"]
LEGAL = {
    "pending": {"assign", "cancel"},
    "assigned": {"start", "fail", "fail_final", "cancel"},
    "running": {"complete", "fail", "fail_final", "cancel"},
    "completed": set(),
    "failed": set(),
    "blocked": {"cancel"},
    "cancelled": set(),
}
ILLEGAL = [(s, c) for s in STATES for c in CALLS if c not in LEGAL[s]]
LEGAL_PAIRS = [(s, c) for s in STATES for c in CALLS if c in LEGAL[s]]
EXPECTED_AFTER = {"assign": "assigned", "start": "running", "complete": "completed",
                  "fail_final": "failed", "cancel": "cancelled"}


def _task_in(queue, status):
    """A task in ``status``, reached through the public API; w1 is the assignee."""
    if status == "blocked":
        root = queue.create_task("root", "t")
        tid = queue.create_task("blocked one", "t", dependencies=[root])
        queue.cancel_task(root)
        assert queue.get_task_status(tid).status == TaskStatus.BLOCKED
        return tid
    tid = queue.create_task(f"task in {status}", "t")
    if status == "cancelled":
        queue.cancel_task(tid)
    if status in ("assigned", "running", "completed", "failed"):
        queue.assign_task(tid, "w1")
    if status in ("running", "completed"):
        queue.start_task(tid)
    if status == "completed":
        queue.complete_task(tid, "done", metrics={"duration_ms": 5})
    if status == "failed":
        queue.fail_task(tid, "fatal", should_retry=False)
    assert queue.get_task_status(tid).status.value == status
    return tid


def _call(queue, call, tid):
    return {
        "assign": lambda: queue.assign_task(tid, "w2"),
        "start": lambda: queue.start_task(tid),
        "complete": lambda: queue.complete_task(tid, "result", metrics={"duration_ms": 1}),
        "fail": lambda: queue.fail_task(tid, "error", should_retry=True),
        "fail_final": lambda: queue.fail_task(tid, "error", should_retry=False),
        "cancel": lambda: queue.cancel_task(tid, reason="why"),
    }[call]()


def test_transition_table_is_complete():
    assert len(ILLEGAL) + len(LEGAL_PAIRS) == len(STATES) * len(CALLS)
    assert len(ILLEGAL) == 31


@pytest.mark.parametrize(("status", "call"), ILLEGAL, ids=[f"{s}-{c}" for s, c in ILLEGAL])
def test_illegal_transition_raises_and_changes_nothing(orch, state, status, call):
    for a in AGENTS:
        orch.registry.register_agent(a, [])
    tid = _task_in(orch.queue, status)
    before = state(AGENTS)
    with pytest.raises(exceptions.InvalidTransitionError) as err:
        _call(orch.queue, call, tid)
    assert err.value.task_id == tid
    assert err.value.status == status
    assert tid in str(err.value) and status in str(err.value)
    assert state(AGENTS) == before


@pytest.mark.parametrize(("status", "call"), LEGAL_PAIRS,
                         ids=[f"{s}-{c}" for s, c in LEGAL_PAIRS])
def test_legal_transition_succeeds(orch, status, call):
    for a in AGENTS:
        orch.registry.register_agent(a, [])
    tid = _task_in(orch.queue, status)
    _call(orch.queue, call, tid)
    after = orch.queue.get_task_status(tid).status.value
    expected = EXPECTED_AFTER.get(call, "pending")  # "fail" with retries left: pending
    assert after == expected


# ------------------------------------------------------------------- unknown ids


@pytest.mark.parametrize("call", ["assign", "start", "complete", "fail", "fail_final",
                                  "cancel", "heartbeat"])
def test_unknown_task_writes_raise(orch, state, call):
    orch.queue.create_task("real", "t")
    before = state()
    with pytest.raises(exceptions.TaskNotFoundError) as err:
        if call == "heartbeat":
            orch.queue.heartbeat("no-such-task")
        else:
            _call(orch.queue, call, "no-such-task")
    assert "no-such-task" in str(err.value)
    assert state() == before


def test_unknown_task_read_is_none(queue):
    assert queue.get_task_status("no-such-task") is None


# ------------------------------------------------------------------- bad inputs

BAD_CREATE = [
    ("priority", {"priority": "urgent"}),
    ("priority", {"priority": ""}),
    ("priority", {"priority": None}),
    ("priority", {"priority": 1}),
    ("requirements", {"requirements": "python"}),
    ("requirements", {"requirements": ["python", 3]}),
    ("requirements", {"requirements": 42}),
    ("dependencies", {"dependencies": "some-task-id"}),
    ("dependencies", {"dependencies": [None]}),
    ("content", {"content": ""}),
    ("content", {"content": None}),
    ("content", {"content": 123}),
    ("task_type", {"task_type": ""}),
    ("task_type", {"task_type": None}),
    ("max_retries", {"max_retries": -1}),
]


@pytest.mark.parametrize(("argument", "override"), BAD_CREATE,
                         ids=[f"{a}={o[a]!r}" for a, o in BAD_CREATE])
def test_create_task_validation(queue, state, argument, override):
    queue.create_task("existing", "t")
    kwargs = {"content": "c", "task_type": "t", **override}
    before = state()
    with pytest.raises(exceptions.ValidationError, match=argument):
        queue.create_task(**kwargs)
    assert state() == before


def test_bare_string_dependency_is_rejected_even_if_it_is_a_real_id(queue, state):
    real = queue.create_task("real", "t")
    before = state()
    with pytest.raises(exceptions.ValidationError, match="dependencies"):
        queue.create_task("child", "t", dependencies=real)
    assert state() == before


@pytest.mark.parametrize("limit", [-1, 1.5, "10"])
def test_bad_limit(queue, state, limit):
    queue.create_task("x", "t")
    before = state()
    with pytest.raises(exceptions.ValidationError, match="limit"):
        queue.poll_tasks(limit=limit)
    with pytest.raises(exceptions.ValidationError, match="limit"):
        queue.query_tasks({"limit": limit})
    assert state() == before


def test_validation_errors_are_orchestration_errors(queue, state):
    queue.create_task("x", "t")
    before = state()
    with pytest.raises(exceptions.OrchestrationError):
        queue.create_task("", "t")
    with pytest.raises(ValueError):  # ValidationError is also a ValueError
        queue.create_task("c", "t", priority="urgent")
    assert state() == before


# ------------------------------------------------------------ SQL-looking strings

EVIL = [
    "x'); DROP TABLE episodic_events; --",
    "'; DELETE FROM episodic_events WHERE '1'='1",
    'Robert"); DROP TABLE agents;--',
    "100% _done_ \\ back\\slash",
    "ünïcödé ✓ 🚀 — 引号 \"quoted\" 'single'",
    "line1\nline2\ttab",
]


@pytest.mark.parametrize("evil", EVIL, ids=range(len(EVIL)))
def test_sql_looking_strings_round_trip(orch, evil):
    q, reg = orch.queue, orch.registry
    plain = q.create_task("plain", "plain")
    tid = q.create_task(evil, evil, requirements=[evil, "x"])
    t = q.get_task_status(tid)
    assert (t.content, t.task_type, t.requirements) == (evil, evil, [evil, "x"])
    assert [x.id for x in q.query_tasks({"task_type": evil})] == [tid]

    reg.register_agent(evil, [evil, "x"], {"note": evil})
    assert reg.get_agents_by_capability([evil]) == [evil]
    assert sorted(reg.get_agent_capability(evil)) == sorted([evil, "x"])
    assert reg.get_agent(evil).metadata.get("note") == evil
    reg.learn_new_capability(evil, evil + "2")
    assert evil + "2" in reg.get_agent_capability(evil)

    claimed = q.claim_task(evil)
    assert claimed is not None and claimed.assigned_to == evil
    q.start_task(claimed.id)
    q.complete_task(claimed.id, evil)
    done = q.get_task_status(claimed.id)
    assert done.status == TaskStatus.COMPLETED and done.result == evil

    other = q.create_task("to fail", "t")
    q.assign_task(other, evil)
    q.fail_task(other, evil, should_retry=False)
    assert q.get_task_status(other).error == evil
    assert [x.id for x in q.query_tasks({"agent_id": evil})] in (
        [claimed.id, other], [other, claimed.id])
    assert orch.router.route_task({"requirements": [evil]}) == evil

    # tables intact: everything still listed, new writes still work
    assert {x.id for x in q.query_tasks()} == {plain, tid, other}
    assert reg.get_agent_statistics().total_agents == 1
    assert q.get_task_status(q.create_task("after", "t")).content == "after"


def test_sql_looking_unknown_dependency(queue, state):
    before = state()
    with pytest.raises(exceptions.DependencyError):
        queue.create_task("x", "t", dependencies=["x'); DROP TABLE episodic_events; --"])
    assert state() == before


def test_like_wildcards_are_literal_in_filters(queue):
    queue.create_task("a", "research")
    queue.create_task("b", "r_search")
    assert queue.query_tasks({"task_type": "%"}) == []
    assert queue.query_tasks({"task_type": "r%"}) == []
    assert [t.content for t in queue.query_tasks({"task_type": "r_search"})] == ["b"]
    queue.assign_task(queue.create_task("c", "t"), "w1")
    assert queue.poll_tasks(agent_id="w%", status="assigned") == []
    assert queue.query_tasks({"agent_id": "_1"}) == []
    assert len(queue.poll_tasks(agent_id="w1", status="assigned")) == 1
