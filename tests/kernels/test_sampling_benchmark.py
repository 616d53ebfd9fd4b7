"""The end-to-end benchmark script runs (on CPU with --dry-run; its numbers are not checked)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("interpreter")
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "sampling.py"


def test_sampling_benchmark_dry_run_prints_both_tables(capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("bench_sampling", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(["--dry-run", "--subjects", "1", "--samples", "1"])
    out = capsys.readouterr().out
    assert "s/subject torch" in out and "s/subject triton" in out and "training steps/s" in out
    assert out.count("| torch |") == 1 and out.count("| triton |") == 1


def test_sampling_benchmark_without_gpu_exits_with_a_clear_message(capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    spec = importlib.util.spec_from_file_location("bench_sampling_nogpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(SystemExit) as exit_info:
        module.main([])
    assert exit_info.value.code == 2
    assert "no CUDA device" in capsys.readouterr().err
