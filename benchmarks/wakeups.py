"""Wake-up latency: how long a task waits between its creation and the moment an idle
claimer has it, with wake-ups (``claim_task(wait=...)``) against a claimer that polls once
a second, measured side by side in one run.

    python benchmarks/wakeups.py              # DuckDB in one process; PostgreSQL too
    python benchmarks/wakeups.py --quick      # fewer samples, to check the script runs

- DuckDB (a file): the claimer is a thread of the creating process (DuckDB has one writer
  process); the in-process wake-up wakes it when the creating transaction commits.
- PostgreSQL: the claimer is another process, woken through LISTEN/NOTIFY. Needs
  $ATHENA_TEST_PG (a server URL; a schema of its own is created and dropped), else the
  throw-away cluster of tests/pg_cluster.py when PostgreSQL is installed, else skipped.

Latency is measured from the moment ``create_task`` returned (the task is committed) to
the moment the claim returned it, on one clock (time.time() of one machine). Prints a
table and writes benchmarks/wakeups.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb

import athena_orch as ao

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 1.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def claim_loop(orch, n: int, *, poll: bool, report) -> None:
    """Claim ``n`` tasks one at a time, waiting (wake-ups) or polling once a second;
    ``report(task, claimed_at)`` for each."""
    queue = orch.queue
    for _ in range(n):
        while True:
            task = queue.claim_task("w") if poll else queue.claim_task("w", wait=60)
            if task is not None:
                break
            if poll:
                time.sleep(POLL_SECONDS)
        report(task, time.time())
        queue.start_task(task.id, agent_id="w", attempt=task.attempt)
        queue.complete_task(task.id, "ok", agent_id="w", attempt=task.attempt)


def duckdb_latencies(folder: str, n: int, *, poll: bool) -> list[float]:
    with ao.connect(os.path.join(folder, f"{uuid.uuid4().hex}.duckdb")) as orch:
        orch.registry.register_agent("w", [])
        orch.queue.wait_poll_seconds = 60.0  # only a wake-up can be quick
        claimed: dict[str, float] = {}
        done = threading.Semaphore(0)

        def report(task, at: float) -> None:
            claimed[task.id] = at
            done.release()

        claimer = threading.Thread(target=claim_loop, args=(orch, n),
                                   kwargs={"poll": poll, "report": report}, daemon=True)
        claimer.start()
        created: dict[str, float] = {}
        for i in range(n):
            time.sleep(0.05 if not poll else 0.1)  # the claimer is idle again
            task_id = orch.queue.create_task(f"task {i}", "bench")
            created[task_id] = time.time()
            if not done.acquire(timeout=30):
                raise RuntimeError("the claimer never got its task")
        claimer.join(30)
    return [claimed[t] - created[t] for t in created]


def wake_only_latencies(folder: str, n: int) -> list[float]:
    """The wake-up alone: create returned -> a thread asleep on the database's wake-ups
    runs again (what the claim adds on top is the claim's own cost)."""
    with ao.connect(os.path.join(folder, f"{uuid.uuid4().hex}.duckdb")) as orch:
        wakeups, woke = orch.db.wakeups, []

        def sleeper() -> None:
            for _ in range(n):
                wakeups.wait(wakeups.generation, 30)
                woke.append(time.time())

        thread = threading.Thread(target=sleeper, daemon=True)
        thread.start()
        created = []
        for i in range(n):
            while wakeups.waiting == 0:
                time.sleep(0.001)
            orch.queue.create_task(f"task {i}", "bench")
            created.append(time.time())
        thread.join(30)
    return [b - a for a, b in zip(created, woke)]


# ----------------------------------------------------------------------------- PostgreSQL
def pg_claimer(url: str, n: int, poll: bool) -> None:
    """The other process: claims n tasks, printing 'task_id claimed_at' per task."""
    with ao.connect(url) as orch:
        orch.queue.wait_poll_seconds = 60.0
        print("ready", flush=True)
        claim_loop(orch, n, poll=poll,
                   report=lambda task, at: print(task.id, repr(at), flush=True))


def pg_latencies(url: str, n: int, *, poll: bool) -> list[float]:
    with ao.connect(url) as orch:
        orch.registry.register_agent("w", [])
        proc = subprocess.Popen([sys.executable, __file__, "--pg-claimer", url, str(n),
                                 "poll" if poll else "wait"],
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        created: dict[str, float] = {}
        claimed: dict[str, float] = {}
        for i in range(n):
            time.sleep(0.05 if not poll else 0.1)
            task_id = orch.queue.create_task(f"task {i}", "bench")
            created[task_id] = time.time()
            got, at = proc.stdout.readline().split()
            claimed[got] = float(at)
        proc.wait(60)
    return [claimed[t] - created[t] for t in created]


def pg_url() -> tuple[str | None, object]:
    """A fresh schema on $ATHENA_TEST_PG or a throw-away cluster; (url, cleanup)."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    import pg_cluster
    import psycopg

    server, folder = os.environ.get("ATHENA_TEST_PG"), None
    if not server:
        if pg_cluster.server_bin() is None:
            return None, lambda: None
        folder = Path(tempfile.mkdtemp(prefix="athena-bench-pg-"))
        server = pg_cluster.start(folder)
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")

    def cleanup() -> None:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")
        if folder is not None:
            pg_cluster.stop(folder)

    separator = "&" if "?" in server else "?"
    return f"{server}{separator}options=-csearch_path%3D{schema}", cleanup


def row(name: str, latencies: list[float]) -> dict:
    ms = [x * 1000 for x in latencies]
    return {"benchmark": name, "samples": len(ms), "p50_ms": percentile(ms, 0.5),
            "p99_ms": percentile(ms, 0.99), "mean_ms": statistics.fmean(ms)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "wakeups.json"))
    args = parser.parse_args()
    woken, polled = (10, 3) if args.quick else (200, 20)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rows.append(row("DuckDB, claimer thread woken in process", duckdb_latencies(
            folder, woken, poll=False)))
        rows.append(row("DuckDB, claimer thread polling every 1 s", duckdb_latencies(
            folder, polled, poll=True)))
        rows.append(row("DuckDB, the wake-up alone (no claim)", wake_only_latencies(
            folder, woken)))
    url, cleanup = pg_url()
    if url is None:
        print("PostgreSQL is not available: its rows are skipped")
    else:
        try:
            rows.append(row("PostgreSQL, claimer process woken by NOTIFY", pg_latencies(
                url, woken, poll=False)))
            rows.append(row("PostgreSQL, claimer process polling every 1 s", pg_latencies(
                url, polled, poll=True)))
        finally:
            cleanup()
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python "
               f"{platform.python_version()}, DuckDB {duckdb.__version__}")
    print(f"wake-up latency, create returned -> claim returned ({machine})")
    print(f"{'benchmark':48} {'n':>4} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        print(f"{r['benchmark']:48} {r['samples']:>4} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}")
    Path(args.out).write_text(json.dumps({
        "date": datetime.now(UTC).date().isoformat(), "machine": machine,
        "quick": args.quick, "results": rows}, indent=2) + "\n")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--pg-claimer":
        pg_claimer(sys.argv[2], int(sys.argv[3]), sys.argv[4] == "poll")
    else:
        main()
