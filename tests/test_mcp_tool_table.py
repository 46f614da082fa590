"""The MCP tools are module-level functions listed once in ``tools.TOOLS``: each can be
read and called on its own (on an OrchestrationManager, which has the queue, registry and
router a tool works on), and the table is what the server registers."""

from __future__ import annotations

import inspect

import pytest
from test_mcp_tools import Tools, run_tools

from athena_orch.exceptions import TaskNotFoundError, ValidationError
from athena_orch.mcp import TOOL_NAMES
from athena_orch.mcp import tools_tasks as tasks
from athena_orch.mcp.tools import TOOLS


def test_every_tool_is_a_module_level_function_named_once_in_the_table():
    assert tuple(tool.name for tool in TOOLS) == TOOL_NAMES
    assert len(set(TOOL_NAMES)) == len(TOOL_NAMES) == 29
    for tool in TOOLS:
        module = inspect.getmodule(tool.function)
        assert getattr(module, tool.name) is tool.function  # walkable, not a closure
        assert tool.function.__qualname__ == tool.name
        first = next(iter(inspect.signature(tool.function).parameters))
        assert first == "orch", tool.name
        assert inspect.getdoc(tool.function), tool.name  # the description clients read


def test_a_tool_called_directly_on_a_manager_answers_as_through_mcp(orch):
    made = tasks.orchestration_create_task(orch, "write", "docs", idempotency_key="k-1")
    again = tasks.orchestration_create_task(orch, "write", "docs", idempotency_key="k-1")
    assert made["created"] is True and again["created"] is False
    assert again["task_id"] == made["task_id"]
    assert tasks.orchestration_get_queue_statistics(orch)["total_count"] == 1
    with pytest.raises(TaskNotFoundError):
        tasks.orchestration_get_task(orch, "no-such-task")
    with pytest.raises(ValidationError, match="priority"):
        tasks.orchestration_create_task(orch, "write", "docs", priority="urgent")
    assert tasks.orchestration_get_queue_statistics(orch)["total_count"] == 1

    async def body(t: Tools) -> None:
        listed = {tool.name: tool for tool in (await t.client.list_tools()).tools}
        assert list(listed) == list(TOOL_NAMES)  # registered from the table, in its order
        for tool in TOOLS:
            assert listed[tool.name].title == tool.title
            assert "orch" not in listed[tool.name].input_schema.get("properties", {})
        fetched = await t.ok("orchestration_get_task", task_id=made["task_id"])
        direct = tasks.orchestration_get_task(orch, made["task_id"])
        assert fetched == direct

    run_tools(orch, body)
