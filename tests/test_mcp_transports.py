"""``athena-orch mcp`` as a real process: stdio, streamable HTTP, bearer tokens, safe binds.

Servers run as subprocesses on loopback ports and are always stopped by fixture finalizers;
every wait is bounded.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_servers import (
    START_TIMEOUT,
    STOP_TIMEOUT,
    HttpServer,
    clean_env,
    free_port,
    start_http_server,
)

import athena_orch
from athena_orch.mcp import TOOL_NAMES
from athena_orch.mcp.server import is_loopback, parse_http_address, run_server_cli

WORKER = Path(__file__).with_name("mcp_http_worker.py")
CALL_TIMEOUT = 30
TASKS = 20


@pytest.fixture
def http_server(tmp_path):
    """Start servers with ``http_server(*extra_args)``; all are stopped after the test."""
    started: list[HttpServer] = []

    def start(*extra: str, env: dict[str, str] | None = None) -> HttpServer:
        return start_http_server(tmp_path, started, *extra, env=env)

    yield start
    for server in started:
        server.stop()


@asynccontextmanager
async def http_client(url: str, token: str | None) -> AsyncIterator[Client]:
    """An MCP client over streamable HTTP, sending the bearer token when given."""
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with httpx2.AsyncClient(headers=headers, timeout=CALL_TIMEOUT) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=CALL_TIMEOUT) as client:
            yield client


async def call(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content[0].text
    return result.structured_content


# --------------------------------------------------------------------------- stdio
def test_stdio_server_runs_tools_and_persists(tmp_path, database_url):
    db = database_url() or tmp_path / "stdio.duckdb"  # a file, or a PostgreSQL URL
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "athena_orch", "mcp", "--db", str(db)],
        env={"PYTHONUNBUFFERED": "1"},
    )
    log = tmp_path / "stdio.log"

    async def main() -> str:
        with anyio.fail_after(CALL_TIMEOUT), log.open("w") as errlog:
            async with Client(
                stdio_client(params, errlog=errlog), read_timeout_seconds=CALL_TIMEOUT
            ) as client:
                tools = (await client.list_tools()).tools
                assert {t.name for t in tools} == set(TOOL_NAMES)
                await call(
                    client, "orchestration_register_agent", agent_id="solo", capabilities=["python"]
                )
                created = await call(
                    client,
                    "orchestration_create_task",
                    content="hello",
                    task_type="t",
                    requirements=["python"],
                )
                claimed = await call(client, "orchestration_claim_task", agent_id="solo")
                assert claimed["task"]["id"] == created["task_id"]
                await call(client, "orchestration_start_task", task_id=created["task_id"])
                await call(
                    client,
                    "orchestration_complete_task",
                    task_id=created["task_id"],
                    result="world",
                )
                bad = await client.call_tool(
                    "orchestration_start_task", {"task_id": created["task_id"]}
                )
                assert bad.is_error and "completed" in bad.content[0].text
                stats = await call(client, "orchestration_get_queue_statistics")
                assert stats["completed_count"] == 1
                return created["task_id"]

    task_id = anyio.run(main)
    assert "serving MCP over stdio" in log.read_text()
    # the client closed stdin, the server closed the database: it opens again here
    with athena_orch.connect(db) as orch:
        task = orch.queue.get_task_status(task_id)
        assert task.status.value == "completed" and task.result == "world"


# --------------------------------------------------------------------------- HTTP
def test_two_client_processes_share_one_http_queue(http_server):
    token = "shared-secret"
    server = http_server("--token", token)
    assert f"http://127.0.0.1:{server.port}/mcp" in server.stderr()

    async def setup() -> list[str]:
        with anyio.fail_after(CALL_TIMEOUT):
            async with http_client(server.url, token) as client:
                batch = await call(
                    client,
                    "orchestration_create_tasks",
                    tasks=[
                        {
                            "content": f"job {i}",
                            "task_type": "t",
                            "requirements": ["python"],
                            "priority": ["high", "medium", "low"][i % 3],
                        }
                        for i in range(TASKS)
                    ],
                )
                return batch["task_ids"]

    ids = anyio.run(setup)
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), server.url, f"worker-{n}", token],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_env(),
        )
        for n in (1, 2)
    ]
    reports = []
    try:
        for proc in workers:
            out, err = proc.communicate(timeout=90)
            assert proc.returncode == 0, f"worker failed: {err}\nserver: {server.stderr()}"
            reports.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in workers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)

    handed_out = Counter(tid for report in reports for tid in report["completed"])
    assert set(handed_out) == set(ids)
    assert all(n == 1 for n in handed_out.values()), "a task was completed twice"
    owner = {tid: r["agent_id"] for r in reports for tid in r["completed"]}

    assert server.stop() == 0, f"server did not stop cleanly: {server.stderr()}"
    with athena_orch.connect(server.db) as orch:  # the server let go of the file
        assert orch.queue.get_queue_statistics().completed_count == len(ids)
        for tid in ids:
            task = orch.queue.get_task_status(tid)
            assert task.status.value == "completed"
            assert task.assigned_to == owner[tid] and task.result == f"done by {owner[tid]}"
            claims = [h for h in orch.queue.get_task_history(tid) if h["to_status"] == "assigned"]
            assert len(claims) == 1, f"{tid} was claimed {len(claims)} times"


def test_token_protected_server_refuses_clients_without_the_token(http_server):
    server = http_server(env=clean_env(ATHENA_ORCH_TOKEN="s3cret-token"))
    assert "bearer token required" in server.stderr()
    with httpx2.Client(timeout=10) as http:
        body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
        assert http.post(server.url, json=body).status_code == 401
        wrong = http.post(server.url, json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"].startswith("Bearer")

    async def connect(token: str | None) -> list[str]:
        async with http_client(server.url, token) as client:
            stats = await call(client, "orchestration_get_queue_statistics")
            assert stats["total_count"] == 0
            return [t.name for t in (await client.list_tools()).tools]

    def attempt(token: str | None) -> list[str]:
        async def bounded() -> list[str]:
            with anyio.fail_after(CALL_TIMEOUT):
                return await connect(token)

        return anyio.run(bounded)

    for token in (None, "wrong"):
        with pytest.raises(BaseException) as refused:  # noqa: B017 (an ExceptionGroup)
            attempt(token)
        assert not isinstance(refused.value, TimeoutError)
    assert set(attempt("s3cret-token")) == set(TOOL_NAMES)


def test_non_loopback_bind_without_token_refuses_to_start(tmp_path):
    db = tmp_path / "never.duckdb"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "athena_orch",
            "mcp",
            "--db",
            str(db),
            "--http",
            f"0.0.0.0:{free_port()}",
        ],
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env=clean_env(),
    )
    assert done.returncode == 2
    assert "refusing" in done.stderr and "--token" in done.stderr
    assert "ATHENA_ORCH_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists()  # nothing was opened


@pytest.mark.parametrize("address", ["127.0.0.1:http", "host:", ":0", "[::1]"])
def test_bad_http_address_is_a_clear_error(tmp_path, capsys, address):
    args = argparse.Namespace(db=str(tmp_path / "x.duckdb"), http=address, token=None)
    assert run_server_cli(args) == 2
    err = capsys.readouterr().err
    assert "athena-orch mcp:" in err and ("HOST:PORT" in err or "[ADDRESS]" in err)
    assert not (tmp_path / "x.duckdb").exists()


def test_taken_port_is_a_clear_error(tmp_path, capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        db = tmp_path / "x.duckdb"
        args = argparse.Namespace(db=str(db), http=f"127.0.0.1:{port}", token=None)
        assert run_server_cli(args) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on http://127.0.0.1:{port}/mcp" in err and "in use" in err
    assert not db.exists()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8765", ("127.0.0.1", 8765)),
        (":8765", ("127.0.0.1", 8765)),
        ("8765", ("127.0.0.1", 8765)),
        ("0.0.0.0:80", ("0.0.0.0", 80)),
        ("[::1]:9000", ("::1", 9000)),
        ("localhost:1", ("localhost", 1)),
    ],
)
def test_parse_http_address(text, expected):
    assert parse_http_address(text) == expected


@pytest.mark.parametrize("text", ["", "host:", "host:0", "host:70000", "[::1]", "a:b"])
def test_parse_http_address_rejects(text):
    with pytest.raises(ValueError, match="HOST:PORT|ADDRESS"):
        parse_http_address(text)


def test_is_loopback():
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost", "LOCALHOST"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.com"]))
