"""The package's modules import each other without a circle.

Every import counts, those inside functions too; only ``if TYPE_CHECKING:`` blocks are
left out, as they never run.
"""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

import athena_orch
from athena_orch.display import STATUS_COLOURS
from athena_orch.models import TaskStatus

PACKAGE = Path(athena_orch.__file__).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.ImportFrom | ast.Import]:
    found = []

    def visit(node: ast.AST) -> None:
        if (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    modules = {_module(p): p for p in PACKAGE.rglob("*.py")}
    for name, path in modules.items():
        graph.add_node(name)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _runtime_imports(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names if a.name in modules]
            elif node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target
                           for a in node.names]
            else:
                targets = [node.module] if node.module in modules else []
            graph.add_edges_from((name, t) for t in targets if t != name)
    return graph


def test_no_module_imports_itself_through_others():
    graph = import_graph()
    assert len(graph) > 20  # the scan found the package
    circles = [sorted(c) for c in nx.strongly_connected_components(graph) if len(c) > 1]
    assert circles == []


def test_the_scan_sees_a_circle():
    graph = import_graph()
    graph.add_edge("athena_orch.models", "athena_orch.task_queue")  # task_queue -> models
    assert any(len(c) > 1 for c in nx.strongly_connected_components(graph))


def test_models_imports_nothing_of_the_package_at_import_time():
    tree = ast.parse((PACKAGE / "models.py").read_text())
    top = [n for n in tree.body if isinstance(n, ast.ImportFrom) and n.level]
    assert top == []


def test_the_status_colours_follow_the_lifecycle():
    assert list(STATUS_COLOURS) == [s.value for s in TaskStatus]
