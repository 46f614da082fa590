"""The create-task form in a real browser: Voila serves notebooks/05_task_form_app.ipynb on
a loopback port, headless Chromium (driven by Playwright) fills the form and clicks, and
the task must then be in the DuckDB file the notebook wrote.

DuckDB lets one process hold a file for writing, so the test stops Voila (and with it the
kernel: they share a process group) before it opens the file itself. A screenshot of the
page after the click is kept in ``test-artifacts/``.

Needs Debian's ``/usr/bin/chromium`` (``apt-get install -y chromium``; Playwright's own
browser download does not work here) and the ``voila`` and ``playwright`` packages; the
test skips, saying which is missing, without them.
"""

from __future__ import annotations

import pytest
from browser import ARTIFACTS, ROOT, chromium, page_of, start_voila, stop

import athena_orch

NOTEBOOK = ROOT / "notebooks" / "05_task_form_app.ipynb"

pytestmark = pytest.mark.slow


@pytest.fixture
def voila_app(tmp_path):
    """(url, db path, stop(), log path): Voila serving the form app on a file database."""
    db_path = tmp_path / "app.duckdb"
    url, process, log = start_voila(NOTEBOOK, db_path, tmp_path)
    try:
        yield url, db_path, lambda: stop(process), log
    finally:
        stop(process)


def test_create_task_in_the_browser(voila_app, tmp_path):
    url, db_path, stop_voila, log = voila_app
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser_create_task.png"
    content = "Write the <b>browser</b> test report"
    with chromium(tmp_path / "chromium-profile", {"width": 1100, "height": 1400}) as context:
        page = page_of(context)
        try:
            page.goto(url, wait_until="domcontentloaded")
            page.locator(".athena-create-task-content textarea").fill(content)
            page.locator(".athena-create-task-task-type input").fill("reporting")
            page.locator(".athena-create-task-priority select").select_option("high")
            page.locator(".athena-create-task-requirements input").fill("writing, editing")
            page.locator(".athena-create-task-content textarea").press("Tab")  # sync values
            page.locator("button.athena-create-task-submit").click()
            message = page.locator(".athena-create-task-message")
            message.get_by_text("Created task").wait_for()
            board = page.locator(".athena-board-table")
            board.get_by_text(content).wait_for()  # escaped, shown as text on the board
            page.screenshot(path=str(screenshot), full_page=True)
            assert "✖" not in message.inner_text()
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "browser_create_task_failure.png"), full_page=True)
            print(log.read_text()[-3000:])
            raise
    stop_voila()

    with athena_orch.connect(db_path, read_only=True) as orch:
        frame = orch.queue.to_frame()
    created = frame[frame["content"] == content]
    assert len(created) == 1, frame[["content", "task_type"]]
    task = created.iloc[0]
    assert (task["task_type"], task["priority"], task["status"]) == ("reporting", "high", "pending")
    assert list(task["requirements"]) == ["writing", "editing"]
    assert screenshot.stat().st_size > 0
