"""ipywidgets forms over an :class:`~athena_orch.manager.OrchestrationManager`.

Each form is a small class that holds its widgets as attributes, so a test (or a
notebook) can set values and press buttons without a browser::

    form = CreateTaskForm(orch)
    form.content.value = "Summarise the logs"
    form.task_type.value = "writing"
    form.submit.click()
    form.message.value            # "✔ Created task …" or "✖ <what was wrong>"
    form                          # displays form.widget in a notebook

Errors of the library (:class:`~athena_orch.exceptions.OrchestrationError`: bad input,
unknown dependencies, …) are shown in the form's ``message`` area and nothing is written;
a form never shows a traceback for them. ``on_change(callback)`` registers a callback run
after each successful write, which is how :func:`dashboard` keeps the board current.

Every input widget carries a CSS class ``athena-<form>-<field>`` (e.g.
``athena-create-task-content``) so browser tests can find it.

This module is a face: it uses the manager's public API only, and imports ipywidgets,
which ``import athena_orch`` does not.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import pandas as pd

from . import display as d
from .capability_router import COMPONENTS, check_weights
from .exceptions import OrchestrationError, ValidationError
from .models import PRIORITIES, TaskStatus

if TYPE_CHECKING:  # pragma: no cover
    from .manager import OrchestrationManager

__all__ = [
    "RegisterAgentForm",
    "CreateTaskForm",
    "RoutingExplorer",
    "TaskBoard",
    "Dashboard",
    "dashboard",
    "parse_list",
]


def _wide() -> w.Layout:
    """A fresh layout per widget (a shared one would die with the first ``close()``)."""
    return w.Layout(width="36em")


_LABEL = {"description_width": "8em"}


def parse_list(text: str, name: str = "list") -> list[str]:
    """``"python, web ,"`` -> ``["python", "web"]`` (commas or new lines; blanks dropped)."""
    if not isinstance(text, str):
        raise ValidationError(f"{name} must be text, not {type(text).__name__}")
    parts = (p.strip() for line in text.splitlines() for p in line.split(","))
    return list(dict.fromkeys(p for p in parts if p))


def _task_label(row: Any, width: int = 48) -> str:
    content = str(row.content)
    content = content if len(content) <= width else content[: width - 1] + "…"
    return f"{content} · {row.task_type} · {row.status}"


def _bundle(form: Any, **kwargs: Any) -> Any:
    """Display a form as its widget, with a short, stable text form for plain consoles."""
    bundle = form.widget._repr_mimebundle_(**kwargs)
    if isinstance(bundle, dict):
        bundle["text/plain"] = f"<{type(form).__name__}: an ipywidgets form>"
    return bundle


class _Form:
    """Shared plumbing: a message area, change callbacks, display, CSS classes."""

    css_prefix = "athena"

    def __init__(self, orch: OrchestrationManager):
        self.orch = orch
        self.message = w.HTML(value="")
        self.message.add_class(f"{self.css_prefix}-message")
        self._listeners: list[Callable[[Any], None]] = []
        self._error: str | None = None
        self.widget: w.Widget

    def on_change(self, callback: Callable[[Any], None]) -> None:
        """Run ``callback(result)`` after every successful write of this form."""
        self._listeners.append(callback)

    def _changed(self, result: Any) -> None:
        for callback in self._listeners:
            callback(result)

    def _tag(self, **fields: w.Widget) -> None:
        for name, widget in fields.items():
            widget.add_class(f"{self.css_prefix}-{name.replace('_', '-')}")

    def show(self, text: str, kind: str = "info") -> None:
        """Put a message (escaped) in the form's message area."""
        self.message.value = d.message_html(text, kind)

    @property
    def error(self) -> str | None:
        """The message text when the last action failed, else None (handy in tests)."""
        return self._error

    def _attempt(self, action: Callable[[], Any]) -> tuple[bool, Any]:
        """Run ``action``; an OrchestrationError becomes the form's error message."""
        try:
            result = action()
        except OrchestrationError as exc:
            self._error = str(exc)
            self.show(str(exc), "error")
            return False, None
        self._error = None
        return True, result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, **kwargs)


# --------------------------------------------------------------------------- agents


