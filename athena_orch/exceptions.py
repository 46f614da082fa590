"""Every error athena-orch raises; all derive from :class:`OrchestrationError`.

Each class's docstring is its meaning; each message names the offending id or value.
"""

from __future__ import annotations

import reprlib


def shown(value: object, limit: int = 80) -> str:
    """``repr(value)`` cut to ``limit`` characters: messages name the offending id or value,
    and a caller's 100 KB id (or a list nested 10,000 deep) must not make a huge message."""
    short = reprlib.Repr()  # keyword arguments need Python 3.12
    short.maxlevel, short.maxstring, short.maxother = 3, limit, limit
    try:
        text = short.repr(value)
    except Exception:  # a caller's object whose __repr__ fails still gets a message
        text = f"<{type(value).__name__} object>"
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


class OrchestrationError(Exception):
    """Base class of every error raised by athena-orch."""


class ValidationError(OrchestrationError, ValueError):
    """An argument has the wrong type or value; nothing was written."""


class EvaluationError(ValidationError):
    """The decision log cannot answer the off-policy question asked of it: no propensities,
    no outcomes, no usable decision, or a policy that is not a probability distribution
    over the logged candidates."""


class TaskNotFoundError(OrchestrationError, KeyError):
    """A write named a task id that does not exist."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class AgentNotFoundError(OrchestrationError, KeyError):
    """A write named an agent id that is not registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DependencyError(OrchestrationError):
    """A dependency names an unknown task, or a dependency is not yet completed."""


class InvalidTransitionError(OrchestrationError):
    """The task's current state does not allow the requested call."""

    def __init__(self, task_id: str, status: str, action: str, detail: str = ""):
        self.task_id, self.status, self.action = task_id, status, action
        message = f"cannot {action} task {shown(task_id)}: it is {status}"
        super().__init__(f"{message} ({detail})" if detail else message)


class StaleAttemptError(InvalidTransitionError):
    """The caller named an attempt (agent and/or attempt number) that is no longer the
    task's current one: its lease ran out and the task was requeued or handed to someone
    else. Nothing was changed; the caller should drop the task."""


class CapacityError(OrchestrationError):
    """The agent is already running as many tasks as it may."""


class DuplicateTaskError(OrchestrationError):
    """An idempotency key was reused with different task content."""


class WorkerError(OrchestrationError):
    """A worker was asked for what it cannot do in its state (e.g. to start while it runs)."""


class StorageError(OrchestrationError):
    """The database refused an operation; the original error is chained."""


class TransactionConflictError(StorageError):
    """A transaction lost a deadlock or serialization conflict and was rolled back; the
    database's ``atomic`` retries such a transaction, so a caller sees this only inside an
    outer transaction, which must be retried whole."""


class DatabaseLockedError(StorageError):
    """Another process holds the DuckDB file open for writing."""


class SchemaVersionError(StorageError):
    """The database file was written by a newer, unknown schema version."""
