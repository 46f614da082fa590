"""What a demo run did: the summary (from the database, plus the run's own facts), as text
and as an HTML page with plots."""

from __future__ import annotations

import base64
import html
import io
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd

from ..display import short_text
from ..stores.postgres import is_postgres_url

if TYPE_CHECKING:  # pragma: no cover
    from .dispatch import RunFacts

FINAL = ("completed", "failed", "blocked", "cancelled")

#: The run's figures, each defined once: the text summary and the HTML report both use
#: these names and say what they mean. An attempt is one hand-out of a task to an agent.
FIGURES = {
    "workload": "the team and task graph: sample (data/) or synthetic",
    "seed": "the random seed of the agents' draws, the crash and the pull agents' order",
    "tasks": "tasks in the database",
    "clock": "simulated: a discrete-event run on a simulated clock, the same seed gives the "
             "same outcome; real: Worker threads on the real clock",
    "elapsed_seconds": "how long the work took on the run's clock",
    "wall_seconds": "how long the run took in real time",
    "routing_decisions": "router decisions logged this run",
    "routed": "tasks the dispatcher assigned to push agents this run",
    "claimed": "tasks pull agents claimed this run",
    "failed_attempts": "attempts this run that ended without success: retries + failed_for_good",
    "retries": "failed attempts that put their task back to pending for another try "
               "(one of its max_retries used)",
    "failed_for_good": "failed attempts that failed their task (no retry left, or one "
                       "could not help); the tasks downstream are blocked",
    "lease_expiries": "failed attempts whose lease ran out (a crashed agent's), handed "
                      "back by requeue_stale; counted in retries or failed_for_good",
    "retries_rerouted": "retries the dispatcher sent to an agent other than the one that failed",
    "figures_match": "every agent's completed and failed figures agree with the task table "
                     "and history",
}
#: The per-agent table's columns (the same in the text summary and the HTML report).
COLUMNS = {
    "agent_id": "the agent",
    "completed": "tasks it completed this run",
    "failed_attempts": "its failed attempts this run (retries and failed for good)",
    "leases_expired": "its attempts this run whose lease ran out",
    "claimed": "tasks it claimed this run (pull agents)",
    "routed": "tasks the dispatcher assigned to it this run (push agents)",
    "per_hour": "tasks it completed per hour of the run's clock",
    "success_rate": "its record on this database (all runs): completed / (completed + failed)",
    "avg_minutes": "mean minutes of its completed tasks, all runs (simulated work time)",
}


def _by_agent(events: pd.DataFrame) -> pd.Series:
    return events.groupby("agent_id").size()


def task_ref(tasks: pd.DataFrame, task_id: str) -> dict[str, Any]:
    """A task as the summary names it: its name (None without one) and id."""
    names = tasks.set_index("task_id")["name"]
    name = names.get(task_id)
    return {"name": None if pd.isna(name) else str(name), "task_id": str(task_id)}


def label(ref: dict[str, Any]) -> str:
    """A task for people: its name and the distinctive tail of its id."""
    short = short_text(ref["task_id"])
    return f"{ref['name']} ({short})" if ref["name"] else short


@dataclass(frozen=True)
class RunStart:
    """Where this run's rows begin: history events and routing decisions from these ids
    on are this run's (ids, not times: a simulated clock does not follow the real one)."""

    event_id: int
    decision_id: int

    @classmethod
    def of(cls, orch: Any) -> RunStart:
        history, decisions = orch.queue.history_frame(), orch.router.decisions()
        return cls(int(history["event_id"].max()) + 1 if len(history) else 0,
                   int(decisions["decision_id"].max()) + 1 if len(decisions) else 0)


