"""Peak extraction over a score map too large to hold: z-slabs with a halo, merged (bounded memory)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from tomopick.peaks.core import Peaks, find_peaks, halo_vox, suppress_close


def find_peaks_slabs(read: Callable[[int, slice], np.ndarray], shape: Sequence[int], method: str = "maxpool", *,
                     threshold: float | Sequence[float] = 0.5, radius_vox: float | Sequence[float] = 5.0,
                     distance_factor: float = 0.75, mask: np.ndarray | None = None, device: str | None = None,
                     slab_voxels: int = 1 << 26) -> Peaks:
    """:func:`~tomopick.peaks.core.find_peaks` on a ``(C, z, y, x)`` score map read one channel-slab at a time.

    Parameters
    ----------
    read
        ``read(channel, z_slice) -> (z, y, x) float32`` (e.g. :meth:`tomopick.inference.sliding.ScoreStore.read`).
    shape
        ``(C, z, y, x)``.
    threshold, radius_vox
        One value or one per channel (radius in voxels of the score map).
    mask
        Optional ``(z, y, x)`` boolean array-like (sliced per slab).
    slab_voxels
        Voxels per slab including the halo (the memory bound: about 8 bytes each).

    Returns
    -------
    Peaks
        Positions in voxels of the whole map. Each slab keeps the peaks of its core (z in ``[z0, z1)``); the halo
        (:func:`~tomopick.peaks.core.halo_vox`) makes them the peaks the whole map would give, and a final
        distance suppression removes any duplicate across slab borders.
    """
    n_ch, nz, ny, nx = (int(s) for s in shape)
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n_ch,))
    radii = np.broadcast_to(np.asarray(radius_vox, dtype=np.float64), (n_ch,))
    found = []
    for c in range(n_ch):
        halo = halo_vox(method, float(radii[c]), distance_factor)
        depth = max(8, int(slab_voxels // max(1, ny * nx)) - 2 * halo)
        for z0 in range(0, nz, depth):
            z1 = min(nz, z0 + depth)
            lo, hi = (0, nz) if depth >= nz else (max(0, z0 - halo), min(nz, z1 + halo))
            slab = read(c, slice(lo, hi))
            if slab.size == 0 or not float(slab.max()) >= thresholds[c]:
                continue
            sub_mask = None if mask is None else np.asarray(mask[lo:hi])
            p = find_peaks(slab, method, threshold=float(thresholds[c]), radius_vox=float(radii[c]),
                           distance_factor=distance_factor, mask=sub_mask, device=device)
            p = p.shifted((lo, 0, 0))
            if z0 > 0 or z1 < nz:
                p = p.select((p.zyx[:, 0] >= z0 - 0.5) & (p.zyx[:, 0] < z1 - 0.5))
            found.append(Peaks(p.zyx, p.score, np.full(len(p), c, dtype=np.int64)))
    peaks = Peaks.concat(found)
    if method != "cc" and len(peaks):
        merged = [suppress_close(peaks.select(peaks.channel == c), distance_factor * float(radii[c]))
                  for c in range(n_ch)]
        peaks = Peaks.concat(merged)
    return peaks.sorted()
