"""The engine's modules import one way: no circle inside metavoxel/diffusion/, TYPE_CHECKING imports included."""

from __future__ import annotations

import ast
from pathlib import Path

DIFFUSION = Path(__file__).resolve().parents[2] / "metavoxel" / "diffusion"


def _imports(path: Path) -> set[str]:
    """The metavoxel.diffusion modules ``path`` imports, anywhere in the file (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["metavoxel", "diffusion"] and len(parts) > 2 and (DIFFUSION / f"{parts[2]}.py").is_file():
                found.add(parts[2])
    return found - {path.stem}


def test_no_import_circle_inside_the_engine():
    graph = {p.stem: _imports(p) for p in DIFFUSION.glob("*.py") if p.stem != "__init__"}
    state: dict[str, str] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            assert state.get(nxt) != "open", f"import circle: {' -> '.join([*trail, node, nxt])}"
            if nxt not in state:
                visit(nxt, [*trail, node])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [])
    assert graph["process"] >= {"fused"} and not graph["process"] & {"joint", "sampling", "point", "known"}
    assert graph["sampling"] >= {"sampler", "known", "conditioning", "options"} and "joint" not in graph["sampling"]
    assert "joint" not in graph["point"]  # the requests are functions over the process; JointModel bundles them
    assert not graph["network"] & {"process", "sampler", "fused", "joint"}  # the network knows no noise
