"""Uniform rotation sets for exhaustive orientation searches, with point-group symmetry.

Rotations follow :mod:`tomopick.data.rotations`: a matrix ``R`` (3×3, acting on ``(x, y, z)`` column vectors) rotates
the reference into the particle, ``particle_xyz = R @ reference_xyz``.

The set is a super-Fibonacci spiral on the unit quaternions (Alexa, CVPR 2022): deterministic, close to uniform for any
count, and without the pole clustering of Euler-angle grids. The *angular step* is the target **covering radius**: every
rotation of SO(3) lies within ``step_deg`` (rotation angle, i.e. the geodesic distance on SO(3)) of a member of the set.
The count is derived from the volume of a geodesic ball on SO(3) (Haar fraction ``(δ − sin δ)/π``) and a covering
density calibrated once on this construction (:data:`COVERING_DENSITY`); :func:`covering_radius_deg` measures it.

Symmetry: a reference with point group ``G`` satisfies ``ref(S x) = ref(x)`` for ``S ∈ G``, so ``R`` and ``R @ S``
describe the same particle. :func:`uniform_rotations` keeps one representative per class: a rotation is kept when it is
closer to the identity than any ``R @ S`` (the Dirichlet cell of the identity), which leaves ``≈ n / |G|`` rotations
with the same covering radius in the quotient metric. Group axes follow scipy's
:meth:`~scipy.spatial.transform.Rotation.create_group` with the main axis along ``z``: ``Cn`` and ``Dn`` have their
n-fold axis along ``z`` (``Dn`` adds 2-fold axes in the x–y plane, one along ``x``); ``T``, ``O`` and ``I`` are scipy's
orientations (``I``: 2-fold axes along x, y and z).
"""

from __future__ import annotations

import re

import numpy as np
from scipy.spatial.transform import Rotation

#: Covering density of the super-Fibonacci set: ``n · (δ − sin δ) / π`` at which the measured covering radius equals
#: ``δ`` (calibrated on 5–30° with :func:`covering_radius_deg`, 200 000 probes; the set is within a few % of ``δ``).
COVERING_DENSITY = 3.0

#: Width of the seam kept around the asymmetric unit, as a fraction of the step (see :func:`uniform_rotations`).
SEAM_FRACTION = 0.5

_PSI = 1.533751168755204288118041  # real root of ψ⁴ = ψ + 4 (Alexa 2022)
_PHI = np.sqrt(2.0)


def super_fibonacci_quaternions(n: int) -> np.ndarray:
    """``n`` unit quaternions ``(n, 4)`` as ``(x, y, z, w)`` (scipy's scalar-last order) spread uniformly over S³."""
    if n < 1:
        raise ValueError(f"need at least one rotation, got n={n}")
    s = np.arange(n, dtype=np.float64) + 0.5
    t = s / n
    r = np.sqrt(t)
    big_r = np.sqrt(1.0 - t)
    alpha = 2.0 * np.pi * s / _PHI
    beta = 2.0 * np.pi * s / _PSI
    return np.stack([r * np.sin(alpha), r * np.cos(alpha), big_r * np.sin(beta), big_r * np.cos(beta)], axis=1)


def symmetry_group(symmetry: str) -> np.ndarray:
    """Rotation matrices ``(|G|, 3, 3)`` of a point group named ``C1``, ``Cn``, ``Dn``, ``T``, ``O`` or ``I``
    (case-insensitive; axes as in the module docstring). The identity comes first."""
    name = symmetry.strip().upper()
    m = re.fullmatch(r"([CD])(\d+)|([TOI])", name)
    if m is None:
        raise ValueError(f"unknown symmetry {symmetry!r}: use C1, Cn, Dn, T, O or I")
    if m.group(1):
        n = int(m.group(2))
        if n < 1:
            raise ValueError(f"symmetry order must be ≥ 1, got {symmetry!r}")
        mats = Rotation.create_group(f"{m.group(1)}{n}", axis="Z").as_matrix()
    else:
        mats = Rotation.create_group(m.group(3)).as_matrix()
    mats = np.asarray(mats, dtype=np.float64).reshape(-1, 3, 3)
    # identity first (scipy already does this, but the contract should not depend on it)
    angles = np.degrees(Rotation.from_matrix(mats).magnitude())
    return mats[np.argsort(angles, kind="stable")]


