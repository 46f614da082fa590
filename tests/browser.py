"""What the browser tests share: Debian's chromium driven by Playwright, and Voila serving
a notebook on a loopback port (its kernel in the same process group, so stopping Voila
stops the kernel that holds the DuckDB file). Every helper skips the test, saying what is
missing, without chromium, the playwright package or voila."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp_servers import free_port

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"  # screenshots, kept after the run
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


def need_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium "
                    "(apt-get install -y chromium) to run the browser tests")
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")


@contextlib.contextmanager
def chromium(profile: Path, viewport: dict[str, int]) -> Iterator[Any]:
    """A headless Chromium context (Playwright) with a profile folder of its own."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=viewport)
        try:
            yield context
        finally:
            context.close()


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """A headless Chromium (Playwright) for tests that need several visitors: each
    ``browser.new_context(viewport=...)`` is one, with cookies of its own."""
    need_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                    args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def page_of(context: Any) -> Any:
    """The context's page, with a generous timeout."""
    page = context.pages[0] if context.pages else context.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    return page


def start_voila(notebook: Path, db_path: Path | str, folder: Path
                ) -> tuple[str, subprocess.Popen, Path]:
    """Voila serving ``notebook`` with ATHENA_ORCH_DB=db_path (a file or a postgresql://
    URL): (url, process, log), once it answers. Runs in the notebook's folder, so a
    ``voila.json`` there applies. Stop it with :func:`stop`."""
    need_chromium()
    voila = shutil.which("voila", path=str(Path(sys.executable).parent))
    if voila is None:
        pytest.skip("voila is not installed next to this Python")
    port = free_port()
    log = folder / f"voila-{port}.log"
    env = {**os.environ, "ATHENA_ORCH_DB": str(db_path),
           "JUPYTER_RUNTIME_DIR": str(folder / "runtime"),
           "JUPYTER_CONFIG_DIR": str(folder / "config"), "PYTHONUNBUFFERED": "1"}
    with log.open("w") as out:
        process = subprocess.Popen(
            [voila, str(notebook), "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
             "--Voila.port_retries=0", "--show_tracebacks=True"],
            cwd=notebook.parent, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_until_up(url, process, log)
    except BaseException:
        stop(process)
        raise
    return url, process, log


def _wait_until_up(url: str, process: subprocess.Popen, log: Path) -> None:
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
        f"voila did not answer on {url} within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


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
