"""``athena-orch worker``: real worker processes on a DuckDB file and on PostgreSQL, stopped
with SIGTERM, killed with SIGKILL, several at once; and import paths that do not resolve.

The handlers are tests/worker_handlers.py, imported as ``worker_handlers:HANDLERS`` from
the tests directory (the CLI puts the current directory on sys.path). Each handler call
journals its start and end, which is how a test knows what ran while the DuckDB file is
held by the worker (DuckDB lets one process open a file).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import postgres_only
from invariants import check_invariants

import athena_orch
from athena_orch.cli import main
from athena_orch.models import TaskStatus

TESTS = Path(__file__).resolve().parent
PATIENCE = 60

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM and SIGKILL")


def spawn(db: str, journal: Path, *args: str, fast: bool = False) -> subprocess.Popen:
    env = {**os.environ, "WORKER_JOURNAL": str(journal)}
    env.pop("WORKER_FAST", None)
    if fast:
        env["WORKER_FAST"] = "1"
    return subprocess.Popen(
        [sys.executable, "-m", "athena_orch", "worker", "--db", db, *args,
         "worker_handlers:HANDLERS"],
        cwd=TESTS, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    """Wait for a worker process; it must exit 0 and print its summary."""
    out, err = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 0, err
    return json.loads(out.strip().splitlines()[-1])


def journal_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def ended(path: Path) -> int:
    return sum(1 for e in journal_of(path) if e["event"] == "end")


def wait_for(condition, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert proc is None or proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.02)


def make_tasks(db: str, sleeps: list[float], **fields) -> list[str]:
    with athena_orch.connect(db) as orch:
        return orch.queue.create_tasks(
            [{"content": json.dumps({"sleep": s}), "task_type": "work", **fields}
             for s in sleeps])


def completions(orch, task_id: str) -> int:
    return sum(h["to_status"] == "completed" for h in orch.queue.get_task_history(task_id))


# ---------------------------------------------------------------------- import paths
@pytest.mark.parametrize(("path", "message"), [
    ("no_such_module:HANDLERS",
     "cannot import 'no_such_module': no module named 'no_such_module'"),
    ("athena_orch.no_such_module:HANDLERS", "no module named 'athena_orch.no_such_module'"),
    ("worker_handlers:MISSING", "module 'worker_handlers' has no attribute 'MISSING'"),
    ("worker_handlers:HANDLERS.work.nope", "has no attribute 'HANDLERS.work.nope'"),
    ("worker_handlers", "module:attribute"),
    (":HANDLERS", "module:attribute"),
    ("worker_handlers:NOT_HANDLERS", "handlers must be a dict of task_type -> callable or one "
                                     "callable, not int"),
    ("worker_handlers:EMPTY", "worker 'bot' has no handlers"),
])
def test_a_handlers_path_that_does_not_resolve_is_exit_2(tmp_path, monkeypatch, capsys,
                                                          path, message):
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["worker", "--db", str(tmp_path / "orch.duckdb"), "--agent", "bot",
                 "--capabilities", "py", path])
    assert code == 2
    assert message in capsys.readouterr().err


def test_a_module_that_fails_to_import_shows_its_traceback(tmp_path, monkeypatch, capsys):
    (tmp_path / "broken_handlers_mod.py").write_text(
        "import not_installed_anywhere_xyz\nHANDLERS = {}\n")
    monkeypatch.chdir(tmp_path)  # the current directory is on sys.path, as with rq
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["worker", "--agent", "bot", "broken_handlers_mod:HANDLERS"])
    err = capsys.readouterr().err
    assert code == 2
    assert "importing 'broken_handlers_mod' failed" in err and "Traceback" in err
    assert "No module named 'not_installed_anywhere_xyz'" in err
    assert not (tmp_path / "orch.duckdb").exists()  # nothing opened


def test_an_unregistered_agent_without_capabilities_is_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["worker", "--db", str(tmp_path / "orch.duckdb"), "--agent", "ghost",
                 "worker_handlers:HANDLERS"])
    assert code == 2
    assert "agent 'ghost' is not registered" in capsys.readouterr().err


def test_a_database_that_cannot_be_opened_is_exit_1(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["worker", "--db", str(tmp_path), "--agent", "bot", "worker_handlers:HANDLERS"])
    assert code == 1
    assert f"cannot open {tmp_path}" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "message"), [
    (["--concurrency", "0"], "concurrency must be at least 1"),
    (["--time-limit", "-1"], "time_limit must be between"),
    (["--grace", "nan"], "grace_seconds must be a number, not nan"),
])
def test_a_bad_setting_is_exit_2(tmp_path, monkeypatch, capsys, option, message):
    monkeypatch.chdir(TESTS)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["worker", "--db", str(tmp_path / "orch.duckdb"), "--agent", "bot",
                 "--capabilities", "py", *option, "worker_handlers:HANDLERS"])
    assert code == 2
    assert message in capsys.readouterr().err


# ---------------------------------------------------------------------- DuckDB file
def test_until_idle_drains_a_file_and_prints_the_summary(tmp_path):
    db, journal = str(tmp_path / "orch.duckdb"), tmp_path / "journal"
    ids = make_tasks(db, [0] * 5)
    proc = spawn(db, journal, "--agent", "bot", "--capabilities", "py", "--concurrency", "2",
                 "--until-idle")
    summary = finish(proc)
    assert summary["completed"] == 5 and summary["failed"] == summary["errors"] == 0
    with athena_orch.connect(db) as orch:
        for task_id in ids:
            task = orch.queue.get_task_status(task_id)
            assert task.status is TaskStatus.COMPLETED
            assert json.loads(task.result) == {"done_by": proc.pid}
        assert orch.registry.get_agent("bot").max_concurrent_tasks == 2
        check_invariants(orch)


def test_assigned_only_runs_what_was_assigned_and_leaves_the_open_queue(tmp_path):
    db, journal = str(tmp_path / "orch.duckdb"), tmp_path / "journal"
    ids = make_tasks(db, [0] * 4)
    with athena_orch.connect(db) as orch:
        orch.registry.register_agent("bot", ["py"])
        for task_id in ids[:2]:
            orch.queue.assign_task(task_id, "bot")
    summary = finish(spawn(db, journal, "--agent", "bot", "--capabilities", "py",
                           "--assigned-only", "--until-idle", fast=True))
    assert summary["completed"] == 2
    with athena_orch.connect(db) as orch:
        states = [orch.queue.get_task_status(t).status for t in ids]
        assert states == [TaskStatus.COMPLETED] * 2 + [TaskStatus.PENDING] * 2


def test_sigterm_finishes_what_fits_in_the_grace_period_and_hands_back_the_rest(tmp_path):
    db, journal = str(tmp_path / "orch.duckdb"), tmp_path / "journal"
    slow = make_tasks(db, [PATIENCE] * 2, priority="high")  # claimed first, never finish
    quick = make_tasks(db, [0.2] * 8)
    proc = spawn(db, journal, "--agent", "bot", "--capabilities", "py", "--concurrency", "3",
                 "--grace", "1")
    wait_for(lambda: ended(journal) >= 3, "three quick tasks done", proc)
    proc.send_signal(signal.SIGTERM)
    summary = finish(proc)
    # the two slow tasks are handed back; so is a quick one still running when the grace
    # period ends (on a busy machine 0.2 s of work can outlast 1 s)
    assert summary["released"] >= 2 and summary["lost"] == summary["errors"] == 0

    events = journal_of(journal)
    with athena_orch.connect(db) as orch:
        q = orch.queue
        for task_id in slow:  # running past the grace period: handed back, no retry used
            task = q.get_task_status(task_id)
            assert task.status is TaskStatus.PENDING and task.retry_count == 0
            assert q.get_task_history(task_id)[-1]["detail"].startswith(
                "released: the worker stopped")
        done = [t for t in quick if q.get_task_status(t).status is TaskStatus.COMPLETED]
        assert len(done) == summary["completed"] >= 3
        released = 0
        for task_id in quick:  # completed exactly once, or pending: never started or released
            ends = [e for e in events if e["task"] == task_id and e["event"] == "end"]
            starts = [e for e in events if e["task"] == task_id and e["event"] == "start"]
            if task_id in done:
                assert completions(orch, task_id) == 1 and len(ends) == 1
                continue
            task = q.get_task_status(task_id)
            assert task.status is TaskStatus.PENDING and task.retry_count == 0
            if starts:
                assert q.get_task_history(task_id)[-1]["detail"].startswith(
                    "released: the worker stopped")
                released += 1
            else:
                assert not ends
        assert summary["released"] == 2 + released
        assert q.get_queue_statistics().running_count == 0
        assert orch.registry.get_agent("bot").total_failed == 0
        check_invariants(orch)

    rest = finish(spawn(db, journal, "--agent", "bot", "--until-idle", fast=True))
    assert rest["completed"] == 10 - summary["completed"]
    with athena_orch.connect(db) as orch:
        assert all(completions(orch, t) == 1 for t in slow + quick)
        check_invariants(orch)


def test_a_killed_worker_process_gets_its_tasks_back_through_the_lease(tmp_path):
    db, journal = str(tmp_path / "orch.duckdb"), tmp_path / "journal"
    ids = make_tasks(db, [PATIENCE] * 4)
    proc = spawn(db, journal, "--agent", "bot", "--capabilities", "py", "--concurrency", "2")
    wait_for(lambda: len(journal_of(journal)) >= 2, "two handlers running", proc)
    proc.kill()
    proc.communicate(timeout=PATIENCE)
    assert proc.returncode == -signal.SIGKILL

    with athena_orch.connect(db) as orch:
        q = orch.queue
        held = sorted(t.id for t in q.query_tasks({"agent_id": "bot",
                                                   "status": ["assigned", "running"]}))
        assert held == sorted(e["task"] for e in journal_of(journal))
        after_lease = q.clock() + timedelta(seconds=q.lease_seconds + 1)
        assert sorted(q.requeue_stale(now=after_lease)) == held
        for task_id in ids:
            task = q.get_task_status(task_id)
            assert task.status is TaskStatus.PENDING
            assert task.retry_count == (1 if task_id in held else 0)
            assert completions(orch, task_id) == 0
        check_invariants(orch)


EXITS_WHILE_WORKING = """
import sys, time
import athena_orch as ao
orch = ao.connect(sys.argv[1])
worker = ao.Worker(orch, "w", {"t": lambda task: time.sleep(60)}, capabilities=[],
                   grace_seconds=0.2)
