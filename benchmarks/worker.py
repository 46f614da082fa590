"""What athena_orch.Worker costs, measured side by side in one run.

    python benchmarks/worker.py            # full sizes (a minute or two)
    python benchmarks/worker.py --quick    # small sizes, to check the script still runs

1. Throughput of one worker with a no-op handler against the same queue calls written by
   hand (``claim_tasks(1, start=True)`` + fenced ``complete_task``), each draining its own
   fresh DuckDB file of the same tasks; each round runs both ways in alternating order, and
   the median of the rounds' ratios is reported.
   With ATHENA_BENCH_PG=<url> also on PostgreSQL.
2. Wake-up latency, ``create_task`` returns -> the handler starts, p50 and p99: an idle
   worker in this process on DuckDB, and (with ATHENA_BENCH_PG) a worker in another process
   on PostgreSQL woken through NOTIFY; each against a loop that polls once a second. Tasks
   arrive after a random idle gap (0.05-1 s), so a poller's wait is not always the same.

Prints a table and writes benchmarks/worker.json (or --out). Read the ratios: the machine
is shared and noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import athena_orch as ao
from athena_orch.worker import Worker

HERE = Path(__file__).resolve().parent
POLL_SECONDS = 1.0
GAPS = random.Random(14)  # the idle gaps before each task of the latency runs


def idle_gap() -> None:
    time.sleep(GAPS.uniform(0.05, 1.0))


def fill(orch: ao.OrchestrationManager, agent: str, n: int) -> None:
    orch.registry.register_agent(agent, ["x"], {"max_concurrent_tasks": 1})
    orch.queue.create_tasks([{"content": f"task {i}", "task_type": "noop"} for i in range(n)])


def by_hand(orch: ao.OrchestrationManager, agent: str) -> int:
    q, done = orch.queue, 0
    while tasks := q.claim_tasks(agent, 1, start=True):
        task = tasks[0]
        started = time.perf_counter()
        result = "ok"
        q.complete_task(task.id, result,
                        {"duration_ms": round((time.perf_counter() - started) * 1000)},
                        agent_id=agent, attempt=task.attempt)
        done += 1
    return done


def with_worker(orch: ao.OrchestrationManager, agent: str) -> int:
    return Worker(orch, agent, {"noop": lambda task: "ok"}).run(until_idle=True).completed


def time_queue_calls(orch: ao.OrchestrationManager) -> list[float]:
    """Add up the seconds spent inside claim_tasks and complete_task (a list of one)."""
    spent = [0.0]
    for name in ("claim_tasks", "complete_task"):
        call = getattr(orch.queue, name)

        def timed(*args, call=call, **kwargs):
            started = time.perf_counter()
            try:
                return call(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - started

        setattr(orch.queue, name, timed)
    return spent


def throughput(url_for, n: int, rounds: int) -> dict[str, float]:
    """tasks/s of each way (medians), the median of each round's worker / by-hand ratio,
    and each way's own time per task: the time spent outside the queue calls (the same
    calls both ways, so the difference is the worker's cost, whatever the database's
    speed at the moment). Each round drains two fresh databases, one each way, in
    alternating order."""
    rates: dict[str, list[float]] = {"by hand": [], "worker": []}
    own: dict[str, list[float]] = {"by hand": [], "worker": []}
    ways = [("by hand", by_hand), ("worker", with_worker)]
    for i in range(rounds):
        for name, drain in ways if i % 2 == 0 else ways[::-1]:
            with ao.connect(url_for()) as orch:
                fill(orch, "w", n)
                spent = time_queue_calls(orch)
                started = time.perf_counter()
                assert drain(orch, "w") == n
                elapsed = time.perf_counter() - started
                rates[name].append(n / elapsed)
                own[name].append((elapsed - spent[0]) / n * 1000)
    ratios = [w / h for w, h in zip(rates["worker"], rates["by hand"])]
    lifecycle_ms = 1000 / statistics.median(rates["by hand"])
    worker_ms = statistics.median(own["worker"]) - statistics.median(own["by hand"])
    return {**{name: statistics.median(r) for name, r in rates.items()},
            "ratio": statistics.median(ratios), "own ms": worker_ms,
            "own share": worker_ms / lifecycle_ms}


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (statistics.median(ordered) * 1000,
            ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] * 1000)


class Poller:
    """The alternative to a wake-up: look for work once a second."""

    def __init__(self, orch: ao.OrchestrationManager, agent: str, on_start) -> None:
        self.orch, self.agent, self.on_start = orch, agent, on_start
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self) -> None:
        q = self.orch.queue
        while not self.stopping.is_set():
            tasks = q.claim_tasks(self.agent, 1, start=True)
            if not tasks:
                self.stopping.wait(POLL_SECONDS)
                continue
            self.on_start(tasks[0])
            q.complete_task(tasks[0].id, "ok", agent_id=self.agent, attempt=tasks[0].attempt)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join()


def in_process_latency(n: int) -> dict[str, tuple[float, float]]:
    """create_task returned -> handler started, an idle worker vs a 1-second poller,
    DuckDB in memory (negative if the handler started first)."""
    out = {}
    for name in ("worker", "1 s polling"):
        with ao.connect() as orch:
            orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 1})
            began: dict[str, float] = {}
            starts: dict[str, float] = {}
            started = threading.Event()

            def on_start(task, starts=starts, started=started):
                starts[task.content] = time.perf_counter()
                started.set()

            if name == "worker":
                worker = Worker(orch, "w", {"noop": on_start})
                worker.start()
                stop = worker.stop
            else:
                stop = Poller(orch, "w", on_start).stop
            for i in range(n):
                idle_gap()
                started.clear()
                orch.queue.create_task(str(i), "noop")
                began[str(i)] = time.perf_counter()
                started.wait(10)
                while orch.queue.get_queue_statistics().completed_count < i + 1:
                    time.sleep(0.001)
            stop()
            out[name] = percentiles([starts[c] - began[c] for c in began])
    return out


def wake_only_latency(n: int) -> tuple[float, float]:
    """The wake-up alone, without a claim: create_task returned -> a thread asleep on the
    queue's wake-ups runs again (what a worker adds on top is its claim's cost)."""
    with ao.connect() as orch:
        wakeups, woke = orch.queue.wakeups, []

        def sleeper() -> None:
            for _ in range(n):
                wakeups.wait(wakeups.generation, 30)
                woke.append(time.perf_counter())

        thread = threading.Thread(target=sleeper, daemon=True)
        thread.start()
        created = []
        for i in range(n):
            while wakeups.waiting == 0:
                time.sleep(0.001)
            orch.queue.create_task(str(i), "noop")
            created.append(time.perf_counter())
        thread.join(30)
    return percentiles([b - a for a, b in zip(created, woke)])


def serve(url: str, mode: str, out: str) -> None:
    """A worker process for the cross-process latency: journal time.time() at each start."""
    with ao.connect(url) as orch:
        def on_start(task):
            with open(out, "a") as f:
                f.write(f"{task.content} {time.time()}\n")

        orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 1})
        Path(out + ".ready").touch()
        if mode == "worker":
            Worker(orch, "w", {"noop": on_start}).run()
        else:
            poller = Poller(orch, "w", on_start)
            try:
                poller.thread.join()
            except KeyboardInterrupt:
                poller.stop()


def cross_process_latency(server: str, n: int) -> dict[str, tuple[float, float]]:
    import psycopg

    out = {}
    for mode, name in (("worker", "worker (NOTIFY)"), ("poll", "1 s polling")):
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        url = f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"
        try:
            with ao.connect(url) as orch, tempfile.TemporaryDirectory() as folder:
                journal = os.path.join(folder, "starts")
                proc = subprocess.Popen([sys.executable, __file__, "--serve", url, mode,
                                         journal])
                while not os.path.exists(journal + ".ready"):
                    time.sleep(0.05)
                began = {}
                for i in range(n):
                    idle_gap()
                    orch.queue.create_task(str(i), "noop")
                    began[str(i)] = time.time()
                    while orch.queue.get_queue_statistics().completed_count < i + 1:
                        time.sleep(0.002)
                proc.send_signal(2)
                proc.wait(30)
                lines = [line.split() for line in Path(journal).read_text().splitlines()]
                out[name] = percentiles([float(at) - began[c] for c, at in lines])
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return out


def own_rows(rates: dict[str, float], backend: str) -> list[dict]:
    return [{"benchmark": f"  the worker's own time per task ({backend})",
             "value": rates["own ms"], "unit": "ms"},
            {"benchmark": f"  ... as a share of a task's lifecycle by hand ({backend})",
             "value": rates["own share"] * 100, "unit": "%"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(HERE / "worker.json"))
    parser.add_argument("--serve", nargs=3, metavar=("URL", "MODE", "JOURNAL"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(*args.serve)
        return 0
    n, rounds, samples = (30, 1, 3) if args.quick else (200, 5, 40)
    server = os.environ.get("ATHENA_BENCH_PG")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        rates = throughput(lambda: os.path.join(folder, f"{uuid.uuid4().hex}.duckdb"), n,
                           rounds)
    rows += [{"benchmark": f"no-op tasks, DuckDB file, {k}", "value": rates[k],
              "unit": "tasks/s"} for k in ("by hand", "worker")]
    rows.append({"benchmark": "  worker / by hand (DuckDB), median of rounds",
                 "value": rates["ratio"], "unit": "ratio"})
    rows += own_rows(rates, "DuckDB")
    if server:
        import psycopg

        schemas = []

        def pg_url() -> str:
            schema = f"bench_{uuid.uuid4().hex[:10]}"
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(f"CREATE SCHEMA {schema}")
            schemas.append(schema)
            return f"{server}{'&' if '?' in server else '?'}options=-csearch_path%3D{schema}"

        try:
            rates = throughput(pg_url, n, rounds)
        finally:
            with psycopg.connect(server, autocommit=True) as conn:
                for schema in schemas:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
        rows += [{"benchmark": f"no-op tasks, PostgreSQL, {k}", "value": rates[k],
                  "unit": "tasks/s"} for k in ("by hand", "worker")]
        rows.append({"benchmark": "  worker / by hand (PostgreSQL), median of rounds",
                     "value": rates["ratio"], "unit": "ratio"})
        rows += own_rows(rates, "PostgreSQL")
    for name, (p50, p99) in in_process_latency(samples).items():
        rows += [{"benchmark": f"wake-up, same process, DuckDB, {name}, p50", "value": p50,
                  "unit": "ms"},
                 {"benchmark": f"wake-up, same process, DuckDB, {name}, p99", "value": p99,
                  "unit": "ms"}]
    p50, p99 = wake_only_latency(samples)
    rows += [{"benchmark": "  the wake-up alone (no claim), same process, p50", "value": p50,
              "unit": "ms"},
             {"benchmark": "  the wake-up alone (no claim), same process, p99", "value": p99,
              "unit": "ms"}]
    if server:
        for name, (p50, p99) in cross_process_latency(server, samples).items():
            rows += [{"benchmark": f"wake-up, other process, PostgreSQL, {name}, p50",
                      "value": p50, "unit": "ms"},
                     {"benchmark": f"wake-up, other process, PostgreSQL, {name}, p99",
                      "value": p99, "unit": "ms"}]
    for row in rows:
        print(f"{row['benchmark']:<62} {row['value']:>10,.2f} {row['unit']}")
    Path(args.out).write_text(json.dumps({
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python "
                   f"{platform.python_version()}",
        "quick": args.quick, "tasks": n, "rounds": rounds, "latency_samples": samples,
        "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
