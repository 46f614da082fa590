"""Load: several hundred claim -> start -> complete cycles through one HTTP MCP server.

``python -m athena_orch mcp --http`` runs as a subprocess on a loopback port; a coordinator
client creates the tasks and registers the agents through tools, then WORKERS client
*processes* (tests/mcp_load_worker.py) drain the queue at the same time. Afterwards every
task must have been completed exactly once, by the worker that says it did, with no tool
error, and the database file (opened read-only once the server has stopped) must agree.

The achieved cycles/s is printed (``-s`` shows it); it is never asserted on. Every wait is
bounded and the server and the workers are always stopped by finalizers.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp_servers import HttpServer, clean_env, start_http_server

import athena_orch

try:
    from invariants import check_invariants
except ImportError:  # pragma: no cover - the shared checker is optional
    check_invariants = None

WORKER = Path(__file__).with_name("mcp_load_worker.py")
TASKS = 300
WORKERS = 4
PRIORITIES = ("high", "medium", "low")
CAPABILITIES = ["python", "sql", "review"]
START_TIMEOUT = 30
STOP_TIMEOUT = 15
CALL_TIMEOUT = 30
WORKER_DEADLINE = 75  # each worker gives up (and reports timed_out) after this
BATCH = 100  # tasks per orchestration_create_tasks call


@pytest.fixture
def server(tmp_path):
    started: list[HttpServer] = []
    try:
        candidate = start_http_server(tmp_path, started)
        yield candidate
    finally:
        for one in started:
            one.stop()


@pytest.fixture
def spawn(tmp_path):
    """Start worker processes with ``spawn(args)``; any still running are killed after."""
    procs: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired, ValueError):
            proc.communicate(timeout=STOP_TIMEOUT)


async def call(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, f"{name}: {result.content[0].text}"
    return result.structured_content


def task_specs() -> list[dict[str, Any]]:
    """TASKS tasks of mixed priority and requirements (every agent can do every one)."""
    specs = []
    for i in range(TASKS):
        spec: dict[str, Any] = {"content": f"job {i}", "task_type": ["code", "review"][i % 2]}
        if i % 4:  # a quarter take the default priority
            spec["priority"] = PRIORITIES[i % 3]
        if i % 5:
            spec["requirements"] = CAPABILITIES[: i % 3 + 1]
        specs.append(spec)
    return specs


def setup_queue(url: str, agents: list[str]) -> tuple[list[str], dict[str, str]]:
    """Register the agents and create the tasks through tools; (task ids, id -> priority)."""

    async def main() -> tuple[list[str], dict[str, str]]:
        with anyio.fail_after(4 * CALL_TIMEOUT):
            async with httpx2.AsyncClient(timeout=CALL_TIMEOUT) as http:
                transport = streamable_http_client(url, http_client=http)
                async with Client(transport, read_timeout_seconds=CALL_TIMEOUT) as client:
                    for agent_id in agents:
                        await call(
                            client,
                            "orchestration_register_agent",
                            agent_id=agent_id,
                            capabilities=CAPABILITIES,
                            max_concurrent=2,
                            metadata={"role": "load-test"},
                        )
                    specs = task_specs()
                    ids: list[str] = []
                    for lo in range(0, len(specs), BATCH):
                        batch = await call(
                            client, "orchestration_create_tasks", tasks=specs[lo : lo + BATCH]
                        )
                        ids += batch["task_ids"]
                    # and a few one at a time, the other creation path
                    for j in range(4):
                        one = await call(
                            client,
                            "orchestration_create_task",
                            content=f"single {j}",
                            task_type="code",
                            priority=PRIORITIES[j % 3],
                            requirements=["python"],
                        )
                        ids.append(one["task_id"])
                        specs.append({"priority": PRIORITIES[j % 3]})
                    stats = await call(client, "orchestration_get_queue_statistics")
                    assert stats["pending_count"] == stats["total_count"] == len(ids)
                    priority = {
                        tid: spec.get("priority", "medium") for tid, spec in zip(ids, specs)
                    }
                    return ids, priority

    return anyio.run(main)


def wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        dead = [p for p in procs if p.poll() is not None]
        if dead:
            out, err = dead[0].communicate(timeout=STOP_TIMEOUT)
            pytest.fail(f"a worker exited before starting: {dead[0].returncode}\n{out}\n{err}")
        if time.monotonic() > deadline:
            pytest.fail(f"workers not ready within {timeout}s: {[p.exists() for p in paths]}")
        time.sleep(0.02)


def test_four_worker_processes_drain_one_http_queue(server, spawn, tmp_path):
    agents = [f"loader-{n}" for n in range(WORKERS)]
    t0 = time.monotonic()
    ids, priority = setup_queue(server.url, agents)
    setup_s = time.monotonic() - t0
    assert len(set(ids)) == len(ids) == TASKS + 4

    sync = tmp_path / "sync"
    sync.mkdir()
    procs = [spawn(server.url, agent_id, str(sync), str(WORKER_DEADLINE)) for agent_id in agents]
    wait_for([sync / f"ready-{a}" for a in agents], procs, timeout=START_TIMEOUT * 2)
    began = time.monotonic()
    spawn_s = began - t0 - setup_s
    (sync / "go").touch()

    reports: dict[str, dict[str, Any]] = {}
    for agent_id, proc in zip(agents, procs):
        out, err = proc.communicate(timeout=WORKER_DEADLINE + 2 * STOP_TIMEOUT)
        assert proc.returncode == 0, (
            f"{agent_id} crashed or timed out ({proc.returncode}):\n{out}\n{err}\n"
            f"server: {server.stderr()}"
        )
        assert "Traceback" not in err, err
        reports[agent_id] = json.loads(out.strip().splitlines()[-1])
    wall = time.monotonic() - began

    # -- what the workers saw
    for agent_id, report in reports.items():
        assert report["agent_id"] == agent_id
        assert report["errors"] == [], f"{agent_id} got tool errors: {report['errors'][:3]}"
        assert not report["timed_out"]
        # one worker holds one task at a time, so whenever it claimed a lower priority every
        # higher one was already taken: its own sequence of priorities never goes up
        ranks = [PRIORITIES.index(p) for p in report["priorities"]]
        assert ranks == sorted(ranks), f"{agent_id} claimed out of priority order"
        assert [priority[t] for t in report["completed"]] == report["priorities"]
    handed_out = Counter(tid for r in reports.values() for tid in r["completed"])
    assert set(handed_out) == set(ids), "some task was never completed"
    twice = [tid for tid, n in handed_out.items() if n > 1]
    assert not twice, f"completed by more than one worker: {twice}"
    owner = {tid: agent_id for agent_id, r in reports.items() for tid in r["completed"]}

    cycles = sum(r["cycles"] for r in reports.values())
    calls = sum(r["calls"] for r in reports.values())
    busy = max(r["elapsed"] for r in reports.values())
    print(
        f"\nMCP load: {WORKERS} worker processes, {cycles} claim/start/complete cycles, "
        f"{calls} tool calls in {busy:.1f}s ({cycles / busy:.1f} cycles/s, "
        f"{calls / busy:.0f} calls/s; wall {wall:.1f}s; setup {setup_s:.1f}s, workers "
        f"ready after {spawn_s:.1f}s); per worker "
        f"{ {a: r['cycles'] for a, r in reports.items()} }"
    )

    # -- what the database says, once the server has let go of the file
    assert server.stop() == 0, f"server did not stop cleanly: {server.stderr()}"
    assert "Traceback" not in server.stderr(), server.stderr()
    with athena_orch.connect(server.db, read_only=True) as orch:
        frame = orch.queue.to_frame()
        assert len(frame) == len(ids)
        rows = {r["task_id"]: r for r in frame.to_dict("records")}
        for tid in ids:
            row = rows[tid]
            assert str(row["status"]) == "completed", (tid, row["status"])
            assert row["assigned_to"] == owner[tid]
            assert int(row["retry_count"]) == 0
            task = orch.queue.get_task_status(tid)
            assert task.result == f"done by {owner[tid]}" and task.error is None
        history = orch.queue.history_frame()
        claims = Counter(
            h["task_id"] for h in history.to_dict("records") if str(h["to_status"]) == "assigned"
        )
        assert set(claims) == set(ids)
        many = {tid: n for tid, n in claims.items() if n != 1}
        assert not many, f"tasks claimed more than once: {many}"
        for tid in ids[:: max(1, len(ids) // 10)]:  # and one by one for a sample
            steps = orch.queue.get_task_history(tid)
            assert [str(h["to_status"]) for h in steps] == [
                "pending",
                "assigned",
                "running",
                "completed",
            ], (tid, steps)
        for agent_id, report in reports.items():
            health = orch.registry.get_agent_health(agent_id)
            assert health["total_completed"] == report["cycles"], (agent_id, health)
            assert health["total_failed"] == 0 and health["current_load"] == 0
        stats = orch.queue.get_queue_statistics()
        assert stats.completed_count == stats.total_count == len(ids)
        if check_invariants is not None:
            check_invariants(orch, history_calls=20)
