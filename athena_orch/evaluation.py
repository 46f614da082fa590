"""Off-policy evaluation: how another routing policy would have done, judged from the log.

Each routing decision logs the candidates it weighed, the agent it picked and the
probability with which it picked it (``propensity``). Joined with what then happened to
the task, that is enough to estimate the success rate (or mean duration) of a policy that
was never run, without running it:

    from athena_orch.analysis import (decision_outcomes, evaluate_policy, compare_policies,
                                      greedy_policy, uniform_policy, logged_policy)
    log = decision_outcomes(orch)            # decisions + task_type, outcome, success, ...
    evaluate_policy(log, uniform_policy())   # one row per estimator: estimate, low, high
    skill = log.pivot_table("success", "selected_agent", "task_type")
    compare_policies(log, {"uniform": uniform_policy(), "greedy": greedy_policy(skill)})

Outcomes (:func:`join_outcomes`). A decision is credited with the attempt it led to: the
next assignment of its task to its selected agent at or after ``decided_at`` (when several
decisions precede the same assignment, the latest one). That attempt ends completed
(``success`` 1, ``duration_ms`` the task's execution time), retried or failed (0), or
released or cancelled (no outcome: neither is the agent's doing); an attempt still open,
or a decision never followed by an assignment to its agent, has ``success`` NaN. The
queue's and the router's clocks must agree (they do unless a test swaps the queue's).

Policies are plain callables ``policy(row) -> {agent_id: probability}`` over
``row["candidates"]``; ``row`` maps the log's columns (``task_type`` included). Each
answer is checked: only candidates, no negative value, summing to 1.

Estimators, with ``w = π(a_log|x) / propensity`` and ``r`` the reward of the logged agent:

- ``ips``: mean(w·r). Unbiased, but its variance grows with the weights.
- ``snips``: Σw·r / Σw. Slightly biased, much steadier; for ``reward="duration_ms"``,
  where only completed attempts have a duration, it is the one that estimates the mean
  duration of the attempts the policy would have completed.
- ``dr`` (doubly robust): mean(Σ_a π(a|x)·q̂(x,a) + w·(r − q̂(x,a_log))), with ``q̂`` the
  expected reward of an agent on the task. By default ``q̂`` is the log's own mean reward
  per agent × task type, shrunk toward the agent's mean (itself shrunk toward the global
  mean) by ``SHRINK`` pseudo-observations; or pass ``reward_model``.

Intervals are percentile bootstraps over the decisions (resampled rows; ``q̂`` is not
refitted per resample); with one ``seed`` every policy sees the same resamples, so a
:func:`compare_policies` table compares them on the same draws. ``effective_n`` is Kish's
effective sample size (Σw)²/Σw²: how many decisions the estimate really rests on.

No overlap: when the target policy never picks the logged agent (say both are
deterministic and disagree everywhere) the log says nothing about it. Rather than IPS's
misleading 0, every estimate is then NaN and ``note`` says why. Partial support is
subtler: ``unsupported`` is the share of the target's choices that go to agents the
logging policy gave probability 0 (known from the logged ``propensities``; the weighted
router is deterministic, so anything but its choice). IPS and SNIPS score that share 0 and
DR as its model predicts; ``note`` says so. Only an exploring logger (the
learning policy) gives every agent support.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from . import validation as v
from .exceptions import EvaluationError, shown

Policy = Callable[[Mapping[str, Any]], Mapping[str, float]]
RewardTable = pd.DataFrame | Mapping[tuple[str, str], float]

ESTIMATORS = ("ips", "snips", "dr")
REWARDS = ("success", "duration_ms")
SHRINK = 1.0  # pseudo-observations pulling a cell mean toward the agent's, and its toward all
TOLERANCE = 1e-6  # how far a policy's probabilities may sum from 1
BOOT_CELLS = 2_000_000  # resampled indices held at once (rows × resamples per chunk)
PROPENSITY_COLUMNS = {"policy": None, "propensity": math.nan, "propensity_method": None,
                      "propensities": {}}
OUTCOME_COLUMNS = ["outcome", "success", "duration_ms", "outcome_at"]  # added after task_type
RESULT_COLUMNS = ["estimator", "estimate", "low", "high", "n", "matched", "unsupported",
                  "effective_n", "logged_mean", "reward", "n_without_reward",
                  "n_without_propensity", "note"]
_ACTIVE = ("assigned", "running")
_ENDS = ("completed", "pending", "failed", "cancelled")
_SUCCESS = {"completed": 1.0, "retried": 0.0, "failed": 0.0}


# ------------------------------------------------------------------------------ outcomes


def decision_outcomes(orch: Any) -> pd.DataFrame:
    """:func:`join_outcomes` of a manager's decision log, task history and tasks."""
    return join_outcomes(orch.router.decisions(), orch.queue.history_frame(),
                         orch.queue.to_frame())


