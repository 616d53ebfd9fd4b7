"""How a VAE's decoder takes latent errors: PSNR of decode(z + noise) against decode(z), for shipped VAEs side by side.

A latent diffusion model's samples are latents with errors; a decoder that has only seen near-exact latents may turn
small latent errors into large image errors. This adds Gaussian noise of SD ``k`` times the latent's own spread (its
SD over every element of the held-out brains' posterior means) to the posterior means of held-out phantom brains and
measures, per ``k``, the PSNR of the decoded image against the noise-free decode (intensities in [0, 1]).

    OMP_NUM_THREADS=1 python benchmarks/phantom_vae/latent_noise.py --vaes phantom-32,phantom-32-sharp --brains 32

What it cannot show: a diffusion model's errors are not white noise; it compares decoders at equal relative noise.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import held_out  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vaes", default="phantom-32,phantom-32-sharp", help="shipped VAE names, comma-separated")
    parser.add_argument("--brains", type=int, default=16, help="held-out brains per phantom")
    parser.add_argument("--levels", default="0.02,0.05,0.1,0.2", help="noise SDs, as fractions of the latent's SD")
    args = parser.parse_args()

    from metavoxel.vae.checkpoint import load_vae
    from metavoxel.vae.pretrained import pretrained_vae

    volumes, _meta = held_out(args.brains)
    images = torch.stack([volumes[i] for i in range(len(volumes))])  # (N, 1, 32, 32, 32) in [0, 1]
    levels = [float(k) for k in args.levels.split(",")]
    generator = torch.Generator().manual_seed(0)
    noise = None
    print(f"{len(images)} held-out brains; PSNR dB of decode(z + k·SD(z)·eps) against decode(z), and of decode(z) "
          "against the brain")
    for name in args.vaes.split(","):
        vae, _ = load_vae(pretrained_vae(name))
        vae.eval()
        with torch.no_grad():
            z = torch.cat([vae.encode(chunk)[0] for chunk in images.split(8)])  # posterior means
            clean = torch.cat([vae.decode(chunk) for chunk in z.split(8)]).clamp(0, 1)
            if noise is None or noise.shape != z.shape:
                noise = torch.randn(z.shape, generator=generator)
            spread = float(z.std())
            row = [f"{name}: latent SD {spread:.3f}; decode(z) vs brain {psnr(clean, images):.2f}"]
            for k in levels:
                noisy = torch.cat([vae.decode(chunk) for chunk in (z + k * spread * noise).split(8)]).clamp(0, 1)
                row.append(f"k={k:g}: {psnr(noisy, clean):.2f}")
        print("; ".join(row), flush=True)


def psnr(x: torch.Tensor, y: torch.Tensor) -> float:
    """Mean over images of their PSNR (MONAI ``PSNRMetric``, intensities in [0, 1]), as `evaluate.py` measures it."""
    from monai.metrics import PSNRMetric

    return float(PSNRMetric(max_val=1.0)(x, y).double().mean())


if __name__ == "__main__":
    main()
