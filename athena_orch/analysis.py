"""Routing analysis on the decision log, in plain pandas.

``router.decisions()`` logs, for every ``decide``/``route_task`` call, the score
components of the top candidates (``components``: agent -> {track_record, headroom,
speed, fit, load, capacity}). That is enough to ask "what if the weights had been
different?" without touching the database or the agents:

    from athena_orch.analysis import replay_decisions, load_shift
    log = orch.router.decisions()
    replay = replay_decisions(log, {"track_record": 0.1, "headroom": 0.7})
    replay["changed"].mean()          # share of decisions that would go elsewhere
    load_shift(replay)                # per agent: decisions won before, after, difference

What the replay can and cannot say:

- It re-ranks the candidates that were logged (the router logs the top ``log_top_k``,
  default 10) with their logged components, exactly as the router ranks: weighted total
  (weights normalised to sum 1), ties to the lower load, then the lower agent id. So with
  the logged weights it reproduces every logged choice.
- Weights are checked like ``router.explain(weights=...)``: a partial dict is completed
  with the router's default weights, negative or all-zero weights are a ValidationError.
- Each decision is replayed on its own: the replay does not feed the new choices back into
  the load of later decisions (the world after a different choice is not in the log).
- ``route_batch`` decisions log no components, so they are not replayable: they keep
  their row with ``replayable`` False, ``replayed_agent`` None and ``changed`` False, and
  :func:`load_shift` leaves them out. A decision with no eligible candidate is replayable
  and stays without an agent.

Re-ranking says where decisions would go, not how they would have turned out. For that,
off-policy evaluation (``athena_orch.evaluation``, re-exported here) joins the decisions
with their outcomes and estimates another policy's success rate or mean duration from the
logged propensities (IPS, SNIPS, doubly robust, bootstrap intervals):

    from athena_orch.analysis import decision_outcomes, evaluate_policy, uniform_policy
    evaluate_policy(decision_outcomes(orch), uniform_policy())
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from . import validation as v
from .capability_router import COMPONENTS, check_weights, weighted_score
from .evaluation import (
    compare_policies,
    decision_outcomes,
    evaluate_policy,
    greedy_policy,
    join_outcomes,
    logged_policy,
    uniform_policy,
)
from .exceptions import ValidationError, shown

__all__ = [  # this module's own names and the off-policy evaluation it re-exports
    "CANDIDATE_COLUMNS",
    "REPLAY_COLUMNS",
    "SHIFT_COLUMNS",
    "candidate_components",
    "decision_summary",
    "load_shift",
    "replay_decisions",
    "score",
    "sweep_weight",
    "compare_policies",
    "decision_outcomes",
    "evaluate_policy",
    "greedy_policy",
    "join_outcomes",
    "logged_policy",
    "uniform_policy",
]

CANDIDATE_COLUMNS = [
    "decision_id",
    "task_id",
    "agent_id",
    *COMPONENTS,
    "load",
    "capacity",
    "logged_score",
    "selected",
]
REPLAY_COLUMNS = [
    "decision_id",
    "task_id",
    "source",
    "n_candidates",
    "original_agent",
    "original_score",
    "replayed_agent",
    "replayed_score",
    "changed",
    "replayable",
]
SHIFT_COLUMNS = ["agent_id", "before", "after", "difference"]


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str,
             source: str = "router.decisions()") -> None:
    v.frame_columns(frame, columns, what, source)


def _weights(weights: Any) -> dict[str, float]:
    """The router's check of ``weights``, for any mapping (a non-mapping is refused
    there, by name)."""
    return check_weights(dict(weights) if isinstance(weights, Mapping) else weights)


def decision_summary(decisions: pd.DataFrame) -> pd.DataFrame:
    """One row per logged decision, flat: decision_id, task_id, source, selected_agent,
    n_candidates, best_score, runner_up, margin (best minus second best score; NaN with
    fewer than two candidates), n_requirements, reason."""
    _require(
        decisions,
        ["decision_id", "task_id", "scores", "selected_agent", "requirements", "reason", "source"],
        "decisions",
    )
    rows = []
    for d in decisions.itertuples(index=False):
        ranked = sorted(d.scores.items(), key=lambda kv: (-kv[1], kv[0]))
        rows.append(
            {
                "decision_id": d.decision_id,
                "task_id": d.task_id,
                "source": d.source,
                "selected_agent": d.selected_agent,
                "n_candidates": len(ranked),
                "best_score": ranked[0][1] if ranked else float("nan"),
                "runner_up": ranked[1][0] if len(ranked) > 1 else None,
                "margin": ranked[0][1] - ranked[1][1] if len(ranked) > 1 else float("nan"),
                "n_requirements": len(d.requirements),
                "reason": d.reason,
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "decision_id",
            "task_id",
            "source",
            "selected_agent",
            "n_candidates",
            "best_score",
            "runner_up",
            "margin",
            "n_requirements",
            "reason",
        ],
    )


def candidate_components(decisions: pd.DataFrame) -> pd.DataFrame:
    """The logged components long: one row per (decision, logged candidate) with
    track_record, headroom, speed, fit, load, capacity, the logged score and whether the
    candidate was selected. Decisions without components (route_batch) give no rows."""
    _require(
        decisions, ["decision_id", "task_id", "components", "scores", "selected_agent"], "decisions"
    )
    rows = []
    for d in decisions.itertuples(index=False):
        for agent, parts in (d.components or {}).items():
            rows.append(
                {
                    "decision_id": d.decision_id,
                    "task_id": d.task_id,
                    "agent_id": agent,
                    **{c: float(parts[c]) for c in (*COMPONENTS, "load", "capacity")},
                    "logged_score": float(d.scores.get(agent, float("nan"))),
                    "selected": agent == d.selected_agent,
                }
            )
    frame = pd.DataFrame(rows, columns=CANDIDATE_COLUMNS)
    return frame.astype({"selected": bool})


def score(components: pd.DataFrame, weights: Mapping[str, float]) -> pd.Series:
    """The router's weighted total (its own ``weighted_score``) for rows holding the four
    components."""
    _require(components, COMPONENTS, "components", "candidate_components(decisions)")
    checked = _weights(weights)
    parts = {c: components[c].to_numpy(dtype=float) for c in COMPONENTS}
    return pd.Series(weighted_score(parts, checked), index=components.index, dtype=float)


def _best(candidates: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per decision, the row the router would pick by ``column`` (then load, then id)."""
    ordered = candidates.sort_values(
        ["decision_id", column, "load", "agent_id"], ascending=[True, False, True, True]
    )
    return ordered.drop_duplicates("decision_id").set_index("decision_id")


