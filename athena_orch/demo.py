"""The main job: simulated agents work a task graph through the queue and the router.

``athena-orch demo`` (``python -m athena_orch demo``) loads the sample team and task
graph from ``data/`` (or a synthetic workload with ``--tasks/--agents``), registers the
agents, creates the tasks in one batch and runs until every task is completed, failed,
blocked or cancelled. Then it prints a summary and writes ``<db stem>_report.html``
next to the database.

How the simulation works (one process; threads share the library objects):

- Each agent is a thread. *pull* agents ask ``queue.claim_task`` for work whenever they
  have a free slot; *push* agents only take what the dispatcher routes to them. Work is a
  sleep of the task's ``estimated_duration_ms`` times the agent's speed factor, scaled
  down by ``speedup``. The agent fails an attempt with a probability that grows with the
  task's length (``failure_rate`` is the chance for a 45-minute task); a few failures are
  permanent (``should_retry=False``), the rest are retried after the queue's back-off.
  Agents renew the leases of long tasks with ``queue.heartbeat(task_id)`` and, about
  once a second (whichever agent comes first), call ``queue.requeue_stale()``.
- A dispatcher thread routes ready tasks: ``router.route_batch`` for the batch, and
  ``router.decide`` to send a retried task to someone other than the agent that just
  failed it, then ``queue.assign_task``. A ready task that nobody on the team can do is
  logged with ``router.decide`` and cancelled, which blocks the work downstream of it.
- Once during the run (queues of 100 tasks or more) one busy agent "crashes": it drops
  its tasks without a word and comes back later; its leases run out and
  ``requeue_stale`` hands the tasks back.

Safety: claims and routing rounds are serialised by one lock, so routing never pushes an
agent over its capacity; a ledger of who holds which attempt (task id + retry count),
updated under a second lock together with every start, finish and ``requeue_stale``,
makes sure an agent whose attempt was taken away never starts or finishes it. The demo
assumes it is the only worker on its database file, and drains every task in it.

Re-running on the same file resumes: tasks are created with idempotency keys (nothing is
duplicated), agents are re-registered (their figures kept), and tasks a killed run left
assigned or running are failed back to pending (one retry used) before work starts.
"""

from __future__ import annotations

import base64
import html
import io
import random
import string
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from queue import Empty, SimpleQueue
from typing import Any
from urllib.parse import urlsplit

import pandas as pd

from .exceptions import OrchestrationError
from .stores.postgres import is_postgres_url, shown_target
from .workload import Workload, load_workload, synthetic_workload

FINAL = ("completed", "failed", "blocked", "cancelled")
REFERENCE_MS = 45 * 60_000  # failure_rate is the chance of failing a task this long
TRANSIENT_ERRORS = [
    "timeout calling the model API",
    "rate limited by the search API",
    "flaky test run",
    "worker ran out of memory",
    "tool call returned malformed JSON",
    "upstream service returned 503",
]
PERMANENT_ERRORS = [
    "source dataset not found",
    "requirements contradict each other",
    "access denied to the repository",
    "input file is corrupt",
]


@dataclass
class DemoSettings:
    """Knobs of the simulation. ``speedup``: simulated milliseconds per real millisecond
    (6000: an hour of work takes 0.6 s). Queue settings are set for the run and put
    back afterwards."""

    speedup: float = 6000.0
    lease_seconds: float = 3.0
    retry_backoff_seconds: float = 0.1
    retry_backoff_max_seconds: float = 1.0
    fatal_share: float = 0.1
    crash_at: float | None = 0.3  # fraction of tasks final when one agent crashes; None: never
    crash_min_tasks: int = 100  # smaller queues finish too fast for a crash to show anything
    requeue_interval: float = 1.0
    dispatch_interval: float = 0.25
    max_seconds: float = 300.0


@dataclass
class _Attempt:
    task_id: str
    retry_count: int
    sim_ms: int
    finish_at: float
    lease_due: float
    fails: bool = False
    fatal: bool = False