task_id = orch.queue.create_task("x", "t")
worker.start()
while orch.queue.get_task_status(task_id).status != "running":
    time.sleep(0.01)
"""  # and the script ends, its worker still running in the background


def test_a_script_that_exits_with_a_started_worker_hands_its_task_back(tmp_path):
    db = str(tmp_path / "orch.duckdb")
    run = subprocess.run([sys.executable, "-c", EXITS_WHILE_WORKING, db], capture_output=True,
                         text=True, timeout=PATIENCE)
    assert run.returncode == 0, run.stderr
    with athena_orch.connect(db) as orch:
        (task,) = orch.queue.query_tasks()
        assert task.status is TaskStatus.PENDING and task.retry_count == 0
        assert orch.queue.get_task_history(task.id)[-1]["detail"].startswith(
            "released: the worker stopped")


# ---------------------------------------------------------------------- PostgreSQL
@postgres_only
def test_several_idle_worker_processes_do_each_task_exactly_once(database_url, tmp_path):
    url, journal = database_url(), tmp_path / "journal"
    agents = ["w0", "w1", "w2"]
    with athena_orch.connect(url) as orch:
        procs = [spawn(url, journal, "--agent", a, "--capabilities", "py", "--concurrency",
                       "2") for a in agents]
        try:
            wait_for(lambda: all(orch.registry.get_agent(a) for a in agents),
                     "every worker registered")
            time.sleep(0.5)  # let them reach their idle wait for work
            ids = make_tasks(url, [0.01] * 40, requirements=["py"])
            wait_for(lambda: orch.queue.get_queue_statistics().completed_count == 40,
                     "every task completed")
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
        summaries = [finish(proc) for proc in procs]
        assert sum(s["completed"] for s in summaries) == 40
        assert all(s["released"] == s["lost"] == s["errors"] == 0 for s in summaries)
        events = journal_of(journal)
        for task_id in ids:
            assert completions(orch, task_id) == 1
            assert sum(e["task"] == task_id and e["event"] == "end" for e in events) == 1
        check_invariants(orch)
