"""The discrete diffusion process D3PM with the uniform transition (Austin et al. 2021).

One step: Q_t = (1 - b_t) I + b_t/K 11ᵀ. Products of uniform transitions stay uniform, so
q(x_t | x0) = abar_t e_x0 + (1 - abar_t)/K with abar_t = prod_{i<=t} (1 - b_i), and for s < t
q(x_t | x_s) = r e_{x_s} + (1 - r)/K with r = abar_t / abar_s. Time follows
`metavoxel.processes.schedules` (integer t in 0..T, abar[0] = 1). The network predicts x0 logits
(x0-parameterisation, D3PM §3.3); all reverse-step arithmetic is done in log space.
"""

from __future__ import annotations

import torch

__all__ = ["UniformDiscreteProcess"]


class UniformDiscreteProcess:
    """D3PM with the uniform transition over ``num_classes`` categories.

    Args:
        abar: (T + 1,) cumulative keep-probabilities, ``abar[0] == 1`` and ideally ``abar[T] == 0``.
        num_classes: K >= 2.
    """

    def __init__(self, abar: torch.Tensor, num_classes: int):
        self.abar = abar.to(torch.float64)
        self.T = len(abar) - 1
        self.K = int(num_classes)

    def _level(self, t: torch.Tensor) -> torch.Tensor:
        return self.abar.to(t.device)[t.long()]  # (B,) float64

    def prior(self, n: int, *, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """x_T ~ Uniform{0..K-1}, shape (n,)."""
        return torch.randint(0, self.K, (n,), generator=generator, device=device)

    def q_probs(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0) = abar_t e_x0 + (1 - abar_t)/K, shape (B, K)."""
        a = self._level(t)[:, None]
        return a * torch.nn.functional.one_hot(x0, self.K).double() + (1 - a) / self.K

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, *,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample x_t ~ q(x_t | x0): keep x0 with probability abar_t, else draw uniformly."""
        return self._keep_or_uniform(x0, self._level(t), generator)

    def undo(self, x_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Jump forward from level s to t > s: x_t ~ q(x_t | x_s) = r e_{x_s} + (1 - r)/K, r = abar_t/abar_s."""
        return self._keep_or_uniform(x_s, self._level(t) / self._level(s), generator)

    def _keep_or_uniform(self, x: torch.Tensor, keep: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=torch.float64)
        fresh = torch.randint(0, self.K, x.shape, generator=generator, device=x.device)
        return torch.where(u < keep, x, fresh)

    def reverse_log_probs(self, x_t: torch.Tensor, logits: torch.Tensor, t: torch.Tensor,
                          s: torch.Tensor) -> torch.Tensor:
        """log p(x_s | x_t), normalised, shape (B, K): the strided x0-parameterised reverse step.

        p(x_s | x_t) ∝ Σ_x0 q(x_t | x_s) q(x_s | x0) p̂(x0 | x_t)
                     = [r e_{x_t} + (1 - r)/K] ⊙ [abar_s p̂ + (1 - abar_s)/K],   r = abar_t / abar_s
        (Austin et al. 2021, eq. 4 with the k-step transition), with p̂ = softmax(logits).
        """
        return self._log_reverse(x_t, torch.log_softmax(logits.double(), dim=-1), t, s)

    def posterior_log_probs(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                            s: torch.Tensor) -> torch.Tensor:
        """log q(x_s | x_t, x0), shape (B, K): the exact posterior (the reverse step with p̂ = e_x0)."""
        log_p0 = torch.full((x0.shape[0], self.K), float("-inf"), dtype=torch.float64, device=x0.device)
        return self._log_reverse(x_t, log_p0.scatter_(1, x0.long()[:, None], 0.0), t, s)

    def _log_reverse(self, x_t: torch.Tensor, log_p0: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        # logaddexp keeps many classes and levels at exactly 0 or 1 free of NaN.
        a_t, a_s = self._level(t)[:, None], self._level(s)[:, None]  # (B, 1) float64
        log_uniform = -torch.log(torch.tensor(float(self.K), dtype=torch.float64, device=x_t.device))
        r = (a_t / a_s).clamp(0.0, 1.0)
        onehot_log = torch.full((x_t.shape[0], self.K), float("-inf"), dtype=torch.float64, device=x_t.device)
        onehot_log.scatter_(1, x_t.long()[:, None], 0.0)
        log_fwd = torch.logaddexp(torch.log(r) + onehot_log, torch.log1p(-r) + log_uniform)  # (B, K) q(x_t | x_s)
        log_x0 = torch.logaddexp(torch.log(a_s) + log_p0, torch.log1p(-a_s) + log_uniform)  # (B, K) Σ q(x_s|x0) p̂
        return torch.log_softmax(log_fwd + log_x0, dim=-1)

    def reverse_step(self, x_t: torch.Tensor, logits: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample x_s ~ p(x_s | x_t), shape (B,)."""
        probs = self.reverse_log_probs(x_t, logits, t, s).exp()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    @staticmethod
    def loss(logits: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """Per-sample cross-entropy of the predicted x0 logits, shape (B,)."""
        return torch.nn.functional.cross_entropy(logits.float(), x0.long(), reduction="none")