@dataclass
class _Stats:
    """What happened in this run (the database has the cumulative story)."""

    claimed: Counter = field(default_factory=Counter)
    routed: Counter = field(default_factory=Counter)
    started: Counter = field(default_factory=Counter)
    completed: Counter = field(default_factory=Counter)
    failed: Counter = field(default_factory=Counter)
    permanent: Counter = field(default_factory=Counter)
    lease_expired: Counter = field(default_factory=Counter)
    lost: Counter = field(default_factory=Counter)
    heartbeats: Counter = field(default_factory=Counter)
    requeue_calls: int = 0
    dispatch_rounds: int = 0
    rerouted_retries: int = 0
    unroutable: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class _Simulation:
    """Shared state of one run: locks, the attempt ledger, the dispatcher's snapshot."""

    def __init__(self, orch: Any, team: list[dict[str, Any]], seed: int, settings: DemoSettings):
        self.orch, self.queue, self.router = orch, orch.queue, orch.router
        self.team = {a["agent_id"]: a for a in team}
        self.settings = settings
        self.rng = random.Random(seed)
        self.seed = seed
        self.stop = threading.Event()
        self.handout = threading.Lock()  # claims and routing rounds
        self.fence = threading.Lock()  # ledger + start/finish/requeue
        self.duty = threading.Lock()  # who calls requeue_stale next
        self.ledger: dict[str, tuple[str, int]] = {}  # task id -> (agent, retry_count)
        self.last_failed_by: dict[str, str] = {}
        self.stats = _Stats()
        self.changed = threading.Event()  # something finished: wake the dispatcher
        self.round = 0
        self.ready_requirements: list[frozenset[str]] = []  # left unrouted last round
        self.agents: dict[str, _Agent] = {}
        # registered agents this run does not simulate (e.g. another workload's): never routed to
        self.ghosts = set(orch.registry.to_frame()["agent_id"]) - set(self.team)
        self.next_requeue = time.monotonic() + settings.requeue_interval
        self.fatal: BaseException | None = None
        self.crash_done = settings.crash_at is None

    # ---------------------------------------------------------------- the ledger
    def holds(self, task_id: str, agent_id: str, retry_count: int) -> bool:
        return self.ledger.get(task_id) == (agent_id, retry_count)

    def requeue_stale_if_due(self) -> None:
        """Any agent may do it; the first one past the shared deadline does (the others
        never wait for it)."""
        if time.monotonic() < self.next_requeue or not self.duty.acquire(blocking=False):
            return
        try:
            if time.monotonic() < self.next_requeue:
                return
            self.next_requeue = time.monotonic() + self.settings.requeue_interval
        finally:
            self.duty.release()
        self.requeue_stale()

    def requeue_stale(self) -> list[str]:
        with self.fence:
            stale = self.queue.requeue_stale()
            for task_id in stale:
                holder = self.ledger.pop(task_id, None)
                if holder is not None:
                    self.stats.lease_expired[holder[0]] += 1
                    self.last_failed_by[task_id] = holder[0]
            self.stats.requeue_calls += 1
        if stale:
            self.changed.set()
        return stale

    def record_error(self, where: str, exc: BaseException) -> None:
        self.stats.errors.append(f"{where}: {type(exc).__name__}: {exc}")


