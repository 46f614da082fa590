"""Pick the best agent for a task, as DataFrame steps a notebook user can redo by hand.

filter (capable, active, below capacity, not excluded) -> score components
(track_record, headroom, speed, fit) -> weighted total -> rank (score, then lower load,
then agent id). ``explain`` shows every step; ``decide``/``route_task``/``route_batch``
also write the decision to the log.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pandas as pd

from . import validation as v
from .agent_registry import AgentRegistry
from .exceptions import ValidationError
from .models import PRIORITIES, RoutingDecision, Task
from .stores import MetaStore

COMPONENTS = ("track_record", "headroom", "speed", "fit")
DEFAULT_WEIGHTS = {"track_record": 0.4, "headroom": 0.3, "speed": 0.15, "fit": 0.15}
EXPLAIN_COLUMNS = ["agent_id", "capable", "active", "load", "capacity", "at_capacity",
                   *COMPONENTS, "score", "rank", "excluded_reason"]


def check_weights(weights: dict[str, Any]) -> dict[str, float]:
    """Weights for every component, non-negative, not all zero."""
    weights = v.mapping("weights", weights)
    v.known_keys("weights", weights, COMPONENTS)
    merged = {**DEFAULT_WEIGHTS, **weights}
    checked = {k: v.number(f"weights[{k!r}]", merged[k], low=0.0) for k in COMPONENTS}
    if sum(checked.values()) <= 0:
        raise ValidationError("weights must not all be zero")
    return checked


def task_requirements(task: Task | dict[str, Any]) -> tuple[str | None, list[str], str]:
    """(task id, requirements, priority) of a Task or of a dict with ``requirements``."""
    if isinstance(task, Task):
        return (v.optional_text("task id", task.id), v.string_list("requirements", task.requirements),
                v.priority(task.priority))
    if isinstance(task, dict):
        task_id = task.get("id", task.get("task_id"))
        priority = task.get("priority")
        priority = "medium" if priority is None else priority
        return (v.optional_text("task id", task_id),
                v.string_list("requirements", task.get("requirements")), v.priority(priority))
    raise ValidationError(f"task must be a Task or a dict with 'requirements', not "
                          f"{type(task).__name__}")


def filter_agents(agents: pd.DataFrame, requirements: list[str],
                  exclude: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """Step 1, filter: capable (has every requirement), active, below capacity, not
    excluded by the caller. Arrays aligned with the rows of ``agents``."""
    needed = set(requirements)
    load = agents["current_load"].to_numpy(dtype=np.int64)
    capacity = agents["max_concurrent_tasks"].to_numpy(dtype=np.int64)
    steps = {
        "capable": np.fromiter((needed <= caps for caps in agents["capability_set"]),
                               dtype=bool, count=len(agents)),
        "active": agents["active"].to_numpy(dtype=bool),
        "load": load, "capacity": capacity, "at_capacity": load >= capacity,
        "excluded": agents["agent_id"].isin(set(exclude)).to_numpy(dtype=bool),
    }
    steps["eligible"] = (steps["capable"] & steps["active"] & ~steps["at_capacity"]
                         & ~steps["excluded"])
    return steps


def score_components(agents: pd.DataFrame, requirements: list[str], load: np.ndarray,
                     capacity: np.ndarray, *, prior_success_rate: float,
                     prior_weight: float) -> dict[str, np.ndarray]:
    """Step 2, the components, each in [0, 1]:

    - track_record: success rate pulled toward ``prior_success_rate`` as if the agent had
      ``prior_weight`` earlier tasks, so one lucky task does not beat a long record;
    - headroom: share of capacity still free;
    - speed: median / (median + own) mean completion time; 0.5 without history;
    - fit: capability confidence on the requirements times how specialised the agent is.
    """
    completed = agents["total_completed"].to_numpy(dtype=float)
    failed = agents["total_failed"].to_numpy(dtype=float)
    track = (completed + prior_success_rate * prior_weight) / (completed + failed + prior_weight)
    headroom = np.clip(1 - load / np.maximum(capacity, 1), 0, 1)
    average = agents["avg_completion_ms"].to_numpy(dtype=float)
    timed = completed > 0
    speed = np.full(len(agents), 0.5)
    if timed.any():
        reference = float(np.median(average[timed]))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = reference / (reference + average)
        speed[timed] = np.where(np.isfinite(ratio[timed]), ratio[timed], 0.5)
    sizes = np.fromiter((len(c) for c in agents["capability_set"]), dtype=float,
                        count=len(agents))
    specialisation = np.minimum((len(requirements) + 1) / (sizes + 1), 1.0)
    confidence = np.fromiter((min((conf.get(r, 0.0) for r in requirements), default=1.0)
                              for conf in agents["confidence"]), dtype=float, count=len(agents))
    return {"track_record": track, "headroom": headroom, "speed": speed,
            "fit": specialisation * confidence}


def weighted_score(components: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Step 3: the weighted mean of the components."""
    total = sum(weights.values())
    return sum(components[c] * (weights[c] / total) for c in COMPONENTS)