class RegisterAgentForm(_Form):
    """Register an agent (or replace an existing one's capabilities and settings).

    Widgets: ``agent_id`` (Text), ``capabilities`` (Text, comma-separated),
    ``capacity`` (BoundedIntText, max concurrent tasks), ``active`` (Checkbox),
    ``submit`` (Button), ``message`` (HTML); ``last_agent`` is the Agent written last.
    """

    css_prefix = "athena-register-agent"

    def __init__(self, orch: OrchestrationManager):
        super().__init__(orch)
        self.agent_id = w.Text(
            description="Agent id", placeholder="e.g. research_bot", style=_LABEL, layout=_wide()
        )
        self.capabilities = w.Text(
            description="Capabilities", placeholder="python, web", style=_LABEL, layout=_wide()
        )
        self.capacity = w.BoundedIntText(
            value=5, min=1, max=10_000, description="Capacity", style=_LABEL
        )
        self.active = w.Checkbox(value=True, description="Active (routable)", style=_LABEL)
        self.submit = w.Button(
            description="Register agent", button_style="primary", icon="user-plus"
        )
        self.last_agent = None
        self._tag(
            agent_id=self.agent_id,
            capabilities=self.capabilities,
            capacity=self.capacity,
            active=self.active,
            submit=self.submit,
        )
        self.submit.on_click(lambda _: self.register())
        self.widget = w.VBox(
            [
                w.HTML("<b>Register an agent</b>"),
                self.agent_id,
                self.capabilities,
                self.capacity,
                self.active,
                self.submit,
                self.message,
            ]
        )

    def register(self) -> bool:
        """What the button does; True when the agent was written."""

        def action():
            agent_id = self.agent_id.value.strip()
            existed = bool(agent_id) and self.orch.registry.get_agent(agent_id) is not None
            agent = self.orch.registry.register_agent(
                agent_id,
                parse_list(self.capabilities.value, "capabilities"),
                {
                    "max_concurrent_tasks": int(self.capacity.value),
                    "active": bool(self.active.value),
                },
            )
            return existed, agent

        ok, result = self._attempt(action)
        if ok:
            existed, agent = result
            self.last_agent = agent
            caps = ", ".join(agent.capabilities) or "no capabilities"
            self.show(
                f"{'Updated' if existed else 'Registered'} agent {agent.id} ({caps}; "
                f"capacity {agent.max_concurrent_tasks})",
                "ok",
            )
            self.agent_id.value = ""
            self.capabilities.value = ""
            self._changed(agent)
        return ok


# --------------------------------------------------------------------------- tasks


