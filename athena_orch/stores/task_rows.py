"""The task row codec: how a task is written to and read from ``episodic_events``.

The one place that knows the physical row: building creation rows from validated
records (``models.TaskBatch``), the JSON-list format of requirements and dependencies
(written by :func:`dumps_many`, read by :func:`json_lists`), the priority rank that
orders the queue (``models.PRIORITY_RANK``), the JSON of a transition event, and
decoding rows into ``Task`` objects. The stores use it; the rules layer (``task_queue``)
never sees a row.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pyarrow as pa

from ..bulk import paused_gc
from ..models import PRIORITY_RANK, Task, TaskBatch, TaskStatus

_PENDING, _BLOCKED = TaskStatus.PENDING.value, TaskStatus.BLOCKED.value


# ----------------------------------------------------------------------------- writing
def dumps(values: list[str]) -> str:
    return json.dumps(values, ensure_ascii=False)


_NEEDS_ESCAPE = re.compile(r'["\\\x00-\x1f]')


def dumps_many(lists: list[list[str]]) -> list[str]:
    """:func:`dumps` of each list, fast: lists that are the same object are written once,
    and strings that JSON need not escape are joined as they are."""
    keys = list(map(id, lists))
    texts: dict[int, str] = {}
    for key, values in zip(keys, lists):
        if key in texts:
            continue
        if not values:
            texts[key] = "[]"
        elif any(map(_NEEDS_ESCAPE.search, values)):
            texts[key] = dumps(values)
        else:
            texts[key] = '["' + '", "'.join(values) + '"]'
    return list(map(texts.__getitem__, keys))


def creation_rows(batch: TaskBatch, fresh: list[int], roots: dict[int, str],
                  completed: set[str], now: datetime) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The rows that create records ``fresh`` of ``batch`` (ids and dependencies
    resolved): task rows, column by column (each row is its own creation event, columns
    without a value left to their default, NULL), and their dependency edges.
    ``roots``: record -> the task that blocks it from birth; ``completed``: the
    dependencies already completed."""
    def column(values: list) -> list:
        return values if len(fresh) == len(batch) else [values[i] for i in fresh]

    def maybe(values: list) -> list | None:
        return None if all(x is None for x in values) else values

    dependencies = column(batch.dependencies)
    if roots:
        status = [_BLOCKED if i in roots else _PENDING for i in fresh]
        outcome = ["blocked" if i in roots else "ongoing" for i in fresh]
        blocked_by = [roots.get(i) for i in fresh]
        error = [f"blocked: dependency {roots[i]} did not complete" if i in roots else None
                 for i in fresh]
    else:
        status, outcome, blocked_by, error = _PENDING, "ongoing", None, None
    estimated = maybe(column(batch.estimated_duration_ms))
    columns = {
        "timestamp": pd.Timestamp(now), "created_at": pd.Timestamp(now),
        "event_type": "task", "content": column(batch.content), "outcome": outcome,
        "task_id": column(batch.task_id), "task_type": column(batch.task_type),
        "task_status": status, "context_phase": status,
        "requirements": dumps_many(column(batch.requirements)),
        "dependencies": dumps_many(dependencies),
        "priority": column(batch.priority), "retry_count": 0,
        "estimated_duration_ms": None if estimated is None
        else pd.array(estimated, dtype="Int64"),
        "task_batch_id": maybe(column(batch.batch_id)),
        "priority_rank": np.array([PRIORITY_RANK[p] for p in column(batch.priority)],
                                  dtype=np.int16),
        "waiting_on": [len(d) - sum(x in completed for x in d) for d in dependencies]
        if completed else list(map(len, dependencies)),
        "max_retries": column(batch.max_retries), "blocked_by": blocked_by,
        "error_message": error, "idempotency_key": maybe(column(batch.idempotency_key)),
        "name": maybe(column(batch.name)),
    }
    tasks = pd.DataFrame({name: values for name, values in columns.items()
                          if values is not None}, index=range(len(fresh)))
    edges = pd.DataFrame({"task_id": [batch.task_id[i] for i in fresh
                                      for _ in batch.dependencies[i]],
                          "depends_on": [d for i in fresh for d in batch.dependencies[i]]})
    return tasks, edges


