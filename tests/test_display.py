"""Rich HTML display: Task, Agent, RoutingDecision and the manager render as escaped HTML."""

from __future__ import annotations

import html

import pandas as pd
import pytest

import athena_orch
from athena_orch import display
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
        (12_500, "12.5 s"),
        (1_500_000, "25.0 min"),
        (11_520_000, "3.2 h"),
        (None, ""),
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
    assert out.count("background:#ecfdf5") == 1
    assert "no rows" in display.frame_html(frame.iloc[:0])
    assert "1 more rows" in display.frame_html(frame, max_rows=1)


def test_message_html_escapes():
    out = display.message_html("<b>bad</b>", "error")
    assert "&lt;b&gt;bad&lt;/b&gt;" in out and "athena-message-error" in out


def test_status_counts_cover_every_state():
    out = display.status_counts_html({"pending": 2})
    for status in TaskStatus:
        assert status.value in out
