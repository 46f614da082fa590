"""How the storage layer holds its connections (issue 13): transactions that lose a
deadlock are retried by ``atomic``; one DuckDB file is one database per process; a lock
error says who holds the file; PostgreSQL connections come from a pool and heal after
the server drops them.

Everything runs against real databases, threads and processes.
"""

from __future__ import annotations

import threading

import psycopg
import pytest
from conftest import postgres_only

from athena_orch.exceptions import StorageError, TransactionConflictError
from athena_orch.stores import open_database


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
