"""The engine calls only what the Variable protocol and the declared capabilities promise.

Scans every module of `metavoxel/` with `ast` for attribute reads on variables — names called ``var`` or
``variable``, names bound from ``<x>.variables[...]``, ``.get(...)``, ``.values()`` or ``.items()``, direct
``<x>.variables[...].attr``, and ``getattr``/``hasattr`` probes with a literal name — and fails for any name
that is neither a protocol member (`metavoxel.variables.protocol`) nor a member of a capability in
`metavoxel.variables.capabilities`. Generic over the source tree, so it holds after any refactor.
"""

from __future__ import annotations

import ast
from pathlib import Path

from metavoxel.variables.capabilities import capability_members
from metavoxel.variables.protocol import SCALAR_MEMBERS, protocol_members

PACKAGE = Path(__file__).resolve().parents[2] / "metavoxel"
VARIABLE_NAMES = {"var", "variable"}
# Reads that a pending change removes; each entry must still occur (a stale entry fails too).
PENDING: set[tuple[str, str]] = set()


def _is_variables(node: ast.AST) -> bool:
    """``<x>.variables`` (a model's variables by name), not ``spec.variables`` (a list of specs)."""
    return isinstance(node, ast.Attribute) and node.attr == "variables" and not (
        isinstance(node.value, ast.Name) and node.value.id == "spec"
        or isinstance(node.value, ast.Attribute) and node.value.attr == "spec")


def _from_variables(node: ast.AST) -> str | None:
    """'item' for ``<x>.variables[k]`` / ``.get(k)``; 'values' / 'items' for those iterators; else None."""
    if isinstance(node, ast.Subscript) and _is_variables(node.value):
        return "item"
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and _is_variables(node.func.value):
        return {"get": "item", "values": "values", "items": "items"}.get(node.func.attr)
    return None


class _Reads(ast.NodeVisitor):
    def __init__(self) -> None:
        self.bound: set[str] = set()
        self.reads: list[tuple[int, str]] = []

    def _bind_loop(self, target: ast.AST, source: ast.AST) -> None:
        how = _from_variables(source)
        if how == "values" and isinstance(target, ast.Name):
            self.bound.add(target.id)
        elif how == "items" and isinstance(target, ast.Tuple) and isinstance(target.elts[-1], ast.Name):
            self.bound.add(target.elts[-1].id)

    def visit_For(self, node: ast.For) -> None:
        self._bind_loop(node.target, node.iter)
        self.generic_visit(node)

    def visit_comprehension(self, node: ast.comprehension) -> None:
        self.visit(node.iter)
        self._bind_loop(node.target, node.iter)
        for condition in node.ifs:
            self.visit(condition)

    def _comprehension(self, node: ast.AST, *parts: ast.AST) -> None:
        """A comprehension's names are its own: bind from its generators, read its element, then forget them."""
        outer = set(self.bound)
        for generator in node.generators:
            self.visit(generator)
        for part in parts:
            self.visit(part)
        self.bound = outer

    def visit_ListComp(self, node: ast.ListComp) -> None:
        self._comprehension(node, node.elt)

    visit_SetComp = visit_GeneratorExp = visit_ListComp

    def visit_DictComp(self, node: ast.DictComp) -> None:
        self._comprehension(node, node.key, node.value)

    def visit_Assign(self, node: ast.Assign) -> None:
        if _from_variables(node.value) == "item":
            self.bound |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        self.generic_visit(node)

    def _is_variable(self, node: ast.AST) -> bool:
        return (isinstance(node, ast.Name) and (node.id in VARIABLE_NAMES or node.id in self.bound)) or \
            _from_variables(node) == "item"

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if self._is_variable(node.value) and isinstance(node.ctx, ast.Load):
            self.reads.append((node.lineno, node.attr))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        if isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr") and len(node.args) >= 2 \
                and self._is_variable(node.args[0]) and isinstance(node.args[1], ast.Constant):
            self.reads.append((node.lineno, str(node.args[1].value)))
        self.generic_visit(node)


def _reads() -> list[tuple[str, int, str]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for scope in [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]:
            visitor = _Reads()
            visitor.visit(scope)
            found += [(path.relative_to(PACKAGE).as_posix(), line, name) for line, name in visitor.reads]
    return sorted(set(found))


def declared() -> set[str]:
    return {*protocol_members(), *SCALAR_MEMBERS, *capability_members()}


def test_the_scan_sees_variable_reads():
    reads = _reads()
    names = {name for _file, _line, name in reads}
    assert {"head", "encode", "value_range", "categories"} <= names, "the scan no longer finds the engine's reads"
    assert len({file for file, _line, _name in reads}) >= 10


def test_the_engine_reads_only_declared_variable_members():
    allowed = declared()
    undeclared = [(f, line, name) for f, line, name in _reads() if name not in allowed and (f, name) not in PENDING]
    assert not undeclared, (
        "the engine reads variable members the protocol does not declare; add them to Variable "
        "(metavoxel/variables/protocol.py) or to a capability in metavoxel/variables/capabilities.py (and "
        "docs/plugins.md), or stop reading them: " + "; ".join(f"metavoxel/{f}:{line} .{name}" for f, line, name in undeclared))


def test_pending_exceptions_are_still_needed():
    reads = {(f, name) for f, _line, name in _reads()}
    stale = sorted(PENDING - reads)
    assert not stale, f"remove these from PENDING in {Path(__file__).name}, they no longer occur: {stale}"


def test_a_probe_of_an_undeclared_attribute_is_caught():
    source = "def f(model):\n    var = model.variables['age']\n    return getattr(var, 'range', (0, 1)), var.lo\n"
    visitor = _Reads()
    visitor.visit(ast.parse(source).body[0])
    assert {name for _line, name in visitor.reads} - declared() == {"range", "lo"}


def test_every_capability_is_exported_and_documented_with_its_members():
    import metavoxel as mv
    from metavoxel.variables.capabilities import CAPABILITIES

    doc = (PACKAGE.parent / "docs" / "plugins.md").read_text()
    members = capability_members()
    for cap in CAPABILITIES:
        assert getattr(mv, cap.__name__) is cap, f"{cap.__name__} is not exported by metavoxel"
        row = next((line for line in doc.splitlines() if line.startswith(f"| `mv.{cap.__name__}` |")), None)
        assert row is not None, f"docs/plugins.md has no row for mv.{cap.__name__} in 'optional capabilities'"
        for name in (m for m, owner in members.items() if owner is cap):
            assert f"`{name}" in row, f"the row of mv.{cap.__name__} does not name its member {name!r}"
