"""How much age and sex a linear probe reads from a run's cached VAE latents (the joint model's input).

Fits `metavoxel.vae.probe.RidgeProbe` (penalty by leave-one-out) on a random 75% of the cached latents
and scores the other 25%: age MAE against the training mean's, sex accuracy against the majority class.
Views: the flat latent, its 2x2x2 average pool, per-channel quantiles and moments, and pool + squares.
A linear probe is a lower bound on what the latents carry.

    OMP_NUM_THREADS=1 python benchmarks/latent_probe.py runs/demo/latents runs/demo/cohort
"""
import csv, json, sys
from pathlib import Path
import torch
from safetensors.torch import load_file
from metavoxel.vae.probe import RidgeProbe

cache = Path(sys.argv[1]); cohort = Path(sys.argv[2])
index = json.loads((cache / "index.json").read_text())["entries"]
shards = {}
rows = {r["participant_id"]: r for r in csv.DictReader(open(cohort / "participants.tsv"), delimiter="\t")}
X, age, sex = [], [], []
for key, e in sorted(index.items(), key=lambda kv: kv[1]["source"]):
    if e["shard"] not in shards:
        shards[e["shard"]] = load_file(cache / "shards" / e["shard"])
    sub = Path(e["source"]).name.split("_")[0]
    X.append(shards[e["shard"]][key].flatten()); age.append(float(rows[sub]["age"])); sex.append(rows[sub]["sex"] == "M")
X = torch.stack(X).double(); age = torch.tensor(age, dtype=torch.float64); sex = torch.tensor(sex, dtype=torch.float64)
n = len(X); g = torch.Generator().manual_seed(0); perm = torch.randperm(n, generator=g)
tr, te = perm[: int(0.75 * n)], perm[int(0.75 * n):]
for name, feats in (("flat", X), ("pool4", torch.nn.functional.avg_pool3d(X.reshape(n, 8, 8, 8, 8), 2).reshape(n, -1))):
    mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-8
    f = (feats - mu) / sd
    p = RidgeProbe().fit(f[tr], age[tr].unsqueeze(1))
    mae = (p.predict(f[te]).flatten() - age[te]).abs().mean()
    base = (age[tr].mean() - age[te]).abs().mean()
    q = RidgeProbe().fit(f[tr], sex[tr].unsqueeze(1))
    acc = ((q.predict(f[te]).flatten() > 0.5).double() == sex[te]).double().mean()
    maj = max(sex[tr].mean(), 1 - sex[tr].mean())
    print(f"{name}: n={n} age MAE {mae:.2f} (mean {base:.2f}, ratio {mae/base:.2f}); sex acc {acc:.2f} (majority {maj:.2f})")
# nonlinear summaries: per-channel quantiles and moments over the 8^3 grid, and pooled squares
lat = X.reshape(n, 8, -1)
qs = torch.quantile(lat, torch.linspace(0.05, 0.95, 10, dtype=torch.float64), dim=2).permute(1, 2, 0).reshape(n, -1)
mom = torch.cat([lat.mean(2), lat.std(2), (lat ** 3).mean(2)], 1)
sq = torch.nn.functional.avg_pool3d(X.reshape(n, 8, 8, 8, 8) ** 2, 2).reshape(n, -1)
pool = torch.nn.functional.avg_pool3d(X.reshape(n, 8, 8, 8, 8), 2).reshape(n, -1)
for name, feats in (("quantiles", torch.cat([qs, mom], 1)), ("pool4+sq", torch.cat([pool, sq], 1))):
    mu, sd = feats[tr].mean(0), feats[tr].std(0) + 1e-8
    f = (feats - mu) / sd
    p = RidgeProbe().fit(f[tr], age[tr].unsqueeze(1))
    mae = (p.predict(f[te]).flatten() - age[te]).abs().mean()
    base = (age[tr].mean() - age[te]).abs().mean()
    print(f"{name}: age MAE {mae:.2f} (mean {base:.2f}, ratio {mae/base:.2f})")
