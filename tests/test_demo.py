"""The main job: ``athena-orch demo`` and the workloads it runs.

One small synthetic run (module-scoped, on a file, simulated clock) is checked for the
invariants a newcomer relies on: every task ends final, no attempt has two agents and no
task is completed twice, the crashed agent's tasks came back through their leases, blocked
work has a failed or cancelled ancestor, agent figures match the task table, the report has
its plots, and running again resumes instead of duplicating. Two runs with one seed give
one outcome; the text summary and the HTML report speak one vocabulary.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import networkx as nx
import pytest

import athena_orch
from athena_orch.demo import (
    COLUMNS,
    FIGURES,
    DemoSettings,
    RealTimeSettings,
    format_summary,
    report_path,
    run_demo,
)
from athena_orch.display import short_text
from athena_orch.exceptions import ValidationError
from athena_orch.workload import (
    Workload,
    load_workload,
    read_agents,
    read_tasks,
    sample_workload,
    synthetic_workload,
)

REPO = Path(__file__).resolve().parent.parent
FINAL = {"completed", "failed", "blocked", "cancelled"}
FAST = DemoSettings(crash_min_tasks=0)  # a crash even in a small queue
CALM = dataclasses.replace(FAST, crash_at=None)  # nobody crashes
# Real time, fast: a simulated hour takes 0.2 s, short leases and back-offs.
REAL = RealTimeSettings(speedup=18_000, lease_seconds=1.0, retry_backoff_seconds=0.02,
                        retry_backoff_max_seconds=0.2, dispatch_interval=0.05, crash_at=None,
                        max_seconds=60)


def _workload() -> Workload:
    # High failure rates so retries, permanent failures and blocking all happen.
    return synthetic_workload(40, 5, seed=1, failure_rate=(0.2, 0.45))


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    wl = _workload()
    with athena_orch.connect(path) as orch:
        summary = run_demo(
            orch,
            wl.agent_records(),
            wl.task_records(),
            seed=1,
            settings=FAST,
            progress=False,
            report=report_path(path),
            workload=wl.name,
        )
    return path, summary


@pytest.fixture
def orch(demo_db):
    with athena_orch.connect(demo_db[0]) as manager:
        yield manager


# ---------------------------------------------------------------------- invariants
def test_every_task_ends_final(demo_db, orch):
    _, summary = demo_db
    frame = orch.queue.to_frame()
    assert len(frame) == 40
    assert set(frame["status"]) <= FINAL, frame["status"].value_counts()
    assert summary["finished"] and not summary["interrupted"]
    assert summary["by_state"]["completed"] > 0
    assert sum(summary["by_state"].values()) == summary["tasks"] == 40


def test_the_run_exercised_routing_claims_and_retries(demo_db):
    _, summary = demo_db
    assert summary["routing_decisions"] > 0
    assert summary["routing_by_source"].get("route_batch", 0) > 0
    assert summary["routed"] > 0 and summary["claimed"] > 0
    assert summary["retries"] > 0
    assert summary["failed_attempts"] == summary["retries"] + summary["failed_for_good"]
    assert summary["clock"] == "simulated" and summary["elapsed_seconds"] > 3600
    assert summary["warnings"] == []


def _attempts(history):
    """Split a task's transitions into attempts: each starts with a hand-out (to
    assigned) and ends when it leaves assigned/running."""
    attempts, current = [], None
    for event in history:
        if event["to_status"] == "assigned":
            current = [event]
            attempts.append(current)
        elif event["from_status"] in ("assigned", "running"):
            assert current is not None, history
            current.append(event)
            if event["to_status"] != "running":
                current = None
    return attempts


def test_no_attempt_has_two_agents(orch):
    tasks = orch.queue.to_frame().set_index("task_id")
    history = orch.queue.history_frame()
    assert set(history["task_id"]) == set(tasks.index)
    for task_id, events in history.sort_values("event_id").groupby("task_id"):
        assert (events["to_status"] == "completed").sum() <= 1, task_id
        attempts = _attempts(events.to_dict("records"))
        for attempt in attempts:
            agents = {e["agent_id"] for e in attempt}
            assert len(agents) == 1 and None not in agents, (task_id, attempt)
            assert attempt[-1]["to_status"] in ("pending", "failed", "completed", "cancelled")
            if attempt[-1]["to_status"] == "completed":
                assert [e["to_status"] for e in attempt] == ["assigned", "running", "completed"]
        if tasks.at[task_id, "status"] == "completed":
            assert attempts[-1][0]["agent_id"] == tasks.at[task_id, "assigned_to"]


def test_the_crashed_agents_tasks_came_back_through_requeue_stale(demo_db, orch):
    _, summary = demo_db
    (victim,) = summary["crashed_agents"]
    history = orch.queue.history_frame()
    expired = history[history["detail"].str.contains(f"lease expired (agent {victim})",
                                                     regex=False, na=False)]
    assert len(expired) >= 1 and set(expired["from_status"]) <= {"assigned", "running"}
    assert summary["lease_expiries"] >= len(expired)
    table = summary["agents"].set_index("agent_id")
    assert table.at[victim, "leases_expired"] == len(expired)


def test_blocked_tasks_have_a_failed_or_cancelled_ancestor(orch):
    graph = orch.queue.dependency_graph()
    status = nx.get_node_attributes(graph, "status")
    blocked = [t for t, s in status.items() if s == "blocked"]
    for task in blocked:
        assert {status[a] for a in nx.ancestors(graph, task)} & {"failed", "cancelled"}, task


def test_agent_figures_match_the_task_table_and_history(demo_db, orch):
    agents = orch.registry.to_frame().set_index("agent_id")
    tasks = orch.queue.to_frame()
    completed = Counter(tasks.loc[tasks["status"] == "completed", "assigned_to"])
    history = orch.queue.history_frame()
    ends = history[
        history["from_status"].isin(["assigned", "running"])
        & history["to_status"].isin(["pending", "failed"])
        & ~history["detail"].str.startswith("released", na=False)  # a release is no failure
    ]
    failed = Counter(ends["agent_id"])
    for agent_id, row in agents.iterrows():
        assert row["total_completed"] == completed[agent_id], agent_id
        assert row["total_failed"] == failed[agent_id], agent_id
        assert row["current_load"] == 0
    assert demo_db[1]["figures_match"]
    table = demo_db[1]["agents"].set_index("agent_id")
    assert table["completed"].sum() == len(tasks[tasks["status"] == "completed"])


def test_report_has_tables_and_plots(demo_db):
    path, summary = demo_db
    report = report_path(path)
    assert report == path.with_name("demo_report.html")
    assert summary["report"] == str(report)
    text = report.read_text(encoding="utf-8")
    assert text.count("data:image/png;base64,") == 4
    assert "<table" in text and "Tasks by state" in text


def test_summary_text_names_the_figures(demo_db):
    text = format_summary(demo_db[1])
    for needle in ("by state", "routing", "retries", "figures match", "agent_id"):
        assert needle in text


def test_rerun_resumes_without_duplicates(demo_db):
    path, first = demo_db
    wl = _workload()
    with athena_orch.connect(path) as orch:
        before = orch.queue.to_frame()[["task_id", "status"]]
        summary = run_demo(
            orch, wl.agent_records(), wl.task_records(), seed=2, settings=CALM, progress=False
        )
        after = orch.queue.to_frame()[["task_id", "status"]]
        agents = orch.registry.to_frame()
    assert summary["tasks_created"] == 0 and summary["tasks_reused"] == 40
    assert len(after) == 40 and sorted(after["task_id"]) == sorted(before["task_id"])
    assert (
        before.set_index("task_id")["status"].to_dict()
        == after.set_index("task_id")["status"].to_dict()
    )
    assert len(agents) == 5 and summary["figures_match"]


def test_resume_requeues_tasks_a_killed_run_left_behind(tmp_path):
    path = tmp_path / "killed.duckdb"
    wl = synthetic_workload(12, 3, seed=4)
    with athena_orch.connect(path) as orch:  # a run that died right after handing out work
        for agent in wl.agent_records():
            orch.registry.register_agent(
                agent["agent_id"],
                agent["capabilities"],
                {"max_concurrent_tasks": agent["max_concurrent_tasks"]},
            )
        orch.queue.create_tasks(wl.task_records())
        held = [
            t
            for t in (orch.queue.claim_task(a["agent_id"]) for a in wl.agent_records())
            if t is not None
        ]
        orch.queue.start_task(held[0].id)
    assert held
    with athena_orch.connect(path) as orch:
        summary = run_demo(
            orch, wl.agent_records(), wl.task_records(), seed=4, settings=CALM, progress=False
        )
        frame = orch.queue.to_frame()
        first = orch.queue.get_task_history(held[0].id)
    assert summary["orphans_requeued"] == len(held)
    assert summary["tasks_created"] == 0 and len(frame) == 12
    assert set(frame["status"]) <= FINAL
    assert any("orphaned" in (e["detail"] or "") for e in first)
    assert summary["figures_match"]


def test_unroutable_task_is_cancelled_and_blocks_downstream():
    agents = [
        {
            "agent_id": "solo",
            "capabilities": ["python"],
            "max_concurrent_tasks": 2,
            "speed_factor": 1.0,
            "failure_rate": 0.0,
            "mode": "pull",
        }
    ]
    tasks = [
        {"key": "a", "content": "code it", "task_type": "coding", "requirements": ["python"]},
        {
            "key": "b",
            "content": "translate it",
            "task_type": "writing",
            "requirements": ["translation"],
            "dependencies": ["a"],
        },
        {
            "key": "c",
            "content": "ship it",
            "task_type": "coding",
            "requirements": ["python"],
            "dependencies": ["b"],
        },
    ]
    with athena_orch.connect() as orch:
        summary = run_demo(orch, agents, tasks, seed=1, settings=CALM, progress=False)
        status = dict(zip(orch.queue.to_frame()["content"], orch.queue.to_frame()["status"]))
        decisions = orch.router.decisions()
        graph = orch.queue.dependency_graph()
    assert status == {"code it": "completed", "translate it": "cancelled", "ship it": "blocked"}
    assert len(summary["unroutable_cancelled"]) == 1
    assert "no agent has every capability" in decisions["reason"].iloc[-1]
    (blocked,) = [t for t, d in graph.nodes(data=True) if d["status"] == "blocked"]
    assert {graph.nodes[a]["status"] for a in nx.ancestors(graph, blocked)} == {
        "cancelled",
        "completed",
    }


# ---------------------------------------------------------------------- same seed, same outcome
def _outcome(summary):
    """The summary without what differs by design between two fresh runs: task ids (new
    each time; names are kept), real time and file names."""
    def names(refs):
        return [{k: v for k, v in r.items() if k != "task_id"} for r in refs]

    kept = {k: v for k, v in summary.items()
            if k not in ("wall_seconds", "database", "report", "agents", "failed_tasks",
                         "unroutable_cancelled", "blocked_by_root")}
    return {**kept, "agents": summary["agents"].to_dict("records"),
            **{k: names(summary[k]) for k in ("failed_tasks", "unroutable_cancelled",
                                              "blocked_by_root")}}


def _story(orch):
    """Every task's transitions by name, times from the run's first event."""
    tasks = orch.queue.to_frame().set_index("task_id")
    history = orch.queue.history_frame().sort_values("event_id")
    start = history["at"].min()
    detail = history["detail"].fillna("").str.replace(r"[0-9a-f]{8}-[0-9a-f-]{27}", "<id>",
                                                     regex=True)
    return list(zip(tasks.loc[history["task_id"], "name"], history["from_status"],
                    history["to_status"], history["agent_id"], detail,
                    (history["at"] - start).dt.total_seconds()))


def _run(seed, settings=FAST, workload=None):
    wl = workload or synthetic_workload(60, 6, seed=5, failure_rate=(0.15, 0.35))
    with athena_orch.connect() as orch:
        summary = run_demo(orch, wl.agent_records(), wl.task_records(), seed=seed,
                           settings=settings, progress=False, workload=wl.name)
        return summary, _story(orch)


def test_the_same_seed_gives_the_same_outcome():
    first, story = _run(3)
    second, again = _run(3)
    assert first["finished"] and first["crashed_agents"]
    assert first["failed_attempts"] > 0 and first["routed"] > 0 and first["claimed"] > 0
    assert _outcome(first) == _outcome(second)
    assert story == again  # every transition, agent and simulated time


def test_another_seed_gives_another_story():
    first, story = _run(3)
    other, different = _run(4)
    assert other["finished"]
    assert story != different


def test_real_time_runs_workers_to_completion():
    wl = synthetic_workload(12, 3, seed=4)
    with athena_orch.connect() as orch:
        summary = run_demo(orch, wl.agent_records(), wl.task_records(), seed=4,
                           real_time=True, settings=REAL, progress=False)
        frame = orch.queue.to_frame()
    assert summary["finished"] and summary["clock"] == "real"
    assert set(frame["status"]) <= FINAL and summary["figures_match"]
    assert summary["warnings"] == []
    assert "real time (clock real: Worker threads)" in format_summary(summary)


def test_settings_of_the_other_clock_are_refused():
    with athena_orch.connect() as orch:
        with pytest.raises(ValidationError, match="real_time=True takes RealTimeSettings"):
            run_demo(orch, [], [], real_time=True, settings=FAST, progress=False)
        with pytest.raises(ValidationError, match="real_time=False takes DemoSettings"):
            run_demo(orch, [], [], settings=REAL, progress=False)
        assert orch.queue.get_queue_statistics().total_count == 0  # nothing was done


# ---------------------------------------------------------------------- one vocabulary
class _Tables(HTMLParser):
    """Each table's header rows (lists of header cell texts) and first column."""

    def __init__(self):
        super().__init__()
        self.tables, self.cell, self.section = [], None, None

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append({"head": [], "first": []})
        elif tag in ("thead", "tbody"):
            self.section = tag
        elif tag == "tr":
            if self.section == "thead":
                self.tables[-1]["head"].append([])
            self.column = 0
        elif tag in ("th", "td"):
            self.cell = ""

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data

    def handle_endtag(self, tag):
        if tag in ("th", "td") and self.cell is not None:
            if self.section == "thead":
                self.tables[-1]["head"][-1].append(self.cell.strip())
            elif self.column == 0:
                self.tables[-1]["first"].append(self.cell.strip())
            self.column += 1
            self.cell = None


