"""Task names (``Task.name``, a batch record's ``key`` when none is given) and short ids
that tell tasks made together apart."""

from __future__ import annotations

import html
import json
import re

import duckdb
import pandas as pd
import pytest
from records_reference import one_at_a_time

import athena_orch as ao
from athena_orch import display
from athena_orch import task_records as tr
from athena_orch.exceptions import (
    DependencyError,
    DuplicateTaskError,
    ValidationError,
    shown,
)
from athena_orch.ids import new_task_ids
from athena_orch.stores.sql import migrations
from tests.test_mcp_tools import Tools, run_tools


def test_a_name_is_stored_returned_and_listed(orch):
    queue = orch.queue
    orch.registry.register_agent("a1", ["python"])
    named = queue.create_task("Fetch the sources", "research", name="fetch sources")
    plain = queue.create_task("Other", "research")
    assert queue.get_task_status(named).name == "fetch sources"
    assert queue.get_task_status(plain).name is None
    assert {t.id: t.name for t in queue.query_tasks()} == {named: "fetch sources", plain: None}
    assert [t.name for t in queue.poll_tasks()] == ["fetch sources", None]
    frame = queue.to_frame()
    names = frame.set_index("task_id")["name"]
    assert names[named] == "fetch sources" and pd.isna(names[plain])
    claimed = queue.claim_task("a1")  # tasks_claim_pick
    assert (claimed.id, claimed.name) == (named, "fetch sources")
    assert claimed.to_dict()["name"] == "fetch sources"
    failed = queue.fail_task(named, "boom", should_retry=False)  # tasks_lock
    assert failed.name == "fetch sources"


def test_a_stale_task_keeps_its_name(orch, make_clock):
    queue = orch.queue
    queue.clock = clock = make_clock()
    orch.registry.register_agent("a1", [])
    tid = queue.create_task("x", "t", name="slow one")
    queue.claim_task("a1")
    clock.advance(queue.lease_seconds + 1)
    stale = queue.episodic.stale_tasks(clock())  # tasks_stale
    assert [(t.id, t.name) for t in stale] == [(tid, "slow one")]


def test_a_batch_key_is_the_name_unless_one_is_given(orch):
    ids = orch.queue.create_tasks([
        {"content": "a", "task_type": "t", "key": "fetch"},
        {"content": "b", "task_type": "t", "key": "sum", "name": "Summary",
         "dependencies": ["fetch"]},
        {"content": "c", "task_type": "t", "name": "no key"},
        {"content": "d", "task_type": "t"},
    ])
    names = [orch.queue.get_task_status(i).name for i in ids]
    assert names == ["fetch", "Summary", "no key", None]


def test_a_dataframe_name_column_with_empty_cells_falls_back_to_the_key(orch):
    frame = pd.DataFrame({"content": ["a", "b", "c"], "task_type": "t",
                          "key": ["k1", None, "k3"], "name": [None, "B", float("nan")]})
    ids = orch.queue.create_tasks(frame)
    assert [orch.queue.get_task_status(i).name for i in ids] == ["k1", "B", "k3"]


def test_both_validators_name_records_alike():
    records = [{"content": "a", "task_type": "t", "key": "k1"},
               {"content": "b", "task_type": "t", "key": "k2", "name": "B"},
               {"content": "c", "task_type": "t", "name": "C"},
               {"content": "d", "task_type": "t"}]
    for data in (records, pd.DataFrame(records)):
        assert tr.batch_from(data).name == one_at_a_time(data).name == ["k1", "B", "C", None]


BAD_NAMES = ["", "   ", "x" * 513, "a\x00b", "\ud800", 5, ["a"]]


@pytest.mark.parametrize("name", BAD_NAMES, ids=["empty", "blank", "long", "nul", "surrogate",
                                                 "int", "list"])
def test_bad_names_are_refused_and_nothing_is_written(orch, unchanged, name):
    orch.queue.create_task("before", "t")
    with unchanged():
        with pytest.raises(ValidationError, match="name"):
            orch.queue.create_task("x", "t", name=name)
        with pytest.raises(ValidationError, match="record 1: name"):
            orch.queue.create_tasks([{"content": "ok", "task_type": "t", "name": "fine"},
                                     {"content": "x", "task_type": "t", "name": name}])
        if not isinstance(name, list):
            frame = pd.DataFrame({"content": ["ok", "x"], "task_type": "t",
                                  "name": ["fine", name]}, dtype=object)
            with pytest.raises(ValidationError, match="record 1: name"):
                orch.queue.create_tasks(frame)


def test_a_name_of_512_bytes_is_accepted(orch):
    name = "é" * 256
    tid = orch.queue.create_task("x", "t", name=name)
    assert orch.queue.get_task_status(tid).name == name


def test_an_idempotency_key_reused_with_another_name_is_refused(orch, unchanged):
    first = orch.queue.create_task("x", "t", idempotency_key="job-1", name="one")
    assert orch.queue.create_task("x", "t", idempotency_key="job-1", name="one") == first
    with unchanged():
        with pytest.raises(DuplicateTaskError, match="name"):
            orch.queue.create_task("x", "t", idempotency_key="job-1", name="two")
        with pytest.raises(DuplicateTaskError, match="name"):
            orch.queue.create_task("x", "t", idempotency_key="job-1")


def test_a_resubmitted_batch_with_keys_gets_the_same_tasks(orch):
    records = [{"content": "a", "task_type": "t", "key": "a", "idempotency_key": "i-a"},
               {"content": "b", "task_type": "t", "key": "b", "idempotency_key": "i-b",
                "dependencies": ["a"]}]
    assert orch.queue.create_tasks(records) == orch.queue.create_tasks(records)


