"""Agents and their capabilities as a NetworkX knowledge graph, persisted in DuckDB.

The graph (agent and capability nodes, ``has_capability`` edges carrying a confidence)
is an in-memory index over the graph tables, reloaded when their change counter moves.
Load is always read from the task table, so it never drifts; outcomes come from the
agent-figures table that the queue writes as tasks finish.

For the router the same facts come as arrays (:class:`RoutingSnapshot`): the graph's part
(:class:`AgentTable`: ids, activity, capacity, capabilities) is built once per change of
the graph's counter; figures and live load are read fresh on every call (one statement).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping
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
from .stores.meta import SKILL_KINDS

AGENT, CAPABILITY = "agent", "capability"
DEFAULT_CAPACITY = 5
FRAME_COLUMNS = [
    "agent_id", "capabilities", "active", "max_concurrent_tasks", "current_load",
    "total_completed", "total_failed", "success_rate", "avg_completion_ms", "last_updated",
]


SKILL_COLUMNS = ["agent_id", "skill_kind", "skill", "completed", "failed", "success_rate",
                 "avg_completion_ms", "last_updated"]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def success_rates(completed: np.ndarray, failed: np.ndarray) -> np.ndarray:
    """completed / (completed + failed); 1.0 for an agent that has finished nothing."""
    finished = completed + failed
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(finished > 0, completed / finished, 1.0)


def mean_durations(completed: np.ndarray, success_ms: np.ndarray) -> np.ndarray:
    """Mean duration of the successful tasks; 0.0 for an agent without any."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(completed > 0, success_ms / completed, 0.0)


class AgentTable:
    """The graph's part of the agent table as arrays, one row per agent sorted by id.

    Immutable: the registry builds a new one when the graph's change counter moves, so a
    table may be kept and reused for as long as ``version`` is current.
    """

    def __init__(self, version: int, agents: Iterable[tuple[str, bool, int, dict[str, float]]]):
        rows = sorted(agents, key=lambda r: r[0])
        self.version = version
        self.agent_ids: list[str] = [r[0] for r in rows]
        self.ids = np.array(self.agent_ids, dtype=object)
        self.index = {a: i for i, a in enumerate(self.agent_ids)}
        self.active = np.array([bool(r[1]) for r in rows], dtype=bool)
        self.capacity = np.array([r[2] for r in rows], dtype=np.int64)
        self.confidences: list[dict[str, float]] = [r[3] for r in rows]
        self.capability_sets = [frozenset(r[3]) for r in rows]
        self.sizes = np.array([len(r[3]) for r in rows], dtype=float)
        members: dict[str, tuple[list[int], list[float]]] = {}
        for i, confidence in enumerate(self.confidences):
            for capability, value in confidence.items():
                rows_, values = members.setdefault(capability, ([], []))
                rows_.append(i)
                values.append(value)
        self._members = {c: (np.array(r, dtype=np.intp), np.array(x, dtype=float))
                         for c, (r, x) in members.items()}
        self._frame: pd.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.agent_ids)

    def rows(self, agent_ids: Iterable[str]) -> np.ndarray:
        """Row numbers of the registered ones among ``agent_ids``, ascending (= by id)."""
        index = self.index
        return np.array(sorted({index[a] for a in agent_ids if a in index}), dtype=np.intp)

    def mask(self, agent_ids: Iterable[str]) -> np.ndarray:
        """True on the rows of the registered ones among ``agent_ids``."""
        out = np.zeros(len(self), dtype=bool)
        out[self.rows(agent_ids)] = True
        return out

    def capable(self, requirements: Iterable[str]) -> np.ndarray:
        """True on the rows of agents having every one of ``requirements``."""
        needed = list(dict.fromkeys(requirements))
        counts = np.zeros(len(self), dtype=np.int64)
        for capability in needed:
            members = self._members.get(capability)
            if members is None:
                return np.zeros(len(self), dtype=bool)
            counts[members[0]] += 1
        return counts == len(needed)

    def confidence(self, requirements: Iterable[str]) -> np.ndarray:
        """Per agent, the lowest confidence over ``requirements`` (0 for a capability it
        lacks); 1.0 when there are no requirements."""
        out = None
        for capability in dict.fromkeys(requirements):
            values = np.zeros(len(self))
            members = self._members.get(capability)
            if members is not None:
                values[members[0]] = members[1]
            out = values if out is None else np.minimum(out, values)
        return np.ones(len(self)) if out is None else out

    def take(self, rows: np.ndarray) -> AgentTable:
        """A table of the given rows only (ascending row numbers keep it sorted)."""
        return AgentTable(self.version, [
            (self.agent_ids[i], bool(self.active[i]), int(self.capacity[i]),
             self.confidences[i]) for i in rows])

    def frame(self) -> pd.DataFrame:
        """The table as a DataFrame (agent_id, active, max_concurrent_tasks, capabilities,
        confidence, capability_set); built once, do not change it."""
        if self._frame is None:
            rows = [{"agent_id": a, "active": bool(self.active[i]),
                     "max_concurrent_tasks": int(self.capacity[i]),
                     "capabilities": sorted(self.confidences[i]),
                     "confidence": self.confidences[i],
                     "capability_set": self.capability_sets[i]}
                    for i, a in enumerate(self.agent_ids)]
            frame = pd.DataFrame(rows, columns=["agent_id", "active", "max_concurrent_tasks",
                                                "capabilities", "confidence", "capability_set"])
            self._frame = frame.sort_values("agent_id", ignore_index=True)
        return self._frame


