"""The simulated agents: how long an attempt takes and whether it fails, drawn from one
seeded random stream per agent, and how they are registered. Both clocks use these."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import pandas as pd

REFERENCE_MS = 45 * 60_000  # failure_rate is the chance of failing a task this long
DEFAULT_ESTIMATE_MS = 30 * 60_000  # a task without an estimate
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


@dataclass(frozen=True)
class Attempt:
    """What one attempt will do: take ``ms`` simulated milliseconds, then succeed
    (``error`` None) or fail, for good when ``fatal`` (no retry can help)."""

    ms: int
    error: str | None = None
    fatal: bool = False


class SimulatedAgent:
    """One agent's behaviour: an attempt lasts the task's estimate times the agent's
    ``speed_factor`` (with log-normal noise) and fails with a chance that grows with its
    length (``failure_rate`` is the chance for a 45-minute task); a failure comes part-way
    through and is for good in ``fatal_share`` of the cases. Draws come from a stream
    seeded by the run's seed and the agent's id, so they do not depend on other agents."""

    def __init__(self, record: dict[str, Any], seed: int, fatal_share: float):
        self.agent_id = str(record["agent_id"])
        self.capabilities = frozenset(record["capabilities"])
        self.capacity = int(record["max_concurrent_tasks"])
        self.push = record.get("mode", "pull") == "push"
        self.speed = float(record.get("speed_factor", 1.0))
        self.failure_rate = float(record.get("failure_rate", 0.1))
        self.fatal_share = fatal_share
        self.rng = random.Random(f"{seed}:{self.agent_id}")

    def attempt(self, estimated_ms: int | None) -> Attempt:
        rng = self.rng
        ms = max(1, int((estimated_ms or DEFAULT_ESTIMATE_MS) * self.speed
                        * rng.lognormvariate(0.0, 0.25)))
        if rng.random() < min(0.9, 1 - (1 - self.failure_rate) ** (ms / REFERENCE_MS)):
            fatal = rng.random() < self.fatal_share
            errors = PERMANENT_ERRORS if fatal else TRANSIENT_ERRORS
            return Attempt(max(1, int(ms * rng.uniform(0.2, 1.0))), rng.choice(errors), fatal)
        return Attempt(ms)


def as_records(data: Any) -> list[dict[str, Any]]:
    if isinstance(data, pd.DataFrame):
        return data.to_dict("records")
    return [dict(r) for r in data]


def register_team(orch: Any, records: list[dict[str, Any]]) -> None:
    """Register (or re-register, keeping their figures) the agents. The registry keeps
    what the router reads (capacity) and what people read (the rest)."""
    for record in records:
        orch.registry.register_agent(record["agent_id"], list(record["capabilities"]), {
            "max_concurrent_tasks": int(record["max_concurrent_tasks"]),
            "speed_factor": float(record.get("speed_factor", 1.0)),
            "failure_rate": float(record.get("failure_rate", 0.1)),
            "mode": record.get("mode", "pull"),
        })
