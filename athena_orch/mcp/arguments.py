"""The tools' argument types: each an annotated type with the description a client reads
in the tool's JSON schema, and the bounds the SDK checks before a tool runs.

NB: no ``from __future__ import annotations``: the SDK reads the tools' annotations at
registration, and these aliases must be real objects, not strings.
"""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

MAX_BATCH = 1_000  # tasks per orchestration_create_tasks
MAX_ROUTE_BATCH = 500  # tasks per orchestration_route_batch
MAX_CLAIM_WAIT = 60.0  # seconds an orchestration_claim_task may long-poll

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


def limit_arg(what: str, most: int) -> Any:
    """A `limit` argument: at most ``most`` ``what``."""
    return Annotated[
        StrictInt, Field(ge=0, le=most, description=f"Return at most this many {what} (<= {most}).")
    ]


def offset_arg(description: str) -> Any:
    """An offset argument (a whole number from 0) described as given."""
    return Annotated[StrictInt, Field(ge=0, description=description)]


Offset = offset_arg("Skip this many first. For the next page, pass the next_offset of the "
                    "previous answer.")


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
