"""``--real-time``: the same team as real :class:`~athena_orch.Worker` threads on the real
clock, to watch Workers at work. Their handlers sleep each attempt's simulated time divided
by ``speedup``; thread timing decides who gets what, so outcomes vary from run to run."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..models import Task
from ..worker import DoNotRetry, Result, Worker
from .dispatch import Dispatcher, RunFacts
from .report import FINAL
from .team import SimulatedAgent


@dataclass
class RealTimeSettings:
    """Knobs of the real-time run, in real seconds. ``speedup``: simulated milliseconds per
    real millisecond (6000: an hour of work takes 0.6 s)."""

    speedup: float = 6000.0
    lease_seconds: float = 3.0
    retry_backoff_seconds: float = 0.1
    retry_backoff_max_seconds: float = 1.0
    fatal_share: float = 0.1
    crash_at: float | None = 0.3
    crash_min_tasks: int = 100
    dispatch_interval: float = 0.25
    max_seconds: float = 300.0


class SimulatedFailure(Exception):
    """A transient failure of a simulated agent: the queue retries the task."""


def handler(agent: SimulatedAgent, speedup: float, working: set[str]) -> Callable[[Task], Result]:
    """A Worker handler that sleeps the attempt's scaled time, then returns or raises
    (``DoNotRetry`` for a failure for good). ``working``: ids of the tasks it is in."""
    draw = threading.Lock()  # the agent's stream is shared by the worker's threads

    def work(task: Task) -> Result:
        working.add(task.id)
        try:
            with draw:
                outcome = agent.attempt(task.estimated_duration_ms)
            time.sleep(outcome.ms / speedup / 1000)
            if outcome.fatal:
                raise DoNotRetry(outcome.error)
            if outcome.error is not None:
                raise SimulatedFailure(outcome.error)
            return Result(f"{agent.agent_id}: done in {outcome.ms / 60_000:.0f} min",
                          duration_ms=outcome.ms)
        finally:
            working.discard(task.id)

    return work


class _Team:
    """One Worker per agent (push agents' ``assigned_only``); a crashed agent's worker
    stops without a word (``stop(release=False)``) and a new one starts later."""

    def __init__(self, orch: Any, team: dict[str, SimulatedAgent], settings: RealTimeSettings,
                 facts: RunFacts):
        self.orch, self.team, self.settings, self.facts = orch, team, settings, facts
        self.workers: dict[str, Worker] = {}
        self.working: dict[str, set[str]] = {a: set() for a in team}
        self.down_until: dict[str, float] = {}

    def start(self, agent_id: str) -> None:
        agent = self.team[agent_id]
        worker = Worker(self.orch, agent_id,
                        handler(agent, self.settings.speedup, self.working[agent_id]),
                        capabilities=sorted(agent.capabilities), concurrency=agent.capacity,
                        assigned_only=agent.push, grace_seconds=1.0)
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
        if summary.errors:
            self.facts.warnings.append(f"worker {agent_id}: {summary.errors} queue calls "
                                       f"failed, the last: {summary.last_error}")


class _DispatcherThread(threading.Thread):
    """Runs dispatcher rounds whenever the queue changes (at least every
    ``dispatch_interval``); who failed a retried task comes from ``task_retried`` events."""

    def __init__(self, orch: Any, team: _Team, facts: RunFacts):
        super().__init__(name="demo-dispatcher", daemon=True)
        self.orch, self.team = orch, team
        self.dispatcher = Dispatcher(orch, team.team, facts)
        self.failed_by: dict[str, str] = {}
        self.halt = threading.Event()
        self.fatal: BaseException | None = None
        self.subscription = orch.events.subscribe(
            self._retried, pattern="task_retried", agent_id="demo-dispatcher")

    def _retried(self, event: Any) -> None:
        if event.agent_id is not None:
            self.failed_by[event.task_id] = event.agent_id

    def round(self) -> None:
        # a snapshot of both: the main thread crashes and restarts workers, events arrive
        self.dispatcher.round(list(self.team.workers), dict(self.failed_by))

    def run(self) -> None:
        wakeups = self.orch.queue.wakeups
        try:
            while not self.halt.is_set():
                seen = wakeups.generation
                self.round()
                self.halt.wait(self.team.settings.dispatch_interval)
                wakeups.wait(seen, 0.25)  # at once if anything changed meanwhile
        except BaseException as exc:  # surfaced by run_real_time
            self.fatal = exc

    def stop(self) -> None:
        self.halt.set()
        if self.is_alive():
            self.join(timeout=10)
        self.orch.events.unsubscribe(self.subscription)


def run_real_time(orch: Any, team: dict[str, SimulatedAgent], settings: RealTimeSettings,
                  facts: RunFacts, seed: int, progress: bool) -> tuple[bool, bool]:
    """Workers and the dispatcher until every task is final: (finished, interrupted).
    Ctrl-C stops the workers, which hand their running tasks back."""
    from tqdm import tqdm

    queue = orch.queue
    crew = _Team(orch, team, settings, facts)
    dispatcher = _DispatcherThread(orch, crew, facts)
    rng = random.Random(seed)
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
            for agent_id in team:
                crew.start(agent_id)
            dispatcher.start()
        while dispatcher.fatal is None:
            counts = queue.get_queue_statistics().by_status()
            done = sum(counts[s] for s in FINAL)
            bar.update(done - bar.n)
            bar.set_postfix_str(f"running {counts['running']}, failed {counts['failed']}, "
                                f"blocked {counts['blocked']}", refresh=False)
            if done >= total:
                finished = True
                break
            if crash_due and done >= settings.crash_at * total and crew.crash_one(rng):
                crash_due = False
            crew.restart_due()
            if time.monotonic() > deadline:
                facts.warnings.append(f"demo: not finished after {settings.max_seconds:.0f} s")
                break
            time.sleep(0.25)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        dispatcher.stop()
        crew.stop()
        bar.close()
    if dispatcher.fatal is not None:
        raise dispatcher.fatal
    return finished, interrupted
