"""Resampling a tomogram to the model's voxel size, slab by slab (bounded memory), keeping the Å convention.

Voxel ``i`` of a volume with voxel size ``v`` sits at ``i · v`` Å (origin at the centre of voxel 0), so output
voxel ``o`` (voxel size ``w``) samples the input at the continuous index ``o · w / v``. Interpolation is
separable linear (trilinear); when downsampling, the input is first smoothed with a Gaussian of
``σ = (w/v − 1) / 2`` input voxels per axis (scikit-image's anti-aliasing rule) to limit aliasing.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from tomopick.data.coords import voxel_size_zyx
from tomopick.errors import TomopickError

#: Allowed ratio ``tomogram voxel size / model voxel size`` per axis (beyond this, resample the data first).
DEFAULT_RANGE = (0.5, 2.0)
#: Ratios within this relative tolerance of 1 are not resampled (the model copes with a 1 % scale change).
DEFAULT_TOLERANCE = 0.01


def rescale_factors(src_voxel_size_A: Any, dst_voxel_size_A: Any, *, allowed: Sequence[float] = DEFAULT_RANGE,
                    tolerance: float = DEFAULT_TOLERANCE, source: str | None = None) -> np.ndarray | None:
    """Zoom factors ``(z, y, x)`` = source / target voxel size, or ``None`` when no resampling is needed.

    Raises
    ------
    TomopickError
        When a factor is outside ``allowed`` (one line naming ``source``).
    """
    src = voxel_size_zyx(src_voxel_size_A)
    dst = voxel_size_zyx(dst_voxel_size_A)
    factors = src / dst
    lo, hi = allowed
    if np.any(factors < lo - 1e-9) or np.any(factors > hi + 1e-9):
        raise TomopickError(
            f"voxel size {_fmt(src)} Å is too far from the model's {_fmt(dst)} Å (ratio {_fmt(factors)}, "
            f"allowed {lo:g}-{hi:g}); resample the tomogram or pass the right --voxel-size", source)
    if np.all(np.abs(factors - 1.0) <= tolerance):
        return None
    return factors


def _fmt(values: np.ndarray) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values[0]:.4g}" if np.allclose(values, values[0]) else "/".join(f"{v:.4g}" for v in values)


def rescaled_shape(shape_zyx: Sequence[int], factors_zyx: Sequence[float]) -> tuple[int, int, int]:
    """Output shape covering the same extent: ``floor((n − 1) · f) + 1`` voxels per axis."""
    return tuple(int(math.floor((n - 1) * f + 1e-6)) + 1 for n, f in zip(shape_zyx, factors_zyx))  # type: ignore


def _linear_axis(array: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``array`` along ``axis`` at fractional ``positions`` (clamped to the edges)."""
    n = array.shape[axis]
    pos = np.clip(positions, 0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)
    shape = [1] * array.ndim
    shape[axis] = len(pos)
    w = w.reshape(shape)
    a0 = np.take(array, i0, axis=axis)
    a1 = np.take(array, i1, axis=axis)
    return a0 * (1 - w) + a1 * w


def rescale_slab(source: Any, factors_zyx: Sequence[float], out_z: tuple[int, int]) -> np.ndarray:
    """Output planes ``out_z[0] … out_z[1]-1`` of ``source`` resampled by ``factors_zyx`` (output/input voxels).

    Reads only the input planes needed (plus the smoothing support). Returns float32 ``(z, y', x')``.
    """
    from scipy.ndimage import gaussian_filter1d

    fz, fy, fx = (float(f) for f in factors_zyx)
    nz, ny, nx = (int(s) for s in source.shape)
    out_shape = rescaled_shape((nz, ny, nx), (fz, fy, fx))
    o = np.arange(out_z[0], out_z[1])
    pos_z = o / fz
    sigmas = [max(0.0, (1.0 / f - 1.0) / 2.0) for f in (fz, fy, fx)]
    halo = int(math.ceil(4 * sigmas[0])) + 1
    z0 = max(0, int(math.floor(pos_z.min())) - halo)
    z1 = min(nz, int(math.ceil(pos_z.max())) + 1 + halo)
    block = np.array(source[z0:z1], dtype=np.float32)
    finite = np.isfinite(block)
    if not finite.all():  # allowed NaN/Inf: fill with the median so that smoothing does not spread them
        block[~finite] = np.median(block[finite]) if finite.any() else 0.0
    for axis, sigma in enumerate(sigmas):
        if sigma > 0.05:
            block = gaussian_filter1d(block, sigma, axis=axis, mode="nearest", truncate=4.0)
    block = _linear_axis(block, 0, pos_z - z0)
    block = _linear_axis(block, 1, np.arange(out_shape[1]) / fy)
    block = _linear_axis(block, 2, np.arange(out_shape[2]) / fx)
    return np.ascontiguousarray(block, dtype=np.float32)


def rescale_volume(source: Any, factors_zyx: Sequence[float], *, out: Any | None = None,
                   slab_depth: int = 32) -> Any:
    """Resample a whole ``(z, y, x)`` volume slab by slab into ``out`` (a preallocated array-like of
    :func:`rescaled_shape`, e.g. a disk memmap) or into a new float32 array. Returns ``out``."""
    shape = rescaled_shape(source.shape, factors_zyx)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif tuple(out.shape) != shape:
        raise ValueError(f"out has shape {tuple(out.shape)}, expected {shape}")
    for z0 in range(0, shape[0], slab_depth):
        z1 = min(shape[0], z0 + slab_depth)
        out[z0:z1] = rescale_slab(source, factors_zyx, (z0, z1))
    return out
