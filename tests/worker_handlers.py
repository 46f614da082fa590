"""Handlers that tests/test_worker_cli.py runs through ``athena-orch worker`` (not a test
module; the CLI imports it as ``worker_handlers:HANDLERS`` from this directory).

A task's content is JSON: ``{"sleep": seconds}``. Each handler call appends a line to the
file named by $WORKER_JOURNAL when it starts and when it ends (one write each, so a line
is whole even if the process is killed):

    {"event": "start" | "end", "task": id, "attempt": n, "pid": pid}

With $WORKER_FAST set, handlers do not sleep (a second worker that finishes the work).
"""

from __future__ import annotations

import json
import os
import time

NOT_HANDLERS = 42
EMPTY: dict = {}


def _note(event: str, task) -> None:
    line = json.dumps({"event": event, "task": task.id, "attempt": task.attempt,
                       "pid": os.getpid()}) + "\n"
    fd = os.open(os.environ["WORKER_JOURNAL"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def work(task) -> dict:
    _note("start", task)
    if not os.environ.get("WORKER_FAST"):
        time.sleep(json.loads(task.content).get("sleep", 0))
    _note("end", task)
    return {"done_by": os.getpid()}


HANDLERS = {"work": work}
