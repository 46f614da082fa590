"""The routing tools: who should do a task and why, for one task or many, and the log of
the router's decisions (read a page at a time from the database).

Each tool is a function of what it works on (an :class:`Orchestration`) and its typed
arguments; its docstring is the description clients read. ``tools.TOOLS`` registers them.
"""

from typing import Annotated, Any

from pydantic import Field

from ..exceptions import ValidationError
from ..models import Task
from .answers import PAGE_BYTES, fit, listed, records
from .arguments import MAX_ROUTE_BATCH, ExcludeAgents, limit_arg, offset_arg
from .lookups import Orchestration, known_task


def orchestration_route_task(
    orch: Orchestration,
    task_id: Annotated[
        str | None,
        Field(description="Route this existing task (give this or requirements)."),
    ] = None,
    requirements: Annotated[
        list[str] | None,
        Field(description="Route a hypothetical task needing these capabilities."),
    ] = None,
    exclude_agents: ExcludeAgents = None,
    limit: limit_arg("explanation rows (best first)", 500) = 20,
) -> dict[str, Any]:
    """Pick the best agent for a task and explain why. Does not assign it (use
    orchestration_assign_task with the chosen agent, or let agents claim). The decision
    is written to the routing log.

    Returns {decision: {selected_agent, candidates, scores, reason, policy,
    propensity (the probability with which the router's policy picked that agent),
    ...}, explanation: one row per agent, best first, with capable, active, load,
    capacity, at_capacity, each score component, score, rank and excluded_reason (and
    under the "thompson" policy the posterior and the draw scored) (the first `limit`
    rows), explanation_total: rows in all}. The decision's lists are cut to 100
    entries (`truncated` names what was cut).
    """
    if (task_id is None) == (requirements is None):
        raise ValidationError(
            "route_task takes a task_id or requirements, not both or neither"
        )
    task: Task | dict[str, Any] = (
        known_task(orch, task_id) if task_id is not None else {"requirements": requirements}
    )
    decision, explanation = orch.router.decide_explained(task, exclude_agents)
    rows, _ = fit(
        [listed(r) for r in records(explanation.head(limit))], PAGE_BYTES // 2, ""
    )
    return {
        "decision": listed(decision.to_dict()),
        "explanation": rows,
        "explanation_total": len(explanation),
    }

def orchestration_route_batch(
    orch: Orchestration,
    task_ids: Annotated[
        list[str],
        Field(
            max_length=MAX_ROUTE_BATCH,
            description="Ids of the tasks to route together, as a JSON array (at most "
            "500).",
        ),
    ],
    exclude_agents: ExcludeAgents = None,
) -> dict[str, Any]:
    """Route many tasks at once (at most 500): higher priority first, each agent
    taking no more than its free capacity. Does not assign them. The decisions are
    logged.

    Returns {routes: [{task_id, agent_id (null when none is free), score, reason,
    propensity (the probability of the choice)}], count, policy (the router's)}.
    """
    if isinstance(task_ids, list) and not task_ids:
        return {"routes": [], "count": 0, "policy": orch.router.policy}
    tasks = [known_task(orch, task_id) for task_id in dict.fromkeys(task_ids)]
    routes = records(orch.router.route_batch(tasks, exclude_agents))
    return {"routes": routes, "count": len(routes), "policy": orch.router.policy}

def orchestration_get_routing_decisions(
    orch: Orchestration,
    task_id: Annotated[
        str | None, Field(description="Only decisions about this task.")
    ] = None,
    limit: limit_arg("decisions", 200) = 20,
    offset: offset_arg("Skip this many of the latest decisions first. For the next "
                       "(older) page, pass the next_offset of the previous answer.") = 0,
) -> dict[str, Any]:
    """The routing log, newest page first: the `limit` latest decisions after
    skipping `offset` (each page oldest first) with candidates, scores, weights, the
    chosen agent and the reason.

    Returns {decisions, count, offset, next_offset}; next_offset (null when nothing
    older is left) is the offset of the next, older page. A decision's lists are cut
    to 100 entries (`truncated` names what was cut); a page ends early rather than
    pass 512 KiB.
    """
    end = max(0, orch.router.decision_count(task_id) - offset)  # positions from the oldest
    start = max(0, end - limit)
    chosen = records(orch.router.decisions(task_id, end - start, start)) if end > start else []
    newest_first = [listed(r) for r in reversed(chosen)]
    kept, cut = fit(newest_first, PAGE_BYTES, "ask for fewer")
    more = cut or end - len(kept) > 0
    return {
        "decisions": kept[::-1],
        "count": len(kept),
        "offset": offset,
        "next_offset": offset + len(kept) if more else None,
    }
