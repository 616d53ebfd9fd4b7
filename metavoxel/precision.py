"""Where bf16 autocast runs on native kernels, checked where a training takes its ``precision``.

bf16 autocast is the default on CUDA. On the CPU oneDNN runs it natively only with bf16 instructions (AVX512-BF16 or
AMX); elsewhere it emulates bf16, slower than fp32, so a CPU training asked for bf16 there is refused with one line.
"""

from __future__ import annotations

import torch

from metavoxel.errors import InputError

__all__ = ["bf16_native", "check_bf16"]


def bf16_native(device: torch.device | str = "cpu") -> bool:
    """Whether bf16 autocast may run on ``device``: on CUDA (where it is the trainers' ``auto`` precision), and on the
    CPU only with AVX512-BF16 or AMX. Any other device: False."""
    device = torch.device(device)
    return device.type == "cuda" or (device.type == "cpu" and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))


def check_bf16(device: torch.device | str, fix: str) -> None:
    """Refuse bf16 autocast on a CPU without bf16 instructions (`bf16_native`).

    Raises:
        InputError: one line naming the precision and ``fix`` (e.g. "use precision 'fp32'").
    """
    if not bf16_native(device):
        raise InputError(f"precision 'bf16' needs a CUDA device or a CPU with bf16 instructions (AVX512-BF16 or AMX), "
                         f"and this {torch.device(device).type} has none; {fix}")
