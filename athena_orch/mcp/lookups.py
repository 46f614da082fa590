"""What a tool works on, and the reads of one task or agent that every area of tools needs.

Reads of an unknown id are tool errors here (the library answers ``None``), because an
agent that names a task or agent that does not exist has made a mistake it should see.
"""

from typing import Protocol

from ..agent_registry import AgentRegistry
from ..capability_router import CapabilityRouter
from ..exceptions import AgentNotFoundError, TaskNotFoundError, shown
from ..models import Agent, Task
from ..task_queue import TaskQueue


class Orchestration(Protocol):
    """The queue, registry and router a tool works on: the server's handlers, or an
    ``OrchestrationManager`` when a tool is called directly."""

    queue: TaskQueue
    registry: AgentRegistry
    router: CapabilityRouter


def known_task(orch: Orchestration, task_id: str) -> Task:
    task = orch.queue.get_task_status(task_id)
    if task is None:
        raise TaskNotFoundError(f"task {shown(task_id)} does not exist")
    return task


def known_agent(orch: Orchestration, agent_id: str) -> Agent:
    agent = orch.registry.get_agent(agent_id)
    if agent is None:
        raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
    return agent
