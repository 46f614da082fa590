"""A file database survives close/reopen; a second process gets a clear, typed error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import athena_orch
from athena_orch import exceptions
from athena_orch.models import TaskStatus

ROOT = Path(athena_orch.__file__).resolve().parents[1]


def _populate(orch):
    """Tasks in every state, agents with figures, dependencies and routing decisions."""
    q, reg = orch.queue, orch.registry
    reg.register_agent("alpha", ["python", "web"], {"max_concurrent_tasks": 3, "team": "a"})
    reg.register_agent("beta", ["python"])
    reg.register_agent("sleepy", ["sql"])
    reg.set_active("sleepy", False)
    reg.learn_new_capability("beta", "rust")
    reg.update_agent_performance("beta", False, 70)

    ids = {}
    ids["done"] = q.create_task("fetch", "io", priority="high", requirements=["python"])
    ids["after_done"] = q.create_task("parse", "etl", dependencies=[ids["done"]])
    ids["doomed"] = q.create_task("flaky", "io", max_retries=0)
    ids["child_of_doomed"] = q.create_task("report", "r", dependencies=[ids["doomed"]])
    ids["grandchild"] = q.create_task("email", "r",
                                      dependencies=[ids["child_of_doomed"], ids["done"]])
    ids["running"] = q.create_task("long job", "compute", requirements=["python"])
    ids["cancelled"] = q.create_task("nope", "t")
    ids["retried"] = q.create_task("retry me", "t", max_retries=2)
    ids["waits"] = q.create_task("later", "t", dependencies=[ids["running"]])

    q.assign_task(ids["done"], "alpha")
    q.start_task(ids["done"])
    q.complete_task(ids["done"], "fetched 3 files", metrics={"duration_ms": 250})
    q.assign_task(ids["doomed"], "beta")
    q.fail_task(ids["doomed"], "timeout talking to API")
    q.assign_task(ids["running"], "alpha")
    q.start_task(ids["running"])
    q.cancel_task(ids["cancelled"], reason="duplicate")
    q.assign_task(ids["retried"], "beta")
    q.fail_task(ids["retried"], "transient")

    orch.router.route_task({"requirements": ["python"]})
    orch.router.decide({"requirements": ["web"]})
    return ids


def _observe(orch, ids):
    q, reg = orch.queue, orch.registry
    agents = ["alpha", "beta", "sleepy"]
    return {
        "tasks": {k: q.get_task_status(v).to_dict() for k, v in ids.items()},
        "history": {k: [str(h["to_status"]) for h in q.get_task_history(v)]
                    for k, v in ids.items()},
        "order": [t.id for t in q.query_tasks()],
        "stats": q.get_queue_statistics().to_dict(),
        "agents": {a: reg.get_agent(a).to_dict() for a in agents},
        "health": {a: reg.get_agent_health(a) for a in agents},
        "caps": {a: sorted(reg.get_agent_capability(a)) for a in agents},
        "by_cap": {c: reg.get_agents_by_capability([c])
                   for c in ("python", "web", "sql", "rust")},
        "skills": dict(reg.get_agent_statistics().skill_distribution),
        "total_agents": reg.get_agent_statistics().total_agents,
        "edges": sorted(q.dependency_graph().edges()),
        "decisions": len(orch.router.decisions()),
    }


def test_everything_survives_close_and_reopen(tmp_path):
    path = str(tmp_path / "orch.duckdb")
    orch = athena_orch.connect(path)
    try:
        ids = _populate(orch)
        before = _observe(orch, ids)
    finally:
        orch.close()

    # a sanity check of what was written, so an empty reopen cannot pass
    assert before["tasks"]["done"]["status"] == "completed"
    assert before["tasks"]["done"]["result"] == "fetched 3 files"
    assert before["tasks"]["doomed"]["error"] == "timeout talking to API"
    assert before["tasks"]["grandchild"]["status"] == "blocked"
    assert before["decisions"] == 2
    assert len(before["edges"]) == 5

    with athena_orch.connect(path) as again:
        after = _observe(again, ids)
        assert after == before
        assert again.registry.get_agent("sleepy").active is False
        assert again.registry.get_agent("alpha").max_concurrent_tasks == 3


def test_work_continues_after_reopen(tmp_path):
    path = str(tmp_path / "orch.duckdb")
    with athena_orch.connect(path) as orch:
        ids = _populate(orch)

    with athena_orch.connect(path) as orch:
        q = orch.queue
        # readiness uses the persisted dependency state: "after_done" is ready
        orch.registry.register_agent("gamma", [], {"max_concurrent_tasks": 10})
        claimed = []
        while (t := q.claim_task("gamma")) is not None:
            claimed.append(t.id)
        assert ids["after_done"] in claimed
        assert ids["waits"] not in claimed  # its dependency is still running
        assert ids["grandchild"] not in claimed
        # blocking uses the rebuilt dependency graph
        q.fail_task(ids["running"], "crash", should_retry=False)
        t = q.get_task_status(ids["waits"])
        assert t.status == TaskStatus.BLOCKED and t.blocked_by == ids["running"]
        # load is read from the task table, also after a reopen
        assert orch.registry.get_agent_health("alpha")["current_load"] == 0
        assert orch.registry.get_agent_health("gamma")["current_load"] == len(claimed)
        new = q.create_task("fresh", "t")
        assert new not in ids.values()


def test_connect_accepts_a_path_object(tmp_path):
    path = tmp_path / "as_path.duckdb"
    with athena_orch.connect(path) as orch:
        tid = orch.queue.create_task("x", "t")
    with athena_orch.connect(path) as orch:
        assert orch.queue.get_task_status(tid).content == "x"


# ------------------------------------------------------------------ other processes

CHILD = """
import json, sys
import athena_orch
from athena_orch import exceptions
try:
    orch = athena_orch.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
