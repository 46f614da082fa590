"""Turning what callers pass to ``create_task(s)`` into a validated ``models.TaskBatch``.

A batch is checked whole before anything is written: record fields, batch-local
``key`` references, unknown dependencies and cycles all fail the whole batch.
``create_task`` is a batch of one, so one path checks every record.

Empty cells: in a DataFrame, pandas marks a missing cell NaN (or NA), so there an empty
cell of ``priority`` means the default and of an optional column means none. In records
given as dicts (and in ``create_task``), NaN is a value like any other, and refused.

:func:`batch_from` checks a list or DataFrame column by column, certifying only values it
is sure of; a row with any other value is checked field by field (:func:`_row_fields`), so
a bad record raises its own error ("record 3: ...") and the first bad record in record
order is the one reported.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx
import numpy as np
import pandas as pd

from . import validation as v
from .exceptions import DependencyError, ValidationError, shown
from .ids import looks_like_task_id
from .models import PRIORITIES, RECORD_FIELDS, TaskBatch

INT32_MAX = 2**31 - 1  # the INTEGER columns' limit

def _missing(value: Any) -> bool:
    """True for None and the NaN/NA a DataFrame puts in empty cells."""
    if value is None or value is pd.NA:
        return True
    return isinstance(value, float) and math.isnan(value)


def _row_fields(fields: dict[str, Any], where: str, *, cells: bool) -> dict[str, Any]:
    """One row's fields checked one by one, for a row the column checks were not sure
    of; errors are prefixed with ``where`` (e.g. 'record 3: '). ``cells``: the fields are
    a DataFrame row's, whose empty cells mean missing values."""
    try:
        v.known_keys("task record", fields, RECORD_FIELDS)
        f = {k: (None if _missing(val) else val) for k, val in fields.items()} if cells \
            else fields
        max_retries = f.get("max_retries", 3)
        if isinstance(max_retries, float) and max_retries.is_integer():  # DataFrame int columns
            max_retries = int(max_retries)
        priority = fields.get("priority", "medium")
        key = _batch_key(v.optional_text("key", f.get("key")))
        name = v.optional_text("name", f.get("name"))
        return {
            "content": v.text("content", f.get("content"), bounded=False),
            "task_type": v.text("task_type", f.get("task_type")),
            "priority": v.priority(_priority(priority) if cells else priority),
            "requirements": v.string_list("requirements", _as_list(f.get("requirements"))),
            "dependencies": v.string_list("dependencies", _as_list(f.get("dependencies"))),
            "max_retries": v.non_negative_int("max_retries", max_retries, high=INT32_MAX),
            "estimated_duration_ms": v.non_negative_int(
                "estimated_duration_ms", _as_int(f.get("estimated_duration_ms")), allow_none=True,
                high=v.MAX_DURATION_MS),
            "idempotency_key": v.optional_text("idempotency_key", f.get("idempotency_key")),
            "key": key,
            "batch_id": v.optional_text("batch_id", f.get("batch_id")),
            "name": key if name is None else name,
        }
    except ValidationError as exc:
        raise ValidationError(f"{where}{exc}") from None


def _batch_key(key: str | None) -> str | None:
    """A batch key may not look like a task id: a dependency naming it would be ambiguous."""
    if key is not None and looks_like_task_id(key):
        raise ValidationError(f"key {shown(key)} looks like a task id; dependencies naming "
                              "it would be ambiguous: choose another key")
    return key


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


def _check_batch_keys(keys: list[str | None], idempotency_keys: list[str | None]) -> None:
    named = [k for k in keys if k is not None]
    if len(named) != len(set(named)):
        seen: set[str] = set()
        twice = {k for k in named if k in seen or seen.add(k)}
        raise ValidationError(f"records: duplicate keys {sorted(twice)}")
    idem = [k for k in idempotency_keys if k is not None]
    if len(idem) != len(set(idem)):
        raise ValidationError("records: an idempotency_key appears twice in one batch")


# ----------------------------------------------------------------------------- batches
_ABSENT = object()  # a record without this key
_ALLOWED = frozenset(RECORD_FIELDS)
_PRIORITY_SET = frozenset(PRIORITIES)
_EMPTY: list[str] = []  # shared by records without requirements or dependencies


