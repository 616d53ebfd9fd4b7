"""The Gaussian diffusion process (Ho et al. 2020) with DDIM sampling (Song et al. 2021).

Time follows `metavoxel.processes.schedules`: integer steps ``t`` in ``0..T`` with ``abar[0] = 1``.
The network predicts the noise ``eps`` (Ho et al. 2020; the paper's) or, for a variable declared so, the
velocity ``v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0`` (Salimans & Ho 2022, "Progressive distillation", sec. 4);
`PREDICTIONS` names them, `target` gives the loss's target and `eps_from` / `x0_from` read either output.
Every function takes per-sample steps ``t`` of shape (B,).
"""

from __future__ import annotations

import torch

from metavoxel import kernels
from metavoxel.errors import SpecError

__all__ = ["GaussianProcess", "PREDICTIONS"]

#: What a Gaussian variable's network output is. ``eps``: the noise; its x0 estimate divides the output's
#: error by sqrt(abar_t), so near t = T (abar_T ~ 1e-4) a small error in eps is a large one in x0. ``v``: the
#: velocity, whose x0 estimate ``sqrt(abar_t) x_t - sqrt(1 - abar_t) v`` stays as accurate as the output at
#: every level (near T the network predicts -x0, near 0 it predicts eps). Both give the same DDIM step for the
#: same implied noise; they differ in what the network is trained to output and in the loss's weight per level
#: (the v loss is the x0 MSE weighted by 1 + SNR_t, the eps loss the x0 MSE weighted by SNR_t).
PREDICTIONS = ("eps", "v")


class GaussianProcess:
    """q(x_t | x0) = N(sqrt(abar_t) x0, (1 - abar_t) I); the output read as eps or v (`PREDICTIONS`).

    Args:
        abar: (T + 1,) cumulative signal levels from `make_schedule`, ``abar[0] == 1``.
    """

    def __init__(self, abar: torch.Tensor):
        self.abar = abar.to(torch.float64)
        self.T = len(abar) - 1
        if not bool((self.abar > 0).all()):
            raise SpecError("a Gaussian process needs every level abar_t > 0 (it divides by sqrt(abar_t)); "
                            "use a schedule with positive levels, e.g. cosine with max_beta=0.999")

    def level(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t per sample, shaped (B, 1, ..., 1) to broadcast against ``like`` (B, ...)."""
        a = self.abar.to(t.device)[t.long()].to(like.dtype)
        return a.reshape(-1, *([1] * (like.dim() - 1)))

    def prior(self, shape: tuple[int, ...], *, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """x_T ~ N(0, I)."""
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor | None = None, *,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (eq. 4 of Ho et al.); returns (x_t, eps).

        The arithmetic is `metavoxel.kernels.q_sample` (the fused kernel on CUDA, its reference elsewhere);
        the noise comes from ``generator``, so results are reproducible on every backend.
        """
        if eps is None:
            eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        x_t, eps = kernels.q_sample(x0, self.abar_at(t, x0), eps=eps)
        return x_t, eps

    def abar_at(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """abar_t per sample, (B,) on t's device, in float32 (float64 for float64 ``like``)."""
        return self.abar.to(t.device)[t.long()].to(torch.promote_types(like.dtype, torch.float32))

    def predict_x0(self, x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0_hat = (x_t - sqrt(1 - abar_t) eps_hat) / sqrt(abar_t)."""
        a = self.level(t, x_t)
        return (x_t - (1 - a).sqrt() * eps_hat) / a.sqrt()

    def target(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, prediction: str = "eps") -> torch.Tensor:
        """What the loss compares the network's output with at level t: ``eps``, or v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0.

        Shapes: x0 and eps (B, ...), t (B,); returns (B, ...). Raises ValueError for an unknown prediction.
        """
        if _checked(prediction) == "eps":
            return eps
        a = self.level(t, x0)
        return a.sqrt() * eps - (1 - a).sqrt() * x0

    def eps_from(self, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, prediction: str = "eps") -> torch.Tensor:
        """The noise an output stands for: ``out`` itself (``eps``) or sqrt(1 - abar_t) x_t + sqrt(abar_t) v (``v``).

        Raises ValueError for an unknown prediction."""
        if _checked(prediction) == "eps":
            return out
        a = self.level(t, x_t)
        return (1 - a).sqrt() * x_t + a.sqrt() * out

    def x0_from(self, x_t: torch.Tensor, out: torch.Tensor, t: torch.Tensor, prediction: str = "eps") -> torch.Tensor:
        """The clean value an output stands for: `predict_x0` of the noise (``eps``) or sqrt(abar_t) x_t - sqrt(1 - abar_t) v.

        Raises ValueError for an unknown prediction."""
        if _checked(prediction) == "eps":
            return self.predict_x0(x_t, out, t)
        a = self.level(t, x_t)
        return a.sqrt() * x_t - (1 - a).sqrt() * out

    def ddim_step(self, x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                  eta: float = 0.0, generator: torch.Generator | None = None,
                  clip: tuple[float, float] | None = None) -> torch.Tensor:
        """One DDIM step from level t to level s < t (Song et al. 2021, eq. 12).

        x_s = sqrt(abar_s) x0_hat + sqrt(1 - abar_s - sigma²) eps_hat + sigma z, with
        sigma = eta sqrt((1 - abar_s)/(1 - abar_t)) sqrt(1 - abar_t/abar_s); eta = 0 is deterministic.
        With ``clip = (lo, hi)``, x0_hat is clamped to the data's range and eps_hat recomputed from it
        (DDPM's clipped x0 prediction), for data known to lie in that range.
        """
        if clip is not None:
            eps_hat = self.clip_eps(x_t, eps_hat, t, clip)
        z1 = None
        if eta > 0:
            z1 = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
        x_s, _ = kernels.ddim_repaint_step(x_t, eps_hat, self.abar_at(t, x_t), self.abar_at(s, x_t), eta=eta, z1=z1)
        return x_s

    def clip_eps(self, x_t: torch.Tensor, eps_hat: torch.Tensor, t: torch.Tensor,
                 clip: tuple[float, float]) -> torch.Tensor:
        """The noise that corresponds to x0_hat clamped to ``clip`` (DDPM's clipped x0 prediction)."""
        a_t = self.level(t, x_t)
        x0_hat = ((x_t - (1 - a_t).sqrt() * eps_hat) / a_t.sqrt()).clamp(*clip)
        return (x_t - a_t.sqrt() * x0_hat) / (1 - a_t).sqrt()

    def undo(self, x_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Jump forward from level s to level t > s: x_t ~ q(x_t | x_s) = N(sqrt(abar_t/abar_s) x_s, 1 - abar_t/abar_s)."""
        r = self.level(t, x_s) / self.level(s, x_s)
        z = torch.randn(x_s.shape, generator=generator, device=x_s.device, dtype=x_s.dtype)
        return r.sqrt() * x_s + (1 - r).sqrt() * z

    @staticmethod
    def loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample mean squared error of the output against its `target` (eps or v), shape (B,)."""
        return (out.float() - target.float()).pow(2).flatten(1).mean(dim=1)

    @staticmethod
    def loss_map(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """`loss` per location: the squared error averaged over the channels (dim 1), (B, *spatial); its mean over
        the locations is `loss`."""
        return (out.float() - target.float()).pow(2).mean(dim=1)


def _checked(prediction: str) -> str:
    """``prediction`` if it is one of `PREDICTIONS`; otherwise ValueError."""
    if prediction not in PREDICTIONS:
        raise ValueError(f"prediction must be one of {PREDICTIONS}, got {prediction!r}")
    return prediction
