"""The Voila app (notebooks/05_task_form_app.ipynb) with several visitors and reloads, in a
real browser: Voila serves it on a loopback port (with the notebook's voila.json), and each
visitor is a headless Chromium context of its own (Playwright), so each tab gets a kernel.

- PostgreSQL (a schema of its own; skips without a server): two visitors on one database;
  a task filed by one appears on the other's board by itself, and a reload still works.
- A DuckDB file: the second visitor reads a message saying the file is held (not Voila's
  "There was an error when executing cell"); once the first tab is closed (its kernel shut
  down), a reload works, and a reload after filing a task shows that task again.
- A 420 px wide window: no page-wide horizontal scroll, no field and no part of the
  manager summary past its output area.

Screenshots are kept in ``test-artifacts/voila_*.png``. Skips, saying why, without Debian's
chromium, playwright or voila.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser import ARTIFACTS, PAGE_TIMEOUT_MS, ROOT, chromium_browser, start_voila, stop

pytestmark = pytest.mark.slow

NOTEBOOK = ROOT / "notebooks" / "05_task_form_app.ipynb"
NARROW = {"width": 420, "height": 900}
WIDE = {"width": 1100, "height": 1400}
VOILA_ERROR = "There was an error when executing cell"

# Right edges of the fields past the right edge of the output area that holds them.
OVERFLOWING_JS = """
() => [...document.querySelectorAll('input, textarea, select, button, .athena-manager')].flatMap((el) => {
  const area = el.closest('.jp-OutputArea-output');
  if (!area || el.getClientRects().length === 0) return [];
  const over = el.getBoundingClientRect().right - area.getBoundingClientRect().right;
  return over > 0.5 ? [`${el.tagName}.${el.className} ${Math.round(over)} px`] : [];
})
"""
KERNEL_ID_JS = "JSON.parse(document.getElementById('jupyter-config-data').textContent).kernelId"


@pytest.fixture
def serve(tmp_path):
    """serve(database) -> (url, log): Voila on the form app, stopped after the test."""
    processes = []

    def start(database: Path | str) -> tuple[str, Path]:
        url, process, log = start_voila(NOTEBOOK, database, tmp_path)
        processes.append(process)
        return url, log

    try:
        yield start
    finally:
        for process in processes:
            stop(process)


def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def visit(browser, url: str, viewport: dict[str, int] = WIDE):
    """A new visitor (a context of its own) on the app."""
    page = browser.new_context(viewport=viewport).new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url, wait_until="domcontentloaded")
    return page


def app_ready(page) -> None:
    """Wait for the whole app (summary, form, board) and check it is the app."""
    page.locator(".athena-board-table").get_by_text("Triage the incoming bug reports").wait_for()
    page.locator(".athena-summary-card").get_by_text("OrchestrationManager").wait_for()
    text = page.inner_text("body")
    assert VOILA_ERROR not in text
    assert "TaskApp" not in text and "voila.json" not in text  # no code, no developer notes


def file_task(page, content: str) -> None:
    page.locator(".athena-create-task-content textarea").fill(content)
    page.locator(".athena-create-task-task-type input").fill("research")
    page.locator(".athena-create-task-content textarea").press("Tab")  # sync values
    page.locator("button.athena-create-task-submit").click()
    page.locator(".athena-create-task-message").get_by_text("Created task").wait_for()


def wait_for_log(log: Path, text: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in log.read_text():
        if time.monotonic() > deadline:
            pytest.fail(f"voila's log never said {text!r}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_two_visitors_and_a_reload_on_postgres(serve, database_url):
    url, log = serve(database_url())
    with chromium_browser() as browser:
        alice, bob = visit(browser, url), visit(browser, url)
        try:
            app_ready(alice)
            app_ready(bob)
            content = "Summarise the PostgreSQL visitors' feedback"
            file_task(alice, content)
            bob.locator(".athena-board-table").get_by_text(content).wait_for()  # live
            shot(bob, "voila_pg_second_visitor.png")

            alice.reload(wait_until="domcontentloaded")
            app_ready(alice)
            alice.locator(".athena-board-table").get_by_text(content).wait_for()
            file_task(alice, "Filed after the reload")
            bob.locator(".athena-board-table").get_by_text("Filed after the reload").wait_for()
            shot(alice, "voila_pg_after_reload.png")
        except Exception:
            shot(alice, "voila_pg_failure_first.png")
            shot(bob, "voila_pg_failure_second.png")
            print(log.read_text()[-3000:])
            raise


def test_a_held_duckdb_file_is_explained_and_freed_by_closing_the_tab(serve, tmp_path):
    url, log = serve(tmp_path / "app.duckdb")
    with chromium_browser() as browser:
        first = visit(browser, url, NARROW)
        second = None
        try:
            app_ready(first)
            assert first.evaluate("document.documentElement.scrollWidth <= innerWidth")
            assert first.evaluate(OVERFLOWING_JS) == []
            shot(first, "voila_narrow.png")
            first_kernel = first.evaluate(KERNEL_ID_JS)

            second = visit(browser, url)
            notice = second.locator(".athena-held")
            notice.get_by_text("The task board is open somewhere else").wait_for()
            text = second.inner_text("body")
            assert VOILA_ERROR not in text
            assert "close the other tab and reload this page" in text
            assert "PID" in text and "postgresql://" in text
            shot(second, "voila_duckdb_held.png")

            first.close(run_before_unload=True)  # the page asks Voila to shut its kernel
            wait_for_log(log, f"Kernel shutdown: {first_kernel}")
            second.reload(wait_until="domcontentloaded")
            app_ready(second)
            file_task(second, "Filed in the tab that waited")

            second.reload(wait_until="domcontentloaded")  # the old kernel is still closing
            app_ready(second)
            second.locator(".athena-board-table").get_by_text("Filed in the tab that waited")\
                .wait_for()
            assert second.locator(".athena-held").count() == 0
            shot(second, "voila_duckdb_after_reload.png")
        except Exception:
            if not first.is_closed():
                shot(first, "voila_duckdb_failure_first.png")
            if second is not None:
                shot(second, "voila_duckdb_failure_second.png")
            print(log.read_text()[-3000:])
            raise