def _is_missing(x: Any) -> bool:
    """:func:`_missing`, inlined where it runs once per cell (of a DataFrame)."""
    return x is None or x is pd.NA or (isinstance(x, float) and x != x)


def _is_none(x: Any) -> bool:
    """What is missing in a record given as a dict: None only."""
    return x is None


def batch_from(data: Iterable[dict[str, Any]] | pd.DataFrame, *,
               numbered: bool = True) -> TaskBatch:
    """Validate a list of dicts or a DataFrame (one row per task) column by column; a row
    with a cell the column checks are not sure of is checked by :func:`_row_fields`, in
    record order, so the first bad record raises its error, prefixed with its number
    ("record 3: ") unless not ``numbered`` (``create_task``'s one record)."""
    cells = isinstance(data, pd.DataFrame)
    missing = _is_missing if cells else _is_none
    if cells:
        if not data.columns.is_unique:
            dict_rows(data, "records", "record")  # raises: duplicate column names
        n = len(data)
        suspect: set[int] = set()
        if any(c not in _ALLOWED for c in data.columns):
            suspect.update(range(n))  # _row_fields names the unknown columns
        columns = {c: _frame_column(data, c, suspect) for c in data.columns if c in _ALLOWED}

        def row_of(i: int) -> dict[str, Any]:
            return data.iloc[i:i + 1].to_dict("records")[0]
    else:
        rows = dict_rows(data, "records", "record")
        n = len(rows)
        keys: set[Any] = set().union(*rows) if rows else set()
        columns = {c: [row.get(c, _ABSENT) for row in rows] for c in RECORD_FIELDS if c in keys}
        suspect = set()
        if not keys <= _ALLOWED:
            suspect.update(i for i, row in enumerate(rows) if not _ALLOWED.issuperset(row))
        row_of = rows.__getitem__

    def check(name: str, checker: Callable[..., list[Any]], default: Any, **options: Any):
        if name not in columns:  # no record has it: the default for all
            return [default] * n if default is not _ABSENT else checker([_ABSENT] * n, suspect,
                                                                           **options)
        return checker(columns[name], suspect, **options)

    checked = {
        "content": check("content", _texts, _ABSENT, optional=False, missing=missing),
        "task_type": check("task_type", _texts, _ABSENT, optional=False, missing=missing),
        "priority": check("priority", _priorities, "medium", missing=missing),
        "requirements": check("requirements", _string_lists, _EMPTY, missing=missing),
        "dependencies": check("dependencies", _string_lists, _EMPTY, missing=missing),
        "max_retries": check("max_retries", _ints, 3, high=INT32_MAX, absent=3,
                             allow_none=False, missing=missing),
        "estimated_duration_ms": check("estimated_duration_ms", _ints, None,
                                       high=v.MAX_DURATION_MS, absent=None, allow_none=True,
                                       missing=missing),
        "idempotency_key": check("idempotency_key", _texts, None, optional=True,
                                 missing=missing),
        "key": check("key", _texts, None, optional=True, missing=missing),
        "batch_id": check("batch_id", _texts, None, optional=True, missing=missing),
        "name": check("name", _texts, None, optional=True, missing=missing),
    }
    _check_text_rules(checked, suspect)
    batch = TaskBatch(**checked)
    for i in sorted(suspect):  # checked field by field, in record order
        where = f"record {i}: " if numbered else ""
        for name, value in _row_fields(row_of(i), where, cells=cells).items():
            getattr(batch, name)[i] = value
    batch.name = _names(batch.name, batch.key)
    _check_batch_keys(batch.key, batch.idempotency_key)
    return batch


def _names(names: list[str | None], keys: list[str | None]) -> list[str | None]:
    """Each record's name, its key when it has none (as :func:`_row_fields` gives)."""
    if names.count(None) == len(names):
        return list(keys)
    return [k if n is None else n for n, k in zip(names, keys)]


