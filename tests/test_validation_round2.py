"""Reliability round 2 (issue 13, items 5, 6 and 8), on both backends.

- Agent figures cannot overflow: durations are bounded (10 years) and the stored sums
  saturate, so no agent is ever broken for good; metadata is strict JSON.
- One validation for both backends, before any SQL: no NUL, no lone surrogate, ids of
  at most 512 bytes of UTF-8, no NaN where a value was given (a DataFrame's empty cell
  still means the default), batch keys that cannot shadow task ids, aware datetimes.
- ``register_agent`` runs a constant number of statements however many capabilities,
  and agents registered at once with overlapping capabilities never deadlock.

Every refusal is checked with ``unchanged()``: every table as it was.
"""

from __future__ import annotations

import math
import random
import threading
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest
from conftest import postgres_only
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from records_reference import one_at_a_time
from together import at_once

import athena_orch
from athena_orch import task_records as tr
from athena_orch.exceptions import AgentNotFoundError, OrchestrationError, ValidationError
from athena_orch.models import RECORD_FIELDS
from athena_orch.stores.base import utcnow
from athena_orch.stores.meta import FIGURE_CAP
from athena_orch.validation import MAX_DURATION_MS, MAX_ID_BYTES

NAN = float("nan")


def _running(orch, agent="w", **task):
    """A task of ``agent``'s, running."""
    tid = orch.queue.create_task(task.pop("content", "work"), "t", **task)
    orch.queue.assign_task(tid, agent)
    orch.queue.start_task(tid)
    return tid


# ------------------------------------------------------- item 5: figures cannot overflow


@pytest.mark.parametrize("duration", [2**62, MAX_DURATION_MS + 1, -1, NAN, math.inf, 1.5,
                                      np.float64("nan")], ids=str)
def test_update_agent_performance_refuses_durations_past_the_bound(orch, unchanged, duration):
    orch.registry.register_agent("w", ["x"])
    with unchanged(), pytest.raises(ValidationError, match="duration_ms"):
        orch.registry.update_agent_performance("w", True, duration)


def test_the_longest_durations_add_up_and_the_agent_keeps_working(orch):
    """The issue's repro with the largest duration now allowed: figures add up exactly and
    complete_task goes on working for the agent."""
    orch.registry.register_agent("w", ["x"])
    orch.registry.update_agent_performance("w", True, MAX_DURATION_MS)
    orch.registry.update_agent_performance("w", True, MAX_DURATION_MS)
    tid = _running(orch)
    orch.queue.complete_task(tid, "ok", metrics={"duration_ms": MAX_DURATION_MS})
    health = orch.registry.get_agent_health("w")
    assert health["total_completed"] == 3
    assert health["avg_completion_ms"] == MAX_DURATION_MS


def test_figures_saturate_instead_of_overflowing(orch):
    """Sums that would pass BIGINT stop at FIGURE_CAP (MetaStore is the seed's public
    store; nothing else can add that much): later outcomes are still recorded."""
    orch.registry.register_agent("w", ["x"])
    for _ in range(3):
        orch.meta.record_outcome("w", utcnow(), completed=FIGURE_CAP, failed=FIGURE_CAP,
                                 success_ms=FIGURE_CAP)
    orch.meta.record_outcomes(["w", "w"], utcnow(), completed=[FIGURE_CAP, FIGURE_CAP],
                              failed=[0, 0], success_ms=[FIGURE_CAP, FIGURE_CAP])
    tid = _running(orch)
    assert orch.queue.complete_task(tid, "ok", metrics={"duration_ms": 5}).status.value \
        == "completed"
    orch.registry.update_agent_performance("w", False, 0)
    figures = orch.meta.agent_figures("w")
    assert (figures["total_completed"], figures["total_failed"],
            figures["total_success_ms"]) == (FIGURE_CAP, FIGURE_CAP, FIGURE_CAP)
    assert orch.queue.claim_task("w") is None  # claims work too (nothing left to claim)


@pytest.mark.parametrize("duration", [NAN, np.float64("nan"), math.inf, MAX_DURATION_MS + 1,
                                      2**62, -1], ids=str)
