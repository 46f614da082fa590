"""The task tools: create tasks, find and read them, and take them through their lives
(assign or claim, start, complete, fail, release, cancel, heartbeat, requeue).

Each tool is a function of what it works on (an :class:`Orchestration`) and its typed
arguments; its docstring is the description clients read. ``tools.TOOLS`` registers them.
"""

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictInt

from ..exceptions import TaskNotFoundError, shown
from .answers import (
    LISTED_IDS,
    PAGE_BYTES,
    READ_TASK,
    TEXT_PIECE_BYTES,
    fit,
    fit_text,
    json_size,
    listed,
    listed_task,
    page,
    single,
    task_dict,
)
from .arguments import (
    MAX_BATCH,
    AgentId,
    Attempt,
    ClaimWait,
    Content,
    Dependencies,
    EstimatedMs,
    FenceAgent,
    IdempotencyKey,
    MaxRetries,
    Offset,
    Priority,
    PriorityName,
    Requirements,
    StatusName,
    TaskId,
    TaskName,
    TaskSpec,
    TaskType,
    TextField,
    limit_arg,
    offset_arg,
)
from .lookups import Orchestration, known_task


def orchestration_create_task(
    orch: Orchestration,
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
    task_id, created = orch.queue.add_task(
        content=content,
        task_type=task_type,
        priority=priority,
        requirements=requirements,
        dependencies=dependencies,
        max_retries=max_retries,
        estimated_duration_ms=estimated_duration_ms,
        idempotency_key=idempotency_key,
        name=name,
    )
    task = known_task(orch, task_id)
    return {
        "task_id": task_id,
        "status": task.status.value,
        "created": created,
        "task": task_dict(task),
    }

def orchestration_create_tasks(
    orch: Orchestration,
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
    ids = orch.queue.create_tasks(batch)
    keys = {spec.key: tid for spec, tid in zip(tasks, ids) if spec.key is not None}
    return {"task_ids": ids, "keys": keys, "count": len(ids)}

def orchestration_poll_tasks(
    orch: Orchestration,
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
    limit: limit_arg("tasks", 200) = 10,
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
    return _tasks_page(orch, filters, limit, offset)

def orchestration_query_tasks(
    orch: Orchestration,
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
    limit: limit_arg("tasks", 200) = 50,
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
    return _tasks_page(orch, given, limit, offset)

def orchestration_get_task(
    orch: Orchestration,
    task_id: TaskId,
    include_history: Annotated[
        StrictBool,
        Field(description="Also return the task's state changes, oldest first."),
    ] = True,
    history_limit: limit_arg("state changes", 500) = 100,
    history_offset: offset_arg("Skip this many state changes first (for more, pass the "
                               "previous answer's history_next_offset).") = 0,
) -> dict[str, Any]:
    """Get one task as it is now (status, assignee, result, error, retries, lease,
    attempt) and its history.

    Returns {task, history, history_next_offset}. content, result and error come
    whole up to 128 KiB each; a longer one is cut and named in task.truncated: read it
    whole with orchestration_read_task_text. history_next_offset is null when no
    state change is left.
    """
    task = known_task(orch, task_id)
    answer: dict[str, Any] = {"task": task_dict(task)}
    if not include_history:
        return {**answer, "history": [], "history_next_offset": None}
    steps = orch.queue.get_task_history(task.id)
    chosen = [listed(h) for h in steps[history_offset : history_offset + history_limit]]
    kept, cut = fit(chosen, PAGE_BYTES - json_size(answer), "ask for fewer")
    end = history_offset + len(kept)
    return {
        **answer,
        "history": kept,
        "history_next_offset": end if cut or end < len(steps) else None,
    }

def orchestration_read_task_text(
    orch: Orchestration,
    task_id: TaskId,
    field: Annotated[
        TextField, Field(description="Which text: 'content', 'result' or 'error'.")
    ],
    offset: offset_arg("Start at this character (for the next piece, pass the "
                       "previous answer's next_offset).") = 0,
) -> dict[str, Any]:
    """Read a task's content, result or error whole, a piece of up to 256 KiB at a
    time (other tools cut long texts).

    Returns {task_id, field, offset, text, total_chars, next_offset}; next_offset is
    null once the text is read to its end. A field the task does not have yet reads as
    text null.
    """
    value = getattr(known_task(orch, task_id), field)
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

def orchestration_get_dependency_status(orch: Orchestration, task_id: TaskId) -> dict[str, Any]:
    """Where a task stands with its dependencies: ready or not, each dependency's
    state, what it still waits on, what blocked it, and which tasks wait on it
    (each list cut to 1000, named in `truncated`)."""
    status = orch.queue.get_dependency_status(task_id)
    if status is None:
        raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
    return single(status)

def orchestration_assign_task(orch: Orchestration, task_id: TaskId, agent_id: AgentId) -> dict[str, Any]:
    """Assign a pending task whose dependencies are completed to an agent, overriding
    the router (capacity and capabilities are not checked). pending -> assigned.
    Returns {task}."""
    return {"task": task_dict(orch.queue.assign_task(task_id, agent_id))}

def orchestration_claim_task(orch: Orchestration, agent_id: AgentId, wait: ClaimWait = 0) -> dict[str, Any]:
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
    task = orch.queue.claim_task(agent_id)
    if task is not None:
        return {"claimed": True, "task": task_dict(task), "reason": "claimed"}
    agent = orch.registry.get_agent(agent_id)
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
    orch: Orchestration,
    task_id: TaskId, agent_id: FenceAgent = None, attempt: Attempt = None
) -> dict[str, Any]:
    """Start an assigned task (assigned -> running); renews its lease. Pass your
    agent_id and the attempt from the claim. Returns {task}."""
    return {
        "task": task_dict(orch.queue.start_task(task_id, agent_id=agent_id, attempt=attempt))
    }

def orchestration_complete_task(
    orch: Orchestration,
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
    done = orch.queue.complete_task(task_id, result, metrics, agent_id=agent_id, attempt=attempt)
    return {"task": task_dict(done)}

def orchestration_fail_task(
    orch: Orchestration,
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
    failed = orch.queue.fail_task(
        task_id, error, should_retry, agent_id=agent_id, attempt=attempt
    )
    return {"task": task_dict(failed)}

def orchestration_release_task(
    orch: Orchestration,
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
    released = orch.queue.release_task(task_id, agent_id=agent_id, attempt=attempt,
                                  reason=reason)
    return {"task": task_dict(released)}

def orchestration_cancel_task(
    orch: Orchestration,
    task_id: TaskId,
    reason: Annotated[
        str | None, Field(description="Why it is cancelled (stored on the task).")
    ] = None,
) -> dict[str, Any]:
    """Cancel a pending, assigned, running or blocked task; every task that depends on
    it is blocked. Returns {task}."""
    return {"task": task_dict(orch.queue.cancel_task(task_id, reason))}

def orchestration_heartbeat(
    orch: Orchestration,
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
    renewed = orch.queue.heartbeat(task_id, agent_id=agent_id, attempt=attempt)
    return {"renewed": renewed[:LISTED_IDS], "count": len(renewed)}

def orchestration_requeue_stale(orch: Orchestration) -> dict[str, Any]:
    """Retry (or fail, with no retry left) every assigned/running task whose lease ran
    out. The server also does this by itself every 30 s. Returns {requeued, count}:
    count tasks, the first 1000 of them named."""
    stale = orch.queue.requeue_stale()
    return {"requeued": stale[:LISTED_IDS], "count": len(stale)}

def orchestration_get_queue_statistics(orch: Orchestration) -> dict[str, Any]:
    """Number of tasks in each state, the total and the success rate
    (completed / (completed + failed); 1.0 while nothing has finished)."""
    return orch.queue.get_queue_statistics().to_dict()


def _tasks_page(orch: Orchestration, filters: dict[str, Any], limit: int,
                offset: int) -> dict[str, Any]:
    """A page of ``queue.query_tasks(filters)`` (one task more, to tell whether another page
    follows)."""
    found = orch.queue.query_tasks({**filters, "limit": limit + 1, "offset": offset})
    items = [listed_task(t) for t in found[:limit]]
    return page("tasks", items, offset, len(found) > limit, READ_TASK)
