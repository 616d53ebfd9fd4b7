"""Copy the phantom VAE trained by ``train.py`` beside the code, as metavoxel ships it, with its model card.

    python benchmarks/phantom_vae/ship.py runs/phantom-vae --evaluation runs/phantom-vae/evaluation.json

Takes the newest finished phase (``robust``, else ``finish``, else ``recon``) or, with ``--snapshot NAME``, a training snapshot;
writes ``metavoxel/pretrained/phantom-32/`` (``vae.safetensors`` + ``vae.json`` with the training's provenance:
the phantom seeds it trained and was judged on, the command, the steps and hours) and its ``MODEL_CARD.md``
from the training record and the figures of ``evaluate.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import HELD_OUT_SEEDS, PERCENTILES, PHANTOMS, SIZE, TRAIN_SEEDS, VOXEL_MM  # noqa: E402
from train import ARCHITECTURE, PHASES  # noqa: E402

from metavoxel.io.atomic import write_text  # noqa: E402
from metavoxel.vae.pretrained import PRETRAINED_ROOT  # noqa: E402

NAME = "phantom-32"
#: What the default VAE is for (the model card's first paragraph).
PURPOSE = "The VAE of `metavoxel demo` and the small paper benchmark."


def _source(out: Path, snapshot: str | None):
    """(vae, vae.json of the phase or None, description) of what is shipped."""
    from metavoxel.vae.checkpoint import load_vae

    if snapshot is not None:
        from evaluate import load_snapshot

        return load_snapshot(out / "snapshots" / f"{snapshot}.safetensors"), None, f"snapshot {snapshot}"  # its own architecture
    for phase in reversed(PHASES):
        if (out / phase / "vae" / "vae.json").is_file():
            vae, meta = load_vae(out / phase / "vae")
            return vae, meta, f"phase {phase}"
    raise SystemExit(f"error: {out} holds no finished phase; give --snapshot or train further")


def _state_seconds(out: Path, phase: str, step: int) -> float:
    """Training seconds of a phase's first ``step`` steps, from its resumable state's seconds at its own step
    (pro rata where the state is further on; 0 where the phase has no state)."""
    pointer = out / phase / "state" / "state.json"
    if not pointer.is_file():
        return 0.0
    current = json.loads(pointer.read_text())
    seconds = float(json.loads((out / phase / "state" / current["dir"] / "state.json").read_text()).get("seconds") or 0)
    return seconds * min(1.0, step / max(1, int(current["step"])))


def _card(record: dict, provenance: dict, evaluation: dict | None, name: str = NAME, purpose: str = PURPOSE,
          ship_command: str = "python benchmarks/phantom_vae/ship.py OUT") -> str:
    architecture = record.get("architecture", ARCHITECTURE)
    factor = 2 ** (len(architecture["channels"]) - 1)
    lines = [f"# {name}: a phantom VAE shipped with metavoxel", "",
             "A KL-VAE (MONAI `AutoencoderKL`) of the built-in phantom's skull-stripped T1w-like brains at 32³ voxels "
             f"of {VOXEL_MM} mm (RAS, intensities scaled by the 0.5 and 99.5 percentiles to [0, 1]), x{factor} to a "
             f"latent of {architecture['latent_channels']} channels at {SIZE // factor}³. {purpose} Trained "
             "on both phantoms (the demo's: age_effect 3, sex_effect 2; the default: both 1). Not for real scans: on "
             "a real brain it reconstructs a phantom-like image.", "",
             "## How it was trained", "",
             f"- Command: `{record['command']}` (resumable: the same command continues it), then "
             f"`{ship_command}`"
             + (" (the last stage: the weights it continued are in git history, their stages in "
                "benchmarks/RESULTS.md)." if provenance.get("continued") else "."),
             f"- Shipped: {provenance['shipped']}; {provenance['steps']} optimiser steps of "
             f"{record['phases']['recon']['batch_size']} fresh brains each, {provenance['hours']:.1f} hours on "
             f"{record['device']} ({record['threads']} thread(s), bf16 autocast where the CPU has it), over "
             f"{provenance['sessions']} session(s)"
             + (f", continuing (`--init-from`) the {provenance['continued']['steps']} steps shipped before, whose "
                "optimiser state did not survive a new machine." if provenance.get("continued") else "."),
             f"- Brains: phantom seeds {TRAIN_SEEDS} (training), {HELD_OUT_SEEDS} (held out); the demo and the "
             "benchmarks draw seed 0, so the VAE never saw their brains (checked when they load it).",
             f"- Losses: L1 + KL (weight {record['phases']['recon']['kl_weight']:g}, the L1 a mean over voxels) at a "
             "constant learning rate"
             + (" (this snapshot is from that phase: the adversarial finish was trained but not shipped, "
                "benchmarks/RESULTS.md says why)" if provenance["shipped"].startswith("snapshot recon") else
                ", then the least-squares patch adversarial term joins as the learning rate decays")
             + " (benchmarks/phantom_vae/train.py). No perceptual term: no pretrained 3D feature network can be "
             "loaded offline.", ""]
    if evaluation is not None:
        lines += ["## What it measures (held-out brains, `benchmarks/phantom_vae/evaluate.py`)", "",
                  "| phantom | PSNR dB | SSIM | age MAE raw -> refitted on reconstructions | sex accuracy raw -> refitted |",
                  "| --- | ---: | ---: | --- | --- |"]
        row = next(v for k, v in evaluation["rows"].items() if k.startswith("shipped"))
        for phantom, r in row.items():
            age, sex = r["probe"]["age"], r["probe"]["sex"]
            lines.append(f"| {phantom} | {r['psnr']:.2f} | {r['ssim']:.3f} | {age['mae_raw']:.2f} -> "
                         f"{age['mae_refit']:.2f} | {sex['accuracy_raw']:.2f} -> {sex['accuracy_refit']:.2f} |")
        lines += ["", f"{evaluation['judges']} held-out brains per phantom; the probe fitted on "
                  f"{evaluation['probe_fit']} more. Command: `{evaluation['command']}`. benchmarks/RESULTS.md has "
                  "the comparison with the demo's earlier recipe and a half-voxel blur.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="The training folder of train.py.")
    parser.add_argument("--snapshot", help="Ship this snapshot (e.g. recon-004000) instead of a finished phase.")
    parser.add_argument("--evaluation", type=Path, help="evaluate.py's JSON of the VAE being shipped.")
    parser.add_argument("--to", type=Path, default=PRETRAINED_ROOT / NAME,
                        help="The folder to write; its name is the VAE's name (`metavoxel.vae.pretrained.pretrained_vae`).")
    parser.add_argument("--purpose", default=PURPOSE,
                        help="What the VAE is for, one sentence of its model card.")
    args = parser.parse_args()

    from metavoxel.vae import save_vae
    from metavoxel.vae.report import VAEReport

    record = json.loads((args.out / "train.json").read_text())
    vae, meta, shipped = _source(args.out, args.snapshot)
    history = []
    for phase in PHASES:
        path = args.out / phase / "history.jsonl"
        if path.is_file():
            history += [json.loads(line) for line in path.read_text().splitlines()]
    steps = sum(json.loads((args.out / p / "vae" / "vae.json").read_text())["metrics"]["steps"]
                for p in PHASES if (args.out / p / "vae" / "vae.json").is_file())
    seconds = sum((json.loads((args.out / p / "vae" / "vae.json").read_text())["metrics"].get("seconds") or 0)
                  for p in PHASES if (args.out / p / "vae" / "vae.json").is_file())
    if args.snapshot is not None:
        phase, step = args.snapshot.rsplit("-", 1)
        steps = int(step) + (record["phases"]["recon"]["steps"] if phase == "finish" else 0)
        seconds = _state_seconds(args.out, phase, int(step)) + (
            _state_seconds(args.out, "recon", record["phases"]["recon"]["steps"]) if phase == "finish" else 0)
    continued = record.get("init_from")
    if continued:
        steps += continued["steps"]
        seconds += continued["hours"] * 3600
    scale = meta["scale_factor"] if meta else 1.0
    if meta is None:  # a snapshot: measure the scale factor as train_vae does, on 512 training brains
        from data import PhantomVolumes, phantom_configs

        from metavoxel.vae.evaluation import latent_scale_factor
        from metavoxel.vae.volumes import VolumeSet

        train = PhantomVolumes(phantom_configs(TRAIN_SEEDS), 512)
        scale, _std = latent_scale_factor(vae, VolumeSet(train, "training brains"), batch_size=16, device="cpu")
    evaluation = json.loads(args.evaluation.read_text()) if args.evaluation else None
    provenance = {"source": "benchmarks/phantom_vae/train.py", "command": record["command"], "shipped": shipped,
                  "steps": steps, "hours": seconds / 3600, "phantoms": PHANTOMS, "continued": continued,
                  "sessions": len(record.get("sessions", [])) + (continued["sessions"] if continued else 0),
                  "phantom_seeds": {"train": TRAIN_SEEDS, "held_out": HELD_OUT_SEEDS},
                  "grid": {"shape": [SIZE] * 3, "spacing_mm": [VOXEL_MM] * 3, "orientation": "RAS",
                           "percentiles": list(PERCENTILES)}}
    report = VAEReport(steps=steps, final={}, val=(meta or {}).get("metrics", {}).get("val", {}), scale_factor=scale,
                       latent_std=1.0 / scale, perceptual=False, seconds=seconds)
    expects = {"shape": [SIZE] * 3, "spacing": [VOXEL_MM] * 3, "orientation": "RAS",
               "intensity": {"method": "percentiles", "percentiles": list(PERCENTILES), "range": [0.0, 1.0],
                             "clip": True},
               "sources": {"shape": "benchmarks/phantom_vae/data.py", "spacing": "benchmarks/phantom_vae/data.py",
                           "orientation": "benchmarks/phantom_vae/data.py",
                           "intensity": "benchmarks/phantom_vae/data.py: scaled()"}}
    save_vae(args.to, vae, record.get("architecture", ARCHITECTURE), report, provenance=provenance, expects=expects)
    shipped_by = f"python benchmarks/phantom_vae/ship.py {args.out}" + (
        f" --to {args.to}" if args.to.name != NAME else "")
    write_text(args.to / "MODEL_CARD.md", _card(record, provenance, evaluation, args.to.name, args.purpose, shipped_by))
    print(f"shipped {shipped} to {args.to} (scale factor {scale:.4f})")


if __name__ == "__main__":
    main()
