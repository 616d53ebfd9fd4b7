"""The paper benchmark's report: Table 1 and 2 analogues, ablations, the targets, figures, RESULTS.md."""

from __future__ import annotations

import datetime
from pathlib import Path
from conditioning import conditioning_report

from metavoxel.evaluation.report import (coverage_text, figure_links, fmt, markdown_table, pm, table2_markdown,
                                         uncertainty_markdown)
from metavoxel.evaluation.protocol import class_truth
from metavoxel.evaluation.scalar_metrics import calibration_curve
from metavoxel.io.atomic import write_json, write_text
from metavoxel.workflows.evaluate import json_ready, write_figures


def table1(metavoxel: dict, image_only: dict, cont: dict | None, baselines: dict) -> str:
    gen = metavoxel["generation"]
    rows = [["MetaVoxel (one joint model)", pm(metavoxel["regression"]["mae"], metavoxel["regression"]["mae_sd"]),
             fmt(metavoxel["classification"]["accuracy"], 3), fmt(metavoxel["classification"]["auroc"], 3),
             fmt(metavoxel["classification"]["ece"], 3), fmt(gen["fid"]), fmt(gen["mmd"], 4),
             fmt(gen["ms_ssim_diversity"], 3)],
            ["MetaVoxel, sex by likelihood", "", fmt(metavoxel["likelihood"]["accuracy"], 3),
             fmt(metavoxel["likelihood"]["auroc"], 3), fmt(metavoxel["likelihood"]["ece"], 3), "", "", ""],
            ["MetaVoxel, continuous sex", "not run (--skip)", "", "", "", "", "", ""] if cont is None else
            ["MetaVoxel, continuous sex", pm(cont["regression"]["mae"], cont["regression"]["mae_sd"]),
             fmt(cont["classification"]["accuracy"], 3), fmt(cont["classification"]["auroc"], 3),
             fmt(cont["classification"]["ece"], 3), "", "", ""],
            ["image-only LDM", "", "", "", "", fmt(image_only["fid"]), fmt(image_only["mmd"], 4),
             fmt(image_only["ms_ssim_diversity"], 3)]]
    for arch, label in (("densenet121", "DenseNet121 (task-specific)"), ("vit", "ViT (task-specific)")):
        b = baselines[arch]
        rows.append([label, pm(b["regression"]["mae"], b["regression"]["mae_sd"]),
                     fmt(b["classification"]["accuracy"], 3), fmt(b["classification"]["auroc"], 3),
                     fmt(b["classification"]["ece"], 3), "", "", ""])
    return markdown_table(["model", "age MAE ± SD (years)", "sex accuracy", "sex AUROC", "sex ECE", "FID (3-plane)",
                           "MMD", "MS-SSIM (lower = more diverse)"], rows)


def targets(metavoxel: dict, image_only: dict, baselines: dict) -> tuple[str, list[dict]]:
    """The issue's four targets, each with the measured figure and whether it holds."""
    dn = baselines["densenet121"]
    rows2 = {r["given"]: r for r in metavoxel["table2"]}
    checks = []

    def check(name: str, value: float, bound: float, holds: bool, rule: str) -> None:
        checks.append({"target": name, "measured": value, "bound": bound, "met": bool(holds), "rule": rule})

    ratio = metavoxel["regression"]["mae"] / dn["regression"]["mae"]
    check("age MAE vs DenseNet", ratio, 1.15, ratio <= 1.15, "MetaVoxel MAE / DenseNet MAE ≤ 1.15 (paper 1.14)")
    ratio = metavoxel["classification"]["accuracy"] / dn["classification"]["accuracy"]
    check("sex accuracy vs DenseNet", ratio, 0.92, ratio >= 0.92, "MetaVoxel acc / DenseNet acc ≥ 0.92 (paper 0.92)")
    ratio = metavoxel["generation"]["fid"] / image_only["fid"]
    check("FID vs image-only LDM", ratio, 1.10, ratio <= 1.10, "MetaVoxel FID / image-only FID ≤ 1.10 (paper 0.99)")
    i_s, i, s, none = (rows2[k]["mae"] for k in ("I,C", "I", "C", "none"))
    pop = rows2["population mean"]["mae"]
    with_image = max(i_s, i)
    without = min(s, none, pop)
    pattern = (abs(i_s - i) <= 0.25 * max(i_s, i) and with_image <= 0.5 * without
               and max(s, none, pop) <= 1.25 * without)
    check("Table 2 MAE pattern", with_image / without, 0.5, pattern,
          "MAE(I,S) ≈ MAE(I) (within 25%), both ≤ 0.5 × min(MAE(S), MAE(∅), population), and those three within 25%")
    var_ratio = (min(rows2["C"]["mean_sample_variance"], rows2["none"]["mean_sample_variance"])
                 / max(rows2["I,C"]["mean_sample_variance"], rows2["I"]["mean_sample_variance"]))
    check("Table 2 variance", var_ratio, 3.0, var_ratio >= 3.0,
          "mean sample variance without the image ≥ 3 × with it")
    table = markdown_table(["target", "rule", "measured", "met"],
                           [[c["target"], c["rule"], fmt(c["measured"], 3), "yes" if c["met"] else "**no**"]
                            for c in checks])
    return table, checks


