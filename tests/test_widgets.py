"""The ipywidgets forms, driven as a user would: set values, click, read the store."""

from __future__ import annotations

import re

import pytest

import athena_orch

widgets = pytest.importorskip("athena_orch.widgets")




def task_count(orch) -> int:
    return orch.queue.get_queue_statistics().total_count


# --------------------------------------------------------------------------- helpers


def test_parse_list():
    assert widgets.parse_list(" python, web ,,\nsql, python ") == ["python", "web", "sql"]
    assert widgets.parse_list("") == []


# --------------------------------------------------------------------------- agents


def test_register_agent(orch):
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "research_bot"
    form.capabilities.value = "python, web"
    form.capacity.value = 3
    form.active.value = False
    form.submit.click()
    agent = orch.registry.get_agent("research_bot")
    assert agent.capabilities == ["python", "web"]
    assert agent.max_concurrent_tasks == 3 and agent.active is False
    assert "Registered agent research_bot" in form.message.value
    assert form.error is None and form.last_agent.id == "research_bot"
    assert form.agent_id.value == "" and form.capabilities.value == ""  # ready for the next


def test_register_existing_agent_says_updated(orch):
    orch.registry.register_agent("bot", ["python"])
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "bot"
    form.capabilities.value = "sql"
    form.submit.click()
    assert "Updated agent bot" in form.message.value
    assert orch.registry.get_agent_capability("bot") == ["sql"]


def test_register_agent_bad_input_shows_error_and_writes_nothing(orch):
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "   "
    form.capabilities.value = "python"
    form.submit.click()
    assert "agent_id must not be empty" in form.message.value
    assert "athena-message-error" in form.message.value
    assert "Traceback" not in form.message.value
    assert form.error == "agent_id must not be empty"
    assert orch.registry.to_frame().empty


def test_on_change_runs_after_success_only(orch):
    form = widgets.RegisterAgentForm(orch)
    seen = []
    form.on_change(seen.append)
    form.submit.click()  # empty id: an error
    assert seen == []
    form.agent_id.value = "a"
    form.submit.click()
    assert [a.id for a in seen] == ["a"]


# --------------------------------------------------------------------------- tasks


def test_create_task(orch):
    form = widgets.CreateTaskForm(orch)
    form.content.value = "Find async patterns"
    form.task_type.value = "research"
    form.priority.value = "high"
    form.requirements.value = "python, web"
    form.max_retries.value = 1
    form.submit.click()
    assert task_count(orch) == 1
    task = orch.queue.get_task_status(form.last_task_id)
    assert (task.content, task.task_type, task.priority) == (
        "Find async patterns",
        "research",
        "high",
    )
    assert task.requirements == ["python", "web"] and task.max_retries == 1
    assert "Created task" in form.message.value and "pending" in form.message.value
    assert form.content.value == ""  # cleared for the next one
    assert form.task_type.options == ("research",)  # known types are offered
    assert [tid for _, tid in form.dependencies.options] == [task.id]


def test_create_task_with_dependencies_picked_from_existing_tasks(orch):
    first = orch.queue.create_task("first", "research")
    second = orch.queue.create_task("second", "research")
    orch.queue.create_task("third", "research")
    form = widgets.CreateTaskForm(orch)
    labels = dict((tid, label) for label, tid in form.dependencies.options)
    assert labels[first] == "first · research · pending"
    form.content.value = "summarise"
    form.task_type.value = "writing"
    form.dependencies.value = (first, second)
    form.submit.click()
    task = orch.queue.get_task_status(form.last_task_id)
    assert task.dependencies == [first, second]
    assert form.dependencies.value == ()
    assert orch.queue.get_dependency_status(task.id)["waiting_on"] == [first, second]


