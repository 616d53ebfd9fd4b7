"""Synthetic T1w brain cohorts with a known ground truth: ``metavoxel phantom`` and its library API.

A seeded generator of skull-stripped T1w-like brains in BIDS layout (32³ to 128³ voxels), whose images
depend on age and sex through documented, monotone effects of user-set strength, plus between-subject
nuisance that makes learning them non-trivial. Not real data, and not a model of any population.

**Grid.** A fixed field of view ``fov_mm`` (176 mm cube) cut into ``size`` voxels: voxel = fov / size
(5.5 mm at 32³). RAS+ diagonal affine, grid centre at the world origin (the brain's centre), written to
sform and qform; float32 ``.nii.gz``.

**Demographics.** ``sex`` = F with probability ``female_fraction`` (0.6); ``age`` ~ N(70, 10²) redrawn
until inside [40, 95], rounded to 0.1 year (the image is made at the rounded age). Below,
``u = (age - 40) / 55``, ``x = age_effect · u``, ``c = sex_effect · (+1 M, −1 F)``, ``ν = variability``
and ``z`` independent standard normals, one per subject and term.

**Tissues** (procedural anatomy; intensities before bias and noise, WM the reference):

=============  =============================================================  ==============================
tissue         geometry (canonical mm, brain centre at 0)                     intensity
=============  =============================================================  ==============================
background     outside the brain envelope (egg: semi-axes 66, 80, 58/46)     0 (skull-stripped)
external CSF   the outer ``e`` mm of the envelope                             0.20
sulcal CSF     gaps of width ``w``, 14 ± 5 mm deep, along the zero set of a  0.20
               5-wave angular pattern; plus the midline fissure (30 mm)
ventricles     two mirror ellipsoids (±9, −4, 10), semi-axes (6, 24, 9)·V     0.20
cortical GM    within ``T`` mm of any CSF                                     ``I_gm`` (0.60 at 40 years)
deep GM        two ellipsoids (±15, −2, −6), semi-axes (8, 14, 9)             (I_gm + 1) / 2
WM             the rest                                                       1.00
=============  =============================================================  ==============================

Every boundary is a linear partial-volume ramp over one voxel; `PhantomSubject.tissues` holds the fractions.

**Age effects** (magnitudes at ``age_effect = 1``; from 40 to 95 years in brackets):

* ventricle scale ``V = (1 + 0.6 x) · e^{0.12 ν z}`` — linear, so volume ∝ V³ (×4.1; ~11 → ~45 mL);
* cortical thickness ``T = 3.0 (1 − 0.2 x) · e^{0.05 ν z}`` mm (3.0 → 2.4 mm);
* sulcal CSF width ``w = (1 + 3 x) · e^{0.1 ν z}`` mm (1 → 4 mm); external CSF ``e = 0.5 + 2 x`` mm (0.5 → 2.5);
* GM intensity ``I_gm = 0.60 + 0.375 x (1 − 0.60) + 0.015 ν z`` (0.60 → 0.75): GM/WM contrast 0.40 → 0.25.

All lengths are canonical mm, multiplied by the head scale in world space; values are clamped to stay
physical when ``x`` leaves [0, 1] (ages outside 40–95, or ``age_effect`` > 1).

**Sex effects** (at ``sex_effect = 1``): linear head scale ``1.06^{c/2}`` (males 6 % larger than females:
volume ×1.19) and aspect ``(1.01^{−c}, 1.01^{c}, 1)`` on (L-R, P-A, I-S): the male AP/LR ratio is 4 % larger.

**Nuisance** (SDs at ``variability = 1``, all ×ν): global scale ``e^{0.03 z}``; per-axis aspect
``e^{0.02 z}``; smooth displacement field (5³ control grid over the FOV, blurred, RMS 2.5 mm per
component, trilinear); head rotation (Euler angles, 3° each) and translation (2 mm each) in the scanner;
multiplicative bias field ``e^β`` (same control grid, RMS 0.08); anatomical jitter above; sulcal pattern
phases (0.6 rad). Then Rician noise of SD ``noise`` (0.03 of WM) inside the brain mask, 0 outside.

**Template anatomy** (``template=``): a skull-stripped T1 (e.g. MNI152 brain) replaces the procedural
brain; the age effects become a central radial expansion by ``V`` around the ventricles, a global
shrinkage ``1 − 0.03 x`` and the GM-band contrast change (`metavoxel.phantom.template` says what it
cannot model); sex, nuisance and noise are the same.

**Determinism.** Subject ``k`` draws from ``SeedSequence([seed, k])`` alone: the same config gives the same
bytes, and subject ``k`` is the same in a cohort of 3 or 3000.

**Using it with metavoxel.** ``metavoxel phantom data/phantom --subjects 200 --size 32`` writes a BIDS
root that `metavoxel.data.read_cohort` reads with a spec holding an ``image`` (or ``image_latent``)
variable of shape ``[32, 32, 32]`` (``preprocess.spacing: [5.5, 5.5, 5.5]`` to match the grid), ``age``
``continuous`` with range [40, 95] and ``sex`` ``categorical`` with categories [F, M]; ``phantom.json``
holds each subject's truth for checking what a model learned. See docs/phantom.md.
"""

from metavoxel.phantom.cohort import PhantomSubject, phantom_subject
from metavoxel.phantom.config import PhantomConfig, grid_affine
from metavoxel.phantom.writer import write_phantom

__all__ = ["PhantomConfig", "PhantomSubject", "grid_affine", "phantom_subject", "tissue_volumes", "write_phantom"]


def tissue_volumes(subject: PhantomSubject) -> dict[str, float]:
    """mL of each ground-truth tissue of a subject rendered with ``tissues=True`` (procedural anatomy).

    ``Σ_voxels fraction_t · voxel volume`` for t in csf (ventricles included), ventricles, gm, deep_gm, wm
    and brain (their sum).
    """
    import numpy as np

    from metavoxel.errors import InputError

    if subject.tissues is None:
        raise InputError("tissue_volumes needs a subject rendered with phantom_subject(..., tissues=True) on the "
                         "procedural anatomy (a template subject has no tissue truth); render it again so")
    voxel_ml = float(abs(np.linalg.det(subject.affine[:3, :3]))) / 1000.0
    return {name: float(fractions.sum(dtype=np.float64)) * voxel_ml for name, fractions in subject.tissues.items()}
