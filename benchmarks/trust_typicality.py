"""The typicality part of benchmarks/trust.py: shifted scans, flag rates and a masked image, old and new side by side.

Scores every held-out (test split) brain and a shifted copy of each (`trust.SHIFTS`) with the image and sex given,
through the code `predict` runs (`typicality_terms`, then the run's `TypicalityReference.score`), and reports per
shift the AUROC of:

- ``new``: the current score (max over the statistics of their normal scores: the global image statistic, the
  local ones at each scan scale, and the metadata's: sex, categorical, by its mid-p value under the model's
  posterior), the current percentile, the image part, and each statistic alone;
- ``old``: the same of the previous method (main at 24c4037: one local statistic, the maximum of the 3^d box mean
  of the z-map, not standardised per location), from the same network calls and the same calibration;

and the fraction flagged at the default 99th by each. Flag rates of unaltered records: the test split, and the
validation split left one out (each validation record scored against a reference fitted on the other n - 1). A
masked image: one hemisphere kept (the keep-mask of the part-of-brain measurement) of the unaltered brains and
of a copy of each with the lesion placed inside that hemisphere; as a control, the other hemisphere kept (the
lesion outside it), and the whole image. The maps do not depend on the mask, so the masked rows reuse the same
network calls (a masked record is scored by its image only).
"""

from __future__ import annotations

