"""Benchmark metavoxel's Triton flash attention against torch SDPA and each SDPA backend on the U-Net's shapes.

Self-attention over the latent voxels at each latent level of the 4x24x28x24 latent (sequence 16128, 2016,
252) and cross-attention from those voxels to a few scalar tokens; forward and forward+backward; batch
sizes 1-32. Prints one markdown table per (attention kind, pass) with the time of every provider side by
side, the ratio of each to the Triton kernel, the Triton kernel's TFLOP/s and its fraction of the bf16
matmul rate measured in the same run, and which backend SDPA picks by default.

Example: python benchmarks/kernels/bench_attention.py --quick
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from harness import LEVELS, Timer, device_or_exit, emit, header, markdown_table, measure_peaks, parser, ratio, try_time

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
SDPA_BACKENDS = ("flash", "efficient", "cudnn", "math")


def _heads_dims(text: str) -> tuple[tuple[int, int], ...]:
    try:
        return tuple(tuple(int(x) for x in item.split("x")) for item in text.split(","))  # type: ignore[misc]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxD pairs like 4x32,8x64, got {text!r}") from None


def _sdpa_backend(name: str):
    from torch.nn.attention import SDPBackend

    return {
        "flash": SDPBackend.FLASH_ATTENTION,
        "efficient": SDPBackend.EFFICIENT_ATTENTION,
        "cudnn": SDPBackend.CUDNN_ATTENTION,
        "math": SDPBackend.MATH,
    }[name]


def sdpa_default(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """The backend SDPA picks for these inputs when left to itself."""
    try:
        from torch.nn.attention import SDPBackend

        return SDPBackend(torch._fused_sdp_choice(q, k, v)).name.lower().replace("_attention", "")
    except Exception as exc:  # noqa: BLE001  (private API; report rather than fail)
        return f"unknown ({type(exc).__name__})"


def providers(attention: Callable) -> dict[str, Callable]:
    """name -> f(q, k, v) for every implementation compared."""
    from torch.nn.attention import sdpa_kernel

    def forced(name: str) -> Callable:
        backend = _sdpa_backend(name)

        def run(q, k, v):
            with sdpa_kernel([backend]):
                return F.scaled_dot_product_attention(q, k, v)

        return run

    out = {"triton": lambda q, k, v: attention(q, k, v, backend="triton"),
           "sdpa": lambda q, k, v: F.scaled_dot_product_attention(q, k, v)}
    out.update({f"sdpa {n}": forced(n) for n in SDPA_BACKENDS})
    return out


def _math_fits(b: int, h: int, n: int, m: int, device: torch.device) -> bool:
    """Whether the math backend's (B, H, N, M) float32 logits and their gradient fit in free memory."""
    if device.type != "cuda":
        return True
    free, _ = torch.cuda.mem_get_info(device)
    return 3 * b * h * n * m * 4 < 0.8 * free


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--heads-dims", type=_heads_dims, default=((4, 32), (8, 64)), help="HxD pairs, default 4x32,8x64")
    p.add_argument("--tokens", type=int, default=8, help="keys of the cross-attention to scalar tokens (default 8)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bf16")
    p.add_argument("--kinds", default="self,cross", help="self, cross or both (default self,cross)")
    p.add_argument("--passes", default="fwd,fwd+bwd", help="fwd, fwd+bwd or both (default both)")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # run the kernel in the interpreter on CPU
    device = device_or_exit(args)

    from metavoxel.kernels import attention  # after argument parsing, so --help stays fast

    levels = dict(LEVELS)
    batch_sizes = args.batch_sizes
    heads_dims = args.heads_dims
    if args.quick:
        levels = {k: v for k, v in LEVELS.items() if v < 10_000}
        batch_sizes = tuple(b for b in batch_sizes if b in (1, 8)) or batch_sizes[:1]
    if args.dry_run:
        levels, batch_sizes, heads_dims = {"tiny": 40}, (1, 2), ((2, 16),)
    dtype = DTYPES[args.dtype]
    timer = Timer(device, args.warmup, args.reps)
    peaks = measure_peaks(device, timer)
    impls = providers(attention)
    names = list(impls)

    report = [header(f"Attention ({args.dtype})", device, peaks, timer, notes=[
        "ratio columns: provider time / triton time (> 1 means the Triton kernel is faster)",
        "FLOPs: 4·B·H·N·M·d forward, 2.5x that backward (the recomputation in the backward is not counted)",
        f"cross-attention: {args.tokens} keys",
    ])]
    for kind in args.kinds.split(","):
        for pass_ in args.passes.split(","):
            rows = []
            for level, n in levels.items():
                m = n if kind == "self" else args.tokens
                for h, d in heads_dims:
                    for b in batch_sizes:
                        rows.append(_row(impls, names, kind, pass_, level, b, h, n, m, d, dtype, device, timer, peaks))
            columns = ["level", "B", "HxD", "N", "M", *[f"{x} ms" for x in names],
                       *[f"{x} / triton" for x in names[1:]], "triton TFLOP/s", "% bf16 peak",
                       "sdpa picks", "max |triton - sdpa|"]
            report.append(f"### {kind}-attention, {pass_}\n\n" + markdown_table(columns, rows))
    emit("\n".join(report), args.append)


def _row(impls, names, kind, pass_, level, b, h, n, m, d, dtype, device, timer, peaks) -> list:
    gen = torch.Generator(device=device).manual_seed(0)
    q = torch.randn(b, h, n, d, device=device, dtype=dtype, generator=gen)
    k = torch.randn(b, h, m, d, device=device, dtype=dtype, generator=gen)
    v = torch.randn(b, h, m, d, device=device, dtype=dtype, generator=gen)
    grad = torch.randn_like(q)
    backward = pass_ == "fwd+bwd"
    if backward:
        q, k, v = (t.requires_grad_() for t in (q, k, v))

    def timed(fn: Callable) -> float | str:
        if backward:
            return try_time(timer, lambda: torch.autograd.grad(fn(q, k, v), (q, k, v), grad))
        with torch.no_grad():
            return try_time(timer, lambda: fn(q, k, v))

    times = {}
    for name in names:
        if name == "sdpa math" and not _math_fits(b, h, n, m, device):
            times[name] = "skipped (memory)"
            continue
        times[name] = timed(impls[name])
    with torch.no_grad():
        try:
            err = float((impls["triton"](q, k, v).float() - F.scaled_dot_product_attention(q, k, v).float()).abs().max())
        except Exception as exc:  # noqa: BLE001
            err = f"n/a ({type(exc).__name__})"
        picks = sdpa_default(q, k, v)
    flops = 4 * b * h * n * m * d * (3.5 if backward else 1.0)
    tri = times["triton"]
    tflops = flops / tri / 1e9 if isinstance(tri, float) else "-"
    frac = 100 * tflops / peaks.bf16_tflops if isinstance(tflops, float) else "-"
    return [level, b, f"{h}x{d}", n, m, *[times[x] for x in names],
            *[ratio(times[x], tri) for x in names[1:]], tflops, frac, picks, err]


if __name__ == "__main__":
    main(sys.argv[1:])
