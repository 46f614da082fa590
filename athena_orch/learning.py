"""A learning simulation: tasks of a hidden-skill workload run through a real manager.

The workload (:func:`athena_orch.workload.skill_workload`) knows each agent's chance of
success at each task type; the router does not. :func:`simulate` runs the tasks in rounds
through the queue and the router, so the router learns only from what the queue counts::

    wl = skill_workload(n_tasks=1000, seed=3)
    with athena_orch.connect() as orch:
        out = simulate(orch, wl, "thompson", seed=3)
    learning_curve(out).tail(1)          # success rate and regret after 1000 tasks

Each round creates ``round_size`` tasks (``queue.create_tasks``), routes them (``"batch"``:
one ``router.route_batch``, whose log keeps only the chosen agent; ``"decide"``:
``router.decide`` and assignment task by task, so the log holds every candidate and its
propensity, as ``evaluate_policy`` needs) and assigns them. A seeded draw against the
hidden success decides each attempt: successes are started and completed (one
``complete_tasks``), the others failed (``fail_task``, no retry). The draws belong to the
tasks, not to the policy: with one seed, every policy meets the same tasks with the same
luck, so their differences are theirs. A round's tasks end before the next round is
routed, so each round is routed on everything learned so far.

The queue has no bulk assign, start or fail, so a task costs three or four single
transactions (about 5 to 10 ms each on DuckDB in memory): a 2,000-task run takes tens of
seconds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import ValidationError
from .workload import SkillWorkload

# policy(task_type, free) -> agent_id or None; ``free`` maps agent_id -> free slots
ChoosePolicy = Callable[[str, dict[str, int]], str | None]
ROUTER_POLICIES = ("weighted", "thompson")
ROUTES = ("batch", "decide")
OUTCOME_COLUMNS = ["task_id", "key", "round", "task_type", "agent_id", "success", "expected",
                   "best", "duration_ms", "propensity"]


def simulate(orch: Any, workload: SkillWorkload, policy: str | ChoosePolicy = "thompson", *,
             seed: int = 0, n_tasks: int | None = None, round_size: int | None = None,
             route: str = "batch") -> pd.DataFrame:
    """Run the first ``n_tasks`` tasks of ``workload`` (default all) through ``orch``.

    ``policy``: ``"weighted"`` or ``"thompson"`` (the router's policy, set on
    ``orch.router`` with ``seed``), ``"oracle"`` (:meth:`SkillWorkload.oracle`) or a
    callable ``policy(task_type, free) -> agent_id | None`` (``free``: agent -> free slots).
    ``round_size``: tasks per round (default: one per agent). ``route``: "batch" or
    "decide" (see the module doc). Agents are registered when missing.

    Returns one row per task (``OUTCOME_COLUMNS``): its round, type, agent (None when no
    agent had a free slot; the task is then cancelled), success (1/0, NaN unrouted),
    expected (the hidden success of that agent at that type), best (the best agent's),
    duration_ms and the router's propensity (NaN for "oracle" and callables)."""
    choose = _policy(workload, policy)
    if route not in ROUTES:
        raise ValidationError(f"route must be one of {', '.join(ROUTES)}, not {route!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValidationError(f"seed must be a non-negative integer, not {seed!r}")
    records = workload.task_records()
    n = len(records) if n_tasks is None else _count("n_tasks", n_tasks, 0, len(records))
    size = len(workload.agents) if round_size is None else _count("round_size", round_size,
                                                                   1, None)
    _register(orch, workload)
    if choose is None:
        orch.router.policy = policy
        orch.router.seed = seed
    rng = np.random.default_rng(seed)
    luck, noise = rng.random(n), rng.lognormal(0.0, 0.25, n)  # per task, whatever the policy
    success, speed, best = workload.success, workload.speed, workload.best_success()
    rows: list[dict[str, Any]] = []
    for start in range(0, n, size):
        chunk = [{**r, "max_retries": 0} for r in records[start:start + size]]
        ids = orch.queue.create_tasks(chunk)
        tasks = [{"id": i, "requirements": r["requirements"], "task_type": r["task_type"]}
                 for i, r in zip(ids, chunk)]
        if choose is not None:
            picks = _choose(orch, choose, tasks)
        elif route == "batch":
            picks = orch.router.route_batch(tasks)["agent_id"].tolist()
            for task, agent in zip(tasks, picks):
                if agent is not None:
                    orch.queue.assign_task(task["id"], agent)
        else:
            picks = []
            for task in tasks:
                picks.append(orch.router.decide(task).selected_agent)
                if picks[-1] is not None:
                    orch.queue.assign_task(task["id"], picks[-1])
        done, failed = [], []
        for j, (task, record, agent) in enumerate(zip(tasks, chunk, picks)):
            i = start + j
            row = {"task_id": task["id"], "key": record["key"], "round": start // size,
                   "task_type": task["task_type"], "agent_id": agent, "success": np.nan,
                   "expected": np.nan, "best": float(best[task["task_type"]]),
                   "duration_ms": np.nan, "propensity": np.nan}
            if agent is None:
                orch.queue.cancel_task(task["id"], "no agent had a free slot")
            else:
                p = float(success.at[agent, task["task_type"]])
                ms = int(record["estimated_duration_ms"] * speed.at[agent, task["task_type"]]
                         * noise[i])
                ok = bool(luck[i] < p)
                if ok:
                    orch.queue.start_task(task["id"])  # a failure may come before the start
                row.update(success=float(ok), expected=p, duration_ms=float(ms))
                (done if ok else failed).append((task["id"], ms))
            rows.append(row)
        orch.queue.complete_tasks([{"task_id": t, "result": "done", "duration_ms": ms}
                                   for t, ms in done])
        for t, _ in failed:
            orch.queue.fail_task(t, "the attempt failed (simulated)", should_retry=False)
    out = pd.DataFrame(rows, columns=OUTCOME_COLUMNS)
    if choose is None:  # the propensity each task's (last) decision logged
        log = orch.router.decisions().drop_duplicates("task_id", keep="last")
        out["propensity"] = out["task_id"].map(log.set_index("task_id")["propensity"])
    return out


def learning_curve(outcomes: pd.DataFrame, reference: pd.DataFrame | None = None
                   ) -> pd.DataFrame:
    """Per task routed (in order, index 1..n): ``success_rate`` so far and ``regret``, the
    summed expected success given up: ``reference``'s ``expected`` at the same task (say the
    oracle's run on the same workload and seed) minus this run's, or without ``reference``
    each task's ``best``. ``expected_rate`` is the mean expected success so far."""
    for frame, name in ((outcomes, "outcomes"), (reference, "reference")):
        if frame is not None and not (isinstance(frame, pd.DataFrame)
                                      and {"key", "expected", "best"} <= set(frame.columns)):
            raise ValidationError(f"{name} must be a DataFrame from simulate()")
    routed = outcomes[outcomes["agent_id"].notna()]
    if reference is None:
        target = routed["best"].to_numpy(dtype=float)
    else:
        by_key = reference.set_index("key")["expected"]
        missing = ~routed["key"].isin(by_key.index)
        if missing.any():
            raise ValidationError(f"reference has no task {routed['key'][missing].iloc[0]!r}: "
                                  "compare runs of the same workload")
        target = by_key.reindex(routed["key"]).fillna(0.0).to_numpy(dtype=float)
    n = np.arange(1, len(routed) + 1)
    expected = routed["expected"].to_numpy(dtype=float)
    return pd.DataFrame({
        "success_rate": np.cumsum(routed["success"].to_numpy(dtype=float)) / n,
        "expected_rate": np.cumsum(expected) / n,
        "regret": np.cumsum(target - expected)}, index=pd.Index(n, name="tasks"))


def _policy(workload: Any, policy: Any) -> ChoosePolicy | None:
    """The callable that chooses, or None when the router does."""
    if not isinstance(workload, SkillWorkload):
        raise ValidationError(f"workload must be a SkillWorkload (skill_workload()), not "
                              f"{type(workload).__name__}")
    if isinstance(policy, str):
        if policy in ROUTER_POLICIES:
            return None
        if policy == "oracle":
            return workload.oracle
    elif callable(policy):
        return policy
    raise ValidationError(f"policy must be one of {', '.join(ROUTER_POLICIES)}, 'oracle' or "
                          f"a callable (task_type, free) -> agent_id, not {policy!r}")


def _count(name: str, value: Any, low: int, high: int | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (
            high is not None and value > high):
        upto = f" to {high}" if high is not None else " or more"
        raise ValidationError(f"{name} must be an integer from {low}{upto}, not {value!r}")
    return value


def _register(orch: Any, workload: SkillWorkload) -> None:
    known = set(orch.registry.to_frame()["agent_id"])
    for agent in workload.agent_records():
        if agent["agent_id"] not in known:
            orch.registry.register_agent(agent["agent_id"], agent["capabilities"],
                                         {"max_concurrent_tasks": agent["max_concurrent_tasks"]})


def _choose(orch: Any, choose: ChoosePolicy, tasks: list[dict[str, Any]]) -> list[str | None]:
    """A callable policy's picks for a round, each agent kept to its free slots."""
    agents = orch.registry.to_frame()
    free = dict(zip(agents["agent_id"], (agents["max_concurrent_tasks"]
                                         - agents["current_load"]).clip(lower=0).tolist()))
    picks: list[str | None] = []
    for task in tasks:
        agent = choose(task["task_type"], dict(free))
        if agent is not None:
            if free.get(agent, 0) <= 0:
                raise ValidationError(f"policy chose {agent!r}, which has no free slot")
            free[agent] -= 1
            orch.queue.assign_task(task["id"], agent)
        picks.append(agent)
    return picks
