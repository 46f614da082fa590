"""Task rows and task events in ``episodic_events`` (plus the dependency edge table).

The store takes domain values (a ``TaskBatch``, moves, results) and returns ``Task``
objects; how a task is laid out in a row is the codec's (:mod:`.task_rows`).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from ..models import Task, TaskBatch, TaskStatus
from .base import SQLDatabase
from .graph import HAS_CAPABILITY, entity_id
from .meta import FIGURE_CAP, outcome_figures
from .task_rows import (
    DB_UTC,
    arrow_frame,
    creation_rows,
    epoch_ms,
    json_lists,
    row_to_task,
    tasks_from_columns,
    tasks_from_rows,
    transition_contents,
)

#: The columns ``tasks_insert_rows`` binds as lists.
_ROW_COLUMNS = ("content", "outcome", "task_id", "task_type", "task_status", "context_phase",
                "requirements", "dependencies", "priority", "estimated_duration_ms",
                "task_batch_id", "priority_rank", "waiting_on", "max_retries", "blocked_by",
                "error_message", "idempotency_key", "name")


class EpisodicStore:
    """Episodic memory as the task queue uses it: task rows, their events and edges."""

    def __init__(self, db: SQLDatabase):
        self.db = db

    def _tasks(self, query: str, *, by_column: bool = False, **params: Any) -> list[Task]:
        """The task rows a named query returns, as Tasks (read by position: faster than
        a dict per row). ``by_column``: the query's columns have distinct names and its
        times are integers (``epoch_us``), so DuckDB may hand out numpy columns (a third
        faster than row tuples)."""
        with self.db.reading():  # holds the session from the statement to the fetch
            cursor = self.db.execute(query, **params)
            columns = [d[0] for d in cursor.description]
            fetchnumpy = getattr(cursor, "fetchnumpy", None)
            if not by_column or fetchnumpy is None:
                return tasks_from_rows(columns, cursor.fetchall())
            arrays = fetchnumpy()
        return tasks_from_columns(columns, [arrays[c].tolist() for c in columns])

    # ------------------------------------------------------------------ writes
    def insert_tasks(self, batch: TaskBatch, fresh: list[int], roots: dict[int, str],
                     completed: set[str], now: datetime) -> list[tuple[str, str]]:
        """Create records ``fresh`` of ``batch`` (ids and dependencies resolved; ``roots``:
        record -> the task blocking it from birth; ``completed``: dependencies already
        completed): their rows, each the event of its own creation, and their dependency
        edges. Returns each new task's (id, status), and bumps the 'dag' counter when
        edges were added."""
        tasks, edges = creation_rows(batch, fresh, roots, completed, now)
        if edges.empty:  # one statement: no transaction needed
            self._insert_task_rows(tasks, now)
        else:
            with self.db.transaction():
                self._insert_task_rows(tasks, now)
                self.db.insert_frame("dependencies_insert", edges)
                self.db.bump_version("dag")
        return list(zip(tasks["task_id"], tasks["task_status"]))

    def _insert_task_rows(self, tasks: pd.DataFrame, now: datetime) -> None:
        """A few rows bound as lists (cheaper than a frame scan), many as a frame."""
        if len(tasks) >= 1000:
            self.db.insert_frame("tasks_insert", tasks)
            return
        nothing = [None] * len(tasks)
        self.db.execute("tasks_insert_rows", now=now, **{
            name: nothing if name not in tasks else
            [None if pd.isna(x) else x for x in tasks[name].tolist()]
            for name in _ROW_COLUMNS})

    def record_moves(self, moves: list[tuple], now: datetime) -> None:
        """Transition events of moves, in one statement: each move is (task_ids, from, to,
        agent_id, detail), the same step of many tasks; a task's moves in the order given.
        Many at once go in as a frame: binding three 10,000-item lists as parameters costs
        DuckDB more than the insert (30 ms against 19 ms)."""
        task_ids, statuses, contents = transition_contents(moves)
        if not task_ids:
            return
        if len(task_ids) < 1000:
            self.db.execute("transitions_insert", task_ids=task_ids, statuses=statuses,
                            contents=contents, now=now)
            return
        self.db.insert_frame("transitions_insert_frame", pd.DataFrame({
            "timestamp": pd.Timestamp(now), "event_type": "task_transition",
            "content": contents, "outcome": statuses, "context_task": task_ids,
            "context_phase": statuses}))

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
              lease_until: datetime, task_types: list[str] | None = None) -> list[Task] | None:
        """Give the agent up to ``limit`` of the best ready tasks it can do (of
        ``task_types`` only, if given), within its free capacity, in queue order, with
        their history: a pick and a write (PostgreSQL: after locking the agent's row, so
        its claims queue up and each counts the load the previous left). None if it is
        inactive or at capacity; None if it is not registered."""
        agent_key = entity_id("agent", agent_id)
        if not self.db.one_writer and not self.db.fetch_rows("agent_capacity",
                                                              agent_key=agent_key):
            return None
        tasks = self._tasks("tasks_claim_pick", by_column=True, agent_id=agent_id, limit=limit,
                            agent_key=agent_key, relation_type=HAS_CAPABILITY,
                            capability_prefix=entity_id("capability", ""), now=now,
                            task_types=task_types)
        if not tasks:
            registered = not self.db.one_writer or self.db.fetch_rows("agent_capacity",
                                                                      agent_key=agent_key)
            return [] if registered else None
        self.db.execute("tasks_claim_mark", task_ids=[t.id for t in tasks], agent_id=agent_id,
                        status=status.value, now=now, lease_until=lease_until)
        now, lease_until = now.astimezone(DB_UTC), lease_until.astimezone(DB_UTC)
        for task in tasks:  # as tasks_claim_mark wrote them
            task.status, task.assigned_to, task.assigned_at = status, agent_id, now
            task.started_at = now if status is TaskStatus.RUNNING else None
            task.lease_until, task.attempt = lease_until, task.attempt + 1
        return tasks

    def start(self, task_id: str, now: datetime, lease_until: datetime, *,
              agent_id: str | None = None, attempt: int | None = None) -> Task | None:
        """assigned -> running with its history, in one statement, if the named attempt
        (None: any) is the current one."""
        return self._transition("task_start", task_id=task_id, now=now, lease_until=lease_until,
                                agent_id=agent_id, attempt=attempt)

    def release(self, task: Task, reason: str, now: datetime) -> Task | None:
        """Back to pending without using a retry, with its history, in one statement, if
        the attempt of ``task`` (as read in this call) is still current."""
        _, _, contents = transition_contents(
            [([task.id], task.status, TaskStatus.PENDING, task.assigned_to, reason)])
        return self._transition("task_release", task_id=task.id, attempt=task.attempt,
                                content=contents[0], now=now)

    def lock_tasks(self, task_ids: list[str]) -> dict[str, Task]:
        """The tasks of ``task_ids`` that exist, by id, read to be changed in this
        transaction."""
        return {t.id: t for t in self._tasks("tasks_lock", by_column=True, task_ids=task_ids)}

    def complete(self, tasks: list[Task], results: list[str], durations: list[int | None],
                 now: datetime) -> list[Task]:
        """Complete these running tasks (read with :meth:`lock_tasks`) in one statement:
        each result becomes an event linked from its task (a duration of None is the time
        since the start), with their history, their dependents' counts and their agents'
        figures. Returns them as written."""
        since = {t.started_at: epoch_ms(now) - epoch_ms(t.started_at)
                 for t in {t.started_at: t for t in tasks if t.started_at is not None}.values()}
        durations = [d if d is not None or t.started_at is None else since[t.started_at]
                     for t, d in zip(tasks, durations)]
        for task, duration in zip(tasks, durations):
            task.execution_duration_ms = duration
        figures = outcome_figures([(t.assigned_to, t) for t in tasks if t.assigned_to],
                                  success=True)
        self.db.execute("tasks_complete", task_ids=[t.id for t in tasks], results=results,
                        durations=durations, assignees=[t.assigned_to for t in tasks],
                        agent_ids=figures.agents, agent_completed=figures.agent_counts,
                        agent_ms=figures.agent_ms, skill_agents=figures.skill_agents,
                        skill_kinds=figures.skill_kinds, skills=figures.skills,
                        skill_completed=figures.skill_counts, skill_ms=figures.skill_ms,
                        now=now, cap=FIGURE_CAP)
        ids = dict(self.db.fetch_rows("result_event_ids", task_ids=[t.id for t in tasks]))
        now = now.astimezone(DB_UTC)
        for task, result in zip(tasks, results):  # as written
            task.status, task.completed_at, task.success = TaskStatus.COMPLETED, now, True
            task.result_task_id, task.lease_until, task.result = ids[task.id], None, result
        return tasks

    def fail_step(self, retried: list[Task], retry_errors: list[str],
                  retry_untils: list[datetime], failed: list[Task], fail_errors: list[str],
                  moves: list[tuple], now: datetime) -> None:
        """One failure step of active tasks (read in this transaction), in one statement:
        ``retried`` back to pending with one retry used, each with its error and
        back-off; ``failed`` failed for good with their errors; with the history of
        ``moves`` (as :meth:`record_moves` takes them). Changes the Tasks as written."""
        task_ids, statuses, contents = transition_contents(moves)
        if not task_ids:
            return
        self.db.execute(
            "tasks_fail_step", task_ids=task_ids, statuses=statuses, contents=contents,
            retry_ids=[t.id for t in retried], retry_attempts=[t.attempt for t in retried],
            retry_untils=retry_untils, retry_errors=retry_errors,
            fail_ids=[t.id for t in failed], fail_attempts=[t.attempt for t in failed],
            fail_errors=fail_errors, now=now)
        for task, error, until in zip(retried, retry_errors, retry_untils):
            task.status, task.error, task.retry_count = (
                TaskStatus.PENDING, error, task.retry_count + 1)
            task.retry_until = until.astimezone(DB_UTC)
            task.assigned_to = task.assigned_at = task.started_at = task.lease_until = None
        now = now.astimezone(DB_UTC)
        for task, error in zip(failed, fail_errors):
            task.status, task.error, task.success = TaskStatus.FAILED, error, False
            task.completed_at, task.lease_until = now, None

    def cancel(self, task_id: str, reason: str, now: datetime) -> Task | None:
        return self._transition("task_cancel", task_id=task_id, reason=reason, now=now)

    def block(self, task_ids: list[str], roots: list[str], reasons: list[str]) -> list[str]:
        """Block those of ``task_ids`` still pending, each because of its root task (lists
        of equal length); returns the ones it blocked."""
        if not task_ids:
            return []
        rows = self.db.fetch_rows("tasks_block", task_ids=task_ids, roots=roots, reasons=reasons)
        return [r[0] for r in rows]

    def renew_lease(self, task_id: str, lease_until: datetime, *, agent_id: str | None = None,
                    attempt: int | None = None) -> bool:
        return bool(self.db.fetch_rows("task_renew_lease", task_id=task_id,
                                       lease_until=lease_until, agent_id=agent_id,
                                       attempt=attempt))

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
        """Idempotency key -> what the task already made with it was created with
        (task_id, content, task_type, priority, requirements and dependencies as lists,
        max_retries, estimated_duration_ms, name)."""
        if not keys:
            return {}
        self.db.execute("idempotency_keys_lock", keys=keys)  # until this transaction ends
        rows = self.db.fetch_dicts("tasks_by_idempotency_keys", keys=keys)
        for row, requirements, dependencies in zip(
                rows, json_lists([r["requirements"] for r in rows]),
                json_lists([r["dependencies"] for r in rows])):
            row["requirements"], row["dependencies"] = requirements, dependencies
        return {row["idempotency_key"]: row for row in rows}

    def query_tasks(self, *, statuses: list[str] | None = None, agent_id: str | None = None,
                    task_type: str | None = None, priority: str | None = None,
                    created_after: datetime | None = None, limit: int | None = None,
                    offset: int = 0) -> list[Task]:
        return self._tasks("tasks_query", statuses=statuses, agent_id=agent_id,
                           task_type=task_type, priority=priority,
                           created_after=created_after, limit=limit, offset=offset)

    def stale_tasks(self, now: datetime) -> list[Task]:
        """Active tasks whose lease ran out before ``now``, in id order, read to be changed
        in this transaction (PostgreSQL: locked, skipping those another process holds)."""
        return self._tasks("tasks_stale", by_column=True, now=now)

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.fetch_rows("task_status_counts"))

    def dependency_edges(self) -> list[tuple[str, str]]:
        """(dependency, dependent) pairs."""
        return [(a, b) for a, b in self.db.fetch_rows("dependency_edges")]

    def dependency_edge_chunks(self, size: int = 100_000) -> Iterator[list[tuple[str, str]]]:
        """:meth:`dependency_edges`, a chunk at a time (a million pairs as tuples at once
        would cost ~150 MB)."""
        return self._chunks("dependency_edges", size)

    def task_node_chunks(self, size: int = 100_000) -> Iterator[list[tuple]]:
        """(task_id, status, priority, task_type) of every task, in queue order, a chunk at
        a time."""
        return self._chunks("task_nodes", size)

    def _chunks(self, query: str, size: int, **params: Any) -> Iterator[list[tuple]]:
        with self.db.transaction():  # holds the lock until the last chunk is read
            cursor = self.db.execute(query, **params)
            while chunk := cursor.fetchmany(size):
                yield chunk

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
        """Task rows, in queue order, built through Arrow (:func:`task_rows.arrow_frame`:
        text and list columns Arrow-backed, no Python object per value)."""
        frame = arrow_frame(self.db.fetch_arrow("tasks_frame", statuses=statuses,
                                                agent_id=agent_id))
        created = pd.to_datetime(frame["created_at"], utc=True).array.asi8.copy()
        created[created == np.iinfo(np.int64).min] = np.iinfo(np.int64).max  # NULLs last
        order = np.lexsort((frame["id"].to_numpy(), created,
                            frame["priority_rank"].fillna(2**15).to_numpy()))
        frame = frame.drop(columns=["priority_rank", "id"])
        if (order[1:] < order[:-1]).any():  # not in queue order already
            frame = frame.take(order)
        return frame.reset_index(drop=True)

    def transitions_frame(self) -> pd.DataFrame:
        """Every creation and transition, oldest first, through Arrow as ``tasks_frame``."""
        return arrow_frame(self.db.fetch_arrow("transitions_frame"))
