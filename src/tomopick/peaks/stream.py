"""Peak extraction over a score map too large to hold: 3D blocks with a halo, merged (bounded memory)."""

from __future__ import annotations

import inspect
import math
import threading
from typing import Callable, Sequence

import numpy as np

from tomopick.peaks.core import Peaks, Scratch, find_peaks, halo_vox, suppress_close
from tomopick.peaks.score import sphere_mean

#: Default voxels per block core: 32 M (128 MB as float32; the pooling methods hold ~4 such arrays).
DEFAULT_BLOCK_VOXELS = 1 << 25


def _cpu_workers() -> int:
    """torch's CPU thread count (what ``--threads`` sets), else 1."""
    try:
        import torch

        return max(1, int(torch.get_num_threads()))
    except ImportError:  # pragma: no cover - torch is a dependency
        return 1


def _takes_out(read: Callable[..., np.ndarray]) -> bool:
    """Whether ``read`` accepts ``out=`` (fills a given array)."""
    try:
        return "out" in inspect.signature(read).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return False


def block_grid(shape_zyx: Sequence[int], block_voxels: int, halo: int = 0) -> list[tuple[slice, slice, slice]]:
    """Core blocks tiling ``shape_zyx`` such that each block plus ``halo`` voxels per side holds at most about
    ``block_voxels`` voxels (one block when the whole volume fits)."""
    nz, ny, nx = (int(s) for s in shape_zyx)
    if nz * ny * nx <= block_voxels:
        return [(slice(0, nz), slice(0, ny), slice(0, nx))]
    edge = max(16, int(round(block_voxels ** (1 / 3))) - 2 * halo)
    bz = min(nz, edge)
    side = max(16, int(math.sqrt(block_voxels / (bz + 2 * halo))) - 2 * halo)
    by, bx = min(ny, side), min(nx, side)
    return [(slice(z, min(z + bz, nz)), slice(y, min(y + by, ny)), slice(x, min(x + bx, nx)))
            for z in range(0, nz, bz) for y in range(0, ny, by) for x in range(0, nx, bx)]


