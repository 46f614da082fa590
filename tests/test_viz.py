"""athena_orch.viz: each plot on a small populated queue returns an Axes with the expected
artists, headless (Agg), without pyplot."""

from __future__ import annotations

import subprocess
import sys

import networkx as nx
import numpy as np
import pytest

import athena_orch

matplotlib = pytest.importorskip("matplotlib")
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from athena_orch import viz  # noqa: E402


@pytest.fixture
def orch(database_url):
    """3 agents, 7 tasks: a chain with a permanent failure (blocking 2), completions,
    one running, one cancelled, two pending."""
    with athena_orch.connect(database_url()) as manager:
        reg, q = manager.registry, manager.queue
        reg.register_agent("coder", ["python", "testing"], {"max_concurrent_tasks": 3})
        reg.register_agent("writer", ["writing"], {"max_concurrent_tasks": 2})
        reg.register_agent("lead", ["python", "writing", "review"], {"max_concurrent_tasks": 2})
        ids = dict(
            zip(
                "abcdefg",
                q.create_tasks(
                    [
                        {
                            "key": "a",
                            "content": "spec",
                            "task_type": "planning",
                            "requirements": ["writing"],
                        },
                        {
                            "key": "b",
                            "content": "code",
                            "task_type": "coding",
                            "requirements": ["python"],
                            "dependencies": ["a"],
                        },
                        {
                            "key": "c",
                            "content": "test",
                            "task_type": "testing",
                            "requirements": ["testing"],
                            "dependencies": ["b"],
                        },
                        {
                            "key": "d",
                            "content": "doc",
                            "task_type": "writing",
                            "requirements": ["writing"],
                            "dependencies": ["c"],
                        },
                        {
                            "key": "e",
                            "content": "review",
                            "task_type": "review",
                            "requirements": ["review"],
                            "dependencies": ["a"],
                        },
                        {
                            "key": "f",
                            "content": "later",
                            "task_type": "writing",
                            "requirements": ["writing"],
                            "dependencies": ["e"],
                        },
                        {
                            "key": "g",
                            "content": "dropped",
                            "task_type": "coding",
                            "requirements": ["python"],
                        },
                    ]
                ),
            )
        )
        for key, agent in (("a", "writer"), ("b", "coder")):
            q.assign_task(ids[key], agent)
            q.start_task(ids[key])
            q.complete_task(ids[key], "ok", {"duration_ms": 1000})
        q.assign_task(ids["c"], "coder")
        q.start_task(ids["c"])
        q.fail_task(ids["c"], "broken", should_retry=False)  # blocks d
        q.assign_task(ids["e"], "lead")
        q.start_task(ids["e"])  # running
        q.cancel_task(ids["g"], "not needed")
        manager.ids = ids
        yield manager


def _state_lines(ax):
    return [line for line in ax.get_lines() if not line.get_label().startswith("_")]


