"""The MetaVoxel paper's experiments, end to end, on the built-in phantom cohort.

    python benchmarks/paper/run.py --config small --append # 2 CPU cores, about 90 minutes
    python benchmarks/paper/run.py --config paper          # the full-size recipe, for a GPU

Stages (each reused when its output already exists in --out, so an interrupted run continues):
phantom cohort → KL-VAE → five diffusion models (MetaVoxel, image-only LDM, continuous-sex variant, and
MetaVoxel on the mixture recipe and with matched schedules, see `MODELS`) → baselines (MONAI DenseNet121 and
ViT, age and sex) → evaluation and the conditioning comparison → ``report.md``, ``metrics.json`` and
figures (PNG + PDF) in --out; with --append the report is also appended to benchmarks/RESULTS.md.

``--skip`` leaves parts out where the machine's time is short (a skipped part is neither trained nor measured,
and the report says "not run" in its place): ``continuous-sex`` (the variant and its Table 1 row),
``matched`` (the matched-schedules model and its conditioning rows), ``ablations`` (steps and samples), and
``jumps`` (RePaint with resampling in the conditioning comparison).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shlex
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from conditioning import conditioning_study  # noqa: E402
from configs import CONFIGS, BenchConfig  # noqa: E402
from tables import write_report  # noqa: E402

from metavoxel.data import DataSpec, load_splits, read_cohort  # noqa: E402
from metavoxel.errors import InputError  # noqa: E402
from metavoxel.evaluation import (EvaluationOptions, Roles, evaluate_generation, evaluate_model,  # noqa: E402
                                  feature_network, readers_from_baselines, sample_variable)
from metavoxel.evaluation.protocol import class_samples, class_truth  # noqa: E402
from metavoxel.evaluation.readers import categorical_extra, continuous_extra  # noqa: E402
from metavoxel.evaluation.scalar_metrics import (classification_metrics, regression_metrics,  # noqa: E402
                                                 sample_frequencies)
from metavoxel.io.atomic import write_json  # noqa: E402
from metavoxel.training.checkpoint import load_run  # noqa: E402
from metavoxel.workflows.evaluate import records  # noqa: E402
from metavoxel.presets import RECOMMENDED_TRAINING  # noqa: E402
from metavoxel.workflows.study import (StudyRecipe, make_cohort, phantom_config, train_study_model,  # noqa: E402
                                      train_study_vae)

ROOT = Path(__file__).resolve().parents[2]

#: every model the benchmark trains: directory -> (study variant, changes to the recipe). The first three are
#: the paper's (its recipe: one shared t, the paper's schedules, eps); the last two are the conditioning
#: comparison of issue 12 — what a new spec trains (the per-variable-level mixture for clean conditioning, the
#: image predicting v), and the paper recipe with matched schedules (the Gaussian variables on the cosine
#: schedule of the categorical one).
MODELS = {
    "joint": ("joint", {}),
    "image-only": ("image-only", {}),
    "continuous-sex": ("continuous-sex", {}),
    "joint-mixture": ("joint", {"training": dict(RECOMMENDED_TRAINING), "predictions": {"image": "v"}}),
    "joint-matched": ("joint", {"gaussian_schedule": {"name": "cosine"}}),
}

#: what ``--skip`` may leave out -> the model directory it spares training (None: a measurement only)
SKIPPABLE = {"continuous-sex": "continuous-sex", "matched": "joint-matched", "ablations": None, "jumps": None}


class Clock:
    """Wall time per stage, printed as it goes."""

    def __init__(self):
        self.stages: dict[str, float] = {}
        self.start = time.perf_counter()

    def __call__(self, name: str):
        clock = self

        class _Stage:
            def __enter__(self):
                self.t = time.perf_counter()
                print(f"[{time.perf_counter() - clock.start:7.1f}s] {name} ...", flush=True)

            def __exit__(self, *exc):
                clock.stages[name] = time.perf_counter() - self.t
                print(f"[{time.perf_counter() - clock.start:7.1f}s] {name} done in {clock.stages[name]:.1f}s", flush=True)

        return _Stage()


def progress(every: int = 50):
    last = {}

    def tick(phase: str, done: int, total: int) -> None:
        if done == total or done - last.get(phase, -every) >= every:
            last[phase] = done
            print(f"    {phase}: {done}/{total}", flush=True)
    return tick


def _normal(recipe: dict) -> dict:
    """A recipe as JSON holds it (tuples as lists), so a stored one compares with a fresh one."""
    return json.loads(json.dumps(recipe))


def parse_skip(text: str) -> frozenset[str]:
    """The parts ``--skip`` names (comma-separated), checked against `SKIPPABLE`.

    Raises:
        InputError: a name that is not a skippable part.
    """
    names = frozenset(n.strip() for n in text.split(",") if n.strip())
    unknown = sorted(names - set(SKIPPABLE))
    if unknown:
        raise InputError(f"--skip: unknown part(s) {', '.join(unknown)}; choose from {', '.join(SKIPPABLE)}")
    return names


def train_all(bench: BenchConfig, out: Path, clock: Clock, skip: frozenset[str] = frozenset()) -> tuple[Path, dict]:
    recipe = bench.recipe
    spared = {SKIPPABLE[name] for name in skip} - {None}
    with clock("phantom cohort"):
        data = make_cohort(recipe, out / "cohort", progress=progress(100))
    vae_dir = out / "vae"
    with clock("VAE"):
        if recipe.pretrained_vae is None and (vae_dir / "vae.safetensors").is_file():
            meta = json.loads((vae_dir / "vae.json").read_text())
            weights, scale, vae_summary = vae_dir / "vae.safetensors", float(meta["scale_factor"]), meta["metrics"]
        else:  # the shipped VAE (judged on the cohort, checked never to have seen it), or one trained here
            weights, scale, vae_summary = train_study_vae(recipe, data, vae_dir, progress=progress(50))
    for name, (variant, changes) in MODELS.items():
        if name in spared:
            continue
        with clock(f"train {name}"):
            expected = dataclasses.replace(recipe, **changes).to_dict()
            stored = out / name / "recipe.json"
            if stored.is_file() and _normal(StudyRecipe(**json.loads(stored.read_text())).to_dict()) != _normal(expected):
                raise InputError(f"{out / name} holds a model trained on another recipe (its recipe.json differs "
                                 f"from the {name!r} model's); remove that folder to train it again")
            if not (out / name / "model.safetensors").is_file():
                if (out / name).exists():  # an interrupted training: start it again
                    shutil.rmtree(out / name)
                train_study_model(dataclasses.replace(recipe, **changes), variant, data, out / name,
                                  vae_weights=weights, scale_factor=scale, calibrate=False,  # never read here
                                  cache_dir=out / "latents", progress=progress(200))
    return data, vae_summary


def train_baselines(bench: BenchConfig, out: Path, splits: dict, clock: Clock, joint) -> dict:
    from metavoxel.baselines import BaselineConfig, load_baseline, save_baseline, train_baseline

    lo, hi = joint.variables["age"].value_range
    trained = {}
    for arch, widths in (("densenet121", bench.densenet), ("vit", bench.vit)):
        for task, target in (("regression", "age"), ("classification", "sex")):
            name = f"{arch}-{target}"
            directory = out / "baselines" / name
            with clock(f"baseline {name}"):
                if (directory / "baseline.json").is_file():
                    trained[name] = load_baseline(directory)
                    continue
                config = BaselineConfig(arch=arch, task=task, num_classes=2, extra_inputs=1,
                                        steps=bench.baseline_steps, batch_size=bench.baseline_batch_size,
                                        val_every=max(1, bench.baseline_steps // 6), seed=bench.recipe.seed, **widths)

                def inputs(part):
                    images = part["image"]
                    if target == "age":
                        return images, categorical_extra(class_truth(joint, "sex", part["sex"]), 2), \
                            torch.as_tensor(part["age"], dtype=torch.float32)
                    return images, continuous_extra(torch.as_tensor(part["age"]), lo, hi), \
                        class_truth(joint, "sex", part["sex"])

                model = train_baseline(config, *inputs(splits["train"]), val=inputs(splits["val"]))
                save_baseline(directory, model)
                trained[name] = model
    return trained


def baseline_rows(trained: dict, test: dict, joint) -> dict:
    from metavoxel.baselines import predict_baseline

    lo, hi = joint.variables["age"].value_range
    sex = class_truth(joint, "sex", test["sex"])
    age = torch.as_tensor(test["age"], dtype=torch.float64)
    rows = {}
    for arch in ("densenet121", "vit"):
        start = time.perf_counter()
        ages = predict_baseline(trained[f"{arch}-age"], test["image"], categorical_extra(sex, 2)).double()
        probs = predict_baseline(trained[f"{arch}-sex"], test["image"], continuous_extra(age, lo, hi)).double()
        seconds = (time.perf_counter() - start) / len(age)
        rows[arch] = {"regression": regression_metrics(ages[:, None], age),
                      "classification": classification_metrics(sex, probs=probs, classes=["F", "M"]),
                      "seconds_per_subject": seconds, "predictions": ages, "probs": probs}
    return rows


def ablations(bench: BenchConfig, joint, test: dict, features, options: EvaluationOptions, base: dict) -> dict:
    """Sampling steps (10/20/50/100) and samples per subject (1/3/10): MAE, accuracy, FID, seconds per subject;
    per sample count also the age samples' CRPS, spread-skill and coverage with its real level."""
    n = len(test["age"])
    age = torch.as_tensor(test["age"], dtype=torch.float64)
    sex = class_truth(joint, "sex", test["sex"])
    common = dict(seed=options.seed, batch_size=options.batch_size, precision=options.precision)

    def tasks(steps: int, samples: int) -> dict:
        reg = sample_variable(joint, test, "age", ["image", "sex"], num_samples=samples, steps=steps, **common)
        cls = sample_variable(joint, test, "sex", ["image", "age"], num_samples=samples, steps=steps, **common)
        votes = class_samples(joint, "sex", cls.samples)
        return {**spread(regression_metrics(reg.samples, age)),
                "accuracy": classification_metrics(sex, samples=votes, probs=sample_frequencies(votes, 2),
                                                   classes=["F", "M"])["accuracy"],
                "seconds_per_subject": (reg.seconds + cls.seconds) / n}

    def spread(metrics: dict) -> dict:
        return {k: metrics[k] for k in ("mae", "crps", "spread_skill", "coverage", "coverage_level")}

    rows = {"steps": [], "samples": []}
    for steps in bench.step_ablation:
        if steps == options.steps:
            row = {"mae": base["regression"]["mae"], "accuracy": base["classification"]["accuracy"],
                   "seconds_per_subject": base["regression"]["seconds_per_subject"]
                   + base["classification"]["seconds_per_subject"], "fid": base["generation"]["fid"]}
        else:
            row = tasks(steps, options.num_samples)
            gen = evaluate_generation(joint, test["image"], features, EvaluationOptions(
                steps=steps, seed=options.seed, batch_size=options.batch_size, precision=options.precision))
            row["fid"] = gen["fid"]
        rows["steps"].append({"steps": steps, **row})
        print(f"    steps {steps}: {rows['steps'][-1]}", flush=True)
    for samples in bench.sample_ablation:
        if samples == options.num_samples:
            row = {**spread(base["regression"]), "accuracy": base["classification"]["accuracy"],
                   "seconds_per_subject": base["regression"]["seconds_per_subject"]
                   + base["classification"]["seconds_per_subject"]}
        else:
            row = tasks(options.steps, samples)
        rows["samples"].append({"samples": samples, **row})
        print(f"    samples {samples}: {rows['samples'][-1]}", flush=True)
    return rows


