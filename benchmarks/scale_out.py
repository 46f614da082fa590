"""Scale-out benchmark: 8 worker processes draining one queue, side by side in one run.

    python benchmarks/scale_out.py            # full sizes (a few minutes)
    python benchmarks/scale_out.py --quick    # small sizes, to check the script still runs

(a) PostgreSQL: every worker connects to the database itself and claims with SKIP LOCKED;
(b) DuckDB behind the HTTP MCP server: the one writer process, every worker an MCP client
    (the way to share a DuckDB queue between processes).
Each worker runs claim -> start -> complete one task at a time (the same three calls in
both), all starting together; throughput is tasks / wall time of the slowest worker.
PostgreSQL is $ATHENA_BENCH_PG if set, else a throw-away cluster (tests/pg_cluster.py).
Prints a table and writes benchmarks/scale_out.json (or --out).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import psycopg

import athena_orch as ao

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))
import pg_cluster  # noqa: E402  (the tests' throw-away cluster)
from mcp_servers import free_port  # noqa: E402

WORKERS = 8
START_TIMEOUT = 120


def fill(url: str | Path, agents: list[str], n: int) -> None:
    with ao.connect(url) as orch:
        for agent in agents:
            orch.registry.register_agent(agent, ["python"], {"max_concurrent_tasks": 10})
        orch.queue.create_tasks([{"content": f"task {i}", "task_type": "bench",
                                  "requirements": ["python"]} for i in range(n)])


def drain(commands: Callable[[Path], list[list[str]]], folder: Path) -> tuple[float, int]:
    """Start the worker processes ``commands(sync_dir)`` names, release them together, and
    return the wall time until the last one finished; checks every task was done once."""
    sync = folder / f"sync-{uuid.uuid4().hex[:6]}"
    sync.mkdir()
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cmd in commands(sync)]
    deadline = time.monotonic() + START_TIMEOUT
    while len(list(sync.glob("ready-*"))) < len(procs):
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            raise RuntimeError([p.communicate() for p in procs])
        time.sleep(0.02)
    began = time.monotonic()
    (sync / "go").touch()
    done: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=1800)
        if proc.returncode != 0:
            raise RuntimeError(err)
        done += json.loads(out.strip().splitlines()[-1])["completed"]
    wall = time.monotonic() - began
    if len(done) != len(set(done)):
        raise RuntimeError("a task was done twice")
    return wall, len(done)


def postgres_rate(server: str, n: int, folder: Path, batch: int) -> float:
    """Tasks/s of WORKERS processes claiming straight from PostgreSQL."""
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    url = f"{server}?options=-csearch_path%3D{schema}"
    agents = [f"pg-{i}" for i in range(WORKERS)]
    fill(url, agents, n)
    worker = str(TESTS / "pg_claim_worker.py")
    wall, done = drain(lambda sync: [[sys.executable, worker, url, a, str(sync), str(batch)]
                                     for a in agents], folder)
    if done != n:
        raise RuntimeError(f"{done} of {n} tasks done")
    return n / wall


def mcp_rate(n: int, folder: Path) -> float:
    """Tasks/s of WORKERS MCP client processes sharing one DuckDB through the HTTP server."""
    db = folder / f"mcp-{uuid.uuid4().hex[:6]}.duckdb"
    agents = [f"mcp-{i}" for i in range(WORKERS)]
    fill(db, agents, n)
    port = free_port()
    log_path = folder / f"server-{port}.log"
    with log_path.open("w") as log:
        server = subprocess.Popen([sys.executable, "-m", "athena_orch", "mcp", "--db", str(db),
                                   "--http", f"127.0.0.1:{port}"], stdin=subprocess.DEVNULL,
                                  stdout=subprocess.DEVNULL, stderr=log)
        try:
            deadline = time.monotonic() + START_TIMEOUT
            while "serving" not in log_path.read_text():
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError(log_path.read_text())
                time.sleep(0.05)
            url, worker = f"http://127.0.0.1:{port}/mcp", str(TESTS / "mcp_load_worker.py")
            wall, done = drain(lambda sync: [[sys.executable, worker, url, a, str(sync), "1800"]
                                             for a in agents], folder)
        finally:
            server.terminate()
            server.wait(timeout=30)
    if done != n:
        raise RuntimeError(f"{done} of {n} tasks done")
    return n / wall


SIZES = {"full": {"one": 600, "batch": 20_000}, "quick": {"one": 40, "batch": 400}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--out", default=str(HERE / "scale_out.json"))
    args = parser.parse_args()
    size = SIZES["quick" if args.quick else "full"]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        cluster = None
        server = os.environ.get("ATHENA_BENCH_PG")
        if not server:
            cluster = Path(tempfile.mkdtemp(prefix="athena-bench-pg-"))
            server = pg_cluster.start(cluster)
        try:
            with psycopg.connect(server) as conn:
                pg_version = conn.execute("SHOW server_version").fetchone()[0].split()[0]
            mcp = mcp_rate(size["one"], folder)
            pg_one = postgres_rate(server, size["one"], folder, batch=0)
            pg_batch = postgres_rate(server, size["batch"], folder, batch=50)
        finally:
            if cluster is not None:
                pg_cluster.stop(cluster)
                shutil.rmtree(cluster, ignore_errors=True)
    rows = [
        {"benchmark": f"DuckDB behind the HTTP MCP server, {WORKERS} client processes, "
                      "one task at a time", "value": mcp, "unit": "tasks/s"},
        {"benchmark": f"PostgreSQL, {WORKERS} processes claiming directly, one at a time",
         "value": pg_one, "unit": "tasks/s", "ratio": pg_one / mcp,
         "ratio_of": "PostgreSQL / DuckDB+MCP"},
        {"benchmark": f"PostgreSQL, {WORKERS} processes, claim_tasks(50) + complete_tasks",
         "value": pg_batch, "unit": "tasks/s", "ratio": pg_batch / mcp,
         "ratio_of": "PostgreSQL batches / DuckDB+MCP"},
    ]
    when = datetime.now(UTC).strftime("%Y-%m-%d")
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"PostgreSQL {pg_version}, all on one machine")
    print(f"athena-orch scale-out benchmark, {when}, {machine}")
    for r in rows:
        ratio = f"{r['ratio']:.2f}x ({r['ratio_of']})" if "ratio" in r else ""
        print(f"{r['benchmark']:82s} {r['value']:10,.1f} {r['unit']:8s} {ratio}")
    Path(args.out).write_text(json.dumps({"date": when, "machine": machine, "quick": args.quick,
                                          "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