class _Agent(threading.Thread):
    """One simulated agent: claims or receives tasks, works them, finishes them."""

    def __init__(self, sim: _Simulation, record: dict[str, Any]):
        super().__init__(name=f"agent-{record['agent_id']}", daemon=True)
        self.sim = sim
        self.id = record["agent_id"]
        self.capabilities = frozenset(record["capabilities"])
        self.capacity = int(record["max_concurrent_tasks"])
        self.speed = float(record.get("speed_factor", 1.0))
        self.failure_rate = float(record.get("failure_rate", 0.1))
        self.pull = record.get("mode", "pull") == "pull"
        self.rng = random.Random(f"{sim.seed}:{self.id}")
        self.inbox: SimpleQueue[tuple[str, int, int | None]] = SimpleQueue()
        self.wake = threading.Event()
        self.active: dict[str, _Attempt] = {}
        self.no_work_round = -1
        self.just_finished = False  # a completion may have made work ready: try one claim
        self.crash_requested = False
        self.down_until: float | None = None

    def run(self) -> None:
        sim = self.sim
        try:
            while not sim.stop.is_set():
                if self._down():
                    continue
                self._take_inbox()
                self._finish_due()
                self._claim()
                self._heartbeat()
                sim.requeue_stale_if_due()
                if self.wake.wait(self._idle_timeout()):
                    self.wake.clear()
        except BaseException as exc:  # surfaced by run_demo
            sim.fatal = sim.fatal or exc
            sim.stop.set()

    # ---------------------------------------------------------------- crash
    def _down(self) -> bool:
        now = time.monotonic()
        if self.crash_requested:  # drop everything without a word; leases will run out
            self.crash_requested = False
            self.active.clear()
            self.down_until = now + self.sim.settings.lease_seconds + 0.5
            self.sim.stats.crashes.append(self.id)
        if self.down_until is None:
            return False
        if now < self.down_until:
            while True:  # whatever is routed to a crashed agent is lost too
                try:
                    self.inbox.get_nowait()
                except Empty:
                    break
            self.sim.stop.wait(min(0.1, self.down_until - now))
            return True
        self.down_until = None  # restarted: a new process registers again, figures kept
        self.sim.requeue_stale()  # its old leases have run out by now: hand those tasks back
        record = self.sim.team[self.id]
        self.sim.orch.registry.register_agent(
            self.id, sorted(self.capabilities), _agent_metadata(record)
        )
        return False

    # ---------------------------------------------------------------- getting work
    def _take_inbox(self) -> None:
        while True:
            try:
                task_id, retry_count, estimate = self.inbox.get_nowait()
            except Empty:
                return
            self._start(task_id, retry_count, estimate)

    def _claim(self) -> None:
        sim = self.sim
        while (
            self.pull
            and len(self.active) < self.capacity
            and not sim.stop.is_set()
            and (
                self.just_finished
                or (
                    self.no_work_round != sim.round
                    and any(r <= self.capabilities for r in sim.ready_requirements)
                )
            )
        ):
            self.just_finished = False
            if not sim.handout.acquire(blocking=False):
                return  # the dispatcher is routing: it may well route to us; do not wait
            try:
                with sim.fence:
                    task = sim.queue.claim_task(self.id)
                    if task is not None:
                        sim.ledger[task.id] = (self.id, task.retry_count)
            finally:
                sim.handout.release()
            if task is None:
                self.no_work_round = sim.round
                return
            sim.stats.claimed[self.id] += 1
            self._start(task.id, task.retry_count, task.estimated_duration_ms)

    def _start(self, task_id: str, retry_count: int, estimate: int | None) -> None:
        sim = self.sim
        with sim.fence:
            if not sim.holds(task_id, self.id, retry_count):
                sim.stats.lost[self.id] += 1
                return
            sim.queue.start_task(task_id)
        sim.stats.started[self.id] += 1
        now = time.monotonic()
        sim_ms = max(
            1, int((estimate or 30 * 60_000) * self.speed * self.rng.lognormvariate(0.0, 0.25))
        )
        fail_p = min(0.9, 1 - (1 - self.failure_rate) ** (sim_ms / REFERENCE_MS))
        fails = self.rng.random() < fail_p
        real = sim_ms / sim.settings.speedup / 1000
        if fails:
            real *= self.rng.uniform(0.2, 1.0)
        self.active[task_id] = _Attempt(
            task_id,
            retry_count,
            sim_ms,
            now + real,
            now + sim.settings.lease_seconds,
            fails=fails,
            fatal=fails and self.rng.random() < sim.settings.fatal_share,
        )

    # ---------------------------------------------------------------- finishing
    def _finish_due(self) -> None:
        sim = self.sim
        now = time.monotonic()
        for attempt in sorted(
            (a for a in self.active.values() if a.finish_at <= now), key=lambda a: a.finish_at
        ):
            del self.active[attempt.task_id]
            with sim.fence:
                if not sim.holds(attempt.task_id, self.id, attempt.retry_count):
                    sim.stats.lost[self.id] += 1
                    continue
                if attempt.fails:
                    error = self.rng.choice(PERMANENT_ERRORS if attempt.fatal else TRANSIENT_ERRORS)
                    task = sim.queue.fail_task(
                        attempt.task_id, error, should_retry=not attempt.fatal
                    )
                    sim.stats.failed[self.id] += 1
                    sim.last_failed_by[attempt.task_id] = self.id
                    if task.status.value == "failed":
                        sim.stats.permanent[self.id] += 1
                else:
                    sim.queue.complete_task(
                        attempt.task_id,
                        f"{self.id}: done in {attempt.sim_ms / 60_000:.0f} min",
                        {"duration_ms": attempt.sim_ms},
                    )
                    sim.stats.completed[self.id] += 1
                    self.just_finished = True
                del sim.ledger[attempt.task_id]
            sim.changed.set()

    def _heartbeat(self) -> None:
        """Renew the lease of each task being worked on once 40% of it has gone by. Per
        task, not ``heartbeat(agent_id=...)``: a restarted agent must not keep alive the
        leases of tasks it dropped when it crashed."""
        sim = self.sim
        now = time.monotonic()
        lease = sim.settings.lease_seconds
        for attempt in [a for a in self.active.values() if a.lease_due - now < 0.6 * lease]:
            with sim.fence:
                if not sim.holds(attempt.task_id, self.id, attempt.retry_count):
                    del self.active[attempt.task_id]  # taken away: forget it
                    sim.stats.lost[self.id] += 1
                    continue
                sim.queue.heartbeat(attempt.task_id)
            sim.stats.heartbeats[self.id] += 1
            attempt.lease_due = now + lease

    def _idle_timeout(self) -> float:
        now = time.monotonic()
        lease = self.sim.settings.lease_seconds
        deadlines = [self.sim.next_requeue, now + 0.25]
        deadlines += [a.finish_at for a in self.active.values()]
        deadlines += [a.lease_due - 0.6 * lease for a in self.active.values()]
        return max(0.0, min(deadlines) - now)


