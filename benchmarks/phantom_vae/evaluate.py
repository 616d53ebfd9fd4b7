"""How well a VAE keeps phantom brains: PSNR, SSIM and the signal probe on held-out brains, side by side.

Both phantoms, for the shipped VAE, its training snapshots (the learning curves), the demo's VAE recipe trained
from scratch, and a half-voxel blur, side by side in one run.

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/evaluate.py --vae metavoxel/pretrained/phantom-32 \\
        --snapshots runs/phantom-vae/snapshots --demo-recipe --out runs/phantom-vae/evaluation.json

Held-out brains: ``--judges`` subjects of each phantom (seeds `data.HELD_OUT_SEEDS`, indices 0..judges-1), which
neither the shipped VAE nor the demo-recipe VAEs trained on. The probe (`metavoxel.vae.probe`) is fitted on
``--probe-fit`` further subjects of the same seeds (indices after the judges) and scored on the judges: raw-fitted
(a reader of real images reads the reconstructions) and refitted on reconstructions (is the signal still there).
The demo-recipe row trains, per phantom, the VAE `metavoxel demo --train-vae` trains (the `DEMO` recipe: 200
steps of 8 volumes, channels 8/16/32, 1 residual block) on that phantom's own 450-subject training split (seed
0: the demo's cohort for the demo phantom, the benchmark's for the default one), as the demo did before it
shipped a VAE. The blur row is MONAI ``GaussianSmooth`` (sigma 0.5 voxel) of each judge itself: no VAE, a
reference for what a PSNR means on this grid.

Several ``--snapshots`` folders (one per training of `train.py`, e.g. latents of other widths) are judged side by side;
each snapshot is built with the architecture its training recorded (``train.json`` beside the folder), and the
in-training validation curve of its ``recon`` phase (``history.jsonl``) is kept with it. For every VAE the latent a
diffusion model would learn is described on ``--latent-brains`` training brains: its numbers per image, the spread
of the posterior means (their standard deviation over every element, whose inverse is the scale factor
`metavoxel.vae.evaluation.latent_scale_factor` measures; per channel, the smallest and largest) and the posterior
SD (the encoder's mean sigma, the noise the decoder was trained to tolerate), and their ratio.

What it cannot show: one seed per trained row; the probe is linear, so a ratio is a lower bound on the signal a
reconstruction carries; PSNR/SSIM of a VAE that denoises are bounded by the phantom's own noise (Rician, SD 0.03
of white matter inside the brain), about 34 dB on this scaling.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import HELD_OUT_SEEDS, PHANTOMS, TRAIN_SEEDS, PhantomVolumes, phantom_configs  # noqa: E402
from train import ARCHITECTURE, PHASES  # noqa: E402

from metavoxel.io.atomic import write_json  # noqa: E402
from metavoxel.vae.evaluation import reconstruct, reconstruction_metrics  # noqa: E402
from metavoxel.vae.probe import signal_probe  # noqa: E402
from metavoxel.vae.volumes import VolumeSet  # noqa: E402


def judges_and_fit(judges: int, fit: int) -> dict[str, dict]:
    """Per phantom: the judged images and values, and the probe's fitting images and values."""
    out = {}
    for name, config in phantom_configs(HELD_OUT_SEEDS, judges + fit).items():
        volumes = PhantomVolumes({name: config}, judges + fit)
        subjects = [volumes.subject(i)[1] for i in range(judges + fit)]
        images = torch.stack([volumes[i] for i in range(judges + fit)])
        values = {"age": [s.age for s in subjects], "sex": [s.sex for s in subjects]}
        out[name] = {"judge": images[:judges], "fit": images[judges:],
                     "judge_values": {k: v[:judges] for k, v in values.items()},
                     "fit_values": {k: v[judges:] for k, v in values.items()}}
    return out


def score(reconstruct_fn, sets: dict[str, dict]) -> dict[str, dict]:
    """Per phantom: PSNR and SSIM of the judges' reconstructions, and the probe raw vs reconstructed."""
    from monai.metrics import PSNRMetric, SSIMMetric

    from metavoxel.vae.evaluation import ssim_window

    out = {}
    for name, s in sets.items():
        recon = reconstruct_fn(s["judge"]).clamp(0, 1)
        fit_recon = reconstruct_fn(s["fit"]).clamp(0, 1)
        psnr = PSNRMetric(max_val=1.0)(recon, s["judge"]).mean().item()
        ssim = SSIMMetric(spatial_dims=3, data_range=1.0, win_size=ssim_window(recon.shape[2:]))(
            recon, s["judge"]).mean().item()
        probe = signal_probe(s["fit"], s["fit_values"], s["judge"], recon, s["judge_values"], categorical=["sex"],
                             train_recon=fit_recon)
        out[name] = {"psnr": psnr, "ssim": ssim, "probe": {k: v.to_dict() for k, v in probe.items()}}
    return out


