"""The MCP tool surface, through a real MCP client (the SDK's in-process ``Client``).

Every call goes client -> MCP -> tool -> library; the library is only used directly to
check what the tools did (or, for bad input, that they did nothing).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from mcp import Client

import athena_orch
from athena_orch.mcp import TOOL_NAMES, build_server
from athena_orch.mcp.server import requeue_loop

SEED_TOOLS = {
    "orchestration_create_task": {
        "content",
        "task_type",
        "priority",
        "requirements",
        "dependencies",
    },
    "orchestration_poll_tasks": {"agent_id", "status", "limit"},
    "orchestration_register_agent": {"agent_id", "capabilities", "max_concurrent"},
    "orchestration_find_capable_agents": {"requirements"},
}
# One tool per public operation named in the issue.
OPERATION_TOOLS = {
    "orchestration_assign_task",
    "orchestration_claim_task",
    "orchestration_start_task",
    "orchestration_complete_task",
    "orchestration_fail_task",
    "orchestration_cancel_task",
    "orchestration_release_task",
    "orchestration_heartbeat",
    "orchestration_requeue_stale",
    "orchestration_get_task",
    "orchestration_query_tasks",
    "orchestration_route_task",
    "orchestration_get_agent_health",
    "orchestration_learn_new_capability",
    "orchestration_set_agent_active",
    "orchestration_deregister_agent",
    "orchestration_update_agent_performance",
    "orchestration_get_queue_statistics",
    "orchestration_get_agent_statistics",
    "orchestration_get_dependency_status",
    "orchestration_create_tasks",
}
TIMEOUT = 30


class Tools:
    """Calls tools and checks the shape of every answer."""

    def __init__(self, client: Client):
        self.client = client

    async def raw(self, name: str, **arguments: Any):
        return await self.client.call_tool(name, arguments)

    async def ok(self, name: str, **arguments: Any) -> dict[str, Any]:
        result = await self.raw(name, **arguments)
        text = result.content[0].text if result.content else ""
        assert not result.is_error, f"{name}({arguments}) failed: {text}"
        assert len(result.content) == 1 and result.content[0].type == "text"
        parsed = json.loads(text)  # strict JSON: no NaN, no Python repr
        assert isinstance(parsed, dict)
        assert parsed == result.structured_content
        return parsed

    async def error(self, name: str, **arguments: Any) -> str:
        result = await self.raw(name, **arguments)
        assert result.is_error, f"{name}({arguments}) should have failed"
        text = " ".join(c.text for c in result.content)
        assert "Traceback" not in text and 'File "' not in text
        return text


def run_tools(orch, body: Callable[[Tools], Awaitable[None]], *, tools: type[Tools] = Tools,
              **client_options: Any) -> None:
    """``body(tools)`` against ``build_server(orch)`` through the SDK's in-memory client."""
    server = build_server(orch)

    async def main() -> None:
        with anyio.fail_after(TIMEOUT):
            async with Client(server, read_timeout_seconds=TIMEOUT, **client_options) as client:
                await body(tools(client))

    anyio.run(main)


def snapshot(orch) -> dict[str, Any]:
    """Everything a tool could change, as plain data."""
    return {
        "tasks": orch.queue.to_frame().astype(str).to_dict("records"),
        "agents": orch.registry.to_frame().astype(str).to_dict("records"),
        "history": len(orch.queue.history_frame()),
        "decisions": len(orch.router.decisions()),
        "stats": orch.queue.get_queue_statistics().to_dict(),
    }


# --------------------------------------------------------------------------- listing
@pytest.mark.parametrize("mode", ["auto", "legacy"])
def test_list_tools_describes_every_tool_and_argument(orch, mode):
    async def body(t: Tools) -> None:
        tools = {tool.name: tool for tool in (await t.client.list_tools()).tools}
        assert set(tools) == set(TOOL_NAMES)
        assert len(tools) >= 15
        assert all(name.startswith("orchestration_") for name in tools)
        assert set(tools) >= OPERATION_TOOLS
        for name, arguments in SEED_TOOLS.items():
            assert arguments <= set(tools[name].input_schema["properties"]), name
        for tool in tools.values():
            assert tool.description and len(tool.description) > 20, tool.name
            assert tool.output_schema is None, tool.name  # results: structuredContent + text
            assert tool.annotations is not None and tool.annotations.title is None
            for arg, schema in tool.input_schema.get("properties", {}).items():
                assert schema.get("description"), f"{tool.name}.{arg} has no description"
            for model in tool.input_schema.get("$defs", {}).values():
                for arg, schema in model.get("properties", {}).items():
                    assert schema.get("description"), f"{tool.name}: {arg} has no description"
        assert tools["orchestration_get_task"].annotations.read_only_hint is True
        assert tools["orchestration_claim_task"].annotations.read_only_hint is False
        create = tools["orchestration_create_task"].input_schema
        assert set(create["required"]) == {"content", "task_type"}
        assert create["properties"]["priority"]["enum"] == ["high", "medium", "low"]

    run_tools(orch, body, mode=mode)