class _Dispatcher(threading.Thread):
    """Routes ready tasks with the router and assigns them (push side of the demo)."""

    def __init__(self, sim: _Simulation):
        super().__init__(name="dispatcher", daemon=True)
        self.sim = sim
        self.redecided: set[tuple[str, int]] = set()

    def run(self) -> None:
        sim = self.sim
        try:
            while not sim.stop.is_set():
                sim.changed.wait(0.25)
                sim.changed.clear()
                if sim.stop.is_set():
                    return
                self.round()
                sim.stop.wait(sim.settings.dispatch_interval)
        except BaseException as exc:
            sim.fatal = sim.fatal or exc
            sim.stop.set()

    def round(self) -> None:
        """One routing round: cancel what nobody can do, send retries elsewhere
        (``router.decide``), route the rest in one ``router.route_batch``."""
        sim = self.sim
        queue, router = sim.queue, sim.router
        live = {a.id: a for a in sim.agents.values() if a.down_until is None}
        not_live = sorted(sim.ghosts | (set(sim.agents) - set(live)))
        with sim.handout:  # no claims meanwhile: what is pending stays pending
            frame = queue.to_frame(status="pending")
            now = pd.Timestamp(queue.clock())
            ready = frame[
                (frame["waiting_on"] == 0)
                & (frame["retry_until"].isna() | (frame["retry_until"] <= now))
            ]
            handled: set[str] = set()
            for row in ready.itertuples(index=False):
                task = {
                    "id": row.task_id,
                    "requirements": list(row.requirements),
                    "priority": row.priority,
                }
                needed = frozenset(row.requirements)
                if not any(needed <= a.capabilities for a in sim.agents.values()):
                    decision = router.decide(task, exclude_agents=not_live)
                    queue.cancel_task(row.task_id, f"unroutable: {decision.reason}")
                    sim.stats.unroutable.append(row.task_id)
                    handled.add(row.task_id)
                elif (
                    row.retry_count > 0
                    and row.task_id in sim.last_failed_by
                    and (row.task_id, row.retry_count) not in self.redecided
                ):
                    self.redecided.add((row.task_id, row.retry_count))
                    last = sim.last_failed_by[row.task_id]
                    decision = router.decide(task, exclude_agents=sorted({*not_live, last}))
                    if decision.selected_agent is not None and self._assign(
                        row.task_id,
                        decision.selected_agent,
                        row.retry_count,
                        row.estimated_duration_ms,
                    ):
                        handled.add(row.task_id)
                        sim.stats.rerouted_retries += 1
            rest = ready[~ready["task_id"].isin(handled)]
            with sim.fence:  # the ledger holds every task of this run's agents
                load = Counter(agent for agent, _ in sim.ledger.values())
            free = {a: agent.capacity - load[a] for a, agent in live.items()}
            free = {a: n for a, n in free.items() if n > 0}
            routable = [
                r
                for r in rest.itertuples(index=False)
                if any(frozenset(r.requirements) <= live[a].capabilities for a in free)
            ]
            routable = routable[: sum(free.values())]
            if routable:
                batch = router.route_batch(
                    [
                        {
                            "id": r.task_id,
                            "requirements": list(r.requirements),
                            "priority": r.priority,
                        }
                        for r in routable
                    ],
                    exclude_agents=sorted(set(sim.team) - set(free) | set(not_live)),
                )
                by_id = {r.task_id: r for r in routable}
                for task_id, agent_id in zip(batch["task_id"], batch["agent_id"]):
                    if isinstance(agent_id, str):
                        r = by_id[task_id]
                        if self._assign(task_id, agent_id, r.retry_count, r.estimated_duration_ms):
                            handled.add(task_id)
            left = rest[~rest["task_id"].isin(handled)]
            sim.ready_requirements = list({frozenset(r) for r in left["requirements"]})
            sim.round += 1
            sim.stats.dispatch_rounds += 1
        for agent in sim.agents.values():
            agent.wake.set()

    def _assign(self, task_id: str, agent_id: str, retry_count: int, estimate: Any) -> bool:
        sim = self.sim
        with sim.fence:
            try:
                sim.queue.assign_task(task_id, agent_id)
            except OrchestrationError as exc:  # e.g. cancelled meanwhile
                sim.record_error(f"assign {task_id}", exc)
                return False
            sim.ledger[task_id] = (agent_id, retry_count)
        sim.stats.routed[agent_id] += 1
        estimate = None if pd.isna(estimate) else int(estimate)
        sim.agents[agent_id].inbox.put((task_id, retry_count, estimate))
        return True