import itertools
import math
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def _box_max(zmap: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
    """main's local statistic (at 24c4037, verbatim): max over kept x of the mean of ``zmap`` (m, *grid) over the
    kept locations of the 3^d box around x, not normalised per location."""
    z = np.asarray(zmap, dtype=np.float64)
    grid = z.shape[1:]
    keep = np.ones(grid, dtype=bool) if keep is None else np.asarray(keep, dtype=bool)
    weight = keep.astype(np.float64)
    padded_z = np.pad(z * weight, [(0, 0)] + [(1, 1)] * len(grid))
    padded_w = np.pad(weight, [(1, 1)] * len(grid))
    total, count = np.zeros_like(z), np.zeros(grid)
    for offset in itertools.product(range(3), repeat=len(grid)):
        window = tuple(slice(o, o + s) for o, s in zip(offset, grid))
        total += padded_z[(slice(None), *window)]
        count += padded_w[window]
    smoothed = total / np.maximum(count, 1.0)
    return np.where(keep, smoothed, -np.inf).reshape(len(z), -1).max(axis=1)


def previous(reference):
    """The reference read as the previous method (main at 24c4037): one local statistic, ``image_local``, the max of
    the 3^d box mean of Z, in place of the scan scales; the rest (global, metadata, the combination) unchanged."""
    from metavoxel.evaluation.standardised import leave_one_out, standardise
    from metavoxel.evaluation.typicality import LOCAL, TypicalityReference

    class Previous(TypicalityReference):
        def _statistics(self, given, keep, values):
            out = super()._statistics(given, keep, values)
            maps = self.maps.get(given)
            if maps is None:
                return out
            zref = maps.astype(np.float64)
            zmap = leave_one_out(zref) if values is None else standardise(zref, values["maps"])
            local = _box_max(zmap.mean(axis=1), keep)
            rest = {k: v for k, v in out.items() if not k.startswith(LOCAL)}
            return {k: v for k, v in rest.items() if k == "image"} | {"image_local": local} | \
                {k: v for k, v in rest.items() if k != "image"}

    return Previous(reference.losses, reference.levels, reference.seed, reference.maps, reference.classes)


def left_one_out_flags(reference, given: str) -> list[bool]:
    """Each validation record of ``given`` scored against a reference fitted on the other n - 1: flagged?"""
    from metavoxel.diffusion.typicality import TypicalityTerms
    from metavoxel.evaluation.typicality import TypicalityReference

    losses, maps, classes = reference.losses[given], reference.maps.get(given), reference.classes.get(given, {})
    count = reference._count(given)
    nan = torch.full((1, reference.levels), float("nan"), dtype=torch.float64)
    flags = []
    for k in range(count):
        drop = lambda v: v[:k] + v[k + 1:]  # noqa: E731
        rest = type(reference)({given: {p: drop(v) for p, v in losses.items()}}, reference.levels, reference.seed,
                                   {} if maps is None else {given: np.delete(maps, k, axis=0)},
                                   {given: {v: drop(u) for v, u in classes.items()}} if classes else {})
        held = TypicalityTerms(*(torch.tensor([losses[p][k]], dtype=torch.float64) if p in losses else nan
                                 for p in ("image", "metadata")), 0, [given],
                               None if maps is None else torch.from_numpy(maps[k:k + 1]), None,
                               {v: torch.tensor([u[k]], dtype=torch.float64) for v, u in classes.items()})
        flags.append(rest.score(held)[0].flagged)
    return flags


def _latent_keep(var, keep: torch.Tensor) -> torch.Tensor:
    """A voxel keep-mask (1, 1, *shape) -> the latent locations kept (1, *grid), as `typicality_terms` derives it."""
    z_mask = var.diffusion_mask(keep)
    return z_mask.reshape(z_mask.shape[0], -1, *var.head.shape).all(dim=1)


def _lesion_in_hemisphere(var, record: dict, scans: Path, mid: int) -> tuple[Path, float]:
    """The record's scan with the lesion shift's sphere centred on the brain voxels at least 5 voxels below the
    model grid's midline on its first axis (found through the scan's own and its model-grid affine), and the
    fraction of the lesion's voxels below the midline."""
    img = nib.load(record["image"])
    data = np.asarray(img.dataobj, dtype=np.float32)
    mask = data > 0.05 * float(data.max())
    top = float(np.percentile(data[mask], 99))
    voxels = np.argwhere(mask)  # (m, 3) source indices
    to_model = np.linalg.inv(var.prepare(record["image"]).affine) @ img.affine
    on_model = voxels @ to_model[:3, :3].T + to_model[:3, 3]
    centre = voxels[on_model[:, 0] < mid - 5].mean(axis=0)
    grid = np.indices(data.shape).transpose(1, 2, 3, 0)
    sphere = ((grid - centre) ** 2).sum(-1) <= 4.0 ** 2
    path = scans / f"{record['participant_id']}_hemilesion.nii.gz"
    nib.save(nib.Nifti1Image(np.where(sphere & mask, 1.6 * top, data).astype(np.float32), img.affine), str(path))
    lesion = np.argwhere(sphere & mask) @ to_model[:3, :3].T + to_model[:3, 3]
    return path, float((lesion[:, 0] < mid - 0.5).mean())


def _read(results) -> dict:
    """Per-record arrays of a method's results: each statistic's normal score, the score (their max), the image
    part's, the metadata part's, the percentile and the flag."""
    u = {s: np.array([r.scores[s] for r in results]) for s in results[0].scores}
    part = lambda p: np.max([v for s, v in u.items() if s.startswith(p)] or [np.full(len(results), np.nan)],  # noqa: E731
                            axis=0)
    return {"u": u, "score": np.max(list(u.values()), axis=0), "image": part("image"), "metadata": part("metadata"),
            "percentile": np.array([r.percentile for r in results]),
            "flagged": np.array([r.flagged for r in results]), "results": results}


def measure_typicality(run: Path, model, calibration, base: list[dict], out: Path, rng: np.random.Generator,
                       shifts: tuple[str, ...], shifted, auroc) -> dict:
    """The typicality part's report (module docstring); ``shifted``/``auroc`` are trust.py's."""
    from metavoxel.diffusion.typicality import TypicalityTerms, typicality_terms
    from metavoxel.variables.capabilities import voxel_grid

    n, given = len(base), "image,sex"
    scans = out / "scans"
    scans.mkdir(exist_ok=True)
    rows = list(base)
    for kind in shifts:
        for r in base:
            img = nib.load(r["image"])
            data, affine = shifted(kind, np.asarray(img.dataobj, dtype=np.float32), img.affine, rng)
            path = scans / f"{r['participant_id']}_{kind}.nii.gz"
            nib.save(nib.Nifti1Image(data.astype(np.float32), affine), str(path))
            rows.append({**r, "participant_id": f"{r['participant_id']}x{kind.replace('_', '')}", "image": str(path)})
    reference = calibration.typicality
    prior = previous(reference)
    started = time.perf_counter()
    terms = typicality_terms(model, {"image": [r["image"] for r in rows], "sex": [r["sex"] for r in rows]},
                             levels=reference.levels, seed=reference.seed)
    seconds = (time.perf_counter() - started) / len(rows)
    torch.save({"terms": terms, "rows": [r["participant_id"] for r in rows]}, out / "typicality_terms.pt")
    started = time.perf_counter()
    new = _read(reference.score(terms))
    score_seconds = time.perf_counter() - started
    old = _read(prior.score(terms))
    shift_rows = []
    for k, kind in enumerate(shifts):
        part = slice(n * (k + 1), n * (k + 2))
        a = lambda x: auroc(x[:n], x[part])  # noqa: E731
        shift_rows.append({"shift": kind, "auroc": a(new["score"]), "auroc_percentile": a(new["percentile"]),
                           "auroc_image_part": a(new["image"]), "auroc_metadata_part": a(new["metadata"]),
                           "auroc_statistics": {s: a(v) for s, v in new["u"].items()},
                           "flagged": float(new["flagged"][part].mean()),
                           "named_image": float(np.mean(["image" in r.atypical for r in new["results"][part]])),
                           "old_auroc": a(old["score"]), "old_auroc_percentile": a(old["percentile"]),
                           "old_auroc_image_part": a(old["image"]),
                           "old_auroc_statistics": {s: a(v) for s, v in old["u"].items()},
                           "old_flagged": float(old["flagged"][part].mean())})
    report = {"n": n, "shifts": shift_rows, "statistics": list(new["u"]), "old_statistics": list(old["u"]),
              "test_flag_rate": float(new["flagged"][:n].mean()), "old_test_flag_rate": float(old["flagged"][:n].mean()),
              "test_flagged_by": {p: int(sum(p in r.atypical for r in new["results"][:n])) for p in ("image", "metadata")},
              "old_test_flagged_by": {p: int(sum(p in r.atypical for r in old["results"][:n]))
                                      for p in ("image", "metadata")},
              "binomial_se_at_1pct": math.sqrt(0.01 * 0.99 / n), "calls_per_record": terms.calls_per_record,
              "seconds_per_record": seconds, "score_seconds": score_seconds,
              "val_sex_midp_below_1pct": int((np.asarray(reference.classes[given]["sex"]) < 0.01).sum()),
              "val_sex_midp_min": float(np.min(reference.classes[given]["sex"]))}

    # the validation split left one out: each record against a reference fitted on the other n - 1
    loo, old_loo = left_one_out_flags(reference, given), left_one_out_flags(prior, given)
    count = len(loo)
    report.update(val_n=count, val_loo_flag_rate=float(np.mean(loo)), old_val_loo_flag_rate=float(np.mean(old_loo)),
                  val_binomial_se_at_1pct=math.sqrt(0.01 * 0.99 / count))

    # a masked image: one hemisphere kept (RAS: x < mid, as the part-of-brain measurement); a lesion as the lesion
    # shift's (radius 4 voxels, 1.6x the 99th percentile) placed inside that hemisphere, 5 voxels from its border
    var = model.variables["image"]
    grid = voxel_grid(var)[1]
    mid = grid[0] // 2
    placed = [_lesion_in_hemisphere(var, r, scans, mid) for r in base]
    hemi_rows = [{**r, "image": str(path)} for r, (path, _) in zip(base, placed)]
    inside = float(np.mean([fraction for _, fraction in placed]))  # of the lesion below the midline
    hemi = typicality_terms(model, {"image": [r["image"] for r in hemi_rows], "sex": [r["sex"] for r in hemi_rows]},
                            levels=reference.levels, seed=reference.seed)
    both = TypicalityTerms.concat([terms.rows(list(range(n))), hemi])
    masked_rows = []
    for name, side in (("whole image", None), ("the lesion's hemisphere kept", slice(None, mid)),
                       ("the other hemisphere kept", slice(mid, None))):
        keep = torch.ones(1, 1, *grid, dtype=torch.bool)
        if side is not None:
            keep[:] = False
            keep[:, :, side] = True
        latent = _latent_keep(var, keep) if side is not None else None
        if side is not None:
            both.image_keep = latent.expand(2 * n, *latent.shape[1:])
        row = {"mask": name, "kept_voxels": float(keep.float().mean()),
               "kept_latent": 1.0 if latent is None else float(latent.float().mean()),
               "lesion_voxels_kept": {None: 1.0, "lo": inside, "hi": 1.0 - inside}[
                   None if side is None else "lo" if side.start is None else "hi"]}
        for prefix, ref in (("", reference), ("old_", prior)):
            got = _read(ref.score(both))
            row.update({f"{prefix}auroc": auroc(got["score"][:n], got["score"][n:]),
                        f"{prefix}auroc_percentile": auroc(got["percentile"][:n], got["percentile"][n:]),
                        f"{prefix}flagged_unaltered": float(got["flagged"][:n].mean()),
                        f"{prefix}flagged_lesion": float(got["flagged"][n:].mean())})
        both.image_keep = None
        masked_rows.append(row)
    report["masked"] = masked_rows
    return report


def print_typicality(typ: dict, f) -> None:
    """trust.py's lines for the typicality part (``f`` formats a number)."""
    print(f"typicality, {typ['n']} held-out brains against shifted copies (AUROC new | previous; flagged at the "
          f"default 99th new | previous); statistics new: {', '.join(typ['statistics'])}; previous: "
          f"{', '.join(typ['old_statistics'])}")
    for r in typ["shifts"]:
        each = lambda d: ", ".join(f"{s} {f(v)}" for s, v in d.items())  # noqa: E731
        print(f"  {r['shift']:12s} AUROC {f(r['auroc'])} | {f(r['old_auroc'])} (percentile {f(r['auroc_percentile'])}"
              f" | {f(r['old_auroc_percentile'])}; image part {f(r['auroc_image_part'])} | "
              f"{f(r['old_auroc_image_part'])}; metadata part {f(r['auroc_metadata_part'])})  flagged "
              f"{f(r['flagged'], 2)} | {f(r['old_flagged'], 2)}, image named {f(r['named_image'], 2)}")
        print(f"    each statistic alone: new {each(r['auroc_statistics'])} | previous "
              f"{each(r['old_auroc_statistics'])}")
    print(f"  flag rate of unaltered records: test split {f(typ['test_flag_rate'], 3)} | "
          f"{f(typ['old_test_flag_rate'], 3)} (promised 0.01 ± {f(typ['binomial_se_at_1pct'], 3)}; by part "
          f"{typ['test_flagged_by']} | {typ['old_test_flagged_by']}); validation left-one-out {f(typ['val_loo_flag_rate'], 3)} | "
          f"{f(typ['old_val_loo_flag_rate'], 3)} of {typ['val_n']} (± {f(typ['val_binomial_se_at_1pct'], 3)}); "
          f"validation sex mid-p below 0.01: {typ['val_sex_midp_below_1pct']} (min {typ['val_sex_midp_min']:.2g})")
    print(f"  cost: {typ['calls_per_record']} network calls, {f(typ['seconds_per_record'], 3)} s per record; scoring "
          f"{f(typ['score_seconds'], 1)} s for all")
    for r in typ["masked"]:
        print(f"  lesion in one hemisphere, {r['mask']} ({f(r['kept_voxels'], 2)} of the voxels, "
              f"{f(r['kept_latent'], 2)} of the latent locations, {f(r['lesion_voxels_kept'], 2)} of the lesion "
              f"kept): AUROC {f(r['auroc'])} | {f(r['old_auroc'])} (percentile {f(r['auroc_percentile'])} | "
              f"{f(r['old_auroc_percentile'])}), flagged unaltered {f(r['flagged_unaltered'], 3)} | "
              f"{f(r['old_flagged_unaltered'], 3)}, lesioned {f(r['flagged_lesion'], 2)} | {f(r['old_flagged_lesion'], 2)}")