# --------------------------------------------------------------------------- lifecycle
def test_full_lifecycle_through_tools(orch):
    async def body(t: Tools) -> None:
        reg = await t.ok(
            "orchestration_register_agent",
            agent_id="coder",
            capabilities=["python", "sql"],
            max_concurrent=2,
        )
        assert reg["registered"] and reg["agent"]["capabilities"] == ["python", "sql"]
        await t.ok("orchestration_register_agent", agent_id="writer", capabilities=["docs"])
        found = await t.ok("orchestration_find_capable_agents", requirements=["python"])
        assert [a["id"] for a in found["agents"]] == ["coder"]
        assert found["agents"][0]["success_rate"] == 1.0

        first = await t.ok(
            "orchestration_create_task",
            content="build the parser",
            task_type="code",
            priority="high",
            requirements=["python"],
        )
        assert first["created"] and first["status"] == "pending"
        second = await t.ok(
            "orchestration_create_task",
            content="document it",
            task_type="docs",
            requirements=["docs"],
            dependencies=[first["task_id"]],
        )
        polled = await t.ok("orchestration_poll_tasks")
        assert [x["id"] for x in polled["tasks"]] == [first["task_id"], second["task_id"]]
        assert polled["tasks"][0]["task_type"] == "code"
        deps = await t.ok("orchestration_get_dependency_status", task_id=second["task_id"])
        assert deps["ready"] is False and deps["waiting_on"] == [first["task_id"]]

        # the writer cannot take anything yet: its only task waits on the first
        nothing = await t.ok("orchestration_claim_task", agent_id="writer")
        assert nothing == {"claimed": False, "task": None, "reason": nothing["reason"]}
        claimed = await t.ok("orchestration_claim_task", agent_id="coder")
        assert claimed["claimed"] and claimed["task"]["id"] == first["task_id"]
        assert claimed["task"]["status"] == "assigned"
        assert claimed["task"]["assigned_to"] == "coder"
        started = await t.ok("orchestration_start_task", task_id=first["task_id"])
        assert started["task"]["status"] == "running"
        beat = await t.ok("orchestration_heartbeat", agent_id="coder")
        assert beat == {"renewed": [first["task_id"]], "count": 1}
        health = await t.ok("orchestration_get_agent_health", agent_id="coder")
        assert health["current_load"] == 1 and health["max_concurrent_tasks"] == 2
        done = await t.ok(
            "orchestration_complete_task",
            task_id=first["task_id"],
            result='{"lines": 120}',
            duration_ms=1500,
        )
        assert done["task"]["status"] == "completed"
        assert done["task"]["result"] == '{"lines": 120}'
        assert done["task"]["execution_duration_ms"] == 1500

        got = await t.ok("orchestration_get_task", task_id=first["task_id"])
        assert [h["to_status"] for h in got["history"]] == [
            "pending",
            "assigned",
            "running",
            "completed",
        ]
        assert got["task"]["completed_at"].startswith("20")  # ISO 8601

        # the second task is ready now: the writer claims it, then it fails and is retried
        claimed = await t.ok("orchestration_claim_task", agent_id="writer")
        assert claimed["task"]["id"] == second["task_id"]
        failed = await t.ok(
            "orchestration_fail_task", task_id=second["task_id"], error="out of ink"
        )
        assert failed["task"]["status"] == "pending" and failed["task"]["retry_count"] == 1
        assert failed["task"]["error"] == "out of ink"
        assigned = await t.ok(
            "orchestration_assign_task", task_id=second["task_id"], agent_id="writer"
        )
        assert assigned["task"]["status"] == "assigned"
        await t.ok("orchestration_start_task", task_id=second["task_id"])
        await t.ok("orchestration_complete_task", task_id=second["task_id"], result="ok")

        # a chain: failing the root for good blocks what depends on it; cancel the rest
        root = await t.ok(
            "orchestration_create_task",
            content="risky",
            task_type="code",
            requirements=["python"],
            max_retries=0,
        )
        child = await t.ok(
            "orchestration_create_task",
            content="after risky",
            task_type="code",
            dependencies=[root["task_id"]],
        )
        other = await t.ok(
            "orchestration_create_task", content="spare", task_type="code", priority="low"
        )
        await t.ok("orchestration_claim_task", agent_id="coder")
        await t.ok("orchestration_start_task", task_id=root["task_id"])
        gone = await t.ok(
            "orchestration_fail_task", task_id=root["task_id"], error="boom", should_retry=False
        )
        assert gone["task"]["status"] == "failed"
        blocked = await t.ok(
            "orchestration_get_task", task_id=child["task_id"], include_history=False
        )
        assert blocked["task"]["status"] == "blocked" and blocked["history"] == []
        assert blocked["task"]["blocked_by"] == root["task_id"]
        cancelled = await t.ok(
            "orchestration_cancel_task", task_id=other["task_id"], reason="not needed"
        )
        assert cancelled["task"]["status"] == "cancelled"
        assert cancelled["task"]["error"] == "not needed"

        stats = await t.ok("orchestration_get_queue_statistics")
        assert stats == {
            "pending_count": 0,
            "assigned_count": 0,
            "running_count": 0,
            "completed_count": 2,
            "failed_count": 1,
            "blocked_count": 1,
            "cancelled_count": 1,
            "total_count": 5,
            "success_rate": pytest.approx(2 / 3),
        }
        query = await t.ok(
            "orchestration_query_tasks",
            status=["failed", "blocked"],
            created_after="2000-01-01T00:00:00Z",
            limit=10,
        )
        assert {x["id"] for x in query["tasks"]} == {root["task_id"], child["task_id"]}
        assert (await t.ok("orchestration_query_tasks", task_type="docs"))["count"] == 1
        assert (await t.ok("orchestration_requeue_stale")) == {"requeued": [], "count": 0}

        # agents: figures, capabilities, pause, outside work, statistics, removal
        coder = await t.ok("orchestration_get_agent_health", agent_id="coder")
        assert (coder["total_completed"], coder["total_failed"]) == (1, 1)
        assert coder["success_rate"] == 0.5 and coder["avg_completion_ms"] == 1500
        learned = await t.ok(
            "orchestration_learn_new_capability",
            agent_id="writer",
            capability="python",
            confidence=0.5,
        )
        assert learned["agent"]["capabilities"] == ["docs", "python"]
        paused = await t.ok("orchestration_set_agent_active", agent_id="writer", active=False)
        assert paused["agent"]["active"] is False
        await t.ok(
            "orchestration_create_task", content="late", task_type="code", requirements=["python"]
        )
        refused = await t.ok("orchestration_claim_task", agent_id="writer")
        assert refused["claimed"] is False and "paused" in refused["reason"]
        await t.ok("orchestration_set_agent_active", agent_id="writer", active=True)
        perf = await t.ok(
            "orchestration_update_agent_performance",
            agent_id="writer",
            success=True,
            duration_ms=200,
        )
        assert perf["health"]["total_completed"] == 2
        team = await t.ok("orchestration_get_agent_statistics")
        assert team["total_agents"] == 2
        assert team["skill_distribution"] == {"docs": 1, "python": 2, "sql": 1}
        listed = await t.ok("orchestration_list_agents")
        assert [a["id"] for a in listed["agents"]] == ["coder", "writer"]
        bye = await t.ok("orchestration_deregister_agent", agent_id="writer")
        assert bye == {"agent_id": "writer", "deregistered": True}
        # re-registering replaces capabilities and keeps figures
        again = await t.ok(
            "orchestration_register_agent",
            agent_id="coder",
            capabilities=["rust"],
            max_concurrent=3,
            metadata={"model": "small"},
        )
        assert again["agent"]["capabilities"] == ["rust"]
        assert again["agent"]["total_completed"] == 1
        assert again["agent"]["metadata"] == {"model": "small"}

    run_tools(orch, body)
    # the library agrees with what the tools said
    assert orch.registry.get_agent("writer") is None
    assert orch.queue.get_queue_statistics().completed_count == 2


