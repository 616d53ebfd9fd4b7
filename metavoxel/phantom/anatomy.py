"""The procedural brain: signed depths of a few smooth shapes in canonical mm, turned into tissue fractions.

Shapes (canonical mm; the brain centre at the origin, +x Right, +y Anterior, +z Superior):

* **envelope** (the skull-stripping mask): an egg-shaped ellipsoid, semi-axes 66 (L-R), 80 (P-A),
  58 above and 46 below the centre (1.15 L). ``δ`` is the depth below it along the ray from the centre.
* **pial surface**: ``e`` mm below the envelope (external CSF); ``δ_p = δ - e``.
* **sulci**: CSF gaps of width ``w`` along the zero set of an angular pattern
  ``g(n) = Σ_i cos(70 ω_i · n + φ_i)`` (n the unit direction, five fixed wave vectors of wavelength
  28 mm, subject phases ``φ_i``), reaching ``D(n) = 14 (1 + 0.35 cos(70 ω_D · n + φ_D))`` mm below the
  pial surface (ω_D of wavelength 60 mm, so sulci differ in depth); ``σ = |g| / |∇_t g|`` (the
  gradient tangential to the sphere) is the distance (mm, at radius 70 mm) to the sulcal fundus line.
  The longitudinal fissure is one more gap, ``|x| < w / 2``, 30 mm deep, above z = -20.
* **cortex**: GM within ``T`` mm of any CSF (pial surface or sulcal wall); WM below.
* **lateral ventricles**: two mirror ellipsoids at (±9, -4, 10), semi-axes (6, 24, 9) · V, bent down
  at their ends by 5 V mm (an arch); **deep GM** (thalamus + basal ganglia): two ellipsoids at
  (±15, -2, -6), semi-axes (8, 14, 9), intensity halfway between GM and WM; ventricles take precedence.

Partial volume: every membership is a linear ramp ``R(d) = clip(1/2 + d / h, 0, 1)`` of its signed
depth ``d`` over one voxel ``h``, so thin structures fade rather than alias on coarse grids.
"""

from __future__ import annotations

import math

import numpy as np

from metavoxel.phantom.model import INTENSITY, Draws

__all__ = ["ENVELOPE_MM", "procedural_brain"]

ENVELOPE_MM = (66.0, 80.0, 58.0, 46.0)  # L-R, P-A, superior, inferior semi-axes
SULCUS_DEPTH_MM, FISSURE_DEPTH_MM, FISSURE_FLOOR_Z = 14.0, 30.0, -20.0
VENTRICLE = {"centre": (9.0, -4.0, 10.0), "axes": (6.0, 24.0, 9.0), "bend_mm": 5.0}
DEEP_GM = {"centre": (15.0, -2.0, -6.0), "axes": (8.0, 14.0, 9.0)}
FOLD_RADIUS_MM, FOLD_WAVELENGTH_MM = 70.0, 28.0
_FOLD_DIRECTIONS = np.array([[0.83, 0.31, 0.46], [-0.22, 0.91, 0.35], [0.40, -0.55, 0.73], [-0.67, -0.25, 0.70],
                             [0.15, 0.45, -0.88]])
_FOLD_PHASES = np.array([0.3, 1.7, 2.9, 4.1, 5.3])
_DEPTH_WAVE = np.array([0.5, -0.3, 0.81]) / np.linalg.norm([0.5, -0.3, 0.81]) * 2 * math.pi / 60.0 * FOLD_RADIUS_MM
DEPTH_MODULATION, _DEPTH_PHASE = 0.35, 1.1


def _depth(px: np.ndarray, py: np.ndarray, pz: np.ndarray, axes: tuple, lower_z: float | None = None):
    """Signed depth (mm, > 0 inside) below an origin-centred ellipsoid along the ray from its centre.

    ``δ = ρ_E(n) - ρ`` with ``ρ = |p|``, ``n = p / ρ`` and ``ρ_E(n) = 1 / |n ⊘ E|`` the ellipsoid radius
    in direction ``n``; ``lower_z`` replaces the z semi-axis below the centre (an egg shape).
    """
    rho = np.sqrt(px * px + py * py + pz * pz)
    inv = 1.0 / np.maximum(rho, 1e-3)
    cz = axes[2] if lower_z is None else np.where(pz > 0, np.float32(axes[2]), np.float32(lower_z))
    nx, ny, nz = px * inv / axes[0], py * inv / axes[1], pz * inv / cz
    return 1.0 / np.maximum(np.sqrt(nx * nx + ny * ny + nz * nz), 1e-3) - rho, rho, inv


