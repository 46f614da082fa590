"""``athena-orch demo`` (``python -m athena_orch demo``)."""

from __future__ import annotations

import sys
from typing import Any

from ..stores.postgres import shown_target
from ..workload import Workload, load_workload, synthetic_workload
from .report import format_summary, report_path
from .run import run_demo


def choose_workload(tasks: int | None, agents: int | None, seed: int) -> Workload:
    """data/ (the sample) unless a size is given, then a synthetic workload."""
    if tasks is None and agents is None:
        return load_workload()
    return synthetic_workload(tasks or 200, agents or 8, seed)


def run_demo_cli(args: Any) -> int:
    """``athena-orch demo``: args has ``db``, ``tasks``, ``agents``, ``seed``,
    ``real_time``. Exit status 0 when every task is final, 1 when the run gave up, 2 for a database it cannot open,
    130 when interrupted (run it again to resume)."""
    from .. import connect
    from ..exceptions import StorageError

    workload = choose_workload(args.tasks, args.agents, args.seed)
    db = str(args.db)
    print(
        f"athena-orch demo: {len(workload.agents)} simulated agents work through "
        f"{len(workload.tasks)} tasks ({workload.name} workload, seed {args.seed}) in "
        f"{shown_target(db)}, "
        + ("in real time (Worker threads)" if args.real_time else "on a simulated clock"),
        flush=True,
    )
    try:
        orch = connect(db)
    except StorageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        summary = run_demo(
            orch,
            workload.agent_records(),
            workload.task_records(),
            args.seed,
            real_time=args.real_time,
            report=None if db == ":memory:" else report_path(db),
            workload=workload.name,
        )
    finally:
        orch.close()
    print(format_summary(summary), flush=True)
    if summary["interrupted"]:
        print("interrupted: run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if summary["finished"] else 1
