"""Agents and their capabilities as a NetworkX knowledge graph, persisted in DuckDB.

The graph (agent and capability nodes, ``has_capability`` edges carrying a confidence)
is an in-memory index over the graph tables, reloaded when their change counter moves.
Load is always read from the task table, so it never drifts; outcomes come from the
agent-figures table that the queue writes as tasks finish.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from . import validation as v
from .exceptions import AgentNotFoundError, ValidationError, shown
from .models import Agent, AgentStatistics
from .stores import GraphStore, MetaStore
from .stores.graph import HAS_CAPABILITY, entity_id, entity_name

AGENT, CAPABILITY = "agent", "capability"
DEFAULT_CAPACITY = 5
FRAME_COLUMNS = [
    "agent_id", "capabilities", "active", "max_concurrent_tasks", "current_load",
    "total_completed", "total_failed", "success_rate", "avg_completion_ms", "last_updated",
]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class AgentRegistry:
    """Who can do what, how busy they are, and how well they have done."""

    def __init__(self, graph_store: GraphStore, meta_store: MetaStore):
        self.graph_store = graph_store
        self.meta = meta_store
        self.db = graph_store.db
        self._graph = nx.Graph()
        self._graph_version = -1
        self._static: tuple[int, pd.DataFrame] | None = None

    # ------------------------------------------------------------------ the graph
    @property
    def graph(self) -> nx.Graph:
        """The capability graph as stored now: nodes ``agent:<id>`` and
        ``capability:<name>`` (attribute ``kind``), edges with ``confidence``."""
        version = self.graph_store.version()
        if version != self._graph_version:
            graph = nx.Graph()
            for e in self.graph_store.entities():
                graph.add_node(e["entity_id"], kind=e["kind"], name=e["name"], **e["properties"])
            for r in self.graph_store.relations():
                graph.add_edge(r["source_id"], r["target_id"], relation=r["relation_type"],
                               confidence=r["confidence"])
            self._graph, self._graph_version = graph, version
        return self._graph

    def capability_graph(self) -> nx.Graph:
        """A copy of the capability graph, safe to change."""
        return self.graph.copy()

    def _changed(self) -> None:
        self.graph_store.bump_version()

    # ------------------------------------------------------------------ writes
    def register_agent(self, agent_id: str, capabilities: list[str],
                       metadata: dict[str, Any] | None = None) -> Agent:
        """Add an agent, or replace an existing one's capabilities and metadata (its
        figures stay). ``metadata`` may set ``max_concurrent_tasks`` (default 5) and
        ``active``; other keys are kept as they are."""
        agent_id = v.text("agent_id", agent_id)
        capabilities = v.string_list("capabilities", capabilities)
        metadata = dict(v.mapping("metadata", metadata))
        capacity = metadata.get("max_concurrent_tasks", DEFAULT_CAPACITY)
        metadata["max_concurrent_tasks"] = v.positive_int("max_concurrent_tasks", capacity,
                                                          high=2**31 - 1)
        metadata["active"] = v.boolean("active", metadata.get("active", True))
        reserved = sorted({"kind", "name"} & set(metadata))
        if reserved:
            raise ValidationError(f"metadata keys {reserved} are reserved")
        try:
            json.dumps(metadata)
        except (TypeError, ValueError, RecursionError) as exc:
            raise ValidationError(f"metadata must be JSON-serialisable: {shown(exc)}") from None
        now = _utcnow()
        agent_key = entity_id(AGENT, agent_id)
        with self.db.transaction():
            self.graph_store.upsert_entity(AGENT, agent_id, metadata, now)
            for capability in capabilities:
                self.graph_store.upsert_entity(CAPABILITY, capability, {}, now)
            self.graph_store.set_relations(
                agent_key, HAS_CAPABILITY,
                {entity_id(CAPABILITY, c): 1.0 for c in capabilities}, now)
            self._changed()
        return self.get_agent(agent_id)

    def deregister_agent(self, agent_id: str) -> None:
        """Remove the agent and its figures; its tasks keep ``assigned_to``."""
        with self.db.transaction():
            agent_id = self._require(agent_id)
            self.graph_store.delete_entity(AGENT, agent_id, (HAS_CAPABILITY,))
            self.meta.delete_figures(agent_id)
            self._changed()

    def set_active(self, agent_id: str, active: bool) -> Agent:
        """Pause (False) or resume (True) routing and claims for this agent."""
        active = v.boolean("active", active)
        with self.db.transaction():
            agent_id = self._require(agent_id)
            properties = self.graph_store.get_entity(AGENT, agent_id)["properties"]
            properties["active"] = active
            self.graph_store.upsert_entity(AGENT, agent_id, properties, _utcnow())
            self._changed()
        return self.get_agent(agent_id)

    def learn_new_capability(self, agent_id: str, capability: str,
                             confidence: float = 1.0) -> Agent:
        """Give an agent one more capability (or change its confidence in one)."""
        capability = v.text("capability", capability)
        confidence = v.number("confidence", confidence, low=0.0, high=1.0)
        now = _utcnow()
        with self.db.transaction():
            agent_id = self._require(agent_id)
            self.graph_store.upsert_entity(CAPABILITY, capability, {}, now)
            self.graph_store.add_relation(entity_id(AGENT, agent_id),
                                          entity_id(CAPABILITY, capability),
                                          HAS_CAPABILITY, confidence, now)
            self._changed()
        return self.get_agent(agent_id)

    def update_agent_performance(self, agent_id: str, success: bool, duration_ms: int) -> None:
        """Record work done outside the queue (the queue records its own tasks)."""
        success = v.boolean("success", success)
        duration_ms = v.non_negative_int("duration_ms", duration_ms)
        with self.db.transaction():
            agent_id = self._require(agent_id)
            self.meta.record_outcome(agent_id, _utcnow(), completed=int(success),
                                     failed=int(not success),
                                     success_ms=duration_ms if success else 0)

    # ------------------------------------------------------------------ reads
    def get_agent(self, agent_id: str) -> Agent | None:
        agent_id = v.string("agent_id", agent_id)
        key = entity_id(AGENT, agent_id)
        graph = self.graph
        if key not in graph:
            return None
        figures = self.meta.agent_figures(agent_id)
        return self._agent(agent_id, graph, figures)

    def _agent(self, agent_id: str, graph: nx.Graph, figures: dict[str, Any]) -> Agent:
        node = graph.nodes[entity_id(AGENT, agent_id)]
        completed, failed = int(figures["total_completed"]), int(figures["total_failed"])
        metadata = {k: val for k, val in node.items()
                    if k not in ("kind", "name", "max_concurrent_tasks", "active")}
        return Agent(
            id=agent_id,
            capabilities=self._capabilities(agent_id, graph),
            max_concurrent_tasks=node["max_concurrent_tasks"],
            success_rate=completed / (completed + failed) if completed + failed else 1.0,
            avg_completion_ms=figures["total_success_ms"] / completed if completed else 0.0,
            current_load=int(figures["current_load"]),
            total_completed=completed, total_failed=failed,
            last_updated=figures["last_updated"], active=node["active"], metadata=metadata,
        )

    @staticmethod
    def _capabilities(agent_id: str, graph: nx.Graph) -> list[str]:
        key = entity_id(AGENT, agent_id)
        return sorted(entity_name(n) for n in graph.neighbors(key))

    def list_agents(self) -> list[Agent]:
        """Every registered agent, sorted by id."""
        frame = self.to_frame()
        return [self.get_agent(a) for a in frame["agent_id"]]

    def get_agent_capability(self, agent_id: str) -> list[str]:
        """The agent's capabilities, sorted; [] for an unknown id."""
        agent_id = v.string("agent_id", agent_id)
        graph = self.graph
        key = entity_id(AGENT, agent_id)
        return self._capabilities(agent_id, graph) if key in graph else []

    def capability_confidence(self, agent_id: str, capability: str) -> float:
        """How sure we are that the agent has the capability (0 when it has not)."""
        edge = self.graph.get_edge_data(entity_id(AGENT, agent_id),
                                        entity_id(CAPABILITY, capability))
        return edge["confidence"] if edge else 0.0

    def get_agents_by_capability(self, capabilities: list[str]) -> list[str]:
        """Active agents having every one of ``capabilities``, sorted by id."""
        wanted = v.string_list("capabilities", capabilities)
        graph = self.graph
        agents = [n for n, d in graph.nodes(data=True) if d["kind"] == AGENT and d["active"]]
        for capability in wanted:
            key = entity_id(CAPABILITY, capability)
            if key not in graph:
                return []
            neighbours = set(graph.neighbors(key))
            agents = [a for a in agents if a in neighbours]
        return sorted(entity_name(a) for a in agents)

    def get_agent_health(self, agent_id: str) -> dict[str, Any]:
        """Plain figures: success_rate, avg_completion_ms, current_load,
        max_concurrent_tasks, total_completed, total_failed (status 'not_found' if unknown)."""
        agent = self.get_agent(agent_id)
        if agent is None:
            return {"status": "not_found"}
        return {
            "agent_id": agent.id, "status": "active" if agent.active else "inactive",
            "success_rate": agent.success_rate, "avg_completion_ms": agent.avg_completion_ms,
            "current_load": agent.current_load, "max_concurrent_tasks": agent.max_concurrent_tasks,
            "utilization": agent.current_load / agent.max_concurrent_tasks,
            "total_completed": agent.total_completed, "total_failed": agent.total_failed,
            "capabilities": agent.capabilities,
            "last_updated": agent.last_updated.isoformat() if agent.last_updated else None,
        }

    def get_agent_statistics(self) -> AgentStatistics:
        frame = self.to_frame()
        skills = Counter(c for caps in frame["capabilities"] for c in caps)
        return AgentStatistics(
            total_agents=len(frame), active_agents=int(frame["active"].sum()),
            skill_distribution=dict(sorted(skills.items())),
            total_load=int(frame["current_load"].sum()),
            total_capacity=int(frame["max_concurrent_tasks"].sum()),
        )

    def to_frame(self) -> pd.DataFrame:
        """One row per registered agent (sorted by id) with its capabilities and figures."""
        return self.routing_frame()[FRAME_COLUMNS]

    def routing_frame(self) -> pd.DataFrame:
        """``to_frame`` plus what the router needs: ``confidence`` (capability -> confidence),
        ``capability_set`` and ``total_success_ms``."""
        static = self._static_frame()
        figures = self.meta.all_agent_figures()
        zero = (0, 0, 0, None, 0)
        rows = [figures.get(a, zero) for a in static["agent_id"]]
        completed = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        failed = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        success_ms = np.fromiter((r[2] for r in rows), dtype=np.int64, count=len(rows))
        finished = completed + failed
        with np.errstate(invalid="ignore", divide="ignore"):
            success_rate = np.where(finished > 0, completed / finished, 1.0)
            average = np.where(completed > 0, success_ms / completed, 0.0)
        return static.assign(
            current_load=np.fromiter((r[4] for r in rows), dtype=np.int64, count=len(rows)),
            total_completed=completed, total_failed=failed, total_success_ms=success_ms,
            success_rate=success_rate, avg_completion_ms=average,
            last_updated=pd.Series([r[3] for r in rows], index=static.index, dtype=object))

    def _static_frame(self) -> pd.DataFrame:
        """The graph's part of the agent table, rebuilt only when the graph changed."""
        graph = self.graph
        if self._static is None or self._static[0] != self._graph_version:
            rows = []
            for key, d in graph.nodes(data=True):
                if d["kind"] != AGENT:
                    continue
                confidence = {entity_name(n): graph.edges[key, n]["confidence"]
                              for n in graph.neighbors(key)}
                rows.append({"agent_id": d["name"], "active": d["active"],
                             "max_concurrent_tasks": d["max_concurrent_tasks"],
                             "capabilities": sorted(confidence), "confidence": confidence,
                             "capability_set": frozenset(confidence)})
            frame = pd.DataFrame(rows, columns=["agent_id", "active", "max_concurrent_tasks",
                                                "capabilities", "confidence", "capability_set"])
            self._static = (self._graph_version, frame.sort_values("agent_id", ignore_index=True))
        return self._static[1]

    def _require(self, agent_id: str) -> str:
        agent_id = v.text("agent_id", agent_id)
        if entity_id(AGENT, agent_id) not in self.graph:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")
        return agent_id

