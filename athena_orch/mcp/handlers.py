"""Orchestration MCP tools (the seed's ``handlers_orchestration.py``).

``OrchestrationHandlers(task_queue, registry, router).register_tools(server)`` adds one
``orchestration_*`` tool per public operation of the queue, the registry and the router to
an ``mcp`` ``MCPServer``. Every tool:

- takes typed arguments, each with a description (they become the tool's JSON schema);
- returns a JSON object (``Task.to_dict()``, ``Agent.to_dict()``, ``RoutingDecision.to_dict()``,
  ``QueueStatistics.to_dict()``, DataFrames as lists of records), never a Python repr;
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

Answers are bounded, whatever the data (see ``MAX_RESPONSE_BYTES``): every tool that lists
takes a ``limit`` (with a default and a maximum) and an ``offset``, and says where the next
page starts (``next_offset``, null on the last page); a page ends early rather than pass
the byte budget. Listed tasks carry their texts (content, result, error) cut to
``LISTED_CHARS`` characters; a single task carries each text up to ``TEXT_BYTES`` and
``orchestration_read_task_text`` reads any text whole, piece by piece. Every record that
was cut names the cut fields in ``truncated``.

Reads of an unknown id are tool errors here (the library answers ``None``), because an
agent that names a task or agent that does not exist has made a mistake it should see.
"""

import functools
import inspect
import json
import logging
import math
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from itertools import islice
from typing import Annotated, Any, Literal

import anyio
import anyio.lowlevel
import anyio.to_thread
import numpy as np
import pandas as pd
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt

from ..agent_registry import AgentRegistry
from ..capability_router import CapabilityRouter
from ..exceptions import (
    AgentNotFoundError,
    OrchestrationError,
    StorageError,
    TaskNotFoundError,
    ValidationError,
    shown,
)
from ..models import Agent, Task
from ..task_queue import TaskQueue

# NB: no ``from __future__ import annotations``: the SDK reads these annotations at
# registration, and the aliases below must be real objects, not strings.

logger = logging.getLogger("athena_orch.mcp")

# --------------------------------------------------------------------------- sizes
MAX_RESPONSE_BYTES = 512 * 1024  # a tool's JSON answer, UTF-8 (sent as text and structured)
PAGE_BYTES = MAX_RESPONSE_BYTES - 4 * 1024  # the listed records of one page, together
LISTED_CHARS = 1_000  # a string in a listed record (a task's content, a history detail)
LISTED_ITEMS = 100  # a list or object inside a listed record (requirements, capabilities)
SINGLE_ITEMS = 1_000  # a list or object inside the one record a tool answers with
TEXT_FIELDS = ("content", "result", "error")  # a task's free texts
TEXT_BYTES = 128 * 1024  # each free text of a single task, JSON-encoded
TEXT_PIECE_BYTES = 256 * 1024  # one piece read by orchestration_read_task_text
MAX_BATCH = 1_000  # tasks per orchestration_create_tasks
MAX_ROUTE_BATCH = 500  # tasks per orchestration_route_batch
MAX_CLAIM_WAIT = 60.0  # seconds an orchestration_claim_task may long-poll
LISTED_IDS = 1_000  # ids named by orchestration_requeue_stale / orchestration_heartbeat
DATABASE_FAILED = "StorageError: the database failed (see the server log)"

# --------------------------------------------------------------------------- argument types
PriorityName = Literal["high", "medium", "low"]
StatusName = Literal[
    "pending", "assigned", "running", "completed", "failed", "blocked", "cancelled"
]
TextField = Literal["content", "result", "error"]

