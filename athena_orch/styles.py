"""pandas ``Styler`` views of the library's frames, for notebooks.

``queue.to_frame()``, ``router.explain(task)``, ``router.decisions()`` and
``registry.to_frame()`` hold raw values (milliseconds, unrounded floats, ``<NA>``) so code
can compute with them. These helpers show the same rows to people: numbers rounded,
durations as "1.5 s" or "23 min", blanks for missing values, states as badges, ids kept on
one line and texts (reasons, errors) whole. The frame itself is not changed::

    from athena_orch.styles import style_explain
    style_explain(orch.router.explain(task))

``import athena_orch`` does not import this module (nor pandas' Styler, which needs jinja2).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import display as d

if TYPE_CHECKING:  # pragma: no cover
    from pandas.io.formats.style import Styler

__all__ = ["style_tasks", "style_explain", "style_decisions", "style_agents"]

_IDS = ("task_id", "agent_id", "assigned_to", "selected_agent", "blocked_by", "task_batch_id")
_DURATIONS = ("execution_duration_ms", "estimated_duration_ms", "avg_completion_ms")
_TABLE_STYLES = [
    {"selector": "th", "props": "text-align: left; white-space: nowrap;"},
    {"selector": "td", "props": "text-align: left; vertical-align: top;"},
]


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, tuple, dict)) and bool(pd.isna(value)))


def _text(value: Any) -> str:
    """Any cell as escaped text: blank when missing, lists joined, times to the second."""
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return d.esc(", ".join(str(v) for v in value))
    if isinstance(value, pd.Timestamp):
        return d.esc(value.strftime("%Y-%m-%d %H:%M:%S"))
    return d.esc(value)


def _blank_or(formatter: Callable[[Any], str]) -> Callable[[Any], str]:
    return lambda value: "" if _missing(value) else formatter(value)


def _scores(value: Any) -> str:
    """``{"a": 0.8312, "b": {"fit": 1.0}}`` as "a 0.831, b (fit 1)", in the log's order."""

    def short(item: Any) -> str:
        if isinstance(item, Mapping):
            return ", ".join(
                f"{k} {short(v)}" if not isinstance(v, Mapping) else f"{k} ({short(v)})"
                for k, v in item.items()
            )
        return f"{item:.3g}" if isinstance(item, float) else str(item)

    return d.esc(short(value)) if isinstance(value, Mapping) else _text(value)


def _style(frame: pd.DataFrame, formatters: Mapping[str, Callable[[Any], str]]) -> Styler:
    """The shared frame: every cell through a formatter, no index, ids on one line. The
    table's CSS id comes from its columns, not at random, so a notebook's output is the same
    on every run (nbval compares it)."""
    formatter = {c: formatters.get(c, _text) for c in frame.columns}
    uuid = hashlib.sha1("\0".join(map(str, frame.columns)).encode()).hexdigest()[:8]
    styler = (
        frame.style.format(formatter)
        .hide(axis="index")
        .set_table_styles(_TABLE_STYLES)
        .set_uuid(f"athena_{uuid}")
    )
    ids = [c for c in _IDS if c in frame.columns]
    if ids:
        styler = styler.set_properties(subset=ids, **{"white-space": "nowrap"})
    return styler


def _durations(frame: pd.DataFrame) -> dict[str, Callable[[Any], str]]:
    return {c: _blank_or(d.duration) for c in _DURATIONS if c in frame.columns}


def style_tasks(frame: pd.DataFrame) -> Styler:
    """``queue.to_frame()``: state and priority badges, human durations, blank for none."""
    return _style(
        frame,
        {
            "status": _blank_or(d.status_badge),
            "priority": _blank_or(d.priority_badge),
            **_durations(frame),
        },
    )


def style_explain(frame: pd.DataFrame) -> Styler:
    """``router.explain(task)``: components and score to 3 places, blank rank for the
    excluded, the whole ``excluded_reason``."""
    rank = _blank_or(lambda r: f"{int(r)}")
    return _style(frame, {"rank": rank, "router_rank": rank, "moved": rank})


def style_decisions(frame: pd.DataFrame) -> Styler:
    """``router.decisions()``: scores and weights as short "agent 0.83" lists."""
    return _style(frame, {c: _scores for c in ("scores", "weights", "components")})


def style_agents(frame: pd.DataFrame) -> Styler:
    """``registry.to_frame()``: active/paused badges, success rate in percent (blank while
    nothing has finished), average completion as a duration."""
    shown = frame.copy()
    if {"success_rate", "total_completed", "total_failed"} <= set(shown.columns):
        finished = shown["total_completed"] + shown["total_failed"]
        shown["success_rate"] = shown["success_rate"].where(finished > 0)
    return _style(
        shown,
        {
            "active": lambda a: d.badge("active", "#15803d") if a else d.badge("paused"),
            "success_rate": _blank_or(lambda r: f"{r:.0%}"),
            **_durations(shown),
        },
    )
