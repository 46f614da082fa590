"""Workers: Python functions that do the queue's tasks.

One :class:`Worker` is one agent. It claims the tasks it has handlers for (at most
``concurrency`` at once) and takes those someone assigned to its agent (a dispatcher's
``assign_task``), starts them, runs each handler in a thread of the worker's pool
(``async def`` handlers in the worker's event loop), renews their leases while they run, and
completes or fails them, always naming its agent and the attempt: a task whose lease ran
out and went elsewhere is never completed twice. Nothing a handler does stops the worker.

    worker = Worker(orch, "summariser", capabilities=["writing"], concurrency=4)

    @worker.handles("summary")
    def summarise(task):
        return {"summary": task.content[:100]}   # stored as JSON text

    worker.run()                 # blocks; Ctrl-C or SIGTERM stops it gracefully
    worker.start(); worker.stop()   # the same in a background thread (notebooks)

``Worker(..., assigned_only=True)`` never claims: it runs what a dispatcher assigns to its
agent (push), while other workers pull their own work.
"""

from __future__ import annotations

import atexit
import importlib
import inspect
import json
import logging
import queue
import signal
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from . import validation as v
from .exceptions import (
    AgentNotFoundError,
    InvalidTransitionError,
    OrchestrationError,
    StaleAttemptError,
    ValidationError,
    shown,
)
from .models import Task, TaskStatus

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from .manager import OrchestrationManager

__all__ = ["Worker", "Result", "DoNotRetry", "Summary", "load_handlers"]

log = logging.getLogger(__name__)

#: The longest failure text kept (a RecursionError's traceback can be megabytes).
MAX_ERROR_CHARS = 20_000
#: A live widget is redrawn at most this often.
REFRESH_SECONDS = 0.25
#: The longest a time limit, grace period or interval may be: the queue's 10-year bound.
MAX_SECONDS = v.MAX_DURATION_MS / 1000
#: Assigned tasks read per look, in queue order (those past it are seen as these start).
MAX_ASSIGNED = 1000


class DoNotRetry(Exception):  # noqa: N818 - read as a sentence in a handler: raise DoNotRetry
    """Raise from a handler to fail its task for good, whatever retries it has left (the
    input is bad, retrying cannot help). Any other exception is retried by the usual rules."""


@dataclass(frozen=True)
class Result:
    """What a handler returns when it measured its own work: ``Result(value,
    duration_ms=...)``. Without it the worker records how long the handler call took."""

    value: Any
    duration_ms: int | None = None


@dataclass
class Summary:
    """What a worker did since its run began; ``running`` and ``abandoned`` are counts at
    the moment it was taken."""

    completed: int = 0  # the handler returned and its result was stored
    retried: int = 0  # the handler failed; the task went back to pending for another try
    failed: int = 0  # the handler failed and no retry was left (or it raised DoNotRetry)
    timed_out: int = 0  # of retried + failed: those that ran past their time limit
    lost: int = 0  # no longer this worker's when it finished (lease ran out, cancelled)
    released: int = 0  # handed back unfinished when the worker stopped (no retry used)
    errors: int = 0  # calls to the queue that failed (database trouble); the worker went on
    running: int = 0  # tasks held now
    abandoned: int = 0  # handler threads still running after the worker gave up on them
    last_error: str | None = None  # "task <id>: <Type>: <message>", or the last queue error


@dataclass(frozen=True)
class _Handler:
    fn: Callable[[Task], Any]
    time_limit: float | None  # None: the worker's
    is_async: bool


_RUNNING, _FINISHED, _SETTLING, _ABANDONED = "running", "finished", "settling", "abandoned"


@dataclass(eq=False)
class _Job:
    """One attempt at one task, from the claim until the worker settles it."""

    task: Task
    handler: _Handler
    deadline: float | None  # time.monotonic() after which the handler has run too long
    next_beat: float  # when its lease is next renewed
    state: str = _RUNNING
    value: Any = None
    error: BaseException | None = None
    duration_ms: int = 0
    settle_at: float = 0.0  # when to try again to record its outcome (0: not tried yet)
    returned: bool = False  # the handler call is over (even if its outcome was dropped)
    thread: threading.Thread | None = None  # the pool thread running it, once one does
    future: Any = None  # concurrent.futures.Future of an async handler


