"""End-to-end speed of metavoxel: zero-shot predictions per second and training steps per second,
with the fused Triton kernels on and off, measured side by side in one run.

Zero-shot age prediction as in the paper: the image and sex fixed, age sampled, 3 samples per subject,
50 reverse steps, on the paper's model (``schemas/examples/t1w_age_sex_latent_paper.yaml``: a 96×112×96
T1w through a ×4 VAE to a 4×24×28×24 latent). Weights are random (timing only; the work per step does
not depend on them). Reported: seconds per subject for 1 subject and for a batch of 16, kernels on
(``METAVOXEL_KERNELS=triton``: fused attention, noising, sampler step) and off (``torch``: SDPA and the
eager updates), and training steps per second for the same two settings.

    python benchmarks/sampling.py --append                 # on a GPU; appends to benchmarks/RESULTS.md
    python benchmarks/sampling.py --dry-run                # checks the script on CPU with a tiny model
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "kernels"))
from harness import Timer, device_or_exit, emit, header, markdown_table, measure_peaks, parser, ratio  # noqa: E402

import metavoxel as mv  # noqa: E402
from metavoxel.examples import examples  # noqa: E402


def paper_spec(dry_run: bool) -> dict:
    spec = copy.deepcopy(examples()["t1w_age_sex_latent_paper"])
    spec["variables"][0]["weights"] = None  # random VAE: timing only
    if dry_run:  # a tiny stand-in with the same structure
        spec["variables"][0].update(shape=[16, 16, 16], vae={"channels": [8, 8, 8], "latent_channels": 4,
                                                              "num_res_blocks": 1, "norm_num_groups": 4})
        spec["network"].update(channels=[16, 32, 32], num_res_blocks=1, num_head_channels=16, norm_num_groups=8,
                               cross_attention_dim=32)
    return spec


def main(argv: list[str] | None = None) -> None:
    p = parser(__doc__.split("\n\n")[0])
    p.add_argument("--subjects", default="1,16", help="subject batch sizes (default 1,16)")
    p.add_argument("--samples", type=int, default=3, help="samples per subject (default 3)")
    p.add_argument("--steps", type=int, default=50, help="reverse steps (default 50)")
    p.add_argument("--precision", choices=["bf16", "fp32"], default="bf16")
    p.add_argument("--train-batch", type=int, default=4, help="records per training step (default 4)")
    args = p.parse_args(argv)
    if args.dry_run:
        os.environ.setdefault("TRITON_INTERPRET", "1")
        args.subjects, args.steps = "1,2", 2
    device = device_or_exit(args)
    args.reps = min(args.reps, 3)  # whole predictions are long: a few calls give a stable median
    args.warmup = min(args.warmup, 1)
    timer = Timer(device, args.warmup, args.reps)
    peaks = measure_peaks(device, timer) if device.type == "cuda" else None
    spec = paper_spec(args.dry_run)
    model = mv.JointModel(spec).to(device)
    shape = tuple(spec["variables"][0]["shape"])
    subjects = [int(n) for n in args.subjects.split(",")]

    rows = []
    for n in subjects:
        images = torch.rand(n, 1, *shape, device=device)
        sexes = ["F", "M"] * (n // 2) + ["F"] * (n % 2)
        times = {}
        for kernels in ("torch", "triton"):
            os.environ["METAVOXEL_KERNELS"] = kernels

            def predict() -> None:
                model.sample(fix={"image": images, "sex": sexes}, num_samples=args.samples, steps=args.steps,
                             seed=0, precision=args.precision)

            times[kernels] = timer(predict) / 1e3  # seconds per call
        rows.append([n, args.samples, args.steps, times["torch"] / n, times["triton"] / n,
                     ratio(times["torch"], times["triton"])])

    train_rows = []
    z0, present = model.encode_batch({"image": torch.rand(args.train_batch, 1, *shape, device=device),
                                      "age": [60.0] * args.train_batch, "sex": ["F"] * args.train_batch})
    optimiser = torch.optim.AdamW(model.net.parameters(), lr=1e-5)
    for kernels in ("torch", "triton"):
        os.environ["METAVOXEL_KERNELS"] = kernels

        def train_step() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.precision == "bf16"):
                loss = model.losses_from_z0(z0, present)["loss"].mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

        train_rows.append([kernels, args.train_batch, 1e3 / timer(train_step)])
    os.environ.pop("METAVOXEL_KERNELS", None)

    latent = "x".join(map(str, model.variables["image"].z_shape))
    notes = [f"model: {spec['name']} ({sum(p.numel() for p in model.net.parameters()) / 1e6:.1f} M U-Net parameters), "
             f"latent {latent}, {args.precision}, random weights (timing only)"]
    if peaks is None:
        report = "## End-to-end (dry run on CPU: numbers meaningless)\n\n"
    else:
        report = header("End-to-end zero-shot prediction and training", device, peaks, timer, notes)
    report += markdown_table(["subjects", "samples", "steps", "s/subject torch", "s/subject triton", "speed-up"], rows)
    report += "\n" + markdown_table(["kernels", "records/step", "training steps/s"], train_rows)
    emit(report, args.append)


if __name__ == "__main__":
    main()
