"""The sampling grid's spacing, side by side on one trained model: uniform (the paper's) against quadratic.

For each grid, on the run's held-out subjects: the continuous variable sampled S times per subject given the
image and the categorical variable (MAE of the S-sample mean and of the first 3, mean sample SD, CRPS,
spread-skill, and coverage of the interval from S samples next to the level a calibrated sampler reaches),
then, with ``--fid``, unconditional and conditional images against the real ones (3-plane FID/MMD on the
model's VAE features). Both grids make the same number of network calls.

    OMP_NUM_THREADS=1 python benchmarks/sampling_grid.py --model runs/exp/v560/model \\
        --data "runs/exp/cohort-600-{age_effect:3.0,sex_effect:2.0}" --samples 20

Results: benchmarks/RESULTS.md, "The sampling grid".
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from metavoxel.data import DataSpec, load_splits, read_cohort
from metavoxel.diffusion.grid import GRID_SPACINGS
from metavoxel.evaluation.features import feature_network
from metavoxel.evaluation.image_metrics import fid_mmd_3plane
from metavoxel.evaluation.uncertainty import uncertainty_metrics
from metavoxel.runs import load_run
from metavoxel.workflows.evaluate import records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="run directory (with splits.json)")
    parser.add_argument("--data", type=Path, required=True, help="the cohort the run was trained on")
    parser.add_argument("--samples", type=int, default=20, help="samples per subject (S)")
    parser.add_argument("--conditioning", default=None, help="repaint or clean (default: the model's)")
    parser.add_argument("--continuous", default="age")
    parser.add_argument("--categorical", default="sex")
    parser.add_argument("--fid", action="store_true", help="also generated images' FID/MMD per grid")
    parser.add_argument("--batch-size", type=int, default=96)
    args = parser.parse_args(argv)
    model = load_run(args.model)
    cohort = read_cohort(args.data, model.variables, model.spec.data or DataSpec())
    test = records(model, cohort, load_splits(args.model / "splits.json", cohort)["test"], "image")
    truth = torch.as_tensor(test[args.continuous], dtype=torch.float64)
    features = feature_network("vae", vae=model.variables["image"].vae) if args.fid else None
    print(f"# {args.model}: {len(truth)} held-out subjects, S = {args.samples}, model grid "
          f"{model.spec.diffusion.grid}, {model.spec.diffusion.sampling_steps} steps", flush=True)
    for grid in GRID_SPACINGS:
        start = time.perf_counter()
        fixed = {"image": test["image"], args.categorical: test[args.categorical]}
        result = model.sample(fix=fixed, num_samples=args.samples, seed=0, batch_size=args.batch_size,
                              conditioning=args.conditioning, grid=grid)
        x = result.samples[args.continuous].reshape(len(truth), args.samples).double()
        scores = uncertainty_metrics(x, truth)
        row = {"grid": grid, "mae": float((x.mean(1) - truth).abs().mean()),
               "mae_3": float((x[:, :3].mean(1) - truth).abs().mean()), "sample_sd": float(x.std(1).mean()),
               "crps": scores["crps"], "spread_skill": scores["spread_skill"], "coverage": scores["coverage"],
               "calibrated_coverage": scores["coverage_level"], "seconds": time.perf_counter() - start}
        if features is not None:
            real = test["image"].float()
            for label, request in (("unconditional", dict(num_subjects=len(real), seed=1)),
                                   ("conditional", dict(fix={args.continuous: test[args.continuous],
                                                             args.categorical: test[args.categorical]}, seed=0))):
                fake = model.sample(batch_size=args.batch_size, grid=grid, **request).samples["image"][:, 0].float()
                scores = fid_mmd_3plane(real, fake, features)
                row[f"{label}_fid"], row[f"{label}_mmd"] = scores["fid"], scores["mmd"]
        print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()}), flush=True)


if __name__ == "__main__":
    main()
