"""The knowledge graph's tables: entities (agents, capabilities) and typed relations.

Many entities or relations are written by one statement whatever their number (list
parameters), in sorted order: PostgreSQL locks rows as it writes them, so transactions
writing overlapping sets in one order queue up instead of deadlocking.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from .base import SQLDatabase

HAS_CAPABILITY = "has_capability"


def entity_id(kind: str, name: str) -> str:
    """The graph key of an entity: ``'<kind>:<name>'``, so names of two kinds never clash."""
    return f"{kind}:{name}"


def entity_name(key: str) -> str:
    return key.split(":", 1)[1]


class GraphStore:
    """Entities and relations persisted in the database (either backend); graphs in
    memory are built from these."""

    def __init__(self, db: SQLDatabase):
        self.db = db

    def upsert_entity(self, kind: str, name: str, properties: dict[str, Any],
                      now: datetime) -> None:
        """Create or replace one entity; ``properties`` as strict JSON (no NaN, which
        PostgreSQL cannot read back: callers validate it first)."""
        self.db.execute("entity_upsert", entity_id=entity_id(kind, name), kind=kind, name=name,
                        properties=json.dumps(properties, allow_nan=False), now=now)

    def add_entities(self, kind: str, names: list[str], now: datetime) -> None:
        """Create the entities of ``names`` that do not exist yet, without properties;
        existing ones are left as they are (and not locked)."""
        names = sorted(set(names))
        self.db.execute("entities_add", entity_ids=[entity_id(kind, n) for n in names],
                        kind=kind, names=names, now=now)

    def get_entity(self, kind: str, name: str) -> dict[str, Any] | None:
        row = self.db.fetch_one("entity_get", entity_id=entity_id(kind, name))
        if row:
            row["properties"] = json.loads(row["properties"])
        return row

    def delete_entity(self, kind: str, name: str, relation_types: tuple[str, ...] = ()) -> None:
        """Remove the entity and its outgoing relations of the given types."""
        key = entity_id(kind, name)
        with self.db.transaction():
            for relation_type in relation_types:
                self.db.execute("relations_delete_from", source_id=key, relation_type=relation_type)
            self.db.execute("entity_delete", entity_id=key)

    def set_relations(self, source: str, relation_type: str, targets: dict[str, float],
                      now: datetime) -> None:
        """Replace ``source``'s relations of this type by ``targets`` (key -> confidence)."""
        with self.db.transaction():
            self.db.execute("relations_delete_from", source_id=source, relation_type=relation_type)
            self.add_relations(source, relation_type, targets, now)

    def add_relations(self, source: str, relation_type: str, targets: dict[str, float],
                      now: datetime) -> None:
        """Add relations from ``source`` (target key -> confidence), or set the confidence
        of those that exist."""
        if not targets:
            return
        keys = sorted(targets)
        self.db.execute("relations_upsert", source_id=source, target_ids=keys,
                        relation_type=relation_type,
                        confidences=[float(targets[k]) for k in keys], now=now)

    def entities(self) -> list[dict[str, Any]]:
        rows = self.db.fetch_dicts("entities_all")
        for row in rows:
            row["properties"] = json.loads(row["properties"])
        return rows

    def relations(self) -> list[dict[str, Any]]:
        return self.db.fetch_dicts("relations_all")

    def agent_profile(self, agent_id: str) -> dict[str, Any] | None:
        """An agent's properties plus ``capabilities`` (names), or None if unregistered."""
        row = self.db.fetch_one("agent_profile", entity_id=entity_id("agent", agent_id),
                                relation_type=HAS_CAPABILITY)
        if row is None:
            return None
        profile = json.loads(row["properties"])
        profile["capabilities"] = [entity_name(t) for t in row["targets"] or []]
        return profile

    def version(self) -> int:
        """Change counter of the agent graph."""
        return self.db.version("agents")

    def bump_version(self) -> None:
        self.db.bump_version("agents")
