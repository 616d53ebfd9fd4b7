"""Compile every Triton kernel configuration used on the U-Net's shapes for a GPU architecture, without a GPU.

The launchers run on ``meta`` tensors against a stand-in driver, so Triton's JIT compiles each
specialisation down to a cubin (with the ptxas bundled in the triton wheel) but launches nothing. Each
compiled kernel's shared memory is checked against the architecture's per-block limit, which a real
launch would otherwise refuse with OutOfResources. Run it before spending GPU time; the tests run
``--quick``. Prints a markdown table; exits 1 if any configuration fails.

Example: python benchmarks/kernels/compile_check.py --arch 90 --arch 80
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

os.environ["TRITON_INTERPRET"] = "0"  # compile for the GPU target; must precede the kernels' definitions
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Opt-in shared memory per block (bytes) and SM count of a typical part of each architecture.
ARCHS = {80: (166_912, 108), 86: (101_376, 84), 89: (101_376, 128), 90: (232_448, 132)}
LEVELS = (16128, 2016, 252)


class StandInDriver:
    """Just enough of Triton's active driver for the JIT to compile for ``target``."""

    def __init__(self, arch: int):
        from triton.backends.compiler import GPUTarget

        self.target = GPUTarget("cuda", arch, 32)

    def get_current_device(self) -> int:
        return 0

    def get_current_stream(self, device: int | None = None) -> int:
        return 0

    def get_current_target(self):
        return self.target

    def get_active_torch_device(self):
        import torch

        return torch.device("meta")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", type=int, action="append", choices=sorted(ARCHS),
                   help="compute capability as an integer (90 = sm_90); repeatable; default 90")
    p.add_argument("--quick", action="store_true", help="a few configurations per kernel")
    args = p.parse_args(argv)

    import torch
    from triton.runtime import driver
    from triton.runtime.jit import JITFunction

    from metavoxel.kernels.attention import blocks as attention_blocks

    compiled: list[dict] = []
    original_run = JITFunction.run

    def compile_only(self, *a, grid, warmup, **kw):
        start = time.perf_counter()
        kernel = original_run(self, *a, grid=grid, warmup=True, **kw)
        config = {k: v for k, v in kw.items() if k.isupper()}
        compiled.append({"kernel": self.fn.__name__, "config": config, "shared": kernel.metadata.shared,
                         "warps": kernel.metadata.num_warps, "stages": kernel.metadata.num_stages,
                         "seconds": time.perf_counter() - start})
        return kernel

    JITFunction.run = compile_only
    failures = 0
    rows = []
    for arch in args.arch or [90]:
        limit, sms = ARCHS[arch]
        driver.set_active(StandInDriver(arch))
        _forget_compiled_kernels(JITFunction)  # the JIT caches its target per device index
        attention_blocks._sm_count = lambda device, sms=sms: sms  # the heuristics see the real SM count
        compiled.clear()
        for label, call in _cases(args.quick):
            try:
                call(torch)
            except Exception as exc:  # noqa: BLE001  (a failing configuration is a table row)
                failures += 1
                rows.append(f"| sm_{arch} | {label} | FAILED: {type(exc).__name__}: {str(exc).splitlines()[0][:160]} "
                            "| | | |")
        seen = set()
        for c in compiled:
            key = (c["kernel"], tuple(sorted(c["config"].items())), c["warps"], c["stages"])
            if key in seen:
                continue
            seen.add(key)
            ok = c["shared"] <= limit
            failures += not ok
            config = ", ".join(f"{k}={v}" for k, v in c["config"].items())
            rows.append(f"| sm_{arch} | {c['kernel']} {config} | {'ok' if ok else 'TOO MUCH SHARED MEMORY'} | "
                        f"{c['shared']} / {limit} | {c['warps']}x{c['stages']} | {c['seconds']:.1f} |")
    JITFunction.run = original_run
    print("| arch | kernel and compile-time config | status | shared bytes / limit | warps x stages | compile s |")
    print("| --- | --- | --- | --- | --- | --- |")
    print("\n".join(rows))
    print(f"\n{len(rows)} configurations, {failures} failures")
    return 1 if failures else 0


