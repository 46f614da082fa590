"""The durable task queue: task rows in episodic memory, the lifecycle rules in Python.

Every call happens whole or not at all, and two workers never get the same task: a call
that writes with several statements runs in one transaction (``db.atomic``); one whose
writes are a single statement (create without dependencies, claim, start, complete,
heartbeat, release) runs it alone on DuckDB, holding the connection, as a lone statement
commits atomically (``db.at_once``; PostgreSQL keeps the transaction and its row locks,
except where no read locks anything: ``db.alone``).
The rows and their history are the store's (``stores/task_rows.py``). Who waits on whom
is an in-memory successors map (built when a failure or cancellation first needs it,
rebuilt when the database's change counter moves); ``dependency_graph()`` returns the
DAG as a NetworkX graph read fresh from the database.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import networkx as nx
import pandas as pd

from . import task_records as tr
from . import validation as v
from .bulk import paused_gc
from .events import EventBus
from .exceptions import (
    AgentNotFoundError,
    DependencyError,
    DuplicateTaskError,
    InvalidTransitionError,
    StaleAttemptError,
    TaskNotFoundError,
    ValidationError,
    shown,
)
from .ids import new_task_ids
from .models import ACTIVE_STATES, QueueStatistics, Task, TaskBatch, TaskEvent, TaskStatus
from .stores import EpisodicStore, GraphStore, MetaStore, SubscriptionStore
from .stores.meta import outcome_figures

PENDING, ASSIGNED, RUNNING = TaskStatus.PENDING, TaskStatus.ASSIGNED, TaskStatus.RUNNING
COMPLETED, FAILED, BLOCKED, CANCELLED = (
    TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.BLOCKED, TaskStatus.CANCELLED)
_BLOCKING = (FAILED, CANCELLED, BLOCKED)
QUERY_FILTERS = ("status", "agent_id", "task_type", "priority", "created_after", "limit",
                 "offset")
MAX_WAIT_SECONDS = 86_400.0  # a claim's wait: a day at most


def _utcnow() -> datetime:
    return datetime.now(UTC)


class _Downstream:
    """The dependency DAG as the queue keeps it in memory, to find what is downstream of
    a task that failed or was cancelled: each task's dependents, nothing else (a third
    of a NetworkX graph's memory; ``dependency_graph`` builds one for callers)."""

    def __init__(self) -> None:
        self._dependents: dict[str, list[str]] = {}

    def add(self, edges: Iterable[tuple[str, str]]) -> None:
        """(dependency, dependent) edges."""
        dependents = self._dependents
        with paused_gc():
            for dependency, task_id in edges:
                waiting = dependents.get(dependency)
                if waiting is None:
                    dependents[dependency] = [task_id]
                else:
                    waiting.append(task_id)

    def descendants(self, root: str) -> set[str]:
        """Every task downstream of ``root``, transitively."""
        found: set[str] = set()
        stack = [root]
        while stack:
            for task_id in self._dependents.get(stack.pop(), ()):
                if task_id not in found:
                    found.add(task_id)
                    stack.append(task_id)
        return found