def summarize(orch: Any, facts: RunFacts, since: RunStart, elapsed: float, clock: str
              ) -> dict[str, Any]:
    """This run's figures from the task history and routing log (rows from ``since``),
    the agents' records from the registry, and the run's facts (dispatcher, crash).
    ``elapsed``: seconds on the run's ``clock`` ("simulated" or "real")."""
    queue, registry, router = orch.queue, orch.registry, orch.router
    by_state = queue.get_queue_statistics().by_status()
    tasks = queue.to_frame()
    history = queue.history_frame()
    decisions = router.decisions()
    run_decisions = decisions[decisions["decision_id"] >= since.decision_id]

    agents = registry.to_frame().set_index("agent_id")
    done_by = tasks[tasks["status"] == "completed"].groupby("assigned_to").size()
    released = history["detail"].fillna("").str.startswith("released")
    ends = history[history["from_status"].isin(["assigned", "running"])
                   & history["to_status"].isin(["pending", "failed"]) & ~released]
    figures_match = bool(
        (agents["total_completed"] == done_by.reindex(agents.index, fill_value=0)).all()
        and (agents["total_failed"] == _by_agent(ends).reindex(agents.index, fill_value=0)).all()
    )
    run = history[history["event_id"] >= since.event_id]
    handouts = run[run["to_status"] == "assigned"]
    failed = ends[ends["event_id"] >= since.event_id]
    expired = failed[failed["detail"].str.contains("lease expired", na=False)]
    per_agent = {
        "completed": _by_agent(run[run["to_status"] == "completed"]),
        "failed_attempts": _by_agent(failed),
        "leases_expired": _by_agent(expired),
        "claimed": _by_agent(handouts[handouts["detail"] == "claimed"]),
        "routed": _by_agent(handouts[handouts["detail"] == "assigned"]),
    }
    table = pd.DataFrame(per_agent, index=agents.index).fillna(0).astype("int64")
    table["per_hour"] = (table["completed"] * 3600 / max(elapsed, 1e-9)).round(2)
    table["success_rate"] = agents["success_rate"].round(3)
    table["avg_minutes"] = (agents["avg_completion_ms"] / 60_000).round(1)
    table = table.rename_axis("agent_id").reset_index()[list(COLUMNS)]

    blocked_roots = tasks.loc[tasks["status"] == "blocked", "blocked_by"].value_counts()
    return {
        "tasks": int(sum(by_state.values())),
        "by_state": {s: int(n) for s, n in by_state.items()},
        "clock": clock,
        "elapsed_seconds": round(elapsed, 2),
        "agents": table,
        "figures_match": figures_match,
        "routing_decisions": int(len(run_decisions)),
        "routing_by_source": {
            str(k): int(v) for k, v in run_decisions["source"].value_counts().sort_index().items()
        },
        "routed": int(table["routed"].sum()),
        "claimed": int(table["claimed"].sum()),
        "claimed_first": facts.claimed_first,
        "failed_attempts": int(len(failed)),
        "retries": int((failed["to_status"] == "pending").sum()),
        "failed_for_good": int((failed["to_status"] == "failed").sum()),
        "lease_expiries": int(len(expired)),
        "retries_rerouted": facts.retries_rerouted,
        "failed_tasks": [task_ref(tasks, t)
                         for t in tasks.loc[tasks["status"] == "failed", "task_id"]],
        "unroutable_cancelled": [task_ref(tasks, t) for t in facts.unroutable],
        "blocked_by_root": [{**task_ref(tasks, t), "blocked": int(n)}
                            for t, n in sorted(blocked_roots.items(),
                                               key=lambda kv: (-kv[1], kv[0]))],
        "crashed_agents": list(facts.crashes),
        "warnings": list(facts.warnings),
    }