class Worker:
    """A pool of handler calls working as one agent; see the module docstring.

    ``handlers``: ``{task_type: callable}``, or one callable for every task the agent can
    do (more can be added with :meth:`handles`). A handler takes the :class:`Task` and
    returns its result: a string, stored as is, anything else as ``json.dumps`` text
    (strict: no NaN), or a :class:`Result`. An exception fails the task with its type,
    message and traceback as the error (retried by the usual rules; :class:`DoNotRetry`
    fails it for good); so does running past the time limit and a result that cannot be
    stored (which is not retried).

    ``capabilities``: register (or update) the agent with them and
    ``max_concurrent_tasks=concurrency``; without, the agent must be registered already.
    ``time_limit``: seconds a handler may run (None: no limit); a thread cannot be killed,
    so the worker fails the attempt and drops whatever the handler returns later (an async
    handler is cancelled). ``grace_seconds``: how long :meth:`stop` lets running handlers
    finish before it hands their tasks back. ``heartbeat_seconds``: how often leases are
    renewed (default a third of the queue's ``lease_seconds``). ``poll_seconds``: the
    longest a claim waits for work before looking again (a new task wakes it at once).

    Tasks assigned to the agent (``queue.assign_task``: a dispatcher routing work) are run
    too, with the attempt the assignment made: they are looked for when a claim leaves room
    (an assigned task takes a slot of the agent's capacity, so claims come back short) and
    at least every ``poll_seconds`` before claiming, so a stream of claimable work never
    starves them; ``assign_task`` wakes an idle worker. The workers of one process share
    that look (one read per wake-up, not one each). An assigned task of a type the worker
    has no handler for is left to another worker of the agent, or to its lease.
    ``assigned_only``: never claim, only run what is assigned (a push agent).
    """

    def __init__(self, orch: OrchestrationManager, agent_id: str,
                 handlers: Mapping[str, Callable] | Callable | None = None, *,
                 capabilities: list[str] | None = None, concurrency: int = 1,
                 time_limit: float | None = None, grace_seconds: float = 30.0,
                 heartbeat_seconds: float | None = None, poll_seconds: float = 1.0,
                 assigned_only: bool = False):
        self.orch = orch
        self.agent_id = v.text("agent_id", agent_id)
        self.assigned_only = v.boolean("assigned_only", assigned_only)
        self.concurrency = v.positive_int("concurrency", concurrency, high=2**31 - 1)
        self.time_limit = _seconds("time_limit", time_limit, optional=True)
        self.grace_seconds = v.number("grace_seconds", grace_seconds, high=MAX_SECONDS)
        lease = orch.queue.lease_seconds
        self.heartbeat_seconds = (lease / 3 if heartbeat_seconds is None
                                  else _seconds("heartbeat_seconds", heartbeat_seconds))
        if self.heartbeat_seconds >= lease:
            raise ValidationError(f"heartbeat_seconds must be shorter than the queue's "
                                  f"lease_seconds ({lease}), not {self.heartbeat_seconds}")
        self.poll_seconds = _seconds("poll_seconds", poll_seconds)
        # One lock (an RLock: a signal handler may take it again), two conditions: the
        # claimer (and whoever waits for a stop) waits on _cond, the supervisor on _tick,
        # woken only when its next wake-up (_tick_at) comes sooner.
        lock = threading.RLock()
        self._cond, self._tick = threading.Condition(lock), threading.Condition(lock)
        self._tick_at = 0.0
        self._handlers: dict[str, _Handler] = {}
        self._default: _Handler | None = None
        if isinstance(handlers, Mapping):
            for task_type, fn in handlers.items():
                self.handles(task_type)(fn)
        elif callable(handlers):
            self._default = _handler(handlers, None)
        elif handlers is not None:
            raise ValidationError(f"handlers must be a dict of task_type -> callable or one "
                                  f"callable, not {type(handlers).__name__}: {shown(handlers)}")
        if capabilities is not None:
            self._register(v.string_list("capabilities", capabilities))
        elif orch.registry.get_agent(self.agent_id) is None:
            raise AgentNotFoundError(f"agent {shown(self.agent_id)} is not registered: "
                                     "register it first, or pass capabilities=[...]")
        self._jobs: set[_Job] = set()
        self._abandoned: set[_Job] = set()
        self._summary = Summary()
        self._settled = 0  # moves each time a job leaves: an idle run waits on it
        # The claimer records outcomes between its claims (DuckDB runs a thread's calls in
        # a row faster); while it is inside a claim, or gone, the supervisor does.
        self._claimer_busy = True
        self._active = False
        self._stop_at: float | None = None
        self._hurry = False
        self._crashed = False  # stop(release=False): nothing more is said to the queue
        self._look_at = 0.0  # when assigned tasks are next looked for before claiming
        self._thread: threading.Thread | None = None
        self._work: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._pool = self._idle = 0  # handler threads of this run; those waiting for a job
        self._loop: Any = None
        self._loop_thread: threading.Thread | None = None
        self._widgets: list[Any] = []
        self._dirty = False
        self._drawn_at = 0.0

    def _register(self, capabilities: list[str]) -> None:
        """Register the agent, keeping metadata and a pause someone else set."""
        current = self.orch.registry.get_agent(self.agent_id)
        metadata = {} if current is None else {**current.metadata, "active": current.active}
        metadata["max_concurrent_tasks"] = self.concurrency
        self.orch.registry.register_agent(self.agent_id, capabilities, metadata)

    # ------------------------------------------------------------------ handlers
    def handles(self, task_type: str, *, time_limit: float | None = None
                ) -> Callable[[Callable], Callable]:
        """Decorator: the function handles tasks of ``task_type`` (replacing an earlier
        one), within ``time_limit`` seconds if given (else the worker's)."""
        task_type = v.text("task_type", task_type)
        limit = _seconds("time_limit", time_limit, optional=True)

        def register(fn: Callable) -> Callable:
            if not callable(fn):
                raise ValidationError(f"the handler of {shown(task_type)} must be callable, "
                                      f"not {type(fn).__name__}: {shown(fn)}")
            with self._cond:
                self._handlers[task_type] = _handler(fn, limit)
            return fn

        return register

    @property
    def task_types(self) -> list[str] | None:
        """The task types this worker claims; None when one callable takes every task."""
        with self._cond:
            return None if self._default is not None else sorted(self._handlers)

    @property
    def summary(self) -> Summary:
        """A snapshot of what the worker did since its run began."""
        with self._cond:
            self._abandoned = {j for j in self._abandoned if not (
                j.returned or j.future is not None and j.future.done())}
            return replace(self._summary, running=len(self._jobs),
                           abandoned=len(self._abandoned))

    @property
    def is_running(self) -> bool:
        return self._active

    # ------------------------------------------------------------------ running
    def run(self, *, until_idle: bool = False) -> Summary:
        """Work until stopped (:meth:`stop`, or SIGINT / SIGTERM when called on the main
        thread) and return the summary. ``until_idle``: return as soon as nothing this
        worker can do is ready and nothing is running (tasks waiting on a retry back-off
        or on other agents' work are left for later)."""
        until_idle = v.boolean("until_idle", until_idle)
        self._begin()
        return self._serve(until_idle)

    def start(self) -> None:
        """Run in a background thread (a notebook kernel stays free); :meth:`stop` ends it,
        and so does the interpreter's exit."""
        self._begin()
        self._thread = threading.Thread(target=self._serve, args=(False,), daemon=True,
                                        name=f"athena-worker-{self.agent_id}")
        atexit.register(self.stop)
        self._thread.start()

    def stop(self, wait: bool = True, *, release: bool = True) -> Summary:
        """Stop claiming, give running handlers ``grace_seconds`` to finish, then hand
        their tasks back (``release_task``: no retry used). ``wait``: until a worker begun
        with :meth:`start` has stopped (never from inside one of its own handlers).

        ``release=False``: stop at once and leave held tasks to their leases, as a crash
        would: no outcome is recorded, no lease renewed, nothing handed back (an outcome
        already being written still is); ``requeue_stale`` brings the tasks back once their
        leases run out, using a retry. For simulations and recovery drills."""
        release = v.boolean("release", release)
        if not release:
            with self._cond:
                if self._active and self._stop_at is None:
                    self._crashed = True
                    for job in [j for j in self._jobs if j.state in (_RUNNING, _FINISHED)]:
                        if job.state == _RUNNING:
                            self._give_up(job)
                        self._done(job, None)
        self._request_stop(hurry=not release)
        thread = self._thread
        if wait and thread is not None and thread is not threading.current_thread() \
                and not self._is_handler_thread():
            thread.join()
        return self.summary

    def _begin(self) -> None:
        with self._cond:
            if self._active:
                raise OrchestrationError(f"worker {shown(self.agent_id)} is already running")
            if not self._handlers and self._default is None:
                raise ValidationError(f"worker {shown(self.agent_id)} has no handlers: pass "
                                      "handlers= or use @worker.handles(task_type)")
            self._active, self._stop_at, self._hurry, self._crashed = True, None, False, False
            self._summary = Summary()
            self._work = queue.SimpleQueue()  # threads of an earlier run keep theirs
            self._pool = self._idle = 0

    def _request_stop(self, hurry: bool = False) -> None:
        with self._cond:
            if self._stop_at is None:
                self._stop_at = time.monotonic()
            self._hurry = self._hurry or hurry
            self._cond.notify_all()
            self._tick.notify()
        self.orch.queue.wakeups.notify()  # a claimer waiting for work looks up at once
        # (its neighbours in this process look too: one wasted claim each, only on a stop)

    def _on_signal(self, signum: int, frame: Any) -> None:
        """SIGINT / SIGTERM: stop gracefully; a second one ends the grace period at once."""
        again = self._stop_at is not None
        log.info("worker %s: %s, %s", self.agent_id, signal.Signals(signum).name,
                 "releasing running tasks now" if again else "stopping")
        self._request_stop(hurry=again)

    def _is_handler_thread(self) -> bool:
        me = threading.current_thread()
        with self._cond:
            return me is self._loop_thread or any(j.thread is me for j in self._jobs)

    def _serve(self, until_idle: bool) -> Summary:
        restore = self._catch_signals()
        claimer = threading.Thread(target=self._claim_loop, args=(until_idle,), daemon=True,
                                   name=f"athena-worker-{self.agent_id}-claims")
        try:
            self._queue_call("requeue_stale", self.orch.queue.requeue_stale)
            claimer.start()
            self._supervise()
        finally:
            self._request_stop()
            if claimer.is_alive():
                claimer.join()
            self._close_loop()
            with self._cond:
                for _ in range(self._pool):  # an abandoned handler's thread ends after it
                    self._work.put(None)
            restore()
            atexit.unregister(self.stop)
            with self._cond:
                self._active = False
                self._draw()
        return self.summary

    def _catch_signals(self) -> Callable[[], None]:
        """Install the stop handlers when on the main thread; returns how to undo it."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        signals = [signal.SIGINT, signal.SIGTERM]
        before = {s: signal.signal(s, self._on_signal) for s in signals}

        def restore() -> None:
            for s, handler in before.items():
                signal.signal(s, signal.SIG_DFL if handler is None else handler)

        return restore

    # ------------------------------------------------------------------ claiming
    def _claim_loop(self, until_idle: bool) -> None:
        """Claim while there is room; an idle run asks to stop when nothing is left (and
        so does a claimer that fails, e.g. when no thread can be started)."""
        try:
            self._claim_while_running(until_idle)
        finally:
            with self._cond:
                self._claimer_busy = True
            self._request_stop()

    def _claim_while_running(self, until_idle: bool) -> None:
        idle_at: int | None = None  # an idle run found nothing while work ran: settled then
        while True:
            for job in self._take_finished(first_tries=True):
                self._settle(job, False)
            with self._cond:
                self._claimer_busy = False
                while self._nothing_to_claim(idle_at):
                    self._cond.wait()
                if self._stop_at is not None:
                    return
                if self._finished_jobs(first_tries=True):
                    continue
                free = self.concurrency - len(self._jobs)
                busy, settled = bool(self._jobs), self._settled
                self._claimer_busy = True
                self._tick.notify()  # outcomes that come in meanwhile: the supervisor's
            try:
                tasks = self._take_work(free, until_idle)
            except Exception as exc:  # noqa: BLE001 - the database may be back soon
                self._queue_error("claim", exc)
                self._pause(self.poll_seconds)
                continue
            with self._cond:
                if self._stop_at is None:
                    for task in tasks:
                        self._dispatch(task)
                    idle_at = settled if not tasks and until_idle else None
                    if idle_at is not None and not busy:
                        return
                    continue
            for task in tasks if not self._crashed else ():  # taken as the worker stopped
                self._release(task, "the worker stopped")
            return

    def _take_work(self, free: int, until_idle: bool) -> list[Task]:
        """Up to ``free`` tasks, started: assigned ones first when they are due a look,
        else claimed ones, then assigned ones if the claim left room. With nothing to do,
        waits up to ``poll_seconds`` for a write that may bring work (not in an idle run)."""
        queue = self.orch.queue
        seen = queue.wakeups.generation
        due = self.assigned_only or time.monotonic() >= self._look_at
        tasks = self._start_assigned(free) if due else []
        if not tasks and not self.assigned_only:
            tasks = queue.claim_tasks(self.agent_id, free, start=True,
                                      task_types=self.task_types)
            if len(tasks) < free and not due:
                try:  # whatever goes wrong, the claimed tasks are run
                    tasks += self._start_assigned(free - len(tasks))
                except Exception as exc:  # noqa: BLE001 - looked for again next time
                    self._queue_error("look for tasks assigned to", exc)
        if not tasks and not until_idle:
            queue.wakeups.wait(seen, min(self.poll_seconds, queue.wait_poll_seconds))
        return tasks

    def _start_assigned(self, n: int) -> list[Task]:
        """Start up to ``n`` of the tasks assigned to the agent that this worker has
        handlers for. One whose attempt is gone (requeued, cancelled) counts as lost; one
        another worker of the agent started first is skipped."""
        self._look_at = time.monotonic() + self.poll_seconds
        types = self.task_types
        started: list[Task] = []
        for task in _assigned(self.orch.queue, self.agent_id, self.poll_seconds):
            if len(started) == n:
                break
            if types is not None and task.task_type not in types:
                continue
            try:
                started.append(self.orch.queue.start_task(task.id, agent_id=self.agent_id,
                                                          attempt=task.attempt))
            except StaleAttemptError:
                self._count("lost")
            except InvalidTransitionError:
                pass
            except Exception as exc:  # noqa: BLE001 - still assigned: tried again later
                self._queue_error("start", exc, task)
        return started

    def _nothing_to_claim(self, idle_at: int | None) -> bool:
        """No room, or an idle run waits for running work to end (under the lock)."""
        if self._stop_at is not None or self._finished_jobs(first_tries=True):
            return False
        return len(self._jobs) >= self.concurrency or self._settled == idle_at

    def _finished_jobs(self, first_tries: bool) -> list[_Job]:
        """Jobs whose outcome is ready to be recorded (under the lock): first tries, or
        those the supervisor records (all of them while the claimer is busy; retries)."""
        now = time.monotonic()
        return [j for j in self._jobs if j.state == _FINISHED and j.settle_at <= now
                and (j.settle_at == 0 if first_tries else self._claimer_busy or j.settle_at)]

    def _take_finished(self, first_tries: bool) -> list[_Job]:
        with self._cond:
            jobs = self._finished_jobs(first_tries)
            for job in jobs:
                job.state = _SETTLING
            return jobs

    def _pause(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._stop_at is not None, seconds)

    def _dispatch(self, task: Task) -> None:
        """Start the handler of a claimed task (under the lock)."""
        handler = self._handlers.get(task.task_type, self._default)
        limit = handler.time_limit or self.time_limit
        now = time.monotonic()
        job = _Job(task, handler, None if limit is None else now + limit,
                   now + self.heartbeat_seconds)
        self._jobs.add(job)
        self._changed()
        if min(job.next_beat, job.deadline or job.next_beat) < self._tick_at:
            self._tick.notify()  # its first heartbeat or its deadline comes sooner
        if handler.is_async:
            import asyncio

            job.future = asyncio.run_coroutine_threadsafe(self._call_async(job),
                                                          self._event_loop())
        else:
            if self._idle:
                self._idle -= 1
            else:  # threads stay for the run: starting one per task costs ms on a busy box
                self._pool += 1
                threading.Thread(target=self._handler_thread, args=(self._work,), daemon=True,
                                 name=f"athena-worker-{self.agent_id}-{self._pool}").start()
            self._work.put(job)

    def _handler_thread(self, work: queue.SimpleQueue) -> None:
        while (job := work.get()) is not None:
            self._call(job)
            with self._cond:
                if work is self._work:  # else its run is over: the next get() ends it
                    self._idle += 1

    def _call(self, job: _Job) -> None:
        job.thread = threading.current_thread()
        started = time.perf_counter()
        try:
            value = job.handler.fn(job.task)
        except BaseException as exc:  # noqa: BLE001 - SystemExit from a handler included
            self._finished(job, None, exc, started)
        else:
            self._finished(job, value, None, started)

    async def _call_async(self, job: _Job) -> None:
        import asyncio

        started = time.perf_counter()
        try:
            value = await job.handler.fn(job.task)
        except asyncio.CancelledError:  # by us (job given up), or by the handler itself
            self._finished(job, None, asyncio.CancelledError("the handler was cancelled"),
                           started)
            raise
        except BaseException as exc:  # noqa: BLE001 - would otherwise stop the event loop
            self._finished(job, None, exc, started)
        else:
            self._finished(job, value, None, started)

    def _finished(self, job: _Job, value: Any, error: BaseException | None,
                  started: float) -> None:
        with self._cond:
            job.returned = True
            if job.state != _RUNNING:
                return  # given up on (time limit, stop, lost): its outcome is dropped
            job.state, job.value, job.error = _FINISHED, value, error
            job.duration_ms = round((time.perf_counter() - started) * 1000)
            self._cond.notify_all()
            if self._claimer_busy:
                self._tick.notify()

    def _event_loop(self) -> Any:
        """The worker's event loop for async handlers, started on first use."""
        if self._loop is None:
            import asyncio

            self._loop = asyncio.new_event_loop()
            self._loop_thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                                 name=f"athena-worker-{self.agent_id}-loop")
            self._loop_thread.start()
        return self._loop

    def _close_loop(self) -> None:
        """Cancel what is left in the event loop (at most a second to unwind), stop it."""
        loop, thread = self._loop, self._loop_thread
        if loop is None:
            return
        import asyncio

        async def cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=1.0)

        try:
            asyncio.run_coroutine_threadsafe(cancel_all(), loop).result(timeout=2.0)
        except TimeoutError:  # a handler blocks the loop (time.sleep in async def)
            log.warning("worker %s: an async handler blocks the event loop", self.agent_id)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=2.0)
        if not thread.is_alive():
            loop.close()
        self._loop = self._loop_thread = None

    # ------------------------------------------------------------------ supervising
    def _supervise(self) -> None:
        """Record outcomes, renew leases, enforce time limits and the grace period, and
        requeue stale tasks of dead agents now and then, until stopped with nothing held."""
        requeue_at = time.monotonic() + self.orch.queue.lease_seconds
        while True:
            with self._cond:
                now = time.monotonic()
                grace_over = self._stop_at is not None and (
                    self._hurry or now >= self._stop_at + self.grace_seconds)
                if self._stop_at is not None and not self._jobs:
                    return
                done = self._finished_jobs(first_tries=False)
                for job in done:
                    job.state = _SETTLING
                late = [j for j in self._jobs if j.state == _RUNNING
                        and j.deadline is not None and j.deadline <= now]
                held = [j for j in self._jobs if j.state == _RUNNING and grace_over
                        and j not in late]
                for job in late + held:
                    self._give_up(job)
                beat = [j for j in self._jobs if j.next_beat <= now
                        and j.state in (_RUNNING, _FINISHED)]
                requeue = self._stop_at is None and requeue_at <= now
                if not (done or late or held or beat or requeue):
                    self._redraw(now)
                    wake = [*(j.next_beat for j in self._jobs
                              if j.state in (_RUNNING, _FINISHED)),
                            *(j.deadline for j in self._jobs
                              if j.state == _RUNNING and j.deadline is not None),
                            *(j.settle_at for j in self._jobs if j.state == _FINISHED
                              and (self._claimer_busy or j.settle_at))]
                    if self._stop_at is None:
                        wake.append(requeue_at)
                    elif not self._hurry:
                        wake.append(self._stop_at + self.grace_seconds)
                    if self._dirty:
                        wake.append(self._drawn_at + REFRESH_SECONDS)
                    self._tick_at = min(wake, default=now + self.poll_seconds)
                    self._tick.wait(max(0.0, self._tick_at - now))
                    continue
            for job in done:
                self._settle(job, grace_over)
            for job in late:
                self._time_out(job)
            for job in held:
                self._hand_back(job)
            for job in beat:
                self._heartbeat(job)
            if requeue:
                self._queue_call("requeue_stale", self.orch.queue.requeue_stale)
                requeue_at = time.monotonic() + self.orch.queue.lease_seconds

    def _give_up(self, job: _Job) -> None:
        """Stop waiting for a running handler (under the lock): its outcome is dropped, an
        async one is cancelled, a thread runs on, counted as abandoned while it does."""
        job.state = _ABANDONED
        if job.future is not None:
            job.future.cancel()
        self._abandoned.add(job)

    def _done(self, job: _Job, outcome: str | None, error: str | None = None) -> None:
        """The job leaves the worker: count its outcome, wake the claimer."""
        with self._cond:
            self._jobs.discard(job)
            self._settled += 1
            if outcome is not None:
                setattr(self._summary, outcome, getattr(self._summary, outcome) + 1)
            if error is not None:
                self._summary.last_error = f"task {job.task.id}: {error.splitlines()[0]}"
            self._cond.notify_all()
            self._changed()

    def _settle(self, job: _Job, grace_over: bool) -> None:
        """Complete the task with the handler's result, or fail it with its exception."""
        task = job.task
        try:
            if job.error is not None:
                self._fail(job, _failure(job.error), not isinstance(job.error, DoNotRetry))
                return
            value, duration_ms = job.value, job.duration_ms
            if isinstance(value, Result):
                value, duration_ms = value.value, (
                    duration_ms if value.duration_ms is None else value.duration_ms)
            try:
                self.orch.queue.complete_task(task.id, _result_text(value),
                                              {"duration_ms": duration_ms},
                                              agent_id=self.agent_id, attempt=task.attempt)
            except ValidationError as exc:
                self._fail(job, f"the result cannot be stored: {exc}", False)
                return
            log.debug("worker %s: completed task %s", self.agent_id, task.id)
            self._done(job, "completed")
        except StaleAttemptError as exc:
            self._lost(job, exc)
        except Exception as exc:  # noqa: BLE001 - the database: try again, or leave it to the lease
            self._queue_error("record the outcome of", exc, task)
            if grace_over:
                self._done(job, None)
            else:
                with self._cond:
                    job.state, job.settle_at = _FINISHED, time.monotonic() + self.poll_seconds
                    self._tick.notify()

    def _fail(self, job: _Job, error: str, retry: bool) -> None:
        error = _storable(error)
        task = self.orch.queue.fail_task(job.task.id, error, should_retry=retry,
                                         agent_id=self.agent_id, attempt=job.task.attempt)
        log.info("worker %s: task %s %s: %s", self.agent_id, task.id,
                 "will be retried" if task.status is TaskStatus.PENDING else "failed",
                 error.splitlines()[0])
        self._done(job, "retried" if task.status is TaskStatus.PENDING else "failed", error)

    def _time_out(self, job: _Job) -> None:
        limit = job.handler.time_limit or self.time_limit
        error = (f"TimeLimitExceeded: the handler ran longer than {limit:g} s; the worker "
                 "failed this attempt and dropped whatever the handler returns later")
        if job.thread is not None and job.thread.ident is not None:
            frame = sys._current_frames().get(job.thread.ident)
            if frame is not None:
                error += "\nThe handler was at:\n" + "".join(traceback.format_stack(frame))
        try:
            self._fail(job, error, True)
            self._count("timed_out")
        except StaleAttemptError as exc:
            self._lost(job, exc)
        except Exception as exc:  # noqa: BLE001 - the lease brings the task back
            self._queue_error("fail", exc, job.task)
            self._done(job, None)

    def _hand_back(self, job: _Job) -> None:
        """The grace period is over and the handler still runs: release its task."""
        self._release(job.task, f"the worker stopped; the handler was still running after "
                                f"{self.grace_seconds:g} s of grace")
        self._done(job, None)

    def _release(self, task: Task, reason: str) -> None:
        try:
            self.orch.queue.release_task(task.id, agent_id=self.agent_id,
                                         attempt=task.attempt, reason=reason)
        except StaleAttemptError:
            self._count("lost")
        except Exception as exc:  # noqa: BLE001 - the lease brings the task back
            self._queue_error("release", exc, task)
        else:
            self._count("released")

    def _heartbeat(self, job: _Job) -> None:
        with self._cond:
            job.next_beat = time.monotonic() + self.heartbeat_seconds
        try:
            self.orch.queue.heartbeat(job.task.id, agent_id=self.agent_id,
                                      attempt=job.task.attempt)
        except StaleAttemptError as exc:
            with self._cond:
                if job not in self._jobs or job.state == _SETTLING:
                    return  # being recorded, or done: that call saw the same
                self._give_up(job)
            self._lost(job, exc)
        except Exception as exc:  # noqa: BLE001 - next beat may succeed
            self._queue_error("renew the lease of", exc, job.task)

    def _lost(self, job: _Job, exc: StaleAttemptError) -> None:
        log.warning("worker %s: lost task %s: %s", self.agent_id, job.task.id, exc)
        self._done(job, "lost")

    def _count(self, outcome: str) -> None:
        with self._cond:
            setattr(self._summary, outcome, getattr(self._summary, outcome) + 1)
            self._changed()

    def _changed(self) -> None:
        """The summary changed (under the lock): live widgets need a redraw, and a stopping
        supervisor may be done."""
        self._dirty = True
        if self._widgets or self._stop_at is not None:
            self._tick.notify()

    def _queue_call(self, what: str, call: Callable[[], Any]) -> None:
        try:
            call()
        except Exception as exc:  # noqa: BLE001 - counted and logged; the worker goes on
            self._queue_error(what, exc)

    def _queue_error(self, what: str, exc: Exception, task: Task | None = None) -> None:
        where = f" task {task.id}" if task is not None else ""
        text = f"could not {what}{where}: {type(exc).__name__}: {exc}"
        log.error("worker %s: %s", self.agent_id, text)
        with self._cond:
            self._summary.errors += 1
            self._summary.last_error = text
            self._changed()
        if not isinstance(exc, OrchestrationError):  # a bug, not the database: show it
            log.error("worker %s: unexpected error", self.agent_id, exc_info=exc)

    # ------------------------------------------------------------------ display
    def _repr_html_(self) -> str:
        from .display import badge, chips, esc

        s = self.summary
        state = badge("running", "#15803d") if self.is_running else badge("stopped", "#6b7280")
        types = self.task_types
        counts = " ".join(badge(f"{name.replace('_', ' ')} {getattr(s, name)}", colour,
                                faded=not getattr(s, name))
                          for name, colour in _COUNT_COLOURS)
        rows = [("handles", chips(types) if types is not None else "every task it can do"),
                ("concurrency", esc(self.concurrency)), ("tasks", counts)]
        if s.abandoned:
            rows.append(("abandoned", f"{s.abandoned} handler threads still running"))
        if s.last_error:
            rows.append(("last error",
                         f'<span style="color:#b91c1c">{esc(s.last_error[:300])}</span>'))
        body = "".join(f'<tr><th style="{_TH}">{esc(k)}</th><td>{val}</td></tr>'
                       for k, val in rows)
        return (f'<div class="athena-worker" style="{_BOX}"><b>Worker</b> '
                f"<code>{esc(self.agent_id)}</code> {state}<table>{body}</table></div>")

    def widget(self) -> Any:
        """An ipywidgets view of this worker that updates while it runs."""
        import ipywidgets

        view = ipywidgets.HTML(self._repr_html_())
        with self._cond:
            self._widgets.append(view)
        return view

    def _redraw(self, now: float) -> None:
        """Refresh live widgets (under the lock), at most every REFRESH_SECONDS."""
        if self._dirty and now >= self._drawn_at + REFRESH_SECONDS:
            self._draw()
            self._drawn_at = now

    def _draw(self) -> None:
        self._dirty = False
        if self._widgets:
            html = self._repr_html_()
            for view in self._widgets:
                view.value = html

    def __repr__(self) -> str:
        s = self.summary
        return (f"<Worker {self.agent_id!r} {'running' if self.is_running else 'stopped'}: "
                f"{s.completed} completed, {s.running} running, {s.failed} failed>")


