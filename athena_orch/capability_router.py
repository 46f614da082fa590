"""Pick the best agent for a task, as steps a notebook user can redo by hand.

filter (capable, active, below capacity, not excluded) -> score components
(track_record, headroom, speed, fit) -> weighted total -> rank (score, then lower load,
then agent id). ``explain`` shows every step as a DataFrame; ``decide``/``route_task``/
``route_batch`` also write the decision to the log.

The steps are array functions (``filter_steps``, ``component_arrays``, ``weighted_score``,
``rank_eligible``) run over ``registry.routing_read()``: every agent's figures and live
load as arrays, read fresh in one statement, the static part cached until the agent
graph changes. A decision costs no DataFrame and no write: the log is written behind
(:mod:`athena_orch.decision_log`).
"""

from __future__ import annotations

import heapq
import json
import math
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from . import validation as v
from .agent_registry import AgentRegistry, RoutingSnapshot
from .decision_log import DecisionLog
from .exceptions import ValidationError
from .models import PRIORITY_RANK, RoutingDecision, Task
from .stores import MetaStore

COMPONENTS = ("track_record", "headroom", "speed", "fit")
DEFAULT_WEIGHTS = {"track_record": 0.4, "headroom": 0.3, "speed": 0.15, "fit": 0.15}
EXPLAIN_COLUMNS = ["agent_id", "capable", "active", "load", "capacity", "at_capacity",
                   *COMPONENTS, "score", "rank", "excluded_reason"]
LOGGED_PARTS = (*COMPONENTS, "load", "capacity")  # per candidate in the log's ``components``
POLICIES = ("weighted", "thompson")
POSTERIOR_COLUMNS = ["skill_completed", "skill_failed", "alpha", "beta", "posterior_mean",
                     "draw"]  # explain's extra columns under "thompson"
BATCH_TIE = 1e-12  # route_batch: scores this close to the best count as a tie
_PLAIN_STRINGS = (str, np.str_)  # requirement items a batch may cache by value


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
    return _parse_task(task, None)[:3]


def _parse_task(task: Any, known: dict[tuple[str, ...], list[str]] | None
                ) -> tuple[str | None, list[str], str, str | None]:
    """``task_requirements`` and the task type (None if not given); ``known`` caches
    requirement lists already checked (a batch repeats a few lists many times), keyed by
    their exact strings."""
    if isinstance(task, Task):
        task_id, requirements, priority = task.id, task.requirements, task.priority
        task_type = task.task_type
    elif isinstance(task, dict):
        task_id = task.get("id", task.get("task_id"))
        requirements = task.get("requirements")
        priority = task.get("priority")
        priority = "medium" if priority is None else priority
        task_type = task.get("task_type")
    else:
        raise ValidationError(f"task must be a Task or a dict with 'requirements', not "
                              f"{type(task).__name__}")
    if not (type(task_id) is str and task_id.isascii() and task_id.strip()):  # fast path
        task_id = v.optional_text("task id", task_id)
    if known is not None and type(requirements) in (list, tuple) and all(
            type(r) in _PLAIN_STRINGS for r in requirements):
        key = tuple(requirements)
        checked = known.get(key)
        if checked is None:
            checked = known[key] = v.string_list("requirements", requirements)
    else:
        checked = v.string_list("requirements", requirements)
    if task_type is not None and not (type(task_type) is str and task_type.isascii()
                                      and task_type.strip()):
        task_type = v.optional_text("task_type", task_type)
    return task_id, checked, v.priority(priority), task_type


# ---------------------------------------------------------------------- the steps
def filter_steps(capable: np.ndarray, active: np.ndarray, load: np.ndarray,
                 capacity: np.ndarray, excluded: np.ndarray) -> dict[str, np.ndarray]:
    """Step 1, filter: capable (has every requirement), active, below capacity, not
    excluded by the caller -> ``eligible``."""
    steps = {"capable": capable, "active": active, "load": load, "capacity": capacity,
             "at_capacity": load >= capacity, "excluded": excluded}
    steps["eligible"] = (capable & active & ~steps["at_capacity"] & ~excluded)
    return steps


def fit_array(sizes: np.ndarray, confidence: np.ndarray, n_requirements: int) -> np.ndarray:
    """fit: capability confidence on the requirements times how specialised the agent is
    ((requirements + 1) / (its capabilities + 1), at most 1)."""
    specialisation = np.minimum((n_requirements + 1) / (sizes + 1), 1.0)
    return specialisation * confidence


