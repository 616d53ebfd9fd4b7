"""Shared harness of the kernel benchmarks: CUDA check, timing, measured device peaks, markdown output.

Timing uses CUDA events around each call after warm-up, flushing the L2 cache before every timed call
(so small elementwise problems are not served from cache), and reports the median. Peaks are measured in
the same run: copy bandwidth from a large device-to-device copy, and the bf16 matmul rate of a large GEMM,
so every "% of peak" column compares against this device as it runs today, not a datasheet.

``--dry-run`` runs a script's logic on CPU with tiny shapes and a wall-clock timer to check the script
itself; its numbers mean nothing and are never appended to RESULTS.md.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "benchmarks" / "RESULTS.md"
BATCH_SIZES = (1, 2, 4, 8, 16, 32)
# The paper's latent: 4 channels x 24 x 28 x 24; attention runs at the latent levels of the U-Net.
LATENT = (4, 24, 28, 24)
LEVELS = {"full 24x28x24": 24 * 28 * 24, "half 12x14x12": 12 * 14 * 12, "quarter 6x7x6": 6 * 7 * 6}

if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))


def parser(description: str) -> argparse.ArgumentParser:
    """Arguments shared by every kernel benchmark."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--quick", action="store_true", help="smoke run: few shapes, few repetitions")
    p.add_argument("--batch-sizes", type=_ints, default=BATCH_SIZES, help="comma-separated, default 1,2,4,8,16,32")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before timing (default 5)")
    p.add_argument("--reps", type=int, default=25, help="timed calls; the median is reported (default 25)")
    p.add_argument("--append", action="store_true", help=f"append the tables to {RESULTS.relative_to(REPO)}")
    p.add_argument("--dry-run", action="store_true",
                   help="check the script on CPU with tiny shapes (meaningless numbers, never appended)")
    return p


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,2,4, got {text!r}") from None


def device_or_exit(args: argparse.Namespace) -> torch.device:
    """The CUDA device, or exit with a clear message when there is none (CPU under ``--dry-run``)."""
    if args.dry_run:
        args.append = False
        args.warmup, args.reps = 1, 2
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(
            "error: no CUDA device is available; these benchmarks time GPU kernels and need one. "
            "Run them on a machine with an NVIDIA GPU (use --dry-run to check the script on CPU).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    if args.quick:
        args.warmup, args.reps = min(args.warmup, 2), min(args.reps, 5)
    return torch.device("cuda")


class Timer:
    """Median milliseconds of a callable: CUDA events with an L2 flush before each call (wall clock on CPU)."""

    def __init__(self, device: torch.device, warmup: int, reps: int):
        self.device, self.warmup, self.reps = device, warmup, reps
        cuda = device.type == "cuda"
        l2 = getattr(torch.cuda.get_device_properties(device), "L2_cache_size", 64 << 20) if cuda else 0
        self._flush = torch.empty(max(2 * l2, 1 << 20), dtype=torch.int8, device=device) if cuda else None

    def __call__(self, fn: Callable[[], object]) -> float:
        for _ in range(self.warmup):
            fn()
        times = []
        if self.device.type != "cuda":
            for _ in range(self.reps):
                start = time.perf_counter()
                fn()
                times.append((time.perf_counter() - start) * 1e3)
            return statistics.median(times)
        torch.cuda.synchronize(self.device)
        for _ in range(self.reps):
            self._flush.zero_()
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)


@dataclass(frozen=True)
class Peaks:
    """Rates measured on this device in this run."""

    copy_gbps: float
    bf16_tflops: float


def measure_peaks(device: torch.device, timer: Timer) -> Peaks:
    """Device-to-device copy bandwidth (read + write bytes) and dense bf16 matmul rate."""
    if device.type != "cuda":
        return Peaks(float("nan"), float("nan"))
    src = torch.empty(1 << 28, dtype=torch.float32, device=device)  # 1 GiB
    dst = torch.empty_like(src)
    copy_ms = timer(lambda: dst.copy_(src))
    src = dst = None  # free the 2 GiB before the matmul
    n = 8192
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    mm_ms = timer(lambda: a @ b)
    return Peaks(copy_gbps=2 * (1 << 30) / copy_ms / 1e6, bf16_tflops=2 * n**3 / mm_ms / 1e9)


def header(title: str, device: torch.device, peaks: Peaks, timer: Timer, notes: Sequence[str] = ()) -> str:
    """Markdown heading with the command, device, versions and measured peaks."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or 'cpu'})"
    lines = [
        f"## {title}",
        "",
        f"- command: `{' '.join(shlex.quote(a) for a in ['python', *sys.argv])}`",
        f"- device: {name}; torch {torch.__version__}, CUDA {torch.version.cuda}, triton {_triton_version()}, "
        f"python {platform.python_version()}",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- measured peaks: copy {peaks.copy_gbps:.0f} GB/s (1 GiB device copy), "
        f"bf16 matmul {peaks.bf16_tflops:.0f} TFLOP/s (8192^3)",
        f"- timing: median of {timer.reps} calls after {timer.warmup} warm-up calls, CUDA events, L2 flushed "
        "before each call",
        *[f"- {n}" for n in notes],
        "",
    ]
    return "\n".join(lines)


def _triton_version() -> str:
    try:
        import triton

        return triton.__version__
    except Exception:  # noqa: BLE001  (report, do not fail)
        return "not installed"


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A markdown table; floats get three significant digits."""

    def cell(v: object) -> str:
        if isinstance(v, float):
            return "nan" if v != v else f"{v:.3g}"
        return str(v)

    out = ["| " + " | ".join(columns) + " |", "|" + "|".join(" --- " for _ in columns) + "|"]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out) + "\n"


def try_time(timer: Timer, fn: Callable[[], object]) -> float | str:
    """Milliseconds, or a short reason when the provider cannot run these inputs (unsupported, OOM)."""
    try:
        return timer(fn)
    except torch.cuda.OutOfMemoryError:
        torch.cuda.empty_cache()
        return "OOM"
    except Exception as exc:  # noqa: BLE001  (a provider that cannot run is a table entry, not a crash)
        return f"n/a ({type(exc).__name__})"


def ratio(numerator: float | str, denominator: float | str) -> float | str:
    """numerator / denominator when both are times, else '-'."""
    if isinstance(numerator, float) and isinstance(denominator, float) and denominator > 0:
        return numerator / denominator
    return "-"


def emit(text: str, append: bool) -> None:
    """Print the report and append it to RESULTS.md when asked."""
    print(text)
    if append:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        new = not RESULTS.exists()
        with RESULTS.open("a") as f:
            if new:
                f.write("# Benchmark results\n\nAppended by the scripts in benchmarks/; newest last.\n\n")
            f.write(text + "\n")
        print(f"appended to {RESULTS}")


def gaussian_variables(batch: int, scalars: int, device: torch.device, dtype: torch.dtype,
                       gen: torch.Generator, latent: Sequence[int] = LATENT) -> list[torch.Tensor]:
    """One record batch of Gaussian variables: the image latent (B, 4, 24, 28, 24) and ``scalars`` (B, 1) values."""
    shapes = [(batch, *latent)] + [(batch, 1)] * scalars
    return [torch.randn(s, device=device, dtype=dtype, generator=gen) for s in shapes]


def compiled(fn: Callable) -> Callable:
    """``torch.compile`` of an eager provider; errors surface at its first (warm-up) call."""
    return torch.compile(fn, dynamic=False)