# ---------------------------------------------------------------------- running
def _agent_metadata(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "max_concurrent_tasks": int(record["max_concurrent_tasks"]),
        "speed_factor": float(record.get("speed_factor", 1.0)),
        "failure_rate": float(record.get("failure_rate", 0.1)),
        "mode": record.get("mode", "pull"),
    }


def _as_records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return data.to_dict("records")
    return [dict(r) for r in data]


def run_demo(
    orch: Any,
    agents: Any,
    tasks: Any,
    seed: int = 7,
    *,
    settings: DemoSettings | None = None,
    progress: bool = True,
    report: str | Path | None = None,
    workload: str = "custom",
) -> dict[str, Any]:
    """Run the simulation on ``orch`` until every task in its queue is final.

    ``agents``: records (or a DataFrame) with agent_id, capabilities, max_concurrent_tasks,
    speed_factor, failure_rate, mode. ``tasks``: records for ``queue.create_tasks`` (use
    idempotency keys to make re-runs resume; see ``Workload.task_records``). ``report``:
    where to write the HTML report (None: none). Returns the summary dict (see
    :func:`format_summary`).
    """
    settings = settings or DemoSettings()
    team = _as_records(agents)
    task_records = _as_records(tasks)
    queue = orch.queue
    saved = (queue.lease_seconds, queue.retry_backoff_seconds, queue.retry_backoff_max_seconds)
    queue.lease_seconds = settings.lease_seconds
    queue.retry_backoff_seconds = settings.retry_backoff_seconds
    queue.retry_backoff_max_seconds = settings.retry_backoff_max_seconds
    started_wall = time.monotonic()
    started_at = datetime.now(UTC)
    try:
        for record in team:
            orch.registry.register_agent(
                record["agent_id"], list(record["capabilities"]), _agent_metadata(record)
            )
        before = queue.get_queue_statistics().total_count
        ids = queue.create_tasks(task_records) if task_records else []
        created = queue.get_queue_statistics().total_count - before
        sim = _Simulation(orch, team, seed, settings)
        orphans = _requeue_orphans(sim)
        finished, interrupted = _simulate(sim, progress)
    finally:
        queue.lease_seconds, queue.retry_backoff_seconds, queue.retry_backoff_max_seconds = saved
    elapsed = time.monotonic() - started_wall
    if sim.fatal is not None:
        raise sim.fatal
    summary = summarize(orch, sim.stats, started_at, elapsed)
    summary.update(
        {
            "workload": workload,
            "seed": seed,
            "finished": finished,
            "interrupted": interrupted,
            "tasks_in_workload": len(ids),
            "tasks_created": created,
            "tasks_reused": len(ids) - created,
            "orphans_requeued": orphans,
            "database": getattr(orch, "path", None),
        }
    )
    if report is not None:
        summary["report"] = str(write_report(orch, summary, report))
    return summary


def _requeue_orphans(sim: _Simulation) -> int:
    """Tasks an earlier (killed) run left assigned or running go back to pending."""
    frame = sim.queue.to_frame(status=["assigned", "running"])
    for task_id, agent_id in zip(frame["task_id"], frame["assigned_to"]):
        sim.queue.fail_task(
            task_id, "orphaned: the run holding it stopped (resumed)", should_retry=True
        )
        if isinstance(agent_id, str):
            sim.last_failed_by[task_id] = agent_id
    return len(frame)


def _crash_one(sim: _Simulation) -> None:
    """Ask one agent that holds at least two tasks (seeded choice) to crash."""
    busy = sorted(a.id for a in sim.agents.values() if len(a.active) >= 2)
    if busy:
        sim.crash_done = True
        victim = sim.agents[sim.rng.choice(busy)]
        victim.crash_requested = True
        victim.wake.set()


