"""A reusable checker of the queue's invariants, through the public API only.

``check_invariants(orch)`` reads ``queue.to_frame()``, ``queue.history_frame()``,
``queue.get_task_history()``, ``queue.dependency_graph()``, ``registry.to_frame()`` and
``queue.get_queue_statistics()`` and asserts that they describe one consistent queue:

- every task is in exactly one valid state (one row per id, a known status);
- an agent's load (registry) is the number of its assigned + running tasks (task table);
- assigned/running tasks have ``assigned_to``, a lease and completed dependencies;
  pending tasks have neither ``assigned_to`` nor a lease;
- completed tasks have every dependency completed;
- every blocked task has a failed or cancelled ancestor, and ``blocked_by`` names one;
  everything downstream of a failed, cancelled or blocked task is blocked or cancelled;
- ``0 <= retry_count <= max_retries``;
- the dependency graph is a DAG over all tasks whose edges are exactly each task's
  ``dependencies`` (dependency -> dependent), node statuses matching the frame;
- each task's history is a chain of legal transitions (DESIGN.md's state table) that
  starts with its creation and ends in its current state; retries in it = retry_count
  (a move back to pending is a retry unless it is a release, which uses none);
- the queue statistics equal the frame's counts.

It raises ``AssertionError`` listing every broken rule (not just the first), and returns
a small summary (counts by status) so callers can log it.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from typing import Any

import networkx as nx
import pandas as pd

from athena_orch.models import TaskStatus

STATES = frozenset(s.value for s in TaskStatus)
ACTIVE = frozenset({"assigned", "running"})
FINAL = frozenset({"completed", "failed", "blocked", "cancelled"})

# DESIGN.md "States and transitions": from -> the states a transition may lead to.
# ``None`` is creation: a task is created pending, or blocked when a dependency already
# failed, was cancelled or is blocked.
LEGAL = {
    None: frozenset({"pending", "blocked"}),
    "pending": frozenset({"assigned", "blocked", "cancelled"}),
    "assigned": frozenset({"running", "pending", "failed", "cancelled"}),
    "running": frozenset({"completed", "pending", "failed", "cancelled"}),
    "blocked": frozenset({"cancelled"}),
    "completed": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


def legal_path_exists(before: str, after: str) -> bool:
    """True if ``after`` can follow ``before`` by zero or more legal transitions."""
    seen, todo = {before}, [before]
    while todo:
        for nxt in LEGAL[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return after in seen


def _missing(value: Any) -> bool:
    if value is None or value is pd.NaT:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def check_chain(task_id: str, chain: list[tuple[Any, Any, Any]], status: str,
                retry_count: int | None = None) -> list[str]:
    """Problems with one task's history, given as (from_status, to_status, detail)."""
    problems = []
    if not chain:
        return [f"task {task_id}: has no history"]
    previous = None
    retries = 0
    for i, (before, after, detail) in enumerate(chain):
        before = None if _missing(before) else str(before)
        after = str(after)
        if before != previous:
            problems.append(f"task {task_id}: history step {i} starts from {before!r}, "
                            f"but the previous step ended in {previous!r}")
        if after not in LEGAL.get(before, ()):
            problems.append(f"task {task_id}: history step {i} {before!r} -> {after!r} "
                            "is not in the state table")
        if before in ACTIVE and after == "pending" and not str(detail).startswith("released"):
            retries += 1
        previous = after
    if previous != status:
        problems.append(f"task {task_id}: history ends in {previous!r} but the task is {status!r}")
    if retry_count is not None and retries != retry_count:
        problems.append(f"task {task_id}: history shows {retries} retries, retry_count is "
                        f"{retry_count}")
    return problems


