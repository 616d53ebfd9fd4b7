"""Markdown tables of an evaluation: Table 1 (tasks × models), Table 2 (conditioning sets), one-model reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from metavoxel.variables.summaries import level_label

__all__ = ["coverage_text", "figure_links", "fmt", "generation_text", "markdown_table", "model_report", "pm",
           "table2_markdown", "uncertainty_markdown"]

_GIVEN = {"I,C": "image + {c}", "I": "image", "C": "{c}", "none": "nothing (∅)", "population mean": "population mean"}


def fmt(value: Any, digits: int = 2, missing: str = "—") -> str:
    """A number for a table: fixed digits, ``missing`` ('—') for None or NaN (e.g. an SD of one record)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def pm(mean: Any, sd: Any, digits: int = 2) -> str:
    return "—" if fmt(mean) == "—" else f"{fmt(mean, digits)} ± {fmt(sd, digits)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _coverage_header(level: Any) -> str:
    """A coverage column named by the interval's real level (the coverage a calibrated sampler reaches)."""
    if fmt(level) == "—":
        return "interval coverage"
    return f"coverage of the {level_label(level)} interval (calibrated: {fmt(level)})"


def coverage_text(coverage: Any, level: Any, se: Any = None) -> str:
    """'0.39 of the 50% interval (calibrated: 0.50 ± 0.05)': a coverage never read against a level it lacks."""
    if fmt(coverage) == "—" or fmt(level) == "—":
        return "— (one sample has no interval)"
    spread = f" ± {fmt(se)}" if fmt(se) != "—" else ""
    return f"{fmt(coverage)} of the {level_label(level)} interval (calibrated: {fmt(level)}{spread})"


def table2_markdown(rows: Sequence[Mapping[str, Any]], categorical: str = "sex", unit: str = "") -> str:
    """Paper Table 2: MAE ± SD, mean sample variance, CRPS, spread-skill and interval coverage per conditioning set.

    The coverage column is named by the interval's real level at the evaluation's S (0.5 from 3 samples);
    rows without it (reports written before the level was recorded) get a column that claims no level.
    """
    unit = f" ({unit})" if unit else ""
    level = next((r.get("coverage_level") for r in rows if fmt(r.get("coverage_level")) != "—"), None)
    return markdown_table(
        ["given", f"MAE ± SD{unit}", "mean sample variance", f"CRPS{unit}", "spread-skill (1 = calibrated)",
         _coverage_header(level)],
        [[_GIVEN.get(r["given"], r["given"]).format(c=categorical), pm(r["mae"], r["mae_sd"]),
          fmt(r.get("mean_sample_variance"), 1), fmt(r.get("crps")), fmt(r.get("spread_skill")),
          fmt(r.get("coverage"))] for r in rows])


def uncertainty_markdown(unc: Mapping[str, Any], name: str, unit: str = "", flag: str = "--num-samples") -> str:
    """The spread of ``name``'s samples judged (what `metavoxel.evaluation.uncertainty_metrics` returns)."""
    hist = unc["rank_histogram"]
    units = f" {unit}" if unit else ""
    s = unc["num_samples"]
    level = unc["coverage_level"]
    rows = [["CRPS (fair estimator; lower is better)", f"{fmt(unc['crps'])}{units}", "—"],
            ["spread-skill: MSE of the mean / ((1 + 1/S) mean sample variance)", fmt(unc["spread_skill"]),
             "1 (> 1: samples too narrow, < 1: too wide)"],
            ["interval coverage" if fmt(level) == "—" else f"coverage of the {level_label(level)} interval",
             fmt(unc["coverage"]), "—" if fmt(level) == "—" else f"{fmt(level)} ± {fmt(unc['coverage_se'])}"],
            [f"rank histogram χ² ({hist['dof']} dof)", f"{fmt(hist['chi2'])} (p = {fmt(hist['p_value'], 3)})",
             f"uniform: {fmt(hist['expected'], 1)} per rank"]]
    lines = [f"{s} samples of {name} per subject. A calibrated sampler (the truth one more draw from the same "
             "distribution as the samples) reaches the right-hand column.", "",
             markdown_table(["score", "measured", "calibrated sampler"], rows), "",
             "Rank of the truth among the samples (0: below all of them; a U shape means overconfident samples, "
             "a hump underconfident ones):", "",
             markdown_table(["rank", *(str(r) for r in range(s + 1))], [["subjects", *hist["counts"]]]), "",
             f"Coverage: {unc['coverage_note'].replace('--num-samples', flag)}."]
    return "\n".join(lines)


