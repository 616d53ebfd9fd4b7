"""The fenced blocks of README.md and docs/*.md, and a shell that runs them, so that none can go stale.

Used by tests/test_docs.py (every page) and tests/testing/test_plugin_docs.py (the plugin tutorial). A block's
language says what it is; words after the language (GitHub shows none of them) say more:

- ``bash``: shell lines (a trailing ``\\`` continues a line; ``# ...`` is a comment). Each line's first word
  must be one the `Shell` knows (`COMMANDS`); `check_line` checks it without running it (the default suite),
  `Shell.run` runs it (the slow suite, and the plugin tutorial).
- ``console``: ``$ command`` lines, each followed by what it prints; run, the output must contain those lines.
- ``python``: runs. ``python file=PATH`` is a file the page has you write; ``given=a,b`` names the objects the
  block assumes (`given`), provided by the test; ``python slow``: a block that takes seconds even at a test's
  budget, whose imports run in the default suite and the whole of it in the slow one.
- ``yaml``, ``toml``, ``json``: must parse (``file=PATH``: written). A YAML mapping of spec sections is a piece
  of a spec and is validated inside the README's starting spec.
- ``text`` or no language: output, a folder layout or a synopsis; not code, not run.

What cannot run here is checked for what can be checked, never skipped silently: ``make TARGET`` (the target is
in the Makefile, each ``VAR=`` is read by it), ``torchrun ... -m metavoxel CMD`` (CMD parses; no GPUs here),
``python benchmarks/...`` (the script exists and takes every flag used; the slow suite runs its ``--help``),
``pip install 'metavoxel[EXTRA]'`` (the extra exists; nothing is downloaded) and ``metavoxel demo`` (it parses;
it takes 10 minutes). ``tensorboard`` is another program's (`EXTERNAL`).

Running a line: the workspace starts empty; a command that reads a path the page has not written gets the
fixture of that name (`Fixtures`): a tiny version of the README's starting spec as ``spec.yaml``, a 12-subject
cohort of 16³ scans as ``cohort.tsv`` / ``test.tsv`` / ``t20.tsv``, ``scan.nii.gz`` and ``keep.nii.gz`` (half of
it), a VAE folder ``runs/vae`` and a run ``runs/joint`` trained 2 steps from them, and MONAI bundles shaped like
the two the docs import. Training runs at a test's budget: ``train`` and ``train-vae`` get ``--steps 2`` and
``evaluate`` ``--likelihood-timesteps 2`` unless the line sets them (`BUDGET`), and a Python block's ``steps=``
keywords are set to 2 (`shrink`).
"""

from __future__ import annotations

import ast
import contextlib
import csv
import importlib.metadata as md
import io
import json
import os
import re
import runpy
import shlex
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^(?P<indent>[ \t]*)```(?P<lang>[\w-]*)(?P<info>[^\n]*)\n(?P<body>.*?)^[ \t]*```[ \t]*$",
                   re.M | re.S)
#: first words a ``bash`` line may start with
COMMANDS = ("metavoxel", "make", "torchrun", "python", "pip", "pytest", "mkdir", "tensorboard")
#: programs that are not metavoxel's: named in the docs, never run or checked by the tests
EXTERNAL = {"tensorboard": "TensorBoard's own command line (the optional `metavoxel[tensorboard]` extra)"}
#: flags added to a command that does not set them, so that it trains at a test's budget
BUDGET = {"train": ("--steps", "2", "--batch-size", "4"), "train-vae": ("--steps", "2"),
          "evaluate": ("--likelihood-timesteps", "2")}