class RoutingSnapshot:
    """Every registered agent at one moment, as arrays aligned with ``table`` (sorted by
    id): the static table plus outcomes and live load as read from the database."""

    def __init__(self, table: AgentTable, figures: Mapping[str, tuple]):
        """``figures``: agent_id -> (completed, failed, success_ms, last_updated, load), as
        ``MetaStore.all_agent_figures`` returns it; agents missing have zeros."""
        n = len(table)
        self.table = table
        #: task type -> agent_id -> (completed, failed) at that type, where it was read
        self.skills: dict[str, dict[str, tuple[int, int]]] = {}
        self.load = np.zeros(n, dtype=np.int64)
        self.completed = np.zeros(n, dtype=np.int64)
        self.failed = np.zeros(n, dtype=np.int64)
        self.success_ms = np.zeros(n, dtype=np.int64)
        index = table.index
        found = [(i, r) for a, r in figures.items() if (i := index.get(a)) is not None]
        self._found = found
        if found:
            rows = np.fromiter((i for i, _ in found), dtype=np.intp, count=len(found))
            self.completed[rows] = [r[0] for _, r in found]
            self.failed[rows] = [r[1] for _, r in found]
            self.success_ms[rows] = [r[2] for _, r in found]
            self.load[rows] = [r[4] for _, r in found]

    @property
    def last_updated(self) -> list[Any]:
        """When each agent's figures last changed (None if never)."""
        out: list[Any] = [None] * len(self.table)
        for i, r in self._found:
            out[i] = r[3]
        return out

    def __len__(self) -> int:
        return len(self.table)

    @property
    def average_ms(self) -> np.ndarray:
        return mean_durations(self.completed, self.success_ms)

    def take(self, rows: np.ndarray) -> RoutingSnapshot:
        """The snapshot of the given rows only (ascending row numbers)."""
        table, last = self.table.take(rows), self.last_updated
        figures = {table.agent_ids[k]: (self.completed[i], self.failed[i], self.success_ms[i],
                                        last[i], self.load[i])
                   for k, i in enumerate(rows)}
        return RoutingSnapshot(table, figures)

    def frame(self) -> pd.DataFrame:
        """``AgentRegistry.routing_frame`` of this snapshot."""
        static = self.table.frame()
        return static.assign(
            current_load=self.load, total_completed=self.completed,
            total_failed=self.failed, total_success_ms=self.success_ms,
            success_rate=success_rates(self.completed, self.failed),
            avg_completion_ms=self.average_ms,
            last_updated=pd.Series(self.last_updated, index=static.index, dtype=object))


