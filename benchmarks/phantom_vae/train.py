"""Train the phantom VAEs that metavoxel ships (metavoxel/pretrained/), resumably, in two or three phases.

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/train.py --out runs/phantom-vae --lr 2e-3

The default VAE, ``phantom-32-sharp``, took three runs of this command, each continuing the last one's weights
with ``--init-from`` (their commands: benchmarks/RESULTS.md, "The shipped phantom VAE").

Run the same command again to continue: each phase keeps its training state (`metavoxel.vae.state`) under
``OUT/<phase>/state`` every ``--checkpoint-every`` steps, and a finished phase is not trained again, so the
command can be stopped at any moment and re-run in a later session (with the same options; a change is
refused, but for the phases' lengths: ``--recon-steps`` may end the first phase sooner). ``python
benchmarks/phantom_vae/ship.py OUT --to metavoxel/pretrained/NAME`` then copies the result beside the code
(without ``--to``: to ``phantom-32``).

1. ``recon``: L1 + KL at a constant learning rate after a linear warm-up: the autoencoder learns to reconstruct.
   The KL weight is 1e-9, not the 1e-6 of MONAI's tutorials and of `metavoxel train-vae`: with the L1 term a
   mean over voxels, 1e-6 per latent element holds the posterior noise near sigma 0.8-0.9, above the latents'
   own spread (0.4-0.5), from the network's start (sigma 1) and from a start at sigma 0.007 alike (the
   optimiser drives the log-variance up at its learning rate), and the curve flattened near 22 dB
   (benchmarks/RESULTS.md). Latent diffusion's own autoencoders weigh their 1e-6 against a reconstruction
   summed over pixels (Rombach et al. 2022), so per pixel far more lightly than a mean does. The posterior
   log-variance also starts at -10 (``initial_log_var``).
2. ``finish``: from ``recon``'s weights, the least-squares patch adversarial loss joins (weight
   ``--adv-weight``) and the learning rate decays to 0 on a cosine (MAISI's balance of the terms, Guo et al.
   2024, without its perceptual term: no pretrained 3D feature network can be loaded here).
3. ``robust`` (only with ``--robust-steps``): the encoder frozen (the latent space, and any diffusion model trained
   in it, unchanged), the decoder alone trains on latents with noise of up to ``--latent-noise`` times their SD
   (`VAETrainConfig.latent_noise`), adversarial term on, learning rate ``--lr``/4 on a cosine. Measured on the
   demo's samples in the sharp latent, it did not bring generated brains closer to real ones (benchmarks/RESULTS.md),
   so the shipped VAE has no such phase; it stays for experiments. ``--first-phase robust --init-from FOLDER``
   runs it on a saved VAE.

Data: a fresh phantom brain for every image of every batch (`data.PhantomVolumes`: both phantoms alternate,
subjects of seeds `data.TRAIN_SEEDS` that no demo or benchmark cohort uses); validation on held-out brains
of `data.HELD_OUT_SEEDS`. bf16 autocast on a CPU with bf16 instructions (1.8x faster here), fp32 elsewhere.
Every ``--snapshot-every`` steps the weights are kept under ``OUT/snapshots`` for the learning curves of
``benchmarks/phantom_vae/evaluate.py``.

Architecture: ``--channels`` and ``--latent-channels`` change the autoencoder (default: the shipped one,
`ARCHITECTURE`); it is recorded in ``OUT/train.json`` with the other settings, so a resumed training with another
architecture is refused. ``--stop-after recon`` ends the command after the first phase (a learning-curve
experiment; the same command without it continues into ``finish`` later).

Overfitting test: ``--train-subjects N`` trains on the first N training brains only (both phantoms alternate, the
same N every epoch) instead of a fresh brain per image, and at every validation also measures PSNR/SSIM on those N
brains (printed as ``fit``, kept in ``OUT/<phase>/fit.jsonl``). Training PSNR against steps says whether the
network can fit brains it sees every step at all: if it cannot pass the target there, the architecture (its
downsampling, its width) is the limit, not the training's steps or data (benchmarks/RESULTS.md).

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/train.py --out runs/vae-limit/overfit8 --lr 2e-3 \
        --recon-steps 1000 --val-every 100 --snapshot-every 250 --stop-after recon --train-subjects 8
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import HELD_OUT_SEEDS, TRAIN_SEEDS, PhantomVolumes, check_matches_preprocessing, held_out, phantom_configs  # noqa: E402

from metavoxel.io.atomic import write_json  # noqa: E402
from metavoxel.vae import VAETrainConfig, save_vae, train_vae  # noqa: E402
from metavoxel.vae.architecture import VAESpec, build_vae  # noqa: E402

#: The shipped architecture: x4 (32³ -> 8³), 8 latent channels (the demo's and the small benchmark's latent).
ARCHITECTURE = {"channels": [16, 32, 64], "latent_channels": 8, "num_res_blocks": 2, "norm_num_groups": 8}
#: Virtual subjects per phantom pass of the batch order: far more than the training ever draws, so every image
#: it sees is a brain it has not seen before.
VIRTUAL_SUBJECTS = 100_000
#: The phases, in the order they train (the module docstring says what each does).
PHASES = ("recon", "finish", "robust")


def phase_configs(args: argparse.Namespace, precision: str) -> dict[str, VAETrainConfig]:
    common = dict(batch_size=args.batch_size, kl_weight=args.kl_weight, val_every=args.val_every,
                  checkpoint_every=args.checkpoint_every, scale_images=512, precision=precision, disc_layers=2,
                  disc_channels=32, seed=args.seed)
    return {
        # adv_start is moot at adv_weight 0; it stays 16000 (its first value) so that a recon shortened with
        # --recon-steps resumes from its state.
        "recon": VAETrainConfig(steps=args.recon_steps, lr=args.lr, warmup_steps=500, adv_weight=0.0,
                                adv_start=16_000, initial_log_var=-10.0, **common),
        "finish": VAETrainConfig(steps=args.finish_steps, lr=args.lr / 2, lr_schedule="cosine", adv_start=0,
                                 adv_weight=args.adv_weight, **common),
        "robust": VAETrainConfig(steps=max(args.robust_steps, 1), lr=args.lr / 4, lr_schedule="cosine", adv_start=0,
                                 adv_weight=args.adv_weight, latent_noise=args.latent_noise, train_encoder=False,
                                 **common),
    }


def _settings(phases: dict) -> dict:
    """The phases' configs but for what a resumed training may change (its length and bookkeeping)."""
    from metavoxel.vae.state import RESUMABLE_CHANGES

    defaults = VAETrainConfig().model_dump(mode="json")  # a record written before a field existed holds its default
    return {name: {k: v for k, v in {**defaults, **c}.items() if k not in RESUMABLE_CHANGES}
            for name, c in phases.items()}


