"""The one table of MCP tools: each tool's function, title and hints, in the order
clients list them. Registration (``OrchestrationHandlers.register_tools``) and
``TOOL_NAMES`` both read it; a tool's name is its function's name."""

from collections.abc import Callable
from typing import Any, NamedTuple

from mcp_types import ToolAnnotations

from . import tools_agents as agents
from . import tools_routing as routing
from . import tools_tasks as tasks


class Tool(NamedTuple):
    function: Callable[..., dict[str, Any]]
    title: str
    annotations: ToolAnnotations

    @property
    def name(self) -> str:
        return self.function.__name__


def _annotations(
    read_only: bool = False, destructive: bool = False, idempotent: bool = False
) -> ToolAnnotations:
    if read_only:
        return ToolAnnotations(read_only_hint=True, open_world_hint=False)
    return ToolAnnotations(
        read_only_hint=False,
        destructive_hint=destructive,
        idempotent_hint=idempotent,
        open_world_hint=False,
    )


READ = _annotations(read_only=True)
ADD = _annotations()
UPDATE = _annotations(idempotent=True)
CHANGE = _annotations(destructive=True)

TOOLS = (
    Tool(tasks.orchestration_create_task, "Create a task", ADD),
    Tool(tasks.orchestration_create_tasks, "Create many tasks", ADD),
    Tool(tasks.orchestration_poll_tasks, "List tasks in a state", READ),
    Tool(tasks.orchestration_query_tasks, "Find tasks", READ),
    Tool(tasks.orchestration_get_task, "Get a task and its history", READ),
    Tool(tasks.orchestration_read_task_text, "Read a task's long text", READ),
    Tool(tasks.orchestration_get_dependency_status, "Dependency status of a task", READ),
    Tool(tasks.orchestration_assign_task, "Assign a task to an agent", ADD),
    Tool(tasks.orchestration_claim_task, "Claim the next task", ADD),
    Tool(tasks.orchestration_start_task, "Start a task", ADD),
    Tool(tasks.orchestration_complete_task, "Complete a task", ADD),
    Tool(tasks.orchestration_fail_task, "Fail a task", CHANGE),
    Tool(tasks.orchestration_release_task, "Hand a task back", CHANGE),
    Tool(tasks.orchestration_cancel_task, "Cancel a task", CHANGE),
    Tool(tasks.orchestration_heartbeat, "Renew task leases", UPDATE),
    Tool(tasks.orchestration_requeue_stale, "Requeue tasks with expired leases", ADD),
    Tool(tasks.orchestration_get_queue_statistics, "Queue statistics", READ),
    Tool(agents.orchestration_register_agent, "Register or re-register an agent", UPDATE),
    Tool(agents.orchestration_learn_new_capability, "Add a capability to an agent", UPDATE),
    Tool(agents.orchestration_set_agent_active, "Pause or resume an agent", UPDATE),
    Tool(agents.orchestration_deregister_agent, "Remove an agent", CHANGE),
    Tool(agents.orchestration_update_agent_performance, "Record outside work of an agent", ADD),
    Tool(agents.orchestration_get_agent_health, "Agent health", READ),
    Tool(agents.orchestration_list_agents, "List agents", READ),
    Tool(agents.orchestration_find_capable_agents, "Find capable agents", READ),
    Tool(agents.orchestration_get_agent_statistics, "Agent statistics", READ),
    Tool(routing.orchestration_route_task, "Route a task (with explanation)", ADD),
    Tool(routing.orchestration_route_batch, "Route many tasks", ADD),
    Tool(routing.orchestration_get_routing_decisions, "Routing decision log", READ),
)

TOOL_NAMES = tuple(tool.name for tool in TOOLS)
