"""ipywidgets forms and live views over an :class:`~athena_orch.manager.OrchestrationManager`.

Each form is a small class that holds its widgets as attributes, so a test (or a
notebook) can set values and press buttons without a browser::

    form = CreateTaskForm(orch)
    form.content.value = "Summarise the logs"
    form.task_type.value = "writing"
    form.submit.click()
    form.message.value            # "✔ Created task …", "⚠ … click again" or "✖ <what was wrong>"
    form                          # displays form.widget in a notebook

Every error of a widget's callback is shown in that widget's ``message`` area (the
library's own errors as their message, anything else with its type), never only in the
log console; a form that failed wrote nothing. A closed manager is detected and said.
Writes that may surprise (replacing an agent, an agent without capabilities, a task no
active agent can take, a task on a failed dependency) are explained first and done on a
second click with the same values.

The board, the dependency picker, the routing explorer and the dashboard are live: they
refresh after every task event of their manager (``orch.events``: code cells, other
widgets, worker threads of this process) and, while ``auto`` is ticked, every
``interval`` seconds, which is how other processes' writes, agents and the router's
weights are followed. The refresh runs on a thread of the widget, under the widget's
lock, with short reads; ``close()`` stops it.

Every input widget carries a CSS class ``athena-<form>-<field>`` (e.g.
``athena-create-task-content``) so browser tests can find it.

This module is a face: it uses the manager's public API only, and imports ipywidgets,
which ``import athena_orch`` does not.
"""

from __future__ import annotations

import io
import re
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import ipywidgets as w
import pandas as pd

from . import display as d
from . import validation as v
from .capability_router import COMPONENTS, check_weights
from .exceptions import DatabaseLockedError, OrchestrationError, ValidationError
from .models import FINAL_STATES, PRIORITIES, Task, TaskStatus

if TYPE_CHECKING:  # pragma: no cover
    from .manager import OrchestrationManager

__all__ = [
    "RegisterAgentForm",
    "CreateTaskForm",
    "RoutingExplorer",
    "TaskBoard",
    "ManagerSummary",
    "Dashboard",
    "TaskApp",
    "dashboard",
    "parse_list",
]

ECHO_LIMIT = 120  # characters of a user's text echoed back in a message
AGENT_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}")
CLOSED = (
    "This manager is closed (orch.close() was called): nothing can be read or written. "
    "Connect again (athena_orch.connect(...)) and make a new widget."
)
MIN_GAP_S = 0.2  # a live view refreshes at most this often, however many events arrive


def _wide(width: str = "36em") -> w.Layout:
    """A fresh layout per widget (a shared one would die with the first ``close()``):
    ``width`` at most, the window's width in a narrow one."""
    return w.Layout(width="auto", max_width=width)


def _row(*children: w.Widget) -> w.HBox:
    """Controls side by side that wrap onto the next line in a narrow window."""
    return w.HBox(list(children), layout=w.Layout(flex_flow="row wrap"))


_LABEL = {"description_width": "8em"}


def parse_list(text: str, name: str = "list") -> list[str]:
    """``"python, web ,"`` -> ``["python", "web"]`` (commas or new lines; blanks dropped)."""
    if not isinstance(text, str):
        raise ValidationError(f"{name} must be text, not {type(text).__name__}")
    parts = (p.strip() for line in text.splitlines() for p in line.split(","))
    return list(dict.fromkeys(p for p in parts if p))


def clip(text: Any, limit: int = ECHO_LIMIT) -> str:
    """A user's text cut for an echo: ``"abc…" (20,000 characters)``."""
    text = str(text)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text):,} characters)"


def _title(row: Any) -> str:
    """What a task is called: its name when it has one, else its content."""
    name = getattr(row, "name", None)
    return str(name) if isinstance(name, str) and name else str(row.content)


def _task_label(row: Any, width: int = 70) -> str:
    title = _title(row)
    title = title if len(title) <= width else title[: width - 1] + "…"
    return f"{title} · {row.task_type} · {row.status} · {d.short_text(row.task_id)}"


def is_closed(orch: OrchestrationManager) -> bool:
    """Whether ``orch.close()`` was called."""
    return orch.closed


def _bundle(form: Any, **kwargs: Any) -> Any:
    """Display a form as its widget, with a short, stable text form for plain consoles."""
    bundle = form.widget._repr_mimebundle_(**kwargs)
    if isinstance(bundle, dict):
        bundle["text/plain"] = f"<{type(form).__name__}: an ipywidgets form>"
    return bundle


