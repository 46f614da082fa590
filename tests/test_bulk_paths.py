"""claim_tasks / complete_tasks: the bulk worker's path keeps every single-task rule."""

import pandas as pd
import pytest

from athena_orch import exceptions
from athena_orch.models import TaskStatus


@pytest.fixture
def worker(registry):
    registry.register_agent("w", ["python"], {"max_concurrent_tasks": 3})
    return "w"


def test_claim_tasks_stops_at_free_capacity_in_queue_order(queue, worker, clock):
    low = queue.create_task("low", "t", "low")
    clock.advance(0.001)
    high = [queue.create_task(f"high {i}", "t", "high") for i in range(3)]
    clock.advance(0.001)
    queue.create_task("medium", "t", "medium")
    claimed = queue.claim_tasks(worker, 10)
    assert [t.id for t in claimed] == high
    assert all(t.status is TaskStatus.ASSIGNED and t.assigned_to == worker for t in claimed)
    assert queue.claim_tasks(worker, 10) == []          # at capacity
    queue.start_task(high[0])
    queue.complete_task(high[0], "ok")
    assert [t.content for t in queue.claim_tasks(worker, 10)] == ["medium"]
    assert queue.get_task_status(low).status is TaskStatus.PENDING


def test_claim_tasks_skips_what_the_agent_cannot_do_or_is_not_ready(queue, worker):
    first = queue.create_task("first", "t")
    queue.create_task("needs rust", "t", requirements=["rust"])
    queue.create_task("waits", "t", dependencies=[first])
    assert [t.id for t in queue.claim_tasks(worker, 5)] == [first]


def test_claim_tasks_with_start_runs_them_and_logs_both_steps(queue, worker):
    ids = [queue.create_task(f"t{i}", "t") for i in range(2)]
    claimed = queue.claim_tasks(worker, 2, start=True)
    assert [t.status for t in claimed] == [TaskStatus.RUNNING] * 2
    assert all(t.started_at is not None for t in claimed)
    steps = [(h["from_status"], h["to_status"]) for h in queue.get_task_history(ids[0])]
    assert steps == [(None, "pending"), ("pending", "assigned"), ("assigned", "running")]


def test_claim_tasks_bad_input(queue, worker):
    queue.create_task("t", "t")
    assert queue.claim_tasks(worker, 0) == []
    with pytest.raises(exceptions.ValidationError, match="n"):
        queue.claim_tasks(worker, -1)
    with pytest.raises(exceptions.AgentNotFoundError, match="ghost"):
        queue.claim_tasks("ghost", 1)
    assert queue.get_queue_statistics().pending_count == 1


def test_complete_tasks_releases_dependents_and_counts_each_success(queue, registry, worker):
    a, b = queue.create_task("a", "t"), queue.create_task("b", "t")
    both = queue.create_task("after both", "t", dependencies=[a, b])
    queue.claim_tasks(worker, 2, start=True)
    done = queue.complete_tasks(pd.DataFrame({"task_id": [b, a], "result": ["rb", "ra"],
                                              "duration_ms": [20, 10]}))
    assert [(t.id, t.result, t.execution_duration_ms) for t in done] == [(b, "rb", 20), (a, "ra", 10)]
    assert queue.get_task_status(a).result == "ra"
    assert queue.get_dependency_status(both)["ready"]
    health = registry.get_agent_health(worker)
    assert (health["total_completed"], health["avg_completion_ms"], health["current_load"]) == (2, 15.0, 0)


def test_complete_tasks_is_all_or_nothing(queue, registry, worker):
    a, b = queue.create_task("a", "t"), queue.create_task("b", "t")
    queue.claim_tasks(worker, 1, start=True)          # a runs, b stays pending
    with pytest.raises(exceptions.InvalidTransitionError, match=b):
        queue.complete_tasks({a: "ok", b: "ok"})
    with pytest.raises(exceptions.TaskNotFoundError, match="nope"):
        queue.complete_tasks({a: "ok", "nope": "ok"})
    with pytest.raises(exceptions.ValidationError, match="twice"):
        queue.complete_tasks([{"task_id": a, "result": "x"}, {"task_id": a, "result": "y"}])
    with pytest.raises(exceptions.ValidationError, match="result"):
        queue.complete_tasks({a: 42})
    assert queue.get_task_status(a).status is TaskStatus.RUNNING
    assert queue.get_task_status(a).result is None
    assert registry.get_agent_health(worker)["total_completed"] == 0
    assert queue.complete_tasks({}) == []


# ---------------------------------------------------------------- bulk create: the fast path
# create_tasks validates a batch column by column (task_records.batch_from); the reference
# is each record alone through the same path (records_reference.one_at_a_time), as
# create_task sends it. Both must give the same values and, for a bad batch, the same error.

