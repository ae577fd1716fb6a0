"""Orientation conventions, in one place.

A particle's orientation is the rotation matrix ``R`` (3×3, acting on ``(x, y, z)`` column vectors) that
rotates the reference into the particle: ``particle_xyz = R @ reference_xyz``. This is the upper-left block of
copick's 4×4 ``transformation_``.

:class:`~tomopick.data.Picks` stores it as ZYZ Euler angles in degrees under the RELION names
``rot_deg, tilt_deg, psi_deg`` with ``R = Rz(rot) · Ry(tilt) · Rz(psi)`` (active, intrinsic ZYZ). These stored
angles are an internal encoding of ``R``, not a file format's angles: file formats are converted in
:mod:`tomopick.io` with the per-format functions at the end of this module, which follow the formats' own
definitions (cross-checked with copick 1.31's converters and a known RELION/Dynamo pair of equivalent angles):

* RELION ``rlnAngleRot/Tilt/Psi``: RELION's ``Euler_angles2matrix`` ``A`` maps reference to particle, and
  ``A = Rotation.from_euler("ZYZ", angles).inv()``, so ``R = A`` (:func:`relion_angles_to_matrix`).
* Dynamo ``tdrot, tilt, narot``: Dynamo's ``dynamo_euler2matrix`` is ``Rotation.from_euler("zxz", angles)``
  (extrinsic) and maps particle to reference, so ``R`` is its inverse (:func:`dynamo_angles_to_matrix`).
* copick: ``R`` is the upper-left 3×3 of ``transformation_``.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


def euler_zyz_to_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """ZYZ Euler angles ``(n, 3)`` as ``(rot, tilt, psi)`` in degrees → rotation matrices ``(n, 3, 3)``."""
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_euler("ZYZ", angles, degrees=True).as_matrix().reshape(-1, 3, 3)


def matrix_to_euler_zyz(matrices: np.ndarray) -> np.ndarray:
    """Rotation matrices ``(n, 3, 3)`` → ZYZ Euler angles ``(n, 3)`` ``(rot, tilt, psi)`` in degrees.

    ``tilt`` is in [0, 180]; ``rot`` and ``psi`` in (-180, 180]. Matrices are re-orthonormalised first.
    """
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    import warnings

    with warnings.catch_warnings():  # gimbal lock (tilt 0/180) is fine: psi absorbs the freedom
        warnings.simplefilter("ignore", UserWarning)
        return Rotation.from_matrix(mats).as_euler("ZYZ", degrees=True).reshape(-1, 3)


def random_rotations(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` rotation matrices ``(n, 3, 3)`` drawn uniformly from SO(3) with the given generator."""
    return Rotation.random(n, random_state=rng).as_matrix().reshape(-1, 3, 3)


def rotation_angle_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle in degrees of the rotation taking ``a`` to ``b`` for matrices ``(n, 3, 3)``."""
    rel = np.einsum("nji,njk->nik", np.asarray(a).reshape(-1, 3, 3), np.asarray(b).reshape(-1, 3, 3))
    cos = (np.trace(rel, axis1=1, axis2=2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


# -- per-format conventions (used by tomopick.io only) ---------------------------------------------------------
def _quiet(fn, *args):
    import warnings

    with warnings.catch_warnings():  # gimbal lock is fine: the remaining angle absorbs the freedom
        warnings.simplefilter("ignore", UserWarning)
        return fn(*args)


def relion_angles_to_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """RELION ``(rlnAngleRot, rlnAngleTilt, rlnAnglePsi)`` ``(n, 3)`` in degrees → ``R`` ``(n, 3, 3)``
    (reference → particle; equals RELION's ``Euler_angles2matrix``)."""
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_euler("ZYZ", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def matrix_to_relion_angles(matrices: np.ndarray) -> np.ndarray:
    """``R`` ``(n, 3, 3)`` → RELION ``(rot, tilt, psi)`` ``(n, 3)`` in degrees (tilt in [0, 180])."""
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    return _quiet(lambda m: Rotation.from_matrix(m).inv().as_euler("ZYZ", degrees=True), mats).reshape(-1, 3)


def dynamo_angles_to_matrix(angles_deg: np.ndarray) -> np.ndarray:
    """Dynamo ``(tdrot, tilt, narot)`` ``(n, 3)`` in degrees → ``R`` ``(n, 3, 3)`` (reference → particle)."""
    angles = np.asarray(angles_deg, dtype=np.float64).reshape(-1, 3)
    return Rotation.from_euler("zxz", angles, degrees=True).inv().as_matrix().reshape(-1, 3, 3)


def matrix_to_dynamo_angles(matrices: np.ndarray) -> np.ndarray:
    """``R`` ``(n, 3, 3)`` → Dynamo ``(tdrot, tilt, narot)`` ``(n, 3)`` in degrees (tilt in [0, 180])."""
    mats = np.asarray(matrices, dtype=np.float64).reshape(-1, 3, 3)
    return _quiet(lambda m: Rotation.from_matrix(m).inv().as_euler("zxz", degrees=True), mats).reshape(-1, 3)