except exceptions.OrchestrationError as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc),
                      "locked": isinstance(exc, exceptions.DatabaseLockedError)}))
    sys.exit(3)
except BaseException as exc:
    print(json.dumps({"type": type(exc).__name__, "message": str(exc), "locked": False}))
    sys.exit(4)
tasks = orch.queue.query_tasks()
print(json.dumps({"type": None, "tasks": [t.content for t in tasks]}))
orch.close()
"""


def _child(path, mode, cwd):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True,
                         text=True, env=env, cwd=str(cwd), timeout=60)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    assert lines, f"child printed nothing; rc={out.returncode}, stderr={out.stderr[-2000:]}"
    return out.returncode, json.loads(lines[-1])


@pytest.mark.parametrize("mode", ["rw", "ro"])
def test_second_process_gets_a_clear_locked_error(tmp_path, mode):
    path = tmp_path / "held.duckdb"
    orch = athena_orch.connect(str(path))
    try:
        orch.queue.create_task("held by the parent", "t")
        rc, report = _child(path, mode, tmp_path)
        assert rc == 3, report
        assert report["locked"] is True, report
        msg = report["message"].lower()
        assert (str(os.getpid()) in msg or "read-only" in msg or "read_only" in msg
                or "mcp" in msg), report["message"]
        # the parent is unaffected
        assert len(orch.queue.query_tasks()) == 1
        orch.queue.create_task("still writable", "t")
    finally:
        orch.close()


def test_read_only_open_of_an_idle_file_works(tmp_path):
    path = str(tmp_path / "idle.duckdb")
    with athena_orch.connect(path) as orch:
        tid = orch.queue.create_task("analyse me", "t", priority="high")
        orch.registry.register_agent("alpha", ["python"])
        orch.registry.update_agent_performance("alpha", True, 10)

    ro = athena_orch.connect(path, read_only=True)
    try:
        t = ro.queue.get_task_status(tid)
        assert t.content == "analyse me" and t.priority == "high"
        assert [x.id for x in ro.queue.poll_tasks()] == [tid]
        assert ro.registry.get_agent_health("alpha")["total_completed"] == 1
        assert ro.registry.get_agents_by_capability(["python"]) == ["alpha"]
        assert len(ro.queue.to_frame()) == 1
        # writes are refused with the package's own error, never a raw database error
        with pytest.raises(exceptions.OrchestrationError):
            ro.queue.create_task("must not be written", "t")
        assert len(ro.queue.query_tasks()) == 1
    finally:
        ro.close()

    with athena_orch.connect(path) as orch:
        assert [t.content for t in orch.queue.query_tasks()] == ["analyse me"]


def test_read_only_open_from_another_process(tmp_path):
    path = tmp_path / "idle2.duckdb"
    with athena_orch.connect(str(path)) as orch:
        orch.queue.create_task("one", "t")
        orch.queue.create_task("two", "t")
    rc, report = _child(path, "ro", tmp_path)
    assert rc == 0, report
    assert sorted(report["tasks"]) == ["one", "two"]


def test_a_manager_says_whether_it_is_closed(database_url):
    orch = athena_orch.connect(database_url())
    assert orch.closed is False
    orch.close()
    assert orch.closed is True
