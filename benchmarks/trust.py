"""Trust on the user's own scans, measured on the demo's model and cohort (issue 29).

What it measures, each through the commands a user runs (`calibrate_run`, `predict_run`, `check_run`) or the API
they call (`JointModel.sample` with a keep-mask):

1. typicality (benchmarks/trust_typicality.py): AUROC of the typicality score between the held-out (test split)
   phantom brains and shifted versions built from them as NIfTI files (T2-like inversion, a skull and scalp
   added, a heavy bias field, a mislabelled voxel size, a lesion, pure noise), and the fraction of each flagged at
   the default threshold, beside the previous method's on the same network calls; the flag rate of the unaltered
   test split (the threshold promises about 1%) and of the validation split left-one-out; a hemisphere kept of
   unaltered and lesioned brains;
2. metadata against the image: swapped sex and age shifted by 20 years (minus 20 where +20 leaves the model's
   range), detected by `metavoxel check` and by the metadata part of the typicality, at the threshold giving a
   5% false-alarm rate on the unaltered records (and AUROC); the age check by its point method and by its sampled
   predictive (`check --method sample`) side by side on the same rows: AUROC, detection at 5% false alarm,
   detection and false flags at the default level, network calls and seconds per record;
3. cost: network calls and seconds per record of the typicality score against one point prediction;
4. brain-age outputs: MAE, r, R² and corr(brain-PAD, age) of `predict` on the test split, raw and bias-corrected
   with the correction the run fitted on its validation split;
5. answers from part of a brain: age MAE, RMSE, the width and coverage of the min-max interval and the samples'
   SD from the whole brain, one hemisphere and one quarter kept (the rest generated), the same records and seeds,
   by one joint chain (``--partial-methods joint``) and by imputation (``impute``, the default of `sample`).

Usage::

    python benchmarks/trust.py --run runs/demo/model --cohort runs/demo/cohort --out /tmp/trust [--parts typicality,cost]

The run directory is read only: its model.safetensors, spec.json, splits.json and train.json are copied to
OUT/run, which gets the calibration.json. Prints a table per part and writes OUT/trust.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def auroc(negative, positive) -> float:
    """P(score of a positive > score of a negative) + ½ P(tie): the Mann-Whitney AUROC."""
    neg, pos = np.asarray(negative, float), np.asarray(positive, float)
    neg, pos = neg[np.isfinite(neg)], pos[np.isfinite(pos)]
    if not len(neg) or not len(pos):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def detection_at(negative, positive, false_alarm: float = 0.05) -> tuple[float, float]:
    """(threshold, detection rate): the threshold above which ``false_alarm`` of the negatives lie (their (1 -
    false_alarm) quantile, higher = more suspicious), and the fraction of positives strictly above it."""
    neg, pos = np.asarray(negative, float), np.asarray(positive, float)
    threshold = float(np.quantile(neg, 1 - false_alarm, method="higher"))
    return threshold, float((pos > threshold).mean())


# -- shifted scans --------------------------------------------------------------------------------------------
def _brain_mask(data: np.ndarray) -> np.ndarray:
    return data > 0.05 * float(data.max())


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Binary dilation by ``steps`` voxels with the 6-neighbourhood (face neighbours)."""
    out = mask.copy()
    for _ in range(steps):
        grown = np.pad(out, 1)
        out = out | grown[2:, 1:-1, 1:-1] | grown[:-2, 1:-1, 1:-1] | grown[1:-1, 2:, 1:-1] | grown[1:-1, :-2, 1:-1] \
            | grown[1:-1, 1:-1, 2:] | grown[1:-1, 1:-1, :-2]
    return out


