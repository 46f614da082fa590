"""athena-orch benchmarks: every comparison measured side by side in one run, as a ratio.

    python benchmarks/run.py            # full sizes (a few minutes)
    python benchmarks/run.py --quick    # small sizes, to check the script still runs

Prints a table and writes benchmarks/results.json (or --out). Timings are wall-clock on
a shared machine: read the ratios, which are measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

import athena_orch as ao

HERE = Path(__file__).resolve().parent
Row = dict[str, object]


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def fresh_file(folder: str, name: str) -> str:
    return os.path.join(folder, name)


# ----------------------------------------------------------------------------- 1 lifecycle
def lifecycle_ours(folder: str, n: int) -> float:
    with ao.connect(fresh_file(folder, "ours.duckdb")) as orch:
        orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 10})
        q = orch.queue

        def run() -> None:
            for i in range(n):
                tid = q.create_task(f"task {i}", "bench", requirements=["x"])
                q.claim_task("w")
                q.start_task(tid)
                q.complete_task(tid, "ok", {"duration_ms": 1})

        return n / timed(run)


def lifecycle_bare_sql(folder: str, n: int) -> float:
    """The floor: the same four writes as bare DuckDB statements on a minimal table."""
    con = duckdb.connect(fresh_file(folder, "bare.duckdb"))
    con.execute("CREATE TABLE tasks (id BIGINT PRIMARY KEY, content TEXT, status TEXT, "
                "agent TEXT, result TEXT, created_at TIMESTAMPTZ)")

    def run() -> None:
        for i in range(n):
            con.execute("INSERT INTO tasks VALUES ($id, $c, 'pending', NULL, NULL, now())",
                        {"id": i, "c": f"task {i}"})
            con.execute("UPDATE tasks SET status = 'assigned', agent = 'w' WHERE id = ("
                        "SELECT id FROM tasks WHERE status = 'pending' ORDER BY created_at, id "
                        "LIMIT 1)")
            con.execute("UPDATE tasks SET status = 'running' WHERE id = $id", {"id": i})
            con.execute("UPDATE tasks SET status = 'completed', result = 'ok' WHERE id = $id",
                        {"id": i})

    rate = n / timed(run)
    con.close()
    return rate


def lifecycle_bare_sql_with_history(folder: str, n: int) -> float:
    """The floor that also keeps a history: the same four writes, each followed by the
    insert of its event (8 statements), as bare DuckDB statements on minimal tables."""
    con = duckdb.connect(fresh_file(folder, "bare_history.duckdb"))
    con.execute("CREATE TABLE tasks (id BIGINT PRIMARY KEY, content TEXT, status TEXT, "
                "agent TEXT, result TEXT, created_at TIMESTAMPTZ)")
    con.execute("CREATE SEQUENCE events_id; CREATE TABLE events (id BIGINT PRIMARY KEY "
                "DEFAULT nextval('events_id'), task_id BIGINT, status TEXT, happened TIMESTAMPTZ)")
    event = "INSERT INTO events (task_id, status, happened) VALUES ($id, $status, now())"

    def run() -> None:
        for i in range(n):
            con.execute("INSERT INTO tasks VALUES ($id, $c, 'pending', NULL, NULL, now())",
                        {"id": i, "c": f"task {i}"})
            con.execute(event, {"id": i, "status": "pending"})
            con.execute("UPDATE tasks SET status = 'assigned', agent = 'w' WHERE id = ("
                        "SELECT id FROM tasks WHERE status = 'pending' ORDER BY created_at, id "
                        "LIMIT 1)")
            con.execute(event, {"id": i, "status": "assigned"})
            con.execute("UPDATE tasks SET status = 'running' WHERE id = $id", {"id": i})
            con.execute(event, {"id": i, "status": "running"})
            con.execute("UPDATE tasks SET status = 'completed', result = 'ok' WHERE id = $id",
                        {"id": i})
            con.execute(event, {"id": i, "status": "completed"})

    rate = n / timed(run)
    con.close()
    return rate


def lifecycle_huey(folder: str, n: int) -> float | None:
    try:
        from huey import SqliteHuey
    except ImportError:
        return None
    huey = SqliteHuey(filename=fresh_file(folder, "huey.sqlite"))

    @huey.task()
    def work(i: int) -> str:
        return "ok"

    def run() -> None:
        for i in range(n):
            result = work(i)                        # enqueue
            huey.execute(huey.dequeue())            # dequeue + execute (stores the result)
            assert result.get() == "ok"             # read the result

    return n / timed(run)


def bench_lifecycle(folder: str, n: int) -> list[Row]:
    ours, bare, huey = lifecycle_ours(folder, n), lifecycle_bare_sql(folder, n), lifecycle_huey(folder, n)
    history = lifecycle_bare_sql_with_history(folder, n)
    rows: list[Row] = [
        {"benchmark": "lifecycle, one at a time (file db)", "value": ours, "unit": "tasks/s"},
        {"benchmark": "  bare DuckDB: same 4 statements", "value": bare, "unit": "tasks/s",
         "ratio": ours / bare, "ratio_of": "ours / bare SQL (goal >= 0.5)"},
        {"benchmark": "  bare DuckDB: 4 writes + their history, 8 statements",
         "value": history, "unit": "tasks/s", "ratio": ours / history,
         "ratio_of": "ours / bare SQL with history"},
    ]
    if huey is not None:
        rows.append({"benchmark": "  Huey + SQLite: enqueue/dequeue/execute/result",
                     "value": huey, "unit": "tasks/s", "ratio": ours / huey,
                     "ratio_of": "ours / Huey"})
    return rows


# ----------------------------------------------------------------------------- 2 bulk
def bench_bulk(folder: str, n: int) -> list[Row]:
    frame = pd.DataFrame({"content": [f"task {i}" for i in range(n)], "task_type": "bench",
                          "priority": np.array(["high", "medium", "low"])[np.arange(n) % 3],
                          "requirements": [["x"]] * n})
    with ao.connect(fresh_file(folder, "bulk.duckdb")) as orch:
        orch.registry.register_agent("w", ["x"], {"max_concurrent_tasks": 1_000_000})
        create = n / timed(lambda: orch.queue.create_tasks(frame))

        def drain() -> None:
            while batch := orch.queue.claim_tasks("w", 5000, start=True):
                orch.queue.complete_tasks({t.id: "ok" for t in batch})

        cycle = n / timed(drain)
        assert orch.queue.get_queue_statistics().completed_count == n
    return [
        {"benchmark": f"create_tasks, {n:,} from a DataFrame", "value": create,
         "unit": "tasks/s", "ratio_of": "goal >= 100k/s"},
        {"benchmark": "claim_tasks(start) + complete_tasks, 5k a batch", "value": cycle,
         "unit": "tasks/s", "ratio_of": "goal >= 20k/s"},
    ]


# ----------------------------------------------------------------------------- 3 routing
def team(orch: ao.OrchestrationManager, n_agents: int, seed: int = 1) -> None:
    rng = np.random.default_rng(seed)
    skills = [f"skill{i}" for i in range(20)]
    for i in range(n_agents):
        caps = list(rng.choice(skills, size=rng.integers(2, 6), replace=False))
        orch.registry.register_agent(f"agent{i:04d}", caps, {"max_concurrent_tasks": 20})
    for i in range(0, n_agents, 3):  # a track record for some
        orch.meta.record_outcome(f"agent{i:04d}", datetime.now(UTC),
                                 completed=int(rng.integers(0, 50)),
                                 failed=int(rng.integers(0, 5)),
                                 success_ms=int(rng.integers(1000, 100000)))


def python_loop_route(agents: list[dict], requirements: list[str]) -> str | None:
    """The plain alternative: score agents one by one with the same formula."""
    timed_ = sorted(a["avg"] for a in agents if a["completed"])
    median = statistics.median(timed_) if timed_ else 0.0
    best, best_key = None, None
    for a in agents:
        if not a["active"] or a["load"] >= a["capacity"] or not set(requirements) <= a["caps"]:
            continue
        track = (a["completed"] + 4.0) / (a["completed"] + a["failed"] + 5.0)
        headroom = 1 - a["load"] / a["capacity"]
        speed = median / (median + a["avg"]) if a["completed"] and median + a["avg"] else 0.5
        fit = min(1.0, (len(requirements) + 1) / (len(a["caps"]) + 1))
        score = 0.4 * track + 0.3 * headroom + 0.15 * speed + 0.15 * fit
        key = (-score, a["load"], a["id"])
        if best_key is None or key < best_key:
            best, best_key = a["id"], key
    return best


def bench_routing(n_agents: int, n_single: int, n_batch: int) -> list[Row]:
    with ao.connect() as orch:
        team(orch, n_agents)
        task = {"requirements": ["skill1", "skill2"]}
        orch.router.route_task(task)  # warm the agent table
        singles = []
        for _ in range(n_single):
            start = time.perf_counter()
            orch.router.route_task(task)
            singles.append(time.perf_counter() - start)

        def python_single() -> None:
            frame = orch.registry.routing_frame()  # the same fresh read of agents and load
            agents = [{"id": r.agent_id, "caps": set(r.capabilities), "active": r.active,
                       "load": r.current_load, "capacity": r.max_concurrent_tasks,
                       "completed": r.total_completed, "failed": r.total_failed,
                       "avg": r.avg_completion_ms} for r in frame.itertuples()]
            python_loop_route(agents, task["requirements"])

        loop_singles = [timed(python_single) for _ in range(n_single)]

        def statements_only() -> None:  # route_task's one read, and nothing else (its
            orch.meta.routing_rows(None)  # decision is written behind, in bulk)

        floor = statistics.median(timed(statements_only) for _ in range(n_single)) * 1000
        rng = np.random.default_rng(2)
        tasks = [{"id": str(i), "requirements": list(rng.choice(
            [f"skill{k}" for k in range(20)], size=rng.integers(0, 3), replace=False))}
            for i in range(n_batch)]
        batch = n_batch / timed(lambda: orch.router.route_batch(tasks))

        def python_batch() -> None:
            frame = orch.registry.routing_frame()
            agents = [{"id": r.agent_id, "caps": set(r.capabilities), "active": r.active,
                       "load": r.current_load, "capacity": r.max_concurrent_tasks,
                       "completed": r.total_completed, "failed": r.total_failed,
                       "avg": r.avg_completion_ms} for r in frame.itertuples()]
            by_id = {a["id"]: a for a in agents}
            for t in tasks:
                chosen = python_loop_route(agents, t["requirements"])
                if chosen:
                    by_id[chosen]["load"] += 1

        loop_batch = n_batch / timed(python_batch)
    p50, loop_p50 = statistics.median(singles) * 1000, statistics.median(loop_singles) * 1000
    return [
        {"benchmark": f"route_task over {n_agents:,} agents, p50", "value": p50, "unit": "ms",
         "ratio_of": f"goal <= 2 ms; its one statement alone: {floor:.2f} ms",
         "statements_ms": floor},
        {"benchmark": "  plain Python loop, p50", "value": loop_p50, "unit": "ms",
         "ratio": loop_p50 / p50, "ratio_of": "loop time / ours"},
        {"benchmark": f"route_batch {n_batch:,} tasks x {n_agents:,} agents", "value": batch,
         "unit": "decisions/s", "ratio_of": "goal >= 50k/s"},
        {"benchmark": "  plain Python loop", "value": loop_batch, "unit": "decisions/s",
         "ratio": batch / loop_batch, "ratio_of": "ours / loop"},
    ]


# ----------------------------------------------------------------------------- 4 dependencies
def chain_dag(n: int, width: int = 100) -> pd.DataFrame:
    """``n`` tasks in layers of ``width``; each depends on one task of the layer before."""
    keys = [f"k{i}" for i in range(n)]
    deps = [[] if i < width else [keys[i - width]] for i in range(n)]
    return pd.DataFrame({"key": keys, "content": keys, "task_type": "dag", "dependencies": deps})


def complete_cost(folder: str, n: int, repeats: int) -> float:
    with ao.connect(fresh_file(folder, f"dag{n}.duckdb")) as orch:
        orch.registry.register_agent("w", [], {"max_concurrent_tasks": 1_000_000})
        orch.queue.create_tasks(chain_dag(n))
        running = orch.queue.claim_tasks("w", repeats, start=True)
        costs = [timed(lambda t=t: orch.queue.complete_task(t.id, "ok")) for t in running]
    return statistics.median(costs)


def bench_dependencies(folder: str, big: int, small: int, blocked: int) -> list[Row]:
    small_cost, big_cost = complete_cost(folder, small, 30), complete_cost(folder, big, 30)
    with ao.connect(fresh_file(folder, "block.duckdb")) as orch:
        orch.registry.register_agent("w", [], {"max_concurrent_tasks": 10})
        root = orch.queue.create_task("root", "dag", max_retries=0)
        frame = chain_dag(blocked, width=1)  # a chain of `blocked` tasks under root
        frame.loc[0, "dependencies"] = [root]
        orch.queue.create_tasks(frame)
        orch.queue.claim_task("w")
        block = timed(lambda: orch.queue.fail_task(root, "boom"))
        assert orch.queue.get_queue_statistics().blocked_count == blocked
    return [
        {"benchmark": f"complete_task in a {small:,}-task DAG, median", "value": small_cost * 1000,
         "unit": "ms"},
        {"benchmark": f"complete_task in a {big:,}-task DAG, median", "value": big_cost * 1000,
         "unit": "ms", "ratio": big_cost / small_cost, "ratio_of": "big / small (goal <= 1.5)"},
        {"benchmark": f"fail a root, blocking {blocked:,} descendants", "value": block * 1000,
         "unit": "ms"},
    ]


# ----------------------------------------------------------------------------- 5 analysis
MEMORY_PROBE = """
import resource, sys, pandas as pd, athena_orch as ao
n = int(sys.argv[1])
keys = [f"k{i}" for i in range(n)]
deps = [[] if i == 0 else [keys[i - 1]] for i in range(n)]
orch = ao.connect()
orch.queue.create_tasks(pd.DataFrame({"key": keys, "content": keys, "task_type": "t",
                                      "dependencies": deps}))