TaskId = Annotated[str, Field(description="Id of the task (as returned when it was created).")]
AgentId = Annotated[str, Field(description="Id of the agent, e.g. 'coder-1'.")]
Content = Annotated[
    str, Field(description="What the task is: the work to do, in words. Non-empty.")
]
TaskType = Annotated[
    str, Field(description="Kind of task, e.g. 'code', 'review', 'research'. Non-empty.")
]
Priority = Annotated[
    PriorityName,
    Field(
        description="'high', 'medium' or 'low'; tasks are handed out high first, then oldest first."
    ),
]
Requirements = Annotated[
    list[str] | None,
    Field(
        description="Capabilities an agent must have to take the task, as a JSON array of "
        'strings, e.g. ["python", "sql"]. Omit or [] for none.'
    ),
]
Dependencies = Annotated[
    list[str] | None,
    Field(
        description="Ids of existing tasks that must complete before this one is ready, as a "
        "JSON array of strings. Omit or [] for none."
    ),
]
MaxRetries = Annotated[
    StrictInt,
    Field(
        ge=0,
        description="How many times a failed or timed-out attempt is retried (so at most "
        "max_retries + 1 attempts).",
    ),
]
EstimatedMs = Annotated[
    StrictInt | None,
    Field(ge=0, description="Optional estimate of the task's duration in milliseconds."),
]
IdempotencyKey = Annotated[
    str | None,
    Field(
        description="Optional key: creating a task again with the same key returns the first "
        "task's id instead of a duplicate. Give one whenever you may send the call again "
        "(after a timeout or a lost connection the task may exist already)."
    ),
]
TaskName = Annotated[
    str | None,
    Field(
        description="Optional human-readable name of the task, shown with its id (need not "
        "be unique)."
    ),
]
Capabilities = Annotated[
    list[str],
    Field(
        description="The agent's capabilities as a JSON array of strings, e.g. "
        '["python", "review"]. Replaces any earlier list.'
    ),
]
MaxConcurrent = Annotated[
    StrictInt,
    Field(ge=1, description="How many tasks the agent may hold (assigned + running) at once."),
]
Metadata = Annotated[
    dict[str, Any] | None,
    Field(description="Optional JSON object of extra facts about the agent (model, owner, ...)."),
]
FenceAgent = Annotated[
    str | None,
    Field(
        description="Your agent id, the one the task was handed to. Always give it, with "
        "attempt: if your lease ran out and the task went to someone else, the call is "
        "refused (StaleAttemptError) instead of acting on their attempt."
    ),
]
Attempt = Annotated[
    StrictInt | None,
    Field(
        ge=0,
        description="The task's `attempt` as your claim (or assign) answer gave it. Always "
        "give it, with agent_id: a call for an attempt that is no longer current is refused "
        "(StaleAttemptError) and changes nothing; then drop the task.",
    ),
]
ClaimWait = Annotated[
    float,
    Field(
        ge=0,
        le=MAX_CLAIM_WAIT,
        description="Seconds to wait for a ready task when none is (a long poll, at most 60): "
        "the answer comes as soon as one appears. 0 answers at once.",
    ),
]
ExcludeAgents = Annotated[
    list[str] | None, Field(description="Agent ids not to consider, as a JSON array of strings.")
]


def _limit(what: str, most: int) -> Any:
    return Annotated[
        StrictInt, Field(ge=0, le=most, description=f"Return at most this many {what} (<= {most}).")
    ]


Offset = Annotated[
    StrictInt,
    Field(
        ge=0,
        description="Skip this many first. For the next page, pass the next_offset of the "
        "previous answer.",
    ),
]


class TaskSpec(BaseModel):
    """One task of a bulk create."""

    model_config = ConfigDict(extra="forbid")

    content: Content
    task_type: TaskType
    priority: Priority = "medium"
    requirements: Requirements = None
    dependencies: Annotated[
        list[str] | None,
        Field(
            description="Ids of existing tasks, or `key`s of other tasks in the same batch, that "
            "must complete first."
        ),
    ] = None
    max_retries: MaxRetries = 3
    estimated_duration_ms: EstimatedMs = None
    idempotency_key: IdempotencyKey = None
    key: Annotated[
        str | None,
        Field(
            description="Optional name for this task inside the batch, so other tasks of the batch "
            "can name it in their dependencies before it has an id; also the task's name when "
            "`name` is not given."
        ),
    ] = None
    name: TaskName = None


# --------------------------------------------------------------------------- JSON results
def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: NaN/NA/NaT -> None, times -> ISO 8601 strings,
    numpy scalars -> Python numbers, enums -> their value, sets -> sorted lists."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):  # pd.Timedelta too
        return value.total_seconds()
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="json"))
    return str(value)


def json_text(value: Any) -> str:
    """Strict JSON (no NaN), UTF-8 characters kept."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON text in UTF-8."""
    return len(json_text(value).encode("utf-8", "surrogatepass"))


