"""The hidden-skill workload and the learning simulation, on a real in-memory DuckDB."""

from __future__ import annotations

import pandas as pd
import pytest

import athena_orch as ao
from athena_orch.exceptions import ValidationError
from athena_orch.learning import learning_curve, simulate
from athena_orch.workload import sample_workload, skill_workload, specialist_matrix

TYPES = ["research", "coding", "analysis", "writing"]


def test_skill_workload_has_specialists_and_loads():
    wl = skill_workload(n_agents=6, n_tasks=40, seed=3)
    assert list(wl.success.index) == [f"agent-{i}" for i in range(1, 7)]
    assert list(wl.success.columns) == TYPES
    # everyone can do everything: only the hidden matrix tells agents apart
    assert all(caps == sorted(TYPES) for caps in wl.agents["capabilities"])
    good = (wl.success >= 0.9).sum(axis=1)
    assert good.between(1, 2).all() and (wl.success.max(axis=0) == 0.9).all()
    assert set(wl.tasks["task_type"]) == set(TYPES)
    assert all(r["requirements"] == [r["task_type"]] for r in wl.task_records())
    with ao.connect() as orch:
        ids = orch.queue.create_tasks(wl.task_records())
    assert len(ids) == 40
    again = skill_workload(n_agents=6, n_tasks=40, seed=3)
    pd.testing.assert_frame_equal(wl.tasks, again.tasks)
    assert not wl.tasks.equals(skill_workload(n_agents=6, n_tasks=40, seed=4).tasks)


def test_oracle_takes_the_best_free_agent():
    wl = skill_workload(n_agents=6, n_tasks=0)
    assert wl.oracle("research", {a: 1 for a in wl.success.index}) == "agent-1"
    assert wl.oracle("research", {"agent-1": 0, "agent-5": 2, "agent-2": 3}) == "agent-5"
    assert wl.oracle("research", {"agent-2": 1}) == "agent-2"  # poor, but the only one free
    assert wl.oracle("research", {"agent-1": 0}) is None


def test_custom_matrix_and_speeds():
    ids = ["agent-1", "agent-2"]
    success = pd.DataFrame({"a": [0.2, 0.7], "b": [1.0, 0.0]}, index=ids)
    wl = skill_workload(2, ["a", "b"], 10, success=success.iloc[::-1], speed=[0.5, 2.0])
    assert wl.success.loc["agent-2", "a"] == 0.7  # rows matched by id, not position
    assert wl.speed.loc["agent-2", "b"] == 2.0
    assert wl.agents["failure_rate"].tolist() == [0.4, 0.65]
    assert specialist_matrix(ids, ["a", "b", "c"]).loc["agent-2", "b"] == 0.9


@pytest.mark.parametrize("kwargs, message", [
    ({"success": pd.DataFrame({"research": [0.5]}, index=["agent-1"])}, "one row per agent"),
    ({"success": pd.DataFrame(1.5, index=["agent-1", "agent-2"], columns=TYPES)},
     r"in \[0, 1\]; success\['agent-1', 'research'\] is 1.5"),
    ({"success": pd.DataFrame(float("nan"), index=["agent-1", "agent-2"], columns=TYPES)},
     "finite"),
    ({"success": pd.DataFrame("x", index=["agent-1", "agent-2"], columns=TYPES)}, "numbers"),
    ({"speed": [1.0]}, "one number per agent"),
    ({"speed": [1.0, -2.0]}, "speed values must be finite"),
    ({"n_agents": 0}, "n_agents"), ({"n_tasks": -1}, "n_tasks"), ({"capacity": 0}, "capacity"),
    ({"task_types": ["a", "a"]}, "distinct"), ({"task_types": "abc"}, "distinct"),
])
def test_bad_input_is_a_clear_validation_error(kwargs, message):
    settings = {"n_agents": 2, "n_tasks": 5, **kwargs}
    with pytest.raises(ValidationError, match=message):
        skill_workload(**settings)


def test_simulation_is_reproducible_under_a_seed():
    wl = skill_workload(n_agents=4, n_tasks=60, seed=5)
    runs = []
    for _ in range(2):
        with ao.connect() as orch:
            runs.append(simulate(orch, wl, "thompson", seed=11))
    pd.testing.assert_frame_equal(runs[0].drop(columns="task_id"),
                                  runs[1].drop(columns="task_id"))
    with ao.connect() as orch:
        other = simulate(orch, wl, "thompson", seed=12)
    assert other["agent_id"].tolist() != runs[0]["agent_id"].tolist()