class TaskQueue:
    """Create, hand out and finish tasks; see DESIGN.md for the state table.

    Settings (attributes): ``retry_backoff_seconds`` (first retry delay, doubling per
    retry), ``retry_backoff_max_seconds``, ``lease_seconds``, ``wait_poll_seconds`` (how
    often a waiting claim re-checks without a wake-up), and ``clock`` (a callable returning
    an aware UTC datetime; tests replace it).
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
        self.wait_poll_seconds = 1.0
        self.clock = clock
        self._dag = _Downstream()  # built when first needed
        self._dag_version = -1
        self.events = EventBus(SubscriptionStore(self.db))
        #: Wakes claimers when work may be ready (``generation``, ``wait(seen, timeout)``):
        #: for faces that wait their own way, like the MCP server's long poll.
        self.wakeups = self.db.wakeups

    # ------------------------------------------------------------------ creating
    def create_task(self, content: str, task_type: str, priority: str = "medium",
                    requirements: list[str] | None = None,
                    dependencies: list[str] | None = None, *, max_retries: int = 3,
                    estimated_duration_ms: int | None = None,
                    idempotency_key: str | None = None, name: str | None = None) -> str:
        """Create one task and return its id; ``name`` is an optional human-readable name.

        With ``idempotency_key``, creating the same task again returns the first id; the
        same key with other content (or name) raises DuplicateTaskError.
        """
        return self.add_task(content, task_type, priority, requirements, dependencies,
                             max_retries=max_retries,
                             estimated_duration_ms=estimated_duration_ms,
                             idempotency_key=idempotency_key, name=name)[0]

    def add_task(self, content: str, task_type: str, priority: str = "medium",
                 requirements: list[str] | None = None,
                 dependencies: list[str] | None = None, *, max_retries: int = 3,
                 estimated_duration_ms: int | None = None,
                 idempotency_key: str | None = None,
                 name: str | None = None) -> tuple[str, bool]:
        """``create_task``, also telling whether this call made the task: (id, False)
        when its idempotency key found a task made earlier."""
        batch = tr.batch_from([{
            "content": content, "task_type": task_type, "priority": priority,
            "requirements": requirements, "dependencies": dependencies,
            "max_retries": max_retries, "estimated_duration_ms": estimated_duration_ms,
            "idempotency_key": idempotency_key, "name": name}], numbered=False)
        task_id = self._create(batch)[0]
        return task_id, task_id == batch.task_id[0]

    def create_tasks(self, records: Iterable[dict[str, Any]] | pd.DataFrame) -> list[str]:
        """Create many tasks at once, all or nothing; ids come back in record order.

        Records use ``create_task``'s keyword names; a record's ``key`` may be named in
        the ``dependencies`` of other records of the same batch, and is its ``name`` when
        it has none.
        """
        return self._create(tr.batch_from(records))

    def _create(self, batch: TaskBatch) -> list[str]:
        """Tasks without dependencies are one insert (their rows are their creation
        events), so need no transaction; with idempotency keys, PostgreSQL keeps one for
        its lock on the keys. ``batch.task_id`` is set to the ids of new tasks; those a
        key reuses come back in their place."""
        batch.task_id = new_task_ids(len(batch))
        if any(batch.dependencies):
            run = self.db.atomic
        elif any(k is not None for k in batch.idempotency_key):
            run = self.db.at_once
        else:
            run = self.db.alone
        return run(self._create_in_transaction, batch)

    def _create_in_transaction(self, given: TaskBatch) -> list[str]:
        # a copy: reuse and dependency resolution rewrite its lists, and a retried
        # transaction must start from what the caller gave
        batch = dataclasses.replace(given, task_id=list(given.task_id),
                                    dependencies=list(given.dependencies))
        found = self._reuse_idempotent(batch)
        order, external = tr.resolve_dependencies(batch)
        reused = {row["task_id"] for row in found.values()}
        states = self.episodic.task_states(sorted(external | reused))
        unknown = sorted(external - set(states))
        if unknown:
            raise DependencyError(f"dependencies name unknown tasks: {shown(unknown, 200)}")
        self._check_same_task(batch, found)
        fresh = [i for i, tid in enumerate(batch.task_id) if tid not in reused]
        roots = self._blocking_roots(batch, order, states, reused)
        completed = {tid for tid, (status, _) in states.items() if status is COMPLETED}
        now = self._now()
        edges = any(batch.dependencies[i] for i in fresh)
        version = self.db.version("dag") if edges else None
        created = self.episodic.insert_tasks(batch, fresh, roots, completed, now)
        if fresh:
            self.db.announce_work()
            if self.events.active:
                self._publish([TaskEvent("task_created", tid, None, status, None, "created", now)
                               for tid, status in created])
        if edges and version == self._dag_version:
            self._dag.add((d, batch.task_id[i]) for i in fresh for d in batch.dependencies[i])
            self._dag_version = version + 1
        return batch.task_id

    @staticmethod
    def _blocking_roots(batch: TaskBatch, order: list[int], states: dict,
                        reused: set[str]) -> dict[int, str]:
        """Record position -> the failed or cancelled task that blocks it from birth: a
        dependency already failed, cancelled or blocked, or a record of the batch that is
        blocked (records taken in dependency order, so blocks propagate)."""
        roots: dict[int, str] = {}
        if not any(status in _BLOCKING for status, _ in states.values()):
            return roots  # nothing existing blocks, so nothing in the batch is blocked
        blocked = {tid: root if status is BLOCKED else tid
                   for tid, (status, root) in states.items() if status in _BLOCKING}
        for i in order:
            if batch.task_id[i] in reused:
                continue
            for dep in batch.dependencies[i]:
                if dep in blocked:
                    roots[i] = blocked[batch.task_id[i]] = blocked[dep]
                    break
        return roots

    def _reuse_idempotent(self, batch: TaskBatch) -> dict[int, dict[str, Any]]:
        """Give records whose idempotency key is already used the existing task's id;
        return record position -> that task's stored fields."""
        keys = [k for k in batch.idempotency_key if k is not None]
        found = self.episodic.find_by_idempotency_keys(keys) if keys else {}
        reused = {}
        for i, key in enumerate(batch.idempotency_key):
            row = found.get(key) if key is not None else None
            if row is not None:
                batch.task_id[i] = row["task_id"]
                reused[i] = row
        return reused

    @staticmethod
    def _check_same_task(batch: TaskBatch, reused: dict[int, dict[str, Any]]) -> None:
        """An idempotency key names one task: a record that reuses it must describe that
        task (its dependencies resolved to ids), else DuplicateTaskError."""
        for i, row in reused.items():
            given = {"content": batch.content[i], "task_type": batch.task_type[i],
                     "priority": batch.priority[i], "max_retries": batch.max_retries[i],
                     "estimated_duration_ms": batch.estimated_duration_ms[i],
                     "requirements": sorted(batch.requirements[i]),
                     "dependencies": sorted(batch.dependencies[i]), "name": batch.name[i]}
            stored = {**row, "requirements": sorted(row["requirements"]),
                      "dependencies": sorted(row["dependencies"])}
            differ = [name for name, value in given.items() if stored[name] != value]
            if differ:
                raise DuplicateTaskError(
                    f"idempotency_key {shown(batch.idempotency_key[i])} already names task "
                    f"{row['task_id']} with other {', '.join(differ)}")

    def _log(self, task_id: str, before: TaskStatus | None, after: TaskStatus,
             agent_id: str | None, now: datetime, detail: str = "") -> None:
        self._log_many([([task_id], before, after, agent_id, detail)], now)

    def _log_many(self, moves: list[tuple], now: datetime,
                  results: dict[str, str] | None = None) -> None:
        """Record transitions as episodic events, in one statement: each move is
        (task_ids, from, to, agent_id, detail), the same step of many tasks; a task's
        moves are recorded in the order given. Subscribers get them once committed (with
        ``results`` of completions)."""
        self._announce_moves(moves, now, results)
        self.episodic.record_moves(moves, now)

    def _announce_moves(self, moves: list[tuple], now: datetime,
                        results: dict[str, str] | None = None) -> None:
        """Hand moves (as :meth:`_log_many` takes them) to subscribers once committed;
        for moves whose history the store wrote itself."""
        if self.events.active:
            self._publish([
                TaskEvent(_event_type(before, after, detail), tid, before and before.value,
                          after.value, agent, detail, now, (results or {}).get(tid))
                for ids, before, after, agent, detail in moves for tid in ids])

    def _publish(self, events: list[TaskEvent]) -> None:
        """Hand events to the subscribers once this transaction commits (a retried
        transaction publishes only what its committed run made)."""
        if events:
            self.db.after_commit(lambda: self.events.publish(events))

    # ------------------------------------------------------------------ handing out
    def assign_task(self, task_id: str, agent_id: str) -> Task:
        """Give a pending task whose dependencies are completed to ``agent_id``.

        The caller overrides the router: capacity, capabilities and registration are not
        checked, and a retry back-off does not delay it.
        """
        agent_id = v.text("agent_id", agent_id)
        task_id = v.text("task_id", task_id)
        return self.db.atomic(self._assign, task_id, agent_id)

    def _assign(self, task_id: str, agent_id: str) -> Task:
        task = self._require(task_id, "assign", (PENDING,))
        self._check_dependencies_completed(task)
        now = self._now()
        task = self._changed(task.id, "assign",
                             self.episodic.assign(task.id, agent_id, now, self._lease(now)))
        self._log(task.id, PENDING, ASSIGNED, agent_id, now, "assigned")
        self.db.announce_work()  # the assignee's worker may be waiting for it
        return task

    def claim_task(self, agent_id: str, *, wait: float | None = None,
                   task_types: list[str] | None = None,
                   until: threading.Event | None = None) -> Task | None:
        """Atomically hand ``agent_id`` the best ready task it can do, or None.

        None also when the agent is inactive or at capacity; AgentNotFoundError when it is
        not registered. ``wait``: seconds to wait for a task when none is ready (woken as
        soon as one may be); ``task_types``: only tasks of these types; ``until``: see
        ``claim_tasks``.
        """
        tasks = self.claim_tasks(agent_id, 1, wait=wait, task_types=task_types, until=until)
        return tasks[0] if tasks else None

    def claim_tasks(self, agent_id: str, n: int, *, start: bool = False,
                    wait: float | None = None, task_types: list[str] | None = None,
                    until: threading.Event | None = None) -> list[Task]:
        """Claim up to ``n`` ready tasks at once (never past the agent's free capacity), in
        queue order; with ``start=True`` they are started too (the bulk worker's path).

        With ``wait``, a claim that finds nothing sleeps until a write may have made a
        task ready (in this process at once; from other processes through PostgreSQL
        NOTIFY) and tries again, for at most ``wait`` seconds; it re-checks every
        ``wait_poll_seconds`` anyway (back-offs that run out, a missed notification).
        ``until``: an event that ends the wait early once set (a worker stopping); set it,
        then ``queue.wakeups.notify()``, to end a wait at once.
        """
        agent_id = v.text("agent_id", agent_id)
        n = v.non_negative_int("n", n)
        start = v.boolean("start", start)
        wait = 0.0 if wait is None else v.number("wait", wait, high=MAX_WAIT_SECONDS)
        task_types = None if task_types is None else v.string_list("task_types", task_types)
        if until is not None and not isinstance(until, threading.Event):
            raise ValidationError(f"until must be a threading.Event, not {shown(until)}")
        deadline = time.monotonic() + wait
        while True:
            seen = self.wakeups.generation
            tasks = self.db.at_once(self._claim, agent_id, n, start, task_types)
            left = deadline - time.monotonic()
            if tasks or not n or left <= 0 or (until is not None and until.is_set()):
                return tasks
            self.wakeups.wait(seen, min(left, self.wait_poll_seconds))

    def _claim(self, agent_id: str, n: int, start: bool,
               task_types: list[str] | None) -> list[Task]:
        now = self._now()
        tasks = self.episodic.claim(agent_id, n, RUNNING if start else ASSIGNED, now,
                                    self._lease(now), task_types)
        if tasks is None:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
        ids = [t.id for t in tasks]
        steps = [(ids, PENDING, ASSIGNED, agent_id, "claimed")]
        if start:
            steps.append((ids, ASSIGNED, RUNNING, agent_id, "started"))
        self._announce_moves(steps, now)
        return tasks

    def start_task(self, task_id: str, *, agent_id: str | None = None,
                   attempt: int | None = None) -> Task:
        """assigned -> running; renews the lease. With ``agent_id`` and/or ``attempt``,
        only if that is the task's current attempt (else StaleAttemptError)."""
        task_id = v.text("task_id", task_id)
        agent_id, attempt = _fence(agent_id, attempt)
        return self.db.alone(self._start, task_id, agent_id, attempt)

    def _start(self, task_id: str, agent_id: str | None, attempt: int | None) -> Task:
        now = self._now()
        task = self.episodic.start(task_id, now, self._lease(now), agent_id=agent_id,
                                   attempt=attempt)
        if task is None:
            current = self._existing(task_id)
            _check_attempt(current, "start", agent_id, attempt)
            raise InvalidTransitionError(task_id, current.status.value, "start")
        self._announce_moves([([task.id], ASSIGNED, RUNNING, task.assigned_to, "started")], now)
        return task

    # ------------------------------------------------------------------ finishing
    def complete_task(self, task_id: str, result: str,
                      metrics: dict[str, Any] | None = None, *, agent_id: str | None = None,
                      attempt: int | None = None) -> Task:
        """running -> completed; the result becomes its own episodic event.

        ``metrics["duration_ms"]`` is the execution time; without it, the time since start.
        With ``agent_id`` and/or ``attempt``, only if that is the task's current attempt
        (else StaleAttemptError, and nothing changes).
        """
        metrics = v.mapping("metrics", metrics)
        agent_id, attempt = _fence(agent_id, attempt)
        task_ids, texts, durations = tr.completions_from(
            [{"task_id": task_id, "result": result, "duration_ms": metrics.get("duration_ms")}])
        return self.db.at_once(self._complete, task_ids, texts, durations, agent_id,
                               [attempt])[0]

    def complete_tasks(self, results: dict[str, str] | Iterable[dict[str, Any]] | pd.DataFrame,
                       *, agent_id: str | None = None) -> list[Task]:
        """Complete many running tasks at once, all or nothing: ``{task_id: result}``, or
        records / DataFrame rows with task_id, result and optional duration_ms and
        attempt. With ``agent_id`` (and each record's ``attempt``), only tasks whose
        current attempt that is; one stale task refuses the whole batch."""
        agent_id, _ = _fence(agent_id, None)
        attempts, results = _attempts_of(results)
        task_ids, texts, durations = tr.completions_from(results)
        if not task_ids:
            return []
        return self.db.at_once(self._complete, task_ids, texts, durations, agent_id, attempts)

    def _complete(self, task_ids: list[str], texts: list[str], durations: list[int | None],
                  agent_id: str | None, attempts: list[int | None] | None) -> list[Task]:
        now = self._now()
        current = self.episodic.lock_tasks(task_ids)
        for task_id, attempt in zip(task_ids, attempts or [None] * len(task_ids)):
            task = current.get(task_id)
            if task is None:
                raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
            _check_attempt(task, "complete", agent_id, attempt)
            if task.status is not RUNNING:
                raise InvalidTransitionError(task_id, task.status.value, "complete")
        tasks = self.episodic.complete([current[t] for t in task_ids], texts, durations, now)
        by_assignee: dict[str | None, list[str]] = {}
        for task in tasks:
            by_assignee.setdefault(task.assigned_to, []).append(task.id)
        self._announce_moves([(ids, RUNNING, COMPLETED, agent, "completed")
                              for agent, ids in by_assignee.items()], now,
                             dict(zip(task_ids, texts)) if self.events.active else None)
        self.db.announce_work()  # dependents released, capacity freed
        return tasks

    def fail_task(self, task_id: str, error: str, should_retry: bool = True, *,
                  agent_id: str | None = None, attempt: int | None = None) -> Task:
        """assigned/running -> pending (a retry, after a back-off) or failed for good.

        A task fails for good when ``should_retry`` is False or no retry is left; then
        every task downstream of it is blocked. With ``agent_id`` and/or ``attempt``, only
        if that is the task's current attempt (else StaleAttemptError).
        """
        task_id = v.text("task_id", task_id)
        error = v.string("error", error)
        should_retry = v.boolean("should_retry", should_retry)
        agent_id, attempt = _fence(agent_id, attempt)
        return self.db.atomic(self._fail_one, task_id, error, should_retry, agent_id, attempt)

    def _fail_one(self, task_id: str, error: str, should_retry: bool, agent_id: str | None,
                  attempt: int | None) -> Task:
        task = self._locked(task_id)
        _check_attempt(task, "fail", agent_id, attempt)
        if task.status not in ACTIVE_STATES:
            raise InvalidTransitionError(task.id, task.status.value, "fail")
        return self._fail([task], [error], should_retry, self._now())[0]

    def _fail(self, tasks: list[Task], errors: list[str], should_retry: bool,
              now: datetime) -> list[Task]:
        """Retry, or fail for good when no retry is left (or ``should_retry`` is False),
        the current attempt of each task (rows read in this transaction), with their
        history, in one statement; block what is downstream of those that failed, then
        count a failure for each agent (tasks before agents: the lock order). A bounded
        number of statements however many tasks: one call never holds the lock long."""
        attempts = _attempts(tasks)  # before retry() clears the assignee
        again = [should_retry and t.retry_count < t.max_retries for t in tasks]
        moves = [([t.id], t.status, PENDING if retry else FAILED, t.assigned_to,
                  f"retry {t.retry_count + 1} of {t.max_retries}: {e}" if retry else e)
                 for t, e, retry in zip(tasks, errors, again)]
        retried = [(t, e) for t, e, retry in zip(tasks, errors, again) if retry]
        final = [(t, e) for t, e, retry in zip(tasks, errors, again) if not retry]
        self._announce_moves(moves, now)
        self.episodic.fail_step(
            [t for t, _ in retried], [e for _, e in retried],
            [now + self._backoff(t.retry_count) for t, _ in retried],
            [t for t, _ in final], [e for _, e in final], moves, now)
        self._block_downstream([t.id for t, _ in final], "failed", now)
        self.meta.record_failures(outcome_figures(attempts, success=False), now)
        if tasks:
            self.db.announce_work()  # retries, freed capacity
        return tasks

    def _backoff(self, retry_count: int) -> timedelta:
        """The wait before retry ``retry_count + 1``: doubling, capped."""
        doublings = min(retry_count, 64)  # past that the cap has long applied
        return timedelta(seconds=min(self.retry_backoff_seconds * 2**doublings,
                                     self.retry_backoff_max_seconds))

    def cancel_task(self, task_id: str, reason: str | None = None) -> Task:
        """pending/assigned/running/blocked -> cancelled; tasks downstream are blocked."""
        task_id = v.text("task_id", task_id)
        reason = "cancelled" if reason is None else v.string("reason", reason)
        return self.db.atomic(self._cancel, task_id, reason)

    def _cancel(self, task_id: str, reason: str) -> Task:
        task = self._locked(task_id)
        if task.status not in (PENDING, ASSIGNED, RUNNING, BLOCKED):
            raise InvalidTransitionError(task.id, task.status.value, "cancel")
        now = self._now()
        cancelled = self._changed(task.id, "cancel", self.episodic.cancel(task.id, reason, now))
        self._log(task.id, task.status, CANCELLED, task.assigned_to, now, reason)
        self._block_downstream([task.id], "was cancelled", now)
        if task.assigned_to is not None:
            self.db.announce_work()  # a freed slot
        return cancelled

    def release_task(self, task_id: str, *, agent_id: str | None = None,
                     attempt: int | None = None, reason: str | None = None) -> Task:
        """assigned/running -> pending, handing the attempt back: for a worker that stops
        before finishing. Unlike a failure it uses no retry, counts no failure for the agent
        and waits no back-off. Fenced like ``complete_task``."""
        task_id = v.text("task_id", task_id)
        agent_id, attempt = _fence(agent_id, attempt)
        reason = "released" if reason is None else f"released: {v.string('reason', reason)}"
        return self.db.at_once(self._release, task_id, agent_id, attempt, reason)

    def _release(self, task_id: str, agent_id: str | None, attempt: int | None,
                 reason: str) -> Task:
        task = self._locked(task_id)
        _check_attempt(task, "release", agent_id, attempt)
        if task.status not in ACTIVE_STATES:
            raise InvalidTransitionError(task.id, task.status.value, "release")
        now = self._now()
        released = self._changed(task.id, "release", self.episodic.release(task, reason, now))
        self._announce_moves([([task.id], task.status, PENDING, task.assigned_to, reason)], now)
        self.db.announce_work()
        return released

    def _block_downstream(self, roots: list[str], verb: str, now: datetime) -> None:
        """Block every pending task downstream of ``roots`` (which failed or were
        cancelled); a task downstream of several is blocked by the first in id order."""
        if not roots:
            return
        dag = self._current_dag()
        root_of: dict[str, str] = {}
        for root in sorted(roots):
            for task_id in dag.descendants(root):
                root_of.setdefault(task_id, root)
        if not root_of:
            return
        downstream = sorted(root_of)
        reasons = {root: f"blocked: dependency {root} {verb}" for root in roots}
        blocked = self.episodic.block(downstream, [root_of[t] for t in downstream],
                                      [reasons[root_of[t]] for t in downstream])
        by_root: dict[str, list[str]] = {}
        for task_id in blocked:
            by_root.setdefault(root_of[task_id], []).append(task_id)
        self._log_many([(ids, PENDING, BLOCKED, None, reasons[root])
                        for root, ids in by_root.items()], now)

    # ------------------------------------------------------------------ leases
    def heartbeat(self, task_id: str | None = None, *, agent_id: str | None = None,
                  attempt: int | None = None) -> list[str]:
        """Renew the lease of one task, or (``agent_id`` alone) of every task an agent
        holds; returns their ids. With a task_id, ``agent_id`` and/or ``attempt`` fence the
        call: only that attempt's lease is renewed (else StaleAttemptError). An attempt
        lasts until its task is requeued or finished, so a late heartbeat still counts."""
        if task_id is None and attempt is not None:
            raise ValidationError("heartbeat: attempt needs the task_id it is an attempt of")
        if task_id is None and agent_id is None:
            raise ValidationError("heartbeat takes a task_id or an agent_id")
        agent_id, attempt = _fence(agent_id, attempt)
        if task_id is None:
            return self.db.at_once(self._heartbeat_agent, agent_id)
        return self.db.alone(self._heartbeat_task, v.text("task_id", task_id), agent_id,
                             attempt)

    def _heartbeat_task(self, task_id: str, agent_id: str | None,
                        attempt: int | None) -> list[str]:
        lease_until = self._lease(self._now())
        if not self.episodic.renew_lease(task_id, lease_until, agent_id=agent_id,
                                         attempt=attempt):
            current = self._existing(task_id)
            _check_attempt(current, "heartbeat", agent_id, attempt)
            raise InvalidTransitionError(task_id, current.status.value, "heartbeat")
        return [task_id]

    def _heartbeat_agent(self, agent_id: str) -> list[str]:
        if self.graph.agent_profile(agent_id) is None:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
        return self.episodic.renew_agent_leases(agent_id, self._lease(self._now()))

    def requeue_stale(self, now: datetime | None = None) -> list[str]:
        """Retry (or fail, when no retry is left) every task whose lease ran out; returns
        their ids. Safe from many processes at once: each stale task is requeued by one
        of them, the others skip it."""
        now = self._now() if now is None else v.timestamp("now", now)
        return self.db.atomic(self._requeue_stale, now)

    def _requeue_stale(self, now: datetime) -> list[str]:
        stale = self.episodic.stale_tasks(now)
        ids = [t.id for t in stale]
        self._fail(stale, [f"lease expired (agent {t.assigned_to})" for t in stale], True, now)
        return ids

    def _lease(self, now: datetime) -> datetime:
        return now + timedelta(seconds=self.lease_seconds)

    def _now(self) -> datetime:
        """The queue's clock, checked: times are compared with stored aware UTC times."""
        now = self.clock()
        if not isinstance(now, datetime) or now.tzinfo is None:
            raise ValidationError(f"the queue's clock must return an aware datetime, not "
                                  f"{shown(now)}")
        return now

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
        created_after), in queue order; ``limit`` and ``offset`` take a page of them."""
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
            offset=v.non_negative_int("offset", filters.get("offset", 0)),
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
            and (task.retry_until is None or task.retry_until <= self._now()),
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
        return self.episodic.tasks_frame(v.statuses(status), v.optional_text("agent_id", agent_id))

    def history_frame(self) -> pd.DataFrame:
        """Every transition of every task, oldest first."""
        return self.episodic.transitions_frame()

    def dependency_graph(self) -> nx.DiGraph:
        """A copy of the task DAG: every task a node (with status, priority, task_type,
        name), edges from a dependency to the task that waits on it. Built from the
        database each time, so it is current and the caller may change it."""
        graph = nx.DiGraph()
        same: dict[str, str] = {}  # one str object per distinct status, priority or type
        with paused_gc():
            for edges in self.episodic.dependency_edge_chunks():
                graph.add_edges_from(edges)
            for nodes in self.episodic.task_node_chunks():
                graph.add_nodes_from(
                    (tid, {"status": same.setdefault(status, status),
                           "priority": same.setdefault(priority, priority),
                           "task_type": same.setdefault(task_type, task_type),
                           "name": name})
                    for tid, status, priority, task_type, name in nodes)
        return graph

    def _current_dag(self) -> _Downstream:
        version = self.db.version("dag")
        if version != self._dag_version:
            dag = _Downstream()
            for edges in self.episodic.dependency_edge_chunks():
                dag.add(edges)
            self._dag, self._dag_version = dag, version
        return self._dag

    # ------------------------------------------------------------------ checks
    def _require(self, task_id: str, action: str, allowed: tuple[TaskStatus, ...]) -> Task:
        task = self._existing(v.text("task_id", task_id))
        if task.status not in allowed:
            raise InvalidTransitionError(task.id, task.status.value, action)
        return task

    def _existing(self, task_id: str) -> Task:
        task = self.episodic.get_task(task_id)
        if task is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        return task

    def _locked(self, task_id: str) -> Task:
        """The task, read to be changed in this transaction (PostgreSQL: row locked)."""
        task = self.episodic.lock_tasks([task_id]).get(task_id)
        if task is None:
            raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
        return task

    def _changed(self, task_id: str, action: str, task: Task | None) -> Task:
        """The task a guarded UPDATE returned; if it matched nothing, say why."""
        if task is not None:
            return task
        raise InvalidTransitionError(task_id, self._existing(task_id).status.value, action)

    def _check_dependencies_completed(self, task: Task) -> None:
        states = self.episodic.task_states(task.dependencies)
        waiting = [d for d in task.dependencies if states[d][0] is not COMPLETED]
        if waiting:
            raise DependencyError(f"task {shown(task.id)} waits on uncompleted dependencies {shown(waiting, 200)}")


def _attempts(tasks: list[Task]) -> list[tuple[str, Task]]:
    """(agent, task) of the tasks that an agent holds: the attempts whose outcome counts."""
    return [(t.assigned_to, t) for t in tasks if t.assigned_to is not None]


def _fence(agent_id: Any, attempt: Any) -> tuple[str | None, int | None]:
    """The caller's attempt, checked: an agent id and/or an attempt number (None: any)."""
    return (v.optional_text("agent_id", agent_id),
            v.non_negative_int("attempt", attempt, allow_none=True, high=2**31 - 1))


