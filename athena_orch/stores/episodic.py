"""Task rows and task events in ``episodic_events`` (plus the dependency edge table)."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import operator
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from ..models import Task, TaskStatus
from .database import Database
from .graph import HAS_CAPABILITY, entity_id
from .meta import FIGURE_CAP, outcome_figures


@contextmanager
def paused_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while a bulk path makes many containers
    (a million small lists: 0.1 s instead of 0.6 s, as the collector would otherwise
    rescan every object alive again and again). Nothing made meanwhile holds a cycle."""
    paused = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if paused:
            gc.enable()


DB_UTC = ZoneInfo("UTC")  # the tzinfo of the times the database returns
_STATUS = {s.value: s for s in TaskStatus}
_FIELDS = [f.name for f in dataclasses.fields(Task)]
_TIMES = {"created_at", "assigned_at", "started_at", "completed_at", "retry_until", "lease_until"}
_COLUMN = {"id": "task_id", "status": "task_status", "error": "error_message"}  # field -> column


def json_lists(texts: list[str | None]) -> list[list[str]]:
    """The JSON lists of strings in ``texts`` (NULL as []), each row its own list (as
    ``json.loads`` of each); fast for many rows: when every text is written as ``dumps``
    writes strings without escapes, all are split at once."""
    if not texts:
        return []
    with paused_gc():
        return _json_lists(texts)


def _json_lists(texts: list[str | None]) -> list[list[str]]:
    lists = _split_plain(texts)
    return lists if lists is not None else [_json_list(text) for text in texts]


_ITEMS = '", "'  # between the strings of a list, as ``json.dumps`` writes it
_CONTROL = re.compile("[\x00-\x1f]")  # JSON strings hold no raw control character


def _has_control(joined: str) -> bool:
    """A control character other than our separator \x01 (as ``_CONTROL``, for 40 MB:
    numpy takes 0.05 s where the regex takes 0.3 s). UTF-8 encodes a character below
    0x20 as that byte, and every other as bytes of 0x80 and up."""
    data = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    return bool(((data < 0x20) & (data != 0x01)).any())


def _split_plain(texts: list[str]) -> list[list[str]] | None:
    """Every text split into its strings, if each is ``[]`` or ``["a", "b"]`` with no
    backslash (so no quote but the delimiters); else None. C loops only, no per-row
    Python: a million rows in a fraction of a second."""
    try:
        joined = "\x01".join(texts)
    except TypeError:  # not all strings
        return None
    n, empty = len(texts), texts.count("[]")
    if empty == n:
        return [[] for _ in range(n)]
    if ("\\" in joined or _has_control(joined) or 3 in set(map(len, texts))  # '["]'
            or joined.count("\x01") != n - 1
            or ("\x01" + joined).count('\x01["') != n - empty
            or (joined + "\x01").count('"]\x01') != n - empty):
        return None
    lists = list(map(str.split, map(operator.itemgetter(slice(2, -2)), texts),
                     itertools.repeat(_ITEMS)))
    if joined.count('"') != 2 * (sum(map(len, lists)) - empty):  # a quote inside a string
        return None
    if empty:
        for i in np.flatnonzero(np.asarray(texts, dtype=object) == "[]").tolist():
            lists[i] = []
    return lists


def _json_list(text: str | None) -> list[str]:
    if not isinstance(text, str) or text == "[]":  # NULL: no list
        return []
    if ("\\" not in text and text.startswith('["') and text.endswith('"]')
            and not _CONTROL.search(text)):
        items = text[2:-2].split('", "')
        if text.count('"') == 2 * len(items):  # no other quote: these are the strings
            return items
    return json.loads(text)


def _aware(cell: int | datetime) -> datetime:
    """A time of a task row as an aware UTC datetime: hot queries select times as
    microseconds since 1970 (``epoch_us``), which DuckDB hands out ten times faster."""
    if isinstance(cell, int):
        return _EPOCH_DB + timedelta(microseconds=cell)
    return cell if cell.tzinfo else cell.replace(tzinfo=DB_UTC)