def architecture(args: argparse.Namespace) -> dict:
    """The autoencoder this command trains: `ARCHITECTURE` with the channels of ``--channels`` and
    ``--latent-channels``; exits with one line when MONAI's ``AutoencoderKL`` cannot take them."""
    from pydantic import ValidationError

    chosen = {**ARCHITECTURE, "channels": list(args.channels), "latent_channels": args.latent_channels}
    try:
        VAESpec(**chosen)
    except ValidationError as err:
        reason = err.errors()[0]["msg"].removeprefix("Value error, ")
        raise SystemExit(f"error: --channels {','.join(map(str, args.channels))} --latent-channels "
                         f"{args.latent_channels}: {reason}; choose other channel counts") from None
    return chosen


def fit_metrics(vae: torch.nn.Module, images: torch.Tensor, precision: str, device: str) -> dict[str, float]:
    """L1, PSNR and SSIM of ``vae`` on its own training images (N, 1, 32, 32, 32), as the validation measures them
    (posterior mean decoded, the training's precision); leaves the network in eval mode (the next step sets train)."""
    import contextlib

    from metavoxel.vae.evaluation import reconstruction_metrics
    from metavoxel.vae.volumes import VolumeSet

    autocast = (lambda: torch.autocast(torch.device(device).type, dtype=torch.bfloat16)) if precision == "bf16" \
        else contextlib.nullcontext
    return reconstruction_metrics(vae, VolumeSet(images, "train_subjects"), batch_size=4, device=device,
                                  autocast=autocast)


def _channel_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 16,32,64, got {text!r}") from None
    if len(values) < 2 or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected at least two positive channel counts (one per level), got {text!r}")
    return values


