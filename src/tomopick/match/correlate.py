"""FFT cross-correlation of a template over a rotation set, locally normalised, tile by tile.

For every voxel ``x`` of the (matching-grid) volume and every rotation ``R`` of the set, the score is the Pearson
correlation, under a spherical mask ``M`` of ``N`` voxels centred at ``x``, between the whitened volume ``V`` and
the rotated, filtered template ``t_R`` (normalised to zero mean and unit norm under ``M``)::

    cc_R(x) = Σ_m t_R(m) V(x + m) / (√N · σ_M(x)),   σ_M(x)² = mean_M(V²)(x) − mean_M(V)(x)²

(the fast local correlation of Roseman 2003 with a rotation-invariant mask, so ``σ_M`` is computed once per tile).
The filters are the same on both sides where they describe the data: the template is rotated first, then weighted
by the missing wedge (fixed in the tomogram frame, :mod:`tomopick.match.wedge`), the CTF and the whitening filter
``1/√P(|k|)`` (``P`` the radially averaged power spectrum of the volume, which also whitens the volume).

The volume is processed in tiles (overlap-save): each tile of FFT shape ``S`` yields ``S − b + 1`` valid centres
per axis for a template box ``b``; the volume is zero-padded by ``b // 2`` so edge voxels are scored too (the
correlation then runs over the part of the mask inside the volume, with the same background variance). Tiles are
whitened mirrored at the faces, before the padding is zeroed: a step at the faces would ring. Memory is about 40 bytes × ``S`` voxels plus the outputs. The result keeps, per voxel, the
best score over the rotations and the index of that rotation, and the moments of the ``cc_R`` values over the
searched voxels (every 8th voxel — every 2nd per axis — and every rotation: the background statistics of
:mod:`tomopick.match.stats`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import scipy.fft as sfft

from tomopick.match.template import Template, normalise_under_mask, radial_grid, rotate_volume
from tomopick.match.wedge import missing_wedge_weight
from tomopick.simulate.imaging import ctf


@dataclass(frozen=True)
class Spectrum:
    """Radially averaged power spectrum: ``power[i]`` for ``|k|`` in ``[i, i+1) · step`` cycles/voxel."""

    step: float
    power: np.ndarray

    def at(self, k: np.ndarray) -> np.ndarray:
        """Power at ``|k|`` (cycles/voxel), linearly interpolated between shell centres."""
        centres = (np.arange(len(self.power)) + 0.5) * self.step
        return np.interp(k, centres, self.power)

    def whitening(self, k: np.ndarray) -> np.ndarray:
        """``1 / √P(|k|)`` normalised to a mean of 1 over the shells below Nyquist (float32); shells with less than
        1 % of the median power are boosted as if they had 1 %."""
        centres = (np.arange(len(self.power)) + 0.5) * self.step
        inside = centres <= 0.5
        # shells far below the typical power (filtered out by the reconstruction) are not boosted beyond 10×
        floor = 0.01 * float(np.median(self.power[inside]))
        w = 1.0 / np.sqrt(np.maximum(self.power, max(floor, 1e-30)))
        w = w / float(w[inside].mean())
        return np.interp(k, centres, w).astype(np.float32)


def radial_spectrum(volume: np.ndarray, max_edge: int = 128, n_bins: int = 64) -> Spectrum:
    """:class:`Spectrum` of a ``(z, y, x)`` volume, measured on its central crop of at most ``max_edge`` voxels
    per axis (the power of a stationary background does not need the whole volume)."""
    v = np.asarray(volume)
    crop = tuple(slice(max(0, (n - max_edge) // 2), max(0, (n - max_edge) // 2) + min(n, max_edge)) for n in v.shape)
    x = np.asarray(v[crop], dtype=np.float32)
    x = x - float(x.mean())
    f = np.abs(sfft.rfftn(x)) ** 2
    k = radial_grid(x.shape)
    step = float(np.sqrt(3) * 0.5 / n_bins) * 1.0001
    idx = np.minimum((k / step).astype(np.int64), n_bins - 1)
    idx = np.broadcast_to(idx, f.shape).ravel()
    nonzero = np.broadcast_to(k > 0, f.shape).ravel()  # the DC term (0 after removing the mean) is no shell
    sums = np.bincount(idx[nonzero], weights=f.ravel()[nonzero], minlength=n_bins)
    counts = np.bincount(idx[nonzero], minlength=n_bins)
    power = np.where(counts > 0, sums / np.maximum(counts, 1), 0.0)
    # empty shells (tiny volumes) take their neighbours' power
    filled = counts > 0
    if not filled.all() and filled.any():
        centres = np.arange(n_bins)
        power = np.interp(centres, centres[filled], power[filled])
    return Spectrum(step, power)


def template_filter(box: int, voxel_A: float, *, tilt_range_deg: tuple[float, float] | None,
                    spectrum: Spectrum | None, defocus_A: float | None = None, voltage_kV: float = 300.0,
                    cs_mm: float = 2.7, amplitude_contrast: float = 0.07, ctf_corrected: bool = True,
                    lowpass_A: float | None = None) -> np.ndarray:
    """Fourier weight ``(b, b, b // 2 + 1)`` (rfft layout) applied to each rotated template: wedge × CTF (``|CTF|``
    when ``ctf_corrected``) × whitening × low-pass (a cosine edge ending at ``lowpass_A``, default Nyquist)."""
    shape = (box, box, box)
    k = radial_grid(shape)
    w = np.ones(np.broadcast_shapes(k.shape), dtype=np.float32) * np.ones((box, box, box // 2 + 1), np.float32)
    if tilt_range_deg is not None:
        w = w * missing_wedge_weight(shape, tilt_range_deg)
    if defocus_A is not None:
        c = ctf(k / float(voxel_A), float(defocus_A), voltage_kV, cs_mm, amplitude_contrast)
        # the sign of the contrast is the template's own (invert); keep the CTF's shape, positive at low k
        w = w * (np.abs(c) if ctf_corrected else -c).astype(np.float32)
    if spectrum is not None:
        w = w * spectrum.whitening(k)
    cut = 0.5 if lowpass_A is None else min(0.5, float(voxel_A) / float(lowpass_A))
    edge = 0.05
    ramp = np.clip((cut - k) / edge, 0.0, 1.0)
    w = w * (0.5 - 0.5 * np.cos(np.pi * ramp)).astype(np.float32)
    return w.astype(np.float32)


@dataclass
class MatchResult:
    """Output of :func:`match_volume`.

    Attributes
    ----------
    score
        ``(z, y, x)`` float32 best correlation over the rotations at each voxel (the template's centre there).
    rotation_index
        ``(z, y, x)`` int32 index into the rotation set of that best score (−1 where not searched).
    cc_mean, cc_std
        Mean and standard deviation of all ``cc_R(x)`` over the searched voxels and rotations (background).
    n_voxels, n_rotations
        Searched voxels and rotations (the number of trials is their product).
    seconds
        Wall time of the search.
    """

    score: np.ndarray
    rotation_index: np.ndarray
    cc_mean: float
    cc_std: float
    n_voxels: int
    n_rotations: int
    seconds: float


def fast_len(n: int) -> int:
    """The smallest even length ≥ ``n`` whose prime factors are 2, 3, 5 and 7 (torch's CPU FFT is as fast per point
    with a factor 7: a 112 × 336 × 336 inverse transform takes 129 ms where the 2·3·5 length 120 × 360 × 360 takes
    148 ms)."""
    m = max(2, int(n))
    while True:
        if m % 2 == 0:
            r = m
            for p in (2, 3, 5, 7):
                while r % p == 0:
                    r //= p
            if r == 1:
                return m
        m += 1


def plan_tiles(shape_zyx: Sequence[int], box: int, tile_voxels: int) -> tuple[tuple[int, int, int],
                                                                               list[tuple[int, int, int]]]:
    """FFT tile shape ``S`` and the core origins: cores of ``S − box + 1`` voxels per axis cover the volume; ``S`` is
    a fast FFT length and ``prod(S) ≲ tile_voxels`` (at least ``2·box`` per axis)."""
    dims = [int(n) for n in shape_zyx]
    need = [n + box - 1 for n in dims]
    if int(np.prod(need)) <= tile_voxels:
        size = [fast_len(n) for n in need]
    else:
        edge = max(2 * box, int(round(tile_voxels ** (1 / 3))))
        size = []
        for n in need:
            s = min(n, edge)
            size.append(fast_len(s))
        # give spare voxels to the longer axes when an axis is short (thin tomograms)
        for axis in np.argsort(dims)[::-1]:
            rest = int(np.prod([size[i] for i in range(3) if i != axis]))
            s = min(need[axis], max(size[axis], tile_voxels // max(rest, 1)))
            size[axis] = fast_len(s)
            if size[axis] > s and size[axis] > need[axis]:
                size[axis] = fast_len(need[axis])
    core = [s - box + 1 for s in size]
    origins = [(z, y, x) for z in range(0, dims[0], core[0]) for y in range(0, dims[1], core[1])
               for x in range(0, dims[2], core[2])]
    return (size[0], size[1], size[2]), origins


def match_volume(volume: Any, template: Template, rotations: np.ndarray, template_weight: np.ndarray, *,
                 spectrum: Spectrum | None = None, search_mask: np.ndarray | None = None,
                 stats_mask: np.ndarray | str | None = "search", tile_voxels: int = 1 << 24,
                 device: str = "cpu", progress: Callable[[int, int], None] | None = None) -> MatchResult:
    """Search ``template`` over ``volume`` at every rotation of ``rotations`` ``(n, 3, 3)``.

    Parameters
    ----------
    volume
        ``(z, y, x)`` array-like on the matching grid, normalised (mean 0, std 1; tiles are read from it).
    template
        :class:`~tomopick.match.template.Template` on the same grid.
    template_weight
        ``(b, b, b // 2 + 1)`` Fourier weight of the rotated template (:func:`template_filter`).
    spectrum
        Whitening spectrum of the volume (:func:`radial_spectrum`); ``None``: no whitening.
    search_mask
        Optional ``(z, y, x)`` boolean: tiles without a searched voxel are skipped, and voxels outside score 0.
    stats_mask
        Voxels (of the searched tiles) whose scores make the background moments ``cc_mean``/``cc_std``:
        ``"search"`` (default) the searched voxels, ``None`` every voxel, or a boolean volume. A search restricted
        to where a network sees particles passes the mask of outliers only here: inside the restriction most
        voxels lie on objects, and their moments are not the background's.
    progress
        ``progress(done, total)`` over rotations × tiles.
    """
    from tomopick.inference.sliding import reuse_freed_memory

    # glibc keeps freed full-size buffers for reuse instead of mapping fresh pages per rotation (measured: 42 → 21 ms
    # per rotation of a 64 × 192 × 192 tile on one thread, together with the in-place product)
    with reuse_freed_memory(device == "cpu"):
        return _match_volume(volume, template, rotations, template_weight, spectrum=spectrum,
                             search_mask=search_mask,
                             stats_mask=search_mask if isinstance(stats_mask, str) else stats_mask,
                             tile_voxels=tile_voxels, device=device, progress=progress)


def _match_volume(volume: Any, template: Template, rotations: np.ndarray, template_weight: np.ndarray, *,
                  spectrum: Spectrum | None, search_mask: np.ndarray | None, stats_mask: np.ndarray | None,
                  tile_voxels: int, device: str, progress: Callable[[int, int], None] | None) -> MatchResult:
    import torch

    t0 = time.perf_counter()
    rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
    dims = tuple(int(n) for n in np.shape(volume))
    box = template.box
    half = box // 2
    size, origins = plan_tiles(dims, box, tile_voxels)
    core = [s - box + 1 for s in size]
    dev = torch.device(device)
    if search_mask is not None:
        search_mask = np.asarray(search_mask, dtype=bool)
        origins = [o for o in origins
                   if search_mask[o[0]:o[0] + core[0], o[1]:o[1] + core[1], o[2]:o[2] + core[2]].any()]
    score = np.zeros(dims, dtype=np.float32)
    best = np.full(dims, -1, dtype=np.int32)
    total = len(rotations) * len(origins)
    done = 0
    mask = template.mask
    n_mask = float(mask.sum())
    f_mask = torch.fft.rfftn(torch.from_numpy(mask).to(dev), s=size)
    k_tile = radial_grid(size)
    white_tile = None if spectrum is None else torch.from_numpy(spectrum.whitening(k_tile)).to(dev)
    weight = torch.from_numpy(np.ascontiguousarray(template_weight, dtype=np.float32)).to(dev)
    # templates: rotate + filter + normalise once per rotation (small boxes), kept for all tiles
    prepared = _prepared_templates(template, rotations, weight, dev) if len(origins) > 1 else None
    s1 = 0.0
    s2 = 0.0
    n_trials = 0
    n_sub = 0
    for origin in origins:
        lo = [o - half for o in origin]
        inside = np.zeros(size, dtype=np.float32)
        inside[tuple(slice(max(0, -a), min(s, n - a)) for a, n, s in zip(lo, dims, size))] = 1.0
        inside_t = torch.from_numpy(inside).to(dev)
        if white_tile is not None:  # whiten the mirrored tile (no step at the faces to ring), then zero outside
            v = torch.from_numpy(_read_mirrored(volume, lo, size)).to(dev)
            v = torch.fft.irfftn(torch.fft.rfftn(v) * white_tile, s=size) * inside_t
        else:
            v = torch.from_numpy(_read_mirrored(volume, lo, size)).to(dev) * inside_t
        f_v = torch.fft.rfftn(v)
        cz, cy, cx = (min(c, n - o) for c, n, o in zip(core, dims, origin))
        region = (slice(0, cz), slice(0, cy), slice(0, cx))
        conj_m = torch.conj(f_mask)
        s_v = torch.fft.irfftn(f_v * conj_m, s=size)[region] / n_mask
        s_v2 = torch.fft.irfftn(torch.fft.rfftn(v * v) * conj_m, s=size)[region] / n_mask
        var = s_v2 - s_v * s_v
        valid = var > 1e-4
        out = tuple(slice(o, o + c) for o, c in zip(origin, (cz, cy, cx)))
        good = valid if search_mask is None else valid & torch.from_numpy(search_mask[out]).to(dev)
        counted = (good if stats_mask is search_mask else
                   valid if stats_mask is None else valid & torch.from_numpy(stats_mask[out]).to(dev))
        inv_all = torch.rsqrt(torch.clamp(var, min=1e-4)) / float(np.sqrt(n_mask))
        inv_sd = torch.where(good, inv_all, torch.zeros_like(var))
        n_good = int(good.sum())
        # the normalisation 1/(√N σ_M(x)) ≥ 0 does not depend on the rotation: the best rotation is found on the
        # raw correlation and the best score normalised once per tile (one pass less per rotation)
        tile_best = torch.full((cz, cy, cx), -float("inf"), device=dev)
        tile_idx = torch.full((cz, cy, cx), -1, dtype=torch.int32, device=dev)
        inv_sub = (inv_sd if counted is good else
                   torch.where(counted, inv_all, torch.zeros_like(var)))[::2, ::2, ::2].contiguous()
        del v, s_v, s_v2, var, inv_all
        buf = torch.empty(size, dtype=torch.float32, device=dev)
        for i in range(len(rotations)):
            t = prepared[i] if prepared is not None else _prepare_one(template, rotations[i], weight, dev)
            # conj(F t) · F v in place and the inverse into one buffer: no new full-size tensor per rotation
            f_t = padded_rfftn(t, size)
            f_t.conj_physical_().mul_(f_v)
            cc = torch.fft.irfftn(f_t, s=size, out=buf)[region]
            sub = cc[::2, ::2, ::2] * inv_sub  # background moments from every 8th voxel (neighbours correlate)
            s1 += float(sub.sum())
            s2 += float(torch.linalg.vector_norm(sub) ** 2)
            tile_idx.masked_fill_(cc > tile_best, i)
            torch.maximum(tile_best, cc, out=tile_best)
            done += 1
            if progress is not None:
                progress(done, total)
        n_trials += n_good * len(rotations)
        n_sub += int(counted[::2, ::2, ::2].sum()) * len(rotations)
        keep = good.cpu().numpy()
        score[out] = np.where(keep, (tile_best * inv_sd).cpu().numpy(), 0.0)
        best[out] = np.where(keep, tile_idx.cpu().numpy(), -1)
    n_vox = n_trials // max(len(rotations), 1)
    mean = s1 / max(n_sub, 1)
    std = float(np.sqrt(max(s2 / max(n_sub, 1) - mean * mean, 0.0)))
    return MatchResult(score, best, float(mean), std, int(n_vox), int(len(rotations)), time.perf_counter() - t0)


def padded_rfftn(t: Any, size: Sequence[int]) -> Any:
    """``torch.fft.rfftn(t, s=size)`` of a small box zero-padded to ``size``, one axis at a time so that each 1D
    transform runs only over rows that hold data (about 40 % of the full transform's cost for a small box)."""
    import torch

    x = torch.fft.rfft(t, n=int(size[2]), dim=2)
    x = torch.fft.fft(x, n=int(size[1]), dim=1)
    return torch.fft.fft(x, n=int(size[0]), dim=0)


def _read_mirrored(volume: Any, lo: Sequence[int], size: Sequence[int]) -> np.ndarray:
    """The ``size`` box of ``volume`` starting at ``lo`` (may lie outside), mirrored at the volume's faces (no step
    at the edges that the whitening would turn into ringing)."""
    dims = np.shape(volume)
    idx = []
    for a, s, n in zip(lo, size, dims):
        i = np.arange(a, a + s)
        period = 2 * n
        i = np.mod(i, period)
        i = np.where(i >= n, period - 1 - i, i)  # symmetric reflection: ... 1 0 | 0 1 ... n-1 | n-1 n-2 ...
        idx.append(i)
    a0 = [int(i.min()) for i in idx]
    a1 = [int(i.max()) + 1 for i in idx]
    block = np.asarray(volume[tuple(slice(p, q) for p, q in zip(a0, a1))], dtype=np.float32)
    return np.ascontiguousarray(block[np.ix_(*(i - p for i, p in zip(idx, a0)))])


def _prepare_one(template: Template, rotation: np.ndarray, weight: Any, dev: Any) -> Any:
    import torch

    box = template.box
    rotated = rotate_volume(template.volume, rotation)
    f = torch.fft.rfftn(torch.from_numpy(rotated).to(dev)) * weight
    filtered = torch.fft.irfftn(f, s=(box, box, box)).cpu().numpy()
    return torch.from_numpy(normalise_under_mask(filtered, template.mask)).to(dev)


def _prepared_templates(template: Template, rotations: np.ndarray, weight: Any, dev: Any) -> list[Any]:
    return [_prepare_one(template, r, weight, dev) for r in rotations]
