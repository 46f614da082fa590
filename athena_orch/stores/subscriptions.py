"""The ``event_subscriptions`` table: who subscribed to which task events, and how often
they were triggered (the figures of a live subscription are added when it closes)."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from .base import SQLDatabase


class SubscriptionStore:
    def __init__(self, db: SQLDatabase):
        self.db = db

    def subscribe(self, agent_id: str, pattern: str, now: datetime) -> int:
        """The id of the (agent, pattern) subscription, created or made active again."""
        return int(self.db.fetch_value("subscription_upsert", agent_id=agent_id,
                                       pattern=pattern, now=now))

    def record(self, subscription_id: int, delivered: int, last_triggered: datetime | None,
               *, active: bool) -> None:
        """Add a closed subscription's figures; ``active``: others of this process still
        use the row."""
        self.db.execute("subscription_record", id=subscription_id, delivered=delivered,
                        last_triggered=last_triggered, active=active)

    def frame(self) -> pd.DataFrame:
        return self.db.fetch_frame("subscriptions_frame")
