"""Routing analysis: replaying the decision log under other weights, in pandas."""

from __future__ import annotations

import pandas as pd
import pytest

import athena_orch
from athena_orch import analysis
from athena_orch.capability_router import DEFAULT_WEIGHTS
from athena_orch.exceptions import OrchestrationError, ValidationError


@pytest.fixture
def orch(database_url):
    """Two agents that differ: 'steady' has a long good record but is busy, 'fresh' is
    idle with no record. Under the defaults the record wins; weighting headroom flips it."""
    manager = athena_orch.connect(database_url())
    reg, queue = manager.registry, manager.queue
    reg.register_agent("steady", ["python"], {"max_concurrent_tasks": 10})
    reg.register_agent("fresh", ["python"], {"max_concurrent_tasks": 4})
    for _ in range(20):
        reg.update_agent_performance("steady", True, 1000)
    queue.create_task("busy work", "x", requirements=["python"])
    queue.assign_task(queue.poll_tasks()[0].id, "steady")
    try:
        yield manager
    finally:
        manager.close()


def decide_some(orch, n=4):
    for i in range(n):
        orch.router.decide({"id": f"t{i}", "requirements": ["python"]})
    orch.router.decide({"id": "nobody", "requirements": ["cobol"]})
    return orch.router.decisions()


def test_replay_with_the_logged_weights_changes_nothing(orch):
    log = decide_some(orch)
    replay = analysis.replay_decisions(log, orch.router.weights)
    assert list(replay.columns) == analysis.REPLAY_COLUMNS
    assert len(replay) == len(log)
    assert not replay["changed"].any()
    assert replay["replayable"].all()
    chosen = replay[replay["original_agent"].notna()]
    assert (chosen["original_agent"] == chosen["replayed_agent"]).all()
    assert chosen["original_score"].tolist() == chosen["replayed_score"].tolist()


def test_replay_under_other_weights_moves_decisions(orch):
    log = decide_some(orch)
    assert set(log["selected_agent"].dropna()) == {"steady"}
    replay = analysis.replay_decisions(
        log, {"track_record": 0.0, "headroom": 1.0, "speed": 0.0, "fit": 0.0}
    )
    python = replay[replay["task_id"] != "nobody"]
    assert python["changed"].all()
    assert set(python["replayed_agent"]) == {"fresh"}
    assert python["replayed_score"].eq(1.0).all()  # fresh is idle: full headroom
    nobody = replay[replay["task_id"] == "nobody"].iloc[0]
    assert nobody["original_agent"] is None and nobody["replayed_agent"] is None
    assert not nobody["changed"] and nobody["replayable"] and nobody["n_candidates"] == 0


def test_replay_matches_the_router_with_new_weights(orch):
    log = decide_some(orch, n=1)
    weights = {"track_record": 0.1, "headroom": 0.6, "speed": 0.2, "fit": 0.1}
    replay = analysis.replay_decisions(log, weights)
    explained = orch.router.explain({"requirements": ["python"]}, weights=weights)
    assert replay["replayed_agent"].iloc[0] == explained["agent_id"].iloc[0]
    assert replay["replayed_score"].iloc[0] == pytest.approx(explained["score"].iloc[0])


def test_ties_go_to_lower_load_then_id():
    components = {
        a: {
            "track_record": 0.5,
            "headroom": 0.5,
            "speed": 0.5,
            "fit": 0.5,
            "load": load,
            "capacity": 4.0,
        }
        for a, load in (("c", 0.0), ("b", 1.0), ("a", 1.0))
    }
    log = pd.DataFrame(
        {
            "decision_id": [1],
            "task_id": ["t"],
            "source": ["decide"],
            "components": [components],
            "scores": [{a: 0.5 for a in components}],
            "selected_agent": ["c"],
        }
    )
    replay = analysis.replay_decisions(log, {"fit": 1.0})
    assert replay["replayed_agent"].iloc[0] == "c"
    components["c"]["load"] = 2.0
    assert analysis.replay_decisions(log, {"fit": 1.0})["replayed_agent"].iloc[0] == "a"


def test_batch_decisions_are_not_replayable(orch):
    orch.router.route_batch([{"id": "b1", "requirements": ["python"]}])
    log = decide_some(orch, n=1)
    replay = analysis.replay_decisions(log, {"headroom": 1.0, "track_record": 0.0})
    batch = replay[replay["source"] == "route_batch"].iloc[0]
    assert not batch["replayable"] and not batch["changed"]
    assert batch["replayed_agent"] is None and batch["original_agent"] is not None
    shift = analysis.load_shift(replay)
    assert shift["before"].sum() == 1  # the batch decision is left out


