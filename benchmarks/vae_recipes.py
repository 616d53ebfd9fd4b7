"""VAE recipes at the demo's size: seconds, PSNR, SSIM and the signal probe, side by side in one run.

Each trial trains a KL-VAE (`metavoxel.vae.train_vae`) on the training split of `COHORT`: the demo's
size before its phantom changed (240 subjects, 32³ at 5.5 mm, the default phantom) and measures, on every
subject it did not train on (validation + test, 60 subjects): PSNR/SSIM (MONAI) of ``decode(mu(x))`` and the ridge probe of `metavoxel.vae.probe`
(fitted on the raw training images; age MAE and sex accuracy on raw vs reconstructed images).

    OMP_NUM_THREADS=1 python benchmarks/vae_recipes.py --trials demo-before,cosine [--append]

Seconds are the training loop's wall time on this machine as it is (shared or not): compare them with the
``demo-before`` row of the same run, not across machines.
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
from metavoxel.spec import PAPER_TRAINING, ModelSpec
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

#: name -> (architecture changes, training changes) from the demo's recipe before this benchmark.
TRIALS: dict[str, tuple[dict, dict]] = {
    "demo-before": ({}, {}),
    "cosine": ({}, {"lr_schedule": "cosine"}),
    "patch16-2000-cosine": ({}, {"steps": 2000, "patch_size": [16, 16, 16], "lr_schedule": "cosine"}),
    "lat16": ({"latent_channels": 16}, {}),
    "lat16-500": ({"latent_channels": 16}, {"steps": 500}),
}


def load_demo(root: Path) -> dict[str, dict]:
    """The `COHORT`'s images and scalars per split (written to ``root`` once)."""
    data = make_cohort(COHORT, root)
    spec = ModelSpec.from_dict(study_spec(COHORT))
    model = JointModel(spec, load_weights=False)
    cohort = read_cohort(data, model.variables, spec.data or DataSpec())
    out = {}
    for split, rows in split_subjects(cohort, spec.data.split).items():
        batch = cohort.batch(rows)
        out[split] = {"image": torch.stack([model.variables["image"].parse(p) for p in batch["image"]]),
                      "age": batch["age"], "sex": batch["sex"]}
    return out


def trial(name: str, data: dict[str, dict], seed: int = 0) -> dict:
    arch, train = TRIALS[name]
    config = {**BASE_TRAIN, **train}
    config.setdefault("adv_start", config["steps"])  # the demo trains without the adversary
    train_set, held = data["train"], {k: data["val"][k] + data["test"][k] if k != "image"
                                      else torch.cat([data["val"][k], data["test"][k]]) for k in data["val"]}
    torch.manual_seed(seed)
    vae = build_vae(3, 1, VAESpec(**{**BASE_ARCH, **arch}))
    report = train_vae(vae, train_set["image"], None, VAETrainConfig(**config, val_every=config["steps"], seed=seed))
    images = VolumeSet(held["image"], "held-out images")
    metrics = reconstruction_metrics(vae, images, batch_size=8, device="cpu")
    recon = reconstruct(vae, images, batch_size=8, device="cpu")
    probe = signal_probe(train_set["image"], {"age": train_set["age"], "sex": train_set["sex"]}, held["image"],
                         recon, {"age": held["age"], "sex": held["sex"]}, categorical=["sex"])
    return {"trial": name, "seconds": report.seconds, "psnr": metrics["psnr"], "ssim": metrics["ssim"],
            "age_mae_raw": probe["age"].raw, "age_mae_recon": probe["age"].recon, "age_ratio": probe["age"].ratio,
            "age_mae_baseline": probe["age"].baseline, "sex_acc_raw": probe["sex"].raw,
            "sex_acc_recon": probe["sex"].recon, "sex_majority": probe["sex"].baseline,
            "load": os.getloadavg()[0]}


def table(rows: list[dict]) -> str:
    lines = ["| recipe | seconds | PSNR dB | SSIM | age MAE raw → recon (ratio) | sex acc raw → recon | load |",
             "| --- | ---: | ---: | ---: | --- | --- | ---: |"]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['seconds']:.0f} | {r['psnr']:.2f} | {r['ssim']:.3f} | "
                     f"{r['age_mae_raw']:.2f} → {r['age_mae_recon']:.2f} ({r['age_ratio']:.2f}x) | "
                     f"{r['sex_acc_raw']:.2f} → {r['sex_acc_recon']:.2f} | {r['load']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", default=",".join(TRIALS), help=f"comma-separated, from: {', '.join(TRIALS)}")
    parser.add_argument("--cohort", type=Path, default=Path("runs/bench-vae/cohort"))
    parser.add_argument("--append", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    names = args.trials.split(",")
    unknown = [n for n in names if n not in TRIALS]
    if unknown:
        parser.error(f"unknown trials {unknown}; choose from {', '.join(TRIALS)}")
    data = load_demo(args.cohort)
    rows = []
    for name in names:
        start = time.perf_counter()
        rows.append(trial(name, data))
        print(json.dumps(rows[-1]), f"({time.perf_counter() - start:.0f} s with evaluation)", flush=True)
    text = table(rows)
    print(text)
    if args.append:
        heading = (f"\n## VAE recipes at the demo's size — {datetime.date.today()}\n\nCommand: "
                   f"`OMP_NUM_THREADS=1 python benchmarks/vae_recipes.py --trials {args.trials} --append`  \n"
                   f"Machine: {platform.machine()}, {torch.get_num_threads()} torch thread(s), torch "
                   f"{torch.__version__}, CPU only, 2 CPU cores, shared\n\n")
        with RESULTS.open("a") as fh:
            fh.write(heading + text + "\n")


if __name__ == "__main__":
    main()