import time; start = time.perf_counter(); frame = orch.queue.to_frame()
took = time.perf_counter() - start
graph = orch.queue.dependency_graph()
print(len(frame), graph.number_of_edges(), took,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def bench_analysis(n: int) -> list[Row]:
    out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, str(n)], capture_output=True,
                         text=True, check=True).stdout.splitlines()[-1].split()
    rows, edges, took, peak_mb = int(out[0]), int(out[1]), float(out[2]), float(out[3])
    return [
        {"benchmark": f"to_frame() over {rows:,} task rows", "value": took, "unit": "s",
         "ratio_of": "goal <= 1 s"},
        {"benchmark": f"peak memory, {rows:,} tasks + {edges:,} edges + DAG", "value": peak_mb,
         "unit": "MiB", "ratio_of": "goal <= 2048 MiB"},
    ]


# ----------------------------------------------------------------------------- main
SIZES = {
    "full": {"lifecycle": 300, "bulk": 100_000, "agents": 1000, "single": 200,
             "batch": 10_000, "dag_big": 100_000, "dag_small": 1000, "blocked": 10_000,
             "analysis": 1_000_000},
    "quick": {"lifecycle": 20, "bulk": 2000, "agents": 50, "single": 10, "batch": 200,
              "dag_big": 2000, "dag_small": 200, "blocked": 100, "analysis": 5000},
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--out", default=str(HERE / "results.json"))
    parser.add_argument("--only", nargs="*", default=None,
                        help="lifecycle bulk routing dependencies analysis")
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    wanted = set(args.only or ["lifecycle", "bulk", "routing", "dependencies", "analysis"])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as folder:
        if "lifecycle" in wanted:
            rows += bench_lifecycle(folder, size["lifecycle"])
        if "bulk" in wanted:
            rows += bench_bulk(folder, size["bulk"])
        if "routing" in wanted:
            rows += bench_routing(size["agents"], size["single"], size["batch"])
        if "dependencies" in wanted:
            rows += bench_dependencies(folder, size["dag_big"], size["dag_small"], size["blocked"])
        if "analysis" in wanted:
            rows += bench_analysis(size["analysis"])
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
               f"Python {platform.python_version()}, DuckDB {duckdb.__version__}")
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    print(f"athena-orch {ao.__version__} benchmarks, {when}, {machine}")
    print(f"{'benchmark':58s} {'value':>12s}  {'unit':12s} ratio")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x ({r['ratio_of']})" if "ratio" in r else r.get("ratio_of", "")
        print(f"{r['benchmark']:58s} {r['value']:12,.2f}  {r['unit']:12s} {ratio}")
    Path(args.out).write_text(json.dumps({"date": when, "machine": machine, "quick": args.quick,
                                          "peak_rss_mib": resource.getrusage(
                                              resource.RUSAGE_SELF).ru_maxrss / 1024,
                                          "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
