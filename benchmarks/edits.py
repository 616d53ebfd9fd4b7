"""Counterfactual edits scored against the phantom's true counterfactual, and the deviation map's lesion AUROC.

On held-out subjects of a phantom cohort (the run's test split), each scan is edited ten years older
(``age=+10``) and compared with the same subject rendered by the phantom at that age (same anatomy, nuisance
and noise draws: `metavoxel.phantom.phantom_subject(..., counterfactual=...)`), beside three baselines:

- **no edit**: the scan itself;
- **new brain**: one brain sampled for the new values (what ``sample --fix age=.. --fix sex=..`` gives);
- **cohort effect**: the scan plus the cohort's average age effect, the mean brain at the new age minus the
  mean brain at the old one (per voxel, least squares of the training split's images on age, age² and sex).

Per method, inside the brain (voxels > 0 in the scan or the truth), on the model grid, in the model's units (the
scan's intensities scaled by its 0.5/99.5 percentiles): MAE against the truth; r, the correlation of
edited - original with truth - original (how much of the true change is reproduced); identity, the MAE against
the truth where the truth did not change (|truth - original| < 0.02); read-back, the age the model's point
prediction reads from the result (with the subject's sex) minus the new age; and seconds per edit. For the edits:
cycle consistency (+10 then -10, MAE to the scan) and, beside them, the VAE's reconstruction MAE of the same
scans and truths (an edit through the VAE cannot beat what it reconstructs, except where the scan's own voxels
are kept), and the latent ceiling: the true counterfactual encoded and decoded (D(E(truth)), and as a change,
scan + D(E(truth)) - D(E(scan))), the best any edit in the VAE's latent space can do. Then the deviation map: a hypointense lesion (a sphere of 1.5 voxels' radius in white matter, its
intensity halved) is inserted into held-out brains, and each voxel's -z is scored against the lesion mask
(AUROC over brain voxels, per subject then averaged), for the model's map against the scan or its VAE
reconstruction, and for an empirical normative baseline: z against the training brains of the same sex
within 5 years of age.

    OMP_NUM_THREADS=1 python benchmarks/edits.py --run /work/demo-run --subjects 24 --lesions 12

Results: benchmarks/RESULTS.md, "Counterfactual edits".
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from metavoxel.diffusion.options import EditOptions, SamplingOptions
from metavoxel.phantom import PhantomConfig, phantom_subject
from metavoxel.runs import load_run

SHIFT = 10.0
UNCHANGED = 0.02  # |truth - original| below this (model units) counts as "the truth did not change"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="a demo folder: cohort/ (phantom) and model/")
    parser.add_argument("--subjects", type=int, default=24, help="held-out subjects edited")
    parser.add_argument("--lesions", type=int, default=12, help="held-out subjects given a lesion (0: skip)")
    parser.add_argument("--samples", type=int, default=16, help="brains per deviation map")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps each way")
    parser.add_argument("--variants", nargs="+", default=["0:0", "1:0", "2:0", "1:1", "1:2"],
                        help="edits tried, REFINE:GUIDANCE (fixed-point refinements, guidance weight)")
    parser.add_argument("--toy-steps", type=int, default=0, help="also train a 2D toy model (pixel space, no VAE) "
                        "this many steps and score its edits against the toy's counterfactual (0: skip)")
    parser.add_argument("--json", type=Path, default=None, help="write every number here too")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    toy = toy_edits(args.toy_steps, args.steps) if args.toy_steps > 0 else {}
    model = load_run(args.run / "model")
    config = PhantomConfig.model_validate(json.loads((args.run / "cohort" / "phantom.json").read_text())["config"])
    splits = json.loads((args.run / "model" / "splits.json").read_text())
    var = model.variables["image"]
    info = {"run": str(args.run), "steps": args.steps, "torch_threads": torch.get_num_threads()}
    print(f"# {args.run}: phantom {config.size[0]}³, age_effect {config.age_effect:g}, sex_effect {config.sex_effect:g}",
          flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        held = []
        for pid in splits["test"]:
            k = int(pid.split("-")[1]) - 1
            draw = phantom_subject(config, k)
            if draw.age + SHIFT <= 95.0:
                held.append(k)
            if len(held) == args.subjects + args.lesions:
                break
        edit_ids, lesion_ids = held[:args.subjects], held[args.subjects:]
        x, truth, ages, sexes = load_pairs(var, config, edit_ids, Path(tmp))
        train_x, train_age, train_sex = load_training(var, args.run / "cohort", splits["train"])
    brain = (x > 0) | (truth > 0)  # (N, 1, *shape)
    n = len(edit_ids)
    print(f"{n} held-out subjects, age {ages.mean():.1f} ± {ages.std():.1f}, {int((sexes == 'F').sum())} F; "
          f"{len(train_age)} training brains for the cohort effect", flush=True)

    results: dict[str, dict[str, float]] = {}
    outputs: dict[str, torch.Tensor] = {}
    outputs["no edit"] = x.clone()
    start = time.perf_counter()
    new = model.sample(fix={"age": (ages + SHIFT).tolist(), "sex": sexes.tolist()},
                       options=SamplingOptions(num_samples=1, seeds=list(range(n))))
    outputs["new brain"] = new.samples["image"][:, 0].float()
    seconds = {"no edit": 0.0, "new brain": (time.perf_counter() - start) / n}
    start = time.perf_counter()
    effect = cohort_effect(train_x, train_age, train_sex, ages, sexes)
    outputs["cohort effect"] = x + effect
    seconds["cohort effect"] = (time.perf_counter() - start) / n
    fix = {"image": x, "age": ages.tolist(), "sex": sexes.tolist()}
    edits = {}
    for variant in args.variants:
        refine, w = int(variant.split(":")[0]), float(variant.split(":")[1])
        start = time.perf_counter()
        r = model.edit(fix, {"age": f"+{SHIFT:g}"}, EditOptions(steps=args.steps, refine=refine, guidance=w))
        spent = (time.perf_counter() - start) / n
        tag = f"refine {refine}, w {w:g}"
        for output, image in (("change", r.original["image"] + r.decoded["image"] - r.reconstructed["image"]),
                              ("decoded", r.decoded["image"])):
            name = f"edit: {output}, {tag}"
            outputs[name], seconds[name] = image, spent
            edits[name] = (refine, w, output)
        print(f"  {tag}: {spent:.2f} s per edit ({r.network_calls} network calls for {n})", flush=True)
    # references: the scan through the VAE, and the ceiling of any latent edit: the true counterfactual's latent
    recon_x, recon_t = var.decode(var.encode(x)).float(), var.decode(var.encode(truth)).float()
    outputs["VAE reconstruction of the scan"], seconds["VAE reconstruction of the scan"] = recon_x, 0.0
    outputs["latent ceiling: change"], seconds["latent ceiling: change"] = x + recon_t - recon_x, 0.0
    outputs["latent ceiling: decoded"], seconds["latent ceiling: decoded"] = recon_t, 0.0
    reader = readback(model, outputs, sexes, ages + SHIFT)
    for name, image in outputs.items():
        results[name] = scores(image, x, truth, brain) | {"readback": reader[name], "seconds": seconds[name]}
    results["truth"] = {"readback": readback(model, {"truth": truth}, sexes, ages + SHIFT)["truth"]}
    # cycle consistency of each edit: +10 then -10
    for name, (refine, w, output) in edits.items():
        back = model.edit({"image": outputs[name].clamp(0, 1), "age": (ages + SHIFT).tolist(), "sex": sexes.tolist()},
                          {"age": f"-{SHIFT:g}"}, EditOptions(steps=args.steps, refine=refine, guidance=w,
                                                             output=output))
        results[name]["cycle"] = masked_mae(back.edited["image"], x, brain)
    vae = {"scan": masked_mae(recon_x, x, brain), "truth": masked_mae(recon_t, truth, brain)}
    print_edits(results, vae, n)

    lesion = {}
    if lesion_ids:
        lesion = lesion_auroc(model, var, config, lesion_ids, train_x, train_age, train_sex, args.samples, args.steps)
        print_lesions(lesion, len(lesion_ids), args.samples)
    if args.json is not None:
        args.json.write_text(json.dumps({"info": info, "edits": results, "vae": vae, "lesion": lesion, "toy": toy}, indent=1))


# -- the toy: the same edit without a VAE ----------------------------------------------------------------
def toy_edits(train_steps: int, steps: int, n: int = 96) -> dict:
    """A toy model (16x16 pixel blobs whose radius and brightness grow with age, `metavoxel.toy`) with the
    recommended recipe, trained ``train_steps``; its edits +SHIFT years scored against the toy's counterfactual
    (the same noise, the blob at the new age) beside the same baselines (cohort effect: voxelwise LS on the
    training images). Isolates the edit from a VAE: what the method gives where the model is in pixel space."""
    import metavoxel as mv
    from metavoxel.presets import RECOMMENDED_TRAINING
    from metavoxel.toy import TOY_SPEC, toy_cohort
    from metavoxel.training import fit

    torch.manual_seed(0)
    spec = {**TOY_SPEC, "diffusion": {**TOY_SPEC["diffusion"], "training": dict(RECOMMENDED_TRAINING),
                                      "conditioning": "clean"}}
    model = mv.JointModel(spec)
    train = toy_cohort(2000, seed=0)
    start = time.perf_counter()
    fit(model, train, steps=train_steps, batch_size=32, seed=0)
    print(f"toy model: {train_steps} steps in {time.perf_counter() - start:.0f} s", flush=True)
    test, later = toy_cohort(n * 2, seed=7), toy_cohort(n * 2, seed=7, age_shift=SHIFT)
    keep = torch.nonzero(later["age"] <= 95.0)[:n, 0]
    x, truth = test["image"][keep], later["image"][keep]
    ages, groups = test["age"][keep].numpy(), np.array(test["group"])[keep.numpy()]
    mask = torch.ones_like(x, dtype=torch.bool)
    outputs = {"no edit": x}
    outputs["new brain"] = model.sample(fix={"age": (ages + SHIFT).tolist(), "group": groups.tolist()},
                                        seeds=list(range(len(x)))).samples["image"][:, 0]
    t_age, t_group = train["age"].numpy(), np.array(train["group"])
    flat = train["image"].reshape(len(t_age), -1).double()
    toy_design = lambda a, g: torch.cat([design(a, np.array(["F"] * len(a))), torch.stack(  # noqa: E731
        [torch.as_tensor(g == k, dtype=torch.float64) for k in ("B", "C")], 1)], 1)
    coef = torch.linalg.lstsq(toy_design(t_age, t_group), flat).solution
    effect = (toy_design(ages + SHIFT, groups) - toy_design(ages, groups)) @ coef
    outputs["cohort effect"] = x + effect.float().reshape(x.shape)
    for w in (0.0, 1.0, 2.0):
        r = model.edit({"image": x, "age": ages.tolist(), "group": groups.tolist()}, {"age": f"+{SHIFT:g}"},
                       EditOptions(steps=steps, refine=1, guidance=w))
        outputs[f"edit: change, refine 1, w {w:g}"] = r.edited["image"]
        outputs[f"edit: decoded, refine 1, w {w:g}"] = r.decoded["image"]
    out = {name: scores(image, x, truth, mask) for name, image in outputs.items()}
    for name, image in outputs.items():  # how much of the true change's size: LS slope of change on true change
        true_change = (truth - x).flatten()
        out[name]["slope"] = float(((image - x).flatten() * true_change).sum() / true_change.pow(2).sum())
    print(f"\n| toy ({len(x)} held-out images, +{SHIFT:g} years) | MAE vs truth | r | size (slope) | identity MAE |\n"
          "|---|---|---|---|---|")
    for name, v in out.items():
        r_text = "—" if v["r"] != v["r"] else f"{v['r']:.2f}"
        print(f"| {name} | {v['mae']:.4f} | {r_text} | {v['slope']:.2f} | {v['identity']:.4f} |")
    return out


# -- data ----------------------------------------------------------------------------------------------
def load_pairs(var, config: PhantomConfig, indices: list[int], tmp: Path):
    """Scans and their true counterfactuals (+SHIFT years) on the model grid, both in the scan's units."""
    from metavoxel.io.nifti_write import write_nifti

    xs, ts, ages, sexes = [], [], [], []
    for k in indices:
        factual = phantom_subject(config, k)
        later = phantom_subject(config, k, counterfactual={"age": f"+{SHIFT:g}"})
        paths = [write_nifti(tmp / f"{k}_{w}.nii.gz", s.image, s.affine) for w, s in (("x", factual), ("t", later))]
        px, pt = var.prepare(str(paths[0])), var.prepare(str(paths[1]))
        xs.append(px.tensor)
        lo, hi = (float(v) for v in px.intensity_range[0])
        t_lo, t_hi = (float(v) for v in pt.intensity_range[0])
        ts.append(((pt.tensor * (t_hi - t_lo) + t_lo) - lo) / (hi - lo))  # the truth in the scan's units
        ages.append(factual.age)
        sexes.append(factual.sex)
    return torch.stack(xs), torch.stack(ts), np.array(ages), np.array(sexes)