def test_a_version_3_file_gains_the_name_column(tmp_path):
    path = tmp_path / "v3.duckdb"
    con = duckdb.connect(str(path))  # the schema as release 3 left it, built by hand
    con.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT, "
                "applied_at TIMESTAMPTZ)")
    for version, name, script in migrations():
        if version <= 3:
            con.execute(script)
            con.execute("INSERT INTO schema_migrations VALUES (?, ?, now())", [version, name])
    old = "01a2328d-0000-7000-8000-000000000001"
    con.execute("INSERT INTO episodic_events (timestamp, created_at, event_type, content, "
                "task_id, task_type, task_status, context_phase, priority, priority_rank, "
                "requirements, dependencies, retry_count, max_retries, waiting_on) VALUES "
                "(now(), now(), 'task', 'made by release 3', ?, 't', 'pending', 'pending', "
                "'medium', 1, '[]', '[]', 0, 3, 0)", [old])
    con.close()
    with ao.connect(path) as orch:
        assert orch.db.schema_version == max(version for version, _, _ in migrations())
        task = orch.queue.get_task_status(old)
        assert (task.content, task.name) == ("made by release 3", None)
        new = orch.queue.create_tasks([{"content": "a", "task_type": "t", "key": "k"}])[0]
        assert orch.queue.get_task_status(new).name == "k"
        assert orch.queue.to_frame().set_index("task_id")["name"].isna().to_dict() == {
            old: True, new: False}


# --------------------------------------------------------------------------- short ids
def test_short_ids_of_tasks_made_together_are_all_distinct(orch):
    ids = orch.queue.create_tasks([{"content": str(i), "task_type": "t"} for i in range(200)])
    assert len({i[:8] for i in ids}) < 10  # the time-ordered start is shared
    shorts = [display.short_text(i) for i in ids]
    assert len(set(shorts)) == 200
    assert all(s == "…" + i[-12:] for s, i in zip(shorts, ids))
    singles = [orch.queue.create_task(str(i), "t") for i in range(50)]
    assert len({display.short_text(i) for i in ids + singles}) == 250


def test_short_id_shows_the_end_with_the_whole_id_in_a_tooltip():
    tid = "01a2328d-0b88-70ac-b06a-7dcf8b99e61a"
    out = display.short_id(tid)
    assert out == f'<code title="{tid}">…7dcf8b99e61a</code>'
    assert display.short_text("agent-7") == "agent-7"  # short values whole
    assert display.short_id('<b>"x"</b>' * 3).startswith('<code title="&lt;b&gt;&quot;')
    assert "none" in display.short_id(None)


def test_cards_show_the_name_and_the_short_id(orch):
    tid = orch.queue.create_task("x", "t", name="<b>fetch</b> sources")
    out = display.task_html(orch.queue.get_task_status(tid))
    head = out.split("<table")[0]
    assert "&lt;b&gt;fetch&lt;/b&gt; sources" in head and "<b>fetch</b>" not in out
    assert f"…{tid[-12:]}" in head and f'title="{tid}"' in head
    plain = orch.queue.create_task("y", "t")
    head = display.task_html(orch.queue.get_task_status(plain)).split("<table")[0]
    assert re.search(r"<b>Task</b> <code", head)


def test_dependencies_on_a_card_are_told_apart(orch):
    deps = orch.queue.create_tasks([{"content": str(i), "task_type": "t"} for i in range(3)])
    tid = orch.queue.create_task("x", "t", dependencies=deps)
    text = html.unescape(display.task_html(orch.queue.get_task_status(tid)))
    assert all(f"…{d[-12:]}" in text for d in deps)


def test_error_messages_keep_whole_ids(orch):
    unknown = new_task_ids(8)
    with pytest.raises(DependencyError) as caught:
        orch.queue.create_task("x", "t", dependencies=unknown)
    message = str(caught.value)
    quoted = re.findall(r"'([^']*)'", message)
    assert len(quoted) >= 2 and all(q in unknown for q in quoted)
    assert message.rsplit("'", 1)[1] in ("…", "]")  # cut between ids, never inside one
    assert shown(unknown[0]) == repr(unknown[0])


# --------------------------------------------------------------------------- MCP tools
def test_the_create_tools_take_a_name(orch):
    async def call(t: Tools, tool: str, arguments: dict) -> tuple[bool, str]:
        result = await t.client.call_tool(tool, arguments)  # Tools.ok's first argument is `name`
        return result.is_error, " ".join(c.text for c in result.content)

    async def body(t: Tools) -> None:
        failed, text = await call(t, "orchestration_create_task",
                                  {"content": "x", "task_type": "t", "name": "named by MCP"})
        assert not failed and json.loads(text)["task"]["name"] == "named by MCP"
        many = await t.ok("orchestration_create_tasks", tasks=[
            {"content": "a", "task_type": "t", "key": "a"},
            {"content": "b", "task_type": "t", "name": "B", "dependencies": ["a"]}])
        got = [(await t.ok("orchestration_get_task", task_id=i))["task"]["name"]
               for i in many["task_ids"]]
        assert got == ["a", "B"]
        failed, text = await call(t, "orchestration_create_task",
                                  {"content": "x", "task_type": "t", "name": " "})
        assert failed and "name" in text and "Traceback" not in text

    run_tools(orch, body)
