"""The HTML cards and the routing explorer's table in JupyterLab's light and dark themes,
in a real browser: headless Chromium (driven by Playwright) renders them on a page that
loads JupyterLab's own theme CSS (its ``--jp-*`` variables) with the colours of a notebook
output area, and every chip, badge, message and the explorer's winning row must keep a
WCAG contrast ratio of at least 4.5:1 between its text and the background under it.

Screenshots of both pages and the measured ratios (``theme_contrast.json``) are kept in
``test-artifacts/``. Skips, saying what is missing, without Debian's chromium, the
playwright package or JupyterLab's theme files.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
from browser import ARTIFACTS, PAGE_TIMEOUT_MS, chromium

from athena_orch import display
from athena_orch.models import Agent, Task, TaskStatus

THEMES = Path(sys.prefix) / "share" / "jupyter" / "lab" / "themes" / "@jupyterlab"
MIN_RATIO = 4.5

pytestmark = pytest.mark.slow

# Text colour and the colour under it, alpha layers composited from the first opaque
# ancestor up (JupyterLab's dark text colours are translucent white).
MEASURE_JS = """
(selector) => [...document.querySelectorAll(selector)].map((el) => {
  const layers = [];
  for (let node = el; node; node = node.parentElement) {
    layers.push(getComputedStyle(node).backgroundColor);
  }
  return {text: el.textContent.trim().slice(0, 40), color: getComputedStyle(el).color,
          layers: layers};
})
"""
# By shape rather than class, so the same selectors found them before the theme work.
TARGETS = {
    "chip": "span[style*='border-radius:4px']",
    "badge": "span[style*='border-radius:9px']",
    "highlighted row": "tbody tr[style*='background'] td",
    "message": "[class^='athena-message-']",
    "card": ".athena-task, .athena-agent, .athena-decision, .athena-manager",
}


def _rgba(text: str) -> tuple[float, float, float, float]:
    numbers = [float(n) for n in re.findall(r"[\d.]+", text)]
    return (*numbers[:3], numbers[3] if len(numbers) > 3 else 1.0)


def _over(top: tuple, bottom: tuple) -> tuple[float, float, float, float]:
    alpha = top[3]
    return (*(t * alpha + b * (1 - alpha) for t, b in zip(top[:3], bottom[:3])), 1.0)


def _luminance(rgb: tuple) -> float:
    def channel(c: float) -> float:
        c /= 255
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(item: dict) -> float:
    """WCAG 2 contrast ratio of an element's text against what is painted under it."""
    background = (255.0, 255.0, 255.0, 1.0)  # the canvas, under everything
    for layer in reversed(item["layers"]):
        background = _over(_rgba(layer), background)
    text = _over(_rgba(item["color"]), background)
    lighter, darker = sorted((_luminance(text), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_contrast_ratio_of_known_pairs():
    black = {"color": "rgb(0, 0, 0)", "layers": ["rgb(255, 255, 255)"]}
    assert contrast(black) == pytest.approx(21.0)
    grey = {"color": "rgba(255, 255, 255, 0.54)", "layers": ["rgba(0, 0, 0, 0)", "rgb(17, 17, 17)"]}
    assert 5 < contrast(grey) < 6.5


def _explorer_table(orch) -> str:
    from athena_orch.widgets import RoutingExplorer

    orch.registry.register_agent("veteran", ["python"])
    orch.registry.register_agent("rookie", ["python"])
    orch.registry.register_agent("writer", ["writing"])
    task = orch.queue.create_task("route me", "research", "high", ["python"])
    explorer = RoutingExplorer(orch, chart=False)
    explorer.task.value = task
    return explorer.message.value + explorer.table.value


def _page(theme_css: str, orch) -> str:
    """What a notebook shows: the cards, counts, messages and the explorer, on an output
    area painted the way JupyterLab paints it."""
    orch.registry.register_agent("bot", ["python", "web"], {"max_concurrent_tasks": 2})
    tid = orch.queue.create_task("Find async patterns", "research", "high", ["python"])
    task = orch.queue.get_task_status(tid)
    failed = Task(id="t1", content="c", task_type="x", status=TaskStatus.FAILED, error="boom")
    parts = [
        display.task_html(task),
        display.task_html(failed),
        display.agent_html(Agent(id="idle", capabilities=["sql"], active=False)),
        display.decision_html(orch.router.decide(task)),
        orch._repr_html_(),
        display.status_counts_html({"pending": 3, "failed": 1}),
        *(display.message_html(f"a {kind} message", kind) for kind in ("info", "ok", "error")),
        _explorer_table(orch),
    ]
    body = "".join(f'<div style="margin: 8px 0">{p}</div>' for p in parts)
    return (
        f"<!doctype html><html><head><style>{theme_css}</style></head>"
        '<body style="margin: 0; padding: 12px; background: var(--jp-layout-color0); '
        f'color: var(--jp-ui-font-color1); font-family: sans-serif">{body}</body></html>'
    )


@pytest.fixture
def browser(tmp_path):
    with chromium(tmp_path / "chromium-profile", {"width": 1000, "height": 900}) as context:
        yield context


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_text_keeps_its_contrast_in_the_jupyterlab_theme(browser, orch, theme):
    css = THEMES / f"theme-{theme}-extension" / "index.css"
    if not css.exists():
        pytest.skip(f"JupyterLab's {theme} theme is not installed ({css})")
    page = browser.new_page()
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.emulate_media(color_scheme=theme)
    page.set_content(_page(css.read_text(), orch), wait_until="load")
    ARTIFACTS.mkdir(exist_ok=True)
    backend = orch.db.dialect
    page.screenshot(path=str(ARTIFACTS / f"theme_{theme}_{backend}.png"), full_page=True)

    measured = {name: page.evaluate(MEASURE_JS, selector) for name, selector in TARGETS.items()}
    ratios = {
        name: {item["text"]: round(contrast(item), 2) for item in items}
        for name, items in measured.items()
    }
    report = ARTIFACTS / "theme_contrast.json"
    previous = json.loads(report.read_text()) if report.exists() else {}
    report.write_text(json.dumps({**previous, f"{theme}/{backend}": ratios}, indent=1))

    for name in ("chip", "badge", "highlighted row", "message", "card"):
        assert ratios[name], f"no {name} on the page"
    assert len(measured["highlighted row"]) == len(_explorer_columns())
    low = {
        (name, text): ratio
        for name, items in ratios.items()
        for text, ratio in items.items()
        if ratio < MIN_RATIO
    }
    assert not low, f"{theme}: contrast below {MIN_RATIO}:1: {low}"


def _explorer_columns() -> list[str]:
    from athena_orch.widgets import RoutingExplorer

    return RoutingExplorer.TABLE_COLUMNS
