"""Rich HTML display: Task, Agent, RoutingDecision and the manager render as escaped HTML."""

from __future__ import annotations

import html
import importlib.util
import re
import subprocess
import sys

import pandas as pd
import pytest

import athena_orch
from athena_orch import display, styles
from athena_orch.models import Agent, RoutingDecision, Task, TaskStatus

EVIL = '<script>alert("x")</script>'


def test_task_html_shows_fields_and_escapes_user_strings(orch):
    orch.registry.register_agent("bot", ["python"])
    dep = orch.queue.create_task("first", "research", requirements=["python"])
    tid = orch.queue.create_task(EVIL, f"type {EVIL}", "high", [EVIL], [dep])
    task = orch.queue.get_task_status(tid)
    out = task._repr_html_()
    assert "<script>" not in out
    assert html.escape(EVIL) in out
    assert "pending" in out and "high" in out
    assert "0 of 3" in out  # retries
    assert f'title="{dep}"' in out  # the dependency, full id in a tooltip
    assert 'class="athena-task"' in out
    orch.queue.assign_task(dep, "bot")
    assert "bot (attempt 1)" in orch.queue.get_task_status(dep)._repr_html_()


def test_task_html_shows_error_result_and_duration():
    task = Task(
        id="t1",
        content="c",
        task_type="x",
        status=TaskStatus.FAILED,
        error="boom <b>",
        result="r & r",
        execution_duration_ms=1500,
        blocked_by="t0",
    )
    out = display.task_html(task)
    assert "boom &lt;b&gt;" in out
    assert "r &amp; r" in out
    assert "1.5 s" in out
    assert "blocked by" in out
    assert "failed" in out


def test_long_content_is_clipped():
    out = display.task_html(Task(id="t", content="x" * 1000, task_type="y"))
    assert "x" * 199 + "…" in out and "x" * 201 not in out


def test_agent_html(orch):
    orch.registry.register_agent(
        EVIL, ["python", "<web>"], {"max_concurrent_tasks": 4, "team": "<red>"}
    )
    agent = orch.registry.get_agent(EVIL)
    out = agent._repr_html_()
    assert "<script>" not in out and "<web>" not in out and "<red>" not in out
    assert "&lt;web&gt;" in out and "team=&lt;red&gt;" in out
    assert "0 of 4" in out and "active" in out and "no history" in out


def test_paused_agent_html():
    out = display.agent_html(
        Agent(
            id="a",
            active=False,
            total_completed=3,
            total_failed=1,
            success_rate=0.75,
            avg_completion_ms=1234.0,
        )
    )
    assert "paused" in out and "75% of 4 finished" in out and "1.2 s" in out


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (850, "850 ms"),
        (1_500, "1.5 s"),
        (23_000, "23 s"),
        (1_380_000, "23 min"),
        (11_520_000, "3.2 h"),
        (None, ""),
        (pd.NA, ""),
    ],
)
def test_duration(ms, text):
    assert display.duration(ms) == text


def test_decision_html(orch):
    for name in ("a", "b", EVIL):
        orch.registry.register_agent(name, ["python"])
    decision = orch.router.decide({"id": "t", "requirements": ["python"]})
    out = decision._repr_html_()
    assert "<script>" not in out
    assert decision.selected_agent is not None
    assert html.escape(decision.reason) in out
    assert out.count("<tr>") >= 3  # every candidate has a row


def test_decision_without_agent_and_many_candidates():
    empty = RoutingDecision(selected_agent=None, reason="no agents are registered")
    assert "no agent" in display.decision_html(empty)
    many = RoutingDecision(selected_agent="a0", scores={f"a{i}": 1 - i / 10 for i in range(8)})
    out = display.decision_html(many, top=5)
    assert "and 3 more eligible" in out