def model_report(evaluation: Mapping[str, Any], *, title: str, roles: Mapping[str, str], command: str = "",
                 figures: Sequence[str] = ()) -> str:
    """A one-model report (what `metavoxel evaluate` writes): every section the evaluation holds.

    Args:
        figures: file names of the figures beside the report; each PNG is shown, with a link to its PDF/SVG.
    """
    c, k = roles["continuous"], roles["categorical"]
    reg, cls = evaluation["regression"], evaluation["classification"]
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    n = evaluation["n_test"]
    which = "evaluated (--split all)" if evaluation.get("split") == "all" else "held-out"
    lines += [f"{n} {which} record{'s' if n != 1 else ''}, {evaluation['num_samples']} samples each, "
              f"{evaluation['steps']} reverse steps"
              + (f" on the {evaluation['grid']} grid." if evaluation.get("grid") else "."), "", "## Tasks", ""]
    rows = [[f"{c} from image + {k}", f"MAE {pm(reg['mae'], reg['mae_sd'])}",
             f"r = {fmt(reg['pearson_r'])}, coverage {coverage_text(reg['coverage'], reg.get('coverage_level'))}",
             fmt(reg["seconds_per_subject"])],
            [f"{k} from image + {c} (majority of samples)", f"accuracy {fmt(cls['accuracy'], 3)}",
             f"prob. acc. {fmt(cls['prob_accuracy'], 3)}, AUROC {fmt(cls['auroc'], 3)}, ECE {fmt(cls['ece'], 3)}",
             fmt(cls["seconds_per_subject"])]]
    if "point" in evaluation:
        point = evaluation["point"]
        preg, pcls = point["regression"], point["classification"]
        how = f"point prediction, {point['calls_per_subject']} network calls"
        rows += [[f"{c} from image + {k} ({how})", f"MAE {pm(preg['mae'], preg['mae_sd'])}",
                  f"r = {fmt(preg['pearson_r'])}, bias {fmt(preg['bias'])}; no spread",
                  fmt(preg["seconds_per_subject"], 4)],
                 [f"{k} from image + {c} ({how})", f"accuracy {fmt(pcls['accuracy'], 3)}",
                  f"prob. acc. {fmt(pcls['prob_accuracy'], 3)}, AUROC {fmt(pcls['auroc'], 3)}, "
                  f"ECE {fmt(pcls['ece'], 3)}", fmt(pcls["seconds_per_subject"], 4)]]
    if "likelihood" in evaluation:
        lik = evaluation["likelihood"]
        rows.append([f"{k} from image + {c} (likelihood)", f"accuracy {fmt(lik['accuracy'], 3)}",
                     f"prob. acc. {fmt(lik['prob_accuracy'], 3)}, AUROC {fmt(lik['auroc'], 3)}, "
                     f"ECE {fmt(lik['ece'], 3)}, τ = {fmt(lik['temperature'], 3)}", fmt(lik["seconds_per_subject"])])
    lines += [markdown_table(["task", "result", "detail", "s / subject"], rows), ""]
    if "uncertainty" in evaluation:
        lines += [f"## Uncertainty of {c} given image + {k}", "",
                  uncertainty_markdown(evaluation["uncertainty"], c), ""]
    if "brain_age" in evaluation:
        lines += [brain_age_markdown(evaluation["brain_age"], c, k), ""]
    if "typicality" in evaluation:
        lines += [typicality_markdown(evaluation["typicality"]), ""]
    if "table2" in evaluation:
        lines += [f"## {c} under each conditioning set (paper Table 2)", "",
                  table2_markdown(evaluation["table2"], k), ""]
        if "population_mean" in evaluation:
            source = evaluation.get("population_mean_from", "the training split")
            lines += [f"The population mean ({fmt(evaluation['population_mean'])}) is the mean {c} of {source}.", ""]
    if "generation" in evaluation:
        lines += ["## Unconditional generation", "", generation_text(evaluation["generation"]), ""]
    if "conditional_fidelity" in evaluation:
        fid = evaluation["conditional_fidelity"]
        lines += ["## Conditional fidelity", "",
                  f"Images generated with the held-out ({c}, {k}) values, read back by {fid['reader']}: "
                  f"{c} MAE {pm(fid['continuous_mae'], fid['continuous_mae_sd'])} (r = {fmt(fid['continuous_r'])}), "
                  f"{k} accuracy {fmt(fid['categorical_accuracy'], 3)}.", ""]
    if figures:
        lines += ["## Figures", ""] + [line for link in figure_links(figures) for line in (link, "")]
    return "\n".join(lines)