def _check_attempt(task: Task, action: str, agent_id: str | None, attempt: int | None) -> None:
    """StaleAttemptError when the caller named an attempt that is not the task's current
    one (a task's attempt is current while it is assigned or running under it)."""
    if agent_id is None and attempt is None:
        return
    if (task.status in ACTIVE_STATES and agent_id in (None, task.assigned_to)
            and attempt in (None, task.attempt)):
        return
    named = " of ".join(x for x in (attempt is not None and f"attempt {attempt}",
                                    agent_id is not None and f"agent {shown(agent_id)}") if x)
    now = (f"; attempt {task.attempt} is held by {shown(task.assigned_to)}"
           if task.status in ACTIVE_STATES else "")
    raise StaleAttemptError(task.id, task.status.value, action,
                            f"{named} is no longer current{now}")


def _attempts_of(results: Any) -> tuple[list[int | None] | None, Any]:
    """The ``attempt`` of each completion record (None when no record has one), and the
    records without it."""
    if isinstance(results, pd.DataFrame):
        if "attempt" not in results.columns:
            return None, results
        attempts = [None if pd.isna(a) else a for a in results["attempt"].tolist()]
        results = results.drop(columns=["attempt"])
    elif isinstance(results, (dict, str)) or not isinstance(results, Iterable):
        return None, results
    else:
        results = list(results)
        if not any(isinstance(r, dict) and "attempt" in r for r in results):
            return None, results
        attempts = [r.get("attempt") if isinstance(r, dict) else None for r in results]
        results = [{k: x for k, x in r.items() if k != "attempt"} if isinstance(r, dict) else r
                   for r in results]
    return [_fence(None, a)[1] for a in attempts], results


_EVENT_OF = {ASSIGNED: "task_assigned", RUNNING: "task_started", COMPLETED: "task_completed",
             FAILED: "task_failed", BLOCKED: "task_blocked", CANCELLED: "task_cancelled"}


def _event_type(before: TaskStatus | None, after: TaskStatus, detail: str) -> str:
    """What a move is called for subscribers (see ``events.EVENT_TYPES``)."""
    if after is PENDING:
        return "task_released" if detail.startswith("released") else "task_retried"
    return _EVENT_OF[after]
