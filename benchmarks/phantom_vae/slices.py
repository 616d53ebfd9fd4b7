"""A picture of what a phantom-VAE snapshot keeps: the mid slices of real brains beside their reconstructions.

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/slices.py runs/vae-limit/overfit8/snapshots/recon-000600.safetensors \\
        --train-subjects 4 --held-out 4 --out runs/vae-limit/overfit8-slices.png

Rows: the first ``--train-subjects`` training brains of `train.py` (the brains an overfitting run with
``--train-subjects`` saw every epoch; both phantoms alternate), then ``--held-out`` held-out brains (seeds
`data.HELD_OUT_SEEDS`). Columns: the axial, coronal and sagittal mid slices of the real brain, of its
reconstruction (posterior mean decoded) and their absolute difference (0 to 0.25), each row titled with its PSNR.
The snapshot is rebuilt with the architecture its training recorded (``train.json`` beside its folder).
Thin CSF lines (the sulci: sub-voxel at 5.5 mm, seen as darkened cortex) are what to look for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import held_out  # noqa: E402
from evaluate import load_snapshot, training_brains  # noqa: E402


def mid_slices(volume: torch.Tensor) -> list[torch.Tensor]:
    """(X, Y, Z) -> its three mid slices (axial, coronal, sagittal), each 2D."""
    x, y, z = (s // 2 for s in volume.shape)
    return [volume[:, :, z], volume[:, y, :], volume[x, :, :]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("snapshot", type=Path, help="A snapshot of train.py (OUT/snapshots/<phase>-<step>.safetensors).")
    parser.add_argument("--train-subjects", type=int, default=4, help="Training brains shown (the first ones).")
    parser.add_argument("--held-out", type=int, default=4, help="Held-out brains shown.")
    parser.add_argument("--out", type=Path, required=True, help="The PNG to write.")
    args = parser.parse_args()
    if not args.snapshot.is_file():
        raise SystemExit(f"error: {args.snapshot}: no such snapshot; name a file of OUT/snapshots written by train.py")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from metavoxel.io.atomic import write_atomic

    torch.set_num_threads(1)
    vae = load_snapshot(args.snapshot)
    judged, _ = held_out(max(1, (args.held_out + 1) // 2))
    rows = [("train", x) for x in training_brains(args.train_subjects)] if args.train_subjects else []
    rows += [("held-out", judged[i]) for i in range(args.held_out)]
    fig, axes = plt.subplots(len(rows), 9, figsize=(13.5, 1.6 * len(rows) + 0.4), squeeze=False)
    for r, (kind, x) in enumerate(rows):
        with torch.no_grad():
            x_hat = vae.decode(vae.encode(x[None])[0])[0].clamp(0, 1)
        psnr = -10 * torch.log10(((x_hat - x) ** 2).mean()).item()
        real, recon = mid_slices(x[0]), mid_slices(x_hat[0])
        for c in range(3):
            axes[r, c].imshow(real[c].T, cmap="gray", vmin=0, vmax=1, origin="lower")
            axes[r, 3 + c].imshow(recon[c].T, cmap="gray", vmin=0, vmax=1, origin="lower")
            axes[r, 6 + c].imshow((recon[c] - real[c]).abs().T, cmap="magma", vmin=0, vmax=0.25, origin="lower")
        axes[r, 0].set_ylabel(f"{kind}\n{psnr:.1f} dB", fontsize=8)
    for c, title in enumerate(["real"] * 3 + ["reconstructed"] * 3 + ["|difference|"] * 3):
        axes[0, c].set_title(title, fontsize=8)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{args.snapshot}", fontsize=8)
    fig.tight_layout()
    write_atomic(args.out, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
