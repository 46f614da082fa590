"""Data models of the orchestration layer (the seed's Task, Agent, RoutingDecision)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import Enum
from typing import Any


class TaskStatus(str, Enum):
    """Task lifecycle states: the seed's six plus ``cancelled``."""

    PENDING = "pending"  # created, waiting for assignment
    ASSIGNED = "assigned"  # handed to an agent, not started yet
    RUNNING = "running"  # the agent is executing it
    COMPLETED = "completed"  # finished successfully (final)
    FAILED = "failed"  # failed with no retry left (final)
    BLOCKED = "blocked"  # a dependency failed or was cancelled (final)
    CANCELLED = "cancelled"  # withdrawn by a caller (final)

    def __str__(self) -> str:
        return self.value

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATES


FINAL_STATES = frozenset(
    {TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED, TaskStatus.CANCELLED}
)
ACTIVE_STATES = frozenset({TaskStatus.ASSIGNED, TaskStatus.RUNNING})
PRIORITIES = ("high", "medium", "low")  # in claim order
PRIORITY_RANK = {p: rank for rank, p in enumerate(PRIORITIES)}  # stored as priority_rank


@dataclass
class Task:
    """One task row of ``episodic_events``; times are aware UTC datetimes."""

    id: str | None = None
    content: str = ""
    task_type: str = ""
    status: TaskStatus = TaskStatus.PENDING
    priority: str = "medium"
    requirements: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    assigned_to: str | None = None
    created_at: datetime | None = None
    assigned_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    result: str | None = None
    error: str | None = None
    retry_count: int = 0
    execution_duration_ms: int | None = None
    max_retries: int = 3
    retry_until: datetime | None = None
    lease_until: datetime | None = None
    estimated_duration_ms: int | None = None
    result_task_id: int | None = None
    blocked_by: str | None = None
    task_batch_id: str | None = None
    idempotency_key: str | None = None
    success: bool | None = None
    attempt: int = 0  # number of the current hand-out (assign or claim); 0 before the first
    name: str | None = None  # human-readable; a batch record's ``key`` when none is given

    def _repr_html_(self) -> str:
        from .display import task_html
        return task_html(self)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: status as its string, times as ISO 8601."""
        out = asdict(self)
        out["status"] = self.status.value
        for key, value in out.items():
            if isinstance(value, datetime):
                out[key] = value.isoformat()
        return out


#: The fields of a record given to ``create_task(s)``.
RECORD_FIELDS = (
    "content", "task_type", "priority", "requirements", "dependencies", "max_retries",
    "estimated_duration_ms", "idempotency_key", "key", "batch_id", "name",
)


@dataclass
class TaskBatch:
    """Validated tasks to create (``task_records.batch_from``), field by field: one list
    per field, in record order. ``dependencies`` are as the caller named them (batch keys
    or task ids) until resolved to ids; ``task_id`` is filled when the batch is created;
    ``name`` is a record's ``key`` when it has none. Lists may be shared between records:
    nothing changes them in place."""

    content: list[str]
    task_type: list[str]
    priority: list[str]
    requirements: list[list[str]]
    dependencies: list[list[str]]
    max_retries: list[int]
    estimated_duration_ms: list[int | None]
    idempotency_key: list[str | None]
    key: list[str | None]
    batch_id: list[str | None]
    name: list[str | None]
    task_id: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.content)


@dataclass
class TaskEvent:
    """One change of a task as subscribers receive it (``orch.events``): ``event_type`` is
    ``task_<what happened>`` (created, assigned, started, completed, retried, released,
    failed, blocked, cancelled); ``result`` is the result text of a completion."""

    event_type: str
    task_id: str
    from_status: str | None
    to_status: str
    agent_id: str | None
    detail: str
    at: datetime
    result: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


@dataclass
class Agent:
    """A registered agent with its capabilities and plain performance figures."""

    id: str
    capabilities: list[str] = field(default_factory=list)
    max_concurrent_tasks: int = 5
    success_rate: float = 1.0
    avg_completion_ms: float = 0.0
    current_load: int = 0
    total_completed: int = 0
    total_failed: int = 0
    last_updated: datetime | None = None
    active: bool = True
    metadata: dict[str, Any] = field(default_factory=dict)

    def _repr_html_(self) -> str:
        from .display import agent_html
        return agent_html(self)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if self.last_updated is not None:
            out["last_updated"] = self.last_updated.isoformat()
        return out


@dataclass
class RoutingDecision:
    """Result of routing one task: the chosen agent (or None) and why."""

    selected_agent: str | None
    candidates: list[str] = field(default_factory=list)
    scores: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    task_id: str | None = None
    requirements: list[str] = field(default_factory=list)
    weights: dict[str, float] = field(default_factory=dict)
    #: the router's policy, and the probability with which it picked ``selected_agent``
    #: (1.0 for "weighted"; a Monte Carlo estimate for "thompson"; None without an agent)
    policy: str = "weighted"
    propensity: float | None = None

    def _repr_html_(self) -> str:
        from .display import decision_html
        return decision_html(self)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class QueueStatistics:
    """Counts of tasks by state; ``success_rate`` is 1.0 while nothing has finished."""

    pending_count: int = 0
    assigned_count: int = 0
    running_count: int = 0
    completed_count: int = 0
    failed_count: int = 0
    blocked_count: int = 0
    cancelled_count: int = 0

    @property
    def total_count(self) -> int:
        return sum(self.by_status().values())

    @property
    def success_rate(self) -> float:
        finished = self.completed_count + self.failed_count
        return self.completed_count / finished if finished else 1.0

    def by_status(self) -> dict[str, int]:
        return {s.value: getattr(self, f"{s.value}_count") for s in TaskStatus}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {f"{k}_count": v for k, v in self.by_status().items()}
        out["total_count"] = self.total_count
        out["success_rate"] = self.success_rate
        return out


@dataclass
class AgentStatistics:
    """Team-wide figures: how many agents, and how many have each capability."""

    total_agents: int = 0
    active_agents: int = 0
    skill_distribution: dict[str, int] = field(default_factory=dict)
    total_load: int = 0
    total_capacity: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