class _Form:
    """Shared plumbing: a message area, change callbacks, display, CSS classes, errors
    shown in the widget, a lock for live refreshes, and a live refresher when asked."""

    css_prefix = "athena"

    def __init__(self, orch: OrchestrationManager):
        self.orch = orch
        self.message = w.HTML(value="")
        self.message.add_class(f"{self.css_prefix}-message")
        self._listeners: list[Callable[[Any], None]] = []
        self._error: str | None = None
        self._lock = threading.RLock()  # a live refresh and a user's action never interleave
        self._confirming: Any = None  # the values a warning was shown for
        self.live: Live | None = None
        self.widget: w.Widget

    def on_change(self, callback: Callable[[Any], None]) -> None:
        """Run ``callback(result)`` after every successful write of this form."""
        self._listeners.append(callback)

    def _changed(self, result: Any) -> None:
        for callback in self._listeners:
            self._attempt(lambda callback=callback: callback(result), keep=True)

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

    def _fail(self, text: str) -> None:
        self._error = text
        self.show(text, "error")

    def _attempt(self, action: Callable[[], Any], *, keep: bool = False) -> tuple[bool, Any]:
        """Run ``action`` under the widget's lock; any error becomes the widget's message
        (the library's as its text, others with their type), a closed manager is said.
        ``keep``: leave the last error as it is when the action succeeds."""
        with self._lock:
            if is_closed(self.orch):
                self._fail(CLOSED)
                return False, None
            try:
                result = action()
            except OrchestrationError as exc:
                self._fail(CLOSED if is_closed(self.orch) else str(exc))
                return False, None
            except Exception as exc:  # noqa: BLE001 - shown in the widget, not the log
                self._fail(CLOSED if is_closed(self.orch) else f"{type(exc).__name__}: {exc}")
                return False, None
            if not keep:
                self._error = None
            return True, result

    def _callback(self, action: Callable[[], Any]) -> Callable[..., None]:
        """A widget callback (click, observe) whose errors appear in this widget."""
        return lambda *_: self._attempt(action)

    def _confirmed(self, values: Any, warnings: list[str], button: w.Button) -> bool:
        """True when there is nothing to warn about, or the user clicked again with the
        same values after the warning; else show the warning and wait for that click."""
        if not warnings or self._confirming == values:
            self._confirming = None
            return True
        self._confirming = values
        self.show(
            " ".join(warnings) + f" Click “{button.description}” again to go ahead.", "warning"
        )
        return False

    def refresh(self) -> None:
        """Re-read what the widget shows (each widget says what)."""

    def close(self) -> None:
        """Stop following the queue (the live thread and its event subscription)."""
        if self.live is not None:
            self.live.stop()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, **kwargs)