import contextlib  # noqa: E402
import uuid  # noqa: E402

import numpy as np  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from records_reference import one_at_a_time  # noqa: E402

from athena_orch import task_records as tr  # noqa: E402
from athena_orch.ids import new_task_ids  # noqa: E402
from athena_orch.models import RECORD_FIELDS  # noqa: E402


def _outcome(validate, data):
    """What a validator makes of ``data``: every field of the batch (with the types of
    the values), or the error class and message."""
    try:
        batch = validate(data)
    except exceptions.OrchestrationError as exc:
        return type(exc).__name__, str(exc)
    return {name: [(type(x).__name__, repr(x)) for x in getattr(batch, name)]
            for name in RECORD_FIELDS}


def _reference(data):
    return one_at_a_time(data)


def _same(data):
    fast, ref = _outcome(tr.batch_from, data), _outcome(_reference, data)
    assert fast == ref
    return fast


TEXT = st.one_of(st.sampled_from(["a", "task", "  ", "", "\t", "x y", "héllo", 'q"uote\\',
                                  "\ud800", "high", "medium", "low", "k1", "k2"]),
                 st.text(max_size=6))
ODD = st.sampled_from([None, float("nan"), pd.NA, pd.NaT, True, 0, 3, -1, 2.0, 2.5,
                       np.int64(2), np.float64(4.0), np.str_("low"), b"x", ["a"], {"a": 1}])
LIST = st.one_of(st.lists(TEXT, max_size=3), st.lists(TEXT, max_size=3).map(tuple),
                 st.lists(TEXT, max_size=3).map(lambda x: np.array(x, dtype=object)),
                 st.lists(st.sampled_from(["a", "b"]), max_size=3).map(np.array),
                 st.lists(st.one_of(TEXT, ODD), max_size=3), TEXT, ODD)
INT = st.one_of(st.integers(-2, 5), st.sampled_from([2**31 - 1, 2**31, 2**62, 2**62 + 1, 2.5,
                                                     0.5, 3.0, -1.0, -0.0, 1e300, float("inf")]),
                ODD)
FIELDS = {"content": st.one_of(TEXT, ODD), "task_type": st.one_of(TEXT, ODD),
          "priority": st.one_of(TEXT, ODD), "requirements": LIST, "dependencies": LIST,
          "max_retries": INT, "estimated_duration_ms": INT,
          "idempotency_key": st.one_of(TEXT, ODD), "key": st.one_of(TEXT, ODD),
          "batch_id": st.one_of(TEXT, ODD), "extra": TEXT}
# Mostly valid records, so that a batch is often valid and errors come late in it.
VALID = st.fixed_dictionaries(
    {"content": st.sampled_from(["a", "b c", "héllo"]), "task_type": st.sampled_from(["t", "u"])},
    optional={"priority": st.sampled_from(["high", "medium", "low"]),
              "requirements": st.lists(st.sampled_from(["x", "y", "x"]), max_size=3),
              "max_retries": st.integers(0, 5),
              "estimated_duration_ms": st.one_of(st.none(), st.integers(0, 10**6))})


@st.composite
def record(draw):
    """Mostly a valid record; else one with a field changed to anything, dropped or added
    (so that a batch's first error is often late in it), or one of random fields."""
    out = draw(VALID)
    kind = draw(st.integers(0, 6))
    if kind in (0, 1, 2):
        name = draw(st.sampled_from(sorted(FIELDS)))
        out[name] = draw(FIELDS[name])
    elif kind == 3:
        out.pop(draw(st.sampled_from(["content", "task_type"])))
    elif kind == 4:
        names = draw(st.lists(st.sampled_from(sorted(FIELDS)), max_size=6, unique=True))
        out = {name: draw(FIELDS[name]) for name in names}
    return out


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=st.lists(record(), max_size=6))
def test_fast_validation_answers_as_the_reference_for_records(records):
    _same(records)


@settings(max_examples=600, deadline=None, suppress_health_check=list(HealthCheck))
@given(records=st.lists(record(), min_size=1, max_size=6),
       dtypes=st.lists(st.sampled_from([None, "string", "Int64", "object", "category"]),
                       min_size=10, max_size=10))
def test_fast_validation_answers_as_the_reference_for_dataframes(records, dtypes):
    # object columns to start with: pandas' own text dtype (Arrow-backed when pyarrow is
    # installed) cannot hold some of these strings (lone surrogates) at all
    frame = pd.DataFrame(records, dtype=object)
    for column, dtype in zip(list(frame.columns), dtypes):
        if dtype is not None:
            with contextlib.suppress(Exception):  # a dtype the column cannot take: keep it
                frame[column] = frame[column].astype(dtype)
    _same(frame)


