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

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

import athena_orch

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "05_task_form_app.ipynb"
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path(os.environ.get("ATHENA_ORCH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
START_TIMEOUT_S = 60
PAGE_TIMEOUT_MS = 60_000

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"voila exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "voila/static/", timeout=2):  # noqa: S310
                return
        except urllib.error.HTTPError:  # any HTTP answer: the server is up
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.3)
    pytest.fail(
        f"voila did not answer on {url} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}"
    )


def stop(process: subprocess.Popen) -> None:
    """Stop voila and its kernel (one process group): SIGTERM, then SIGKILL."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=15)
    # the kernel may outlive its server by a moment: make sure the whole group is gone
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture
def voila_app(tmp_path):
    """(url, db path, stop(), log path): Voila serving the form app on a file database."""
    if not CHROMIUM.exists():
        pytest.skip(
            f"{CHROMIUM} is missing: install Debian's chromium "
            "(apt-get install -y chromium) to run the browser test"
        )
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    voila = shutil.which("voila", path=str(Path(sys.executable).parent))
    if voila is None:
        pytest.skip("voila is not installed next to this Python")
    db_path = tmp_path / "app.duckdb"
    port = free_port()
    log = tmp_path / "voila.log"
    env = {
        **os.environ,
        "ATHENA_ORCH_DB": str(db_path),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "PYTHONUNBUFFERED": "1",
    }
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                voila,
                str(NOTEBOOK),
                "--no-browser",
                f"--port={port}",
                "--Voila.ip=127.0.0.1",
                "--Voila.port_retries=0",
                "--show_tracebacks=True",
            ],
            cwd=NOTEBOOK.parent,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_until_up(url, process, log)
        yield url, db_path, lambda: stop(process), log
    finally:
        stop(process)


def test_create_task_in_the_browser(voila_app, tmp_path):
    from playwright.sync_api import sync_playwright

    url, db_path, stop_voila, log = voila_app
    ARTIFACTS.mkdir(exist_ok=True)
    screenshot = ARTIFACTS / "browser_create_task.png"
    content = "Write the <b>browser</b> test report"
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1100, "height": 1400},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(PAGE_TIMEOUT_MS)
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
        finally:
            context.close()
    stop_voila()

    with athena_orch.connect(db_path, read_only=True) as orch:
        frame = orch.queue.to_frame()
    created = frame[frame["content"] == content]
    assert len(created) == 1, frame[["content", "task_type"]]
    task = created.iloc[0]
    assert (task["task_type"], task["priority"], task["status"]) == ("reporting", "high", "pending")
    assert list(task["requirements"]) == ["writing", "editing"]
    assert screenshot.stat().st_size > 0
