"""Å ↔ voxel conversions (origin at the centre of voxel 0; (x, y, z) positions vs (z, y, x) indices)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data import angstrom_to_index, angstrom_to_voxel, inside_volume, voxel_to_angstrom
from tomopick.data.coords import volume_extent_A, voxel_size_zyx


def test_axis_order_and_isotropic():
    xyz = np.array([[10.0, 20.0, 30.0]])
    np.testing.assert_allclose(angstrom_to_voxel(xyz, 10.0), [[3.0, 2.0, 1.0]])  # (z, y, x)
    np.testing.assert_allclose(voxel_to_angstrom([[3.0, 2.0, 1.0]], 10.0), xyz)


def test_anisotropic_voxel_sizes():
    vs = (2.0, 4.0, 8.0)  # z, y, x
    xyz = np.array([[16.0, 8.0, 4.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(angstrom_to_voxel(xyz, vs), [[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(voxel_to_angstrom(angstrom_to_voxel(xyz, vs), vs), xyz)
    np.testing.assert_allclose(volume_extent_A((10, 20, 30), vs), [240.0, 80.0, 20.0])


def test_rounding_to_index():
    # 14.9 Å at 10 Å/voxel is 1.49 voxels → index 1; 15.1 → 2; -4 Å → -0.4 → 0
    idx = angstrom_to_index(np.array([[14.9, 15.1, -4.0]]), 10.0)
    assert idx.dtype == np.int64
    np.testing.assert_array_equal(idx, [[0, 2, 1]])


def test_inside_volume_edges():
    # voxels extend ±0.5: x in [-5, 95) Å for 10 voxels of 10 Å
    xyz = np.array([[-5.0, 0, 0], [-5.01, 0, 0], [94.99, 0, 0], [95.0, 0, 0], [0, 0, 24.9]])
    np.testing.assert_array_equal(inside_volume(xyz, (3, 10, 10), 10.0), [True, False, True, False, True])
    assert not inside_volume(np.array([[0, 0, 25.0]]), (3, 10, 10), 10.0)[0]


@pytest.mark.parametrize("bad", [0.0, -1.0, np.nan, (1.0, 0.0, 1.0)])
def test_voxel_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="positive"):
        voxel_size_zyx(bad)
