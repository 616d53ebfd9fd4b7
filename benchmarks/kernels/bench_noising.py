"""Benchmark the fused noising kernel (q_sample of every Gaussian variable in one launch) against eager PyTorch.

A record batch holds the 4x24x28x24 image latent and a few scalar variables; each variable is noised to its
sample's timestep with noise drawn in the same call. Providers: the Triton kernel on a pre-packed (B, F)
buffer and on a list of tensors (which adds the packing copy), the eager per-variable loop
(`q_sample_reference` + torch.randn), and torch.compile of that loop. Bandwidth counts the ideal traffic:
read x0, write x_t and eps.

Example: python benchmarks/kernels/bench_noising.py --quick
"""

from __future__ import annotations

import os
import sys

import torch

from harness import (Timer, compiled, device_or_exit, emit, gaussian_variables, header, markdown_table,
                     measure_peaks, parser, ratio, try_time)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--scalars", type=int, default=8, help="scalar Gaussian variables beside the latent (default 8)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = device_or_exit(args)

    from metavoxel.kernels import q_sample, q_sample_reference

    dtype = DTYPES[args.dtype]
    batch_sizes = args.batch_sizes if not args.quick else tuple(b for b in args.batch_sizes if b in (1, 8))
    latent = (4, 6, 7, 6) if args.dry_run else (4, 24, 28, 24)
    if args.dry_run:
        batch_sizes = (1, 2)
    timer = Timer(device, args.warmup, args.reps)
    peaks = measure_peaks(device, timer)

    def eager(x0, abar):
        noise = [torch.randn_like(x) for x in x0]
        return [q_sample_reference(x, abar, e) for x, e in zip(x0, noise)], noise

    eager_compiled = compiled(eager)
    rows = []
    for b in batch_sizes:
        gen = torch.Generator(device=device).manual_seed(b)
        x0 = gaussian_variables(b, args.scalars, device, dtype, gen, latent)
        abar = torch.rand(b, device=device, generator=gen)
        packed = torch.cat([x.reshape(b, -1) for x in x0], dim=1)  # (B, F)
        splits = [x[0].numel() for x in x0]
        providers = {
            "triton packed": lambda: q_sample(packed, abar, splits=splits, backend="triton"),
            "triton lists": lambda: q_sample(x0, abar, backend="triton"),
            "eager": lambda: eager(x0, abar),
            "compile": lambda: eager_compiled(x0, abar),
        }
        with torch.no_grad():
            times = {name: try_time(timer, fn) for name, fn in providers.items()}
        nbytes = 3 * packed.numel() * packed.element_size()
        tri = times["triton packed"]
        gbps = {n: (nbytes / t / 1e6 if isinstance(t, float) else "-") for n, t in times.items()}
        frac = 100 * gbps["triton packed"] / peaks.copy_gbps if isinstance(tri, float) else "-"
        rows.append([b, packed.shape[1], len(x0), *times.values(), *[ratio(times[n], tri) for n in list(times)[1:]],
                     *gbps.values(), frac])
    names = ["triton packed", "triton lists", "eager", "compile"]
    columns = ["B", "F", "variables", *[f"{n} ms" for n in names], *[f"{n} / triton packed" for n in names[1:]],
               *[f"{n} GB/s" for n in names], "% copy peak (triton packed)"]
    text = header(f"Noising q_sample ({args.dtype})", device, peaks, timer, notes=[
        "ratio columns: provider time / triton packed time (> 1 means the Triton kernel is faster)",
        "GB/s: ideal bytes (read x0, write x_t and eps) / time, for every provider",
    ]) + "\n" + markdown_table(columns, rows)
    emit(text, args.append)


if __name__ == "__main__":
    main(sys.argv[1:])
