"""Score maps → peak positions. Pure functions on ``(z, y, x)`` (one class) or ``(C, z, y, x)`` arrays.

Every method returns a :class:`Peaks` table of voxel positions ``(z, y, x)`` (fractional for centroids), one
score per peak and the channel it came from; :mod:`tomopick.workflows.pick` turns them into Å.

Methods
-------
``maxpool``
    Max-pool NMS: a voxel is a peak if it is the maximum of the ``(2d+1)³`` cube around it and ≥ threshold
    (separable ``torch.nn.functional.max_pool3d``, CPU or GPU); plateaus are merged by :func:`suppress_close`.
``mpnms``
    DeepETPicker's mean-pool NMS: binarise at the threshold, smooth by repeated ``k³`` mean pooling until the
    smoothing spans the particle diameter, then max-pool NMS on the smoothed occupancy (kept above 5 % of the
    occupancy of a whole particle; plateaus merged).
    The score is the smoothed occupancy in ``[0, 1]``.
``cc``
    Connected components (``cc3d``, 26-connectivity) of ``score ≥ threshold`` with a size filter; position = the
    component's centroid, score = its mean score.
``localmax``
    ``skimage.feature.peak_local_max`` semantics (maximum of the cube spanning the minimum distance, then
    thinned to that distance), made plateau-aware: threshold inclusive, a plateau of equal maxima is one peak at
    its centroid; optional sub-voxel (score-weighted 3×3×3) centroids.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

METHODS = ("maxpool", "mpnms", "cc", "localmax")


@dataclass(frozen=True)
class Peaks:
    """Peaks found in a score map.

    Attributes
    ----------
    zyx
        ``(n, 3)`` float64 voxel positions ``(z, y, x)``.
    score
        ``(n,)`` float64 score per peak.
    channel
        ``(n,)`` int64 channel (class index in the ``(C, z, y, x)`` input; 0 for a ``(z, y, x)`` input).
    """

    zyx: np.ndarray
    score: np.ndarray
    channel: np.ndarray

    @classmethod
    def empty(cls) -> "Peaks":
        return cls(np.zeros((0, 3)), np.zeros(0), np.zeros(0, dtype=np.int64))

    @classmethod
    def make(cls, zyx: Any, score: Any, channel: int | Any = 0) -> "Peaks":
        zyx = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
        score = np.asarray(score, dtype=np.float64).reshape(len(zyx))
        ch = np.broadcast_to(np.asarray(channel, dtype=np.int64), (len(zyx),)).copy()
        return cls(zyx, score, ch)

    @classmethod
    def concat(cls, items: Sequence["Peaks"]) -> "Peaks":
        items = [p for p in items if len(p)]
        if not items:
            return cls.empty()
        return cls(np.concatenate([p.zyx for p in items]), np.concatenate([p.score for p in items]),
                   np.concatenate([p.channel for p in items]))

    def __len__(self) -> int:
        return int(len(self.score))

    def select(self, keep: np.ndarray) -> "Peaks":
        keep = np.asarray(keep)
        return Peaks(self.zyx[keep], self.score[keep], self.channel[keep])

    def shifted(self, offset_zyx: Sequence[float]) -> "Peaks":
        return Peaks(self.zyx + np.asarray(offset_zyx, dtype=np.float64), self.score, self.channel)

    def sorted(self) -> "Peaks":
        """By channel, then decreasing score, then position (a deterministic order)."""
        order = np.lexsort((self.zyx[:, 2], self.zyx[:, 1], self.zyx[:, 0], -self.score, self.channel))
        return self.select(order)


# -- helpers --------------------------------------------------------------------------------------------------
def _torch():
    import torch

    return torch


def _as_tensor(score: np.ndarray | Any, device: str | None):
    torch = _torch()
    if isinstance(score, torch.Tensor):
        t = score
    else:
        t = torch.from_numpy(np.ascontiguousarray(score, dtype=np.float32))
    t = t.float()
    return t.to(device) if device else t


def _pool_separable(t, kernel: int, kind: str):
    """Max or mean pooling of a ``(z, y, x)`` tensor with a ``kernel³`` cube, stride 1, same size, zero/−inf
    padding (separable).

    On CUDA: ``torch.nn.functional.max_pool3d`` / ``avg_pool3d`` (``count_include_pad``). On CPU:
    ``scipy.ndimage.maximum_filter`` / ``uniform_filter``, which give the same values but cost O(1) per voxel
    whatever the kernel (van Herk / running sums) where torch's CPU pooling costs O(kernel) — 6× faster for the
    25-voxel kernels of large particles (measured on 84 × 630 × 630).
    """
    torch = _torch()
    if t.device.type == "cpu":
        from scipy import ndimage

        a = t.numpy()
        if kind == "max":
            out = ndimage.maximum_filter(a, size=kernel, mode="constant", cval=-np.inf)
        else:
            out = ndimage.uniform_filter(a, size=kernel, mode="constant", cval=0.0)
        return torch.from_numpy(out)
    return _pool_torch(t, kernel, kind)


def _pool_torch(t, kernel: int, kind: str):
    torch = _torch()
    F = torch.nn.functional
    pad = kernel // 2
    x = t[None, None]
    for axis in range(3):
        size = [1, 1, 1]
        size[axis] = kernel
        padding = [0, 0, 0]
        padding[axis] = pad
        if kind == "max":
            x = F.max_pool3d(x, tuple(size), stride=1, padding=tuple(padding))
        else:
            x = F.avg_pool3d(x, tuple(size), stride=1, padding=tuple(padding), count_include_pad=True)
    return x[0, 0]


def suppress_close(peaks: Peaks, min_distance_vox: float) -> Peaks:
    """Greedy non-maximum suppression by distance, per channel: keep the highest score, drop every other peak
    of the same channel closer than ``min_distance_vox`` (Euclidean, voxels), repeat. Ties in score keep the
    lower ``(z, y, x)`` position. Returns the kept peaks sorted by :meth:`Peaks.sorted`."""
    from scipy.spatial import cKDTree

    if len(peaks) < 2 or min_distance_vox <= 0:
        return peaks.sorted()
    peaks = peaks.sorted()
    keep = np.ones(len(peaks), dtype=bool)
    for ch in np.unique(peaks.channel):
        idx = np.flatnonzero(peaks.channel == ch)  # already in decreasing score order
        tree = cKDTree(peaks.zyx[idx])
        pairs = tree.query_pairs(r=float(min_distance_vox) - 1e-9, output_type="ndarray")
        if len(pairs) == 0:
            continue
        neighbours: dict[int, list[int]] = {}
        for a, b in pairs:
            neighbours.setdefault(int(a), []).append(int(b))
            neighbours.setdefault(int(b), []).append(int(a))
        alive = np.ones(len(idx), dtype=bool)
        for i in range(len(idx)):
            if not alive[i]:
                continue
            for j in neighbours.get(i, ()):
                if j > i:
                    alive[j] = False
        keep[idx[~alive]] = False
    return peaks.select(keep)


def _merge_plateaus(is_peak, values, channel: int) -> Peaks:
    """Peaks from a boolean peak mask (numpy or torch, with the map ``values`` of the same kind): touching peak
    voxels (26-connected, i.e. a plateau of equal maxima, common in float16 or saturated scores) become one peak at
    their centroid. Works on the peak voxels alone (:func:`_touching_groups`), so time and memory follow the number
    of peaks, not the size of the map."""
    mask = is_peak if isinstance(is_peak, np.ndarray) else is_peak.cpu().numpy()
    flat = np.flatnonzero(mask)  # one pass over the mask; sorted, i.e. row-major order
    if len(flat) == 0:
        return Peaks.empty()
    if isinstance(is_peak, np.ndarray):
        peak_values = np.asarray(values.reshape(-1)[flat], dtype=np.float64)
    else:
        peak_values = values[is_peak].float().cpu().numpy().astype(np.float64)  # row-major, as flat
    zyx = np.stack(np.unravel_index(flat, mask.shape), axis=1)
    groups, n = _touching_groups(flat, zyx, mask.shape)
    if n == len(flat):  # no plateaus: the peak voxels themselves
        return Peaks.make(zyx, peak_values, channel)
    counts = np.bincount(groups, minlength=n).astype(np.float64)
    centroids = np.stack([np.bincount(groups, weights=zyx[:, a], minlength=n) / counts for a in range(3)], axis=1)
    # touching maxima lie in each other's pooling window, so a plateau holds one value: take any of its voxels
    score = np.zeros(n)
    score[groups] = peak_values
    return Peaks.make(centroids, score, channel)


#: The 13 "forward" neighbours of a voxel in a 26-neighbourhood (each touching pair is seen once).
_FORWARD = np.array([(dz, dy, dx) for dz in (0, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                     if (dz, dy, dx) > (0, 0, 0)], dtype=np.int64)


def _touching_groups(flat: np.ndarray, zyx: np.ndarray, shape: Sequence[int]) -> tuple[np.ndarray, int]:
    """26-connected groups of the sparse voxels ``flat`` (sorted flat indices into ``shape``, ``zyx`` their
    positions): ``(group of each voxel, number of groups)``. Each voxel looks up its 13 forward neighbours by
    binary search in ``flat``; the pairs found are joined with :func:`scipy.sparse.csgraph.connected_components`.
    Labelling the whole mask (cc3d) cost 0.1–0.2 s per 16 M-voxel block for a few hundred peaks."""
    n = len(flat)
    if n < 2:
        return np.zeros(n, dtype=np.int64), n
    strides = np.array([int(shape[1]) * int(shape[2]), int(shape[2]), 1], dtype=np.int64)
    rows, cols = [], []
    for offset in _FORWARD:
        target = flat + int(offset @ strides)
        pos = np.minimum(np.searchsorted(flat, target), n - 1)
        hit = flat[pos] == target
        hit &= np.all(zyx[pos] - zyx == offset, axis=1)  # not a wrap across a row or plane edge
        rows.append(np.flatnonzero(hit))
        cols.append(pos[hit])
    r, c = np.concatenate(rows), np.concatenate(cols)
    if len(r) == 0:
        return np.arange(n), n
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(r), dtype=np.int8), (r, c)), shape=(n, n))
    count, labels = connected_components(graph, directed=False)
    return labels.astype(np.int64), int(count)


class Scratch:
    """Work arrays reused from block to block by the CPU peak finders (one per thread).

    ``get(slot, shape, dtype)`` returns a view of a flat buffer kept for ``slot`` (grown when too small). A peak
    stage that allocated its float32 block, its pooled map and its masks anew for every block spent more time in
    the kernel's page faults for the fresh pages than in the maximum filter (bench/RESULTS.md, #17)."""

    def __init__(self) -> None:
        self._flat: dict[str, np.ndarray] = {}

    def get(self, slot: str, shape: Sequence[int], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        n = int(np.prod(shape))
        buf = self._flat.get(slot)
        if buf is None or buf.dtype != dtype or buf.size < n:
            buf = self._flat[slot] = np.empty(n, dtype=dtype)
        return buf[:n].reshape(tuple(int(v) for v in shape))


def _channels(score: np.ndarray | Any) -> list:
    arr = score
    if arr.ndim == 3:
        return [arr]
    if arr.ndim == 4:
        return [arr[c] for c in range(arr.shape[0])]
    raise ValueError(f"score map must be (z, y, x) or (C, z, y, x), got shape {tuple(arr.shape)}")


def _per_channel(value: float | Sequence[float], n: int, name: str) -> list[float]:
    if np.ndim(value) == 0:
        return [float(value)] * n
    values = [float(v) for v in value]  # type: ignore[union-attr]
    if len(values) != n:
        raise ValueError(f"{name} has {len(values)} values for {n} channel(s)")
    return values


# -- methods --------------------------------------------------------------------------------------------------
def maxpool_nms(score: np.ndarray, threshold: float | Sequence[float] = 0.5,
                min_distance_vox: float | Sequence[float] = 3, *, device: str | None = None,
                scratch: "Scratch | None" = None) -> Peaks:
    """Max-pool non-maximum suppression.

    Parameters
    ----------
    score
        ``(z, y, x)`` or ``(C, z, y, x)`` scores (numpy or torch).
    threshold
        Minimum score of a peak (one value, or one per channel).
    min_distance_vox
        Half-width ``d`` of the ``(2d+1)³`` suppression cube in voxels (one value or one per channel); peaks of
        one channel closer than ``d`` (Euclidean) are also merged, keeping the higher.
    device
        Torch device for the pooling (``"cpu"``, ``"cuda"``); default: where the input lives.
    scratch
        :class:`Scratch` work arrays to reuse (numpy input on the CPU; e.g. one per thread over the blocks of a
        stream).

    Returns
    -------
    Peaks
    """
    torch = _torch()
    if device in (None, "cpu") and not isinstance(score, torch.Tensor):
        return _maxpool_numpy(score, threshold, min_distance_vox, scratch or Scratch())
    found = []
    with torch.inference_mode():
        for c, t, thr, d, kernel in _cube_maxima_channels(score, threshold, min_distance_vox, device):
            is_peak = (t == _pool_separable(t, kernel, "max")) & (t >= thr)
            found.append(suppress_close(_merge_plateaus(is_peak, t, c), d))
    return Peaks.concat(found).sorted()


def _maxpool_numpy(score: Any, threshold: Any, min_distance_vox: Any, scratch: Scratch) -> Peaks:
    """:func:`maxpool_nms` of numpy maps on the CPU: the same peaks as the torch path (scipy's O(1)-per-voxel
    maximum filter, see :func:`_pool_separable`), computed in the ``scratch`` arrays."""
    from scipy import ndimage

    maps = _channels(score)
    thresholds = _per_channel(threshold, len(maps), "threshold")
    distances = _per_channel(min_distance_vox, len(maps), "min_distance_vox")
    found = []
    for c, (m, thr, d) in enumerate(zip(maps, thresholds, distances)):
        a = np.asarray(m, dtype=np.float32)
        if a.size == 0:
            continue
        above = np.greater_equal(a, thr, out=scratch.get("above", a.shape, bool))
        if not above.any():
            continue
        kernel = 2 * max(1, int(math.ceil(d))) + 1
        pooled = ndimage.maximum_filter(a, size=kernel, mode="constant", cval=-np.inf,
                                        output=scratch.get("pooled", a.shape, np.float32))
        is_peak = np.equal(a, pooled, out=scratch.get("peak", a.shape, bool))
        np.logical_and(is_peak, above, out=is_peak)
        found.append(suppress_close(_merge_plateaus(is_peak, a, c), d))
    return Peaks.concat(found).sorted()


def _cube_maxima_channels(score: Any, threshold: Any, min_distance_vox: Any, device: str | None):
    """``(channel, tensor, threshold, distance, kernel)`` for every channel with a value at or above its threshold;
    ``kernel`` = the odd cube edge spanning the distance (max-pool NMS and local maxima share it)."""
    maps = _channels(score)
    thresholds = _per_channel(threshold, len(maps), "threshold")
    distances = _per_channel(min_distance_vox, len(maps), "min_distance_vox")
    for c, (m, thr, d) in enumerate(zip(maps, thresholds, distances)):
        t = _as_tensor(m, device)
        if t.numel() == 0 or not bool((t >= thr).any()):
            continue
        yield c, t, thr, d, 2 * max(1, int(math.ceil(d))) + 1


def mp_nms(score: np.ndarray, threshold: float | Sequence[float] = 0.5,
           diameter_vox: float | Sequence[float] = 10, *, kernel: int = 5, min_value: float | None = None,
           min_fraction: float = 0.05, min_distance_vox: float | Sequence[float] | None = None,
           device: str | None = None) -> Peaks:
    """DeepETPicker's mean-pool NMS (MP-NMS).

    The map is binarised at ``threshold``, smoothed by ``n = ceil(diameter / (kernel - 1)) + 1`` passes of a
    ``kernel³`` mean pool (so the smoothing spans about one particle diameter and the centre of a blob becomes its
    maximum), then a voxel is a peak where it equals the ``kernel³`` max-pool of the smoothed map and exceeds
    the minimum occupancy. Equal neighbouring maxima (a plateau) are one peak at their centroid, and maxima are
    merged within ``min_distance_vox`` (default: diameter / 2).

    Parameters
    ----------
    score
        ``(z, y, x)`` or ``(C, z, y, x)`` scores.
    threshold
        Binarisation threshold (one value or one per channel).
    diameter_vox
        Particle diameter in voxels (one value or one per channel).
    kernel
        Odd pooling kernel size (DeepETPicker's default 5).
    min_value
        Minimum smoothed occupancy of a peak (absolute). Default: ``min_fraction`` × the occupancy a whole
        particle (a binary ball of ``diameter_vox``) reaches at its centre.
    min_fraction
        The default minimum as a fraction of a whole particle's occupancy: 0.05, the share of a particle's volume
        that ``cc``'s default size filter asks of a component. (A fixed 0.1 rejected a saturated 3×3×3 blob for a
        particle of diameter ≥ 6 voxels, and even a perfect particle blob of diameter 3 barely passed: the
        smoothing spreads a blob over more than the particle, so absolute occupancies shrink with the size.)

    Returns
    -------
    Peaks
        Score = smoothed occupancy at the peak.
    """
    torch = _torch()
    if kernel < 3 or kernel % 2 == 0:
        raise ValueError("kernel must be an odd integer >= 3")
    maps = _channels(score)
    thresholds = _per_channel(threshold, len(maps), "threshold")
    diameters = _per_channel(diameter_vox, len(maps), "diameter_vox")
    distances = (_per_channel(min_distance_vox, len(maps), "min_distance_vox") if min_distance_vox is not None
                 else [d / 2 for d in diameters])
    found = []
    with torch.inference_mode():
        for c, (m, thr, diam, dist) in enumerate(zip(maps, thresholds, diameters, distances)):
            t = _as_tensor(m, device)
            binary = (t >= thr).float()
            if not bool(binary.any()):
                continue
            smooth = binary
            for _ in range(mp_passes(diam, kernel)):
                smooth = _pool_separable(smooth, kernel, "mean")
            pooled = _pool_separable(smooth, kernel, "max")
            floor = min_value if min_value is not None else min_fraction * particle_occupancy(diam, kernel)
            is_peak = (smooth == pooled) & (smooth > floor)
            found.append(suppress_close(_merge_plateaus(is_peak, smooth, c), dist))
    return Peaks.concat(found).sorted()


def mp_passes(diameter_vox: float, kernel: int = 5) -> int:
    """Number of mean-pool passes MP-NMS uses for a particle of ``diameter_vox``."""
    return int(math.ceil(max(diameter_vox, 1.0) / (kernel - 1))) + 1


@functools.lru_cache(maxsize=256)
def particle_occupancy(diameter_vox: float, kernel: int = 5) -> float:
    """MP-NMS's smoothed occupancy at the centre of a whole particle: a binary ball of ``diameter_vox`` (voxel
    centres within ``diameter / 2`` of a voxel centre) after :func:`mp_passes` ``kernel³`` mean pools.

    Computed exactly as the sum over the ball of the separable smoothing kernel (``n``-fold box convolution).
    """
    n = mp_passes(diameter_vox, kernel)
    k1 = np.ones(1)
    for _ in range(n):
        k1 = np.convolve(k1, np.full(kernel, 1.0 / kernel))
    half = len(k1) // 2
    r = max(float(diameter_vox), 1.0) / 2
    reach = min(int(math.floor(r)), half)
    ax = np.arange(-reach, reach + 1)
    zz, yy, xx = np.meshgrid(ax, ax, ax, indexing="ij")
    ball = zz**2 + yy**2 + xx**2 <= r * r
    w = k1[half + ax]
    return float((w[:, None, None] * w[None, :, None] * w[None, None, :])[ball].sum())


def connected_components(score: np.ndarray, threshold: float | Sequence[float] = 0.5, *,
                         min_size_vox: int | Sequence[int] = 1, max_size_vox: int | Sequence[int] | None = None,
                         ) -> Peaks:
    """Connected components of ``score ≥ threshold`` (26-connectivity, ``cc3d``) filtered by voxel count.

    Parameters
    ----------
    score
        ``(z, y, x)`` or ``(C, z, y, x)`` scores.
    threshold
        One value or one per channel.
    min_size_vox, max_size_vox
        Keep components with ``min_size_vox ≤ voxels ≤ max_size_vox`` (one value or one per channel).

    Returns
    -------
    Peaks
        Position = centroid (fractional voxels), score = mean score over the component.
    """
    import cc3d
    from scipy import ndimage

    maps = _channels(score)
    thresholds = _per_channel(threshold, len(maps), "threshold")
    mins = _per_channel(min_size_vox, len(maps), "min_size_vox")
    maxs = _per_channel(np.inf if max_size_vox is None else max_size_vox, len(maps), "max_size_vox")
    found = []
    for c, (m, thr, lo, hi) in enumerate(zip(maps, thresholds, mins, maxs)):
        m = np.asarray(m)
        binary = m >= thr
        if not binary.any():
            continue
        labels, n = cc3d.connected_components(binary, connectivity=26, return_N=True)
        if n == 0:
            continue
        stats = cc3d.statistics(labels)
        counts = np.asarray(stats["voxel_counts"][1:], dtype=np.int64)
        centroids = np.asarray(stats["centroids"][1:], dtype=np.float64)
        ids = np.arange(1, n + 1)
        keep = (counts >= lo) & (counts <= hi)
        if not keep.any():
            continue
        means = np.asarray(ndimage.mean(m.astype(np.float64, copy=False), labels, ids[keep]), dtype=np.float64)
        found.append(Peaks.make(centroids[keep], means, c))
    return Peaks.concat(found).sorted()


def local_maxima(score: np.ndarray, threshold: float | Sequence[float] = 0.5,
                 min_distance_vox: float | Sequence[float] = 3, *, subvoxel: bool = False,
                 device: str | None = None) -> Peaks:
    """Local maxima at least ``min_distance_vox`` apart (borders included), plateau-aware.

    ``skimage.feature.peak_local_max`` semantics: a peak is the maximum of the ``(2k+1)³`` cube around it
    (``k = ceil(min_distance_vox)``, its default footprint) with score ≥ ``threshold``; peaks closer than
    ``min_distance_vox`` are then thinned, highest first (:func:`suppress_close`; Euclidean, where skimage uses
    the Chebyshev distance). Three departures, because softmax scores saturate (many voxels at exactly 1.0 or
    one float16 step below): the threshold is inclusive (``peak_local_max`` keeps only scores strictly above
    ``threshold_abs``, so a map saturated at 1.0 gave nothing at threshold 1.0); a plateau — a 26-connected set
    of equal maxima — is one peak at its centroid (``peak_local_max`` returns every plateau voxel and its
    spacing rule keeps arbitrary corners of it: 8 peaks for a 3×3×3 block); and a plateau that continues into
    an equal voxel with a higher voxel in its own cube is a flank, not a peak (it is rejected whole, where
    ``peak_local_max`` keeps the part of it that looks maximal). Optionally the position is refined to a
    sub-voxel centroid. The cube test (not only 3×3×3) matters: the flank of a particle's blob holds small
    noise bumps up to a radius from its centre, beyond ``min_distance_vox``; a 3×3×3 test keeps them.

    Parameters
    ----------
    score
        ``(z, y, x)`` or ``(C, z, y, x)`` scores (numpy or torch).
    threshold
        Minimum score (inclusive), one value or one per channel.
    min_distance_vox
        Minimum separation in voxels (Euclidean; the cube's half-width rounded up), one or per channel.
    subvoxel
        Refine each single-voxel peak to the score-weighted centroid of its 3×3×3 neighbourhood (negative
        scores count as 0); a plateau keeps its centroid (its flat top holds no finer information).
    device
        Torch device for the max filters; default: where the input lives.

    Returns
    -------
    Peaks
        Score = the peak's (plateau's) score.
    """
    torch = _torch()
    found = []
    with torch.inference_mode():
        for c, t, thr, d, kernel in _cube_maxima_channels(score, threshold, min_distance_vox, device):
            # maxima of their cube; touching ones are equal (each lies in the other's cube), so their 26-connected
            # components are plateaus of one score
            candidate = (t == _pool_separable(t, kernel, "max")) & (t >= thr)
            # a plateau continuing into an equal voxel that is not a candidate (it has a higher voxel in its cube)
            # is the flank of something higher
            others = torch.where(candidate, torch.full_like(t, -math.inf), t)
            leaks = candidate & (_pool_separable(others, 3, "max") == t)
            peaks, labels, sizes = _regional_maxima(candidate, leaks, t, c)
            peaks = suppress_close(peaks, d)
            if subvoxel and len(peaks):
                peaks = _refine_subvoxel(peaks, t.float().cpu().numpy(), labels, sizes)
            found.append(peaks)
    return Peaks.concat(found).sorted()


def _regional_maxima(candidate, leaks, values, channel: int) -> tuple[Peaks, np.ndarray, np.ndarray]:
    """Peaks at the centroids of the 26-connected components of ``candidate`` that hold no ``leaks`` voxel; also
    the component labels and the voxel count per label (for the sub-voxel refinement)."""
    import cc3d

    mask = candidate.cpu().numpy()
    labels, n = cc3d.connected_components(mask, connectivity=26, return_N=True)
    if n == 0:
        return Peaks.empty(), labels, np.zeros(1, dtype=np.int64)
    ok = np.ones(n + 1, dtype=bool)
    ok[0] = False
    ok[np.unique(labels[leaks.cpu().numpy()])] = False
    stats = cc3d.statistics(labels)
    centroids = np.asarray(stats["centroids"], dtype=np.float64)
    sizes = np.asarray(stats["voxel_counts"], dtype=np.int64)
    score = np.zeros(n + 1)
    score[labels[mask]] = values.float().cpu().numpy()[mask]  # one value per plateau
    ids = np.flatnonzero(ok)
    return Peaks.make(centroids[ids], score[ids], channel), labels, sizes


_OFFSETS_27 = np.stack(np.meshgrid(*[np.arange(-1, 2)] * 3, indexing="ij"), axis=-1).reshape(-1, 3)


def _refine_subvoxel(peaks: Peaks, values: np.ndarray, labels: np.ndarray, sizes: np.ndarray) -> Peaks:
    """Single-voxel peaks moved to the score-weighted centroid (weights ``max(score, 0)``) of their 3×3×3
    neighbourhood inside the map; plateau peaks unchanged."""
    idx = np.rint(peaks.zyx).astype(np.int64)
    one = (sizes[labels[tuple(idx.T)]] == 1) & np.all(idx == peaks.zyx, axis=1)
    if not one.any():
        return peaks
    idx = idx[one]
    pos = idx[:, None, :] + _OFFSETS_27[None]  # (n, 27, 3)
    inside = np.all((pos >= 0) & (pos < np.asarray(values.shape)), axis=-1)
    clipped = np.clip(pos, 0, np.asarray(values.shape) - 1)
    w = np.where(inside, np.maximum(values[tuple(clipped.transpose(2, 0, 1))], 0.0), 0.0).astype(np.float64)
    total = w.sum(axis=1)
    refined = (w[..., None] * pos).sum(axis=1) / np.where(total > 0, total, 1.0)[:, None]
    zyx = peaks.zyx.copy()
    zyx[one] = np.where(total[:, None] > 0, refined, idx)
    return Peaks(zyx, peaks.score, peaks.channel)


def apply_mask(peaks: Peaks, mask: np.ndarray | None) -> Peaks:
    """Keep the peaks whose nearest voxel is True in ``mask`` ``(z, y, x)`` (outside the mask's extent: dropped)."""
    if mask is None or len(peaks) == 0:
        return peaks
    mask = np.asarray(mask)
    idx = np.rint(peaks.zyx).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(mask.shape)), axis=1)
    keep = np.zeros(len(peaks), dtype=bool)
    keep[inside] = mask[tuple(idx[inside].T)].astype(bool)
    return peaks.select(keep)