class AgentRegistry:
    """Who can do what, how busy they are, and how well they have done."""

    def __init__(self, graph_store: GraphStore, meta_store: MetaStore, *,
                 clock: Callable[[], datetime] | None = None):
        """``clock``: what changes are time-stamped with (the manager passes its one clock,
        the queue's); the wall clock by default."""
        self.clock = clock or _utcnow
        self.graph_store = graph_store
        self.meta = meta_store
        self.db = graph_store.db
        self._current: tuple[int, nx.Graph] = (-1, nx.Graph())
        self._table: AgentTable | None = None

    # ------------------------------------------------------------------ the graph
    def _current_graph(self) -> tuple[int, nx.Graph]:
        """(change counter, graph), the graph reloaded if the counter moved."""
        version = self.graph_store.version()
        current = self._current
        if version != current[0]:
            graph = nx.Graph()
            for e in self.graph_store.entities():
                graph.add_node(e["entity_id"], kind=e["kind"], name=e["name"], **e["properties"])
            for r in self.graph_store.relations():
                graph.add_edge(r["source_id"], r["target_id"], relation=r["relation_type"],
                               confidence=r["confidence"])
            current = self._current = (version, graph)
        return current

    @property
    def graph(self) -> nx.Graph:
        """The capability graph as stored now: nodes ``agent:<id>`` and
        ``capability:<name>`` (attribute ``kind``), edges with ``confidence``."""
        return self._current_graph()[1]

    def capability_graph(self) -> nx.Graph:
        """A copy of the capability graph, safe to change."""
        return self.graph.copy()

    def _changed(self) -> None:
        """The graph changed: its readers reload, and waiting claimers look again (an
        agent given capabilities, capacity or its activity back may claim more)."""
        self.graph_store.bump_version()
        self.db.announce_work()

    # ------------------------------------------------------------------ writes
    def register_agent(self, agent_id: str, capabilities: list[str],
                       metadata: dict[str, Any] | None = None) -> Agent:
        """Add an agent, or replace an existing one's capabilities and metadata (its
        figures stay). ``metadata`` may set ``max_concurrent_tasks`` (default 5) and
        ``active``; other keys are kept as they are (JSON: see ``validation.json_object``).
        A constant number of statements however many capabilities, which are written in
        sorted order: registrations sharing capabilities never deadlock."""
        agent_id = v.text("agent_id", agent_id)
        capabilities = sorted(v.string_list("capabilities", capabilities))
        metadata = dict(v.json_object("metadata", metadata))
        capacity = metadata.get("max_concurrent_tasks", DEFAULT_CAPACITY)
        metadata["max_concurrent_tasks"] = v.positive_int("max_concurrent_tasks", capacity,
                                                          high=2**31 - 1)
        metadata["active"] = v.boolean("active", metadata.get("active", True))
        reserved = sorted({"kind", "name"} & set(metadata))
        if reserved:
            raise ValidationError(f"metadata keys {reserved} are reserved")
        self.db.atomic(self._register, agent_id, capabilities, metadata, self.clock())
        return self.get_agent(agent_id)

    def _register(self, agent_id: str, capabilities: list[str], metadata: dict[str, Any],
                  now: datetime) -> None:
        self.graph_store.upsert_entity(AGENT, agent_id, metadata, now)
        self.graph_store.add_entities(CAPABILITY, capabilities, now)
        self.graph_store.set_relations(entity_id(AGENT, agent_id), HAS_CAPABILITY,
                                       {entity_id(CAPABILITY, c): 1.0 for c in capabilities},
                                       now)
        self._changed()

    def deregister_agent(self, agent_id: str) -> None:
        """Remove the agent and its figures; its tasks keep ``assigned_to``."""
        agent_id = v.text("agent_id", agent_id)
        self.db.atomic(self._deregister, agent_id)

    def _deregister(self, agent_id: str) -> None:
        self._require(agent_id)
        self.graph_store.delete_entity(AGENT, agent_id, (HAS_CAPABILITY,))
        self.meta.delete_figures(agent_id)
        self._changed()

    def set_active(self, agent_id: str, active: bool) -> Agent:
        """Pause (False) or resume (True) routing and claims for this agent."""
        agent_id = v.text("agent_id", agent_id)
        active = v.boolean("active", active)
        self.db.atomic(self._set_active, agent_id, active)
        return self.get_agent(agent_id)

    def _set_active(self, agent_id: str, active: bool) -> None:
        self._require(agent_id)
        properties = self.graph_store.get_entity(AGENT, agent_id)["properties"]
        properties["active"] = active
        self.graph_store.upsert_entity(AGENT, agent_id, properties, self.clock())
        self._changed()

    def learn_new_capability(self, agent_id: str, capability: str,
                             confidence: float = 1.0) -> Agent:
        """Give an agent one more capability (or change its confidence in one)."""
        agent_id = v.text("agent_id", agent_id)
        capability = v.text("capability", capability)
        confidence = v.number("confidence", confidence, low=0.0, high=1.0)
        self.db.atomic(self._learn, agent_id, capability, confidence, self.clock())
        return self.get_agent(agent_id)

    def _learn(self, agent_id: str, capability: str, confidence: float, now: datetime) -> None:
        self._require(agent_id)
        self.graph_store.add_entities(CAPABILITY, [capability], now)
        self.graph_store.add_relations(entity_id(AGENT, agent_id), HAS_CAPABILITY,
                                       {entity_id(CAPABILITY, capability): confidence}, now)
        self._changed()

    def update_agent_performance(self, agent_id: str, success: bool, duration_ms: int) -> None:
        """Record work done outside the queue (the queue records its own tasks).
        ``duration_ms`` is at most ``validation.MAX_DURATION_MS`` (10 years)."""
        agent_id = v.text("agent_id", agent_id)
        success = v.boolean("success", success)
        duration_ms = v.non_negative_int("duration_ms", duration_ms, high=v.MAX_DURATION_MS)
        self.db.atomic(self._record, agent_id, success, duration_ms, self.clock())

    def _record(self, agent_id: str, success: bool, duration_ms: int, now: datetime) -> None:
        self._require(agent_id)
        self.meta.record_outcome(agent_id, now, completed=int(success), failed=int(not success),
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
            success_rate=float(success_rates(np.float64(completed), np.float64(failed))),
            avg_completion_ms=float(mean_durations(
                np.float64(completed), np.float64(figures["total_success_ms"]))),
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

    def skill_frame(self, kind: str | None = None) -> pd.DataFrame:
        """Outcomes per agent x task type and per agent x required capability, counted by
        the queue as attempts complete or fail (the figures the learning router learns
        from): agent_id, skill_kind ('task_type' or 'capability'), skill, completed,
        failed, success_rate, avg_completion_ms, last_updated. ``kind`` keeps one kind."""
        if kind is not None and kind not in SKILL_KINDS:
            raise ValidationError(f"kind must be one of {SKILL_KINDS} or None, not {kind!r}")
        frame = self.meta.skill_frame()
        if kind is not None:
            frame = frame[frame["skill_kind"] == kind].reset_index(drop=True)
        completed = frame["completed"].to_numpy(dtype=np.int64)
        failed = frame["failed"].to_numpy(dtype=np.int64)
        return frame.assign(
            success_rate=success_rates(completed, failed),
            avg_completion_ms=mean_durations(completed, frame["success_ms"].to_numpy(float))
        )[SKILL_COLUMNS]

    def routing_frame(self) -> pd.DataFrame:
        """``to_frame`` plus what the router needs: ``confidence`` (capability -> confidence),
        ``capability_set`` and ``total_success_ms``."""
        return self.routing_snapshot().frame()

    def routing_snapshot(self) -> RoutingSnapshot:
        """Every registered agent as arrays (sorted by id), for routing: the graph's part
        cached while the graph's change counter stands still, outcomes and live load read
        now. Two statements: the counter and the figures."""
        table = self.agent_table()
        return RoutingSnapshot(table, self.meta.all_agent_figures())

    def routing_read(self, task_type: str | None = None) -> RoutingSnapshot:
        """What a routing decision needs, in one statement: the snapshot (without
        ``last_updated``) and, with ``task_type``, the agents' outcomes at that type
        (``snapshot.skills``). The agent table is rebuilt only when the graph's counter
        moved."""
        rows = self.meta.routing_rows(task_type)
        table = self._table
        if table is None or table.version != next((r[2] for r in rows if r[0] == 0), -1):
            table = self.agent_table()
        figures: dict[str, list] = {}
        skills: dict[str, tuple[int, int]] = {}
        for kind, agent, a, b, c in rows:
            if kind == 1:
                figures.setdefault(agent, [0, 0, 0, None, 0])[:3] = (a, b, c)
            elif kind == 2:
                figures.setdefault(agent, [0, 0, 0, None, 0])[4] = a
            elif kind == 3:
                skills[agent] = (a, b)
        snapshot = RoutingSnapshot(table, figures)
        if task_type is not None:
            snapshot.skills[task_type] = skills
        return snapshot

    def agent_table(self) -> AgentTable:
        """The graph's part of the agent table as arrays, rebuilt only when the graph changed."""
        version, graph = self._current_graph()
        table = self._table
        if table is None or table.version != version:
            agents = []
            for key, d in graph.nodes(data=True):
                if d["kind"] != AGENT:
                    continue
                confidence = {entity_name(n): graph.edges[key, n]["confidence"]
                              for n in graph.neighbors(key)}
                agents.append((d["name"], d["active"], d["max_concurrent_tasks"], confidence))
            table = self._table = AgentTable(version, agents)
        return table

    def _require(self, agent_id: str) -> None:
        """Raise AgentNotFoundError unless ``agent_id`` (validated) is registered."""
        if entity_id(AGENT, agent_id) not in self.graph:
            raise AgentNotFoundError(f"agent {shown(agent_id)} is not registered")

