"""Orchestration MCP tools (the seed's ``handlers_orchestration.py``).

``OrchestrationHandlers(task_queue, registry, router).register_tools(server)`` adds one
``orchestration_*`` tool per public operation of the queue, the registry and the router to
an ``mcp`` ``MCPServer``. Every tool:

- takes typed arguments, each with a description (they become the tool's JSON schema);
- returns a JSON object (``Task.to_dict()``, ``Agent.to_dict()``, ``RoutingDecision.to_dict()``,
  ``QueueStatistics.to_dict()``, DataFrames as lists of records), never a Python repr;
- turns the library's ``OrchestrationError`` into a tool error (``isError``) whose text is
  the library's message prefixed with the error class; nothing is written in that case;
- runs in a worker thread (the SDK runs sync tools off the event loop) under one lock per
  handlers object, so each tool call sees and leaves the data consistent even when many
  clients call at once.

Reads of an unknown id are tool errors here (the library answers ``None``), because an
agent that names a task or agent that does not exist has made a mistake it should see.
"""

import functools
import inspect
import json
import math
import threading
from collections.abc import Callable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from typing import Annotated, Any, Literal

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
    TaskNotFoundError,
    ValidationError,
    shown,
)
from ..models import Task
from ..task_queue import TaskQueue

# NB: no ``from __future__ import annotations``: the SDK reads these annotations at
# registration, and the aliases below must be real objects, not strings.