def _each_once(convert: Callable[[Any], Any], cells: Iterable[Any]) -> list[Any]:
    """``[convert(c) for c in cells]`` with each distinct cell converted once (a batch's
    tasks share their times and lists), in C loops but the distinct ones."""
    cells = list(cells)
    made = {cell: convert(cell) for cell in set(cells)}
    return list(map(made.__getitem__, cells))


def tasks_from_rows(columns: list[str], rows: list[tuple]) -> list[Task]:
    """Task rows (tuples with these column names: ``task_get``, ``tasks_lock``...) as
    :class:`Task` objects; a ``result`` column, if any, is the result text. Times may
    come as aware or naive (UTC) datetimes, or as microseconds since 1970 (:func:`_aware`)."""
    if not rows:
        return []
    return tasks_from_columns(columns, list(zip(*rows)))


def tasks_from_columns(columns: list[str], cells: list[list]) -> list[Task]:
    """The same from the rows' columns (``cells[i]``: every row's value of ``columns[i]``),
    converted column by column."""
    if not cells or not len(cells[0]):
        return []
    with paused_gc():
        return _tasks_from_columns(columns, cells)


def _tasks_from_columns(columns: list[str], by_column: list[list]) -> list[Task]:
    rows = by_column[0]
    at = {name: i for i, name in enumerate(columns)}
    values = []
    for field in _FIELDS:
        column = _COLUMN.get(field, field)
        if field == "result" and column not in at:
            values.append([None] * len(rows))
            continue
        cells = by_column[at[column]]
        if field in _TIMES:
            cells = _each_once(lambda c: None if c is None else _aware(c), cells)
        elif field == "status":
            cells = list(map(_STATUS.__getitem__, cells))
        elif field in ("requirements", "dependencies"):  # each row its own list
            cells = list(map(list, _each_once(lambda c: tuple(json.loads(c or "[]")), cells)))
        elif field in ("task_type", "priority", "retry_count", "attempt"):
            default = {"task_type": "", "priority": "medium", "retry_count": 0, "attempt": 0}[field]
            cells = [c or default for c in cells]
        values.append(cells)
    return list(map(Task, *values))


def row_to_task(row: dict[str, Any]) -> Task:
    """A task row as a dict (``task_get``, ``tasks_query``...) as a :class:`Task`."""
    return tasks_from_rows(list(row), [tuple(row.values())])[0]


