"""Where the age probe loses the signal: the refitted probe per feature view, for the VAE, a blur, a clean render.

The shipped VAE's refitted age probe (`metavoxel.vae.probe`, scored by `evaluate.py`) reads age from reconstructions
at about twice the raw MAE while sex is kept. This splits the probe into its views (``histogram``: the intensity
distribution; ``pooled``: the image on a 6³ grid; ``both``) and scores, each refitted on its own images, the raw
brains, the same brains rendered without Rician noise, the VAE's reconstructions (of the noisy and of the
noise-free brains) and a half-voxel Gaussian blur. Brains: subjects 0..N-1 of the held-out seed of the phantom
(``data.HELD_OUT_SEEDS``), the first ``--fit`` to fit, the rest to score (not `evaluate.py`'s exact split).

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/probe_views.py --phantom default --vae phantom-32-sharp

``--bins`` adds, per bin of the probe's intensity histogram, each kind of image's share of voxels and that share's
correlation with age: which intensities carry the age signal, and how much of it each kind of image keeps.

What it can show: which view, and so which kind of image content, a reconstruction loses the signal from. What it
cannot: a linear probe is a lower bound on the signal an image carries (`metavoxel.vae.probe`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import HELD_OUT_SEEDS, PHANTOMS, SIZE, VOXEL_MM, scaled  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phantom", choices=sorted(PHANTOMS), default="default")
    parser.add_argument("--vae", default="phantom-32-sharp", help="a shipped VAE's name")
    parser.add_argument("--fit", type=int, default=300, help="brains the probe is fitted on")
    parser.add_argument("--test", type=int, default=150, help="brains it is scored on")
    parser.add_argument("--bins", action="store_true",
                        help="also print, per histogram bin, each kind of image's share of voxels and its r with age")
    args = parser.parse_args()

    from monai.transforms import GaussianSmooth

    from metavoxel.vae.checkpoint import load_vae
    from metavoxel.vae.pretrained import pretrained_vae
    from metavoxel.vae.probe import FEATURE_VIEWS, signal_probe

    noisy, age, sex = brains(args.phantom, args.fit + args.test, noise=None)
    clean, _, _ = brains(args.phantom, args.fit + args.test, noise=0.0)
    vae, _ = load_vae(pretrained_vae(args.vae))
    vae.eval()
    cases = {"raw brains": noisy, "rendered without noise": clean,
             f"{args.vae} reconstructions": reconstruct(vae, noisy),
             f"{args.vae} reconstructions of the noise-free brains": reconstruct(vae, clean),
             "half-voxel blur": torch.stack([GaussianSmooth(sigma=0.5)(v) for v in noisy])}
    fit, test = slice(0, args.fit), slice(args.fit, None)
    values = {"age": age, "sex": sex}
    print(f"{args.phantom} phantom: probe fitted on {args.fit} brains, scored on {args.test}; age MAE (years) and sex "
          "accuracy of the probe refitted on each kind of image")
    for view in FEATURE_VIEWS:
        for name, images in cases.items():
            result = signal_probe(noisy[fit], {k: v[fit] for k, v in values.items()}, noisy[test], images[test],
                                  {k: v[test] for k, v in values.items()}, categorical=["sex"], views=[view],
                                  train_recon=images[fit])
            a, s = result["age"], result["sex"]
            print(f"{view:9s} {name:55s} age {a.refit:5.2f} ({a.refit / a.raw:.2f}x raw {a.raw:.2f}; training mean "
                  f"{a.baseline:.2f}), sex {s.refit:.3f} (raw {s.raw:.3f})", flush=True)
    if args.bins:
        bin_table(cases, age)


def bin_table(cases: dict[str, torch.Tensor], age: list) -> None:
    """Per bin of the probe's intensity histogram: each kind of image's mean share of voxels (per mille) and the
    Pearson r of that share with age over all brains: which intensities carry age, and which a reconstruction keeps."""
    from metavoxel.vae.probe import intensity_histogram

    years = torch.tensor(age, dtype=torch.float64)
    shares = {name: intensity_histogram(images) for name, images in cases.items()}  # (N, 32) each
    names = list(cases)
    print("histogram bin (intensity range): share per mille | r with age, per kind: " + "; ".join(names))
    bins = next(iter(shares.values())).shape[1]
    for b in range(bins):
        share = " ".join(f"{shares[n][:, b].mean().item() * 1000:7.2f}" for n in names)
        r = " ".join(f"{torch.corrcoef(torch.stack([shares[n][:, b], years]))[0, 1].item():+.2f}" for n in names)
        print(f"{b:2d} [{b / bins:.3f}, {(b + 1) / bins:.3f})  {share} | {r}")


def brains(phantom: str, count: int, noise: float | None) -> tuple[torch.Tensor, list, list]:
    """(count, 1, 32, 32, 32) held-out brains of ``phantom`` in [0, 1], their ages and sexes; ``noise`` None keeps
    the phantom's Rician noise, 0 renders without it."""
    from metavoxel.phantom import PhantomConfig
    from metavoxel.phantom.cohort import phantom_subject

    config = PhantomConfig(subjects=count, size=SIZE, fov_mm=SIZE * VOXEL_MM, seed=HELD_OUT_SEEDS[phantom],
                           **PHANTOMS[phantom], **({} if noise is None else {"noise": noise}))
    subjects = [phantom_subject(config, k) for k in range(count)]
    return torch.stack([scaled(s.image) for s in subjects]), [s.age for s in subjects], [s.sex for s in subjects]


def reconstruct(vae: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """decode(mu(x)) of every image, clamped to [0, 1]."""
    with torch.no_grad():
        return torch.cat([vae.decode(vae.encode(chunk)[0]) for chunk in images.split(16)]).clamp(0, 1)


if __name__ == "__main__":
    main()
