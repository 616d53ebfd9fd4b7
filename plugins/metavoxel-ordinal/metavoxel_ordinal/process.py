"""A discrete forward process for ordered levels: mass moves to neighbouring levels, never jumps uniformly.

Time follows metavoxel's convention: integer steps ``t`` in ``0..T``, ``t = 0`` is clean data, ``t`` and
``s`` are per-record tensors of shape (B,). States are level indices ``0..K-1``.

The walk. N (K×K) moves from level i to i - 1 or i + 1 with probability 1/2 each; at the two ends the
move that would leave the scale stays put (reflecting). N is symmetric and row-stochastic; R = N - I.

One step. Q_t = exp(β_t R) = Σ_k Poisson(k; β_t) N^k: a Poisson(β_t) number of neighbour moves
(uniformisation). To first order Q_t ≈ (1 - β_t) I + β_t N, the band-matrix step; the exponential form
lets any T reach the stationary distribution, however many levels there are. Ordinal transitions in
the spirit of Austin et al. 2021 (D3PM, §3.1), which motivate transitions that favour nearby states.

Cumulative. Qbar_t = Q_1 ⋯ Q_t (explicit float64 products for every t; the Q_t commute, so Qbar_t =
exp(B_t R) with B_t = Σ_{i<=t} β_i). q(x_t | x0) = Qbar_t[x0, :]; q(x_t | x_s) = Q_{s→t}[x_s, :] with
the k-step matrix Q_{s→t} = Q_{s+1} ⋯ Q_t, a product computed once per (s, t) pair and cached.

Schedule. With gap = 1 - λ_2(N) = 1 - cos(π/K) the spectral gap of the walk, the slowest mode of
Qbar_t - 1/K decays like e^{-B_t gap}. Choosing B_t = -log(max(abar_t, tol)) / gap with ``abar``
metavoxel's cosine schedule makes that mode follow abar_t: the ordinal process loses information at the
pace of the uniform D3PM process on the same schedule (faster modes decay faster), B_0 = 0, and
B_T = log(1/tol) / gap gives max_ij |Qbar_T[i, j] - 1/K| <= tol.

Stationary prior. N is symmetric, hence doubly stochastic: the uniform distribution over the K levels
is stationary for every Q_t, and x_T is drawn from it.

Reverse step (x0-parameterised, Austin et al. 2021 eq. 4 with the k-step transition), in log space:
    p(x_s | x_t) ∝ Q_{s→t}[x_s, x_t] · Σ_x0 p̂(x0) Qbar_s[x0, x_s],    p̂ = softmax(logits).

Numerics: exp(βR) is evaluated by uniformisation and repeated squaring. Every term is non-negative, so
the tiny probabilities of far levels keep their relative accuracy (an eigen-decomposition or a Padé
approximant would lose them to cancellation and could even return negative entries).
"""

from __future__ import annotations

import math

import torch

import metavoxel as mv

__all__ = ["NeighbourProcess", "neighbour_walk", "neighbour_schedule"]

SERIES_TERMS = 30  # Poisson(x <= 1) tail beyond 30 terms < 1e-32


def neighbour_walk(num_levels: int) -> torch.Tensor:
    """N (K, K) float64: move to an adjacent level with probability 1/2 each, staying put at the ends."""
    K = int(num_levels)
    N = torch.zeros(K, K, dtype=torch.float64)
    for i in range(K):
        N[i, max(i - 1, 0)] += 0.5
        N[i, min(i + 1, K - 1)] += 0.5
    return N


def spectral_gap(walk: torch.Tensor) -> float:
    """1 - λ_2 of a symmetric walk matrix (equals 1 - cos(π / K) for `neighbour_walk`)."""
    eig = torch.linalg.eigvalsh(walk)  # ascending
    return float(1.0 - eig[-2])


def neighbour_schedule(timesteps: int, num_levels: int, tol: float = 1e-4) -> torch.Tensor:
    """Cumulative move rates B (T + 1,) float64: B_t = -log(max(abar_t, tol)) / gap, cosine abar."""
    abar = mv.make_schedule("cosine", timesteps)  # abar_0 = 1, abar_T = 0, monotone
    return -torch.log(abar.clamp_min(tol)) / spectral_gap(neighbour_walk(num_levels))


def walk_exp(walk: torch.Tensor, rates: torch.Tensor) -> torch.Tensor:
    """exp(β (N - I)) for each β in ``rates`` (n,) -> (n, K, K), by uniformisation and squaring.

    exp(x (N - I)) = Σ_k e^{-x} x^k / k! N^k with x = β / 2^m <= 1, then squared m times.
    """
    K = walk.shape[0]
    squarings = max(0, math.ceil(math.log2(max(float(rates.max()), 1.0))))
    x = (rates.to(torch.float64) / 2**squarings)[:, None, None]  # (n, 1, 1)
    term = torch.exp(-x) * torch.eye(K, dtype=torch.float64)  # (n, K, K)
    total = term.clone()
    for k in range(1, SERIES_TERMS + 1):
        term = term @ walk * (x / k)
        total = total + term
    for _ in range(squarings):
        total = total @ total
    return total / total.sum(dim=-1, keepdim=True)  # rows sum to one up to rounding