def with_phantom(bench: BenchConfig, settings: list[str]) -> BenchConfig:
    """The configuration with ``KEY=VALUE`` phantom settings (numbers) applied and named in its notes."""
    changes = {}
    for item in settings:
        key, sep, value = item.partition("=")
        try:
            changes[key.strip()] = float(value)
        except ValueError:
            sep = ""
        if not sep or not key.strip():
            raise InputError(f"--phantom {item!r}: expected KEY=NUMBER, e.g. age_effect=2")
    if not changes:
        return bench
    recipe = dataclasses.replace(bench.recipe, phantom={**bench.recipe.phantom, **changes})
    phantom_config(recipe)  # refuses unknown or invalid settings before anything runs
    named = ", ".join(f"{k}={v:g}" for k, v in changes.items())
    return dataclasses.replace(bench, recipe=recipe, notes=f"{bench.notes} Phantom settings changed: {named}.")


def claim(out: Path, bench: BenchConfig) -> str | None:
    """Record the configuration in ``out``; a directory holding another configuration's stages is refused."""
    record = json.loads(json.dumps({k: v for k, v in dataclasses.asdict(bench).items() if k != "notes"}))
    path = out / "benchmark.json"
    if path.is_file():
        if json.loads(path.read_text()) != record:
            return (f"{out} holds a run of another configuration (its benchmark.json differs), whose stages "
                    "would be reused; choose another --out or remove it")
        return None
    if out.is_dir() and any(out.iterdir()):
        return f"{out} is not empty and holds no benchmark.json; choose another --out or remove it"
    out.mkdir(parents=True, exist_ok=True)
    write_json(path, record)
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=sorted(CONFIGS), default="small")
    parser.add_argument("--out", type=Path, default=None, help="Work directory (default: runs/paper-<config>).")
    parser.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "RESULTS.md")
    parser.add_argument("--append", action="store_true", help="Append the report to --results.")
    parser.add_argument("--phantom", action="append", default=[], metavar="KEY=VALUE",
                        help="Change one setting of the phantom cohort (e.g. age_effect=2, variability=0.5, noise=0); "
                             "repeatable; named in the report. See `metavoxel phantom --help`.")
    parser.add_argument("--train-vae", action="store_true",
                        help="Train the recipe's VAE on the cohort instead of using the shipped phantom VAE.")
    parser.add_argument("--skip", default="", metavar="PARTS",
                        help="Leave parts out, comma-separated: " + ", ".join(SKIPPABLE) + " (the report says "
                             "which were not run).")
    parser.add_argument("--train-only", action="store_true",
                        help="Train (or reuse) every model and baseline, then stop; a later run evaluates them.")
    args = parser.parse_args(argv)
    try:
        bench = with_phantom(CONFIGS[args.config], args.phantom)
        skip = parse_skip(args.skip)
    except InputError as exc:
        parser.error(str(exc))
    if args.train_vae:
        bench = dataclasses.replace(bench, recipe=dataclasses.replace(bench.recipe, pretrained_vae=None))
    out = args.out or ROOT / "runs" / f"paper-{args.config}"
    command = "python benchmarks/paper/run.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    problem = claim(out, bench)
    if problem:
        parser.error(problem)
    clock = Clock()
    try:
        data, vae_summary = train_all(bench, out, clock, skip)
    except InputError as exc:
        parser.error(str(exc))
    if args.train_only:
        with clock("baselines"):
            joint = load_run(out / "joint")
            cohort = read_cohort(data, joint.variables, joint.spec.data or DataSpec())
            splits = load_splits(out / "joint" / "splits.json", cohort)
            train_baselines(bench, out, {k: records(joint, cohort, v, "image") for k, v in splits.items() if v},
                            clock, joint)
        print(f"trained every model and baseline in {out}; run again without --train-only to evaluate")
        return 0

    with clock("load models and held-out records"):
        joint = load_run(out / "joint")
        image_only = load_run(out / "image-only")
        cohort = read_cohort(data, joint.variables, joint.spec.data or DataSpec())
        splits = load_splits(out / "joint" / "splits.json", cohort)
        parts = {k: records(joint, cohort, v, "image") for k, v in splits.items() if v}
        population_mean = float(np.mean(parts["train"]["age"]))
        if "continuous-sex" not in skip:
            continuous_sex = load_run(out / "continuous-sex")
            # the continuous-sex variant reads sex through its own codes (F -> 0, M -> 1): its own records
            cohort_c = read_cohort(data, continuous_sex.variables, continuous_sex.spec.data or DataSpec())
            test_c = records(continuous_sex, cohort_c, load_splits(out / "joint" / "splits.json", cohort_c)["test"],
                             "image")
    baselines = train_baselines(bench, out, parts, clock, joint)
    features = feature_network("vae", vae=joint.variables["image"].vae)
    options = EvaluationOptions(roles=Roles(), num_samples=bench.num_samples, steps=bench.recipe.sampling_steps,
                                seed=0, batch_size=bench.eval_batch_size, precision=bench.precision,
                                likelihood_timesteps=bench.likelihood_timesteps)
    readers = readers_from_baselines(baselines["densenet121-age"], baselines["densenet121-sex"],
                                     continuous_range=tuple(joint.variables["age"].value_range), num_classes=2,
                                     name="DenseNet121 baselines")
    test, val = parts["test"], parts["val"]
    with clock("evaluate MetaVoxel"):
        metavoxel = evaluate_model(joint, test, val=val, population_mean=population_mean, options=options,
                                   features=features, readers=readers, progress=progress(100))
    with clock("evaluate image-only LDM"):
        image_only_gen = evaluate_generation(image_only, test["image"], features, options, progress=progress(100))
    cont = ablation = None  # None: skipped (the report says "not run")
    if "continuous-sex" not in skip:
        with clock("evaluate continuous-sex variant"):
            cont = evaluate_model(continuous_sex, test_c, population_mean=population_mean, features=None,
                                  options=EvaluationOptions(num_samples=options.num_samples, steps=options.steps,
                                                            batch_size=options.batch_size, table2=False,
                                                            likelihood_timesteps=0, precision=options.precision),
                                  progress=progress(100))
    with clock("evaluate baselines"):
        base_rows = baseline_rows(baselines, test, joint)
    if "ablations" not in skip:
        with clock("ablations"):
            ablation = ablations(bench, joint, test, features, options, metavoxel)
    with clock("conditioning comparison"):
        models = {"paper": joint, "matched": None if "matched" in skip else load_run(out / "joint-matched"),
                  "mixture": load_run(out / "joint-mixture")}
        study = conditioning_study({k: m for k, m in models.items() if m is not None}, test, val, readers, features,
                                   steps=options.steps, calibration=bench.calibration_samples,
                                   likelihood_timesteps=bench.likelihood_timesteps, batch_size=bench.eval_batch_size,
                                   seed=options.seed, jumps="jumps" not in skip)
    clock.stages["total"] = time.perf_counter() - clock.start
    machine = (f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
               f"torch {torch.__version__}, {'CUDA ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'CPU only'}")
    files = write_report(out, args.results if args.append else None, bench=bench, command=command,
                         machine=machine, clock=clock.stages, vae=vae_summary, metavoxel=metavoxel,
                         image_only=image_only_gen, continuous_sex=cont, baselines=base_rows, ablation=ablation,
                         test=test, joint=joint, population_mean=population_mean, conditioning=study,
                         skipped=sorted(skip))
    print(f"total {clock.stages['total'] / 60:.1f} min; wrote {', '.join(str(f) for f in files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
