"""`metavoxel demo`: the main job on the built-in phantom cohort, in under 10 minutes on 2 CPU cores.

A small synthetic T1w cohort (`metavoxel.phantom`, BIDS) → a KL-VAE → one joint model of image, age and
sex (`metavoxel.workflows.study.DEMO`) → five questions with no retraining: unconditional samples,
conditional generation read back by the same model (the round trip), age from image + sex, sex from
image + age, and half-brain inpainting. Every figure is judged against a constant a model-free guess
reaches (the training mean, the majority class, a calibrated sampler's coverage): `run_demo` returns plain
tables, the checks and figure paths (PNG + PDF brain views), and writes all of it to ``demo.json``; the
CLI renders the tables with rich.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["AGE_RATIO", "Check", "DemoReport", "FID_RATIO", "INPAINT_MODES", "INPAINT_SUBJECTS", "ROUND_TRIP_AGES", "SEAM_RATIO",
           "SEX_MARGIN", "Table", "run_demo"]

#: The demo beats its constants when age MAE <= AGE_RATIO x the training-mean MAE ...
AGE_RATIO = 0.6
#: ... and sex accuracy >= the majority class + SEX_MARGIN (issue 13).
SEX_MARGIN = 0.15
#: The ages brains are generated for, each sex, and read back by the same model.
ROUND_TRIP_AGES = (45.0, 70.0, 90.0)
#: Generated brains are close to real ones when their FID against held-out brains is at most this multiple of
#: the FID of the VAE's own reconstructions of those brains (the floor of any generator through this VAE).
FID_RATIO = 1.5
#: Half-brain inpainting: subjects judged, the conditioning modes run (the first is shown and checked), and
#: the seam it may leave, as a multiple of the real brains' own gradient ratio at that border (issue 12).
INPAINT_SUBJECTS = 16
INPAINT_MODES = ("repaint", "clean")
SEAM_RATIO = 1.2


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]]


@dataclass
class Check:
    """One figure against the constant it must beat: ``value`` passes when ``rule`` holds against ``threshold``."""

    name: str
    value: float
    constant_name: str
    constant: float
    rule: str  # how the threshold follows from the constant, in words
    threshold: float | list[float]
    met: bool


@dataclass
class DemoReport:
    tables: list[Table] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    run_dir: Path | None = None
    data: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"checks": [dataclasses.asdict(c) for c in self.checks], "metrics": self.metrics,
                "tables": [dataclasses.asdict(t) for t in self.tables], "notes": self.notes,
                "files": [str(p) for p in self.files], "run_dir": str(self.run_dir), "data": str(self.data)}


def run_demo(out: str | Path, *, subjects: int | None = None, vae_steps: int | None = None,
             train_steps: int | None = None, steps: int = 50, num_samples: int = 3, seed: int = 0,
             guidance: float | None = None, per_request: int = 8, train_vae: bool = False,
             progress: Callable[[str, int, int], None] | None = None) -> DemoReport:
    """Phantom cohort → VAE → joint model → the five zero-shot tasks; everything is written under ``out``.

    Args:
        subjects, vae_steps, train_steps: override the `DEMO` recipe's budget (e.g. tiny values in tests);
            ``vae_steps`` applies to a VAE trained here (``train_vae``).
        train_vae: train the recipe's VAE on the cohort instead of using the shipped phantom VAE.
        steps: reverse steps per sample; num_samples: samples per subject for the age intervals (the answer is
            the point prediction where the model was trained with clean subsets).
        guidance: guidance weight for conditional generation (default: the recipe's ``guidance``).
        per_request: brains generated per (age, sex) of the round trip.
        progress: ``progress(phase, done, total)``.
    """
    from metavoxel.data import DataSpec, load_splits, read_cohort
    from metavoxel.io.atomic import write_json
    from metavoxel.runs import load_run
    from metavoxel.workflows.evaluate import records
    from metavoxel.workflows.study import DEMO, make_cohort, train_study_model, train_study_vae

    out = Path(out)
    tick = progress or (lambda phase, done, total: None)
    changes = {k: v for k, v in (("subjects", subjects), ("vae_steps", vae_steps), ("train_steps", train_steps))
               if v is not None}
    recipe = dataclasses.replace(DEMO, seed=seed, **changes)
    if train_vae:
        recipe = dataclasses.replace(recipe, pretrained_vae=None)
    # a batch never larger than the training split (about 3/4 of the subjects)
    recipe = dataclasses.replace(recipe, batch_size=min(recipe.batch_size, recipe.subjects * 7 // 10),
                                 vae_batch_size=min(recipe.vae_batch_size, recipe.subjects * 7 // 10))
    guidance = recipe.guidance if guidance is None else guidance
    report = DemoReport()
    if recipe.phantom:
        report.notes.append("demo phantom: " + ", ".join(f"{k}={v:g}" for k, v in sorted(recipe.phantom.items()))
                            + " (stronger effects than the default phantom, which the benchmarks keep; "
                              "docs/phantom.md, 'The demo's phantom')")
    start = time.perf_counter()
    data = make_cohort(recipe, out / "cohort", progress=tick)
    # the shipped VAE judged by PSNR/SSIM alone: its probe reads every training brain (10 s of the 10 minutes) and is
    # measured on 150 held-out brains per phantom in RESULTS.md; a VAE trained here (--train-vae) keeps its probe,
    # less the probe refitted on reconstructions (13 s)
    weights, scale, vae_summary = train_study_vae(recipe, data, out / "vae", progress=tick, refit_probe=False,
                                                  judge_probe=False)
    run_dir = out / "model"
    if run_dir.exists():
        import shutil

        shutil.rmtree(run_dir)  # the demo always trains afresh
    train_study_model(recipe, "joint", data, run_dir, vae_weights=weights, scale_factor=scale,
                      cache_dir=out / "latents", progress=tick)
    report.metrics["train_seconds"] = time.perf_counter() - start
    report.run_dir, report.data = run_dir, data
    model = load_run(run_dir)
    cohort = read_cohort(data, model.variables, model.spec.data or DataSpec())
    splits = load_splits(run_dir / "splits.json", cohort)
    train, test = cohort.select(splits["train"]).batch(), records(model, cohort, splits["test"], "image")
    ctx = _Context(model, train, test, out, steps, seed, tick)
    _unconditional(ctx, report)
    _round_trip(ctx, report, guidance, per_request, num_samples)
    _regression(ctx, report, num_samples)
    _classification(ctx, report)
    _inpainting(ctx, report)
    report.metrics["total_seconds"] = time.perf_counter() - start
    report.metrics["vae_val_psnr"] = float((vae_summary.get("val") or {}).get("psnr") or float("nan"))
    report.metrics["vae_val_ssim"] = float((vae_summary.get("val") or {}).get("ssim") or float("nan"))
    for name, probe in (vae_summary.get("probe") or {}).items():  # the VAE's signal probe (metavoxel.vae.probe)
        report.metrics[f"vae_probe_{name}_ratio"] = float("nan") if probe["ratio"] is None else float(probe["ratio"])
    report.notes.append(_vae_note(report.metrics, vae_summary))
    report.tables.append(Table("Does the demo beat its constants? (demo.json holds every figure)",
                               ["check", "value", "constant", "needed", "met"],
                               [[c.name, _fmt(c.value), f"{c.constant_name} {_fmt(c.constant)}", c.rule,
                                 "yes" if c.met else "NO"] for c in report.checks]))
    summary = {"recipe": recipe.to_dict(), "settings": {"steps": steps, "num_samples": num_samples, "seed": seed,
                                                        "guidance": guidance, "per_request": per_request,
                                                        "conditioning": model.spec.diffusion.conditioning},
               **report.to_dict()}
    write_json(out / "demo.json", _finite(summary))
    report.files.append(out / "demo.json")
    return report


@dataclass
class _Context:
    model: Any
    train: dict[str, Any]
    test: dict[str, Any]
    out: Path
    steps: int
    seed: int
    tick: Callable[[str, int, int], None]
    free: torch.Tensor | None = None  # unconditional brains (N, C, *shape), the inpainting's reference
    recon: torch.Tensor | None = None  # the VAE's reconstructions of the held-out brains (`_reconstructions`)

    @property
    def point(self) -> bool:
        """The model answers by point prediction: it was trained with clean subsets (else it samples)."""
        return self.model.spec.diffusion.training.clean > 0

    @property
    def sexes(self) -> list[str]:
        return list(self.model.variables["sex"].categories)

    @property
    def affine(self):
        from metavoxel.workflows.previews import grid_affine

        return grid_affine(self.model.variables["image"])

    def sample(self, phase: str, **kwargs: Any):
        return self.model.sample(steps=self.steps, seed=self.seed, batch_size=96,
                                 progress=lambda d, t: self.tick(phase, d, t), **kwargs)


def _reconstructions(ctx: Any) -> torch.Tensor:
    """decode(encode(x)) of every held-out brain (N, C, *shape), clamped to the images' [0, 1]; computed once."""
    if getattr(ctx, "recon", None) is None:
        var = ctx.model.variables["image"]
        with torch.no_grad():
            ctx.recon = torch.cat([var.decode(var.encode(chunk)).cpu().float()
                                   for chunk in ctx.test["image"].split(32)]).clamp(0, 1)
    return ctx.recon


def _vae_note(metrics: dict[str, float], summary: dict[str, Any]) -> str:
    """One line on the demo's VAE: which one, its PSNR/SSIM on this cohort's validation brains, its age probe when
    it was read (a VAE trained here)."""
    psnr, ssim = metrics.get("vae_val_psnr", float("nan")), metrics.get("vae_val_ssim", float("nan"))
    raw = metrics.get("vae_probe_age_ratio", float("nan"))
    which = (f"the shipped phantom VAE {summary['pretrained']!r} ({summary['unseen']})" if summary.get("pretrained")
             else "trained here on the cohort's training split (--train-vae)")
    probe = (f"; an age probe fitted on raw images reads its reconstructions at {raw:.2f}x the raw MAE"
             if math.isfinite(raw) else "")
    return (f"VAE: {which}; on this cohort's validation brains PSNR {psnr:.1f} dB, SSIM {ssim:.3f}{probe} "
            "(what it keeps of age and sex: benchmarks/RESULTS.md, 'The shipped phantom VAE')")


def _fmt(value: float) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _finite(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _unconditional(ctx: _Context, report: DemoReport) -> None:
    """The scalars' marginals of free samples against the training data; a preview of free brains."""
    from metavoxel.figures import BrainImage, brain_views
    from metavoxel.workflows.previews import UNITS, wrap

    # as many free brains as held-out ones: the FID below compares like counts, and at 48 its seed-to-seed spread
    # (ratio SD 0.44 over 6 seeds) swamped the check; at 90-96, about 0.1 (benchmarks/RESULTS.md)
    free = ctx.sample("unconditional", num_subjects=max(8, len(ctx.test["image"])))
    ctx.free = free.samples["image"][:, 0]
    ages, train_ages = free.samples["age"].flatten().double(), torch.tensor(ctx.train["age"], dtype=torch.float64)
    p_female = float((free.samples["sex"] == 0).double().mean())
    train_female = float(np.mean([s == ctx.sexes[0] for s in ctx.train["sex"]]))
    report.tables.append(Table("Unconditional samples vs training data (previews: unconditional.png)",
                               ["statistic", "samples", "training"], [
        ["age mean", f"{ages.mean():.1f}", f"{train_ages.mean():.1f}"],
        ["age SD", f"{ages.std():.1f}", f"{train_ages.std():.1f}"],
        [f"P(sex={ctx.sexes[0]})", f"{p_female:.2f}", f"{train_female:.2f}"]]))
    report.metrics.update(unconditional_age_mean=float(ages.mean()), unconditional_age_sd=float(ages.std()),
                          unconditional_p_female=p_female, train_age_mean=float(train_ages.mean()),
                          train_age_sd=float(train_ages.std()), train_p_female=train_female)
    _fidelity(ctx, report)
    report.files += brain_views(ctx.out / "unconditional.png", wrap(
        [BrainImage(v, ctx.affine, f"sample {i}") for i, v in enumerate(free.samples["image"][:8, 0, 0])]),
        title="unconditional samples", units=UNITS)


def _fidelity(ctx: _Context, report: DemoReport) -> None:
    """3-plane FID of the unconditional brains against the held-out ones, beside the FID of the VAE's own
    reconstructions of those brains (as many as were generated, every held-out brain in the demo): the floor of
    any generator through this VAE.
    Features: the VAE encoder's last hidden map (`metavoxel.evaluation.vae_features`), not comparable with
    published FIDs."""
    from metavoxel.evaluation import fid_mmd_3plane
    from metavoxel.evaluation.features import vae_features

    real, generated = ctx.test["image"].float(), ctx.free.float().clamp(0, 1)
    recon = _reconstructions(ctx)[:len(generated)]
    network = vae_features(ctx.model.variables["image"].vae)
    fid = fid_mmd_3plane(real, generated, network)["fid"]
    floor = fid_mmd_3plane(real, recon, network)["fid"]
    report.metrics.update(fid_generated=fid, fid_reconstructed=floor)
    report.tables.append(Table(f"Generated brains against {len(real)} held-out ones (3-plane FID, VAE-encoder "
                               "features; lower is closer)", ["brains", "FID"],
                               [[f"{len(generated)} unconditional samples", f"{fid:.2f}"],
                                [f"the VAE's reconstructions of {len(recon)} held-out brains (the floor)",
                                 f"{floor:.2f}"]]))
    report.checks.append(Check("generated brains: FID against held-out brains", fid, "FID of the VAE's "
                               "reconstructions", floor, f"<= {FID_RATIO:g} x constant", FID_RATIO * floor,
                               fid <= FID_RATIO * floor))


def _round_trip(ctx: _Context, report: DemoReport, guidance: float, per_request: int, num_samples: int) -> None:
    """Brains generated for ages 45/70/90 of each sex, read back (age | image, sex) by the same model."""
    from metavoxel.figures import BrainImage, brain_views
    from metavoxel.workflows.previews import UNITS, caption

    wanted = [(a, s) for s in ctx.sexes for a in ROUND_TRIP_AGES for _ in range(per_request)]
    kwargs = {"guidance": guidance} if guidance else {}
    cond = ctx.sample("conditional generation", fix={"age": [a for a, _ in wanted], "sex": [s for _, s in wanted]},
                      **kwargs)
    images = cond.samples["image"][:, 0]  # (R, C, *shape)

    def read_back(images: torch.Tensor, sexes: list[str], phase: str) -> np.ndarray:
        """Age | image, sex for (R, C, *shape) images, the way the demo answers age: (R,) years."""
        given = {"image": images, "sex": sexes}
        if ctx.point:
            return ctx.model.point_predict(given, ["age"], seed=ctx.seed).mean["age"].double().reshape(-1).numpy()
        back = ctx.sample(phase, fix=given, num_samples=num_samples)
        return np.asarray(back.summary("age")["mean"], dtype=np.float64)

    read = read_back(images, [s for _, s in wanted], "read back: age | generated image, sex")
    how = "point prediction" if ctx.point else f"mean of {num_samples} samples"
    ceiling = _read_back_ceiling(ctx, read_back)
    grid = [[BrainImage(images[j, 0].numpy(), ctx.affine, caption({"age": a, "sex": s}) + f" → {read[j]:.0f}")
             for j, (a, s) in enumerate(wanted) if s == sex and j % per_request == 0] for sex in ctx.sexes]
    report.files += brain_views(ctx.out / "conditional.png", grid, units=UNITS,
                                title="conditional generation: generated for the values under each image "
                                      "(→ the age the same model reads back)")
    requested = np.array([a for a, _ in wanted])
    rows, ordered = [], True
    for sex in ctx.sexes:
        means = []
        for age in ROUND_TRIP_AGES:
            pick = [j for j, (a, s) in enumerate(wanted) if s == sex and a == age]
            means.append(float(read[pick].mean()))
            rows.append([sex, f"{age:.0f}", f"{means[-1]:.1f} ± {read[pick].std(ddof=1) if len(pick) > 1 else 0:.1f}",
                         f"{ceiling['intercept'] + ceiling['slope'] * age:.1f}",
                         ", ".join(f"{read[j]:.0f}" for j in pick)])
            report.metrics[f"round_trip_{sex}_{age:.0f}"] = means[-1]
        ordered &= all(a < b for a, b in zip(means, means[1:]))
    r = float(np.corrcoef(requested, read)[0, 1]) if read.std() > 0 else float("nan")
    slope = float(np.polyfit(requested, read, 1)[0])
    report.metrics.update(round_trip_r=r, round_trip_slope=slope,
                          **{f"round_trip_ceiling_{k}": v for k, v in ceiling.items()})
    guided = f" (guidance {guidance:g})" if guidance else ""
    report.tables.append(Table(
        f"Conditional generation, read back: {per_request} brains generated per (sex, age){guided}, "
        f"age read back from each by the same model ({how}; conditional.png). Ceiling: the same read-back of the "
        f"{ceiling['subjects']} held-out brains' VAE reconstructions, as a line in their true age (raw brains: r "
        f"{ceiling['raw_r']:.2f}, slope {ceiling['raw_slope']:.2f})",
        ["sex", "requested age", "read back (mean ± SD over brains)", "ceiling (real brains)", "each brain"],
        rows + [["all", "", f"r {r:.2f}, slope {slope:.2f}", f"r {ceiling['r']:.2f}, slope {ceiling['slope']:.2f}",
                 ""]]))
    report.checks.append(Check("round-trip ages in increasing order (each sex)", float(ordered), "order",
                               1.0, "45 < 70 < 90 read back", 1.0, ordered))


def _read_back_ceiling(ctx: _Context, read_back: Callable[[torch.Tensor, list[str], str], np.ndarray]
                       ) -> dict[str, float]:
    """How closely the round trip can come to its request: age read back from real held-out brains.

    Generated brains pass through the VAE's decoder, so the ceiling reads their real counterparts'
    reconstructions ``decode(encode(x))``: the least-squares line of read-back on true age (``slope``,
    ``intercept``, ``r``; a generator whose brains matched real ones would read back about
    ``intercept + slope * age``), and ``raw_slope`` / ``raw_r`` from the raw images.
    """
    images, sexes = ctx.test["image"], list(ctx.test["sex"])
    truth = np.asarray(ctx.test["age"], dtype=np.float64)
    recon = _reconstructions(ctx)
    out: dict[str, float] = {"subjects": len(truth)}
    for key, x in (("raw_", images), ("", recon)):
        read = read_back(x, sexes, "read back: age | held-out image, sex")
        slope, intercept = np.polyfit(truth, read, 1)
        out.update({f"{key}slope": float(slope), f"{key}intercept": float(intercept),
                    f"{key}r": float(np.corrcoef(truth, read)[0, 1]) if read.std() > 0 else float("nan")})
    return out


def _regression(ctx: _Context, report: DemoReport, num_samples: int) -> None:
    """Age from image + sex on the held-out subjects, against the training mean.

    The answer is the point prediction (the posterior mean in at most 5 network calls, where the model was
    trained with clean subsets); ``num_samples`` clean samples per subject give the intervals, judged by
    their real level, and their mean is shown beside it.
    """
    from metavoxel.evaluation.uncertainty import uncertainty_metrics
    from metavoxel.variables.summaries import level_label

    fix = {"image": ctx.test["image"], "sex": ctx.test["sex"]}
    reg = ctx.sample("age | image, sex", fix=fix, num_samples=num_samples)
    summary = reg.summary("age")
    truth = torch.tensor(ctx.test["age"], dtype=torch.float64)
    sample_mean = torch.tensor(summary["mean"], dtype=torch.float64)
    train_ages = torch.tensor(ctx.train["age"], dtype=torch.float64)
    baseline = (train_ages.mean() - truth).abs().mean().item()
    sample_mae = (sample_mean - truth).abs().mean().item()
    if ctx.point:
        start = time.perf_counter()
        point = ctx.model.point_predict(fix, ["age"], seed=ctx.seed)  # renoise-and-read, its default plan
        mean = point.mean["age"].double().reshape(-1)
        report.metrics["age_point_seconds_per_subject"] = (time.perf_counter() - start) / len(truth)
        how = f"point prediction, {point.calls_per_subject} network calls"
    else:  # a paper-recipe model has no point prediction: the mean of its samples
        mean, how = sample_mean, f"mean of {num_samples} samples"
    mae = (mean - truth).abs().mean().item()
    unc = uncertainty_metrics(reg.samples["age"].reshape(len(truth), -1).double(), truth)
    level = summary["level"][0]  # the interval's real level at this S (0.5 from 3 samples), not 90%
    report.metrics.update(age_mae=mae, age_mae_samples=sample_mae, age_mae_baseline=baseline,
                          age_coverage=unc["coverage"], age_coverage_level=level,
                          age_spread_skill=unc["spread_skill"], age_crps=unc["crps"])
    report.tables.append(Table(
        f"Age from image + sex ({len(truth)} held-out subjects): the answer by {how}; "
        f"{num_samples} samples each for the interval",
        ["subject", "true age", "predicted", "samples: mean ± SD", f"{level_label(level)} interval"],
        [[i, f"{truth[i]:.1f}", f"{mean[i]:.1f}", f"{sample_mean[i]:.1f} ± {summary['sd'][i]:.1f}",
          f"[{summary['lower'][i]:.1f}, {summary['upper'][i]:.1f}]"] for i in range(5)]
        + [["all", "", f"MAE {mae:.2f} years", f"MAE {sample_mae:.2f}", f"training-mean MAE {baseline:.2f}"]]))
    report.notes.append(f"age answer: {how} (mean of the samples: MAE {sample_mae:.2f})")
    report.checks.append(Check("age MAE (years)", mae, "training-mean MAE", baseline,
                               f"<= {AGE_RATIO} x constant", AGE_RATIO * baseline, mae <= AGE_RATIO * baseline))
    if num_samples > 1:
        se = math.sqrt(level * (1 - level) / len(truth))
        lo, hi = level - 2 * se, level + 2 * se
        report.checks.append(Check(f"coverage of the {level_label(level)} age interval", unc["coverage"],
                                   "calibrated level", level, "within 2 binomial SE of the level", [lo, hi],
                                   lo <= unc["coverage"] <= hi))
        report.checks.append(Check("age spread-skill (1 = calibrated)", unc["spread_skill"], "calibrated", 1.0,
                                   "in [0.8, 1.25] (issue 12)", [0.8, 1.25], 0.8 <= unc["spread_skill"] <= 1.25))


def _classification(ctx: _Context, report: DemoReport) -> None:
    """Sex from image + age: class probabilities by point prediction (clean conditioning, at most 5 calls)."""
    fix = {"image": ctx.test["image"], "age": ctx.test["age"]}
    if ctx.point:
        point = ctx.model.point_predict(fix, ["sex"], seed=ctx.seed)  # renoise-and-read, its default plan
        probs = point.probs["sex"].double()  # (N, K)
        how = f"class probabilities by point prediction ({point.calls_per_subject} network calls per subject)"
    else:  # a paper-recipe model: the share of 3 samples per class
        cls = ctx.sample("sex | image, age", fix=fix, num_samples=3)
        probs = torch.tensor(cls.summary("sex")["probs"], dtype=torch.float64)
        how = "share of 3 samples per class"
    predicted = [ctx.sexes[i] for i in probs.argmax(dim=1).tolist()]
    hit = torch.tensor([p == s for p, s in zip(predicted, ctx.test["sex"])], dtype=torch.float64)
    accuracy, confidence = float(hit.mean()), float(probs.max(dim=1).values.mean())
    train_female = float(np.mean([s == ctx.sexes[0] for s in ctx.train["sex"]]))
    majority = max(train_female, 1 - train_female)
    truth = torch.tensor([ctx.sexes.index(s) for s in ctx.test["sex"]])
    brier = float((probs - torch.nn.functional.one_hot(truth, len(ctx.sexes)).double()).square().sum(dim=1).mean())
    constant = torch.tensor([train_female, 1 - train_female], dtype=torch.float64)
    brier_constant = float((constant - torch.nn.functional.one_hot(truth, 2).double()).square().sum(dim=1).mean())
    report.metrics.update(sex_accuracy=accuracy, sex_majority_class=majority, sex_mean_confidence=confidence,
                          sex_brier=brier, sex_brier_constant=brier_constant)
    report.tables.append(Table(f"Sex from image + age ({how})", ["subject", "true", "predicted",
                                                                   f"P({', '.join(ctx.sexes)})"],
                               [[i, ctx.test["sex"][i], predicted[i], ", ".join(f"{p:.2f}" for p in probs[i])]
                                for i in range(5)] + [["all", "", f"accuracy {accuracy:.2f}",
                                                      f"majority-class {majority:.2f}"]]))
    report.checks.append(Check("sex accuracy", accuracy, "majority class", majority, f">= constant + {SEX_MARGIN}",
                               majority + SEX_MARGIN, accuracy >= majority + SEX_MARGIN))
    se = math.sqrt(max(confidence * (1 - confidence), 1e-12) / len(hit))
    report.checks.append(Check("sex mean confidence vs accuracy", confidence, "accuracy", accuracy,
                               "within 2 binomial SE of the accuracy", [accuracy - 2 * se, accuracy + 2 * se],
                               abs(confidence - accuracy) <= 2 * se))
    report.checks.append(Check("sex Brier score (lower is better)", brier, "training-share probabilities",
                               brier_constant, "< constant", brier_constant, brier < brier_constant))


def _inpainting(ctx: _Context, report: DemoReport) -> None:
    """Keep the left hemisphere (RAS axis 0 < middle) of held-out subjects, generate the right one.

    Judged on up to 16 subjects (4 shown) against two references: unconditional samples (brains that know
    nothing of the kept half) and the VAE's reconstruction of the truth, pasted the same way (what a
    generator that found each brain's own latent would give: every generated voxel passes the decoder).
    RePaint fills the half (measured better than clean at this budget: benchmarks/RESULTS.md, "Inpainting
    through the VAE"); clean is shown beside it.
    """
    from metavoxel.diffusion.blend import seamless_paste
    from metavoxel.evaluation.inpainting import region_error, seam_ratio
    from metavoxel.figures import BrainImage, brain_views
    from metavoxel.workflows.previews import UNITS

    n = min(INPAINT_SUBJECTS, len(ctx.test["age"]), len(ctx.free))
    known = ctx.test["image"][:n].float()
    mask = torch.zeros_like(known, dtype=torch.bool)
    mask[:, :, : known.shape[2] // 2] = True
    given = {"image": known, "age": ctx.test["age"][:n], "sex": ctx.test["sex"][:n]}
    modes = INPAINT_MODES if ctx.point else INPAINT_MODES[:1]  # clean needs a model trained with clean subsets
    results = {mode: ctx.sample(f"inpainting ({mode})", fix=given, masks={"image": mask}, conditioning=mode)
               .samples["image"][:, 0].float() for mode in modes}
    result = results[INPAINT_MODES[0]]
    exact = all(bool((r[mask] == known[mask]).all()) for r in results.values())
    var = ctx.model.variables["image"]
    with torch.no_grad():
        recon = seamless_paste(var.decode(var.encode(known)).cpu().float(), known, mask)
    rms = lambda x: float(region_error(x, known, mask).mean())  # noqa: E731
    seam = lambda x: float(seam_ratio(x, mask).nanmean())  # noqa: E731
    free, truth_seam = ctx.free[:n].float(), seam(known)
    report.metrics.update(inpainting_known_voxels_exact=float(exact), inpainting_subjects=n,
                          inpainting_rms_unconditional=rms(free), inpainting_rms_vae=rms(recon),
                          inpainting_seam_truth=truth_seam, inpainting_seam_vae=seam(recon),
                          **{f"inpainting_rms_{m}": rms(r) for m, r in results.items()},
                          **{f"inpainting_seam_{m}": seam(r) for m, r in results.items()})
    pairs = [[BrainImage(known[i, 0], ctx.affine, f"given subject {i}"),
              BrainImage(result[i, 0], ctx.affine, f"inpainted {i}", keep=mask[i, 0])] for i in range(min(4, n))]
    report.files += brain_views(ctx.out / "inpainting.png", pairs, units=UNITS,
                                title="half-brain inpainting: the left hemisphere given, the right one generated")
    rows = [[f"inpainted, {m}" + (" (inpainting.png)" if m == INPAINT_MODES[0] else ""), f"{rms(r):.3f}",
             f"{seam(r):.2f} ({seam(r) / truth_seam:.2f}x)"] for m, r in results.items()]
    rows += [["unconditional samples (know nothing of the kept half)", f"{rms(free):.3f}", ""],
             ["the VAE's reconstruction of the truth, pasted the same way", f"{rms(recon):.3f}",
              f"{seam(recon):.2f} ({seam(recon) / truth_seam:.2f}x)"],
             ["the real brains", "0", f"{truth_seam:.2f} (1x)"]]
    report.tables.append(Table(
        f"Half-brain inpainting, {n} held-out subjects (known voxels kept exactly: {exact}). Error: RMS of the "
        "generated half against the truth (intensities in [0, 1]); seam: mean gradient on the generated voxels "
        "touching the kept half over that further in (x the real brains' own ratio at that border)",
        ["fill", "error", "seam"], rows))
    report.checks.append(Check("inpainted half: error against the truth", rms(result), "unconditional samples",
                               rms(free), "< constant", rms(free), rms(result) < rms(free)))
    report.checks.append(Check("inpainting seam (x the real brains' ratio)", seam(result) / truth_seam,
                               "real brains", 1.0, f"<= {SEAM_RATIO:g} x constant", SEAM_RATIO,
                               seam(result) / truth_seam <= SEAM_RATIO))
