"""Workloads for the demo: the sample team and task graph in ``data/``, and synthetic ones.

A :class:`Workload` is two DataFrames (agents, tasks) plus a name. Everything here is
deterministic for a given seed, so the committed ``data/`` files can be rebuilt byte for
byte::

    python -m athena_orch.workload --out data/                      # the sample (data/)
    python -m athena_orch.workload --out /tmp/big --tasks 2000 --agents 40 --seed 3

Loading gives records ready for the library::

    wl = load_workload("data/")                       # or sample_workload(), synthetic_workload()
    for agent in wl.agent_records():
        orch.registry.register_agent(agent["agent_id"], agent["capabilities"],
                                     {"max_concurrent_tasks": agent["max_concurrent_tasks"]})
    ids = orch.queue.create_tasks(wl.task_records())  # keys, dependencies by key,
                                                      # idempotency keys: re-runs reuse tasks

CSV columns (lists are ``;``-separated) are described in ``data/README.md``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ValidationError

AGENT_COLUMNS = [
    "agent_id",
    "capabilities",
    "max_concurrent_tasks",
    "speed_factor",
    "failure_rate",
    "mode",
]
TASK_COLUMNS = [
    "key",
    "content",
    "task_type",
    "priority",
    "requirements",
    "dependencies",
    "estimated_duration_ms",
]
SAMPLE_SEED = 7
SAMPLE_NAME = "sample"
MINUTE_MS = 60_000
DATA_DIR = Path(__file__).resolve().parent.parent / "data"


@dataclass
class Workload:
    """A team of agents and a task graph.

    ``agents``: one row per agent (``AGENT_COLUMNS``; ``capabilities`` a list).
    ``tasks``: one row per task (``TASK_COLUMNS``; ``requirements`` and ``dependencies``
    lists, dependencies naming other rows' ``key``), dependencies before dependents.
    ``name`` prefixes the idempotency keys, so two workloads never share tasks.
    """

    name: str
    agents: pd.DataFrame
    tasks: pd.DataFrame

    def agent_records(self) -> list[dict[str, Any]]:
        """One dict per agent: agent_id, capabilities (list), max_concurrent_tasks,
        speed_factor, failure_rate, mode ('pull' claims work, 'push' waits to be routed)."""
        return [
            {
                "agent_id": str(r.agent_id),
                "capabilities": list(r.capabilities),
                "max_concurrent_tasks": int(r.max_concurrent_tasks),
                "speed_factor": float(r.speed_factor),
                "failure_rate": float(r.failure_rate),
                "mode": str(r.mode),
            }
            for r in self.agents.itertuples(index=False)
        ]

    def task_records(self) -> list[dict[str, Any]]:
        """Records for ``queue.create_tasks``: ``key``, dependencies naming keys, and an
        ``idempotency_key`` (``<name>:<key>``) so creating them again reuses the tasks."""
        return [
            {
                "key": str(r.key),
                "content": str(r.content),
                "task_type": str(r.task_type),
                "priority": str(r.priority),
                "requirements": list(r.requirements),
                "dependencies": list(r.dependencies),
                "estimated_duration_ms": int(r.estimated_duration_ms),
                "idempotency_key": f"{self.name}:{r.key}",
            }
            for r in self.tasks.itertuples(index=False)
        ]

    def write_csv(self, out_dir: str | Path) -> tuple[Path, Path]:
        """Write ``agents.csv`` and ``tasks.csv`` (lists joined by ';') into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        agents = self.agents[AGENT_COLUMNS].copy()
        agents["capabilities"] = agents["capabilities"].map(";".join)
        tasks = self.tasks[TASK_COLUMNS].copy()
        for column in ("requirements", "dependencies"):
            tasks[column] = tasks[column].map(";".join)
        agents_path, tasks_path = out / "agents.csv", out / "tasks.csv"
        agents.to_csv(agents_path, index=False, lineterminator="\n")
        tasks.to_csv(tasks_path, index=False, lineterminator="\n")
        return agents_path, tasks_path

    def __repr__(self) -> str:
        return f"<Workload {self.name!r}: {len(self.agents)} agents, {len(self.tasks)} tasks>"


# ---------------------------------------------------------------------- reading CSVs
def _split(cell: Any) -> list[str]:
    return [p.strip() for p in str(cell).split(";") if p.strip()]


def read_agents(path: str | Path) -> pd.DataFrame:
    """``agents.csv`` as a DataFrame with ``capabilities`` as lists (``mode`` defaults to pull)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted(set(AGENT_COLUMNS) - {"mode"} - set(frame.columns))
    if missing:
        raise ValidationError(f"{path}: missing columns {missing}")
    if "mode" not in frame:
        frame["mode"] = "pull"
    frame["mode"] = frame["mode"].replace("", "pull")
    frame["capabilities"] = frame["capabilities"].map(_split)
    frame["max_concurrent_tasks"] = frame["max_concurrent_tasks"].astype(int)
    frame["speed_factor"] = frame["speed_factor"].astype(float)
    frame["failure_rate"] = frame["failure_rate"].astype(float)
    return frame[AGENT_COLUMNS]


def read_tasks(path: str | Path) -> pd.DataFrame:
    """``tasks.csv`` as a DataFrame with ``requirements``/``dependencies`` as lists."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = sorted(set(TASK_COLUMNS) - set(frame.columns))
    if missing:
        raise ValidationError(f"{path}: missing columns {missing}")
    for column in ("requirements", "dependencies"):
        frame[column] = frame[column].map(_split)
    frame["priority"] = frame["priority"].replace("", "medium")
    frame["estimated_duration_ms"] = frame["estimated_duration_ms"].astype(int)
    return frame[TASK_COLUMNS]


def load_workload(data_dir: str | Path | None = None, name: str = SAMPLE_NAME) -> Workload:
    """The workload in ``data_dir`` (default: the repository's ``data/``). Without the
    CSVs there (e.g. an installed package), the same sample is generated in memory."""
    directory = DATA_DIR if data_dir is None else Path(data_dir)
    agents, tasks = directory / "agents.csv", directory / "tasks.csv"
    if not (agents.exists() and tasks.exists()):
        if data_dir is None:
            return sample_workload()
        raise FileNotFoundError(f"{directory} has no agents.csv and tasks.csv")
    return Workload(name, read_agents(agents), read_tasks(tasks))


# ---------------------------------------------------------------------- the sample
# The sample team: a small research-and-engineering group. failure_rate is the chance of
# failing a task of median length (longer tasks fail more often); speed_factor scales
# durations (below 1 = faster).
SAMPLE_TEAM = [
    ("research-ada", "research;web_search;summarization", 3, 1.0, 0.08, "pull"),
    ("research-ben", "research;web_search;planning", 2, 1.3, 0.12, "push"),
    ("analyst-cho", "sql;data_analysis;statistics;visualization", 3, 0.9, 0.10, "pull"),
    ("analyst-dev", "data_analysis;statistics;python", 2, 1.1, 0.15, "push"),
    ("coder-eli", "python;testing;sql", 4, 0.8, 0.12, "pull"),
    ("coder-fay", "python;testing;data_analysis;visualization", 3, 1.0, 0.20, "push"),
    ("reviewer-gus", "code_review;editing;testing", 3, 0.7, 0.05, "pull"),
    ("writer-hal", "writing;editing;summarization", 3, 1.2, 0.07, "push"),
    ("planner-ivy", "planning;writing;research", 2, 1.0, 0.05, "pull"),
    (
        "generalist-jo",
        "python;research;writing;sql;summarization;code_review",
        2,
        1.6,
        0.25,
        "pull",
    ),
    ("intern-kim", "summarization;data_analysis;visualization", 2, 1.8, 0.30, "push"),
]

STUDIES = [
    ("churn", "customer churn"),
    ("pricing", "pricing elasticity"),
    ("backlog", "the support ticket backlog"),
    ("onboarding", "the onboarding funnel"),
    ("llm-evals", "LLM evaluation benchmarks"),
    ("retrieval", "retrieval quality"),
    ("latency", "API latency regressions"),
    ("cloud-cost", "cloud cost growth"),
    ("fraud", "payment fraud signals"),
    ("search", "search relevance"),
]
FEATURES = [
    ("rate-limiter", "a per-tenant rate limiter"),
    ("csv-import", "CSV import"),
    ("audit-log", "an audit log"),
    ("sso", "SSO login"),
    ("webhooks", "webhook retries"),
    ("usage-dash", "the usage dashboard"),
    ("batch-export", "a batch export API"),
    ("prompt-cache", "a prompt cache"),
]
ANGLES = [
    "academic papers",
    "industry reports",
    "internal post-mortems",
    "open-source tools",
    "competitor products",
]
METHODS = [
    "a cohort analysis",
    "a regression model",
    "an A/B test readout",
    "a time-series decomposition",
    "a causal impact analysis",
    "a clustering pass",
]
PARTS = [
    "data model",
    "API endpoint",
    "background worker",
    "CLI command",
    "schema migration",
    "UI component",
    "config and defaults",
]


class _TaskBuilder:
    """Collects task rows; durations drawn in minutes from a range."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.rows: list[dict[str, Any]] = []

    def add(
        self,
        key: str,
        content: str,
        task_type: str,
        requirements: list[str],
        dependencies: list[str],
        minutes: tuple[int, int],
        priority: str = "medium",
    ) -> str:
        low, high = minutes
        duration = round(self.rng.uniform(low, high)) * MINUTE_MS
        self.rows.append(
            {
                "key": key,
                "content": content,
                "task_type": task_type,
                "priority": priority,
                "requirements": requirements,
                "dependencies": dependencies,
                "estimated_duration_ms": duration,
            }
        )
        return key

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=TASK_COLUMNS)


def _study(b: _TaskBuilder, slug: str, topic: str) -> str:
    rng = b.rng
    scope = b.add(
        f"{slug}.scope",
        f"Scope the study of {topic} and agree the research questions",
        "planning",
        ["planning"],
        [],
        (15, 40),
        "high",
    )
    lit = [
        b.add(
            f"{slug}.lit{i + 1}",
            f"Survey prior work on {topic}: {angle}",
            "research",
            ["research", "web_search"],
            [scope],
            (30, 90),
        )
        for i, angle in enumerate(rng.sample(ANGLES, rng.randint(2, 3)))
    ]
    summary = b.add(
        f"{slug}.lit-summary",
        f"Summarise the literature on {topic}",
        "summarization",
        ["summarization"],
        lit,
        (20, 45),
    )
    pull = b.add(
        f"{slug}.pull",
        f"Pull the data on {topic} from the warehouse",
        "data_engineering",
        ["sql"],
        [scope],
        (10, 30),
        "high",
    )
    clean = b.add(
        f"{slug}.clean",
        f"Clean and validate the dataset on {topic}",
        "analysis",
        ["python", "data_analysis"],
        [pull],
        (30, 70),
    )
    analyses = [
        b.add(
            f"{slug}.analysis{i + 1}",
            f"Run {method} on {topic}",
            "analysis",
            ["statistics"] if i == 0 else ["data_analysis", "statistics"],
            [clean],
            (30, 90),
        )
        for i, method in enumerate(rng.sample(METHODS, rng.randint(1, 2)))
    ]
    charts = b.add(
        f"{slug}.charts",
        f"Chart the findings on {topic}",
        "visualization",
        ["visualization"],
        analyses,
        (15, 40),
    )
    draft = b.add(
        f"{slug}.draft",
        f"Draft the report on {topic}",
        "writing",
        ["writing"],
        [summary, charts],
        (45, 120),
    )
    review = b.add(
        f"{slug}.review",
        f"Review the report on {topic} for accuracy",
        "review",
        ["editing"],
        [draft],
        (15, 40),
        "high",
    )
    return b.add(
        f"{slug}.publish",
        f"Publish the report on {topic} to the team wiki",
        "writing",
        ["writing"],
        [review],
        (5, 15),
        "low",
    )


def _feature(b: _TaskBuilder, slug: str, feature: str) -> str:
    rng = b.rng
    spec = b.add(
        f"{slug}.spec",
        f"Write the design spec for {feature}",
        "planning",
        ["planning", "writing"],
        [],
        (20, 50),
        "high",
    )
    prior = b.add(
        f"{slug}.prior-art",
        f"Research existing libraries for {feature}",
        "research",
        ["research"],
        [spec],
        (20, 60),
    )
    impl = [
        b.add(
            f"{slug}.impl{i + 1}",
            f"Implement {feature}: {part}",
            "coding",
            ["python"],
            [spec, prior],
            (40, 120),
        )
        for i, part in enumerate(rng.sample(PARTS, rng.randint(2, 3)))
    ]
    tests = b.add(
        f"{slug}.tests",
        f"Write tests for {feature}",
        "testing",
        ["python", "testing"],
        impl,
        (30, 70),
    )
    ci = b.add(
        f"{slug}.ci",
        f"Run the full test suite for {feature}",
        "testing",
        ["testing"],
        [tests],
        (10, 25),
    )
    review = b.add(
        f"{slug}.code-review",
        f"Code review of {feature}",
        "review",
        ["code_review"],
        [ci],
        (20, 45),
        "high",
    )
    fix = b.add(
        f"{slug}.fixes",
        f"Address the review comments on {feature}",
        "coding",
        ["python"],
        [review],
        (15, 45),
    )
    docs = b.add(
        f"{slug}.docs",
        f"Document {feature} for users",
        "writing",
        ["writing"],
        [fix],
        (20, 50),
        "low",
    )
    return b.add(
        f"{slug}.release-notes",
        f"Write the release notes for {feature}",
        "writing",
        ["writing", "editing"],
        [docs],
        (10, 20),
        "low",
    )


def sample_workload(seed: int = SAMPLE_SEED) -> Workload:
    """The sample: 11 agents, 10 analysis studies and 8 feature builds (research -> analysis
    -> writing -> review; spec -> code -> tests -> code review -> docs), three fan-in digests,
    and one task nobody on the team can do (translation), which the demo cancels."""
    rng = random.Random(seed)
    agents = pd.DataFrame(SAMPLE_TEAM, columns=AGENT_COLUMNS)
    agents["capabilities"] = agents["capabilities"].map(_split)
    b = _TaskBuilder(rng)
    published = [_study(b, slug, topic) for slug, topic in STUDIES]
    released = [_feature(b, slug, feature) for slug, feature in FEATURES]
    half = len(published) // 2
    b.add(
        "digest.research-h1",
        "Write the research digest for the first half of the studies",
        "writing",
        ["writing", "summarization"],
        published[:half],
        (60, 120),
    )
    b.add(
        "digest.research-h2",
        "Write the research digest for the second half of the studies",
        "writing",
        ["writing", "summarization"],
        published[half:],
        (60, 120),
    )
    b.add(
        "digest.release-train",
        "Assemble the release train notes for all features",
        "writing",
        ["writing", "editing"],
        released,
        (30, 60),
        "low",
    )
    b.add(
        f"{STUDIES[0][0]}.translate",
        f"Translate the report on {STUDIES[0][1]} into Japanese",
        "writing",
        ["translation"],
        [published[0]],
        (60, 90),
        "low",
    )
    name = SAMPLE_NAME if seed == SAMPLE_SEED else f"{SAMPLE_NAME}-s{seed}"
    return Workload(name, agents, b.frame())


# ---------------------------------------------------------------------- synthetic
CAPABILITY_POOL = [
    "research",
    "web_search",
    "summarization",
    "planning",
    "sql",
    "python",
    "data_analysis",
    "statistics",
    "visualization",
    "writing",
    "editing",
    "testing",
    "code_review",
    "devops",
    "security",
    "design",
    "translation",
    "legal_review",
    "frontend",
    "ml_training",
]
TASK_TYPES = {
    "research": "research",
    "web_search": "research",
    "summarization": "summarization",
    "planning": "planning",
    "sql": "data_engineering",
    "python": "coding",
    "data_analysis": "analysis",
    "statistics": "analysis",
    "visualization": "visualization",
    "writing": "writing",
    "editing": "review",
    "testing": "testing",
    "code_review": "review",
    "devops": "operations",
    "security": "security",
    "design": "design",
    "translation": "writing",
    "legal_review": "review",
    "frontend": "coding",
    "ml_training": "modelling",
}


def synthetic_workload(
    n_tasks: int = 200,
    n_agents: int = 8,
    seed: int = SAMPLE_SEED,
    *,
    layers: int | None = None,
    max_fan_in: int = 3,
    failure_rate: tuple[float, float] = (0.02, 0.2),
    capacity: tuple[int, int] = (1, 4),
    n_capabilities: int | None = None,
) -> Workload:
    """A random layered DAG: ``n_tasks`` tasks in ``layers`` layers (default about
    sqrt(n_tasks)/2, at least 2); each task past the first layer depends on 1 to
    ``max_fan_in`` tasks of earlier layers (mostly the previous one). Every task's
    requirements are a subset of some agent's capabilities, so all of them can be routed.
    Agents get 2-4 capabilities, a capacity in ``capacity`` and a failure rate drawn
    uniformly from ``failure_rate``; half pull work, half wait to be routed."""
    if n_tasks < 1 or n_agents < 1:
        raise ValidationError("n_tasks and n_agents must be at least 1")
    rng = random.Random(seed)
    n_caps = n_capabilities or min(len(CAPABILITY_POOL), max(3, n_agents + 2))
    pool = CAPABILITY_POOL[:n_caps]
    agent_caps = [
        sorted(rng.sample(pool, min(len(pool), rng.randint(2, 4)))) for _ in range(n_agents)
    ]
    covered = {c for caps in agent_caps for c in caps}
    for capability in pool:  # every capability has someone
        if capability not in covered:
            agent_caps[rng.randrange(n_agents)].append(capability)
    width = len(str(n_agents))
    agents = pd.DataFrame(
        {
            "agent_id": [f"agent-{i + 1:0{width}d}" for i in range(n_agents)],
            "capabilities": [sorted(set(c)) for c in agent_caps],
            "max_concurrent_tasks": [rng.randint(*capacity) for _ in range(n_agents)],
            "speed_factor": [round(rng.uniform(0.6, 1.6), 2) for _ in range(n_agents)],
            "failure_rate": [round(rng.uniform(*failure_rate), 3) for _ in range(n_agents)],
            "mode": ["pull" if i % 2 == 0 else "push" for i in range(n_agents)],
        },
        columns=AGENT_COLUMNS,
    )

    n_layers = max(2, round(math.sqrt(n_tasks) / 2)) if layers is None else max(1, layers)
    n_layers = min(n_layers, n_tasks)
    layer_of = [i * n_layers // n_tasks for i in range(n_tasks)]
    by_layer: list[list[int]] = [[] for _ in range(n_layers)]
    for i, layer in enumerate(layer_of):
        by_layer[layer].append(i)
    width = len(str(n_tasks))
    keys = [f"t{i + 1:0{width}d}" for i in range(n_tasks)]
    rows = []
    for i in range(n_tasks):
        layer = layer_of[i]
        deps: list[str] = []
        if layer > 0 and max_fan_in > 0:
            wanted = rng.randint(1, max_fan_in)
            previous = by_layer[layer - 1]
            earlier = [j for lay in by_layer[: layer - 1] for j in lay]
            picks = set()
            for _ in range(wanted):
                source = earlier if earlier and rng.random() < 0.2 else previous
                picks.add(rng.choice(source))
            deps = [keys[j] for j in sorted(picks)]
        caps = agent_caps[rng.randrange(n_agents)]
        requirements = sorted(rng.sample(caps, 1 if rng.random() < 0.7 or len(caps) < 2 else 2))
        task_type = TASK_TYPES.get(requirements[0], requirements[0])
        priority = rng.choices(["high", "medium", "low"], weights=[2, 5, 3])[0]
        minutes = min(150, max(5, round(rng.lognormvariate(math.log(40), 0.5))))
        rows.append(
            {
                "key": keys[i],
                "content": f"{task_type.replace('_', ' ').capitalize()} step {i + 1} "
                f"(layer {layer + 1} of {n_layers})",
                "task_type": task_type,
                "priority": priority,
                "requirements": requirements,
                "dependencies": deps,
                "estimated_duration_ms": minutes * MINUTE_MS,
            }
        )
    name = f"synthetic-t{n_tasks}-a{n_agents}-s{seed}"
    return Workload(name, agents, pd.DataFrame(rows, columns=TASK_COLUMNS))


# ---------------------------------------------------------------------- hidden skill
SKILL_TYPES = ("research", "coding", "analysis", "writing")


@dataclass(repr=False)
class SkillWorkload(Workload):
    """A workload whose agents' success depends on the kind of work, with the truth known.

    ``success``: agent x task type (index agent_id, one column per task type), the
    probability that an attempt by that agent at that type succeeds. ``speed``: the same
    shape, the factor on a task's estimated duration. Every agent has every capability,
    so the router's filter and fit cannot tell them apart: only what each does at each
    type can (see :mod:`athena_orch.learning`, which runs them).
    """

    success: pd.DataFrame = None  # type: ignore[assignment]
    speed: pd.DataFrame = None  # type: ignore[assignment]

    def oracle(self, task_type: str, free: dict[str, int]) -> str | None:
        """The agent that knows the truth would pick: the highest success at
        ``task_type`` among agents with a free slot (``free``: agent_id -> free slots),
        ties to the faster, then the first id. None when nobody is free."""
        column = self.success[task_type]
        speed = self.speed[task_type]
        open_ = [a for a in self.success.index if free.get(a, 0) > 0]
        if not open_:
            return None
        return min(open_, key=lambda a: (-column[a], speed[a], a))

    def best_success(self) -> pd.Series:
        """Per task type, the best agent's success: what an unconstrained oracle expects."""
        return self.success.max(axis=0)


def specialist_matrix(agent_ids: Sequence[str], task_types: Sequence[str], *,
                      high: float = 0.9, low: float = 0.3) -> pd.DataFrame:
    """Specialists: agent i is good (``high``) at type i mod k and, when the team has more
    agents than types, each extra agent is good at two neighbouring types; ``low``
    elsewhere. Every type has a good agent; no agent is good at most of them."""
    k = len(task_types)
    matrix = pd.DataFrame(low, index=pd.Index(list(agent_ids), name="agent_id"),
                          columns=list(task_types), dtype=float)
    for i, agent in enumerate(agent_ids):
        first = i % k if i < k else (2 * (i - k)) % k
        matrix.loc[agent, task_types[first]] = high
        if i >= k:
            matrix.loc[agent, task_types[(first + 1) % k]] = high
    return matrix


def _skill_matrix(name: str, value: Any, agent_ids: list[str], task_types: list[str],
                  low: float, high: float | None) -> pd.DataFrame:
    """A per agent x task type matrix checked: a DataFrame with exactly those rows and
    columns, or a sequence of per-agent numbers (one row per agent, the same at every
    type), with finite values in [low, high]."""
    if isinstance(value, pd.DataFrame):
        rows, cols = [str(a) for a in value.index], [str(c) for c in value.columns]
        if sorted(rows) != sorted(agent_ids) or sorted(cols) != sorted(task_types):
            raise ValidationError(
                f"{name} must have one row per agent {agent_ids} and one column per task "
                f"type {task_types}; got rows {rows} and columns {cols}")
        frame = value.copy()
        frame.index, frame.columns = rows, cols
        frame = frame.loc[agent_ids, task_types]
    else:
        try:
            values = [value[i] for i in range(len(agent_ids))] if not isinstance(
                value, (str, bytes)) and len(value) == len(agent_ids) else None
        except (TypeError, KeyError, IndexError):
            values = None
        if values is None:
            raise ValidationError(
                f"{name} must be a DataFrame (agent x task type) or one number per agent "
                f"({len(agent_ids)}), not {value!r:.80}")
        frame = pd.DataFrame({t: values for t in task_types}, index=agent_ids)
    try:
        numbers = frame.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} values must be numbers") from None
    bad = ~np.isfinite(numbers) | (numbers < low) | (
        numbers > high if high is not None else False)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        where = "[0, 1]" if high == 1.0 else f"above {low}"
        raise ValidationError(
            f"{name} values must be finite and in {where}; {name}[{agent_ids[r]!r}, "
            f"{task_types[c]!r}] is {float(numbers[r, c])!r}")
    out = pd.DataFrame(numbers, index=pd.Index(agent_ids, name="agent_id"),
                       columns=list(task_types))
    return out


