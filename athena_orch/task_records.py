"""Turning what callers pass to ``create_task(s)`` into validated task rows.

A batch is checked whole before anything is written: record fields, batch-local
``key`` references, unknown dependencies and cycles all fail the whole batch.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from . import validation as v
from .exceptions import DependencyError, ValidationError, shown
from .models import PRIORITIES

INT32_MAX = 2**31 - 1  # the INTEGER columns' limit

RECORD_FIELDS = (
    "content", "task_type", "priority", "requirements", "dependencies", "max_retries",
    "estimated_duration_ms", "idempotency_key", "key", "batch_id",
)


@dataclass
class TaskRecord:
    """One validated task to create; ``dependencies`` still as the caller named them."""

    content: str
    task_type: str
    priority: str = "medium"
    requirements: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    max_retries: int = 3
    estimated_duration_ms: int | None = None
    idempotency_key: str | None = None
    key: str | None = None
    batch_id: str | None = None
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))


def _missing(value: Any) -> bool:
    """True for None and the NaN/NA a DataFrame puts in empty cells."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def make_record(fields: dict[str, Any], where: str = "") -> TaskRecord:
    """Validate one record's fields; errors are prefixed with ``where`` (e.g. 'record 3: ')."""
    try:
        v.known_keys("task record", fields, RECORD_FIELDS)
        f = {k: (None if _missing(val) else val) for k, val in fields.items()}
        max_retries = f.get("max_retries", 3)
        if isinstance(max_retries, float) and max_retries.is_integer():  # DataFrame int columns
            max_retries = int(max_retries)
        return TaskRecord(
            content=v.text("content", f.get("content")),
            task_type=v.text("task_type", f.get("task_type")),
            priority=v.priority(_priority(fields.get("priority", "medium"))),
            requirements=v.string_list("requirements", _as_list(f.get("requirements"))),
            dependencies=v.string_list("dependencies", _as_list(f.get("dependencies"))),
            max_retries=v.non_negative_int("max_retries", max_retries, high=INT32_MAX),
            estimated_duration_ms=v.non_negative_int(
                "estimated_duration_ms", _as_int(f.get("estimated_duration_ms")), allow_none=True
            ),
            idempotency_key=v.optional_text("idempotency_key", f.get("idempotency_key")),
            key=v.optional_text("key", f.get("key")),
            batch_id=v.optional_text("batch_id", f.get("batch_id")),
        )
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc}") from None


def _priority(value: Any) -> Any:
    """An empty DataFrame cell means the default; an explicit None does not."""
    return "medium" if value is not None and _missing(value) else value


def _as_list(value: Any) -> Any:
    """DataFrame cells may hold numpy arrays where a list was meant."""
    return list(value) if isinstance(value, (np.ndarray, pd.Series)) else value


def _as_int(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def dict_rows(data: Any, name: str, item: str) -> list[dict[str, Any]]:
    """The rows of a list of dicts or of a DataFrame; anything else is a ValidationError."""
    if isinstance(data, pd.DataFrame):
        if not data.columns.is_unique:
            raise ValidationError(f"{name}: the DataFrame has duplicate column names "
                                  f"{shown(sorted(data.columns[data.columns.duplicated()]))}")
        return data.to_dict("records")
    if isinstance(data, (str, bytes, dict)) or not isinstance(data, Iterable):
        raise ValidationError(f"{name} must be a list of dicts or a DataFrame, not "
                              f"{type(data).__name__}")
    rows = list(data)
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise ValidationError(f"{item} {i}: must be a dict, not {type(row).__name__}")
    return rows


def records_from(data: Iterable[dict[str, Any]] | pd.DataFrame) -> list[TaskRecord]:
    """Validate every record of a list of dicts or a DataFrame (one row per task)."""
    records = [make_record(row, where=f"record {i}: ")
               for i, row in enumerate(dict_rows(data, "records", "record"))]
    keys = [r.key for r in records if r.key is not None]
    if len(keys) != len(set(keys)):
        raise ValidationError(f"records: duplicate keys {sorted({k for k in keys if keys.count(k) > 1})}")
    idem = [r.idempotency_key for r in records if r.idempotency_key is not None]
    if len(idem) != len(set(idem)):
        raise ValidationError("records: an idempotency_key appears twice in one batch")
    return records


def resolve_dependencies(records: list[TaskRecord]) -> tuple[list[TaskRecord], set[str]]:
    """Replace batch keys by the new task ids; return the records in dependency order
    (dependencies first, else record order) and the ids of existing tasks they name.
    Raises DependencyError on a cycle in the batch."""
    by_key = {r.key: r.task_id for r in records if r.key is not None}
    external: set[str] = set()
    order = nx.DiGraph()
    order.add_nodes_from(r.task_id for r in records)
    for r in records:
        r.dependencies = list(dict.fromkeys(by_key.get(d, d) for d in r.dependencies))
        for dep in r.dependencies:
            if dep in order:
                order.add_edge(dep, r.task_id)
            else:
                external.add(dep)
    if order.number_of_edges() == 0:
        return list(records), external
    position = {r.task_id: i for i, r in enumerate(records)}
    try:
        ranked = list(nx.lexicographical_topological_sort(order, key=position.__getitem__))
    except nx.NetworkXUnfeasible:
        raise DependencyError("records: the batch's dependencies form a cycle") from None
    return [records[position[tid]] for tid in ranked], external


def priority_rank(priority: str) -> int:
    return PRIORITIES.index(priority)


def dumps(values: list[str]) -> str:
    return json.dumps(values, ensure_ascii=False)


def completions_from(results: Any) -> tuple[list[str], list[str], list[int | None]]:
    """Validate what ``complete_tasks`` was given: (task ids, results, durations)."""
    if isinstance(results, dict):
        rows = [{"task_id": k, "result": val} for k, val in results.items()]
    else:
        rows = dict_rows(results, "results", "result")
    checked = []
    for i, row in enumerate(rows):
        v.known_keys(f"result {i}", row, ("task_id", "result", "duration_ms"))
        duration = row.get("duration_ms")
        checked.append({
            "task_id": v.text("task_id", row.get("task_id")),
            "result": v.string("result", row.get("result")),
            "duration_ms": v.non_negative_int("metrics['duration_ms']",
                                              None if _missing(duration) else _as_int(duration),
                                              allow_none=True)})
    ids = [c["task_id"] for c in checked]
    if len(ids) != len(set(ids)):
        raise ValidationError("results name a task twice")
    return ids, [c["result"] for c in checked], [c["duration_ms"] for c in checked]
