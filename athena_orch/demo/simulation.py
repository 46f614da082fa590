"""The default run: a discrete-event simulation on a simulated clock, so the same seed
gives the same outcome.

The queue's ``clock`` is the simulation's: time moves only from one event to the next
(an attempt ends, a lease is renewed, a retry's back-off runs out, a crashed agent comes
back), events at the same time are handled in the order they were scheduled, and after
them one round hands out work: the dispatcher routes ready tasks to the push agents, then
the pull agents claim theirs (in an order shuffled by the seed). Every step is a call of
the public API on the real database: ``assign_task`` / ``claim_tasks``, ``start_task``,
``heartbeat``, ``complete_task`` / ``fail_task`` (fenced with the agent and attempt),
``requeue_stale``. Nothing sleeps: a day of simulated work takes seconds.
"""

from __future__ import annotations

import heapq
import itertools
import random
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from ..models import Task, TaskStatus
from .dispatch import Dispatcher, RunFacts
from .report import FINAL
from .team import Attempt, SimulatedAgent


@dataclass
class DemoSettings:
    """Knobs of the simulated run, in simulated seconds. Queue settings are set for the
    run and put back afterwards."""

    lease_seconds: float = 7200.0  # renewed every third of it while an attempt runs
    round_seconds: float = 300.0  # agents look for work at most this often
    retry_backoff_seconds: float = 60.0
    retry_backoff_max_seconds: float = 900.0
    fatal_share: float = 0.1  # failures that are for good (no retry can help)
    crash_at: float | None = 0.3  # fraction of tasks final when one agent crashes; None: never
    crash_min_tasks: int = 100  # smaller queues finish too fast for a crash to show anything
    restart_seconds: float = 300.0  # a crashed agent is back this long after its leases ran out
    max_hours: float = 24 * 365.0  # give up past this much simulated time