def load_training(var, cohort: Path, ids: list[str]):
    lines = (line.split("\t") for line in (cohort / "participants.tsv").read_text().splitlines()[1:])
    rows = {cols[0]: cols[1:3] for cols in lines}
    images, ages, sexes = [], [], []
    for pid in ids:
        images.append(var.prepare(str(cohort / pid / "anat" / f"{pid}_T1w.nii.gz")).tensor)
        ages.append(float(rows[pid][0]))
        sexes.append(rows[pid][1].strip())
    return torch.stack(images), np.array(ages), np.array(sexes)


# -- baselines and scores --------------------------------------------------------------------------------
def design(ages: np.ndarray, sexes: np.ndarray) -> torch.Tensor:
    u = (torch.as_tensor(ages, dtype=torch.float64) - 70.0) / 10.0
    return torch.stack([torch.ones_like(u), u, u * u, torch.as_tensor(sexes == "M", dtype=torch.float64)], 1)


def cohort_effect(train_x, train_age, train_sex, ages, sexes) -> torch.Tensor:
    """(N, 1, *shape): the mean brain at age + SHIFT minus the mean brain at age (voxelwise least squares)."""
    flat = train_x.reshape(len(train_x), -1).double()
    coef = torch.linalg.lstsq(design(train_age, train_sex), flat).solution  # (4, V)
    diff = design(ages + SHIFT, sexes) - design(ages, sexes)
    return (diff @ coef).float().reshape(len(ages), *train_x.shape[1:])


