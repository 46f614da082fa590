"""The decision log is written behind: a routing call reads once and writes nothing; the
decisions reach the database on read, on a batch, on close and on a short timer."""

from __future__ import annotations

import time

import duckdb

import athena_orch
from athena_orch.decision_log import DecisionLog


def test_route_task_is_one_read_and_no_write(tmp_path):
    seen: list[str] = []
    with athena_orch.connect(tmp_path / "o.duckdb",
                             tracer=lambda sql, params: seen.append(sql)) as orch:
        orch.registry.register_agent("a", ["x"])
        orch.router.route_task({"requirements": ["x"]})  # builds the agent table
        seen.clear()
        assert orch.router.route_task({"requirements": ["x"]}) == "a"
        assert len(seen) == 1 and "INSERT" not in seen[0]
        orch.router.policy = "thompson"
        seen.clear()
        orch.router.route_task({"requirements": ["x"], "task_type": "t"})
        assert len(seen) == 1  # the posterior's counts come with the same read


def test_decisions_wait_in_memory_until_read(orch):
    orch.registry.register_agent("a", ["x"])
    orch.router.log.flush_seconds = 3600  # no timer flush during the test
    for _ in range(3):
        orch.router.route_task({"requirements": ["x"]})
    assert orch.router.log.pending == 3
    assert len(orch.db.table_contents()["routing_decisions"]) == 0
    log = orch.router.decisions()  # a read flushes first
    assert len(log) == 3 and orch.router.log.pending == 0
    assert len(orch.db.table_contents()["routing_decisions"]) == 3


def test_a_batch_is_written_after_the_decisions_before_it(orch):
    orch.registry.register_agent("a", ["x"], {"max_concurrent_tasks": 10})
    orch.router.log.flush_seconds = 3600
    orch.router.decide({"id": "single", "requirements": ["x"]})
    orch.router.route_batch([{"id": "b1", "requirements": ["x"]},
                             {"id": "b2", "requirements": ["x"]}])
    orch.router.decide({"id": "after", "requirements": ["x"]})
    log = orch.router.decisions()
    assert list(log["task_id"]) == ["single", "b1", "b2", "after"]
    assert list(log["decision_id"]) == sorted(log["decision_id"])


def test_close_writes_what_waits(tmp_path):
    path = tmp_path / "o.duckdb"
    with athena_orch.connect(path) as orch:
        orch.registry.register_agent("a", ["x"])
        orch.router.log.flush_seconds = 3600
        orch.router.route_task({"requirements": ["x"]})
        assert orch.router.log.pending == 1
    with athena_orch.connect(path) as orch:
        assert len(orch.router.decisions()) == 1


def test_the_timer_writes_within_its_period(orch):
    orch.registry.register_agent("a", ["x"])
    orch.router.log.flush_seconds = 0.05
    orch.router.route_task({"requirements": ["x"]})
    deadline = time.monotonic() + 30
    while orch.router.log.pending and time.monotonic() < deadline:
        time.sleep(0.02)
    assert orch.router.log.pending == 0
    assert len(orch.db.table_contents()["routing_decisions"]) == 1


def test_many_decisions_are_written_in_bulk(orch):
    log = DecisionLog(orch.meta, flush_seconds=3600, max_pending=5)
    row = dict(decided_at=orch.now(), task_id=None, requirements="[]", candidates="[]",
               scores="{}", components="{}", selected_agent=None, weights="{}",
               reason="r", source="test", policy="weighted", propensity=None,
               propensity_method=None, propensities="{}")
    for _ in range(4):
        log.add(row)
    assert log.pending == 4
    log.add(row)  # the fifth fills it: one bulk insert
    assert log.pending == 0
    assert len(orch.db.table_contents()["routing_decisions"]) == 5


def test_decisions_are_stamped_with_the_managers_clock(orch, clock):
    orch.registry.register_agent("a", ["x"])
    orch.router.route_task({"requirements": ["x"]})
    assert orch.router.decisions()["decided_at"].iloc[0] == clock.now


def test_close_logs_what_it_cannot_write_and_still_closes(tmp_path, caplog):
    path = tmp_path / "o.duckdb"
    orch = athena_orch.connect(path)
    orch.registry.register_agent("a", ["x"])
    orch.router.log.flush_seconds = 3600
    orch.router.route_task({"requirements": ["x"]})
    with duckdb.connect(str(path)) as con:  # the same file, behind the manager's back
        con.execute("DROP TABLE routing_decisions")
    orch.close()
    assert orch.closed
    assert "1 routing decisions could not be written" in caplog.text