def test_route_task_returns_decision_and_explanation(orch):
    async def body(t: Tools) -> None:
        await t.ok(
            "orchestration_register_agent",
            agent_id="a-busy",
            capabilities=["python"],
            max_concurrent=1,
        )
        await t.ok(
            "orchestration_register_agent", agent_id="b-free", capabilities=["python", "sql"]
        )
        await t.ok("orchestration_register_agent", agent_id="c-docs", capabilities=["docs"])
        await t.ok("orchestration_create_task", content="x", task_type="t", requirements=["python"])
        await t.ok("orchestration_claim_task", agent_id="a-busy")  # now at capacity
        task = await t.ok(
            "orchestration_create_task", content="y", task_type="t", requirements=["python"]
        )

        routed = await t.ok("orchestration_route_task", task_id=task["task_id"])
        decision, rows = routed["decision"], routed["explanation"]
        assert decision["selected_agent"] == "b-free"
        assert decision["task_id"] == task["task_id"]
        assert decision["candidates"] == ["b-free"] and "b-free" in decision["scores"]
        assert decision["reason"]
        assert [r["agent_id"] for r in rows][0] == "b-free"
        by_agent = {r["agent_id"]: r for r in rows}
        assert set(by_agent) == {"a-busy", "b-free", "c-docs"}
        for row in rows:
            assert {
                "capable",
                "active",
                "load",
                "capacity",
                "at_capacity",
                "track_record",
                "headroom",
                "speed",
                "fit",
                "score",
                "rank",
                "excluded_reason",
            } <= set(row)
        assert by_agent["b-free"]["rank"] == 1 and by_agent["b-free"]["excluded_reason"] == ""
        assert by_agent["a-busy"]["rank"] is None  # NA -> null
        assert by_agent["a-busy"]["at_capacity"] is True
        assert "capacity" in by_agent["a-busy"]["excluded_reason"]
        assert by_agent["c-docs"]["capable"] is False
        assert "missing capabilities" in by_agent["c-docs"]["excluded_reason"]

        hypothetical = await t.ok(
            "orchestration_route_task", requirements=["python"], exclude_agents=["b-free"]
        )
        assert hypothetical["decision"]["selected_agent"] is None
        assert hypothetical["decision"]["task_id"] is None
        log = await t.ok("orchestration_get_routing_decisions")
        assert log["count"] == 2
        assert [d["selected_agent"] for d in log["decisions"]] == ["b-free", None]
        assert log["decisions"][0]["decided_at"].startswith("20")
        only = await t.ok("orchestration_get_routing_decisions", task_id=task["task_id"], limit=5)
        assert only["count"] == 1

        extra = await t.ok(
            "orchestration_create_task", content="z", task_type="t", requirements=["docs"]
        )
        batch = await t.ok(
            "orchestration_route_batch", task_ids=[task["task_id"], extra["task_id"]]
        )
        assert batch["count"] == 2
        assert [(r["task_id"], r["agent_id"]) for r in batch["routes"]] == [
            (task["task_id"], "b-free"),
            (extra["task_id"], "c-docs"),
        ]
        assert all(isinstance(r["score"], float) for r in batch["routes"])
        assert (await t.ok("orchestration_get_routing_decisions"))["count"] == 4
        # routing never assigns
        assert (await t.ok("orchestration_get_queue_statistics"))["pending_count"] == 2

    run_tools(orch, body)