def rank_eligible(score: np.ndarray, load: np.ndarray, agent_ids: np.ndarray,
                  eligible: np.ndarray) -> np.ndarray:
    """Step 4: row indices of the eligible agents, best first (score, then lower load,
    then agent id)."""
    rows = np.flatnonzero(eligible)
    order = np.lexsort((agent_ids[rows], load[rows], -score[rows]))
    return rows[order]


def excluded_reasons(steps: dict[str, np.ndarray], agents: pd.DataFrame,
                     requirements: list[str]) -> list[str]:
    """Why each agent cannot take the task ('' when it can)."""
    needed = set(requirements)
    reasons = []
    for i, caps in enumerate(agents["capability_set"]):
        if steps["excluded"][i]:
            reasons.append("excluded by caller")
        elif not steps["active"][i]:
            reasons.append("inactive")
        elif not steps["capable"][i]:
            reasons.append("missing capabilities: " + ", ".join(sorted(needed - caps)))
        elif steps["at_capacity"][i]:
            reasons.append(f"at capacity ({steps['load'][i]}/{steps['capacity'][i]})")
        else:
            reasons.append("")
    return reasons


class CapabilityRouter:
    """Scores agents for tasks; ``weights`` (a dict over COMPONENTS) is yours to change."""

    def __init__(self, registry: AgentRegistry, meta: MetaStore | None = None, *,
                 weights: dict[str, float] | None = None, prior_success_rate: float = 0.8,
                 prior_weight: float = 5.0, log_top_k: int = 10):
        self.registry = registry
        self.meta = meta or MetaStore(registry.db)
        self.weights = check_weights(weights or {})
        self.prior_success_rate = prior_success_rate
        self.prior_weight = prior_weight
        self.log_top_k = log_top_k

    # ------------------------------------------------------------------ looking
    def explain(self, task: Task | dict[str, Any], exclude_agents: list[str] | None = None,
                weights: dict[str, float] | None = None) -> pd.DataFrame:
        """One row per registered agent: every filter, component, score, rank and the
        reason it was excluded ('' when eligible). Best first, excluded last."""
        _, requirements, _ = task_requirements(task)
        return self._explain(self.registry.routing_frame(), requirements,
                             v.string_list("exclude_agents", exclude_agents),
                             check_weights(weights) if weights is not None else self.weights)

    def _score(self, agents: pd.DataFrame, requirements: list[str], exclude: list[str],
               weights: dict[str, float]) -> dict[str, Any]:
        """The four steps as arrays aligned with ``agents``; ``order`` = eligible rows,
        best first."""
        steps = filter_agents(agents, requirements, exclude)
        components = score_components(agents, requirements, steps["load"], steps["capacity"],
                                      prior_success_rate=self.prior_success_rate,
                                      prior_weight=self.prior_weight)
        score = weighted_score(components, weights)
        ids = agents["agent_id"].to_numpy(dtype=object)
        order = rank_eligible(score, steps["load"], ids, steps["eligible"])
        return {**steps, **components, "score": score, "order": order, "agent_id": ids}

    def _explain(self, agents: pd.DataFrame, requirements: list[str], exclude: list[str],
                 weights: dict[str, float]) -> pd.DataFrame:
        scored = self._score(agents, requirements, exclude, weights)
        frame = pd.DataFrame({c: scored[c] for c in EXPLAIN_COLUMNS
                              if c not in ("rank", "excluded_reason")})
        frame["agent_id"] = frame["agent_id"].astype(str)
        rank = np.zeros(len(frame), dtype=np.int64)
        rank[scored["order"]] = np.arange(1, len(scored["order"]) + 1)
        frame["rank"] = pd.Series(rank, dtype="Int64").mask(rank == 0)
        frame["excluded_reason"] = excluded_reasons(scored, agents, requirements)
        rest = np.flatnonzero(rank == 0)
        rest = rest[np.argsort(scored["agent_id"][rest], kind="stable")]
        return frame.iloc[np.concatenate([scored["order"], rest])][EXPLAIN_COLUMNS].reset_index(
            drop=True)

    def rank_candidates(self, agent_ids: list[str],
                        task: Task | dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Scores of the given registered agents for ``task`` (no requirements if None),
        best first; unknown ids are dropped."""
        wanted = set(v.string_list("agent_ids", agent_ids))
        requirements = task_requirements(task)[1] if task is not None else []
        agents = self.registry.routing_frame()
        agents = agents[agents["agent_id"].isin(wanted)].reset_index(drop=True)
        scored = self._score(agents, requirements, [], self.weights)
        everyone = rank_eligible(scored["score"], scored["load"], scored["agent_id"],
                                 np.ones(len(agents), dtype=bool))
        return [(str(scored["agent_id"][i]), float(scored["score"][i])) for i in everyone]

    # ------------------------------------------------------------------ deciding
    def decide(self, task: Task | dict[str, Any],
               exclude_agents: list[str] | None = None) -> RoutingDecision:
        """Route one task and log the decision."""
        return self._decide(task, exclude_agents, "decide")

    def route_task(self, task: Task | dict[str, Any],
                   exclude_agents: list[str] | None = None) -> str | None:
        """The best agent for the task's requirements, or None (decision logged)."""
        return self._decide(task, exclude_agents, "route_task").selected_agent

    def _decide(self, task: Task | dict[str, Any], exclude_agents: list[str] | None,
                source: str) -> RoutingDecision:
        task_id, requirements, _ = task_requirements(task)
        exclude = v.string_list("exclude_agents", exclude_agents)
        scored = self._score(self.registry.routing_frame(), requirements, exclude, self.weights)
        decision = self._decision(task_id, requirements, scored)
        self._log(decision, scored, source)
        return decision

    def _decision(self, task_id: str | None, requirements: list[str],
                  scored: dict[str, Any]) -> RoutingDecision:
        order, ids = scored["order"], scored["agent_id"]
        scores = {str(ids[i]): float(scored["score"][i]) for i in order}
        if len(order):
            best = order[0]
            reason = (f"chose {ids[best]} (score {scored['score'][best]:.3f}) "
                      f"of {len(order)} eligible agents")
        elif not len(ids):
            reason = "no agents are registered"
        elif not scored["capable"].any():
            reason = f"no agent has every capability of {requirements}"
        else:
            capable = scored["capable"]
            counts = {"excluded by caller": int((capable & scored["excluded"]).sum()),
                      "inactive": int((capable & ~scored["excluded"] & ~scored["active"]).sum()),
                      "at capacity": int((capable & ~scored["excluded"] & scored["active"]
                                          & scored["at_capacity"]).sum())}
            reason = "no capable agent is free: " + ", ".join(
                f"{n} {why}" for why, n in counts.items() if n)
        return RoutingDecision(
            selected_agent=str(ids[order[0]]) if len(order) else None,
            candidates=[str(ids[i]) for i in order], scores=scores, reason=reason,
            task_id=task_id, requirements=requirements, weights=dict(self.weights))

    def route_batch(self, tasks: Iterable[Task | dict[str, Any]],
                    exclude_agents: list[str] | None = None) -> pd.DataFrame:
        """Route many tasks at once (higher priority first, else in order), each agent
        taking no more than its free capacity. Columns: task_id, agent_id, score, reason."""
        parsed = [task_requirements(t) for t in tasks]
        exclude = set(v.string_list("exclude_agents", exclude_agents))
        agents = self.registry.routing_frame()
        order = sorted(range(len(parsed)), key=lambda i: PRIORITIES.index(parsed[i][2]))
        load = agents["current_load"].to_numpy(dtype=float).copy()
        capacity = agents["max_concurrent_tasks"].to_numpy(dtype=float)
        usable = agents["active"].to_numpy(dtype=bool) & ~agents["agent_id"].isin(exclude).to_numpy()
        ids = agents["agent_id"].to_numpy()
        share = {c: self.weights[c] / sum(self.weights.values()) for c in COMPONENTS}
        static: dict[tuple[str, ...], tuple[np.ndarray, np.ndarray]] = {}
        chosen: list[Any] = [None] * len(parsed)
        scores = np.full(len(parsed), np.nan)
        for i in order:
            key = tuple(sorted(parsed[i][1]))
            if key not in static:  # the parts of the score that do not move with load
                steps = filter_agents(agents, list(key))
                parts = score_components(agents, list(key), steps["load"], steps["capacity"],
                                         prior_success_rate=self.prior_success_rate,
                                         prior_weight=self.prior_weight)
                fixed = sum(parts[c] * share[c] for c in COMPONENTS if c != "headroom")
                static[key] = (steps["capable"] & usable, fixed)
            capable, fixed = static[key]
            open_ = np.flatnonzero(capable & (load < capacity))
            if not len(open_):
                continue
            score = fixed[open_] + share["headroom"] * (1 - load[open_] / capacity[open_])
            best = open_[score >= score.max() - 1e-12]
            best = best[load[best] == load[best].min()]
            pick = best[np.argmin(ids[best])] if len(best) > 1 else best[0]
            chosen[i], scores[i] = ids[pick], float(fixed[pick] + share["headroom"]
                                                    * (1 - load[pick] / capacity[pick]))
            load[pick] += 1
        result = pd.DataFrame({
            "task_id": [p[0] for p in parsed], "agent_id": pd.Series(chosen, dtype=object),
            "score": scores,
            "reason": ["routed" if c is not None else "no capable agent with free capacity"
                       for c in chosen]})
        self._log_batch(result, parsed)
        return result

    # ------------------------------------------------------------------ the log
    def decisions(self) -> pd.DataFrame:
        """Every logged decision, oldest first; list and dict columns parsed from JSON."""
        frame = self.meta.decisions_frame()
        for column in ("requirements", "candidates", "scores", "weights", "components"):
            frame[column] = [json.loads(x) for x in frame[column]]
        return frame

    def _log(self, decision: RoutingDecision, scored: dict[str, Any], source: str) -> None:
        top = scored["order"][: self.log_top_k]
        ids = [str(scored["agent_id"][i]) for i in top]
        components = {a: {c: float(scored[c][i]) for c in (*COMPONENTS, "load", "capacity")}
                      for a, i in zip(ids, top)}
        self.meta.record_decision(
            decided_at=datetime.now(UTC), task_id=decision.task_id,
            requirements=json.dumps(decision.requirements), candidates=json.dumps(ids),
            scores=json.dumps({a: decision.scores[a] for a in ids}),
            components=json.dumps(components), selected_agent=decision.selected_agent,
            weights=json.dumps(decision.weights), reason=decision.reason, source=source)

    def _log_batch(self, result: pd.DataFrame, parsed: list[tuple]) -> None:
        now = datetime.now(UTC)
        weights = json.dumps(self.weights)
        self.meta.record_decisions(pd.DataFrame({
            "decided_at": now, "task_id": result["task_id"],
            "requirements": [json.dumps(p[1]) for p in parsed],
            "candidates": [json.dumps([a] if a else []) for a in result["agent_id"]],
            "scores": [json.dumps({a: s} if a else {}) for a, s in
                       zip(result["agent_id"], result["score"])],
            "components": "{}", "selected_agent": result["agent_id"], "weights": weights,
            "reason": result["reason"], "source": "route_batch"}))
