"""AgentRegistry: registration, capabilities, figures, load, activity, claim gating."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import athena_orch
from athena_orch import exceptions
from athena_orch.agent_registry import AgentRegistry
from athena_orch.models import Agent, TaskStatus
from athena_orch.task_queue import TaskQueue

HEALTH_KEYS = {"success_rate", "avg_completion_ms", "current_load", "max_concurrent_tasks",
               "total_completed", "total_failed"}


# ------------------------------------------------------------------- registration


def test_register_agent_returns_agent_with_defaults(registry):
    agent = registry.register_agent("bot", ["python", "web"])
    assert isinstance(agent, Agent)
    assert agent.id == "bot"
    assert sorted(agent.capabilities) == ["python", "web"]
    assert agent.max_concurrent_tasks == 5
    assert agent.success_rate == 1.0
    assert agent.total_completed == 0 and agent.total_failed == 0
    assert agent.current_load == 0
    assert agent.active is True
    got = registry.get_agent("bot")
    assert got is not None and got.id == "bot"
    assert sorted(got.capabilities) == ["python", "web"]


def test_metadata_sets_capacity(registry):
    registry.register_agent("big", ["x"], metadata={"max_concurrent_tasks": 12, "team": "a"})
    assert registry.get_agent("big").max_concurrent_tasks == 12
    assert registry.get_agent_health("big")["max_concurrent_tasks"] == 12
    assert registry.get_agent("big").metadata.get("team") == "a"


def test_new_agent_health(registry):
    registry.register_agent("bot", ["x"])
    health = registry.get_agent_health("bot")
    assert set(health) >= HEALTH_KEYS
    assert health["success_rate"] == 1.0
    assert health["total_completed"] == 0
    assert health["total_failed"] == 0
    assert health["current_load"] == 0
    assert health["avg_completion_ms"] == 0
    assert health["max_concurrent_tasks"] == 5


def test_reregister_replaces_capabilities_and_metadata_keeps_figures(registry):
    registry.register_agent("bot", ["python", "web"], {"max_concurrent_tasks": 2, "team": "a"})
    registry.update_agent_performance("bot", True, 100)
    registry.update_agent_performance("bot", False, 50)
    registry.register_agent("bot", ["sql"], {"max_concurrent_tasks": 7})
    agent = registry.get_agent("bot")
    assert agent.capabilities == ["sql"]
    assert agent.max_concurrent_tasks == 7
    assert "team" not in agent.metadata
    assert agent.total_completed == 1 and agent.total_failed == 1
    assert registry.get_agents_by_capability(["python"]) == []
    assert registry.get_agents_by_capability(["sql"]) == ["bot"]
    assert registry.get_agent_statistics().total_agents == 1


def test_exact_success_rate_and_mean_duration(registry):
    registry.register_agent("bot", ["x"])
    registry.update_agent_performance("bot", True, 100)
    registry.update_agent_performance("bot", True, 300)
    registry.update_agent_performance("bot", False, 9999)  # failures don't count in the mean
    health = registry.get_agent_health("bot")
    assert health["total_completed"] == 2 and health["total_failed"] == 1
    assert health["success_rate"] == pytest.approx(2 / 3, rel=1e-9)
    assert health["avg_completion_ms"] == pytest.approx(200, rel=1e-9)
    agent = registry.get_agent("bot")
    assert agent.success_rate == pytest.approx(2 / 3, rel=1e-9)
    assert agent.avg_completion_ms == pytest.approx(200, rel=1e-9)


def test_single_failure_gives_zero_success_rate(registry):
    """No smoothing in the registry's figures: one failure of one is 0.0."""
    registry.register_agent("bot", ["x"])
    registry.update_agent_performance("bot", False, 10)
    assert registry.get_agent_health("bot")["success_rate"] == 0.0


def test_figures_shared_between_stores_on_one_database(episodic_store, graph_store, meta_store):
    queue = TaskQueue(episodic_store, graph_store)
    registry = AgentRegistry(graph_store, meta_store)
    registry.register_agent("bot", ["x"])
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "bot")
    queue.start_task(tid)
    assert registry.get_agent_health("bot")["current_load"] == 1
    queue.complete_task(tid, "done", metrics={"duration_ms": 40})
    health = registry.get_agent_health("bot")
    assert health["total_completed"] == 1
    assert health["avg_completion_ms"] == pytest.approx(40)
    assert health["current_load"] == 0


# ------------------------------------------------------------------ capabilities


