"""The kernel benchmarks parse their arguments, refuse to run without CUDA, and the kernels compile for sm_90."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks" / "kernels"
SCRIPTS = ["bench_attention.py", "bench_noising.py", "bench_sampler.py"]


def _run(script: str, *args: str, env: dict | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(BENCHMARKS / script), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("script", SCRIPTS + ["compile_check.py"])
def test_help_parses_without_a_gpu(script):
    result = _run(script, "--help")
    assert result.returncode == 0, result.stderr
    assert "--quick" in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message printed when CUDA is missing")
@pytest.mark.parametrize("script", SCRIPTS)
def test_without_cuda_exits_with_a_clear_message(script):
    result = _run(script, "--quick")
    assert result.returncode == 2
    assert "no CUDA device" in result.stderr and "--dry-run" in result.stderr


def test_attention_benchmark_dry_run_prints_its_tables(interpreter):
    result = _run("bench_attention.py", "--dry-run", "--passes", "fwd+bwd", "--kinds", "cross")
    assert result.returncode == 0, result.stderr
    assert "### cross-attention, fwd+bwd" in result.stdout
    assert "| tiny | 2 | 2x16 | 40 | 8 |" in result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", ["bench_noising.py", "bench_sampler.py"])
def test_elementwise_benchmark_dry_runs(interpreter, script):
    result = _run(script, "--dry-run", timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| 2 | 1016 |" in result.stdout


def test_kernels_compile_for_sm90(interpreter):
    """Every kernel compiles to a cubin for sm_90 within the shared-memory limit (no GPU needed)."""
    result = _run("compile_check.py", "--quick", "--arch", "90", timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert ", 0 failures" in result.stdout


@pytest.mark.slow
def test_every_configuration_compiles_for_sm80_and_sm90(interpreter):
    result = _run("compile_check.py", "--arch", "80", "--arch", "90", timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
