"""How much two of the demo's checks move with the seed, on a finished demo run: is a verdict the model's or the draw's?

``--check fid``: `metavoxel demo` judges its generated brains by the 3-plane FID against the held-out brains, at
most 1.5x the FID of the VAE's own reconstructions of those brains (`metavoxel.demo`). This re-draws the
unconditional brains with other seeds and prints, per seed, both FIDs and their ratio, then the ratios' mean and SD.

``--check round-trip``: the demo's round trip (brains generated for ages 45/70/90 of each sex, 8 each, read back by
the same model; the check: the read-back means in increasing order for each sex), run by the demo's own code with
other seeds; prints each seed's means, slope and verdict, and how often the check passed.

    OMP_NUM_THREADS=1 python benchmarks/demo_check_noise.py --demo runs/demo --brains 96 --seeds 4 --steps 50
    OMP_NUM_THREADS=1 python benchmarks/demo_check_noise.py --demo runs/demo --check round-trip --seeds 8

``--check spread-skill``: the demo's age answer from image + sex (`metavoxel.demo._regression`, ``--num-samples``
samples per held-out subject, 3 as the demo draws) with other seeds; prints each seed's spread-skill ratio and 50%
coverage, and how often the demo's spread-skill check (0.8-1.25) passed:

    OMP_NUM_THREADS=1 python benchmarks/demo_check_noise.py --demo runs/demo --check spread-skill --seeds 8

``--decoder FOLDER``: decode (the generated brains and the floor's reconstructions alike) with this saved VAE's
decoder instead of the run's. It must share the run VAE's encoder weights exactly (refused otherwise), so the latent
space, the joint model's samples and the FID's features stay the same and only the decoder is compared:

    OMP_NUM_THREADS=1 python benchmarks/demo_check_noise.py --demo /work/demo-new --decoder runs/robust-exp/robust/vae

``--yardsticks NAMES``: also measure both FIDs with the encoders of these shipped VAEs as fixed feature networks
(comma-separated, e.g. ``phantom-32,phantom-32-sharp``). The demo's own FID uses the run VAE's encoder, and its floor
moves with the VAE: a sharper VAE lowers the floor, so the ratio can grow while the generated brains come closer to
the real ones. A yardstick shared by two runs compares their generated brains directly:

    OMP_NUM_THREADS=1 python benchmarks/demo_check_noise.py --demo /work/demo-new --seeds 1 --brains 90 \
        --yardsticks phantom-32,phantom-32-sharp

``--brains``: generated brains per seed (the floor uses as many reconstructions, at most every held-out brain;
seed 0 takes the first ones, as the demo does, the other seeds a random subset). ``--steps``: reverse steps.
The held-out brains and the features (the VAE encoder's, `metavoxel.evaluation.vae_features`) are the demo's.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("runs/demo"), help="the --out folder of `metavoxel demo`")
    parser.add_argument("--brains", type=int, default=96)
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--check", choices=["fid", "round-trip", "spread-skill"], default="fid")
    parser.add_argument("--num-samples", type=int, default=3, help="samples per subject (--check spread-skill)")
    parser.add_argument("--decoder", type=Path, help="a saved VAE folder whose decoder replaces the run VAE's")
    parser.add_argument("--yardsticks", default="", help="shipped VAEs whose encoders also serve as FID features")
    args = parser.parse_args()

    from metavoxel.data import DataSpec, read_cohort
    from metavoxel.data.splits import load_splits
    from metavoxel.evaluation import fid_mmd_3plane
    from metavoxel.evaluation.features import vae_features
    from metavoxel.runs import load_run
    from metavoxel.workflows.evaluate import records

    model = load_run(args.demo / "model")
    cohort = read_cohort(args.demo / "cohort", model.variables, model.spec.data or DataSpec())
    splits = load_splits(args.demo / "model" / "splits.json", cohort)
    if args.decoder is not None:
        swap_decoder(model.variables["image"].vae, args.decoder)
    if args.check == "round-trip":
        round_trips(model, cohort.select(splits["train"]).batch(), records(model, cohort, splits["test"], "image"), args)
        return
    if args.check == "spread-skill":
        spread_skills(model, cohort.select(splits["train"]).batch(), records(model, cohort, splits["test"], "image"),
                      args)
        return
    from metavoxel.demo import _Context, _reconstructions

    test = records(model, cohort, splits["test"], "image")
    real = test["image"].float()
    recon = _reconstructions(_Context(model, {}, test, args.demo, args.steps, 0, lambda *a: None))  # as the demo's
    networks = {"run VAE": vae_features(model.variables["image"].vae)}
    for name in filter(None, args.yardsticks.split(",")):
        from metavoxel.vae.checkpoint import load_vae
        from metavoxel.vae.pretrained import pretrained_vae

        networks[f"{name}'s encoder"] = vae_features(load_vae(pretrained_vae(name))[0])
    ratios, floors = [], {}  # a floor depends only on the network and the set of reconstructions picked
    print(f"{args.demo}: {args.brains} generated brains per seed, {args.steps} steps, {len(real)} held-out brains")
    for seed in range(args.seeds):
        free = model.sample(num_subjects=args.brains, steps=args.steps, seed=seed, batch_size=96)
        generated = free.samples["image"][:, 0].float().clamp(0, 1)
        m = min(args.brains, len(recon))
        pick = (torch.arange(m) if seed == 0 else
                torch.randperm(len(recon), generator=torch.Generator().manual_seed(seed))[:m])
        for features, network in networks.items():
            fid = fid_mmd_3plane(real, generated, network)["fid"]
            key = (features, tuple(sorted(pick.tolist())))
            if key not in floors:
                floors[key] = fid_mmd_3plane(real, recon[pick], network)["fid"]
            floor = floors[key]
            if features == "run VAE":
                ratios.append(fid / floor)
            print(f"seed {seed}, features of the {features}: generated {fid:.2f}, floor {floor:.2f}, ratio "
                  f"{fid / floor:.3f}", flush=True)
    r = np.asarray(ratios)
    print(f"ratio mean {r.mean():.3f}, SD {r.std(ddof=1) if len(r) > 1 else float('nan'):.3f} over {len(r)} seeds")


def swap_decoder(vae: torch.nn.Module, folder: Path) -> None:
    """Load the saved VAE at ``folder`` into ``vae`` after checking that its encoder is ``vae``'s, weight for weight."""
    from metavoxel.vae.checkpoint import load_vae

    other, _ = load_vae(folder)
    mine, theirs = vae.state_dict(), other.state_dict()
    encoder = [k for k in mine if k.startswith(("encoder.", "quant_conv_"))]
    if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k].to(mine[k].dtype)) for k in encoder):
        raise SystemExit(f"error: --decoder {folder}: its encoder is not the run VAE's; give a VAE whose decoder alone "
                         "was trained from the run's (train.py --first-phase robust)")
    vae.load_state_dict(theirs)
    print(f"decoder from {folder} (encoder identical to the run's)", flush=True)


