"""Ångström ↔ voxel conversions — the only place they happen.

Pick coordinates are ``(x, y, z)`` in Å with the origin at the centre of voxel ``(0, 0, 0)`` (copick and the
CZII portal). Voxel indices are ``(z, y, x)`` like the arrays. Voxel sizes are given per axis in ``(z, y, x)``
order, or as one number for isotropic volumes.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

VoxelSize = float | Sequence[float]


def voxel_size_zyx(voxel_size_A: VoxelSize) -> np.ndarray:
    """Normalise a voxel size (one number or ``(z, y, x)``) to a float array ``(3,)`` in Å, all > 0."""
    vs = np.broadcast_to(np.asarray(voxel_size_A, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(vs)) or np.any(vs <= 0):
        raise ValueError(f"voxel size must be positive and finite, got {vs.tolist()} Å")
    return vs


def angstrom_to_voxel(xyz_A: np.ndarray, voxel_size_A: VoxelSize) -> np.ndarray:
    """Continuous voxel coordinates ``(n, 3)`` in ``(z, y, x)`` order from positions ``(n, 3)`` ``(x, y, z)`` in Å."""
    xyz = np.asarray(xyz_A, dtype=np.float64).reshape(-1, 3)
    return xyz[:, ::-1] / voxel_size_zyx(voxel_size_A)


def angstrom_to_index(xyz_A: np.ndarray, voxel_size_A: VoxelSize) -> np.ndarray:
    """Nearest voxel indices ``(n, 3)`` int64 ``(z, y, x)`` of positions ``(n, 3)`` ``(x, y, z)`` in Å."""
    return np.rint(angstrom_to_voxel(xyz_A, voxel_size_A)).astype(np.int64)


def voxel_to_angstrom(zyx_vox: np.ndarray, voxel_size_A: VoxelSize) -> np.ndarray:
    """Positions ``(n, 3)`` ``(x, y, z)`` in Å from voxel coordinates ``(n, 3)`` ``(z, y, x)`` (may be fractional)."""
    zyx = np.asarray(zyx_vox, dtype=np.float64).reshape(-1, 3)
    return (zyx * voxel_size_zyx(voxel_size_A))[:, ::-1].copy()


def inside_volume(xyz_A: np.ndarray, shape_zyx: Sequence[int], voxel_size_A: VoxelSize) -> np.ndarray:
    """Boolean ``(n,)``: which positions fall inside a volume of ``shape_zyx`` (voxel centres at 0 … n-1,
    each voxel extending ±0.5 voxel)."""
    vox = angstrom_to_voxel(xyz_A, voxel_size_A)
    shape = np.asarray(shape_zyx, dtype=np.float64)
    return np.all((vox >= -0.5) & (vox < shape - 0.5), axis=1)


def volume_extent_A(shape_zyx: Sequence[int], voxel_size_A: VoxelSize) -> np.ndarray:
    """Physical size ``(x, y, z)`` in Å of a volume of ``shape_zyx`` voxels."""
    return (np.asarray(shape_zyx, dtype=np.float64) * voxel_size_zyx(voxel_size_A))[::-1].copy()