_COUNT_COLOURS = [("running", "#7c3aed"), ("completed", "#15803d"), ("retried", "#b45309"),
                  ("failed", "#b91c1c"), ("timed_out", "#b91c1c"), ("lost", "#374151"),
                  ("released", "#2563eb"), ("errors", "#b91c1c")]
_BOX = ("font-family: system-ui, sans-serif; font-size: 13px; line-height: 1.35; "
        "border: 1px solid #d1d5db; border-radius: 6px; padding: 6px 10px; "
        "display: inline-block; max-width: 56em;")
_TH = ("text-align: left; padding: 1px 10px 1px 0; color: #6b7280; font-weight: normal; "
       "vertical-align: top; white-space: nowrap;")


class _Assignments:
    """The tasks assigned (not yet started) in a queue, read once per wake-up generation
    for all the workers of this process: every write that may bring work wakes every
    waiting worker, and on DuckDB a read each would cost a few ms times the number of
    workers. The generation is read before the tasks, so an assignment made after the read
    moves it and the next look reads again; a read older than the caller's ``max_age`` is
    made again too (a notification from another process may be lost)."""

    def __init__(self, queue: Any):
        self.queue = queue
        self.lock = threading.Lock()
        self.generation: int | None = None
        self.read_at = 0.0
        self.by_agent: dict[str, list[Task]] = {}

    def of(self, agent_id: str, max_age: float) -> list[Task]:
        with self.lock:
            generation, now = self.queue.wakeups.generation, time.monotonic()
            if generation != self.generation or now - self.read_at >= max_age:
                self.by_agent = {}
                for task in self.queue.query_tasks({"status": "assigned",
                                                    "limit": MAX_ASSIGNED}):
                    self.by_agent.setdefault(task.assigned_to, []).append(task)
                self.generation, self.read_at = generation, now
            return list(self.by_agent.get(agent_id, ()))