def test_route_tools_report_the_policy_and_the_propensity(orch):
    orch.router.policy = "thompson"
    orch.router.seed = 1

    async def body(t: Tools) -> None:
        for agent in ("a", "b"):
            await t.ok("orchestration_register_agent", agent_id=agent, capabilities=["python"])
        task = await t.ok("orchestration_create_task", content="x", task_type="coding",
                          requirements=["python"])
        routed = await t.ok("orchestration_route_task", task_id=task["task_id"])
        decision, rows = routed["decision"], routed["explanation"]
        assert decision["policy"] == "thompson" and 0 < decision["propensity"] <= 1
        # the explanation is of the same draw as the decision
        assert rows[0]["agent_id"] == decision["selected_agent"]
        assert rows[0]["draw"] == rows[0]["track_record"] and "posterior_mean" in rows[0]
        log = (await t.ok("orchestration_get_routing_decisions"))["decisions"]
        assert log[-1]["propensity"] == decision["propensity"]
        batch = await t.ok("orchestration_route_batch", task_ids=[task["task_id"]])
        assert batch["policy"] == "thompson"
        assert 0 < batch["routes"][0]["propensity"] <= 1

    run_tools(orch, body)


def test_create_task_again_with_its_idempotency_key_reports_it_was_not_created(orch):
    async def body(t: Tools) -> None:
        keyed = {"content": "one report", "task_type": "docs", "idempotency_key": "report-1"}
        made = await t.ok("orchestration_create_task", **keyed)
        again = await t.ok("orchestration_create_task", **keyed)
        assert made["created"] and not again["created"]
        assert again["task_id"] == made["task_id"]
        plain = await t.ok("orchestration_create_task", content="no key", task_type="docs")
        assert plain["created"]

    run_tools(orch, body)
    assert orch.queue.get_queue_statistics().total_count == 2


