"""The typicality part of benchmarks/trust.py: shifted scans, flag rates and a masked image, old and new side by side.

Scores every held-out (test split) brain and a shifted copy of each (`trust.SHIFTS`) with the image and sex given,
through the code `predict` runs (`typicality_terms`, then the run's `TypicalityReference.score`), and reports per
shift the AUROC of:

- ``new``: the current score (max over the statistics of their normal scores: the global image statistic, the
  local one, the metadata), the current percentile, and each image statistic alone;
- ``old``: the score of the earlier method (each level standardised by the validation split's mean and SD with the
  validation records' own scores in sample, max over parts, empirical mid-rank percentiles), from the same terms;

and the fraction flagged at the default 99th by each. Flag rates of unaltered records: the test split, and the
validation split left one out (each validation record scored against a reference fitted on the other n - 1). A
masked image: one hemisphere kept (the keep-mask of the part-of-brain measurement) of the unaltered brains and
of a copy of each with the lesion placed inside that hemisphere; as a control, the other hemisphere kept (the
lesion outside it), and the whole image. The maps do not depend on the mask, so the masked rows reuse the same
network calls (a masked record is scored by its image only).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch


def _midrank(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    ref = np.sort(reference)
    below = np.searchsorted(ref, values, side="left")
    return 100.0 * (below + 0.5 * (np.searchsorted(ref, values, side="right") - below)) / len(ref)


def old_method(reference_levels: dict, levels: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The earlier method (main at 6bad2ba): (score, image score, combined percentile) of records ``levels``
    (part -> (m, J)) against ``reference_levels`` (part -> (n, J))."""
    s_new, s_ref = {}, {}
    for part, ref in reference_levels.items():
        ref = np.asarray(ref, dtype=np.float64)
        mu, sd = ref.mean(axis=0), ref.std(axis=0, ddof=1)
        sd = np.where(sd > 0, sd, np.maximum(np.abs(mu), 1.0) * 1e-6)
        s_ref[part] = ((ref - mu) / sd).mean(axis=1)  # in sample
        s_new[part] = ((levels[part] - mu) / sd).mean(axis=1)
    m_new = np.max([_midrank(s_new[p], s_ref[p]) for p in s_ref], axis=0)
    m_ref = np.max([_midrank(s_ref[p], s_ref[p]) for p in s_ref], axis=0)
    return np.max(list(s_new.values()), axis=0), s_new["image"], _midrank(m_new, m_ref)


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


