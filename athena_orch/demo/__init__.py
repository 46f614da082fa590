"""The main job: simulated agents work a task graph through the queue and the router.

``athena-orch demo`` (``python -m athena_orch demo``) loads the sample team and task
graph from ``data/`` (or a synthetic workload with ``--tasks/--agents``), registers the
agents, creates the tasks in one batch and runs until every task is completed, failed,
blocked or cancelled. Then it prints a summary and writes ``<db stem>_report.html``
next to the database.

The parts:

- ``team``: a simulated agent's attempts: the task's estimate times its speed factor,
  failing with a chance that grows with the length of the work (``failure_rate`` is the
  chance for a 45-minute task), for good in a tenth of the failures; one seeded random
  stream per agent.
- ``dispatch``: *pull* agents claim their own work; *push* agents get what a dispatcher
  routes to them (``router.route_batch``, and ``router.decide`` to send a retried task to
  someone other than the agent that failed it) with ``queue.assign_task``. A ready task
  nobody on the team can do is logged with ``router.decide`` and cancelled, which blocks
  the work downstream of it.
- ``simulation`` (the default): a discrete-event simulation on a simulated clock (the
  queue's ``clock``), so the same seed gives the same outcome on a fresh database, and a
  day of work takes seconds.
- ``realtime`` (``--real-time``): the same team as real :class:`athena_orch.Worker`
  threads whose handlers sleep the scaled-down work; thread timing varies the outcome.
- In both, once during the run (queues of 100 tasks or more) the busiest agent "crashes":
  it stops without a word, its leases run out, and when it comes back ``requeue_stale``
  hands its tasks back (a retry used).
- ``report``: the summary (text) and the HTML report, with one vocabulary.

The demo assumes it is the only one working its database, and drains every task in it.
Re-running on the same file resumes: tasks are created with idempotency keys (nothing is
duplicated), agents are re-registered (their figures kept), and tasks a killed run left
assigned or running are failed back to pending (one retry used) before work starts; an
interrupted run (Ctrl-C) hands its running tasks back without using a retry.
"""

from .cli import choose_workload, run_demo_cli
from .realtime import RealTimeSettings
from .report import COLUMNS, FIGURES, format_summary, report_path, summarize, write_report
from .run import run_demo
from .simulation import DemoSettings

__all__ = [
    "DemoSettings",
    "RealTimeSettings",
    "run_demo",
    "run_demo_cli",
    "format_summary",
    "summarize",
    "write_report",
    "report_path",
    "choose_workload",
    "FIGURES",
    "COLUMNS",
]
