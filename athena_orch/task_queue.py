"""The durable task queue: task rows in episodic memory, the lifecycle rules in Python.

Every call runs in one database transaction under the database lock, so a call either
happens whole or not at all, and two workers never get the same task. The dependency
DAG is an in-memory NetworkX index, rebuilt when the database's change counter moves.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import networkx as nx
import pandas as pd

from . import task_records as tr
from . import validation as v
from .exceptions import (
    AgentNotFoundError,
    DependencyError,
    DuplicateTaskError,
    InvalidTransitionError,
    TaskNotFoundError,
    ValidationError,
    shown,
)
from .models import ACTIVE_STATES, QueueStatistics, Task, TaskStatus
from .stores import EpisodicStore, GraphStore, MetaStore

PENDING, ASSIGNED, RUNNING = TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.RUNNING
COMPLETED, FAILED, BLOCKED, CANCELLED = (
    TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED, TaskStatus.CANCELLED)
_BLOCKING = (FAILED, CANCELLED, BLOCKED)
QUERY_FILTERS = ("status", "agent_id", "task_type", "priority", "created_after", "limit")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TaskQueue:
    """Create, hand out and finish tasks; see DESIGN.md for the state table.

    Settings (attributes): ``retry_backoff_seconds`` (first retry delay, doubling per
    retry), ``retry_backoff_max_seconds``, ``lease_seconds``, and ``clock`` (a callable
    returning an aware UTC datetime; tests replace it).
    """

    def __init__(self, episodic_store: EpisodicStore, graph_store: GraphStore,
                 meta_store: MetaStore | None = None, *, retry_backoff_seconds: float = 1.0,
                 retry_backoff_max_seconds: float = 300.0, lease_seconds: float = 300.0,
                 clock: Callable[[], datetime] = _utcnow):
        self.episodic = episodic_store
        self.graph = graph_store
        self.db = episodic_store.db
        self.meta = meta_store or MetaStore(self.db)
        self.retry_backoff_seconds = retry_backoff_seconds
        self.retry_backoff_max_seconds = retry_backoff_max_seconds
        self.lease_seconds = lease_seconds
        self.clock = clock
        self._dag = nx.DiGraph()
        self._dag_version = -1

    # ------------------------------------------------------------------ creating
    def create_task(self, content: str, task_type: str, priority: str = "medium",
                    requirements: list[str] | None = None,
                    dependencies: list[str] | None = None, *, max_retries: int = 3,
                    estimated_duration_ms: int | None = None,
                    idempotency_key: str | None = None) -> str:
        """Create one task and return its id.

        With ``idempotency_key``, creating the same task again returns the first id; the
        same key with other content raises DuplicateTaskError.
        """
        record = tr.make_record({
            "content": content, "task_type": task_type, "priority": priority,
            "requirements": requirements, "dependencies": dependencies,
            "max_retries": max_retries, "estimated_duration_ms": estimated_duration_ms,
            "idempotency_key": idempotency_key})
        return self._create([record])[0]

    def create_tasks(self, records: Iterable[dict[str, Any]] | pd.DataFrame) -> list[str]:
        """Create many tasks at once, all or nothing; ids come back in record order.

        Records use ``create_task``'s keyword names; a record's ``key`` may be named in
        the ``dependencies`` of other records of the same batch.
        """
        return self._create(tr.records_from(records))

    def _create(self, records: list[tr.TaskRecord]) -> list[str]:
        with self.db.transaction():
            reused = self._reuse_idempotent(records)
            ordered, external = tr.resolve_dependencies(records)
            states = self.episodic.task_states(sorted(external | reused))
            unknown = sorted(external - set(states))
            if unknown:
                raise DependencyError(f"dependencies name unknown tasks: {shown(unknown, 200)}")
            fresh = [r for r in ordered if r.task_id not in reused]
            for record in fresh:  # dependencies first, so a batch's own blocks propagate
                status, root = PENDING, None
                for dep in record.dependencies:
                    dep_status, dep_root = states[dep]
                    if dep_status in _BLOCKING:
                        status, root = BLOCKED, dep_root if dep_status is BLOCKED else dep
                        break
                states[record.task_id] = (status, root)
            now = self.clock()
            rows, edges = [], []
            for record in (r for r in records if r.task_id not in reused):  # record order
                status, root = states[record.task_id]
                rows.append(self._task_row(record, status, root, states, now))
                edges += [{"task_id": record.task_id, "depends_on": d} for d in record.dependencies]
            dag_edges = [(e["depends_on"], e["task_id"]) for e in edges]
            version = self.db.version("dag") if dag_edges else None
            self.episodic.insert_tasks(pd.DataFrame(rows), pd.DataFrame(edges))
            if dag_edges and version == self._dag_version:
                self._dag.add_edges_from(dag_edges)
                self._dag_version = version + 1
        return [r.task_id for r in records]

    def _reuse_idempotent(self, records: list[tr.TaskRecord]) -> set[str]:
        """Give records whose idempotency key is already used the existing task's id;
        return those ids. The same key with other content is a DuplicateTaskError."""
        found = self.episodic.find_by_idempotency_keys(
            [r.idempotency_key for r in records if r.idempotency_key is not None])
        reused = set()
        for r in records:
            row = found.get(r.idempotency_key)
            if row is None:
                continue
            if (row["content"], row["task_type"]) != (r.content, r.task_type):
                raise DuplicateTaskError(
                    f"idempotency_key {shown(r.idempotency_key)} already names task {row['task_id']} "
                    "with other content")
            r.task_id = row["task_id"]
            reused.add(r.task_id)
        return reused

    @staticmethod
    def _task_row(record: tr.TaskRecord, status: TaskStatus, root: str | None,
                  states: dict, now: datetime) -> dict[str, Any]:
        waiting = sum(1 for d in record.dependencies if states[d][0] is not COMPLETED)
        return {
            "timestamp": now, "event_type": "task", "content": record.content,
            "outcome": "ongoing" if root is None else "blocked",
            "task_id": record.task_id, "task_type": record.task_type,
            "task_status": status.value, "context_phase": status.value, "requirements": tr.dumps(record.requirements),
            "dependencies": tr.dumps(record.dependencies), "priority": record.priority,
            "retry_count": 0, "estimated_duration_ms": record.estimated_duration_ms,
            "task_batch_id": record.batch_id, "created_at": now,
            "priority_rank": tr.priority_rank(record.priority), "waiting_on": waiting,
            "max_retries": record.max_retries, "blocked_by": root,
            "error_message": None if root is None else f"blocked: dependency {root} did not complete",
            "idempotency_key": record.idempotency_key,
        }

    def _log(self, task_id: str, before: TaskStatus | None, after: TaskStatus,
             agent_id: str | None, now: datetime, detail: str = "") -> None:
        self._log_many([(task_id, before, after, agent_id, detail)], now)

    def _log_many(self, transitions: list[tuple], now: datetime) -> None:
        """Record (task_id, from, to, agent_id, detail) transitions as episodic events."""
        if not transitions:
            return
        self.episodic.record_transitions(
            [t[0] for t in transitions], [t[2].value for t in transitions],
            [json.dumps({"from_status": before and before.value, "to_status": after.value,
                         "agent_id": agent, "detail": detail})
             for _, before, after, agent, detail in transitions], now)

    # ------------------------------------------------------------------ handing out
    def assign_task(self, task_id: str, agent_id: str) -> Task:
        """Give a pending task whose dependencies are completed to ``agent_id``.

        The caller overrides the router: capacity, capabilities and registration are not
        checked, and a retry back-off does not delay it.
        """
        agent_id = v.text("agent_id", agent_id)
        with self.db.transaction():
            task = self._require(task_id, "assign", (PENDING,))
            self._check_dependencies_completed(task)
            now = self.clock()
            task = self._changed(task.id, "assign",
                                 self.episodic.assign(task.id, agent_id, now, self._lease(now)))
            self._log(task.id, PENDING, ASSIGNED, agent_id, now, "assigned")
        return task

    def claim_task(self, agent_id: str) -> Task | None:
        """Atomically hand ``agent_id`` the best ready task it can do, or None.

        None also when the agent is inactive or at capacity; AgentNotFoundError when it is
        not registered.
        """
        tasks = self.claim_tasks(agent_id, 1)
        return tasks[0] if tasks else None

    def claim_tasks(self, agent_id: str, n: int, *, start: bool = False) -> list[Task]:
        """Claim up to ``n`` ready tasks at once (never past the agent's free capacity), in
        queue order; with ``start=True`` they are started too (the bulk worker's path)."""
        agent_id = v.text("agent_id", agent_id)
        n = v.non_negative_int("n", n)
        start = v.boolean("start", start)
        with self.db.transaction():
            now = self.clock()
            tasks = self.episodic.claim(agent_id, n, RUNNING if start else ASSIGNED, now,
                                        self._lease(now)) if n else []
            if not tasks and self.graph.agent_profile(agent_id) is None:
                raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
            steps = [(t.id, PENDING, ASSIGNED, agent_id, "claimed") for t in tasks]
            if start:
                steps += [(t.id, ASSIGNED, RUNNING, agent_id, "started") for t in tasks]
            self._log_many(steps, now)
        return tasks

    def start_task(self, task_id: str) -> Task:
        """assigned -> running; renews the lease."""
        task_id = v.text("task_id", task_id)
        with self.db.transaction():
            now = self.clock()
            task = self._changed(task_id, "start",
                                 self.episodic.start(task_id, now, self._lease(now)))
            self._log(task.id, ASSIGNED, RUNNING, task.assigned_to, now, "started")
        return task

    # ------------------------------------------------------------------ finishing
    def complete_task(self, task_id: str, result: str,
                      metrics: dict[str, Any] | None = None) -> Task:
        """running -> completed; the result becomes its own episodic event.

        ``metrics["duration_ms"]`` is the execution time; without it, the time since start.
        """
        metrics = v.mapping("metrics", metrics)
        return self.complete_tasks([{"task_id": task_id, "result": result,
                                     "duration_ms": metrics.get("duration_ms")}])[0]

    def complete_tasks(self, results: dict[str, str] | Iterable[dict[str, Any]] | pd.DataFrame
                       ) -> list[Task]:
        """Complete many running tasks at once, all or nothing: ``{task_id: result}``, or
        records / DataFrame rows with task_id, result and optional duration_ms."""
        task_ids, texts, durations = tr.completions_from(results)
        if not task_ids:
            return []
        with self.db.transaction():
            now = self.clock()
            tasks = {t.id: t for t in self.episodic.complete(task_ids, texts, durations, now)}
            for task_id in task_ids:
                if task_id not in tasks:
                    self._changed(task_id, "complete", None)  # raises: unknown or not running
            self.episodic.release_dependents(task_ids)
            finished = [t for t in tasks.values() if t.assigned_to is not None]
            if finished:
                self.meta.record_outcomes(
                    [t.assigned_to for t in finished], now, completed=[1] * len(finished),
                    failed=[0] * len(finished),
                    success_ms=[t.execution_duration_ms for t in finished])
            self._log_many([(t.id, RUNNING, COMPLETED, t.assigned_to, "completed")
                            for t in tasks.values()], now)
        ordered = [tasks[tid] for tid in task_ids]
        for task, text in zip(ordered, texts):
            task.result = text
        return ordered

    def fail_task(self, task_id: str, error: str, should_retry: bool = True) -> Task:
        """assigned/running -> pending (a retry, after a back-off) or failed for good.

        A task fails for good when ``should_retry`` is False or no retry is left; then
        every task downstream of it is blocked.
        """
        error = v.string("error", error)
        should_retry = v.boolean("should_retry", should_retry)
        with self.db.transaction():
            task = self._require(task_id, "fail", tuple(ACTIVE_STATES))
            return self._fail(task, error, should_retry, self.clock())

    def _fail(self, task: Task, error: str, should_retry: bool, now: datetime) -> Task:
        if task.assigned_to is not None:
            self.meta.record_outcome(task.assigned_to, now, failed=1)
        if should_retry and task.retry_count < task.max_retries:
            doublings = min(task.retry_count, 64)  # past that the cap has long applied
            delay = min(self.retry_backoff_seconds * 2**doublings, self.retry_backoff_max_seconds)
            retried = self._changed(task.id, "fail", self.episodic.retry(
                task.id, error, now + timedelta(seconds=delay)))
            self._log(task.id, task.status, PENDING, task.assigned_to, now,
                      f"retry {retried.retry_count} of {task.max_retries}: {error}")
            return retried
        failed = self._changed(task.id, "fail", self.episodic.fail(task.id, error, now))
        self._log(task.id, task.status, FAILED, task.assigned_to, now, error)
        self._block_downstream(task.id, "failed", now)
        return failed

    def cancel_task(self, task_id: str, reason: str | None = None) -> Task:
        """pending/assigned/running/blocked -> cancelled; tasks downstream are blocked."""
        reason = "cancelled" if reason is None else v.string("reason", reason)
        with self.db.transaction():
            task = self._require(task_id, "cancel", (PENDING, ASSIGNED, RUNNING, BLOCKED))
            now = self.clock()
            cancelled = self._changed(task.id, "cancel", self.episodic.cancel(task.id, reason, now))
            self._log(task.id, task.status, CANCELLED, task.assigned_to, now, reason)
            self._block_downstream(task.id, "was cancelled", now)
        return cancelled

    def _block_downstream(self, root: str, verb: str, now: datetime) -> list[str]:
        dag = self._current_dag()
        if root not in dag:
            return []
        reason = f"blocked: dependency {root} {verb}"
        blocked = self.episodic.block(sorted(nx.descendants(dag, root)), root, reason)
        self._log_many([(t, PENDING, BLOCKED, None, reason) for t in blocked], now)
        return blocked

    # ------------------------------------------------------------------ leases
    def heartbeat(self, task_id: str | None = None, *, agent_id: str | None = None) -> list[str]:
        """Renew the lease of one task, or of every task an agent holds; returns their ids."""
        if (task_id is None) == (agent_id is None):
            raise ValidationError("heartbeat takes a task_id or an agent_id, not both or neither")
        with self.db.transaction():
            lease_until = self._lease(self.clock())
            if task_id is not None:
                task_id = v.text("task_id", task_id)
                if not self.episodic.renew_lease(task_id, lease_until):
                    self._changed(task_id, "heartbeat", None)
                return [task_id]
            agent_id = v.text("agent_id", agent_id)
            if self.graph.agent_profile(agent_id) is None:
                raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
            return self.episodic.renew_agent_leases(agent_id, lease_until)

    def requeue_stale(self, now: datetime | None = None) -> list[str]:
        """Retry (or fail, when no retry is left) every task whose lease ran out."""
        now = self.clock() if now is None else v.timestamp("now", now)
        with self.db.transaction():
            stale = self.episodic.stale_tasks(now)
            for task_id in stale:
                task = self.episodic.get_task(task_id)
                self._fail(task, f"lease expired (agent {task.assigned_to})", True, now)
        return stale

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    # ------------------------------------------------------------------ reading
    def get_task_status(self, task_id: str) -> Task | None:
        """The task as it is now, or None for an unknown id."""
        return self.episodic.get_task(v.string("task_id", task_id))

    def poll_tasks(self, agent_id: str | None = None, status: str = "pending",
                   limit: int = 10) -> list[Task]:
        """Tasks in ``status`` (all pending ones, ready or not), in queue order."""
        return self.query_tasks({"status": status, "agent_id": agent_id, "limit": limit})

    def query_tasks(self, filters: dict[str, Any] | None = None) -> list[Task]:
        """Tasks matching every filter (status, agent_id, task_type, priority,
        created_after, limit), in queue order."""
        filters = v.mapping("filters", filters)
        v.known_keys("filters", filters, QUERY_FILTERS)
        created_after = filters.get("created_after")
        priority = filters.get("priority")
        return self.episodic.query_tasks(
            statuses=v.statuses(filters.get("status")),
            agent_id=v.optional_text("agent_id", filters.get("agent_id")),
            task_type=v.optional_text("task_type", filters.get("task_type")),
            priority=None if priority is None else v.priority(priority),
            created_after=None if created_after is None else v.timestamp("created_after", created_after),
            limit=v.non_negative_int("limit", filters.get("limit"), allow_none=True),
        )

    def get_task_history(self, task_id: str) -> list[dict[str, Any]]:
        """Every transition of the task, oldest first (from_status, to_status, agent_id,
        detail, at)."""
        task_id = v.string("task_id", task_id)
        return self.episodic.history(task_id)

    def get_dependency_status(self, task_id: str) -> dict[str, Any] | None:
        """Where a task stands with its dependencies: ready?, what it waits on, who waits on it."""
        task = self.get_task_status(task_id)
        if task is None:
            return None
        states = self.episodic.task_states(task.dependencies)
        waiting = [d for d in task.dependencies if states[d][0] is not COMPLETED]
        return {
            "task_id": task.id, "status": task.status.value,
            "ready": task.status is PENDING and not waiting
            and (task.retry_until is None or task.retry_until <= self.clock()),
            "dependencies": {d: states[d][0].value for d in task.dependencies},
            "waiting_on": waiting, "blocked_by": task.blocked_by,
            "dependents": self.episodic.dependents_of(task.id),
        }

    def get_queue_statistics(self) -> QueueStatistics:
        counts = self.episodic.status_counts()
        return QueueStatistics(**{f"{s.value}_count": counts.get(s.value, 0) for s in TaskStatus})

    def to_frame(self, status: str | list[str] | None = None,
                 agent_id: str | None = None) -> pd.DataFrame:
        """Tasks as a DataFrame, one row per task, in queue order."""
        frame = self.episodic.tasks_frame(v.statuses(status), v.optional_text("agent_id", agent_id))
        for column in ("requirements", "dependencies"):
            frame[column] = [json.loads(x) for x in frame[column]]
        return frame

    def history_frame(self) -> pd.DataFrame:
        """Every transition of every task, oldest first."""
        return self.episodic.transitions_frame()

    def dependency_graph(self) -> nx.DiGraph:
        """A copy of the task DAG: every task a node (with status, priority, task_type),
        edges from a dependency to the task that waits on it."""
        graph = self._current_dag().copy()
        frame = self.episodic.tasks_frame()
        for tid, status, priority, task_type in zip(
                frame["task_id"], frame["status"], frame["priority"], frame["task_type"]):
            graph.add_node(tid, status=status, priority=priority, task_type=task_type)
        return graph

    def _current_dag(self) -> nx.DiGraph:
        version = self.db.version("dag")
        if version != self._dag_version:
            dag = nx.DiGraph()
            dag.add_edges_from(self.episodic.dependency_edges())
            self._dag, self._dag_version = dag, version
        return self._dag

    # ------------------------------------------------------------------ checks
    def _require(self, task_id: str, action: str, allowed: tuple[TaskStatus, ...]) -> Task:
        task = self.episodic.get_task(v.text("task_id", task_id))
        if task is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        if task.status not in allowed:
            raise InvalidTransitionError(task.id, task.status.value, action)
        return task

    def _changed(self, task_id: str, action: str, task: Task | None) -> Task:
        """The task a guarded UPDATE returned; if it matched nothing, say why."""
        if task is not None:
            return task
        current = self.episodic.get_task(task_id)
        if current is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        raise InvalidTransitionError(task_id, current.status.value, action)

    def _check_dependencies_completed(self, task: Task) -> None:
        states = self.episodic.task_states(task.dependencies)
        waiting = [d for d in task.dependencies if states[d][0] is not COMPLETED]
        if waiting:
            raise DependencyError(f"task {shown(task.id)} waits on uncompleted dependencies {shown(waiting, 200)}")
