"""The dispatcher: routes ready tasks to the push agents with room, through the router."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from ..exceptions import InvalidTransitionError
from ..models import Task
from .team import SimulatedAgent


@dataclass
class RunFacts:
    """What this run did that the database does not record."""

    retries_rerouted: int = 0  # retries the dispatcher sent to another agent
    claimed_first: int = 0  # routed, but a pull agent claimed the task before it was assigned
    unroutable: list[str] = field(default_factory=list)  # task ids cancelled
    crashes: list[str] = field(default_factory=list)  # agent ids
    warnings: list[str] = field(default_factory=list)


class Dispatcher:
    """One round routes the ready tasks: ``router.decide`` for a retried task, so it goes
    to someone other than the agent that failed it, ``router.route_batch`` for the rest,
    then ``queue.assign_task``. A ready task nobody on the team can do is logged with
    ``router.decide`` and cancelled, which blocks its downstream. Tasks only pull agents
    can do are left to them."""

    def __init__(self, orch: Any, team: dict[str, SimulatedAgent], facts: RunFacts):
        self.orch, self.team, self.facts = orch, team, facts
        self.redecided: set[tuple[str, int]] = set()

    def ready(self) -> pd.DataFrame:
        """The pending tasks whose dependencies are completed and back-off is over."""
        queue = self.orch.queue
        frame = queue.to_frame(status="pending")
        now = pd.Timestamp(queue.clock())
        return frame[(frame["waiting_on"] == 0)
                     & (frame["retry_until"].isna() | (frame["retry_until"] <= now))]

    def round(self, live: Iterable[str], failed_by: Mapping[str, str],
              ready: pd.DataFrame | None = None) -> list[Task]:
        """Assign ready tasks (``ready``: read now when not given) to the ``live`` push
        agents; ``failed_by``: the agent whose attempt last failed, by task id. Returns
        the tasks assigned."""
        queue, router, team = self.orch.queue, self.orch.router, self.team
        ready = self.ready() if ready is None else ready
        if ready.empty:
            return []
        live = sorted(live)
        agents = self.orch.registry.to_frame().set_index("agent_id")
        free = {a: int(agents.at[a, "max_concurrent_tasks"] - agents.at[a, "current_load"])
                for a in live if team[a].push and a in agents.index}
        free = {a: n for a, n in free.items() if n > 0}
        exclude = sorted(set(agents.index) - set(free))  # pull, down, full, other workloads'
        assigned: list[Task] = []
        batch = []
        for row in ready.itertuples(index=False):
            task = {"id": row.task_id, "requirements": list(row.requirements),
                    "priority": row.priority}
            needed = frozenset(row.requirements)
            if not any(needed <= a.capabilities for a in team.values()):
                decision = router.decide(task, exclude_agents=sorted(set(agents.index)
                                                                     - set(live)))
                queue.cancel_task(row.task_id, f"unroutable: {decision.reason}")
                self.facts.unroutable.append(row.task_id)
            elif not any(needed <= team[a].capabilities for a in free):
                continue  # left to the pull agents
            elif (row.retry_count and row.task_id in failed_by
                  and (row.task_id, row.retry_count) not in self.redecided):
                self.redecided.add((row.task_id, row.retry_count))
                decision = router.decide(
                    task, exclude_agents=sorted({*exclude, failed_by[row.task_id]}))
                if decision.selected_agent:
                    done = self._assign(row.task_id, decision.selected_agent)
                    if done is not None:
                        assigned.append(done)
                        self.facts.retries_rerouted += 1
                        free[decision.selected_agent] -= 1
            else:
                batch.append(task)
        batch = batch[: max(0, sum(free.values()))]
        if batch:
            routed = router.route_batch(batch, exclude_agents=exclude)
            for task_id, agent_id in zip(routed["task_id"], routed["agent_id"]):
                if isinstance(agent_id, str):
                    done = self._assign(task_id, agent_id)
                    if done is not None:
                        assigned.append(done)
        return assigned

    def _assign(self, task_id: str, agent_id: str) -> Task | None:
        try:
            return self.orch.queue.assign_task(task_id, agent_id)
        except InvalidTransitionError:  # a pull agent claimed it meanwhile (real time)
            self.facts.claimed_first += 1
            return None