def test_complete_task_refuses_bad_durations(orch, unchanged, duration):
    """A NaN duration_ms was silently taken as 'none given' (completions_from)."""
    orch.registry.register_agent("w", ["x"])
    tid = _running(orch)
    with unchanged():
        with pytest.raises(ValidationError, match="duration_ms"):
            orch.queue.complete_task(tid, "ok", metrics={"duration_ms": duration})
        with pytest.raises(ValidationError, match="duration_ms"):
            orch.queue.complete_tasks([{"task_id": tid, "result": "ok", "duration_ms": duration}])


def test_estimated_durations_have_the_same_bound(orch, unchanged):
    orch.queue.create_task("c", "t", estimated_duration_ms=MAX_DURATION_MS)
    with unchanged():
        with pytest.raises(ValidationError, match="estimated_duration_ms"):
            orch.queue.create_task("c", "t", estimated_duration_ms=MAX_DURATION_MS + 1)
        with pytest.raises(ValidationError, match="record 0: estimated_duration_ms"):
            orch.queue.create_tasks(pd.DataFrame([{"content": "c", "task_type": "t",
                                                   "estimated_duration_ms": 2**62}]))


def test_an_empty_duration_cell_of_a_dataframe_means_none(orch, clock):
    orch.registry.register_agent("w", ["x"])
    first, second = _running(orch), _running(orch)
    clock.advance(2)
    done = orch.queue.complete_tasks(pd.DataFrame(
        {"task_id": [first, second], "result": ["a", "b"], "duration_ms": [7, NAN]}))
    assert [t.execution_duration_ms for t in done] == [7, 2000]  # NaN: the time since start


# ---------------------------------------------------------- item 5: metadata is strict JSON

def _nested(depth: int) -> list:
    out = cur = []
    for _ in range(depth):
        cur.append([])
        cur = cur[0]
    return out


BAD_METADATA = {
    "nan": {"score": NAN},
    "infinity": {"score": math.inf},
    "minus-infinity": {"score": -math.inf},
    "numpy-nan": {"score": np.float64("nan")},
    "nested-nan": {"a": [{"b": [1, NAN]}]},
    "surrogate-value": {"note": "x\ud800"},
    "surrogate-key": {"x\udfff": 1},
    "nested-surrogate": {"a": {"b": ["\udc00"]}},
    "nul-value": {"note": "a\x00b"},
    "nul-key": {"a\x00": 1},
    "int-key": {1: "a"},
    "huge-int": {"n": 2**64},
    "bytes": {"b": b"x"},
    "too-deep": {"a": _nested(100)},
}


@pytest.mark.parametrize("name", list(BAD_METADATA))
def test_metadata_that_is_not_strict_json_is_refused(orch, unchanged, name):
    orch.registry.register_agent("w", ["x"], {"team": "a"})
    orch.queue.create_task("work", "t", requirements=["x"])
    with unchanged(), pytest.raises(ValidationError, match="metadata"):
        orch.registry.register_agent("w", ["x"], BAD_METADATA[name])
    with unchanged(), pytest.raises(ValidationError, match="metadata"):
        orch.registry.register_agent("new", ["x"], BAD_METADATA[name])
    assert [a.id for a in orch.registry.list_agents()] == ["w"]
    assert orch.queue.claim_task("w").content == "work"


def test_strict_json_metadata_round_trips_and_claims_work(orch):
    metadata = {"team": "ünï 🐍", "score": 0.5, "big": 2**63 - 1, "small": -(2**63),
                "nested": {"list": [1, 2.5, None, True, "x", {"y": []}]},
                "escapes": 'q"uote\\ \n\t \x01', "tuple": (1, 2)}
    orch.registry.register_agent("w", ["x"], metadata)
    orch.queue.create_task("work", "t", requirements=["x"])
    stored = orch.registry.get_agent("w").metadata
    assert stored == {**metadata, "tuple": [1, 2]}
    assert [a.id for a in orch.registry.list_agents()] == ["w"]
    assert orch.queue.claim_task("w").content == "work"
    assert orch.registry.set_active("w", False).metadata == stored


# ------------------------------------------------ item 6: no NUL, no lone surrogate, anywhere

BAD_TEXTS = {"nul": "a\x00b", "surrogate": "a\ud800b"}