def ablation_tables(ablation: dict | None) -> str:
    if ablation is None:
        return "Not run (`--skip ablations`)."
    steps = markdown_table(["reverse steps", "age MAE", "sex accuracy", "FID", "s / subject (both tasks)"],
                           [[r["steps"], fmt(r["mae"]), fmt(r["accuracy"], 3), fmt(r.get("fid")),
                             fmt(r["seconds_per_subject"], 3)] for r in ablation["steps"]])
    # coverage is read against the level its interval really has at that S (0.5 at S = 3, see
    # metavoxel.variables.summaries), never against a nominal 90%
    samples = markdown_table(["samples per subject", "age MAE", "age CRPS", "age spread-skill (1 = calibrated)",
                              "age interval coverage (calibrated sampler)", "sex accuracy", "s / subject (both tasks)"],
                             [[r["samples"], fmt(r["mae"]), fmt(r.get("crps")), fmt(r.get("spread_skill")),
                               coverage_text(r.get("coverage"), r.get("coverage_level")), fmt(r["accuracy"], 3),
                               fmt(r["seconds_per_subject"], 3)] for r in ablation["samples"]])
    return steps + "\n\n" + samples


def _which_vae(vae: dict) -> str:
    if vae.get("pretrained"):
        return f"the shipped {vae['pretrained']!r} ({vae['unseen']})"
    return "trained on the cohort (--train-vae)"