def _sulcal_distance(px, py, pz, rho, inv, phases: np.ndarray) -> np.ndarray:
    """``σ = |g| / max(|∇_t g|, 0.7 |ω|) · ρ / 70``: mm from the sulcal zero set (``∇_t``: along the sphere)."""
    k = 2 * math.pi / FOLD_WAVELENGTH_MM
    omega = _FOLD_DIRECTIONS / np.linalg.norm(_FOLD_DIRECTIONS, axis=1, keepdims=True) * k * FOLD_RADIUS_MM
    nx, ny, nz = px * inv, py * inv, pz * inv
    g = np.zeros_like(px)
    grad = [np.zeros_like(px) for _ in range(3)]
    for w, phi in zip(omega, _FOLD_PHASES + phases):
        theta = float(w[0]) * nx + float(w[1]) * ny + float(w[2]) * nz + float(phi)
        g += np.cos(theta)
        s = np.sin(theta)
        for c in range(3):
            grad[c] -= float(w[c] / FOLD_RADIUS_MM) * s
    radial = grad[0] * nx + grad[1] * ny + grad[2] * nz  # the gradient's part along n does not move along the sphere
    tangential = grad[0] * grad[0] + grad[1] * grad[1] + grad[2] * grad[2] - radial * radial
    slope = np.maximum(np.sqrt(np.maximum(tangential, 0.0)), 0.7 * k)
    return np.abs(g) / slope * (rho / FOLD_RADIUS_MM)


def procedural_brain(coords: list[np.ndarray], draws: Draws, voxel_mm: float) -> dict[str, np.ndarray]:
    """Tissue fractions and the clean intensity of the procedural brain at canonical points ``coords``.

    Args:
        coords: ``[p_x, p_y, p_z]``, each (X, Y, Z) canonical mm (`metavoxel.phantom.cohort.anatomy_coords`).
        draws: the subject (age laws, folding phases).
        voxel_mm: mean voxel size in canonical mm: the partial-volume ramp width ``h``.

    Returns:
        ``csf`` (ventricles included), ``ventricles``, ``gm``, ``deep_gm``, ``wm``: fractions of each voxel,
        summing to the brain fraction; ``intensity``: ``Σ_t fraction_t I_t`` (before bias and noise).
    """
    laws = draws.laws
    h = max(voxel_mm, 0.5)

    def ramp(d: np.ndarray) -> np.ndarray:
        return np.clip(0.5 + d / h, 0.0, 1.0)

    px, py, pz = coords
    delta, rho, inv = _depth(px, py, pz, ENVELOPE_MM[:3], lower_z=ENVELOPE_MM[3])
    brain = ramp(delta)
    pial = delta - laws.external_csf_mm
    half = laws.sulcus_mm / 2
    wave = float(_DEPTH_WAVE[0]) * px + float(_DEPTH_WAVE[1]) * py + float(_DEPTH_WAVE[2]) * pz
    phase = float(_DEPTH_PHASE + draws.folding_phase[0])
    depth = SULCUS_DEPTH_MM * (1.0 + DEPTH_MODULATION * np.cos(wave * inv + phase))  # D(n), mm
    sulci = np.maximum(_sulcal_distance(px, py, pz, rho, inv, draws.folding_phase) - half, pial - depth)
    fissure = np.maximum(np.maximum(np.abs(px) - half, pial - FISSURE_DEPTH_MM), FISSURE_FLOOR_Z - pz)
    to_csf = np.minimum(np.minimum(pial, sulci), fissure)  # signed mm to the nearest CSF, < 0 inside it
    csf = ramp(-to_csf)
    inner = ramp(laws.thickness_mm - to_csf)
    gm = inner - csf
    wm = 1.0 - inner

    mx = np.abs(px)  # both hemispheres at once: the shapes are mirror images
    v = laws.ventricle_scale
    cx, cy, cz = VENTRICLE["centre"]
    qy = py - cy
    bend = VENTRICLE["bend_mm"] * v * np.square(qy / (VENTRICLE["axes"][1] * v))
    ventricles = ramp(_depth(mx - cx, qy, pz - cz + bend, tuple(a * v for a in VENTRICLE["axes"]))[0])
    dx, dy, dz = DEEP_GM["centre"]
    deep = wm * ramp(_depth(mx - dx, py - dy, pz - dz, DEEP_GM["axes"])[0])
    wm = wm - deep

    keep = (1.0 - ventricles) * brain
    tissues = {"csf": (csf * (1.0 - ventricles) + ventricles) * brain, "ventricles": ventricles * brain,
               "gm": gm * keep, "deep_gm": deep * keep, "wm": wm * keep}
    gm_level, wm_level = laws.gm_intensity, INTENSITY["wm"]
    tissues["intensity"] = (INTENSITY["csf"] * tissues["csf"] + gm_level * tissues["gm"]
                            + (gm_level + wm_level) / 2 * tissues["deep_gm"] + wm_level * tissues["wm"])
    tissues["brain"] = brain
    return tissues
