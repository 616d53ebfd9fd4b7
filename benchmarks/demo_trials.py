"""Demo configurations against the demo's constants: one trial per call, a JSON line per trial.

A trial is the demo's pipeline (`metavoxel.workflows.study`: phantom cohort -> KL-VAE -> joint model) with
`DEMO` changed by the JSON config's ``recipe`` (``"training": "recommended"`` for `RECOMMENDED_TRAINING`),
then, on the held-out subjects: age from image + sex (sampling, and point prediction where the model allows
it), sex from image + age (the same), and the round trip (``gen_per`` brains generated per (age, sex) for
ages 45/70/90 and each sex, at each guidance weight, read back by the same model). The cohort and the VAE
are cached under ``runs/exp`` by their settings, so trials that differ only in the joint model reuse them.

    OMP_NUM_THREADS=1 python benchmarks/demo_trials.py \
        '{"name": "B", "recipe": {"training": "recommended", "phantom": {"age_effect": 2, "sex_effect": 2}},
          "guidance": [0, 2]}'

Results are appended to ``runs/exp/results.jsonl``; `benchmarks/RESULTS.md` ("The demo against its
constants") lists the trials run and what they showed.
"""
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

from metavoxel.data import DataSpec, load_splits, read_cohort
from metavoxel.runs import load_run
from metavoxel.presets import PAPER_TRAINING, RECOMMENDED_TRAINING
from metavoxel.workflows.evaluate import records
from metavoxel.workflows.study import DEMO, make_cohort, train_study_model, train_study_vae

