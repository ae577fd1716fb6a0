"""Prompts: a small sub-tomogram around one particle, resampled to the model's voxel size.

Pure functions (arrays in, arrays out). Reading tomograms and writing prompt files live in
:mod:`tomopick.prompt.promptfile` and :mod:`tomopick.workflows.prompt`.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

DEFAULT_BOX = 37
DEFAULT_VOXEL_SIZE_A = 10.0


def sample_box(volume: np.ndarray, center_zyx_vox: Sequence[float], size: int, step_vox: float | Sequence[float] = 1.0,
               order: int = 1) -> np.ndarray:
    """Resample a cubic box ``(size, size, size)`` centred on a (fractional) voxel position.

    Parameters
    ----------
    volume
        ``(z, y, x)`` array.
    center_zyx_vox
        Box centre in voxel coordinates of ``volume`` ``(z, y, x)``; the box's central voxel (index ``size // 2``)
        lands exactly there.
    size
        Box edge in output voxels.
    step_vox
        Spacing of output voxels in input voxels, per axis ``(z, y, x)`` or one number (``target_voxel_size_A /
        volume_voxel_size_A``; 1 = no resampling).
    order
        Spline order (1: trilinear). Outside the volume, values are mirrored (``mode="mirror"``).

    Returns
    -------
    numpy.ndarray
        float32 ``(size, size, size)``.
    """
    step = np.broadcast_to(np.asarray(step_vox, dtype=np.float64), (3,))
    centre = np.asarray(center_zyx_vox, dtype=np.float64).reshape(3)
    offsets = np.arange(size, dtype=np.float64) - size // 2
    grids = np.meshgrid(*[centre[a] + offsets * step[a] for a in range(3)], indexing="ij")
    if step.max() > 1.0 + 1e-6:  # downsampling: low-pass first so that the result is not aliased
        sigma = np.maximum((step - 1.0) / 2.0, 0.0)
        volume = ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), sigma=sigma)
    out = ndimage.map_coordinates(np.asarray(volume, dtype=np.float32), grids, order=order, mode="mirror")
    return out.astype(np.float32, copy=False)


def box_bounds(center_zyx_vox: Sequence[float], size: int, step_vox: float | Sequence[float], shape_zyx: Sequence[int],
               margin: int = 2) -> tuple[tuple[slice, slice, slice], np.ndarray]:
    """The region of a volume that :func:`sample_box` needs, as slices plus the region's origin (voxels).

    Lets callers read only that part of a lazy tomogram: ``sample_box(tomo.region(sl), center - origin, …)``.
    """
    step = np.broadcast_to(np.asarray(step_vox, dtype=np.float64), (3,))
    centre = np.asarray(center_zyx_vox, dtype=np.float64).reshape(3)
    half = (size // 2 + 1) * step + margin + np.maximum((step - 1.0) * 2.0, 0)
    lo = np.clip(np.floor(centre - half).astype(int), 0, np.asarray(shape_zyx) - 1)
    hi = np.clip(np.ceil(centre + half).astype(int) + 1, lo + 1, np.asarray(shape_zyx))
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi)), lo.astype(np.float64)  # type: ignore[return-value]
