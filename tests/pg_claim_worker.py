"""One worker process claiming straight from a PostgreSQL queue (not a test module).

    python tests/pg_claim_worker.py URL AGENT_ID SYNC_DIR BATCH

Writes ``SYNC_DIR/ready-AGENT_ID`` once connected and waits for ``SYNC_DIR/go``, so every
worker starts at the same moment (the protocol of tests/mcp_load_worker.py). Then, until no
pending task is left: with BATCH 0, claim_task -> start_task -> complete_task one task at
a time; with BATCH n, claim_tasks(n, start=True) -> complete_tasks. Prints one JSON line:
{"agent_id", "completed": [ids], "cycles", "elapsed"}.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import athena_orch

SYNC_WAIT = 60


def work(orch: athena_orch.OrchestrationManager, agent_id: str, batch: int) -> list[str]:
    done: list[str] = []
    queue = orch.queue
    while True:
        if batch:
            tasks = queue.claim_tasks(agent_id, batch, start=True)
            if tasks:
                queue.complete_tasks([{"task_id": t.id, "result": f"done by {agent_id}",
                                       "attempt": t.attempt} for t in tasks], agent_id=agent_id)
        else:
            task = queue.claim_task(agent_id)
            tasks = [task] if task else []
            if task:
                queue.start_task(task.id, agent_id=agent_id, attempt=task.attempt)
                queue.complete_task(task.id, f"done by {agent_id}", {"duration_ms": 1},
                                    agent_id=agent_id, attempt=task.attempt)
        if tasks:
            done += [t.id for t in tasks]
        elif queue.get_queue_statistics().pending_count == 0:
            return done
        else:
            time.sleep(0.01)  # what is left waits on someone else


def main(url: str, agent_id: str, sync_dir: str, batch: int) -> None:
    sync = Path(sync_dir)
    with athena_orch.connect(url) as orch:
        (sync / f"ready-{agent_id}").touch()
        deadline = time.monotonic() + SYNC_WAIT
        while not (sync / "go").exists():
            if time.monotonic() > deadline:
                raise SystemExit("no go signal")
            time.sleep(0.01)
        started = time.monotonic()
        done = work(orch, agent_id, batch)
        elapsed = time.monotonic() - started
    print(json.dumps({"agent_id": agent_id, "completed": done, "cycles": len(done),
                      "elapsed": elapsed}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
