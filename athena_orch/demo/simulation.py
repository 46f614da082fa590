"""The simulated team: one :class:`~athena_orch.Worker` per agent, a dispatcher that routes
work to the push agents, and one crash."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ..exceptions import InvalidTransitionError
from ..models import Task
from ..worker import DoNotRetry, Result, Worker
from .report import FINAL, summarize, write_report

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
    dispatch_interval: float = 0.25
    max_seconds: float = 300.0


class SimulatedFailure(Exception):
    """A transient failure of a simulated agent: the queue retries the task."""


@dataclass
class RunFacts:
    """What this run did that the database does not record."""

    workers: Counter = field(default_factory=Counter)  # the workers' summaries, added up
    rerouted_retries: int = 0
    claimed_first: int = 0  # routed, but a pull agent claimed the task before it was assigned
    unroutable: list[str] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def simulated_work(agent: dict[str, Any], settings: DemoSettings, seed: int,
                   working: set[str]) -> Callable[[Task], Result]:
    """The handler of one simulated agent: sleeps the task's estimate times the agent's
    speed (scaled by ``speedup``); fails part-way with a chance that grows with the length
    of the work, for good (``DoNotRetry``) in ``fatal_share`` of the failures. ``working``
    holds the ids of the tasks it is in the middle of."""
    rng = random.Random(f"{seed}:{agent['agent_id']}")
    speed = float(agent.get("speed_factor", 1.0))
    failure_rate = float(agent.get("failure_rate", 0.1))

    def work(task: Task) -> Result:
        working.add(task.id)
        try:
            return attempt(task)
        finally:
            working.discard(task.id)

    def attempt(task: Task) -> Result:
        sim_ms = max(1, int((task.estimated_duration_ms or 30 * 60_000) * speed
                            * rng.lognormvariate(0.0, 0.25)))
        seconds = sim_ms / settings.speedup / 1000
        if rng.random() < min(0.9, 1 - (1 - failure_rate) ** (sim_ms / REFERENCE_MS)):
            fatal = rng.random() < settings.fatal_share
            time.sleep(seconds * rng.uniform(0.2, 1.0))
            if fatal:
                raise DoNotRetry(rng.choice(PERMANENT_ERRORS))
            raise SimulatedFailure(rng.choice(TRANSIENT_ERRORS))
        time.sleep(seconds)
        return Result(f"{agent['agent_id']}: done in {sim_ms / 60_000:.0f} min",
                      duration_ms=sim_ms)

    return work


def _agent_metadata(record: dict[str, Any]) -> dict[str, Any]:
    """What the registry keeps of a simulated agent: the router reads its capacity, people
    read the rest."""
    return {
        "max_concurrent_tasks": int(record["max_concurrent_tasks"]),
        "speed_factor": float(record.get("speed_factor", 1.0)),
        "failure_rate": float(record.get("failure_rate", 0.1)),
        "mode": record.get("mode", "pull"),
    }


class _Team:
    """One Worker per agent (push agents' ``assigned_only``); a crashed agent's worker
    stops without a word (``stop(release=False)``) and a new one starts later."""

    def __init__(self, orch: Any, records: list[dict[str, Any]], seed: int,
                 settings: DemoSettings, facts: RunFacts):
        self.orch, self.settings, self.seed, self.facts = orch, settings, seed, facts
        self.records = {r["agent_id"]: r for r in records}
        self.workers: dict[str, Worker] = {}
        self.working: dict[str, set[str]] = {a: set() for a in self.records}
        self.down_until: dict[str, float] = {}

    def push(self, agent_id: str) -> bool:
        return self.records[agent_id].get("mode", "pull") == "push"

    def start(self, agent_id: str) -> None:
        record = self.records[agent_id]
        work = simulated_work(record, self.settings, self.seed, self.working[agent_id])
        worker = Worker(self.orch, agent_id, work,
                        capabilities=list(record["capabilities"]),
                        concurrency=int(record["max_concurrent_tasks"]),
                        assigned_only=self.push(agent_id), grace_seconds=1.0)
        worker.start()
        self.workers[agent_id] = worker

    def crash_one(self, rng: random.Random) -> bool:
        """The agent in the middle of the most tasks (a seeded choice among equals) drops
        them and goes down until their leases have run out."""
        busy = {a: len(self.working[a]) for a in self.workers if self.working[a]}
        if not busy:
            return False
        victim = rng.choice(sorted(a for a, n in busy.items() if n == max(busy.values())))
        self._retire(victim, release=False)
        self.down_until[victim] = time.monotonic() + self.settings.lease_seconds + 0.5
        self.facts.crashes.append(victim)
        return True

    def restart_due(self) -> None:
        """A restarted agent is a new Worker; it runs requeue_stale as it starts."""
        for agent_id, until in list(self.down_until.items()):
            if time.monotonic() >= until:
                del self.down_until[agent_id]
                self.start(agent_id)

    def stop(self) -> None:
        for worker in self.workers.values():
            worker.stop(wait=False)
        for agent_id in list(self.workers):
            self._retire(agent_id)

    def _retire(self, agent_id: str, release: bool = True) -> None:
        summary = self.workers.pop(agent_id).stop(release=release)
        counts = {k: v for k, v in asdict(summary).items() if isinstance(v, int)}
        self.facts.workers.update(counts)
        if summary.errors:
            self.facts.warnings.append(f"worker {agent_id}: {summary.errors} queue calls "
                                       f"failed, the last: {summary.last_error}")

    def retried(self) -> int:
        """Attempts that failed and were retried, by every worker of this run so far."""
        return self.facts.workers["retried"] + sum(w.summary.retried
                                                   for w in self.workers.values())


class _Dispatcher(threading.Thread):
    """Routes ready tasks to the push agents with room: ``router.decide`` for a retried
    task, so it goes to someone other than the agent that failed it (known from the
    ``task_retried`` events), ``router.route_batch`` for the rest, then
    ``queue.assign_task``, which wakes the agent's worker. A ready task nobody on the team
    can do is logged with ``router.decide`` and cancelled, which blocks its downstream."""

    def __init__(self, orch: Any, team: _Team, facts: RunFacts):
        super().__init__(name="demo-dispatcher", daemon=True)
        self.orch, self.team, self.facts = orch, team, facts
        self.last_failed_by: dict[str, str] = {}
        self.redecided: set[tuple[str, int]] = set()
        self.halt = threading.Event()
        self.fatal: BaseException | None = None
        self.subscription = orch.events.subscribe(
            self._retried, pattern="task_retried", agent_id="demo-dispatcher")

    def _retried(self, event: Any) -> None:
        if event.agent_id is not None:
            self.last_failed_by[event.task_id] = event.agent_id

    def run(self) -> None:
        wakeups = self.orch.queue.wakeups
        try:
            while not self.halt.is_set():
                seen = wakeups.generation
                self.round()
                self.halt.wait(self.team.settings.dispatch_interval)
                wakeups.wait(seen, 0.25)  # at once if anything changed meanwhile
        except BaseException as exc:  # surfaced by run_demo
            self.fatal = exc

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout=10)
        self.orch.events.unsubscribe(self.subscription)

    def round(self) -> None:
        queue, router, team = self.orch.queue, self.orch.router, self.team
        frame = queue.to_frame(status="pending")
        now = pd.Timestamp(queue.clock())
        ready = frame[(frame["waiting_on"] == 0)
                      & (frame["retry_until"].isna() | (frame["retry_until"] <= now))]
        if ready.empty:
            return
        live = list(team.workers)  # a snapshot: the main thread crashes and restarts them
        agents = self.orch.registry.to_frame().set_index("agent_id")
        free = {a: int(agents.at[a, "max_concurrent_tasks"] - agents.at[a, "current_load"])
                for a in live if team.push(a) and a in agents.index}
        free = {a: n for a, n in free.items() if n > 0}
        exclude = sorted(set(agents.index) - set(free))  # pull, down, full, other workloads'
        skills = {a: frozenset(r["capabilities"]) for a, r in team.records.items()}
        batch = []
        for row in ready.itertuples(index=False):
            task = {"id": row.task_id, "requirements": list(row.requirements),
                    "priority": row.priority}
            needed = frozenset(row.requirements)
            if not any(needed <= s for s in skills.values()):
                decision = router.decide(task, exclude_agents=sorted(set(agents.index)
                                                                     - set(live)))
                queue.cancel_task(row.task_id, f"unroutable: {decision.reason}")
                self.facts.unroutable.append(row.task_id)
            elif not any(needed <= skills[a] for a in free):
                continue  # left to the pull agents
            elif (row.retry_count and row.task_id in self.last_failed_by
                  and (row.task_id, row.retry_count) not in self.redecided):
                self.redecided.add((row.task_id, row.retry_count))
                failed_by = self.last_failed_by[row.task_id]
                decision = router.decide(task, exclude_agents=sorted({*exclude, failed_by}))
                if decision.selected_agent and self._assign(row.task_id, decision.selected_agent):
                    self.facts.rerouted_retries += 1
            else:
                batch.append(task)
        batch = batch[: sum(free.values())]
        if batch:
            routed = router.route_batch(batch, exclude_agents=exclude)
            for task_id, agent_id in zip(routed["task_id"], routed["agent_id"]):
                if isinstance(agent_id, str):
                    self._assign(task_id, agent_id)

    def _assign(self, task_id: str, agent_id: str) -> bool:
        try:
            self.orch.queue.assign_task(task_id, agent_id)
        except InvalidTransitionError:  # a pull agent claimed it meanwhile
            self.facts.claimed_first += 1
            return False
        return True


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
    :func:`~athena_orch.demo.format_summary`).
    """
    settings = settings or DemoSettings()
    team_records = _as_records(agents)
    task_records = _as_records(tasks)
    queue = orch.queue
    saved = (queue.lease_seconds, queue.retry_backoff_seconds, queue.retry_backoff_max_seconds)
    queue.lease_seconds = settings.lease_seconds
    queue.retry_backoff_seconds = settings.retry_backoff_seconds
    queue.retry_backoff_max_seconds = settings.retry_backoff_max_seconds
    started_wall = time.monotonic()
    started_at = datetime.now(UTC)
    facts = RunFacts()
    try:
        for record in team_records:
            orch.registry.register_agent(
                record["agent_id"], list(record["capabilities"]), _agent_metadata(record)
            )
        before = queue.get_queue_statistics().total_count
        ids = queue.create_tasks(task_records) if task_records else []
        created = queue.get_queue_statistics().total_count - before
        team = _Team(orch, team_records, seed, settings, facts)
        dispatcher = _Dispatcher(orch, team, facts)
        orphans = _requeue_orphans(queue)
        finished, interrupted = _simulate(orch, team, dispatcher, random.Random(seed), progress)
    finally:
        queue.lease_seconds, queue.retry_backoff_seconds, queue.retry_backoff_max_seconds = saved
    elapsed = time.monotonic() - started_wall
    if dispatcher.fatal is not None:
        raise dispatcher.fatal
    summary = summarize(orch, facts, started_at, elapsed)
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


def _requeue_orphans(queue: Any) -> int:
    """Tasks an earlier (killed) run left assigned or running go back to pending."""
    frame = queue.to_frame(status=["assigned", "running"])
    for task_id in frame["task_id"]:
        queue.fail_task(task_id, "orphaned: the run holding it stopped (resumed)",
                        should_retry=True)
    return len(frame)


def _simulate(orch: Any, team: _Team, dispatcher: _Dispatcher, rng: random.Random,
              progress: bool) -> tuple[bool, bool]:
    from tqdm import tqdm

    queue, settings = orch.queue, team.settings
    counts = queue.get_queue_statistics().by_status()
    total = sum(counts.values())
    done = sum(counts[s] for s in FINAL)
    bar = tqdm(total=total, initial=done, desc="demo", unit="task", file=sys.stderr,
               disable=not progress, dynamic_ncols=True, leave=True)
    finished = interrupted = False
    crash_due = settings.crash_at is not None and total >= settings.crash_min_tasks
    deadline = time.monotonic() + settings.max_seconds
    try:
        if done < total:
            dispatcher.round()  # the push agents' first work, before anyone claims
            for agent_id in team.records:
                team.start(agent_id)
            dispatcher.start()
        while dispatcher.fatal is None:
            counts = queue.get_queue_statistics().by_status()
            done = sum(counts[s] for s in FINAL)
            bar.update(done - bar.n)
            bar.set_postfix_str(f"running {counts['running']}, retries {team.retried()}, "
                                f"failed {counts['failed']}, blocked {counts['blocked']}",
                                refresh=False)
            if done >= total:
                finished = True
                break
            if crash_due and done >= settings.crash_at * total and team.crash_one(rng):
                crash_due = False
            team.restart_due()
            if time.monotonic() > deadline:
                team.facts.warnings.append(f"demo: not finished after {settings.max_seconds:.0f} s")
                break
            time.sleep(0.25)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        dispatcher.stop()
        team.stop()
        bar.close()
    return finished, interrupted