def test_manager_html(orch):
    orch.registry.register_agent("bot", ["python"], {"max_concurrent_tasks": 2})
    orch.queue.create_task("one", "x", requirements=["python"])
    orch.queue.claim_task("bot")
    out = orch._repr_html_()
    assert ("in memory" if orch.db.dialect == "duckdb" else "postgresql://") in out
    assert "1 (1 active)" in out and "load 1 of 2" in out
    assert "python ×1" in out
    assert repr(orch).startswith("<OrchestrationManager")  # the text repr stays


def test_manager_html_for_a_file_database(tmp_path):
    path = tmp_path / "o<r>ch.duckdb"
    with athena_orch.connect(path) as orch:
        out = orch._repr_html_()
    assert "o&lt;r&gt;ch.duckdb" in out and "<r>" not in out


def test_frame_html_escapes_and_formats():
    frame = pd.DataFrame(
        {
            "name": [EVIL, "b"],
            "score": [0.12345, float("nan")],
            "ok": [True, False],
            "caps": [["x", "<y>"], []],
        }
    )
    out = display.frame_html(frame, highlight=lambda row: row["name"] == "b")
    assert "<script>" not in out and "&lt;y&gt;" in out
    assert "0.123" in out and "✓" in out
    assert out.count('class="athena-highlight"') == 1
    assert "no rows" in display.frame_html(frame.iloc[:0])
    assert "1 more rows" in display.frame_html(frame, max_rows=1)


def test_message_html_escapes():
    out = display.message_html("<b>bad</b>", "error")
    assert "&lt;b&gt;bad&lt;/b&gt;" in out and "athena-message-error" in out


def test_status_counts_cover_every_state():
    out = display.status_counts_html({"pending": 2})
    for status in TaskStatus:
        assert status.value in out


def test_nothing_finished_is_said_not_counted_as_100_percent(orch):
    out = display.agent_html(Agent(id="a", total_completed=0, total_failed=0, success_rate=1.0))
    assert "no task finished yet" in out and "100%" not in out
    orch.queue.create_task("one", "x")
    out = orch._repr_html_()
    assert "no task finished yet" in out and "100%" not in out


# --------------------------------------------------------------------------- theme


def _styles(out: str) -> list[str]:
    return re.findall(r'style="([^"]*)"', out)


def _all_displays(orch) -> list[str]:
    orch.registry.register_agent("bot", ["python"], {"max_concurrent_tasks": 2})
    orch.registry.register_agent("idle", ["python"], {"active": False})
    tid = orch.queue.create_task("c", "x", requirements=["python", "web"])
    task = orch.queue.get_task_status(tid)
    failed = Task(id="t", content="c", task_type="x", status=TaskStatus.FAILED, error="boom")
    frame = orch.router.explain(task)
    return [
        display.task_html(task),
        display.task_html(failed),
        display.agent_html(orch.registry.get_agent("bot")),
        display.decision_html(orch.router.decide(task)),
        display.decision_html(RoutingDecision(selected_agent=None, reason="none")),
        orch._repr_html_(),
        display.frame_html(frame, highlight=lambda row: row["agent_id"] == "bot", max_rows=1),
        display.frame_html(frame.iloc[:0]),
        *(display.message_html("m", kind) for kind in ("info", "ok", "error")),
    ]


def test_text_colours_follow_the_theme_or_bring_their_own_background(orch):
    """A fixed text colour on an inherited background is unreadable in one of the themes:
    every text colour is a JupyterLab variable, or white on the element's own background."""
    for out in _all_displays(orch):
        for style in _styles(out):
            colours = re.findall(r"(?:^|[;\s])color:\s*([^;]+)", style)
            for colour in colours:
                if colour.strip() == "white":
                    assert re.search(r"background:\s*#[0-9a-f]{6}", style), style
                else:
                    assert colour.strip().startswith("var(--jp-"), style


def test_elements_with_a_background_set_their_text_colour(orch):
    """A chip, badge, highlighted row or card that paints a background also sets the text
    colour, from the same theme."""
    for out in _all_displays(orch):
        for style in _styles(out):
            if re.search(r"(?:^|[;\s])background:", style) and "width:" not in style:  # bars
                assert re.search(r"(?:^|[;\s])color:", style), style