class Live:
    """Keeps a view current: refreshes it after each task event of its manager and,
    while ``auto`` is ticked, every ``interval`` seconds (other processes' writes,
    agents and router weights raise no events here). Widgets: ``auto`` (Checkbox),
    ``interval`` (BoundedFloatText, seconds), ``widget`` (both in a row)."""

    def __init__(self, view: _Form, *, interval: float = 2.0, auto: bool = True):
        self.view = view
        self.auto = w.Checkbox(
            value=auto, description="Auto-refresh", indent=False, layout=w.Layout(width="9em")
        )
        self.interval = w.BoundedFloatText(
            value=interval,
            min=0.5,
            max=3600.0,
            step=0.5,
            description="every (s)",
            style={"description_width": "5em"},
            layout=w.Layout(width="11em"),
        )
        view._tag(auto=self.auto, interval=self.interval)
        self.widget = _row(self.auto, self.interval)
        self.refreshes = 0  # how many automatic refreshes ran (tests and curious users)
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.auto.observe(lambda _: self._wake.set(), names="value")
        self.subscription = view.orch.events.subscribe(
            lambda _event: self._wake.set(), agent_id="athena-orch widgets"
        )
        self._thread = threading.Thread(
            target=self._run, daemon=True, name=f"athena-orch live {type(view).__name__}"
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing; harmless twice."""
        self._stopped.set()
        self._wake.set()
        if not is_closed(self.view.orch):
            self.subscription.close()

    def _run(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(float(self.interval.value))
            self._wake.clear()
            if self._stopped.is_set():
                return
            if not self.auto.value:
                continue
            if is_closed(self.view.orch):
                self.view._fail(CLOSED)
                return
            self.view._attempt(self.view.refresh, keep=True)
            self.refreshes += 1
            self._stopped.wait(MIN_GAP_S)


class ManagerSummary(_Form):
    """The manager's card (database, tasks by state, success rate, agents and their load,
    capabilities), kept live. Widgets: ``card`` (HTML), ``message``, ``live``."""

    css_prefix = "athena-summary"

    def __init__(self, orch: OrchestrationManager, *, live: bool = True, interval: float = 2.0):
        super().__init__(orch)
        self.card = w.HTML(layout=w.Layout(overflow="auto", max_width="100%"))
        self._tag(card=self.card)
        self.live = Live(self, interval=interval, auto=live)
        self.widget = w.VBox([self.card, self.message])
        self._attempt(self.refresh)

    def refresh(self) -> None:
        """Re-read the figures of the card."""
        with self._lock:
            # long paths and chip rows break rather than widen the card in a narrow window
            self.card.value = (
                f'<div style="overflow-wrap: anywhere">{d.manager_html(self.orch)}</div>'
            )


# --------------------------------------------------------------------------- agents


class RegisterAgentForm(_Form):
    """Register an agent, or replace an existing one's capabilities and settings once the
    user confirmed (a second click with the same values).

    Widgets: ``agent_id`` (Text: letters, digits and ``. _ - : @``), ``capabilities``
    (Text, comma-separated), ``capacity`` (IntText, how many tasks it runs at once, at
    least 1), ``active`` (Checkbox), ``submit`` (Button), ``message`` (HTML);
    ``last_agent`` is the Agent written last.
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
        self.capacity = w.IntText(value=5, description="Capacity", style=_LABEL)
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
                w.HTML(
                    d.muted(
                        "Capacity: how many tasks it runs at once (at least 1); "
                        "untick Active to stop routing to it."
                    )
                ),
                self.active,
                self.submit,
                self.message,
            ]
        )

    def _checked(self) -> tuple[str, list[str], int, bool]:
        agent_id = self.agent_id.value.strip()
        if not agent_id:
            raise ValidationError("agent_id must not be empty")
        if not AGENT_ID.fullmatch(agent_id):
            raise ValidationError(
                f"agent id {clip(agent_id, 40)!r} may use only letters, digits and . _ - : @ "
                "(no spaces), starting with a letter or digit, up to 128 characters"
            )
        capacity = int(self.capacity.value)
        if capacity < 1:
            raise ValidationError(
                f"capacity {capacity} is not allowed: it is how many tasks the agent runs at "
                "once, at least 1 (to stop routing to the agent, untick Active)"
            )
        capabilities = parse_list(self.capabilities.value, "capabilities")
        return agent_id, capabilities, capacity, bool(self.active.value)

    def register(self) -> bool:
        """What the button does; True when the agent was written."""

        def action():
            agent_id, capabilities, capacity, active = self._checked()
            existing = self.orch.registry.get_agent(agent_id)
            warnings = []
            if existing is not None:
                warnings.append(
                    f"⚠ Agent {agent_id} exists (capabilities "
                    f"{clip(', '.join(existing.capabilities) or 'none')}; capacity "
                    f"{existing.max_concurrent_tasks}): registering replaces them."
                )
            if not capabilities:
                warnings.append(
                    "⚠ No capabilities: the agent only gets tasks without requirements."
                )
            values = (agent_id, tuple(capabilities), capacity, active)
            if not self._confirmed(values, warnings, self.submit):
                return None
            agent = self.orch.registry.register_agent(
                agent_id, capabilities, {"max_concurrent_tasks": capacity, "active": active}
            )
            return existing is not None, agent

        ok, result = self._attempt(action)
        if not ok or result is None:
            return False
        existed, agent = result
        self.last_agent = agent
        caps = clip(", ".join(agent.capabilities) or "no capabilities")
        self.show(
            f"{'Replaced' if existed else 'Registered'} agent {agent.id} ({caps}; "
            f"capacity {agent.max_concurrent_tasks})",
            "ok",
        )
        self.agent_id.value = ""
        self.capabilities.value = ""
        self._changed(agent)
        return True


# --------------------------------------------------------------------------- tasks