class SimulatedClock:
    """The queue's clock for the run: a fixed start plus the simulated milliseconds."""

    def __init__(self, start: datetime):
        self.start, self.ms = start, 0

    def __call__(self) -> datetime:
        return self.start + timedelta(milliseconds=self.ms)

    def offset(self, at: datetime) -> int:
        """Milliseconds from the start to ``at`` (rounded up: never before it)."""
        return -((self.start - at) // timedelta(milliseconds=1))


def start_time(orch: Any) -> datetime:
    """Where the simulated clock starts: now, or later if an earlier simulated run of this
    database went past now (its times stay in order)."""
    latest = orch.queue.history_frame()["at"].max()
    now = datetime.now(UTC).replace(microsecond=0)
    if pd.isna(latest):
        return now
    return max(now, (pd.Timestamp(latest).ceil("s") + pd.Timedelta(seconds=1)).to_pydatetime())


@dataclass
class _Running:
    task_id: str
    attempt: int
    outcome: Attempt
    ends_ms: int


class Simulation:
    """The event loop. ``team``: the agents by id; ``clock``: the queue's clock (set by
    the caller); ``rng``: the run's own draws (the crash, the pull agents' order)."""

    def __init__(self, orch: Any, team: dict[str, SimulatedAgent], settings: DemoSettings,
                 facts: RunFacts, clock: SimulatedClock, seed: int):
        self.orch, self.queue, self.team = orch, orch.queue, team
        self.settings, self.facts, self.clock = settings, facts, clock
        self.rng = random.Random(seed)
        self.dispatcher = Dispatcher(orch, team, facts)
        self.events: list[tuple[int, int, str, Any]] = []
        self.order = itertools.count()
        self.running: dict[str, dict[str, _Running]] = {a: {} for a in team}
        self.down: set[str] = set()
        self.failed_by: dict[str, str] = {}
        self.beat_ms = max(1, int(settings.lease_seconds * 1000 / 3))

    def schedule(self, at_ms: int, kind: str, payload: Any = None) -> None:
        heapq.heappush(self.events, (at_ms, next(self.order), kind, payload))

    def run(self, progress: bool) -> tuple[bool, bool]:
        """Until every task is final (True, False), the clock passes ``max_hours`` or
        nothing is left to happen (False, False), or Ctrl-C (False, True: running tasks
        are handed back)."""
        from tqdm import tqdm

        total, done = self._progress()
        crash_due = self.settings.crash_at is not None and total >= self.settings.crash_min_tasks
        bar = tqdm(total=total, initial=done, desc="demo", unit="task", file=sys.stderr,
                   disable=not progress, dynamic_ncols=True, leave=True)
        limit_ms = int(self.settings.max_hours * 3_600_000)
        try:
            self._wake_for_backoffs()
            while True:
                if crash_due and done >= self.settings.crash_at * total and self._crash():
                    crash_due = False
                self._hand_out()
                total, done = self._progress()
                bar.update(done - bar.n)
                bar.set_postfix_str(f"simulated {self.clock.ms / 3_600_000:.1f} h",
                                    refresh=False)
                if done >= total:
                    return True, False
                if not self.events:
                    self.facts.warnings.append("demo: tasks left that no agent will take")
                    return False, False
                if self.events[0][0] > limit_ms:
                    self.facts.warnings.append(
                        f"demo: not finished after {self.settings.max_hours:.0f} simulated h")
                    return False, False
                self._next_events()
        except KeyboardInterrupt:
            self._hand_back()
            return False, True
        finally:
            bar.close()

    def _progress(self) -> tuple[int, int]:
        counts = self.queue.get_queue_statistics().by_status()
        return sum(counts.values()), sum(counts[s] for s in FINAL)

    def _next_events(self) -> None:
        """Move the clock on, handling events in order, to the first round due: the next
        multiple of ``round_seconds`` after an event that may have made work ready (a
        lease renewal alone does not)."""
        tick = max(1, int(self.settings.round_seconds * 1000))
        due = None
        while self.events and (due is None or self.events[0][0] <= due):
            at_ms, _, kind, payload = heapq.heappop(self.events)
            self.clock.ms = at_ms
            if getattr(self, f"_on_{kind}")(payload) and due is None:
                due = -(-at_ms // tick) * tick
        if due is not None:
            self.clock.ms = due

    # ------------------------------------------------------------------ events
    def _on_end(self, payload: tuple[str, _Running]) -> bool:
        agent_id, run = payload
        if self.running[agent_id].get(run.task_id) is not run:
            return False  # the agent crashed meanwhile: it says nothing
        del self.running[agent_id][run.task_id]
        outcome = run.outcome
        if outcome.error is None:
            self.queue.complete_task(
                run.task_id, f"{agent_id}: done in {outcome.ms / 60_000:.0f} min",
                metrics={"duration_ms": outcome.ms}, agent_id=agent_id, attempt=run.attempt)
            return True
        task = self.queue.fail_task(run.task_id, outcome.error, should_retry=not outcome.fatal,
                                    agent_id=agent_id, attempt=run.attempt)
        self.failed_by[run.task_id] = agent_id
        self._wake_at(task)
        return True

    def _on_beat(self, payload: tuple[str, _Running]) -> bool:
        agent_id, run = payload
        if self.running[agent_id].get(run.task_id) is run:
            self.queue.heartbeat(run.task_id, agent_id=agent_id, attempt=run.attempt)
            if self.clock.ms + self.beat_ms < run.ends_ms:
                self.schedule(self.clock.ms + self.beat_ms, "beat", payload)
        return False

    def _on_wake(self, _: None) -> bool:
        return True  # a back-off ran out: a round follows

    def _on_restart(self, agent_id: str) -> bool:
        """The crashed agent is back; like a starting Worker it runs ``requeue_stale``,
        which retries the tasks whose leases ran out (its own, by now)."""
        self.down.discard(agent_id)
        for task_id in self.queue.requeue_stale():
            self.failed_by[task_id] = agent_id
            self._wake_at(self.queue.get_task_status(task_id))
        return True

    # ------------------------------------------------------------------ rounds
    def _hand_out(self) -> None:
        """The dispatcher routes to the push agents first (and cancels what nobody can
        do), then each pull agent with room claims (and starts) what it can do; a pull
        agent that nothing ready suits does not ask."""
        live = [a for a in self.team if a not in self.down]
        room = {a: self.team[a].capacity - len(self.running[a]) for a in live}
        ready = self.dispatcher.ready()
        if ready.empty:
            return
        needs = {frozenset(r) for r in ready["requirements"]}
        nobody = any(not any(n <= a.capabilities for a in self.team.values()) for n in needs)
        if nobody or any(room[a] > 0 for a in live if self.team[a].push):
            assigned = self.dispatcher.round(live, self.failed_by, ready)
            for task in assigned:
                self.queue.start_task(task.id, agent_id=task.assigned_to, attempt=task.attempt)
                self._run(task.assigned_to, task)
            ready = ready[~ready["task_id"].isin([t.id for t in assigned])]
        needs = {frozenset(r) for r in ready["requirements"]}
        pull = sorted(a for a in live if not self.team[a].push and room[a] > 0
                      and any(n <= self.team[a].capabilities for n in needs))
        self.rng.shuffle(pull)
        for agent_id in pull:
            for task in self.queue.claim_tasks(agent_id, room[agent_id], start=True):
                self._run(agent_id, task)

    def _run(self, agent_id: str, task: Task) -> None:
        """The agent works on a started task: its end and lease renewals are scheduled."""
        outcome = self.team[agent_id].attempt(task.estimated_duration_ms)
        now = self.clock.ms
        run = _Running(task.id, task.attempt, outcome, now + outcome.ms)
        self.running[agent_id][task.id] = run
        if self.beat_ms < outcome.ms:
            self.schedule(now + self.beat_ms, "beat", (agent_id, run))
        self.schedule(run.ends_ms, "end", (agent_id, run))

    def _wake_at(self, task: Task | None) -> None:
        if task is not None and task.status is TaskStatus.PENDING and task.retry_until:
            self.schedule(max(self.clock.ms, self.clock.offset(task.retry_until)), "wake")

    def _wake_for_backoffs(self) -> None:
        """Retries an earlier run (or the orphan requeue) left waiting get their wake-up."""
        frame = self.queue.to_frame(status="pending")
        for at in sorted(frame["retry_until"].dropna().unique()):
            self.schedule(max(0, self.clock.offset(pd.Timestamp(at).to_pydatetime())), "wake")

    def _crash(self) -> bool:
        """The agent in the middle of the most tasks (a seeded choice among equals) goes
        silent: no outcome, no lease renewal. It comes back once its leases have run out."""
        busy = {a: len(r) for a, r in self.running.items() if r and a not in self.down}
        if not busy:
            return False
        victim = self.rng.choice(sorted(a for a, n in busy.items() if n == max(busy.values())))
        held = [self.queue.get_task_status(t) for t in self.running[victim]]
        self.running[victim] = {}
        self.down.add(victim)
        self.facts.crashes.append(victim)
        expires = max(self.clock.offset(t.lease_until) for t in held)
        self.schedule(expires + int(self.settings.restart_seconds * 1000), "restart", victim)
        return True

    def _hand_back(self) -> None:
        """Ctrl-C: running attempts go back to pending, no retry used."""
        for agent_id, runs in self.running.items():
            for run in runs.values():
                self.queue.release_task(run.task_id, agent_id=agent_id, attempt=run.attempt,
                                        reason="the demo was interrupted")
            runs.clear()
