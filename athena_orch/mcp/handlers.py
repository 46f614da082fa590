"""Orchestration MCP tools (the seed's ``handlers_orchestration.py``): how the tools run.

``OrchestrationHandlers(task_queue, registry, router).register_tools(server)`` adds every
tool of ``tools.TOOLS`` (the task, agent and routing tools of ``tools_tasks``,
``tools_agents`` and ``tools_routing``) to an ``mcp`` ``MCPServer``, each over these
handlers. Every tool:

- takes typed arguments, each with a description (they become the tool's JSON schema);
- returns a JSON object (``Task.to_dict()``, ``Agent.to_dict()``, ``RoutingDecision.to_dict()``,
  ``QueueStatistics.to_dict()``, DataFrames as lists of records), never a Python repr,
  within ``MAX_RESPONSE_BYTES`` (see ``answers``);
- turns the library's ``OrchestrationError`` into a tool error (``isError``) whose text is
  the library's message prefixed with the error class; nothing is written in that case.
  A ``StorageError`` (the database failed) is the exception: its text can carry file paths
  and SQL, so the client reads only that the database failed and the server logs the rest;
- runs in a worker thread, one call at a time in the order calls arrive (a FIFO turn per
  event loop, then one lock per handlers object), so each tool call sees and leaves the
  data consistent even when many clients call at once. A call whose client gives up
  (a timeout cancels it) while it waits for its turn never runs; one that has started
  finishes, and if its client gave up meanwhile the server logs what it did, since the
  answer reaches no one (clients retry ``orchestration_create_task`` safely with an
  ``idempotency_key``).
"""

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent

from ..agent_registry import AgentRegistry
from ..capability_router import CapabilityRouter
from ..exceptions import OrchestrationError, StorageError, shown
from ..task_queue import TaskQueue
from .answers import MAX_RESPONSE_BYTES, json_text, jsonable
from .tools import TOOL_NAMES, TOOLS

logger = logging.getLogger("athena_orch.mcp")

DATABASE_FAILED = "StorageError: the database failed (see the server log)"


class OrchestrationHandlers:
    """MCP handlers for orchestration operations (constructed as in the seed)."""

    def __init__(self, task_queue: TaskQueue, registry: AgentRegistry, router: CapabilityRouter):
        self.queue = task_queue
        self.registry = registry
        self.router = router
        # Tools run in worker threads; one lock makes every tool call atomic with respect
        # to the others (the database lock alone serialises statements, not whole calls).
        self.lock = threading.RLock()
        # Calls wait for their turn here, in arrival order, where waiting can be cancelled.
        self._turn: anyio.lowlevel.RunVar[anyio.Lock] = anyio.lowlevel.RunVar("turn")

    # ------------------------------------------------------------------ plumbing
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a library call under the handlers' lock; OrchestrationError -> ToolError
        (a StorageError's details go to the log, not to the client)."""
        with self.lock:
            try:
                return fn(*args, **kwargs)
            except StorageError:
                logger.exception("%s: the database failed", getattr(fn, "__name__", fn))
                raise ToolError(DATABASE_FAILED) from None
            except OrchestrationError as exc:
                raise ToolError(f"{type(exc).__name__}: {exc}") from None

    async def run(self, work: Callable[[], Any], label: str) -> Any:
        """``work()`` in a worker thread when its turn comes: calls take turns in the order
        they arrive. Cancelled while it waits (its client gave up), it never runs; once
        started it finishes, and if it was cancelled meanwhile, the log says what it did
        (``label`` names it), because its answer goes nowhere."""
        turn = self._turn.get(None)
        if turn is None:
            turn = anyio.Lock()
            self._turn.set(turn)
        async with turn:
            value = await anyio.to_thread.run_sync(work)
            try:
                await anyio.lowlevel.checkpoint_if_cancelled()
            except anyio.get_cancelled_exc_class():
                logger.warning(
                    "%s finished after its caller gave up, so its answer was not delivered: %s",
                    label,
                    shown(value, 500),
                )
                raise
            return value

    async def requeue_stale(self) -> list[str]:
        """``queue.requeue_stale()`` when its turn comes (for the server's timer)."""
        work = functools.partial(self.call, self.queue.requeue_stale)
        return await self.run(work, "requeue_stale")

    def _answer(
        self, fn: Callable[..., Any], read_only: bool, kwargs: dict[str, Any]
    ) -> CallToolResult:
        """The tool's result as a JSON object and as its text, within MAX_RESPONSE_BYTES."""
        result = jsonable(self.call(fn, self, **kwargs))
        text = json_text(result)
        size = len(text.encode("utf-8", "surrogatepass"))
        if size > MAX_RESPONSE_BYTES:
            limit = f"over this server's limit of {MAX_RESPONSE_BYTES} bytes"
            if read_only:
                raise ToolError(
                    f"ValidationError: the answer would take {size} bytes, {limit}: ask for "
                    "less (a smaller limit; orchestration_read_task_text reads long texts)"
                )
            logger.warning("%s succeeded; its answer of %d bytes was not sent", fn.__name__, size)
            result = {
                "done": True,
                "omitted": f"the call succeeded, but its answer of {size} bytes is {limit}; "
                "read what you need with the read tools",
            }
            text = json_text(result)
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=result
        )

    def _guarded(self, fn: Callable[..., Any], read_only: bool) -> Callable[..., Any]:
        """``fn`` over these handlers, as the SDK calls a tool: the SDK reads the returned
        function's signature, which is ``fn``'s without its first parameter (what the tool
        works on), for the tool's arguments."""
        async def tool(**kwargs: Any) -> CallToolResult:
            work = functools.partial(self._answer, fn, read_only, kwargs)
            if not kwargs.get("wait"):
                return await self.run(work, fn.__name__)
            return await self._long_poll(work, fn.__name__, kwargs["wait"])

        signature = inspect.signature(fn)
        tool.__signature__ = signature.replace(  # type: ignore[attr-defined]
            parameters=list(signature.parameters.values())[1:])
        tool.__name__ = tool.__qualname__ = fn.__name__
        tool.__doc__ = fn.__doc__
        return tool

    async def _long_poll(self, work: Callable[[], CallToolResult], label: str,
                         wait: float) -> CallToolResult:
        """``work()`` (a claim) again each time the queue says work may be ready, until it
        claims something or ``wait`` seconds pass. The waiting happens outside the calls'
        turn, so other clients go on meanwhile; a client that gives up stops it."""
        wakeups = self.queue.wakeups
        deadline = anyio.current_time() + wait
        while True:
            seen = wakeups.generation
            result = await self.run(work, label)
            left = deadline - anyio.current_time()
            if result.structured_content.get("claimed") or left <= 0:
                return result
            await anyio.to_thread.run_sync(wakeups.wait, seen, min(left, 1.0),
                                           abandon_on_cancel=True)

    # ------------------------------------------------------------------ registration
    def register_tools(self, server: Any) -> list[str]:
        """Register every tool of ``tools.TOOLS`` with an ``MCPServer``; returns their names."""
        for tool in TOOLS:
            server.add_tool(
                self._guarded(tool.function, bool(tool.annotations.read_only_hint)),
                name=tool.name,
                title=tool.title,
                description=inspect.cleandoc(tool.function.__doc__ or ""),
                annotations=tool.annotations,
                # Results carry structuredContent (a JSON object) and the same JSON as text,
                # but no outputSchema: a bare {"type": "object"} tells a client nothing, and
                # the SDK's client would import jsonschema to check it (seconds on a first
                # call where jsonschema's format extras are installed).
                structured_output=False,
            )
        return list(TOOL_NAMES)