def test_get_agents_by_capability_sorted_active_and_all_required(registry):
    registry.register_agent("zeta", ["python", "web"])
    registry.register_agent("alpha", ["python", "web", "sql"])
    registry.register_agent("mid", ["python"])
    registry.register_agent("sleepy", ["python", "web"])
    registry.set_active("sleepy", False)
    assert registry.get_agents_by_capability(["python"]) == ["alpha", "mid", "zeta"]
    assert registry.get_agents_by_capability(["python", "web"]) == ["alpha", "zeta"]
    assert registry.get_agents_by_capability(["web", "sql"]) == ["alpha"]
    assert registry.get_agents_by_capability(["cobol"]) == []
    registry.set_active("sleepy", True)
    assert registry.get_agents_by_capability(["python", "web"]) == ["alpha", "sleepy", "zeta"]


def test_set_active_is_visible_on_the_agent(registry):
    registry.register_agent("bot", ["x"])
    registry.set_active("bot", False)
    assert registry.get_agent("bot").active is False
    registry.set_active("bot", True)
    assert registry.get_agent("bot").active is True


def test_get_agent_capability(registry):
    registry.register_agent("bot", ["web", "python"])
    assert sorted(registry.get_agent_capability("bot")) == ["python", "web"]
    assert registry.get_agent_capability("nobody") == []


def test_learn_new_capability(registry):
    registry.register_agent("bot", ["python"])
    registry.learn_new_capability("bot", "rust")
    assert sorted(registry.get_agent_capability("bot")) == ["python", "rust"]
    assert registry.get_agents_by_capability(["python", "rust"]) == ["bot"]
    registry.learn_new_capability("bot", "go", confidence=0.4)
    assert "go" in registry.get_agent_capability("bot")
    registry.learn_new_capability("bot", "go")  # learning twice does not duplicate
    assert registry.get_agent_capability("bot").count("go") == 1


def test_agent_statistics(registry):
    assert registry.get_agent_statistics().total_agents == 0
    registry.register_agent("a", ["python", "web"])
    registry.register_agent("b", ["python"])
    registry.register_agent("c", ["sql"])
    stats = registry.get_agent_statistics()
    assert stats.total_agents == 3
    assert dict(stats.skill_distribution) == {"python": 2, "web": 1, "sql": 1}


def test_registry_to_frame(registry):
    registry.register_agent("a", ["x"])
    registry.register_agent("b", ["y"])
    df = registry.to_frame()
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 2


# ----------------------------------------------------------------- deregistration


def test_deregister_agent(queue, registry):
    registry.register_agent("bot", ["python"])
    registry.register_agent("other", ["python"])
    tid = queue.create_task("x", "t")
    queue.assign_task(tid, "bot")
    registry.deregister_agent("bot")
    assert registry.get_agent("bot") is None
    assert registry.get_agent_health("bot") == {"status": "not_found"}
    assert registry.get_agents_by_capability(["python"]) == ["other"]
    assert registry.get_agent_capability("bot") == []
    stats = registry.get_agent_statistics()
    assert stats.total_agents == 1 and dict(stats.skill_distribution) == {"python": 1}
    assert queue.get_task_status(tid).assigned_to == "bot"  # its tasks keep assigned_to


def test_unknown_agent_reads(registry):
    assert registry.get_agent("ghost") is None
    assert registry.get_agent_health("ghost") == {"status": "not_found"}


@pytest.mark.parametrize("call", [
    "update_agent_performance", "learn_new_capability", "deregister_agent", "set_active",
    "heartbeat",
])
def test_unknown_agent_writes_raise(orch, state, call):
    orch.registry.register_agent("real", ["x"])
    tid = orch.queue.create_task("x", "t")
    orch.queue.assign_task(tid, "real")
    calls = {
        "update_agent_performance": lambda: orch.registry.update_agent_performance(
            "ghost-7", True, 10),
        "learn_new_capability": lambda: orch.registry.learn_new_capability("ghost-7", "y"),
        "deregister_agent": lambda: orch.registry.deregister_agent("ghost-7"),
        "set_active": lambda: orch.registry.set_active("ghost-7", False),
        "heartbeat": lambda: orch.queue.heartbeat(agent_id="ghost-7"),
    }
    before = state(["real", "ghost-7"])
    with pytest.raises(exceptions.AgentNotFoundError) as err:
        calls[call]()
    assert "ghost-7" in str(err.value)
    assert state(["real", "ghost-7"]) == before


# ---------------------------------------------------------------- load, no drift