def _frame_column(data: pd.DataFrame, name: Any, suspect: set[int]) -> list[Any]:
    """A DataFrame column's cells as ``to_dict("records")`` gives them to :func:`_row_fields`."""
    series = data[name]
    dtype = series.dtype
    if dtype == np.dtype(object):  # to_dict turns pd.NA into None and numpy scalars into Python's
        values = series.tolist()
        for i, x in enumerate(values):
            if x is pd.NA:
                values[i] = None
            elif isinstance(x, np.generic):
                suspect.add(i)  # _row_fields sees the Python value: let it decide
        return values
    if isinstance(dtype, np.dtype) or (
            isinstance(dtype, pd.StringDtype) and isinstance(dtype.na_value, float)):
        return series.tolist()  # the same cells as to_dict's (pandas' default str too)
    return [row[name] for row in data[[name]].to_dict("records")]  # other extension types


def _all_str(values: list[Any]) -> bool:
    return set(map(type, values)) == {str}


def _texts(values: list[Any], suspect: set[int], *, optional: bool,
           missing: Callable[[Any], bool]) -> list[Any]:
    """``validation.text`` (or ``optional_text``) of each cell; the text rules are
    checked for the whole batch by :func:`_check_text_rules`."""
    if values and _all_str(values) and "" not in values and not any(map(str.isspace, values)):
        return values
    out = list(values)
    for i, x in enumerate(values):
        if isinstance(x, str) and x and not x.isspace():
            continue
        if optional and (x is _ABSENT or missing(x)):
            out[i] = None
        else:
            suspect.add(i)
    return out


def _priorities(values: list[Any], suspect: set[int], *,
                missing: Callable[[Any], bool]) -> list[Any]:
    if values and _all_str(values) and set(values) <= _PRIORITY_SET:
        return values
    out = list(values)
    for i, x in enumerate(values):
        if isinstance(x, str) and x in _PRIORITY_SET:
            continue
        if x is _ABSENT or (x is not None and missing(x)):  # an empty cell: the default
            out[i] = "medium"
        else:
            suspect.add(i)
    return out


def _string_lists(values: list[Any], suspect: set[int], *,
                  missing: Callable[[Any], bool]) -> list[Any]:
    """``validation.string_list`` of each cell (numpy arrays as lists, duplicates
    dropped); cells that are the same object are checked once."""
    keys = list(map(id, values))
    checked: dict[int, list[str] | None] = {}
    for key, x in zip(keys, values):
        if key not in checked:
            checked[key] = _string_list(x, missing)
    out = list(map(checked.__getitem__, keys))
    if None in checked.values():
        suspect.update(i for i, x in enumerate(out) if x is None)
    return out


def _string_list(x: Any, missing: Callable[[Any], bool]) -> list[str] | None:
    """The checked list of a cell, or None when _row_fields must decide."""
    if x is None or x is _ABSENT:
        return _EMPTY
    if isinstance(x, (np.ndarray, pd.Series)):
        x = list(x)
    elif not isinstance(x, (list, tuple)):
        return _EMPTY if missing(x) else None
    for item in x:
        if not (isinstance(item, str) and item and not item.isspace()):
            return None
    return list(dict.fromkeys(x)) if len(x) > 1 else list(x)


def _ints(values: list[Any], suspect: set[int], *, high: int, absent: int | None,
          allow_none: bool, missing: Callable[[Any], bool]) -> list[Any]:
    if values and set(map(type, values)) == {int} and min(values) >= 0 and max(values) <= high:
        return values
    out = list(values)
    for i, x in enumerate(values):
        if type(x) is int:
            if 0 <= x <= high:
                continue
        elif x is _ABSENT:
            out[i] = absent
            continue
        elif missing(x):
            if allow_none:
                out[i] = None
                continue
        elif isinstance(x, float) and x.is_integer() and 0 <= x <= high:
            out[i] = int(x)
            continue
        suspect.add(i)
    return out


