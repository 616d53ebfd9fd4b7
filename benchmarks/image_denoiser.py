"""How well a run's image denoiser estimates x0 at each noise level, and how far its generated latents are
from real ones: the measurement that showed the demo's eps-predicting image model failing near t = T.

For the held-out records' latents (read from the run's latent cache) at one shared level t, with age and sex
noised to the same t (the paper's diagonal, what unconditional generation walks), it prints the MSE of the
network's x0 estimate against two references that need no network: the training latents' mean (the best
constant) and the per-element Gaussian posterior mean ``mu + var sqrt(abar) / (abar var + 1 - abar) (z_t -
sqrt(abar) mu)`` (the best denoiser that treats every latent element as an independent Gaussian). A
denoiser worse than the constant at some level walks the sampler away from the data there. Then it draws
``--generate`` latents unconditionally and prints the spread across records of each latent element (the
mean over elements of the SD across records), generated against real: a sampler that leaves noise in, or
whose coarse structure is wrong, shows a larger spread. Last, how much of the data's age effect the
denoiser applies: with age given clean (level 0) at 45 and at 90 years and sex at its true value, the mean
difference of the two x0 estimates, projected on the difference a per-element linear regression of the
training latents on age and sex predicts for 45 years (1: the whole effect; the cosine says whether the
direction is right). A denoiser that applies a small fraction generates brains that carry little of
their requested age, whatever the sampler does.

    OMP_NUM_THREADS=2 python benchmarks/image_denoiser.py runs/exp/v/model \
        "runs/exp/latents-vae-600-{age_effect:3.0,sex_effect:2.0}-(8,16,32)-8-200-constant"

What it can and cannot show: the x0 MSE is averaged over elements and records at one noise draw per level
(90 records: a few percent of noise); the spread compares one summary of the distribution, not the
distribution. The age-effect fraction compares with a linear summary of the data's effect; an exact
denoiser reaches about 1 at t = T (where its x0 estimate is the conditional mean) and less at low t (where
z_t itself pins x0 down), so read its high-t rows. `benchmarks/RESULTS.md` ("The image denoiser near t = T")
lists what it showed.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from latent_probe import load  # benchmarks/ is on sys.path when this file runs as a script
from metavoxel.runs import load_run

LEVELS = (1, 10, 30, 100, 200, 300, 500, 700, 850, 1000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("cache", type=Path, help="the run's latent cache (index.json + shards/)")
    parser.add_argument("--cohort", type=Path, default=None, help="BIDS root (default: the run's splits.json source)")
    parser.add_argument("--generate", type=int, default=24, help="latents drawn unconditionally for the spread")
    parser.add_argument("--steps", type=int, default=50)
    args = parser.parse_args()
    splits = json.loads((args.run / "splits.json").read_text())
    cohort = args.cohort or Path(splits["source"])
    latents, age, sex = load(args.cache, cohort)
    index = json.loads((args.cache / "index.json").read_text())["entries"]
    subjects = [Path(e["source"]).name.split("_")[0] for _, e in sorted(index.items(), key=lambda kv: kv[1]["source"])]
    held_out = torch.tensor([s in set(splits["test"]) for s in subjects])
    model = load_run(args.run)
    model.eval()
    image, age_var, sex_var = model.variables["image"], model.variables["age"], model.variables["sex"]
    prediction = getattr(image, "prediction", "eps")
    mu, var = latents[~held_out].mean(0), latents[~held_out].var(0)
    z0 = {"image": latents[held_out].float(),
          "age": age_var.encode(age[held_out].float()[:, None]),
          "sex": sex_var.encode(sex[held_out].long())}
    n = len(z0["image"])
    present = {k: torch.ones(n, dtype=torch.bool) for k in z0}
    truth = latents[held_out]
    gen = torch.Generator().manual_seed(0)
    print(json.dumps({"run": str(args.run), "prediction": prediction, "held_out": n}))
    with torch.no_grad():
        for level in LEVELS:
            t = torch.full((n,), min(level, model.timesteps), dtype=torch.long)
            batch = model.corrupt(z0, present, t=t, generator=gen)
            out = model.denoise(batch.z_t, t)["image"].double()
            z_t = batch.z_t["image"].double()
            x0 = image.process.x0_from(z_t, out, t, prediction)
            a = image.process.abar[int(t[0])]
            gauss = mu + var * a.sqrt() / (a * var + 1 - a) * (z_t - a.sqrt() * mu)
            print(json.dumps({"t": int(t[0]), "abar_t": round(float(a), 5),
                              "x0_mse_network": round(float((x0 - truth).pow(2).mean()), 4),
                              "x0_mse_gaussian": round(float((gauss - truth).pow(2).mean()), 4),
                              "x0_mse_mean": round(float((mu - truth).pow(2).mean()), 4)}))
        kept: dict[str, torch.Tensor] = {}
        decode = image.decode

        def keeping_decode(z: torch.Tensor) -> torch.Tensor:  # the generated latents, before the VAE decodes them
            kept["z"] = z.detach().clone()
            return decode(z)

        image.decode = keeping_decode
        try:
            model.sample(num_subjects=args.generate, steps=args.steps, seed=0, batch_size=96)
        finally:
            image.decode = decode
    generated = kept["z"].double()
    print(json.dumps({"spread_real": round(float(latents.std(0).mean()), 3),
                      "spread_generated": round(float(generated.std(0).mean()), 3),
                      "sd_real": round(float(latents.std()), 3), "sd_generated": round(float(generated.std()), 3)}))
    train = ~held_out
    design = torch.stack([torch.ones(int(train.sum()), dtype=torch.float64), age[train], sex[train]], 1)
    beta = torch.linalg.lstsq(design, latents[train].reshape(int(train.sum()), -1)).solution  # (3, D)
    effect = beta[1] * 45.0  # the data's latent difference between 90 and 45 years
    zeros = torch.zeros(n, dtype=torch.long)
    with torch.no_grad():
        for level in (1000, 700, 500, 300, 100):
            t = torch.full((n,), min(level, model.timesteps), dtype=torch.long)
            z_t, _ = image.process.q_sample(z0["image"], t, generator=gen)
            x0 = {}
            for years in (45.0, 90.0):
                z = {"image": z_t, "age": age_var.encode(torch.full((n, 1), years)), "sex": z0["sex"]}
                out = model.denoise(z, {"image": t, "age": zeros, "sex": zeros})["image"].double()
                x0[years] = image.process.x0_from(z_t.double(), out, t, prediction).reshape(n, -1)
            applied = (x0[90.0] - x0[45.0]).mean(0)
            print(json.dumps({"t": int(t[0]), "age_effect_fraction": round(float(applied @ effect / (effect @ effect)), 3),
                              "age_effect_cosine": round(float(torch.nn.functional.cosine_similarity(applied, effect, 0)), 3)}))


if __name__ == "__main__":
    main()