def masked_mae(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    return float(((a - b).abs() * mask).sum() / mask.sum())


def scores(image, x, truth, brain) -> dict[str, float]:
    change, true_change = image - x, truth - x
    r = []
    for i in range(len(x)):
        m = brain[i].flatten()
        a, b = change[i].flatten()[m].double(), true_change[i].flatten()[m].double()
        r.append(float(torch.corrcoef(torch.stack([a, b]))[0, 1]) if a.std() > 0 else float("nan"))
    still = brain & (true_change.abs() < UNCHANGED)
    r = [v for v in r if v == v]
    return {"mae": masked_mae(image, truth, brain), "r": float(np.mean(r)) if r else float("nan"),
            "identity": masked_mae(image, truth, still)}


def readback(model, outputs: dict[str, torch.Tensor], sexes, target) -> dict[str, float]:
    """Mean (read age - target) by the model's point prediction from each result and the subject's sex."""
    out = {}
    for name, image in outputs.items():
        p = model.point_predict({"image": image.clamp(0, 1), "sex": sexes.tolist()}, "age",
                                seeds=list(range(len(image))))
        out[name] = float((p.mean["age"].double().numpy() - target).mean())
    return out


# -- deviation maps ---------------------------------------------------------------------------------------
def lesion_auroc(model, var, config, indices, train_x, train_age, train_sex, samples: int, steps: int) -> dict:
    gen = np.random.default_rng(0)
    scans, masks, ages, sexes = [], [], [], []
    for k in indices:
        subject = phantom_subject(config, k)
        with tempfile.TemporaryDirectory() as tmp:
            from metavoxel.io.nifti_write import write_nifti

            path = write_nifti(Path(tmp) / "x.nii.gz", subject.image, subject.affine)
            x = var.prepare(str(path)).tensor  # (1, *shape)
        wm = torch.nonzero(x[0] > 0.8)
        centre = wm[gen.integers(len(wm))].double()
        grid = torch.stack(torch.meshgrid(*[torch.arange(s) for s in x.shape[1:]], indexing="ij")).double()
        sphere = ((grid - centre.reshape(3, 1, 1, 1)) ** 2).sum(0).sqrt() <= 1.5
        lesion = sphere & (x[0] > 0)
        scans.append(torch.where(lesion[None], x * 0.5, x))
        masks.append(lesion)
        ages.append(subject.age)
        sexes.append(subject.sex)
    scans_t, ages_a, sexes_a = torch.stack(scans), np.array(ages), np.array(sexes)
    out = {}
    for reference in ("scan", "reconstruction"):
        start = time.perf_counter()
        dev = model.deviation({"image": scans_t, "age": ages_a.tolist(), "sex": sexes_a.tolist()},
                              num_samples=samples, steps=steps, seed=0, reference=reference)
        out[f"model, {reference}"] = {"auroc": _auroc(-dev.z[:, 0], masks, scans_t),
                                      "seconds": (time.perf_counter() - start) / len(indices)}
    z = []
    for i in range(len(indices)):
        near = (np.abs(train_age - ages_a[i]) <= 5) & (train_sex == sexes_a[i])
        ref = train_x[torch.as_tensor(near)]
        z.append((scans_t[i] - ref.mean(0)) / ref.std(0).clamp_min(0.02))
    out["cohort, same sex ±5 y"] = {"auroc": _auroc(-torch.stack(z)[:, 0], masks, scans_t), "seconds": 0.0}
    return out


def _auroc(score: torch.Tensor, masks: list[torch.Tensor], scans: torch.Tensor) -> float:
    """Mean over subjects of the AUROC of ``score`` for lesion voxels against the other brain voxels."""
    values = []
    for i, lesion in enumerate(masks):
        brain = (scans[i, 0] > 0) | lesion
        pos, neg = score[i][lesion & brain].double(), score[i][~lesion & brain].double()
        ranks = torch.cat([pos, neg]).argsort().argsort().double() + 1  # ties: negligible for continuous scores
        values.append(float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg))))
    return float(np.mean(values))