def test_create_tasks_in_bulk_with_keys(orch):
    async def body(t: Tools) -> None:
        existing = await t.ok("orchestration_create_task", content="fetch data", task_type="etl")
        batch = await t.ok(
            "orchestration_create_tasks",
            tasks=[
                {"content": "report", "task_type": "docs", "dependencies": ["clean", "model"]},
                {
                    "content": "clean",
                    "task_type": "etl",
                    "key": "clean",
                    "dependencies": [existing["task_id"]],
                    "priority": "high",
                },
                {
                    "content": "model",
                    "task_type": "ml",
                    "key": "model",
                    "dependencies": ["clean"],
                    "requirements": ["gpu"],
                    "max_retries": 1,
                },
            ],
        )
        assert batch["count"] == 3 and len(set(batch["task_ids"])) == 3
        report, clean, model = batch["task_ids"]
        assert batch["keys"] == {"clean": clean, "model": model}
        got = await t.ok("orchestration_get_task", task_id=report)
        assert set(got["task"]["dependencies"]) == {clean, model}
        got = await t.ok("orchestration_get_task", task_id=model)
        assert got["task"]["dependencies"] == [clean]
        assert got["task"]["requirements"] == ["gpu"] and got["task"]["max_retries"] == 1
        status = await t.ok("orchestration_get_dependency_status", task_id=clean)
        assert set(status["dependents"]) == {report, model}
        assert (await t.ok("orchestration_create_tasks", tasks=[])) == {
            "task_ids": [],
            "keys": {},
            "count": 0,
        }
        # idempotent creation returns the first id
        one = await t.ok(
            "orchestration_create_task", content="once", task_type="t", idempotency_key="k-1"
        )
        two = await t.ok(
            "orchestration_create_task", content="once", task_type="t", idempotency_key="k-1"
        )
        assert one["task_id"] == two["task_id"]

    run_tools(orch, body)
    assert orch.queue.get_queue_statistics().total_count == 5


# --------------------------------------------------------------------------- bad input
BAD_TASK = "no-such-task"