def test_outcomes_match_the_queue_and_the_skill_counts():
    wl = skill_workload(n_agents=4, n_tasks=40, seed=2)
    with ao.connect() as orch:
        out = simulate(orch, wl, "thompson", seed=1, route="decide")
        tasks = orch.queue.to_frame().set_index("task_id")
        skills = orch.registry.skill_frame("task_type")
        log = orch.router.decisions()
    status = tasks.loc[out["task_id"], "status"].to_numpy()
    assert (status == out["success"].map({1.0: "completed", 0.0: "failed"})).all()
    assert (tasks.loc[out["task_id"], "assigned_to"].to_numpy() == out["agent_id"]).all()
    counted = skills.set_index(["agent_id", "skill"])[["completed", "failed"]].sum(axis=1)
    tried = out.groupby(["agent_id", "task_type"]).size()
    assert counted.sort_index().tolist() == tried.sort_index().tolist()
    # decide: every decision logs its candidates' propensities, summing to 1
    assert (log["propensity_method"] == "exact").all()
    assert all(abs(sum(p.values()) - 1) < 1e-9 for p in log["propensities"])
    assert out["propensity"].between(0, 1, inclusive="right").all()


def test_thompson_respects_capacity():
    wl = skill_workload(n_agents=3, n_tasks=40, seed=4, capacity=2)
    with ao.connect() as orch:
        out = simulate(orch, wl, "thompson", seed=3, round_size=10)
        cancelled = orch.queue.to_frame("cancelled")
    per_round = out.dropna(subset=["agent_id"]).groupby(["round", "agent_id"]).size()
    assert per_round.max() <= 2
    assert out["agent_id"].isna().sum() == 4 * (10 - 6) == len(cancelled)
    assert out.loc[out["agent_id"].isna(), "success"].isna().all()


def test_thompson_beats_weighted_on_specialists():
    """A seeded check, not a timing: after 300 tasks the learner has found the
    specialists the weighted router (one track record per agent) cannot see."""
    wl = skill_workload(n_agents=6, n_tasks=300, seed=1)
    rates = {}
    for policy in ("weighted", "thompson", "oracle"):
        with ao.connect() as orch:
            out = simulate(orch, wl, policy, seed=1)
        rates[policy] = out["success"].tail(100).mean()
    assert rates["thompson"] >= rates["weighted"] + 0.2
    assert rates["oracle"] >= rates["thompson"]


def test_callable_policy_and_learning_curve():
    wl = skill_workload(n_agents=3, n_tasks=12, seed=6)
    with ao.connect() as orch:
        out = simulate(orch, wl, lambda task_type, free: min(a for a, k in free.items() if k),
                       seed=0)
    assert set(out["agent_id"]) == {"agent-1"}
    assert out["propensity"].isna().all()
    with ao.connect() as orch:
        best = simulate(orch, wl, "oracle", seed=0)
    curve = learning_curve(out, best)
    expected = (best["expected"] - out["expected"]).cumsum().to_numpy()
    assert curve["regret"].to_numpy() == pytest.approx(expected)
    assert learning_curve(best)["regret"].iloc[-1] == 0
    assert curve["success_rate"].iloc[-1] == out["success"].mean()


@pytest.mark.parametrize("kwargs, message", [
    ({"policy": "greedy"}, "policy must be one of"), ({"route": "fast"}, "route"),
    ({"seed": -1}, "seed"), ({"n_tasks": 99}, "n_tasks"), ({"round_size": 0}, "round_size"),
])
def test_simulate_rejects_bad_settings_and_writes_nothing(kwargs, message):
    wl = skill_workload(n_agents=2, n_tasks=5)
    with ao.connect() as orch:
        with pytest.raises(ValidationError, match=message):
            simulate(orch, wl, **kwargs)
        assert orch.queue.to_frame().empty and orch.registry.to_frame().empty
    with ao.connect() as orch, pytest.raises(ValidationError, match="SkillWorkload"):
        simulate(orch, sample_workload())


def test_reading_a_workload_without_its_columns_is_a_validation_error(tmp_path):
    from athena_orch.exceptions import OrchestrationError
    from athena_orch.workload import read_agents, read_tasks, synthetic_workload

    bad = tmp_path / "bad.csv"
    bad.write_text("name,colour\nx,red\n")
    for read in (read_agents, read_tasks):
        with pytest.raises(OrchestrationError, match="missing columns"):
            read(bad)
    with pytest.raises(OrchestrationError, match="at least 1"):
        synthetic_workload(n_tasks=0)