class NeighbourProcess:
    """The neighbour-move discrete diffusion over ``num_levels`` ordered levels (see the module docstring).

    Args:
        cumulative_rates: B (T + 1,) non-decreasing, B_0 = 0 (see `neighbour_schedule`).
        num_levels: K >= 2.

    Attributes:
        Q: (T + 1, K, K) one-step matrices, Q[0] = I.
        Qbar: (T + 1, K, K) cumulative products Q_1 ⋯ Q_t, Qbar[0] = I.
        stationary: (K,) the prior at t = T (uniform).
    """

    def __init__(self, cumulative_rates: torch.Tensor, num_levels: int):
        self.rates = cumulative_rates.to(torch.float64)
        self.T = len(self.rates) - 1
        self.K = int(num_levels)
        self.walk = neighbour_walk(self.K)
        betas = (self.rates[1:] - self.rates[:-1]).clamp_min(0.0)  # (T,)
        eye = torch.eye(self.K, dtype=torch.float64)
        self.Q = torch.cat([eye[None], walk_exp(self.walk, betas)])  # (T + 1, K, K)
        qbar = [eye]
        for t in range(1, self.T + 1):
            qbar.append(qbar[-1] @ self.Q[t])
        self.Qbar = torch.stack(qbar)  # (T + 1, K, K)
        self.stationary = torch.full((self.K,), 1.0 / self.K, dtype=torch.float64)
        self._k_step: dict[tuple[int, int], torch.Tensor] = {}

    # -- transition matrices ----------------------------------------------------------------------
    def k_step(self, s: int, t: int) -> torch.Tensor:
        """Q_{s→t} = Q_{s+1} ⋯ Q_t (K, K) float64 (identity when t <= s), cached per (s, t)."""
        if t <= s:
            return torch.eye(self.K, dtype=torch.float64)
        if s == 0:
            return self.Qbar[t]
        key = (int(s), int(t))
        if key not in self._k_step:
            product = self.Q[s + 1]
            for i in range(s + 2, t + 1):
                product = product @ self.Q[i]
            self._k_step[key] = product
        return self._k_step[key]

    def transition(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Q_{s→t} per record: (B,) steps -> (B, K, K) float64 on t's device."""
        pairs, inverse = torch.unique(torch.stack([s.long(), t.long()], dim=1).cpu(), dim=0, return_inverse=True)
        mats = torch.stack([self.k_step(int(a), int(b)) for a, b in pairs.tolist()])  # (U, K, K)
        return mats[inverse].to(t.device)

    def q_probs(self, x0: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q(x_t | x0) = Qbar_t[x0, :], shape (B, K) float64."""
        return self.Qbar.to(x0.device)[t.long(), x0.long()]

    # -- sampling the forward process ---------------------------------------------------------------
    def prior(self, n: int, *, generator: torch.Generator | None = None,
              device: torch.device | str = "cpu") -> torch.Tensor:
        """x_T ~ Uniform{0..K-1} (the stationary distribution), shape (n,)."""
        return torch.randint(0, self.K, (n,), generator=generator, device=device)

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, *, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_t ~ q(x_t | x0) = Qbar_t[x0, :]; ``t = 0`` returns x0 exactly."""
        return self._draw(self.q_probs(x0, t), x0, t == 0, generator)

    def undo(self, x_s: torch.Tensor, s: torch.Tensor, t: torch.Tensor, *,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """Jump forward from level s to t > s: x_t ~ q(x_t | x_s) = Q_{s→t}[x_s, :]."""
        k_step = self.transition(s, t)  # (B, K, K)
        probs = k_step[torch.arange(len(x_s), device=x_s.device), x_s.long()]  # (B, K)
        return self._draw(probs, x_s, t <= s, generator)

    @staticmethod
    def _draw(probs: torch.Tensor, keep: torch.Tensor, unchanged: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        return torch.where(unchanged, keep.long(), drawn)

    # -- the reverse process ---------------------------------------------------------------------
    def reverse_log_probs(self, x_t: torch.Tensor, logits: torch.Tensor, t: torch.Tensor,
                          s: torch.Tensor) -> torch.Tensor:
        """log p(x_s | x_t) (B, K), normalised: Q_{s→t}[x_s, x_t] · Σ_x0 p̂(x0) Qbar_s[x0, x_s]."""
        return self._log_reverse(x_t, torch.log_softmax(logits.double(), dim=-1), t, s)

    def posterior_log_probs(self, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                            s: torch.Tensor) -> torch.Tensor:
        """log q(x_s | x_t, x0) (B, K): the exact posterior (the reverse step with p̂ = e_x0)."""
        log_p0 = torch.full((len(x0), self.K), float("-inf"), dtype=torch.float64, device=x0.device)
        return self._log_reverse(x_t, log_p0.scatter_(1, x0.long()[:, None], 0.0), t, s)

    def _log_reverse(self, x_t: torch.Tensor, log_p0: torch.Tensor, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        rows = torch.arange(len(x_t), device=x_t.device)
        fwd = self.transition(s, t)[rows, :, x_t.long()]  # (B, K) q(x_t | x_s) over x_s
        # t > s makes every entry positive; the floor only guards underflow, so some x_s stays finite.
        log_fwd = torch.log(fwd.clamp_min(torch.finfo(torch.float64).tiny))
        log_qbar_s = torch.log(self.Qbar.to(x_t.device)[s.long()])  # (B, K, K) [x0, x_s], -inf where 0
        log_marg = torch.logsumexp(log_p0[:, :, None] + log_qbar_s, dim=1)  # (B, K) Σ_x0 p̂(x0) q(x_s | x0)
        return torch.log_softmax(log_fwd + log_marg, dim=-1)

    def reverse_step(self, x_t: torch.Tensor, logits: torch.Tensor, t: torch.Tensor, s: torch.Tensor, *,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample x_s ~ p(x_s | x_t), shape (B,)."""
        probs = self.reverse_log_probs(x_t, logits, t, s).exp()
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)
