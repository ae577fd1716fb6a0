"""Where the specimen is along z: the ice slab, found cheaply and conservatively from per-slice statistics.

A tomogram reconstructed thicker than its specimen has z-slices of vacuum above and below the ice. They hold no
particles, so the network need not run there (``tomopick pick --skip-vacuum``). Vacuum is featureless: after
averaging ``bin × bin`` pixel blocks of a slice its noise shrinks by ~``bin``, while the structure of ice, membranes
and particles survives. :func:`slice_structure` measures that per slice; :func:`slab_extent` keeps every slice
from the first to the last whose structure clearly rises above the vacuum floor, widened by a margin, and finds no
vacuum at all (the whole range) unless the contrast between the two is unambiguous.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tomopick.inference.normalize import RobustStats

#: The slab's structure must be at least this many times the vacuum floor for any slice to count as vacuum.
MIN_CONTRAST = 1.5
#: A slice belongs to the slab when its structure exceeds floor + this fraction of (slab level − floor).
LEVEL_FRACTION = 0.25


@dataclass(frozen=True)
class SlabExtent:
    """Half-open z-range ``[z0, z1)`` of slices to run the network on, out of ``n`` slices."""

    z0: int
    z1: int
    n: int
    contrast: float

    @property
    def skipped(self) -> int:
        """Slices outside the range."""
        return self.n - (self.z1 - self.z0)


def slice_structure(source: Any, stats: RobustStats, *, bin_xy: int = 4, clip: float = 5.0) -> np.ndarray:
    """Per z-slice: the standard deviation of the robustly normalised slice after ``bin_xy × bin_xy`` block
    averaging in y, x (white noise shrinks ~``bin_xy``×, structure stays). ``source`` ``(z, y, x)``; returns
    ``(z,)`` float64. Reads each slice once."""
    nz, ny, nx = (int(s) for s in source.shape)
    by, bx = ny // bin_xy * bin_xy, nx // bin_xy * bin_xy
    out = np.zeros(nz, dtype=np.float64)
    if by == 0 or bx == 0:
        return out
    from tomopick.inference.normalize import _chunk_depth

    depth = _chunk_depth(source)  # whole storage chunks at a time (zarr: decompressed once), else 8-slice blocks
    depth = max(1, min(depth if depth > 1 else 8, (512 << 20) // (4 * by * bx)))
    for z0 in range(0, nz, depth):
        block = np.asarray(source[z0 : z0 + depth, :by, :bx], dtype=np.float32)
        for i, plane in enumerate(block):
            s = np.clip(np.nan_to_num((plane - stats.center) / stats.scale, nan=0.0, posinf=clip, neginf=-clip),
                        -clip, clip)
            out[z0 + i] = float(s.reshape(by // bin_xy, bin_xy, bx // bin_xy, bin_xy).mean(axis=(1, 3)).std())
    return out


def slab_extent(source: Any, stats: RobustStats, *, margin_vox: int = 16, bin_xy: int = 4) -> SlabExtent:
    """The z-range of the specimen slab of a ``(z, y, x)`` volume, widened by ``margin_vox`` slices per side.

    Conservative: every slice between the first and last slab slice is kept; the whole range is returned when the
    slab's structure is not at least :data:`MIN_CONTRAST` × the quietest slices' (no clear vacuum)."""
    nz = int(source.shape[0])
    profile = slice_structure(source, stats, bin_xy=bin_xy)
    if nz < 3 or not np.any(profile > 0):
        return SlabExtent(0, nz, nz, 1.0)
    floor = float(np.quantile(profile, 0.05))
    level = float(np.quantile(profile, 0.95))
    contrast = level / floor if floor > 0 else float("inf")
    if contrast < MIN_CONTRAST:
        return SlabExtent(0, nz, nz, contrast)
    inside = np.flatnonzero(profile > floor + LEVEL_FRACTION * (level - floor))
    z0 = max(0, int(inside[0]) - int(margin_vox))
    z1 = min(nz, int(inside[-1]) + 1 + int(margin_vox))
    return SlabExtent(z0, z1, nz, contrast)
