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
    lines = {line.get_label(): line for line in ax.get_lines()}
    stats = orch.queue.get_queue_statistics().by_status()
    assert set(lines) == {s for s, n in stats.items() if n} | {"assigned"}
    for state, line in lines.items():
        assert line.get_ydata()[-1] == stats[state], state
    counts = viz.state_counts_over_time(orch.queue.history_frame())
    assert (counts.sum(axis=1) <= 7).all() and counts.iloc[-1].sum() == 7


def test_empty_queue_plots_do_not_fail():
    with athena_orch.connect() as orch:
        assert _points(viz.plot_dependency_dag(orch.queue)) == 0
        assert viz.plot_queue_over_time(orch.queue).get_lines() == []
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
