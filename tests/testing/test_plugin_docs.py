"""docs/plugins.md runs as written: its files are written, its shell lines run, its ``python`` blocks execute.

The blocks are read and the shell lines run by the docs' harness (tests/doc_shell.py), which emulates
``pip install -e DIR`` without touching the environment; the plugin is then discovered through the real
entry-point machinery.
"""

from __future__ import annotations

import json
import re
import sys
import tomllib

import pytest
import torch
from doc_shell import Shell, blocks, shell_lines

from metavoxel.plugins import registry as plugin_registry

DOC = "docs/plugins.md"


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
    for block in blocks(DOC):
        assert "file" in block.info or block.lang in ("bash", "text", "python"), \
            f"{block}: a block the tutorial test does not run: {block.body[:80]!r}"


def test_the_tutorial_runs_from_an_empty_folder_to_a_trained_model(tutorial):
    written, layout = [], []
    for block in blocks(DOC):
        if "file" in block.info:
            path = tutorial.root / block.info["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body)
            written.append(path.relative_to(tutorial.root).as_posix())
        elif block.lang == "bash":
            for line in shell_lines(block.body):
                tutorial.run(line)
        elif block.lang == "python":
            exec(compile(block.body, str(block), "exec"), {"__name__": "__doc_block__"})
        elif block.lang == "text":
            layout.append(block.body)
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
                                   "lesion_num_samples", "lesion_true", "typicality_percentile", "image_percentile",
                                   "metadata_percentile", "atypical"]
    assert len(rows) == 25


def test_the_tutorial_plugin_fails_the_suite_when_broken(tutorial):
    """The tutorial's conformance tests can fail: break renoise and the inner pytest run reports it."""
    for block in blocks(DOC):
        if block.info.get("file", "").startswith("metavoxel-positive/"):
            path = tutorial.root / block.info["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body.replace("self.process = mv.GaussianProcess(abar)",
                                         "self.process = mv.GaussianProcess(abar)\n"
                                         "        self.renoise = lambda z0, t, generator: z0 + 1e-3"))
    tutorial.run("pip install -e ./metavoxel-positive")
    with pytest.raises(AssertionError, match=r"positive\[0\]-corruption"):
        tutorial.run("pytest metavoxel-positive/tests")
