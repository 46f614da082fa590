"""How the storage layer holds its connections (issue 13): transactions that lose a
deadlock are retried by ``atomic``; one DuckDB file is one database per process; a lock
error says who holds the file; PostgreSQL connections come from a pool and heal after
the server drops them.

Everything runs against real databases, threads and processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import pg_cluster
import psycopg
import pytest
from conftest import postgres_only

import athena_orch
from athena_orch.exceptions import (
    DatabaseLockedError,
    StorageError,
    TransactionConflictError,
    ValidationError,
)
from athena_orch.stores import open_database

ROOT = Path(athena_orch.__file__).resolve().parents[1]


@contextmanager
def unchanged_file(orch):
    """Asserts that every table's contents are the same after the block as before it."""
    before = orch.db.table_contents()
    yield
    assert orch.db.table_contents() == before


def _versions(db) -> tuple[int, int]:
    return db.version("agents"), db.version("dag")


# --------------------------------------------------------------------------- atomic


def _opposite_order(first, second, run):
    """Two connections bump the two change counters in opposite order, each waiting for
    the other to hold its first row: one of them must lose a deadlock. ``run(db, fn)``
    runs a transaction; returns each thread's error (or None)."""
    barrier = threading.Barrier(2)
    errors: list = [None, None]

    def work(i: int, db, names: tuple[str, str]) -> None:
        calls = 0

        def transaction() -> None:
            nonlocal calls
            calls += 1
            db.bump_version(names[0])
            if calls == 1:  # a retry runs alone: the other one has committed
                barrier.wait(timeout=30)
            db.bump_version(names[1])

        try:
            run(db, transaction)
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            errors[i] = exc

    threads = [threading.Thread(target=work, args=(0, first, ("agents", "dag"))),
               threading.Thread(target=work, args=(1, second, ("dag", "agents")))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return errors


@postgres_only
def test_atomic_retries_the_loser_of_a_deadlock_and_both_commit(database_url):
    url = database_url()
    first, second = open_database(url), open_database(url)
    try:
        before = _versions(first)
        errors = _opposite_order(first, second, lambda db, fn: db.atomic(fn))
        assert errors == [None, None]
        assert _versions(first) == (before[0] + 2, before[1] + 2)  # each bumped once per run
    finally:
        first.close()
        second.close()


@postgres_only
def test_without_atomic_the_loser_of_a_deadlock_gets_a_typed_error(database_url):
    url = database_url()
    first, second = open_database(url), open_database(url)
    try:
        before = _versions(first)

        def once(db, fn):
            with db.transaction():
                fn()

        errors = _opposite_order(first, second, once)
        lost = [e for e in errors if e is not None]
        assert len(lost) == 1 and isinstance(lost[0], TransactionConflictError), errors
        assert isinstance(lost[0].__cause__, psycopg.errors.DeadlockDetected)
        assert "deadlock" in str(lost[0])
        assert _versions(first) == (before[0] + 1, before[1] + 1)  # the loser wrote nothing
    finally:
        first.close()
        second.close()


@postgres_only
def test_atomic_does_not_retry_an_error_a_retry_would_not_cure(database_url):
    """A lock timeout (SQLSTATE 55P03) is not a conflict: ``fn`` runs once."""
    url = database_url() + "%20-clock_timeout%3D200"
    db = open_database(url)
    holder = psycopg.connect(url)  # not autocommit: holds the row lock until rollback
    try:
        holder.execute("UPDATE store_versions SET version = version WHERE name = 'dag'")
        calls = []

        def bump() -> None:
            calls.append(1)
            db.bump_version("dag")

        with pytest.raises(StorageError) as caught:
            db.atomic(bump)
        assert not isinstance(caught.value, TransactionConflictError)
        assert isinstance(caught.value.__cause__, psycopg.errors.LockNotAvailable)
        assert calls == [1]
    finally:
        holder.close()
        db.close()


def test_atomic_gives_up_after_its_bound_and_says_so(db):
    db.retry_attempts = 3
    before = db.version("dag")
    calls = []

    def always_loses() -> None:
        calls.append(1)
        db.bump_version("dag")
        raise TransactionConflictError("lost again")

    with pytest.raises(StorageError, match="gave up after 3 attempts") as caught:
        db.atomic(always_loses)
    assert type(caught.value) is StorageError
    assert isinstance(caught.value.__cause__, TransactionConflictError)
    assert len(calls) == 3
    assert db.version("dag") == before  # every attempt was rolled back


def test_atomic_inside_a_transaction_joins_it_and_leaves_the_retry_to_the_outside(db):
    calls = []

    def loses() -> None:
        calls.append(1)
        raise TransactionConflictError("lost")

    with pytest.raises(TransactionConflictError), db.transaction():
        db.atomic(loses)
    assert calls == [1]


def test_atomic_returns_what_fn_returns_and_passes_its_arguments(db):
    def bump(name: str, *, times: int) -> int:
        for _ in range(times):
            db.bump_version(name)
        return db.version(name)

    before = db.version("agents")
    assert db.atomic(bump, "agents", times=2) == before + 2


# ------------------------------------------------- one DuckDB file, one database per process


def _child(code: str, *args: str) -> subprocess.Popen:
    """A Python process running ``code`` (with athena_orch importable) and these args."""
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _drain(orch, agent: str, done: list[str]) -> None:
    """Claim, start and complete tasks as ``agent`` until none is left."""
    while (task := orch.queue.claim_task(agent)) is not None:
        orch.queue.start_task(task.id)
        orch.queue.complete_task(task.id, f"done by {agent}")
        done.append(task.id)


def test_two_connects_of_one_file_share_a_database_and_threads_drain_it_cleanly(tmp_path):
    path = str(tmp_path / "shared.duckdb")
    first, second = athena_orch.connect(path), athena_orch.connect(path)
    try:
        first.registry.register_agent("a", ["python"], {"max_concurrent_tasks": 4})
        second.registry.register_agent("b", ["python"], {"max_concurrent_tasks": 4})
        ids = first.queue.create_tasks([{"content": f"t{i}", "task_type": "t",
                                         "requirements": ["python"]} for i in range(200)])
        done: dict[str, list[str]] = {"a": [], "b": []}
        errors: list[BaseException] = []
        barrier = threading.Barrier(2)

        def worker(orch, agent: str) -> None:
            barrier.wait(timeout=30)
            try:
                _drain(orch, agent, done[agent])
            except BaseException as exc:  # noqa: BLE001 - the test asserts on it
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(first, "a")),
                   threading.Thread(target=worker, args=(second, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()
        assert errors == []
        assert sorted(done["a"] + done["b"]) == sorted(ids)  # each completed exactly once
        assert done["a"] and done["b"], "both threads did some of the work"
        stats = second.queue.get_queue_statistics()
        assert stats.completed_count == 200 and stats.pending_count == 0

        first.close()
        later = second.queue.create_task("after the first closed", "t")
        assert second.queue.get_task_status(later).status == "pending"
        with pytest.raises(StorageError, match="closed"):
            first.queue.create_task("through a closed manager", "t")
    finally:
        first.close()
        second.close()
    # both closed: the file is free for another process
    child = _child("import sys, athena_orch\n"
                   "with athena_orch.connect(sys.argv[1]) as orch:\n"
                   "    orch.queue.create_task('from a third process', 't')\n"
                   "    print(orch.queue.get_queue_statistics().total_count)", path)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 0, err
    assert out.split() == ["202"]


def test_in_memory_databases_are_never_shared():
    with athena_orch.connect() as first, athena_orch.connect(":memory:") as second:
        first.queue.create_task("only in the first", "t")
        assert second.queue.get_queue_statistics().total_count == 0


def test_a_reader_beside_this_processs_writer_reads_along_and_cannot_write(tmp_path):
    path = str(tmp_path / "beside.duckdb")
    with athena_orch.connect(path) as writer:
        first = writer.queue.create_task("before the reader", "t")
        with athena_orch.connect(path, read_only=True) as reader:
            assert [t.id for t in reader.queue.query_tasks()] == [first]
            with pytest.raises(StorageError, match="read-only"), unchanged_file(writer):
                reader.queue.create_task("through the reader", "t")
            second = writer.queue.create_task("while the reader is open", "t")
            assert {t.id for t in reader.queue.query_tasks()} == {first, second}
        writer.queue.create_task("after the reader closed", "t")
        assert writer.queue.get_queue_statistics().total_count == 3


def test_a_writer_cannot_join_a_file_this_process_has_open_read_only(tmp_path):
    path = str(tmp_path / "ro_first.duckdb")
    athena_orch.connect(path).close()
    with (athena_orch.connect(path, read_only=True),
          pytest.raises(StorageError, match="already open read-only in this process")):
        athena_orch.connect(path)
    with athena_orch.connect(path) as orch:  # once the readers are gone, it opens
        orch.queue.create_task("written", "t")


# ---------------------------------------------------- who holds the file, in the error


HOLD = """
import sys, time, athena_orch
orch = athena_orch.connect(sys.argv[1], read_only=sys.argv[2] == "ro")
print("holding", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize(("holder", "told"), [
    ("rw", "open for writing in another process"),
    ("ro", "open read-only in another process"),
])
def test_a_writer_is_told_whether_the_other_process_writes_or_only_reads(tmp_path, holder, told):
    path = str(tmp_path / "held.duckdb")
    athena_orch.connect(path).close()
    child = _child(HOLD, path, holder)
    try:
        assert child.stdout.readline().strip() == "holding", child.stderr.read()
        with pytest.raises(DatabaseLockedError) as caught:
            athena_orch.connect(path)
        message = str(caught.value)
        assert told in message and f"PID {child.pid}" in message
        if holder == "ro":
            assert "close that reader" in message and "read_only=True" in message
        else:
            assert "mcp --http" in message
    finally:
        child.kill()
        child.communicate()


# ------------------------------------------------------- PostgreSQL: a pool that heals


def _named(url: str) -> tuple[str, str]:
    """The URL with an application name of its own (so the test can find its backends)."""
    app = f"athena-test-{uuid.uuid4().hex[:10]}"
    return f"{url}{'&' if '?' in url else '?'}application_name={app}", app


class Server:
    """An admin connection that sees and terminates one application's backends."""

    def __init__(self, url: str, app: str):
        self.app = app
        self.conn = psycopg.connect(url, autocommit=True, application_name="athena-test-admin")

    def backends(self, state: str = "%") -> int:
        return self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
            "AND state LIKE %s", (self.app, state)).fetchone()[0]

    def terminate_all(self) -> int:
        """Terminate every backend of the application, and wait until they are gone."""
        killed = self.conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = %s", (self.app,)).fetchone()[0]
        deadline = time.monotonic() + 30
        while self.backends() and time.monotonic() < deadline:
            time.sleep(0.01)
        return killed

    def close(self) -> None:
        self.conn.close()


def _open_at_once(orch, n: int, inside=lambda: None) -> list:
    """n threads each open a transaction and wait until all n are open at once (so each
    holds a connection of its own), run ``inside()`` in it, and wait for each other again
    before they commit; their results or errors."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def hold(i: int) -> None:
        try:
            with orch.db.transaction():
                orch.db.version("agents")
                barrier.wait(timeout=30)
                try:
                    results[i] = inside()
                finally:
                    barrier.wait(timeout=30)
        except Exception as exc:  # noqa: BLE001 - the test asserts on it
            results[i] = exc

    threads = [threading.Thread(target=hold, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    return results


@postgres_only
def test_connections_the_server_terminated_are_replaced_and_nothing_half_applies(database_url):
    url, app = _named(database_url())
    server = Server(url, app)
    orch = athena_orch.connect(url, pool_size=3)
    try:
        orch.registry.register_agent("a", ["python"], {"max_concurrent_tasks": 10})
        first = orch.queue.create_task("before", "t", requirements=["python"])
        _open_at_once(orch, 3)  # the pool now has three connections

        # idle connections terminated: found by the pool's check, never reach a call
        assert server.terminate_all() == 3
        assert [t.id for t in orch.queue.query_tasks()] == [first]

        # terminated inside a transaction: it raises, and nothing of it was applied
        before = orch.db.table_contents()
        with (pytest.raises(StorageError, match="nothing of it was applied") as caught,
              orch.db.transaction()):
            orch.queue.create_task("half", "t")
            server.terminate_all()
            orch.queue.create_task("other half", "t")
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert orch.db.table_contents() == before

        # terminated just before COMMIT: the caller is told the outcome is unknown
        with (pytest.raises(StorageError, match="during COMMIT: whether the transaction was "
                                                "applied is unknown"),
              orch.db.transaction()):
            orch.queue.create_task("maybe", "t")
            server.terminate_all()
        assert orch.db.table_contents() == before  # (the server had rolled it back)

        # and the library carries on, on new connections
        task = orch.queue.claim_task("a")
        orch.queue.start_task(task.id)
        orch.queue.complete_task(task.id, "done after the terminations")
        assert orch.queue.get_task_status(first).status == "completed"
        assert server.backends() >= 1
    finally:
        orch.close()
        server.close()


def _pg_ctl(folder: Path, *args: str) -> None:
    bindir = pg_cluster.server_bin()
    done = subprocess.run(pg_cluster._as_owner([str(bindir / "pg_ctl"), "-D", str(folder / "data"),
                                                "-l", str(folder / "server.log"), "-w", *args]),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def own_cluster():
    """A throw-away PostgreSQL cluster of this test's own: (its URL, its folder)."""
    with pg_cluster.throwaway("this test must restart a server of its own") as cluster:
        yield cluster


def test_the_library_works_again_after_the_server_restarts(own_cluster):
    url, folder = own_cluster
    with athena_orch.connect(url, pool_timeout=3) as orch:
        before = orch.queue.create_task("before the restart", "t")
        _pg_ctl(folder, "stop", "-m", "fast")

        started = time.monotonic()
        with pytest.raises(StorageError, match="no connection to .* within 3 s"):
            orch.queue.get_queue_statistics()
        assert time.monotonic() - started < 15

        _pg_ctl(folder, "restart")  # starts it again, on the same port and options
        deadline = time.monotonic() + 60
        while True:  # the pool reconnects in the background, with a back-off
            try:
                orch.queue.get_queue_statistics()
                break
            except StorageError:
                assert time.monotonic() < deadline, "the pool never reconnected"
        after = orch.queue.create_task("after the restart", "t")
        assert [t.id for t in orch.queue.query_tasks()] == [before, after]


@postgres_only
def test_threads_of_one_process_hold_connections_of_their_own_and_agree(database_url):
    url, app = _named(database_url())
    server = Server(url, app)
    seen: list[str] = []
    orch = athena_orch.connect(url, pool_size=4, tracer=lambda sql, params: seen.append(sql))
    try:
        # four transactions open at once, each on its own backend
        assert _open_at_once(orch, 4, lambda: server.backends("idle in transaction%")) == [4] * 4

        agents = [f"w{i}" for i in range(4)]
        for agent in agents:
            orch.registry.register_agent(agent, ["python"], {"max_concurrent_tasks": 2})
        ids = orch.queue.create_tasks([{"content": f"t{i}", "task_type": "t",
                                        "requirements": ["python"]} for i in range(120)])
        done: dict[str, list[str]] = {agent: [] for agent in agents}
        errors: list[BaseException] = []

        def worker(agent: str) -> None:
            try:
                _drain(orch, agent, done[agent])
            except BaseException as exc:  # noqa: BLE001 - the test asserts on it
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(a,)) for a in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
            assert not thread.is_alive()
        assert errors == []
        assert sorted(sum(done.values(), [])) == sorted(ids)  # each completed exactly once
        assert orch.queue.get_queue_statistics().completed_count == 120
        for agent in agents:
            assert orch.registry.get_agent_health(agent)["total_completed"] == len(done[agent])
        # every statement was traced, the pool's session setup too
        assert any("SET TimeZone" in sql for sql in seen)
    finally:
        orch.close()
        server.close()


@postgres_only
def test_read_only_holds_on_every_pooled_connection(database_url):
    url = database_url()
    athena_orch.connect(url).close()  # the schema
    with athena_orch.connect(url, read_only=True, pool_size=3) as reader:
        refused = _open_at_once(reader, 3, lambda: reader.db.bump_version("dag"))
        assert all(isinstance(r, StorageError) and "read-only" in str(r) for r in refused), refused
        assert reader.db.version("dag") == 0


def test_pool_settings_are_checked_and_refused_for_duckdb(database_url):
    url = database_url()
    if url is None:
        with pytest.raises(ValidationError, match="pool settings .*pool_size.* are for PostgreSQL"):
            athena_orch.connect(pool_size=2)
        return
    for bad in (0, -1, 2.5, True, "4"):
        with pytest.raises(ValidationError, match="pool_size"):
            athena_orch.connect(url, pool_size=bad)
    with pytest.raises(ValidationError, match="pool_timeout"):
        athena_orch.connect(url, pool_timeout=0)