def brain_age_markdown(ages: Mapping[str, Any], c: str, k: str) -> str:
    """The brain-age section: MAE, r, R² and corr(PAD, truth) before and after the run's bias correction."""
    pad = "brain-PAD" if c == "age" else f"{c} difference"
    rows = []
    for label, m in (("raw", ages["before"]), ("bias-corrected", ages.get("after"))):
        if m is not None:
            rows.append([label, fmt(m["mae"]), fmt(m["r"], 3), fmt(m["r2"], 3), fmt(m["pad_mean"]),
                         fmt(m["pad_age_r"], 3)])
    fit = ages.get("correction")
    how = (f"The correction ŷ - (a + b·y) + y was fitted on the run's {fit['fitted_on']} ({fit['n']} records): "
           f"a = {fmt(fit['intercept'])}, b = {fmt(fit['slope'], 3)}." if fit else
           "No bias correction: the run has no calibration.json (`metavoxel calibrate --model RUN`).")
    return "\n".join([f"## {c} as brain-age studies report it ({c} from image + {k}, mean of the samples)", "",
                      markdown_table(["prediction", "MAE", "r", "R²", f"mean {pad}", f"corr({pad}, {c})"], rows),
                      "", how + " R² is 1 - Σ(ŷ - y)²/Σ(y - ȳ)² (not r²); docs/trust.md gives every formula."])


def typicality_markdown(typ: Mapping[str, Any]) -> str:
    """The typicality section: how many evaluated records were flagged, and which."""
    flagged = [r for r in typ["records"] if r["flagged"]]
    lines = ["## Typicality of the evaluated records", "",
             f"{len(flagged)} of {typ['n']} records ({fmt(100 * typ['flag_rate'], 1)}%) are above the validation "
             f"split's {typ['threshold']:g}th typicality percentile (given {typ['given']}; "
             f"{typ['calls_per_record']} network calls per record)."]
    if flagged:
        rows = [[r["record"], fmt(r["percentile"], 1), ", ".join(r["atypical"])] for r in flagged[:20]]
        lines += ["", markdown_table(["record", "percentile", "atypical"], rows)]
    return "\n".join(lines)


def figure_links(files: Sequence[str]) -> list[str]:
    """Markdown lines showing each PNG of ``files``, each with a link to its vector copy when there is one."""
    vectors = {f.rsplit(".", 1)[0]: f for f in files if f.endswith((".pdf", ".svg"))}
    lines = []
    for f in files:
        if f.endswith(".png"):
            stem = f.rsplit(".", 1)[0]
            vector = f" ([{vectors[stem].rsplit('.', 1)[1].upper()}]({vectors[stem]}))" if stem in vectors else ""
            lines.append(f"![{stem}]({f}){vector}")
    return lines


def generation_text(gen: Mapping[str, Any]) -> str:
    planes = ", ".join(f"{p} {fmt(v['fid'])}" for p, v in gen["planes"].items())
    note = "" if gen.get("comparable") else " These features are not comparable with published FIDs."
    return (f"FID {fmt(gen['fid'])} (per plane: {planes}), MMD {fmt(gen['mmd'], 4)}, MS-SSIM among samples "
            f"{fmt(gen['ms_ssim_diversity'], 3)} (among real images {fmt(gen['ms_ssim_real'], 3)}); "
            f"{gen['n_fake']} generated vs {gen['n_real']} real; features: `{gen['network']}`.{note}")
