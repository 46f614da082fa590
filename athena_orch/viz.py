"""Plots of the queue, the task DAG, the capability graph and routing scores (matplotlib).

Each function draws on the Axes it is given, or on a new ``matplotlib.figure.Figure``
(no pyplot state is touched), and returns the Axes. In a notebook, show a new figure by
ending the cell with ``ax.figure``. Matplotlib is imported when a function is first
called; ``import athena_orch`` never imports this module.

Sizes are chosen for a notebook: new figures are at most 9 inches wide (900 px at
matplotlib's default 100 dpi, so a notebook column does not shrink them) and no text is
smaller than 10 points (10 px even at 72 dpi).

    from athena_orch import viz
    viz.plot_dependency_dag(orch.queue)
    viz.plot_capability_graph(orch.registry)
    viz.plot_score_breakdown(orch.router.explain(task), weights=orch.router.weights)
    viz.plot_queue_over_time(orch.queue)
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd

from .display import short_text

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from .agent_registry import AgentRegistry
    from .task_queue import TaskQueue

STATE_COLORS = {
    "pending": "#c7c7c7",
    "assigned": "#9ecae1",
    "running": "#3182bd",
    "completed": "#31a354",
    "failed": "#de2d26",
    "blocked": "#fd8d3c",
    "cancelled": "#756bb1",
}
STATE_ORDER = list(STATE_COLORS)
FONT_SIZE = 10  # points: the smallest text any plot writes
WIDTH = 9.0  # inches: the widest new figure
BAND_HEIGHT = 0.8  # of the 1.0 each state's band of the queue-over-time plot gets
NOTE_CHARS = 48  # an exclusion note longer than this is cut (it must fit in the axes)
COMPONENT_COLORS = {
    "track_record": "#1b9e77",
    "headroom": "#7570b3",
    "speed": "#d95f02",
    "fit": "#e7298a",
}


def _use_agg_without_display() -> None:
    """Pick the Agg backend when nothing can show a window (and nobody chose one)."""
    import matplotlib

    headless = (
        sys.platform.startswith("linux")
        and not os.environ.get("DISPLAY")
        and not os.environ.get("WAYLAND_DISPLAY")
    )
    if headless and "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def _axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        return ax
    _use_agg_without_display()
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout="constrained").add_subplot()


# ---------------------------------------------------------------------- task DAG
def dag_layout(graph: nx.DiGraph) -> dict[Any, tuple[float, float]]:
    """Positions: x = topological generation (left to right), y = place in the generation,
    ordered by the mean height of each node's dependencies (fewer crossing edges)."""
    pos: dict[Any, tuple[float, float]] = {}
    for x, generation in enumerate(nx.topological_generations(graph)):

        def height(node: Any) -> tuple[float, str]:
            ys = [pos[p][1] for p in graph.predecessors(node) if p in pos]
            return (float(np.mean(ys)) if ys else 0.0, str(node))

        ordered = sorted(generation, key=height)
        offset = (len(ordered) - 1) / 2
        for i, node in enumerate(ordered):
            pos[node] = (float(x), i - offset)
    return pos


def plot_dependency_dag(
    queue: TaskQueue,
    ax: Axes | None = None,
    *,
    labels: bool | None = None,
    max_tasks: int = 250,
) -> Axes:
    """The task DAG from ``queue.dependency_graph()``, one dot per task coloured by state,
    dependencies to the left of the tasks that wait on them. One scatter per state (with
    its count in the legend) and one line collection for the edges. ``labels`` writes each
    task's name (else the distinctive tail of its id) next to its dot (default: only for 40
    tasks or fewer).

    Above ``max_tasks`` tasks single dots and edges are a hairball, so the same layers are
    drawn as :func:`plot_dag_layers` instead: tasks per dependency depth, stacked by state.
    """
    from matplotlib.collections import LineCollection

    graph = queue.dependency_graph()
    if len(graph) > max_tasks:
        return plot_dag_layers(graph, ax)
    ax = _axes(ax, (WIDTH, 5))
    pos = dag_layout(graph)
    if graph.number_of_edges():
        segments = [(pos[u], pos[v]) for u, v in graph.edges]
        ax.add_collection(
            LineCollection(segments, colors="#888888", linewidths=0.5, alpha=0.35, zorder=1)
        )
    statuses = nx.get_node_attributes(graph, "status")
    size = 60 if len(graph) <= 60 else 22 if len(graph) <= 400 else 8
    for state in STATE_ORDER:
        nodes = [n for n in graph if statuses.get(n, "pending") == state]
        if not nodes:
            continue
        xy = np.array([pos[n] for n in nodes])
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            s=size,
            c=STATE_COLORS[state],
            edgecolors="white",
            linewidths=0.4,
            label=f"{state} ({len(nodes)})",
            zorder=2,
        )
    if labels or (labels is None and len(graph) <= 40):
        names = nx.get_node_attributes(graph, "name")
        for node, (x, y) in pos.items():
            ax.annotate(
                names.get(node) or short_text(node),
                (x, y),
                xytext=(4, 3),
                textcoords="offset points",
                fontsize=FONT_SIZE,
                color="#444444",
            )
    ax.set_title(
        f"Task dependency graph ({len(graph)} tasks, {graph.number_of_edges()} dependencies)"
    )
    ax.set_xlabel("topological generation (dependencies on the left)")
    ax.set_yticks([])
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if len(graph):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=FONT_SIZE)
        ax.autoscale_view()
    return ax


