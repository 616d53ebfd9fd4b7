"""docs/plugins.md runs as written: its files are written, its shell lines run, its ``python run`` blocks execute.

``pip install -e DIR`` is emulated without touching the environment: a ``.dist-info`` (METADATA and the
entry points from DIR's pyproject.toml) is written to a temporary site folder, which goes on ``sys.path``
(and ``PYTHONPATH`` for subprocesses) together with the package roots that pyproject declares — what an
editable install amounts to. The plugin is then discovered through the real entry-point machinery.
"""

from __future__ import annotations

import contextlib
import importlib.metadata as md
import io
import json
import os
import re
import runpy
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import torch

from metavoxel.plugins import registry as plugin_registry

DOC = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"
FENCE = re.compile(r"^```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^```[ \t]*$", re.M | re.S)


def blocks(text: str) -> list[tuple[str, str, str]]:
    """(language, info after the language, body) of every fenced block, in order."""
    return [(m["lang"], m["info"].strip(), m["body"]) for m in FENCE.finditer(text)]


class Shell:
    """Runs the doc's shell lines in ``root``; each command it knows is emulated or run for real."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
        self.root, self.monkeypatch, self.capsys = root, monkeypatch, capsys
        self.pythonpath: list[str] = []
        self.outputs: dict[str, str] = {}
        self.extras: list[str] = []

    def run(self, line: str) -> None:
        argv = shlex.split(line)
        handlers = {"mkdir": self.mkdir, "pip": self.pip, "metavoxel": self.metavoxel, "pytest": self.pytest,
                    "python": self.python}
        assert argv[0] in handlers, f"docs/plugins.md runs {line!r}; teach tests/testing/test_plugin_docs.py to run it"
        self.outputs[line] = handlers[argv[0]](argv[1:])

    def mkdir(self, args: list[str]) -> str:
        assert args[0] == "-p"
        for path in args[1:]:
            (self.root / path).mkdir(parents=True, exist_ok=True)
        return ""

    def pip(self, args: list[str]) -> str:
        assert args[:2] == ["install", "-e"] and len(args) == 3, f"unsupported pip command {args}"
        target, _, extras = args[2].partition("[")
        project_dir = self.root / target
        meta = tomllib.loads((project_dir / "pyproject.toml").read_text())
        project = meta["project"]
        name, version = project["name"], project["version"]
        # an extra is "installed" when each of its requirements is present in this environment (offline)
        optional = project.get("optional-dependencies", {})
        for extra in filter(None, extras.rstrip("]").split(",")):
            assert extra in optional, f"pip install {args[2]}: {name} has no extra {extra!r}"
            for requirement in optional[extra]:
                md.version(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0])  # PackageNotFoundError if absent
        self.extras = extras.rstrip("]").split(",") if extras else []
        dist_info = self.root / ".site" / f"{name.replace('-', '_')}-{version}.dist-info"
        dist_info.mkdir(parents=True)
        (dist_info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (dist_info / "entry_points.txt").write_text("".join(
            f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in eps.items()) + "\n"
            for group, eps in project.get("entry-points", {}).items()))
        roots = [str(project_dir / where) for where in meta["tool"]["setuptools"]["packages"]["find"]["where"]]
        for path in [str(dist_info.parent), *roots]:
            self.monkeypatch.syspath_prepend(path)
            self.pythonpath.append(path)
        plugin_registry._cached_default.cache_clear()  # the next default_registry() sees the new plugin
        return ""

    def metavoxel(self, args: list[str]) -> str:
        from metavoxel.cli import run

        self.capsys.readouterr()
        assert run(args) == 0, self.capsys.readouterr().err
        return self.capsys.readouterr().out

    def pytest(self, args: list[str]) -> str:
        env = {**os.environ, "PYTHONPATH": ":".join(self.pythonpath)}
        proc = subprocess.run([sys.executable, "-m", "pytest", *args, "-q", "-p", "no:cacheprovider"],
                              cwd=self.root, env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
        return proc.stdout

    def python(self, args: list[str]) -> str:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            runpy.run_path(str(self.root / args[0]), run_name="__main__")
        return out.getvalue()


@pytest.fixture
def tutorial(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "240")  # rich tables: no truncated cells
    monkeypatch.delenv("METAVOXEL_DISABLE_PLUGINS", raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # subprocesses: tiny models run fastest on one thread
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # on a shared CPU, threads of tiny ops mostly wait for each other
    modules = set(sys.modules)
    yield Shell(tmp_path, monkeypatch, capsys)
    torch.set_num_threads(threads)
    monkeypatch.undo()
    for name in set(sys.modules) - modules:
        if name.startswith("metavoxel_positive"):
            del sys.modules[name]
    plugin_registry._cached_default.cache_clear()  # forget the tutorial's plugin


def test_every_block_is_a_file_a_shell_line_or_runnable():
    for lang, info, body in blocks(DOC.read_text()):
        assert (info.startswith("file=") or info == "run" or lang in ("bash", "text")), \
            f"a ```{lang} {info} block the doc test does not run: {body[:80]!r}"


def test_the_tutorial_runs_from_an_empty_folder_to_a_trained_model(tutorial):
    written, layout = [], []
    for lang, info, body in blocks(DOC.read_text()):
        if info.startswith("file="):
            path = tutorial.root / info.removeprefix("file=")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body)
            written.append(path.relative_to(tutorial.root).as_posix())
        elif lang == "bash":
            for line in body.splitlines():
                if line.strip():
                    tutorial.run(line.strip())
        elif info == "run":
            exec(compile(body, f"{DOC.name} (python run block)", "exec"), {"__name__": "__doc_block__"})
        elif lang == "text":
            layout.append(body)
    outputs = tutorial.outputs
    # the layout tree names exactly the package files the tutorial writes
    listed = set(re.findall(r"([\w./-]+\.(?:py|toml))", layout[0]))
    package = {p.removeprefix("metavoxel-positive/") for p in written if p.startswith("metavoxel-positive/")}
    assert listed == package
    plugins = outputs["metavoxel plugins"]
    assert re.search(r"positive\s.*positive\s.*metavoxel-positive\s.*0\.1\.0", plugins), plugins
    from metavoxel.testing.conformance import CHECKS

    # every check on both examples, and the tutorial's two tests of its own
    assert f"{2 * len(CHECKS) + 2} passed" in outputs["pytest metavoxel-positive/tests"]
    assert "loss " in outputs["python train_positive.py"] and "median lesion volume (mL)" in outputs["python train_positive.py"]
    schema = (tutorial.root / "my-schemas" / "modelspec.schema.json").read_text()
    assert '"const": "positive"' in schema
    # the install brings the test extra, and it holds what the conformance suite needs
    assert tutorial.extras == ["test"]
    test_extra = tomllib.loads((tutorial.root / "metavoxel-positive" / "pyproject.toml").read_text())
    assert {r.split(">")[0] for r in test_extra["project"]["optional-dependencies"]["test"]} >= {"pytest", "hypothesis"}
    # the command-line section: a trained run, a sample with the volume given, a free sample, predictions
    assert (tutorial.root / "runs" / "lesions" / "model.safetensors").is_file()
    fixed = json.loads((tutorial.root / "samples" / "given-volume" / "samples.json").read_text())
    assert fixed["variables"]["lesion"]["fixed"] == [True] and (tutorial.root / "samples" / "given-volume" /
                                                              "image_sample00.nii.gz").is_file()
    free = json.loads((tutorial.root / "samples" / "free" / "samples.json").read_text())
    assert set(free["variables"]["lesion"]["summary"]) == {"median", "lower", "upper", "level", "num_samples"}
    assert all(v > 0 for v in free["variables"]["lesion"]["samples"][0])
    free_table = outputs["metavoxel sample --model runs/lesions --num-samples 2 --out samples/free"]
    assert re.search(r"lesion\s.*sampled\s.*% interval \[[\d.]+, [\d.]+\] \(of 2 samples\)", free_table), free_table
    rows = (tutorial.root / "lesion.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["participant_id", "session", "source", "lesion", "lesion_lower", "lesion_upper", "lesion_level",
                                   "lesion_num_samples", "lesion_true"]
    assert len(rows) == 25


def test_the_tutorial_plugin_fails_the_suite_when_broken(tutorial):
    """The tutorial's conformance tests can fail: break renoise and the inner pytest run reports it."""
    for lang, info, body in blocks(DOC.read_text()):
        if info.startswith("file=metavoxel-positive/"):
            path = tutorial.root / info.removeprefix("file=")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(body.replace("self.process = mv.GaussianProcess(abar)",
                                         "self.process = mv.GaussianProcess(abar)\n"
                                         "        self.renoise = lambda z0, t, generator: z0 + 1e-3"))
    tutorial.run("pip install -e ./metavoxel-positive")
    with pytest.raises(AssertionError, match=r"positive\[0\]-corruption"):
        tutorial.run("pytest metavoxel-positive/tests")
