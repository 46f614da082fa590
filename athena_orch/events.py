"""Task events delivered to subscribers: the seed's Phase 2 (event-driven pub-sub).

Every change of a task (created, assigned, started, completed with its result, retried,
released, failed, blocked, cancelled) becomes a :class:`~athena_orch.models.TaskEvent`
once its transaction commits; subscribers whose pattern matches the event type receive it,
through a callback or by iterating a subscription. Subscriptions are recorded in the
``event_subscriptions`` table (who, which pattern, how often triggered).

Delivery happens on a thread of the bus, never in the writer's: a slow or failing callback
neither delays nor breaks the write that caused the event (a callback that raises is
logged and counted on its subscription). Events are delivered in commit order, within this
process: a subscription sees the writes made through this manager (other processes'
writes are not delivered; on PostgreSQL, workers in other processes are woken by NOTIFY).
"""

from __future__ import annotations

import logging
import queue as queues
import re
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from . import validation as v
from .exceptions import ValidationError, shown
from .models import TaskEvent
from .stores import SubscriptionStore

log = logging.getLogger(__name__)
EVENT_TYPES = ("task_created", "task_assigned", "task_started", "task_completed",
               "task_retried", "task_released", "task_failed", "task_blocked", "task_cancelled")
BUFFER = 10_000  # events an iterated subscription holds before it drops the oldest
_CLOSED = object()  # ends an iterator


class Subscription:
    """One subscriber's interest: a pattern (a regular expression that must match the
    whole event type, e.g. ``"task_(completed|failed)"``), and either a callback or a
    buffer to iterate (``for event in subscription``; ends when it is closed)."""

    def __init__(self, bus: EventBus, row_id: int, agent_id: str, pattern: str,
                 callback: Callable[[TaskEvent], Any] | None):
        self.id, self.agent_id, self.pattern, self.callback = row_id, agent_id, pattern, callback
        self._regex = re.compile(pattern)
        self._bus = bus
        self._buffer: queues.Queue = queues.Queue()
        self.delivered = 0
        self.errors = 0
        self.dropped = 0
        self.last_error: str | None = None
        self.last_triggered: datetime | None = None
        self.active = True

    def matches(self, event: TaskEvent) -> bool:
        return self._regex.fullmatch(event.event_type) is not None

    def _deliver(self, event: TaskEvent) -> None:
        self.delivered += 1
        self.last_triggered = event.at
        if self.callback is None:
            if self._buffer.qsize() >= BUFFER:
                self._buffer.get_nowait()
                self.dropped += 1
            self._buffer.put(event)
            return
        try:
            self.callback(event)
        except Exception as exc:  # noqa: BLE001 - a subscriber's error is reported, not raised
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("event subscription %s (%s) failed on %s of task %s: %s", self.id,
                        self.agent_id, event.event_type, event.task_id, self.last_error)

    def get(self, timeout: float | None = None) -> TaskEvent | None:
        """The next event (iterated subscriptions), waiting up to ``timeout`` seconds
        (None: as long as it takes); None when none came or the subscription is closed."""
        if self.callback is not None:
            raise ValidationError("this subscription delivers to its callback; it has no "
                                  "events to get")
        try:
            event = self._buffer.get(timeout=timeout)
        except queues.Empty:
            return None
        if event is _CLOSED:
            self._buffer.put(_CLOSED)  # for any other reader
            return None
        return event

    def __iter__(self) -> Iterator[TaskEvent]:
        while (event := self.get()) is not None:
            yield event

    def close(self) -> None:
        """Stop delivering (recorded as inactive); iterating ends once the buffer is read."""
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "active" if self.active else "closed"
        return (f"<Subscription {self.id} {self.agent_id!r} {self.pattern!r}: {state}, "
                f"{self.delivered} delivered, {self.errors} errors>")


class EventBus:
    """Publishes task events to subscriptions; ``orch.events``."""

    def __init__(self, store: SubscriptionStore):
        self.store = store
        self._subscriptions: dict[int, Subscription] = {}
        self._lock = threading.Lock()
        self._outbox: queues.Queue = queues.Queue()
        self._thread: threading.Thread | None = None

    @property
    def active(self) -> bool:
        """Whether anyone listens (writers build events only then)."""
        return bool(self._subscriptions)

    def subscribe(self, callback: Callable[[TaskEvent], Any] | None = None, *,
                  pattern: str = ".*", agent_id: str = "notebook") -> Subscription:
        """Receive every event whose type matches ``pattern`` (a regular expression over
        the whole type: ``task_completed``, ``task_(failed|blocked)``, ``.*``): by
        ``callback(event)`` on the bus's thread, or, without a callback, by iterating the
        returned subscription. ``agent_id`` names the subscriber in the
        ``event_subscriptions`` table (one row per subscriber and pattern)."""
        if callback is not None and not callable(callback):
            raise ValidationError(f"callback must be callable, not {shown(callback)}")
        pattern = v.text("pattern", pattern)
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValidationError(f"pattern {shown(pattern)} is not a regular expression: "
                                  f"{exc}") from None
        agent_id = v.text("agent_id", agent_id)
        row_id = self.store.subscribe(agent_id, pattern, datetime.now(UTC))
        subscription = Subscription(self, row_id, agent_id, pattern, callback)
        with self._lock:
            self._subscriptions[id(subscription)] = subscription
            if self._thread is None:
                self._thread = threading.Thread(target=self._deliver, daemon=True,
                                                name="athena-orch events")
                self._thread.start()
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        """Stop a subscription and record its figures; closing twice is harmless."""
        with self._lock:
            if self._subscriptions.pop(id(subscription), None) is None:
                return
        subscription.active = False
        subscription._buffer.put(_CLOSED)
        still = any(s.id == subscription.id for s in self._subscriptions.values())
        self.store.record(subscription.id, subscription.delivered, subscription.last_triggered,
                          active=still)

    def publish(self, events: list[TaskEvent]) -> None:
        """Queue committed events for delivery (the writer returns at once)."""
        if events and self._subscriptions:
            self._outbox.put(events)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every event published so far was delivered; False on timeout."""
        done = threading.Event()
        self._outbox.put(done)
        return done.wait(timeout) if self._thread is not None else True

    def subscriptions(self) -> pd.DataFrame:
        """The ``event_subscriptions`` table, with this process's live figures."""
        live = list(self._subscriptions.values())
        frame = self.store.frame()
        for s in live:
            at = frame.index[frame["id"] == s.id]
            frame.loc[at, "trigger_count"] = frame.loc[at, "trigger_count"] + s.delivered
            if s.last_triggered is not None:
                frame.loc[at, "last_triggered"] = pd.Timestamp(s.last_triggered)
        return frame

    def close(self) -> None:
        """Close every subscription (the manager's ``close`` does)."""
        for subscription in list(self._subscriptions.values()):
            self.unsubscribe(subscription)
        self._outbox.put(None)

    def _deliver(self) -> None:
        while True:
            item = self._outbox.get()
            if item is None:
                with self._lock:
                    self._thread = None
                return
            if isinstance(item, threading.Event):
                item.set()
                continue
            subscriptions = list(self._subscriptions.values())
            for event in item:
                for subscription in subscriptions:
                    if subscription.active and subscription.matches(event):
                        subscription._deliver(event)