def _bad_inputs(ids: dict[str, str]) -> list[tuple[str, str, dict[str, Any], list[str]]]:
    """(class, tool, arguments, words the error must contain)."""
    pending, running, done = ids["pending"], ids["running"], ids["done"]
    return [
        # unknown task
        (
            "unknown task",
            "orchestration_start_task",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_complete_task",
            {"task_id": BAD_TASK, "result": "r"},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_fail_task",
            {"task_id": BAD_TASK, "error": "e"},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_cancel_task",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_assign_task",
            {"task_id": BAD_TASK, "agent_id": "w"},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_heartbeat",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_get_task",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_get_dependency_status",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_route_batch",
            {"task_ids": [BAD_TASK]},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_route_task",
            {"task_id": BAD_TASK},
            ["TaskNotFoundError", BAD_TASK],
        ),
        (
            "unknown task",
            "orchestration_create_task",
            {"content": "c", "task_type": "t", "dependencies": [BAD_TASK]},
            ["DependencyError", BAD_TASK],
        ),
        # unknown agent
        (
            "unknown agent",
            "orchestration_claim_task",
            {"agent_id": "ghost"},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_get_agent_health",
            {"agent_id": "ghost"},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_learn_new_capability",
            {"agent_id": "ghost", "capability": "x"},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_set_agent_active",
            {"agent_id": "ghost", "active": False},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_deregister_agent",
            {"agent_id": "ghost"},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_update_agent_performance",
            {"agent_id": "ghost", "success": True, "duration_ms": 5},
            ["AgentNotFoundError", "ghost"],
        ),
        (
            "unknown agent",
            "orchestration_heartbeat",
            {"agent_id": "ghost"},
            ["AgentNotFoundError", "ghost"],
        ),
        # bad priority
        (
            "bad priority",
            "orchestration_create_task",
            {"content": "c", "task_type": "t", "priority": "urgent"},
            ["priority", "urgent"],
        ),
        ("bad priority", "orchestration_query_tasks", {"priority": "asap"}, ["priority", "asap"]),
        (
            "bad priority",
            "orchestration_create_tasks",
            {
                "tasks": [
                    {"content": "fine", "task_type": "t"},
                    {"content": "bad", "task_type": "t", "priority": "URGENT"},
                ]
            },
            ["priority", "URGENT"],
        ),
        # illegal transitions
        (
            "illegal transition",
            "orchestration_start_task",
            {"task_id": pending},
            ["InvalidTransitionError", "start", pending, "pending"],
        ),
        (
            "illegal transition",
            "orchestration_complete_task",
            {"task_id": pending, "result": "r"},
            ["InvalidTransitionError", "complete", "pending"],
        ),
        (
            "illegal transition",
            "orchestration_fail_task",
            {"task_id": done, "error": "e"},
            ["InvalidTransitionError", "fail", "completed"],
        ),
        (
            "illegal transition",
            "orchestration_cancel_task",
            {"task_id": done},
            ["InvalidTransitionError", "cancel", "completed"],
        ),
        (
            "illegal transition",
            "orchestration_assign_task",
            {"task_id": running, "agent_id": "w"},
            ["InvalidTransitionError", "assign", "running"],
        ),
        (
            "illegal transition",
            "orchestration_start_task",
            {"task_id": running},
            ["InvalidTransitionError", "start", "running"],
        ),
        # wrong types
        (
            "wrong type",
            "orchestration_create_task",
            {"content": 123, "task_type": "t"},
            ["content", "string"],
        ),
        (
            "wrong type",
            "orchestration_register_agent",
            {"agent_id": "w2", "capabilities": ["x"], "max_concurrent": "five"},
            ["max_concurrent", "integer"],
        ),
        ("wrong type", "orchestration_poll_tasks", {"limit": "10"}, ["limit", "integer"]),
        (
            "wrong type",
            "orchestration_fail_task",
            {"task_id": running, "error": "e", "should_retry": "yes"},
            ["should_retry", "boolean"],
        ),
        (
            "wrong type",
            "orchestration_update_agent_performance",
            {"agent_id": "w", "success": True, "duration_ms": 1.5},
            ["duration_ms", "integer"],
        ),
        (
            "wrong type",
            "orchestration_learn_new_capability",
            {"agent_id": "w", "capability": "x", "confidence": "high"},
            ["confidence", "number"],
        ),
        (
            "wrong type",
            "orchestration_create_tasks",
            {"tasks": {"content": "c"}},
            ["tasks", "list"],
        ),
        (
            "wrong type",
            "orchestration_complete_task",
            {"task_id": running, "result": {"a": 1}},
            ["result", "string"],
        ),
        # bare string where a list is wanted
        (
            "bare string",
            "orchestration_create_task",
            {"content": "c", "task_type": "t", "requirements": "python"},
            ["requirements", "list"],
        ),
        (
            "bare string",
            "orchestration_create_task",
            {"content": "c", "task_type": "t", "dependencies": pending},
            ["dependencies", "list"],
        ),
        (
            "bare string",
            "orchestration_register_agent",
            {"agent_id": "w2", "capabilities": "python"},
            ["capabilities", "list"],
        ),
        (
            "bare string",
            "orchestration_find_capable_agents",
            {"requirements": "python"},
            ["requirements", "list"],
        ),
        (
            "bare string",
            "orchestration_route_task",
            {"requirements": "python"},
            ["requirements", "list"],
        ),
        (
            "bare string",
            "orchestration_create_tasks",
            {"tasks": [{"content": "c", "task_type": "t", "requirements": "gpu"}]},
            ["requirements", "list"],
        ),
        # negative limit
        ("negative limit", "orchestration_poll_tasks", {"limit": -1}, ["limit", "-1"]),
        ("negative limit", "orchestration_query_tasks", {"limit": -5}, ["limit", "-5"]),
        ("negative limit", "orchestration_get_routing_decisions", {"limit": -1}, ["limit"]),
        # other values the library refuses
        (
            "bad value",
            "orchestration_create_task",
            {"content": "  ", "task_type": "t"},
            ["ValidationError", "content", "empty"],
        ),
        (
            "bad value",
            "orchestration_register_agent",
            {"agent_id": "w2", "capabilities": [], "max_concurrent": 0},
            ["max_concurrent"],
        ),
        (
            "bad value",
            "orchestration_create_tasks",
            {
                "tasks": [
                    {"content": "a", "task_type": "t", "key": "a", "dependencies": ["b"]},
                    {"content": "b", "task_type": "t", "key": "b", "dependencies": ["a"]},
                ]
            },
            ["DependencyError", "cycle"],
        ),
        (
            "stale attempt",
            "orchestration_heartbeat",
            {"task_id": pending, "agent_id": "w"},
            ["StaleAttemptError", "no longer current"],
        ),
        ("bad value", "orchestration_route_task", {}, ["task_id or requirements"]),
        ("bad value", "orchestration_poll_tasks", {"status": "done"}, ["status", "done"]),
        (
            "missing argument",
            "orchestration_create_task",
            {"task_type": "t"},
            ["content", "required"],
        ),
        (
            "unknown argument",
            "orchestration_poll_tasks",
            {"agentid": "w"},
            ["unknown argument", "agentid", "agent_id"],
        ),
        ("unknown tool", "orchestration_fly", {}, ["orchestration_fly"]),
    ]


