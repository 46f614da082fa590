"""The main job: simulated agents work a task graph through the queue and the router.

``athena-orch demo`` (``python -m athena_orch demo``) loads the sample team and task
graph from ``data/`` (or a synthetic workload with ``--tasks/--agents``), registers the
agents, creates the tasks in one batch and runs until every task is completed, failed,
blocked or cancelled. Then it prints a summary and writes ``<db stem>_report.html``
next to the database.

How the simulation works (one process; ``simulation``):

- Each agent is an :class:`athena_orch.Worker` whose handler sleeps the task's
  ``estimated_duration_ms`` times the agent's speed factor, scaled down by ``speedup``, and
  fails with a chance that grows with the task's length (``failure_rate`` is the chance
  for a 45-minute task): most failures raise an exception the queue retries after its
  back-off, a few raise ``DoNotRetry``. The workers claim, start, renew leases, complete,
  fail, and fence every call with their attempt; they run ``requeue_stale`` too.
- *pull* agents' workers claim their own work; *push* agents' workers are
  ``assigned_only``: a dispatcher routes ready tasks to them (``router.route_batch``, and
  ``router.decide`` to send a retried task to someone other than the agent that failed
  it) and hands them over with ``queue.assign_task``, which wakes the worker. A ready task
  that nobody on the team can do is logged with ``router.decide`` and cancelled, which
  blocks the work downstream of it.
- Once during the run (queues of 100 tasks or more) one busy agent "crashes": its worker
  stops without a word (``stop(release=False)``); a new worker takes its place once its
  leases have run out, and ``requeue_stale`` hands the tasks back.

The demo assumes it is the only one working its database, and drains every task in it.
Re-running on the same file resumes: tasks are created with idempotency keys (nothing is
duplicated), agents are re-registered (their figures kept), and tasks a killed run left
assigned or running are failed back to pending (one retry used) before work starts; an
interrupted run (Ctrl-C) hands its running tasks back without using a retry.
"""

from .cli import choose_workload, run_demo_cli
from .report import format_summary, report_path, summarize, write_report
from .simulation import DemoSettings, run_demo

__all__ = [
    "DemoSettings",
    "run_demo",
    "run_demo_cli",
    "format_summary",
    "summarize",
    "write_report",
    "report_path",
    "choose_workload",
]
