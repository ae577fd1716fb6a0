"""Rotation conventions: storage round trip, R = Rz·Ry·Rz, and the per-format conversions."""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from tomopick.data.rotations import (
    dynamo_angles_to_matrix,
    euler_zyz_to_matrix,
    matrix_to_dynamo_angles,
    matrix_to_euler_zyz,
    matrix_to_relion_angles,
    random_rotations,
    relion_angles_to_matrix,
    rotation_angle_deg,
)


def _rz(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _ry(a):
    c, s = np.cos(np.radians(a)), np.sin(np.radians(a))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def test_stored_angles_define_active_zyz():
    rot, tilt, psi = 30.0, 50.0, -70.0
    want = _rz(rot) @ _ry(tilt) @ _rz(psi)
    np.testing.assert_allclose(euler_zyz_to_matrix([rot, tilt, psi])[0], want, atol=1e-12)
    # R rotates the reference into the particle: the reference x axis goes to R[:, 0]
    np.testing.assert_allclose(euler_zyz_to_matrix([90, 0, 0])[0] @ [1, 0, 0], [0, 1, 0], atol=1e-12)


def test_round_trips(rng):
    mats = random_rotations(50, rng)
    for fwd, back in ((matrix_to_euler_zyz, euler_zyz_to_matrix), (matrix_to_relion_angles, relion_angles_to_matrix),
                      (matrix_to_dynamo_angles, dynamo_angles_to_matrix)):
        np.testing.assert_allclose(back(fwd(mats)), mats, atol=1e-10)
    angles = matrix_to_euler_zyz(mats)
    assert np.all((angles[:, 1] >= 0) & (angles[:, 1] <= 180))
    assert rotation_angle_deg(mats, mats).max() < 1e-4


def test_relion_matrix_is_euler_angles2matrix():
    """RELION's Euler_angles2matrix (written out from its definition) maps reference to particle = R."""
    rot, tilt, psi = np.radians([20.0, 40.0, 60.0])
    ca, sa, cb, sb, cg, sg = np.cos(rot), np.sin(rot), np.cos(tilt), np.sin(tilt), np.cos(psi), np.sin(psi)
    cc, cs, sc, ss = cb * ca, cb * sa, sb * ca, sb * sa
    relion_a = np.array([[cg * cc - sg * sa, cg * cs + sg * ca, -cg * sb],
                         [-sg * cc - cg * sa, -sg * cs + cg * ca, sg * sb],
                         [sc, ss, cb]])
    np.testing.assert_allclose(relion_angles_to_matrix([20.0, 40.0, 60.0])[0], relion_a, atol=1e-12)


def test_known_dynamo_relion_pair():
    dynamo = [-47.2730, 1.1777, -132.3000]
    relion = [137.7000, 1.1777, 42.7270]
    np.testing.assert_allclose(dynamo_angles_to_matrix(dynamo), relion_angles_to_matrix(relion), atol=1e-12)
    np.testing.assert_allclose(matrix_to_relion_angles(dynamo_angles_to_matrix(dynamo))[0], relion, atol=1e-9)
    # Dynamo's own rotation matrix for (30, 60, 75) (dynamo_euler2matrix) is the inverse of R
    dyn = np.array([[-0.0173, -0.5477, 0.8365], [0.9012, -0.3709, -0.2241], [0.4330, 0.7500, 0.5000]])
    np.testing.assert_allclose(dynamo_angles_to_matrix([30, 60, 75])[0].T, dyn, atol=1e-4)
    assert np.allclose(Rotation.from_matrix(dyn).as_matrix(), dyn, atol=1e-3)