def join_outcomes(decisions: pd.DataFrame, history: pd.DataFrame,
                  tasks: pd.DataFrame) -> pd.DataFrame:
    """The decisions (``router.decisions()``) with what happened to each: the columns
    task_type, outcome ('completed', 'retried', 'failed', 'released', 'cancelled' or None),
    success (1, 0 or NaN), duration_ms (completed attempts) and outcome_at. ``history`` is
    ``queue.history_frame()``, ``tasks`` is ``queue.to_frame()``; see the module doc for
    which attempt a decision is credited with. Logs from before propensities were recorded
    get the propensity columns filled with NaN/None/{}."""
    _columns(decisions, ["decision_id", "decided_at", "task_id", "selected_agent"],
             "decisions", "router.decisions()")
    moves = ["event_id", "at", "task_id", "from_status", "to_status", "agent_id", "detail"]
    if isinstance(history, pd.DataFrame) and history.empty:  # no task yet: no JSON columns
        history = history.reindex(columns=moves)
    _columns(history, moves, "history", "queue.history_frame()")
    _columns(tasks, ["task_id", "task_type", "execution_duration_ms"], "tasks",
             "queue.to_frame()")
    texts = moves[2:]  # Arrow-backed text from the queue: plain objects, None for missing
    history = history.astype({c: object for c in texts})
    history[texts] = history[texts].where(history[texts].notna(), None)
    out = decisions.reset_index(drop=True)
    for column, empty in PROPENSITY_COLUMNS.items():
        if column not in out.columns:
            out[column] = [dict(empty) for _ in range(len(out))] if isinstance(empty, dict) \
                else pd.Series(empty, index=out.index, dtype=object if empty is None else float)
    attempts = _attempts(history, tasks)
    keyed = out.loc[out["task_id"].notna() & out["selected_agent"].notna(),
                    ["decision_id", "decided_at", "task_id", "selected_agent"]]
    keyed = keyed.assign(decided_at=_utc(keyed["decided_at"]), task_id=_keys(keyed["task_id"]),
                         selected_agent=_keys(keyed["selected_agent"])).sort_values(
        ["decided_at", "decision_id"])
    credited = pd.merge_asof(
        keyed, attempts.sort_values("assigned_at"), left_on="decided_at",
        right_on="assigned_at", by=["task_id", "selected_agent"], direction="forward")
    superseded = credited["assignment"].notna() & credited.duplicated("assignment", keep="last")
    credited.loc[superseded, OUTCOME_COLUMNS] = np.nan
    credited = credited.set_index("decision_id")
    task_type = tasks.drop_duplicates("task_id").set_index("task_id")["task_type"]
    out["task_type"] = task_type.reindex(out["task_id"]).to_numpy()
    for column in OUTCOME_COLUMNS:
        out[column] = credited[column].reindex(out["decision_id"]).to_numpy()
    out["outcome"] = out["outcome"].astype(object).where(out["outcome"].notna(), None)
    out["success"] = out["success"].astype(float)
    out["duration_ms"] = out["duration_ms"].astype(float)
    out["outcome_at"] = pd.to_datetime(out["outcome_at"], utc=True)
    return out