def test_dependency_on_a_failed_task_creates_a_blocked_task(orch):
    dep = orch.queue.create_task("doomed", "x", max_retries=0)
    orch.queue.assign_task(dep, "someone")
    orch.queue.fail_task(dep, "broken")
    form = widgets.CreateTaskForm(orch)
    form.content.value = "after"
    form.task_type.value = "x"
    form.dependencies.value = (dep,)
    form.submit.click()
    assert "(blocked)" in form.message.value


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("content", "", "content must not be empty"),
        ("task_type", "  ", "task_type must not be empty"),
    ],
)
def test_create_task_bad_input_shows_error_and_writes_nothing(orch, field, value, expected):
    form = widgets.CreateTaskForm(orch)
    form.content.value = "ok"
    form.task_type.value = "ok"
    getattr(form, field).value = value
    form.submit.click()
    assert expected in form.message.value
    assert "athena-message-error" in form.message.value
    assert form.last_task_id is None
    assert task_count(orch) == 0


def test_create_task_on_a_vanished_dependency_shows_error(orch):
    dep = orch.queue.create_task("gone", "x")
    form = widgets.CreateTaskForm(orch)
    form.content.value = "after"
    form.task_type.value = "x"
    form.dependencies.value = (dep,)
    orch.close()  # the store goes away under the form: still a message, no traceback
    with athena_orch.connect() as other:
        form.orch = other
        form.submit.click()
        assert "unknown tasks" in form.message.value
        assert task_count(other) == 0


def test_refresh_keeps_the_selection(orch):
    first = orch.queue.create_task("first", "x")
    form = widgets.CreateTaskForm(orch)
    form.dependencies.value = (first,)
    orch.queue.create_task("second", "y")
    form.refresh()
    assert form.dependencies.value == (first,)
    assert len(form.dependencies.options) == 2
    assert form.task_type.options == ("x", "y")


def test_requirements_placeholder_lists_known_capabilities(orch):
    orch.registry.register_agent("bot", ["python", "sql"])
    form = widgets.CreateTaskForm(orch)
    assert "python, sql" in form.requirements.placeholder


# --------------------------------------------------------------------------- routing


@pytest.fixture
def team(orch):
    """Two python agents: 'veteran' has a long record and some load; 'rookie' is idle."""
    orch.registry.register_agent("veteran", ["python"], {"max_concurrent_tasks": 10})
    orch.registry.register_agent("rookie", ["python"], {"max_concurrent_tasks": 4})
    orch.registry.register_agent("writer", ["writing"])
    for _ in range(20):
        orch.registry.update_agent_performance("veteran", True, 1000)
    busy = orch.queue.create_task("busy", "x", requirements=["python"])
    orch.queue.assign_task(busy, "veteran")
    task = orch.queue.create_task("route me", "research", "high", ["python"])
    return orch, task


def test_routing_explorer_ranks_and_reacts_to_sliders(team):
    orch, task = team
    explorer = widgets.RoutingExplorer(orch, chart=False)
    explorer.task.value = task
    frame = explorer.frame
    assert frame["agent_id"].tolist()[:2] == ["veteran", "rookie"]
    assert {
        "track_record",
        "headroom",
        "speed",
        "fit",
        "score",
        "rank",
        "router_rank",
        "moved",
    } <= set(frame.columns)
    assert "missing capabilities: python" in explorer.table.value  # writer is shown, excluded
    assert "2 eligible of 3 agents; best: veteran" in explorer.message.value

    for component, slider in explorer.sliders.items():
        slider.value = 1.0 if component == "headroom" else 0.0
    frame = explorer.frame
    assert frame["agent_id"].iloc[0] == "rookie"
    rookie = frame.set_index("agent_id").loc["rookie"]
    assert (rookie["rank"], rookie["router_rank"], rookie["moved"]) == (1, 2, 1)
    text = re.sub("<[^>]+>", "", explorer.table.value)
    assert "▲ 1" in text and "▼ 1" in text
    assert orch.router.weights["headroom"] == pytest.approx(0.3)  # looking never writes
    assert orch.router.decisions().empty