def _forget_compiled_kernels(jit_type) -> None:
    for name, module in list(sys.modules.items()):
        if name.startswith("metavoxel.kernels"):
            for value in vars(module).values():
                if isinstance(value, jit_type):
                    value.device_caches.clear()


def _cases(quick: bool):
    """(label, call(torch)) pairs that run the launchers on meta tensors with the public heuristics."""
    dtypes = ("float16", "bfloat16", "float32")
    head_dims = (64, 48) if quick else (32, 64, 128, 48)
    levels = (2016,) if quick else LEVELS
    batch_heads = ((2, 4),) if quick else ((1, 4), (32, 8))
    tokens = (8,) if quick else (1, 32)
    for dtype, d, n, (b, h) in itertools.product(dtypes, head_dims, levels, batch_heads):
        for m in (n, *tokens):
            yield f"attention {dtype} B={b} H={h} N={n} M={m} d={d}", _attention(dtype, b, h, n, m, d)
    for dtype, given in itertools.product(("float32", "bfloat16", "float16"), (False, True)):
        yield f"q_sample {dtype} eps given={given}", _q_sample(dtype, given)
    flags = [(0.0, False, False, False), (1.0, False, False, True), (0.0, True, False, False),
             (1.0, True, True, True)]
    for dtype, (eta, masked, given, x0) in itertools.product(("float32", "bfloat16"), flags):
        yield f"ddim_repaint {dtype} eta={eta} mask={masked} z given={given} x0={x0}", \
            _ddim(dtype, eta, masked, given, x0)
    for masked, given, log_p in [(False, False, False), (True, False, True), (True, True, False)]:
        yield f"categorical_step mask={masked} gumbel given={given} log_p={log_p}", \
            _categorical(masked, given, log_p)


def _attention(dtype: str, b: int, h: int, n: int, m: int, d: int):
    def call(torch):
        from metavoxel.kernels.attention.backward import attention_backward
        from metavoxel.kernels.attention.forward import attention_forward

        dt = getattr(torch, dtype)
        q = torch.empty(b, h, n, d, dtype=dt, device="meta")
        k = torch.empty(b, h, m, d, dtype=dt, device="meta")
        o, lse = attention_forward(q, k, k, d**-0.5)
        attention_backward(o, q, k, k, o, lse, d**-0.5)

    return call


def _q_sample(dtype: str, given: bool):
    def call(torch):
        from metavoxel.kernels.noising.kernel import q_sample_rows

        x = torch.empty(4, 64521, dtype=getattr(torch, dtype), device="meta")
        abar = torch.empty(4, 1, device="meta")
        q_sample_rows(x, abar, (64512, 9), x if given else None, seed=2**40, offset=0)

    return call


def _ddim(dtype: str, eta: float, masked: bool, given: bool, x0: bool):
    def call(torch):
        from metavoxel.kernels.sampler.kernel import ddim_repaint_rows

        x = torch.empty(4, 64521, dtype=getattr(torch, dtype), device="meta")
        a = torch.empty(4, 9, device="meta")
        mask = torch.empty(1, 64521, device="meta").expand(4, -1) if masked else None
        ddim_repaint_rows(x, x, a, a, (64512,) + (1,) * 9, eta=eta, known=x if masked else None, mask=mask,
                          z1=x if given and eta else None, z2=x if given and masked else None,
                          seed=2**40, offset=0, return_x0=x0)

    return call


def _categorical(masked: bool, given: bool, log_p: bool):
    def call(torch):
        from metavoxel.kernels.categorical.kernel import categorical_step_rows

        logits = torch.empty(32, 12, device="meta")
        idx = torch.empty(32, 3, dtype=torch.int64, device="meta")
        a = torch.empty(32, 1, device="meta")
        categorical_step_rows(logits, idx, a, a, (2, 3, 7), known=idx if masked else None,
                              mask=idx if masked else None, gumbel=logits if given else None,
                              gumbel_known=logits if given and masked else None, seed=2**40, offset=0,
                              return_log_probs=log_p)

    return call


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