class CreateTaskForm(_Form):
    """Create a task; dependencies are picked from the unfinished tasks.

    Widgets: ``content`` (Textarea), ``task_type`` (Combobox offering the known types),
    ``priority`` (Dropdown), ``requirements`` (Text, comma-separated capabilities),
    ``dependency_search`` (Text narrowing the picker), ``dependencies`` (SelectMultiple
    of unfinished tasks, chosen ones kept; values are task ids), ``max_retries``
    (BoundedIntText), ``submit`` (Button), ``message`` (HTML), ``live`` (auto-refresh).
    A task no active agent can take, or one on a failed, blocked or cancelled
    dependency, is explained and created on a second click. ``last_task_id`` is the id
    created last; ``refresh()`` reloads the task lists.
    """

    css_prefix = "athena-create-task"

    def __init__(self, orch: OrchestrationManager, *, live: bool = True, interval: float = 2.0):
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
        self.dependency_search = w.Text(
            description="Depends on",
            placeholder="search unfinished tasks (content, name, type, id)",
            style=_LABEL,
            layout=_wide("48em"),
        )
        self.dependencies = w.SelectMultiple(
            description="",
            options=[],
            rows=10,
            style=_LABEL,
            layout=w.Layout(width="calc(100% - 8.5em)", max_width="48em", margin="0 0 0 8.5em"),
        )
        self.max_retries = w.BoundedIntText(
            value=3, min=0, max=100, description="Max retries", style=_LABEL
        )
        self.submit = w.Button(description="Create task", button_style="primary", icon="plus")
        self.last_task_id: str | None = None
        self._frame: pd.DataFrame | None = None
        self._tag(
            content=self.content,
            task_type=self.task_type,
            priority=self.priority,
            requirements=self.requirements,
            dependency_search=self.dependency_search,
            dependencies=self.dependencies,
            max_retries=self.max_retries,
            submit=self.submit,
        )
        self.submit.on_click(lambda _: self.create())
        self.dependency_search.observe(self._callback(self._offer), names="value")
        self.live = Live(self, interval=interval, auto=live)
        self.widget = w.VBox(
            [
                w.HTML("<b>Create a task</b>"),
                self.content,
                self.task_type,
                self.priority,
                self.requirements,
                self.dependency_search,
                self.dependencies,
                self.max_retries,
                self.submit,
                self.message,
                self.live.widget,
            ]
        )
        self._attempt(self.refresh)

    def refresh(self) -> None:
        """Reload the dependency choices, the known task types and capability hints."""
        with self._lock:
            frame = self.orch.queue.to_frame()
            skills = self.orch.registry.get_agent_statistics().skill_distribution
            self._frame = frame
            types = sorted(set(frame["task_type"]))
            if list(self.task_type.options) != types:
                self.task_type.options = types
            if skills:
                self.requirements.placeholder = "comma-separated, e.g. " + ", ".join(
                    list(skills)[:4]
                )
            self._offer()

    def _offer(self) -> None:
        """The picker's options: unfinished tasks matching the search, and the chosen ones."""
        with self._lock:
            frame = self._frame
            chosen = set(self.dependencies.value)
            unfinished = ~frame["status"].isin([s.value for s in FINAL_STATES])
            shown = frame[
                (unfinished & _matches(frame, self.dependency_search.value))
                | frame["task_id"].isin(chosen)
            ]
            options = [(_task_label(row), row.task_id) for row in shown.itertuples(index=False)]
            if list(self.dependencies.options) != options:
                self.dependencies.options = options
                self.dependencies.value = tuple(tid for _, tid in options if tid in chosen)

    def _warnings(self, requirements: list[str], dependencies: list[str]) -> list[str]:
        warnings = []
        agents = self.orch.registry.to_frame()
        able = [
            row.agent_id
            for row in agents.itertuples(index=False)
            if row.active and set(requirements) <= set(row.capabilities)
        ]
        if not able:
            needs = (
                f"all of the requirements {clip(', '.join(requirements))}"
                if requirements
                else "been registered"
            )
            warnings.append(
                f"⚠ No active agent has {needs}: the task would wait until one is "
                "registered or activated."
            )
        for dep in dependencies:
            task = self.orch.queue.get_task_status(dep)
            if task is not None and task.status in (
                TaskStatus.FAILED,
                TaskStatus.BLOCKED,
                TaskStatus.CANCELLED,
            ):
                warnings.append(
                    f"⚠ Dependency “{clip(_title(task), 60)}” is {task.status.value}: the "
                    "new task will be blocked and never run."
                )
        return warnings

    def create(self) -> bool:
        """What the button does; True when the task was written."""

        def action():
            v.text("content", self.content.value, bounded=False)  # errors before warnings
            v.text("task_type", self.task_type.value.strip())
            requirements = parse_list(self.requirements.value, "requirements")
            dependencies = list(self.dependencies.value)
            values = (
                self.content.value,
                self.task_type.value.strip(),
                self.priority.value,
                tuple(requirements),
                tuple(dependencies),
                int(self.max_retries.value),
            )
            warnings = self._warnings(requirements, dependencies)
            if not self._confirmed(values, warnings, self.submit):
                return None
            task_id = self.orch.queue.create_task(
                self.content.value,
                self.task_type.value.strip(),
                self.priority.value,
                requirements,
                dependencies,
                max_retries=int(self.max_retries.value),
            )
            return self.orch.queue.get_task_status(task_id), warnings

        ok, result = self._attempt(action)
        if not ok or result is None:
            return False
        task, warnings = result
        self.last_task_id = task.id
        self.show(
            f"Created task {task.id} ({task.status.value}): {clip(task.content)}"
            + "".join(f" {text}" for text in warnings),
            "ok",
        )
        self.content.value = ""
        self.requirements.value = ""
        self.dependencies.value = ()
        self._attempt(self.refresh, keep=True)
        self._changed(task)
        return True