# -- tables ---------------------------------------------------------------------------------------------
def print_edits(results, vae, n) -> None:
    print(f"\n| method ({n} held-out subjects, +{SHIFT:g} years) | MAE vs truth | r (change) | identity MAE | "
          "read-back − target (years) | cycle MAE | s / edit |")
    print("|---|---|---|---|---|---|---|")
    for name, s in results.items():
        if name == "truth":
            continue
        cycle = f"{s['cycle']:.4f}" if "cycle" in s else "—"
        r = "—" if s["r"] != s["r"] else f"{s['r']:.2f}"
        print(f"| {name} | {s['mae']:.4f} | {r} | {s['identity']:.4f} | {s['readback']:+.1f} | {cycle} | "
              f"{s['seconds']:.2f} |")
    print(f"| the true counterfactual | 0 | 1 | 0 | {results['truth']['readback']:+.1f} | — | — |")
    print(f"\nVAE reconstruction MAE in the brain: scans {vae['scan']:.4f}, truths {vae['truth']:.4f}")


def print_lesions(lesion, n, samples) -> None:
    print(f"\n| deviation map ({n} held-out brains with a lesion, {samples} samples) | voxel AUROC | s / map |")
    print("|---|---|---|")
    for name, s in lesion.items():
        print(f"| {name} | {s['auroc']:.3f} | {s['seconds']:.1f} |")


if __name__ == "__main__":
    main()