def _drawn(ax):
    """Lay the figure out (Agg) so text extents are real."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(ax.figure).draw()
    return ax


def _points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


def test_dependency_dag_draws_every_task_coloured_by_state(orch):
    ax = viz.plot_dependency_dag(orch.queue)
    assert isinstance(ax.figure, Figure)
    assert _points(ax) == 7
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(edges) == 1 and len(edges[0].get_segments()) == 5
    labels = {t.get_text() for t in ax.get_legend().get_texts()}
    assert labels == {
        "completed (2)",
        "failed (1)",
        "blocked (1)",
        "running (1)",
        "cancelled (1)",
        "pending (1)",
    }


def test_dag_layout_puts_dependencies_left_of_their_dependents(orch):
    graph = orch.queue.dependency_graph()
    pos = viz.dag_layout(graph)
    assert all(pos[u][0] < pos[v][0] for u, v in graph.edges)
    assert len(set(pos.values())) == len(graph)


def test_plots_draw_on_the_axes_they_are_given(orch):
    fig = Figure()
    axes = fig.subplots(2, 2).ravel()
    assert viz.plot_dependency_dag(orch.queue, ax=axes[0]) is axes[0]
    assert viz.plot_capability_graph(orch.registry, ax=axes[1]) is axes[1]
    assert (
        viz.plot_score_breakdown(orch.router.explain({"requirements": []}), ax=axes[2]) is axes[2]
    )
    assert viz.plot_queue_over_time(orch.queue, ax=axes[3]) is axes[3]


def test_capability_graph_draws_agents_capabilities_and_edges(orch):
    ax = viz.plot_capability_graph(orch.registry)
    scatters = [c for c in ax.collections if isinstance(c, PathCollection)]
    assert [len(c.get_offsets()) for c in scatters] == [3, 4]  # agents, capabilities
    edges = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(edges[0].get_segments()) == 6
    texts = {t.get_text() for t in ax.texts}
    assert "coder (1 done)" in texts and "python (2)" in texts


def test_score_breakdown_stacks_weighted_components(orch):
    router = orch.router
    frame = router.explain({"requirements": ["python"]})
    ax = viz.plot_score_breakdown(frame, weights=router.weights)
    assert len(ax.containers) == 4
    assert all(len(c) == len(frame) == 3 for c in ax.containers)
    widths = np.sum([[bar.get_width() for bar in c] for c in ax.containers], axis=0)
    # bars are drawn top to bottom in frame order; the stack adds up to the score
    np.testing.assert_allclose(widths, frame["score"].astype(float).to_numpy(), atol=1e-9)
    excluded = frame["excluded_reason"] != ""
    assert excluded.sum() == 1  # writer lacks python
    assert any("missing capabilities" in t.get_text() for t in ax.texts)


def test_queue_over_time_replays_the_history(orch):
    ax = viz.plot_queue_over_time(orch.queue)
    lines = {line.get_label(): line for line in _state_lines(ax)}
    stats = orch.queue.get_queue_statistics().by_status()
    assert set(lines) == {s for s, n in stats.items() if n} | {"assigned"}
    for state, line in lines.items():
        assert line.get_ydata()[-1] == stats[state], state
    counts = viz.state_counts_over_time(orch.queue.history_frame())
    assert (counts.sum(axis=1) <= 7).all() and counts.iloc[-1].sum() == 7


def test_empty_queue_plots_do_not_fail():
    with athena_orch.connect() as orch:
        assert _points(viz.plot_dependency_dag(orch.queue)) == 0
        assert _state_lines(viz.plot_queue_over_time(orch.queue)) == []
        assert viz.plot_capability_graph(orch.registry) is not None
        assert nx.is_empty(orch.queue.dependency_graph())


def test_athena_orch_import_is_light_and_viz_renders_headless_with_agg():
    code = (
        "import os, sys, io\n"
        "os.environ.pop('DISPLAY', None); os.environ.pop('MPLBACKEND', None)\n"
        "import athena_orch\n"
        "o = athena_orch.connect()\n"
        "assert 'matplotlib' not in sys.modules and 'athena_orch.viz' not in sys.modules\n"
        "from athena_orch import viz\n"
        "import matplotlib\n"
        "ax = viz.plot_queue_over_time(o.queue)\n"
        "ax.figure.savefig(io.BytesIO(), format='png')\n"
        "assert matplotlib.get_backend().lower() == 'agg', matplotlib.get_backend()\n"
        "assert 'matplotlib.pyplot' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------ legible at notebook size


def _all_plots(orch):
    return [
        viz.plot_dependency_dag(orch.queue, labels=True),
        viz.plot_capability_graph(orch.registry),
        viz.plot_score_breakdown(orch.router.explain({"requirements": ["python"]})),
        viz.plot_queue_over_time(orch.queue),
    ]


def test_plot_text_is_at_least_10_px_and_figures_fit_a_notebook_column(orch):
    """10 points are 10 px at 72 dpi (the old inline default) and 14 px at 100 dpi; a
    figure up to 9 inches (900 px at 100 dpi) is not shrunk by a notebook column."""
    for ax in _all_plots(orch):
        figure = _drawn(ax).figure
        assert figure.get_figwidth() <= 9.0, ax.get_title()
        texts = [t for t in figure.findobj(matplotlib.text.Text) if t.get_text().strip()]
        small = {t.get_text(): t.get_fontsize() for t in texts if t.get_fontsize() < 10}
        assert not small, (ax.get_title(), small)


def test_queue_over_time_gives_small_states_as_much_height_as_large_ones(orch):
    """A state that peaks at 1 task is drawn as tall as one that peaks at many."""
    history = orch.queue.history_frame()
    counts = viz.state_counts_over_time(history)
    assert counts.max().max() > 1 and (counts.max() == 1).any()  # both kinds occur
    ax = _drawn(viz.plot_queue_over_time(orch.queue))
    heights = {}
    for line in _state_lines(ax):
        peak = max(line.get_ydata())
        y0, y1 = line.get_transform().transform([(0, 0), (0, peak)])[:, 1]
        heights[line.get_label()] = y1 - y0
    assert max(heights.values()) - min(heights.values()) < 1e-6, heights
    assert {t.get_text() for t in ax.texts} >= {"now 2, peak 2"}  # completed


def test_a_large_dag_is_drawn_as_layers_by_depth():
    with athena_orch.connect() as manager:
        specs = [
            {
                "key": f"k{i}",
                "content": f"t{i}",
                "task_type": "x",
                "dependencies": [f"k{i // 2}"] if i else [],
            }
            for i in range(500)
        ]
        manager.queue.create_tasks(specs)
        ax = viz.plot_dependency_dag(manager.queue)
        graph = manager.queue.dependency_graph()
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]  # no hairball
    assert _points(ax) == 0
    (bars,) = ax.containers  # all pending: one state
    depths = list(nx.topological_generations(graph))
    assert [b.get_height() for b in bars] == [len(g) for g in depths]
    assert sum(b.get_height() for b in bars) == 500
    assert "by depth" in ax.get_title()


def test_small_dags_keep_their_dots(orch):
    assert _points(viz.plot_dependency_dag(orch.queue, max_tasks=7)) == 7
    assert _points(viz.plot_dependency_dag(orch.queue, max_tasks=6)) == 0


def test_score_breakdown_notes_stay_inside_the_axes(orch):
    frame = orch.router.explain({"requirements": ["python"]})
    best = frame.index[0]
    frame.loc[best, "excluded_reason"] = "paused; missing capabilities: " + "x, " * 40
    frame.loc[best, "rank"] = None
    ax = _drawn(viz.plot_score_breakdown(frame))
    inside = ax.get_window_extent()
    notes = [t for t in ax.texts if t.get_text()]
    assert len(notes) == 2
    for note in notes:
        box = note.get_window_extent()
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, note.get_text()


def test_dag_labels_name_tasks_by_their_name_else_their_short_id(database_url):
    import matplotlib

    import athena_orch
    from athena_orch.viz import plot_dependency_dag

    matplotlib.use("Agg")
    orch = athena_orch.connect(database_url())
    queue = orch.queue
    ids = queue.create_tasks([
        {"key": "fetch", "content": "fetch", "task_type": "io"},
        {"content": "clean", "task_type": "etl", "dependencies": ["fetch"]}])
    assert queue.dependency_graph().nodes[ids[0]]["name"] == "fetch"
    ax = plot_dependency_dag(queue, labels=True)
    texts = {t.get_text() for t in ax.texts}
    assert texts == {"fetch", "…" + ids[1][-12:]}
    orch.close()