def plot_dag_layers(graph: nx.DiGraph, ax: Axes | None = None) -> Axes:
    """A large task DAG as one bar per dependency depth (its topological generation),
    stacked by state: how deep the graph is, and at which depth tasks fail or are blocked.
    One bar container per state that occurs, in ``STATE_ORDER``."""
    ax = _axes(ax, (WIDTH, 4))
    statuses = nx.get_node_attributes(graph, "status")
    layers = [
        pd.Series([statuses.get(n, "pending") for n in generation]).value_counts()
        for generation in nx.topological_generations(graph)
    ]
    counts = pd.DataFrame(layers).reindex(columns=STATE_ORDER).fillna(0).astype(int)
    bottom = np.zeros(len(counts))
    for state in STATE_ORDER:
        column = counts[state].to_numpy() if len(counts) else np.zeros(0)
        if column.any():
            ax.bar(
                np.arange(len(counts)),
                column,
                bottom=bottom,
                color=STATE_COLORS[state],
                label=f"{state} ({column.sum()})",
                width=0.8,
            )
            bottom += column
    ax.set_title(
        f"Task dependency graph by depth ({len(graph)} tasks, "
        f"{graph.number_of_edges()} dependencies)"
    )
    ax.set_xlabel("dependency depth (0: tasks that wait on nothing)")
    ax.set_ylabel("tasks")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(axis="y", alpha=0.3)
    if len(counts):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False, fontsize=FONT_SIZE)
    return ax


# ---------------------------------------------------------------------- capability graph
def plot_capability_graph(registry: AgentRegistry, ax: Axes | None = None) -> Axes:
    """Agents (squares, left, sized by tasks completed) joined to their capabilities
    (circles, right, sized by how many agents have them); inactive agents are grey."""
    from matplotlib.collections import LineCollection

    graph = registry.capability_graph()
    frame = registry.to_frame().set_index("agent_id")
    agents = sorted(
        (n for n, d in graph.nodes(data=True) if d.get("kind") == "agent"),
        key=lambda n: graph.nodes[n]["name"],
    )
    capabilities = sorted(
        (n for n, d in graph.nodes(data=True) if d.get("kind") == "capability"),
        key=lambda n: (-graph.degree(n), graph.nodes[n]["name"]),
    )
    ax = _axes(ax, (WIDTH, max(4.0, 0.35 * max(len(agents), len(capabilities)))))

    def column(nodes: list[Any], x: float) -> dict[Any, tuple[float, float]]:
        offset = (len(nodes) - 1) / 2
        return {n: (x, offset - i) for i, n in enumerate(nodes)}

    pos = {**column(agents, 0.0), **column(capabilities, 1.0)}
    edges = [(u, v) for u, v in graph.edges if u in pos and v in pos]
    if edges:
        ax.add_collection(
            LineCollection(
                [(pos[u], pos[v]) for u, v in edges],
                colors="#999999",
                zorder=1,
                linewidths=[
                    0.5 + 1.5 * float(graph.edges[e].get("confidence", 1.0)) for e in edges
                ],
                alpha=0.5,
            )
        )
    if agents:
        names = [graph.nodes[n]["name"] for n in agents]
        done = np.array([int(frame["total_completed"].get(a, 0)) for a in names], dtype=float)
        active = [bool(frame["active"].get(a, True)) for a in names]
        xy = np.array([pos[n] for n in agents])
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            marker="s",
            zorder=2,
            edgecolors="white",
            s=60 + 240 * done / max(done.max(), 1.0),
            c=["#3182bd" if a else "#bdbdbd" for a in active],
            label="agent",
        )
        for (x, y), name, n in zip(xy, names, done):
            ax.annotate(
                f"{name} ({int(n)} done)",
                (x, y),
                xytext=(-10, 0),
                fontsize=FONT_SIZE,
                textcoords="offset points",
                ha="right",
                va="center",
            )
    if capabilities:
        xy = np.array([pos[n] for n in capabilities])
        degree = np.array([graph.degree(n) for n in capabilities], dtype=float)
        ax.scatter(
            xy[:, 0],
            xy[:, 1],
            marker="o",
            zorder=2,
            edgecolors="white",
            s=60 + 40 * degree,
            c="#31a354",
            label="capability",
        )
        for (x, y), node, d in zip(xy, capabilities, degree):
            ax.annotate(
                f"{graph.nodes[node]['name']} ({int(d)})",
                (x, y),
                xytext=(10, 0),
                fontsize=FONT_SIZE,
                textcoords="offset points",
                ha="left",
                va="center",
            )
    ax.set_xlim(-0.8, 1.8)
    ax.set_axis_off()
    ax.set_title(f"Capability graph: {len(agents)} agents, {len(capabilities)} capabilities")
    return ax


