"""athena-orch: a durable task queue, an agent knowledge graph and an explainable router.

    import athena_orch as ao
    orch = ao.connect("orch.duckdb")
    orch.queue, orch.registry, orch.router

Names are imported on first use, so ``import athena_orch`` stays light.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "connect": "manager", "OrchestrationManager": "manager",
    "TaskQueue": "task_queue", "AgentRegistry": "agent_registry",
    "CapabilityRouter": "capability_router",
    "Task": "models", "Agent": "models", "RoutingDecision": "models", "TaskStatus": "models",
    "QueueStatistics": "models", "AgentStatistics": "models",
    "Database": "stores", "EpisodicStore": "stores", "GraphStore": "stores",
    "MetaStore": "stores", "MetaMemoryStore": "stores",
    "OrchestrationError": "exceptions",
    "Worker": "worker",
}
__all__ = [*_EXPORTS, "exceptions"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    if name == "exceptions":
        return import_module(".exceptions", __name__)
    raise AttributeError(f"module 'athena_orch' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
