"""A worker *process* for tests/test_mcp_transports.py (not a test module).

    python tests/mcp_http_worker.py URL AGENT_ID [TOKEN]

Registers AGENT_ID over MCP streamable HTTP, then claims -> starts -> completes tasks until
no pending task is left, and prints one JSON line: {"agent_id": ..., "completed": [ids]}.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

DEADLINE = 75


async def call(client: Client, name: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(name, arguments)
    if result.is_error:
        raise RuntimeError(f"{name}({arguments}): {result.content[0].text}")
    return result.structured_content


async def work(url: str, agent_id: str, token: str | None) -> list[str]:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    completed: list[str] = []
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(20, read=30)) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, read_timeout_seconds=20) as client:
            await call(
                client,
                "orchestration_register_agent",
                agent_id=agent_id,
                capabilities=["python"],
                max_concurrent=2,
            )
            while True:
                answer = await call(client, "orchestration_claim_task", agent_id=agent_id)
                if not answer["claimed"]:
                    stats = await call(client, "orchestration_get_queue_statistics")
                    if stats["pending_count"] == 0:
                        return completed
                    await anyio.sleep(0.01)  # the rest is waiting on someone else's work
                    continue
                task = answer["task"]
                mine = {"task_id": task["id"], "agent_id": agent_id, "attempt": task["attempt"]}
                await call(client, "orchestration_start_task", **mine)
                await call(client, "orchestration_complete_task", **mine, result=f"done by {agent_id}")
                completed.append(task["id"])


async def main(url: str, agent_id: str, token: str | None) -> None:
    with anyio.fail_after(DEADLINE):
        completed = await work(url, agent_id, token)
    print(json.dumps({"agent_id": agent_id, "completed": completed}), flush=True)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
