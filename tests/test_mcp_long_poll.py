"""orchestration_claim_task with ``wait``: an LLM agent long-polls instead of spinning.
The answer comes as soon as a task is ready, and other clients' calls go on while a claim
waits (the wait happens outside the calls' turn)."""

from __future__ import annotations

import anyio
import pytest
from test_mcp_tools import Tools, run_tools

NEVER = 600.0


@pytest.fixture
def orch_quiet(orch):
    orch.queue.wait_poll_seconds = NEVER  # only a wake-up can answer a waiting claim
    orch.registry.register_agent("coder", ["python"])
    return orch


def test_a_waiting_claim_answers_when_a_task_is_created_meanwhile(orch_quiet):
    answers: dict = {}

    async def body(t: Tools) -> None:
        async def claim() -> None:
            answers["claim"] = await t.ok("orchestration_claim_task", agent_id="coder", wait=25)

        async with anyio.create_task_group() as group:
            group.start_soon(claim)
            while orch_quiet.db.wakeups.waiting == 0:  # the claim is asleep
                await anyio.sleep(0.005)
            stats = await t.ok("orchestration_get_queue_statistics")  # others go on
            assert stats["total_count"] == 0
            answers["created"] = await t.ok("orchestration_create_task", content="now",
                                            task_type="code", requirements=["python"])

    run_tools(orch_quiet, body)
    claimed = answers["claim"]
    assert claimed["claimed"] is True
    assert claimed["task"]["id"] == answers["created"]["task_id"]
    assert claimed["task"]["attempt"] == 1


def test_a_waiting_claim_gives_up_with_the_reason_when_the_wait_runs_out(orch_quiet):
    orch_quiet.queue.wait_poll_seconds = 0.05

    async def body(t: Tools) -> None:
        answer = await t.ok("orchestration_claim_task", agent_id="coder", wait=0.2)
        assert answer == {"claimed": False, "task": None,
                          "reason": "no ready task needs only capabilities this agent has"}

    run_tools(orch_quiet, body)


@pytest.mark.parametrize("wait", [-1, 61, "soon"])
def test_a_bad_wait_is_a_tool_error(orch_quiet, wait):
    async def body(t: Tools) -> None:
        text = await t.error("orchestration_claim_task", agent_id="coder", wait=wait)
        assert "wait" in text

    run_tools(orch_quiet, body)


def test_an_unknown_agent_waiting_is_told_at_once(orch_quiet):
    async def body(t: Tools) -> None:
        text = await t.error("orchestration_claim_task", agent_id="ghost", wait=30)
        assert "AgentNotFoundError" in text and "ghost" in text

    run_tools(orch_quiet, body)