def _simulate(sim: _Simulation, progress: bool) -> tuple[bool, bool]:
    from tqdm import tqdm

    queue = sim.queue
    for record in sim.team.values():
        sim.agents[record["agent_id"]] = _Agent(sim, record)
    dispatcher = _Dispatcher(sim)
    counts = queue.get_queue_statistics().by_status()
    total = sum(counts.values())
    done = sum(counts[s] for s in FINAL)
    bar = tqdm(
        total=total,
        initial=done,
        desc="demo",
        unit="task",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
        leave=True,
    )
    finished = interrupted = False
    deadline = time.monotonic() + sim.settings.max_seconds
    if total < sim.settings.crash_min_tasks:
        sim.crash_done = True
    try:
        if done < total:
            dispatcher.round()  # route the first ready tasks before anyone claims
            for agent in sim.agents.values():
                agent.start()
            dispatcher.start()
        while not sim.stop.is_set():
            counts = queue.get_queue_statistics().by_status()
            done = sum(counts[s] for s in FINAL)
            bar.update(done - bar.n)
            bar.set_postfix_str(
                f"running {counts['running']}, retries {sum(sim.stats.failed.values())}, "
                f"failed {counts['failed']}, blocked {counts['blocked']}",
                refresh=False,
            )
            if done >= total:
                finished = True
                break
            if not sim.crash_done and done >= sim.settings.crash_at * total:
                _crash_one(sim)
            if time.monotonic() > deadline:
                sim.record_error(
                    "demo", TimeoutError(f"not finished after {sim.settings.max_seconds:.0f} s")
                )
                break
            sim.stop.wait(0.4)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sim.stop.set()
        sim.changed.set()
        for thread in [*sim.agents.values(), dispatcher]:
            if thread.is_alive():
                thread.join(timeout=10)
        bar.close()
    return finished, interrupted


# ---------------------------------------------------------------------- summary
def _series(counter: Counter) -> pd.Series:
    return pd.Series(dict(counter), dtype="int64")


