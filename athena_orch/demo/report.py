"""What a demo run did: the summary (from the database, plus the run's own facts), as text
and as an HTML page with plots."""

from __future__ import annotations

import base64
import html
import io
import string
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pandas as pd

from ..stores.postgres import is_postgres_url

if TYPE_CHECKING:  # pragma: no cover
    from .simulation import RunFacts

FINAL = ("completed", "failed", "blocked", "cancelled")


def _by_agent(events: pd.DataFrame) -> pd.Series:
    return events.groupby("agent_id").size()


def summarize(orch: Any, facts: RunFacts, started_at: datetime, elapsed: float
              ) -> dict[str, Any]:
    """Figures from the database (cumulative, and this run's from the task history) and
    from the run's facts (workers' summaries, dispatcher, crash)."""
    queue, registry, router = orch.queue, orch.registry, orch.router
    by_state = queue.get_queue_statistics().by_status()
    tasks = queue.to_frame()
    history = queue.history_frame()
    decisions = router.decisions()
    run_decisions = decisions[decisions["decided_at"] >= pd.Timestamp(started_at)]

    agents = registry.to_frame().set_index("agent_id")
    done_by = tasks[tasks["status"] == "completed"].groupby("assigned_to").size()
    released = history["detail"].fillna("").str.startswith("released")
    ends = history[history["from_status"].isin(["assigned", "running"])
                   & history["to_status"].isin(["pending", "failed"]) & ~released]
    figures_match = bool(
        (agents["total_completed"] == done_by.reindex(agents.index, fill_value=0)).all()
        and (agents["total_failed"] == _by_agent(ends).reindex(agents.index, fill_value=0)).all()
    )
    run = history[history["at"] >= pd.Timestamp(started_at)]
    handouts = run[run["to_status"] == "assigned"]
    run_ends = ends[ends["at"] >= pd.Timestamp(started_at)]
    expired = run_ends[run_ends["detail"].str.contains("lease expired", na=False)]
    per_agent = {
        "claimed": _by_agent(handouts[handouts["detail"] == "claimed"]),
        "routed_to": _by_agent(handouts[handouts["detail"] == "assigned"]),
        "done_this_run": _by_agent(run[run["to_status"] == "completed"]),
        "lease_expired": _by_agent(expired),
    }
    table = pd.DataFrame({
        "completed": agents["total_completed"],
        "failed": agents["total_failed"],
        "success_rate": agents["success_rate"].round(3),
        "avg_minutes": (agents["avg_completion_ms"] / 60_000).round(1),
        **per_agent,
    }).fillna(0)
    for column in ("completed", "failed", *per_agent):
        table[column] = table[column].astype("int64")
    table["per_second"] = (table["done_this_run"] / max(elapsed, 1e-9)).round(2)
    table.index.name = "agent_id"

    content = dict(zip(tasks["task_id"], tasks["content"]))
    blocked_roots = tasks.loc[tasks["status"] == "blocked", "blocked_by"].value_counts()
    workers = facts.workers
    return {
        "tasks": int(sum(by_state.values())),
        "by_state": {s: int(n) for s, n in by_state.items()},
        "elapsed_seconds": round(elapsed, 2),
        "agents": table.reset_index(),
        "figures_match": figures_match,
        "routing_decisions": int(len(run_decisions)),
        "routing_by_source": {
            str(k): int(v) for k, v in run_decisions["source"].value_counts().sort_index().items()
        },
        "routed_assignments": int(table["routed_to"].sum()),
        "rerouted_retries": facts.rerouted_retries,
        "claimed_first": facts.claimed_first,
        "claims": int(table["claimed"].sum()),
        "retries": int((run_ends["to_status"] == "pending").sum()),
        "retries_total": int((ends["to_status"] == "pending").sum()),
        "failed_attempts": workers["retried"] + workers["failed"],
        "permanent_failures": int((run_ends["to_status"] == "failed").sum()),
        "lease_expiries": int(len(expired)),
        "lost_attempts": workers["lost"],
        "unroutable_cancelled": list(facts.unroutable),
        "crashed_agents": list(facts.crashes),
        "blocked_by_root": {
            f"{content.get(k, '?')[:60]} ({str(k)[:8]})": int(v) for k, v in blocked_roots.items()
        },
        "warnings": list(facts.warnings),
    }


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as text (what ``athena-orch demo`` prints)."""
    s = summary
    sources = ", ".join(f"{k} {v}" for k, v in s["routing_by_source"].items())
    lines = [
        f"summary ({s.get('workload', '')} workload, {s.get('database') or 'in memory'}):",
        f"  {s['tasks']} tasks ({s.get('tasks_created', 0)} created, "
        f"{s.get('tasks_reused', 0)} already there)"
        + (f", {s['orphans_requeued']} left running by an earlier run requeued"
           if s.get("orphans_requeued") else ""),
        "  by state: " + ", ".join(f"{k} {v}" for k, v in s["by_state"].items()
                                   if v or k in FINAL),
        f"  time: {s['elapsed_seconds']:.1f} s"
        + ("" if s.get("finished", True) else "  (NOT FINISHED: re-run to resume)"),
        f"  routing: {s['routing_decisions']} decisions logged"
        + (f" ({sources})" if sources else "")
        + f"; {s['routed_assignments']} tasks routed and assigned "
        f"({s['rerouted_retries']} retries sent to another agent; {s['claimed_first']} more "
        f"claimed by a pull agent first), {s['claims']} claimed",
        f"  retries: {s['retries']} this run ({s['failed_attempts']} failed attempts, "
        f"{s['lease_expiries']} leases ran out); {s['permanent_failures']} failed for good; "
        f"{s['lost_attempts']} attempts lost by their worker",
    ]
    if s["crashed_agents"]:
        lines.append(f"  crashed and restarted: {', '.join(s['crashed_agents'])} "
                     "(its tasks came back through requeue_stale)")
    if s["unroutable_cancelled"]:
        lines.append(f"  cancelled, no agent has the capabilities: "
                     f"{len(s['unroutable_cancelled'])} task(s)")
    for root, n in s["blocked_by_root"].items():
        lines.append(f"  blocked: {n} task(s) downstream of {root!r}")
    lines.append("  agent figures match the task table: " + ("yes" if s["figures_match"] else "NO"))
    table = s["agents"].rename(columns={"success_rate": "success", "avg_minutes": "avg_min",
                                        "done_this_run": "done_now", "lease_expired": "leases"})
    lines += ["", table.to_string(index=False), ""]
    if s.get("report"):
        lines.append(f"report: {s['report']}")
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
FACTS = ("workload", "seed", "tasks", "elapsed_seconds", "routing_decisions",
         "routed_assignments", "claims", "retries", "permanent_failures", "lease_expiries",
         "lost_attempts", "figures_match")


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
    failed = tasks.loc[tasks["status"].isin(["failed", "cancelled"]),
                       ["task_id", "status", "task_type", "content", "error", "retry_count"]]
    failed["error"] = failed["error"].str.split("\n").str[0]  # the traceback is in the history
    recent = orch.router.decisions().tail(15)
    recent = recent[[c for c in ("decided_at", "source", "task_id", "selected_agent", "reason")
                     if c in recent.columns]]
    body = REPORT_PAGE.substitute(
        database=html.escape(str(summary.get("database"))),
        written=datetime.now(UTC).isoformat(timespec="seconds"),
        facts=pd.DataFrame({"value": {k: summary[k] for k in FACTS if k in summary}}).to_html(),
        states=pd.DataFrame({"tasks": summary["by_state"]}).rename_axis("state").to_html(),
        agents=summary["agents"].to_html(index=False),
        routing=pd.DataFrame({"decisions": summary["routing_by_source"]})
        .rename_axis("source").to_html(),
        recent=recent.to_html(index=False),
        failed=failed.to_html(index=False) if len(failed) else "<p>None.</p>",
        images=images,
        summary=html.escape(format_summary(summary)),
    )
    path.write_text(body, encoding="utf-8")
    return path