# ---------------------------------------------------------------------- routing scores
def plot_score_breakdown(
    explain_frame: pd.DataFrame,
    ax: Axes | None = None,
    *,
    weights: Mapping[str, float] | None = None,
    title: str | None = None,
) -> Axes:
    """Stacked horizontal bars, one per agent of ``router.explain(task)``: each score
    component times its share of the weights, so a bar's length is the agent's score.
    Pass ``weights=router.weights`` if you changed them (default: the router's defaults).
    Agents the router excluded are faded, with the reason written inside the axes at the
    right (on a pale box over the faded bar, cut to ``NOTE_CHARS`` characters: the whole
    reason is in the frame). One bar container per component, in
    ``capability_router.COMPONENTS`` order."""
    from .capability_router import COMPONENTS, DEFAULT_WEIGHTS

    weights = dict(DEFAULT_WEIGHTS if weights is None else weights)
    total = sum(weights.values()) or 1.0
    frame = explain_frame.reset_index(drop=True)
    ax = _axes(ax, (WIDTH, max(2.5, 0.45 * len(frame) + 1)))
    y = np.arange(len(frame))[::-1]
    eligible = frame["excluded_reason"].fillna("").eq("").to_numpy() if len(frame) else []
    left = np.zeros(len(frame))
    for component in COMPONENTS:
        part = frame[component].astype(float).fillna(0.0).to_numpy() * weights[component] / total
        bars = ax.barh(
            y,
            part,
            left=left,
            color=COMPONENT_COLORS[component],
            label=f"{component} (w={weights[component] / total:.2f})",
            edgecolor="white",
            linewidth=0.5,
        )
        for bar, ok in zip(bars, eligible):
            if not ok:
                bar.set_alpha(0.3)
        left += part
    for yi, reason in zip(y, frame.get("excluded_reason", [])):
        if reason:
            note = str(reason)
            ax.text(
                0.99,
                yi,
                note if len(note) <= NOTE_CHARS else note[: NOTE_CHARS - 1] + "…",
                transform=ax.get_yaxis_transform(),
                ha="right",
                va="center",
                fontsize=FONT_SIZE,
                color="#333333",
                clip_on=True,
                bbox={"facecolor": "white", "alpha": 0.8, "edgecolor": "none", "pad": 1},
            )
    ax.set_yticks(
        y,
        [
            f"{a}" + ("" if pd.isna(r) else f"  #{int(r)}")
            for a, r in zip(frame["agent_id"], frame["rank"])
        ],
    )
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("score = sum of weighted components (faded: excluded, with the reason)")
    ax.set_title(title or "Routing score breakdown per candidate")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=FONT_SIZE, frameon=False)
    return ax


# ---------------------------------------------------------------------- queue over time
def state_counts_over_time(history: pd.DataFrame) -> pd.DataFrame:
    """From ``queue.history_frame()``: one row per transition time, one column per state,
    the number of tasks in that state just after it."""
    if history.empty:
        return pd.DataFrame(columns=STATE_ORDER, dtype="int64")
    events = history.sort_values("event_id")
    to_state = pd.get_dummies(events["to_status"]).astype("int64")
    from_state = pd.get_dummies(events["from_status"]).astype("int64")
    delta = to_state.reindex(columns=STATE_ORDER, fill_value=0).sub(
        from_state.reindex(columns=STATE_ORDER, fill_value=0)
    )
    counts = delta.cumsum()
    counts.index = pd.DatetimeIndex(events["at"])
    return counts.groupby(level=0).last()