def summarize(orch: Any, stats: _Stats, started_at: datetime, elapsed: float) -> dict[str, Any]:
    """Figures from the database (cumulative) and from this run's counters."""
    queue, registry, router = orch.queue, orch.registry, orch.router
    by_state = queue.get_queue_statistics().by_status()
    tasks = queue.to_frame()
    history = queue.history_frame()
    decisions = router.decisions()
    run_decisions = decisions[decisions["decided_at"] >= pd.Timestamp(started_at)]

    agents = registry.to_frame().set_index("agent_id")
    done_by = tasks[tasks["status"] == "completed"].groupby("assigned_to").size()
    attempts = history[history["from_status"].isin(["assigned", "running"])]
    fails_by = (
        attempts[attempts["to_status"].isin(["pending", "failed"])].groupby("agent_id").size()
    )
    figures_match = bool(
        (agents["total_completed"] == done_by.reindex(agents.index, fill_value=0)).all()
        and (agents["total_failed"] == fails_by.reindex(agents.index, fill_value=0)).all()
    )
    run_agents = sorted(
        set(stats.started)
        | set(stats.claimed)
        | set(stats.routed)
        | set(stats.lease_expired)
        | set(stats.completed)
    )
    table = (
        pd.DataFrame(
            {
                "completed": agents["total_completed"],
                "failed": agents["total_failed"],
                "success_rate": agents["success_rate"].round(3),
                "avg_minutes": (agents["avg_completion_ms"] / 60_000).round(1),
                "claimed": _series(stats.claimed),
                "routed_to": _series(stats.routed),
                "done_this_run": _series(stats.completed),
                "lease_expired": _series(stats.lease_expired),
            }
        )
        .reindex(agents.index.union(pd.Index(run_agents)))
        .fillna(0)
    )
    for column in ("completed", "failed", "claimed", "routed_to", "done_this_run", "lease_expired"):
        table[column] = table[column].astype("int64")
    table["per_second"] = (table["done_this_run"] / max(elapsed, 1e-9)).round(2)
    table.index.name = "agent_id"

    retries = attempts[attempts["to_status"] == "pending"]
    this_run = attempts["at"] >= pd.Timestamp(started_at)
    content = dict(zip(tasks["task_id"], tasks["content"]))
    blocked_roots = tasks.loc[tasks["status"] == "blocked", "blocked_by"].value_counts()
    return {
        "tasks": int(sum(by_state.values())),
        "by_state": {s: int(n) for s, n in by_state.items()},
        "elapsed_seconds": round(elapsed, 2),
        "agents": table.reset_index(),
        "figures_match": figures_match,
        "routing_decisions": int(len(run_decisions)),
        "routing_by_source": {
            str(k): int(v) for k, v in run_decisions["source"].value_counts().sort_index().items()
        },
        "routed_assignments": int(sum(stats.routed.values())),
        "rerouted_retries": stats.rerouted_retries,
        "claims": int(sum(stats.claimed.values())),
        "retries": int((retries["at"] >= pd.Timestamp(started_at)).sum()),
        "retries_total": int(len(retries)),
        "failed_attempts": int(sum(stats.failed.values())),
        "permanent_failures": int((this_run & (attempts["to_status"] == "failed")).sum()),
        "lease_expiries": int(sum(stats.lease_expired.values())),
        "heartbeats": int(sum(stats.heartbeats.values())),
        "requeue_calls": stats.requeue_calls,
        "dispatch_rounds": stats.dispatch_rounds,
        "unroutable_cancelled": list(stats.unroutable),
        "crashed_agents": list(stats.crashes),
        "blocked_by_root": {
            f"{content.get(k, '?')[:60]} ({str(k)[:8]})": int(v) for k, v in blocked_roots.items()
        },
        "warnings": list(stats.errors),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text (what ``athena-orch demo`` prints)."""
    s = summary
    state = s["by_state"]
    lines = [
        f"summary ({s.get('workload', '')} workload, {s.get('database') or 'in memory'}):",
        f"  {s['tasks']} tasks ({s.get('tasks_created', 0)} created, "
        f"{s.get('tasks_reused', 0)} already there)"
        + (
            f", {s['orphans_requeued']} left running by an earlier run requeued"
            if s.get("orphans_requeued")
            else ""
        ),
        "  by state: " + ", ".join(f"{k} {v}" for k, v in state.items() if v or k in FINAL),
        f"  time: {s['elapsed_seconds']:.1f} s"
        + ("" if s.get("finished", True) else "  (NOT FINISHED: re-run to resume)"),
        f"  routing: {s['routing_decisions']} decisions logged"
        + "".join(
            f" ({', '.join(f'{k} {v}' for k, v in s['routing_by_source'].items())})"
            for _ in [0]
            if s["routing_by_source"]
        )
        + f"; {s['routed_assignments']} tasks routed and assigned "
        f"({s['rerouted_retries']} retries sent to another agent), {s['claims']} claimed",
        f"  retries: {s['retries']} this run ({s['failed_attempts']} failed attempts, "
        f"{s['lease_expiries']} leases ran out); {s['permanent_failures']} failed for good; "
        f"{s['heartbeats']} heartbeats",
    ]
    if s["crashed_agents"]:
        lines.append(
            f"  crashed and restarted: {', '.join(s['crashed_agents'])} "
            "(its tasks came back through requeue_stale)"
        )
    if s["unroutable_cancelled"]:
        lines.append(
            f"  cancelled, no agent has the capabilities: {len(s['unroutable_cancelled'])} task(s)"
        )
    for root, n in s["blocked_by_root"].items():
        lines.append(f"  blocked: {n} task(s) downstream of {root!r}")
    lines.append("  agent figures match the task table: " + ("yes" if s["figures_match"] else "NO"))
    table = s["agents"].rename(
        columns={
            "success_rate": "success",
            "avg_minutes": "avg_min",
            "done_this_run": "done_now",
            "lease_expired": "leases",
        }
    )
    lines += ["", table.to_string(index=False), ""]
    if s.get("report"):
        lines.append(f"report: {s['report']}")
    for warning in s.get("warnings", [])[:5]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


# ---------------------------------------------------------------------- report
def _png(ax: Any) -> str:
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def report_path(db_path: str | Path) -> Path:
    """``<db stem>_report.html`` next to the database file; for a PostgreSQL URL,
    ``<database name>_report.html`` in the current folder."""
    if is_postgres_url(db_path):
        name = urlsplit(str(db_path)).path.strip("/") or "postgresql"
        return Path(f"{name}_report.html")
    path = Path(db_path)
    return path.with_name(f"{path.stem}_report.html")


def _showcase_task(orch: Any) -> dict[str, Any]:
    """Requirements with the most capable agents, for the score breakdown plot."""
    tasks = orch.queue.to_frame()
    frame = orch.registry.to_frame()
    best, best_n = [], -1
    for requirements in {tuple(r) for r in tasks["requirements"]}:
        n = sum(set(requirements) <= set(c) for c in frame["capabilities"])
        if n > best_n or (n == best_n and len(requirements) > len(best)):
            best, best_n = list(requirements), n
    return {"requirements": best}


REPORT_PAGE = string.Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>athena-orch demo report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } img { max-width: 100%; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; }
</style></head><body>
<h1>athena-orch demo report</h1>
<p>Database <code>$database</code>, written $written.</p>
$facts
<h2>Tasks by state</h2>
$states
<h2>Agents</h2>
$agents
<h2>Routing decisions this run</h2>
$routing
<h3>Latest decisions</h3>
$recent
<h2>Failed and cancelled tasks</h2>
$failed
$images
<h2>Summary</h2>
<pre>$summary</pre>
</body></html>
""")