def shifted(kind: str, data: np.ndarray, affine: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One shifted version of a phantom brain (its voxels and affine)."""
    mask = _brain_mask(data)
    top = float(np.percentile(data[mask], 99))
    if kind == "t2_like":  # contrast inverted inside the brain (CSF bright, white matter dark), background kept
        return np.where(mask, top - np.clip(data, 0, top) + 0.05 * top, 0.0), affine
    if kind == "skull_scalp":  # a wider field of view holding a dark skull and a bright scalp around the brain
        pad = 5
        big = np.pad(data, pad)
        brain = np.pad(mask, pad)
        skull = _dilate(brain, 2) & ~brain
        scalp = _dilate(brain, 4) & ~_dilate(brain, 2)
        big = np.where(skull, 0.08 * top, big)
        big = np.where(scalp, 0.95 * top * (1 + 0.05 * rng.standard_normal(big.shape)), big)
        moved = affine.copy()
        moved[:3, 3] -= affine[:3, :3] @ np.full(3, pad)
        return big, moved
    if kind == "bias_field":  # a smooth multiplicative field from 0.3 to 2.4 across the head
        axes = [np.linspace(-1, 1, n) for n in data.shape]
        x, y, z = np.meshgrid(*axes, indexing="ij")
        field = np.exp(0.9 * x + 0.5 * y ** 2 - 0.4 * z)
        return data * field / np.exp(0.0), affine
    if kind == "voxel_size":  # the header says 8.25 mm voxels (1.5x): the brain is read 1.5x too large
        moved = affine.copy()
        moved[:3, :3] *= 1.5
        return data, moved
    if kind == "lesion":  # a bright sphere of radius 4 voxels (22 mm) in one hemisphere
        centre = np.argwhere(mask).mean(axis=0) + np.array([-5.0, 0.0, 2.0])
        grid = np.indices(data.shape).transpose(1, 2, 3, 0)
        sphere = ((grid - centre) ** 2).sum(-1) <= 4.0 ** 2
        return np.where(sphere & mask, 1.6 * top, data), affine
    if kind == "noise":  # pure noise with the brain's intensity statistics, over the whole volume
        values = data[mask]
        return np.abs(rng.normal(values.mean(), values.std(), data.shape)), affine
    raise ValueError(kind)


SHIFTS = ("t2_like", "skull_scalp", "bias_field", "voxel_size", "lesion", "noise")
#: The parts `--parts` chooses among, in the order they run.
PARTS = ("typicality", "check", "cost", "brain_age", "partial")


def _parts(text: str) -> tuple[str, ...]:
    """``--parts``: comma-separated names of `PARTS`."""
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = [p for p in names if p not in PARTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown part(s) {', '.join(unknown) or '(none)'}; choose among "
                                         f"{', '.join(PARTS)}")
    return names


def _write_table(path: Path, rows: list[dict], columns: list[str]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([row[c] for c in columns])
    return path


def _read(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open(), delimiter="\t"))


def _num(text: str) -> float:
    return float("nan") if text in ("n/a", "") else float(text)


def main(argv: list[str] | None = None) -> dict:
    from metavoxel.workflows.check import CHECK_SAMPLES, CHECK_STEPS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo/model"))
    parser.add_argument("--cohort", type=Path, default=Path("runs/demo/cohort"))
    parser.add_argument("--parts", type=_parts, default=PARTS,
                        help=f"comma-separated parts to run (default: all of {','.join(PARTS)})")
    parser.add_argument("--out", type=Path, default=Path("/tmp/trust"))
    parser.add_argument("--records", type=int, default=None, help="test records used (default: the whole split)")
    parser.add_argument("--partial-records", type=int, default=60, help="test records of the partial-brain part")
    parser.add_argument("--samples", type=int, default=16, help="samples per record, partial-brain part")
    parser.add_argument("--steps", type=int, default=25, help="reverse steps, partial-brain part")
    parser.add_argument("--partial-methods", type=lambda t: [x for x in t.split(",") if x], default=["joint", "impute"],
                        help="partial-brain part: joint (one chain, the answer beside the generated image) and/or "
                             "impute (the image completed first, the answer given it held whole)")
    parser.add_argument("--partial-kept", type=lambda t: [x for x in t.split(",") if x],
                        default=["whole", "hemisphere", "quarter"], help="partial-brain part: what is kept")
    parser.add_argument("--check-samples", type=int, default=CHECK_SAMPLES, help="samples per record, sampled check")
    parser.add_argument("--check-steps", type=int, default=CHECK_STEPS, help="reverse steps, sampled check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fresh-cohort", type=Path,
                        help="score these records instead of the run's test split: a cohort of the same phantom drawn "
                             "with another seed (brains no one has scored before); the calibration stays the run's")
    args = parser.parse_args(argv)
    parts = set(args.parts)
    warnings.simplefilter("ignore")

    from metavoxel.data import DataSpec, load_splits, read_cohort
    from metavoxel.diffusion.typicality import typicality_terms
    from metavoxel.evaluation.brain_age import brain_age_metrics
    from metavoxel.runs import load_run
    from metavoxel.workflows.calibrate import calibrate_run, load_calibration
    from metavoxel.workflows.check import check_run
    from metavoxel.diffusion.options import PointOptions, SamplingOptions
    from metavoxel.workflows.predict import predict_run

    torch.manual_seed(args.seed)
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "run").mkdir(parents=True)
    for name in ("spec.json", "model.safetensors", "splits.json", "train.json"):
        shutil.copy2(args.run / name, out / "run" / name)
    run = out / "run"
    report: dict = {"command": "python benchmarks/trust.py " + " ".join(sys.argv[1:] if argv is None else argv),
                    "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
                    "torch": torch.__version__, "parts": [p for p in PARTS if p in parts]}
    begun = started = time.perf_counter()
    if parts & {"typicality", "check", "brain_age"}:  # what reads the run's calibration
        calibrate_run(run, args.cohort)
        report["calibrate_seconds"] = time.perf_counter() - started
    calibration = load_calibration(run)
    model = load_run(run)
    cohort = read_cohort(args.cohort, model.variables, model.spec.data or DataSpec())
    splits = load_splits(run / "splits.json", cohort)
    test = cohort.select(splits["test"][: args.records] if args.records else splits["test"])
    if args.fresh_cohort is not None:
        fresh = read_cohort(args.fresh_cohort, model.variables, model.spec.data or DataSpec())
        test = fresh.select(range(min(len(fresh.records), args.records or len(fresh.records))))
        report["fresh_cohort"] = str(args.fresh_cohort)
    batch = test.batch()
    n = len(test.records)
    lo, hi = model.variables["age"].value_range
    rng = np.random.default_rng(args.seed)
    base = [{"participant_id": r.subject, "image": batch["image"][i], "age": batch["age"][i], "sex": batch["sex"][i]}
            for i, r in enumerate(test.records)]

    if "typicality" in parts:
        # 1. typicality of the unaltered and shifted scans (image + sex given), old and new side by side
        from trust_typicality import measure_typicality  # benchmarks/ is on sys.path when this file runs as a script

        report["typicality"] = measure_typicality(run, model, calibration, base, out, rng, SHIFTS, shifted, auroc)

    if "check" in parts:
        # 2. metadata against the image: swapped sex, age +-20
        altered = []
        for r in base:
            age = float(r["age"])
            moved = age + 20 if age + 20 <= hi else age - 20
            altered.append({**r, "participant_id": f"{r['participant_id']}xsex", "sex": "F" if r["sex"] == "M" else "M"})
            altered.append({**r, "participant_id": f"{r['participant_id']}xage", "age": f"{moved:.1f}"})
        table = _write_table(out / "altered.tsv", base + altered, ["participant_id", "image", "age", "sex"])
        checks, _ = check_run(run, table, out / "checks.tsv", seed=args.seed)
        checks = _read(checks)
        sex_score = np.array([1 - _num(r["sex_p"]) for r in checks])
        age_score = np.array([abs(_num(r["age_z"])) for r in checks])
        by = {"sex": slice(n, None, 2), "age": slice(n + 1, None, 2)}
        # typicality's metadata part for the same rows, all three given (no answer needed: target sex, given the rest)
        typ = _read(predict_run(run, table, "sex", out / "altered_typicality.tsv", PointOptions(seed=args.seed),
                                given=["image", "age"]))
        meta = np.array([_num(r["metadata_percentile"]) for r in typ])
        typ_sex = _read(predict_run(run, table, "age", out / "altered_typicality_sex.tsv", PointOptions(seed=args.seed),
                                    given=["image", "sex"]))
        meta_sex = np.array([_num(r["metadata_percentile"]) for r in typ_sex])
        metadata_rows = []
        for what, score, typ_score in (("swapped sex", sex_score, meta_sex), ("age +-20 years", age_score, meta)):
            key = "sex" if "sex" in what else "age"
            flags = np.array([r[f"{key}_flag"] == "yes" for r in checks])
            _, det = detection_at(score[:n], score[by[key]])
            _, det_typ = detection_at(typ_score[:n], typ_score[by[key]])
            metadata_rows.append({"error": what, "check_auroc": auroc(score[:n], score[by[key]]),
                                  "check_detect_at_5pct": det, "check_flagged_default": float(flags[by[key]].mean()),
                                  "check_false_flags_default": float(flags[:n].mean()),
                                  "typicality_auroc": auroc(typ_score[:n], typ_score[by[key]]),
                                  "typicality_detect_at_5pct": det_typ})
        report["metadata"] = metadata_rows
        # the age check by its two methods side by side, each timed alone on the same rows (unaltered, then +-20)
        age_rows = base + altered[1::2]
        age_table = _write_table(out / "altered_age.tsv", age_rows, ["participant_id", "image", "age", "sex"])
        methods = []
        for method in ("point", "sample"):
            started = time.perf_counter()
            path, _ = check_run(run, age_table, out / f"checks_age_{method}.tsv", variables=["age"], method=method,
                                num_samples=args.check_samples, steps=args.check_steps, seed=args.seed)
            seconds = (time.perf_counter() - started) / len(age_rows)
            rows = _read(path)
            score = np.array([abs(_num(r["age_z"])) for r in rows])
            flags = np.array([r["age_flag"] == "yes" for r in rows])
            _, det = detection_at(score[:n], score[n:])
            methods.append({"method": method, "auroc": auroc(score[:n], score[n:]), "detect_at_5pct": det,
                            "flagged_default": float(flags[n:].mean()), "false_flags_default": float(flags[:n].mean()),
                            "calls_per_record": 5 if method == "point" else args.check_samples * args.check_steps,
                            "seconds_per_record": seconds,
                            "centile_mean": (float(np.mean([_num(r["age_centile"]) for r in rows[:n]]))
                                             if method == "sample" else None)})
        report["age_check"] = {"n": n, "level": 0.99, "binomial_se_at_1pct": math.sqrt(0.01 * 0.99 / n),
                               "samples": args.check_samples, "steps": args.check_steps, "methods": methods}

    if "cost" in parts:
        # 3. cost: calls and seconds per record, typicality against one point prediction
        fix = {"image": [r["image"] for r in base], "sex": [r["sex"] for r in base]}
        started = time.perf_counter()
        terms = typicality_terms(model, fix, seed=args.seed)
        typ_seconds = (time.perf_counter() - started) / n
        started = time.perf_counter()
        point = model.point_predict(fix, "age", options=PointOptions(seed=args.seed))
        point_seconds = (time.perf_counter() - started) / n
        report["cost"] = {"typicality_calls": terms.calls_per_record, "typicality_seconds": typ_seconds,
                          "point_calls": point.calls_per_subject, "point_seconds": point_seconds}

    if "brain_age" in parts:
        # 4. brain-age outputs of `predict` (mean of 3 samples, the default) on the test split
        table = _write_table(out / "test.tsv", base, ["participant_id", "image", "age", "sex"])
        started = time.perf_counter()
        ages = _read(predict_run(run, table, "age", out / "test_predictions.tsv", SamplingOptions(num_samples=3),
                                 given=["image", "sex"], typicality=None))
        predicted_age = np.array([float(r["age"]) for r in ages])
        truth = np.array([float(r["age_true"]) for r in ages])
        report["brain_age"] = brain_age_metrics(predicted_age, truth, calibration.correction("age", "sample"))
        report["brain_age"]["seconds"] = time.perf_counter() - started
        report["brain_age"]["centile_mean"] = float(np.mean([float(r["age_centile"]) for r in ages]))

    if "partial" in parts:
        # 5. answers from part of a brain: keep the whole / one hemisphere / one quarter, generate the rest
        m = min(args.partial_records, n)
        var = model.variables["image"]
        images, _present = var.values([r["image"] for r in base[:m]], "cpu")  # (m, 1, 32, 32, 32) on the model grid
        grid = images.shape[2:]
        whole = torch.ones(1, 1, *grid, dtype=torch.bool)
        hemisphere = whole.clone()
        hemisphere[:, :, grid[0] // 2:] = False  # RAS: x < mid, the right hemisphere kept
        quarter = hemisphere.clone()
        quarter[:, :, :, grid[1] // 2:] = False  # and only its posterior half
        partial_rows = []
        from metavoxel.data.records import subject_seed

        seeds = [subject_seed(args.seed, r["participant_id"], None) for r in base[:m]]
        truth = torch.tensor([float(r["age"]) for r in base[:m]], dtype=torch.float64)
        level = (args.samples - 1) / (args.samples + 1)  # of the min-max interval of S samples
        for method in args.partial_methods:
            for key, name, keep in (("whole", "whole brain", whole), ("hemisphere", "one hemisphere", hemisphere),
                                    ("quarter", "one quarter", quarter)):
                if key not in args.partial_kept:
                    continue
                if name == "whole brain" and method == "impute":
                    continue  # nothing to impute: the same chain as joint
                started = time.perf_counter()
                masks = None if name == "whole brain" else {"image": keep}
                result = model.sample(fix={"image": images, "sex": [r["sex"] for r in base[:m]]}, masks=masks,
                                      options=SamplingOptions(num_samples=args.samples, steps=args.steps, seeds=seeds,
                                                              impute=method == "impute"))
                draws = result.samples["age"].double().reshape(m, -1)  # (m, S)
                low, high = draws.min(1).values, draws.max(1).values
                error = draws.mean(1) - truth
                partial_rows.append({"method": method, "kept": name, "kept_fraction": float(keep.float().mean()),
                                     "kept_latent_fraction": float(var.diffusion_mask(keep).float().mean()),
                                     "mae": float(error.abs().mean()), "rmse": float(error.pow(2).mean().sqrt()),
                                     "interval_width": float((high - low).mean()), "interval_level": level,
                                     "coverage": float(((low <= truth) & (truth <= high)).double().mean()),
                                     "sample_sd": float(draws.std(1).mean()),
                                     "seconds": time.perf_counter() - started})
        report["partial"] = {"records": m, "samples": args.samples, "steps": args.steps, "rows": partial_rows}
    report["seconds"] = time.perf_counter() - begun
    (out / "trust.json").write_text(json.dumps(report, indent=2))
    _print(report)
    return report


def _print(report: dict) -> None:
    f = lambda x, d=3: "n/a" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{d}f}"  # noqa: E731
    if "typicality" in report:
        from trust_typicality import print_typicality

        print_typicality(report["typicality"], f)
    if "metadata" in report:
        for r in report["metadata"]:
            print(f"{r['error']}: check AUROC {f(r['check_auroc'])}, detected at 5% false alarm "
                  f"{f(r['check_detect_at_5pct'], 2)}, flagged at the defaults {f(r['check_flagged_default'], 2)} "
                  f"(false flags {f(r['check_false_flags_default'], 2)}); typicality metadata part AUROC "
                  f"{f(r['typicality_auroc'])}, detected at 5% {f(r['typicality_detect_at_5pct'], 2)}")
    if "age_check" in report:
        a = report["age_check"]
        print(f"age +-20 years, point against sampled check ({a['samples']} samples x {a['steps']} steps), "
              f"{a['n']} records each; false flags promised 0.01 +- {f(a['binomial_se_at_1pct'], 3)}")
        for r in a["methods"]:
            print(f"  {r['method']:6s} AUROC {f(r['auroc'])}, detected at 5% false alarm {f(r['detect_at_5pct'], 2)}, "
                  f"at the default level {f(r['flagged_default'], 2)} (false flags {f(r['false_flags_default'], 3)}); "
                  f"{r['calls_per_record']} calls {f(r['seconds_per_record'], 3)} s per record"
                  + (f"; mean centile of correct ages {f(r['centile_mean'], 1)}" if r["centile_mean"] is not None
                     else ""))
    if "cost" in report:
        c = report["cost"]
        print(f"cost per record: typicality {c['typicality_calls']} calls {f(c['typicality_seconds'], 4)} s; point "
              f"prediction {c['point_calls']} calls {f(c['point_seconds'], 4)} s")
    if "brain_age" in report:
        b = report["brain_age"]
        for label in ("before", "after"):
            m = b[label]
            if m:
                print(f"brain age {label} correction: MAE {f(m['mae'], 2)} r {f(m['r'])} R2 {f(m['r2'])} "
                      f"corr(PAD, age) {f(m['pad_age_r'])}")
    if "partial" in report:
        p = report["partial"]
        print(f"part of a brain, {p['records']} records, {p['samples']} samples, {p['steps']} steps (min-max interval "
              f"of {p['samples']} samples: level {f((p['samples'] - 1) / (p['samples'] + 1), 2)})")
        for r in p["rows"]:
            print(f"  {r['method']:7s} {r['kept']:15s} kept {f(r['kept_fraction'], 2)} (latent "
                  f"{f(r['kept_latent_fraction'], 2)}): age MAE {f(r['mae'], 2)} RMSE {f(r['rmse'], 2)}, interval "
                  f"width {f(r['interval_width'], 2)}, coverage {f(r['coverage'], 2)}, sample SD "
                  f"{f(r['sample_sd'], 2)}, {f(r['seconds'], 1)} s")


if __name__ == "__main__":
    main()
