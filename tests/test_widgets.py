"""The ipywidgets forms, driven as a user would: set values, click, read the store."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time

import pytest
from conftest import postgres_only

import athena_orch

widgets = pytest.importorskip("athena_orch.widgets")


def task_count(orch) -> int:
    return orch.queue.get_queue_statistics().total_count


def text(widget) -> str:
    """What a user reads in an HTML widget."""
    return re.sub("<[^>]+>", "", widget.value)


def eventually(check, timeout: float = 10.0) -> bool:
    """True once ``check()`` is true (a live view refreshes on its own thread)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return bool(check())


@pytest.fixture
def anyone(orch):
    """An active agent with the capabilities the tests ask for, so forms need no warning."""
    orch.registry.register_agent("anyone", ["python", "web", "writing"])
    return orch


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


def test_register_existing_agent_asks_before_replacing(orch):
    orch.registry.register_agent("bot", ["python"], {"max_concurrent_tasks": 7})
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "bot"
    form.capabilities.value = "sql"
    form.submit.click()
    assert "Agent bot exists (capabilities python; capacity 7)" in text(form.message)
    assert "again" in text(form.message) and form.error is None
    assert orch.registry.get_agent_capability("bot") == ["python"]  # nothing written yet
    form.capabilities.value = "sql, web"  # other values: asked again
    form.submit.click()
    assert orch.registry.get_agent_capability("bot") == ["python"]
    form.submit.click()  # the same values again: confirmed
    assert "Replaced agent bot" in text(form.message)
    assert orch.registry.get_agent_capability("bot") == ["sql", "web"]


@pytest.mark.parametrize("agent_id", ["my bot", "bot\tone", "-bot", "bot/1", "x" * 129])
def test_register_agent_refuses_bad_id_characters(orch, agent_id):
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = agent_id
    form.capabilities.value = "python"
    form.submit.click()
    assert "may use only letters, digits and . _ - : @" in form.error
    assert "athena-message-error" in form.message.value
    assert orch.registry.to_frame().empty


def test_register_agent_refuses_capacity_zero_and_says_what_it_means(orch):
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "bot"
    form.capabilities.value = "python"
    form.capacity.value = 0
    form.submit.click()
    assert "capacity 0 is not allowed" in form.error
    assert "how many tasks the agent runs at once" in form.error and "Active" in form.error
    assert orch.registry.to_frame().empty


def test_register_agent_without_capabilities_asks_first(orch):
    form = widgets.RegisterAgentForm(orch)
    form.agent_id.value = "bare"
    form.submit.click()
    assert "No capabilities" in text(form.message)
    assert orch.registry.get_agent("bare") is None
    form.submit.click()
    assert orch.registry.get_agent("bare").capabilities == []


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
    form.capabilities.value = "python"
    form.submit.click()
    assert [a.id for a in seen] == ["a"]


# --------------------------------------------------------------------------- tasks


def test_create_task(anyone):
    orch = anyone
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


def test_create_task_with_dependencies_picked_from_existing_tasks(anyone):
    orch = anyone
    first = orch.queue.create_task("first", "research")
    second = orch.queue.create_task("second", "research")
    orch.queue.create_task("third", "research")
    form = widgets.CreateTaskForm(orch)
    labels = dict((tid, label) for label, tid in form.dependencies.options)
    assert labels[first] == f"first · research · pending · …{first[-12:]}"  # ids tell apart
    form.content.value = "summarise"
    form.task_type.value = "writing"
    form.dependencies.value = (first, second)
    form.submit.click()
    task = orch.queue.get_task_status(form.last_task_id)
    assert task.dependencies == [first, second]
    assert form.dependencies.value == ()
    assert orch.queue.get_dependency_status(task.id)["waiting_on"] == [first, second]


def test_dependency_that_failed_is_explained_before_the_blocked_task_is_made(anyone):
    orch = anyone
    dep = orch.queue.create_task("doomed", "x", max_retries=0)
    form = widgets.CreateTaskForm(orch, live=False)
    form.content.value = "after"
    form.task_type.value = "x"
    form.dependencies.value = (dep,)  # chosen while it was pending
    orch.queue.assign_task(dep, "anyone")
    orch.queue.fail_task(dep, "broken")
    form.submit.click()
    assert "Dependency “doomed” is failed: the new task will be blocked" in text(form.message)
    assert task_count(orch) == 1
    form.submit.click()
    assert "(blocked)" in text(form.message) and "is failed" in text(form.message)
    assert task_count(orch) == 2


