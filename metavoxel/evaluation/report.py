"""Markdown tables of an evaluation: Table 1 (tasks × models), Table 2 (conditioning sets), one-model reports."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["figure_links", "fmt", "generation_text", "markdown_table", "model_report", "pm", "table2_markdown"]

_GIVEN = {"I,C": "image + {c}", "I": "image", "C": "{c}", "none": "nothing (∅)", "population mean": "population mean"}


def fmt(value: Any, digits: int = 2) -> str:
    """A number for a table: fixed digits, '—' for missing or NaN."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    if isinstance(value, (int, float)):
        return f"{value:.{digits}f}"
    return str(value)


def pm(mean: Any, sd: Any, digits: int = 2) -> str:
    return "—" if fmt(mean) == "—" else f"{fmt(mean, digits)} ± {fmt(sd, digits)}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def table2_markdown(rows: Sequence[Mapping[str, Any]], categorical: str = "sex", unit: str = "") -> str:
    """Paper Table 2: MAE ± SD, mean sample variance and 90% coverage per conditioning set."""
    unit = f" ({unit})" if unit else ""
    return markdown_table(
        ["given", f"MAE ± SD{unit}", "mean sample variance", "90% interval coverage"],
        [[_GIVEN.get(r["given"], r["given"]).format(c=categorical), pm(r["mae"], r["mae_sd"]),
          fmt(r.get("mean_sample_variance"), 1), fmt(r.get("coverage"))] for r in rows])


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
    lines += [f"{evaluation['n_test']} held-out records, {evaluation['num_samples']} samples each, "
              f"{evaluation['steps']} reverse steps.", "", "## Tasks", ""]
    rows = [[f"{c} from image + {k}", f"MAE {pm(reg['mae'], reg['mae_sd'])}",
             f"r = {fmt(reg['pearson_r'])}, coverage(90%) = {fmt(reg['coverage'])}", fmt(reg["seconds_per_subject"])],
            [f"{k} from image + {c} (majority of samples)", f"accuracy {fmt(cls['accuracy'], 3)}",
             f"prob. acc. {fmt(cls['prob_accuracy'], 3)}, AUROC {fmt(cls['auroc'], 3)}, ECE {fmt(cls['ece'], 3)}",
             fmt(cls["seconds_per_subject"])]]
    if "likelihood" in evaluation:
        lik = evaluation["likelihood"]
        rows.append([f"{k} from image + {c} (likelihood)", f"accuracy {fmt(lik['accuracy'], 3)}",
                     f"prob. acc. {fmt(lik['prob_accuracy'], 3)}, AUROC {fmt(lik['auroc'], 3)}, "
                     f"ECE {fmt(lik['ece'], 3)}, τ = {fmt(lik['temperature'], 3)}", fmt(lik["seconds_per_subject"])])
    lines += [markdown_table(["task", "result", "detail", "s / subject"], rows), ""]
    if "table2" in evaluation:
        lines += [f"## {c} under each conditioning set (paper Table 2)", "",
                  table2_markdown(evaluation["table2"], k), ""]
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