class CreateTaskForm(_Form):
    """Create a task; dependencies are picked from the existing tasks.

    Widgets: ``content`` (Textarea), ``task_type`` (Combobox offering the known types),
    ``priority`` (Dropdown), ``requirements`` (Text, comma-separated capabilities),
    ``dependencies`` (SelectMultiple of existing tasks; values are task ids),
    ``max_retries`` (BoundedIntText), ``submit`` (Button), ``message`` (HTML).
    ``last_task_id`` is the id created last; ``refresh()`` reloads the task lists.
    """

    css_prefix = "athena-create-task"

    def __init__(self, orch: OrchestrationManager):
        super().__init__(orch)
        self.content = w.Textarea(
            description="Content",
            placeholder="What should be done?",
            rows=2,
            style=_LABEL,
            layout=_wide(),
        )
        self.task_type = w.Combobox(
            description="Type",
            placeholder="e.g. research",
            ensure_option=False,
            style=_LABEL,
            layout=_wide(),
        )
        self.priority = w.Dropdown(
            description="Priority", options=list(PRIORITIES), value="medium", style=_LABEL
        )
        self.requirements = w.Text(
            description="Requirements",
            placeholder="capabilities, comma-separated",
            style=_LABEL,
            layout=_wide(),
        )
        self.dependencies = w.SelectMultiple(
            description="Depends on", options=[], rows=6, style=_LABEL, layout=_wide()
        )
        self.max_retries = w.BoundedIntText(
            value=3, min=0, max=100, description="Max retries", style=_LABEL
        )
        self.submit = w.Button(description="Create task", button_style="primary", icon="plus")
        self.last_task_id: str | None = None
        self._tag(
            content=self.content,
            task_type=self.task_type,
            priority=self.priority,
            requirements=self.requirements,
            dependencies=self.dependencies,
            max_retries=self.max_retries,
            submit=self.submit,
        )
        self.submit.on_click(lambda _: self.create())
        self.widget = w.VBox(
            [
                w.HTML("<b>Create a task</b>"),
                self.content,
                self.task_type,
                self.priority,
                self.requirements,
                self.dependencies,
                self.max_retries,
                self.submit,
                self.message,
            ]
        )
        self.refresh()

    def refresh(self) -> None:
        """Reload the dependency choices, the known task types and capability hints."""
        frame = self.orch.queue.to_frame()
        chosen = set(self.dependencies.value)
        options = [(_task_label(row), row.task_id) for row in frame.itertuples(index=False)]
        self.dependencies.options = options
        self.dependencies.value = tuple(tid for _, tid in options if tid in chosen)
        self.task_type.options = sorted(set(frame["task_type"]))
        skills = self.orch.registry.get_agent_statistics().skill_distribution
        if skills:
            self.requirements.placeholder = "comma-separated, e.g. " + ", ".join(list(skills)[:4])

    def create(self) -> bool:
        """What the button does; True when the task was written."""

        def action():
            task_id = self.orch.queue.create_task(
                self.content.value,
                self.task_type.value.strip(),
                self.priority.value,
                parse_list(self.requirements.value, "requirements"),
                list(self.dependencies.value),
                max_retries=int(self.max_retries.value),
            )
            return self.orch.queue.get_task_status(task_id)

        ok, task = self._attempt(action)
        if ok:
            self.last_task_id = task.id
            self.show(f"Created task {task.id} ({task.status.value}): {task.content}", "ok")
            self.content.value = ""
            self.requirements.value = ""
            self.dependencies.value = ()
            self.refresh()
            self._changed(task)
        return ok


# --------------------------------------------------------------------------- routing