def transition_contents(moves: list[tuple]) -> tuple[list[str], list[str], list[str]]:
    """(task ids, new statuses, JSON contents) of transition events: each move is
    (task_ids, from, to, agent_id, detail) with statuses as TaskStatus (from may be None),
    a task's moves in the order given."""
    task_ids: list[str] = []
    statuses: list[str] = []
    contents: list[str] = []
    for ids, before, after, agent, detail in moves:
        task_ids += ids
        statuses += [after.value] * len(ids)
        contents += [json.dumps({"from_status": before and before.value,
                                 "to_status": after.value, "agent_id": agent,
                                 "detail": detail})] * len(ids)
    return task_ids, statuses, contents


def epoch_ms(moment: datetime) -> int:
    """DuckDB's ``epoch_ms``: whole milliseconds since 1970 (rounded down)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- reading
DB_UTC = ZoneInfo("UTC")  # the tzinfo of the times the database returns
_STATUS = {s.value: s for s in TaskStatus}
_FIELDS = [f.name for f in dataclasses.fields(Task)]
_TIMES = {"created_at", "assigned_at", "started_at", "completed_at", "retry_until", "lease_until"}
_COLUMN = {"id": "task_id", "status": "task_status", "error": "error_message"}  # field -> column


def json_lists(texts: list[str | None]) -> list[list[str]]:
    """The JSON lists of strings in ``texts`` (NULL as []), each row its own list (as
    ``json.loads`` of each); fast for many rows: when every text is written as ``dumps``
    writes strings without escapes, all are split at once."""
    if not texts:
        return []
    with paused_gc():
        return _json_lists(texts)


def _json_lists(texts: list[str | None]) -> list[list[str]]:
    lists = _split_plain(texts)
    return lists if lists is not None else [_json_list(text) for text in texts]


_ITEMS = '", "'  # between the strings of a list, as ``json.dumps`` writes it
_CONTROL = re.compile("[\x00-\x1f]")  # JSON strings hold no raw control character


def _has_control(joined: str) -> bool:
    """A control character other than our separator \x01 (as ``_CONTROL``, for 40 MB:
    numpy takes 0.05 s where the regex takes 0.3 s). UTF-8 encodes a character below
    0x20 as that byte, and every other as bytes of 0x80 and up."""
    data = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return bool(((data < 0x20) & (data != 0x01)).any())


def _split_plain(texts: list[str]) -> list[list[str]] | None:
    """Every text split into its strings, if each is ``[]`` or ``["a", "b"]`` with no
    backslash (so no quote but the delimiters); else None. C loops only, no per-row
    Python: a million rows in a fraction of a second."""
    try:
        joined = "\x01".join(texts)
    except TypeError:  # not all strings
        return None
    n, empty = len(texts), texts.count("[]")
    if empty == n:
        return [[] for _ in range(n)]
    if ("\\" in joined or _has_control(joined) or 3 in set(map(len, texts))  # '["]'
            or joined.count("\x01") != n - 1
            or ("\x01" + joined).count('\x01["') != n - empty
            or (joined + "\x01").count('"]\x01') != n - empty):
        return None
    lists = list(map(str.split, map(operator.itemgetter(slice(2, -2)), texts),
                     itertools.repeat(_ITEMS)))
    if joined.count('"') != 2 * (sum(map(len, lists)) - empty):  # a quote inside a string
        return None
    if empty:
        for i in np.flatnonzero(np.asarray(texts, dtype=object) == "[]").tolist():
            lists[i] = []
    return lists


def _json_list(text: str | None) -> list[str]:
    if not isinstance(text, str) or text == "[]":  # NULL: no list
        return []
    if ("\\" not in text and text.startswith('["') and text.endswith('"]')
            and not _CONTROL.search(text)):
        items = text[2:-2].split('", "')
        if text.count('"') == 2 * len(items):  # no other quote: these are the strings
            return items
    return json.loads(text)


def _aware(cell: int | datetime) -> datetime:
    """A time of a task row as an aware UTC datetime: hot queries select times as
    microseconds since 1970 (``epoch_us``), which DuckDB hands out ten times faster."""
    if isinstance(cell, int):
        return _EPOCH_DB + timedelta(microseconds=cell)
    return cell if cell.tzinfo else cell.replace(tzinfo=DB_UTC)


def _each_once(convert: Callable[[Any], Any], cells: Iterable[Any]) -> list[Any]:
    """``[convert(c) for c in cells]`` with each distinct cell converted once (a batch's
    tasks share their times and lists), in C loops but the distinct ones."""
    cells = list(cells)
    made = {cell: convert(cell) for cell in set(cells)}
    return list(map(made.__getitem__, cells))


def tasks_from_rows(columns: list[str], rows: list[tuple]) -> list[Task]:
    """Task rows (tuples with these column names: ``task_get``, ``tasks_lock``...) as
    :class:`Task` objects; a ``result`` column, if any, is the result text. Times may
    come as aware or naive (UTC) datetimes, or as microseconds since 1970 (:func:`_aware`)."""
    if not rows:
        return []
    return tasks_from_columns(columns, list(zip(*rows)))


def tasks_from_columns(columns: list[str], cells: list[list]) -> list[Task]:
    """The same from the rows' columns (``cells[i]``: every row's value of ``columns[i]``),
    converted column by column."""
    if not cells or not len(cells[0]):
        return []
    with paused_gc():
        return _tasks_from_columns(columns, cells)


def _tasks_from_columns(columns: list[str], by_column: list[list]) -> list[Task]:
    rows = by_column[0]
    at = {name: i for i, name in enumerate(columns)}
    values = []
    for field in _FIELDS:
        column = _COLUMN.get(field, field)
        if field == "result" and column not in at:
            values.append([None] * len(rows))
            continue
        cells = by_column[at[column]]
        if field in _TIMES:
            cells = _each_once(lambda c: None if c is None else _aware(c), cells)
        elif field == "status":
            cells = list(map(_STATUS.__getitem__, cells))
        elif field in ("requirements", "dependencies"):  # each row its own list
            cells = list(map(list, _each_once(lambda c: tuple(_json_list(c)), cells)))
        elif field in ("task_type", "priority", "retry_count", "attempt"):
            default = {"task_type": "", "priority": "medium", "retry_count": 0, "attempt": 0}[field]
            cells = [c or default for c in cells]
        values.append(cells)
    return list(map(Task, *values))


def row_to_task(row: dict[str, Any]) -> Task:
    """A task row as a dict (``task_get``, ``tasks_query``...) as a :class:`Task`."""
    return tasks_from_rows(list(row), [tuple(row.values())])[0]


_EPOCH_DB = datetime(1970, 1, 1, tzinfo=DB_UTC)


def _arrow_backed(kind: pa.DataType) -> pd.ArrowDtype | None:
    """Text and lists of text stay in Arrow; numbers and times become numpy columns."""
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_list(kind):
        return pd.ArrowDtype(kind)
    return None


def arrow_frame(table: pa.Table) -> pd.DataFrame:
    """A frame of task rows from Arrow: text columns ``string[pyarrow]``, requirements and
    dependencies ``list<string>[pyarrow]`` (a value reads as a Python ``list``), times
    ``datetime64[us, UTC]``, counts int32 (float64 where a column has NULLs)."""
    return table.to_pandas(types_mapper=_arrow_backed)