def _matches(frame: pd.DataFrame, text: str) -> pd.Series:
    """Rows whose id, name, content, type, state, agent, requirements or error contain
    ``text`` (case-insensitive; a phrase, so "task 4" does not match every id with a 4)."""
    phrase = " ".join(text.lower().split())
    found = pd.Series(not phrase, index=frame.index)
    if not phrase:
        return found
    columns = [
        "task_id",
        "name",
        "content",
        "task_type",
        "status",
        "assigned_to",
        "requirements",
        "error",
    ]
    for column in columns:
        if column in frame.columns:
            values = frame[column].map(lambda x: "" if x is None or x is pd.NA else str(x))
            found |= values.str.lower().str.contains(phrase, regex=False)
    return found


# --------------------------------------------------------------------------- routing


class RoutingExplorer(_Form):
    """Pick a task, see every agent's score components, move the weights, watch the ranks.

    Widgets: ``task`` (Dropdown of tasks; values are ids), ``sliders`` (dict component ->
    FloatSlider), ``reset`` (back to the router's weights), ``apply`` (make these the
    router's weights), ``table`` (HTML), ``chart`` (Image, viz's score breakdown),
    ``message``. ``frame`` is the last ``router.explain`` frame plus ``router_rank`` (the
    rank under the router's own weights) and ``moved`` (places gained by the new weights).
    Looking never writes; only ``apply`` changes ``router.weights`` (in this process).
    Live (``live``): the task list follows the queue, and the sliders follow
    ``router.weights`` when it is changed elsewhere.
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

    def __init__(
        self,
        orch: OrchestrationManager,
        *,
        chart: bool = True,
        live: bool = True,
        interval: float = 2.0,
    ):
        super().__init__(orch)
        self._router_weights = dict(orch.router.weights)
        self._drawn: tuple | None = None  # (task, weights, explain frame) last drawn
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
            slider.observe(self._callback(self.update), names="value")
        self.task.observe(self._callback(self.update), names="value")
        self.reset.on_click(self._callback(self.reset_weights))
        self.apply.on_click(lambda _: self.apply_weights())
        self.live = Live(self, interval=interval, auto=live)
        self.chart.layout.display = "" if chart else "none"
        self.widget = w.VBox(
            [
                w.HTML("<b>Routing explorer</b>"),
                self.task,
                w.HBox([w.VBox(list(self.sliders.values())), w.VBox([self.reset, self.apply])]),
                self.message,
                self.table,
                self.chart,
                self.live.widget,
            ]
        )
        self._attempt(self.refresh_tasks)

    @property
    def weights(self) -> dict[str, float]:
        return {c: float(s.value) for c, s in self.sliders.items()}

    def refresh(self) -> None:
        """Follow ``router.weights`` when it changed elsewhere, then reload the tasks."""
        with self._lock:
            weights = dict(self.orch.router.weights)
            if weights != self._router_weights:
                self._router_weights = weights
                self.set_weights(weights)
                self.show("The router's weights were changed elsewhere: the sliders show them.")
            self.refresh_tasks(keep_message=True)

    def refresh_tasks(self, keep_message: bool = False) -> None:
        """Reload the task choices (keeping the selection when it still exists)."""
        with self._lock:
            frame = self.orch.queue.to_frame()
            current = self.task.value
            options = [(_task_label(row), row.task_id) for row in frame.itertuples(index=False)]
            self._quiet = True
            try:
                if list(self.task.options) != options:
                    self.task.options = options
                ids = [tid for _, tid in options]
                self.task.value = current if current in ids else (ids[0] if ids else None)
            finally:
                self._quiet = False
            self.update(keep_message=keep_message)

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
            self._router_weights = dict(weights)
            self.show("The router now uses these weights (in this process).", "ok")
            self._attempt(lambda: self.update(keep_message=True))
            self._changed(weights)
        return ok

    def update(self, keep_message: bool = False) -> None:
        """Recompute the table (and chart) for the chosen task and the slider weights
        (nothing is redrawn when neither they nor the scores changed)."""
        if self._quiet:
            return
        if self.task.value is None:
            self.frame = None
            self._drawn = None
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
            self._drawn = None
            return
        drawn = (task, tuple(self.weights.items()), frame.copy())
        if (
            keep_message
            and self._drawn is not None
            and drawn[:2] == self._drawn[:2]
            and frame.equals(self._drawn[2])
        ):
            return
        self._drawn = drawn
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

SORTS = {
    "queue order": None,
    "newest first": ("created_at", False),
    "oldest first": ("created_at", True),
    "recently finished": ("completed_at", False),
    "state": ("status", True),
    "agent": ("assigned_to", True),
}


class TaskBoard(_Form):
    """Counts by state and a page of tasks: sorted, searched, filtered by state and agent.

    Widgets: ``counts`` (HTML), ``status`` (Dropdown; "" = all), ``agent`` (Dropdown;
    "" = all), ``sort`` (Dropdown of :data:`SORTS`), ``search`` (Text: a phrase found in
    the id, name, content, type, state, agent, requirements or error),
    ``previous`` / ``next`` (Buttons), ``page_label`` (HTML), ``refresh_button``,
    ``table`` (HTML; the task shown in the card is highlighted), ``open`` (Dropdown of the
    page's rows: picking one opens its card), ``card`` (HTML: the task, its history and
    its dependencies), ``message``, ``live`` (auto-refresh). ``frame`` is every task
    matching the filters, sorted; ``page`` is the page shown (from 0); ``reveal(task)``
    jumps to a task (the dashboard does so after a create).
    """

    css_prefix = "athena-board"
    TABLE_COLUMNS = [
        "task_id",
        "name",
        "content",
        "task_type",
        "priority",
        "status",
        "assigned_to",
        "created_at",
        "retry_count",
        "error",
    ]

    def __init__(
        self,
        orch: OrchestrationManager,
        *,
        page_size: int = 25,
        sort: str = "newest first",
        live: bool = True,
        interval: float = 2.0,
    ):
        super().__init__(orch)
        self.page_size = page_size
        self.page = 0
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
        self.sort = w.Dropdown(description="Sort", options=list(SORTS), value=sort, style=_LABEL)
        self.search = w.Text(
            description="Search",
            placeholder="words of content, name, id…",
            style=_LABEL,
            layout=_wide(),
        )
        self.previous = w.Button(description="Previous", icon="chevron-left")
        self.next = w.Button(description="Next", icon="chevron-right")
        self.page_label = w.HTML()
        self.refresh_button = w.Button(description="Refresh", icon="refresh")
        self.table = w.HTML(layout=w.Layout(overflow="auto", max_width="100%"))  # scrolls
        self.open = w.Dropdown(
            description="Open",
            options=[("— pick a row —", None)],
            value=None,
            style=_LABEL,
            layout=_wide("48em"),
        )
        self.card = w.HTML()
        self.frame: pd.DataFrame | None = None
        self.selected: str | None = None
        self._tag(
            counts=self.counts,
            status=self.status,
            agent=self.agent,
            sort=self.sort,
            search=self.search,
            previous=self.previous,
            next=self.next,
            page_label=self.page_label,
            refresh_button=self.refresh_button,
            table=self.table,
            open=self.open,
            card=self.card,
        )
        self._quiet = False
        for control in (self.status, self.agent, self.sort, self.search):
            control.observe(self._callback(self._filtered), names="value")
        self.previous.on_click(self._callback(lambda: self._turn(-1)))
        self.next.on_click(self._callback(lambda: self._turn(1)))
        self.open.observe(self._callback(self._picked), names="value")
        self.refresh_button.on_click(self._callback(self.refresh))
        self.live = Live(self, interval=interval, auto=live)
        self.widget = w.VBox(
            [
                w.HTML("<b>Task board</b>"),
                self.counts,
                _row(self.status, self.agent, self.sort),
                _row(self.search, self.refresh_button),
                _row(self.previous, self.page_label, self.next),
                self.message,
                self.table,
                self.open,
                self.card,
                self.live.widget,
            ]
        )
        self._attempt(self.refresh)

    def refresh(self, *_: Any) -> None:
        """Re-read counts, agents and tasks from the store (the page and card stay)."""
        with self._lock:
            stats = self.orch.queue.get_queue_statistics()
            agents = set(self.orch.registry.to_frame()["agent_id"])
            tasks = self.orch.queue.to_frame()
            self.counts.value = (
                f'<div style="font-family: system-ui, sans-serif; {d.THEMED}">'
                f"{stats.total_count} tasks: "
                f"{d.status_counts_html(stats.by_status())}</div>"
            )
            names = sorted(agents | set(tasks["assigned_to"].dropna()))
            current = self.agent.value
            self._quiet = True
            try:
                options = [("all agents", "")] + [(a, a) for a in names]
                if list(self.agent.options) != options:
                    self.agent.options = options
                self.agent.value = current if current in names else ""
            finally:
                self._quiet = False
            self._render(tasks)

    def reveal(self, task: Task | str) -> None:
        """Show a task: clear the filters that hide it, turn to its page, open its card."""
        task_id = task.id if isinstance(task, Task) else task
        with self._lock:
            tasks = self.orch.queue.to_frame()
            self._quiet = True
            try:
                if self._select(tasks).loc[lambda f: f["task_id"] == task_id].empty:
                    self.status.value, self.agent.value, self.search.value = "", "", ""
            finally:
                self._quiet = False
            self.selected = task_id
            self._render(tasks)
            where = (self.frame["task_id"] == task_id).to_numpy().nonzero()[0]
            if len(where):
                self.page = int(where[0]) // self.page_size
                self._render(tasks)

    def _filtered(self) -> None:
        """A filter, the search or the sort changed: back to the first page."""
        if self._quiet:
            return
        self.page = 0
        self._render()

    def _turn(self, step: int) -> None:
        self.page += step
        self._render()

    def _picked(self) -> None:
        if self._quiet or self.open.value is None:
            return
        self.selected = self.open.value
        self._render()

    def _select(self, tasks: pd.DataFrame) -> pd.DataFrame:
        """The tasks matching the filters and search, in the chosen order."""
        frame = tasks
        if self.status.value:
            frame = frame[frame["status"] == self.status.value]
        if self.agent.value:
            frame = frame[frame["assigned_to"] == self.agent.value]
        frame = frame[_matches(frame, self.search.value)]
        order = SORTS[self.sort.value]
        if order is not None:
            column, ascending = order
            frame = frame.sort_values(
                column, ascending=ascending, kind="stable", na_position="last"
            )
        return frame.reset_index(drop=True)

    def _render(self, tasks: pd.DataFrame | None = None) -> None:
        if self._quiet:
            return
        with self._lock:
            frame = self._select(self.orch.queue.to_frame() if tasks is None else tasks)
            self.frame = frame
            pages = max(1, -(-len(frame) // self.page_size))
            self.page = min(max(self.page, 0), pages - 1)
            first = self.page * self.page_size
            shown = frame.iloc[first : first + self.page_size]
            self.previous.disabled = self.page == 0
            self.next.disabled = self.page >= pages - 1
            self.page_label.value = (
                f'<span style="{d.THEMED}">rows {first + 1}–{first + len(shown)} of '
                f"{len(frame)} · page {self.page + 1} of {pages}</span>"
                if len(shown)
                else f'<span style="{d.THEMED}">no rows</span>'
            )
            self.show(f"{len(frame)} task(s) match")
            self.table.value = d.frame_html(
                shown,
                self.TABLE_COLUMNS,
                max_rows=self.page_size,
                empty="no tasks match",
                highlight=lambda row: row["task_id"] == self.selected,
                cells={"status": d.status_badge, "priority": d.priority_badge,
                       "task_id": d.short_id},
            )
            self._quiet = True
            try:
                options = [("— pick a row —", None)] + [
                    (f"{first + i + 1}. {_task_label(row)}", row.task_id)
                    for i, row in enumerate(shown.itertuples(index=False))
                ]
                if list(self.open.options) != options:
                    self.open.options = options
                self.open.value = (
                    self.selected if self.selected in shown["task_id"].values else None
                )
            finally:
                self._quiet = False
            self.card.value = self._card(self.selected) if self.selected else ""

    def _card(self, task_id: str) -> str:
        """The task's card, its history and where it stands with its dependencies."""
        task = self.orch.queue.get_task_status(task_id)
        if task is None:
            return d.message_html("That task no longer exists.")
        history = pd.DataFrame(self.orch.queue.get_task_history(task_id))
        status = self.orch.queue.get_dependency_status(task_id)
        deps = pd.DataFrame(
            [{"dependency": dep, "status": state} for dep, state in status["dependencies"].items()]
        )
        waiting = len(status["waiting_on"])
        summary = (
            "ready to be claimed"
            if status["ready"]
            else f"waiting on {waiting} of {len(deps)} dependencies"
            if waiting
            else f"{task.status.value}"
        )
        return (
            d.task_html(task)
            + f'<div style="{d.THEMED}"><b>History</b></div>'
            + d.frame_html(
                history,
                ["at", "from_status", "to_status", "agent_id", "detail"],
                max_rows=100,
                empty="no history",
            )
            + f'<div style="{d.THEMED}"><b>Dependencies</b>: {d.esc(summary)}; '
            f"{len(status['dependents'])} task(s) depend on it</div>"
            + d.frame_html(deps, empty="no dependencies", cells={"status": d.status_badge})
        )


