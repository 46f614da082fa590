"""The routing decision log read a page at a time: ``router.decisions(task_id, limit,
offset)`` and ``router.decision_count(task_id)`` filter and page in SQL, and
``orchestration_get_routing_decisions`` reads through them. Both backends."""

from __future__ import annotations

import pytest
from test_mcp_tools import Tools, run_tools

from athena_orch.exceptions import ValidationError

COLUMNS = {"decision_id", "decided_at", "task_id", "requirements", "candidates", "scores",
           "components", "selected_agent", "weights", "reason", "source", "policy",
           "propensity", "propensity_method", "propensities"}


@pytest.fixture
def logged(orch):
    """A log of 9 decisions: 4 about task a, 2 about task b (one of them batched), 3
    hypothetical; returns (orch, a, b)."""
    orch.registry.register_agent("w", ["py"], {"max_concurrent_tasks": 9})
    a = orch.queue.create_task("a", "t", requirements=["py"])
    b = orch.queue.create_task("b", "t", requirements=["py"])
    router = orch.router
    router.route_task(orch.queue.get_task_status(a))
    router.route_task({"requirements": ["py"]})
    router.route_task(orch.queue.get_task_status(a))
    router.decide(orch.queue.get_task_status(b))
    router.route_task({"requirements": ["go"]})
    router.route_task(orch.queue.get_task_status(a))
    router.route_batch([orch.queue.get_task_status(a), orch.queue.get_task_status(b)])
    router.route_task({"requirements": []})
    return orch, a, b


def test_a_filtered_page_is_that_part_of_the_whole_log(logged):
    orch, a, b = logged
    router = orch.router
    whole = router.decisions()
    assert set(whole.columns) == COLUMNS and len(whole) == 9
    assert whole["decision_id"].is_monotonic_increasing
    assert router.decision_count() == 9

    of_a = router.decisions(task_id=a)
    assert of_a["decision_id"].tolist() == whole.loc[whole["task_id"] == a, "decision_id"].tolist()
    assert len(of_a) == router.decision_count(a) == 4
    assert set(of_a.columns) == COLUMNS
    assert of_a["requirements"].tolist() == [["py"]] * 4  # parsed, as in the whole log
    assert router.decision_count(b) == 2

    # pages of a's decisions, oldest first, put back together make them all
    pages = [router.decisions(task_id=a, limit=3, offset=o)["decision_id"].tolist()
             for o in (0, 3)]
    assert pages[0] + pages[1] == of_a["decision_id"].tolist() and len(pages[1]) == 1
    middle = router.decisions(limit=4, offset=2)
    assert middle["decision_id"].tolist() == whole["decision_id"].tolist()[2:6]
    assert middle["propensities"].tolist() == whole["propensities"].tolist()[2:6]

    assert router.decisions(limit=0).empty and set(router.decisions(limit=0).columns) == COLUMNS
    assert router.decisions(offset=9).empty
    assert router.decisions(task_id="no-such-task").empty
    assert router.decision_count("no-such-task") == 0
    assert router.decisions(task_id="").empty  # any text is a filter, matching nothing here


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"limit": -1}, "limit"),
        ({"limit": "3"}, "limit"),
        ({"limit": True}, "limit"),
        ({"limit": 2.0}, "limit"),
        ({"offset": -1}, "offset"),
        ({"offset": None}, "offset"),
        ({"task_id": 5}, "task_id"),
        ({"task_id": ["a"]}, "task_id"),
        ({"task_id": "nul\x00byte"}, "task_id"),  # PostgreSQL could not even compare it
    ],
)
def test_bad_arguments_are_refused_by_name_and_the_log_is_left_intact(logged, arguments, named):
    orch, _, _ = logged
    before = orch.router.decisions()
    with pytest.raises(ValidationError, match=named):
        orch.router.decisions(**arguments)
    if set(arguments) == {"task_id"}:
        with pytest.raises(ValidationError, match=named):
            orch.router.decision_count(**arguments)
    after = orch.router.decisions()
    assert after["decision_id"].tolist() == before["decision_id"].tolist()


def test_the_tool_pages_one_tasks_decisions_newest_page_first(logged):
    orch, a, _ = logged
    of_a = orch.router.decisions(task_id=a)["decision_id"].tolist()

    async def body(t: Tools) -> None:
        newest = await t.ok("orchestration_get_routing_decisions", task_id=a, limit=3)
        assert [d["decision_id"] for d in newest["decisions"]] == of_a[-3:]
        assert newest["count"] == 3 and newest["next_offset"] == 3
        older = await t.ok("orchestration_get_routing_decisions", task_id=a, limit=3, offset=3)
        assert [d["decision_id"] for d in older["decisions"]] == of_a[:1]
        assert older["next_offset"] is None
        past = await t.ok("orchestration_get_routing_decisions", task_id=a, offset=10)
        assert past["decisions"] == [] and past["next_offset"] is None
        exact = await t.ok("orchestration_get_routing_decisions", task_id=a, limit=4)
        assert exact["count"] == 4 and exact["next_offset"] is None
        none = await t.ok("orchestration_get_routing_decisions", task_id="no-such-task")
        assert none == {"decisions": [], "count": 0, "offset": 0, "next_offset": None}
        text = await t.error("orchestration_get_routing_decisions", task_id="nul\x00byte")
        assert "ValidationError" in text and "task_id" in text

    run_tools(orch, body)