def write_report(orch: Any, summary: dict[str, Any], path: str | Path) -> Path:
    """An HTML page with the summary tables and the four plots as embedded PNGs."""
    from . import viz

    path = Path(path)
    task = _showcase_task(orch)
    plots = {
        "Task dependency graph": viz.plot_dependency_dag(orch.queue),
        "Tasks per state over time": viz.plot_queue_over_time(orch.queue),
        "Agents and capabilities": viz.plot_capability_graph(orch.registry),
        f"Who would get a task needing {task['requirements']} now": viz.plot_score_breakdown(
            orch.router.explain(task),
            weights=orch.router.weights,
            title=f"Routing score breakdown for requirements {task['requirements']}",
        ),
    }
    images = "\n".join(
        f"<h2>{html.escape(title)}</h2>\n<img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{_png(ax)}'>"
        for title, ax in plots.items()
    )
    states = pd.DataFrame({"tasks": summary["by_state"]}).rename_axis("state")
    routing = pd.DataFrame({"decisions": summary["routing_by_source"]}).rename_axis("source")
    tasks = orch.queue.to_frame()
    failed = tasks.loc[
        tasks["status"].isin(["failed", "cancelled"]),
        ["task_id", "status", "task_type", "content", "error", "retry_count"],
    ]
    recent = orch.router.decisions().tail(15)
    recent = recent[
        [
            c
            for c in ("decided_at", "source", "task_id", "selected_agent", "reason")
            if c in recent.columns
        ]
    ]
    facts = {
        k: summary[k]
        for k in (
            "workload",
            "seed",
            "tasks",
            "elapsed_seconds",
            "routing_decisions",
            "routed_assignments",
            "claims",
            "retries",
            "permanent_failures",
            "lease_expiries",
            "heartbeats",
            "figures_match",
        )
        if k in summary
    }
    body = REPORT_PAGE.substitute(
        database=html.escape(str(summary.get("database"))),
        written=datetime.now(UTC).isoformat(timespec="seconds"),
        facts=pd.DataFrame({"value": facts}).to_html(),
        states=states.to_html(),
        agents=summary["agents"].to_html(index=False),
        routing=routing.to_html(),
        recent=recent.to_html(index=False),
        failed=failed.to_html(index=False) if len(failed) else "<p>None.</p>",
        images=images,
        summary=html.escape(format_summary(summary)),
    )
    path.write_text(body, encoding="utf-8")
    return path


# ---------------------------------------------------------------------- command line
def choose_workload(tasks: int | None, agents: int | None, seed: int) -> Workload:
    """data/ (the sample) unless a size is given, then a synthetic workload."""
    if tasks is None and agents is None:
        return load_workload()
    return synthetic_workload(tasks or 200, agents or 8, seed)


def run_demo_cli(args: Any) -> int:
    """``athena-orch demo``: args has ``db``, ``tasks``, ``agents``, ``seed``."""
    from . import connect
    from .exceptions import StorageError

    workload = choose_workload(args.tasks, args.agents, args.seed)
    db = str(args.db)
    print(
        f"athena-orch demo: {len(workload.agents)} simulated agents work through "
        f"{len(workload.tasks)} tasks ({workload.name} workload) in {shown_target(db)}",
        flush=True,
    )
    try:
        orch = connect(db)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_demo(
            orch,
            workload.agent_records(),
            workload.task_records(),
            args.seed,
            report=None if db == ":memory:" else report_path(db),
            workload=workload.name,
        )
    finally:
        orch.close()
    print(format_summary(summary), flush=True)
    if summary["interrupted"]:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if summary["finished"] else 1


__all__ = [
    "DemoSettings",
    "run_demo",
    "run_demo_cli",
    "format_summary",
    "summarize",
    "write_report",
    "report_path",
    "choose_workload",
]
