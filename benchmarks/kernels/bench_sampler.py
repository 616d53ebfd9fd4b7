"""Benchmark the fused sampler step (DDIM update + RePaint overwrite of every Gaussian variable) against eager PyTorch.

State: the 4x24x28x24 image latent and a few scalar variables. Cases: plain DDIM (eta 0), stochastic DDIM
(eta 1), and RePaint inpainting (the latent known inside a spatial mask, half the scalars fixed).
Providers: the Triton kernel on pre-packed (B, F) rows (how a sampling loop keeps its state) and on lists
of tensors (adds packing copies), the eager per-variable loop (`ddim_repaint_step_reference` +
torch.randn), and torch.compile of that loop. Bandwidth counts the ideal traffic: read x_t, eps_hat (and
known with a mask), write x_s (and x0_hat with --return-x0); a batch-broadcast mask is not counted.

Example: python benchmarks/kernels/bench_sampler.py --quick
"""

from __future__ import annotations

import os
import sys

import torch

from harness import (Timer, compiled, device_or_exit, emit, gaussian_variables, header, markdown_table,
                     measure_peaks, parser, ratio, try_time)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CASES = {"ddim eta=0": (0.0, False), "ddim eta=1": (1.0, False), "repaint eta=0": (0.0, True)}


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--scalars", type=int, default=8, help="scalar Gaussian variables beside the latent (default 8)")
    p.add_argument("--dtype", choices=sorted(DTYPES), default="fp32")
    p.add_argument("--return-x0", action="store_true", help="also write x0_hat (the engine's summaries)")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
    device = device_or_exit(args)

    from metavoxel.kernels import RowLayout, ddim_repaint_step, ddim_repaint_step_reference

    dtype = DTYPES[args.dtype]
    batch_sizes = args.batch_sizes if not args.quick else tuple(b for b in args.batch_sizes if b in (1, 8))
    latent = (4, 6, 7, 6) if args.dry_run else (4, 24, 28, 24)
    if args.dry_run:
        batch_sizes = (1, 2)
    timer = Timer(device, args.warmup, args.reps)
    peaks = measure_peaks(device, timer)
    x0_flag = args.return_x0

    def eager(x_t, eps, a_t, a_s, eta, known, mask):
        outs = []
        for x, e, k, m in zip(x_t, eps, known, mask):
            z1 = torch.randn_like(x) if eta else None
            z2 = torch.randn_like(x) if m is not None else None
            outs.append(ddim_repaint_step_reference(x, e, a_t, a_s, eta=eta, known=k, mask=m, z1=z1, z2=z2))
        return outs

    eager_compiled = compiled(eager)
    names = ["triton packed", "triton lists", "eager", "compile"]
    report = [header(f"Sampler step ddim_repaint_step ({args.dtype}{', x0_hat' if x0_flag else ''})", device,
                     peaks, timer, notes=[
                         "ratio columns: provider time / triton packed time (> 1 means the Triton kernel is faster)",
                         "GB/s: ideal bytes / time, for every provider",
                     ])]
    for case, (eta, masked) in CASES.items():
        rows = []
        for b in batch_sizes:
            gen = torch.Generator(device=device).manual_seed(b)
            x_t = gaussian_variables(b, args.scalars, device, dtype, gen, latent)
            eps = gaussian_variables(b, args.scalars, device, dtype, gen, latent)
            known = gaussian_variables(b, args.scalars, device, dtype, gen, latent)
            a_t = torch.rand(b, device=device, generator=gen) * 0.5 + 0.1
            a_s = a_t + 0.3
            layout = RowLayout.of(x_t)
            if masked:
                spatial = (torch.rand(1, 1, *latent[1:], device=device, generator=gen) > 0.5).to(dtype)
                mask = [spatial] + [torch.ones(b, 1, device=device, dtype=dtype) if i % 2 else None
                                    for i in range(args.scalars)]
                mask_rows = layout.pack([m.expand_as(x) if m is not None else torch.zeros_like(x)
                                         for m, x in zip(mask, x_t)])[:1]  # (1, F): the same for every record
                known_rows = layout.pack(known)
            else:
                mask, known, mask_rows, known_rows = [None] * len(x_t), None, None, None
            x_rows, eps_rows = layout.pack(x_t), layout.pack(eps)
            providers = {
                "triton packed": lambda: ddim_repaint_step(
                    x_rows, eps_rows, a_t, a_s, eta=eta, known=known_rows, mask=mask_rows, splits=layout.sizes,
                    return_x0=x0_flag, backend="triton"),
                "triton lists": lambda: ddim_repaint_step(
                    x_t, eps, a_t, a_s, eta=eta, known=known, mask=mask if masked else None, return_x0=x0_flag,
                    backend="triton"),
                "eager": lambda: eager(x_t, eps, a_t, a_s, eta, known or [None] * len(x_t), mask),
                "compile": lambda: eager_compiled(x_t, eps, a_t, a_s, eta, known or [None] * len(x_t), mask),
            }
            with torch.no_grad():
                times = {name: try_time(timer, fn) for name, fn in providers.items()}
            streams = 3 + (1 if masked else 0) + (1 if x0_flag else 0)
            nbytes = streams * x_rows.numel() * x_rows.element_size()
            tri = times["triton packed"]
            gbps = {n: (nbytes / t / 1e6 if isinstance(t, float) else "-") for n, t in times.items()}
            frac = 100 * gbps["triton packed"] / peaks.copy_gbps if isinstance(tri, float) else "-"
            rows.append([b, x_rows.shape[1], *times.values(), *[ratio(times[n], tri) for n in names[1:]],
                         *gbps.values(), frac])
        columns = ["B", "F", *[f"{n} ms" for n in names], *[f"{n} / triton packed" for n in names[1:]],
                   *[f"{n} GB/s" for n in names], "% copy peak (triton packed)"]
        report.append(f"### {case}\n\n" + markdown_table(columns, rows))
    emit("\n".join(report), args.append)


if __name__ == "__main__":
    main(sys.argv[1:])