def main(argv: list[str]) -> dict:
    """Run the trial of ``argv[0]`` (a JSON config); print, append and return its results."""
    cfg = json.loads(argv[0])
    name = cfg.pop("name")
    root = Path("runs/exp")
    out = root / name
    out.mkdir(parents=True, exist_ok=True)
    recipe_kw = cfg.get("recipe", {})
    if recipe_kw.get("training") == "recommended":
        recipe_kw["training"] = dict(RECOMMENDED_TRAINING)
    for k in ("vae_channels",):
        if k in recipe_kw:
            recipe_kw[k] = tuple(recipe_kw[k])
    recipe = dataclasses.replace(DEMO, **recipe_kw)
    times = {}
    t0 = time.perf_counter()
    pkey = json.dumps(recipe.phantom, sort_keys=True).replace('"', "").replace(" ", "")
    data = make_cohort(recipe, root / f"cohort-{recipe.subjects}-{pkey}")
    times["cohort"] = time.perf_counter() - t0
    vkey = f"vae-{recipe.subjects}-{pkey}-{recipe.vae_channels}-{recipe.vae_latent_channels}-{recipe.vae_steps}-{recipe.vae_lr_schedule}".replace(" ", "")
    vdir = root / vkey
    t0 = time.perf_counter()
    if (vdir / "summary.json").is_file():
        s = json.loads((vdir / "summary.json").read_text())
        weights, scale, vsum = Path(s["weights"]), s["scale"], s["summary"]
    else:
        weights, scale, vsum = train_study_vae(recipe, data, vdir)
        (vdir / "summary.json").write_text(json.dumps({"weights": str(weights), "scale": scale, "summary": vsum},
                                                      default=str))
    times["vae"] = time.perf_counter() - t0
    print("VAE", json.dumps({k: vsum.get(k) for k in ("val", "probe")}, default=str), flush=True)
    run_dir = out / "model"
    t0 = time.perf_counter()
    if not (run_dir / "state.json").exists():
        train_study_model(recipe, "joint", data, run_dir, vae_weights=weights, scale_factor=scale,
                          cache_dir=root / f"latents-{vkey}")
    times["train"] = time.perf_counter() - t0
    model = load_run(run_dir)
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    splits = load_splits(run_dir / "splits.json", cohort)
    train, test = cohort.select(splits["train"]).batch(), records(model, cohort, splits["test"], "image")
    sexes = model.variables["sex"].categories
    truth = torch.tensor(test["age"], dtype=torch.float64)
    train_mean = float(np.mean(train["age"]))
    base = float((truth - train_mean).abs().mean())
    train_f = float(np.mean([s == sexes[0] for s in train["sex"]]))
    major = max(train_f, 1 - train_f)
    res = {"name": name, "cfg": cfg, "n_test": len(truth), "age_base": base, "sex_major": major,
           "vae_psnr": (vsum.get("val") or {}).get("psnr"), "vae_probe": vsum.get("probe")}
    steps = cfg.get("steps", 50)
    S = cfg.get("num_samples", 3)
    cond = cfg.get("conditioning")
    seed = 0


    def timed(key, fn):
        t = time.perf_counter()
        r = fn()
        times[key] = time.perf_counter() - t
        return r


    # age | image, sex
    reg = timed("age_sample", lambda: model.sample(fix={"image": test["image"], "sex": test["sex"]}, num_samples=S,
                                                   steps=steps, seed=seed, batch_size=96, conditioning=cond))
    summ = reg.summary("age")
    mean = torch.tensor(summ["mean"], dtype=torch.float64)
    res["age_mae_sample"] = float((mean - truth).abs().mean())
    res["age_cover"] = float(((truth >= torch.tensor(summ["lower"])) & (truth <= torch.tensor(summ["upper"]))).double().mean())
    res["age_level"] = summ["level"][0]
    samples = reg.samples["age"].reshape(len(truth), -1).double()
    var = samples.var(dim=1).mean()
    mse = ((mean - truth) ** 2).mean()
    res["age_spread_skill"] = float(mse / (var * (1 + 1 / S))) if S > 1 else None
    cls = None if cfg.get("skip_sex_sample") else timed("sex_sample", lambda: model.sample(fix={"image": test["image"], "age": test["age"]}, num_samples=S,
                                                   steps=steps, seed=seed, batch_size=96, conditioning=cond))
    if cls is not None:
        maj = cls.summary("sex")["majority"]
        res["sex_acc_sample"] = float(np.mean([m == s for m, s in zip(maj, test["sex"])]))
    trained_clean = model.spec.diffusion.training.clean > 0
    if trained_clean:
        try:
            pa = timed("age_point", lambda: model.point_predict({"image": test["image"], "sex": test["sex"]}, ["age"], seed=0))
            res["age_mae_point"] = float((pa.mean["age"].double().flatten() - truth).abs().mean())
            ps = timed("sex_point", lambda: model.point_predict({"image": test["image"], "age": test["age"]}, ["sex"], seed=0))
            pred = [sexes[i] for i in ps.probs["sex"].argmax(-1).tolist()]
            res["sex_acc_point"] = float(np.mean([p == s for p, s in zip(pred, test["sex"])]))
        except Exception as exc:  # noqa
            res["point_error"] = repr(exc)
    # round trip: K images per (age, sex), read back by age | image, sex sampling
    K = cfg.get("gen_per", 4)
    wanted = [(a, s) for s in sexes for a in (45.0, 70.0, 90.0) for _ in range(K)]
    for w in cfg.get("guidance", [0.0]):
        if w and not trained_clean:
            continue
        gen = timed(f"gen_w{w}", lambda: model.sample(fix={"age": [a for a, _ in wanted], "sex": [s for _, s in wanted]},
                                                       steps=steps, seed=seed, batch_size=96, conditioning=cond, guidance=w))
        imgs = gen.samples["image"][:, 0]
        back = timed(f"readback_w{w}", lambda: model.sample(fix={"image": imgs, "sex": [s for _, s in wanted]},
                                                              num_samples=S, steps=steps, seed=seed + 1, batch_size=96,
                                                              conditioning=cond))
        bm = np.array(back.summary("age")["mean"])
        sb = model.sample(fix={"image": imgs, "age": [a for a, _ in wanted]}, num_samples=S, steps=steps, seed=seed + 2,
                          batch_size=96, conditioning=cond).summary("sex")["majority"]
        table = {}
        for i, (a, s) in enumerate(wanted):
            table.setdefault(f"{s}{int(a)}", []).append(float(bm[i]))
        res[f"readback_w{w}"] = {k: round(float(np.mean(v)), 1) for k, v in table.items()}
        req = np.array([a for a, _ in wanted])
        res[f"readback_w{w}_r"] = float(np.corrcoef(req, bm)[0, 1])
        res[f"readback_w{w}_slope"] = float(np.polyfit(req, bm, 1)[0])
        res[f"readback_w{w}_sexacc"] = float(np.mean([m == s for m, (_, s) in zip(sb, wanted)]))
    res["times"] = {k: round(v, 1) for k, v in times.items()}
    print(json.dumps(res, default=str), flush=True)
    with open(root / "results.jsonl", "a") as f:
        f.write(json.dumps(res, default=str) + "\n")
    return res


if __name__ == "__main__":
    main(sys.argv[1:])
