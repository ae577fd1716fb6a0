"""Iterative alignment and averaging of two independent half-sets, and their FSC ("gold standard").

:func:`average_subtomograms` is the whole procedure on extracted boxes:

1. Split the picks into two half-sets (:func:`split_halves`: a seeded random permutation, alternately assigned).
2. Round 1: both halves are aligned to the same starting reference — the given map, or the average of all boxes at
   their stored orientations (identity when they have none) — low-pass filtered at ``initial_lowpass_A`` with the
   filter's edge inside that limit: detail finer than it is never shared between the halves, so the FSC beyond it
   stays an honest, independent measure.
3. Each half is averaged with missing-wedge compensation (:func:`wedge_weighted_average`): every aligned box is
   brought into the reference frame and its Fourier coefficients are divided by how many boxes measured them.
4. Rounds 2 …: each half is aligned to its **own** previous average, low-pass filtered at the current FSC-0.143
   resolution, so no information passes between the halves after round 1.
5. The FSC of the two masked half maps gives the resolution (``None`` when it never falls below 0.143).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch

from tomopick.averaging.align import Alignment, bin2, global_search, local_rotations, local_search, sample_volumes
from tomopick.averaging.fsc import (
    FSC_THRESHOLD, FSCCurve, apply_lowpass, fourier_shell_correlation, lowpass_filter, resolution_at,
    soft_sphere_mask,
)
from tomopick.averaging.options import AverageOptions
from tomopick.match.rotations import symmetry_group, uniform_rotations
from tomopick.match.wedge import missing_wedge_weight

#: Fourier coefficients measured by fewer than this fraction of a half-set's boxes are damped (divided by this
#: fraction × n instead of their own count), so that a few boxes do not dominate sparsely sampled frequencies.
MIN_WEIGHT_FRACTION = 0.2
MASK_EDGE_VOX = 3.0


@dataclass(frozen=True)
class Geometry:
    """Sizes derived from the options and the particle, in the boxes' (binned) voxels.

    Attributes
    ----------
    box, voxel_size_A
        Box edge and voxel size of the boxes.
    mask_radius_vox
        Radius of the soft mask (alignment, FSC).
    max_shift_vox
        Largest shift searched per axis.
    initial_lowpass_A
        Low-pass of the round-1 reference.
    """

    box: int
    voxel_size_A: float
    mask_radius_vox: float
    max_shift_vox: int
    initial_lowpass_A: float


def default_box(radius_A: float, voxel_size_A: float) -> int:
    """``2 × ceil(1.5 × radius / voxel)``, at least 24 voxels: the particle fits with room for shifts."""
    return max(24, 2 * int(np.ceil(1.5 * radius_A / voxel_size_A)))


def geometry(options: AverageOptions, radius_A: float, voxel_size_A: float, box: int | None = None) -> Geometry:
    """The :class:`Geometry` of boxes of ``voxel_size_A`` (already binned) for a particle of ``radius_A``."""
    b = int(box or options.box or default_box(radius_A, voxel_size_A))
    mask_r = (options.mask_radius_A or 1.2 * radius_A) / voxel_size_A
    mask_r = float(min(mask_r, b / 2 - MASK_EDGE_VOX - 1))
    shift = options.max_shift_A if options.max_shift_A is not None else 0.5 * radius_A
    shift_vox = int(max(2, round(shift / voxel_size_A))) if options.max_shift_A is None else int(
        round(shift / voxel_size_A))
    shift_vox = min(shift_vox, (b - 1) // 2)
    lowpass = options.initial_lowpass_A or 4.0 * voxel_size_A
    return Geometry(b, float(voxel_size_A), mask_r, shift_vox, float(max(lowpass, 2.0 * voxel_size_A)))


def split_halves(n: int, rng: np.random.Generator) -> np.ndarray:
    """Half-set (0 or 1) of each of ``n`` picks: a random permutation from ``rng``, assigned alternately, so the
    halves differ in size by at most one and never share a pick."""
    halves = np.empty(n, dtype=np.int64)
    halves[rng.permutation(n)] = np.arange(n) % 2
    return halves


@dataclass(frozen=True)
class AverageResult:
    """Everything :func:`average_subtomograms` found.

    Attributes
    ----------
    half_maps
        ``(2, b, b, b)`` float32 averages of the two half-sets (unfiltered, unmasked).
    average
        ``(b, b, b)`` float32 average of all picks (unfiltered).
    fsc
        FSC of the masked half maps.
    resolution_A
        FSC-0.143 resolution in Å, or ``None`` when the FSC never falls below 0.143 (the data support at least the
        box's Nyquist limit; no number is made up).
    halves
        ``(n,)`` half-set of each pick (0/1).
    alignment
        Final orientation, shift (box voxels) and score of each pick (against its own half's reference).
    rounds
        Per round: resolution, low-pass used, mean score.
    geometry
        Box, voxel size, mask, shift range.
    reference_inverted
        The given reference's contrast was opposite to the boxes' and was flipped.
    """

    half_maps: np.ndarray
    average: np.ndarray
    fsc: FSCCurve
    resolution_A: float | None
    halves: np.ndarray
    alignment: Alignment
    rounds: list[dict] = field(default_factory=list)
    geometry: Geometry | None = None
    reference_inverted: bool = False


def _wedge_shifted(box: int, tilt_range_deg: tuple[float, float], device: torch.device) -> torch.Tensor:
    full = missing_wedge_weight((box, box, box), tilt_range_deg, rfft=False)
    return torch.as_tensor(np.fft.fftshift(full).copy(), device=device)


def wedge_weighted_sums(boxes: torch.Tensor, rotations: np.ndarray, shifts_xyz_vox: np.ndarray,
                        wedge_shifted: torch.Tensor, chunk: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Sums over boxes of their spectra in the reference frame and of their missing-wedge weights there.

    Box ``i`` brought back: ``q_i(y) = p_i(R_i y + t_i)``, whose spectrum at ``k`` holds what the tomogram measured
    at ``R_i k``: weight ``W(R_i k)``. Returns ``(Σ Q_i, Σ W(R_i ·))`` on the rfft half grid ``(b, b, b//2+1)``.
    """
    box = boxes.shape[-1]
    dev, dt = boxes.device, boxes.dtype
    half = box // 2 + 1
    num = torch.zeros((box, box, half), dtype=torch.complex64, device=dev)
    den = torch.zeros((box, box, half), dtype=dt, device=dev)
    for i0 in range(0, len(boxes), chunk):
        r = torch.as_tensor(np.asarray(rotations[i0:i0 + chunk]), dtype=dt, device=dev)
        t = torch.as_tensor(np.asarray(shifts_xyz_vox[i0:i0 + chunk]), dtype=dt, device=dev)
        q = sample_volumes(boxes[i0:i0 + chunk], r, t)
        num += torch.fft.rfftn(q, dim=(-3, -2, -1)).sum(dim=0)
        w = sample_volumes(wedge_shifted, r)
        w = torch.fft.ifftshift(w, dim=(-3, -2, -1))[..., :half]
        den += w.sum(dim=0)
    return num, den


def wedge_weighted_average(num: torch.Tensor, den: torch.Tensor, n: int) -> np.ndarray:
    """``irfft(Σ Q / max(Σ W, 0.2 n))`` as a float32 ``(b, b, b)`` map (see :data:`MIN_WEIGHT_FRACTION`)."""
    box = num.shape[0]
    floor = max(MIN_WEIGHT_FRACTION * n, 1e-6)
    spec = num / den.clamp_min(floor)
    return torch.fft.irfftn(spec, s=(box,) * 3, dim=(-3, -2, -1)).cpu().numpy().astype(np.float32)


def _symmetrise(volume: np.ndarray, symmetry: str, device: torch.device) -> np.ndarray:
    group = symmetry_group(symmetry)
    if len(group) == 1:
        return volume
    vol = torch.as_tensor(volume, device=device)
    mats = torch.as_tensor(group, dtype=vol.dtype, device=device)
    return sample_volumes(vol, mats).mean(dim=0).cpu().numpy()


def normalise_boxes(boxes: np.ndarray) -> np.ndarray:
    """Each box ``(n, b, b, b)`` to mean 0 and standard deviation 1 (float32)."""
    x = np.asarray(boxes, dtype=np.float32)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    sd = x.std(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.where(sd > 0, sd, 1.0)


def radial_profile(volume: np.ndarray) -> np.ndarray:
    """Mean of ``volume`` ``(b, b, b)`` over shells of integer radius about voxel ``b // 2``."""
    box = volume.shape[0]
    g = np.arange(box) - box // 2
    r = np.rint(np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)).astype(int)
    keep = r <= box // 2
    return np.bincount(r[keep], volume[keep]) / np.maximum(np.bincount(r[keep]), 1)


def contrast_agrees(boxes_mean: np.ndarray, reference: np.ndarray) -> bool:
    """Whether the radial profiles of the plain mean of the boxes and of the reference correlate positively (a
    reference with protein bright against a tomogram with protein dark does not)."""
    a = radial_profile(boxes_mean - boxes_mean.mean())
    b = radial_profile(reference - reference.mean())
    return bool(np.dot(a - a.mean(), b - b.mean()) >= 0)


def _pad_to(volumes: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad ``(..., b, b, b)`` to ``size³`` keeping the centre voxel ``b // 2`` at ``size // 2``."""
    box = volumes.shape[-1]
    if size == box:
        return volumes
    lo = size // 2 - box // 2
    hi = size - box - lo
    return torch.nn.functional.pad(volumes, (lo, hi, lo, hi, lo, hi))


def _fast(box: int) -> int:
    from scipy.fft import next_fast_len

    return int(next_fast_len(box, real=True))


def _align(boxes_masked: torch.Tensor, reference: np.ndarray, geo: Geometry, options: AverageOptions,
           lowpass_A: float | None, coarse_set: np.ndarray, local: np.ndarray, mask: torch.Tensor) -> Alignment:
    """Global coarse search on 2×-binned boxes, then local refinement on full boxes (boxes zero-padded to fast
    FFT sizes: they are masked, so padding only removes wrap-around)."""
    dev = boxes_masked.device
    box = geo.box
    ref = torch.as_tensor(reference, device=dev) * mask
    if box >= 16:
        cb = _fast(box // 2)
        cfilt = torch.as_tensor(
            missing_wedge_weight((cb,) * 3, options.tilt_range_deg)
            * lowpass_filter(cb, 2 * geo.voxel_size_A, _coarse_lowpass(lowpass_A, geo.voxel_size_A)), device=dev)
        coarse = global_search(_pad_to(bin2(boxes_masked), cb), _pad_to(bin2(ref[None])[0], cb), coarse_set, cfilt,
                               max(1, geo.max_shift_vox // 2))
        centres = coarse.rotations
    else:
        centres = np.broadcast_to(np.eye(3), (len(boxes_masked), 3, 3))
        local = coarse_set
    fb = _fast(box)
    filt = torch.as_tensor(missing_wedge_weight((fb,) * 3, options.tilt_range_deg)
                           * lowpass_filter(fb, geo.voxel_size_A, lowpass_A), device=dev)
    boxes_p, ref_p = _pad_to(boxes_masked, fb), _pad_to(ref, fb)
    first = local_search(boxes_p, ref_p, centres, local, filt, geo.max_shift_vox)
    fine = local_rotations(options.angular_step_deg / 2.0, options.angular_step_deg)
    return local_search(boxes_p, ref_p, first.rotations, fine, filt, geo.max_shift_vox)


def _coarse_lowpass(lowpass_A: float | None, voxel_size_A: float) -> float | None:
    nyquist_binned = 4.0 * voxel_size_A
    return None if lowpass_A is None or lowpass_A <= nyquist_binned else lowpass_A


def average_subtomograms(boxes: np.ndarray, voxel_size_A: float, radius_A: float, options: AverageOptions,
                         rng: np.random.Generator, reference: np.ndarray | None = None,
                         initial_rotations: np.ndarray | None = None,
                         progress: Callable[[int, int], None] | None = None) -> AverageResult:
    """Align and average boxes in two independent half-sets; FSC and per-pick scores.

    Parameters
    ----------
    boxes
        ``(n, b, b, b)`` subvolumes ``(z, y, x)`` centred on the picks (:func:`~tomopick.averaging.extract_subvolumes`),
        ``n ≥ 2``.
    voxel_size_A
        Voxel size of the boxes (binning included), Å.
    radius_A
        Particle radius, Å (mask, default shifts).
    options
        :class:`AverageOptions` (box/bin are the caller's business; the rest is used here).
    rng
        Generator of the half-set split.
    reference
        Optional ``(b', b', b')`` starting map at ``voxel_size_A`` (cropped/padded by the caller to ``b``); its
        contrast is flipped when it disagrees with the boxes (:func:`contrast_agrees`).
    initial_rotations
        Optional ``(n, 3, 3)`` orientations for the starting average when no reference is given.
    progress
        Called ``progress(round, rounds)`` after each round.
    """
    data = np.asarray(boxes)
    if data.ndim != 4 or len(set(data.shape[1:])) != 1:
        raise ValueError(f"boxes must be (n, b, b, b), got shape {data.shape}")
    n, box = data.shape[0], data.shape[1]
    if n < 2:
        raise ValueError(f"need at least 2 boxes to form two half-sets, got {n}")
    dev = torch.device(options.device)
    geo = geometry(options, radius_A, voxel_size_A, box)
    mask_np = soft_sphere_mask(box, geo.mask_radius_vox, MASK_EDGE_VOX)
    mask = torch.as_tensor(mask_np, device=dev)
    norm = torch.as_tensor(normalise_boxes(data), device=dev)
    masked = norm * mask
    wedge = _wedge_shifted(box, options.tilt_range_deg, dev)
    halves = split_halves(n, rng)
    members = [np.nonzero(halves == h)[0] for h in (0, 1)]

    identity = np.broadcast_to(np.eye(3), (n, 3, 3)).copy()
    start_rot = identity if initial_rotations is None else np.asarray(initial_rotations, dtype=np.float64)
    inverted = False
    if reference is None:
        num, den = wedge_weighted_sums(norm, start_rot, np.zeros((n, 3)), wedge)
        start = wedge_weighted_average(num, den, n)
    else:
        start = np.asarray(reference, dtype=np.float32)
        if start.shape != (box,) * 3:
            raise ValueError(f"reference must be {(box,) * 3} like the boxes, got {start.shape}")
        start = (start - start.mean()) / (start.std() or 1.0)
        if not contrast_agrees(norm.mean(dim=0).cpu().numpy(), start):
            start, inverted = -start, True
    # strict: nothing finer than the initial low-pass is shared by the halves (the FSC beyond it stays honest)
    start = apply_lowpass(_symmetrise(start, options.symmetry, dev), geo.voxel_size_A, geo.initial_lowpass_A,
                          strict=True)
    refs = [start, start]
    lowpass: float | None = geo.initial_lowpass_A

    coarse_set = uniform_rotations(2.0 * options.angular_step_deg, options.symmetry)
    local = local_rotations(options.angular_step_deg, 2.0 * options.angular_step_deg)
    rot = start_rot.copy()
    shifts = np.zeros((n, 3))
    scores = np.full(n, np.nan)
    rounds: list[dict] = []
    half_maps = np.zeros((2, box, box, box), dtype=np.float32)
    sums: list[tuple[torch.Tensor, torch.Tensor]] = []
    curve: FSCCurve | None = None
    resolution: float | None = None
    for it in range(1, options.iterations + 1):
        sums = []
        for h in (0, 1):
            idx = members[h]
            if len(idx) == 0:
                continue
            sel = torch.as_tensor(idx, device=dev)
            al = _align(masked.index_select(0, sel), refs[h], geo, options, lowpass, coarse_set, local, mask)
            rot[idx], shifts[idx], scores[idx] = al.rotations, al.shifts_xyz_vox, al.scores
            num, den = wedge_weighted_sums(norm.index_select(0, sel), rot[idx], shifts[idx], wedge)
            sums.append((num, den))
            half_maps[h] = _symmetrise(wedge_weighted_average(num, den, len(idx)), options.symmetry, dev)
        curve = fourier_shell_correlation(half_maps[0] * mask_np, half_maps[1] * mask_np, geo.voxel_size_A)
        resolution = resolution_at(curve, FSC_THRESHOLD)
        rounds.append({"round": it, "lowpass_A": lowpass, "resolution_A": resolution,
                       "mean_score": float(np.nanmean(scores))})
        lowpass = resolution if resolution is not None and resolution > 2.0 * geo.voxel_size_A else None
        refs = [half_maps[0], half_maps[1]]
        if progress is not None:
            progress(it, options.iterations)
    num = sums[0][0] + sums[1][0]
    den = sums[0][1] + sums[1][1]
    average = _symmetrise(wedge_weighted_average(num, den, n), options.symmetry, dev)
    assert curve is not None
    return AverageResult(half_maps=half_maps, average=average, fsc=curve, resolution_A=resolution, halves=halves,
                         alignment=Alignment(rot, shifts, scores), rounds=rounds, geometry=geo,
                         reference_inverted=inverted)


def half_map_fsc(boxes: np.ndarray, alignment: Alignment, halves: np.ndarray, keep: np.ndarray, geo: Geometry,
                 options: AverageOptions) -> tuple[np.ndarray, FSCCurve, float | None]:
    """Half maps, FSC and resolution of the kept boxes at their found orientations (no new alignment): what
    removing picks (e.g. below the automatic score cut) does to the average."""
    dev = torch.device(options.device)
    box = geo.box
    norm = torch.as_tensor(normalise_boxes(boxes), device=dev)
    wedge = _wedge_shifted(box, options.tilt_range_deg, dev)
    mask_np = soft_sphere_mask(box, geo.mask_radius_vox, MASK_EDGE_VOX)
    maps = np.zeros((2, box, box, box), dtype=np.float32)
    for h in (0, 1):
        idx = np.nonzero((halves == h) & keep)[0]
        if len(idx) == 0:
            continue
        num, den = wedge_weighted_sums(norm.index_select(0, torch.as_tensor(idx, device=dev)),
                                       alignment.rotations[idx], alignment.shifts_xyz_vox[idx], wedge)
        maps[h] = _symmetrise(wedge_weighted_average(num, den, len(idx)), options.symmetry, dev)
    curve = fourier_shell_correlation(maps[0] * mask_np, maps[1] * mask_np, geo.voxel_size_A)
    return maps, curve, resolution_at(curve)