def test_load_follows_the_task_table(queue, registry, clock):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 10})

    def load():
        health = registry.get_agent_health("bot")
        assert health["current_load"] == registry.get_agent("bot").current_load
        return health["current_load"]

    ids = []
    for i in range(6):
        ids.append(queue.create_task(f"t{i}", "t"))
        clock.advance(0.001)
    assert load() == 0
    queue.assign_task(ids[0], "bot")
    assert load() == 1
    c1 = queue.claim_task("bot").id
    c2 = queue.claim_task("bot").id
    assert (c1, c2) == (ids[1], ids[2])
    assert load() == 3
    queue.start_task(ids[0])
    assert load() == 3  # running still counts
    queue.complete_task(ids[0], "ok")
    assert load() == 2
    queue.fail_task(c1, "retry me")
    assert load() == 1
    queue.cancel_task(c2)
    assert load() == 0
    queue.assign_task(ids[3], "bot")
    queue.assign_task(ids[4], "bot")
    assert load() == 2
    queue.fail_task(ids[3], "fatal", should_retry=False)
    assert load() == 1
    clock.advance(301)
    assert queue.requeue_stale() == [ids[4]]
    assert load() == 0
    registry.update_agent_performance("bot", True, 10)  # figures don't touch load
    assert load() == 0


# ------------------------------------------------------------------- claim gating


def test_claim_unregistered_agent(queue, state):
    queue.create_task("x", "t")
    before = state()
    try:
        got = queue.claim_task("nobody")
    except exceptions.AgentNotFoundError:
        got = None
    assert got is None
    assert state() == before


def test_claim_inactive_agent(queue, registry, state):
    registry.register_agent("bot", [])
    registry.set_active("bot", False)
    queue.create_task("x", "t")
    before = state(["bot"])
    try:
        got = queue.claim_task("bot")
    except exceptions.OrchestrationError:
        got = None
    assert got is None
    assert state(["bot"]) == before


def test_claim_needs_every_required_capability(queue, registry, state, clock):
    registry.register_agent("bot", ["python"])
    gpu = queue.create_task("needs gpu", "t", priority="high", requirements=["python", "gpu"])
    clock.advance(0.001)
    before = state(["bot"])
    assert queue.claim_task("bot") is None
    assert state(["bot"]) == before
    plain = queue.create_task("plain", "t", priority="low", requirements=["python"])
    t = queue.claim_task("bot")
    assert t.id == plain  # skips the high-priority task it cannot do
    assert queue.get_task_status(gpu).status == TaskStatus.PENDING


def test_claim_respects_capacity(queue, registry, state):
    registry.register_agent("bot", [], {"max_concurrent_tasks": 2})
    ids = [queue.create_task(f"t{i}", "t") for i in range(3)]
    assert queue.claim_task("bot") is not None
    assert queue.claim_task("bot") is not None
    before = state(["bot"])
    assert queue.claim_task("bot") is None
    assert state(["bot"]) == before
    done = [t.id for t in queue.poll_tasks(agent_id="bot", status="assigned")]
    queue.start_task(done[0])
    queue.complete_task(done[0], "ok")
    t = queue.claim_task("bot")
    assert t is not None and t.id not in done
    assert set(done + [t.id]) == set(ids)


# -------------------------------------------------- property: figures never drift

OPS = st.lists(
    st.tuples(
        st.sampled_from(["create", "create", "claim", "claim", "assign", "start", "complete",
                         "fail", "fail_final", "cancel", "requeue"]),
        st.integers(0, 2),
        st.integers(0, 50),
    ),
    min_size=1, max_size=20,
)


@settings(max_examples=8, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=OPS)
def test_load_and_figures_never_drift(make_clock, ops):
    agents = ["a0", "a1", "a2"]
    completed = dict.fromkeys(agents, 0)
    failed = dict.fromkeys(agents, 0)
    with athena_orch.connect() as orch:
        q, reg = orch.queue, orch.registry
        clock = make_clock()
        q.clock = clock
        for i, a in enumerate(agents):
            reg.register_agent(a, [], {"max_concurrent_tasks": i + 1})

        def in_status(*statuses):
            return [t for t in q.query_tasks({"limit": 10_000}) if str(t.status) in statuses]

        for n, (op, ai, pick) in enumerate(ops):
            agent = agents[ai]
            clock.advance(0.01)
            if op == "create":
                q.create_task(f"task {n}", "t", max_retries=1)
            elif op == "claim":
                got = q.claim_task(agent)
                if got is not None:
                    assert got.assigned_to == agent
            else:
                pool = {
                    "assign": in_status("pending"),
                    "start": in_status("assigned"),
                    "complete": in_status("running"),
                    "fail": in_status("assigned", "running"),
                    "fail_final": in_status("assigned", "running"),
                    "cancel": in_status("pending", "assigned", "running"),
                    "requeue": in_status("assigned", "running"),
                }[op]
                if op == "requeue":
                    clock.advance(q.lease_seconds + 1)
                    got = q.requeue_stale()
                    assert sorted(got) == sorted(t.id for t in pool)
                    for t in pool:
                        failed[t.assigned_to] += 1
                elif pool:
                    t = pool[pick % len(pool)]
                    if op == "assign":
                        q.assign_task(t.id, agent)
                    elif op == "start":
                        q.start_task(t.id)
                    elif op == "complete":
                        q.complete_task(t.id, "ok", metrics={"duration_ms": 10})
                        completed[t.assigned_to] += 1
                    elif op == "fail":
                        q.fail_task(t.id, "e")
                        failed[t.assigned_to] += 1
                    elif op == "fail_final":
                        q.fail_task(t.id, "e", should_retry=False)
                        failed[t.assigned_to] += 1
                    elif op == "cancel":
                        q.cancel_task(t.id)

            active = in_status("assigned", "running")
            for a in agents:
                health = reg.get_agent_health(a)
                expected_load = sum(1 for t in active if t.assigned_to == a)
                assert health["current_load"] == expected_load, (a, op)
                assert reg.get_agent(a).current_load == expected_load
                assert health["total_completed"] == completed[a]
                assert health["total_failed"] == failed[a]
                finished = completed[a] + failed[a]
                rate = completed[a] / finished if finished else 1.0
                assert health["success_rate"] == pytest.approx(rate, rel=1e-9)


