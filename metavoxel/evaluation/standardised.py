"""Standardising against a reference sample: a new record's z, and each reference record's own z left one out.

Each entry (a noise level, a level and a location) of a reference of n records has its mean μ and SD σ (ddof 1);
a new record's value a gets z = (a - μ)/σ. A reference record's own z must be computed the same way WITHOUT it
(leave one out): with itself in μ and σ its |z| is pulled toward 0 (it can never exceed (n - 1)/√n), so the
reference's own scores would sit below a new record's and any threshold read from them would flag new records
too often. In closed form, with d_k = a_k - μ and S = Σ_i (a_i - μ)² over all n:

    μ_(-k) = μ - d_k/(n - 1),      a_k - μ_(-k) = d_k · n/(n - 1),
    S_(-k) = S - d_k² · n/(n - 1),  σ_(-k)² = S_(-k)/(n - 2)

(the deleted-residual identities of regression diagnostics, Cook & Weisberg 1982, for a mean; where record k holds
nearly all of S, its row is recomputed from the others, as the subtraction keeps no digits). Both forms floor σ
at 1e-6 · max(|μ|, 1), so an entry without spread (every reference record the same) gives a large finite z, not a
division by zero.
"""

from __future__ import annotations

import numpy as np

__all__ = ["leave_one_out", "standardise"]


def _floor(mu: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(mu), 1.0) * 1e-6


def standardise(reference: np.ndarray, values: np.ndarray) -> np.ndarray:
    """z = (values - μ)/σ per entry against ``reference``.

    Args:
        reference: (n, *shape) the reference records' values.
        values: (m, *shape) the values to standardise.

    Returns:
        (m, *shape) float64.
    """
    ref = np.asarray(reference, dtype=np.float64)
    mu = ref.mean(axis=0)
    sd = ref.std(axis=0, ddof=1) if len(ref) > 1 else np.zeros_like(mu)
    return (np.asarray(values, dtype=np.float64) - mu) / np.maximum(sd, _floor(mu))


def leave_one_out(reference: np.ndarray) -> np.ndarray:
    """Each reference record's z against the other n - 1 (module docstring), in closed form.

    Args:
        reference: (n, *shape), n >= 2.

    Returns:
        (n, *shape) float64: row k equals ``standardise(reference without row k, reference[k:k+1])[0]``.
    """
    ref = np.asarray(reference, dtype=np.float64)
    n = len(ref)
    if n < 2:
        raise ValueError(f"leave-one-out needs at least 2 reference records, got {n}")
    mu = ref.mean(axis=0)
    d = ref - mu  # (n, *shape)
    total = (d ** 2).sum(axis=0)
    mu_k = mu - d / (n - 1)
    if n == 2:
        return (d * n / (n - 1)) / _floor(mu_k)  # one record left: no spread
    rest = total - d ** 2 * n / (n - 1)  # (n - 2) σ_(-k)²
    # where record k carries nearly all of S, the subtraction loses the digits of what is left: those rows are
    # recomputed from the other records directly (e.g. a location where every other record has the same value)
    for k in np.unique(np.nonzero((rest <= 1e-9 * total).reshape(n, -1))[0]):
        others = np.delete(ref, k, axis=0)
        exact = ((others - others.mean(axis=0)) ** 2).sum(axis=0)
        rest[k] = np.where(rest[k] <= 1e-9 * total, exact, rest[k])
    var_k = np.maximum(rest, 0.0) / (n - 2)
    return (d * n / (n - 1)) / np.maximum(np.sqrt(var_k), _floor(mu_k))