# --------------------------------------------------------------------------- together


class Dashboard:
    """The four forms in tabs, live, wired so that a new task is shown on the board."""

    def __init__(
        self,
        orch: OrchestrationManager,
        *,
        chart: bool = True,
        live: bool = True,
        interval: float = 2.0,
    ):
        self.orch = orch
        self.board = TaskBoard(orch, live=live, interval=interval)
        self.create = CreateTaskForm(orch, live=live, interval=interval)
        self.register = RegisterAgentForm(orch)
        self.explorer = RoutingExplorer(orch, chart=chart, live=live, interval=interval)
        self.create.on_change(lambda task: (self.board.reveal(task), self.explorer.refresh_tasks()))
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

    def close(self) -> None:
        """Stop the live refreshes of every part."""
        for part in (self.board, self.create, self.explorer):
            part.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, **kwargs)


def dashboard(
    orch: OrchestrationManager, *, chart: bool = True, live: bool = True, interval: float = 2.0
) -> Dashboard:
    """Every form in one tabbed widget, live; display the result in a notebook."""
    return Dashboard(orch, chart=chart, live=live, interval=interval)


# --------------------------------------------------------------------------- the app

HELD_WAIT_S = 15.0  # how long the app waits for a DuckDB file another process holds


def connect_patiently(path: str | None, *, wait: float = HELD_WAIT_S) -> OrchestrationManager:
    """``athena_orch.connect(path)``, retried for up to ``wait`` seconds while another
    process holds the DuckDB file: on a reload, the page's previous kernel is still
    shutting down when the new one starts. Raises the last DatabaseLockedError."""
    from . import connect  # looked up when called, so a redirected connect applies

    deadline = time.monotonic() + wait
    while True:
        try:
            return connect(path)
        except DatabaseLockedError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.5)