@pytest.mark.parametrize("as_frame", [False, True])
def test_fast_validation_names_the_first_bad_record(as_frame):
    good = {"content": "ok", "task_type": "t"}
    records = [good, good, dict(good, priority="urgent"), good, dict(good, content="  ")]
    data = pd.DataFrame(records) if as_frame else records
    assert _same(data) == ("ValidationError",
                           "record 2: priority must be one of high, medium, low, not 'urgent'")
    records[2] = dict(good, requirements="python")
    data = pd.DataFrame(records) if as_frame else records
    assert _same(data)[1].startswith("record 2: requirements must be a list of strings, not str")


def test_fast_validation_of_empty_cells_numpy_lists_and_duplicates():
    frame = pd.DataFrame({
        "content": ["a", "b", "c"], "task_type": "t",
        "priority": ["high", np.nan, None],  # NaN: the default; None: an error (record 2)
        "requirements": [np.array(["x", "y", "x"]), None, np.nan],
        "max_retries": [1.0, 2.0, np.nan], "estimated_duration_ms": [np.nan, 5.0, np.nan]})
    assert _same(frame)[0] == "ValidationError"
    frame.loc[2, "priority"], frame.loc[2, "max_retries"] = "low", 0
    out = _same(frame)
    assert [r for _, r in out["requirements"]] == ["[np.str_('x'), np.str_('y')]", "[]", "[]"]
    assert [r for _, r in out["priority"]] == ["'high'", "'medium'", "'low'"]
    assert [r for _, r in out["max_retries"]] == ["1", "2", "0"]
    assert [r for _, r in out["estimated_duration_ms"]] == ["None", "5", "None"]
    assert _same([{"content": "a", "task_type": "t", "key": "k"},
                  {"content": "b", "task_type": "t", "key": "k"}]) == (
        "ValidationError", "records: duplicate keys ['k']")
    assert _same(pd.DataFrame({"content": ["a"], "task_type": ["t"], "colour": ["red"]}))[1] \
        .startswith("record 0: task record has unknown keys [\"'colour'\"]")


def test_bulk_create_keeps_record_order_and_reads_back(queue):
    records = [{"content": f"task {i}", "task_type": "t", "priority": ["high", "low"][i % 2],
                "requirements": ["x"] if i % 3 else [], "key": f"k{i}",
                "dependencies": [f"k{i - 1}"] if i else []} for i in range(50)]
    ids = queue.create_tasks(pd.DataFrame(records))
    assert len(set(ids)) == 50
    for i, task_id in enumerate(ids):
        task = queue.get_task_status(task_id)
        assert (task.content, task.priority, task.requirements) == (
            f"task {i}", ["high", "low"][i % 2], ["x"] if i % 3 else [])
        assert task.dependencies == ([ids[i - 1]] if i else [])
        assert task.status is TaskStatus.PENDING


def test_bulk_create_dependencies_on_later_records_and_cycles(queue, state):
    ids = queue.create_tasks([{"key": "b", "content": "b", "task_type": "t", "dependencies": ["a"]},
                              {"key": "a", "content": "a", "task_type": "t"}])
    assert queue.get_task_status(ids[0]).dependencies == [ids[1]]
    before = state()
    for records in ([{"key": "a", "content": "a", "task_type": "t", "dependencies": ["a"]}],
                    [{"key": "a", "content": "a", "task_type": "t", "dependencies": ["b"]},
                     {"key": "b", "content": "b", "task_type": "t", "dependencies": ["a"]}]):
        with pytest.raises(exceptions.DependencyError, match="cycle"):
            queue.create_tasks(records)
    with pytest.raises(exceptions.DependencyError, match="unknown tasks: \\['nope'\\]"):
        queue.create_tasks(pd.DataFrame([{"content": "a", "task_type": "t",
                                          "dependencies": ["nope"]}]))
    assert state() == before


def test_bulk_create_blocks_records_behind_a_failed_dependency(queue):
    root = queue.create_task("root", "t")
    queue.cancel_task(root)
    ids = queue.create_tasks([{"key": "a", "content": "a", "task_type": "t", "dependencies": [root]},
                              {"content": "b", "task_type": "t", "dependencies": ["a"]},
                              {"content": "c", "task_type": "t"}])
    a, b, c = (queue.get_task_status(i) for i in ids)
    assert (a.status, a.blocked_by, b.status, b.blocked_by, c.status) == (
        TaskStatus.BLOCKED, root, TaskStatus.BLOCKED, root, TaskStatus.PENDING)
    assert b.error == f"blocked: dependency {root} did not complete"


