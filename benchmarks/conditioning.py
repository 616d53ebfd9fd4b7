"""Conditioning benchmark on the 2D toy: the paper's recipe against the per-variable-level mixture.

Trains two toy models with the same steps, seed and data — the paper's recipe (one shared t) and the
mixture (`diffusion.training`) — and measures, side by side in one run:

- age from image + group: MAE of the sample mean (S samples) for repaint / clean / clean + guidance, and
  of point predictions (x0 read from the network, `JointModel.point_predict`: read at T only, the
  renoise-and-read plan at two levels, and its default plan);
- group from image + age: accuracy of the sample majority for the same modes and of the point
  prediction's class probabilities; likelihood classification (`class_scores`) as the reference for what
  the model knows;
- conditional generation: images generated for requested (age, group) pairs, read back by probes fitted
  on real toy images (ridge regression of age, nearest class mean of group): r and slope of read-back
  against requested age, group read-back accuracy; the probes' ceiling on real test images; pixel MMD^2
  of the generated images against the real test images with the same conditions;
- the spread of the age samples, from ``--calibration-samples`` (20) per subject: spread-skill ratio,
  CRPS, and coverage of the order-statistic interval next to the level it really has at that S
  (`metavoxel.evaluation.uncertainty`);
- inpainting (left half kept): RMS error of the generated half against the truth, next to an
  unconditional sample's, and the seam ratio (`metavoxel.evaluation.inpainting`), for repaint, repaint
  with RePaint's resampling jumps, and clean;
- seconds per subject of every method.

Run: ``OMP_NUM_THREADS=1 python benchmarks/conditioning.py --steps 1500`` (about 10 minutes on 2 CPU cores).
``--recipes mixture`` trains and measures only the mixture (the paper recipe refuses clean conditioning,
guidance and point predictions); ``--models DIR`` saves the trained weights there and reuses them in a later
run with the same recipe, steps, data size and seed (training is deterministic on one thread).
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

import metavoxel as mv
from metavoxel.errors import InputError
from metavoxel.evaluation.image_metrics import gaussian_mmd
from metavoxel.evaluation.uncertainty import uncertainty_metrics
from metavoxel.toy import GROUPS, TOY_SPEC, toy_cohort
from metavoxel.training import fit

MIXTURE = {"shared": 0.5, "clean": 0.25, "independent": 0.1, "prior": 0.15, "keep_masks": 0.25}
PAPER = {"shared": 1.0, "clean": 0.0, "independent": 0.0, "prior": 0.0, "keep_masks": 0.0}


def train(recipe: dict, steps: int, seed: int, train_data: dict, cache: Path | None = None
          ) -> tuple[mv.JointModel, float]:
    """A toy model trained with ``recipe``; with ``cache``, its weights are saved there and reused by a later
    run with the same recipe, steps, data size and seed (training is deterministic on one thread)."""
    spec = copy.deepcopy(TOY_SPEC)
    spec["diffusion"] = {**spec["diffusion"], "training": recipe,
                         "conditioning": "clean" if recipe.get("clean", 0.0) > 0 else "repaint"}
    torch.manual_seed(seed)
    model = mv.JointModel(spec)
    key = "-".join(f"{k}{v:g}" for k, v in sorted(recipe.items()))
    file = None if cache is None else cache / f"toy-{key}-steps{steps}-train{len(train_data['age'])}-seed{seed}.safetensors"
    if file is not None and file.is_file():
        model.load_state_dict(load_file(file))
        return model, float("nan")
    start = time.perf_counter()
    fit(model, train_data, steps=steps, batch_size=32, seed=seed)
    seconds = time.perf_counter() - start
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, file)
    return model, seconds


class Probes:
    """Read-back of age (ridge regression on pixels) and group (nearest class mean) fitted on real images."""

    def __init__(self, data: dict, lam: float = 1.0):
        x = data["image"].flatten(1).double()  # (N, 256)
        self.mu = x.mean(0)
        xc = x - self.mu
        y = data["age"].double()
        self.y0 = y.mean()
        self.w = torch.linalg.solve(xc.T @ xc + lam * torch.eye(xc.shape[1], dtype=torch.float64), xc.T @ (y - self.y0))
        g = torch.tensor([GROUPS.index(v) for v in data["group"]])
        self.centres = torch.stack([x[g == k].mean(0) for k in range(len(GROUPS))])  # (K, 256)

    def age(self, images: torch.Tensor) -> torch.Tensor:
        return (images.flatten(1).double() - self.mu) @ self.w + self.y0

    def group(self, images: torch.Tensor) -> torch.Tensor:
        return torch.cdist(images.flatten(1).double(), self.centres).argmin(dim=1)


def pearson_slope(requested: torch.Tensor, read: torch.Tensor) -> tuple[float, float]:
    a, b = requested.double() - requested.double().mean(), read.double() - read.double().mean()
    return float((a * b).sum() / (a.norm() * b.norm())), float((a * b).sum() / (a * a).sum())


def timed(fn):
    start = time.perf_counter()
    try:
        out = fn()
    except InputError as err:
        return None, time.perf_counter() - start, str(err)
    return out, time.perf_counter() - start, None


def evaluate(model: mv.JointModel, test: dict, probes: Probes, samples: int, guidance: float,
             calibration: int = 20) -> dict:
    n = len(test["age"])
    truth_group = torch.tensor([GROUPS.index(g) for g in test["group"]])
    modes = {"repaint": dict(conditioning="repaint"), "clean": dict(conditioning="clean"),
             f"clean+guidance {guidance:g}": dict(conditioning="clean", guidance=guidance)}
    rows = {}
    for label, options in modes.items():
        row = {}
        reg, sec_a, err = timed(lambda: model.sample(fix={"image": test["image"], "group": test["group"]},
                                                      num_samples=samples, seed=0, **options))
        if err:
            rows[label] = {"refused": err}
            continue
        row["age MAE"] = float((torch.tensor(reg.summary("age")["mean"]) - test["age"]).abs().mean())
        if calibration:  # the spread judged from enough samples to mean its level (evaluation.uncertainty)
            wide = model.sample(fix={"image": test["image"], "group": test["group"]}, num_samples=calibration,
                                seed=1, **options).samples["age"].double()
            scores = uncertainty_metrics(wide, test["age"].double())
            row["spread-skill"], row["CRPS"] = scores["spread_skill"], scores["crps"]
            row["coverage"], row["calibrated"] = scores["coverage"], scores["coverage_level"]
        cls, sec_g, _ = timed(lambda: model.sample(fix={"image": test["image"], "age": test["age"]},
                                                    num_samples=samples, seed=0, **options))
        majority = torch.tensor([GROUPS.index(g) for g in cls.summary("group")["majority"]])
        row["group acc"] = float((majority == truth_group).double().mean())
        gen, sec_c, _ = timed(lambda: model.sample(fix={"age": test["age"], "group": test["group"]}, num_samples=1,
                                                    seed=0, **options))
        images = gen.samples["image"][:, 0]
        row["gen r"], row["gen slope"] = pearson_slope(test["age"], probes.age(images))
        row["gen group acc"] = float((probes.group(images) == truth_group).double().mean())
        # pixel MMD^2 of the generated images against the real test images with the same conditions
        row["gen MMD"] = gaussian_mmd(test["image"].flatten(1).double(), images.flatten(1).double(), seed=0)[0]
        row["s/subject"] = (sec_a + sec_g + sec_c) / (3 * n)
        rows[label] = row
    fix_age = {"image": test["image"], "group": test["group"]}
    fix_grp = {"image": test["image"], "age": test["age"]}
    T = model.timesteps
    low = round(0.26 * T)
    for label, levels, draws in (("point, level T only (4 calls)", [T], 4),
                                 (f"point, T then {low} (2 + 2 calls)", [T, low], 2),
                                 ("point, default plan (1 + 2 + 2 calls)", None, None)):
        pa, sec_a, err = timed(lambda: model.point_predict(fix_age, "age", levels=levels, draws=draws, seed=0))
        if err:
            rows[label] = {"refused": err}
            break
        pg, sec_g, _ = timed(lambda: model.point_predict(fix_grp, "group", levels=levels, draws=draws, seed=0))
        rows[label] = {"age MAE": float((pa.mean["age"] - test["age"]).abs().mean()),
                       "group acc": float((pg.probs["group"].argmax(1) == truth_group).double().mean()),
                       "s/subject": (sec_a + sec_g) / (2 * n)}
    scores, sec, _ = timed(lambda: mv.diffusion.class_scores(model, fix_grp, "group", timesteps=10, seed=0))
    rows["likelihood (10 t)"] = {"group acc": float((scores.argmin(1) == truth_group).double().mean()),
                                 "s/subject": sec / n}
    return rows


def inpainting(model: mv.JointModel, test: dict, jumps: tuple[int, int]) -> dict:
    """The left half of every test image kept, the right half generated: error against the truth (RMS over the
    generated pixels; unconditional samples as the reference) and the seam ratio (`evaluation.inpainting`)."""
    from metavoxel.evaluation.inpainting import region_error, seam_ratio

    images = test["image"]
    keep = torch.zeros_like(images, dtype=torch.bool)
    keep[..., : images.shape[-2] // 2, :] = True  # first half along x
    free, sec_u, _ = timed(lambda: model.sample(num_subjects=len(images), seed=0))
    reference = float(region_error(free.samples["image"][:, 0], images, keep).mean())
    rows = {"truth": {"seam": float(seam_ratio(images, keep).nanmean())},
            "unconditional": {"inpaint RMS": reference, "vs uncond": 1.0, "s/subject": sec_u / len(images)}}
    modes = {"repaint": dict(conditioning="repaint"),
             f"repaint, jumps {jumps[0]}x{jumps[1]}": dict(conditioning="repaint", jump_length=jumps[0],
                                                          jump_rounds=jumps[1]),
             "clean": dict(conditioning="clean")}
    for label, options in modes.items():
        # the image is what is scored: imputation would only sample the free scalars again, at twice the calls
        out, sec, err = timed(lambda: model.sample(fix={"image": images}, masks={"image": keep}, seed=0, impute=False,
                                                   **options))
        if err:
            rows[label] = {"refused": err}
            continue
        filled = out.samples["image"][:, 0]
        error = float(region_error(filled, images, keep).mean())
        rows[label] = {"inpaint RMS": error, "vs uncond": error / reference,
                       "seam": float(seam_ratio(filled, keep).nanmean()), "s/subject": sec / len(images)}
    return rows


INPAINT_COLUMNS = ["inpaint RMS", "vs uncond", "seam", "s/subject"]


COLUMNS = ["age MAE", "group acc", "gen r", "gen slope", "gen group acc", "gen MMD", "spread-skill", "CRPS",
           "coverage", "calibrated", "s/subject"]


def table(results: dict, columns: list[str] = COLUMNS) -> str:
    lines = ["| recipe | method | " + " | ".join(columns) + " |", "|---" * (len(columns) + 2) + "|"]
    for recipe, rows in results.items():
        for method, row in rows.items():
            if "refused" in row:
                cells = ["refused"] + [""] * (len(columns) - 1)
            else:
                cells = [f"{row[c]:.3f}" if c in row else "" for c in columns]
            lines.append(f"| {recipe} | {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=96)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--calibration-samples", type=int, default=20,
                        help="samples per subject for spread-skill, CRPS and interval coverage (0: skip)")
    parser.add_argument("--jump-length", type=int, default=5, help="RePaint resampling: jump length (steps)")
    parser.add_argument("--jump-rounds", type=int, default=3, help="RePaint resampling: rounds per jump")
    parser.add_argument("--recipes", default="paper,mixture", help="comma-separated: paper, mixture")
    parser.add_argument("--models", type=Path, default=None,
                        help="folder to save trained weights in and reuse them from (same recipe, steps, data, seed)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_data, test = toy_cohort(args.train, seed=args.seed), toy_cohort(args.test, seed=args.seed + 1)
    probes = Probes(train_data)
    truth_group = torch.tensor([GROUPS.index(g) for g in test["group"]])
    ceiling_r, ceiling_slope = pearson_slope(test["age"], probes.age(test["image"]))
    ceiling_acc = float((probes.group(test["image"]) == truth_group).double().mean())
    baseline = float((train_data["age"].mean() - test["age"]).abs().mean())
    results, inpainted, seconds = {}, {}, {}
    recipes = {"paper": PAPER, "mixture": MIXTURE}
    chosen = [r.strip() for r in args.recipes.split(",") if r.strip()]
    if not chosen or any(r not in recipes for r in chosen):
        parser.error(f"--recipes: choose among {', '.join(recipes)}, got {args.recipes!r}")
    for name in chosen:
        model, seconds[name] = train(recipes[name], args.steps, args.seed, train_data, args.models)
        results[name] = evaluate(model, test, probes, args.samples, args.guidance, args.calibration_samples)
        inpainted[name] = inpainting(model, test, (args.jump_length, args.jump_rounds))
        print(f"trained and evaluated {name} ({seconds[name]:.0f} s training)", file=sys.stderr, flush=True)
    print(f"command: OMP_NUM_THREADS=1 python benchmarks/conditioning.py --steps {args.steps} --train {args.train} "
          f"--test {args.test} --samples {args.samples} --guidance {args.guidance:g} --seed {args.seed} "
          f"--jump-length {args.jump_length} --jump-rounds {args.jump_rounds} "
          f"--calibration-samples {args.calibration_samples} --recipes {','.join(chosen)}")
    print(f"mixture: {MIXTURE}; training seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items()))
    print(f"read-back ceiling on real test images: r {ceiling_r:.3f}, slope {ceiling_slope:.3f}, "
          f"group acc {ceiling_acc:.3f}; training-mean age MAE {baseline:.2f}; majority group acc "
          f"{float((truth_group == 0).double().mean()):.3f}")
    print(table(results))
    print("\ninpainting (left half kept; RMS over the generated half, vs an unconditional sample's; seam = border "
          "gradient / inside gradient, the truth's own for reference):")
    print(table(inpainted, INPAINT_COLUMNS))


if __name__ == "__main__":
    main()
