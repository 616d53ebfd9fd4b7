"""VAE recipes at the demo's size: seconds, PSNR, SSIM and the signal probe, side by side in one run.

Each trial trains a KL-VAE (`metavoxel.vae.train_vae`) on the training split of `COHORT`: the demo's
size before its phantom changed (240 subjects, 32³ at 5.5 mm, the default phantom) and measures, on every
subject it did not train on (validation + test, 60 subjects): PSNR/SSIM (MONAI) of ``decode(mu(x))`` and the ridge probe of `metavoxel.vae.probe`
(fitted on the raw training images; age MAE and sex accuracy on raw vs reconstructed images).

    OMP_NUM_THREADS=1 python benchmarks/vae_recipes.py --trials demo-before,cosine [--append]
    OMP_NUM_THREADS=1 python benchmarks/vae_recipes.py --demo-phantom --references --trials demo,batch2-800

``--demo-phantom`` uses `DEMO`'s own cohort instead (600 subjects of the demo's phantom, 150 held out).
Each row also gives the probe **refitted on reconstructions** (`metavoxel.vae.probe`: does the signal
survive, or only its intensities move?). ``--references`` adds rows that are not VAEs but fixed
reconstructions of the same held-out images, to show where a PSNR sits on this grid: the training-mean
image, a Gaussian blur of the image itself (MONAI ``GaussianSmooth``, sigma in voxels) and x4 average
pooling back up by trilinear interpolation (one number per 64 voxels, 1/8 of the VAE's latent).

Seconds are the training loop's wall time on this machine as it is (shared or not): compare them with the
``demo-before`` (or ``demo``) row of the same run, not across machines.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import time
from pathlib import Path

import torch

from metavoxel.data import DataSpec, read_cohort, split_subjects
from metavoxel.diffusion.joint import JointModel
from metavoxel.presets import PAPER_TRAINING
from metavoxel.spec import ModelSpec
from metavoxel.vae import VAETrainConfig, train_vae
from metavoxel.vae.architecture import VAESpec, build_vae
from metavoxel.vae.evaluation import reconstruct, reconstruction_metrics
from metavoxel.vae.probe import signal_probe
from metavoxel.vae.volumes import VolumeSet
from metavoxel.workflows.study import DEMO, make_cohort, study_spec

#: The cohort every trial uses: DEMO's grid with 240 subjects of the default phantom (the rows in RESULTS.md).
COHORT = dataclasses.replace(DEMO, subjects=240, phantom={}, training=dict(PAPER_TRAINING))

RESULTS = Path(__file__).with_name("RESULTS.md")
BASE_ARCH = {"channels": [8, 16, 32], "latent_channels": 8, "num_res_blocks": 1, "norm_num_groups": 8}
BASE_TRAIN = {"steps": 250, "batch_size": 8, "lr": 2e-3}

#: name -> (architecture changes, training changes) from the demo's recipe before this benchmark; an optional
#: third entry sets the bias of the posterior log-variance convolution (its weights zeroed) before training,
#: so the reparameterisation noise starts at sigma = exp(bias / 2) instead of about 1.
TRIALS: dict[str, tuple] = {
    "demo-before": ({}, {}),
    "cosine": ({}, {"lr_schedule": "cosine"}),
    "patch16-2000-cosine": ({}, {"steps": 2000, "patch_size": [16, 16, 16], "lr_schedule": "cosine"}),
    "lat16": ({"latent_channels": 16}, {}),
    "lat16-500": ({"latent_channels": 16}, {"steps": 500}),
    "demo": ({}, {"steps": DEMO.vae_steps}),  # DEMO's VAE as it is (200 steps of 8)
    "batch2-800": ({}, {"steps": 800, "batch_size": 2}),  # the same images seen, 4x the updates
    "logvar-8": ({}, {"steps": DEMO.vae_steps}, -8.0),  # posterior noise from sigma 0.018, not about 1
    "batch2-2000": ({}, {"steps": 2000, "batch_size": 2}),  # 2.5x the images the demo's VAE sees
}


def load_demo(root: Path, recipe=COHORT) -> dict[str, dict]:
    """The recipe's cohort (default `COHORT`): images and scalars per split (written to ``root`` once)."""
    data = make_cohort(recipe, root)
    spec = ModelSpec.from_dict(study_spec(recipe))
    model = JointModel(spec, load_weights=False)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    out = {}
    for split, rows in split_subjects(cohort, spec.data.split).items():
        batch = cohort.batch(rows)
        out[split] = {"image": torch.stack([model.variables["image"].parse(p) for p in batch["image"]]),
                      "age": batch["age"], "sex": batch["sex"]}
    return out


class ReferenceCodec(torch.nn.Module):
    """A fixed reconstruction dressed as a VAE (``encode`` -> (transformed image, 0), ``decode`` = identity),
    so `reconstruction_metrics` and `reconstruct` score it exactly as they score a VAE."""

    def __init__(self, transform) -> None:
        super().__init__()
        self.transform = transform

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.transform(x)
        return y, torch.zeros_like(y)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return z


def references(train_images: torch.Tensor) -> dict[str, ReferenceCodec]:
    """The ``--references`` rows (module docstring): name -> a fixed reconstruction of (B, 1, *shape) images."""
    from monai.transforms import GaussianSmooth

    mean = train_images.mean(0, keepdim=True)  # (1, 1, *shape)

    def blur(sigma: float):
        smooth = GaussianSmooth(sigma=sigma)
        return lambda x: torch.stack([torch.as_tensor(smooth(image)) for image in x])

    def pool4(x: torch.Tensor) -> torch.Tensor:
        small = torch.nn.functional.avg_pool3d(x, 4)
        return torch.nn.functional.interpolate(small, size=x.shape[2:], mode="trilinear", align_corners=False)

    return {"reference: the training-mean image": ReferenceCodec(lambda x: mean.expand_as(x)),
            "reference: Gaussian blur, sigma 0.5 voxel": ReferenceCodec(blur(0.5)),
            "reference: Gaussian blur, sigma 1 voxel": ReferenceCodec(blur(1.0)),
            "reference: x4 average pool, trilinear up": ReferenceCodec(pool4)}


