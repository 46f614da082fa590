"""Argument checks shared by the queue, the registry and the router.

Each returns the cleaned value or raises :class:`ValidationError` naming the argument,
so bad input is refused before anything is written.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from .exceptions import ValidationError, shown
from .models import PRIORITIES, TaskStatus


def text(name: str, value: Any) -> str:
    """A non-empty string."""
    if not string(name, value).strip():
        raise ValidationError(f"{name} must not be empty")
    return value


def optional_text(name: str, value: Any) -> str | None:
    return None if value is None else text(name, value)


def string(name: str, value: Any) -> str:
    """Any string that can be stored (UTF-8), empty included (results, error messages)."""
    if not isinstance(value, str):
        raise ValidationError(f"{name} must be a string, not {type(value).__name__}: {shown(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValidationError(f"{name} is not valid text ({exc.reason} at {exc.start})") from None
    return value


def string_list(name: str, value: Any) -> list[str]:
    """A list (or tuple) of non-empty strings, duplicates dropped; None is []."""
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
    """An aware datetime, a naive one taken as UTC, or Unix seconds (as in the seed)."""
    moment = None
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
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


def known_keys(name: str, value: dict, allowed: Iterable[str]) -> None:
    unknown = sorted(shown(k) for k in set(value) - set(allowed))
    if unknown:
        raise ValidationError(f"{name} has unknown keys {unknown}; allowed: {sorted(allowed)}")
