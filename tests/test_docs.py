"""README.md and docs/*.md as tests: every command and code block in them runs, so none can go stale.

How each kind of block is run, and what is checked where it cannot run here, is in tests/doc_shell.py. The
default suite checks every block cheaply: each shell line parses (or is checked for what can be checked), each
Python block runs at a test's budget (or, for the few that take seconds even so, its imports), each data block parses and a spec piece validates, each link resolves. The
slow suite (``make test-all``) runs every page's shell and console lines in order in a workspace of fixtures,
its Python blocks, and the benchmark scripts' ``--help``. docs/plugins.md's tutorial runs in
tests/testing/test_plugin_docs.py with the same harness.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
import torch
from doc_shell import (ROOT, Block, Fixtures, Shell, blocks, check_data_block, check_line, console_steps, pages,
                       run_python, shell_lines)

LANGS = {"bash", "console", "python", "yaml", "toml", "json", "text", ""}
TUTORIAL = "docs/plugins.md"  # its shell lines and python blocks need the plugin it builds: its own test runs them


def _all(*langs: str, pages_=None) -> list[Block]:
    return [b for page in (pages_ or pages()) for b in blocks(page) if b.lang in langs]


def _ids(found: list[Block]) -> list[str]:
    return [f"{b.page}:{b.line}" for b in found]


def test_every_block_is_of_a_kind_the_harness_knows_and_no_command_hides_in_text():
    for page in pages():
        for block in blocks(page):
            assert block.lang in LANGS, f"{block}: teach tests/doc_shell.py this language, or write it as text"
            if block.lang in ("text", "") and "synopsis" not in block.info:
                first = block.body.lstrip().split("\n", 1)[0]
                assert not re.match(r"(\$ )?(metavoxel|python|make|pip) ", first), \
                    f"{block}: a command in a text block is never run; write it as bash (or console with output)"


@pytest.mark.parametrize("page", pages())
def test_every_shell_line_parses_or_is_checked_for_what_can_be(page):
    lines = [line for b in blocks(page) if b.lang == "bash" for line in shell_lines(b.body)]
    lines += [command for b in blocks(page) if b.lang == "console" for command, _ in console_steps(b.body)]
    for line in lines:
        check_line(line)


SYNOPSES = [b for b in _all("text") if "synopsis" in b.info]


@pytest.mark.parametrize("block", SYNOPSES, ids=_ids(SYNOPSES))
def test_a_synopsis_names_a_command_and_flags_it_takes(block):
    import typer

    from metavoxel.cli.main import app

    words = block.body.split()
    assert words[0] == "metavoxel", f"{block}: a synopsis of a metavoxel command"
    command = typer.main.get_command(app).commands[words[1]]
    takes = {opt for param in command.params for opt in param.opts}
    assert set(re.findall(r"--[\w-]+", block.body)) <= takes, f"{block}: flags {command.name} does not take"


def test_a_flag_a_command_does_not_take_is_caught():
    with pytest.raises(AssertionError, match="No such option: --sample"):
        check_line("metavoxel predict --model runs/joint --data cohort.tsv --target age --sample 3")
    with pytest.raises(AssertionError, match="no target 'deploy'"):
        check_line("make deploy")
    with pytest.raises(AssertionError, match="takes no --fast"):
        check_line("python benchmarks/paper/run.py --fast")


PYTHON = [b for b in _all("python") if "file" not in b.info and b.page != TUTORIAL]


@pytest.mark.parametrize("block", PYTHON, ids=_ids(PYTHON))
def test_python_blocks_run(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_python(block, imports_only="slow" in block.info)
    finally:
        torch.set_num_threads(threads)


DATA = _all("yaml", "toml", "json")


@pytest.mark.parametrize("block", DATA, ids=_ids(DATA))
def test_data_blocks_parse_and_spec_pieces_validate(block):
    if "file" in block.info:  # written by the tutorial, whose plugin kind only its own test installs
        block = Block(block.page, block.line, block.lang, {"file": ""}, block.body)
        import yaml

        {"toml": __import__("tomllib").loads, "yaml": yaml.safe_load}.get(block.lang, __import__("json").loads)(
            block.body)
        return
    check_data_block(block)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation but '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"[`*]", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", path.read_text(), flags=re.M | re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


@pytest.mark.parametrize("page", [*pages(), "benchmarks/RESULTS.md", "benchmarks/RESULTS-archive.md"])
def test_every_relative_link_and_anchor_resolves(page):
    source = ROOT / page
    text = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", source.read_text(), flags=re.M | re.S)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        resolved = (source.parent / path) if path else source
        assert resolved.exists(), f"{page}: the link {target!r} names no file"
        if anchor:
            assert anchor in _anchors(resolved), f"{page}: {target!r}: {path or page} has no heading {anchor!r}"


# -- the slow suite: every page's lines run ------------------------------------------------------------------
@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return Fixtures(tmp_path_factory.mktemp("doc-fixtures"))


RUNNABLE = [p for p in pages() if p != TUTORIAL and any(b.lang in ("bash", "console", "python") for b in blocks(p))]


@pytest.mark.slow
@pytest.mark.parametrize("page", RUNNABLE)
def test_every_line_of_the_page_runs_in_order(page, fixtures, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "240")
    shell = Shell(tmp_path, monkeypatch, capsys, fixtures)
    for block in blocks(page):
        if block.lang == "bash":
            for line in shell_lines(block.body):
                shell.run(line)
        elif block.lang == "console":
            for command, printed in console_steps(block.body):
                out = shell.run(command, expect_code=2 if printed and printed[0].startswith("error:") else 0)
                said = " ".join(out.split())
                for expected in printed:
                    assert " ".join(expected.split()) in said, f"{block}: {command!r} printed {out!r}"
        elif block.lang == "python" and "file" not in block.info:
            run_python(block)


BENCHMARKS = sorted({line for b in _all("bash") for line in shell_lines(b.body)
                     if line.startswith("python benchmarks/")})


@pytest.mark.slow
@pytest.mark.parametrize("line", BENCHMARKS)
def test_benchmark_scripts_take_the_flags_the_docs_give(line):
    argv = shlex.split(line)
    done = subprocess.run([sys.executable, argv[1], "--help"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    for flag in (a.split("=")[0] for a in argv[2:] if a.startswith("--")):
        assert flag in done.stdout, f"{argv[1]} --help does not list {flag}"


def test_results_keeps_one_current_section_per_benchmark_in_under_500_lines():
    text = (ROOT / "benchmarks" / "RESULTS.md").read_text()
    assert len(text.splitlines()) < 500, "move superseded runs to benchmarks/RESULTS-archive.md"
    index = text.split("\n## ", 1)[0]
    for title in re.findall(r"^## (.+)$", text, re.M):
        assert f"(#{_slug(title)})" in index, f"RESULTS.md's index has no row for {title!r}"