def test_routing_explorer_apply_and_reset(team):
    orch, task = team
    explorer = widgets.RoutingExplorer(orch, chart=False)
    explorer.task.value = task
    explorer.sliders["track_record"].value = 0.0
    explorer.apply.click()
    assert orch.router.weights["track_record"] == 0.0
    assert "now uses these weights" in explorer.message.value
    orch.router.weights = {"track_record": 0.4, "headroom": 0.3, "speed": 0.15, "fit": 0.15}
    explorer.reset.click()
    assert explorer.weights["track_record"] == pytest.approx(0.4)


def test_routing_explorer_all_zero_weights_is_an_error_in_the_form(team):
    orch, task = team
    explorer = widgets.RoutingExplorer(orch, chart=False)
    explorer.task.value = task
    for slider in explorer.sliders.values():
        slider.value = 0.0
    assert "weights must not all be zero" in explorer.message.value
    assert explorer.table.value == ""
    explorer.apply.click()
    assert "weights must not all be zero" in explorer.message.value
    assert orch.router.weights["track_record"] == pytest.approx(0.4)


def test_routing_explorer_without_tasks(orch):
    explorer = widgets.RoutingExplorer(orch, chart=False)
    assert explorer.frame is None
    assert "create one first" in explorer.table.value
    orch.queue.create_task("new", "x")
    explorer.refresh_tasks()
    assert explorer.task.value is not None
    assert "no agents are registered" in explorer.table.value


def test_routing_explorer_draws_the_chart(team):
    orch, task = team
    explorer = widgets.RoutingExplorer(orch, chart=True)
    explorer.task.value = task
    assert explorer.chart.value[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- board


def test_task_board_counts_filters_and_refresh(team):
    orch, _ = team
    board = widgets.TaskBoard(orch)
    assert "2 tasks" in board.counts.value
    assert len(board.frame) == 2
    assert [label for label, _ in board.agent.options] == [
        "all agents",
        "rookie",
        "veteran",
        "writer",
    ]
    board.status.value = "assigned"
    assert board.frame["content"].tolist() == ["busy"]
    board.status.value = ""
    board.agent.value = "veteran"
    assert board.frame["content"].tolist() == ["busy"]
    board.agent.value = "rookie"
    assert board.frame.empty and "no tasks match" in board.table.value

    orch.queue.create_task("later", "x")
    board.refresh_button.click()
    assert "3 tasks" in board.counts.value
    assert board.agent.value == "rookie"  # the filter survives a refresh


def test_task_board_escapes_content(orch):
    orch.queue.create_task("<img src=x onerror=alert(1)>", "x")
    board = widgets.TaskBoard(orch)
    assert "<img" not in board.table.value and "&lt;img" in board.table.value


# --------------------------------------------------------------------------- together


def test_dashboard_wires_forms_together(orch):
    dash = widgets.dashboard(orch, chart=False)
    dash.register.agent_id.value = "bot"
    dash.register.capabilities.value = "python"
    dash.register.submit.click()
    dash.create.content.value = "do it"
    dash.create.task_type.value = "x"
    dash.create.requirements.value = "python"
    dash.create.submit.click()
    assert "1 tasks" in dash.board.counts.value
    assert dash.explorer.task.value == dash.create.last_task_id
    assert dash.explorer.frame["agent_id"].tolist() == ["bot"]
    assert dash.widget.get_title(0) == "Board"


def test_forms_display_as_their_widget(orch):
    form = widgets.CreateTaskForm(orch)
    bundle = form._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "athena-create-task-content" in form.content._dom_classes


def test_routing_explorer_set_weights(team):
    orch, task = team
    explorer = widgets.RoutingExplorer(orch, chart=False)
    explorer.task.value = task
    explorer.set_weights({"headroom": 1.0})
    assert explorer.weights == {"track_record": 0.0, "headroom": 1.0, "speed": 0.0, "fit": 0.0}
    assert explorer.frame["agent_id"].iloc[0] == "rookie"
    with pytest.raises(athena_orch.exceptions.ValidationError, match="luck"):
        explorer.set_weights({"luck": 1.0})
