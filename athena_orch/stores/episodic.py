"""Task rows and task events in ``episodic_events`` (plus the dependency edge table)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import pandas as pd

from ..models import Task, TaskStatus
from .database import Database
from .graph import HAS_CAPABILITY, entity_id


def row_to_task(row: dict[str, Any]) -> Task:
    """A ``task_get``/``tasks_query`` row as a :class:`Task`."""
    return Task(
        id=row["task_id"],
        content=row["content"],
        task_type=row["task_type"] or "",
        status=TaskStatus(row["task_status"]),
        priority=row["priority"] or "medium",
        requirements=json.loads(row["requirements"] or "[]"),
        dependencies=json.loads(row["dependencies"] or "[]"),
        assigned_to=row["assigned_to"],
        created_at=row["created_at"],
        assigned_at=row["assigned_at"],
        started_at=row["started_at"],
        completed_at=row["completed_at"],
        result=row.get("result"),
        error=row["error_message"],
        retry_count=row["retry_count"] or 0,
        execution_duration_ms=row["execution_duration_ms"],
        max_retries=row["max_retries"],
        retry_until=row["retry_until"],
        lease_until=row["lease_until"],
        estimated_duration_ms=row["estimated_duration_ms"],
        result_task_id=row["result_task_id"],
        blocked_by=row["blocked_by"],
        task_batch_id=row["task_batch_id"],
        idempotency_key=row["idempotency_key"],
        success=row["success"],
    )


class EpisodicStore:
    """Episodic memory as the task queue uses it: task rows, their events and edges."""

    def __init__(self, db: Database):
        self.db = db

    # ------------------------------------------------------------------ writes
    def insert_tasks(self, tasks: pd.DataFrame, edges: pd.DataFrame) -> None:
        """New task rows and their dependency edges, in one go. A task row is itself the
        episodic event of its creation."""
        with self.db.transaction():
            self.db.insert_frame("tasks_insert", tasks)
            self.db.insert_frame("dependencies_insert", edges)
            if not edges.empty:
                self.db.bump_version("dag")

    def record_transitions(self, task_ids: list[str], statuses: list[str],
                           contents: list[str], now: datetime) -> None:
        """Transition events: each task moved to its status; ``contents`` are JSON details."""
        self.db.execute("transitions_insert", task_ids=task_ids, statuses=statuses,
                        contents=contents, now=now)

    # Transitions: a guarded UPDATE that returns the task as it is now, or None when the
    # task was not in a state the transition starts from.
    def _transition(self, query: str, **params: Any) -> Task | None:
        row = self.db.fetch_one(query, **params)
        return row_to_task(row) if row else None

    def assign(self, task_id: str, agent_id: str, now: datetime,
               lease_until: datetime) -> Task | None:
        return self._transition("task_assign", task_id=task_id, agent_id=agent_id, now=now,
                                lease_until=lease_until)

    def claim(self, agent_id: str, limit: int, status: TaskStatus, now: datetime,
              lease_until: datetime) -> list[Task]:
        """Give the agent up to ``limit`` of the best ready tasks it can do, within its free
        capacity, in queue order; none if it is unregistered or inactive."""
        rows = self.db.fetch_dicts("tasks_claim", agent_id=agent_id, limit=limit,
                                   status=status.value, agent_key=entity_id("agent", agent_id),
                                   relation_type=HAS_CAPABILITY,
                                   capability_prefix=entity_id("capability", ""),
                                   now=now, lease_until=lease_until)
        rows.sort(key=lambda r: (r["priority_rank"], r["created_at"], r["id"]))
        return [row_to_task(r) for r in rows]

    def start(self, task_id: str, now: datetime, lease_until: datetime) -> Task | None:
        return self._transition("task_start", task_id=task_id, now=now, lease_until=lease_until)

    def complete(self, task_ids: list[str], results: list[str], durations: list[int | None],
                 now: datetime) -> list[Task]:
        """Complete those of the tasks that are running; each result becomes an event
        linked from its task."""
        events = self.db.fetch_rows("results_insert", task_ids=task_ids, results=results, now=now)
        event_ids = dict(events)
        rows = self.db.fetch_dicts("tasks_complete", task_ids=task_ids, durations=durations,
                                   event_ids=[event_ids[t] for t in task_ids], now=now)
        return [row_to_task(r) for r in rows]

    def retry(self, task_id: str, error: str, retry_until: datetime) -> Task | None:
        return self._transition("task_retry", task_id=task_id, error=error,
                                retry_until=retry_until)

    def fail(self, task_id: str, error: str, now: datetime) -> Task | None:
        return self._transition("task_fail", task_id=task_id, error=error, now=now)

    def cancel(self, task_id: str, reason: str, now: datetime) -> Task | None:
        return self._transition("task_cancel", task_id=task_id, reason=reason, now=now)

    def block(self, task_ids: list[str], root: str, reason: str) -> list[str]:
        """Block those of ``task_ids`` still pending; returns the ones it blocked."""
        if not task_ids:
            return []
        rows = self.db.fetch_rows("tasks_block", task_ids=task_ids, root=root, reason=reason)
        return [r[0] for r in rows]

    def release_dependents(self, task_ids: list[str]) -> None:
        """Count the newly completed ``task_ids`` for every task waiting on them."""
        self.db.execute("dependents_release", task_ids=task_ids)

    def renew_lease(self, task_id: str, lease_until: datetime) -> bool:
        return bool(self.db.fetch_rows("task_renew_lease", task_id=task_id,
                                       lease_until=lease_until))

    def renew_agent_leases(self, agent_id: str, lease_until: datetime) -> list[str]:
        rows = self.db.fetch_rows("agent_renew_leases", agent_id=agent_id,
                                  lease_until=lease_until)
        return sorted(r[0] for r in rows)

    # ------------------------------------------------------------------ reads
    def get_task(self, task_id: str) -> Task | None:
        row = self.db.fetch_one("task_get", task_id=task_id)
        return row_to_task(row) if row else None

    def task_states(self, task_ids: list[str]) -> dict[str, tuple[TaskStatus, str | None]]:
        """Status and blocking root of each of ``task_ids`` that exists."""
        if not task_ids:
            return {}
        rows = self.db.fetch_rows("task_states", task_ids=task_ids)
        return {tid: (TaskStatus(status), root) for tid, status, root in rows}

    def find_by_idempotency_keys(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Idempotency key -> (task_id, content, task_type) of tasks already made with it."""
        if not keys:
            return {}
        rows = self.db.fetch_dicts("tasks_by_idempotency_keys", keys=keys)
        return {row["idempotency_key"]: row for row in rows}

    def query_tasks(self, *, statuses: list[str] | None = None, agent_id: str | None = None,
                    task_type: str | None = None, priority: str | None = None,
                    created_after: datetime | None = None, limit: int | None = None) -> list[Task]:
        rows = self.db.fetch_dicts("tasks_query", statuses=statuses, agent_id=agent_id,
                                   task_type=task_type, priority=priority,
                                   created_after=created_after, limit=limit)
        return [row_to_task(r) for r in rows]

    def stale_tasks(self, now: datetime) -> list[str]:
        return [r[0] for r in self.db.fetch_rows("tasks_stale", now=now)]

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.fetch_rows("task_status_counts"))

    def dependency_edges(self) -> list[tuple[str, str]]:
        """(dependency, dependent) pairs."""
        return [(a, b) for a, b in self.db.fetch_rows("dependency_edges")]

    def dependents_of(self, task_id: str) -> list[str]:
        return [r[0] for r in self.db.fetch_rows("dependents_of", task_id=task_id)]

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's transitions, oldest first."""
        out = []
        for row in self.db.fetch_dicts("task_history", task_id=task_id):
            out.append({"event_id": row["event_id"], "at": row["at"], **json.loads(row["content"])})
        return out

    def tasks_frame(self, statuses: list[str] | None = None,
                    agent_id: str | None = None) -> pd.DataFrame:
        return self.db.fetch_frame("tasks_frame", statuses=statuses, agent_id=agent_id)

    def transitions_frame(self) -> pd.DataFrame:
        frame = self.db.fetch_frame("transitions_frame")
        details = pd.json_normalize([json.loads(c) for c in frame.pop("content")])
        return pd.concat([frame, details], axis=1)