class RoutingExplorer(_Form):
    """Pick a task, see every agent's score components, move the weights, watch the ranks.

    Widgets: ``task`` (Dropdown of tasks; values are ids), ``sliders`` (dict component ->
    FloatSlider), ``reset`` (back to the router's weights), ``apply`` (make these the
    router's weights), ``table`` (HTML), ``chart`` (Image, viz's score breakdown),
    ``message``. ``frame`` is the last ``router.explain`` frame plus ``router_rank`` (the
    rank under the router's own weights) and ``moved`` (places gained by the new weights).
    Looking never writes; only ``apply`` changes ``router.weights`` (in this process).
    """

    css_prefix = "athena-routing"
    TABLE_COLUMNS = [
        "rank",
        "agent_id",
        "score",
        *COMPONENTS,
        "load",
        "capacity",
        "router_rank",
        "moved",
        "excluded_reason",
    ]

    def __init__(self, orch: OrchestrationManager, *, chart: bool = True):
        super().__init__(orch)
        self.task = w.Dropdown(description="Task", options=[], style=_LABEL, layout=_wide())
        self.sliders = {
            c: w.FloatSlider(
                value=float(orch.router.weights[c]),
                min=0.0,
                max=1.0,
                step=0.05,
                description=c,
                continuous_update=False,
                readout_format=".2f",
                style=_LABEL,
            )
            for c in COMPONENTS
        }
        self.reset = w.Button(description="Router weights", icon="undo")
        self.apply = w.Button(description="Use for routing", icon="check")
        self.table = w.HTML()
        self.chart = w.Image(format="png", layout=w.Layout(max_width="40em"))
        self._chart = chart
        self.frame: pd.DataFrame | None = None
        self._tag(
            task=self.task,
            reset=self.reset,
            apply=self.apply,
            table=self.table,
            **{f"weight_{c}": s for c, s in self.sliders.items()},
        )
        self._quiet = False
        for slider in self.sliders.values():
            slider.observe(lambda _: self.update(), names="value")
        self.task.observe(lambda _: self.update(), names="value")
        self.reset.on_click(lambda _: self.reset_weights())
        self.apply.on_click(lambda _: self.apply_weights())
        self.chart.layout.display = "" if chart else "none"
        self.widget = w.VBox(
            [
                w.HTML("<b>Routing explorer</b>"),
                self.task,
                w.HBox([w.VBox(list(self.sliders.values())), w.VBox([self.reset, self.apply])]),
                self.message,
                self.table,
                self.chart,
            ]
        )
        self.refresh_tasks()

    @property
    def weights(self) -> dict[str, float]:
        return {c: float(s.value) for c, s in self.sliders.items()}

    def refresh_tasks(self) -> None:
        """Reload the task choices (keeping the selection when it still exists)."""
        frame = self.orch.queue.to_frame()
        current = self.task.value
        options = [(_task_label(row), row.task_id) for row in frame.itertuples(index=False)]
        self._quiet = True
        try:
            self.task.options = options
            ids = [tid for _, tid in options]
            self.task.value = current if current in ids else (ids[0] if ids else None)
        finally:
            self._quiet = False
        self.update()

    def set_weights(self, weights: dict[str, float]) -> None:
        """Move several sliders at once (components left out go to 0), then update once."""
        unknown = sorted(set(weights) - set(COMPONENTS))
        if unknown:
            raise ValidationError(
                f"unknown weight components {unknown}; expected some of {list(COMPONENTS)}"
            )
        self._quiet = True
        try:
            for c, slider in self.sliders.items():
                slider.value = float(weights.get(c, 0.0))
        finally:
            self._quiet = False
        self.update()

    def reset_weights(self) -> None:
        """Back to the router's own weights."""
        self.set_weights(self.orch.router.weights)

    def apply_weights(self) -> bool:
        ok, weights = self._attempt(lambda: check_weights(self.weights))
        if ok:
            self.orch.router.weights = weights
            self.show("The router now uses these weights (in this process).", "ok")
            self.update(keep_message=True)
            self._changed(weights)
        return ok

    def update(self, keep_message: bool = False) -> None:
        """Recompute the table (and chart) for the chosen task and the slider weights."""
        if self._quiet:
            return
        if self.task.value is None:
            self.frame = None
            self.table.value = d.message_html("No task to explain yet: create one first.")
            self.chart.value = b""
            return
        task = self.orch.queue.get_task_status(self.task.value)
        if task is None:  # deleted meanwhile
            self.refresh_tasks()
            return
        ok, frame = self._attempt(lambda: self.orch.router.explain(task, weights=self.weights))
        if not ok:
            self.table.value = ""
            self.chart.value = b""
            return
        base = self.orch.router.explain(task).set_index("agent_id")["rank"]
        frame["router_rank"] = frame["agent_id"].map(base).astype("Int64")
        frame["moved"] = (frame["router_rank"] - frame["rank"]).astype("Int64")
        self.frame = frame
        if not keep_message:
            eligible = int(frame["rank"].notna().sum())
            best = frame["agent_id"].iloc[0] if eligible else None
            self.show(
                f"{len(task.requirements)} requirement(s) "
                f"[{', '.join(task.requirements) or 'none'}]: {eligible} eligible of "
                f"{len(frame)} agents; best: {best or 'nobody'}"
            )
        self.table.value = d.frame_html(
            frame,
            self.TABLE_COLUMNS,
            highlight=lambda row: bool(pd.notna(row["rank"]) and row["rank"] == 1),
            cells={"moved": _moved_cell, "agent_id": lambda a: f"<code>{d.esc(a)}</code>"},
            empty="no agents are registered",
        )
        self._draw(frame)

    def _draw(self, frame: pd.DataFrame) -> None:
        if not self._chart or frame.empty:
            self.chart.value = b""
            return
        from matplotlib.figure import Figure

        from .viz import plot_score_breakdown

        figure = Figure(figsize=(6.5, 0.35 * len(frame) + 1.2), dpi=80, layout="constrained")
        plot_score_breakdown(
            frame,
            ax=figure.subplots(),
            weights=self.weights,
            title="Score breakdown under the slider weights",
        )
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png")
        self.chart.value = buffer.getvalue()


def _moved_cell(value: Any) -> str:
    if value is None or value is pd.NA:
        return ""
    value = int(value)
    if value > 0:
        return f'<span style="color:{d.SUCCESS}">▲</span> {value}'
    if value < 0:
        return f'<span style="color:{d.ERROR}">▼</span> {-value}'
    return "="


# --------------------------------------------------------------------------- board