@torch.no_grad()
def latent_stats(vae, images: torch.Tensor) -> dict:
    """The latent a diffusion model would learn from ``vae``, on ``images`` (N, 1, *grid) in [0, 1].

    Returns numbers per latent and per image, ``std`` (the unbiased SD of the posterior means over every element;
    ``scale_factor = 1 / std`` as `latent_scale_factor`), ``channel_std`` (smallest and largest SD of one channel),
    ``posterior_sd`` (the mean of the encoder's sigma) and ``sd_over_spread`` (posterior_sd / std).
    """
    vae.eval()
    mus, sigmas = [], []
    for batch in images.split(16):
        mu, sigma = vae.encode(batch)  # (B, latent_C, *latent_grid) each
        mus.append(mu.double())
        sigmas.append(sigma.double())
    mu, sigma = torch.cat(mus), torch.cat(sigmas)
    std = mu.std().item()
    per_channel = mu.transpose(0, 1).flatten(1).std(dim=1)  # (latent_C,)
    return {"numbers": mu[0].numel(), "image_numbers": images[0].numel(), "std": std, "scale_factor": 1.0 / std,
            "channel_std": [per_channel.min().item(), per_channel.max().item()],
            "posterior_sd": sigma.mean().item(), "sd_over_spread": sigma.mean().item() / std}


def training_brains(count: int) -> torch.Tensor:
    """(count, 1, 32, 32, 32): the first ``count`` training brains of `train.py` (both phantoms alternate)."""
    volumes = PhantomVolumes(phantom_configs(TRAIN_SEEDS), count)
    return torch.stack([volumes[i] for i in range(count)])


def vae_reconstructor(vae):
    return lambda images: reconstruct(vae, VolumeSet(images, "images"), batch_size=16, device="cpu")


def blur_reconstructor(sigma: float):
    from monai.transforms import GaussianSmooth

    smooth = GaussianSmooth(sigma=sigma)
    return lambda images: torch.stack([torch.as_tensor(smooth(x)) for x in images])


def demo_recipe_vae(phantom: str, seconds: dict) -> torch.nn.Module:
    """The VAE `metavoxel demo --train-vae` trains, on this phantom's seed-0 cohort's training split."""
    import dataclasses

    from metavoxel.vae import VAETrainConfig, train_vae
    from metavoxel.vae.architecture import VAESpec, build_vae
    from metavoxel.workflows.study import DEMO

    recipe = dataclasses.replace(DEMO, phantom=PHANTOMS[phantom])
    volumes = PhantomVolumes({phantom: phantom_configs({phantom: recipe.phantom_seed}, recipe.subjects)[phantom]},
                             recipe.subjects)
    train_rows = _training_rows(recipe)
    images = torch.stack([volumes[i] for i in train_rows])
    torch.manual_seed(recipe.seed)
    vae = build_vae(3, 1, VAESpec(channels=list(recipe.vae_channels), latent_channels=recipe.vae_latent_channels,
                                  num_res_blocks=1, norm_num_groups=min(8, recipe.vae_channels[0])))
    config = VAETrainConfig(steps=recipe.vae_steps, batch_size=recipe.vae_batch_size, lr=recipe.vae_lr,
                            adv_start=recipe.vae_steps, val_every=recipe.vae_steps, seed=recipe.seed)
    start = time.perf_counter()
    train_vae(vae, images, None, config)
    seconds[phantom] = time.perf_counter() - start
    return vae


def _training_rows(recipe) -> list[int]:
    """The subject indices of the recipe's training split (`metavoxel.data.split_subjects` on its cohort ids)."""
    from metavoxel.data.spec import SplitSpec
    from metavoxel.data.splits import assign_splits
    from metavoxel.phantom.model import participant_id

    ids = [participant_id(i) for i in range(recipe.subjects)]
    where = assign_splits(ids, SplitSpec(val=recipe.val_fraction, test=recipe.test_fraction, seed=recipe.seed))
    return [i for i, p in enumerate(ids) if where[p] == "train"]


def training_architecture(snapshots: Path) -> dict:
    """The architecture `train.py` recorded for the training whose ``snapshots`` folder this is (its
    ``train.json`` one folder up); the shipped `ARCHITECTURE` where none was recorded."""
    record = snapshots.parent / "train.json"
    return json.loads(record.read_text()).get("architecture", ARCHITECTURE) if record.is_file() else ARCHITECTURE


def validation_curve(training: Path) -> list[dict]:
    """The in-training validation rows (step, PSNR, SSIM) of a training's finished phases, in order."""
    rows = []
    for phase in PHASES:
        path = training / phase / "history.jsonl"
        if path.is_file():
            for line in path.read_text().splitlines():
                row = json.loads(line)
                if "val_psnr" in row:
                    rows.append({"phase": phase, "step": int(row["step"]), "psnr": row["val_psnr"],
                                 "ssim": row["val_ssim"]})
    return rows


