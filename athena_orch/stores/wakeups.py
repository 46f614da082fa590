"""Wake-ups instead of polling: claimers sleep until a write may have made work ready.

Every write that can make a task claimable (a new task, a completion that releases
dependents, a retry, a freed slot, an agent given capabilities) announces it when its
transaction commits; claimers waiting on the same database wake at once. One
:class:`Wakeups` per database per process (DuckDB: per file; PostgreSQL: per URL,
schema included), shared by every connection of this process to it. PostgreSQL also
carries the announcement to other processes and machines (``NOTIFY``, see
``postgres.py``); a waiter re-checks after ``poll`` seconds anyway, the safety net for a
notification that never came and for retry back-offs that run out by themselves.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class Wakeups:
    """A counter that moves on every announcement, and a condition to sleep on until it
    does. Waiters read ``generation`` before they look for work, then ``wait(seen)``:
    an announcement between the look and the sleep is never missed."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self.generation = 0
        self.waiting = 0  # threads asleep in wait() now
        self._before_wait: Callable[[], None] | None = None

    def notify(self) -> None:
        with self._changed:
            self.generation += 1
            self._changed.notify_all()

    def wait(self, seen: int, timeout: float) -> int:
        """Sleep until the generation differs from ``seen`` or ``timeout`` seconds pass;
        returns the generation now."""
        if self._before_wait is not None:
            self._before_wait()
        with self._changed:
            self.waiting += 1
            try:
                self._changed.wait_for(lambda: self.generation != seen, timeout)
            finally:
                self.waiting -= 1
            return self.generation

    def when_waited(self, start: Callable[[], None]) -> None:
        """Call ``start`` (idempotent: e.g. start a listener) before every wait."""
        self._before_wait = start


_by_key: dict[str, Wakeups] = {}
_by_key_lock = threading.Lock()


def wakeups_for(key: str) -> Wakeups:
    """The process's Wakeups of one database (created on first use, kept for the life of
    the process: it is a counter and a condition, nothing to close)."""
    with _by_key_lock:
        found = _by_key.get(key)
        if found is None:
            found = _by_key[key] = Wakeups()
        return found
