"""Run things at the same moment: threads released by a barrier, and worker processes
released by a file (each worker script writes ``SYNC_DIR/ready-<name>`` once connected and
waits for ``SYNC_DIR/go``; see tests/pg_claim_worker.py)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def run_workers(script: Path, argvs: list[list[str]], sync: Path,
                timeout: float = 300) -> list[dict]:
    """Run ``script`` once per argument list, all released together once every one is
    ready; the JSON line each printed. A worker that exits non-zero fails the test."""
    procs = [subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for argv in argvs]
    deadline = time.monotonic() + 120
    while len(list(sync.glob("ready-*"))) < len(argvs):
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs), \
            [p.communicate() for p in procs if p.poll() is not None]
        time.sleep(0.05)
    (sync / "go").touch()
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, err
        reports.append(json.loads(out))
    return reports


def at_once(n: int, fn) -> list:
    """``fn(i)`` for i < n, in n threads released together; their results. An exception in
    any thread, or a thread still running after two minutes, fails the test."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list[BaseException] = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert not any(t.is_alive() for t in threads)
    return results