def find_peaks_blocks(read: Callable[[int, tuple[slice, slice, slice]], np.ndarray], shape: Sequence[int],
                      method: str = "maxpool", *, threshold: float | Sequence[float] = 0.5,
                      radius_vox: float | Sequence[float] = 5.0, distance_factor: float = 0.75,
                      mask: np.ndarray | None = None, device: str | None = None,
                      block_voxels: int = DEFAULT_BLOCK_VOXELS,
                      score_radius_vox: float | Sequence[float] | None = None,
                      floor: float | Sequence[float] | None = None, workers: int | None = None) -> Peaks:
    """:func:`~tomopick.peaks.core.find_peaks` on a ``(C, z, y, x)`` score map read one channel-block at a time.

    Parameters
    ----------
    read
        ``read(channel, (z, y, x) slices) -> float32 array`` (e.g. :meth:`~tomopick.inference.sliding.ScoreStore.read`);
        a reader with an ``out`` parameter (``read(channel, slices, out=array)``) fills a work array reused from
        block to block on the CPU.
    shape
        ``(C, z, y, x)``.
    threshold, radius_vox
        One value or one per channel (radius in voxels of the score map). ``threshold`` applies to the peaks'
        final score (the blob score when ``score_radius_vox`` is given).
    score_radius_vox
        One value or one per channel: score each peak by the mean of its channel over a sphere of this radius
        (:func:`~tomopick.peaks.score.sphere_mean`, the ``blob`` score) instead of its peak value. Peaks are then
        found at ``floor`` and kept where the blob score reaches ``threshold``.
    floor
        Peak-value floor of the candidates when rescoring (default: ``threshold``).
    mask
        Optional ``(z, y, x)`` boolean array-like (sliced per block).
    block_voxels
        Voxels per block core (the memory bound; the halo adds :func:`~tomopick.peaks.core.halo_vox` per side),
        shared by the workers.
    workers
        Channels processed in parallel threads on the CPU (default: torch's CPU threads); GPUs use one.

    Returns
    -------
    Peaks
        Positions in voxels of the whole map. Each block keeps the peaks of its core; the halo makes them the
        peaks the whole map would give, and a final distance suppression removes duplicates across borders.
    """
    n_ch = int(shape[0])
    dims = tuple(int(s) for s in shape[1:])
    thresholds = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (n_ch,))
    radii = np.broadcast_to(np.asarray(radius_vox, dtype=np.float64), (n_ch,))
    blob = None if score_radius_vox is None else np.broadcast_to(np.asarray(score_radius_vox, dtype=np.float64),
                                                                 (n_ch,))
    floors = thresholds if (floor is None or blob is None) else np.broadcast_to(np.asarray(floor, np.float64), (n_ch,))

    # Channels in parallel threads on the CPU (scipy's filters and numpy release the GIL; the peak stage was
    # single-threaded): the same peaks, in channel order; each worker's blocks are smaller so memory stays bounded.
    cpu = device in (None, "cpu")
    n_workers = max(1, min(n_ch, int(workers) if workers else _cpu_workers())) if cpu else 1
    per_worker = max(1, int(block_voxels) // n_workers)
    fills = cpu and _takes_out(read)
    local = threading.local()  # one Scratch per thread: blocks reuse its arrays (no fresh pages per block)

    def channel(c: int) -> tuple[list[Peaks], bool]:
        scratch = getattr(local, "scratch", None)
        if scratch is None and cpu:
            scratch = local.scratch = Scratch()
        found: list[Peaks] = []
        halo = halo_vox(method, float(radii[c]), distance_factor)
        if blob is not None:  # the sphere around a core peak must lie inside the block's region
            halo = max(halo, int(math.ceil(blob[c])) + 1)
        blocks = block_grid(dims, per_worker, halo)
        for core in blocks:
            lo = [max(0, s.start - halo) for s in core]
            hi = [min(n, s.stop + halo) for s, n in zip(core, dims)]
            region = tuple(slice(a, b) for a, b in zip(lo, hi))
            if fills:
                values = read(c, region, out=scratch.get("values", [b - a for a, b in zip(lo, hi)], np.float32))
            else:
                values = read(c, region)
            if values.size == 0 or not float(values.max()) >= floors[c]:
                continue
            sub_mask = None if mask is None else np.asarray(mask[region])
            p = find_peaks(values, method, threshold=float(floors[c]), radius_vox=float(radii[c]),
                           distance_factor=distance_factor, mask=sub_mask, device=device, scratch=scratch)
            if blob is not None and len(p):
                p = Peaks(p.zyx, sphere_mean(values, p.zyx, float(blob[c])), p.channel)
                p = p.select(p.score >= thresholds[c])
            p = p.shifted(lo)
            if len(blocks) > 1:
                keep = np.ones(len(p), dtype=bool)
                for axis, s in enumerate(core):
                    keep &= (p.zyx[:, axis] >= s.start - 0.5) & (p.zyx[:, axis] < s.stop - 0.5)
                p = p.select(keep)
            found.append(Peaks(p.zyx, p.score, np.full(len(p), c, dtype=np.int64)))
        return found, len(blocks) > 1

    if n_workers > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_workers) as pool:
            results = list(pool.map(channel, range(n_ch)))
    else:
        results = [channel(c) for c in range(n_ch)]
    found = [p for ps, _ in results for p in ps]
    several = any(many for _, many in results)
    peaks = Peaks.concat(found)
    if method != "cc" and several and len(peaks):
        peaks = Peaks.concat([suppress_close(peaks.select(peaks.channel == c), distance_factor * float(radii[c]))
                              for c in range(n_ch)])
    return peaks.sorted()