def held_out(data: dict[str, dict]) -> dict[str, list | torch.Tensor]:
    return {k: data["val"][k] + data["test"][k] if k != "image" else torch.cat([data["val"][k], data["test"][k]])
            for k in data["val"]}


def score(name: str, vae: torch.nn.Module, data: dict[str, dict], seconds: float) -> dict:
    """PSNR/SSIM and the signal probe (raw-fitted and refitted) of ``vae`` on the held-out images."""
    train_set, held = data["train"], held_out(data)
    images = VolumeSet(held["image"], "held-out images")
    metrics = reconstruction_metrics(vae, images, batch_size=8, device="cpu")
    recon = reconstruct(vae, images, batch_size=8, device="cpu")
    train_recon = reconstruct(vae, VolumeSet(train_set["image"], "training images"), batch_size=8, device="cpu")
    probe = signal_probe(train_set["image"], {"age": train_set["age"], "sex": train_set["sex"]}, held["image"],
                         recon, {"age": held["age"], "sex": held["sex"]}, categorical=["sex"],
                         train_recon=train_recon)
    return {"trial": name, "seconds": seconds, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "age_mae_raw": probe["age"].raw, "age_mae_recon": probe["age"].recon, "age_ratio": probe["age"].ratio,
            "age_mae_refit": probe["age"].refit, "age_refit_ratio": probe["age"].refit_ratio,
            "age_mae_baseline": probe["age"].baseline, "sex_acc_raw": probe["sex"].raw,
            "sex_acc_recon": probe["sex"].recon, "sex_acc_refit": probe["sex"].refit,
            "sex_majority": probe["sex"].baseline, "load": os.getloadavg()[0]}


def trial(name: str, data: dict[str, dict], seed: int = 0) -> dict:
    arch, train, *init = TRIALS[name]
    config = {**BASE_TRAIN, **train}
    config.setdefault("adv_start", config["steps"])  # the demo trains without the adversary
    torch.manual_seed(seed)
    vae = build_vae(3, 1, VAESpec(**{**BASE_ARCH, **arch}))
    if init:
        conv = vae.quant_conv_log_sigma.conv
        with torch.no_grad():
            conv.weight.zero_()
            conv.bias.fill_(init[0])
    report = train_vae(vae, data["train"]["image"], None,
                       VAETrainConfig(**config, val_every=config["steps"], seed=seed))
    return score(name, vae, data, report.seconds)


def table(rows: list[dict]) -> str:
    lines = ["| recipe | seconds | PSNR dB | SSIM | age MAE raw → recon (ratio) | age MAE refitted (ratio) | "
             "sex acc raw → recon, refitted | load |",
             "| --- | ---: | ---: | ---: | --- | --- | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['seconds']:.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['age_mae_raw']:.2f} → {r['age_mae_recon']:.2f} ({r['age_ratio']:.2f}x) | "
                     f"{r['age_mae_refit']:.2f} ({r['age_refit_ratio']:.2f}x) | "
                     f"{r['sex_acc_raw']:.2f} → {r['sex_acc_recon']:.2f}, {r['sex_acc_refit']:.2f} | "
                     f"{r['load']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=",".join(TRIALS), help=f"comma-separated, from: {', '.join(TRIALS)}")
    parser.add_argument("--cohort", type=Path, default=None,
                        help="where the cohort is written once (default: runs/bench-vae/cohort, or "
                             "runs/bench-vae/demo-cohort with --demo-phantom)")
    parser.add_argument("--demo-phantom", action="store_true",
                        help="DEMO's own cohort (its subjects and phantom) instead of the default phantom's 240")
    parser.add_argument("--references", action="store_true",
                        help="first, the fixed reference reconstructions (module docstring)")
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    names = [n for n in args.trials.split(",") if n]
    unknown = [n for n in names if n not in TRIALS]
    if unknown:
        parser.error(f"unknown trials {unknown}; choose from {', '.join(TRIALS)}")
    cohort = args.cohort or Path("runs/bench-vae/demo-cohort" if args.demo_phantom else "runs/bench-vae/cohort")
    data = load_demo(cohort, DEMO if args.demo_phantom else COHORT)
    rows = []
    if args.references:
        for name, codec in references(data["train"]["image"]).items():
            rows.append(score(name, codec, data, 0.0))
            print(json.dumps(rows[-1]), flush=True)
    for name in names:
        start = time.perf_counter()
        rows.append(trial(name, data))
        print(json.dumps(rows[-1]), f"({time.perf_counter() - start:.0f} s with evaluation)", flush=True)
    text = table(rows)
    print(text)
    if args.append:
        heading = (f"\n## VAE recipes at the demo's size — {datetime.date.today()}\n\nCommand: "
                   f"`OMP_NUM_THREADS=1 python benchmarks/vae_recipes.py {'--demo-phantom ' * args.demo_phantom}"
                   f"{'--references ' * args.references}--trials {args.trials} --append`  \n"
                   f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
                   f"{torch.__version__}, CPU only, 2 CPU cores, shared\n\n")
        with RESULTS.open("a") as fh:
            fh.write(heading + text + "\n")


if __name__ == "__main__":
    main()
