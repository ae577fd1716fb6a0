"""Cut cubic subvolumes out of a tomogram at pick positions, optionally binned.

The volume is any ``(z, y, x)`` array with numpy slicing (in memory, ``numpy.memmap``, ``zarr.Array``): only the
regions around the picks are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Subvolumes:
    """Extracted boxes.

    Attributes
    ----------
    data
        ``(n, b, b, b)`` float32 boxes ``(z, y, x)`` on the binned grid; the pick sits at index ``b // 2``
        (for even ``bin`` half an unbinned voxel before it). Voxels outside the tomogram hold the mean of the
        voxels inside the box.
    centers_zyx_vox
        ``(n, 3)`` integer centres used, in **unbinned** tomogram voxels ``(z, y, x)`` (the picks rounded).
    inside_fraction
        ``(n,)`` fraction of each box that lies inside the tomogram.
    bin
        Binning factor: the boxes' voxel size is ``bin`` × the tomogram's.
    """

    data: np.ndarray
    centers_zyx_vox: np.ndarray
    inside_fraction: np.ndarray
    bin: int


def extract_subvolumes(volume: Any, centers_zyx_vox: np.ndarray, box: int, bin: int = 1) -> Subvolumes:
    """Boxes of ``box³`` binned voxels around each centre.

    Parameters
    ----------
    volume
        ``(Z, Y, X)`` array-like.
    centers_zyx_vox
        ``(n, 3)`` centres in tomogram voxels ``(z, y, x)`` (rounded to the nearest voxel).
    box
        Edge of the output boxes in binned voxels (≥ 4).
    bin
        Binning factor ≥ 1: each output voxel is the mean of ``bin³`` tomogram voxels.
    """
    if box < 4:
        raise ValueError(f"box must be at least 4 voxels, got {box}")
    if bin < 1:
        raise ValueError(f"bin must be at least 1, got {bin}")
    shape = np.asarray(volume.shape[:3], dtype=np.int64)
    centers = np.rint(np.asarray(centers_zyx_vox, dtype=np.float64).reshape(-1, 3)).astype(np.int64)
    n = len(centers)
    edge = box * bin
    out = np.empty((n, box, box, box), dtype=np.float32)
    inside = np.zeros(n)
    for i, c in enumerate(centers):
        start = c - (box // 2) * bin - bin // 2
        stop = start + edge
        lo = np.clip(start, 0, shape)
        hi = np.clip(stop, 0, shape)
        region = np.empty((edge, edge, edge), dtype=np.float32)
        if np.all(hi > lo):
            part = np.asarray(volume[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float32)
            fill = float(part.mean())
            region.fill(fill)
            o = lo - start
            region[o[0]:o[0] + part.shape[0], o[1]:o[1] + part.shape[1], o[2]:o[2] + part.shape[2]] = part
            inside[i] = part.size / region.size
        else:
            region.fill(0.0)
        if bin > 1:
            region = region.reshape(box, bin, box, bin, box, bin).mean(axis=(1, 3, 5))
        out[i] = region
    return Subvolumes(data=out, centers_zyx_vox=centers, inside_fraction=inside, bin=int(bin))


def bin_volume(volume: np.ndarray, bin: int) -> np.ndarray:
    """A cubic ``(b, b, b)`` map binned by ``bin`` (block means; ``b`` is cropped to a multiple of ``bin``
    around its centre so that voxel ``b // 2`` maps onto voxel ``(b // bin) // 2``)."""
    if bin == 1:
        return np.asarray(volume, dtype=np.float32)
    b = volume.shape[0]
    nb = b // bin
    start = b // 2 - (nb // 2) * bin - bin // 2
    start = max(0, min(start, b - nb * bin))
    v = np.asarray(volume, dtype=np.float32)[start:start + nb * bin, start:start + nb * bin, start:start + nb * bin]
    return v.reshape(nb, bin, nb, bin, nb, bin).mean(axis=(1, 3, 5))


def fit_box(volume: np.ndarray, box: int) -> np.ndarray:
    """A cubic map cropped or padded (with its edge mean) to ``box³`` about its centre voxel ``b // 2``."""
    v = np.asarray(volume, dtype=np.float32)
    b = v.shape[0]
    if b == box:
        return v.copy()
    if b > box:
        s = b // 2 - box // 2
        return v[s:s + box, s:s + box, s:s + box].copy()
    edge = np.concatenate([v[0].ravel(), v[-1].ravel(), v[:, 0].ravel(), v[:, -1].ravel(),
                           v[:, :, 0].ravel(), v[:, :, -1].ravel()])
    out = np.full((box, box, box), float(edge.mean()), dtype=np.float32)
    s = box // 2 - b // 2
    out[s:s + b, s:s + b, s:s + b] = v
    return out