def _attempts(history: pd.DataFrame, tasks: pd.DataFrame) -> pd.DataFrame:
    """One row per hand-out of a task to an agent: task_id, selected_agent, assigned_at,
    assignment (its event id) and how it ended (outcome, success, duration_ms, outcome_at;
    NaN while open). A task has one attempt at a time, so an attempt ends at the task's
    next move out of assigned/running."""
    starts = history.loc[history["to_status"].eq("assigned"),
                         ["event_id", "at", "task_id", "agent_id"]]
    ends = history.loc[history["from_status"].isin(_ACTIVE) & history["to_status"].isin(_ENDS),
                       ["event_id", "at", "task_id", "to_status", "detail"]]
    starts = starts.rename(columns={"event_id": "assignment", "at": "assigned_at",
                                    "agent_id": "selected_agent"})
    starts = starts.assign(task_id=_keys(starts["task_id"]),
                           selected_agent=_keys(starts["selected_agent"]))
    ends = ends.rename(columns={"event_id": "end", "at": "outcome_at"})
    ends = ends.assign(task_id=_keys(ends["task_id"]))
    paired = pd.merge_asof(starts.sort_values("assignment"), ends.sort_values("end"),
                           left_on="assignment", right_on="end", by="task_id",
                           direction="forward", allow_exact_matches=False)
    released = paired["detail"].astype(str).str.startswith("released")
    outcome = paired["to_status"].replace({"pending": "retried"}).where(~released, "released")
    paired["outcome"] = outcome.where(paired["to_status"].notna(), None)
    paired["success"] = paired["outcome"].map(_SUCCESS).astype(float)
    durations = tasks.drop_duplicates("task_id").set_index("task_id")["execution_duration_ms"]
    completed = paired["outcome"].eq("completed")
    paired["duration_ms"] = np.where(
        completed, durations.reindex(paired["task_id"]).to_numpy(dtype=float, na_value=np.nan),
        np.nan)
    paired["assigned_at"] = _utc(paired["assigned_at"])
    return paired[["task_id", "selected_agent", "assigned_at", "assignment", "outcome",
                   "success", "duration_ms", "outcome_at"]]


def _keys(values: pd.Series) -> pd.Series:
    """Ids as plain objects: merge_asof wants one dtype on both sides, and frames read
    back from a file or another backend may hold them as str or object."""
    return values.astype(object)


def _utc(values: pd.Series) -> pd.Series:
    """Timestamps in one unit and zone, as merge_asof needs them on both sides."""
    return pd.to_datetime(values, utc=True).dt.as_unit("us")


# ------------------------------------------------------------------------------ policies


def uniform_policy() -> Policy:
    """Every candidate equally likely."""
    def uniform(row: Mapping[str, Any]) -> dict[str, float]:
        candidates = list(row["candidates"])
        return {a: 1.0 / len(candidates) for a in candidates}
    return uniform


def greedy_policy(table: RewardTable) -> Policy:
    """The candidate with the highest value in ``table`` for the row's task type; tied
    candidates share the probability equally (candidates without a value are never
    chosen). ``table`` is a DataFrame indexed by agent_id with one column per task type, or
    a dict {(agent_id, task_type): value}.

    Ties are shared, not broken by candidate order: the log lists candidates best first by
    the logging policy's own score (under "thompson", its random draw), so an order-based
    choice would follow the logged action and bias every estimate."""
    values = _table("greedy_policy table", table)

    def greedy(row: Mapping[str, Any]) -> dict[str, float]:
        known = {a: values[(a, row["task_type"])] for a in row["candidates"]
                 if (a, row["task_type"]) in values}
        if not known:
            raise EvaluationError(
                f"greedy_policy has no value for any candidate of decision "
                f"{shown(row.get('decision_id'))} (task type {shown(row['task_type'])})")
        best = max(known.values())
        tied = [a for a, value in known.items() if value == best]
        return {a: 1.0 / len(tied) for a in tied}
    return greedy