_boards: weakref.WeakKeyDictionary[Any, _Assignments] = weakref.WeakKeyDictionary()
_boards_lock = threading.Lock()


def _assigned(queue: Any, agent_id: str, max_age: float) -> list[Task]:
    """The tasks assigned to ``agent_id`` that had not started at most ``max_age`` seconds
    ago (or at the last wake-up), in queue order."""
    with _boards_lock:
        board = _boards.get(queue)
        if board is None:
            board = _boards[queue] = _Assignments(queue)
    return board.of(agent_id, max_age)


def _handler(fn: Callable, time_limit: float | None) -> _Handler:
    is_async = inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None))  # noqa: B004 - an object whose __call__ is async def
    return _Handler(fn, time_limit, is_async)


def _seconds(name: str, value: Any, *, optional: bool = False) -> float | None:
    """A duration in seconds: more than 0 and at most MAX_SECONDS (None if optional)."""
    if value is None and optional:
        return None
    seconds = v.number(name, value, high=MAX_SECONDS)
    if seconds == 0:
        raise ValidationError(f"{name} must be more than 0 seconds, not 0")
    return seconds


def _result_text(value: Any) -> str:
    """A string as it is, anything else as strict JSON (ValidationError if it is not)."""
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError) as exc:
        raise ValidationError(f"it is not JSON ({type(exc).__name__}: {exc})") from None