def load_snapshot(path: Path, architecture: dict | None = None):
    """A training snapshot (weights only) as an eval-mode VAE of ``architecture`` (default: its training's)."""
    from safetensors.torch import load_file

    from metavoxel.vae.architecture import VAESpec, build_vae

    vae = build_vae(3, 1, VAESpec(**(architecture or training_architecture(path.parent))))
    vae.load_state_dict(load_file(str(path)))
    return vae.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vae", type=Path, help="A VAE folder (vae.json + vae.safetensors) to judge.")
    parser.add_argument("--snapshots", type=Path, action="append", default=[],
                        help="Folder of training snapshots (learning curves); repeat for trainings side by side.")
    parser.add_argument("--latent-brains", type=int, default=256,
                        help="Training brains on which each VAE's latent is described (spread, posterior SD).")
    parser.add_argument("--every", type=int, default=1, help="Judge every k-th snapshot.")
    parser.add_argument("--steps", type=lambda text: {int(v) for v in text.split(",")},
                        help="Judge only the snapshots of these steps (comma-separated), e.g. 500,1000,1500.")
    parser.add_argument("--demo-recipe", action="store_true", help="Add the demo's VAE recipe trained from scratch.")
    parser.add_argument("--judges", type=int, default=150)
    parser.add_argument("--probe-fit", type=int, default=300)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    sets = judges_and_fit(args.judges, args.probe_fit)
    brains = training_brains(args.latent_brains)
    latents: dict[str, dict] = {}
    rows: dict[str, dict] = {"raw (the images themselves)": score(lambda x: x, sets),
                             "half-voxel blur (sigma 0.5 voxel)": score(blur_reconstructor(0.5), sets)}
    if args.vae is not None:
        from metavoxel.vae.checkpoint import load_vae

        vae, meta = load_vae(args.vae)
        rows[f"shipped VAE ({args.vae.name})"] = score(vae_reconstructor(vae), sets)
        latents[f"shipped VAE ({args.vae.name})"] = latent_stats(vae, brains)
    seconds: dict[str, float] = {}
    if args.demo_recipe:
        per_phantom = {name: score(vae_reconstructor(demo_recipe_vae(name, seconds)), {name: sets[name]})[name]
                       for name in sets}
        rows["demo recipe from scratch (200 steps of 8)"] = per_phantom
    curve, validation = [], {}
    for folder in args.snapshots:
        run, architecture = folder.parent.name, training_architecture(folder)
        validation[run] = validation_curve(folder.parent)
        found = sorted(folder.glob("*.safetensors"), key=lambda p: (PHASES.index(p.stem.split("-")[0]), p.stem))
        found = [p for p in found if args.steps is None or int(p.stem.rsplit("-", 1)[1]) in args.steps]
        for path in found[::args.every]:
            phase, step = re.fullmatch(r"(\w+)-(\d+)", path.stem).groups()
            vae = load_snapshot(path, architecture)
            curve.append({"run": run, "architecture": architecture, "phase": phase, "step": int(step),
                          "latent": latent_stats(vae, brains), **score(vae_reconstructor(vae), sets)})
            print(f"{run} {path.stem}: " + ", ".join(f"{n} {r['psnr']:.2f} dB" for n, r in curve[-1].items()
                                                     if n in sets), flush=True)
    result = {"command": " ".join(sys.argv), "machine": f"{platform.machine()}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} thread(s)", "judges": args.judges, "probe_fit": args.probe_fit,
              "latent_brains": args.latent_brains, "rows": rows, "latents": latents, "demo_recipe_seconds": seconds,
              "curve": curve, "validation": validation}
    write_json(args.out, result)
    for name, per in rows.items():
        cells = []
        for phantom, r in per.items():
            age, sex = r["probe"]["age"], r["probe"]["sex"]
            cells.append(f"{phantom}: {r['psnr']:.2f} dB, SSIM {r['ssim']:.3f}, age MAE refit {age['mae_refit']:.2f}"
                         f" (raw {age['mae_raw']:.2f}), sex refit {sex['accuracy_refit']:.2f} "
                         f"(raw {sex['accuracy_raw']:.2f})")
        print(f"{name}: " + "; ".join(cells))
    for entry in curve:
        cells = [f"{phantom}: {entry[phantom]['psnr']:.2f} dB, SSIM {entry[phantom]['ssim']:.3f}, age MAE refit "
                 f"{entry[phantom]['probe']['age']['mae_refit']:.2f}, sex refit "
                 f"{entry[phantom]['probe']['sex']['accuracy_refit']:.2f}" for phantom in sets]
        print(f"{entry['run']} {entry['phase']} {entry['step']}: " + "; ".join(cells))
    for name, stats in [*latents.items(), *((f"{e['run']} {e['phase']} {e['step']}", e["latent"]) for e in curve)]:
        print(f"latent of {name}: {stats['numbers']} numbers ({stats['image_numbers']} in the image), SD "
              f"{stats['std']:.3f} (scale factor {stats['scale_factor']:.3f}; per channel {stats['channel_std'][0]:.3f}"
              f"-{stats['channel_std'][1]:.3f}), posterior SD {stats['posterior_sd']:.4f} "
              f"({stats['sd_over_spread']:.3f} of the spread)")


if __name__ == "__main__":
    main()
