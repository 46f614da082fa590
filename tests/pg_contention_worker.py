"""One hostile worker process on a PostgreSQL queue (not a test module).

    python tests/pg_contention_worker.py URL AGENT_ID SYNC_DIR BATCH SEED

Waits for ``SYNC_DIR/go`` (see tests/pg_claim_worker.py), then until no task is left
unfinished: runs ``requeue_stale`` (every worker does, racing the others), claims (one
task, or BATCH at once, started), sometimes stalls past its lease without a heartbeat,
and completes naming its attempts. A refusal of a stale attempt is the expected answer
for a worker that stalled; any other error is reported. Prints one JSON line:
{"agent_id", "completed": {task_id: attempt}, "stale": n, "requeued": n, "errors": [...]}.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import athena_orch
from athena_orch.exceptions import StaleAttemptError

LEASE_SECONDS = 0.25
DEADLINE = 150


def work(orch, agent_id: str, batch: int, rng: random.Random) -> dict:
    queue = orch.queue
    queue.lease_seconds = LEASE_SECONDS
    queue.retry_backoff_seconds = 0.01
    report: dict = {"agent_id": agent_id, "completed": {}, "stale": 0, "requeued": 0,
                    "errors": []}
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        try:
            report["requeued"] += len(queue.requeue_stale())
            tasks = (queue.claim_tasks(agent_id, batch, start=True) if batch
                     else [t for t in [queue.claim_task(agent_id)] if t])
            if not tasks:
                stats = queue.get_queue_statistics()
                if stats.pending_count + stats.assigned_count + stats.running_count == 0:
                    return report
                time.sleep(0.01)
                continue
            if not batch:
                queue.start_task(tasks[0].id, agent_id=agent_id, attempt=tasks[0].attempt)
            stall = LEASE_SECONDS * 2 if rng.random() < 0.15 else rng.uniform(0, 0.02)
            time.sleep(stall)
            if batch:
                queue.complete_tasks(
                    [{"task_id": t.id, "result": f"by {agent_id}", "attempt": t.attempt}
                     for t in tasks], agent_id=agent_id)
            else:
                queue.complete_task(tasks[0].id, f"by {agent_id}", {"duration_ms": 1},
                                    agent_id=agent_id, attempt=tasks[0].attempt)
            report["completed"].update({t.id: t.attempt for t in tasks})
        except StaleAttemptError:
            report["stale"] += 1  # our lease ran out and the task went on without us
        except Exception as exc:  # noqa: BLE001 - every other error is a finding
            report["errors"].append(f"{type(exc).__name__}: {exc}")
    report["errors"].append("deadline reached with tasks unfinished")
    return report


def main(url: str, agent_id: str, sync_dir: str, batch: int, seed: int) -> None:
    sync = Path(sync_dir)
    with athena_orch.connect(url) as orch:
        (sync / f"ready-{agent_id}").touch()
        while not (sync / "go").exists():
            time.sleep(0.01)
        report = work(orch, agent_id, batch, random.Random(seed))
    print(json.dumps(report))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