def test_requirement_no_active_agent_has_is_explained_first(orch):
    orch.registry.register_agent("coder", ["python"])
    orch.registry.register_agent("idle", ["gpu"], {"active": False})
    form = widgets.CreateTaskForm(orch)
    form.content.value = "train"
    form.task_type.value = "ml"
    form.requirements.value = "python, gpu"
    form.submit.click()
    assert "No active agent has all of the requirements python, gpu" in text(form.message)
    assert task_count(orch) == 0
    form.requirements.value = "python"  # somebody can: no question
    form.submit.click()
    assert "Created task" in text(form.message) and task_count(orch) == 1


def test_long_content_is_cut_in_the_echo(anyone):
    form = widgets.CreateTaskForm(anyone)
    form.content.value = "x" * 20_000
    form.task_type.value = "bulk"
    form.submit.click()
    assert "(20,000 characters)" in text(form.message)
    assert len(form.message.value) < 2_000
    assert len(anyone.queue.get_task_status(form.last_task_id).content) == 20_000


def test_dependency_picker_hides_finished_tasks_and_searches(anyone):
    orch = anyone
    done = orch.queue.create_task("alpha finished", "x")
    orch.queue.assign_task(done, "anyone")
    orch.queue.start_task(done)
    orch.queue.complete_task(done, "ok")
    alpha = orch.queue.create_task("alpha open", "x")
    beta = orch.queue.create_task("beta open", "y")
    form = widgets.CreateTaskForm(orch, live=False)
    assert [tid for _, tid in form.dependencies.options] == [alpha, beta]
    assert form.dependencies.rows >= 10
    form.dependencies.value = (beta,)
    form.dependency_search.value = "ALPHA"
    assert [tid for _, tid in form.dependencies.options] == [alpha, beta]  # chosen stay
    form.dependency_search.value = "beta"
    assert [tid for _, tid in form.dependencies.options] == [beta]
    assert form.dependencies.value == (beta,)
    long = orch.queue.create_task("a label of sixty characters or so, which used to be cut", "z")
    form.dependency_search.value = ""
    form.refresh()
    labels = dict((tid, label) for label, tid in form.dependencies.options)
    assert labels[long].startswith("a label of sixty characters or so, which used to be cut")


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
    form = widgets.CreateTaskForm(orch, live=False)
    form.content.value = "after"
    form.task_type.value = "x"
    form.dependencies.value = (dep,)
    orch.close()  # the store goes away under the form: still a message, no traceback
    with athena_orch.connect() as other:
        other.registry.register_agent("anyone", [])
        form.orch = other
        form.submit.click()
        assert "unknown tasks" in form.message.value
        assert task_count(other) == 0


def test_refresh_keeps_the_selection(orch):
    first = orch.queue.create_task("first", "x")
    form = widgets.CreateTaskForm(orch, live=False)
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
    assert dash.board.selected == dash.create.last_task_id  # the board jumped to it
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


# --------------------------------------------------------------------------- a board for real queues


@pytest.fixture
def busy_queue(anyone):
    """60 tasks made one after another ("task 0" oldest), "task 7" running on anyone."""
    orch = anyone
    ids = [
        orch.queue.create_task(f"task {i}", "research" if i % 2 else "writing") for i in range(60)
    ]
    orch.queue.assign_task(ids[7], "anyone")
    orch.queue.start_task(ids[7])
    return orch, ids


def test_board_sorts_newest_first_and_pages(busy_queue):
    orch, ids = busy_queue
    board = widgets.TaskBoard(orch, page_size=25, live=False)
    assert board.sort.value == "newest first"
    assert board.frame["task_id"].iloc[0] == ids[-1]
    assert "rows 1–25 of 60 · page 1 of 3" in text(board.page_label)
    assert "task 59" in text(board.table) and "task 0<" not in board.table.value
    assert board.previous.disabled and not board.next.disabled
    board.next.click()
    board.next.click()
    assert "rows 51–60 of 60 · page 3 of 3" in text(board.page_label) and board.next.disabled
    assert "task 0" in text(board.table)
    board.sort.value = "oldest first"  # back to the first page
    assert board.page == 0 and board.frame["task_id"].iloc[0] == ids[0]
    board.sort.value = "queue order"
    assert board.frame["task_id"].tolist() == orch.queue.to_frame()["task_id"].tolist()


def test_board_search_and_filters(busy_queue):
    orch, ids = busy_queue
    board = widgets.TaskBoard(orch, live=False)
    board.search.value = "task 42"
    assert board.frame["task_id"].tolist() == [ids[42]]
    board.search.value = ids[13][-12:]  # a piece of the id
    assert board.frame["task_id"].tolist() == [ids[13]]
    board.search.value = "  TASK   4"  # any case, spaces as one
    assert set(board.frame["content"]) == {"task 4", *(f"task {i}" for i in range(40, 50))}
    board.search.value = ""
    board.status.value = "running"
    board.agent.value = "anyone"
    assert board.frame["task_id"].tolist() == [ids[7]]
    board.search.value = "nothing like this"
    assert "no tasks match" in text(board.table) and "no rows" in text(board.page_label)