# --------------------------------------------------------------------------- argument types
PriorityName = Literal["high", "medium", "low"]
StatusName = Literal[
    "pending", "assigned", "running", "completed", "failed", "blocked", "cancelled"
]

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
        "task's id instead of a duplicate (safe retries)."
    ),
]
Limit = Annotated[StrictInt, Field(ge=0, description="Return at most this many tasks.")]
OptionalLimit = Annotated[
    StrictInt | None, Field(ge=0, description="Return at most this many; omit for all.")
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
ExcludeAgents = Annotated[
    list[str] | None, Field(description="Agent ids not to consider, as a JSON array of strings.")
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
            "can name it in their dependencies before it has an id."
        ),
    ] = None


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


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of JSON records (one per row)."""
    return [jsonable(row) for row in frame.to_dict("records")]


def task_dict(task: Task) -> dict[str, Any]:
    return jsonable(task.to_dict())


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


class OrchestrationHandlers:
    """MCP handlers for orchestration operations (constructed as in the seed)."""

    def __init__(self, task_queue: TaskQueue, registry: AgentRegistry, router: CapabilityRouter):
        self.queue = task_queue
        self.registry = registry
        self.router = router
        # Tools run in worker threads; one lock makes every tool call atomic with respect
        # to the others (the database lock alone serialises statements, not whole calls).
        self.lock = threading.RLock()

    # ------------------------------------------------------------------ plumbing
    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        """Run a library call under the handlers' lock; OrchestrationError -> ToolError."""
        with self.lock:
            try:
                return fn(*args, **kwargs)
            except OrchestrationError as exc:
                raise ToolError(f"{type(exc).__name__}: {exc}") from None

    def _guarded(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)  # keeps the signature the SDK reads
        def tool(**kwargs: Any) -> CallToolResult:
            result = jsonable(self.call(fn, **kwargs))
            text = json.dumps(result, ensure_ascii=False, allow_nan=False)
            return CallToolResult(
                content=[TextContent(type="text", text=text)], structured_content=result
            )

        return tool

    def requeue_stale(self) -> list[str]:
        """``queue.requeue_stale()`` under the handlers' lock (for the server's timer)."""
        with self.lock:
            return self.queue.requeue_stale()

    def _task(self, task_id: str) -> Task:
        task = self.queue.get_task_status(task_id)
        if task is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        return task

    def _agent_known(self, agent_id: str) -> None:
        if self.registry.get_agent(agent_id) is None:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")

    # ------------------------------------------------------------------ registration
    def register_tools(self, server: Any) -> list[str]:
        """Register every orchestration tool with an ``MCPServer``; returns their names."""
        names = []
        for fn, title, annotations in self._tools():
            server.add_tool(
                self._guarded(fn),
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
        ) -> dict[str, Any]:
            """Create a new task in the queue.

            Returns {task_id, status, created, task}; created is false when idempotency_key
            named a task made earlier (its id comes back). The task starts 'pending' (or 'blocked'
            when a dependency already failed or was cancelled); it is ready to be claimed once
            every dependency is completed.
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
                    description="The tasks to create, each an object with create_task's fields "
                    "plus an optional `key` that other tasks of this batch may name in "
                    "their `dependencies`."
                ),
            ],
        ) -> dict[str, Any]:
            """Create many tasks at once, all or nothing (a bad record creates none).

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
            limit: Limit = 10,
        ) -> dict[str, Any]:
            """Poll for tasks in one state (pending by default), in queue order: priority
            high first, then oldest first. Looks only; use orchestration_claim_task to take one.

            Returns {tasks, count}.
            """
            found = queue.poll_tasks(agent_id, status, limit)
            return {"tasks": [task_dict(t) for t in found], "count": len(found)}

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
            limit: OptionalLimit = None,
        ) -> dict[str, Any]:
            """Find tasks matching every given filter, in queue order. Returns {tasks, count}."""
            filters = {
                "status": status,
                "agent_id": agent_id,
                "task_type": task_type,
                "priority": priority,
                "created_after": created_after,
                "limit": limit,
            }
            found = queue.query_tasks({k: v for k, v in filters.items() if v is not None})
            return {"tasks": [task_dict(t) for t in found], "count": len(found)}

        def orchestration_get_task(
            task_id: TaskId,
            include_history: Annotated[
                StrictBool,
                Field(description="Also return every state change of the task, oldest first."),
            ] = True,
        ) -> dict[str, Any]:
            """Get one task as it is now (status, assignee, result, error, retries, lease) and
            its history. Returns {task, history}."""
            task = self._task(task_id)
            history = queue.get_task_history(task.id) if include_history else []
            return {"task": task_dict(task), "history": history}

        def orchestration_get_dependency_status(task_id: TaskId) -> dict[str, Any]:
            """Where a task stands with its dependencies: ready or not, each dependency's
            state, what it still waits on, what blocked it, and which tasks wait on it."""
            status = queue.get_dependency_status(task_id)
            if status is None:
                raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
            return status

        def orchestration_assign_task(task_id: TaskId, agent_id: AgentId) -> dict[str, Any]:
            """Assign a pending task whose dependencies are completed to an agent, overriding
            the router (capacity and capabilities are not checked). pending -> assigned.
            Returns {task}."""
            return {"task": task_dict(queue.assign_task(task_id, agent_id))}

        def orchestration_claim_task(agent_id: AgentId) -> dict[str, Any]:
            """Atomically take the best ready task this agent can do (it must be registered,
            active, below capacity and have every required capability). Two agents never get
            the same task. Then call orchestration_start_task.

            Returns {claimed, task, reason}: task is null (with the reason) when nothing fits.
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

        def orchestration_start_task(task_id: TaskId) -> dict[str, Any]:
            """Start an assigned task (assigned -> running); renews its lease. Returns {task}."""
            return {"task": task_dict(queue.start_task(task_id))}

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
        ) -> dict[str, Any]:
            """Complete a running task with its result (running -> completed); records a
            success for the agent and releases tasks that waited on it. Returns {task}."""
            metrics = None if duration_ms is None else {"duration_ms": duration_ms}
            return {"task": task_dict(queue.complete_task(task_id, result, metrics))}

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
        ) -> dict[str, Any]:
            """Report that an assigned or running task failed. With a retry left it goes back
            to pending after a back-off, else it fails for good and every task that depends on
            it is blocked. Records a failure for the agent. Returns {task}."""
            return {"task": task_dict(queue.fail_task(task_id, error, should_retry))}

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
                Field(description="Renew the lease of this task (give this or agent_id)."),
            ] = None,
            agent_id: Annotated[
                str | None, Field(description="Renew the leases of every task this agent holds.")
            ] = None,
        ) -> dict[str, Any]:
            """Tell the queue you are still working: renews the lease of an assigned/running
            task (or of all an agent's tasks). A task whose lease runs out is retried by
            someone else. Returns {renewed, count}."""
            renewed = queue.heartbeat(task_id, agent_id=agent_id)
            return {"renewed": renewed, "count": len(renewed)}

        def orchestration_requeue_stale() -> dict[str, Any]:
            """Retry (or fail, with no retry left) every assigned/running task whose lease ran
            out. The server also does this by itself every 30 s. Returns {requeued, count}."""
            stale = queue.requeue_stale()
            return {"requeued": stale, "count": len(stale)}

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
            return {"agent_id": agent.id, "registered": True, "agent": agent.to_dict()}

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
            return {
                "agent": registry.learn_new_capability(agent_id, capability, confidence).to_dict()
            }

        def orchestration_set_agent_active(
            agent_id: AgentId,
            active: Annotated[
                StrictBool,
                Field(description="false pauses routing and claims for the agent; true resumes."),
            ],
        ) -> dict[str, Any]:
            """Pause or resume an agent. Its current tasks are not touched. Returns {agent}."""
            return {"agent": registry.set_active(agent_id, active).to_dict()}

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
            return {"health": registry.get_agent_health(agent_id)}

        def orchestration_get_agent_health(agent_id: AgentId) -> dict[str, Any]:
            """An agent's figures: status (active/inactive), success_rate, avg_completion_ms,
            current_load, max_concurrent_tasks, utilization, total_completed, total_failed,
            capabilities."""
            self._agent_known(agent_id)
            return registry.get_agent_health(agent_id)

        def orchestration_list_agents() -> dict[str, Any]:
            """Every registered agent with capabilities, state and figures, sorted by id.
            Returns {agents, count}."""
            agents = [a.to_dict() for a in registry.list_agents()]
            return {"agents": agents, "count": len(agents)}

        def orchestration_find_capable_agents(
            requirements: Annotated[
                list[str],
                Field(
                    description="Capabilities the agent must all have, as a JSON array of strings."
                ),
            ],
        ) -> dict[str, Any]:
            """Find active agents having every required capability, sorted by id.
            Returns {agents: [{id, success_rate, current_load, max_concurrent_tasks,
            capabilities}], count}."""
            found = []
            for agent_id in registry.get_agents_by_capability(requirements):
                agent = registry.get_agent(agent_id)
                found.append(
                    {
                        "id": agent.id,
                        "success_rate": agent.success_rate,
                        "current_load": agent.current_load,
                        "max_concurrent_tasks": agent.max_concurrent_tasks,
                        "capabilities": agent.capabilities,
                    }
                )
            return {"agents": found, "count": len(found)}

        def orchestration_get_agent_statistics() -> dict[str, Any]:
            """Team-wide figures: total and active agents, agents per capability
            (skill_distribution), total load and capacity."""
            return registry.get_agent_statistics().to_dict()

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
        ) -> dict[str, Any]:
            """Pick the best agent for a task and explain why. Does not assign it (use
            orchestration_assign_task with the chosen agent, or let agents claim). The decision
            is written to the routing log.

            Returns {decision: {selected_agent, candidates, scores, reason, ...},
            explanation: one row per agent with capable, active, load, capacity, at_capacity,
            each score component, score, rank and excluded_reason}.
            """
            if (task_id is None) == (requirements is None):
                raise ValidationError(
                    "route_task takes a task_id or requirements, not both or neither"
                )
            task: Task | dict[str, Any] = (
                self._task(task_id) if task_id is not None else {"requirements": requirements}
            )
            decision = router.decide(task, exclude_agents)
            explanation = router.explain(task, exclude_agents)
            return {"decision": decision.to_dict(), "explanation": records(explanation)}

        def orchestration_route_batch(
            task_ids: Annotated[
                list[str],
                Field(description="Ids of the tasks to route together, as a JSON array."),
            ],
            exclude_agents: ExcludeAgents = None,
        ) -> dict[str, Any]:
            """Route many tasks at once: higher priority first, each agent taking no more
            than its free capacity. Does not assign them. The decisions are logged.

            Returns {routes: [{task_id, agent_id (null when none is free), score, reason}],
            count}.
            """
            if isinstance(task_ids, list) and not task_ids:
                return {"routes": [], "count": 0}
            tasks = [self._task(task_id) for task_id in dict.fromkeys(task_ids)]
            routes = records(router.route_batch(tasks, exclude_agents))
            return {"routes": routes, "count": len(routes)}

        def orchestration_get_routing_decisions(
            task_id: Annotated[
                str | None, Field(description="Only decisions about this task.")
            ] = None,
            limit: Annotated[
                StrictInt,
                Field(ge=0, description="Return at most this many of the latest decisions."),
            ] = 20,
        ) -> dict[str, Any]:
            """The routing log: the latest decisions (oldest first) with candidates, scores,
            weights, the chosen agent and the reason. Returns {decisions, count}."""
            log = router.decisions()
            if task_id is not None:
                log = log[log["task_id"] == task_id]
            rows = records(log.tail(limit)) if limit else []
            return {"decisions": rows, "count": len(rows)}

        return [
            (orchestration_create_task, "Create a task", ADD),
            (orchestration_create_tasks, "Create many tasks", ADD),
            (orchestration_poll_tasks, "List tasks in a state", READ),
            (orchestration_query_tasks, "Find tasks", READ),
            (orchestration_get_task, "Get a task and its history", READ),
            (orchestration_get_dependency_status, "Dependency status of a task", READ),
            (orchestration_assign_task, "Assign a task to an agent", ADD),
            (orchestration_claim_task, "Claim the next task", ADD),
            (orchestration_start_task, "Start a task", ADD),
            (orchestration_complete_task, "Complete a task", ADD),
            (orchestration_fail_task, "Fail a task", CHANGE),
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
