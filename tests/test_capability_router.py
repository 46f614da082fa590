"""CapabilityRouter: choice, exclusion, explain, ranking, weights, batches, decision log."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from athena_orch.agent_registry import AgentRegistry
from athena_orch.capability_router import (
    CapabilityRouter,
    component_arrays,
    filter_steps,
    fit_array,
)
from athena_orch.models import RoutingDecision, TaskStatus

EXPLAIN_COLUMNS = {"agent_id", "capable", "active", "load", "capacity", "at_capacity",
                   "score", "rank", "excluded_reason",
                   "track_record", "headroom", "speed", "fit"}
WEIGHT_KEYS = {"track_record", "headroom", "speed", "fit"}


# ------------------------------------------------ the steps over the DataFrame, by hand
def filter_agents(agents: pd.DataFrame, requirements, exclude=()):
    """Step 1 over ``registry.routing_frame()``, written over its columns: the router's
    own filter runs over arrays; this is the reference it must agree with."""
    needed = set(requirements)
    return filter_steps(
        np.fromiter((needed <= caps for caps in agents["capability_set"]), dtype=bool,
                    count=len(agents)),
        agents["active"].to_numpy(dtype=bool),
        agents["current_load"].to_numpy(dtype=np.int64),
        agents["max_concurrent_tasks"].to_numpy(dtype=np.int64),
        agents["agent_id"].isin(set(exclude)).to_numpy(dtype=bool))


def score_components(agents: pd.DataFrame, requirements, load, capacity, *,
                     prior_success_rate, prior_weight):
    """Step 2 over ``registry.routing_frame()``."""
    sizes = np.fromiter((len(c) for c in agents["capability_set"]), dtype=float,
                        count=len(agents))
    confidence = np.fromiter((min((conf.get(r, 0.0) for r in requirements), default=1.0)
                              for conf in agents["confidence"]), dtype=float, count=len(agents))
    return component_arrays(
        agents["total_completed"].to_numpy(dtype=float),
        agents["total_failed"].to_numpy(dtype=float),
        agents["avg_completion_ms"].to_numpy(dtype=float), load, capacity,
        fit_array(sizes, confidence, len(requirements)),
        prior_success_rate=prior_success_rate, prior_weight=prior_weight)


def _load(queue, agent_id, n):
    for i in range(n):
        queue.assign_task(queue.create_task(f"load {agent_id} {i}", "t"), agent_id)


def _record(registry, agent_id, successes, failures, duration_ms=100):
    for _ in range(successes):
        registry.update_agent_performance(agent_id, True, duration_ms)
    for _ in range(failures):
        registry.update_agent_performance(agent_id, False, duration_ms)


@pytest.fixture
def team(orch):
    """alpha: eligible; beta: at capacity; gamma: inactive; delta: lacks python."""
    reg = orch.registry
    reg.register_agent("alpha", ["python", "web"], {"max_concurrent_tasks": 2})
    reg.register_agent("beta", ["python"], {"max_concurrent_tasks": 1})
    reg.register_agent("gamma", ["python", "web"])
    reg.register_agent("delta", ["sql"])
    reg.set_active("gamma", False)
    _load(orch.queue, "beta", 1)
    return orch


# -------------------------------------------------------------------- route_task


def test_route_task_picks_capable_active_agent(team):
    assert team.router.route_task({"requirements": ["python"]}) == "alpha"
    assert team.router.route_task({"requirements": ["sql"]}) == "delta"


def test_route_task_none_when_nobody_fits(router, registry):
    assert router.route_task({"requirements": ["python"]}) is None  # nobody registered
    registry.register_agent("bot", ["sql"])
    assert router.route_task({"requirements": ["python"]}) is None


def test_route_task_skips_inactive_agents(router, registry):
    registry.register_agent("only", ["python"])
    registry.set_active("only", False)
    assert router.route_task({"requirements": ["python"]}) is None
    registry.set_active("only", True)
    assert router.route_task({"requirements": ["python"]}) == "only"


def test_route_task_skips_agents_at_capacity(router, registry, queue):
    registry.register_agent("solo", ["python"], {"max_concurrent_tasks": 1})
    assert router.route_task({"requirements": ["python"]}) == "solo"
    _load(queue, "solo", 1)
    assert router.route_task({"requirements": ["python"]}) is None


def test_route_task_exclude_agents(team):
    router = team.router
    team.registry.register_agent("epsilon", ["python"])
    assert router.route_task({"requirements": ["python"]}, exclude_agents=["alpha"]) == "epsilon"
    assert router.route_task({"requirements": ["python"]},
                             exclude_agents=["alpha", "epsilon"]) is None


def test_route_task_accepts_a_task(team):
    tid = team.queue.create_task("scrape", "t", requirements=["web"])
    task = team.queue.get_task_status(tid)
    assert team.router.route_task(task) == "alpha"


def test_route_task_changes_nothing(team, state):
    before = state(["alpha", "beta", "gamma", "delta"])
    team.router.route_task({"requirements": ["python"]})
    team.router.decide({"requirements": ["python"]})
    team.router.explain({"requirements": ["python"]})
    assert state(["alpha", "beta", "gamma", "delta"]) == before


def test_seed_constructor_without_meta(graph_store, meta_store):
    registry = AgentRegistry(graph_store, meta_store)
    router = CapabilityRouter(registry)
    registry.register_agent("bot", ["python"])
    assert router.route_task({"requirements": ["python"]}) == "bot"


# ------------------------------------------------------------------ determinism


def test_equal_agents_tie_break_on_lowest_id(router, registry):
    for name in ("charlie", "alpha", "bravo"):
        registry.register_agent(name, ["python"])
    choices = {router.route_task({"requirements": ["python"]}) for _ in range(5)}
    assert choices == {"alpha"}
    assert [a for a, _ in router.rank_candidates(["charlie", "bravo", "alpha"])] == [
        "alpha", "bravo", "charlie"]


def test_same_inputs_same_choice(orch):
    reg = orch.registry
    reg.register_agent("a", ["python"], {"max_concurrent_tasks": 3})
    reg.register_agent("b", ["python", "web"], {"max_concurrent_tasks": 4})
    reg.register_agent("c", ["python"], {"max_concurrent_tasks": 2})
    _record(reg, "a", 3, 1, 500)
    _record(reg, "b", 2, 2, 50)
    _record(reg, "c", 5, 0, 900)
    _load(orch.queue, "b", 1)
    first = orch.router.decide({"requirements": ["python"]})
    for _ in range(3):
        again = orch.router.decide({"requirements": ["python"]})
        assert again.selected_agent == first.selected_agent
        assert again.scores == pytest.approx(first.scores)


# -------------------------------------------------------------- default scoring


def test_better_track_record_wins(router, registry):
    registry.register_agent("a_shaky", ["python"])
    registry.register_agent("b_solid", ["python"])
    _record(registry, "a_shaky", 5, 5)
    _record(registry, "b_solid", 10, 0)
    assert router.route_task({"requirements": ["python"]}) == "b_solid"


def test_more_headroom_wins(router, registry, queue):
    registry.register_agent("a_busy", ["python"])
    registry.register_agent("b_free", ["python"])
    _load(queue, "a_busy", 3)
    assert router.route_task({"requirements": ["python"]}) == "b_free"


def test_faster_agent_wins(router, registry):
    registry.register_agent("a_slow", ["python"])
    registry.register_agent("b_fast", ["python"])
    _record(registry, "a_slow", 5, 0, duration_ms=10_000)
    _record(registry, "b_fast", 5, 0, duration_ms=100)
    assert router.route_task({"requirements": ["python"]}) == "b_fast"


def test_weights_can_change_the_winner(router, registry, queue):
    assert set(router.weights) == WEIGHT_KEYS
    registry.register_agent("a_reliable", ["python"])
    registry.register_agent("b_idle", ["python"])
    _record(registry, "a_reliable", 10, 0)
    _record(registry, "b_idle", 5, 5)
    _load(queue, "a_reliable", 4)  # 4 of 5 slots taken
    task = {"requirements": ["python"]}

    router.weights = {"track_record": 1.0, "headroom": 0.0, "speed": 0.0, "fit": 0.0}
    assert router.route_task(task) == "a_reliable"
    router.weights = {"track_record": 0.0, "headroom": 1.0, "speed": 0.0, "fit": 0.0}
    assert router.route_task(task) == "b_idle"
    decision = router.decide(task)
    assert decision.selected_agent == "b_idle"
    assert decision.weights == pytest.approx(router.weights)


# ---------------------------------------------------------------------- decide


def test_decide_returns_routing_decision(team):
    tid = team.queue.create_task("x", "t", requirements=["python"])
    decision = team.router.decide(team.queue.get_task_status(tid))
    assert isinstance(decision, RoutingDecision)
    assert decision.selected_agent == "alpha"
    assert decision.task_id == tid
    assert "alpha" in decision.candidates
    assert "delta" not in decision.candidates and "gamma" not in decision.candidates
    assert "alpha" in decision.scores
    assert decision.requirements == ["python"]


def test_decide_when_nobody_fits(team):
    decision = team.router.decide({"requirements": ["cobol"]})
    assert isinstance(decision, RoutingDecision)
    assert decision.selected_agent is None
    assert decision.candidates == []
    assert decision.reason


def test_decide_picks_the_highest_score(orch):
    reg = orch.registry
    for name, s, f in (("p", 3, 2), ("q", 9, 1), ("r", 1, 4)):
        reg.register_agent(name, ["x"])
        _record(reg, name, s, f)
    decision = orch.router.decide({"requirements": ["x"]})
    assert sorted(decision.candidates) == ["p", "q", "r"]
    best = max(decision.scores.values())
    assert decision.scores[decision.selected_agent] == best


# --------------------------------------------------------------------- explain


def test_explain_has_one_row_per_agent_and_the_columns(team):
    df = team.router.explain({"requirements": ["python"]})
    assert isinstance(df, pd.DataFrame)
    assert set(df.columns) >= EXPLAIN_COLUMNS
    assert len(df) == 4
    assert sorted(df["agent_id"]) == ["alpha", "beta", "delta", "gamma"]
    rows = {r["agent_id"]: r for r in df.to_dict("records")}

    alpha = rows["alpha"]
    assert bool(alpha["capable"]) and bool(alpha["active"])
    assert not bool(alpha["at_capacity"])
    assert alpha["load"] == 0 and alpha["capacity"] == 2
    assert alpha["excluded_reason"] == ""
    assert alpha["rank"] == 1

    beta = rows["beta"]
    assert bool(beta["capable"]) and bool(beta["at_capacity"])
    assert beta["load"] == 1 and beta["capacity"] == 1
    assert beta["excluded_reason"] != ""

    assert not bool(rows["gamma"]["active"]) and rows["gamma"]["excluded_reason"] != ""
    assert not bool(rows["delta"]["capable"]) and rows["delta"]["excluded_reason"] != ""


def test_explain_rank_matches_scores_and_route(orch):
    reg = orch.registry
    for name, s, f in (("p", 3, 2), ("q", 9, 1), ("r", 1, 4), ("s", 6, 0)):
        reg.register_agent(name, ["x"])
        _record(reg, name, s, f)
    reg.register_agent("no", ["y"])
    task = {"requirements": ["x"]}
    df = orch.router.explain(task)
    assert len(df) == 5
    eligible = df[df["excluded_reason"] == ""].sort_values("rank")
    assert list(eligible["rank"]) == [1, 2, 3, 4]
    scores = list(eligible["score"])
    assert scores == sorted(scores, reverse=True)
    assert eligible.iloc[0]["agent_id"] == orch.router.route_task(task)
    ranked = orch.router.rank_candidates(["p", "q", "r", "s"], task)
    assert [a for a, _ in ranked] == list(eligible["agent_id"])


def test_explain_for_a_new_agent_lists_it(team):
    team.registry.register_agent("omega", ["python"])
    df = team.router.explain({"requirements": ["python"]})
    assert len(df) == 5 and "omega" in set(df["agent_id"])


# ------------------------------------------------------------- rank_candidates


def test_rank_candidates_best_first_unknown_dropped(router, registry):
    registry.register_agent("a", ["x"])
    registry.register_agent("b", ["x"])
    registry.register_agent("c", ["x"])
    _record(registry, "a", 1, 3)
    _record(registry, "b", 8, 0)
    _record(registry, "c", 4, 2)
    ranked = router.rank_candidates(["a", "ghost", "b", "c"])
    assert [a for a, _ in ranked] == ["b", "c", "a"]
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)
    assert router.rank_candidates(["ghost"]) == []
    assert router.rank_candidates([]) == []


# ------------------------------------------------------------------ route_batch


def test_route_batch_respects_free_capacity(orch):
    reg, q = orch.registry, orch.queue
    reg.register_agent("one", ["py"], {"max_concurrent_tasks": 1})
    reg.register_agent("two", ["py", "sql"], {"max_concurrent_tasks": 2})
    _load(q, "two", 1)  # one free slot each
    ids = [q.create_task(f"py {i}", "t", requirements=["py"]) for i in range(4)]
    ids.append(q.create_task("sql", "t", requirements=["sql"]))
    tasks = [q.get_task_status(i) for i in ids]
    df = orch.router.route_batch(tasks)
    assert isinstance(df, pd.DataFrame)
    assert {"task_id", "agent_id"} <= set(df.columns)
    assert len(df) == 5 and set(df["task_id"]) == set(ids)
    routed = df[df["agent_id"].notna()]
    counts = routed["agent_id"].value_counts().to_dict()
    assert counts.get("one", 0) <= 1 and counts.get("two", 0) <= 1
    assert len(routed) == 2  # both free slots are used
    sql_row = df[df["task_id"] == ids[-1]].iloc[0]
    assert pd.isna(sql_row["agent_id"]) or sql_row["agent_id"] == "two"
    # routing proposes; it does not change the queue
    assert all(q.get_task_status(i).status == TaskStatus.PENDING for i in ids)


def test_route_batch_spreads_over_agents(orch):
    reg, q = orch.registry, orch.queue
    for name in ("a", "b", "c"):
        reg.register_agent(name, ["py"], {"max_concurrent_tasks": 2})
    tasks = [q.get_task_status(q.create_task(f"t{i}", "t", requirements=["py"]))
             for i in range(6)]
    df = orch.router.route_batch(tasks)
    assert df["agent_id"].notna().all()
    assert df["agent_id"].value_counts().to_dict() == {"a": 2, "b": 2, "c": 2}


# --------------------------------------------------------------- decision log


def test_decisions_log_routes_not_looks(team):
    router = team.router
    assert len(router.decisions()) == 0
    router.route_task({"requirements": ["python"]})
    router.route_task({"requirements": ["cobol"]})  # no agent: still a decision
    router.decide({"requirements": ["sql"]})
    q = team.queue
    tasks = [q.get_task_status(q.create_task(f"b{i}", "t", requirements=["python"]))
             for i in range(3)]
    router.route_batch(tasks)
    assert len(router.decisions()) == 6
    router.explain({"requirements": ["python"]})
    router.rank_candidates(["alpha", "beta"])
    router.rank_candidates(["alpha"], {"requirements": ["python"]})
    df = router.decisions()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 6


# ------------------------------------------------- cached agent table stays current
# The router keeps the graph's part of the agent table between calls (rebuilt when the
# graph's change counter moves) and reads figures and load fresh every call: every change
# made through the public API shows in the very next decision.


def test_next_decision_sees_a_new_or_changed_agent(router, registry):
    registry.register_agent("b_first", ["python"])
    assert router.route_task({"requirements": ["python"]}) == "b_first"
    registry.register_agent("a_second", ["python"])  # same score, lower id
    assert router.route_task({"requirements": ["python"]}) == "a_second"
    registry.set_active("a_second", False)
    assert router.route_task({"requirements": ["python"]}) == "b_first"
    registry.register_agent("b_first", ["sql"])  # re-registered without python
    assert router.route_task({"requirements": ["python"]}) is None
    registry.learn_new_capability("b_first", "python", confidence=0.5)
    assert router.route_task({"requirements": ["python"]}) == "b_first"
    registry.set_active("a_second", True)
    assert router.route_task({"requirements": ["python"]}) == "a_second"
    registry.deregister_agent("a_second")
    assert router.route_task({"requirements": ["python"]}) == "b_first"
    assert list(router.explain({"requirements": ["python"]})["agent_id"]) == ["b_first"]


def test_next_decision_sees_load_from_the_queue(router, registry, queue):
    registry.register_agent("a", ["python"], {"max_concurrent_tasks": 2})
    registry.register_agent("b", ["python"], {"max_concurrent_tasks": 2})
    task = {"requirements": ["python"]}
    assert router.route_task(task) == "a"
    first = queue.create_task("one", "t", requirements=["python"])
    assert queue.claim_task("a").id == first  # a: 1 of 2
    assert router.route_task(task) == "b"
    queue.start_task(first)
    assert router.route_task(task) == "b"  # running still counts
    queue.complete_task(first, "done")
    assert router.route_task(task) == "a"  # load back to 0, and a success on record
    queue.assign_task(queue.create_task("two", "t"), "a")
    queue.assign_task(queue.create_task("three", "t"), "a")
    assert router.decide(task).candidates == ["b"]  # a is at capacity
    assert router.route_batch([task, task, task])["agent_id"].tolist()[:2] == ["b", "b"]


def test_next_decision_sees_new_figures(router, registry):
    registry.register_agent("a", ["python"])
    registry.register_agent("b", ["python"])
    before = router.decide({"requirements": ["python"]})
    assert before.selected_agent == "a"
    registry.update_agent_performance("b", True, 100)
    after = router.decide({"requirements": ["python"]})
    assert after.selected_agent == "b"
    assert after.scores["b"] > before.scores["b"]


def test_a_second_registry_on_the_same_database_is_seen(graph_store, meta_store):
    router = CapabilityRouter(AgentRegistry(graph_store, meta_store))
    other = AgentRegistry(graph_store, meta_store)
    other.register_agent("bot", ["python"])
    assert router.route_task({"requirements": ["python"]}) == "bot"
    other.set_active("bot", False)
    assert router.route_task({"requirements": ["python"]}) is None
    other.register_agent("bot2", ["python"])
    assert router.route_task({"requirements": ["python"]}) == "bot2"
    assert [a for a, _ in router.rank_candidates(["bot2", "bot"])] == ["bot", "bot2"]


# ------------------------------------------------ the DataFrame steps = the router


def test_dataframe_steps_give_the_explained_scores(orch):
    from athena_orch.capability_router import rank_eligible, weighted_score
    reg = orch.registry
    for name, caps, s, f in (("p", ["x", "y"], 3, 2), ("q", ["x"], 9, 1), ("r", ["x"], 0, 0),
                             ("s", ["y"], 2, 0)):
        reg.register_agent(name, caps, {"max_concurrent_tasks": 3})
        _record(reg, name, s, f, duration_ms=100 * (s + 1))
    reg.learn_new_capability("r", "x", confidence=0.25)
    _load(orch.queue, "q", 1)
    agents = reg.routing_frame()
    steps = filter_agents(agents, ["x"], exclude=["p"])
    parts = score_components(agents, ["x"], steps["load"], steps["capacity"],
                             prior_success_rate=orch.router.prior_success_rate,
                             prior_weight=orch.router.prior_weight)
    score = weighted_score(parts, orch.router.weights)
    order = rank_eligible(score, steps["load"], agents["agent_id"].to_numpy(), steps["eligible"])
    explained = orch.router.explain({"requirements": ["x"]}, exclude_agents=["p"])
    assert list(explained["agent_id"][: len(order)]) == list(agents["agent_id"][order])
    by_id = explained.set_index("agent_id")
    for i, agent in enumerate(agents["agent_id"]):
        for c in ("track_record", "headroom", "speed", "fit"):
            assert by_id.loc[agent, c] == parts[c][i]
        assert by_id.loc[agent, "score"] == score[i]


# ---------------------------------------------------- route_batch, exactly as specified


def _batch_by_hand(orch, tasks, exclude=()):
    """route_batch's rule written plainly: tasks by priority (stable), each scored against
    every open agent with the batch's own picks counted in; ties within 1e-12 of the best
    go to the lower load, then the lower id."""
    from athena_orch.capability_router import COMPONENTS
    router = orch.router
    agents = orch.registry.routing_frame()
    ids = agents["agent_id"].to_numpy()
    load = agents["current_load"].to_numpy(dtype=float).copy()
    capacity = agents["max_concurrent_tasks"].to_numpy(dtype=float)
    usable = agents["active"].to_numpy(dtype=bool) & ~agents["agent_id"].isin(
        set(exclude)).to_numpy()
    share = {c: router.weights[c] / sum(router.weights.values()) for c in COMPONENTS}
    out = {}
    rank = {"high": 0, "medium": 1, "low": 2}
    for i in sorted(range(len(tasks)), key=lambda i: rank[tasks[i].get("priority", "medium")]):
        requirements = sorted(set(tasks[i]["requirements"]))
        steps = filter_agents(agents, requirements)
        parts = score_components(agents, requirements, steps["load"], steps["capacity"],
                                 prior_success_rate=router.prior_success_rate,
                                 prior_weight=router.prior_weight)
        fixed = sum(parts[c] * share[c] for c in COMPONENTS if c != "headroom")
        open_ = np.flatnonzero(steps["capable"] & usable & (load < capacity))
        if not len(open_):
            out[tasks[i]["id"]] = (None, None)
            continue
        score = fixed[open_] + share["headroom"] * (1 - load[open_] / capacity[open_])
        best = open_[score >= score.max() - 1e-12]
        best = best[load[best] == load[best].min()]
        pick = min(best, key=lambda r: ids[r])
        out[tasks[i]["id"]] = (ids[pick], float(fixed[pick] + share["headroom"]
                                                * (1 - load[pick] / capacity[pick])))
        load[pick] += 1
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_route_batch_is_the_plain_rule(orch, seed):
    rng = np.random.default_rng(seed)
    reg = orch.registry
    skills = ["a", "b", "c", "d"]
    names = [f"ag{i:02d}" for i in range(24)]
    for name in names:
        caps = list(rng.choice(skills, size=int(rng.integers(0, 4)), replace=False))
        reg.register_agent(name, caps, {"max_concurrent_tasks": int(rng.integers(1, 6))})
    reg.set_active(names[3], False)
    for name in names[::3]:
        _record(reg, name, int(rng.integers(0, 4)), int(rng.integers(0, 2)),
                duration_ms=int(rng.choice([100, 300])))
    reg.learn_new_capability(names[5], "a", confidence=0.5)
    for k in range(8):
        orch.queue.assign_task(orch.queue.create_task(f"l{k}", "t"), names[k * 5 % 24])
    lists = [[], ["a"], ["b", "a"], ["c", "d"], ["a", "b", "c"], ["zzz"]]
    tasks = [{"id": f"t{k}", "requirements": lists[int(rng.integers(0, len(lists)))],
              "priority": str(rng.choice(["low", "medium", "high"]))} for k in range(70)]
    expected = _batch_by_hand(orch, tasks, exclude=[names[7]])
    got = orch.router.route_batch(tasks, exclude_agents=[names[7]])
    assert got["agent_id"].notna().sum() > 10
    for row in got.itertuples():
        agent, score = expected[row.task_id]
        assert (None if pd.isna(row.agent_id) else row.agent_id) == agent
        assert (np.isnan(row.score) if agent is None else row.score == score)


def test_route_batch_breaks_near_ties_like_exact_ones():
    """Scores within 1e-12 of the best tie (then lower load, then lower row), scores below
    do not, whatever order the batch meets them in."""
    from athena_orch.capability_router import _Levels

    rng = np.random.default_rng(7)
    for _ in range(40):
        n = 12
        loads = [int(x) for x in rng.integers(0, 3, n)]
        caps = [int(x) for x in rng.integers(3, 6, n)]
        groups = []
        for _ in range(3):
            fixed = [0.5 + float(rng.choice([0.0, 1e-13, 3e-13, 2e-12, 0.05]))
                     for _ in range(n)]
            rows = [r for r in range(n) if rng.random() < 0.8]
            groups.append((fixed, rows, _Levels(fixed, 0.25, loads, caps,
                                                [r for r in rows if loads[r] < caps[r]])))
        for _ in range(30):
            fixed, rows, levels = groups[int(rng.integers(0, 3))]
            open_ = [r for r in rows if loads[r] < caps[r]]
            got = levels.pick()
            if not open_:
                assert got is None
                continue
            score = {r: fixed[r] + 0.25 * (1 - loads[r] / caps[r]) for r in open_}
            top = max(score.values())
            want = min((r for r in open_ if score[r] >= top - 1e-12), key=lambda r: (loads[r], r))
            assert got == want
            loads[got] += 1
            levels.requeue(got)


def test_route_batch_log_rows(orch):
    reg = orch.registry
    reg.register_agent('odd "id" ü', ["py"], {"max_concurrent_tasks": 1})
    reg.register_agent("plain", ["py"], {"max_concurrent_tasks": 1})
    tasks = [{"id": "t1", "requirements": ["py"]}, {"id": "t2", "requirements": ("py",)},
             {"requirements": ["py"]}, {"id": "t4", "requirements": []}]
    result = orch.router.route_batch(tasks)
    log = orch.router.decisions()
    assert len(log) == 4 and set(log["source"]) == {"route_batch"}
    for row, decision in zip(result.itertuples(), log.itertuples()):
        assert (pd.isna(decision.task_id) and pd.isna(row.task_id)
                or decision.task_id == row.task_id)
        if pd.isna(row.agent_id):
            assert pd.isna(decision.selected_agent)
            assert decision.candidates == [] and decision.scores == {}
        else:
            assert decision.selected_agent == row.agent_id
            assert decision.candidates == [row.agent_id]
            assert decision.scores == {row.agent_id: row.score}
        assert decision.components == {}
        assert decision.weights == orch.router.weights
    assert [d for d in log["requirements"]] == [["py"], ["py"], ["py"], []]
    assert result["agent_id"].notna().tolist() == [True, True, False, False]


def test_route_batch_checks_every_task(orch):
    from athena_orch.exceptions import ValidationError
    orch.registry.register_agent("a", ["py"])
    ok = {"requirements": ["py"]}
    for bad in ({"requirements": ["py", ""]}, {"requirements": ["py", 1]},
                {"requirements": "py"}, {"id": "", "requirements": ["py"]},
                {"requirements": ["py"], "priority": "urgent"}, ["py"]):
        with pytest.raises(ValidationError):
            orch.router.route_batch([ok, ok, bad])
    assert len(orch.router.decisions()) == 0
    same = orch.router.route_batch([{"requirements": [np.str_("py")]}, ok])
    assert same["agent_id"].tolist() == ["a", "a"]