def fit_text(text: str, budget: int) -> str:
    """The longest start of ``text`` whose JSON string takes at most ``budget`` bytes."""
    if json_size(text) <= budget:
        return text
    low, high = 0, min(len(text), budget)  # a character takes at least one byte
    while low < high:
        middle = (low + high + 1) // 2
        if json_size(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _clip(value: Any, chars: int, items: int, path: str, cut: list[str]) -> Any:
    """``value`` with strings cut to ``chars`` characters and lists and objects to
    ``items`` entries, at every depth; the path of everything cut goes to ``cut``."""
    if isinstance(value, str):
        if len(value) <= chars:
            return value
        cut.append(path)
        return value[:chars]
    if isinstance(value, list):
        if len(value) > items:
            cut.append(path)
        return [_clip(v, chars, items, path, cut) for v in value[:items]]
    if isinstance(value, dict):
        if len(value) > items:
            cut.append(path)
        out = {}
        for key, inner in islice(value.items(), items):
            if len(key) > chars:
                cut.append(path)
                key = key[:chars]
            out[key] = _clip(inner, chars, items, f"{path}.{key}" if path else key, cut)
        return out
    return value


def clipped(
    record: dict[str, Any], *, chars: int, items: int, text_bytes: int | None = None
) -> dict[str, Any]:
    """A JSON record cut to size, with ``truncated``: the fields that were cut ([] when
    none). With ``text_bytes``, a task's free texts keep up to that many bytes instead."""
    cut: list[str] = []
    out = {}
    for key, value in record.items():
        if text_bytes is not None and key in TEXT_FIELDS and isinstance(value, str):
            out[key] = fit_text(value, text_bytes)
            if len(out[key]) < len(value):
                cut.append(key)
        else:
            out[key] = _clip(value, chars, items, key, cut)
    out["truncated"] = list(dict.fromkeys(cut))
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of JSON records (one per row)."""
    return [jsonable(row) for row in frame.to_dict("records")]


def task_dict(task: Task) -> dict[str, Any]:
    """One task as the answer of a tool about that task: its texts up to TEXT_BYTES each."""
    return clipped(
        jsonable(task.to_dict()), chars=LISTED_CHARS, items=SINGLE_ITEMS, text_bytes=TEXT_BYTES
    )


def listed_task(task: Task) -> dict[str, Any]:
    """One task in a list: its texts cut to LISTED_CHARS characters."""
    return clipped(jsonable(task.to_dict()), chars=LISTED_CHARS, items=LISTED_ITEMS)


def listed(record: dict[str, Any]) -> dict[str, Any]:
    return clipped(jsonable(record), chars=LISTED_CHARS, items=LISTED_ITEMS)


def single(record: dict[str, Any]) -> dict[str, Any]:
    return clipped(jsonable(record), chars=LISTED_CHARS, items=SINGLE_ITEMS)


IDENTIFYING = ("id", "task_id", "agent_id", "decision_id", "event_id", "at")


def fit(
    items: Iterable[dict[str, Any]], budget: int, read_whole: str
) -> tuple[list[dict[str, Any]], bool]:
    """The records that fit in ``budget`` bytes together, and whether some were left out.
    A first record too big on its own is named by its ids with an ``omitted`` note
    (``read_whole`` says where to read it), so a page always moves on."""
    kept: list[dict[str, Any]] = []
    used = 0
    for item in items:
        size = json_size(item) + 2
        if used + size > budget:
            if kept:
                return kept, True
            item = {k: item[k] for k in IDENTIFYING if k in item}
            item["omitted"] = f"too large to list here ({size} bytes); {read_whole}"
            size = json_size(item) + 2
        kept.append(item)
        used += size
    return kept, False


def page(
    name: str, items: list[dict[str, Any]], offset: int, more: bool, read_whole: str
) -> dict[str, Any]:
    """One page of a list: {name: records, count, offset, next_offset (null when done)}."""
    kept, cut = fit(items, PAGE_BYTES, read_whole)
    return {
        name: kept,
        "count": len(kept),
        "offset": offset,
        "next_offset": offset + len(kept) if cut or more else None,
    }


def _annotations(
    read_only: bool = False, destructive: bool = False, idempotent: bool = False
) -> ToolAnnotations:
    if read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


READ = _annotations(read_only=True)
ADD = _annotations()
UPDATE = _annotations(idempotent=True)
CHANGE = _annotations(destructive=True)

READ_TASK = "read it with orchestration_get_task"
READ_AGENT = "read it with orchestration_get_agent_health"
LISTED_NOTE = (
    "Listed tasks carry content, result and error cut to 1000 characters (`truncated` names "
    "what was cut; orchestration_get_task has the whole task)."
)
PAGE_NOTE = (
    "A page ends early rather than pass 512 KiB; next_offset (null on the last page) is the "
    "offset of the next page."
)


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
        result = jsonable(self.call(fn, **kwargs))
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
        @functools.wraps(fn)  # keeps the signature the SDK reads
        async def tool(**kwargs: Any) -> CallToolResult:
            work = functools.partial(self._answer, fn, read_only, kwargs)
            if not kwargs.get("wait"):
                return await self.run(work, fn.__name__)
            return await self._long_poll(work, fn.__name__, kwargs["wait"])

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

    def _task(self, task_id: str) -> Task:
        task = self.queue.get_task_status(task_id)
        if task is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        return task

    def _agent(self, agent_id: str) -> Agent:
        agent = self.registry.get_agent(agent_id)
        if agent is None:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
        return agent

    def _tasks_page(self, filters: dict[str, Any], limit: int, offset: int) -> dict[str, Any]:
        """A page of ``queue.query_tasks(filters)`` (one task more, to tell whether
        another page follows)."""
        found = self.queue.query_tasks({**filters, "limit": limit + 1, "offset": offset})
        items = [listed_task(t) for t in found[:limit]]
        return page("tasks", items, offset, len(found) > limit, READ_TASK)

    # ------------------------------------------------------------------ registration
    def register_tools(self, server: Any) -> list[str]:
        """Register every orchestration tool with an ``MCPServer``; returns their names."""
        names = []
        for fn, title, annotations in self._tools():
            server.add_tool(
                self._guarded(fn, bool(annotations.read_only_hint)),
                name=fn.__name__,
                title=title,
                description=inspect.cleandoc(fn.__doc__ or ""),
                annotations=annotations,
                # Results carry structuredContent (a JSON object) and the same JSON as text,
                # but no outputSchema: a bare {"type": "object"} tells a client nothing, and
                # the SDK's client would import jsonschema to check it (seconds on a first
                # call where jsonschema's format extras are installed).
                structured_output=False,
            )
            names.append(fn.__name__)
        return names

    def _tools(self) -> list[tuple[Callable[..., Any], str, ToolAnnotations]]:
        queue, registry, router = self.queue, self.registry, self.router

        # ---------------------------------------------------------------- tasks
        def orchestration_create_task(
            content: Content,
            task_type: TaskType,
            priority: Priority = "medium",
            requirements: Requirements = None,
            dependencies: Dependencies = None,
            max_retries: MaxRetries = 3,
            estimated_duration_ms: EstimatedMs = None,
            idempotency_key: IdempotencyKey = None,
            name: TaskName = None,
        ) -> dict[str, Any]:
            """Create a new task in the queue.

            Returns {task_id, status, created, task}; created is false when idempotency_key
            named a task made earlier (its id comes back). The task starts 'pending' (or 'blocked'
            when a dependency already failed or was cancelled); it is ready to be claimed once
            every dependency is completed. Give an idempotency_key when you might send the
            call again: if an answer is lost (a timeout), sending the same call again is then
            safe and tells you the task's id.
            """
            before = queue.get_queue_statistics().total_count if idempotency_key else None
            task_id = queue.create_task(
                content,
                task_type,
                priority,
                requirements,
                dependencies,
                max_retries=max_retries,
                estimated_duration_ms=estimated_duration_ms,
                idempotency_key=idempotency_key,
                name=name,
            )
            task = self._task(task_id)
            return {
                "task_id": task_id,
                "status": task.status.value,
                # False when the idempotency key gave back a task made earlier
                "created": before is None or queue.get_queue_statistics().total_count > before,
                "task": task_dict(task),
            }

        def orchestration_create_tasks(
            tasks: Annotated[
                list[TaskSpec],
                Field(
                    max_length=MAX_BATCH,
                    description="The tasks to create (at most 1000 a call), each an object "
                    "with create_task's fields plus an optional `key` that other tasks of this "
                    "batch may name in their `dependencies`.",
                ),
            ],
        ) -> dict[str, Any]:
            """Create many tasks at once, all or nothing (a bad record creates none), at most
            1000 a call.

            Returns {task_ids (in record order), keys (key -> task id), count}.
            """
            batch = [spec.model_dump(exclude_none=True) for spec in tasks]
            ids = queue.create_tasks(batch)
            keys = {spec.key: tid for spec, tid in zip(tasks, ids) if spec.key is not None}
            return {"task_ids": ids, "keys": keys, "count": len(ids)}

        def orchestration_poll_tasks(
            agent_id: Annotated[
                str | None, Field(description="Only tasks assigned to this agent; omit for any.")
            ] = None,
            status: Annotated[
                StatusName,
                Field(
                    description="Task state to list ('pending' lists all pending tasks, ready or "
                    "not)."
                ),
            ] = "pending",
            limit: _limit("tasks", 200) = 10,
            offset: Offset = 0,
        ) -> dict[str, Any]:
            """Poll for tasks in one state (pending by default), in queue order: priority
            high first, then oldest first. Looks only; use orchestration_claim_task to take one.

            Returns {tasks, count, offset, next_offset}. Listed tasks carry content, result and
            error cut to 1000 characters (`truncated` names what was cut;
            orchestration_get_task has the whole task). A page ends early rather than pass
            512 KiB; next_offset (null on the last page) is the offset of the next page.
            """
            filters = {"status": status, "agent_id": agent_id}
            return self._tasks_page(filters, limit, offset)

        def orchestration_query_tasks(
            status: Annotated[
                StatusName | list[StatusName] | None,
                Field(description="One state or a JSON array of states; omit for any."),
            ] = None,
            agent_id: Annotated[
                str | None, Field(description="Only tasks assigned to this agent.")
            ] = None,
            task_type: Annotated[str | None, Field(description="Only tasks of this type.")] = None,
            priority: Annotated[
                PriorityName | None, Field(description="Only tasks of this priority.")
            ] = None,
            created_after: Annotated[
                datetime | None,
                Field(
                    description="Only tasks created after this time (ISO 8601, e.g. "
                    "2030-01-31T12:00:00Z; no zone means UTC)."
                ),
            ] = None,
            limit: _limit("tasks", 200) = 50,
            offset: Offset = 0,
        ) -> dict[str, Any]:
            """Find tasks matching every given filter, in queue order, a page at a time.

            Returns {tasks, count, offset, next_offset}. Listed tasks carry content, result and
            error cut to 1000 characters (`truncated` names what was cut;
            orchestration_get_task has the whole task). A page ends early rather than pass
            512 KiB; next_offset (null on the last page) is the offset of the next page.
            """
            filters = {
                "status": status,
                "agent_id": agent_id,
                "task_type": task_type,
                "priority": priority,
                "created_after": created_after
                if created_after is None or created_after.tzinfo
                else created_after.replace(tzinfo=UTC),  # as the description promises
            }
            given = {k: v for k, v in filters.items() if v is not None}
            return self._tasks_page(given, limit, offset)

        def orchestration_get_task(
            task_id: TaskId,
            include_history: Annotated[
                StrictBool,
                Field(description="Also return the task's state changes, oldest first."),
            ] = True,
            history_limit: _limit("state changes", 500) = 100,
            history_offset: Annotated[
                StrictInt,
                Field(
                    ge=0,
                    description="Skip this many state changes first (for more, pass the "
                    "previous answer's history_next_offset).",
                ),
            ] = 0,
        ) -> dict[str, Any]:
            """Get one task as it is now (status, assignee, result, error, retries, lease,
            attempt) and its history.

            Returns {task, history, history_next_offset}. content, result and error come
            whole up to 128 KiB each; a longer one is cut and named in task.truncated: read it
            whole with orchestration_read_task_text. history_next_offset is null when no
            state change is left.
            """
            task = self._task(task_id)
            answer: dict[str, Any] = {"task": task_dict(task)}
            if not include_history:
                return {**answer, "history": [], "history_next_offset": None}
            steps = queue.get_task_history(task.id)
            chosen = [listed(h) for h in steps[history_offset : history_offset + history_limit]]
            kept, cut = fit(chosen, PAGE_BYTES - json_size(answer), "ask for fewer")
            end = history_offset + len(kept)
            return {
                **answer,
                "history": kept,
                "history_next_offset": end if cut or end < len(steps) else None,
            }

        def orchestration_read_task_text(
            task_id: TaskId,
            field: Annotated[
                TextField, Field(description="Which text: 'content', 'result' or 'error'.")
            ],
            offset: Annotated[
                StrictInt,
                Field(
                    ge=0,
                    description="Start at this character (for the next piece, pass the "
                    "previous answer's next_offset).",
                ),
            ] = 0,
        ) -> dict[str, Any]:
            """Read a task's content, result or error whole, a piece of up to 256 KiB at a
            time (other tools cut long texts).

            Returns {task_id, field, offset, text, total_chars, next_offset}; next_offset is
            null once the text is read to its end. A field the task does not have yet reads as
            text null.
            """
            value = getattr(self._task(task_id), field)
            if value is None:
                return {
                    "task_id": task_id,
                    "field": field,
                    "offset": offset,
                    "text": None,
                    "total_chars": 0,
                    "next_offset": None,
                }
            piece = fit_text(value[offset:], TEXT_PIECE_BYTES)
            end = offset + len(piece)
            return {
                "task_id": task_id,
                "field": field,
                "offset": offset,
                "text": piece,
                "total_chars": len(value),
                "next_offset": end if end < len(value) else None,
            }

        def orchestration_get_dependency_status(task_id: TaskId) -> dict[str, Any]:
            """Where a task stands with its dependencies: ready or not, each dependency's
            state, what it still waits on, what blocked it, and which tasks wait on it
            (each list cut to 1000, named in `truncated`)."""
            status = queue.get_dependency_status(task_id)
            if status is None:
                raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
            return single(status)

        def orchestration_assign_task(task_id: TaskId, agent_id: AgentId) -> dict[str, Any]:
            """Assign a pending task whose dependencies are completed to an agent, overriding
            the router (capacity and capabilities are not checked). pending -> assigned.
            Returns {task}."""
            return {"task": task_dict(queue.assign_task(task_id, agent_id))}

        def orchestration_claim_task(agent_id: AgentId, wait: ClaimWait = 0) -> dict[str, Any]:
            """Atomically take the best ready task this agent can do (it must be registered,
            active, below capacity and have every required capability). Two agents never get
            the same task. Then call orchestration_start_task. With wait, a claim that finds
            nothing waits up to that many seconds and answers as soon as a task is ready:
            long-poll with it instead of calling again and again.

            Returns {claimed, task, reason}: task is null (with the reason) when nothing fits.
            Keep task.attempt: pass it, with your agent_id, to orchestration_start_task,
            orchestration_heartbeat, orchestration_complete_task and orchestration_fail_task.
            If an answer is lost (a timeout), orchestration_poll_tasks with your agent_id and
            status 'assigned' shows what you hold.
            """
            task = queue.claim_task(agent_id)
            if task is not None:
                return {"claimed": True, "task": task_dict(task), "reason": "claimed"}
            agent = registry.get_agent(agent_id)
            if agent is not None and not agent.active:
                reason = f"agent {shown(agent_id)} is paused (see orchestration_set_agent_active)"
            elif agent is not None and agent.current_load >= agent.max_concurrent_tasks:
                reason = (
                    f"agent {shown(agent_id)} is at capacity ({agent.current_load}/"
                    f"{agent.max_concurrent_tasks}); finish a task first"
                )
            else:
                reason = "no ready task needs only capabilities this agent has"
            return {"claimed": False, "task": None, "reason": reason}

        def orchestration_start_task(
            task_id: TaskId, agent_id: FenceAgent = None, attempt: Attempt = None
        ) -> dict[str, Any]:
            """Start an assigned task (assigned -> running); renews its lease. Pass your
            agent_id and the attempt from the claim. Returns {task}."""
            return {
                "task": task_dict(queue.start_task(task_id, agent_id=agent_id, attempt=attempt))
            }

        def orchestration_complete_task(
            task_id: TaskId,
            result: Annotated[
                str, Field(description="The outcome, as text (JSON is fine as a string).")
            ],
            duration_ms: Annotated[
                StrictInt | None,
                Field(
                    ge=0,
                    description="How long the work took in milliseconds; omit to use the "
                    "time since the task started.",
                ),
            ] = None,
            agent_id: FenceAgent = None,
            attempt: Attempt = None,
        ) -> dict[str, Any]:
            """Complete a running task with its result (running -> completed); records a
            success for the agent and releases tasks that waited on it. Pass your agent_id
            and the attempt from the claim: a stale attempt's result is refused, so it never
            overwrites the work of whoever holds the task now. Returns {task}."""
            metrics = None if duration_ms is None else {"duration_ms": duration_ms}
            done = queue.complete_task(task_id, result, metrics, agent_id=agent_id, attempt=attempt)
            return {"task": task_dict(done)}

        def orchestration_fail_task(
            task_id: TaskId,
            error: Annotated[str, Field(description="What went wrong, stored on the task.")],
            should_retry: Annotated[
                StrictBool,
                Field(
                    description="Retry the task later if it has retries left (true), or fail it "
                    "for good now (false)."
                ),
            ] = True,
            agent_id: FenceAgent = None,
            attempt: Attempt = None,
        ) -> dict[str, Any]:
            """Report that an assigned or running task failed. With a retry left it goes back
            to pending after a back-off, else it fails for good and every task that depends on
            it is blocked. Records a failure for the agent. Pass your agent_id and the attempt
            from the claim. Returns {task}."""
            failed = queue.fail_task(
                task_id, error, should_retry, agent_id=agent_id, attempt=attempt
            )
            return {"task": task_dict(failed)}

        def orchestration_release_task(
            task_id: TaskId,
            agent_id: FenceAgent = None,
            attempt: Attempt = None,
            reason: Annotated[
                str | None, Field(description="Why it is handed back (kept in its history).")
            ] = None,
        ) -> dict[str, Any]:
            """Hand an assigned or running task back to the queue when you stop before
            finishing it: it is pending again at once, with no retry used and no failure
            counted (unlike orchestration_fail_task). Pass your agent_id and the attempt
            from the claim. Returns {task}."""
            released = queue.release_task(task_id, agent_id=agent_id, attempt=attempt,
                                          reason=reason)
            return {"task": task_dict(released)}

        def orchestration_cancel_task(
            task_id: TaskId,
            reason: Annotated[
                str | None, Field(description="Why it is cancelled (stored on the task).")
            ] = None,
        ) -> dict[str, Any]:
            """Cancel a pending, assigned, running or blocked task; every task that depends on
            it is blocked. Returns {task}."""
            return {"task": task_dict(queue.cancel_task(task_id, reason))}

        def orchestration_heartbeat(
            task_id: Annotated[
                str | None,
                Field(description="Renew the lease of this task (give this, or agent_id alone)."),
            ] = None,
            agent_id: Annotated[
                str | None,
                Field(
                    description="Your agent id. With task_id it guards the call (always give "
                    "it, with attempt): a task handed to someone else since is refused "
                    "(StaleAttemptError). Alone, renews the leases of every task you hold."
                ),
            ] = None,
            attempt: Attempt = None,
        ) -> dict[str, Any]:
            """Tell the queue you are still working: renews the lease of an assigned/running
            task (or of all an agent's tasks). A task whose lease runs out is retried by
            someone else; a StaleAttemptError says that happened: drop the task. Returns
            {renewed, count}: count tasks, the first 1000 of them named."""
            renewed = queue.heartbeat(task_id, agent_id=agent_id, attempt=attempt)
            return {"renewed": renewed[:LISTED_IDS], "count": len(renewed)}

        def orchestration_requeue_stale() -> dict[str, Any]:
            """Retry (or fail, with no retry left) every assigned/running task whose lease ran
            out. The server also does this by itself every 30 s. Returns {requeued, count}:
            count tasks, the first 1000 of them named."""
            stale = queue.requeue_stale()
            return {"requeued": stale[:LISTED_IDS], "count": len(stale)}

        def orchestration_get_queue_statistics() -> dict[str, Any]:
            """Number of tasks in each state, the total and the success rate
            (completed / (completed + failed); 1.0 while nothing has finished)."""
            return queue.get_queue_statistics().to_dict()

        # ---------------------------------------------------------------- agents
        def orchestration_register_agent(
            agent_id: AgentId,
            capabilities: Capabilities,
            max_concurrent: MaxConcurrent = 5,
            metadata: Metadata = None,
        ) -> dict[str, Any]:
            """Register an agent with its capabilities, or re-register it to replace its
            capabilities and metadata (its performance figures are kept; it becomes active).
            Returns {agent_id, registered, agent}."""
            meta = {**(metadata or {}), "max_concurrent_tasks": max_concurrent}
            agent = registry.register_agent(agent_id, capabilities, meta)
            return {"agent_id": agent.id, "registered": True, "agent": single(agent.to_dict())}

        def orchestration_learn_new_capability(
            agent_id: AgentId,
            capability: Annotated[str, Field(description="The capability to add, e.g. 'sql'.")],
            confidence: Annotated[
                StrictFloat,
                Field(
                    ge=0,
                    le=1,
                    description="How sure we are the agent has it, 0..1 (used by the "
                    "router's fit score).",
                ),
            ] = 1.0,
        ) -> dict[str, Any]:
            """Give a registered agent one more capability (or change the confidence of one it
            has). Returns {agent}."""
            agent = registry.learn_new_capability(agent_id, capability, confidence)
            return {"agent": single(agent.to_dict())}

        def orchestration_set_agent_active(
            agent_id: AgentId,
            active: Annotated[
                StrictBool,
                Field(description="false pauses routing and claims for the agent; true resumes."),
            ],
        ) -> dict[str, Any]:
            """Pause or resume an agent. Its current tasks are not touched. Returns {agent}."""
            return {"agent": single(registry.set_active(agent_id, active).to_dict())}

        def orchestration_deregister_agent(agent_id: AgentId) -> dict[str, Any]:
            """Remove an agent and its figures. Tasks it holds keep it as assignee (cancel or
            let their leases run out). Returns {agent_id, deregistered}."""
            registry.deregister_agent(agent_id)
            return {"agent_id": agent_id, "deregistered": True}

        def orchestration_update_agent_performance(
            agent_id: AgentId,
            success: Annotated[StrictBool, Field(description="Whether the work succeeded.")],
            duration_ms: Annotated[
                StrictInt, Field(ge=0, description="How long it took in milliseconds.")
            ],
        ) -> dict[str, Any]:
            """Record work an agent did OUTSIDE the queue. Tasks finished through
            orchestration_complete_task / orchestration_fail_task are already counted; do not
            report them again. Returns {health}."""
            registry.update_agent_performance(agent_id, success, duration_ms)
            return {"health": single(registry.get_agent_health(agent_id))}

        def orchestration_get_agent_health(agent_id: AgentId) -> dict[str, Any]:
            """An agent's figures: status (active/inactive), success_rate, avg_completion_ms,
            current_load, max_concurrent_tasks, utilization, total_completed, total_failed,
            capabilities (the first 1000; `truncated` says when there are more)."""
            self._agent(agent_id)
            return single(registry.get_agent_health(agent_id))

        def orchestration_list_agents(
            limit: _limit("agents", 500) = 100, offset: Offset = 0
        ) -> dict[str, Any]:
            """Registered agents with capabilities, state and figures, sorted by id, a page at
            a time.

            Returns {agents, count, offset, next_offset}. A listed agent's capabilities and
            metadata are cut to 100 entries and its strings to 1000 characters (`truncated`
            names what was cut). A page ends early rather than pass 512 KiB; next_offset (null
            on the last page) is the offset of the next page.
            """
            ids = registry.to_frame()["agent_id"].tolist()
            chosen = ids[offset : offset + limit]
            items = [listed(self._agent(a).to_dict()) for a in chosen]
            return page("agents", items, offset, offset + limit < len(ids), READ_AGENT)

        def orchestration_find_capable_agents(
            requirements: Annotated[
                list[str],
                Field(
                    description="Capabilities the agent must all have, as a JSON array of strings."
                ),
            ],
            limit: _limit("agents", 500) = 100,
            offset: Offset = 0,
        ) -> dict[str, Any]:
            """Find active agents having every required capability, sorted by id, a page at a
            time.

            Returns {agents: [{id, success_rate, current_load, max_concurrent_tasks,
            capabilities}], count, offset, next_offset}; capabilities are cut to 100 entries
            (`truncated` names what was cut). A page ends early rather than pass 512 KiB;
            next_offset (null on the last page) is the offset of the next page.
            """
            ids = registry.get_agents_by_capability(requirements)
            items = []
            for agent_id in ids[offset : offset + limit]:
                agent = self._agent(agent_id)
                items.append(
                    listed(
                        {
                            "id": agent.id,
                            "success_rate": agent.success_rate,
                            "current_load": agent.current_load,
                            "max_concurrent_tasks": agent.max_concurrent_tasks,
                            "capabilities": agent.capabilities,
                        }
                    )
                )
            return page("agents", items, offset, offset + limit < len(ids), READ_AGENT)

        def orchestration_get_agent_statistics() -> dict[str, Any]:
            """Team-wide figures: total and active agents, agents per capability
            (skill_distribution, the first 1000 capabilities), total load and capacity."""
            return single(registry.get_agent_statistics().to_dict())

        # ---------------------------------------------------------------- routing
        def orchestration_route_task(
            task_id: Annotated[
                str | None,
                Field(description="Route this existing task (give this or requirements)."),
            ] = None,
            requirements: Annotated[
                list[str] | None,
                Field(description="Route a hypothetical task needing these capabilities."),
            ] = None,
            exclude_agents: ExcludeAgents = None,
            limit: _limit("explanation rows (best first)", 500) = 20,
        ) -> dict[str, Any]:
            """Pick the best agent for a task and explain why. Does not assign it (use
            orchestration_assign_task with the chosen agent, or let agents claim). The decision
            is written to the routing log.

            Returns {decision: {selected_agent, candidates, scores, reason, policy,
            propensity (the probability with which the router's policy picked that agent),
            ...}, explanation: one row per agent, best first, with capable, active, load,
            capacity, at_capacity, each score component, score, rank and excluded_reason (and
            under the "thompson" policy the posterior and the draw scored) (the first `limit`
            rows), explanation_total: rows in all}. The decision's lists are cut to 100
            entries (`truncated` names what was cut).
            """
            if (task_id is None) == (requirements is None):
                raise ValidationError(
                    "route_task takes a task_id or requirements, not both or neither"
                )
            task: Task | dict[str, Any] = (
                self._task(task_id) if task_id is not None else {"requirements": requirements}
            )
            decision, explanation = router.decide_explained(task, exclude_agents)
            rows, _ = fit(
                [listed(r) for r in records(explanation.head(limit))], PAGE_BYTES // 2, ""
            )
            return {
                "decision": listed(decision.to_dict()),
                "explanation": rows,
                "explanation_total": len(explanation),
            }

        def orchestration_route_batch(
            task_ids: Annotated[
                list[str],
                Field(
                    max_length=MAX_ROUTE_BATCH,
                    description="Ids of the tasks to route together, as a JSON array (at most "
                    "500).",
                ),
            ],
            exclude_agents: ExcludeAgents = None,
        ) -> dict[str, Any]:
            """Route many tasks at once (at most 500): higher priority first, each agent
            taking no more than its free capacity. Does not assign them. The decisions are
            logged.

            Returns {routes: [{task_id, agent_id (null when none is free), score, reason,
            propensity (the probability of the choice)}], count, policy (the router's)}.
            """
            if isinstance(task_ids, list) and not task_ids:
                return {"routes": [], "count": 0, "policy": router.policy}
            tasks = [self._task(task_id) for task_id in dict.fromkeys(task_ids)]
            routes = records(router.route_batch(tasks, exclude_agents))
            return {"routes": routes, "count": len(routes), "policy": router.policy}

        def orchestration_get_routing_decisions(
            task_id: Annotated[
                str | None, Field(description="Only decisions about this task.")
            ] = None,
            limit: _limit("decisions", 200) = 20,
            offset: Annotated[
                StrictInt,
                Field(
                    ge=0,
                    description="Skip this many of the latest decisions first. For the next "
                    "(older) page, pass the next_offset of the previous answer.",
                ),
            ] = 0,
        ) -> dict[str, Any]:
            """The routing log, newest page first: the `limit` latest decisions after
            skipping `offset` (each page oldest first) with candidates, scores, weights, the
            chosen agent and the reason.

            Returns {decisions, count, offset, next_offset}; next_offset (null when nothing
            older is left) is the offset of the next, older page. A decision's lists are cut
            to 100 entries (`truncated` names what was cut); a page ends early rather than
            pass 512 KiB.
            """
            log = router.decisions()
            if task_id is not None:
                log = log[log["task_id"] == task_id]
            end = max(0, len(log) - offset)
            chosen = log.iloc[max(0, end - limit) : end]
            newest_first = [listed(r) for r in reversed(records(chosen))]
            kept, cut = fit(newest_first, PAGE_BYTES, "ask for fewer")
            more = cut or end - len(kept) > 0
            return {
                "decisions": kept[::-1],
                "count": len(kept),
                "offset": offset,
                "next_offset": offset + len(kept) if more else None,
            }

        return [
            (orchestration_create_task, "Create a task", ADD),
            (orchestration_create_tasks, "Create many tasks", ADD),
            (orchestration_poll_tasks, "List tasks in a state", READ),
            (orchestration_query_tasks, "Find tasks", READ),
            (orchestration_get_task, "Get a task and its history", READ),
            (orchestration_read_task_text, "Read a task's long text", READ),
            (orchestration_get_dependency_status, "Dependency status of a task", READ),
            (orchestration_assign_task, "Assign a task to an agent", ADD),
            (orchestration_claim_task, "Claim the next task", ADD),
            (orchestration_start_task, "Start a task", ADD),
            (orchestration_complete_task, "Complete a task", ADD),
            (orchestration_fail_task, "Fail a task", CHANGE),
            (orchestration_release_task, "Hand a task back", CHANGE),
            (orchestration_cancel_task, "Cancel a task", CHANGE),
            (orchestration_heartbeat, "Renew task leases", UPDATE),
            (orchestration_requeue_stale, "Requeue tasks with expired leases", ADD),
            (orchestration_get_queue_statistics, "Queue statistics", READ),
            (orchestration_register_agent, "Register or re-register an agent", UPDATE),
            (orchestration_learn_new_capability, "Add a capability to an agent", UPDATE),
            (orchestration_set_agent_active, "Pause or resume an agent", UPDATE),
            (orchestration_deregister_agent, "Remove an agent", CHANGE),
            (orchestration_update_agent_performance, "Record outside work of an agent", ADD),
            (orchestration_get_agent_health, "Agent health", READ),
            (orchestration_list_agents, "List agents", READ),
            (orchestration_find_capable_agents, "Find capable agents", READ),
            (orchestration_get_agent_statistics, "Agent statistics", READ),
            (orchestration_route_task, "Route a task (with explanation)", ADD),
            (orchestration_route_batch, "Route many tasks", ADD),
            (orchestration_get_routing_decisions, "Routing decision log", READ),
        ]


TOOL_NAMES = tuple(fn.__name__ for fn, _, _ in OrchestrationHandlers(None, None, None)._tools())  # type: ignore[arg-type]
