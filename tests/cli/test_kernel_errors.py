"""Kernel backend errors are metavoxel errors: one line on the CLI, exit code 2, no traceback."""

from __future__ import annotations

import pytest
from tiny_runs import write_run
from tiny_specs import tiny_spec_2d

import metavoxel as mv
from metavoxel.cli import run
from metavoxel.kernels import KernelUnavailable, UnknownBackend


def test_kernel_errors_are_metavoxel_errors_with_exit_code_2():
    assert issubclass(KernelUnavailable, mv.KernelError) and issubclass(UnknownBackend, mv.KernelError)
    assert issubclass(mv.KernelError, mv.MetavoxelError) and mv.KernelError.exit_code == 2
    assert issubclass(UnknownBackend, ValueError)  # what callers caught before


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return write_run(tmp_path_factory.mktemp("kernel_run") / "run", tiny_spec_2d())


@pytest.mark.parametrize("backend, message", [
    ("triton", "CUDA tensors"),  # explicitly requested Triton on CPU tensors, no interpreter: KernelUnavailable
    ("fast", "kernel backend must be one of auto, triton, torch"),  # UnknownBackend
])
def test_sample_with_a_kernel_backend_that_cannot_run_is_one_line_exit_2(run_dir, tmp_path, capsys, monkeypatch,
                                                                         backend, message):
    monkeypatch.setenv("METAVOXEL_KERNELS", backend)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    monkeypatch.delenv("METAVOXEL_DEBUG", raising=False)
    assert run(["sample", "--model", str(run_dir), "--out", str(tmp_path / "s"), "--steps", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert not (tmp_path / "s" / "samples.json").exists()