def _report_tables(demo_db):
    parser = _Tables()
    parser.feed(report_path(demo_db[0]).read_text(encoding="utf-8"))
    return parser.tables


def test_report_tables_have_one_header_row_without_blanks(demo_db):
    tables = _report_tables(demo_db)
    assert len(tables) >= 6
    for table in tables:
        assert len(table["head"]) == 1, table["head"]
        assert all(table["head"][0]), table["head"]


def test_summary_and_report_name_the_columns_alike(demo_db):
    tables = _report_tables(demo_db)
    text = format_summary(demo_db[1])
    (agents,) = [t for t in tables if t["head"][0][:2] == ["agent_id", "completed"]]
    assert agents["head"][0] == list(COLUMNS)
    header = next(line.split() for line in text.splitlines() if line.split()[:1] == ["agent_id"])
    assert header == list(COLUMNS)
    legend = next(t for t in tables if t["head"][0] == ["column", "meaning"])
    assert legend["first"] == list(COLUMNS)
    for column in list(COLUMNS)[1:]:  # the text says what each column is, too
        assert re.search(rf"^  {column} +{re.escape(COLUMNS[column])}$", text, re.M), column


def test_retry_figures_are_defined_once_and_used_alike(demo_db):
    _, summary = demo_db
    tables = _report_tables(demo_db)
    facts = next(t for t in tables if t["head"][0] == ["figure", "value", "meaning"])
    text = format_summary(summary)
    for figure in ("failed_attempts", "retries", "failed_for_good", "lease_expiries",
                   "retries_rerouted"):
        assert figure in facts["first"]
        assert f"{figure} {summary[figure]}" in text  # the same name and number
        assert FIGURES[figure] in text
    assert set(facts["first"]) <= set(FIGURES)
    for old in ("retries_total", "permanent_failures", "done_now", "avg_min ", "lost_attempts"):
        assert old not in text


