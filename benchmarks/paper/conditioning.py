"""The conditioning comparison of the paper benchmark (issue 12), on the phantom and the DenseNet readers.

Three joint models trained with the same budget, data, VAE and seed — the paper's recipe (one shared t,
its schedules), the paper's recipe with matched schedules (the Gaussian variables on the cosine schedule of
the categorical one), and the per-variable-level mixture (`metavoxel.presets.RECOMMENDED_TRAINING`) — and,
side by side in one run, each way of conditioning them:

- age from image + sex: MAE of the mean of the first 3 samples (Table 1's figure) and of ``calibration``
  samples; CRPS, spread-skill and coverage of the interval with the level it really has at that S
  (`metavoxel.evaluation.uncertainty`);
- sex from image + age: accuracy of the majority of 3 samples;
- conditional generation: one image per test subject generated for its age and sex, read back by the
  DenseNet121 baselines (r and slope of read-back against requested age, sex accuracy), and its FID / MMD
  against the real test images; the ceiling of that read-back is the same readers on the VAE's
  reconstructions of the real test images;
- inpainting: the left half of each test image kept, the right half generated; RMS error of the generated
  half against the truth next to an unconditional sample's, and the seam ratio (`evaluation.inpainting`);
  the VAE's reconstruction of the truth, pasted the same way (`metavoxel.diffusion.blend.seamless_paste`),
  is what a sampler that found each image's own latent would score;
- point predictions (the mixture: renoise-and-read, 5 network calls) and likelihood classification of sex
  (every model) as the reference for what a model knows;
- seconds per subject of each.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import torch

from metavoxel.errors import InputError
from metavoxel.evaluation import Readers, Roles
from metavoxel.evaluation.image_metrics import fid_mmd_3plane
from metavoxel.diffusion.blend import seamless_paste
from metavoxel.evaluation.inpainting import region_error, seam_ratio
from metavoxel.evaluation.protocol import class_samples, class_truth, point_prediction
from metavoxel.evaluation.report import fmt, markdown_table
from metavoxel.evaluation.scalar_metrics import classification_metrics, sample_frequencies
from metavoxel.evaluation.uncertainty import uncertainty_metrics
from metavoxel.evaluation.zero_shot import likelihood_classification

__all__ = ["GUIDANCE", "conditioning_study", "conditioning_report"]

#: guidance weights of the mixture's conditional generation (the first one also for its predictions)
GUIDANCE = (1.0, 2.0)
#: RePaint's resampling for the paper model: (jump length, rounds)
JUMPS = (5, 3)


def pearson_slope(requested: torch.Tensor, read: torch.Tensor) -> tuple[float, float]:
    """Pearson r and least-squares slope of ``read`` on ``requested`` (both (N,))."""
    a, b = requested.double() - requested.double().mean(), read.double() - read.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm())), float((a * b).sum() / (a * a).sum())


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    return fn(), time.perf_counter() - start


def readback(readers: Readers, images: torch.Tensor, age: torch.Tensor, sex: torch.Tensor) -> dict[str, float]:
    """The DenseNet readers on (N, 1, *S) images generated for (or holding) ``age`` (N,) and ``sex`` (N,)."""
    read_age = readers.continuous(images, sex).double()
    probs = readers.categorical(images, age.float())
    r, slope = pearson_slope(age, read_age)
    return {"readback_r": r, "readback_slope": slope,
            "readback_mae": float((read_age - age.double()).abs().mean()),
            "readback_sex": float((probs.argmax(dim=1) == sex).double().mean())}


def _row(model, test: dict, readers: Readers, features, options: dict, *, calibration: int, seed: int,
         batch_size: int, keep: torch.Tensor, reference: torch.Tensor, uncond_error: float) -> dict[str, Any]:
    """Every measure of one (model, conditioning) pair; ``calibration`` 0 draws 3 age samples only."""
    n = len(test["age"])
    age = torch.as_tensor(test["age"], dtype=torch.float64)
    sex = class_truth(model, "sex", test["sex"])
    run = dict(seed=seed, batch_size=batch_size, **options)
    draws = max(3, calibration)
    reg, sec_a = _timed(lambda: model.sample(fix={"image": test["image"], "sex": test["sex"]}, num_samples=draws,
                                             **run))
    ages = reg.samples["age"].reshape(n, draws).double()
    row: dict[str, Any] = {"age_mae": float((ages[:, :3].mean(1) - age).abs().mean())}
    if calibration:
        scores = uncertainty_metrics(ages, age, seed=seed)
        row.update({f"age_mae_{draws}": float((ages.mean(1) - age).abs().mean()), "crps": scores["crps"],
                    "spread_skill": scores["spread_skill"], "coverage": scores["coverage"],
                    "coverage_level": scores["coverage_level"], "calibration_samples": draws})
    cls, sec_s = _timed(lambda: model.sample(fix={"image": test["image"], "age": test["age"]}, num_samples=3, **run))
    votes = class_samples(model, "sex", cls.samples["sex"].reshape(n, 3))
    row["sex_accuracy"] = classification_metrics(sex, samples=votes, probs=sample_frequencies(votes, 2),
                                                 classes=["F", "M"])["accuracy"]
    gen, sec_g = _timed(lambda: model.sample(fix={"age": test["age"], "sex": test["sex"]}, **run))
    images = gen.samples["image"][:, 0].float()
    row.update(readback(readers, images, age, sex))
    row.update({f"gen_{k}": v for k, v in fid_mmd_3plane(test["image"].float(), images, features).items()
                if k in ("fid", "mmd")})
    filled, sec_i = _timed(lambda: model.sample(fix={"image": test["image"]}, masks={"image": keep}, **run))
    filled = filled.samples["image"][:, 0].float()
    error = float(region_error(filled, reference, keep).mean())
    row.update({"inpaint_rms": error, "inpaint_vs_uncond": error / uncond_error,
                "seam": float(seam_ratio(filled, keep).nanmean())})
    row["seconds_per_subject"] = {"age": sec_a / (n * draws) * 3, "sex": sec_s / n, "generation": sec_g / n,
                                  "inpainting": sec_i / n}
    return row


def conditioning_study(models: dict, test: dict, val: dict, readers: Readers, features, *, steps: int,
                       calibration: int = 20, likelihood_timesteps: int = 25, batch_size: int = 96, seed: int = 0,
                       jumps: bool = True, progress: Callable[[str], None] = print) -> dict[str, Any]:
    """The comparison on ``models`` {"paper", "matched", "mixture": JointModel} (see the module docstring); "paper"
    and "mixture" are required, a missing "matched" (``--skip matched``) leaves its rows out, and ``jumps=False``
    the RePaint-with-resampling row.

    Args:
        test, val: raw records (``image`` (N, 1, *S) in [0, 1], ``age`` years, ``sex`` labels).
        readers: the DenseNet121 baselines as `Readers` (conditional fidelity and its ceiling).
        features: the FID/MMD feature network.
        steps: reverse steps of every sampler; calibration: age samples per subject for the spread scores.

    Returns:
        JSON-ready ``{"ceiling", "unconditional", "rows": {label: measures}, "point", "likelihood",
        "guided_generation"}``.
    """
    age = torch.as_tensor(test["age"], dtype=torch.float64)
    sex = class_truth(models["paper"], "sex", test["sex"])
    images = test["image"].float()
    keep = torch.zeros_like(images, dtype=torch.bool)
    keep[:, :, : images.shape[2] // 2] = True  # the first half along the first axis (left of a RAS grid)
    out: dict[str, Any] = {"guidance": list(GUIDANCE), "jumps": list(JUMPS) if jumps else None,
                           "calibration_samples": calibration,
                           "steps": steps, "n_test": len(age)}
    var = models["paper"].variables["image"]
    with torch.no_grad():
        recon = torch.cat([var.decode(var.encode(chunk)).clamp(0, 1).cpu()
                           for chunk in images.split(batch_size)]).float()
    pasted = seamless_paste(recon, images, keep)  # the fill of a sampler that found each image's own latent
    out["ceiling"] = {"real": readback(readers, images, age, sex), "vae_reconstruction": readback(readers, recon, age, sex),
                      "inpaint_seam_truth": float(seam_ratio(images, keep).nanmean()),
                      "inpaint_rms_vae": float(region_error(pasted, images, keep).mean()),
                      "inpaint_seam_vae": float(seam_ratio(pasted, keep).nanmean())}
    out["unconditional"], uncond_error = {}, {}
    for name, model in models.items():
        free, sec = _timed(lambda: model.sample(num_subjects=len(age), steps=steps, seed=seed + 1,
                                                batch_size=batch_size))
        fake = free.samples["image"][:, 0].float()
        uncond_error[name] = float(region_error(fake, images, keep).mean())
        out["unconditional"][name] = {**{k: v for k, v in fid_mmd_3plane(images, fake, features).items()
                                         if k in ("fid", "mmd")},
                                      "inpaint_rms": uncond_error[name], "seconds_per_subject": sec / len(age)}
        progress(f"    unconditional {name}: {out['unconditional'][name]}")
    w = GUIDANCE[0]
    plan = [("paper recipe · repaint", "paper", dict(conditioning="repaint"), calibration),
            (f"paper recipe · repaint, jumps {JUMPS[0]}×{JUMPS[1]}", "paper",
             dict(conditioning="repaint", jump_length=JUMPS[0], jump_rounds=JUMPS[1]), 0),
            ("matched schedules · repaint", "matched", dict(conditioning="repaint"), calibration),
            ("mixture · repaint", "mixture", dict(conditioning="repaint"), 0),
            ("mixture · clean", "mixture", dict(conditioning="clean"), calibration),
            (f"mixture · clean + guidance {w:g}", "mixture", dict(conditioning="clean", guidance=w), 0)]
    plan = [p for p in plan if p[1] in models and (jumps or "jump_length" not in p[2])]
    out["rows"] = {}
    for label, name, options, calib in plan:
        try:
            row = _row(models[name], test, readers, features, {"steps": steps, **options}, calibration=calib,
                       seed=seed, batch_size=batch_size, keep=keep, reference=images, uncond_error=uncond_error[name])
        except InputError as err:  # a mode the model was not trained for: its refusal is the result
            row = {"refused": str(err)}
        out["rows"][label] = row
        progress(f"    {label}: { {k: v for k, v in row.items() if k != 'seconds_per_subject'} }")
    out["guided_generation"] = {}
    for weight in GUIDANCE[1:]:
        gen, sec = _timed(lambda: models["mixture"].sample(fix={"age": test["age"], "sex": test["sex"]}, steps=steps,
                                                           seed=seed, batch_size=batch_size, conditioning="clean",
                                                           guidance=weight))
        fake = gen.samples["image"][:, 0].float()
        out["guided_generation"][f"{weight:g}"] = {
            **readback(readers, fake, age, sex), "seconds_per_subject": sec / len(age),
            **{f"gen_{k}": v for k, v in fid_mmd_3plane(images, fake, features).items() if k in ("fid", "mmd")}}
        progress(f"    mixture · clean + guidance {weight:g}, generation: {out['guided_generation'][f'{weight:g}']}")
    point = point_prediction(models["mixture"], test, Roles(), seed=seed, batch_size=batch_size)
    point.pop("continuous"), point.pop("probs")
    out["point"] = point
    out["likelihood"] = {}
    for name, model in models.items():
        result = likelihood_classification(model, test, val, "sex", ["image", "age"], timesteps=likelihood_timesteps,
                                           seed=seed, batch_size=batch_size)
        result.pop("probs")
        out["likelihood"][name] = {**result, "seconds_per_subject": result["seconds"] / len(age)}
    return out


def conditioning_report(study: dict[str, Any], densenet: dict[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Markdown of the comparison and the issue's targets for ``mixture · clean``, checked; (text, checks)."""
    ceiling = study["ceiling"]["vae_reconstruction"]
    real = study["ceiling"]["real"]
    header = ["model · conditioning", "age MAE (3)", f"age MAE ({study['calibration_samples']})", "CRPS",
              "spread-skill", "coverage (calibrated)", "sex acc (3)", "read-back r", "slope", "read-back sex",
              "gen FID", "inpaint vs uncond", "seam", "s / subject (age, sex, gen, inpaint)"]
    rows = []
    for label, r in study["rows"].items():
        if "refused" in r:
            rows.append([label, "refused: " + r["refused"]] + [""] * (len(header) - 2))
            continue
        s = r["seconds_per_subject"]
        cov = "" if "coverage" not in r else f"{r['coverage']:.2f} ({r['coverage_level']:.3f})"
        rows.append([label, fmt(r["age_mae"]), fmt(r.get(f"age_mae_{study['calibration_samples']}")),
                     fmt(r.get("crps")), fmt(r.get("spread_skill")), cov, fmt(r["sex_accuracy"], 3),
                     fmt(r["readback_r"], 3), fmt(r["readback_slope"], 3), fmt(r["readback_sex"], 3),
                     fmt(r["gen_fid"]), fmt(r["inpaint_vs_uncond"], 3), fmt(r["seam"], 3),
                     ", ".join(f"{s[k]:.3f}" for k in ("age", "sex", "generation", "inpainting"))])
    for w, g in study["guided_generation"].items():
        rows.append([f"mixture · clean + guidance {w} (generation only)"] + [""] * 6
                    + [fmt(g["readback_r"], 3), fmt(g["readback_slope"], 3), fmt(g["readback_sex"], 3),
                       fmt(g["gen_fid"]), "", "", f"gen {g['seconds_per_subject']:.3f}"])
    p = study["point"]
    rows.append([f"mixture · point prediction ({p['calls_per_subject']} calls)", fmt(p["regression"]["mae"]), "", "",
                 "", "", fmt(p["classification"]["accuracy"], 3), "", "", "", "", "", "",
                 f"{p['regression']['seconds_per_subject']:.3f}, {p['classification']['seconds_per_subject']:.3f}"])
    for name, lik in study["likelihood"].items():
        rows.append([f"{name} · sex by likelihood", "", "", "", "", "", fmt(lik["accuracy"], 3), "", "", "", "", "",
                     "", f"sex {lik['seconds_per_subject']:.3f}"])
    rows.append(["DenseNet121 (task-specific)", fmt(densenet["regression"]["mae"]), "", "", "", "",
                 fmt(densenet["classification"]["accuracy"], 3), "", "", "", "", "", "",
                 f"{densenet['seconds_per_subject']:.4f} (both)"])
    floor = study["ceiling"].get("inpaint_rms_vae")  # runs before 2026-11-30 did not measure it
    mixture_uncond = study["unconditional"].get("mixture", {}).get("inpaint_rms")
    floor_ratio = "" if floor is None or not mixture_uncond else f"{floor / mixture_uncond:.3f} (of mixture's)"
    rows.append(["ceiling: VAE reconstructions of the test images (inpainting: pasted the same way)", "", "", "",
                 "", "", "", fmt(ceiling["readback_r"], 3), fmt(ceiling["readback_slope"], 3),
                 fmt(ceiling["readback_sex"], 3), "", floor_ratio, fmt(study["ceiling"].get("inpaint_seam_vae"), 3),
                 ""])
    rows.append(["readers on the real test images", "", "", "", "", "", "", fmt(real["readback_r"], 3),
                 fmt(real["readback_slope"], 3), fmt(real["readback_sex"], 3), "", "",
                 fmt(study["ceiling"]["inpaint_seam_truth"], 3) + " (truth)", ""])
    uncond = markdown_table(["model", "unconditional FID", "MMD", "s / image"],
                            [[name, fmt(u["fid"]), fmt(u["mmd"], 4), fmt(u["seconds_per_subject"], 3)]
                             for name, u in study["unconditional"].items()])

    checks: list[dict[str, Any]] = []
    clean = study["rows"].get("mixture · clean", {})
    repaint = study["rows"].get("paper recipe · repaint", {})
    if "refused" not in clean and "refused" not in repaint and clean and repaint:
        def check(name: str, value: float, holds: bool, rule: str) -> None:
            checks.append({"target": name, "measured": value, "met": bool(holds), "rule": rule})

        ratio = clean["readback_r"] / ceiling["readback_r"]
        check("read-back r", ratio, ratio >= 0.8, "r(clean) / r(ceiling) ≥ 0.8")
        check("read-back slope", clean["readback_slope"], 0.8 <= clean["readback_slope"] <= 1.2, "slope in [0.8, 1.2]")
        # the readers shrink towards the mean on real images too: the slope they can show is the ceiling's
        ratio = clean["readback_slope"] / ceiling["readback_slope"]
        check("read-back slope vs ceiling", ratio, 0.8 <= ratio <= 1.2, "slope / ceiling slope in [0.8, 1.2]")
        ratio = clean["readback_sex"] / ceiling["readback_sex"]
        check("sex read-back", ratio, ratio >= 0.9, "sex read-back / ceiling ≥ 0.9")
        ratio = clean["age_mae"] / densenet["regression"]["mae"]
        check("age MAE vs DenseNet", ratio, ratio <= 1.0, "MAE(clean, 3 samples) / MAE(DenseNet) ≤ 1")
        ratio = clean["sex_accuracy"] / densenet["classification"]["accuracy"]
        check("sex accuracy vs DenseNet", ratio, ratio >= 1.0, "accuracy(clean, 3 samples) / accuracy(DenseNet) ≥ 1")
        check("spread-skill", clean["spread_skill"], 0.8 <= clean["spread_skill"] <= 1.25, "in [0.8, 1.25]")
        gap = clean["coverage"] - clean["coverage_level"]
        check("coverage", gap, abs(gap) <= 0.05, f"within 5 points of {clean['coverage_level']:.3f} (S = "
              f"{clean['calibration_samples']})")
        check("inpainting vs unconditional", clean["inpaint_vs_uncond"], clean["inpaint_vs_uncond"] <= 0.7, "≤ 0.7")
        check("inpainting vs repaint", clean["inpaint_rms"] / repaint["inpaint_rms"],
              clean["inpaint_rms"] < repaint["inpaint_rms"], "RMS(clean) < RMS(repaint)")
        check("seam", clean["seam"], clean["seam"] <= 1.2, "border / inside gradient ≤ 1.2")
        truth = study["ceiling"]["inpaint_seam_truth"]  # the real images' own ratio at that border
        check("seam vs truth", clean["seam"] / truth, clean["seam"] <= 1.2 * truth, "seam / the truth's seam ≤ 1.2")
        ratio = clean["gen_fid"] / repaint["gen_fid"]
        check("conditional FID vs repaint", ratio, ratio <= 1.1, "FID(clean) / FID(repaint) ≤ 1.1")
    target_table = markdown_table(["target (mixture · clean)", "rule", "measured", "met"],
                                  [[c["target"], c["rule"], fmt(c["measured"], 3), "yes" if c["met"] else "**no**"]
                                   for c in checks])
    text = "\n".join([
        "### Conditioning: paper recipe, matched schedules and the mixture, side by side", "",
        f"{study['n_test']} test subjects, {study['steps']} reverse steps; spread scores from "
        f"{study['calibration_samples']} age samples per subject; read-back by the DenseNet121 baselines; the "
        "left half of each test image kept for inpainting. `benchmarks/paper/conditioning.py`.", "",
        markdown_table(header, rows), "", uncond, "", target_table, ""])
    return text, checks