def test_task_ids_are_uuid7_increasing_and_unique():
    ids = new_task_ids(1000) + new_task_ids(1000)
    parsed = [uuid.UUID(i) for i in ids]
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and str(u) == i
               for u, i in zip(parsed, ids))
    assert ids == sorted(ids) and len(set(ids)) == 2000
    frozen = new_task_ids(3, clock=lambda: 0.0)  # the clock went back: go on counting
    assert frozen[0] > ids[-1] and frozen == sorted(frozen)


# ---------------------------------------------------------------- fast reads: same answers

import json  # noqa: E402

from athena_orch.stores import task_rows as ep  # noqa: E402


def test_claimed_and_completed_tasks_are_the_tasks_as_stored(queue, registry, clock):
    registry.register_agent("bulk", ["python"], {"max_concurrent_tasks": 100})
    first = queue.create_task("first", "t", "high", requirements=["python"], max_retries=1,
                              estimated_duration_ms=7, idempotency_key="k-1")
    queue.create_tasks([{"content": f"t{i}", "task_type": "u", "dependencies": [first] if i else [],
                         "batch_id": "b"} for i in range(5)])
    clock.advance(1.5)
    claimed = queue.claim_tasks("bulk", 10, start=True)
    assert claimed == [queue.get_task_status(t.id) for t in claimed]
    clock.advance(0.25)
    done = queue.complete_tasks({t.id: f"r{t.id}" for t in claimed})
    assert done == [queue.get_task_status(t.id) for t in claimed]
    assert [t.execution_duration_ms for t in done] == [250] * len(done)
    assert all(t.started_at.tzinfo is not None and t.completed_at.tzinfo is not None for t in done)


def test_to_frame_matches_the_tasks_one_by_one(queue, clock):
    root = queue.create_task("root", "t", requirements=["a", "b"])
    for i in range(6):
        clock.advance(0.001)
        queue.create_task(f"t{i}", "t", ["low", "high", "medium"][i % 3],
                          requirements=['q"uote', "é"] if i % 2 else [],
                          dependencies=[root] if i % 3 else [])
    frame = queue.to_frame()
    tasks = queue.query_tasks()
    assert frame["task_id"].tolist() == [t.id for t in tasks]  # queue order
    assert frame["requirements"].tolist() == [t.requirements for t in tasks]
    assert frame["dependencies"].tolist() == [t.dependencies for t in tasks]
    assert [ts.to_pydatetime() for ts in frame["created_at"]] == [t.created_at for t in tasks]
    assert str(frame["created_at"].dtype) == "datetime64[us, UTC]"
    lists = frame["requirements"].tolist()
    assert len({id(x) for x in lists}) == len(lists)  # each row its own list


TEXTS = st.one_of(st.text(max_size=5), st.sampled_from(["a", "b c", 'q"', "\\", "\x01", "\x1f",
                                                        "é", "\ud800", ", ", '", "']))
JSON_CELLS = st.one_of(
    st.lists(TEXTS, max_size=3).map(lambda x: json.dumps(x, ensure_ascii=False)),
    st.lists(TEXTS, max_size=3).map(json.dumps),
    st.lists(TEXTS, max_size=3).map(lambda x: json.dumps(x, separators=(",", ":"))),
    st.none(), st.sampled_from(["[]", '["]', '[""]', '["a"] ', '[ "a" ]', '["a"]["b"]',
                                '["a\x02"]', '["\x01"]', "[1]", "{}", ""]))


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(texts=st.lists(JSON_CELLS, max_size=8))
def test_fast_json_lists_parse_as_json_loads(texts):
    def reference():
        return [[] if t is None else json.loads(t) for t in texts]

    try:
        expected = reference()
    except ValueError as exc:
        with pytest.raises(type(exc)):
            ep.json_lists(texts)
        return
    got = ep.json_lists(texts)
    assert got == expected
    assert len({id(x) for x in got}) == len(got)


@pytest.mark.parametrize("texts", [
    ['["]', '["]', '["a","b"]'],        # quotes balance over the rows, not in each
    ['["a\x02"]', '["b"]'], ['["\x01"]'], ['["a", "b"]\x01', "[]"], [None, '["a"]'],
    ['["q\\"x"]', '["a, b"]', "[]", "[]"]])
def test_fast_json_lists_tricky_rows(texts):
    try:
        expected = [[] if t is None else json.loads(t) for t in texts]
    except ValueError:
        with pytest.raises(ValueError):
            ep.json_lists(texts)
        return
    assert ep.json_lists(texts) == expected


def test_the_queues_dag_index_finds_what_is_downstream():
    dag = queue_module._Downstream()
    dag.add([("a", "b"), ("b", "c"), ("a", "d")])
    dag.add([("d", "e"), ("x", "y")])
    assert dag.descendants("a") == {"b", "c", "d", "e"}
    assert dag.descendants("c") == set() and dag.descendants("nope") == set()


from athena_orch import task_queue as queue_module  # noqa: E402