def _duration(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def _time_line(s: dict[str, Any]) -> str:
    if s["clock"] == "simulated":
        line = (f"{_duration(s['elapsed_seconds'])} simulated (clock simulated: the same seed "
                f"gives the same outcome)")
        if "wall_seconds" in s:
            line += f", in {s['wall_seconds']:.1f} s real time"
        return line
    return f"{_duration(s['elapsed_seconds'])} real time (clock real: Worker threads)"


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text (what ``athena-orch demo`` prints); the figures' and columns'
    names are those of the HTML report, and both say what they mean."""
    s = summary
    sources = ", ".join(f"{k} {v}" for k, v in s["routing_by_source"].items())
    lines = [
        f"summary ({s.get('workload', '')} workload, seed {s.get('seed', '?')}, "
        f"{s.get('database') or 'in memory'}):",
        f"  {s['tasks']} tasks ({s.get('tasks_created', 0)} created, "
        f"{s.get('tasks_reused', 0)} already there)"
        + (f", {s['orphans_requeued']} left running by an earlier run requeued"
           if s.get("orphans_requeued") else ""),
        "  by state: " + ", ".join(f"{k} {v}" for k, v in s["by_state"].items()
                                   if v or k in FINAL),
        "  time: " + _time_line(s)
        + ("" if s.get("finished", True) else "  (NOT FINISHED: re-run to resume)"),
        f"  routing: routing_decisions {s['routing_decisions']}"
        + (f" ({sources})" if sources else "")
        + f"; routed {s['routed']}, claimed {s['claimed']}"
        + (f" ({s['claimed_first']} more routed but claimed by a pull agent first)"
           if s.get("claimed_first") else ""),
        f"  attempts: failed_attempts {s['failed_attempts']} = retries {s['retries']} "
        f"+ failed_for_good {s['failed_for_good']}; lease_expiries {s['lease_expiries']}; "
        f"retries_rerouted {s['retries_rerouted']}",
    ]
    if s["crashed_agents"]:
        lines.append(f"  crashed and restarted: {', '.join(s['crashed_agents'])} "
                     "(its tasks came back through requeue_stale)")
    if s["failed_tasks"]:
        lines.append("  failed: " + ", ".join(label(r) for r in s["failed_tasks"]))
    if s["unroutable_cancelled"]:
        lines.append("  cancelled, no agent has the capabilities: "
                     + ", ".join(label(r) for r in s["unroutable_cancelled"]))
    for root in s["blocked_by_root"]:
        lines.append(f"  blocked: {root['blocked']} task(s) downstream of {label(root)}")
    lines.append("  agent figures match the task table: " + ("yes" if s["figures_match"] else "NO"))
    lines += ["", s["agents"].to_string(index=False), ""]
    width = max(map(len, [*FIGURES, *COLUMNS]))
    lines.append("figures:")
    lines += [f"  {k:<{width}}  {FIGURES[k]}" for k in
              ("failed_attempts", "retries", "failed_for_good", "lease_expiries",
               "retries_rerouted", "routed", "claimed")]
    lines.append("columns:")
    lines += [f"  {k:<{width}}  {v}" for k, v in COLUMNS.items() if k != "agent_id"]
    if s.get("report"):
        lines += ["", f"report: {s['report']}"]
    for warning in s.get("warnings", [])[:5]:
        lines.append(f"warning: {warning}")
    return "\n".join(lines)


def _png(ax: Any) -> str:
    buffer = io.BytesIO()
    ax.figure.savefig(buffer, format="png", dpi=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def report_path(db_path: str | Path) -> Path:
    """``<db stem>_report.html`` next to the database file; for a PostgreSQL URL,
    ``<database name>_report.html`` in the current folder."""
    if is_postgres_url(db_path):
        name = urlsplit(str(db_path)).path.strip("/") or "postgresql"
        return Path(f"{name}_report.html")
    path = Path(db_path)
    return path.with_name(f"{path.stem}_report.html")


def _showcase_task(orch: Any) -> dict[str, Any]:
    """Requirements with the most capable agents, for the score breakdown plot."""
    tasks = orch.queue.to_frame()
    frame = orch.registry.to_frame()
    best, best_n = [], -1
    for requirements in {tuple(r) for r in tasks["requirements"]}:
        n = sum(set(requirements) <= set(c) for c in frame["capabilities"])
        if n > best_n or (n == best_n and len(requirements) > len(best)):
            best, best_n = list(requirements), n
    return {"requirements": best}


REPORT_PAGE = string.Template("""<!doctype html>
<html><head><meta charset="utf-8"><title>athena-orch demo report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ddd; padding: 0.25em 0.6em; text-align: left; }
th { background: #f4f4f4; } img { max-width: 100%; }
pre { background: #f8f8f8; padding: 1em; overflow-x: auto; }
</style></head><body>
<h1>athena-orch demo report</h1>
<p>Database <code>$database</code>, written $written.</p>
$facts
<h2>Tasks by state</h2>
$states
<h2>Agents</h2>
$agents
$columns
<h2>Routing decisions this run</h2>
$routing
<h3>Latest decisions</h3>
$recent
<h2>Failed and cancelled tasks</h2>
$failed
$images
<h2>Summary</h2>
<pre>$summary</pre>
</body></html>
""")
FACTS = ("workload", "seed", "tasks", "clock", "elapsed_seconds", "wall_seconds",
         "routing_decisions", "routed", "claimed", "failed_attempts", "retries",
         "failed_for_good", "lease_expiries", "retries_rerouted", "figures_match")


def _meanings(names: Any, meanings: dict[str, str], head: str) -> str:
    return pd.DataFrame({head: list(names), "meaning": [meanings[n] for n in names]}
                        ).to_html(index=False)


def write_report(orch: Any, summary: dict[str, Any], path: str | Path) -> Path:
    """An HTML page with the summary tables and the four plots as embedded PNGs."""
    from .. import viz

    path = Path(path)
    task = _showcase_task(orch)
    plots = {
        "Task dependency graph": viz.plot_dependency_dag(orch.queue),
        "Tasks per state over time": viz.plot_queue_over_time(orch.queue),
        "Agents and capabilities": viz.plot_capability_graph(orch.registry),
        f"Who would get a task needing {task['requirements']} now": viz.plot_score_breakdown(
            orch.router.explain(task),
            weights=orch.router.weights,
            title=f"Routing score breakdown for requirements {task['requirements']}",
        ),
    }
    images = "\n".join(
        f"<h2>{html.escape(title)}</h2>\n<img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{_png(ax)}'>"
        for title, ax in plots.items()
    )
    tasks = orch.queue.to_frame()
    failed = tasks.loc[tasks["status"].isin(["failed", "cancelled"])].copy()
    failed["task_id"] = failed["task_id"].map(short_text)
    failed["error"] = failed["error"].map(  # its first line: the traceback is in the history
        lambda error: error.split("\n", 1)[0], na_action="ignore")
    failed = failed[["name", "task_id", "status", "task_type", "retry_count", "error"]]
    recent = orch.router.decisions().tail(15)
    recent = pd.DataFrame({
        "task": [label(task_ref(tasks, t)) if isinstance(t, str) else "" for t in recent["task_id"]],
        "source": recent["source"], "selected_agent": recent["selected_agent"],
        "reason": recent["reason"]})
    facts = [k for k in FACTS if k in summary]
    body = REPORT_PAGE.substitute(
        database=html.escape(str(summary.get("database"))),
        written=datetime.now(UTC).isoformat(timespec="seconds"),
        facts=pd.DataFrame({"figure": facts, "value": [summary[k] for k in facts],
                            "meaning": [FIGURES[k] for k in facts]}).to_html(index=False),
        states=pd.DataFrame({"state": list(summary["by_state"]),
                             "tasks": list(summary["by_state"].values())}).to_html(index=False),
        agents=summary["agents"].to_html(index=False),
        columns=_meanings(summary["agents"].columns, COLUMNS, "column"),
        routing=pd.DataFrame({"source": list(summary["routing_by_source"]),
                              "decisions": list(summary["routing_by_source"].values())}
                             ).to_html(index=False),
        recent=recent.to_html(index=False),
        failed=failed.to_html(index=False, na_rep="") if len(failed) else "<p>None.</p>",
        images=images,
        summary=html.escape(format_summary(summary)),
    )
    path.write_text(body, encoding="utf-8")
    return path
