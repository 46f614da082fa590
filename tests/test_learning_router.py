"""The learning router: per-skill track records, the "thompson" policy, propensities."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from athena_orch.capability_router import POSTERIOR_COLUMNS, beta_posterior
from athena_orch.exceptions import ValidationError


def _finish(queue, agent_id, task_type, requirements, ok, duration_ms=1_000, retries=0):
    """One attempt of a new task by ``agent_id``, completed (ok) or failed."""
    task_id = queue.create_task(f"{task_type} by {agent_id}", task_type, "medium",
                                requirements, max_retries=retries)
    queue.assign_task(task_id, agent_id)
    queue.start_task(task_id)
    if ok:
        queue.complete_task(task_id, "done", {"duration_ms": duration_ms})
    else:
        queue.fail_task(task_id, "broke")
    return task_id


def _specialise(queue, rounds):
    """coder succeeds at coding and fails at writing; writer the other way round."""
    for _ in range(rounds):
        _finish(queue, "coder", "coding", ["code"], True)
        _finish(queue, "coder", "writing", ["prose"], False)
        _finish(queue, "writer", "coding", ["code"], False)
        _finish(queue, "writer", "writing", ["prose"], True)


@pytest.fixture
def pair(orch):
    """coder and writer, both able to do everything, capacity 3."""
    for agent in ("coder", "writer"):
        orch.registry.register_agent(agent, ["code", "prose"], {"max_concurrent_tasks": 3})
    return orch


def _skills(orch):
    frame = orch.registry.skill_frame()
    return {(r.agent_id, r.skill_kind, r.skill): (r.completed, r.failed)
            for r in frame.itertuples()}


# ---------------------------------------------------------------- per-skill track records
def test_outcomes_are_counted_per_agent_and_task_type_and_capability(pair):
    queue = pair.queue
    _finish(queue, "coder", "coding", ["code"], True, 2_000)
    _finish(queue, "coder", "coding", ["code"], True, 4_000)
    _finish(queue, "coder", "writing", ["prose", "code"], False)
    _finish(queue, "writer", "writing", ["prose"], True)
    assert _skills(pair) == {
        ("coder", "task_type", "coding"): (2, 0), ("coder", "task_type", "writing"): (0, 1),
        ("coder", "capability", "code"): (2, 1), ("coder", "capability", "prose"): (0, 1),
        ("writer", "task_type", "writing"): (1, 0), ("writer", "capability", "prose"): (1, 0)}
    coding = pair.registry.skill_frame("task_type").set_index(["agent_id", "skill"])
    assert coding.loc[("coder", "coding"), "avg_completion_ms"] == 3_000
    assert coding.loc[("coder", "coding"), "success_rate"] == 1.0
    assert coding.loc[("coder", "writing"), "success_rate"] == 0.0
    # the registry's own figures are unchanged by the split
    coder = pair.registry.get_agent("coder")
    assert (coder.total_completed, coder.total_failed) == (2, 1)


def test_a_retried_failure_counts_for_the_agent_that_failed(pair):
    _finish(pair.queue, "coder", "coding", ["code"], False, retries=3)
    assert _skills(pair)[("coder", "task_type", "coding")] == (0, 1)
    assert pair.registry.get_agent("coder").total_failed == 1


def test_only_completions_and_failures_count(pair):
    queue = pair.queue
    released = queue.create_task("released", "coding", "medium", ["code"])
    queue.assign_task(released, "coder")
    queue.release_task(released)
    cancelled = queue.create_task("cancelled", "coding", "medium", ["code"])
    queue.assign_task(cancelled, "coder")
    queue.start_task(cancelled)
    queue.cancel_task(cancelled)
    queue.claim_task("writer")  # the released task: claimed, still open
    assert pair.registry.skill_frame().empty


def test_a_bulk_completion_counts_every_task(pair):
    queue = pair.queue
    ids = [queue.create_task(f"t{i}", "coding", "medium", ["code"]) for i in range(3)]
    for task_id in ids:
        queue.assign_task(task_id, "coder")
        queue.start_task(task_id)
    queue.complete_tasks({task_id: "ok" for task_id in ids})
    assert _skills(pair)[("coder", "task_type", "coding")] == (3, 0)


def test_lease_expiry_is_a_failure_of_the_agent(orch, clock):
    orch.registry.register_agent("slow", ["code"])
    task_id = orch.queue.create_task("t", "coding", "medium", ["code"])
    orch.queue.assign_task(task_id, "slow")
    clock.advance(orch.queue.lease_seconds + 1)
    orch.queue.requeue_stale()
    assert _skills(orch)[("slow", "task_type", "coding")] == (0, 1)


def test_deregistering_forgets_the_skills(pair):
    _finish(pair.queue, "coder", "coding", ["code"], True)
    pair.registry.deregister_agent("coder")
    assert pair.registry.skill_frame().empty


def test_skill_frame_refuses_an_unknown_kind(pair):
    with pytest.raises(ValidationError, match="kind"):
        pair.registry.skill_frame("tasktype")


# ---------------------------------------------------------------- the posterior
def test_beta_posterior_centres_a_new_skill_on_the_agents_other_work():
    alpha, beta = beta_posterior(
        np.array([0, 6]), np.array([0, 2]), np.array([8, 6]), np.array([2, 2]),
        prior_success_rate=0.8, prior_weight=5.0, skill_prior_weight=2.0)
    # agent 0: nothing at this skill; elsewhere (8 + 4) / (10 + 5) = 0.8
    assert alpha[0] == pytest.approx(1.6) and beta[0] == pytest.approx(0.4)
    # agent 1: all its work is this skill: prior mean 0.8 from the prior alone
    assert alpha[1] == pytest.approx(6 + 1.6) and beta[1] == pytest.approx(2 + 0.4)


def test_explain_under_thompson_shows_the_posterior_and_the_draw(pair):
    for _ in range(4):
        _finish(pair.queue, "coder", "coding", ["code"], True)
    _finish(pair.queue, "coder", "writing", ["prose"], False)
    pair.router.policy = "thompson"
    frame = pair.router.explain({"requirements": ["code"], "task_type": "coding"})
    assert set(POSTERIOR_COLUMNS) <= set(frame.columns)
    coder = frame.set_index("agent_id").loc["coder"]
    assert (coder.skill_completed, coder.skill_failed) == (4, 0)
    # prior mean from its other work: (0 + 0.8 * 5) / (1 + 5)
    mean = 4 / 6
    assert coder.alpha == pytest.approx(4 + 2 * mean)
    assert coder.beta == pytest.approx(2 * (1 - mean))
    assert coder.posterior_mean == pytest.approx(coder.alpha / (coder.alpha + coder.beta))
    assert 0 < coder.draw < 1 and coder.track_record == coder.draw
    weights = pair.router.weights
    expected = sum(coder[c] * w for c, w in weights.items()) / sum(weights.values())
    assert coder.score == pytest.approx(expected)
    # weighted: no posterior columns
    pair.router.policy = "weighted"
    assert "draw" not in pair.router.explain({"requirements": ["code"]}).columns


# ---------------------------------------------------------------- choosing
def test_policy_and_settings_are_checked(pair):
    with pytest.raises(ValidationError, match="thompson"):
        pair.router.policy = "greedy"
    assert pair.router.policy == "weighted"
    with pytest.raises(ValidationError):
        pair.router.seed = -1
    with pytest.raises(ValidationError):
        pair.router.seed = "7"
    from athena_orch.capability_router import CapabilityRouter
    with pytest.raises(ValidationError):
        CapabilityRouter(pair.registry, posterior_samples=0)
    with pytest.raises(ValidationError):
        CapabilityRouter(pair.registry, policy="random")


def test_weighted_decisions_are_deterministic_with_propensity_one(pair):
    decision = pair.router.decide({"requirements": ["code"]})
    assert (decision.policy, decision.propensity) == ("weighted", 1.0)
    logged = pair.router.decisions().iloc[-1]
    assert (logged.policy, logged.propensity, logged.propensity_method) == (
        "weighted", 1.0, "deterministic")
    assert logged.propensities == {"coder": 1.0, "writer": 0.0}


def _choices(orch, seed, n=30):
    orch.router.policy = "thompson"
    orch.router.seed = seed
    return [orch.router.decide({"requirements": ["code"], "task_type": "coding"})
            .selected_agent for _ in range(n)]


def test_thompson_is_reproducible_under_a_seed(pair):
    first = _choices(pair, 11)
    assert _choices(pair, 11) == first
    assert len(set(first)) == 2  # it explores both while it knows nothing
    assert any(_choices(pair, s) != first for s in (12, 13, 14))


def test_thompson_propensities_are_exact_probabilities(pair):
    pair.router.policy = "thompson"
    pair.router.seed = 3
    for _ in range(20):
        decision = pair.router.decide({"requirements": ["code"], "task_type": "coding"})
        assert 0 < decision.propensity <= 1
    log = pair.router.decisions()
    log = log[log.policy == "thompson"]
    assert (log.propensity_method == "exact").all()
    for row in log.itertuples():
        assert set(row.propensities) == set(row.candidates)  # every eligible agent logged
        assert sum(row.propensities.values()) == pytest.approx(1.0)
        assert row.propensities[row.selected_agent] == row.propensity
        # a probability is a share of the pool's draws
        assert row.propensity * pair.router.posterior_samples == pytest.approx(
            round(row.propensity * pair.router.posterior_samples))


def test_thompson_choices_follow_their_propensities(pair):
    """Over many decisions on fixed figures, each agent is chosen about as often as the
    logged probabilities say (a seeded check of the sampling, not of timing)."""
    for _ in range(3):
        _finish(pair.queue, "coder", "coding", ["code"], True)
    _finish(pair.queue, "writer", "coding", ["code"], False)
    pair.router.policy = "thompson"
    pair.router.seed = 5
    n = 400
    chosen = Counter(pair.router.decide({"requirements": ["code"], "task_type": "coding"})
                     .selected_agent for _ in range(n))
    log = pair.router.decisions().tail(n)
    expected = sum(row.propensities.get("coder", 0.0) for row in log.itertuples())
    assert abs(chosen["coder"] - expected) < 4 * np.sqrt(n * 0.25)
    assert chosen["coder"] > chosen["writer"]  # it prefers what it has seen work


def test_thompson_learns_who_is_good_at_which_type(pair):
    """coder succeeds at coding and fails at writing; writer the other way round."""
    _specialise(pair.queue, 12)
    pair.router.policy = "thompson"
    pair.router.seed = 1
    coding = Counter(pair.router.route_task({"requirements": [], "task_type": "coding"})
                     for _ in range(40))
    writing = Counter(pair.router.route_task({"requirements": [], "task_type": "writing"})
                      for _ in range(40))
    assert coding["coder"] >= 38 and writing["writer"] >= 38
    # the weighted router sees two agents with the same overall record
    pair.router.policy = "weighted"
    assert pair.router.route_task({"requirements": [], "task_type": "coding"}) == \
        pair.router.route_task({"requirements": [], "task_type": "writing"})


def test_thompson_without_eligible_agents_logs_no_propensity(pair):
    pair.router.policy = "thompson"
    decision = pair.router.decide({"requirements": ["sql"], "task_type": "coding"})
    assert decision.selected_agent is None and decision.propensity is None
    logged = pair.router.decisions().iloc[-1]
    assert np.isnan(logged.propensity) and logged.propensities == {}


# ---------------------------------------------------------------- batches
def test_route_batch_under_thompson_respects_capacity(pair):
    pair.queue.assign_task(pair.queue.create_task("busy", "coding", "medium", ["code"]),
                           "coder")
    pair.router.policy = "thompson"
    pair.router.seed = 2
    tasks = [{"id": f"t{i}", "requirements": ["code"], "task_type": "coding"}
             for i in range(8)]
    result = pair.router.route_batch(tasks)
    counts = result["agent_id"].value_counts(dropna=False).to_dict()
    assert counts == {"writer": 3, "coder": 2, None: 3}  # free slots: 3 and 2
    log = pair.router.decisions().tail(8)
    routed = log[log.selected_agent.notna()]
    assert (routed.propensity > 0).all() and (routed.propensity <= 1).all()
    assert (routed.propensity_method == "exact").all() and (routed.policy == "thompson").all()
    assert log[log.selected_agent.isna()].propensity.isna().all()


def test_route_batch_under_thompson_is_reproducible(pair):
    tasks = [{"id": f"t{i}", "requirements": ["code"], "task_type": "coding"}
             for i in range(6)]
    pair.router.policy = "thompson"
    pair.router.seed = 9
    first = pair.router.route_batch(tasks)
    pair.router.seed = 9
    again = pair.router.route_batch(tasks)
    assert first.equals(again)


def test_route_batch_sends_each_type_to_its_specialist(pair):
    _specialise(pair.queue, 15)
    pair.router.policy = "thompson"
    pair.router.seed = 4
    tasks = [{"id": f"c{i}", "requirements": [], "task_type": "coding"} for i in range(2)]
    tasks += [{"id": f"w{i}", "requirements": [], "task_type": "writing"} for i in range(2)]
    result = pair.router.route_batch(tasks).set_index("task_id")["agent_id"]
    assert list(result[["c0", "c1"]]) == ["coder", "coder"]
    assert list(result[["w0", "w1"]]) == ["writer", "writer"]


def test_a_pool_that_follows_picks_agrees_with_one_built_afresh():
    """route_batch's pools update only the draws a pick can change; at every step their
    winners and probabilities equal those of a pool computed from scratch."""
    from athena_orch.capability_router import _PosteriorPool

    rng = np.random.default_rng(0)
    n_agents, samples = 12, 64
    draws = rng.beta(2.0, 2.0, size=(samples, n_agents))
    caps = rng.integers(1, 4, size=n_agents)
    fixed = rng.uniform(0, 0.3, size=n_agents)
    loads = np.zeros(n_agents, dtype=np.int64)
    holders: dict = {}
    rows_a, rows_b = np.arange(0, n_agents), np.arange(0, n_agents, 2)
    pools = [_PosteriorPool(rows, fixed[rows], draws, caps, 0.3, 0.4, holders)
             for rows in (rows_a, rows_b)]
    for step in range(int(caps.sum()) + 2):
        pool = pools[step % 2]
        col, _, p = pool.pick(int(rng.integers(samples)), loads)
        fresh = _PosteriorPool(pool.rows, pool.fixed, draws, caps, 0.3, 0.4)
        assert np.array_equal(pool.probabilities(loads), fresh.probabilities(loads))
        if col < 0:
            assert (loads[pool.rows] >= caps[pool.rows]).all()
            continue
        assert p == fresh.probabilities(loads)[col] > 0
        r = int(pool.rows[col])
        assert loads[r] < caps[r]
        loads[r] += 1
        for other in holders.pop(r, ()):
            other.moved(r)
