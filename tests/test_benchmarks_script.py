"""The benchmark runner still runs (quick sizes); it asserts nothing about speed."""

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import postgres_only

ROOT = Path(__file__).resolve().parent.parent


def test_benchmark_runner_quick_mode_writes_every_figure(tmp_path):
    out = tmp_path / "results.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(out),
         "--only", "bulk", "routing", "dependencies"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert len(results) == 9
    assert all(r["value"] > 0 for r in results)
    assert "route_batch" in run.stdout


@postgres_only
def test_scale_out_benchmark_quick_mode_drains_both_queues(tmp_path, database_url, postgres_server):
    out = tmp_path / "scale_out.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "scale_out.py"), "--quick", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
        env={**os.environ, "ATHENA_BENCH_PG": postgres_server})
    assert run.returncode == 0, run.stderr
    results = json.loads(out.read_text())["results"]
    assert [r["unit"] for r in results] == ["tasks/s"] * 3
    assert all(r["value"] > 0 for r in results)
    assert "PostgreSQL / DuckDB+MCP" in run.stdout