def component_arrays(completed: np.ndarray, failed: np.ndarray, average_ms: np.ndarray,
                     load: np.ndarray, capacity: np.ndarray, fit: np.ndarray, *,
                     prior_success_rate: float, prior_weight: float) -> dict[str, np.ndarray]:
    """Step 2, the components, each in [0, 1]:

    - track_record: success rate pulled toward ``prior_success_rate`` as if the agent had
      ``prior_weight`` earlier tasks, so one lucky task does not beat a long record;
    - headroom: share of capacity still free;
    - speed: median / (median + own) mean completion time (the median over the agents
      given that have completed work); 0.5 without history;
    - fit: see :func:`fit_array`.
    """
    completed = completed.astype(float)
    failed = failed.astype(float)
    track = (completed + prior_success_rate * prior_weight) / (completed + failed + prior_weight)
    headroom = np.clip(1 - load / np.maximum(capacity, 1), 0, 1)
    timed = completed > 0
    speed = np.full(len(completed), 0.5)
    if timed.any():
        reference = float(np.median(average_ms[timed]))
        with np.errstate(invalid="ignore", divide="ignore"):
            ratio = reference / (reference + average_ms)
        speed[timed] = np.where(np.isfinite(ratio[timed]), ratio[timed], 0.5)
    return {"track_record": track, "headroom": headroom, "speed": speed, "fit": fit}


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


def excluded_reasons(steps: dict[str, np.ndarray], agents: pd.DataFrame | Iterable[frozenset],
                     requirements: list[str]) -> list[str]:
    """Why each agent cannot take the task ('' when it can). ``agents``: the routing
    frame, or each agent's set of capabilities."""
    needed = set(requirements)
    capability_sets = agents["capability_set"] if isinstance(agents, pd.DataFrame) else agents
    reasons = []
    for i, caps in enumerate(capability_sets):
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


