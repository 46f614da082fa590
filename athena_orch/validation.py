"""Argument checks shared by the queue, the registry and the router.

Each returns the cleaned value or raises :class:`ValidationError` naming the argument,
so bad input is refused before any SQL runs. Whatever passes, both databases store
alike (DESIGN.md, "Input and errors"): :func:`text_fault` is the one rule for text, which
``task_records`` also applies to whole columns at once.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from .exceptions import ValidationError, shown
from .models import PRIORITIES, TaskStatus

#: The longest id or name (agent and task ids, task types, capabilities, requirements,
#: dependencies, idempotency and batch keys), in UTF-8 bytes: PostgreSQL indexes them and
#: refuses index rows past ~2,700 bytes; a capability relation's key holds two names.
MAX_ID_BYTES = 512
#: The longest duration a task or an agent's work may report: 10 years. Agent figures add
#: durations up; the store also caps the sums, so no figure can overflow its BIGINT.
MAX_DURATION_MS = 10 * 365 * 24 * 3600 * 1000
#: How deep metadata may nest (lists and dicts in each other).
MAX_JSON_DEPTH = 100


def text_fault(value: str, *, bounded: bool = False) -> str | None:
    """Why the databases would not store ``value`` alike, or None: PostgreSQL refuses NUL
    in text (DuckDB stores it), a lone surrogate is not UTF-8, and an id (``bounded``)
    longer than MAX_ID_BYTES cannot be indexed. Unbounded, it may check a whole column
    joined into one string."""
    at = value.find("\x00")
    if at >= 0:
        return f"contains a NUL character (at {at})"
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        return f"is not valid text ({exc.reason} at {exc.start})"
    if bounded and size > MAX_ID_BYTES:
        return f"is too long: {size} bytes of UTF-8 (at most {MAX_ID_BYTES})"
    return None


def text(name: str, value: Any, *, bounded: bool = True) -> str:
    """A non-empty string: an id or a name (at most MAX_ID_BYTES), or with
    ``bounded=False`` free text (a task's content)."""
    if not _stored_text(name, value, bounded).strip():
        raise ValidationError(f"{name} must not be empty")
    return value


def optional_text(name: str, value: Any) -> str | None:
    return None if value is None else text(name, value)


def string(name: str, value: Any) -> str:
    """Any text both databases store alike, empty included (results, error messages)."""
    return _stored_text(name, value, False)


def _stored_text(name: str, value: Any, bounded: bool) -> str:
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, not {type(value).__name__}: {shown(value)}")
    fault = text_fault(value, bounded=bounded)
    if fault:
        raise ValidationError(f"{name} {fault}: {shown(value)}")
    return value


def string_list(name: str, value: Any) -> list[str]:
    """A list (or tuple) of ids or names (:func:`text`), duplicates dropped; None is []."""
    if value is None:
        return []
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise ValidationError(
            f"{name} must be a list of strings, not {type(value).__name__}: {shown(value)}"
        )
    return list(dict.fromkeys(text(f"{name} item", item) for item in value))


def priority(value: Any) -> str:
    if not isinstance(value, str) or value not in PRIORITIES:
        raise ValidationError(f"priority must be one of {', '.join(PRIORITIES)}, not {shown(value)}")
    return value


def status(value: Any, name: str = "status") -> TaskStatus:
    try:
        return TaskStatus(value)
    except (ValueError, TypeError):
        allowed = ", ".join(s.value for s in TaskStatus)
        raise ValidationError(f"{name} must be one of {allowed}, not {shown(value)}") from None


def statuses(value: Any) -> list[str] | None:
    """One status or a list of them, as strings; None means any."""
    if value is None:
        return None
    values = value if isinstance(value, (list, tuple, set, frozenset)) else [value]
    return [status(v).value for v in values]


def non_negative_int(name: str, value: Any, *, allow_none: bool = False,
                     high: int = 2**62) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{name} must be a non-negative integer, not {shown(value)}")
    if value > high:
        raise ValidationError(f"{name} is too large: {shown(value)} (at most {high})")
    return value


def positive_int(name: str, value: Any, *, high: int = 2**62) -> int:
    checked = non_negative_int(name, value, high=high)
    if checked == 0:
        raise ValidationError(f"{name} must be at least 1, not 0")
    return checked


def number(name: str, value: Any, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValidationError(f"{name} must be a number, not {shown(value)}")
    try:
        value = float(value)
    except OverflowError:
        raise ValidationError(f"{name} is too large: {shown(value)}") from None
    if math.isnan(value):
        raise ValidationError(f"{name} must be a number, not nan")
    if not low <= value <= high:
        raise ValidationError(f"{name} must be between {low} and {high}, not {value}")
    return float(value)


def boolean(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValidationError(f"{name} must be true or false, not {shown(value)}")
    return value


LATEST = datetime(9000, 1, 1, tzinfo=UTC)  # room left for leases and back-offs


def timestamp(name: str, value: Any) -> datetime:
    """An aware datetime or Unix seconds (as in the seed). A naive datetime is refused:
    whether it meant UTC or local time is a guess (DESIGN.md: clocks are timezone-aware)."""
    moment = None
    if isinstance(value, datetime):
        if value.utcoffset() is None:
            raise ValidationError(f"{name} must be timezone-aware (e.g. datetime.now(UTC)), "
                                  f"not the naive {value.isoformat()}")
        moment = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        with contextlib.suppress(OverflowError, OSError, ValueError):
            moment = datetime.fromtimestamp(value, UTC)
    if moment is None:
        raise ValidationError(f"{name} must be a datetime or Unix seconds, not {shown(value)}")
    if moment >= LATEST:
        raise ValidationError(f"{name} is out of range: {moment.isoformat()}")
    return moment


def mapping(name: str, value: Any) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValidationError(f"{name} must be a dict, not {type(value).__name__}")
    return value


def json_object(name: str, value: Any) -> dict:
    """A dict (None is {}) both databases store as the same JSON: string keys, finite
    numbers (integers within 64 bits), text by :func:`text_fault` (keys too), lists and
    dicts nested at most MAX_JSON_DEPTH deep. ``json.dumps`` alone would write NaN,
    Infinity and escaped lone surrogates, which PostgreSQL refuses to read back."""
    value = mapping(name, value)
    _check_json(value, name, 0)
    return value


def _check_json(value: Any, path: str, depth: int) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -(2**63) <= value < 2**63:
            raise ValidationError(f"{path} is too large for JSON: {shown(value)} (64 bits)")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(f"{path} must be a finite number, not {value}")
    elif isinstance(value, str):
        string(path, value)
    elif isinstance(value, (list, tuple, dict)):
        if depth == MAX_JSON_DEPTH:
            raise ValidationError(f"{path} is nested more than {MAX_JSON_DEPTH} deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise ValidationError(f"{path} keys must be strings, not {shown(key)}")
                string(f"{path} key", key)
                _check_json(item, f"{path}[{shown(key)}]", depth + 1)
        else:
            for i, item in enumerate(value):
                _check_json(item, f"{path}[{i}]", depth + 1)
    else:
        raise ValidationError(f"{path} must be JSON (a dict, list, string, number, boolean "
                              f"or None), not {type(value).__name__}: {shown(value)}")


def known_keys(name: str, value: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(shown(k) for k in set(value) - set(allowed))
    if unknown:
        raise ValidationError(f"{name} has unknown keys {unknown}; allowed: {sorted(allowed)}")


def frame_columns(frame: Any, columns: Iterable[str], what: str, source: str,
                  error: type[ValidationError] = ValidationError) -> None:
    """``frame`` is a DataFrame with every one of ``columns``; else ``error`` saying to
    pass ``source`` (where such a frame comes from)."""
    if not isinstance(frame, pd.DataFrame):
        raise error(f"{what} must be a DataFrame, not {type(frame).__name__}; pass {source}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise error(f"{what} lacks the columns {missing}; pass {source}")