# --------------------------------------------------------------------------- Styler helpers

needs_jinja2 = pytest.mark.skipif(
    importlib.util.find_spec("jinja2") is None, reason="pandas' Styler needs jinja2"
)
LONG_REASON = "paused; missing capabilities: " + ", ".join(f"skill_{i}" for i in range(12))


@needs_jinja2
def test_style_explain_rounds_blanks_and_keeps_ids_and_reasons_whole(orch):
    orch.registry.register_agent("agent-with-a-long-id-0001", ["python"])
    orch.registry.register_agent("writer", ["writing"])
    frame = orch.router.explain({"requirements": ["python"]})
    frame.loc[frame["agent_id"] == "writer", "excluded_reason"] = LONG_REASON
    styler = styles.style_explain(frame)
    assert isinstance(styler, pd.io.formats.style.Styler)
    out = styler.to_html()
    assert "<NA>" not in out and "nan" not in out
    score = float(frame["score"].iloc[0])
    assert f"{score:.3f}" in out and repr(score) not in out
    assert LONG_REASON in out
    assert re.search(r"_row0_col0[^{]*\{\s*white-space: nowrap", out)  # agent_id
    ranks = re.findall(r"data row\d+ col11\" >([^<]*)<", out)
    assert ranks == ["1", ""]
    assert frame["rank"].isna().sum() == 1  # the frame itself is untouched
    assert styles.style_explain(frame).to_html() == out  # no random ids: notebooks stay stable


@needs_jinja2
def test_style_tasks_badges_durations_and_blanks(orch):
    orch.registry.register_agent("bot", ["python"])
    done = orch.queue.create_task(EVIL, "x", requirements=["python"])
    orch.queue.create_task("waits", "x", dependencies=[done])
    orch.queue.assign_task(done, "bot")
    orch.queue.start_task(done)
    orch.queue.complete_task(done, "ok", {"duration_ms": 1500})
    out = styles.style_tasks(orch.queue.to_frame()).to_html()
    assert "<script>" not in out and html.escape(EVIL) in out
    assert "1.5 s" in out and "1500" not in out
    assert display.status_badge("completed") in out and display.status_badge("pending") in out
    for missing in ("None", "NaT", "<NA>", "nan"):
        assert f">{missing}<" not in out


@needs_jinja2
def test_style_decisions_rounds_the_scores(orch):
    orch.registry.register_agent("a", ["python"])
    orch.router.decide({"id": "t", "requirements": ["python"]})
    frame = orch.router.decisions()
    score = frame["scores"].iloc[0]["a"]
    out = styles.style_decisions(frame).to_html()
    assert f"a {score:.3g}" in out and repr(score) not in out


@needs_jinja2
def test_style_agents_percent_duration_badge_and_blank_without_history(orch):
    orch.registry.register_agent("new", ["python"])
    orch.registry.register_agent("old", ["python"], {"active": False})
    for ok in (True, True, True, False):
        orch.registry.update_agent_performance("old", ok, 90_000)
    out = styles.style_agents(orch.registry.to_frame()).to_html()
    assert "75%" in out and "100%" not in out  # "new" has finished nothing: blank
    assert "1.5 min" in out
    assert display.badge("active", "#15803d") in out and display.badge("paused") in out


def test_importing_athena_orch_does_not_import_the_styler():
    code = (
        "import sys, athena_orch\n"
        "assert 'athena_orch.styles' not in sys.modules\n"
        "assert 'pandas.io.formats.style' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_warning_message_has_its_own_colour_and_the_themes_text():
    out = display.message_html("⚠ careful", "warning")
    assert "--jp-warn-color1" in out and "athena-message-warning" in out
    assert display.message_html("fine") != display.message_html("fine", "warning")
