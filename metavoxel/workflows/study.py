"""A whole MetaVoxel study on the built-in phantom cohort: cohort → VAE → joint model(s).

`StudyRecipe` fixes every size and budget; `metavoxel demo` runs the `DEMO` recipe and
``benchmarks/paper`` runs its ``small`` and ``paper`` recipes through the same functions, so the demo,
the benchmark and a user's own cohort go through one code path: `metavoxel.workflows.train_vae_run`
and `metavoxel.workflows.train_run` on a BIDS directory.

Model variants (paper section 4): ``joint`` (image + age + sex, the MetaVoxel model), ``image-only``
(the same U-Net and schedule with the image variable only, the LDM baseline for FID) and
``continuous-sex`` (sex as a Gaussian scalar in [0, 1] instead of D3PM).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from metavoxel.errors import InputError
from metavoxel.io.atomic import write_json
from metavoxel.presets import PAPER_TRAINING, RECOMMENDED_TRAINING

__all__ = ["DEMO", "VARIANTS", "StudyRecipe", "make_cohort", "phantom_config", "study_spec", "train_study_model",
           "train_study_vae"]

VARIANTS = ("joint", "image-only", "continuous-sex")

#: the paper's Gaussian schedule (latent image and continuous scalars)
PAPER_GAUSSIAN_SCHEDULE = {"name": "scaled_linear", "beta_start": 0.0015, "beta_end": 0.0195}

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class StudyRecipe:
    """Sizes and budgets of a phantom study (all defaults are the demo's)."""

    name: str = "demo"
    subjects: int = 300
    size: int | tuple[int, int, int] = 32
    voxel_mm: float = 5.5
    phantom_seed: int = 0
    phantom: dict[str, Any] = field(default_factory=dict)  # other `PhantomConfig` fields, e.g. {"age_effect": 2.0}
    #: a VAE shipped with metavoxel (`metavoxel.vae.pretrained`) to use instead of training one; None trains the
    #: ``vae_*`` recipe below on the cohort's training split
    pretrained_vae: str | None = None
    vae_channels: tuple[int, ...] = (8, 16, 32)
    vae_latent_channels: int = 8
    vae_steps: int = 600
    vae_batch_size: int = 8
    vae_lr: float = 2e-3
    vae_lr_schedule: str = "constant"  # `VAETrainConfig.lr_schedule`
    vae_patch_size: int | None = None  # train the VAE on random cubes of this side (None: whole volumes)
    network: dict[str, Any] = field(default_factory=lambda: {
        "spatial_dims": 3, "channels": [32, 64, 64], "attention_levels": [False, True, True], "num_res_blocks": 1,
        "num_head_channels": 32, "norm_num_groups": 16, "cross_attention_dim": 64})
    train_steps: int = 1200
    batch_size: int = 32
    lr: float = 1e-3
    ema_decay: float = 0.99
    #: the spec's `diffusion.training` mixture; the paper's shared-t recipe unless a recipe says otherwise
    training: dict[str, float] = field(default_factory=lambda: dict(PAPER_TRAINING))
    #: the Gaussian variables' noise schedule (`ScheduleSpec`); the paper's scaled_linear unless a recipe says
    #: otherwise (the paper benchmark's "matched schedules" model uses cosine, the categorical one's)
    gaussian_schedule: dict[str, Any] = field(default_factory=lambda: dict(PAPER_GAUSSIAN_SCHEDULE))
    #: per-variable ``loss_weight`` in the joint loss (`VariableSpec.loss_weight`), e.g. {"age": 4.0}; others 1
    loss_weights: dict[str, float] = field(default_factory=dict)
    #: per-variable ``prediction`` of the Gaussian variables (`metavoxel.variables.gaussian.prediction_field`),
    #: e.g. {"image": "v"}; the others predict the paper's eps (a categorical sex, D3PM, ignores its entry)
    predictions: dict[str, str] = field(default_factory=dict)
    sampling_steps: int = 50
    #: the sampling grid's spacing (`DiffusionSpec.grid`); the paper's uniform grid unless a recipe says otherwise
    grid: str = "uniform"
    guidance: float = 0.0  # guidance weight of the demo's conditional generation (needs training.prior > 0)
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def shape(self) -> list[int]:
        """The image grid (isotropic ``voxel_mm`` voxels); the phantom's field of view is shape × voxel_mm."""
        return list(self.size) if isinstance(self.size, tuple) else [self.size] * 3


#: `metavoxel demo`: a quick model on a small phantom cohort, about 10 minutes on 2 CPU cores. Its phantom
#: has stronger age and sex effects than the default one (docs/phantom.md, "The demo's phantom"). It trains
#: with the per-variable-level mixture, so it conditions clean, predicts sex in a few network calls and
#: guides its conditional generation.
#: Its VAE is the shipped phantom VAE `phantom-32-sharp` (metavoxel/pretrained/; docs/vae.md): 29-30 dB on
#: held-out brains, sulci kept, where the 200-step VAE the demo once trained kept so little that every generated
#: brain was a smooth oval (benchmarks/RESULTS-archive.md). The time the VAE no longer takes goes
#: to the joint model: 900 steps, what the 10 minutes hold (at 800 the round trip fell out of order). With it the
#: generated brains are 2.7-4.6x closer to real ones than with the blurrier `phantom-32` on a fixed feature network,
#: though 12.8x the FID of the VAE's own reconstructions, whose floor fell far lower; 4x the steps improve every
#: other figure but take that ratio only to 10.4x (benchmarks/RESULTS.md, "The demo against its constants").
#: `--train-vae` trains the earlier recipe's VAE (200 steps of 8 volumes) instead.
#: Age's loss weighs 4x in the joint loss: the image's loss dominates the shared bottleneck otherwise, and
#: the age head reads the image at 0.64x the training mean's MAE instead of 0.48x (benchmarks/RESULTS-archive.md,
#: "The demo's age answer"; 4 was the one weight tried). The image predicts v, not eps: at this budget the
#: eps network's x0 estimate near t = T is worse than the training mean, so generated latents spread 4.6x as
#: much as real ones; with v 1.9x (benchmarks/RESULTS-archive.md, "The image denoiser near t = T").
#: It samples on the quadratic grid: on its model, 20 samples per subject then give spread-skill 0.98 and 90%
#: coverage 0.91 (0.905 calibrated) against 1.09 and 0.87 on the uniform grid (benchmarks/RESULTS.md, "The
#: sampling grid").
DEMO = StudyRecipe(name="demo", subjects=600, pretrained_vae="phantom-32-sharp", vae_steps=200, train_steps=900,
                   test_fraction=0.15,
                   phantom={"age_effect": 3.0, "sex_effect": 2.0}, training=dict(RECOMMENDED_TRAINING),
                   guidance=2.0, loss_weights={"age": 4.0}, predictions={"image": "v"}, grid="quadratic")


def study_spec(recipe: StudyRecipe, variant: str = "joint", *, vae_weights: str | None = None,
               scale_factor: float = 1.0) -> dict[str, Any]:
    """The model spec of one variant: the paper's diffusion settings at the recipe's sizes."""
    if variant not in VARIANTS:
        raise InputError(f"unknown study variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    image: dict[str, Any] = {
        "name": "image", "kind": "image_latent", "channels": 1, "shape": recipe.shape,
        "vae": _vae_architecture(recipe),
        "scale_factor": scale_factor,
        "preprocess": {"orientation": "RAS", "spacing": [recipe.voxel_mm] * 3, "percentiles": [0.5, 99.5]},
    }
    if vae_weights is not None:
        image["weights"] = str(vae_weights)
    variables: list[dict[str, Any]] = [image]
    data: dict[str, Any] = {"split": {"val": recipe.val_fraction, "test": recipe.test_fraction, "seed": recipe.seed}}
    if variant != "image-only":
        variables.append({"name": "age", "kind": "continuous", "range": [40.0, 95.0], "unit": "years"})
    if variant == "joint":
        variables.append({"name": "sex", "kind": "categorical", "categories": ["F", "M"]})
    elif variant == "continuous-sex":
        variables.append({"name": "sex", "kind": "continuous", "range": [0.0, 1.0], "unit": "P(M) (F = 0, M = 1)"})
        data["codes"] = {"sex": {"F": "0", "M": "1"}}
    for option in ("loss_weights", "predictions"):
        unknown = set(getattr(recipe, option)) - {"image", "age", "sex"}
        if unknown:
            raise InputError(f"{option} names {', '.join(sorted(unknown))}; a study's variables are image, age "
                             "and sex")
    for v in variables:
        if v["name"] in recipe.loss_weights:
            v["loss_weight"] = float(recipe.loss_weights[v["name"]])
        if v["kind"] != "categorical":  # D3PM predicts x0 logits only; named, so the kinds' defaults do not apply
            v["prediction"] = recipe.predictions.get(v["name"], "eps")
    return {
        "name": f"phantom-{recipe.name}-{variant}",
        "variables": variables,
        "diffusion": {"timesteps": 1000, "gaussian": dict(recipe.gaussian_schedule),
                      "discrete": {"name": "cosine"}, "sampling_steps": recipe.sampling_steps, "eta": 1.0,
                      "grid": recipe.grid, "training": dict(recipe.training),
                      "conditioning": "clean" if recipe.training.get("clean", 0.0) > 0 else "repaint"},
        "network": copy.deepcopy(recipe.network),
        "data": data,
        "seed": recipe.seed,
    }


def _vae_architecture(recipe: StudyRecipe) -> dict[str, Any]:
    """The image variable's VAE: the shipped one's architecture, or the recipe's own."""
    if recipe.pretrained_vae is not None:
        from metavoxel.vae.pretrained import pretrained_vae

        return json.loads((pretrained_vae(recipe.pretrained_vae) / "vae.json").read_text())["architecture"]
    return {"channels": list(recipe.vae_channels), "latent_channels": recipe.vae_latent_channels,
            "num_res_blocks": 1, "norm_num_groups": min(8, recipe.vae_channels[0])}


def phantom_config(recipe: StudyRecipe):
    """The recipe's `metavoxel.phantom.PhantomConfig`; bad ``recipe.phantom`` settings raise `InputError`."""
    from metavoxel.phantom import PhantomConfig

    fixed = {"subjects", "size", "fov_mm", "seed"} & set(recipe.phantom)
    if fixed:
        raise InputError(f"phantom settings {', '.join(sorted(fixed))} come from the recipe's subjects, size, "
                         "voxel_mm and phantom_seed; set those instead")
    try:
        return PhantomConfig(subjects=recipe.subjects, size=tuple(recipe.shape),
                             fov_mm=tuple(s * recipe.voxel_mm for s in recipe.shape), seed=recipe.phantom_seed,
                             **recipe.phantom)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise InputError(f"phantom setting {where}: {problem['msg']} (see metavoxel phantom --help)") from None


def make_cohort(recipe: StudyRecipe, out: str | Path, *, progress: Progress | None = None) -> Path:
    """Write the recipe's phantom cohort (BIDS) to ``out``, or reuse it if it is already there."""
    from metavoxel.phantom import write_phantom

    out = Path(out)
    config = phantom_config(recipe)
    if (out / "phantom.json").is_file():
        written = json.loads((out / "phantom.json").read_text()).get("config", {})
        if written == json.loads(config.model_dump_json()):
            return out
    tick = progress or (lambda phase, done, total: None)
    return write_phantom(out, config, overwrite=True, progress=lambda d, t: tick("phantom cohort", d, t))


def train_study_vae(recipe: StudyRecipe, data: Path, out: str | Path, *, progress: Progress | None = None,
                    refit_probe: bool = True, judge_probe: bool = True) -> tuple[Path, float, dict[str, Any]]:
    """The recipe's KL-VAE: returns (weights, scale factor, report summary).

    With ``recipe.pretrained_vae`` the shipped VAE is used: the cohort is first checked to hold no brain the
    VAE saw (`metavoxel.vae.pretrained.check_unseen_phantom`), then the VAE is judged on its validation split
    (`judge_vae_run`); nothing is written to ``out``. Otherwise the recipe's VAE is trained on the training
    split into ``out`` (`train_vae_run`). ``refit_probe=False`` leaves out the signal probe refitted on
    reconstructions; ``judge_probe=False`` the shipped VAE's probe altogether (its judge then reads only the
    validation brains).
    """
    from metavoxel.spec import ModelSpec
    from metavoxel.vae import VAETrainConfig
    from metavoxel.workflows.vae import judge_vae_run, train_vae_run

    out = Path(out)
    tick = progress or (lambda phase, done, total: None)
    if recipe.pretrained_vae is not None:
        from metavoxel.vae.checkpoint import recorded_scale_factor
        from metavoxel.vae.pretrained import check_unseen_phantom, pretrained_vae

        folder = pretrained_vae(recipe.pretrained_vae)
        unseen = check_unseen_phantom(folder, data)
        weights = folder / "vae.safetensors"
        scale = recorded_scale_factor(weights)[0]
        tick("VAE (shipped): judging", 0, 1)
        spec = ModelSpec.from_dict(study_spec(recipe, vae_weights=str(weights), scale_factor=scale))
        summary = {**judge_vae_run(spec, data, probe=judge_probe, refit_probe=refit_probe),
                   "pretrained": recipe.pretrained_vae, "unseen": unseen}
        tick("VAE (shipped): judging", 1, 1)
        return weights, scale, summary
    patch = None if recipe.vae_patch_size is None else [recipe.vae_patch_size] * 3
    config = VAETrainConfig(steps=recipe.vae_steps, batch_size=recipe.vae_batch_size, lr=recipe.vae_lr,
                            lr_schedule=recipe.vae_lr_schedule, patch_size=patch, adv_start=recipe.vae_steps,
                            val_every=recipe.vae_steps, seed=recipe.seed)
    report = train_vae_run(ModelSpec.from_dict(study_spec(recipe)), data, out, config,
                           progress=lambda step, total, record: tick("VAE", step, total), refit_probe=refit_probe)
    summary = report.summary()
    return out / "vae.safetensors", float(report.scale_factor), summary


def train_study_model(recipe: StudyRecipe, variant: str, data: Path, out: str | Path, *, vae_weights: Path,
                      scale_factor: float, cache_dir: Path, progress: Progress | None = None,
                      calibrate: bool = True):
    """Train one model variant on the cohort; returns `metavoxel.training.TrainResult`.

    ``calibrate=False`` skips the run's calibration.json (`metavoxel calibrate` writes it later), for a benchmark
    that never reads it."""
    from metavoxel.spec import ModelSpec
    from metavoxel.training import TrainConfig
    from metavoxel.workflows.train import train_run

    tick = progress or (lambda phase, done, total: None)
    spec = ModelSpec.from_dict(study_spec(recipe, variant, vae_weights=str(vae_weights), scale_factor=scale_factor))
    config = TrainConfig(steps=recipe.train_steps, batch_size=recipe.batch_size, lr=recipe.lr,
                         warmup_steps=max(1, recipe.train_steps // 20), ema_decay=recipe.ema_decay,
                         val_every=max(1, recipe.train_steps // 4), checkpoint_every=recipe.train_steps,
                         log_every=10, seed=recipe.seed)
    out = Path(out)
    if (out / "state.json").exists():
        raise InputError(f"{out} already holds a training run; remove it or choose another output directory")
    result = train_run(spec, data, out, config, cache_dir=cache_dir, calibrate=calibrate,
                       progress=lambda phase, done, total, loss: tick(f"{variant} {phase}", done, total))
    write_json(out / "recipe.json", recipe.to_dict())
    return result