def test_board_jumps_to_the_task_just_created(busy_queue):
    orch, _ = busy_queue
    dash = widgets.dashboard(orch, chart=False, live=False)
    dash.board.sort.value = "oldest first"
    dash.board.status.value = "running"  # a filter that would hide the new task
    dash.create.content.value = "the one I just made"
    dash.create.task_type.value = "writing"
    dash.create.submit.click()
    board = dash.board
    new = dash.create.last_task_id
    assert board.status.value == "" and board.page == 2  # row 61 of 61, oldest first
    page = board.frame.iloc[board.page * board.page_size :]
    assert new in page["task_id"].tolist()
    assert board.open.value == new and "the one I just made" in text(board.card)
    assert 'class="athena-highlight"' in board.table.value


def test_board_row_opens_its_card_with_history_and_dependencies(anyone):
    orch = anyone
    first = orch.queue.create_task("first step", "x")
    second = orch.queue.create_task("second step", "x", dependencies=[first])
    orch.queue.assign_task(first, "anyone")
    board = widgets.TaskBoard(orch, live=False)
    label = next(label for label, tid in board.open.options if tid == second)
    assert "second step" in label
    board.open.value = second
    card = text(board.card)
    assert "second step" in card and "History" in card and "created" in card
    assert "waiting on 1 of 1 dependencies" in card and "assigned" in card
    board.open.value = first
    card = text(board.card)
    assert "1 task(s) depend on it" in card and "no dependencies" in card
    assert "anyone" in card


# --------------------------------------------------------------------------- views that stay true


def test_board_follows_writes_of_code_cells_and_worker_threads(orch):
    board = widgets.TaskBoard(orch, interval=3600)  # only task events can refresh it
    orch.queue.create_task("written by a code cell", "x")
    assert eventually(lambda: "written by a code cell" in text(board.table))
    assert eventually(lambda: "1 tasks" in text(board.counts))
    worker = threading.Thread(target=lambda: orch.queue.create_task("from a worker", "x"))
    worker.start()
    worker.join()
    assert eventually(lambda: "from a worker" in text(board.table))
    board.close()


def test_board_follows_another_widget(orch):
    board = widgets.TaskBoard(orch, interval=3600)
    form = widgets.CreateTaskForm(orch, live=False)  # not wired to the board
    form.content.value = "from the form"
    form.task_type.value = "x"
    form.submit.click()
    form.submit.click()  # no agent is registered: confirmed
    assert eventually(lambda: "from the form" in text(board.table))


def test_auto_refresh_off_stops_following_until_refresh(orch):
    board = widgets.TaskBoard(orch, interval=0.5, live=False)
    assert board.live.auto.value is False
    orch.queue.create_task("unseen", "x")
    time.sleep(1.2)
    assert "unseen" not in text(board.table)
    board.refresh_button.click()
    assert "unseen" in text(board.table)
    board.live.auto.value = True
    orch.queue.create_task("seen", "x")
    assert eventually(lambda: "seen" in text(board.table).replace("unseen", ""))


@postgres_only
def test_board_follows_another_process_by_the_periodic_refresh(database_url):
    url = database_url()
    with athena_orch.connect(url) as mine, athena_orch.connect(url) as theirs:
        board = widgets.TaskBoard(mine, interval=0.5)
        theirs.queue.create_task("from another process", "x")  # no event reaches `mine`
        assert eventually(lambda: "from another process" in text(board.table))
        theirs.registry.register_agent("remote", ["python"])
        assert eventually(lambda: ("remote", "remote") in board.agent.options)
        board.close()


def test_dashboard_follows_router_weights_set_elsewhere(orch):
    dash = widgets.dashboard(orch, chart=False, interval=0.5)
    orch.router.weights = {"track_record": 0.1, "headroom": 0.7, "speed": 0.1, "fit": 0.1}
    assert eventually(lambda: dash.explorer.weights["headroom"] == pytest.approx(0.7))
    assert "changed elsewhere" in text(dash.explorer.message)
    dash.close()


def test_dependency_picker_follows_the_queue(orch):
    form = widgets.CreateTaskForm(orch, interval=3600)
    task = orch.queue.create_task("new elsewhere", "x")
    assert eventually(lambda: task in [tid for _, tid in form.dependencies.options])


