"""TaskQueue: creation, reads, order, lifecycle, history, leases, bulk creation, stats."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import networkx as nx
import pandas as pd
import pytest

import athena_orch
from athena_orch import exceptions
from athena_orch.models import Task, TaskStatus

ACTIVE = ("assigned", "running")


def _close_to(actual, expected, tol_s=0.002):
    assert actual is not None, "expected a datetime, got None"
    assert abs((actual - expected).total_seconds()) <= tol_s, (actual, expected)


def _ids(tasks):
    return [t.id for t in tasks]


def _make_ordered_tasks(queue, clock):
    """Tasks created in this order, 1 ms apart; returns ids in expected claim order."""
    spec = [("low-1", "low"), ("med-1", "medium"), ("high-1", "high"),
            ("med-2", "medium"), ("high-2", "high"), ("low-2", "low")]
    ids = {}
    for name, prio in spec:
        ids[name] = queue.create_task(name, "work", priority=prio)
        clock.advance(0.001)
    order = ["high-1", "high-2", "med-1", "med-2", "low-1", "low-2"]
    return [ids[n] for n in order]


# ----------------------------------------------------------------------- public API


def test_public_imports_and_aliases():
    from athena_orch import AgentRegistry, CapabilityRouter, TaskQueue  # noqa: F401
    from athena_orch import MetaMemoryStore as M1
    from athena_orch import Task as T1
    from athena_orch import TaskStatus as S1
    from athena_orch.stores import MetaMemoryStore as M2
    from athena_orch.stores import MetaStore

    assert T1 is Task and S1 is TaskStatus
    assert M1 is MetaStore and M2 is MetaStore
    assert {s.value for s in TaskStatus} == {
        "pending", "assigned", "running", "completed", "failed", "blocked", "cancelled"}


def test_connect_is_a_context_manager():
    with athena_orch.connect() as orch:
        tid = orch.queue.create_task("x", "t")
        assert orch.queue.get_task_status(tid).status == TaskStatus.PENDING
        for name in ("queue", "registry", "router", "db", "episodic", "graph", "meta"):
            assert getattr(orch, name) is not None


def test_import_stays_light():
    root = Path(athena_orch.__file__).resolve().parents[1]
    code = ("import sys, athena_orch; "
            "heavy = [m for m in ('mcp', 'ipywidgets', 'matplotlib', 'plotly') "
            "if m in sys.modules]; print(heavy)")
    env = dict(os.environ, PYTHONPATH=str(root))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------- create & read


def test_create_task_stores_every_field(queue):
    tid = queue.create_task("Research framework", "research", priority="high",
                            requirements=["python", "web"], max_retries=5,
                            estimated_duration_ms=1500)
    assert isinstance(tid, str) and tid
    t = queue.get_task_status(tid)
    assert isinstance(t, Task)
    assert t.id == tid
    assert t.content == "Research framework"
    assert t.task_type == "research"
    assert t.priority == "high"
    assert t.requirements == ["python", "web"]
    assert t.dependencies == []
    assert t.status == TaskStatus.PENDING
    assert t.assigned_to is None
    assert t.retry_count == 0
    assert t.max_retries == 5
    assert t.estimated_duration_ms == 1500
    assert t.result is None and t.error is None
    assert t.created_at is not None and t.created_at.tzinfo is not None
    assert t.created_at.utcoffset() == timedelta(0)


def test_create_task_defaults(queue):
    t = queue.get_task_status(queue.create_task("x", "t"))
    assert t.priority == "medium"
    assert t.max_retries == 3
    assert t.requirements == [] and t.dependencies == []


def test_task_ids_are_unique(queue):
    ids = [queue.create_task(f"task {i}", "t") for i in range(20)]
    assert len(set(ids)) == 20


def test_unknown_task_read_returns_none(queue):
    queue.create_task("x", "t")
    assert queue.get_task_status("no-such-task") is None


def test_create_time_comes_from_the_queue_clock(queue, clock):
    tid = queue.create_task("x", "t")
    _close_to(queue.get_task_status(tid).created_at, clock())


def test_idempotency_key_returns_existing_task(queue, state):
    a = queue.create_task("same", "t", idempotency_key="job-1")
    b = queue.create_task("same", "t", idempotency_key="job-1")
    assert a == b
    assert len(queue.query_tasks()) == 1
    before = state()
    with pytest.raises(exceptions.DuplicateTaskError):
        queue.create_task("different content", "t", idempotency_key="job-1")
    assert state() == before


# ------------------------------------------------------------------------- order


def test_poll_tasks_orders_by_priority_then_fifo(queue, clock):
    expected = _make_ordered_tasks(queue, clock)
    assert _ids(queue.poll_tasks(status="pending", limit=10)) == expected


def test_query_tasks_orders_by_priority_then_fifo(queue, clock):
    expected = _make_ordered_tasks(queue, clock)
    assert _ids(queue.query_tasks()) == expected
    assert _ids(queue.query_tasks({"status": "pending"})) == expected


def test_claim_task_hands_out_in_priority_then_fifo_order(queue, registry, clock):
    expected = _make_ordered_tasks(queue, clock)
    registry.register_agent("worker", [], {"max_concurrent_tasks": 50})
    claimed = [queue.claim_task("worker").id for _ in expected]
    assert claimed == expected
    assert queue.claim_task("worker") is None


def test_poll_tasks_limit(queue, clock):
    expected = _make_ordered_tasks(queue, clock)
    assert _ids(queue.poll_tasks(limit=2)) == expected[:2]
    assert queue.poll_tasks(limit=0) == []
    assert _ids(queue.query_tasks({"limit": 3})) == expected[:3]


def test_poll_tasks_by_agent_and_status(queue):
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t")
    c = queue.create_task("c", "t")
    queue.assign_task(a, "w1")
    queue.assign_task(b, "w2")
    queue.assign_task(c, "w1")
    queue.start_task(c)
    assert _ids(queue.poll_tasks(agent_id="w1", status="assigned")) == [a]
    assert _ids(queue.poll_tasks(agent_id="w1", status="running")) == [c]
    assert sorted(_ids(queue.poll_tasks(status="assigned"))) == sorted([a, b])
    assert queue.poll_tasks(status="pending") == []


def test_poll_pending_lists_tasks_that_are_not_ready(queue):
    root = queue.create_task("root", "t")
    child = queue.create_task("child", "t", dependencies=[root])
    assert sorted(_ids(queue.poll_tasks(status="pending"))) == sorted([root, child])


def test_query_tasks_filters(queue, clock):
    r1 = queue.create_task("r1", "research", priority="high")
    clock.advance(1)
    cutoff = clock()
    clock.advance(1)
    a1 = queue.create_task("a1", "analysis", priority="low")
    r2 = queue.create_task("r2", "research", priority="low")
    queue.assign_task(r2, "w1")
    assert _ids(queue.query_tasks({"task_type": "research"})) == [r1, r2]
    assert _ids(queue.query_tasks({"priority": "low"})) in ([a1, r2], [r2, a1])
    assert _ids(queue.query_tasks({"status": "assigned"})) == [r2]
    assert _ids(queue.query_tasks({"agent_id": "w1"})) == [r2]
    assert sorted(_ids(queue.query_tasks({"created_after": cutoff}))) == sorted([a1, r2])
    assert _ids(queue.query_tasks({"task_type": "research", "priority": "high"})) == [r1]
    assert queue.query_tasks({"task_type": "nothing"}) == []
    assert len(queue.query_tasks(None)) == 3


# --------------------------------------------------------------------- lifecycle


def test_full_lifecycle_through_claim(queue, registry):
    registry.register_agent("bot", ["python"])
    tid = queue.create_task("work", "t", requirements=["python"])

    t = queue.claim_task("bot")
    assert isinstance(t, Task)
    assert t.id == tid and t.status == TaskStatus.ASSIGNED and t.assigned_to == "bot"
    assert t.assigned_at is not None

    t = queue.start_task(tid)
    assert t.status == TaskStatus.RUNNING and t.started_at is not None

    t = queue.complete_task(tid, "Found 5 patterns", metrics={"duration_ms": 1200})
    assert t.status == TaskStatus.COMPLETED

    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.COMPLETED
    assert t.result == "Found 5 patterns"
    assert t.result_task_id is not None
    assert t.execution_duration_ms == 1200
    assert t.completed_at is not None
    assert t.success is True
    assert t.assigned_to == "bot"


def test_assign_task_returns_the_task(queue):
    tid = queue.create_task("x", "t")
    t = queue.assign_task(tid, "w1")
    assert isinstance(t, Task)
    assert (t.id, t.status, t.assigned_to) == (tid, TaskStatus.ASSIGNED, "w1")


def test_complete_task_counts_in_agent_health(queue, registry):
    registry.register_agent("bot", ["python"])
    tid = queue.create_task("work", "t")
    queue.assign_task(tid, "bot")
    queue.start_task(tid)
    assert registry.get_agent_health("bot")["current_load"] == 1
    queue.complete_task(tid, "done", metrics={"duration_ms": 800})
    health = registry.get_agent_health("bot")
    assert health["total_completed"] == 1
    assert health["total_failed"] == 0
    assert health["avg_completion_ms"] == pytest.approx(800)
    assert health["success_rate"] == pytest.approx(1.0)
    assert health["current_load"] == 0


def test_assign_to_unregistered_agent_is_accepted(queue, registry):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "ghost")
    queue.start_task(tid)
    queue.complete_task(tid, "ok")
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.COMPLETED and t.assigned_to == "ghost"
    assert registry.get_agent("ghost") is None


def test_load_of_unregistered_assignee_counts_once_registered(queue, registry):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "ghost")
    registry.register_agent("ghost", [])
    assert registry.get_agent_health("ghost")["current_load"] == 1


def test_cancel_pending_task_stores_reason(queue):
    tid = queue.create_task("x", "t")
    t = queue.cancel_task(tid, reason="no longer needed")
    assert t.status == TaskStatus.CANCELLED
    t = queue.get_task_status(tid)
    assert t.status == TaskStatus.CANCELLED
    assert "no longer needed" in t.error


@pytest.mark.parametrize("started", [False, True])
def test_cancel_active_task_frees_agent(queue, registry, started):
    registry.register_agent("bot", [])
    tid = queue.create_task("x", "t")
    queue.claim_task("bot")
    if started:
        queue.start_task(tid)
    queue.cancel_task(tid)
    assert queue.get_task_status(tid).status == TaskStatus.CANCELLED
    assert registry.get_agent_health("bot")["current_load"] == 0


# ----------------------------------------------------------------------- history


def test_history_lists_transitions_in_order(queue, transitions):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w1")
    queue.start_task(tid)
    queue.complete_task(tid, "r")
    hist = queue.get_task_history(tid)
    assert isinstance(hist, list) and all(isinstance(h, dict) for h in hist)
    for h in hist:
        assert {"to_status", "from_status", "at"} <= set(h)
        assert h["at"] is not None
    assert transitions(hist) == ["assigned", "running", "completed"]
    moves = [(str(h["from_status"]), str(h["to_status"])) for h in hist if h.get("from_status")]
    assert moves[-3:] == [("pending", "assigned"), ("assigned", "running"),
                          ("running", "completed")]


def test_history_records_retries_and_failure(queue, clock, transitions):
    tid = queue.create_task("x", "t", max_retries=1)
    queue.assign_task(tid, "w1")
    queue.start_task(tid)
    queue.fail_task(tid, "first")
    clock.advance(10)
    queue.assign_task(tid, "w1")
    queue.fail_task(tid, "second")
    assert transitions(queue.get_task_history(tid)) == [
        "assigned", "running", "pending", "assigned", "failed"]


def test_history_is_per_task(queue, transitions):
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t")
    queue.assign_task(a, "w1")
    queue.cancel_task(b)
    assert transitions(queue.get_task_history(a)) == ["assigned"]
    assert transitions(queue.get_task_history(b)) == ["cancelled"]


def test_events_that_are_not_tasks_never_look_like_tasks(queue):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w1")
    queue.start_task(tid)
    queue.complete_task(tid, "a result that is stored as its own event")
    other = queue.create_task("y", "t")
    queue.assign_task(other, "w1")
    queue.fail_task(other, "boom")  # retried: back to pending
    assert _ids(queue.poll_tasks(status="pending")) == [other]
    assert sorted(_ids(queue.query_tasks())) == sorted([tid, other])
    assert _ids(queue.query_tasks({"status": "completed"})) == [tid]
    stats = queue.get_queue_statistics()
    assert stats.pending_count == 1 and stats.completed_count == 1
    assert stats.to_dict()["total_count"] == 2
    assert len(queue.to_frame()) == 2


# --------------------------------------------------------------- leases/heartbeat


def test_assign_sets_lease_from_clock(queue, clock):
    tid = queue.create_task("x", "t")
    assert queue.lease_seconds == 300
    queue.assign_task(tid, "w1")
    _close_to(queue.get_task_status(tid).lease_until, clock() + timedelta(seconds=300))
    clock.advance(100)
    queue.start_task(tid)
    _close_to(queue.get_task_status(tid).lease_until, clock() + timedelta(seconds=300))


def test_lease_seconds_is_settable(queue, clock):
    queue.lease_seconds = 10
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w1")
    _close_to(queue.get_task_status(tid).lease_until, clock() + timedelta(seconds=10))
    clock.advance(11)
    assert queue.requeue_stale() == [tid]


def test_heartbeat_extends_lease(queue, clock):
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w1")
    clock.advance(250)
    assert queue.heartbeat(tid) == [tid]
    _close_to(queue.get_task_status(tid).lease_until, clock() + timedelta(seconds=300))
    clock.advance(100)  # 350 s after assignment, 100 s after the heartbeat
    assert queue.requeue_stale() == []
    assert queue.get_task_status(tid).status == TaskStatus.ASSIGNED
    clock.advance(201)
    assert queue.requeue_stale() == [tid]


def test_heartbeat_by_agent_extends_all_its_active_tasks(queue, registry, clock):
    registry.register_agent("bot", [])
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t")
    c = queue.create_task("c", "t")
    queue.assign_task(a, "bot")
    queue.assign_task(b, "bot")
    queue.start_task(b)
    queue.assign_task(c, "other")
    clock.advance(200)
    assert sorted(queue.heartbeat(agent_id="bot")) == sorted([a, b])
    for tid in (a, b):
        _close_to(queue.get_task_status(tid).lease_until, clock() + timedelta(seconds=300))
    _close_to(queue.get_task_status(c).lease_until, clock() + timedelta(seconds=100))


def test_requeue_stale_retries_expired_tasks_only(queue, registry, clock):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 10})
    old = queue.create_task("old", "t")
    queue.assign_task(old, "bot")
    queue.start_task(old)
    clock.advance(200)
    fresh = queue.create_task("fresh", "t")
    queue.assign_task(fresh, "bot")
    clock.advance(101)  # old's lease (300 s) ran out, fresh's has 199 s left
    assert queue.requeue_stale() == [old]
    t = queue.get_task_status(old)
    assert t.status == TaskStatus.PENDING
    assert t.retry_count == 1
    assert t.assigned_to is None
    assert queue.get_task_status(fresh).status == TaskStatus.ASSIGNED
    health = registry.get_agent_health("bot")
    assert health["total_failed"] == 1
    assert health["current_load"] == 1


def test_requeue_stale_with_explicit_now(queue, clock):
    start = clock()
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "w1")
    assert queue.requeue_stale(now=start + timedelta(seconds=299)) == []
    assert queue.get_task_status(tid).status == TaskStatus.ASSIGNED
    assert queue.requeue_stale(now=start + timedelta(seconds=301)) == [tid]
    assert queue.get_task_status(tid).status == TaskStatus.PENDING


def test_requeue_stale_without_retries_left_fails_and_blocks(queue, clock):
    tid = queue.create_task("x", "t", max_retries=0)
    child = queue.create_task("child", "t", dependencies=[tid])
    queue.assign_task(tid, "w1")
    clock.advance(301)
    assert queue.requeue_stale() == [tid]
    assert queue.get_task_status(tid).status == TaskStatus.FAILED
    c = queue.get_task_status(child)
    assert c.status == TaskStatus.BLOCKED and c.blocked_by == tid


# -------------------------------------------------------------------- bulk create


def test_create_tasks_from_records_with_keys(queue):
    existing = queue.create_task("existing", "t")
    ids = queue.create_tasks([
        {"key": "fetch", "content": "fetch data", "task_type": "io", "priority": "high",
         "requirements": ["net"]},
        {"key": "clean", "content": "clean data", "task_type": "etl",
         "dependencies": ["fetch"]},
        {"content": "report", "task_type": "report", "priority": "low",
         "dependencies": ["clean", existing], "max_retries": 1},
    ])
    assert len(ids) == 3 and len(set(ids)) == 3
    fetch, clean, report = (queue.get_task_status(i) for i in ids)
    assert (fetch.content, fetch.task_type, fetch.priority, fetch.requirements) == (
        "fetch data", "io", "high", ["net"])
    assert clean.content == "clean data" and clean.dependencies == [fetch.id]
    assert report.content == "report"
    assert sorted(report.dependencies) == sorted([clean.id, existing])
    assert report.max_retries == 1 and report.priority == "low"
    assert all(t.status == TaskStatus.PENDING for t in (fetch, clean, report))


def test_create_tasks_from_dataframe(queue):
    df = pd.DataFrame([
        {"key": "a", "content": "A", "task_type": "t", "priority": "high",
         "requirements": ["x"], "dependencies": []},
        {"key": "b", "content": "B", "task_type": "t", "priority": "medium",
         "requirements": [], "dependencies": ["a"]},
        {"key": "c", "content": "C", "task_type": "u", "priority": "low",
         "requirements": ["x", "y"], "dependencies": ["a", "b"]},
    ])
    ids = queue.create_tasks(df)
    assert [queue.get_task_status(i).content for i in ids] == ["A", "B", "C"]
    a, b, c = (queue.get_task_status(i) for i in ids)
    assert a.requirements == ["x"] and a.priority == "high"
    assert b.dependencies == [a.id]
    assert sorted(c.dependencies) == sorted([a.id, b.id])
    assert c.requirements == ["x", "y"] and c.task_type == "u"


def test_create_tasks_empty(queue):
    assert queue.create_tasks([]) == []
    assert queue.query_tasks() == []


def test_create_tasks_is_all_or_nothing_on_bad_record(queue, state):
    queue.create_task("before", "t")
    before = state()
    with pytest.raises(exceptions.ValidationError, match="priority"):
        queue.create_tasks([
            {"key": "a", "content": "A", "task_type": "t"},
            {"key": "b", "content": "B", "task_type": "t", "dependencies": ["a"]},
            {"content": "C", "task_type": "t", "priority": "urgent"},
        ])
    assert state() == before


def test_create_tasks_is_all_or_nothing_on_unknown_reference(queue, state):
    before = state()
    with pytest.raises(exceptions.DependencyError, match="nope"):
        queue.create_tasks([
            {"key": "a", "content": "A", "task_type": "t"},
            {"content": "B", "task_type": "t", "dependencies": ["nope"]},
        ])
    assert state() == before


def test_dependency_graph_edges_point_to_dependents(queue):
    a = queue.create_task("a", "t")
    b = queue.create_task("b", "t", dependencies=[a])
    c = queue.create_task("c", "t", dependencies=[a])
    d = queue.create_task("d", "t", dependencies=[b, c])
    lone = queue.create_task("lone", "t")
    g = queue.dependency_graph()
    assert isinstance(g, nx.DiGraph)
    assert set(g.edges()) == {(a, b), (a, c), (b, d), (c, d)}
    assert nx.descendants(g, a) == {b, c, d}
    assert {a, b, c, d} <= set(g.nodes)
    assert lone not in nx.descendants(g, a)
    # it is a copy: changing it does not change the queue's
    g.add_edge(d, lone)
    g.remove_edge(a, b)
    g2 = queue.dependency_graph()
    assert set(g2.edges()) == {(a, b), (a, c), (b, d), (c, d)}


# ---------------------------------------------------------------- stats & frames


def test_queue_statistics_empty(queue):
    stats = queue.get_queue_statistics()
    for field in ("pending_count", "assigned_count", "running_count", "completed_count",
                  "failed_count", "blocked_count", "cancelled_count"):
        assert getattr(stats, field) == 0
    assert stats.success_rate == 1.0
    d = stats.to_dict()
    assert d["success_rate"] == 1.0 and d["pending_count"] == 0


def test_queue_statistics_counts(queue):
    def make(n):
        return [queue.create_task(f"t{i}", "t") for i in range(n)]

    done = make(3)
    for t in done:
        queue.assign_task(t, "w")
        queue.start_task(t)
        queue.complete_task(t, "ok")
    failed = queue.create_task("f", "t")
    queue.assign_task(failed, "w")
    queue.fail_task(failed, "bad", should_retry=False)
    queue.create_task("blocked", "t", dependencies=[failed])
    running = queue.create_task("r", "t")
    queue.assign_task(running, "w")
    queue.start_task(running)
    queue.assign_task(queue.create_task("a", "t"), "w")
    queue.cancel_task(queue.create_task("c", "t"))
    make(2)  # pending

    stats = queue.get_queue_statistics()
    assert (stats.pending_count, stats.assigned_count, stats.running_count,
            stats.completed_count, stats.failed_count, stats.blocked_count,
            stats.cancelled_count) == (2, 1, 1, 3, 1, 1, 1)
    assert stats.success_rate == pytest.approx(3 / 4)
    d = stats.to_dict()
    assert d["completed_count"] == 3 and d["success_rate"] == pytest.approx(0.75)


def _column_holding(df, values):
    values = set(values)
    if set(df.index) == values:
        return "index"
    for col in df.columns:
        try:
            if set(df[col]) == values:
                return col
        except TypeError:  # unhashable cells (lists)
            continue
    return None


def test_to_frame_one_row_per_task(queue):
    assert len(queue.to_frame()) == 0
    ids = [queue.create_task(f"t{i}", "t") for i in range(4)]
    queue.assign_task(ids[0], "w")
    queue.start_task(ids[0])
    queue.complete_task(ids[0], "r")
    df = queue.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 4
    assert _column_holding(df, ids) is not None


def test_query_tasks_pages_with_limit_and_offset(orch):
    q = orch.queue
    ids = q.create_tasks([{"content": f"t{i}", "task_type": "t"} for i in range(7)])
    pages = [[t.id for t in q.query_tasks({"limit": 3, "offset": offset})]
             for offset in (0, 3, 6, 9)]
    assert pages == [ids[:3], ids[3:6], ids[6:], []]
    assert [t.id for t in q.query_tasks({"offset": 5})] == ids[5:]
    with pytest.raises(athena_orch.exceptions.ValidationError, match="offset must be a non-negative"):
        q.query_tasks({"offset": -1})


def test_add_task_tells_whether_it_made_the_task(queue):
    made, created = queue.add_task("report", "docs", idempotency_key="r-1")
    assert created and queue.get_task_status(made).content == "report"
    again, created_again = queue.add_task("report", "docs", idempotency_key="r-1")
    assert (again, created_again) == (made, False)
    plain, created_plain = queue.add_task("no key", "docs")
    assert created_plain and plain != made
    assert queue.get_queue_statistics().total_count == 2
