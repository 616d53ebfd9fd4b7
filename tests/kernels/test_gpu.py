"""Compiled kernels on a real GPU (skipped without CUDA): runs gpu_check.py in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

CHECK = Path(__file__).with_name("gpu_check.py")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_compiled_kernels_match_references_on_cuda(interpreter):
    result = subprocess.run([sys.executable, str(CHECK)], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


def test_gpu_check_script_runs_in_the_interpreter(interpreter):
    """The same script on CPU tensors in the interpreter, so it stays runnable where no GPU is."""
    result = subprocess.run([sys.executable, str(CHECK), "--device", "cpu"], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