def plot_queue_over_time(
    queue: TaskQueue, ax: Axes | None = None, *, history: pd.DataFrame | None = None
) -> Axes:
    """How many tasks were in each state over time, replayed from
    ``queue.history_frame()`` (or the ``history`` you pass).

    One band per state that occurs, each scaled to its own peak (written at the right with
    the last count): on one shared axis a state that peaks at 3 tasks would be a flat line
    under one that peaks at 200. Each band is a step line whose data are the real counts
    (its transform does the scaling)."""
    from matplotlib.transforms import Affine2D

    history = queue.history_frame() if history is None else history
    counts = state_counts_over_time(history)
    states = [s for s in STATE_ORDER if len(counts) and counts[s].to_numpy().any()]
    ax = _axes(ax, (WIDTH, max(2.5, 0.75 * len(states) + 1)))
    if states:
        seconds = (counts.index - counts.index[0]).total_seconds()
        for row, state in enumerate(states):
            column = counts[state].to_numpy()
            peak = int(column.max())
            band = len(states) - 1 - row  # the first state on top
            to_band = Affine2D().scale(1.0, BAND_HEIGHT / peak).translate(0.0, band)
            ax.axhline(band, color="#dddddd", linewidth=0.8)
            ax.plot(
                seconds,
                column,
                drawstyle="steps-post",
                color=STATE_COLORS[state],
                label=state,
                linewidth=1.8,
                transform=to_band + ax.transData,
            )
            ax.text(
                1.01,
                band + BAND_HEIGHT / 2,
                f"now {int(column[-1])}, peak {peak}",
                transform=ax.get_yaxis_transform(),
                va="center",
                fontsize=FONT_SIZE,
            )
        ax.set_yticks(range(len(states)), states[::-1])
        ax.set_ylim(-0.15, len(states) - 0.1)
        ax.set_xlim(0, max(float(seconds[-1]), 1.0))
    else:
        ax.set_yticks([])
    ax.set_xlabel("seconds since the first task was created")
    ax.set_title("Tasks per state over time (each state scaled to its own peak)")
    ax.grid(axis="x", alpha=0.3)
    return ax


# ---------------------------------------------------------------------- learning
def plot_skill_heatmap(matrix: pd.DataFrame, ax: Axes | None = None,
                       title: str = "Success per agent x task type") -> Axes:
    """A matrix of success rates in [0, 1] (agents down, task types across; NaN blank),
    each cell written in: what the learning router believes (posterior means, e.g.
    ``skill_frame`` pivoted) beside the hidden truth of a ``SkillWorkload``."""
    ax = _axes(ax, (min(WIDTH, 1.2 * len(matrix.columns) + 2.5), 0.45 * len(matrix) + 1.5))
    values = matrix.to_numpy(dtype=float)
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    for (r, c), value in np.ndenumerate(values):
        if value == value:
            ax.text(c, r, f"{value:.2f}", ha="center", va="center", fontsize=FONT_SIZE,
                    color="white" if value < 0.6 else "black")
    ax.set_xticks(range(len(matrix.columns)), [str(c) for c in matrix.columns],
                  fontsize=FONT_SIZE)
    ax.set_yticks(range(len(matrix)), [str(i) for i in matrix.index], fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.figure.colorbar(image, ax=ax, shrink=0.8).ax.tick_params(labelsize=FONT_SIZE)
    return ax


def plot_regret(curves: Mapping[str, Any], ax: Axes | None = None,
                title: str = "Cumulative regret") -> Axes:
    """Cumulative regret per task for each named run (``learning.learning_curve(...)
    ["regret"]`` or any sequence): the flatter, the sooner a policy stopped losing."""
    ax = _axes(ax, (7.0, 4.0))
    for name, curve in curves.items():
        values = np.asarray(curve, dtype=float)
        ax.plot(np.arange(1, len(values) + 1), values, label=str(name), linewidth=1.8)
    ax.set_xlabel("tasks routed", fontsize=FONT_SIZE)
    ax.set_ylabel("expected successes lost", fontsize=FONT_SIZE)
    ax.set_title(title, fontsize=FONT_SIZE + 1)
    ax.legend(fontsize=FONT_SIZE)
    ax.grid(alpha=0.3)
    return ax
