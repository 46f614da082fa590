"""Compact HTML for notebooks: the ``_repr_html_`` of Task, Agent, RoutingDecision and the
manager, plus the small building blocks the widgets reuse.

Every user-supplied string (ids, content, capabilities, errors, reasons, metadata) goes
through :func:`esc`, so a task called ``<script>`` shows as text and runs nothing. Styles
are inline so the output looks the same in JupyterLab, classic Notebook, VS Code and Voila.
Output depends only on the object shown (no clock, no randomness), so notebooks that
display these objects give the same HTML on every run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from .models import Agent, RoutingDecision, Task, TaskStatus

if TYPE_CHECKING:  # pragma: no cover
    from .manager import OrchestrationManager

STATUS_COLOURS = {
    "pending": "#6b7280",
    "assigned": "#2563eb",
    "running": "#7c3aed",
    "completed": "#15803d",
    "failed": "#b91c1c",
    "blocked": "#b45309",
    "cancelled": "#374151",
}
PRIORITY_COLOURS = {"high": "#b91c1c", "medium": "#b45309", "low": "#4b5563"}
_BOX = (
    "font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.35; "
    "border: 1px solid #d1d5db; border-radius: 6px; padding: 6px 10px; "
    "display: inline-block; max-width: 56em;"
)
_TABLE = "border-collapse: collapse; margin-top: 4px;"
_TH = (
    "text-align: left; padding: 1px 10px 1px 0; color: #6b7280; font-weight: normal; "
    "vertical-align: top; white-space: nowrap;"
)
_TD = "text-align: left; padding: 1px 10px 1px 0; vertical-align: top;"


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def short_id(value: str | None, length: int = 8) -> str:
    """The first characters of an id, the full id in a tooltip."""
    if value is None:
        return '<span style="color:#9ca3af">none</span>'
    text = str(value)
    shown = text if len(text) <= length else text[:length] + "…"
    return f'<code title="{esc(text)}">{esc(shown)}</code>'


def badge(text: Any, colour: str = "#6b7280", faded: bool = False) -> str:
    fade = " opacity:0.4;" if faded else ""
    return (
        f'<span style="background:{colour}; color:white; border-radius:9px; '
        f'padding:0 7px; font-size:11px; white-space:nowrap;{fade}">{esc(text)}</span>'
    )


def status_badge(status: TaskStatus | str) -> str:
    value = status.value if isinstance(status, TaskStatus) else str(status)
    return badge(value, STATUS_COLOURS.get(value, "#6b7280"))


def priority_badge(priority: str) -> str:
    return badge(priority, PRIORITY_COLOURS.get(priority, "#6b7280"))


def chips(items: Iterable[Any], empty: str = "none") -> str:
    """A list of strings as small grey chips."""
    out = [
        f'<span style="background:#e5e7eb; border-radius:4px; padding:0 5px; '
        f'margin-right:3px; white-space:nowrap;">{esc(i)}</span>'
        for i in items
    ]
    return " ".join(out) or f'<span style="color:#9ca3af">{esc(empty)}</span>'


def bar(fraction: float, width_px: int = 80, colour: str = "#2563eb") -> str:
    """A horizontal bar for a value in [0, 1] (clipped)."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        fraction = 0.0
    fill = round(max(0.0, min(1.0, float(fraction))) * width_px)
    return (
        f'<span style="display:inline-block; width:{width_px}px; height:8px; '
        f'background:#e5e7eb; vertical-align:middle;"><span style="display:block; '
        f'width:{fill}px; height:8px; background:{colour};"></span></span>'
    )


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column key/value table; values are already HTML."""
    body = "".join(
        f'<tr><th style="{_TH}">{esc(k)}</th><td style="{_TD}">{val}</td></tr>' for k, val in rows
    )
    return f'<table style="{_TABLE}">{body}</table>'


def duration(ms: float | None) -> str:
    """Milliseconds for people: 850 ms, 12.5 s, 25 min, 3.2 h."""
    if ms is None or (isinstance(ms, float) and math.isnan(ms)):
        return ""
    if ms < 1_000:
        return f"{ms:,.0f} ms"
    if ms < 60_000:
        return f"{ms / 1_000:.1f} s"
    if ms < 3_600_000:
        return f"{ms / 60_000:.1f} min"
    return f"{ms / 3_600_000:.1f} h"


def _clip(text: str | None, limit: int = 200) -> str:
    if text is None:
        return ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- objects


def task_html(task: Task) -> str:
    """A task card: status, priority, type, content, requirements, dependencies, agent,
    retries and the error or result when there is one."""
    rows = [
        ("content", esc(_clip(task.content))),
        ("type", esc(task.task_type)),
        ("requirements", chips(task.requirements)),
        (
            "dependencies",
            " ".join(short_id(d) for d in task.dependencies)
            or '<span style="color:#9ca3af">none</span>',
        ),
        (
            "assigned to",
            f"{esc(task.assigned_to)} (attempt {task.attempt})"
            if task.assigned_to
            else '<span style="color:#9ca3af">nobody</span>',
        ),
        ("retries", f"{task.retry_count} of {task.max_retries}"),
    ]
    if task.execution_duration_ms is not None:
        rows.append(("duration", duration(task.execution_duration_ms)))
    if task.blocked_by:
        rows.append(("blocked by", short_id(task.blocked_by)))
    if task.error:
        rows.append(("error", f'<span style="color:#b91c1c">{esc(_clip(task.error))}</span>'))
    if task.result is not None:
        rows.append(("result", esc(_clip(task.result))))
    head = (
        f"<b>Task</b> {short_id(task.id)} {status_badge(task.status)} "
        f"{priority_badge(task.priority)}"
    )
    return f'<div class="athena-task" style="{_BOX}">{head}{_rows(rows)}</div>'


def agent_html(agent: Agent) -> str:
    """An agent card: active or paused, capabilities, load against capacity, track record."""
    capacity = max(agent.max_concurrent_tasks, 1)
    finished = agent.total_completed + agent.total_failed
    rows = [
        ("capabilities", chips(agent.capabilities)),
        (
            "load",
            f"{bar(agent.current_load / capacity)} {agent.current_load} of "
            f"{agent.max_concurrent_tasks}",
        ),
        (
            "success rate",
            f"{agent.success_rate:.0%} of {finished} finished "
            f"({agent.total_completed} completed, {agent.total_failed} failed)",
        ),
        (
            "avg completion",
            duration(agent.avg_completion_ms)
            if agent.total_completed
            else '<span style="color:#9ca3af">no history</span>',
        ),
    ]
    if agent.metadata:
        rows.append(("metadata", chips(f"{k}={v}" for k, v in sorted(agent.metadata.items()))))
    state = badge("active", "#15803d") if agent.active else badge("paused", "#6b7280")
    head = f"<b>Agent</b> <code>{esc(agent.id)}</code> {state}"
    return f'<div class="athena-agent" style="{_BOX}">{head}{_rows(rows)}</div>'


def decision_html(decision: RoutingDecision, top: int = 5) -> str:
    """The chosen agent, the reason, and the best ``top`` candidates' scores as bars."""
    chosen = (
        f"<code>{esc(decision.selected_agent)}</code>"
        if decision.selected_agent
        else '<span style="color:#b91c1c">no agent</span>'
    )
    ranked = sorted(decision.scores.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    lines = "".join(
        f'<tr><td style="{_TD}"><code>{esc(a)}</code></td><td style="{_TD}">'
        f"{bar(s, colour='#15803d' if a == decision.selected_agent else '#2563eb')}</td>"
        f'<td style="{_TD}">{s:.3f}</td></tr>'
        for a, s in ranked
    )
    rows = [
        ("task", short_id(decision.task_id)),
        ("requirements", chips(decision.requirements)),
        ("reason", esc(decision.reason)),
    ]
    if decision.weights:
        rows.append(("weights", esc(", ".join(f"{k} {w:g}" for k, w in decision.weights.items()))))
    more = len(decision.scores) - len(ranked)
    table = f'<table style="{_TABLE}">{lines}</table>' if lines else ""
    if more > 0:
        table += f'<div style="color:#6b7280">… and {more} more eligible</div>'
    head = f"<b>Routing decision</b> → {chosen}"
    return f'<div class="athena-decision" style="{_BOX}">{head}{_rows(rows)}{table}</div>'


def status_counts_html(counts: dict[str, int]) -> str:
    """One badge per task state with its count, in lifecycle order."""
    return " ".join(
        badge(
            f"{s.value} {int(counts.get(s.value, 0))}",
            STATUS_COLOURS[s.value],
            faded=not counts.get(s.value, 0),
        )
        for s in TaskStatus
    )


def manager_html(orch: OrchestrationManager) -> str:
    """Where the database is, tasks by state, agents, and the team's load and capacity."""
    stats = orch.queue.get_queue_statistics()
    agents = orch.registry.get_agent_statistics()
    path = orch.path
    where = "in memory" if path in (":memory:", "") else f"<code>{esc(path)}</code>"
    rows = [
        ("database", where),
        ("tasks", f"{stats.total_count} — {status_counts_html(stats.by_status())}"),
        ("success rate", f"{stats.success_rate:.0%} of finished tasks"),
        (
            "agents",
            f"{agents.total_agents} ({agents.active_agents} active), load "
            f"{agents.total_load} of {agents.total_capacity} "
            f"{bar(agents.total_load / agents.total_capacity if agents.total_capacity else 0)}",
        ),
        ("capabilities", chips(f"{c} ×{n}" for c, n in agents.skill_distribution.items())),
    ]
    return (
        f'<div class="athena-manager" style="{_BOX}"><b>OrchestrationManager</b>{_rows(rows)}</div>'
    )


# --------------------------------------------------------------------------- frames


def _cell(value: Any) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "✓" if value else "·"
    if isinstance(value, float):
        return f"{value:.3f}"
    if isinstance(value, (list, tuple)):
        return esc(", ".join(str(v) for v in value))
    if isinstance(value, pd.Timestamp):
        return esc(value.strftime("%Y-%m-%d %H:%M:%S"))
    return esc(value)


def frame_html(
    frame: pd.DataFrame,
    columns: Sequence[str] | None = None,
    *,
    max_rows: int = 50,
    highlight: Any = None,
    empty: str = "no rows",
    cells: dict[str, Any] | None = None,
) -> str:
    """A plain, escaped HTML table of a DataFrame (floats to 3 places, lists joined).

    ``highlight(row) -> bool`` tints a row; ``cells`` maps a column to a function that
    returns a cell's HTML (the function must escape what it shows).
    """
    columns = list(columns) if columns is not None else list(frame.columns)
    cells = cells or {}
    if frame.empty:
        return f'<div style="color:#6b7280; font-style:italic">{esc(empty)}</div>'
    head = "".join(
        f'<th style="{_TH} border-bottom:1px solid #d1d5db;">{esc(c)}</th>' for c in columns
    )
    body = []
    for _, row in frame.head(max_rows).iterrows():
        flag = highlight(row) if highlight is not None else False
        tint = ' style="background:#ecfdf5"' if flag is not pd.NA and bool(flag) else ""
        tds = "".join(
            f'<td style="{_TD}">{cells[c](row[c]) if c in cells else _cell(row[c])}</td>'
            for c in columns
        )
        body.append(f"<tr{tint}>{tds}</tr>")
    more = len(frame) - max_rows
    tail = f'<div style="color:#6b7280">… {more} more rows</div>' if more > 0 else ""
    return (
        f'<table class="athena-frame" style="{_TABLE} font-family: system-ui, sans-serif; '
        f'font-size: 12px;"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table>{tail}"
    )


def message_html(text: str, kind: str = "info") -> str:
    """A one-line message for a form: kind is 'info', 'ok' or 'error'."""
    colour = {"ok": "#15803d", "error": "#b91c1c"}.get(kind, "#374151")
    icon = {"ok": "✔ ", "error": "✖ "}.get(kind, "")
    return (
        f'<div class="athena-message-{esc(kind)}" style="color:{colour}; '
        f'font-family: system-ui, sans-serif; font-size: 13px;">{icon}{esc(text)}</div>'
    )