def test_tasks_are_shown_by_name_and_distinctive_short_id(demo_db, orch):
    _, summary = demo_db
    frame = orch.queue.to_frame()
    shown = frame[frame["status"].isin(["failed", "cancelled"])]
    assert len(shown) and summary["blocked_by_root"]
    text = format_summary(summary)
    report = report_path(demo_db[0]).read_text(encoding="utf-8")
    prefixes = {t[:8] for t in frame["task_id"]}
    assert len(prefixes) < len(frame) / 4  # the shared prefix: it tells nothing apart
    for task_id, name in zip(shown["task_id"], shown["name"]):
        assert f"{name} ({short_text(task_id)})" in text
        assert short_text(task_id) in report and name in report
    for prefix in prefixes:
        assert f"({prefix})" not in text


def test_bad_demo_flags_are_usage_errors(tmp_path):
    db = tmp_path / "orch.duckdb"
    for args, message in ((["--real-time", "yes"], "unrecognized arguments: yes"),
                          (["--seed", "x"], "argument --seed: invalid int value: 'x'")):
        done = subprocess.run([sys.executable, "-m", "athena_orch", "demo", "--db", str(db),
                               *args], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode == 2 and done.stdout == ""
        assert message in done.stderr and "Traceback" not in done.stderr
        assert not db.exists()


def test_demo_help_names_the_clocks():
    done = subprocess.run([sys.executable, "-m", "athena_orch", "demo", "--help"],
                          capture_output=True, text=True)
    text = " ".join(done.stdout.split())
    assert "--real-time" in text and "simulated clock" in text and "same --seed" in text


# ---------------------------------------------------------------------- workloads
def test_committed_data_is_what_the_generator_writes(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "athena_orch.workload", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    for name in ("agents.csv", "tasks.csv"):
        assert (tmp_path / name).read_bytes() == (REPO / "data" / name).read_bytes(), name


def test_sample_workload_is_a_routable_dag():
    wl = load_workload(REPO / "data")
    assert wl.tasks.equals(sample_workload().tasks) and wl.agents.equals(sample_workload().agents)
    assert 150 <= len(wl.tasks) <= 400 and wl.tasks["key"].is_unique
    graph = nx.DiGraph()
    graph.add_nodes_from(wl.tasks["key"])
    graph.add_edges_from(
        (d, k) for k, deps in zip(wl.tasks["key"], wl.tasks["dependencies"]) for d in deps
    )
    assert nx.is_directed_acyclic_graph(graph) and len(graph) == len(wl.tasks)
    caps = [set(c) for c in wl.agents["capabilities"]]
    unroutable = [
        k
        for k, r in zip(wl.tasks["key"], wl.tasks["requirements"])
        if not any(set(r) <= c for c in caps)
    ]
    assert unroutable == ["churn.translate"]  # the one the demo cancels on purpose
    assert set(wl.agents["mode"]) == {"pull", "push"}


def test_synthetic_workload_is_deterministic_and_routable():
    a = synthetic_workload(120, 7, seed=3, layers=5, max_fan_in=4)
    b = synthetic_workload(120, 7, seed=3, layers=5, max_fan_in=4)
    assert a.tasks.equals(b.tasks) and a.agents.equals(b.agents)
    assert not a.tasks.equals(synthetic_workload(120, 7, seed=4, layers=5).tasks)
    caps = [set(c) for c in a.agents["capabilities"]]
    assert all(any(set(r) <= c for c in caps) for r in a.tasks["requirements"])
    position = {k: i for i, k in enumerate(a.tasks["key"])}
    for key, deps in zip(a.tasks["key"], a.tasks["dependencies"]):
        assert 1 <= len(deps) <= 4 or position[key] < 120 // 5
        assert all(position[d] < position[key] for d in deps)


def test_csv_round_trip_and_records(tmp_path):
    wl = synthetic_workload(30, 4, seed=2)
    wl.write_csv(tmp_path)
    agents, tasks = read_agents(tmp_path / "agents.csv"), read_tasks(tmp_path / "tasks.csv")
    assert agents.equals(wl.agents) and tasks.equals(wl.tasks)
    records = wl.task_records()
    assert {r["idempotency_key"] for r in records} == {f"{wl.name}:{k}" for k in wl.tasks["key"]}
    with athena_orch.connect() as orch:
        ids = orch.queue.create_tasks(records)
        assert orch.queue.create_tasks(records) == ids  # idempotent
        assert orch.queue.get_queue_statistics().total_count == 30


# ---------------------------------------------------------------------- command line
def test_cli_demo_runs_a_synthetic_workload(tmp_path):
    db = tmp_path / "cli.duckdb"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "athena_orch",
            "demo",
            "--db",
            str(db),
            "--tasks",
            "30",
            "--agents",
            "4",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (
        "by state:" in result.stdout and "agent figures match the task table: yes" in result.stdout
    )
    assert (tmp_path / "cli_report.html").exists()
    with athena_orch.connect(db) as orch:
        assert orch.queue.get_queue_statistics().total_count == 30