def _epoch_ms(moment: datetime) -> int:
    """DuckDB's ``epoch_ms``: whole milliseconds since 1970 (rounded down)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DB = datetime(1970, 1, 1, tzinfo=DB_UTC)


class EpisodicStore:
    """Episodic memory as the task queue uses it: task rows, their events and edges."""

    def __init__(self, db: Database):
        self.db = db

    def _tasks(self, query: str, *, by_column: bool = False, **params: Any) -> list[Task]:
        """The task rows a named query returns, as Tasks (read by position: faster than
        a dict per row). ``by_column``: the query's columns have distinct names and its
        times are integers (``epoch_us``), so DuckDB may hand out numpy columns (a third
        faster than row tuples)."""
        with self.db.reading():  # holds the session from the statement to the fetch
            cursor = self.db.execute(query, **params)
            columns = [d[0] for d in cursor.description]
            fetchnumpy = getattr(cursor, "fetchnumpy", None)
            if not by_column or fetchnumpy is None:
                return tasks_from_rows(columns, cursor.fetchall())
            arrays = fetchnumpy()
        return tasks_from_columns(columns, [arrays[c].tolist() for c in columns])

    # ------------------------------------------------------------------ writes
    def insert_tasks(self, tasks: pd.DataFrame, edges: pd.DataFrame) -> None:
        """New task rows and their dependency edges, in one go. A task row is itself the
        episodic event of its creation."""
        if edges.empty:  # one statement: no transaction needed
            self.db.insert_frame("tasks_insert", tasks)
            return
        with self.db.transaction():
            self.db.insert_frame("tasks_insert", tasks)
            self.db.insert_frame("dependencies_insert", edges)
            self.db.bump_version("dag")

    def record_transitions(self, task_ids: list[str], statuses: list[str],
                           contents: list[str], now: datetime) -> None:
        """Transition events: each task moved to its status; ``contents`` are JSON details.
        Many at once go in as a frame: binding three 10,000-item lists as parameters
        costs DuckDB more than the insert (30 ms against 19 ms)."""
        if len(task_ids) < 1000:
            self.db.execute("transitions_insert", task_ids=task_ids, statuses=statuses,
                            contents=contents, now=now)
            return
        self.db.insert_frame("transitions_insert_frame", pd.DataFrame({
            "timestamp": pd.Timestamp(now), "event_type": "task_transition",
            "content": contents, "outcome": statuses, "context_task": task_ids,
            "context_phase": statuses}))

    # Transitions: a guarded UPDATE that returns the task as it is now, or None when the
    # task was not in a state the transition starts from.
    def _transition(self, query: str, **params: Any) -> Task | None:
        row = self.db.fetch_one(query, **params)
        return row_to_task(row) if row else None

    def assign(self, task_id: str, agent_id: str, now: datetime,
               lease_until: datetime) -> Task | None:
        return self._transition("task_assign", task_id=task_id, agent_id=agent_id, now=now,
                                lease_until=lease_until)

    def claim(self, agent_id: str, limit: int, status: TaskStatus, now: datetime,
              lease_until: datetime, task_types: list[str] | None = None) -> list[Task] | None:
        """Give the agent up to ``limit`` of the best ready tasks it can do (of
        ``task_types`` only, if given), within its free capacity, in queue order, with
        their history: a pick and a write (PostgreSQL: after locking the agent's row, so
        its claims queue up and each counts the load the previous left). None if it is
        inactive or at capacity; None if it is not registered."""
        agent_key = entity_id("agent", agent_id)
        if not self.db.one_writer and not self.db.fetch_rows("agent_capacity",
                                                              agent_key=agent_key):
            return None
        tasks = self._tasks("tasks_claim_pick", by_column=True, agent_id=agent_id, limit=limit,
                            agent_key=agent_key, relation_type=HAS_CAPABILITY,
                            capability_prefix=entity_id("capability", ""), now=now,
                            task_types=task_types)
        if not tasks:
            registered = not self.db.one_writer or self.db.fetch_rows("agent_capacity",
                                                                      agent_key=agent_key)
            return [] if registered else None
        self.db.execute("tasks_claim_mark", task_ids=[t.id for t in tasks], agent_id=agent_id,
                        status=status.value, now=now, lease_until=lease_until)
        now, lease_until = now.astimezone(DB_UTC), lease_until.astimezone(DB_UTC)
        for task in tasks:  # as tasks_claim_mark wrote them
            task.status, task.assigned_to, task.assigned_at = status, agent_id, now
            task.started_at = now if status is TaskStatus.RUNNING else None
            task.lease_until, task.attempt = lease_until, task.attempt + 1
        return tasks

    def start(self, task_id: str, now: datetime, lease_until: datetime, *,
              agent_id: str | None = None, attempt: int | None = None) -> Task | None:
        """assigned -> running with its history, in one statement, if the named attempt
        (None: any) is the current one."""
        return self._transition("task_start", task_id=task_id, now=now, lease_until=lease_until,
                                agent_id=agent_id, attempt=attempt)

    def release(self, task_id: str, attempt: int) -> Task | None:
        """Back to pending without using a retry, if ``attempt`` is still current."""
        return self._transition("task_release", task_id=task_id, attempt=attempt)

    def lock_tasks(self, task_ids: list[str]) -> dict[str, Task]:
        """The tasks of ``task_ids`` that exist, by id, read to be changed in this
        transaction."""
        return {t.id: t for t in self._tasks("tasks_lock", by_column=True, task_ids=task_ids)}

    def complete(self, tasks: list[Task], results: list[str], durations: list[int | None],
                 now: datetime) -> list[Task]:
        """Complete these running tasks (read with :meth:`lock_tasks`) in one statement:
        each result becomes an event linked from its task (a duration of None is the time
        since the start), with their history, their dependents' counts and their agents'
        figures. Returns them as written."""
        since = {t.started_at: _epoch_ms(now) - _epoch_ms(t.started_at)
                 for t in {t.started_at: t for t in tasks if t.started_at is not None}.values()}
        durations = [d if d is not None or t.started_at is None else since[t.started_at]
                     for t, d in zip(tasks, durations)]
        for task, duration in zip(tasks, durations):
            task.execution_duration_ms = duration
        figures = outcome_figures([(t.assigned_to, t) for t in tasks if t.assigned_to],
                                  success=True)
        self.db.execute("tasks_complete", task_ids=[t.id for t in tasks], results=results,
                        durations=durations, assignees=[t.assigned_to for t in tasks],
                        agent_ids=figures.agents, agent_completed=figures.agent_counts,
                        agent_ms=figures.agent_ms, skill_agents=figures.skill_agents,
                        skill_kinds=figures.skill_kinds, skills=figures.skills,
                        skill_completed=figures.skill_counts, skill_ms=figures.skill_ms,
                        now=now, cap=FIGURE_CAP)
        ids = dict(self.db.fetch_rows("result_event_ids", task_ids=[t.id for t in tasks]))
        now = now.astimezone(DB_UTC)
        for task, result in zip(tasks, results):  # as written
            task.status, task.completed_at, task.success = TaskStatus.COMPLETED, now, True
            task.result_task_id, task.lease_until, task.result = ids[task.id], None, result
        return tasks

    def retry(self, tasks: list[Task], errors: list[str], retry_untils: list[datetime]
              ) -> list[Task]:
        """Put these active tasks (read in this transaction) back to pending, each with its
        error and back-off; returns them as written."""
        if tasks:
            self.db.execute("tasks_retry", task_ids=[t.id for t in tasks],
                            attempts=[t.attempt for t in tasks], errors=errors,
                            retry_untils=retry_untils)
        for task, error, until in zip(tasks, errors, retry_untils):
            task.status, task.error, task.retry_count = (
                TaskStatus.PENDING, error, task.retry_count + 1)
            task.retry_until = until.astimezone(DB_UTC)
            task.assigned_to = task.assigned_at = task.started_at = task.lease_until = None
        return tasks

    def fail(self, tasks: list[Task], errors: list[str], now: datetime) -> list[Task]:
        """Fail these active tasks (read in this transaction) for good; returns them as
        written."""
        if tasks:
            self.db.execute("tasks_fail", task_ids=[t.id for t in tasks],
                            attempts=[t.attempt for t in tasks], errors=errors, now=now)
        now = now.astimezone(DB_UTC)
        for task, error in zip(tasks, errors):
            task.status, task.error, task.success = TaskStatus.FAILED, error, False
            task.completed_at, task.lease_until = now, None
        return tasks

    def cancel(self, task_id: str, reason: str, now: datetime) -> Task | None:
        return self._transition("task_cancel", task_id=task_id, reason=reason, now=now)

    def block(self, task_ids: list[str], roots: list[str], reasons: list[str]) -> list[str]:
        """Block those of ``task_ids`` still pending, each because of its root task (lists
        of equal length); returns the ones it blocked."""
        if not task_ids:
            return []
        rows = self.db.fetch_rows("tasks_block", task_ids=task_ids, roots=roots, reasons=reasons)
        return [r[0] for r in rows]

    def renew_lease(self, task_id: str, lease_until: datetime, *, agent_id: str | None = None,
                    attempt: int | None = None) -> bool:
        return bool(self.db.fetch_rows("task_renew_lease", task_id=task_id,
                                       lease_until=lease_until, agent_id=agent_id,
                                       attempt=attempt))

    def renew_agent_leases(self, agent_id: str, lease_until: datetime) -> list[str]:
        rows = self.db.fetch_rows("agent_renew_leases", agent_id=agent_id,
                                  lease_until=lease_until)
        return sorted(r[0] for r in rows)

    # ------------------------------------------------------------------ reads
    def get_task(self, task_id: str) -> Task | None:
        row = self.db.fetch_one("task_get", task_id=task_id)
        return row_to_task(row) if row else None

    def task_states(self, task_ids: list[str]) -> dict[str, tuple[TaskStatus, str | None]]:
        """Status and blocking root of each of ``task_ids`` that exists."""
        if not task_ids:
            return {}
        rows = self.db.fetch_rows("task_states", task_ids=task_ids)
        return {tid: (TaskStatus(status), root) for tid, status, root in rows}

    def find_by_idempotency_keys(self, keys: list[str]) -> dict[str, dict[str, Any]]:
        """Idempotency key -> (task_id, content, task_type) of tasks already made with it."""
        if not keys:
            return {}
        self.db.execute("idempotency_keys_lock", keys=keys)  # until this transaction ends
        rows = self.db.fetch_dicts("tasks_by_idempotency_keys", keys=keys)
        return {row["idempotency_key"]: row for row in rows}

    def query_tasks(self, *, statuses: list[str] | None = None, agent_id: str | None = None,
                    task_type: str | None = None, priority: str | None = None,
                    created_after: datetime | None = None, limit: int | None = None,
                    offset: int = 0) -> list[Task]:
        return self._tasks("tasks_query", statuses=statuses, agent_id=agent_id,
                           task_type=task_type, priority=priority,
                           created_after=created_after, limit=limit, offset=offset)

    def stale_tasks(self, now: datetime) -> list[Task]:
        """Active tasks whose lease ran out before ``now``, in id order, read to be changed
        in this transaction (PostgreSQL: locked, skipping those another process holds)."""
        return self._tasks("tasks_stale", by_column=True, now=now)

    def status_counts(self) -> dict[str, int]:
        return dict(self.db.fetch_rows("task_status_counts"))

    def dependency_edges(self) -> list[tuple[str, str]]:
        """(dependency, dependent) pairs."""
        return [(a, b) for a, b in self.db.fetch_rows("dependency_edges")]

    def dependency_edge_chunks(self, size: int = 100_000) -> Iterator[list[tuple[str, str]]]:
        """:meth:`dependency_edges`, a chunk at a time (a million pairs as tuples at once
        would cost ~150 MB)."""
        return self._chunks("dependency_edges", size)

    def task_node_chunks(self, size: int = 100_000) -> Iterator[list[tuple]]:
        """(task_id, status, priority, task_type) of every task, in queue order, a chunk at
        a time."""
        return self._chunks("task_nodes", size)

    def _chunks(self, query: str, size: int, **params: Any) -> Iterator[list[tuple]]:
        with self.db.transaction():  # holds the lock until the last chunk is read
            cursor = self.db.execute(query, **params)
            while chunk := cursor.fetchmany(size):
                yield chunk

    def dependents_of(self, task_id: str) -> list[str]:
        return [r[0] for r in self.db.fetch_rows("dependents_of", task_id=task_id)]

    def history(self, task_id: str) -> list[dict[str, Any]]:
        """The task's transitions, oldest first."""
        out = []
        for row in self.db.fetch_dicts("task_history", task_id=task_id):
            out.append({"event_id": row["event_id"], "at": row["at"], **json.loads(row["content"])})
        return out

    def tasks_frame(self, statuses: list[str] | None = None,
                    agent_id: str | None = None) -> pd.DataFrame:
        """Task rows, in queue order; requirements and dependencies as JSON text."""
        frame = self.db.fetch_frame("tasks_frame", statuses=statuses, agent_id=agent_id)
        created = pd.to_datetime(frame["created_at"], utc=True).array.asi8.copy()
        created[created == np.iinfo(np.int64).min] = np.iinfo(np.int64).max  # NULLs last
        order = np.lexsort((frame["id"].to_numpy(), created,
                            frame["priority_rank"].fillna(2**15).to_numpy()))
        frame = frame.drop(columns=["priority_rank", "id"])
        if (order[1:] < order[:-1]).any():  # not in queue order already
            frame = frame.take(order)
        return frame.reset_index(drop=True)

    def transitions_frame(self) -> pd.DataFrame:
        frame = self.db.fetch_frame("transitions_frame")
        details = pd.json_normalize([json.loads(c) for c in frame.pop("content")])
        return pd.concat([frame, details], axis=1)
