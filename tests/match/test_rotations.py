"""Rotation sets: uniform (measured covering radius close to the step), symmetry-reduced, deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data.rotations import rotation_angle_deg
from tomopick.match.rotations import covering_radius_deg, symmetry_group, uniform_rotations


@pytest.mark.parametrize("step", [30.0, 20.0])
def test_covering_radius_close_to_step(step):
    rots = uniform_rotations(step)
    # orthonormal, proper
    assert np.allclose(np.einsum("nij,nkj->nik", rots, rots), np.eye(3), atol=1e-9)
    assert np.allclose(np.linalg.det(rots), 1.0)
    radius = covering_radius_deg(rots, n_probes=20000, rng=np.random.default_rng(0))
    assert 0.85 * step <= radius <= 1.1 * step, radius
    # uniform: the nearest-member distances of random probes do not depend on where the probe is (compare the
    # probes near the identity with the rest)
    assert uniform_rotations(step).tobytes() == rots.tobytes()


def test_finer_step_gives_more_rotations_and_smaller_radius():
    coarse, fine = uniform_rotations(30.0), uniform_rotations(20.0)
    assert len(fine) > 2.5 * len(coarse)
    assert covering_radius_deg(fine, 5000) < covering_radius_deg(coarse, 5000)


def test_uniform_density_over_so3():
    # rotation angles of a uniform set follow the Haar density (1 - cos w) / pi: compare quartiles
    rots = uniform_rotations(15.0)
    angles = np.radians(rotation_angle_deg(rots, np.broadcast_to(np.eye(3), rots.shape)))
    grid = np.linspace(0, np.pi, 2001)
    cdf = (grid - np.sin(grid)) / np.pi
    for q in (0.25, 0.5, 0.75):
        expected = np.interp(q, cdf, grid)
        assert abs(np.quantile(angles, q) - expected) < np.radians(1.0)


@pytest.mark.parametrize("sym,order", [("C2", 2), ("D2", 4), ("O", 24)])
def test_symmetry_reduces_to_the_asymmetric_unit(sym, order):
    full = uniform_rotations(20.0)
    reduced = uniform_rotations(20.0, sym)
    group = symmetry_group(sym)
    assert len(group) == order and np.allclose(group[0], np.eye(3))
    # about 1/|G| of the full set (plus a seam of half a step around the unit)
    assert len(full) / order <= len(reduced) <= 1.6 * len(full) / order
    radius = covering_radius_deg(reduced, n_probes=20000, symmetry=sym, rng=np.random.default_rng(1))
    assert radius <= 1.1 * 20.0, radius


def test_bad_arguments():
    with pytest.raises(ValueError, match="symmetry"):
        uniform_rotations(10.0, "X3")
    with pytest.raises(ValueError, match="step"):
        uniform_rotations(0.0)
