"""Meta-tests: every hook is documented in docs/plugins.md and tested; every protocol member is documented."""

from __future__ import annotations

import inspect
import types
from pathlib import Path

import metavoxel as mv
from metavoxel.plugins import hookspecs
from metavoxel.variables.protocol import SCALAR_MEMBERS, protocol_members

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "plugins.md"


def hook_signatures(module: types.ModuleType) -> dict[str, str]:
    """Hook name -> its ``def`` line as written in the source, for every hookspec of ``module``."""
    found = {}
    for name, obj in vars(module).items():
        if inspect.isfunction(obj) and hasattr(obj, f"{module.PROJECT}_spec"):
            found[name] = next(line.strip() for line in inspect.getsource(obj).splitlines()
                               if line.lstrip().startswith("def "))
    return found


def undocumented(module: types.ModuleType, doc: str) -> list[str]:
    """Hooks whose exact signature line does not appear in ``doc``."""
    return sorted(name for name, signature in hook_signatures(module).items() if signature not in doc)


def untested(module: types.ModuleType, tests: list[Path]) -> list[str]:
    """Hooks no file in ``tests`` names (this meta-test excluded)."""
    texts = [p.read_text() for p in tests if p.resolve() != Path(__file__).resolve()]
    return sorted(name for name in hook_signatures(module) if not any(name in text for text in texts))


def _fake_hookspecs() -> types.ModuleType:
    """The real hookspecs plus one new hook nobody has documented or tested."""
    source = inspect.getsource(hookspecs) + (
        "\n\n@hookspec\ndef metavoxel_brand_new_hook(model, records) -> None:\n    \"\"\"Not documented yet.\"\"\"\n")
    module = types.ModuleType("fake_hookspecs")
    module.__file__ = "fake_hookspecs.py"
    exec(compile(source, "fake_hookspecs.py", "exec"), module.__dict__)
    import linecache

    linecache.cache["fake_hookspecs.py"] = (len(source), None, source.splitlines(True), "fake_hookspecs.py")
    return module


def test_there_are_hooks_to_check():
    signatures = hook_signatures(hookspecs)
    assert signatures["metavoxel_register_kinds"] == "def metavoxel_register_kinds(registry) -> None:"
    assert all(name.startswith("metavoxel_") for name in signatures), "hooks are prefixed with the project name"


def test_every_hook_is_documented_with_its_exact_signature():
    assert undocumented(hookspecs, DOC.read_text()) == [], "document the hook in docs/plugins.md (Reference: hooks)"


def test_every_hook_is_referenced_by_a_test():
    assert untested(hookspecs, sorted((ROOT / "tests").rglob("*.py"))) == []


def test_a_new_hook_without_docs_or_tests_is_caught():
    fake = _fake_hookspecs()
    assert set(hook_signatures(fake)) == {"metavoxel_register_kinds", "metavoxel_brand_new_hook"}
    assert undocumented(fake, DOC.read_text()) == ["metavoxel_brand_new_hook"]
    assert untested(fake, sorted((ROOT / "tests").rglob("*.py"))) == ["metavoxel_brand_new_hook"]
    # a changed signature is caught too: the doc must carry the line exactly as the spec writes it
    assert undocumented(hookspecs, DOC.read_text().replace("def metavoxel_register_kinds(registry) -> None:",
                                                           "def metavoxel_register_kinds(registry):")) \
        == ["metavoxel_register_kinds"]


def test_every_variable_protocol_member_is_in_the_reference_table():
    doc = DOC.read_text()
    reference = doc[doc.index("## Reference: the `Variable` protocol"):]
    reference = reference.split("\n## ", 1)[0]  # up to the next section (optional capabilities, ...)
    rows = {line.split("|")[1].strip().strip("`").split("(")[0] for line in reference.splitlines()
            if line.startswith("| `")}
    assert rows == set(protocol_members()) | set(SCALAR_MEMBERS)


def test_the_docs_hookimpl_marker_is_the_public_one():
    assert mv.hookimpl is hookspecs.hookimpl and "@mv.hookimpl" in DOC.read_text()