def _init_record(folder: Path, chosen: dict) -> dict:
    """What a warm start continues: the saved VAE's folder and, from its provenance, the steps and hours behind it."""
    meta_path = folder / "vae.json"
    if not meta_path.is_file():
        raise SystemExit(f"error: --init-from {folder}: no vae.json there; name a saved VAE folder")
    meta = json.loads(meta_path.read_text())
    provenance = meta.get("provenance") or {}
    theirs = meta.get("architecture", {})
    if any(theirs.get(k) != v for k, v in chosen.items()):
        raise SystemExit(f"error: --init-from {folder}: its architecture is not this training's {chosen}; give "
                         "--channels/--latent-channels to match it or start afresh")
    return {"path": str(folder), "steps": int(provenance.get("steps", 0)), "hours": float(provenance.get("hours", 0.0)),
            "sessions": int(provenance.get("sessions", 0))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/phantom-vae"))
    parser.add_argument("--recon-steps", type=int, default=16_000)
    parser.add_argument("--finish-steps", type=int, default=4_000)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--adv-weight", type=float, default=0.005)
    parser.add_argument("--kl-weight", type=float, default=1e-9)
    parser.add_argument("--robust-steps", type=int, default=0,
                        help="Steps of the third phase, robust (0: none): the decoder alone, on latents with noise "
                             "of up to --latent-noise times their SD, the encoder frozen.")
    parser.add_argument("--latent-noise", type=float, default=0.3,
                        help="The robust phase's largest latent noise, as a fraction of the latent's SD.")
    parser.add_argument("--first-phase", choices=PHASES, default="recon",
                        help="The first phase this command trains; with --init-from, e.g. `--first-phase robust` "
                             "makes a shipped VAE's decoder robust without retraining it.")
    parser.add_argument("--val-every", type=int, default=500)
    parser.add_argument("--checkpoint-every", type=int, default=250)
    parser.add_argument("--snapshot-every", type=int, default=2000)
    parser.add_argument("--val-subjects", type=int, default=16, help="Held-out brains per phantom for validation.")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--channels", type=_channel_list, default=ARCHITECTURE["channels"],
                        help="Feature channels per level, comma-separated (one x2 downsampling between levels); "
                             "default: the shipped 16,32,64.")
    parser.add_argument("--latent-channels", type=int, default=ARCHITECTURE["latent_channels"],
                        help="Channels of the latent (8 shipped: 8 x 8³ numbers for a 32³ image).")
    parser.add_argument("--stop-after", choices=PHASES, default="robust",
                        help="The last phase this command trains (recon: a learning curve without the finish).")
    parser.add_argument("--train-subjects", type=int,
                        help="Train on the first N training brains only (N/2 per phantom, the same every epoch) and "
                             "measure the PSNR on them at every validation: the overfitting test (default: a fresh "
                             "brain for every image).")
    parser.add_argument("--init-from", type=Path,
                        help="Start from the weights of a saved VAE folder (e.g. metavoxel/pretrained/phantom-32) "
                             "instead of a fresh network: how a training whose state did not survive (a new machine) "
                             "continues from what was shipped. Read only when --out holds no training yet.")
    args = parser.parse_args()
    chosen = architecture(args)
    if args.train_subjects is not None and args.train_subjects < 1:
        raise SystemExit(f"error: --train-subjects {args.train_subjects}: expected at least 1 brain; give a positive "
                         "count or leave it out to train on a fresh brain for every image")

    precision = args.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_available() or torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    spec = VAESpec(**chosen)
    configs = phase_configs(args, precision)
    if args.robust_steps < 1:
        configs.pop("robust")
    first, last = PHASES.index(args.first_phase), PHASES.index(args.stop_after)
    if first > last or args.first_phase not in configs:
        raise SystemExit(f"error: --first-phase {args.first_phase} --stop-after {args.stop_after} "
                         f"--robust-steps {args.robust_steps}: no phase to train; choose phases in the order "
                         f"{', '.join(PHASES)} (robust needs --robust-steps)")
    configs = {name: c for name, c in configs.items() if first <= PHASES.index(name) <= last}
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    record = {"command": " ".join(sys.argv), "architecture": chosen, "train_seeds": TRAIN_SEEDS,
              "held_out_seeds": HELD_OUT_SEEDS, "device": device, "threads": torch.get_num_threads(),
              "phases": {name: c.model_dump(mode="json") for name, c in configs.items()},
              "train_subjects": args.train_subjects}
    previous = out / "train.json"
    if previous.is_file():
        saved = json.loads(previous.read_text())
        if saved["architecture"] != chosen:
            raise SystemExit(f"error: {out} holds a training of another architecture ({saved['architecture']}, not "
                             f"{chosen}); re-run with the options of {saved['command']!r} or choose another --out")
        both = saved["phases"].keys() & record["phases"].keys()  # a later phase may join a finished training
        if _settings({n: saved["phases"][n] for n in both}) != _settings({n: record["phases"][n] for n in both}):
            raise SystemExit(f"error: {out} holds a training with other settings; re-run with the options of "
                             f"{saved['command']!r} or choose another --out")
        if saved.get("train_subjects") != args.train_subjects:
            raise SystemExit(f"error: {out} holds a training on other data (--train-subjects "
                             f"{saved.get('train_subjects')}, not {args.train_subjects}); re-run with the options of "
                             f"{saved['command']!r} or choose another --out")
        record["phases"] = {**saved["phases"], **record["phases"]}
        record["sessions"] = saved.get("sessions", [])
        if "init_from" in saved:
            record["init_from"] = saved["init_from"]
    elif args.init_from is not None:
        record["init_from"] = _init_record(args.init_from, chosen)
    record.setdefault("sessions", []).append({"started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(previous, record)

    train = PhantomVolumes(phantom_configs(TRAIN_SEEDS, VIRTUAL_SUBJECTS), 2 * VIRTUAL_SUBJECTS)
    check_matches_preprocessing(train)
    fixed = None
    if args.train_subjects is not None:
        fixed = torch.stack([train[i] for i in range(args.train_subjects)])  # (N, 1, 32, 32, 32), seen every epoch
        train = fixed
    val, _meta = held_out(args.val_subjects)
    val = torch.stack([val[i] for i in range(len(val))])
    torch.manual_seed(args.seed)
    vae = build_vae(3, 1, spec)
    if "init_from" in record:
        from metavoxel.vae.checkpoint import load_vae

        vae, _ = load_vae(record["init_from"]["path"])
        vae.requires_grad_(True)
        print(f"starting from {record['init_from']['path']} ({record['init_from']['steps']} steps before)", flush=True)
    for name, config in configs.items():
        folder = out / name
        if (folder / "vae" / "vae.json").is_file():
            from metavoxel.vae.checkpoint import load_vae

            vae, _ = load_vae(folder / "vae")
            vae.requires_grad_(True)
            print(f"{name}: done before, weights loaded", flush=True)
            continue
        resume = (folder / "state" / "state.json").is_file()
        snapshots = out / "snapshots"
        snapshots.mkdir(exist_ok=True)

        def progress(step: int, steps: int, row: dict, name: str = name) -> None:
            if step % args.snapshot_every == 0 or step == steps:
                from safetensors.torch import save_file

                save_file({k: v.detach().float().contiguous() for k, v in vae.state_dict().items()},
                          str(snapshots / f"{name}-{step:06d}.safetensors"))
            extra = ""
            if "val_psnr" in row and fixed is not None:
                fit = fit_metrics(vae, fixed, precision, device)
                (out / name).mkdir(exist_ok=True)
                with (out / name / "fit.jsonl").open("a") as fh:
                    fh.write(json.dumps({"step": step, **fit}) + "\n")
                extra = f" fit PSNR {fit['psnr']:.2f} SSIM {fit['ssim']:.3f}"
            if "val_psnr" in row or step % 50 == 0:
                extra += f" val PSNR {row['val_psnr']:.2f} SSIM {row['val_ssim']:.3f}" if "val_psnr" in row else ""
                print(f"{name} {step}/{steps} l1 {row['l1']:.4f} adv_g {row['adv_g']:.3f}{extra}", flush=True)

        print(f"{name}: {'resuming' if resume else 'starting'} ({config.steps} steps, {precision})", flush=True)
        report = train_vae(vae, train, val, config, progress=progress, device=device, state_dir=folder / "state",
                           resume=resume)
        save_vae(folder / "vae", vae, spec, report)
        with (folder / "history.jsonl").open("w") as fh:
            fh.writelines(json.dumps(row) + "\n" for row in report.history)
        vae.requires_grad_(True)
        print(f"{name}: done in {report.seconds / 3600:.2f} h, val PSNR {report.val_psnr:.2f} dB", flush=True)


if __name__ == "__main__":
    main()