def logged_policy() -> Policy:
    """The logging policy itself, from the logged ``propensities`` (a deterministic
    decision with an empty dict is its selected agent with probability 1). Its IPS and
    SNIPS estimates are the logged mean exactly: a check of the whole pipeline."""
    def logged(row: Mapping[str, Any]) -> Mapping[str, float]:
        probabilities = row.get("propensities")
        if isinstance(probabilities, Mapping) and probabilities:
            return probabilities
        if row.get("propensity") == 1.0:
            return {row["selected_agent"]: 1.0}
        raise EvaluationError(
            f"decision {shown(row.get('decision_id'))} logged no propensities over its "
            "candidates, only the chosen agent's: logged_policy needs them all")
    return logged


def _table(name: str, table: Any) -> dict[tuple[Any, Any], float]:
    """A value table as {(agent_id, task_type): float}, finite values only."""
    if isinstance(table, pd.DataFrame):
        pairs = table.stack().to_dict()  # NaN cells are left out
    elif isinstance(table, Mapping):
        pairs = dict(table)
    else:
        raise EvaluationError(f"{name} must be a DataFrame (agent_id × task_type) or a dict "
                              f"{{(agent_id, task_type): value}}, not {type(table).__name__}")
    out = {}
    for key, value in pairs.items():
        if not (isinstance(key, tuple) and len(key) == 2):
            raise EvaluationError(f"{name} keys must be (agent_id, task_type) pairs, not "
                                  f"{shown(key)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
                or not math.isfinite(value):
            raise EvaluationError(f"{name} value for {shown(key)} must be a finite number, "
                                  f"not {shown(value)}")
        out[key] = float(value)
    return out


def _distribution(answer: Any, row: Mapping[str, Any], name: str) -> dict[str, float]:
    """A policy's answer checked: a dict over the row's candidates, non-negative, sum 1."""
    if isinstance(answer, dict) and answer.keys() <= set(row["candidates"]) and all(
            type(p) is float and 0.0 <= p <= 1.0 for p in answer.values()) \
            and abs(math.fsum(answer.values()) - 1.0) <= TOLERANCE:
        return answer  # the common case, checked without building a message
    where = f"decision {shown(row.get('decision_id'))}"
    if not isinstance(answer, Mapping):
        raise EvaluationError(f"{name} returned {shown(answer)} for {where}; a policy "
                              "returns a dict agent_id -> probability")
    candidates = set(row["candidates"])
    outside = [a for a in answer if a not in candidates]
    if outside:
        raise EvaluationError(f"{name} gave probability to {shown(outside)} for {where}, "
                              f"which are not among its candidates {shown(sorted(candidates))}")
    for agent, p in answer.items():
        if isinstance(p, bool) or not isinstance(p, (int, float, np.number)) \
                or not math.isfinite(p) or p < 0:
            raise EvaluationError(f"{name} gave {shown(agent)} the probability {shown(p)} "
                                  f"for {where}; probabilities are finite and non-negative")
    total = math.fsum(float(p) for p in answer.values())
    if abs(total - 1.0) > TOLERANCE:
        raise EvaluationError(f"{name}'s probabilities for {where} sum to {total:.6g}, not 1")
    return {a: float(p) for a, p in answer.items()}


# ----------------------------------------------------------------------------- estimates


@dataclass(frozen=True)
class _Usable:
    """The decisions an estimate can use (selected agent, reward and propensity known)."""
    rows: list[dict[str, Any]]
    agents: np.ndarray
    task_types: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    reward_name: str
    without_reward: int
    without_propensity: int


def evaluate_policy(log: pd.DataFrame, policy: Policy, *, reward: str = "success",
                    estimators: Iterable[str] | str = ESTIMATORS,
                    reward_model: RewardTable | Policy | None = None, n_boot: int = 1000,
                    confidence: float = 0.95, seed: int | None = 0,
                    drop_missing: bool = False) -> pd.DataFrame:
    """The mean ``reward`` ('success' or 'duration_ms') ``policy`` would have had on the
    logged decisions (``log``: :func:`decision_outcomes`). One row per estimator with
    estimate, low and high (percentile bootstrap at ``confidence``, ``n_boot`` resamples,
    ``seed``), n (decisions used), matched (those where the policy could have picked the
    logged agent), unsupported (see the module doc), effective_n, logged_mean (the
    logging policy's observed mean),
    n_without_reward (dropped: no agent, no outcome yet, or no duration) and
    n_without_propensity, and a note. A decision without propensity is an error (its rows
    come from before propensities were logged) unless ``drop_missing``. ``reward_model``
    (for 'dr'): a table like :func:`greedy_policy`'s or a callable ``row -> {agent: value}``."""
    names = _estimators(estimators)
    n_boot, confidence, seed = _boot_settings(n_boot, confidence, seed)
    usable = _usable(log, reward, drop_missing)
    return _estimate(usable, policy, "policy", names, reward_model, n_boot, confidence, seed)


def compare_policies(log: pd.DataFrame, policies: Mapping[str, Policy],
                     **options: Any) -> pd.DataFrame:
    """:func:`evaluate_policy` for each named policy (same options, same resamples), one
    row per (policy, estimator), after a first row ``policy="logged"``,
    ``estimator="observed"``: the logging policy's observed mean and its interval."""
    if not isinstance(policies, Mapping) or not policies:
        raise EvaluationError("policies must be a non-empty dict name -> policy")
    unknown = set(options) - {"reward", "estimators", "reward_model", "n_boot", "confidence",
                              "seed", "drop_missing"}
    if unknown:
        raise EvaluationError(f"compare_policies got unknown options {shown(sorted(unknown))}")
    names = _estimators(options.get("estimators", ESTIMATORS))
    n_boot, confidence, seed = _boot_settings(options.get("n_boot", 1000),
                                              options.get("confidence", 0.95),
                                              options.get("seed", 0))
    usable = _usable(log, options.get("reward", "success"), options.get("drop_missing", False))
    ones = np.ones(len(usable.reward))
    n = len(ones)
    observed = _rows(usable, {"observed": (usable.reward, None)}, ones, n_boot, confidence,
                     seed, True, "", n, 0.0)
    tables = [observed.assign(policy="logged")]
    for name, policy in policies.items():
        table = _estimate(usable, policy, f"policy {name!r}", names,
                          options.get("reward_model"), n_boot, confidence, seed)
        tables.append(table.assign(policy=name))
    return pd.concat(tables, ignore_index=True)[["policy", *RESULT_COLUMNS]]


def _estimate(usable: _Usable, policy: Any, name: str, estimators: list[str],
              reward_model: Any, n_boot: int, confidence: float,
              seed: int | None) -> pd.DataFrame:
    if not callable(policy):
        raise EvaluationError(f"{name} must be a callable row -> {{agent: probability}}, "
                              f"not {type(policy).__name__}")
    chosen = [_distribution(policy(row), row, name) for row in usable.rows]
    on_logged = np.array([pi.get(a, 0.0) for pi, a in zip(chosen, usable.agents)])
    w = on_logged / usable.propensity
    r = usable.reward
    matched = int((on_logged > 0).sum())
    terms: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    if "ips" in estimators:
        terms["ips"] = (w * r, None)
    if "snips" in estimators:
        terms["snips"] = (w * r, w)
    if "dr" in estimators:
        direct, on_logged_q = _model_terms(usable, chosen, reward_model)
        terms["dr"] = (direct + w * (r - on_logged_q), None)
    unsupported = _unsupported(usable.rows, chosen)
    if not matched:
        note = (f"no overlap: on none of the {len(r)} decisions would the policy have picked "
                "the logged agent, so the log says nothing about it (log with an exploring "
                "policy)")
    elif unsupported > 0:
        note = (f"partial support: {unsupported:.1%} of the policy's choices go to agents the "
                "logging policy never picks there; IPS and SNIPS score them 0, DR leans on its "
                "reward model for them")
    else:
        note = ""
    return _rows(usable, terms, w, n_boot, confidence, seed, bool(matched), note, matched,
                 unsupported)


def _unsupported(rows: list[dict[str, Any]], chosen: list[dict[str, float]]) -> float:
    """The mean share of the target's probability on agents the logging policy gave
    probability 0, over the decisions whose logged spread is known (all their
    ``propensities``, or a deterministic choice); NaN when none is."""
    shares = []
    for row, pi in zip(rows, chosen):
        spread = row.get("propensities")
        if not (isinstance(spread, Mapping) and spread):
            if row.get("propensity") != 1.0:
                continue
            spread = {row["selected_agent"]: 1.0}
        shares.append(sum(p for a, p in pi.items() if not spread.get(a, 0.0)))
    return float(np.mean(shares)) if shares else math.nan


def _rows(usable: _Usable, terms: dict[str, tuple[np.ndarray, np.ndarray | None]],
          w: np.ndarray, n_boot: int, confidence: float, seed: int | None, judged: bool,
          note: str, matched: int, unsupported: float) -> pd.DataFrame:
    """The result table: point estimates and bootstrap intervals (NaN when the log cannot
    judge the policy) and the counts."""
    n = len(usable.reward)
    estimates = {k: _ratio(num.sum(), n if den is None else den.sum()) if judged else math.nan
                 for k, (num, den) in terms.items()}
    bounds = _bootstrap(terms, n, n_boot, confidence, seed) if judged else {}
    square = float((w * w).sum())
    rows = [{
        "estimator": k, "estimate": estimates[k],
        "low": bounds.get(k, (math.nan, math.nan))[0],
        "high": bounds.get(k, (math.nan, math.nan))[1],
        "n": n, "matched": matched, "unsupported": unsupported,
        "effective_n": float(w.sum()) ** 2 / square if square > 0 else 0.0,
        "logged_mean": float(usable.reward.mean()), "reward": usable.reward_name,
        "n_without_reward": usable.without_reward,
        "n_without_propensity": usable.without_propensity, "note": note,
    } for k in terms]
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def _bootstrap(terms: dict[str, tuple[np.ndarray, np.ndarray | None]], n: int, n_boot: int,
               confidence: float, seed: int | None) -> dict[str, tuple[float, float]]:
    """Percentile intervals of each Σnum/Σden (den: n) over ``n_boot`` row resamples, drawn
    as index matrices a chunk of resamples at a time (one draw sequence per seed and n)."""
    rng = np.random.default_rng(seed)
    per_chunk = max(1, BOOT_CELLS // n)
    draws: dict[str, list[np.ndarray]] = {k: [] for k in terms}
    for start in range(0, n_boot, per_chunk):
        index = rng.integers(0, n, size=(min(per_chunk, n_boot - start), n))
        for k, (num, den) in terms.items():
            top = num[index].sum(axis=1)
            bottom = np.full(len(index), float(n)) if den is None else den[index].sum(axis=1)
            draws[k].append(np.divide(top, bottom, out=np.full(len(index), np.nan),
                                      where=bottom != 0))
    tail = (1.0 - confidence) / 2.0
    out = {}
    for k, parts in draws.items():
        values = np.concatenate(parts)
        if np.isnan(values).all():
            out[k] = (math.nan, math.nan)
        else:
            low, high = np.nanquantile(values, [tail, 1.0 - tail])
            out[k] = (float(low), float(high))
    return out


def _model_terms(usable: _Usable, chosen: list[dict[str, float]],
                 reward_model: Any) -> tuple[np.ndarray, np.ndarray]:
    """Per decision, Σ_a π(a|x)·q̂(x,a) and q̂(x, logged agent)."""
    rows = np.array([i for i, pi in enumerate(chosen) for p in pi.values() if p > 0], dtype=int)
    agents = np.array([a for pi in chosen for a, p in pi.items() if p > 0], dtype=object)
    probs = np.array([p for pi in chosen for p in pi.values() if p > 0], dtype=float)
    n = len(chosen)
    q = _q_values(usable, reward_model,
                  np.concatenate([rows, np.arange(n)]),
                  np.concatenate([agents, usable.agents.astype(object)]))
    direct = np.bincount(rows, weights=probs * q[: len(rows)], minlength=n)
    return direct, q[len(rows):]


def _q_values(usable: _Usable, model: Any, rows: np.ndarray, agents: np.ndarray) -> np.ndarray:
    """q̂ for each (decision, agent) pair: the default smoothed means, a table or a
    callable ``row -> {agent: value}``."""
    if model is None:
        return _smoothed_means(usable)(agents, usable.task_types[rows])
    if callable(model):
        answers: dict[int, Any] = {}
        values = np.empty(len(rows))
        for j, (i, agent) in enumerate(zip(rows.tolist(), agents)):
            if i not in answers:
                answers[i] = model(usable.rows[i])
            values[j] = _model_value(answers[i], agent, usable.rows[i], agent)
        return values
    table = _table("reward_model", model)
    return np.array([_model_value(table, (a, usable.task_types[i]), usable.rows[i], a)
                     for i, a in zip(rows.tolist(), agents)], dtype=float)


def _model_value(values: Any, key: Any, row: Mapping[str, Any], agent: Any) -> float:
    value = values.get(key) if isinstance(values, Mapping) else None
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) \
            or not math.isfinite(value):
        raise EvaluationError(
            f"reward_model gives no finite value for agent {shown(agent)} on decision "
            f"{shown(row.get('decision_id'))} (task type {shown(row.get('task_type'))}): "
            f"{shown(value)}")
    return float(value)


def _smoothed_means(usable: _Usable) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The log's mean reward per agent × task type, shrunk toward the agent's mean, itself
    shrunk toward the global mean (``SHRINK`` pseudo-observations each); an unseen cell
    falls back to its agent's mean, an unseen agent to the global mean."""
    frame = pd.DataFrame({"agent": usable.agents, "task_type": usable.task_types,
                          "r": usable.reward})
    overall = float(frame["r"].mean())
    by_agent = frame.groupby("agent")["r"].agg(["sum", "count"])
    agent_mean = (by_agent["sum"] + SHRINK * overall) / (by_agent["count"] + SHRINK)
    cells = frame.groupby(["agent", "task_type"], dropna=False)["r"].agg(["sum", "count"])
    prior = agent_mean.reindex(cells.index.get_level_values("agent")).to_numpy()
    cell_mean = (cells["sum"] + SHRINK * prior) / (cells["count"] + SHRINK)

    def lookup(agents: np.ndarray, task_types: np.ndarray) -> np.ndarray:
        cell = cell_mean.reindex(pd.MultiIndex.from_arrays([agents, task_types])).to_numpy()
        agent = agent_mean.reindex(agents).to_numpy()
        return np.where(np.isnan(cell), np.where(np.isnan(agent), overall, agent), cell)
    return lookup


# ----------------------------------------------------------------------------- checking


def _usable(log: Any, reward: Any, drop_missing: Any) -> _Usable:
    """The decisions with a selected agent, a reward and a propensity; clear errors when
    the log cannot answer (no propensities, no outcomes, nothing left)."""
    if not isinstance(log, pd.DataFrame):
        raise EvaluationError(f"log must be a DataFrame (decision_outcomes(orch)), not "
                              f"{type(log).__name__}")
    if reward not in REWARDS:
        raise EvaluationError(f"reward must be one of {', '.join(REWARDS)}, not {shown(reward)}")
    if not isinstance(drop_missing, bool):
        raise EvaluationError(f"drop_missing must be True or False, not {shown(drop_missing)}")
    _columns(log, ["decision_id", "candidates", "selected_agent", "task_type"], "log",
             "decision_outcomes(orch)")
    if reward not in log.columns:
        raise EvaluationError(f"log has no outcomes (no {reward!r} column): join the decisions "
                              "with what happened to their tasks, decision_outcomes(orch)")
    if "propensity" not in log.columns:
        raise EvaluationError("log has no propensity column: its decisions were logged "
                              "before propensities were recorded, so no estimate is possible")
    try:
        r = log[reward].to_numpy(dtype=float, na_value=np.nan)
        p = log["propensity"].to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise EvaluationError(f"log columns {reward!r} and 'propensity' must be numbers") from None
    has_reward = log["selected_agent"].notna().to_numpy() & np.isfinite(r)
    batch = has_reward & (log["source"] == "route_batch").to_numpy() if "source" in log \
        else np.zeros(len(log), dtype=bool)
    if batch.any() and not drop_missing:
        raise EvaluationError(
            f"{int(batch.sum())} of the {int(has_reward.sum())} decisions with an outcome "
            "come from route_batch, which logs the chosen agent and its propensity but not "
            "the other candidates a policy could have chosen; log with router.decide (or "
            "route_task) to evaluate, or drop_missing=True evaluates on the other "
            f"{int((has_reward & ~batch).sum())}")
    missing = (has_reward & np.isnan(p)) | batch
    if missing.any() and not drop_missing:
        raise EvaluationError(
            f"{int(missing.sum())} of the {int(has_reward.sum())} decisions with an outcome "
            "have no propensity (decisions logged before propensities were recorded, or by "
            "a policy that does not record them); drop_missing=True evaluates on the "
            f"other {int((has_reward & ~missing).sum())}")
    use = has_reward & ~missing
    bad = use & ~((p > 0) & (p <= 1))
    if bad.any():
        ids = log.loc[bad, "decision_id"].head(5).tolist()
        raise EvaluationError(f"propensities must be in (0, 1]; decisions {shown(ids)} "
                              f"have {shown(p[bad][:5].tolist())}")
    if not use.any():
        raise EvaluationError(
            f"no usable decision in a log of {len(log)}: {int((~has_reward).sum())} have no "
            f"{reward} (no agent chosen, or no outcome yet) and {int(missing.sum())} no "
            "propensity")
    used = log.loc[use]
    return _Usable(
        rows=[dict(zip(used.columns, values))
              for values in zip(*(used[c].to_numpy(dtype=object) for c in used.columns))],
        agents=used["selected_agent"].to_numpy(dtype=object),
        task_types=used["task_type"].to_numpy(dtype=object), propensity=p[use], reward=r[use],
        reward_name=reward, without_reward=int((~has_reward).sum()),
        without_propensity=int(missing.sum()))


def _estimators(estimators: Any) -> list[str]:
    names = [estimators] if isinstance(estimators, str) else estimators
    try:
        names = list(names)
    except TypeError:
        raise EvaluationError(f"estimators must be names among {', '.join(ESTIMATORS)}, "
                              f"not {shown(estimators)}") from None
    wrong = [e for e in names if e not in ESTIMATORS]
    if wrong or not names or len(set(names)) != len(names):
        raise EvaluationError(f"estimators must be distinct names among "
                              f"{', '.join(ESTIMATORS)}, not {shown(estimators)}")
    return names


def _boot_settings(n_boot: Any, confidence: Any, seed: Any) -> tuple[int, float, int | None]:
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or not 1 <= n_boot <= 10**6:
        raise EvaluationError(f"n_boot must be an integer from 1 to 1000000, not {shown(n_boot)}")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) \
            or not 0 < confidence < 1:
        raise EvaluationError(f"confidence must be a number strictly between 0 and 1, not "
                              f"{shown(confidence)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise EvaluationError(f"seed must be a non-negative integer or None, not {shown(seed)}")
    return n_boot, float(confidence), seed


def _columns(frame: Any, columns: list[str], what: str, source: str) -> None:
    v.frame_columns(frame, columns, what, source, EvaluationError)

