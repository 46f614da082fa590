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
        return task.id, list(task.requirements), task.priority
    if isinstance(task, dict):
        task_id = task.get("id", task.get("task_id"))
        priority = task.get("priority") or "medium"
        return (v.optional_text("task id", task_id),
                v.string_list("requirements", task.get("requirements")), v.priority(priority))
    raise ValidationError(f"task must be a Task or a dict with 'requirements', not "
                          f"{type(task).__name__}")


def candidate_frame(agents: pd.DataFrame, requirements: list[str],
                    exclude: Iterable[str] = ()) -> pd.DataFrame:
    """Step 1, filter: who could take the task, and if not, why not."""
    needed = set(requirements)
    frame = pd.DataFrame({
        "agent_id": agents["agent_id"],
        "capable": np.array([needed <= set(caps) for caps in agents["capabilities"]], dtype=bool),
        "active": agents["active"].astype(bool),
        "load": agents["current_load"].astype("int64"),
        "capacity": agents["max_concurrent_tasks"].astype("int64"),
    })
    frame["at_capacity"] = frame["load"] >= frame["capacity"]
    missing = [", ".join(sorted(needed - set(caps))) for caps in agents["capabilities"]]
    excluded = frame["agent_id"].isin(set(exclude))
    frame["excluded_reason"] = np.select(
        [excluded.to_numpy(bool), ~frame["active"].to_numpy(bool),
         ~frame["capable"].to_numpy(bool), frame["at_capacity"].to_numpy(bool)],
        ["excluded by caller", "inactive", [f"missing capabilities: {m}" for m in missing],
         [f"at capacity ({ld}/{c})" for ld, c in zip(frame["load"], frame["capacity"])]],
        default="")
    return frame


def score_components(frame: pd.DataFrame, agents: pd.DataFrame, requirements: list[str], *,
                     prior_success_rate: float, prior_weight: float) -> pd.DataFrame:
    """Step 2, the components, each in [0, 1]:

    - track_record: success rate pulled toward ``prior_success_rate`` as if the agent had
      ``prior_weight`` earlier tasks, so one lucky task does not beat a long record;
    - headroom: share of capacity still free;
    - speed: median / (median + own) mean completion time; 0.5 without history;
    - fit: capability confidence on the requirements times how specialised the agent is.
    """
    completed, failed = agents["total_completed"], agents["total_failed"]
    frame["track_record"] = ((completed + prior_success_rate * prior_weight)
                             / (completed + failed + prior_weight)).to_numpy()
    frame["headroom"] = (1 - frame["load"] / frame["capacity"]).clip(0, 1)
    timed = agents["avg_completion_ms"].where(completed > 0)
    reference = timed.median()
    frame["speed"] = (reference / (reference + timed)).fillna(0.5).to_numpy()
    specialisation = (len(requirements) + 1) / (agents["capabilities"].map(len) + 1)
    confidence = [min((conf.get(r, 0.0) for r in requirements), default=1.0)
                  for conf in agents["confidence"]]
    frame["fit"] = (specialisation.clip(upper=1.0) * confidence).to_numpy()
    return frame


def rank(frame: pd.DataFrame, weights: dict[str, float]) -> pd.DataFrame:
    """Step 3 and 4: weighted total, then rank the eligible (ties: lower load, then id)."""
    total = sum(weights.values())
    frame["score"] = sum(frame[c] * (weights[c] / total) for c in COMPONENTS)
    eligible = frame[frame["excluded_reason"] == ""].sort_values(
        ["score", "load", "agent_id"], ascending=[False, True, True])
    frame["rank"] = pd.Series(range(1, len(eligible) + 1), index=eligible.index, dtype="Int64")
    return frame


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

    def _explain(self, agents: pd.DataFrame, requirements: list[str], exclude: list[str],
                 weights: dict[str, float]) -> pd.DataFrame:
        frame = candidate_frame(agents, requirements, exclude)
        frame = score_components(frame, agents, requirements,
                                 prior_success_rate=self.prior_success_rate,
                                 prior_weight=self.prior_weight)
        frame = rank(frame, weights)
        order = frame["rank"].fillna(len(frame) + 1).astype("int64")
        return frame.assign(_o=order).sort_values(["_o", "agent_id"]).drop(columns="_o")[
            EXPLAIN_COLUMNS].reset_index(drop=True)

    def rank_candidates(self, agent_ids: list[str],
                        task: Task | dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Scores of the given registered agents for ``task`` (no requirements if None),
        best first; unknown ids are dropped."""
        wanted = set(v.string_list("agent_ids", agent_ids))
        requirements = task_requirements(task)[1] if task is not None else []
        agents = self.registry.routing_frame()
        agents = agents[agents["agent_id"].isin(wanted)].reset_index(drop=True)
        frame = self._explain(agents, requirements, [], self.weights)
        frame = frame.sort_values(["score", "load", "agent_id"], ascending=[False, True, True])
        return [(a, float(s)) for a, s in zip(frame["agent_id"], frame["score"])]

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
        frame = self._explain(self.registry.routing_frame(), requirements,
                              v.string_list("exclude_agents", exclude_agents), self.weights)
        decision = self._decision(task_id, requirements, frame)
        self._log([decision], [frame], source)
        return decision

    def _decision(self, task_id: str | None, requirements: list[str],
                  frame: pd.DataFrame) -> RoutingDecision:
        eligible = frame[frame["rank"].notna()]
        scores = dict(zip(eligible["agent_id"], eligible["score"].astype(float)))
        if len(eligible):
            best = eligible.iloc[0]
            reason = (f"chose {best['agent_id']} (score {best['score']:.3f}) "
                      f"of {len(eligible)} eligible agents")
        elif not len(frame):
            reason = "no agents are registered"
        elif not frame["capable"].any():
            reason = f"no agent has every capability of {requirements}"
        else:
            counts = frame.loc[frame["capable"], "excluded_reason"].str.split(" ").str[0]
            reason = "no capable agent is free: " + ", ".join(
                f"{n} {why}" for why, n in counts.value_counts().sort_index().items())
        return RoutingDecision(
            selected_agent=eligible["agent_id"].iloc[0] if len(eligible) else None,
            candidates=list(eligible["agent_id"]), scores=scores, reason=reason,
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
                frame = score_components(candidate_frame(agents, list(key)), agents, list(key),
                                         prior_success_rate=self.prior_success_rate,
                                         prior_weight=self.prior_weight)
                fixed = sum(frame[c].to_numpy() * share[c] for c in COMPONENTS if c != "headroom")
                static[key] = (frame["capable"].to_numpy() & usable, fixed)
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

    def _log(self, decisions: list[RoutingDecision], frames: list[pd.DataFrame],
             source: str) -> None:
        now = datetime.now(UTC)
        rows = []
        for d, frame in zip(decisions, frames):
            top = frame[frame["rank"].notna()].head(self.log_top_k)
            rows.append({
                "decided_at": now, "task_id": d.task_id, "requirements": json.dumps(d.requirements),
                "candidates": json.dumps(list(top["agent_id"])),
                "scores": json.dumps({a: float(s) for a, s in zip(top["agent_id"], top["score"])}),
                "components": json.dumps(
                    top.set_index("agent_id")[[*COMPONENTS, "load", "capacity"]]
                    .astype(float).to_dict("index")),
                "selected_agent": d.selected_agent, "weights": json.dumps(d.weights),
                "reason": d.reason, "source": source})
        self.meta.record_decisions(pd.DataFrame(rows))

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