def count_for_step(step_deg: float) -> int:
    """Number of rotations of the full SO(3) set whose covering radius is ``step_deg``."""
    if not np.isfinite(step_deg) or step_deg <= 0 or step_deg > 180:
        raise ValueError(f"angular step must be in (0, 180] degrees, got {step_deg}")
    d = np.radians(step_deg)
    return max(1, int(np.ceil(COVERING_DENSITY * np.pi / (d - np.sin(d)))))


def uniform_rotations(step_deg: float, symmetry: str = "C1") -> np.ndarray:
    """A uniform set of rotation matrices ``(n, 3, 3)`` whose covering radius is about ``step_deg`` degrees.

    With ``symmetry`` other than ``C1`` only the asymmetric unit is kept (≈ ``1/|G|`` of the set, see the module
    docstring). Deterministic: the same arguments give the same matrices in the same order. The identity is not
    necessarily a member.
    """
    group = symmetry_group(symmetry)
    n = count_for_step(step_deg)
    quats = super_fibonacci_quaternions(n)
    mats = Rotation.from_quat(quats).as_matrix()
    if len(group) > 1:
        # keep R when angle(R) ≤ angle(R S) + margin for all S: the Dirichlet cell of the identity in SO(3)/G,
        # widened by a seam of one step so that rotations near the cell border keep their nearest neighbours
        # (the super-Fibonacci set is not G-invariant, so without the seam the covering radius grows there)
        own = _angles(mats)
        margin = np.radians(step_deg) * SEAM_FRACTION
        keep = np.ones(len(mats), dtype=bool)
        for s in group[1:]:
            other = _angles(mats @ s)
            keep &= own <= other + margin
        mats = mats[keep]
    return np.ascontiguousarray(mats)


def _angles(mats: np.ndarray) -> np.ndarray:
    """Rotation angle in radians of matrices ``(n, 3, 3)``."""
    cos = (np.trace(mats, axis1=1, axis2=2) - 1.0) / 2.0
    return np.arccos(np.clip(cos, -1.0, 1.0))


def covering_radius_deg(rotations: np.ndarray, n_probes: int = 20000, symmetry: str = "C1",
                        rng: np.random.Generator | None = None, quantile: float = 1.0) -> float:
    """Measured covering radius of a rotation set in degrees.

    ``n_probes`` random rotations (uniform on SO(3), from ``rng``; a fixed seed when ``None``) are each matched to
    their nearest member of ``rotations`` ``(n, 3, 3)``; the result is the largest such distance (or the given
    ``quantile`` of them). Distances are rotation angles, taken modulo ``symmetry``
    (``min_S angle(probe, R @ S)``). Random probes slightly underestimate the true maximum.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    mats = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    group = symmetry_group(symmetry)
    # all symmetry copies of the set, as quaternions
    copies = np.concatenate([mats @ s for s in group], axis=0)
    q_set = Rotation.from_matrix(copies).as_quat()  # (m, 4)
    probes = Rotation.random(n_probes, random_state=rng).as_quat()
    best = np.empty(n_probes)
    chunk = max(1, int(2e7 // max(1, len(q_set))))
    for i in range(0, n_probes, chunk):
        dots = np.abs(probes[i:i + chunk] @ q_set.T)  # |<q1, q2>| = cos(angle / 2)
        best[i:i + chunk] = dots.max(axis=1)
    dist = np.degrees(2.0 * np.arccos(np.clip(best, -1.0, 1.0)))
    return float(np.max(dist) if quantile >= 1.0 else np.quantile(dist, quantile))