def _check_text_rules(checked: dict[str, list[Any]], suspect: set[int]) -> None:
    """Rows with a string ``validation.text_fault`` refuses (NUL, a lone surrogate, an id
    too long), or with a key that looks like a task id, are suspect. Whole columns are
    checked at once: joined into one string, and by their longest string (UTF-8 takes
    at most 4 bytes a character)."""
    for name in ("content", "task_type", "idempotency_key", "key", "batch_id", "name"):
        values = checked[name]
        strings = values if _all_str(values) else [x for x in values if isinstance(x, str)]
        bounded = name != "content"
        if strings and (v.text_fault("".join(strings)) is not None or bounded
                        and 4 * max(map(len, strings)) > v.MAX_ID_BYTES):
            suspect.update(i for i, x in enumerate(values) if isinstance(x, str)
                           and v.text_fault(x, bounded=bounded) is not None)
    suspect.update(i for i, x in enumerate(checked["key"])
                   if isinstance(x, str) and looks_like_task_id(x))
    for name in ("requirements", "dependencies"):
        values = checked[name]
        lists = {id(x): x for x in values if x is not None}.values()  # None: a suspect
        names = [item for x in lists for item in x]
        if names and (v.text_fault("".join(names)) is not None
                      or 4 * max(map(len, names)) > v.MAX_ID_BYTES):
            suspect.update(i for i, x in enumerate(values) if x is not None and any(
                v.text_fault(item, bounded=True) is not None for item in x))


def resolve_dependencies(batch: TaskBatch) -> tuple[list[int], set[str]]:
    """Replace batch keys by the new task ids (in ``batch.dependencies``); return the
    record positions in dependency order (dependencies first, else record order) and the
    ids of existing tasks the records name. Raises DependencyError on a cycle."""
    by_key = {k: batch.task_id[i] for i, k in enumerate(batch.key) if k is not None}
    position = {tid: i for i, tid in enumerate(batch.task_id)}
    external: set[str] = set()
    backward = False  # an edge to a later record: record order is not dependency order
    resolved = batch.dependencies
    for i, deps in enumerate(resolved):
        if not deps:
            continue
        if len(deps) == 1:
            deps = resolved[i] = [by_key.get(deps[0], deps[0])]
        else:
            deps = resolved[i] = list(dict.fromkeys(by_key.get(d, d) for d in deps))
        for dep in deps:
            at = position.get(dep)
            if at is None:
                external.add(dep)
            elif at >= i:
                backward = True
    if not backward:  # then record order is the lexicographic topological order
        return list(range(len(batch))), external
    order = nx.DiGraph()
    order.add_nodes_from(range(len(batch)))
    order.add_edges_from((position[d], i) for i, deps in enumerate(resolved)
                         for d in deps if d in position)
    try:
        return list(nx.lexicographical_topological_sort(order)), external
    except nx.NetworkXUnfeasible:
        raise DependencyError("records: the batch's dependencies form a cycle") from None


def completions_from(results: Any) -> tuple[list[str], list[str], list[int | None]]:
    """Validate what ``complete_tasks`` was given: (task ids, results, durations). A
    duration is at most ``validation.MAX_DURATION_MS``; an empty DataFrame cell means
    none (the time since the start), a NaN given in a dict is refused."""
    if isinstance(results, dict):  # {task_id: result}: its keys are unique already
        ids, texts = list(results), list(results.values())
        if not (_all_str(ids) and _all_str(texts) and "" not in ids
                and not any(map(str.isspace, ids)) and v.text_fault("".join(ids + texts)) is None
                and 4 * max(map(len, ids), default=0) <= v.MAX_ID_BYTES):
            for task_id, result in results.items():  # the first bad one raises
                v.text("task_id", task_id)
                v.string("result", result)
        return ids, texts, [None] * len(results)
    cells = isinstance(results, pd.DataFrame)
    rows = dict_rows(results, "results", "result")
    checked = []
    for i, row in enumerate(rows):
        v.known_keys(f"result {i}", row, ("task_id", "result", "duration_ms"))
        duration = row.get("duration_ms")
        checked.append({
            "task_id": v.text("task_id", row.get("task_id")),
            "result": v.string("result", row.get("result")),
            "duration_ms": v.non_negative_int(
                "metrics['duration_ms']", None if cells and _missing(duration)
                else _as_int(duration), allow_none=True, high=v.MAX_DURATION_MS)})
    ids = [c["task_id"] for c in checked]
    if len(ids) != len(set(ids)):
        raise ValidationError("results name a task twice")
    return ids, [c["result"] for c in checked], [c["duration_ms"] for c in checked]