def test_bad_input_is_a_tool_error_and_changes_nothing(orch):
    queue, registry = orch.queue, orch.registry
    registry.register_agent("w", ["python"], {"max_concurrent_tasks": 3})
    done = queue.create_task("done", "t")
    queue.assign_task(done, "w")
    queue.start_task(done)
    queue.complete_task(done, "ok")
    running = queue.create_task("running", "t")
    queue.assign_task(running, "w")
    queue.start_task(running)
    pending = queue.create_task("pending", "t", dependencies=[running])
    ids = {"pending": pending, "running": running, "done": done}
    cases = _bad_inputs(ids)
    assert {c[0] for c in cases} >= {
        "unknown task",
        "unknown agent",
        "bad priority",
        "illegal transition",
        "wrong type",
        "bare string",
        "negative limit",
    }
    before = snapshot(orch)

    async def body(t: Tools) -> None:
        for kind, name, arguments, words in cases:
            text = await t.error(name, **arguments)
            for word in words:
                assert word.lower() in text.lower(), f"{kind}: {name}({arguments}) -> {text}"
            assert snapshot(orch) == before, f"{kind}: {name}({arguments}) changed data"
        # the server is still serving
        stats = await t.ok("orchestration_get_queue_statistics")
        assert stats["total_count"] == 3

    run_tools(orch, body)
    assert snapshot(orch) == before


# --------------------------------------------------------------------------- concurrency
def test_concurrent_claims_through_one_server_never_share_a_task(orch):
    """Many clients at once on one server: every task is handed out exactly once."""
    for i in range(6):
        orch.registry.register_agent(f"w{i}", ["python"], {"max_concurrent_tasks": 50})
    ids = orch.queue.create_tasks(
        [{"content": f"t{i}", "task_type": "t", "requirements": ["python"]} for i in range(36)]
    )
    server = build_server(orch)
    taken: dict[str, list[str]] = {}

    async def worker(agent_id: str) -> None:
        async with Client(server, read_timeout_seconds=TIMEOUT) as client:
            tools = Tools(client)
            mine = taken.setdefault(agent_id, [])
            while True:
                answer = await tools.ok("orchestration_claim_task", agent_id=agent_id)
                if not answer["claimed"]:
                    return
                mine.append(answer["task"]["id"])
                await tools.ok("orchestration_start_task", task_id=answer["task"]["id"])
                await tools.ok(
                    "orchestration_complete_task", task_id=answer["task"]["id"], result=agent_id
                )

    async def main() -> None:
        with anyio.fail_after(TIMEOUT):
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(worker, f"w{i}")

    anyio.run(main)
    handed_out = [tid for tasks in taken.values() for tid in tasks]
    assert sorted(handed_out) == sorted(ids)
    for agent_id, tasks in taken.items():
        for tid in tasks:
            task = orch.queue.get_task_status(tid)
            assert task.status.value == "completed" and task.assigned_to == agent_id
            assert task.result == agent_id


# --------------------------------------------------------------------------- leases
def test_server_timer_requeues_tasks_of_dead_agents():
    """The server's requeue timer puts a task whose lease ran out back in the queue."""
    with athena_orch.connect(lease_seconds=0.2, retry_backoff_seconds=0.0) as orch:
        server = build_server(orch)

        async def main() -> None:
            with anyio.fail_after(TIMEOUT):
                async with anyio.create_task_group() as tg, Client(server) as client:
                    tg.start_soon(requeue_loop, server.handlers, 0.05)
                    t = Tools(client)
                    await t.ok("orchestration_register_agent", agent_id="mortal", capabilities=[])
                    created = await t.ok("orchestration_create_task", content="c", task_type="t")
                    claimed = await t.ok("orchestration_claim_task", agent_id="mortal")
                    assert claimed["claimed"]
                    # the agent dies without a heartbeat; the timer requeues its task
                    while True:
                        got = await t.ok("orchestration_get_task", task_id=created["task_id"])
                        if got["task"]["status"] == "pending":
                            break
                        await anyio.sleep(0.05)
                    assert got["task"]["retry_count"] == 1
                    assert "lease expired" in got["task"]["error"]
                    tg.cancel_scope.cancel()

        anyio.run(main)