def test_errors_of_callbacks_show_in_the_widget(orch, monkeypatch):
    board = widgets.TaskBoard(orch, live=False)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(orch.queue, "to_frame", broken)
    board.refresh_button.click()
    assert "RuntimeError: disk on fire" in text(board.message)
    assert "athena-message-error" in board.message.value
    board.search.value = "anything"
    assert "RuntimeError: disk on fire" in board.error
    explorer = widgets.RoutingExplorer(orch, chart=False, live=False)
    assert "RuntimeError: disk on fire" in explorer.error


def test_a_closed_manager_is_detected_and_said(orch):
    orch.queue.create_task("before", "x")
    board = widgets.TaskBoard(orch, interval=0.5)
    create = widgets.CreateTaskForm(orch, live=False)
    register = widgets.RegisterAgentForm(orch)
    explorer = widgets.RoutingExplorer(orch, chart=False, live=False)
    orch.close()
    create.content.value = "after"
    create.task_type.value = "x"
    create.submit.click()
    assert "This manager is closed" in create.error
    assert "Connection" not in create.error
    register.agent_id.value = "bot"
    register.submit.click()
    assert "This manager is closed" in register.error
    explorer.reset.click()
    assert "This manager is closed" in explorer.error
    assert eventually(lambda: "This manager is closed" in text(board.message))  # by itself
    board.refresh_button.click()
    assert "This manager is closed" in board.error


# --------------------------------------------------------------------------- the app

HOLD_UNTIL_TOLD = """
import sys, athena_orch
orch = athena_orch.connect(sys.argv[1])
print("holding", flush=True)
sys.stdin.readline()
orch.close()
"""


def _holder(path) -> subprocess.Popen:
    """Another process holding the DuckDB file until a line arrives on its stdin."""
    child = subprocess.Popen([sys.executable, "-c", HOLD_UNTIL_TOLD, str(path)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "holding", child.stderr.read()
    return child


def test_the_manager_summary_follows_the_queue(orch):
    summary = widgets.ManagerSummary(orch, interval=0.2)
    assert "pending 0" in text(summary.card) and "no task finished yet" in text(summary.card)
    orch.queue.create_task("counted", "x")
    orch.registry.register_agent("bot", ["python"])
    assert eventually(lambda: "pending 1" in text(summary.card))
    assert eventually(lambda: "1 (1 active)" in text(summary.card))
    summary.close()


def test_the_app_files_a_task_and_shows_it_on_board_and_summary():
    app = widgets.TaskApp(None, prepare=lambda orch: orch.registry.register_agent("w", ["x"]))
    app.form.content.value = "Filed from the app"
    app.form.task_type.value = "x"
    app.form.submit.click()
    assert app.form.error is None, app.form.message.value
    assert app.board.selected == app.form.last_task_id  # revealed on the board
    assert "Filed from the app" in text(app.board.table)
    app.summary.refresh()
    assert "pending 1" in text(app.summary.card)
    app.close()
    assert app.orch.closed


def test_the_app_on_a_held_file_explains_it_and_leaves_the_file_alone(tmp_path):
    path = tmp_path / "held.duckdb"
    with athena_orch.connect(path) as orch:
        orch.queue.create_task("already there", "x")
    child = _holder(path)
    try:
        app = widgets.TaskApp(str(path), wait=0.5, prepare=lambda orch: pytest.fail("ran"))
        assert app.orch is None and app.form is None and app.board is None
        assert app.widget is app.notice
        message = text(app.notice)
        assert "The task board is open somewhere else" in message
        assert f"PID {child.pid}" in message and "postgresql://" in message
        assert "Traceback" not in message
    finally:
        child.communicate("release\n")
    with athena_orch.connect(path, read_only=True) as orch:
        assert list(orch.queue.to_frame()["content"]) == ["already there"]


def test_the_app_waits_for_a_file_its_holder_is_releasing(tmp_path):
    path = tmp_path / "reloaded.duckdb"
    athena_orch.connect(path).close()
    child = _holder(path)
    apps = []
    team = lambda orch: orch.registry.register_agent("w", ["x"])  # noqa: E731
    opening = threading.Thread(
        target=lambda: apps.append(widgets.TaskApp(str(path), wait=60, prepare=team)))
    opening.start()
    time.sleep(1.0)  # the app is retrying meanwhile
    assert apps == []
    child.communicate("release\n")  # the old kernel lets go
    opening.join(timeout=60)
    (app,) = apps
    try:
        assert app.orch is not None and app.notice.value == ""
        app.form.content.value = "after the wait"
        app.form.task_type.value = "x"
        app.form.submit.click()
        assert "Created task" in text(app.form.message)
    finally:
        app.close()
