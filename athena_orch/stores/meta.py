"""Meta-memory: what the system knows about its agents' work and its own decisions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from ..models import Task
from .base import SQLDatabase

#: Agent figures (counts and summed milliseconds) saturate here: BIGINT holds 2**63 - 1,
#: and a figure that overflowed would make every later outcome of its agent fail.
FIGURE_CAP = 2**62
#: What a skill figure counts outcomes of: the task's type, or each of its requirements.
SKILL_KINDS = ("task_type", "capability")


@dataclass
class OutcomeFigures:
    """What finished attempts add to the figures, each sum stopped at FIGURE_CAP: per agent
    (in id order) and per agent x skill (its task type, and each distinct capability it
    required; in key order), as counts and summed success milliseconds."""

    agents: list[str]
    agent_counts: list[int]
    agent_ms: list[int]
    skill_agents: list[str]
    skill_kinds: list[str]
    skills: list[str]
    skill_counts: list[int]
    skill_ms: list[int]


def outcome_figures(attempts: list[tuple[str, Task]], *, success: bool) -> OutcomeFigures:
    """The figures of finished attempts, (agent, task) pairs: a success counts the task's
    ``execution_duration_ms``, a failure no time."""
    agents: Counter = Counter()
    skills: Counter = Counter()
    times: Counter = Counter()  # the same keys -> summed success milliseconds
    for agent, task in attempts:
        ms = (task.execution_duration_ms or 0) if success else 0
        keys = [(agent, "task_type", task.task_type)]
        keys += [(agent, "capability", r) for r in dict.fromkeys(task.requirements)]
        agents[agent] += 1
        times[agent] += ms
        for key in keys:
            skills[key] += 1
            times[key] += ms
    ids, keys = sorted(agents), sorted(skills)
    return OutcomeFigures(
        ids, [min(agents[a], FIGURE_CAP) for a in ids], [min(times[a], FIGURE_CAP) for a in ids],
        [k[0] for k in keys], [k[1] for k in keys], [k[2] for k in keys],
        [min(skills[k], FIGURE_CAP) for k in keys], [min(times[k], FIGURE_CAP) for k in keys])


class MetaStore:
    """Agent performance figures and the routing decision log."""

    def __init__(self, db: SQLDatabase):
        self.db = db

    def record_outcome(self, agent_id: str, now: datetime, *, completed: int = 0,
                       failed: int = 0, success_ms: int = 0) -> None:
        """Add finished work to an agent's figures."""
        self.record_outcomes([agent_id], now, completed=[completed], failed=[failed],
                             success_ms=[success_ms])

    def record_outcomes(self, agent_ids: list[str], now: datetime, *, completed: list[int],
                        failed: list[int], success_ms: list[int]) -> None:
        """The same for many (lists aligned with ``agent_ids``; an agent may repeat); each
        sum stops at FIGURE_CAP."""
        self.db.execute("metrics_record", agent_ids=agent_ids, completed=completed,
                        failed=failed, success_ms=success_ms, now=now, cap=FIGURE_CAP)

    def record_failures(self, figures: OutcomeFigures, now: datetime) -> None:
        """Add failed attempts (:func:`outcome_figures`) to the agents' figures and to
        their figures per skill, in one statement."""
        if not figures.agents:
            return
        zeros, skill_zeros = [0] * len(figures.agents), [0] * len(figures.skills)
        self.db.execute("figures_record", agent_ids=figures.agents, agent_completed=zeros,
                        agent_failed=figures.agent_counts, agent_ms=figures.agent_ms,
                        skill_agents=figures.skill_agents, skill_kinds=figures.skill_kinds,
                        skills=figures.skills, skill_completed=skill_zeros,
                        skill_failed=figures.skill_counts, skill_ms=figures.skill_ms,
                        now=now, cap=FIGURE_CAP)

    def delete_figures(self, agent_id: str) -> None:
        self.db.execute("metrics_delete", agent_id=agent_id)
        self.db.execute("skill_metrics_delete", agent_id=agent_id)

    def skill_figures(self, kind: str, skill: str) -> dict[str, tuple[int, int, int]]:
        """agent_id -> (completed, failed, success_ms) at one skill, for agents that have
        finished work of it."""
        return {row[0]: row[1:] for row in self.db.fetch_rows("skill_figures", kind=kind,
                                                               skill=skill)}

    def skill_frame(self) -> pd.DataFrame:
        return self.db.fetch_frame("skill_metrics_frame")

    def agent_figures(self, agent_id: str) -> dict[str, Any]:
        """Completed, failed, summed success time, last update and live load of one agent."""
        return self.db.fetch_one("agent_figures_one", agent_id=agent_id)

    def all_agent_figures(self) -> dict[str, tuple]:
        """agent_id -> (completed, failed, success_ms, last_updated, load) for every agent
        that has figures or load."""
        return {row[0]: row[1:] for row in self.db.fetch_rows("agent_figures")}

    def routing_rows(self, task_type: str | None) -> list[tuple]:
        """The router's one read (see the ``routing_read`` query)."""
        return self.db.fetch_rows("routing_read", task_type=task_type)

    def record_decision(self, **decision: Any) -> None:
        """One routing decision (the columns of ``routing_decisions``)."""
        self.db.execute("decision_insert", **decision)

    def record_decisions(self, decisions: pd.DataFrame) -> None:
        self.db.insert_frame("decisions_insert", decisions)

    def decisions_frame(self, task_id: str | None = None, limit: int | None = None,
                        offset: int = 0) -> pd.DataFrame:
        """The log oldest first (of one task), paged in SQL so a page costs no whole log."""
        return self.db.fetch_frame("decisions_frame", task_id=task_id, limit=limit,
                                   offset=offset)

    def decision_count(self, task_id: str | None = None) -> int:
        return self.db.fetch_value("decisions_count", task_id=task_id)


MetaMemoryStore = MetaStore  # Athena's name for the same store
