"""docs/plugins.md's tutorial with a real installation (slow): its package is built and pip-installed, then every
shell line runs in a subprocess exactly as a user would type it.

The one translation: ``pip install -e "./metavoxel-positive[test]"`` becomes an offline, non-editable
``pip install --no-deps --no-build-isolation --no-index --target SITE ./metavoxel-positive`` (this environment
cannot download; the test extra's pytest and hypothesis are already installed, which is checked), and SITE goes
on ``PYTHONPATH``. ``metavoxel``, ``pytest`` and ``python`` are this environment's.
"""

from __future__ import annotations

import importlib.metadata as md
import os
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from doc_shell import blocks, shell_lines
from test_plugin_docs import DOC

pytestmark = pytest.mark.slow


def test_the_tutorial_installed_for_real_runs_every_shell_line(tmp_path):
    site = tmp_path / ".site"
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    env.pop("METAVOXEL_DISABLE_PLUGINS", None)
    bin_dir = Path(sys.executable).parent
    ran = []
    for block in blocks(DOC):
        if "file" in block.info:
            path = tmp_path / block.info["file"]
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(block.body)
        elif block.lang == "bash":
            for line in shell_lines(block.body):
                argv = shlex.split(line)
                if argv[0] == "pip":
                    target, _, extras = argv[3].partition("[")
                    meta = tomllib.loads((tmp_path / target / "pyproject.toml").read_text())["project"]
                    for extra in filter(None, extras.rstrip("]").split(",")):
                        for requirement in meta["optional-dependencies"][extra]:
                            md.version(requirement.split(">")[0].split("=")[0])
                    argv = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                            "--no-cache-dir", "--disable-pip-version-check", "--quiet", "--target", str(site), target]
                elif argv[0] == "metavoxel":
                    argv = [str(bin_dir / "metavoxel"), *argv[1:]]
                elif argv[0] in ("pytest", "python"):
                    argv = [sys.executable, *(["-m", "pytest", "-p", "no:cacheprovider"] if argv[0] == "pytest" else []),
                            *argv[1:]]
                done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
                assert done.returncode == 0, f"{line!r} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
                assert "Traceback" not in done.stderr, f"{line!r}:\n{done.stderr[-3000:]}"
                ran.append(line)
    assert any(line.startswith("metavoxel train") for line in ran) and any(line.startswith("metavoxel predict")
                                                                          for line in ran)
    assert sum(line.startswith("metavoxel sample") for line in ran) == 2
    assert (tmp_path / "lesion.tsv").read_text().splitlines()[0].split("\t")[3:6] == ["lesion", "lesion_lower",
                                                                                     "lesion_upper"]