# --------------------------------------------------------------------------- fencing
def test_a_stale_attempt_is_refused_and_changes_nothing(database_url):
    """An agent whose lease ran out while it worked, and whose task went to another agent,
    is told so by every call that names its old attempt; the new holder's work is safe."""
    with athena_orch.connect(
        database_url(), lease_seconds=0.2, retry_backoff_seconds=0.0
    ) as orch:

        async def body(t: Tools) -> None:
            for agent_id in ("slow", "fresh"):
                await t.ok("orchestration_register_agent", agent_id=agent_id, capabilities=[])
            await t.ok("orchestration_create_task", content="c", task_type="t")
            old = (await t.ok("orchestration_claim_task", agent_id="slow"))["task"]
            mine = {"task_id": old["id"], "agent_id": "slow", "attempt": old["attempt"]}
            await t.ok("orchestration_start_task", **mine)
            await anyio.sleep(0.3)  # slow's lease runs out; the task goes to fresh
            assert (await t.ok("orchestration_requeue_stale"))["requeued"] == [old["id"]]
            new = (await t.ok("orchestration_claim_task", agent_id="fresh"))["task"]
            assert new["id"] == old["id"] and new["attempt"] > old["attempt"]
            before = snapshot(orch)
            stale_calls = [
                ("orchestration_start_task", mine),
                ("orchestration_heartbeat", mine),
                ("orchestration_complete_task", {**mine, "result": "late"}),
                ("orchestration_fail_task", {**mine, "error": "late", "should_retry": False}),
                ("orchestration_start_task", {"task_id": old["id"], "agent_id": "slow"}),
                ("orchestration_start_task", {"task_id": old["id"], "attempt": old["attempt"]}),
            ]
            for name, arguments in stale_calls:
                text = await t.error(name, **arguments)
                assert "StaleAttemptError" in text and "no longer current" in text, text
                assert old["id"] in text, text
                assert snapshot(orch) == before, f"{name}({arguments}) changed data"
            theirs = {"task_id": new["id"], "agent_id": "fresh", "attempt": new["attempt"]}
            await t.ok("orchestration_start_task", **theirs)
            assert (await t.ok("orchestration_heartbeat", **theirs))["renewed"] == [new["id"]]
            done = await t.ok("orchestration_complete_task", **theirs, result="on time")
            assert done["task"]["status"] == "completed" and done["task"]["result"] == "on time"

        run_tools(orch, body)
        assert [t.assigned_to for t in orch.queue.query_tasks({})] == ["fresh"]


def test_query_tasks_takes_created_after_without_a_zone_as_utc(orch, make_clock):
    """The tool's description promises it; the library refuses naive datetimes."""
    orch.queue.clock = make_clock()
    orch.queue.create_task("late", "code")  # created at the fake clock's 12:00 UTC

    async def body(t: Tools) -> None:
        for moment, count in (("2030-01-01T11:59:00", 1), ("2030-01-01T12:00:01", 0)):
            found = await t.ok("orchestration_query_tasks", created_after=moment)
            assert found["count"] == count, moment

    run_tools(orch, body)


def test_a_task_handed_back_is_pending_again_without_a_retry(orch):
    orch.registry.register_agent("coder", ["python"])

    async def body(t: Tools) -> None:
        created = await t.ok("orchestration_create_task", content="c", task_type="code")
        claim = await t.ok("orchestration_claim_task", agent_id="coder")
        attempt = claim["task"]["attempt"]
        stale = await t.error("orchestration_release_task", task_id=created["task_id"],
                              agent_id="coder", attempt=attempt + 1)
        assert "StaleAttemptError" in stale
        back = await t.ok("orchestration_release_task", task_id=created["task_id"],
                          agent_id="coder", attempt=attempt, reason="shutting down")
        assert (back["task"]["status"], back["task"]["retry_count"]) == ("pending", 0)

    run_tools(orch, body)
    history = orch.queue.get_task_history(orch.queue.query_tasks()[0].id)
    assert history[-1]["detail"] == "released: shutting down"