def _text_calls(orch, bad, existing, running):
    """(argument named in the error, call) for every public text argument."""
    q, reg = orch.queue, orch.registry
    task = {"content": "c", "task_type": "t"}
    return [
        ("content", lambda: q.create_task(bad, "t")),
        ("task_type", lambda: q.create_task("c", bad)),
        ("requirements", lambda: q.create_task("c", "t", requirements=["x", bad])),
        ("dependencies", lambda: q.create_task("c", "t", dependencies=[bad])),
        ("idempotency_key", lambda: q.create_task("c", "t", idempotency_key=bad)),
        ("content", lambda: q.create_tasks([task, {**task, "content": bad}])),
        ("key", lambda: q.create_tasks([{**task, "key": bad}])),
        ("batch_id", lambda: q.create_tasks([{**task, "batch_id": bad}])),
        ("dependencies", lambda: q.create_tasks([{**task, "dependencies": [bad]}])),
        ("task_type", lambda: q.create_tasks(pd.DataFrame([task, {**task, "task_type": bad}],
                                                          dtype=object))),
        ("requirements", lambda: q.create_tasks(pd.DataFrame([{**task, "requirements": [bad]}],
                                                             dtype=object))),
        ("result", lambda: q.complete_task(running, bad)),
        ("result", lambda: q.complete_tasks({running: bad})),
        ("task_id", lambda: q.complete_tasks({bad: "r"})),
        ("error", lambda: q.fail_task(running, bad)),
        ("reason", lambda: q.cancel_task(existing, bad)),
        ("agent_id", lambda: q.assign_task(existing, bad)),
        ("agent_id", lambda: q.claim_task(bad)),
        ("agent_id", lambda: q.heartbeat(agent_id=bad)),
        ("agent_id", lambda: q.query_tasks({"agent_id": bad})),
        ("task_type", lambda: q.query_tasks({"task_type": bad})),
        ("agent_id", lambda: reg.register_agent(bad, ["x"])),
        ("capabilities", lambda: reg.register_agent("w2", ["x", bad])),
        ("metadata", lambda: reg.register_agent("w2", ["x"], {"note": bad})),
        ("metadata", lambda: reg.register_agent("w2", ["x"], {bad: "note"})),
        ("capability", lambda: reg.learn_new_capability("w", bad)),
        ("agent_id", lambda: reg.learn_new_capability(bad, "x")),
        ("agent_id", lambda: reg.update_agent_performance(bad, True, 1)),
        ("agent_id", lambda: reg.set_active(bad, False)),
        ("agent_id", lambda: reg.deregister_agent(bad)),
        ("capabilities", lambda: reg.get_agents_by_capability([bad])),
        ("requirements", lambda: orch.router.route_task({"requirements": [bad]})),
    ]


@pytest.mark.parametrize("kind", list(BAD_TEXTS))
def test_nul_and_lone_surrogates_are_refused_everywhere(orch, unchanged, kind):
    """PostgreSQL refuses NUL in text and DuckDB stored it; neither stores a lone
    surrogate. Both backends now refuse both, before any SQL, naming the argument."""
    orch.registry.register_agent("w", ["x"])
    existing = orch.queue.create_task("existing", "t")
    running = _running(orch)
    calls = _text_calls(orch, BAD_TEXTS[kind], existing, running)
    for argument, call in calls:
        with unchanged(), pytest.raises(ValidationError, match=argument):
            call()
    for read in (orch.queue.get_task_status, orch.registry.get_agent):
        with pytest.raises(ValidationError):
            read(BAD_TEXTS[kind])


def test_control_characters_other_than_nul_are_stored(orch):
    odd = "a\x01\x1f\x7f\u200b\ufeffz"
    orch.registry.register_agent(odd, [odd], {odd: odd})
    tid = orch.queue.create_task(odd, odd, requirements=[odd], idempotency_key=odd)
    task = orch.queue.claim_task(odd)
    assert task.id == tid and (task.content, task.task_type) == (odd, odd)
    assert orch.registry.get_agent(odd).metadata == {odd: odd}


# -------------------------------------------------------------- item 6: ids PostgreSQL indexes