def measure_typicality(run: Path, model, calibration, base: list[dict], out: Path, rng: np.random.Generator,
                       shifts: tuple[str, ...], shifted, auroc) -> dict:
    """The typicality part's report (module docstring); ``shifted``/``auroc`` are trust.py's."""
    from metavoxel.diffusion.typicality import TypicalityTerms, typicality_terms
    from metavoxel.evaluation.typicality import TypicalityReference
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
    started = time.perf_counter()
    terms = typicality_terms(model, {"image": [r["image"] for r in rows], "sex": [r["sex"] for r in rows]},
                             levels=reference.levels, seed=reference.seed)
    seconds = (time.perf_counter() - started) / len(rows)
    started = time.perf_counter()
    results = reference.score(terms)
    score_seconds = time.perf_counter() - started
    u = {s: np.array([r.scores[s] for r in results]) for s in ("image", "image_local", "metadata")}
    score = np.max(list(u.values()), axis=0)
    image_score = np.maximum(u["image"], u["image_local"])
    pct = np.array([r.percentile for r in results])
    flagged = np.array([r.flagged for r in results])
    levels = {p: terms.levels(p).numpy() for p in ("image", "metadata")}
    old_score, old_image, old_pct = old_method(reference.losses[given], levels)
    old_flagged = old_pct > 99.0
    shift_rows = []
    for k, kind in enumerate(shifts):
        part = slice(n * (k + 1), n * (k + 2))
        a = lambda x: auroc(x[:n], x[part])  # noqa: E731
        shift_rows.append({"shift": kind, "auroc": a(score), "auroc_percentile": a(pct), "auroc_image_part": a(image_score),
                           "auroc_image_global": a(u["image"]), "auroc_image_local": a(u["image_local"]),
                           "flagged": float(flagged[part].mean()),
                           "named_image": float(np.mean(["image" in r.atypical for r in results[part]])),
                           "old_auroc": a(old_score), "old_auroc_percentile": a(old_pct),
                           "old_auroc_image_part": a(old_image), "old_flagged": float(old_flagged[part].mean())})
    report = {"n": n, "shifts": shift_rows, "test_flag_rate": float(flagged[:n].mean()),
              "old_test_flag_rate": float(old_flagged[:n].mean()),
              "test_flagged_by": {p: int(sum(p in r.atypical for r in results[:n])) for p in ("image", "metadata")},
              "binomial_se_at_1pct": math.sqrt(0.01 * 0.99 / n), "calls_per_record": terms.calls_per_record,
              "seconds_per_record": seconds, "score_seconds": score_seconds}

    # the validation split left one out: each record against a reference fitted on the other n - 1
    losses, maps = reference.losses[given], reference.maps.get(given)
    count = len(losses["image"])
    loo, old_loo = [], []
    for k in range(count):
        rest = TypicalityReference({given: {p: v[:k] + v[k + 1:] for p, v in losses.items()}}, reference.levels,
                                   reference.seed, {} if maps is None else {given: np.delete(maps, k, axis=0)})
        held = TypicalityTerms(torch.tensor([losses["image"][k]], dtype=torch.float64),
                               torch.tensor([losses["metadata"][k]], dtype=torch.float64), 0, [given],
                               None if maps is None else torch.from_numpy(maps[k:k + 1]))
        loo.append(rest.score(held)[0].flagged)
        mine = {p: np.asarray([v[k]], dtype=np.float64) for p, v in losses.items()}
        old_loo.append(bool(old_method({p: v[:k] + v[k + 1:] for p, v in losses.items()}, mine)[2][0] > 99.0))
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
    both = TypicalityTerms(torch.cat([terms.image_levels[:n], hemi.image_levels]),
                           torch.cat([terms.metadata_levels[:n], hemi.metadata_levels]), terms.calls_per_record,
                           terms.given[:n] + hemi.given, torch.cat([terms.image_maps[:n], hemi.image_maps]))
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
        scored = reference.score(both)
        both.image_keep = None
        s = np.array([max(r.scores.values()) for r in scored])
        p = np.array([r.percentile for r in scored])
        f = np.array([r.flagged for r in scored])
        masked_rows.append({"mask": name, "kept_voxels": float(keep.float().mean()),
                            "kept_latent": 1.0 if latent is None else float(latent.float().mean()),
                            "lesion_voxels_kept": {None: 1.0, "lo": inside, "hi": 1.0 - inside}[
                                None if side is None else "lo" if side.start is None else "hi"],
                            "auroc": auroc(s[:n], s[n:]), "auroc_percentile": auroc(p[:n], p[n:]),
                            "flagged_unaltered": float(f[:n].mean()), "flagged_lesion": float(f[n:].mean())})
    report["masked"] = masked_rows
    return report


def print_typicality(typ: dict, f) -> None:
    """trust.py's lines for the typicality part (``f`` formats a number)."""
    print(f"typicality, {typ['n']} held-out brains against shifted copies (AUROC new | old; flagged at the default "
          f"99th new | old)")
    for r in typ["shifts"]:
        print(f"  {r['shift']:12s} AUROC {f(r['auroc'])} | {f(r['old_auroc'])} (percentile {f(r['auroc_percentile'])}"
              f" | {f(r['old_auroc_percentile'])}; image part {f(r['auroc_image_part'])} | "
              f"{f(r['old_auroc_image_part'])}: global {f(r['auroc_image_global'])}, local "
              f"{f(r['auroc_image_local'])})  flagged {f(r['flagged'], 2)} | {f(r['old_flagged'], 2)}, image named "
              f"{f(r['named_image'], 2)}")
    print(f"  flag rate of unaltered records: test split {f(typ['test_flag_rate'], 3)} | "
          f"{f(typ['old_test_flag_rate'], 3)} (promised 0.01 ± {f(typ['binomial_se_at_1pct'], 3)}; by part "
          f"{typ['test_flagged_by']}); validation left-one-out {f(typ['val_loo_flag_rate'], 3)} | "
          f"{f(typ['old_val_loo_flag_rate'], 3)} of {typ['val_n']} (± {f(typ['val_binomial_se_at_1pct'], 3)})")
    print(f"  cost: {typ['calls_per_record']} network calls, {f(typ['seconds_per_record'], 3)} s per record; scoring "
          f"{f(typ['score_seconds'], 1)} s for all")
    for r in typ["masked"]:
        print(f"  lesion in one hemisphere, {r['mask']} ({f(r['kept_voxels'], 2)} of the voxels, "
              f"{f(r['kept_latent'], 2)} of the latent locations, {f(r['lesion_voxels_kept'], 2)} of the lesion "
              f"kept): AUROC {f(r['auroc'])} (percentile "
              f"{f(r['auroc_percentile'])}), flagged unaltered {f(r['flagged_unaltered'], 3)}, lesioned "
              f"{f(r['flagged_lesion'], 2)}")
