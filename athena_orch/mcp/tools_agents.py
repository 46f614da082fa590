"""The agent tools: register agents, change their capabilities and state, record work
done outside the queue, and read their figures.

Each tool is a function of what it works on (an :class:`Orchestration`) and its typed
arguments; its docstring is the description clients read. ``tools.TOOLS`` registers them.
"""

from typing import Annotated, Any

from pydantic import Field, StrictBool, StrictFloat, StrictInt

from .answers import READ_AGENT, listed, page, single
from .arguments import AgentId, Capabilities, MaxConcurrent, Metadata, Offset, limit_arg
from .lookups import Orchestration, known_agent


def orchestration_register_agent(
    orch: Orchestration,
    agent_id: AgentId,
    capabilities: Capabilities,
    max_concurrent: MaxConcurrent = 5,
    metadata: Metadata = None,
) -> dict[str, Any]:
    """Register an agent with its capabilities, or re-register it to replace its
    capabilities and metadata (its performance figures are kept; it becomes active).
    Returns {agent_id, registered, agent}."""
    meta = {**(metadata or {}), "max_concurrent_tasks": max_concurrent}
    agent = orch.registry.register_agent(agent_id, capabilities, meta)
    return {"agent_id": agent.id, "registered": True, "agent": single(agent.to_dict())}

def orchestration_learn_new_capability(
    orch: Orchestration,
    agent_id: AgentId,
    capability: Annotated[str, Field(description="The capability to add, e.g. 'sql'.")],
    confidence: Annotated[
        StrictFloat,
        Field(
            ge=0,
            le=1,
            description="How sure we are the agent has it, 0..1 (used by the "
            "router's fit score).",
        ),
    ] = 1.0,
) -> dict[str, Any]:
    """Give a registered agent one more capability (or change the confidence of one it
    has). Returns {agent}."""
    agent = orch.registry.learn_new_capability(agent_id, capability, confidence)
    return {"agent": single(agent.to_dict())}

def orchestration_set_agent_active(
    orch: Orchestration,
    agent_id: AgentId,
    active: Annotated[
        StrictBool,
        Field(description="false pauses routing and claims for the agent; true resumes."),
    ],
) -> dict[str, Any]:
    """Pause or resume an agent. Its current tasks are not touched. Returns {agent}."""
    return {"agent": single(orch.registry.set_active(agent_id, active).to_dict())}

def orchestration_deregister_agent(orch: Orchestration, agent_id: AgentId) -> dict[str, Any]:
    """Remove an agent and its figures. Tasks it holds keep it as assignee (cancel or
    let their leases run out). Returns {agent_id, deregistered}."""
    orch.registry.deregister_agent(agent_id)
    return {"agent_id": agent_id, "deregistered": True}

def orchestration_update_agent_performance(
    orch: Orchestration,
    agent_id: AgentId,
    success: Annotated[StrictBool, Field(description="Whether the work succeeded.")],
    duration_ms: Annotated[
        StrictInt, Field(ge=0, description="How long it took in milliseconds.")
    ],
) -> dict[str, Any]:
    """Record work an agent did OUTSIDE the queue. Tasks finished through
    orchestration_complete_task / orchestration_fail_task are already counted; do not
    report them again. Returns {health}."""
    orch.registry.update_agent_performance(agent_id, success, duration_ms)
    return {"health": single(orch.registry.get_agent_health(agent_id))}

def orchestration_get_agent_health(orch: Orchestration, agent_id: AgentId) -> dict[str, Any]:
    """An agent's figures: status (active/inactive), success_rate, avg_completion_ms,
    current_load, max_concurrent_tasks, utilization, total_completed, total_failed,
    capabilities (the first 1000; `truncated` says when there are more)."""
    known_agent(orch, agent_id)
    return single(orch.registry.get_agent_health(agent_id))

def orchestration_list_agents(
    orch: Orchestration,
    limit: limit_arg("agents", 500) = 100, offset: Offset = 0
) -> dict[str, Any]:
    """Registered agents with capabilities, state and figures, sorted by id, a page at
    a time.

    Returns {agents, count, offset, next_offset}. A listed agent's capabilities and
    metadata are cut to 100 entries and its strings to 1000 characters (`truncated`
    names what was cut). A page ends early rather than pass 512 KiB; next_offset (null
    on the last page) is the offset of the next page.
    """
    ids = orch.registry.to_frame()["agent_id"].tolist()
    chosen = ids[offset : offset + limit]
    items = [listed(known_agent(orch, a).to_dict()) for a in chosen]
    return page("agents", items, offset, offset + limit < len(ids), READ_AGENT)

def orchestration_find_capable_agents(
    orch: Orchestration,
    requirements: Annotated[
        list[str],
        Field(
            description="Capabilities the agent must all have, as a JSON array of strings."
        ),
    ],
    limit: limit_arg("agents", 500) = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Find active agents having every required capability, sorted by id, a page at a
    time.

    Returns {agents: [{id, success_rate, current_load, max_concurrent_tasks,
    capabilities}], count, offset, next_offset}; capabilities are cut to 100 entries
    (`truncated` names what was cut). A page ends early rather than pass 512 KiB;
    next_offset (null on the last page) is the offset of the next page.
    """
    ids = orch.registry.get_agents_by_capability(requirements)
    items = []
    for agent_id in ids[offset : offset + limit]:
        agent = known_agent(orch, agent_id)
        items.append(
            listed(
                {
                    "id": agent.id,
                    "success_rate": agent.success_rate,
                    "current_load": agent.current_load,
                    "max_concurrent_tasks": agent.max_concurrent_tasks,
                    "capabilities": agent.capabilities,
                }
            )
        )
    return page("agents", items, offset, offset + limit < len(ids), READ_AGENT)

def orchestration_get_agent_statistics(orch: Orchestration) -> dict[str, Any]:
    """Team-wide figures: total and active agents, agents per capability
    (skill_distribution, the first 1000 capabilities), total load and capacity."""
    return single(orch.registry.get_agent_statistics().to_dict())