def write_report(out: Path, results: Path | None, *, bench, command: str, machine: str, clock: dict, vae: dict,
                 metavoxel: dict, image_only: dict, continuous_sex: dict | None, baselines: dict,
                 ablation: dict | None, test: dict, joint, population_mean: float, conditioning: dict,
                 skipped: list[str] = ()) -> list[Path]:
    target_table, checks = targets(metavoxel, image_only, baselines)
    conditioning_text, conditioning_checks = conditioning_report(conditioning, baselines["densenet121"])
    lik, cls = metavoxel["likelihood"], metavoxel["classification"]
    gen = metavoxel["generation"]
    fidelity = metavoxel["conditional_fidelity"]
    minutes = {k: round(v / 60, 2) for k, v in clock.items()}
    body = [
        f"## Paper benchmark, `{bench.recipe.name}` configuration — {datetime.date.today().isoformat()}",
        "", f"Command: `{command}`  ", f"Machine: {machine}  ", f"Configuration: {bench.notes}  ",
        f"Wall time: {minutes['total']} min in total ({', '.join(f'{k} {v}' for k, v in minutes.items() if k != 'total')}).",
        *([f"Not run (`--skip`): {', '.join(skipped)}."] if skipped else []),
        "", f"Held-out test set: {metavoxel['n_test']} phantom subjects; {metavoxel['num_samples']} samples per "
        f"prediction, {metavoxel['steps']} reverse steps. VAE: {_which_vae(vae)}, "
        f"validation PSNR {fmt((vae.get('val') or {}).get('psnr'))} dB, "
        f"SSIM {fmt((vae.get('val') or {}).get('ssim'), 3)}. FID/MMD features: `{gen['network']}` "
        f"({'comparable' if gen.get('comparable') else 'not comparable'} with published FIDs).",
        "", "### Table 1 analogue", "", table1(metavoxel, image_only, continuous_sex, baselines),
        "", "### Table 2 analogue: age under each conditioning set", "",
        table2_markdown(metavoxel["table2"], "sex", "years"),
        "", "### Targets (measured in this run)", "", target_table,
        "", "### Uncertainty of age given image and sex", "",
        uncertainty_markdown(metavoxel["uncertainty"], "age", "years", flag="`num_samples` ="),
        "", "### Calibration and conditional fidelity", "",
        f"- Sex by majority of samples: accuracy {fmt(cls['accuracy'], 3)}, probability accuracy "
        f"{fmt(cls['prob_accuracy'], 3)}, ECE {fmt(cls['ece'], 3)}, {fmt(cls['seconds_per_subject'], 3)} s/subject.",
        f"- Sex by likelihood ({bench.likelihood_timesteps} timesteps, temperature {fmt(lik['temperature'], 3)} fitted "
        f"on the validation split): accuracy {fmt(lik['accuracy'], 3)}, probability accuracy "
        f"{fmt(lik['prob_accuracy'], 3)}, ECE {fmt(lik['ece'], 3)}, {fmt(lik['seconds_per_subject'], 3)} s/subject.",
        f"- Conditional fidelity (images generated for the test subjects' age and sex, read back by the "
        f"DenseNet121 baselines): age MAE {pm(fidelity['continuous_mae'], fidelity['continuous_mae_sd'])} years "
        f"(r = {fmt(fidelity['continuous_r'])}), sex accuracy {fmt(fidelity['categorical_accuracy'], 3)}.",
        f"- Population-mean predictor (training mean {population_mean:.1f} years): MAE "
        f"{fmt(metavoxel['table2'][-1]['mae'])} years.",
        "", "### Ablations (MetaVoxel)", "", ablation_tables(ablation), "", conditioning_text,
    ]
    figures = write_paper_figures(out, metavoxel=metavoxel, image_only=image_only, baselines=baselines,
                                  ablation=ablation, test=test, joint=joint)
    body += ["### Figures", "", f"PNG and PDF in `{out}`: "
             + ", ".join(f"`{f.name}`" for f in figures if f.suffix == ".png") + ".", ""]
    text = "\n".join(body)
    # report.md sits beside the figures, so it shows them; RESULTS.md only names them
    files = [write_text(out / "report.md", text + "\n" + "\n\n".join(figure_links([f.name for f in figures])) + "\n")]
    metrics = {"config": bench.recipe.to_dict(), "command": command, "machine": machine, "minutes": minutes,
               "skipped": list(skipped),
               "vae": vae, "targets": checks, "conditioning_targets": conditioning_checks,
               **json_ready({"metavoxel": metavoxel, "image_only": image_only, "conditioning": conditioning,
                                                              "continuous_sex": continuous_sex,
                                                              "baselines": baselines, "ablation": ablation})}
    files.append(write_json(out / "metrics.json", metrics))
    files += figures
    if results is not None:
        previous = results.read_text() if results.is_file() else "# Benchmark results\n"
        files.append(write_text(results, previous.rstrip("\n") + "\n\n" + text))
    return files


def write_paper_figures(out: Path, *, metavoxel: dict, image_only: dict, baselines: dict, ablation: dict, test: dict,
                        joint) -> list[Path]:
    """Every figure of the report (PNG + PDF): `write_figures`' plots with the baselines beside MetaVoxel, the
    ablations as line plots, and real, MetaVoxel and image-only brains as orthogonal planes."""
    from metavoxel.evaluation import Roles
    from ablation_figure import ablation_lines  # beside this file: only this benchmark measures the ablations
    from metavoxel.figures import BrainImage, brain_views
    from metavoxel.workflows.previews import UNITS, grid_affine

    truth_k = class_truth(joint, "sex", test["sex"])
    files = write_figures(
        out, metavoxel, test, Roles(), joint,
        extra_scatter={f"{label} (task-specific)": baselines[arch]["predictions"].numpy()
                       for arch, label in (("densenet121", "DenseNet121"), ("vit", "ViT"))},
        extra_calibration={f"{label} (task-specific)": calibration_curve(truth_k, baselines[arch]["probs"])
                           for arch, label in (("densenet121", "DenseNet121"), ("vit", "ViT"))},
        brains=False)  # samples_by_model below shows the real and MetaVoxel images, and the image-only LDM's
    if ablation is not None:
        files += ablation_lines(out / "ablations.png", ablation, name="age", categorical="sex", unit="years")
    affine = grid_affine(joint.variables["image"])
    rows = {"real (held out)": test["image"], "MetaVoxel": metavoxel["generation"]["images"],
            "image-only LDM": image_only["images"]}
    grid = [[BrainImage(v[0], affine, f"image {i}") for i, v in enumerate(images[:4])] for images in rows.values()]
    files += brain_views(out / "samples_by_model.png", grid, row_labels=list(rows), units=UNITS,
                         title="real images and unconditional samples of each model")
    return files
