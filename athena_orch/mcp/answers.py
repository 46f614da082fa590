"""What a tool answers: plain JSON, bounded whatever the data.

Every answer fits in ``MAX_RESPONSE_BYTES``: every tool that lists takes a ``limit`` (with a
default and a maximum) and an ``offset``, and says where the next page starts
(``next_offset``, null on the last page); a page ends early rather than pass the byte
budget. Listed tasks carry their texts (content, result, error) cut to ``LISTED_CHARS``
characters; a single task carries each text up to ``TEXT_BYTES`` and
``orchestration_read_task_text`` reads any text whole, piece by piece. Every record that
was cut names the cut fields in ``truncated``.
"""

import json
import math
from collections.abc import Iterable
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import Enum
from itertools import islice
from typing import Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from ..models import Task

MAX_RESPONSE_BYTES = 512 * 1024  # a tool's JSON answer, UTF-8 (sent as text and structured)
PAGE_BYTES = MAX_RESPONSE_BYTES - 4 * 1024  # the listed records of one page, together
LISTED_CHARS = 1_000  # a string in a listed record (a task's content, a history detail)
LISTED_ITEMS = 100  # a list or object inside a listed record (requirements, capabilities)
SINGLE_ITEMS = 1_000  # a list or object inside the one record a tool answers with
TEXT_FIELDS = ("content", "result", "error")  # a task's free texts
TEXT_BYTES = 128 * 1024  # each free text of a single task, JSON-encoded
TEXT_PIECE_BYTES = 256 * 1024  # one piece read by orchestration_read_task_text
LISTED_IDS = 1_000  # ids named by orchestration_requeue_stale / orchestration_heartbeat
READ_TASK = "read it with orchestration_get_task"  # what a record too large to list says
READ_AGENT = "read it with orchestration_get_agent_health"


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: NaN/NA/NaT -> None, times -> ISO 8601 strings,
    numpy scalars -> Python numbers, enums -> their value, sets -> sorted lists."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, str)):
        return value
    if isinstance(value, Enum):
        return jsonable(value.value)
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, Decimal):
        return jsonable(float(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=str)
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):  # pd.Timedelta too
        return value.total_seconds()
    if isinstance(value, BaseModel):
        return jsonable(value.model_dump(mode="json"))
    return str(value)


def json_text(value: Any) -> str:
    """Strict JSON (no NaN), UTF-8 characters kept."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False)


def json_size(value: Any) -> int:
    """Bytes of ``value`` as JSON text in UTF-8."""
    return len(json_text(value).encode("utf-8", "surrogatepass"))


def fit_text(text: str, budget: int) -> str:
    """The longest start of ``text`` whose JSON string takes at most ``budget`` bytes."""
    if json_size(text) <= budget:
        return text
    low, high = 0, min(len(text), budget)  # a character takes at least one byte
    while low < high:
        middle = (low + high + 1) // 2
        if json_size(text[:middle]) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low]


def _clip(value: Any, chars: int, items: int, path: str, cut: list[str]) -> Any:
    """``value`` with strings cut to ``chars`` characters and lists and objects to
    ``items`` entries, at every depth; the path of everything cut goes to ``cut``."""
    if isinstance(value, str):
        if len(value) <= chars:
            return value
        cut.append(path)
        return value[:chars]
    if isinstance(value, list):
        if len(value) > items:
            cut.append(path)
        return [_clip(v, chars, items, path, cut) for v in value[:items]]
    if isinstance(value, dict):
        if len(value) > items:
            cut.append(path)
        out = {}
        for key, inner in islice(value.items(), items):
            if len(key) > chars:
                cut.append(path)
                key = key[:chars]
            out[key] = _clip(inner, chars, items, f"{path}.{key}" if path else key, cut)
        return out
    return value


def clipped(
    record: dict[str, Any], *, chars: int, items: int, text_bytes: int | None = None
) -> dict[str, Any]:
    """A JSON record cut to size, with ``truncated``: the fields that were cut ([] when
    none). With ``text_bytes``, a task's free texts keep up to that many bytes instead."""
    cut: list[str] = []
    out = {}
    for key, value in record.items():
        if text_bytes is not None and key in TEXT_FIELDS and isinstance(value, str):
            out[key] = fit_text(value, text_bytes)
            if len(out[key]) < len(value):
                cut.append(key)
        else:
            out[key] = _clip(value, chars, items, key, cut)
    out["truncated"] = list(dict.fromkeys(cut))
    return out


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as a list of JSON records (one per row)."""
    return [jsonable(row) for row in frame.to_dict("records")]


def task_dict(task: Task) -> dict[str, Any]:
    """One task as the answer of a tool about that task: its texts up to TEXT_BYTES each."""
    return clipped(
        jsonable(task.to_dict()), chars=LISTED_CHARS, items=SINGLE_ITEMS, text_bytes=TEXT_BYTES
    )


def listed_task(task: Task) -> dict[str, Any]:
    """One task in a list: its texts cut to LISTED_CHARS characters."""
    return clipped(jsonable(task.to_dict()), chars=LISTED_CHARS, items=LISTED_ITEMS)


def listed(record: dict[str, Any]) -> dict[str, Any]:
    return clipped(jsonable(record), chars=LISTED_CHARS, items=LISTED_ITEMS)


def single(record: dict[str, Any]) -> dict[str, Any]:
    return clipped(jsonable(record), chars=LISTED_CHARS, items=SINGLE_ITEMS)


IDENTIFYING = ("id", "task_id", "agent_id", "decision_id", "event_id", "at")


def fit(
    items: Iterable[dict[str, Any]], budget: int, read_whole: str
) -> tuple[list[dict[str, Any]], bool]:
    """The records that fit in ``budget`` bytes together, and whether some were left out.
    A first record too big on its own is named by its ids with an ``omitted`` note
    (``read_whole`` says where to read it), so a page always moves on."""
    kept: list[dict[str, Any]] = []
    used = 0
    for item in items:
        size = json_size(item) + 2
        if used + size > budget:
            if kept:
                return kept, True
            item = {k: item[k] for k in IDENTIFYING if k in item}
            item["omitted"] = f"too large to list here ({size} bytes); {read_whole}"
            size = json_size(item) + 2
        kept.append(item)
        used += size
    return kept, False


def page(
    name: str, items: list[dict[str, Any]], offset: int, more: bool, read_whole: str
) -> dict[str, Any]:
    """One page of a list: {name: records, count, offset, next_offset (null when done)}."""
    kept, cut = fit(items, PAGE_BYTES, read_whole)
    return {
        name: kept,
        "count": len(kept),
        "offset": offset,
        "next_offset": offset + len(kept) if cut or more else None,
    }
