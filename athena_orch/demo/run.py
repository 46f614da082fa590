"""One demo run: register the team, create the tasks, hand back what a killed run left,
work the queue on the chosen clock, summarize and report."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..exceptions import ValidationError
from .dispatch import RunFacts
from .realtime import RealTimeSettings, run_real_time
from .report import RunStart, summarize, write_report
from .simulation import DemoSettings, SimulatedClock, Simulation, start_time
from .team import SimulatedAgent, as_records, register_team


def run_demo(
    orch: Any,
    agents: Any,
    tasks: Any,
    seed: int = 7,
    *,
    real_time: bool = False,
    settings: DemoSettings | RealTimeSettings | None = None,
    progress: bool = True,
    report: str | Path | None = None,
    workload: str = "custom",
) -> dict[str, Any]:
    """Run the team on ``orch`` until every task in its queue is final.

    ``agents``: records (or a DataFrame) with agent_id, capabilities, max_concurrent_tasks,
    speed_factor, failure_rate, mode. ``tasks``: records for ``queue.create_tasks`` (use
    idempotency keys to make re-runs resume; see ``Workload.task_records``). By default a
    simulated clock (the same seed on a fresh database gives the same outcome;
    ``DemoSettings``); ``real_time=True`` runs Worker threads on the real clock
    (``RealTimeSettings``). ``report``: where to write the HTML report (None: none).
    Returns the summary dict (see :func:`~athena_orch.demo.format_summary`).
    """
    settings = settings or (RealTimeSettings() if real_time else DemoSettings())
    wanted = RealTimeSettings if real_time else DemoSettings
    if not isinstance(settings, wanted):
        raise ValidationError(f"real_time={real_time} takes {wanted.__name__} settings, not "
                              f"{type(settings).__name__}")
    records = as_records(agents)
    team = {str(r["agent_id"]): SimulatedAgent(r, seed, settings.fatal_share) for r in records}
    queue = orch.queue
    saved = (queue.lease_seconds, queue.retry_backoff_seconds,
             queue.retry_backoff_max_seconds, queue.clock)
    queue.lease_seconds = settings.lease_seconds
    queue.retry_backoff_seconds = settings.retry_backoff_seconds
    queue.retry_backoff_max_seconds = settings.retry_backoff_max_seconds
    clock = None if real_time else SimulatedClock(start_time(orch))
    if clock is not None:
        queue.clock = clock
    since = RunStart.of(orch)
    facts = RunFacts()
    started = time.monotonic()
    try:
        register_team(orch, records)
        before = queue.get_queue_statistics().total_count
        task_records = as_records(tasks)
        ids = queue.create_tasks(task_records) if task_records else []
        created = queue.get_queue_statistics().total_count - before
        orphans = _requeue_orphans(queue)
        if clock is None:
            finished, interrupted = run_real_time(orch, team, settings, facts, seed, progress)
        else:
            finished, interrupted = Simulation(orch, team, settings, facts, clock,
                                               seed).run(progress)
    finally:
        (queue.lease_seconds, queue.retry_backoff_seconds,
         queue.retry_backoff_max_seconds, queue.clock) = saved
    wall = time.monotonic() - started
    elapsed = wall if clock is None else clock.ms / 1000
    summary = summarize(orch, facts, since, elapsed, "real" if clock is None else "simulated")
    summary.update({
        "workload": workload,
        "seed": seed,
        "wall_seconds": round(wall, 2),
        "finished": finished,
        "interrupted": interrupted,
        "tasks_in_workload": len(ids),
        "tasks_created": created,
        "tasks_reused": len(ids) - created,
        "orphans_requeued": orphans,
        "database": getattr(orch, "path", None),
    })
    if report is not None:
        summary["report"] = str(write_report(orch, summary, report))
    return summary


def _requeue_orphans(queue: Any) -> int:
    """Tasks an earlier (killed) run left assigned or running go back to pending."""
    frame = queue.to_frame(status=["assigned", "running"])
    for task_id in frame["task_id"]:
        queue.fail_task(task_id, "orphaned: the run holding it stopped (resumed)",
                        should_retry=True)
    return len(frame)