def _failure(exc: BaseException) -> str:
    """``Type: message`` on the first line, then the whole traceback."""
    summary = "".join(traceback.format_exception_only(exc)).strip()
    return f"{summary}\n\n{''.join(traceback.format_exception(exc)).rstrip()}"


def _storable(text: str) -> str:
    """Failure text both databases store: no NUL or lone surrogate, at most
    MAX_ERROR_CHARS (the start and the end of a longer one)."""
    text = text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > MAX_ERROR_CHARS:
        half = MAX_ERROR_CHARS // 2
        text = f"{text[:half]}\n[... {len(text) - 2 * half} characters left out ...]\n" \
               f"{text[-half:]}"
    return text


# ---------------------------------------------------------------------- command line
def load_handlers(path: str) -> Any:
    """The object ``module:attribute`` names (``attribute`` may be dotted), as ``rq`` and
    ``procrastinate`` take them; a ValidationError says which part does not resolve."""
    module_name, _, attribute = path.partition(":") if isinstance(path, str) else ("", "", "")
    if not module_name or not attribute:
        raise ValidationError(f"handlers must be given as module:attribute (e.g. "
                              f"my_tasks:HANDLERS), not {shown(path)}")
    try:
        value = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name + ".").startswith(exc.name + "."):
            raise  # the module was found, something it imports was not: show the traceback
        raise ValidationError(f"cannot import {module_name!r}: no module named {exc.name!r} "
                              "(looked in the current directory and sys.path)") from None
    for part in attribute.split("."):
        if not hasattr(value, part):
            raise ValidationError(f"module {module_name!r} has no attribute {attribute!r}")
        value = getattr(value, part)
    return value