def test_load_shift(orch):
    log = decide_some(orch)
    replay = analysis.replay_decisions(
        log, {"track_record": 0.0, "headroom": 1.0, "speed": 0.0, "fit": 0.0}
    )
    shift = analysis.load_shift(replay)
    assert list(shift.columns) == analysis.SHIFT_COLUMNS
    rows = shift.set_index("agent_id")
    assert rows.loc["fresh"].tolist() == [0, 4, 4]
    assert rows.loc["steady"].tolist() == [4, 0, -4]
    assert shift["difference"].sum() == 0
    assert shift["agent_id"].tolist() == ["fresh", "steady"]  # winners first


def test_weights_are_checked(orch):
    log = decide_some(orch, n=1)
    with pytest.raises(ValidationError):
        analysis.replay_decisions(log, {c: 0 for c in DEFAULT_WEIGHTS})
    with pytest.raises(ValidationError):
        analysis.replay_decisions(log, {"luck": 1.0})
    with pytest.raises(ValidationError, match="router.decisions"):
        analysis.replay_decisions(pd.DataFrame({"x": [1]}), {})


def test_empty_log(orch):
    log = orch.router.decisions()
    replay = analysis.replay_decisions(log, {})
    assert replay.empty and list(replay.columns) == analysis.REPLAY_COLUMNS
    shift = analysis.load_shift(replay)
    assert shift.empty and list(shift.columns) == analysis.SHIFT_COLUMNS
    assert analysis.decision_summary(log).empty
    assert analysis.candidate_components(log).empty


def test_summary_and_components(orch):
    log = decide_some(orch, n=2)
    summary = analysis.decision_summary(log)
    assert len(summary) == 3
    first = summary.iloc[0]
    assert first["n_candidates"] == 2 and first["runner_up"] == "fresh"
    assert first["margin"] == pytest.approx(
        log["scores"].iloc[0]["steady"] - log["scores"].iloc[0]["fresh"]
    )
    assert pd.isna(summary.iloc[2]["margin"])
    long = analysis.candidate_components(log)
    assert len(long) == 4 and long["selected"].sum() == 2
    assert (analysis.score(long, orch.router.weights) == long["logged_score"]).all()


def test_sweep_weight(orch):
    log = decide_some(orch)
    sweep = analysis.sweep_weight(log, "headroom", [0.0, 0.3, 5.0])
    assert sweep.columns.tolist() == [
        "headroom",
        "changed",
        "changed_share",
        "top_agent",
        "top_agent_share",
    ]
    assert sweep["changed"].tolist()[0] == 0
    assert sweep["top_agent"].tolist()[-1] == "fresh"
    with pytest.raises(ValidationError, match="luck"):
        analysis.sweep_weight(log, "luck", [1.0])


@pytest.mark.parametrize("call", [
    lambda log: analysis.decision_summary(pd.DataFrame({"x": [1]})),
    lambda log: analysis.candidate_components([{"decision_id": 1}]),
    lambda log: analysis.replay_decisions(log, 5),
    lambda log: analysis.replay_decisions(log, {"speed": "fast"}),
    lambda log: analysis.score(log, {}),
    lambda log: analysis.load_shift(None),
    lambda log: analysis.sweep_weight(log, ["speed"], [1.0]),
    lambda log: analysis.sweep_weight(log, "speed", 1.0),
    lambda log: analysis.sweep_weight(log, "speed", [1.0], base=[("speed", 1.0)]),
], ids=["summary-columns", "components-not-a-frame", "weights-not-a-mapping",
        "weight-not-a-number", "score-without-components", "shift-of-none",
        "component-a-list", "values-not-iterable", "base-not-a-mapping"])
def test_bad_input_is_a_validation_error_and_leaves_the_log_intact(orch, call):
    """Every refusal is athena-orch's own error (still a ValueError, as before), naming
    what was wrong; the frame passed in is not modified."""
    log = decide_some(orch, n=2)
    before = log.copy()
    with pytest.raises(ValidationError) as caught:
        call(log)
    assert isinstance(caught.value, OrchestrationError) and isinstance(caught.value, ValueError)
    assert str(caught.value)
    pd.testing.assert_frame_equal(log, before)
