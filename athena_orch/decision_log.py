"""The routing decision log, written behind: decisions are kept in memory and inserted in
bulk, so a routing call costs its one read and no write.

Why it may: a decision changes no task (routing never assigns) and the log is read for
analysis. What it costs: until a flush, the rows are only in this process. They are
flushed when they are read (``router.decisions()``), when a batch is logged (so the log
keeps the order decisions were made in), when ``max_pending`` are waiting, when the
manager closes, and at the latest ``flush_seconds`` after the first of them was made (a
timer thread). A process that dies loses at most that last second of decisions; another
process reading the log sees them that much later.
"""

from __future__ import annotations

import threading
from contextlib import suppress
from typing import Any

import pandas as pd

from .exceptions import OrchestrationError
from .stores import MetaStore

FLUSH_SECONDS = 1.0
MAX_PENDING = 1_000


class DecisionLog:
    """Decisions waiting to be written, in the order they were made."""

    def __init__(self, meta: MetaStore, *, flush_seconds: float = FLUSH_SECONDS,
                 max_pending: int = MAX_PENDING):
        self.meta = meta
        self.flush_seconds = flush_seconds
        self.max_pending = max_pending
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.RLock()
        self._timer: threading.Timer | None = None

    def add(self, decision: dict[str, Any]) -> None:
        """Keep one decision (the columns of ``routing_decisions``) to write later."""
        with self._lock:
            self._pending.append(decision)
            if len(self._pending) >= self.max_pending:
                self.flush()
            elif self._timer is None:
                self._timer = threading.Timer(self.flush_seconds, self._flush_later)
                self._timer.daemon = True
                self._timer.start()

    def add_frame(self, decisions: pd.DataFrame) -> None:
        """Write a batch of decisions now, after those waiting."""
        with self._lock:
            self.flush()
            self.meta.record_decisions(decisions)

    def flush(self) -> None:
        """Write every waiting decision (one bulk insert); if that fails they stay
        waiting, for the next flush."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            if self._pending:
                self.meta.record_decisions(pd.DataFrame(self._pending))
                self._pending = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _flush_later(self) -> None:
        with self._lock:
            self._timer = None
            with suppress(OrchestrationError):  # e.g. the database closed: kept for later
                self.flush()

    def close(self) -> None:
        """Flush, and stop the timer."""
        self.flush()