def seeded_stages(model, train: dict, test: dict, args: argparse.Namespace, stage):
    """Run one stage of the demo (``stage(ctx, report)``) for seeds 0..S-1 as the demo runs it; yields each seed's
    (seed, context, report)."""
    import tempfile

    from metavoxel.demo import DemoReport, _Context

    with tempfile.TemporaryDirectory() as scratch:
        for seed in range(args.seeds):
            ctx, report = _Context(model, train, test, Path(scratch), args.steps, seed, lambda *a: None), DemoReport()
            stage(ctx, report)
            yield seed, ctx, report


def round_trips(model, train: dict, test: dict, args: argparse.Namespace) -> None:
    """The demo's round trip (`metavoxel.demo._round_trip`, its guidance and 8 brains per cell) for seeds 0..S-1."""
    from metavoxel.demo import _round_trip

    guidance = float(json.loads((args.demo / "model" / "recipe.json").read_text()).get("guidance") or 0.0)
    passed = 0
    for seed, ctx, report in seeded_stages(model, train, test, args,
                                           lambda ctx, report: _round_trip(ctx, report, guidance, 8, 3)):
        m, ok = report.metrics, report.checks[-1].met
        passed += ok
        cells = "; ".join(f"{sex} " + ", ".join(f"{m[f'round_trip_{sex}_{a}']:.1f}" for a in (45, 70, 90))
                          for sex in ctx.sexes)
        print(f"seed {seed}: {cells}; slope {m['round_trip_slope']:.3f}; in order: {ok}", flush=True)
    print(f"in order for {passed} of {args.seeds} seeds")


def spread_skills(model, train: dict, test: dict, args: argparse.Namespace) -> None:
    """The demo's age answer (`metavoxel.demo._regression`) for seeds 0..S-1: spread-skill and coverage per seed."""
    from metavoxel.demo import _regression

    ratios = []
    for seed, _ctx, report in seeded_stages(model, train, test, args,
                                            lambda ctx, report: _regression(ctx, report, args.num_samples)):
        m = report.metrics
        ratios.append(m["age_spread_skill"])
        print(f"seed {seed}: spread-skill {m['age_spread_skill']:.3f}, coverage {m['age_coverage']:.3f} "
              f"(level {m['age_coverage_level']:.3f}), MAE {m['age_mae']:.2f}", flush=True)
    r = np.asarray(ratios)
    inside = int(((r >= 0.8) & (r <= 1.25)).sum())
    print(f"spread-skill mean {r.mean():.3f}, SD {r.std(ddof=1) if len(r) > 1 else float('nan'):.3f} over {len(r)} "
          f"seeds, {args.num_samples} samples per subject; in [0.8, 1.25] for {inside} of {len(r)}")


if __name__ == "__main__":
    main()