def held_html(error: DatabaseLockedError) -> str:
    """What a visitor reads when the DuckDB file is held: what happened, by whom, what to do."""
    pid = re.search(r"PID (\d+)", str(error))
    holder = f"another process (PID {pid.group(1)})" if pid else "another process"
    return (
        f'<div class="athena-held" style="{d.THEMED} border-left: 4px solid {d.WARNING}; '
        'padding: 8px 12px; font-family: system-ui, sans-serif; font-size: 14px; line-height: 1.45; '
        'max-width: 40em; overflow-wrap: anywhere;">'
        "<b>The task board is open somewhere else</b>"
        f"<p>Its database is a DuckDB file, which one process may use at a time, and "
        f"{d.esc(holder)} holds it: most likely this app in another browser tab or "
        "window.</p><p>What to do: close the other tab and reload this page (the file is "
        "free a few seconds later; a tab that vanished without closing lets go within "
        "about two minutes). For several visitors at once, serve the app on PostgreSQL: "
        "<code>ATHENA_ORCH_DB=postgresql://…</code>.</p>"
        f"<details><summary>Details</summary><code>{d.esc(error)}</code></details></div>"
    )


class TaskApp:
    """The Voila page: the live manager summary, the create form and the board in one
    column that fits a narrow window; a new task is shown on the board.

    ``prepare(orch)`` runs once connected, before the views read anything (e.g. to
    register the team). When another process holds the DuckDB file for longer than
    ``wait`` seconds, the page is ``notice`` (:func:`held_html`) instead, and ``orch``
    and the views are None.
    """

    def __init__(
        self,
        path: str | None,
        *,
        prepare: Callable[[OrchestrationManager], Any] | None = None,
        wait: float = HELD_WAIT_S,
        interval: float = 2.0,
    ):
        self.orch: OrchestrationManager | None = None
        self.summary: ManagerSummary | None = None
        self.form: CreateTaskForm | None = None
        self.board: TaskBoard | None = None
        self.notice = w.HTML()
        try:
            self.orch = connect_patiently(path, wait=wait)
        except DatabaseLockedError as exc:
            self.notice.value = held_html(exc)
            self.widget: w.Widget = self.notice
            return
        if prepare is not None:
            prepare(self.orch)
        self.summary = ManagerSummary(self.orch, interval=interval)
        self.form = CreateTaskForm(self.orch, interval=interval)
        self.board = TaskBoard(self.orch, interval=interval)
        self.form.on_change(self.board.reveal)
        self.widget = w.VBox([self.summary.widget, self.form.widget, self.board.widget])

    def close(self) -> None:
        """Stop the live views and close the manager (harmless on the notice)."""
        for view in (self.summary, self.form, self.board):
            if view is not None:
                view.close()
        if self.orch is not None:
            self.orch.close()

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return _bundle(self, **kwargs)