# ------------------------------------------------------ the router's view of the agents


def test_to_frame_follows_every_change(registry, queue):
    """The graph's part of the table is cached until the graph changes; figures and load
    are read on every call."""
    registry.register_agent("b", ["x"], {"max_concurrent_tasks": 3})
    registry.register_agent("a", ["x", "y"])

    def row(agent_id):
        frame = registry.to_frame().set_index("agent_id")
        return frame.loc[agent_id].to_dict() if agent_id in frame.index else None

    assert list(registry.to_frame()["agent_id"]) == ["a", "b"]
    assert row("b")["capabilities"] == ["x"] and row("b")["max_concurrent_tasks"] == 3
    registry.set_active("b", False)
    assert not row("b")["active"]
    registry.learn_new_capability("b", "z")
    assert row("b")["capabilities"] == ["x", "z"]
    registry.register_agent("b", ["w"], {"max_concurrent_tasks": 4})
    assert row("b")["capabilities"] == ["w"] and row("b")["max_concurrent_tasks"] == 4
    tid = queue.create_task("t", "t")
    queue.assign_task(tid, "b")
    assert row("b")["current_load"] == 1
    queue.start_task(tid)
    queue.complete_task(tid, "ok", metrics={"duration_ms": 30})
    assert row("b")["current_load"] == 0 and row("b")["total_completed"] == 1
    registry.update_agent_performance("a", False, 5)
    assert row("a")["total_failed"] == 1 and row("a")["success_rate"] == 0.0
    registry.deregister_agent("b")
    assert row("b") is None and list(registry.to_frame()["agent_id"]) == ["a"]


def test_routing_snapshot_matches_the_frame(registry, queue):
    registry.register_agent("c", ["x"], {"max_concurrent_tasks": 2})
    registry.register_agent("a", ["x", "y"])
    registry.register_agent("b", [])
    registry.learn_new_capability("a", "x", confidence=0.4)
    registry.update_agent_performance("c", True, 100)
    registry.update_agent_performance("c", True, 300)
    queue.assign_task(queue.create_task("t", "t"), "c")
    queue.assign_task(queue.create_task("u", "t"), "ghost")  # unregistered: not in the table
    snapshot = registry.routing_snapshot()
    frame = registry.routing_frame()
    table = snapshot.table
    assert table.agent_ids == list(frame["agent_id"]) == ["a", "b", "c"]
    assert snapshot.load.tolist() == frame["current_load"].tolist() == [0, 0, 1]
    assert snapshot.completed.tolist() == [0, 0, 2]
    assert snapshot.average_ms.tolist() == frame["avg_completion_ms"].tolist() == [0, 0, 200]
    assert table.capacity.tolist() == [5, 5, 2]
    assert table.capable(["x"]).tolist() == [True, False, True]
    assert table.capable(["x", "y"]).tolist() == [True, False, False]
    assert table.capable([]).tolist() == [True, True, True]
    assert table.capable(["nobody"]).tolist() == [False, False, False]
    assert table.confidence(["x"]).tolist() == [0.4, 0.0, 1.0]
    assert table.confidence(["x", "y"]).tolist() == [0.4, 0.0, 0.0]
    assert table.confidence([]).tolist() == [1.0, 1.0, 1.0]
    assert table.mask(["c", "ghost"]).tolist() == [False, False, True]
    assert registry.agent_table() is table  # nothing changed: the same table
    registry.set_active("b", False)
    assert registry.agent_table() is not table