def run_worker_cli(args: argparse.Namespace) -> int:
    """``athena-orch worker``: exit status 0 after a clean stop, 1 when the database
    cannot be opened, 2 for a bad command line or handlers path. Prints the summary as
    one JSON line on stdout."""
    import os

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like rq: handlers next to where you run it
    try:
        handlers = load_handlers(args.handlers)
    except ValidationError as exc:
        print(f"athena-orch worker: {exc}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - the module raised while importing: show where
        print(f"athena-orch worker: importing {args.handlers.partition(':')[0]!r} failed:\n"
              f"{traceback.format_exc()}", file=sys.stderr)
        return 2
    capabilities = None if args.capabilities is None else [
        c.strip() for c in args.capabilities.split(",") if c.strip()]
    import athena_orch

    try:
        orch = athena_orch.connect(args.db)
    except OrchestrationError as exc:
        print(f"athena-orch worker: {exc}", file=sys.stderr)
        return 1
    with orch:
        try:
            worker = Worker(orch, args.agent, handlers, capabilities=capabilities,
                            concurrency=args.concurrency, time_limit=args.time_limit,
                            grace_seconds=args.grace, assigned_only=args.assigned_only)
        except (ValidationError, AgentNotFoundError) as exc:
            print(f"athena-orch worker: {exc}", file=sys.stderr)
            return 2
        types = worker.task_types
        log.info("worker %s on %s: %s, concurrency %d; Ctrl-C or SIGTERM stops it",
                 worker.agent_id, orch.path,
                 "every task it can do" if types is None else "handles " + ", ".join(types),
                 worker.concurrency)
        try:
            summary = worker.run(until_idle=args.until_idle)
        except ValidationError as exc:
            print(f"athena-orch worker: {exc}", file=sys.stderr)
            return 2
    print(json.dumps(asdict(summary)), flush=True)
    return 0