def find_peaks(score: np.ndarray, method: str = "maxpool", *, threshold: float | Sequence[float] = 0.5,
               radius_vox: float | Sequence[float] = 5.0, distance_factor: float = 0.75,
               mask: np.ndarray | None = None, device: str | None = None, min_size_fraction: float = 0.05,
               subvoxel: bool = False, scratch: Scratch | None = None) -> Peaks:
    """Peaks of a score map with one call, parameters derived from the particle radius.

    Parameters
    ----------
    score
        ``(z, y, x)`` or ``(C, z, y, x)`` scores.
    method
        One of :data:`METHODS`.
    threshold
        Score threshold, one value or one per channel.
    radius_vox
        Particle radius in voxels, one value or one per channel. Sets the minimum distance between peaks
        (``distance_factor × radius``), MP-NMS's diameter and the connected-component size window
        (``min_size_fraction`` … 8 × the sphere's volume).
    mask
        Optional ``(z, y, x)`` boolean mask; peaks outside it are dropped.
    device
        Torch device for the pooling methods.
    subvoxel
        ``localmax`` only: sub-voxel centroids (see :func:`local_maxima`).
    scratch
        ``maxpool`` on the CPU only: :class:`Scratch` work arrays to reuse.

    Returns
    -------
    Peaks
    """
    n = 1 if np.ndim(score) == 3 else int(np.shape(score)[0])
    radii = np.asarray(_per_channel(radius_vox, n, "radius_vox"))
    if method == "maxpool":
        peaks = maxpool_nms(score, threshold, list(distance_factor * radii), device=device, scratch=scratch)
    elif method == "mpnms":
        peaks = mp_nms(score, threshold, list(2 * radii), min_distance_vox=list(distance_factor * radii),
                       device=device)
    elif method == "cc":
        volume = 4.0 / 3.0 * np.pi * radii**3
        peaks = connected_components(score, threshold, min_size_vox=list(np.maximum(1, min_size_fraction * volume)),
                                     max_size_vox=list(8 * volume + 1))
    elif method == "localmax":
        peaks = local_maxima(score, threshold, list(distance_factor * radii), subvoxel=subvoxel, device=device)
    else:
        raise ValueError(f"unknown peak method {method!r}; choose one of {', '.join(METHODS)}")
    return apply_mask(peaks, mask)


def halo_vox(method: str, radius_vox: float, distance_factor: float = 0.75, kernel: int = 5) -> int:
    """Voxels of context each side a slab needs so that :func:`find_peaks` gives the same peaks in its core as on
    the whole volume (for ``cc``: components up to 2 radii from the core; for ``localmax`` one more voxel for
    its plateau test and sub-voxel neighbourhood)."""
    d = int(math.ceil(distance_factor * radius_vox)) + 1
    if method == "mpnms":
        return mp_passes(2 * radius_vox, kernel) * (kernel // 2) + kernel // 2 + d
    if method == "cc":
        return int(math.ceil(2 * radius_vox)) + 1
    if method == "localmax":
        return 2 * d + 1
    return 2 * d