def check_invariants(orch, *, history_calls: int | None = None,
                     rng: random.Random | None = None) -> dict[str, int]:
    """Assert every invariant of the module docstring on ``orch`` (an OrchestrationManager).

    ``history_calls`` bounds how many tasks also get their history read one by one through
    ``queue.get_task_history`` (None = all of them); every task's history is checked from
    ``queue.history_frame()`` in any case, and the two must agree.
    """
    queue, registry = orch.queue, orch.registry
    problems: list[str] = []
    frame = queue.to_frame()
    ids = list(frame["task_id"])

    # -- one row per task, one valid state each
    dupes = [t for t, n in Counter(ids).items() if n > 1]
    if dupes:
        problems.append(f"task ids appear more than once: {dupes}")
    rows = {r["task_id"]: r for r in frame.to_dict("records")}
    status = {t: str(r["status"]) for t, r in rows.items()}
    bad = {t: s for t, s in status.items() if s not in STATES}
    if bad:
        problems.append(f"tasks in unknown states: {bad}")

    # -- per-task field rules
    for tid, r in rows.items():
        s = status[tid]
        deps = list(r["dependencies"])
        unknown = [d for d in deps if d not in rows]
        if unknown:
            problems.append(f"task {tid}: dependencies name unknown tasks {unknown}")
        uncompleted = [d for d in deps if d in rows and status[d] != "completed"]
        if s in ACTIVE:
            if _missing(r["assigned_to"]):
                problems.append(f"task {tid}: {s} but has no assigned_to")
            if _missing(r["lease_until"]):
                problems.append(f"task {tid}: {s} but has no lease")
            if uncompleted:
                problems.append(f"task {tid}: {s} while dependencies {uncompleted} are not completed")
        if s == "pending":
            if not _missing(r["assigned_to"]):
                problems.append(f"task {tid}: pending but assigned_to={r['assigned_to']!r}")
            if not _missing(r["lease_until"]):
                problems.append(f"task {tid}: pending but holds a lease until {r['lease_until']}")
        if s == "completed" and uncompleted:
            problems.append(f"task {tid}: completed but dependencies {uncompleted} are not")
        retry_count, max_retries = int(r["retry_count"]), int(r["max_retries"])
        if not 0 <= retry_count <= max_retries:
            problems.append(f"task {tid}: retry_count {retry_count} outside [0, {max_retries}]")
        if "waiting_on" in r and not _missing(r["waiting_on"]) and int(r["waiting_on"]) != len(
                [d for d in deps if status.get(d) != "completed"]):
            problems.append(f"task {tid}: waiting_on={r['waiting_on']} but "
                            f"{len(uncompleted)} dependencies are not completed")

    # -- the dependency graph: a DAG whose edges are exactly the tasks' dependencies
    graph = queue.dependency_graph()
    if not nx.is_directed_acyclic_graph(graph):
        problems.append(f"dependency graph has a cycle: {nx.find_cycle(graph)}")
    expected_edges = {(d, tid) for tid, r in rows.items() for d in r["dependencies"]}
    edges = set(graph.edges())
    if edges != expected_edges:
        problems.append(f"dependency graph edges differ from the tasks' dependencies: "
                        f"extra {sorted(edges - expected_edges)[:5]}, "
                        f"missing {sorted(expected_edges - edges)[:5]}")
    if set(graph.nodes()) != set(rows):
        problems.append(f"dependency graph nodes differ from the tasks: extra "
                        f"{sorted(set(graph.nodes()) - set(rows))[:5]}, missing "
                        f"{sorted(set(rows) - set(graph.nodes()))[:5]}")
    for tid, data in graph.nodes(data=True):
        if tid in status and "status" in data and str(data["status"]) != status[tid]:
            problems.append(f"dependency graph says {tid} is {data['status']}, "
                            f"the task table says {status[tid]}")

    # -- blocked tasks: blocked_by is a failed or cancelled ancestor
    for tid, r in rows.items():
        if status[tid] != "blocked":
            continue
        root = r["blocked_by"]
        if _missing(root):
            problems.append(f"task {tid}: blocked but blocked_by is empty")
            continue
        ancestors = nx.ancestors(graph, tid) if tid in graph else set()
        if root not in ancestors:
            problems.append(f"task {tid}: blocked_by {root!r} is not one of its ancestors")
        if status.get(root) not in ("failed", "cancelled"):
            problems.append(f"task {tid}: blocked_by {root!r} is {status.get(root)!r}, "
                            "not failed or cancelled")
        if not any(status.get(a) in ("failed", "cancelled") for a in ancestors):
            problems.append(f"task {tid}: blocked without a failed or cancelled ancestor")

    # -- nothing downstream of a failed, cancelled or blocked task can still run or be done:
    #    it is blocked (or was cancelled itself)
    for tid, s in status.items():
        if s in ("failed", "cancelled", "blocked") and tid in graph:
            alive = sorted(d for d in nx.descendants(graph, tid)
                           if status.get(d) not in ("blocked", "cancelled"))
            if alive:
                problems.append(f"task {tid} is {s} but tasks downstream of it are not "
                                f"blocked: {[(d, status.get(d)) for d in alive[:5]]}")

    # -- agents: load is read from the task table and never drifts
    held = Counter(r["assigned_to"] for tid, r in rows.items() if status[tid] in ACTIVE)
    agents = registry.to_frame()
    for a in agents.to_dict("records"):
        if int(a["current_load"]) != held.get(a["agent_id"], 0):
            problems.append(f"agent {a['agent_id']}: registry load {a['current_load']} but "
                            f"{held.get(a['agent_id'], 0)} assigned/running tasks")

    # -- statistics equal the frame's counts
    counts = Counter(status.values())
    stats = queue.get_queue_statistics()
    by_status = {s.value: getattr(stats, f"{s.value}_count") for s in TaskStatus}
    want = {s: counts.get(s, 0) for s in STATES}
    if by_status != want:
        problems.append(f"queue statistics {by_status} differ from the task table {want}")
    if stats.total_count != len(rows):
        problems.append(f"queue statistics total {stats.total_count} != {len(rows)} tasks")

    # -- histories: legal chains ending in the current state
    history = queue.history_frame()
    chains: dict[str, list[tuple[Any, Any, Any]]] = defaultdict(list)
    last_agent: dict[str, Any] = {}
    if len(history):
        for h in history.to_dict("records"):
            chains[h["task_id"]].append((h["from_status"], h["to_status"], h["detail"]))
            if str(h["to_status"]) == "assigned":
                last_agent[h["task_id"]] = h.get("agent_id")
    strangers = sorted(set(chains) - set(rows))
    if strangers:
        problems.append(f"history names tasks that do not exist: {strangers[:5]}")
    for tid, r in rows.items():
        problems += check_chain(tid, chains.get(tid, []), status[tid], int(r["retry_count"]))
        if status[tid] in ACTIVE and last_agent.get(tid) != r["assigned_to"]:
            problems.append(f"task {tid}: last assigned to {last_agent.get(tid)!r} in its "
                            f"history but assigned_to is {r['assigned_to']!r}")
    sample = ids if history_calls is None or history_calls >= len(ids) else (
        rng or random).sample(ids, history_calls)
    for tid in sample:
        one = [(h["from_status"], h["to_status"]) for h in queue.get_task_history(tid)]
        norm = [(None if _missing(b) else str(b), str(a)) for b, a in one]
        frame_chain = [(None if _missing(b) else str(b), str(a)) for b, a, _ in chains.get(tid, [])]
        if norm != frame_chain:
            problems.append(f"task {tid}: get_task_history {norm} differs from "
                            f"history_frame {frame_chain}")

    if problems:
        raise AssertionError(f"{len(problems)} invariant(s) broken:\n  " + "\n  ".join(problems))
    return dict(counts)
