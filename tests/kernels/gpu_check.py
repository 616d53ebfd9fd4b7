"""Compiled-kernel check on a CUDA device: every op against its reference on U-Net-like shapes.

Run by `test_gpu.py` in a fresh process (the test suite sets TRITON_INTERPRET=1, which would make the
kernels interpret here too). ``--device cpu`` runs the same checks in the interpreter on small shapes.
Exit code 0 when everything matches; the failures are printed otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cuda")
    args = p.parse_args()
    os.environ["TRITON_INTERPRET"] = "1" if args.device == "cpu" else "0"
    import torch

    from metavoxel.kernels import (attention, attention_reference, ddim_repaint_step, ddim_repaint_step_reference,
                                   q_sample, q_sample_reference)

    dev = torch.device(args.device)
    small = dev.type == "cpu"
    gen = torch.Generator(device=dev).manual_seed(0)
    failures = []

    def check(name, got, want, atol, rtol):
        try:
            torch.testing.assert_close(got.double(), want.double(), atol=atol, rtol=rtol)
        except AssertionError as exc:
            failures.append(f"{name}: {str(exc).splitlines()[0:3]}")

    tol = {torch.float32: (2e-4, 2e-4), torch.float16: (5e-3, 5e-3), torch.bfloat16: (4e-2, 3e-2)}
    shapes = [(1, 2, 45, 45, 32), (2, 2, 37, 5, 64)] if small else [
        (2, 4, 2016, 2016, 32), (1, 8, 252, 252, 64), (2, 4, 2016, 8, 32), (1, 4, 16128, 1, 64),
        (1, 2, 300, 300, 128), (2, 2, 333, 7, 48)]
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        for b, h, n, m, d in shapes:
            q, k, v = (torch.randn(b, h, s, d, device=dev, generator=gen).to(dtype).requires_grad_() for s in (n, m, m))
            out = attention(q, k, v, backend="triton")
            grad = torch.randn(out.shape, device=dev, generator=gen).to(dtype)
            got = dict(zip(("dq", "dk", "dv"), torch.autograd.grad(out, (q, k, v), grad)), out=out)
            leaves = [t.detach().float().requires_grad_() for t in (q, k, v)]
            ref = attention_reference(*leaves)
            want = dict(zip(("dq", "dk", "dv"), torch.autograd.grad(ref, leaves, grad.float())), out=ref)
            for name in got:
                check(f"attention {dtype} {(b, h, n, m, d)} {name}", got[name], want[name], *tol[dtype])

    latent = (4, 6, 7, 6) if small else (4, 24, 28, 24)
    x0 = [torch.randn(4, *latent, device=dev, generator=gen), torch.randn(4, 1, device=dev, generator=gen)]
    eps = [torch.randn_like(x) for x in x0]
    abar = torch.rand(4, 2, device=dev, generator=gen)
    x_t, _ = q_sample(x0, abar, eps=eps, backend="triton")
    for i in range(2):
        check(f"q_sample[{i}]", x_t[i], q_sample_reference(x0[i], abar[:, i], eps[i]), 1e-5, 1e-5)
    _, drawn = q_sample(x0, abar[:, 0], seed=1, backend="triton")
    z = torch.cat([e.flatten() for e in drawn])
    if abs(float(z.mean())) > 0.05 or abs(float(z.var()) - 1) > 0.05:
        failures.append(f"q_sample noise: mean {float(z.mean()):.3f}, var {float(z.var()):.3f}")

    a_t = torch.rand(4, device=dev, generator=gen) * 0.5 + 0.1
    a_s = a_t + 0.3
    mask = [(torch.rand(1, 1, *latent[1:], device=dev, generator=gen) > 0.5).float(), None]
    known = [torch.randn_like(x0[0]), None]
    z1, z2 = [torch.randn_like(x) for x in x0], [torch.randn_like(x) for x in x0]
    x_s, x0_hat = ddim_repaint_step(x_t, eps, a_t, a_s, eta=0.5, known=known, mask=mask, z1=z1, z2=z2,
                                    return_x0=True, backend="triton")
    for i in range(2):
        want_s, want_0 = ddim_repaint_step_reference(x_t[i], eps[i], a_t, a_s, eta=0.5, known=known[i],
                                                     mask=mask[i], z1=z1[i], z2=z2[i])
        check(f"ddim_repaint x_s[{i}]", x_s[i], want_s, 1e-5, 1e-5)
        check(f"ddim_repaint x0_hat[{i}]", x0_hat[i], want_0, 1e-5, 1e-5)

    print("\n".join(failures) or "all kernels match their references")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