ID_CALLS = {  # (orch, the name to try, a pending task) -> the call
    "agent_id": lambda orch, name, tid: orch.registry.register_agent(name, ["x"]),
    "capabilities": lambda orch, name, tid: orch.registry.register_agent("w2", [name]),
    "capability": lambda orch, name, tid: orch.registry.learn_new_capability("w", name),
    "task_type": lambda orch, name, tid: orch.queue.create_task("c", name),
    "requirements": lambda orch, name, tid: orch.queue.create_task("c", "t", requirements=[name]),
    "idempotency_key": lambda orch, name, tid: orch.queue.create_task("c", "t",
                                                                      idempotency_key=name),
    "key": lambda orch, name, tid: orch.queue.create_tasks([{"content": "c", "task_type": "t",
                                                             "key": name}]),
    "batch_id": lambda orch, name, tid: orch.queue.create_tasks(pd.DataFrame(
        [{"content": "c", "task_type": "t", "batch_id": name}], dtype=object)),
    "agent_id of assign_task": lambda orch, name, tid: orch.queue.assign_task(tid, name),
}


@pytest.mark.parametrize("argument", list(ID_CALLS))
def test_ids_are_at_most_512_bytes_of_utf8(orch, unchanged, argument):
    """Measured in UTF-8 bytes (PostgreSQL's index limit is in bytes): 512 ASCII
    characters or 128 four-byte emoji are accepted, one byte more is refused."""
    orch.registry.register_agent("w", ["x"])
    call = ID_CALLS[argument]
    for fits in ("a" * MAX_ID_BYTES, "🐍" * (MAX_ID_BYTES // 4), "é" * (MAX_ID_BYTES // 2)):
        call(orch, fits, orch.queue.create_task("c", "t"))
    pending = orch.queue.create_task("c", "t")
    for too_long in ("a" * (MAX_ID_BYTES + 1), "🐍" * (MAX_ID_BYTES // 4) + "a",
                     "x" * 10_000_000):
        with unchanged(), pytest.raises(ValidationError, match="too long"):
            call(orch, too_long, pending)


def test_a_10_mb_agent_id_is_refused_but_content_and_results_are_free_text(orch, unchanged):
    big = "x" * 10_000_000
    with unchanged(), pytest.raises(ValidationError, match="agent_id is too long"):
        orch.registry.register_agent(big, ["x"])
    orch.registry.register_agent("w", ["x"])
    tid = _running(orch, content="é" * 1_000_000)
    orch.queue.complete_task(tid, "🐍" * 1_000_000)
    task = orch.queue.get_task_status(tid)
    assert (len(task.content), len(task.result)) == (1_000_000, 1_000_000)


# ------------------------------------------------------------------ item 6: NaN is not "none"


@pytest.mark.parametrize("value", [NAN, np.float64("nan"), pd.NA, None, math.inf],
                         ids=["nan", "np-nan", "NA", "None", "inf"])
def test_priority_nan_is_refused_where_it_was_given(orch, unchanged, value):
    """``priority=NaN`` became 'medium' silently. Given explicitly (create_task, a dict
    record) anything but low/medium/high is a ValidationError."""
    orch.queue.create_task("existing", "t")
    with unchanged():
        with pytest.raises(ValidationError, match="priority"):
            orch.queue.create_task("c", "t", priority=value)
        with pytest.raises(ValidationError, match="record 1: priority"):
            orch.queue.create_tasks([{"content": "a", "task_type": "t"},
                                     {"content": "b", "task_type": "t", "priority": value}])


@pytest.mark.parametrize(("field", "value"), [
    ("estimated_duration_ms", NAN), ("requirements", NAN), ("dependencies", pd.NA),
    ("idempotency_key", NAN), ("key", NAN), ("batch_id", np.float64("nan")),
    ("max_retries", NAN), ("task_type", NAN)])
def test_nan_in_a_dict_record_is_a_value_and_refused(orch, unchanged, field, value):
    with unchanged():
        with pytest.raises(ValidationError, match=field):
            orch.queue.create_tasks([{"content": "a", "task_type": "t", field: value}])
        if field not in ("key", "batch_id"):
            with pytest.raises(ValidationError, match=field):
                orch.queue.create_task(**{"content": "a", "task_type": "t", field: value})


def test_an_empty_dataframe_cell_still_means_the_default(orch):
    """pandas writes NaN into a DataFrame's empty cells: there, and only there, NaN means
    'not given' (documented in task_records and the README)."""
    frame = pd.DataFrame([
        {"content": "a", "task_type": "t", "priority": "high", "requirements": ["x"],
         "idempotency_key": "k", "estimated_duration_ms": 5},
        {"content": "b", "task_type": "t"}])
    assert frame["priority"].isna().tolist() == [False, True]
    tasks = [orch.queue.get_task_status(t) for t in orch.queue.create_tasks(frame)]
    assert [t.priority for t in tasks] == ["high", "medium"]
    assert [t.requirements for t in tasks] == [["x"], []]
    assert [t.idempotency_key for t in tasks] == ["k", None]


# ---------------------------------------------------------- item 6: keys cannot shadow task ids


@pytest.mark.parametrize("shape", ["records", "frame"])
def test_a_batch_key_that_looks_like_a_task_id_is_refused(orch, unchanged, shape):
    """A key equal to an existing task id made dependencies on that task resolve to the
    batch record instead; keys that look like task ids (UUIDs) are refused."""
    existing = orch.queue.create_task("existing", "t")
    for key in (existing, existing.upper(), "00000000-0000-4000-8000-000000000000"):
        records = [{"key": key, "content": "shadow", "task_type": "t"},
                   {"content": "waits", "task_type": "t", "dependencies": [existing]}]
        data = pd.DataFrame(records) if shape == "frame" else records
        with unchanged(), pytest.raises(ValidationError, match="record 0: key .* task id"):
            orch.queue.create_tasks(data)
    ids = orch.queue.create_tasks([{"key": "k", "content": "mine", "task_type": "t"},
                                   {"content": "waits", "task_type": "t",
                                    "dependencies": [existing, "k"]}])
    assert orch.queue.get_task_status(ids[1]).dependencies == [existing, ids[0]]


# -------------------------------------------------------------------- item 6: aware datetimes


def test_naive_datetimes_are_refused(orch, unchanged):
    orch.registry.register_agent("w", ["x"])
    orch.queue.assign_task(orch.queue.create_task("c", "t"), "w")
    naive = datetime(2100, 1, 1)
    with unchanged():
        with pytest.raises(ValidationError, match="now must be timezone-aware"):
            orch.queue.requeue_stale(naive)
        with pytest.raises(ValidationError, match="created_after must be timezone-aware"):
            orch.queue.query_tasks({"created_after": naive})
    paris = timezone(timedelta(hours=1))
    assert len(orch.queue.query_tasks({"created_after": datetime(2000, 1, 1, tzinfo=paris)})) == 1
    assert len(orch.queue.requeue_stale(datetime(2100, 1, 1, tzinfo=paris))) == 1
    assert orch.queue.query_tasks({"created_after": 0.0}) != []  # Unix seconds, as the seed


# ------------------------------------------------ item 6: the bulk checks agree with the reference

AWKWARD = st.sampled_from([
    "a\x00b", "\x00", "x\ud800", "a" * MAX_ID_BYTES, "a" * (MAX_ID_BYTES + 1),
    "🐍" * (MAX_ID_BYTES // 4), "🐍" * (MAX_ID_BYTES // 4 + 1), "01234567-89ab-7def-8123-456789abcdef",
    "01234567-89AB-7DEF-8123-456789ABCDEF", "k", "t", "high", NAN, pd.NA, None])
FIELD = st.sampled_from(["content", "task_type", "priority", "idempotency_key", "key",
                         "batch_id", "requirements", "dependencies", "estimated_duration_ms",
                         "max_retries"])


@st.composite
def awkward_records(draw):
    records = []
    for i in range(draw(st.integers(1, 5))):
        record = {"content": f"c{i}", "task_type": "t"}
        for _ in range(draw(st.integers(0, 2))):
            field, value = draw(FIELD), draw(AWKWARD)
            record[field] = [value] if field in ("requirements", "dependencies") \
                and draw(st.booleans()) else value
        records.append(record)
    return records


def _outcome(validate, data):
    try:
        batch = validate(data)
    except OrchestrationError as exc:
        return type(exc).__name__, str(exc)
    return {name: [repr(x) for x in getattr(batch, name)] for name in RECORD_FIELDS}


@settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=awkward_records(), as_frame=st.booleans())
def test_bulk_checks_answer_as_the_reference_on_the_new_rules(records, as_frame):
    """NUL, surrogates, long ids, UUID-like keys and NaN: ``batch_from`` (column checks)
    gives exactly the answer of each record checked alone (one_at_a_time)."""
    data = pd.DataFrame(records, dtype=object) if as_frame else records
    reference = _outcome(one_at_a_time, data)
    assert _outcome(tr.batch_from, data) == reference


# ------------------------------------------------ item 8: register_agent in constant statements


def _traced(database_url):
    statements: list[str] = []
    orch = athena_orch.connect(database_url(), tracer=lambda sql, params: statements.append(sql))
    return orch, statements


def test_register_agent_runs_a_constant_number_of_statements(database_url):
    orch, statements = _traced(database_url)
    with orch:
        counts = []
        for agent, capabilities in (("a", ["x", "y", "z"]),
                                    ("b", [f"c{i}" for i in range(3000)]),
                                    ("b", [f"c{i}" for i in range(2999, -1, -1)]),
                                    ("b", [f"d{i}" for i in range(3000)]),
                                    ("c", [f"c{i}" for i in range(0, 3000, 2)])):
            statements.clear()
            agent = orch.registry.register_agent(agent, capabilities)
            counts.append(len(statements))
            assert agent.capabilities == sorted(capabilities)
        assert max(counts) <= 12 and len(set(counts)) == 1, counts
        statements.clear()
        orch.registry.learn_new_capability("c", "extra", 0.5)
        assert len(statements) <= 12
        graph = orch.registry.capability_graph()
        assert sum(d["kind"] == "capability" for _, d in graph.nodes(data=True)) == 6004
        assert orch.registry.get_agent("b").capabilities == sorted(f"d{i}" for i in range(3000))
        assert orch.registry.capability_confidence("c", "extra") == 0.5


def test_register_agent_again_replaces_capabilities_and_keeps_figures(orch):
    orch.registry.register_agent("w", ["b", "a", "c"], {"team": "x"})
    orch.registry.update_agent_performance("w", True, 100)
    orch.registry.learn_new_capability("w", "d", 0.25)
    agent = orch.registry.register_agent("w", ["d", "a"], {"max_concurrent_tasks": 2})
    assert (agent.capabilities, agent.metadata, agent.max_concurrent_tasks) == (["a", "d"], {}, 2)
    assert orch.registry.capability_confidence("w", "d") == 1.0
    assert (agent.total_completed, agent.avg_completion_ms) == (1, 100.0)
    assert orch.registry.register_agent("w", []).capabilities == []


@postgres_only
def test_agents_registered_at_once_with_overlapping_capabilities_never_deadlock(database_url):
    """Eight connections register agents at once, each round with 40 capability names
    drawn from one fresh pool of 60 (so they insert the same new rows) in its own random
    order. Capabilities are written in sorted order, so nobody waits in a cycle: no
    error, and no transaction rolled back (the deadlock retry of ``atomic`` never runs)."""
    url = database_url()
    n, rounds = 8, 12
    rollbacks: list[str] = []
    traced = lambda sql, params: sql.strip().upper() == "ROLLBACK" and rollbacks.append(sql)  # noqa: E731
    managers = [athena_orch.connect(url, tracer=traced) for _ in range(n)]
    try:
        last: dict[str, list[str]] = {}
        lock = threading.Lock()

        def register(i: int) -> None:
            rng = random.Random(i)
            for r in range(rounds):
                capabilities = rng.sample([f"r{r}-cap{j:02d}" for j in range(60)], 40)
                agent = f"agent-{i}-{r % 3}"
                managers[i].registry.register_agent(agent, capabilities, {"round": r})
                with lock:
                    last[agent] = sorted(capabilities)

        at_once(n, register)
        assert rollbacks == []
        registry = managers[0].registry
        assert len(registry.list_agents()) == n * 3
        for agent, capabilities in last.items():
            assert registry.get_agent_capability(agent) == capabilities
    finally:
        for manager in managers:
            manager.close()


def test_writes_on_unknown_agents_still_name_them(orch, unchanged):
    orch.registry.register_agent("w", ["x"])
    for call in (lambda: orch.registry.update_agent_performance("ghost", True, 1),
                 lambda: orch.registry.learn_new_capability("ghost", "x"),
                 lambda: orch.registry.set_active("ghost", True),
                 lambda: orch.registry.deregister_agent("ghost")):
        with unchanged(), pytest.raises(AgentNotFoundError, match="ghost"):
            call()


def test_timestamps_in_figures_stay_aware(orch):
    orch.registry.register_agent("w", ["x"])
    orch.registry.update_agent_performance("w", True, 1)
    assert orch.registry.get_agent("w").last_updated.tzinfo is not None
    assert orch.registry.get_agent("w").last_updated <= datetime.now(UTC)