class TaskBoard(_Form):
    """Counts by state and a table of tasks, filtered by state and agent.

    Widgets: ``counts`` (HTML), ``status`` (Dropdown; "" = all), ``agent`` (Dropdown;
    "" = all), ``refresh_button`` (Button), ``table`` (HTML), ``message``. ``frame`` is
    the filtered task DataFrame; ``refresh()`` re-reads the store.
    """

    css_prefix = "athena-board"
    TABLE_COLUMNS = [
        "content",
        "task_type",
        "priority",
        "status",
        "assigned_to",
        "retry_count",
        "error",
    ]

    def __init__(self, orch: OrchestrationManager, *, max_rows: int = 50):
        super().__init__(orch)
        self.max_rows = max_rows
        self.counts = w.HTML()
        self.status = w.Dropdown(
            description="State",
            options=[("all states", "")] + [(s.value, s.value) for s in TaskStatus],
            value="",
            style=_LABEL,
        )
        self.agent = w.Dropdown(
            description="Agent", options=[("all agents", "")], value="", style=_LABEL
        )
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.table = w.HTML()
        self.frame: pd.DataFrame | None = None
        self._tag(
            counts=self.counts,
            status=self.status,
            agent=self.agent,
            refresh_button=self.refresh_button,
            table=self.table,
        )
        self._quiet = False
        self.status.observe(lambda _: self._render(), names="value")
        self.agent.observe(lambda _: self._render(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        self.widget = w.VBox(
            [
                w.HTML("<b>Task board</b>"),
                self.counts,
                w.HBox([self.status, self.agent, self.refresh_button]),
                self.message,
                self.table,
            ]
        )
        self.refresh()

    def refresh(self, *_: Any) -> None:
        """Re-read counts, agents and tasks from the store."""
        stats = self.orch.queue.get_queue_statistics()
        self.counts.value = (
            f'<div style="font-family: system-ui, sans-serif; {d.THEMED}">'
            f"{stats.total_count} tasks: "
            f"{d.status_counts_html(stats.by_status())}</div>"
        )
        agents = set(self.orch.registry.to_frame()["agent_id"])
        assigned = self.orch.queue.to_frame()["assigned_to"].dropna()
        names = sorted(agents | set(assigned))
        current = self.agent.value
        self._quiet = True
        try:
            self.agent.options = [("all agents", "")] + [(a, a) for a in names]
            self.agent.value = current if current in names else ""
        finally:
            self._quiet = False
        self._render()

    def _render(self) -> None:
        if self._quiet:
            return
        ok, frame = self._attempt(
            lambda: self.orch.queue.to_frame(
                status=self.status.value or None, agent_id=self.agent.value or None
            )
        )
        if not ok:
            return
        self.frame = frame
        self.show(f"{len(frame)} task(s) shown")
        self.table.value = d.frame_html(
            frame,
            self.TABLE_COLUMNS,
            max_rows=self.max_rows,
            empty="no tasks match",
            cells={"status": d.status_badge, "priority": d.priority_badge},
        )


# --------------------------------------------------------------------------- together


class Dashboard:
    """The four forms in tabs, wired so that a write refreshes the others."""

    def __init__(self, orch: OrchestrationManager, *, chart: bool = True):
        self.orch = orch
        self.board = TaskBoard(orch)
        self.create = CreateTaskForm(orch)
        self.register = RegisterAgentForm(orch)
        self.explorer = RoutingExplorer(orch, chart=chart)
        self.create.on_change(lambda _: (self.board.refresh(), self.explorer.refresh_tasks()))
        self.register.on_change(
            lambda _: (self.board.refresh(), self.create.refresh(), self.explorer.update())
        )
        self.explorer.on_change(lambda _: self.board.refresh())
        self.widget = w.Tab(
            children=[
                self.board.widget,
                self.create.widget,
                self.register.widget,
                self.explorer.widget,
            ]
        )
        for i, title in enumerate(["Board", "New task", "New agent", "Routing"]):
            self.widget.set_title(i, title)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, **kwargs)


def dashboard(orch: OrchestrationManager, *, chart: bool = True) -> Dashboard:
    """Every form in one tabbed widget; display the result in a notebook."""
    return Dashboard(orch, chart=chart)