def replay_decisions(decisions: pd.DataFrame, weights: Mapping[str, float]) -> pd.DataFrame:
    """Every logged decision replayed under ``weights``.

    Columns: decision_id, task_id, source, n_candidates, original_agent, original_score,
    replayed_agent, replayed_score (the replayed agent's score under the new weights),
    changed (replayed agent differs from the original), replayable (see the module doc).
    One row per logged decision, in log order.
    """
    _require(
        decisions,
        ["decision_id", "task_id", "components", "scores", "selected_agent", "source"],
        "decisions",
    )
    checked = _weights(weights)
    candidates = candidate_components(decisions)
    candidates["replayed_score"] = score(candidates, checked)
    best = _best(candidates, "replayed_score")
    out = pd.DataFrame(
        {
            "decision_id": decisions["decision_id"].to_numpy(),
            "task_id": decisions["task_id"].to_numpy(),
            "source": decisions["source"].to_numpy(),
        }
    )
    has_components = [bool(c) for c in decisions["components"]]
    no_candidates = [not s for s in decisions["scores"]]
    out["n_candidates"] = [len(s) for s in decisions["scores"]]
    out["original_agent"] = pd.Series(list(decisions["selected_agent"]), dtype=object).where(
        decisions["selected_agent"].notna().to_numpy(), None
    )
    out["original_score"] = [
        float(s[a]) if isinstance(a, str) and a in s else float("nan")
        for s, a in zip(decisions["scores"], out["original_agent"])
    ]
    out["replayable"] = [c or n for c, n in zip(has_components, no_candidates)]
    replayed = best["agent_id"].reindex(out["decision_id"]).to_numpy()
    out["replayed_agent"] = pd.Series(replayed, dtype=object).where(pd.notna(replayed), None)
    out["replayed_score"] = best["replayed_score"].reindex(out["decision_id"]).to_numpy()
    out["changed"] = [
        bool(r) and o != n
        for r, o, n in zip(out["replayable"], out["original_agent"], out["replayed_agent"])
    ]
    return out[REPLAY_COLUMNS]


def load_shift(replay: pd.DataFrame) -> pd.DataFrame:
    """Per agent: decisions won before (original choice), after (replayed choice) and the
    difference (after - before); replayable decisions only, sorted by difference then id."""
    _require(replay, ["original_agent", "replayed_agent", "replayable"], "replay")
    usable = replay[replay["replayable"].astype(bool)]
    before = usable["original_agent"].dropna().value_counts()
    after = usable["replayed_agent"].dropna().value_counts()
    agents = sorted(set(before.index) | set(after.index))
    frame = pd.DataFrame(
        {
            "agent_id": agents,
            "before": [int(before.get(a, 0)) for a in agents],
            "after": [int(after.get(a, 0)) for a in agents],
        },
        columns=SHIFT_COLUMNS[:3],
    )
    frame = frame.astype({"before": "int64", "after": "int64"})
    frame["difference"] = frame["after"] - frame["before"]
    return frame.sort_values(
        ["difference", "agent_id"], ascending=[False, True], ignore_index=True
    )[SHIFT_COLUMNS]


def sweep_weight(
    decisions: pd.DataFrame,
    component: str,
    values: Iterable[float],
    base: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """Replay under ``base`` weights (default: the router defaults) with one component set
    to each of ``values``. Columns: the component name (its weight), changed (decisions
    that would go elsewhere), changed_share (of the replayable ones), top_agent and
    top_agent_share (the agent winning most decisions, and its share)."""
    if component not in COMPONENTS:
        raise ValidationError(
            f"component must be one of {', '.join(COMPONENTS)}, not {shown(component)}")
    if not isinstance(values, Iterable):
        raise ValidationError(f"values must be an iterable of weights, not {shown(values)}")
    if base is not None and not isinstance(base, Mapping):
        raise ValidationError(f"base must be a mapping of weights, not {type(base).__name__}")
    rows: list[dict[str, Any]] = []
    for value in values:
        replay = replay_decisions(decisions, {**(base or {}), component: value})
        usable = replay[replay["replayable"]]
        wins = usable["replayed_agent"].dropna().value_counts()
        wins = wins.sort_index().sort_values(ascending=False, kind="stable")
        rows.append(
            {
                component: float(value),
                "changed": int(usable["changed"].sum()),
                "changed_share": float(usable["changed"].mean()) if len(usable) else 0.0,
                "top_agent": wins.index[0] if len(wins) else None,
                "top_agent_share": float(wins.iloc[0] / len(usable)) if len(wins) else 0.0,
            }
        )
    return pd.DataFrame(
        rows, columns=[component, "changed", "changed_share", "top_agent", "top_agent_share"]
    )
