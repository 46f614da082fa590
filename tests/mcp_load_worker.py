"""A load-test worker *process* for tests/test_mcp_load.py (not a test module).

    python tests/mcp_load_worker.py URL AGENT_ID SYNC_DIR DEADLINE_SECONDS

Connects to the MCP server over streamable HTTP, writes ``SYNC_DIR/ready-AGENT_ID`` and
waits for ``SYNC_DIR/go`` (so every worker starts hammering at the same moment), then loops
claim -> start -> complete until no pending task is left. It never raises on a tool error:
it records it and goes on (giving up after a few), so the test sees every problem. At the
end it prints one JSON line:

    {"agent_id", "completed": [ids in order], "priorities": [...], "errors": [...],
     "calls", "cycles", "elapsed", "timed_out"}

and exits 0 (3 when the deadline ran out first).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

MAX_ERRORS = 10
SYNC_WAIT = 60


class Worker:
    def __init__(self, agent_id: str):
        self.agent_id = agent_id
        self.completed: list[str] = []
        self.priorities: list[str] = []
        self.errors: list[dict[str, Any]] = []
        self.calls = 0
        self.started = 0.0
        self.finished = 0.0

    async def call(self, client: Client, name: str, **arguments: Any) -> dict[str, Any] | None:
        """The tool's structured result, or None after recording its tool error."""
        self.calls += 1
        result = await client.call_tool(name, arguments)
        if result.is_error:
            text = " ".join(getattr(c, "text", "") for c in result.content)
            self.errors.append({"tool": name, "arguments": arguments, "text": text})
            if len(self.errors) >= MAX_ERRORS:
                raise RuntimeError(f"{self.agent_id}: too many tool errors, giving up")
            return None
        return result.structured_content

    async def run(self, url: str, sync_dir: Path) -> None:
        timeout = httpx2.Timeout(20, read=30)
        async with httpx2.AsyncClient(timeout=timeout) as http:
            transport = streamable_http_client(url, http_client=http)
            async with Client(transport, read_timeout_seconds=30) as client:
                await client.list_tools()  # the session is up and the server answers
                (sync_dir / f"ready-{self.agent_id}").touch()
                with anyio.fail_after(SYNC_WAIT):
                    while not (sync_dir / "go").exists():
                        await anyio.sleep(0.01)
                self.started = time.monotonic()
                try:
                    await self.loop(client)
                finally:
                    self.finished = time.monotonic()

    async def loop(self, client: Client) -> None:
        agent_id = self.agent_id
        while True:
            answer = await self.call(client, "orchestration_claim_task", agent_id=agent_id)
            if answer is None:
                continue
            if not answer["claimed"]:
                stats = await self.call(client, "orchestration_get_queue_statistics")
                if stats is not None and stats["pending_count"] == 0:
                    return
                await anyio.sleep(0.01)  # what is left waits on someone else
                continue
            task = answer["task"]
            mine = {"task_id": task["id"], "agent_id": agent_id, "attempt": task["attempt"]}
            if await self.call(client, "orchestration_start_task", **mine) is None:
                continue
            done = await self.call(
                client,
                "orchestration_complete_task",
                **mine,
                result=f"done by {agent_id}",
                duration_ms=1,
            )
            if done is not None:
                self.completed.append(task["id"])
                self.priorities.append(task["priority"])

    def report(self, timed_out: bool) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id,
            "completed": self.completed,
            "priorities": self.priorities,
            "errors": self.errors,
            "calls": self.calls,
            "cycles": len(self.completed),
            "elapsed": max(0.0, self.finished - self.started) if self.started else None,
            "timed_out": timed_out,
        }


async def main(url: str, agent_id: str, sync_dir: str, deadline: float) -> int:
    worker = Worker(agent_id)
    timed_out = False
    with anyio.move_on_after(deadline) as scope:
        await worker.run(url, Path(sync_dir))
    if scope.cancelled_caught:
        timed_out = True
        worker.finished = worker.finished or time.monotonic()
    print(json.dumps(worker.report(timed_out), ensure_ascii=False), flush=True)
    return 3 if timed_out else 0


if __name__ == "__main__":
    url_arg, agent_arg, sync_arg, deadline_arg = sys.argv[1:5]
    sys.exit(anyio.run(main, url_arg, agent_arg, sync_arg, float(deadline_arg)))