#: flags that need one of metavoxel's optional extras: a line using one is only parsed where the extra is absent
EXTRA_FLAGS = {"--tensorboard": "tensorboard"}
#: options whose value is a path a command writes (never provided as a fixture)
OUTPUTS = ("--out", "-o", "--cache")


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository root
    line: int  # of the opening fence
    lang: str
    info: dict[str, str]  # `file=PATH given=a,b` -> {"file": PATH, "given": "a,b"}; a bare word maps to ""
    body: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line} ```{self.lang}"


def blocks(page: str | Path) -> list[Block]:
    """Every fenced block of ``page`` (absolute, or relative to the repository root), in order."""
    path = ROOT / page
    text = path.read_text()
    found = []
    for m in FENCE.finditer(text):
        indent = len(m["indent"])
        body = "".join(line[indent:] if line[:indent].isspace() else line
                       for line in m["body"].splitlines(keepends=True))
        info = dict(word.partition("=")[::2] for word in m["info"].split())
        found.append(Block(path.relative_to(ROOT).as_posix(), text.count("\n", 0, m.start()) + 1, m["lang"], info,
                           body))
    return found


def pages() -> list[str]:
    """README.md and every docs/*.md, relative to the repository root."""
    return ["README.md", *sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))]


def shell_lines(body: str) -> list[str]:
    """The commands of a ``bash`` block: continuations joined, comments and blank lines dropped."""
    lines, pending = [], ""
    for raw in body.splitlines():
        line = pending + raw.strip()
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        pending = ""
        words = shlex.split(line, comments=True)
        if words:
            lines.append(shlex.join(words))
    return lines


def console_steps(body: str) -> list[tuple[str, list[str]]]:
    """(command, the lines it prints) of a ``console`` block."""
    steps: list[tuple[str, list[str]]] = []
    for line in body.splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].strip(), []))
        elif line.strip():
            assert steps, f"a console block must start with '$ command': {line!r}"
            steps[-1][1].append(line.strip())
    return steps


# -- checking a line without running it ---------------------------------------------------------------------
def parse_metavoxel(args: list[str]) -> None:
    """``metavoxel CMD ARGS`` parses: CMD exists, every flag is one it takes, values convert, nothing is missing."""
    import typer

    from metavoxel.cli.main import app

    group = typer.main.get_command(app)
    assert args and args[0] in group.commands, f"metavoxel has no command {args[:1]}; it has {sorted(group.commands)}"
    try:
        group.commands[args[0]].make_context(args[0], list(args[1:]))
    except typer.TyperException as exc:
        raise AssertionError(f"metavoxel {shlex.join(args)}: {exc.format_message()}") from None


def make_targets() -> set[str]:
    return set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))


def _script_and_its_benchmark_imports(script: Path) -> str:
    """A benchmark script's text and that of the benchmarks/ modules it imports (a shared argument parser)."""
    text = script.read_text()
    names = set(re.findall(r"^(?:from|import) (\w+)", text, re.M))
    modules = [p for p in (ROOT / "benchmarks").rglob("*.py") if p.stem in names]
    return "\n".join([text, *(p.read_text() for p in modules)])


def environment(argv: list[str]) -> tuple[dict[str, str], list[str]]:
    """``NAME=VALUE ... command args`` -> ({NAME: VALUE}, [command, args])."""
    env = {}
    while argv and re.fullmatch(r"[A-Z_][A-Z0-9_]*=\S*", argv[0]):
        name, _, value = argv[0].partition("=")
        env[name], argv = value, argv[1:]
    return env, argv


def check_line(line: str) -> str:
    """Check one shell line of the docs without running it; returns what was checked, in words."""
    env, argv = environment(shlex.split(line))
    for name in env:
        assert name.startswith("METAVOXEL_"), f"{line!r}: metavoxel reads no {name}"
    head = argv[0]
    assert head in COMMANDS, f"{line!r}: the docs' shell runs {COMMANDS}; teach tests/doc_shell.py {head!r}"
    if head == "metavoxel":
        parse_metavoxel(argv[1:])
        return "parses"
    if head == "make":
        makefile = (ROOT / "Makefile").read_text()
        for word in argv[1:]:
            name, eq, _ = word.partition("=")
            if eq:
                assert f"$({name})" in makefile, f"{line!r}: the Makefile does not read {name}"
            else:
                assert word in make_targets(), f"{line!r}: the Makefile has no target {word!r}"
        return "the Makefile has it"
    if head == "torchrun":
        assert argv[argv.index("-m") + 1] == "metavoxel", line
        parse_metavoxel(argv[argv.index("-m") + 2:])
        return "its metavoxel command parses (no GPUs here)"
    if head == "python" and argv[1].startswith("benchmarks/"):
        script = _script_and_its_benchmark_imports(ROOT / argv[1])
        for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
            assert f'"{flag}"' in script, f"{line!r}: {argv[1]} takes no {flag}"
        return "the script exists and takes its flags"
    if head == "pip" and argv[1:2] == ["install"] and argv[2].startswith("metavoxel["):
        extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
        for extra in argv[2][len("metavoxel["):-1].split(","):
            assert extra in extras, f"{line!r}: metavoxel has no extra {extra!r}"
        return "the extra exists"
    if head in EXTERNAL:
        return f"not metavoxel's: {EXTERNAL[head]}"
    return "run by its page's own test"


def extra_installed(extra: str) -> bool:
    """Every requirement of metavoxel's optional extra ``extra`` is installed."""
    requirements = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][extra]
    try:
        for requirement in requirements:
            md.version(re.split(r"[<>=!~\[ ;]", requirement, maxsplit=1)[0])
    except md.PackageNotFoundError:
        return False
    return True


# -- the Python blocks' names -----------------------------------------------------------------------------------
def shrink(source: str) -> ast.Module:
    """The block with every ``steps=N`` keyword set to 2: the default suite runs it at a test's budget."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "steps":
            node.value = ast.Constant(2)
    return ast.fix_missing_locations(tree)


def given(names: str) -> dict[str, Any]:
    """The objects a ``python given=...`` block assumes: ``model`` (an untrained toy model with the level
    mixture), ``ages``/``groups`` (4 subjects' values for it), ``my_spec`` (the README's starting spec as a
    mapping)."""
    import torch

    import metavoxel as mv
    from metavoxel.presets import RECOMMENDED_TRAINING
    from metavoxel.toy import TOY_SPEC

    def model():
        torch.manual_seed(0)
        spec = {**TOY_SPEC, "diffusion": {**TOY_SPEC["diffusion"], "sampling_steps": 3,
                                          "training": dict(RECOMMENDED_TRAINING)}}
        return mv.JointModel(spec)

    makers: dict[str, Callable[[], Any]] = {
        "model": model,
        "ages": lambda: torch.tensor([45.0, 60.0, 75.0, 90.0]),
        "groups": lambda: ["A", "B", "A", "C"],
        "my_spec": lambda: yaml.safe_load((ROOT / "schemas/examples/t1w_age_sex_latent.yaml").read_text()),
    }
    unknown = set(filter(None, names.split(","))) - set(makers)
    assert not unknown, f"given= names {sorted(unknown)} that tests/doc_shell.py does not provide ({sorted(makers)})"
    return {name: makers[name]() for name in filter(None, names.split(","))}


def run_python(block: Block, *, imports_only: bool = False) -> dict[str, Any]:
    """Execute a ``python`` block at the test budget (`shrink`), or only its imports; returns its namespace."""
    tree = shrink(block.body)
    if imports_only:
        tree.body = [node for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    namespace = {"__name__": "__doc_block__", **({} if imports_only else given(block.info.get("given", "")))}
    exec(compile(tree, str(block), "exec"), namespace)
    return namespace


# -- fixtures and the shell ------------------------------------------------------------------------------------
class Fixtures:
    """Inputs the docs name, built once in ``store`` and copied into a workspace when a command reads them."""

    def __init__(self, store: Path):
        self.store = store
        self.makers: dict[str, Callable[[Path], None]] = {
            "spec.yaml": self._spec, "cohort.tsv": self._cohort, "test.tsv": self._cohort, "t20.tsv": self._cohort,
            "scan.nii.gz": self._scan, "keep.nii.gz": self._scan, "runs/vae": self._trained,
            "runs/joint": self._trained,
            "bundles/brain_image_synthesis_latent_diffusion_model": self._bundles,
            "bundles/maisi_ct_generative": self._bundles,
        }
        self.needs = {"cohort.tsv": ["images"], "test.tsv": ["images"], "t20.tsv": ["images"]}

    def provide(self, name: str, workspace: Path) -> bool:
        """Copy fixture ``name`` (and what it needs) into ``workspace`` unless it is there; False if none."""
        key = name.rstrip("/")
        if key not in self.makers:
            return False
        for part in [key, *self.needs.get(key, [])]:
            target, source = workspace / part, self.store / part
            if target.exists():
                continue
            if not source.exists():
                self.makers[key](self.store)
            if target == source:  # a maker asking for another fixture in the store itself: made in place
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            (shutil.copytree if source.is_dir() else shutil.copy2)(source, target)
        return True

    @staticmethod
    def _spec(store: Path) -> None:
        """The README's starting spec with its recipe as written and its sizes shrunk (16³ scans of 1 mm)."""
        spec = yaml.safe_load((ROOT / "schemas/examples/t1w_age_sex_latent.yaml").read_text())
        image = spec["variables"][0]
        image.update(shape=[16, 16, 16], weights="runs/vae",
                     preprocess={**image["preprocess"], "spacing": [1.0, 1.0, 1.0]},
                     vae={**image["vae"], "channels": [8, 8], "latent_channels": 2, "num_res_blocks": 1,
                          "norm_num_groups": 4})
        spec["network"].update(channels=[8, 16], attention_levels=[False, True], num_res_blocks=1, num_head_channels=8,
                               norm_num_groups=4, cross_attention_dim=16)
        spec["diffusion"].update(timesteps=50, sampling_steps=3)
        spec["data"] = {"split": {"val": 0.25, "test": 0.25, "seed": 0}}
        (store / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))

    @staticmethod
    def _cohort(store: Path) -> None:
        """12 subjects: 16³ blobs whose radius grows with age, age and sex in a table (three names, one table)."""
        import nibabel as nib
        import numpy as np

        rng = np.random.default_rng(0)
        grid = np.stack(np.meshgrid(*[np.arange(16.0)] * 3, indexing="ij"))
        (store / "images").mkdir(parents=True, exist_ok=True)
        rows = []
        for i in range(12):
            age, sex = round(float(rng.uniform(40, 95)), 1), "FM"[i % 2]
            blob = np.exp(-((grid - 7.5) ** 2).sum(0) / (2 * (3 + 3 * (age - 40) / 55) ** 2))
            blob = (blob + 0.02 * rng.standard_normal(blob.shape)).astype(np.float32)
            nib.save(nib.Nifti1Image(blob, np.eye(4)), store / "images" / f"sub-{i:02d}_T1w.nii.gz")
            rows.append({"participant_id": f"sub-{i:02d}", "age": f"{age:.1f}", "sex": sex,
                         "image": f"images/sub-{i:02d}_T1w.nii.gz"})
        for name in ("cohort.tsv", "test.tsv", "t20.tsv"):
            with (store / name).open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]), delimiter="\t")
                writer.writeheader()
                writer.writerows(rows)

    def _scan(self, store: Path) -> None:
        import nibabel as nib
        import numpy as np

        self.provide("cohort.tsv", store)
        shutil.copy2(store / "images" / "sub-00_T1w.nii.gz", store / "scan.nii.gz")
        keep = np.zeros((16, 16, 16), np.uint8)
        keep[:8] = 1  # the left half (RAS: low x)
        nib.save(nib.Nifti1Image(keep, np.eye(4)), store / "keep.nii.gz")

    def _trained(self, store: Path) -> None:
        """``runs/vae`` and ``runs/joint`` as the README makes them, 2 training steps each."""
        from metavoxel.cli import run

        for name in ("spec.yaml", "cohort.tsv"):
            self.provide(name, store)
        before = os.getcwd()
        os.chdir(store)
        try:
            for args in (["train-vae", "--spec", "spec.yaml", "--data", "cohort.tsv", "--out", "runs/vae",
                          *BUDGET["train-vae"]],
                         ["train", "--spec", "spec.yaml", "--data", "cohort.tsv", "--out", "runs/joint",
                          *BUDGET["train"]]):
                assert run(args) == 0, f"fixture: metavoxel {shlex.join(args)} failed"
        finally:
            os.chdir(before)

    @staticmethod
    def _bundles(store: Path) -> None:
        sys.path.insert(0, str(ROOT / "tests"))
        from monai_bundles import core_bundle, maisi_bundle

        core_bundle(store / "bundles" / "brain_image_synthesis_latent_diffusion_model")
        maisi_bundle(store / "bundles" / "maisi_ct_generative")


class Shell:
    """Runs the docs' shell lines in ``root``; each command it knows is run for real or emulated.

    ``pip install -e DIR`` is emulated without touching the environment: a ``.dist-info`` (METADATA and the entry
    points from DIR's pyproject.toml) is written to a temporary site folder, which goes on ``sys.path`` (and
    ``PYTHONPATH`` for subprocesses) with the package roots that pyproject declares — what an editable install
    amounts to. The plugin is then discovered through the real entry-point machinery.
    """

    def __init__(self, root: Path, monkeypatch, capsys, fixtures: Fixtures | None = None):
        self.root, self.monkeypatch, self.capsys, self.fixtures = root, monkeypatch, capsys, fixtures
        self.pythonpath: list[str] = []
        self.outputs: dict[str, str] = {}
        self.extras: list[str] = []
        self.checked: dict[str, str] = {}  # lines checked without running them -> what was checked

    def run(self, line: str, *, expect_code: int = 0) -> str:
        env, argv = environment(shlex.split(line))
        for name, value in env.items():
            self.monkeypatch.setenv(name, value)
        handlers = {"mkdir": self.mkdir, "pip": self.pip, "metavoxel": self.metavoxel, "pytest": self.pytest,
                    "python": self.python}
        assert argv[0] in COMMANDS, f"{line!r}: teach tests/doc_shell.py to run {argv[0]!r}"
        if argv[0] not in handlers or self._cannot_run(argv):
            self.checked[line] = check_line(line)
            return ""
        if argv[0] == "metavoxel":
            self.outputs[line] = self.metavoxel(argv[1:], expect_code=expect_code)
        else:
            self.outputs[line] = handlers[argv[0]](argv[1:])
        for name in env:
            self.monkeypatch.delenv(name)
        return self.outputs[line]

    @staticmethod
    def _cannot_run(argv: list[str]) -> bool:
        """metavoxel demo (10 minutes), benchmark scripts (an hour), pip of metavoxel's extras (downloads), and a
        line with a flag whose extra is not installed here."""
        return (argv[:2] == ["metavoxel", "demo"] or (argv[0] == "python" and argv[1].startswith("benchmarks/"))
                or (argv[0] == "pip" and argv[2].startswith("metavoxel["))
                or any(not extra_installed(EXTRA_FLAGS[flag]) for flag in argv if flag in EXTRA_FLAGS))

    def mkdir(self, args: list[str]) -> str:
        assert args[0] == "-p"
        for path in args[1:]:
            (self.root / path).mkdir(parents=True, exist_ok=True)
        return ""

    def pip(self, args: list[str]) -> str:
        assert args[:2] == ["install", "-e"] and len(args) == 3, f"unsupported pip command {args}"
        from metavoxel.plugins import registry as plugin_registry

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

    def metavoxel(self, args: list[str], *, expect_code: int = 0) -> str:
        from metavoxel.cli import run

        args = [*args, *(flag for flag in self._budget(args))]
        if self.fixtures is not None:
            for i, word in enumerate(args):
                if i and args[i - 1] in OUTPUTS:
                    continue
                for path in (word, word.partition("=")[2]):
                    if path and not (self.root / path).exists():
                        self.fixtures.provide(path, self.root)
            if args[0] in ("encode", "train") and "--spec" in args:  # the spec's weights: the README's runs/vae
                self.fixtures.provide("runs/vae", self.root)
        self.capsys.readouterr()
        code = run(args)
        captured = self.capsys.readouterr()
        assert code == expect_code, f"metavoxel {shlex.join(args)} exited {code}, not {expect_code}:\n{captured.err}"
        return captured.out + captured.err

    @staticmethod
    def _budget(args: list[str]) -> list[str]:
        extra = list(BUDGET.get(args[0], ()))
        flags = [extra[i:i + 2] for i in range(0, len(extra), 2)]
        return [word for flag in flags if flag[0] not in args for word in flag]

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


def check_data_block(block: Block) -> None:
    """A ``yaml``/``toml``/``json`` block parses; a YAML mapping of spec sections validates inside a spec."""
    if block.lang == "toml":
        tomllib.loads(block.body)
        return
    if block.lang == "json":
        json.loads(block.body)
        return
    data = yaml.safe_load(block.body)
    sections = {"variables", "diffusion", "network", "data", "seed", "name"}
    if isinstance(data, dict) and set(data) <= sections and "recommended" not in block.info:
        import metavoxel as mv

        spec = yaml.safe_load((ROOT / "schemas/examples/t1w_age_sex_latent.yaml").read_text())
        spec["variables"][0]["weights"] = None  # the example's VAE folder is the user's
        for key, value in data.items():
            spec[key] = {**spec[key], **value} if isinstance(value, dict) and isinstance(spec.get(key), dict) else value
        mv.ModelSpec.from_dict(spec)
