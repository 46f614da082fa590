"""A worker that the crash-recovery test runs as a subprocess and kills with SIGKILL.

    python tests/crash_worker.py DB_PATH JOURNAL_PATH SEED [MAX_SECONDS]

It opens (or creates) the file database, registers its agents, creates tasks with
dependencies, then loops over claim / start / complete / fail / cancel / create /
heartbeat operations at random. After every operation that *returned*, it appends one
JSON line to the journal and flushes + fsyncs it, so every journaled line describes an
effect that the library reported as done:

    {"op": "complete", "task": "<id>", "status": "completed", "hist": 4,
     "retry_count": 0, "pid": 123, "n": 17}

``status`` is the task's state right after the operation, ``hist`` the length of its
history then (so the test can check that exactly that transition is in the file), and
``retry_count`` the retries it had used. The worker runs until killed, or gives up after
MAX_SECONDS (default 30) so an orphan never lingers.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

import athena_orch
from athena_orch.models import TaskStatus

LEASE_SECONDS = 3.0
AGENTS = {"w0": ["py"], "w1": ["py", "sql"], "w2": ["sql"]}
CAPABILITIES = ["py", "sql"]
PRIORITIES = ["low", "medium", "high"]


class Journal:
    def __init__(self, path: str):
        self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - lives until killed
        self.n = 0

    def write(self, **entry) -> None:
        self.n += 1
        entry.update(pid=os.getpid(), n=self.n)
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()
        os.fsync(self.file.fileno())


def main(argv: list[str]) -> int:
    db_path, journal_path, seed = argv[1], argv[2], int(argv[3])
    max_seconds = float(argv[4]) if len(argv) > 4 else 30.0
    rng = random.Random(seed)
    journal = Journal(journal_path)
    orch = athena_orch.connect(db_path, lease_seconds=LEASE_SECONDS,
                               retry_backoff_seconds=0.05, retry_backoff_max_seconds=0.5)
    q, reg = orch.queue, orch.registry

    def record(op: str, task_id: str) -> None:
        task = q.get_task_status(task_id)
        journal.write(op=op, task=task_id, status=task.status.value,
                      hist=len(q.get_task_history(task_id)), retry_count=task.retry_count)

    for agent, caps in AGENTS.items():
        reg.register_agent(agent, caps, {"max_concurrent_tasks": 3})
        journal.write(op="register", agent=agent)

    frame = q.to_frame()
    known = list(frame["task_id"])
    # tasks this worker holds: (agent, task id); a restarted worker holds nothing, since the
    # test requeued what its predecessor held, but pick up anything still ours anyway
    held = [(a, t.id) for a in AGENTS for t in q.query_tasks({"agent_id": a, "status": [
        "assigned", "running"]})]

    def create_one() -> None:
        idempotent = rng.random() < 0.2
        if idempotent:  # the same key always means the same task: its fields come from it
            key = f"idem-{rng.randrange(30)}"
            same = random.Random(key)
            kwargs = {"priority": same.choice(PRIORITIES),
                      "requirements": same.sample(CAPABILITIES, k=same.choice([0, 1, 1, 2])),
                      "max_retries": same.choice([0, 1, 3])}
            tid = q.create_task(f"idempotent {key}", "idem", idempotency_key=key, **kwargs)
        else:
            deps = rng.sample(known, k=min(len(known), rng.choice([0, 0, 1, 2])))
            tid = q.create_task(
                f"task {seed}/{journal.n}", "work", priority=rng.choice(PRIORITIES),
                requirements=rng.sample(CAPABILITIES, k=rng.choice([0, 1, 1, 2])),
                dependencies=deps, max_retries=rng.choice([0, 1, 3]))
        if tid not in known:
            known.append(tid)
        record("create", tid)

    def create_batch() -> None:
        n = rng.randint(2, 4)
        base = rng.sample(known, k=min(len(known), 1))
        records = [{"key": "k0", "content": f"batch {seed}/{journal.n}/0", "task_type": "batch",
                    "dependencies": base, "requirements": rng.sample(CAPABILITIES, k=1)}]
        for i in range(1, n):
            records.append({"key": f"k{i}", "content": f"batch {seed}/{journal.n}/{i}",
                            "task_type": "batch", "dependencies": [f"k{rng.randrange(i)}"],
                            "priority": rng.choice(PRIORITIES)})
        ids = q.create_tasks(records)
        known.extend(ids)
        for tid in ids:
            record("create_tasks", tid)

    for _ in range(5):
        create_one()
    create_batch()

    deadline = time.monotonic() + max_seconds
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.12 or (not held and roll < 0.3):
            create_batch() if rng.random() < 0.3 else create_one()
        elif roll < 0.45:
            agent = rng.choice(list(AGENTS))
            task = q.claim_task(agent)
            if task is not None:
                held.append((agent, task.id))
                record("claim", task.id)
        elif not held:
            continue
        elif roll < 0.9:
            agent, tid = rng.choice(held)
            status = q.get_task_status(tid).status
            if status is TaskStatus.ASSIGNED:
                q.start_task(tid)
                record("start", tid)
            elif rng.random() < 0.75:
                q.complete_task(tid, f"result of {tid} by {agent}",
                                {"duration_ms": rng.randrange(1, 5000)})
                held.remove((agent, tid))
                record("complete", tid)
            else:
                q.fail_task(tid, f"{agent} failed", should_retry=rng.random() < 0.8)
                held.remove((agent, tid))
                record("fail", tid)
        elif roll < 0.95:
            pending = q.poll_tasks(status="pending", limit=50)
            if pending:
                tid = rng.choice(pending).id
                q.cancel_task(tid, "changed my mind")
                record("cancel", tid)
        else:
            renewed = q.heartbeat(agent_id=rng.choice(list(AGENTS)))
            for tid in renewed:
                record("heartbeat", tid)
    orch.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
