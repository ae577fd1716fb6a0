"""Galleries of picks and per-class averages: small views around pick centres, and which picks to show.

Pure functions on arrays (no file I/O). Volumes are ``(z, y, x)`` array-likes; centres are voxel coordinates
``(z, y, x)``; sizes in voxels.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def extract_box(volume: Any, centre_zyx: np.ndarray, half: int) -> np.ndarray:
    """The cube of side ``2 * half + 1`` voxels centred on the voxel nearest ``centre_zyx``, float32; parts outside
    the volume are filled with NaN."""
    size = 2 * int(half) + 1
    out = np.full((size, size, size), np.nan, dtype=np.float32)
    centre = np.rint(np.asarray(centre_zyx, dtype=np.float64)).astype(np.int64)
    src, dst = [], []
    for axis in range(3):
        lo = int(centre[axis]) - half
        a, b = max(lo, 0), min(lo + size, int(volume.shape[axis]))
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - lo, b - lo))
    out[tuple(dst)] = np.asarray(volume[tuple(src)], dtype=np.float32)
    return out


def pick_view(volume: Any, centre_zyx: np.ndarray, half: int, depth_half: int) -> np.ndarray:
    """A ``(2 half + 1)²`` view of one pick: the mean over ``2 depth_half + 1`` slices around its centre (the same
    kind of slab as the overview), NaN outside the volume."""
    box = extract_box(volume, centre_zyx, half)
    mid = half
    part = box[max(mid - depth_half, 0):mid + depth_half + 1]
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(part).sum(axis=0)
        total = np.nansum(part, axis=0)
    return np.where(counts > 0, total / np.maximum(counts, 1), np.nan).astype(np.float32)


def average_boxes(volume: Any, centres_zyx: np.ndarray, half: int) -> tuple[np.ndarray, int]:
    """The voxel-wise mean of the cubes around ``centres_zyx`` ``(n, 3)`` (voxels outside the volume do not count)
    and the number of cubes; an empty set gives a NaN cube and 0."""
    size = 2 * int(half) + 1
    total = np.zeros((size, size, size), dtype=np.float64)
    counts = np.zeros((size, size, size), dtype=np.int64)
    centres = np.asarray(centres_zyx, dtype=np.float64).reshape(-1, 3)
    for c in centres:
        box = extract_box(volume, c, half)
        ok = np.isfinite(box)
        total[ok] += box[ok]
        counts += ok
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(counts > 0, total / np.maximum(counts, 1), np.nan)
    return mean.astype(np.float32), len(centres)


def central_slices(cube: np.ndarray) -> dict[str, np.ndarray]:
    """The central slices of a cube ``(z, y, x)``: ``"xy"`` (constant z), ``"xz"`` (constant y), ``"yz"``
    (constant x)."""
    cz, cy, cx = (s // 2 for s in cube.shape)
    return {"xy": cube[cz], "xz": cube[:, cy, :], "yz": cube[:, :, cx]}


def gallery_indices(scores: np.ndarray, n: int) -> dict[str, np.ndarray]:
    """Which picks to show: the ``n`` highest scores, the ``n`` around the median and the ``n`` lowest, each in
    decreasing score (indices into ``scores``; NaN scores rank lowest). Groups do not overlap: with fewer than
    ``3 n`` picks the middle and low groups take what is left."""
    s = np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=-np.inf)
    order = np.argsort(-s, kind="stable")
    total = len(order)
    top = order[:n]
    rest = order[len(top):]
    low = rest[max(len(rest) - n, 0):] if len(rest) > n else np.zeros(0, dtype=np.int64)
    middle_pool = rest[: len(rest) - len(low)]
    if len(middle_pool) > n:
        mid = total // 2 - len(top)  # the median's position within the pool
        start = int(np.clip(mid - n // 2, 0, len(middle_pool) - n))
        middle = middle_pool[start:start + n]
    else:
        middle = middle_pool
    return {"top": top, "median": middle, "lowest": low}


def spread_indices(n_total: int, n: int) -> np.ndarray:
    """``n`` indices spread evenly over ``range(n_total)`` (all of them when ``n_total <= n``)."""
    if n_total <= n:
        return np.arange(n_total)
    return np.unique(np.linspace(0, n_total - 1, n).round().astype(np.int64))