def skill_workload(n_agents: int = 6, task_types: Sequence[str] = SKILL_TYPES,
                   n_tasks: int = 2000, seed: int = SAMPLE_SEED, *,
                   success: pd.DataFrame | None = None,
                   speed: pd.DataFrame | Sequence[float] | None = None,
                   capacity: int = 3) -> SkillWorkload:
    """``n_agents`` agents (``capacity`` slots each, every one able to do every type) and
    ``n_tasks`` independent tasks of random ``task_types`` (each requiring the capability
    named like its type), with a hidden per agent x type ``success`` matrix (default
    :func:`specialist_matrix`) and ``speed`` (default 1 everywhere; a sequence gives one
    factor per agent). Deterministic for a seed."""
    if isinstance(n_agents, bool) or not isinstance(n_agents, int) or n_agents < 1:
        raise ValidationError(f"n_agents must be a positive integer, not {n_agents!r}")
    if isinstance(n_tasks, bool) or not isinstance(n_tasks, int) or n_tasks < 0:
        raise ValidationError(f"n_tasks must be a non-negative integer, not {n_tasks!r}")
    if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
        raise ValidationError(f"capacity must be a positive integer, not {capacity!r}")
    if isinstance(task_types, str) or not all(
            isinstance(t, str) and t.strip() for t in task_types) or not len(task_types) \
            or len(set(task_types)) != len(task_types):
        raise ValidationError(f"task_types must be distinct non-empty names, not "
                              f"{task_types!r}")
    task_types = list(task_types)
    width = len(str(n_agents))
    ids = [f"agent-{i + 1:0{width}d}" for i in range(n_agents)]
    success = specialist_matrix(ids, task_types) if success is None else success
    success = _skill_matrix("success", success, ids, task_types, 0.0, 1.0)
    speed = _skill_matrix("speed", [1.0] * n_agents if speed is None else speed, ids,
                          task_types, 1e-9, None)
    agents = pd.DataFrame({
        "agent_id": ids, "capabilities": [sorted(task_types)] * n_agents,
        "max_concurrent_tasks": capacity,
        "speed_factor": speed.mean(axis=1).round(3).to_numpy(),
        "failure_rate": (1 - success.mean(axis=1)).round(3).to_numpy(),
        "mode": "push"}, columns=AGENT_COLUMNS)
    rng = np.random.default_rng(seed)
    kinds = rng.integers(0, len(task_types), size=n_tasks)
    minutes = np.clip(np.round(rng.lognormal(math.log(30), 0.4, size=n_tasks)), 5, 120)
    width = len(str(n_tasks))
    tasks = pd.DataFrame({
        "key": [f"s{i + 1:0{width}d}" for i in range(n_tasks)],
        "content": [f"{task_types[k].capitalize()} task {i + 1}" for i, k in enumerate(kinds)],
        "task_type": [task_types[k] for k in kinds], "priority": "medium",
        "requirements": [[task_types[k]] for k in kinds],
        "dependencies": [[] for _ in range(n_tasks)],
        "estimated_duration_ms": (minutes * MINUTE_MS).astype(int)}, columns=TASK_COLUMNS)
    name = f"skill-t{n_tasks}-a{n_agents}-s{seed}"
    return SkillWorkload(name, agents, tasks, success=success, speed=speed)


