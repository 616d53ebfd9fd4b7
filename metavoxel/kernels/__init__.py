"""Fused kernels (Triton on CUDA, PyTorch reference elsewhere). Imports only torch, triton and the
dependency-free `metavoxel.errors` (`KernelUnavailable` and `UnknownBackend` are `metavoxel.KernelError`s).

Public ops, each beside its readable PyTorch reference (the specification):

- `attention` / `attention_reference`: flash attention forward and backward for the U-Net.
- `q_sample` / `q_sample_reference`: noising of every variable of a batch in one launch.
- `ddim_repaint_step` / `ddim_repaint_step_reference`: DDIM update fused with the RePaint overwrite.
- `categorical_step` / `categorical_step_reference`: k-step posterior, Gumbel-max sample and RePaint
  re-noising of categorical variables.

Multi-variable calls use row packing (`RowLayout`, see `metavoxel.kernels.rows`). Triton itself is
imported only when a Triton kernel is about to run.
"""

from metavoxel.kernels.attention import attention, attention_reference
from metavoxel.kernels.categorical import categorical_step, categorical_step_reference
from metavoxel.errors import KernelError
from metavoxel.kernels.dispatch import BACKENDS, KernelUnavailable, UnknownBackend, requested_backend
from metavoxel.kernels.noising import q_sample, q_sample_reference
from metavoxel.kernels.rows import RowLayout
from metavoxel.kernels.sampler import ddim_repaint_step, ddim_repaint_step_reference

__all__ = [
    "BACKENDS",
    "KernelError",
    "KernelUnavailable",
    "RowLayout",
    "attention",
    "attention_reference",
    "categorical_step",
    "categorical_step_reference",
    "ddim_repaint_step",
    "ddim_repaint_step_reference",
    "q_sample",
    "q_sample_reference",
    "requested_backend",
    "UnknownBackend",
]
