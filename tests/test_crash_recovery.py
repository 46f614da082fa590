"""Crash recovery: a worker killed with SIGKILL at random moments loses nothing it reported.

``crash_worker.py`` journals (fsynced) every operation after it returned. Each round
starts the worker on the same file, kills it with SIGKILL after a random 0.3-1.5 s (counted
from the spawn in one round, so it may die while starting up or opening the file; from
the worker's first journal line in the others, the first round waiting for 5), then
reopens the file here and checks that:

- the file opens (no lock left behind, the WAL replays);
- every journaled effect is in it: a task journaled as created exists, the journaled
  transition is in its history at the journaled position, a journaled final state is still
  its state, and no task went back to an earlier state than journaled;
- ``check_invariants`` holds;
- the tasks the dead worker held (assigned/running) are exactly those that
  ``requeue_stale(now=after every lease)`` requeues, and afterwards nobody holds any.

The next round restarts the worker on the same file, which must resume from there.
Five rounds take ~15-20 s; on a loaded machine no new round starts after 40 s once three
have run, so the file stays under a minute. ``CRASH_SEED=<n>`` replays other kill times.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from invariants import FINAL, check_invariants, legal_path_exists

import athena_orch

ROUNDS = 5
MIN_ROUNDS = 3
BUDGET_SECONDS = 40  # no new round starts after this (a loaded machine), once MIN_ROUNDS ran
STARTUP_ROUND = 2  # this round's delay counts from the spawn: it may die while opening
WORKER = Path(__file__).with_name("crash_worker.py")
WORKER_LEASE_SECONDS = 3.0  # crash_worker.LEASE_SECONDS
SEED = int(os.environ.get("CRASH_SEED", "20240611"))

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def read_journal(path: Path) -> list[dict]:
    """The journal's complete lines; a torn last line (killed mid-write) is skipped."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    if lines and lines[-1] != "":
        lines = lines[:-1]  # no newline yet: torn
    return [json.loads(line) for line in lines if line]


def journaled_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def start_worker(db: Path, journal: Path, seed: int, stderr) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, str(WORKER), str(db), str(journal), str(seed), "40"],
        stdout=subprocess.DEVNULL, stderr=stderr, env=env)


def check_journal_against_file(orch, entries: list[dict]) -> int:
    """Every journaled effect is in the file; returns how many task entries were checked."""
    q = orch.queue
    problems = []
    last: dict[str, dict] = {}
    histories: dict[str, list[dict]] = {}
    for e in entries:
        if "task" not in e:
            continue
        tid = e["task"]
        if tid not in histories:
            task = q.get_task_status(tid)
            if task is None:
                problems.append(f"journaled task {tid} ({e['op']} -> {e['status']}) is missing")
                continue
            histories[tid] = q.get_task_history(tid)
        history = histories[tid]
        if len(history) < e["hist"]:
            problems.append(f"task {tid}: journal says {e['hist']} history entries after "
                            f"{e['op']}, the file has {len(history)}")
        elif history[e["hist"] - 1]["to_status"] != e["status"]:
            problems.append(f"task {tid}: history entry {e['hist']} is "
                            f"{history[e['hist'] - 1]['to_status']!r}, journal says {e['op']} "
                            f"left it {e['status']!r}")
        last[tid] = e
    for tid, e in last.items():
        task = q.get_task_status(tid)
        if task is None:
            continue
        now = task.status.value
        if e["status"] in FINAL and now != e["status"] and not (
                e["status"] == "blocked" and now == "cancelled"):
            problems.append(f"task {tid}: journaled {e['status']} (final), now {now}")
        if not legal_path_exists(e["status"], now):
            problems.append(f"task {tid}: went back from journaled {e['status']} to {now}")
        if task.retry_count < e["retry_count"]:
            problems.append(f"task {tid}: retry_count went back from {e['retry_count']} "
                            f"to {task.retry_count}")
    assert not problems, "journaled effects lost:\n  " + "\n  ".join(problems)
    return len(last)


def test_sigkilled_worker_loses_nothing_it_reported(tmp_path):
    rng = random.Random(SEED)
    db = tmp_path / "crash.duckdb"
    journal = tmp_path / "journal.jsonl"
    started = time.monotonic()
    summary = []
    for round_no in range(ROUNDS):
        if round_no >= MIN_ROUNDS and time.monotonic() - started > BUDGET_SECONDS:
            break
        seed = rng.randrange(2**31)
        with open(tmp_path / f"worker{round_no}.err", "w+b") as err:
            before = journaled_lines(journal)
            proc = start_worker(db, journal, seed, err)
            try:
                if round_no != STARTUP_ROUND:
                    # count the kill delay from when this worker is up and working (the
                    # first round: once some operations were journaled), so the kill lands
                    # among operations rather than in the interpreter's start-up
                    want = before + (5 if round_no == 0 else 1)
                    limit = time.monotonic() + 30
                    while journaled_lines(journal) < want and time.monotonic() < limit:
                        assert proc.poll() is None, "worker died on its own"
                        time.sleep(0.01)
                    assert journaled_lines(journal) >= want, "worker journaled nothing in 30 s"
                time.sleep(rng.uniform(0.3, 1.5))
                exited = proc.poll()
                proc.send_signal(signal.SIGKILL)
            finally:
                proc.kill()
                proc.wait(timeout=30)
            err.seek(0)
            stderr = err.read().decode(errors="replace")
        assert exited is None and proc.returncode == -signal.SIGKILL, (
            f"round {round_no}: worker exited by itself ({proc.returncode}):\n{stderr}")

        entries = read_journal(journal)
        if round_no == 0:
            assert len(entries) >= 5
        # the file opens in another process at once: no lock is left behind
        with athena_orch.connect(db) as orch:
            checked = check_journal_against_file(orch, entries)
            check_invariants(orch)
            held = set(orch.queue.to_frame(status=["assigned", "running"])["task_id"])
            after_every_lease = datetime.now(UTC) + timedelta(seconds=WORKER_LEASE_SECONDS + 1)
            requeued = orch.queue.requeue_stale(now=after_every_lease)
            assert set(requeued) == held
            assert len(orch.queue.to_frame(status=["assigned", "running"])) == 0
            for agent in ("w0", "w1", "w2"):
                found = orch.registry.get_agent(agent)
                assert found is None or found.current_load == 0
            counts = check_invariants(orch)
            # the journaled effects are still there after the requeue
            check_journal_against_file(orch, entries)
        summary.append((round_no, len(entries) - before, checked, len(held), counts))
    print("crash rounds (round, new lines, tasks checked, held, counts):", *summary, sep="\n  ")
    # the worker resumed each round: later rounds journaled work of their own
    pids = {e["pid"] for e in read_journal(journal)}
    assert len(pids) >= 2, summary