# ---------------------------------------------------------------------- learning
def beta_posterior(skill_completed: np.ndarray, skill_failed: np.ndarray,
                   completed: np.ndarray, failed: np.ndarray, *, prior_success_rate: float,
                   prior_weight: float, skill_prior_weight: float
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Beta(alpha, beta) posterior of each agent's success at one kind of work: its
    outcomes at that work on a prior worth ``skill_prior_weight`` tasks, centred on its
    record at all its other work (itself pulled toward ``prior_success_rate`` as the
    track record is). An agent new to the work starts from what it does elsewhere."""
    skill_completed = skill_completed.astype(float)
    skill_failed = skill_failed.astype(float)
    other_completed = np.maximum(completed - skill_completed, 0)
    other_failed = np.maximum(failed - skill_failed, 0)
    mean = ((other_completed + prior_success_rate * prior_weight)
            / (other_completed + other_failed + prior_weight))
    return (skill_completed + mean * skill_prior_weight,
            skill_failed + (1 - mean) * skill_prior_weight)


class _Levels:
    """route_batch's open capable agents for one requirement list, grouped by score.

    ``score(r) = fixed[r] + headroom * (1 - loads[r] / caps[r])``, read from the batch's
    shared ``loads`` (which other requirement lists move too). ``levels`` maps each
    distinct negated score to a heap of ``(load, row)``; ``order`` is a heap of those keys,
    one entry per level. An entry whose load is out of date is stale: its agent's score has
    only fallen since, so it is moved to its level when it is met at the top of one.
    """

    def __init__(self, fixed: list[float], headroom: float, loads: list[int],
                 caps: list[int], rows: list[int]):
        self.fixed, self.headroom, self.loads, self.caps = fixed, headroom, loads, caps
        self.levels: dict[float, list[tuple[int, int]]] = {}
        self.order: list[float] = []
        for r in rows:
            level = self.levels.setdefault(self._key(r), [])
            level.append((loads[r], r))
        for level in self.levels.values():
            heapq.heapify(level)
        self.order = list(self.levels)
        heapq.heapify(self.order)
        self.moved = 0

    def score(self, r: int) -> float:
        return self.fixed[r] + self.headroom * (1 - self.loads[r] / self.caps[r])

    def _key(self, r: int) -> float:
        s = self.score(r)
        return -s if s == s else math.inf  # NaN scores rank last

    def requeue(self, r: int) -> None:
        """Put agent ``r`` back at its current load (if it still has a free slot)."""
        load = self.loads[r]
        if load < self.caps[r]:
            key = self._key(r)
            level = self.levels.get(key)
            if level is None:
                self.levels[key] = [(load, r)]
                heapq.heappush(self.order, key)
            else:
                heapq.heappush(level, (load, r))

    def _top(self, key: float) -> tuple[int, int] | None:
        """The level's best up-to-date (load, row), moving stale entries out of it."""
        level, loads = self.levels[key], self.loads
        while level:
            top = level[0]
            if loads[top[1]] == top[0]:
                return top
            heapq.heappop(level)
            self.moved += 1
            self.requeue(top[1])
        return None

    def pick(self) -> int | None:
        """Take the best open agent: highest score, scores within BATCH_TIE of it counting
        as tied, then the lower load, then the lower row (= id). None if none is open."""
        order, levels, loads = self.order, self.levels, self.loads
        heappop, requeue = heapq.heappop, self.requeue
        while order:  # the best level with an up-to-date entry (= self._top, inlined)
            best = order[0]
            level = levels[best]
            while level:
                top = level[0]
                if loads[top[1]] == top[0]:
                    break
                heappop(level)
                requeue(top[1])  # a lower score: order[0] stays
            else:
                del levels[heappop(order)]
                continue
            break
        else:
            return None
        limit = -(-best - BATCH_TIE)
        if best != math.inf and ((len(order) > 1 and order[1] <= limit)
                            or (len(order) > 2 and order[2] <= limit)):
            while True:  # every level within BATCH_TIE: a subtree at the heap's root
                moved, tied, stack = self.moved, [], [0]
                while stack:
                    i = stack.pop()
                    if i < len(order) and order[i] <= limit:
                        tied.append(order[i])
                        stack += (2 * i + 1, 2 * i + 2)
                tops = [(top, key) for key in tied if (top := self._top(key)) is not None]
                if self.moved == moved:
                    break
            top, best = min(tops)
        heappop(levels[best])
        return top[1]


class _PosteriorPool:
    """Thompson sampling over a pool of posterior draws, with exact propensities.

    ``draws`` holds ``M`` draws of every agent's success (rows: draws, columns: agents of
    the whole snapshot); this pool's agents are the columns ``rows``. Each draw has a
    winner: the open agent with the highest ``fixed + share_head * headroom + share_track
    * draw``. A choice takes a draw uniformly at random and gives the task to its winner,
    so it is distributed as Thompson sampling's (one posterior draw per decision), and the
    probability of each choice is exactly the share of draws its agent wins.

    route_batch keeps a pool per requirement list and task type over the whole batch. A
    pick only lowers its agent's score (or closes it), so only the draws that agent was
    winning can change winner: :meth:`moved` marks them, and they are recomputed (all at
    once) when the pool is next used. ``holders`` (shared by a batch's pools) maps each
    agent's row to the pools in which it wins a draw, so a pick finds them directly.
    """

    def __init__(self, rows: np.ndarray, fixed: np.ndarray, draws: np.ndarray,
                 caps: np.ndarray, share_head: float, share_track: float,
                 holders: dict[int, set[_PosteriorPool]] | None = None):
        self.rows, self.fixed, self.draws = rows, fixed, draws
        self.caps = caps[rows]
        self.share_head, self.share_track = share_head, share_track
        self.holders = {} if holders is None else holders
        self.column = {int(r): k for k, r in enumerate(rows.tolist())}
        self.win = np.full(len(draws), -1)
        self.wins: dict[int, set[int]] = {}  # column -> the draws it wins
        self.dirty: set[int] = set(range(len(draws)))

    def scores(self, loads: np.ndarray) -> np.ndarray:
        """Each agent's score without its draw at ``loads``; -inf without a free slot."""
        load = loads[self.rows]
        return np.where(load < self.caps, self.fixed + self.share_head
                        * (1 - load / np.maximum(self.caps, 1)), -np.inf)

    def _refresh(self, loads: np.ndarray) -> None:
        """Find the winners of the marked draws."""
        which = np.fromiter(self.dirty, dtype=np.intp, count=len(self.dirty))
        self.dirty.clear()
        if not len(self.rows):
            return
        totals = self.draws[which][:, self.rows]
        totals *= self.share_track
        totals += self.scores(loads)
        best = np.argmax(totals, axis=1)
        best[~np.isfinite(totals[np.arange(len(which)), best])] = -1
        self.win[which] = best
        for m, col in zip(which.tolist(), best.tolist()):
            if col >= 0:
                won = self.wins.get(col)
                if won is None:
                    won = self.wins[col] = set()
                    self.holders.setdefault(int(self.rows[col]), set()).add(self)
                won.add(m)

    def moved(self, row: int) -> None:
        """The agent of table row ``row`` was given a task: its draws need a new look."""
        won = self.wins.pop(self.column[row], None)
        if won:
            self.dirty |= won

    def probabilities(self, loads: np.ndarray) -> np.ndarray:
        """Each agent's probability of being chosen at ``loads`` (aligned with ``rows``)."""
        if self.dirty:
            self._refresh(loads)
        p = np.zeros(len(self.rows))
        for col, won in self.wins.items():
            p[col] = len(won) / len(self.win)
        return p

    def pick(self, m: int, loads: np.ndarray) -> tuple[int, float, float]:
        """(column, score, probability) of the winner of draw ``m`` (taken uniformly at
        random by the caller); column -1 when no agent is open."""
        if self.dirty:
            self._refresh(loads)
        col = int(self.win[m])
        if col < 0:
            return -1, math.nan, math.nan
        r = self.rows[col]
        load, cap = loads[r], self.caps[col]
        score = (self.fixed[col] + self.share_head * (1 - load / max(cap, 1))
                 + self.share_track * self.draws[m, r])
        return col, float(score), len(self.wins[col]) / len(self.win)


def _json_float(x: float) -> str:
    """``json.dumps(x)`` of a float."""
    return float.__repr__(x) if math.isfinite(x) else json.dumps(x)


class CapabilityRouter:
    """Scores agents for tasks; ``weights`` (a dict over COMPONENTS) and ``policy`` are
    yours to change.

    ``policy="weighted"`` (the default) scores each agent's overall track record: the same
    task and figures always give the same choice. ``policy="thompson"`` learns which agent
    is good at which kind of work: per decision it draws each eligible agent's success at
    the task's type from its Beta posterior (:func:`beta_posterior`, from the queue's
    figures per agent x task type) and scores the draw in place of the track record, so it
    tries agents it knows little about and settles on those that do the work well.
    Each choice takes one of ``posterior_samples`` pooled draws at random
    (:class:`_PosteriorPool`), so the probability of every choice is known exactly and
    logged (``propensity``); ``seed`` makes the draws reproducible.
    """

    def __init__(self, registry: AgentRegistry, meta: MetaStore | None = None, *,
                 weights: dict[str, float] | None = None, prior_success_rate: float = 0.8,
                 prior_weight: float = 5.0, log_top_k: int = 10, policy: str = "weighted",
                 seed: int | None = None, skill_prior_weight: float = 2.0,
                 posterior_samples: int = 128, clock: Callable[[], datetime] | None = None):
        self.registry = registry
        self.clock = clock or registry.clock  # decisions time-stamped as the queue's events
        self.meta = meta or MetaStore(registry.db)
        self.log = DecisionLog(self.meta)  # written behind: see athena_orch.decision_log
        self.weights = check_weights(weights or {})
        self.prior_success_rate = prior_success_rate
        self.prior_weight = prior_weight
        self.log_top_k = log_top_k
        self.policy = policy
        self.seed = seed
        self.skill_prior_weight = v.number("skill_prior_weight", skill_prior_weight,
                                           low=1e-9)
        self.posterior_samples = v.positive_int("posterior_samples", posterior_samples,
                                                high=100_000)

    @property
    def policy(self) -> str:
        """How agents are chosen: one of POLICIES."""
        return self._policy

    @policy.setter
    def policy(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValidationError(f"policy must be one of {', '.join(POLICIES)}, not "
                                  f"{policy!r}")
        self._policy = policy

    @property
    def seed(self) -> int | None:
        """The seed of the learning policy's draws; setting it restarts them."""
        return self._seed

    @seed.setter
    def seed(self, seed: int | None) -> None:
        if seed is not None:
            seed = v.non_negative_int("seed", seed)
        self._seed = seed
        self._rng = np.random.default_rng(seed)

    def _read(self, task_type: str | None = None) -> RoutingSnapshot:
        """The registry's snapshot for a decision (one statement); under "thompson" with
        the agents' outcomes at ``task_type`` (``snapshot.skills``)."""
        return self.registry.routing_read(task_type if self.policy == "thompson" else None)

    def _posterior(self, snapshot: RoutingSnapshot, task_type: str | None
                   ) -> dict[str, np.ndarray]:
        """Each agent's outcomes at ``task_type`` (all its work when None) and its Beta
        posterior of success there."""
        if task_type is None:
            completed, failed = snapshot.completed, snapshot.failed
        else:
            completed = np.zeros(len(snapshot), dtype=np.int64)
            failed = np.zeros(len(snapshot), dtype=np.int64)
            index = snapshot.table.index
            skills = snapshot.skills.get(task_type)
            if skills is None:
                skills = {a: f[:2] for a, f in self.meta.skill_figures("task_type",
                                                                        task_type).items()}
            for agent, (done, lost) in skills.items():
                row = index.get(agent)
                if row is not None:
                    completed[row], failed[row] = done, lost
        alpha, beta = beta_posterior(
            completed, failed, snapshot.completed, snapshot.failed,
            prior_success_rate=self.prior_success_rate, prior_weight=self.prior_weight,
            skill_prior_weight=self.skill_prior_weight)
        return {"skill_completed": completed, "skill_failed": failed, "alpha": alpha,
                "beta": beta, "posterior_mean": alpha / (alpha + beta)}

    # ------------------------------------------------------------------ looking
    def explain(self, task: Task | dict[str, Any], exclude_agents: list[str] | None = None,
                weights: dict[str, float] | None = None) -> pd.DataFrame:
        """One row per registered agent: every filter, component, score, rank and the
        reason it was excluded ('' when eligible). Best first, excluded last."""
        _, requirements, _, task_type = _parse_task(task, None)
        return self._explain(self._read(task_type), requirements,
                             v.string_list("exclude_agents", exclude_agents),
                             check_weights(weights) if weights is not None else self.weights,
                             task_type)

    def _score(self, snapshot: RoutingSnapshot, requirements: list[str], exclude: list[str],
               weights: dict[str, float], task_type: str | None = None) -> dict[str, Any]:
        """The four steps as arrays aligned with the snapshot's rows (sorted by id);
        ``order`` = eligible rows, best first. Under "thompson" the eligible agents'
        track_record is a draw from their posterior at ``task_type`` (the others keep
        the posterior mean)."""
        table = snapshot.table
        steps = filter_steps(table.capable(requirements), table.active, snapshot.load,
                             table.capacity, table.mask(exclude))
        components = component_arrays(
            snapshot.completed, snapshot.failed, snapshot.average_ms, snapshot.load,
            table.capacity, fit_array(table.sizes, table.confidence(requirements),
                                      len(requirements)),
            prior_success_rate=self.prior_success_rate, prior_weight=self.prior_weight)
        score = weighted_score(components, weights)
        posterior: dict[str, Any] = {}
        if self.policy == "thompson" and weights["track_record"] > 0:
            posterior = self._draw(snapshot, task_type, steps, components, weights)
            score = posterior.pop("score")
        # rows are sorted by agent id, so the row number breaks ties as the id would
        order = rank_eligible(score, steps["load"], np.arange(len(table)), steps["eligible"])
        return {**steps, **components, **posterior, "score": score, "order": order,
                "agent_id": table.ids, "agent_ids": table.agent_ids, "weights": weights}

    def _explain(self, snapshot: RoutingSnapshot, requirements: list[str], exclude: list[str],
                 weights: dict[str, float], task_type: str | None = None) -> pd.DataFrame:
        return self._frame(self._score(snapshot, requirements, exclude, weights, task_type),
                           snapshot, requirements)

    def _frame(self, scored: dict[str, Any], snapshot: RoutingSnapshot,
               requirements: list[str]) -> pd.DataFrame:
        columns = EXPLAIN_COLUMNS + (POSTERIOR_COLUMNS if "draw" in scored else [])
        frame = pd.DataFrame({c: scored[c] for c in columns
                              if c not in ("rank", "excluded_reason")})
        frame["agent_id"] = frame["agent_id"].astype(str)
        rank = np.zeros(len(frame), dtype=np.int64)
        rank[scored["order"]] = np.arange(1, len(scored["order"]) + 1)
        frame["rank"] = pd.Series(rank, dtype="Int64").mask(rank == 0)
        frame["excluded_reason"] = excluded_reasons(scored, snapshot.table.capability_sets,
                                                    requirements)
        rest = np.flatnonzero(rank == 0)  # already in id order
        return frame.iloc[np.concatenate([scored["order"], rest])][columns].reset_index(
            drop=True)

    def rank_candidates(self, agent_ids: list[str],
                        task: Task | dict[str, Any] | None = None) -> list[tuple[str, float]]:
        """Scores of the given registered agents for ``task`` (no requirements if None),
        best first; unknown ids are dropped."""
        wanted = set(v.string_list("agent_ids", agent_ids))
        _, requirements, _, task_type = (_parse_task(task, None) if task is not None
                                         else (None, [], None, None))
        snapshot = self.registry.routing_snapshot()
        snapshot = snapshot.take(snapshot.table.rows(wanted))
        scored = self._score(snapshot, requirements, [], self.weights, task_type)
        everyone = rank_eligible(scored["score"], scored["load"], np.arange(len(snapshot)),
                                 np.ones(len(snapshot), dtype=bool))
        ids = scored["agent_ids"]
        return list(zip([ids[i] for i in everyone.tolist()],
                        scored["score"][everyone].tolist()))

    # ------------------------------------------------------------------ deciding
    def decide(self, task: Task | dict[str, Any],
               exclude_agents: list[str] | None = None) -> RoutingDecision:
        """Route one task and log the decision."""
        return self._decide(task, exclude_agents, "decide")

    def decide_explained(self, task: Task | dict[str, Any],
                         exclude_agents: list[str] | None = None
                         ) -> tuple[RoutingDecision, pd.DataFrame]:
        """``decide`` and the ``explain`` frame of the same scoring (under "thompson", of
        the same draw), the decision logged."""
        task_id, requirements, _, task_type = _parse_task(task, None)
        exclude = v.string_list("exclude_agents", exclude_agents)
        snapshot = self._read(task_type)
        scored = self._score(snapshot, requirements, exclude, self.weights, task_type)
        decision = self._decision(task_id, requirements, scored)
        self._log(decision, scored, "decide")
        return decision, self._frame(scored, snapshot, requirements)

    def route_task(self, task: Task | dict[str, Any],
                   exclude_agents: list[str] | None = None) -> str | None:
        """The best agent for the task's requirements, or None (decision logged)."""
        return self._decide(task, exclude_agents, "route_task").selected_agent

    def _decide(self, task: Task | dict[str, Any], exclude_agents: list[str] | None,
                source: str) -> RoutingDecision:
        task_id, requirements, _, task_type = _parse_task(task, None)
        exclude = v.string_list("exclude_agents", exclude_agents)
        scored = self._score(self._read(task_type), requirements, exclude, self.weights,
                             task_type)
        decision = self._decision(task_id, requirements, scored)
        self._log(decision, scored, source)
        return decision

    def _propensities(self, scored: dict[str, Any]) -> tuple[np.ndarray, str]:
        """The probability of each eligible agent (in ``order``) being chosen, and how it
        is known: 1 for the first under "weighted"; exact under "thompson"."""
        if "probability" in scored:
            return scored["probability"][scored["order"]], "exact"
        p = np.zeros(len(scored["order"]))
        p[:1] = 1.0
        return p, "deterministic"

    def _draw(self, snapshot: RoutingSnapshot, task_type: str | None,
              steps: dict[str, np.ndarray], components: dict[str, np.ndarray],
              weights: dict[str, float]) -> dict[str, Any]:
        """"thompson" for one decision: a pool of posterior draws of the eligible agents
        and one of them taken at random (:class:`_PosteriorPool`). The eligible agents'
        track_record becomes their value in that draw (the others keep their posterior
        mean); also each agent's probability of being chosen and the new score."""
        posterior = self._posterior(snapshot, task_type)
        rows = np.flatnonzero(steps["eligible"])
        n = len(snapshot)
        draws = np.zeros((self.posterior_samples, n))
        draws[:, rows] = self._rng.beta(posterior["alpha"][rows], posterior["beta"][rows],
                                        size=(self.posterior_samples, len(rows)))
        total = sum(weights.values())
        fixed = weighted_score({**components, "track_record": np.zeros(n),
                                "headroom": np.zeros(n)}, weights)
        pool = _PosteriorPool(rows, fixed[rows], draws, steps["capacity"],
                              weights["headroom"] / total, weights["track_record"] / total)
        m = int(self._rng.integers(self.posterior_samples))
        pool.pick(m, steps["load"])
        draw = np.full(n, np.nan)
        draw[rows] = draws[m, rows]
        components["track_record"] = np.where(steps["eligible"], draw,
                                              posterior["posterior_mean"])
        score = weighted_score(components, weights)
        score[rows] = (pool.scores(steps["load"])  # the pool's own sums
                       + pool.share_track * draw[rows])
        probability = np.zeros(n)
        probability[rows] = pool.probabilities(steps["load"])
        return {**posterior, "draw": draw, "probability": probability, "score": score}

    def _decision(self, task_id: str | None, requirements: list[str],
                  scored: dict[str, Any]) -> RoutingDecision:
        order, ids = scored["order"], scored["agent_ids"]
        candidates = [ids[i] for i in order.tolist()]
        scores = dict(zip(candidates, scored["score"][order].tolist()))
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
        propensities, method = self._propensities(scored) if len(order) else (np.zeros(0), None)
        scored["propensities"], scored["propensity_method"] = propensities, method
        return RoutingDecision(
            selected_agent=candidates[0] if candidates else None,
            candidates=candidates, scores=scores, reason=reason,
            task_id=task_id, requirements=requirements, weights=dict(self.weights),
            policy=self.policy,
            propensity=float(propensities[0]) if len(propensities) else None)

    def route_batch(self, tasks: Iterable[Task | dict[str, Any]],
                    exclude_agents: list[str] | None = None) -> pd.DataFrame:
        """Route many tasks at once (higher priority first, else in order), each agent
        taking no more than its free capacity. Columns: task_id, agent_id, score, reason,
        propensity (the probability of the choice: 1.0 under "weighted").

        Each task goes to the best-scoring capable, active, not excluded agent that still
        has a free slot, counting the tasks routed before it in the batch; ties (scores
        within 1e-12) go to the lower load, then the lower id. Logged with one bulk insert:
        per decision the chosen agent and its score (no components)."""
        known: dict[tuple[str, ...], list[str]] = {}
        parsed = [_parse_task(t, known) for t in tasks]
        exclude = set(v.string_list("exclude_agents", exclude_agents))
        snapshot = self._read()
        if self.policy == "thompson" and self.weights["track_record"] > 0:
            chosen, scores, propensity = self._assign_thompson(snapshot, parsed, exclude)
            method = "exact"
        else:
            chosen, scores = self._assign(snapshot, parsed, exclude)
            propensity = np.where(np.isnan(scores), np.nan, 1.0)
            method = "deterministic"
        ids = snapshot.table.agent_ids
        agents = [ids[r] if r is not None else None for r in chosen]
        result = pd.DataFrame({
            "task_id": [p[0] for p in parsed], "agent_id": pd.Series(agents, dtype=object),
            "score": scores,
            "reason": ["routed" if a is not None else "no capable agent with free capacity"
                       for a in agents],
            "propensity": propensity})
        self._log_batch(result, parsed, chosen, ids, method)
        return result

    def _assign(self, snapshot: RoutingSnapshot, parsed: list[tuple], exclude: set[str]
                ) -> tuple[list[int | None], np.ndarray]:
        """route_batch's choices: per task the chosen row (or None) and its score.

        Exactly the choices of scoring every open agent for every task in turn, in far less
        time. An agent's score for a task is a fixed part (track record, speed and fit do
        not move within a batch) plus headroom, which only falls as the batch fills it.
        Per distinct requirement list, :class:`_Levels` keeps the open capable agents
        grouped by score."""
        table = snapshot.table
        weights = self.weights
        share = {c: weights[c] / sum(weights.values()) for c in COMPONENTS}
        usable = table.active & ~table.mask(exclude)
        base = component_arrays(snapshot.completed, snapshot.failed, snapshot.average_ms,
                                snapshot.load, table.capacity, np.zeros(len(table)),
                                prior_success_rate=self.prior_success_rate,
                                prior_weight=self.prior_weight)
        load_now = snapshot.load.copy()  # the batch's own picks counted in
        loads, caps = load_now.tolist(), table.capacity.tolist()
        groups: dict[tuple[str, ...], _Levels] = {}
        keys: dict[int, tuple[str, ...]] = {}  # id of a checked list -> its sorted tuple
        chosen: list[int | None] = [None] * len(parsed)
        scores = [math.nan] * len(parsed)
        for i in sorted(range(len(parsed)), key=lambda i: PRIORITY_RANK[parsed[i][2]]):
            requirements = parsed[i][1]
            key = keys.get(id(requirements))
            if key is None:
                key = keys[id(requirements)] = tuple(sorted(requirements))
            levels = groups.get(key)
            if levels is None:
                parts = {**base, "fit": fit_array(table.sizes, table.confidence(key), len(key))}
                fixed = sum(parts[c] * share[c] for c in COMPONENTS if c != "headroom")
                open_ = np.flatnonzero(table.capable(key) & usable & (load_now < table.capacity))
                levels = groups[key] = _Levels(np.asarray(fixed, dtype=float).tolist(),
                                               share["headroom"], loads, caps, open_.tolist())
            r = levels.pick()
            if r is None:
                continue
            chosen[i], scores[i] = r, levels.score(r)
            loads[r] += 1
            load_now[r] += 1
            levels.requeue(r)
        return chosen, np.array(scores, dtype=float)

    def _assign_thompson(self, snapshot: RoutingSnapshot, parsed: list[tuple],
                         exclude: set[str]) -> tuple[list[int | None], np.ndarray, np.ndarray]:
        """route_batch's choices under "thompson" (higher priority first), each agent
        taking no more than its free capacity, with each choice's exact probability: per
        task type one pool of posterior draws of every agent, and per requirement list a
        :class:`_PosteriorPool` over it that follows the batch's own picks."""
        table = snapshot.table
        total = sum(self.weights.values())
        usable = table.active & ~table.mask(exclude)
        base = component_arrays(snapshot.completed, snapshot.failed, snapshot.average_ms,
                                snapshot.load, table.capacity, np.zeros(len(table)),
                                prior_success_rate=self.prior_success_rate,
                                prior_weight=self.prior_weight)
        zeros = np.zeros(len(table))
        loads = snapshot.load.copy()
        draws: dict[str | None, np.ndarray] = {}
        pools: dict[tuple, _PosteriorPool] = {}
        holders: dict[int, set[_PosteriorPool]] = {}
        chosen: list[int | None] = [None] * len(parsed)
        scores = np.full(len(parsed), math.nan)
        propensity = np.full(len(parsed), math.nan)
        taken = self._rng.integers(self.posterior_samples, size=len(parsed)).tolist()
        for i in sorted(range(len(parsed)), key=lambda i: PRIORITY_RANK[parsed[i][2]]):
            _, requirements, _, task_type = parsed[i]
            key = (tuple(sorted(requirements)), task_type)
            pool = pools.get(key)
            if pool is None:
                if task_type not in draws:
                    posterior = self._posterior(snapshot, task_type)
                    draws[task_type] = self._rng.beta(
                        posterior["alpha"], posterior["beta"],
                        size=(self.posterior_samples, len(table)))
                fit = fit_array(table.sizes, table.confidence(key[0]), len(key[0]))
                fixed = weighted_score({**base, "track_record": zeros, "headroom": zeros,
                                        "fit": fit}, self.weights)
                rows = np.flatnonzero(table.capable(key[0]) & usable)
                pool = pools[key] = _PosteriorPool(
                    rows, fixed[rows], draws[task_type], table.capacity,
                    self.weights["headroom"] / total, self.weights["track_record"] / total,
                    holders)
            col, score, p = pool.pick(taken[i], loads)
            if col < 0:
                continue
            r = int(pool.rows[col])
            chosen[i], scores[i], propensity[i] = r, score, p
            loads[r] += 1
            for other in holders.pop(r, ()):
                other.moved(r)
        return chosen, scores, propensity

    # ------------------------------------------------------------------ the log
    def decisions(self, task_id: str | None = None, limit: int | None = None,
                  offset: int = 0) -> pd.DataFrame:
        """The logged decisions, oldest first (only those about ``task_id`` when given);
        ``offset`` and ``limit`` take a page of them, read as such from the database. List
        and dict columns parsed from JSON."""
        self.log.flush()
        frame = self.meta.decisions_frame(
            None if task_id is None else v.string("task_id", task_id),
            v.non_negative_int("limit", limit, allow_none=True),
            v.non_negative_int("offset", offset))
        for column in ("requirements", "candidates", "scores", "weights", "components"):
            frame[column] = [json.loads(x) for x in frame[column]]
        frame["propensities"] = [{} if x is None else json.loads(x)
                                 for x in frame["propensities"]]  # None: logged before v5
        frame["propensity"] = frame["propensity"].astype(float)
        return frame

    def decision_count(self, task_id: str | None = None) -> int:
        """How many decisions the log holds (about ``task_id`` when given)."""
        self.log.flush()
        return self.meta.decision_count(None if task_id is None else v.string("task_id", task_id))

    def _log(self, decision: RoutingDecision, scored: dict[str, Any], source: str) -> None:
        top = scored["order"][: self.log_top_k]
        ids = decision.candidates[: self.log_top_k]
        logged = LOGGED_PARTS + (("alpha", "beta") if "draw" in scored else ())
        parts = zip(*(scored[c][top].astype(float).tolist() for c in logged))
        components = {a: dict(zip(logged, values)) for a, values in zip(ids, parts)}
        propensities = dict(zip(ids, scored["propensities"][: self.log_top_k].tolist()))
        self.log.add(dict(
            decided_at=self.clock(), task_id=decision.task_id,
            requirements=json.dumps(decision.requirements), candidates=json.dumps(ids),
            scores=json.dumps({a: decision.scores[a] for a in ids}),
            components=json.dumps(components), selected_agent=decision.selected_agent,
            weights=json.dumps(decision.weights), reason=decision.reason, source=source,
            policy=decision.policy, propensity=decision.propensity,
            propensity_method=scored["propensity_method"],
            propensities=json.dumps(propensities)))

    def _log_batch(self, result: pd.DataFrame, parsed: list[tuple], chosen: list[int | None],
                   ids: list[str], method: str) -> None:
        now = self.clock()
        weights = json.dumps(self.weights)
        quoted: dict[int, str] = {}  # row -> json of its agent id
        requirements: dict[int, str] = {}  # id of a checked list -> its json
        candidates, scores = [], []
        for r, s in zip(chosen, result["score"].tolist()):
            if r is None:
                candidates.append("[]")
                scores.append("{}")
                continue
            name = quoted.get(r)
            if name is None:
                name = quoted[r] = json.dumps(ids[r])
            candidates.append(f"[{name}]")
            scores.append(f"{{{name}: {_json_float(s)}}}")
        for p in parsed:  # a batch shares its checked lists (see _parse_task)
            if id(p[1]) not in requirements:
                requirements[id(p[1])] = json.dumps(p[1])
        self.log.add_frame(pd.DataFrame({
            "decided_at": now, "task_id": result["task_id"],
            "requirements": [requirements[id(p[1])] for p in parsed],
            "candidates": candidates, "scores": scores,
            "components": "{}", "selected_agent": result["agent_id"], "weights": weights,
            "reason": result["reason"], "source": "route_batch", "policy": self.policy,
            "propensity": result["propensity"],
            "propensity_method": np.where(result["propensity"].isna(), None, method),
            "propensities": "{}"}))
