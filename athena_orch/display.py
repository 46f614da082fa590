"""Compact HTML for notebooks: the ``_repr_html_`` of Task, Agent, RoutingDecision and the
manager, plus the small building blocks the widgets reuse.

Every user-supplied string (ids, content, capabilities, errors, reasons, metadata) goes
through :func:`esc`, so a task called ``<script>`` shows as text and runs nothing. Styles
are inline so the output looks the same in JupyterLab, classic Notebook, VS Code and Voila.
Colours follow JupyterLab's theme (its ``--jp-*`` CSS variables, light fallbacks elsewhere),
and every element that sets a text colour sets its background from the same source, so no
text is ever drawn in one theme's colour on the other theme's background. Badges carry
their own dark background and white text, readable in any theme.
Output depends only on the object shown (no clock, no randomness), so notebooks that
display these objects give the same HTML on every run.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:  # pragma: no cover - types only: models' reprs import this module
    from .manager import OrchestrationManager
    from .models import Agent, RoutingDecision, Task, TaskStatus

#: One colour per task state, in the lifecycle's order (TaskStatus's).
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
# Theme pairs: text and background always come from the same theme (JupyterLab's variables,
# else these light fallbacks).
TEXT = "var(--jp-ui-font-color1, #1f2937)"
MUTED = "var(--jp-ui-font-color2, #4b5563)"
BACKGROUND = "var(--jp-layout-color0, #ffffff)"
RAISED = "var(--jp-layout-color2, #e5e7eb)"
BORDER = "var(--jp-border-color1, #d1d5db)"
ERROR = "var(--jp-error-color1, #b91c1c)"
SUCCESS = "var(--jp-success-color1, #15803d)"
WARNING = "var(--jp-warn-color1, #b45309)"
BRAND = "var(--jp-brand-color1, #2563eb)"
THEMED = f"color: {TEXT}; background: {BACKGROUND};"
HIGHLIGHT = (
    f"background: {RAISED}; color: var(--jp-ui-font-color0, #111827); font-weight: 600; "
    f"border-left: 4px solid {BRAND};"
)
_BOX = (
    "font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.35; "
    f"border: 1px solid {BORDER}; border-radius: 6px; padding: 6px 10px; "
    f"display: inline-block; max-width: 56em; {THEMED}"
)
_TABLE = "border-collapse: collapse; margin-top: 4px;"
_TH = (
    f"text-align: left; padding: 1px 10px 1px 0; color: {MUTED}; font-weight: normal; "
    "vertical-align: top; white-space: nowrap;"
)
_TD = "text-align: left; padding: 1px 10px 1px 0; vertical-align: top;"


def esc(value: Any) -> str:
    """HTML-escape anything (quotes too, so it is safe inside attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def muted(text: str) -> str:
    """Secondary text (none, nobody, no history) in the theme's second text colour."""
    return f'<span style="color:{MUTED}">{esc(text)}</span>'


def flagged(text: str, colour: str) -> str:
    """Text in the theme's text colour marked by a coloured rule: red or green text would
    be too faint on one of the themes."""
    return (
        f'<span style="color:{TEXT}; border-left:3px solid {colour}; padding-left:4px">'
        f"{esc(text)}</span>"
    )


SHORT_ID = 12  # characters of an id shown: a task id's last group


def short_text(value: Any, length: int = SHORT_ID) -> str:
    """An id cut to its last ``length`` characters (after "…"), as plain text. Task ids
    are time-ordered (UUIDv7): ids made together share their start and differ at the
    end, whose last group holds the low bits of a per-process counter and 32 random
    bits, so the ids of one batch (up to 65,536) never share it."""
    text = str(value)
    return text if len(text) <= length + 1 else "…" + text[-length:]


def short_id(value: str | None, length: int = SHORT_ID) -> str:
    """:func:`short_text` of an id as HTML, the full id in a tooltip."""
    if value is None:
        return muted("none")
    return f'<code title="{esc(value)}">{esc(short_text(value, length))}</code>'


def task_title(task: Task) -> str:
    """A task as HTML: its name (when it has one) and its short id."""
    name = f"<b>{esc(_clip(task.name, 80))}</b> " if task.name else ""
    return f"{name}{short_id(task.id)}"


def badge(text: Any, colour: str = "#6b7280", faded: bool = False) -> str:
    """A pill with its own background and text colour (white on a dark colour, >= 4.5:1);
    a faded one (e.g. a zero count) takes the chip colours instead."""
    fill = f"background:{RAISED}; color:{TEXT}" if faded else f"background:{colour}; color:white"
    return (
        f'<span class="athena-badge" style="{fill}; border-radius:9px; '
        f'padding:0 7px; font-size:11px; white-space:nowrap;">{esc(text)}</span>'
    )


def status_badge(status: TaskStatus | str) -> str:
    value = str(getattr(status, "value", status))  # a TaskStatus or its string
    return badge(value, STATUS_COLOURS.get(value, "#6b7280"))


def priority_badge(priority: str) -> str:
    return badge(priority, PRIORITY_COLOURS.get(priority, "#6b7280"))


def chips(items: Iterable[Any], empty: str = "none") -> str:
    """A list of strings as small grey chips."""
    out = [
        f'<span class="athena-chip" style="background:{RAISED}; color:{TEXT}; '
        f'border-radius:4px; padding:0 5px; margin-right:3px; white-space:nowrap;">'
        f"{esc(i)}</span>"
        for i in items
    ]
    return " ".join(out) or muted(empty)


def bar(fraction: float, width_px: int = 80, colour: str = BRAND) -> str:
    """A horizontal bar for a value in [0, 1] (clipped)."""
    if fraction is None or (isinstance(fraction, float) and math.isnan(fraction)):
        fraction = 0.0
    fill = round(max(0.0, min(1.0, float(fraction))) * width_px)
    return (
        f'<span style="display:inline-block; width:{width_px}px; height:8px; '
        f'background:{RAISED}; vertical-align:middle;"><span style="display:block; '
        f'width:{fill}px; height:8px; background:{colour};"></span></span>'
    )


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    """A two-column key/value table; values are already HTML."""
    body = "".join(
        f'<tr><th style="{_TH}">{esc(k)}</th><td style="{_TD}">{val}</td></tr>' for k, val in rows
    )
    return f'<table style="{_TABLE}">{body}</table>'


def duration(ms: float | None) -> str:
    """Milliseconds for people: 850 ms, 1.5 s, 12 s, 25 min, 3.2 h (a decimal only below
    10); blank for a missing value."""
    if ms is None or ms is pd.NA or (isinstance(ms, float) and math.isnan(ms)):
        return ""
    if ms < 1_000:
        return f"{ms:,.0f} ms"
    size, unit = next(u for u in ((3_600_000, "h"), (60_000, "min"), (1_000, "s")) if ms >= u[0])
    value = ms / size
    return f"{value:.1f} {unit}" if value < 9.95 else f"{value:,.0f} {unit}"


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
            " ".join(short_id(d) for d in task.dependencies) or muted("none"),
        ),
        (
            "assigned to",
            f"{esc(task.assigned_to)} (attempt {task.attempt})"
            if task.assigned_to
            else muted("nobody"),
        ),
        ("retries", f"{task.retry_count} of {task.max_retries}"),
    ]
    if task.execution_duration_ms is not None:
        rows.append(("duration", duration(task.execution_duration_ms)))
    if task.blocked_by:
        rows.append(("blocked by", short_id(task.blocked_by)))
    if task.error:
        rows.append(("error", flagged(_clip(task.error), ERROR)))
    if task.result is not None:
        rows.append(("result", esc(_clip(task.result))))
    head = (
        f"<b>Task</b> {task_title(task)} {status_badge(task.status)} "
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
            f"({agent.total_completed} completed, {agent.total_failed} failed)"
            if finished
            else muted("no task finished yet"),
        ),
        (
            "avg completion",
            duration(agent.avg_completion_ms) if agent.total_completed else muted("no history"),
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
        else flagged("no agent", ERROR)
    )
    ranked = sorted(decision.scores.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    lines = "".join(
        f'<tr><td style="{_TD}"><code>{esc(a)}</code></td><td style="{_TD}">'
        f"{bar(s, colour=SUCCESS if a == decision.selected_agent else BRAND)}</td>"
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
        table += f"<div>{muted(f'… and {more} more eligible')}</div>"
    head = f"<b>Routing decision</b> → {chosen}"
    return f'<div class="athena-decision" style="{_BOX}">{head}{_rows(rows)}{table}</div>'


def status_counts_html(counts: dict[str, int]) -> str:
    """One badge per task state with its count, in lifecycle order."""
    return " ".join(
        badge(
            f"{s} {int(counts.get(s, 0))}",
            colour,
            faded=not counts.get(s, 0),
        )
        for s, colour in STATUS_COLOURS.items()
    )


def manager_html(orch: OrchestrationManager) -> str:
    """Where the database is, tasks by state, agents, and the team's load and capacity."""
    stats = orch.queue.get_queue_statistics()
    agents = orch.registry.get_agent_statistics()
    path = orch.path
    finished = stats.completed_count + stats.failed_count
    where = "in memory" if path in (":memory:", "") else f"<code>{esc(path)}</code>"
    rows = [
        ("database", where),
        ("tasks", f"{stats.total_count} — {status_counts_html(stats.by_status())}"),
        (
            "success rate",
            f"{stats.success_rate:.0%} of {finished} finished"
            if finished
            else muted("no task finished yet"),
        ),
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
        return f'<div style="font-style:italic; {THEMED}">{muted(empty)}</div>'
    head = "".join(
        f'<th style="{_TH} border-bottom:1px solid {BORDER};">{esc(c)}</th>' for c in columns
    )
    body = []
    for _, row in frame.head(max_rows).iterrows():
        flag = highlight(row) if highlight is not None else False
        tint = (
            f' class="athena-highlight" style="{HIGHLIGHT}"' if flag is not pd.NA and flag else ""
        )
        tds = "".join(
            f'<td style="{_TD}">{cells[c](row[c]) if c in cells else _cell(row[c])}</td>'
            for c in columns
        )
        body.append(f"<tr{tint}>{tds}</tr>")
    more = len(frame) - max_rows
    tail = f'<div style="{THEMED}">{muted(f"… {more} more rows")}</div>' if more > 0 else ""
    return (
        f'<table class="athena-frame" style="{_TABLE} font-family: system-ui, sans-serif; '
        f'font-size: 12px; {THEMED}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table>{tail}"
    )


def message_html(text: str, kind: str = "info") -> str:
    """A one-line message for a form: kind is 'info', 'ok', 'warning' or 'error'. The text
    is in the theme's text colour; only the icon and the left rule carry the colour (a
    warning's text brings its own ⚠)."""
    colour = {"ok": SUCCESS, "error": ERROR, "warning": WARNING}.get(kind, BORDER)
    icon = {"ok": "✔ ", "error": "✖ "}.get(kind, "")
    return (
        f'<div class="athena-message-{esc(kind)}" style="{THEMED} '
        f"border-left: 3px solid {colour}; padding-left: 6px; "
        f'font-family: system-ui, sans-serif; font-size: 13px;">'
        f'<span style="color:{colour}">{icon}</span>{esc(text)}</div>'
    )
