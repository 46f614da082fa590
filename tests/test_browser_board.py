"""The live, searchable task board in a real browser: Voila serves a notebook on a
loopback port and headless Chromium (Playwright) uses it as a person would.

- On the form app (notebooks/05_task_form_app.ipynb) over a DuckDB file holding 219
  tasks: a task created in the form is found by the board's search (and shown in its
  card), and a form error is shown in the form itself.
- On a small notebook written by the test: a write made elsewhere in the kernel (a worker
  thread started by another widget, not by the board) appears on the board by itself.

DuckDB lets one process write a file, so only the kernel writes while the page is open;
the test fills the file before Voila starts. Screenshots are kept in ``test-artifacts/``.
Skips, saying why, without Debian's chromium, playwright or voila (see
test_browser_widgets.py).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from browser import ARTIFACTS, chromium, page_of, start_voila, stop
from test_browser_widgets import NOTEBOOK

import athena_orch

pytestmark = pytest.mark.slow

WRITER_NOTEBOOK = """
import os, threading
import ipywidgets as w
import athena_orch as ao
from athena_orch.widgets import TaskBoard

orch = ao.connect(os.environ["ATHENA_ORCH_DB"])
board = TaskBoard(orch, interval=3600)  # only the kernel's task events can refresh it

def work():
    task = orch.queue.create_task("written by a worker thread", "chores")
    orch.queue.assign_task(task, "worker-1")
    orch.queue.start_task(task)
    orch.queue.complete_task(task, "done")

writer = w.Button(description="Write elsewhere")
writer.add_class("athena-test-writer")
writer.on_click(lambda _: threading.Thread(target=work).start())
w.VBox([writer, board.widget])
"""


@pytest.fixture
def serve(tmp_path):
    """serve(notebook) -> url: Voila on a loopback port, with ATHENA_ORCH_DB a file in
    tmp_path (``tmp_path / "app.duckdb"``); stopped after the test."""
    processes = []

    def start(notebook: Path) -> str:
        url, process, _ = start_voila(notebook, tmp_path / "app.duckdb", tmp_path)
        processes.append(process)
        return url

    try:
        yield start
    finally:
        for process in processes:
            stop(process)


@pytest.fixture
def browser(tmp_path):
    """A Chromium page (Playwright) with a generous timeout."""
    with chromium(tmp_path / "chromium-profile", {"width": 1200, "height": 1600}) as context:
        yield page_of(context)


def shot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def test_board_search_finds_the_task_just_created(serve, browser, tmp_path):
    with athena_orch.connect(tmp_path / "app.duckdb") as orch:  # a real queue: 219 tasks
        orch.queue.create_tasks(
            [{"content": f"older task {i}", "task_type": "filler"} for i in range(219)]
        )
    page = browser
    page.goto(serve(NOTEBOOK), wait_until="domcontentloaded")
    try:
        content = "Compare the needle vendors"
        page.locator(".athena-create-task-content textarea").fill(content)
        page.locator(".athena-create-task-task-type input").fill("research")
        page.locator(".athena-create-task-requirements input").fill("writing, editing")
        page.locator(".athena-create-task-content textarea").press("Tab")  # sync values
        page.locator("button.athena-create-task-submit").click()
        page.locator(".athena-create-task-message").get_by_text("Created task").wait_for()
        page.locator(".athena-board-card").get_by_text(content).first.wait_for()  # revealed
        search = page.locator(".athena-board-search input")
        search.fill("NEEDLE vendors")
        search.press("Enter")
        table = page.locator(".athena-board-table")
        table.get_by_text(content).wait_for()
        page.locator(".athena-board-page-label").get_by_text("rows 1–1 of 1").wait_for()
        assert "older task" not in table.inner_text()
        assert shot(page, "browser_board_search.png").stat().st_size > 0
    except Exception:
        shot(page, "browser_board_search_failure.png")
        raise


def test_form_error_is_shown_in_the_form(serve, browser):
    page = browser
    page.goto(serve(NOTEBOOK), wait_until="domcontentloaded")
    try:
        page.locator(".athena-create-task-task-type input").fill("research")
        page.locator(".athena-create-task-task-type input").press("Tab")
        page.locator("button.athena-create-task-submit").click()  # no content
        message = page.locator(".athena-create-task-message .athena-message-error")
        message.get_by_text("content must not be empty").wait_for()
        assert "✖" in message.inner_text()
        assert shot(page, "browser_form_error.png").stat().st_size > 0
    except Exception:
        shot(page, "browser_form_error_failure.png")
        raise


def test_board_updates_after_a_write_made_elsewhere(serve, browser, tmp_path):
    import nbformat

    notebook = tmp_path / "writer.ipynb"
    nbformat.write(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(WRITER_NOTEBOOK)]), notebook
    )
    page = browser
    page.goto(serve(notebook), wait_until="domcontentloaded")
    try:
        table = page.locator(".athena-board-table")
        table.get_by_text("no tasks match").wait_for()
        page.locator("button.athena-test-writer").click()
        row = table.locator("tr", has_text="written by a worker thread")
        row.wait_for()
        row.get_by_text("completed").wait_for()  # the later writes of the thread too
        page.locator(".athena-board-counts").get_by_text("1 tasks").wait_for()
        assert shot(page, "browser_board_live.png").stat().st_size > 0
    except Exception:
        shot(page, "browser_board_live_failure.png")
        raise