# ---------------------------------------------------------------------- command line
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m athena_orch.workload",
        description="Write a workload's agents.csv and tasks.csv (default: the sample).",
    )
    parser.add_argument("--out", default=str(DATA_DIR), help="output directory (default data/)")
    parser.add_argument("--tasks", type=int, default=None, help="synthetic: number of tasks")
    parser.add_argument("--agents", type=int, default=None, help="synthetic: number of agents")
    parser.add_argument("--seed", type=int, default=SAMPLE_SEED, help="random seed (default 7)")
    parser.add_argument("--layers", type=int, default=None, help="synthetic: DAG layers")
    parser.add_argument("--fan-in", type=int, default=3, help="synthetic: most dependencies")
    parser.add_argument(
        "--failure-rate",
        type=float,
        nargs=2,
        default=(0.02, 0.2),
        metavar=("LOW", "HIGH"),
        help="synthetic: agent failure rate range",
    )
    args = parser.parse_args(argv)
    if args.tasks is None and args.agents is None:
        workload = sample_workload(args.seed)
    else:
        workload = synthetic_workload(
            args.tasks or 200,
            args.agents or 8,
            args.seed,
            layers=args.layers,
            max_fan_in=args.fan_in,
            failure_rate=tuple(args.failure_rate),
        )
    agents_path, tasks_path = workload.write_csv(args.out)
    print(
        f"wrote {agents_path} ({len(workload.agents)} agents) and {tasks_path} "
        f"({len(workload.tasks)} tasks)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
