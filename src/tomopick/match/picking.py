"""Template matching of one tomogram: the core behind ``tomopick match`` (and the prompt bootstrap).

:func:`match_tomogram` resamples the tomogram to the matching grid (``bin`` × its voxel size), normalises it,
prepares the template (resampled, inverted, cropped, filtered), searches it over the rotation set
(:mod:`tomopick.match.correlate`), sets the threshold from the background statistics (:mod:`tomopick.match.stats`)
and extracts peaks through the same score store and peak extraction as ``tomopick pick``
(:class:`~tomopick.inference.sliding.ScoreStore`, :func:`~tomopick.peaks.find_peaks_blocks`). It reads and writes
no files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from scipy import ndimage

from tomopick.data import Picks, Tomogram
from tomopick.data.coords import voxel_size_zyx, voxel_to_angstrom
from tomopick.errors import TomopickError
from tomopick.inference.rescale import rescale_volume, rescaled_shape
from tomopick.inference.sliding import ScoreStore
from tomopick.match.correlate import MatchResult, Spectrum, match_volume, radial_spectrum, template_filter
from tomopick.match.options import MatchOptions
from tomopick.match.refine import NEIGHBOUR_FACTOR, LocalScorer, neighbour_table, suppress
from tomopick.match.rotations import uniform_rotations
from tomopick.match.stats import false_alarm_threshold, gap_threshold, peak_tail_threshold
from tomopick.match.template import Template, prepare_template
from tomopick.peaks import Peaks, find_peaks_blocks


@dataclass
class Grid:
    """A tomogram on the matching grid: ``volume`` ``(z, y, x)`` float32 (mean 0, std 1), ``voxel_A`` per axis
    ``(z, y, x)``, the ``spectrum`` used for whitening (``None`` without) and the zoom ``factors`` from the
    tomogram's grid (``None``: the same grid); ``outliers``: voxels of extreme contrast (gold) set to 0 and kept out of
    the search (``None``: none found)."""

    volume: np.ndarray
    voxel_A: np.ndarray
    spectrum: Spectrum | None
    factors: np.ndarray | None
    outliers: np.ndarray | None = None

    @property
    def voxel(self) -> float:
        return float(np.mean(self.voxel_A))


def matching_grid(tomogram: Tomogram, options: MatchOptions) -> Grid:
    """The tomogram resampled to ``options.bin`` × its voxel size (anti-aliased linear resampling,
    :func:`~tomopick.inference.rescale.rescale_volume`), normalised to mean 0 and std 1."""
    vs = voxel_size_zyx(options.voxel_size_A if options.voxel_size_A is not None else tomogram.voxel_size_A)
    factors = None
    if options.bin > 1:
        factors = np.full(3, 1.0 / options.bin)
        data = rescale_volume(tomogram.data, factors)
        grid_vs = vs * options.bin
    else:
        data = np.asarray(tomogram.data, dtype=np.float32)
        grid_vs = vs
    data = np.asarray(data, dtype=np.float32)
    if not np.all(np.isfinite(data)):
        raise TomopickError("the tomogram has NaN or infinite voxels", tomogram.source or None)
    std = float(data.std())
    if std == 0:
        raise TomopickError("the tomogram is constant: nothing to match", tomogram.source or None)
    data = (data - float(data.mean())) / std
    outliers = None
    if options.outlier_z is not None:
        probe = data if options.bin == 2 else np.asarray(rescale_volume(tomogram.data, np.full(3, 0.5)), np.float32)
        found = outlier_voxels(probe, options.outlier_z)
        if found.any():
            outliers = mask_on_grid(found, data.shape) if found.shape != data.shape else found
            data[ndimage.binary_dilation(outliers, iterations=1)] = 0.0  # the mean: no dark blob left to match
    spectrum = radial_spectrum(data) if options.whiten else None
    return Grid(data.astype(np.float32, copy=False), grid_vs, spectrum, factors, outliers)


def outlier_voxels(volume: np.ndarray, z: float) -> np.ndarray:
    """Voxels of extreme contrast (gold fiducials, ice crystals): the volume smoothed with σ = 1 voxel lies more
    than ``z`` robust standard deviations from its median. Meant for a grid of about 20 Å, where gold beads
    reach 60 σ and the densest CZII particles (ribosomes) 13 σ (simulated, SNR 3)."""
    s = ndimage.gaussian_filter(np.asarray(volume, dtype=np.float32), 1.0)
    med = float(np.median(s))
    sd = 1.4826 * float(np.median(np.abs(s - med)))
    if sd == 0:
        return np.zeros(s.shape, dtype=bool)
    return np.abs(s - med) > z * sd


def template_for(grid: Grid, volume: np.ndarray, voxel_A: float, options: MatchOptions, *,
                 invert: bool) -> Template:
    """A template map ``(n, n, n)`` of voxel size ``voxel_A`` prepared for ``grid``."""
    inv = options.invert if options.invert is not None else invert
    return prepare_template(volume, voxel_A, grid.voxel, invert=bool(inv), mask_radius_A=options.mask_radius_A)


def search_mask_for(grid: Grid, template: Template, search_mask: np.ndarray | None) -> np.ndarray | None:
    """The voxels to search: ``search_mask`` (or all) without the outliers and the template radius around them."""
    if grid.outliers is None:
        return search_mask
    r = int(np.ceil(template.mask_radius_vox))
    g = np.arange(-r, r + 1)
    ball = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r
    near = ndimage.binary_dilation(grid.outliers, structure=ball)
    return ~near if search_mask is None else (search_mask & ~near)


def template_weight(grid: Grid, template: Template, options: MatchOptions) -> np.ndarray:
    """The Fourier weight of the rotated template on ``grid`` (wedge, CTF, whitening, low-pass)."""
    return template_filter(template.box, grid.voxel, tilt_range_deg=options.tilt_range_deg,
                           spectrum=grid.spectrum, defocus_A=options.defocus_A, voltage_kV=options.voltage_kV,
                           cs_mm=options.cs_mm, amplitude_contrast=options.amplitude_contrast,
                           ctf_corrected=options.ctf_corrected, lowpass_A=options.lowpass_A)


def search(grid: Grid, template: Template, options: MatchOptions, *, rotations: np.ndarray | None = None,
           search_mask: np.ndarray | None = None,
           progress: Callable[[int, int], None] | None = None) -> tuple[MatchResult, np.ndarray]:
    """Exhaustive search: match ``template`` over ``grid`` at the rotations of ``options`` (or the given set);
    returns the result and the rotation set ``(n, 3, 3)``."""
    rots = uniform_rotations(options.step_deg, options.symmetry) if rotations is None else rotations
    weight = template_weight(grid, template, options)
    # background moments from every valid voxel of the searched tiles, not only the restriction's (outliers out)
    result = match_volume(grid.volume, template, rots, weight, spectrum=grid.spectrum,
                          search_mask=search_mask_for(grid, template, search_mask),
                          stats_mask="search" if search_mask is None else search_mask_for(grid, template, None),
                          tile_voxels=options.tile_voxels, device=options.device, progress=progress)
    return result, rots


#: ``accept(zyx) -> bool array``: which peaks (matching-grid voxels ``(n, 3)``) may become picks.
Accept = Callable[[np.ndarray], np.ndarray]


def search_and_pick(grid: Grid, template: Template, options: MatchOptions, particle: str, radius_A: float, *,
                    run: str = "", mask: np.ndarray | None = None, accept: Accept | None = None,
                    progress: Callable[[int, int], None] | None = None) -> tuple[Picks, dict[str, Any]]:
    """Search (exhaustive or coarse-to-fine, :meth:`MatchOptions.search_mode`), threshold and pick; ``mask`` (on
    the grid) restricts search and picks; ``accept`` drops peaks before the threshold rules that look at peak
    scores (gap). The summary has ``search``, ``seconds_search`` and ``n_voxels``."""
    if options.search_mode() == "coarse-to-fine":
        return coarse_to_fine_picks(grid, template, options, particle, radius_A, run=run, mask=mask,
                                    accept=accept, progress=progress)
    result, rots = search(grid, template, options, search_mask=mask, progress=progress)
    picks, info = picks_from_result(result, rots, grid, particle, radius_A, options, run=run, mask=mask,
                                    accept=accept)
    info.update(search="exhaustive", seconds_search=result.seconds, n_voxels=result.n_voxels)
    return picks, info


#: Candidate peaks refined at random to measure the refined background (the tail fit and the refinement bar).
REFINE_SAMPLE = 256
#: Candidates refined at most (highest coarse scores first).
MAX_REFINED = 20000
#: The refinement bar lies this many times the largest score gain of the random sample below the threshold.
BOOST_MARGIN = 1.5


#: Smallest searched fraction of the grid for the peak-tail rule (:func:`tail_applies`).
MIN_TAIL_FRACTION = 0.5


def tail_applies(result: Any, grid: Grid) -> bool:
    """Whether the peak-tail threshold (:func:`~tomopick.match.stats.peak_tail_threshold`) may be used: its premise,
    that most local maxima are background, holds for a search of (at least :data:`MIN_TAIL_FRACTION` of) the whole
    tomogram, not for one restricted to where a network sees particles (``--mask-model``), where most maxima sit on
    objects and the fitted "background" tail lies above the particles (measured: 1.15 for 8vaf, whose true copies
    score 0.6–0.7). Then only the noise rule applies (its σ, measured inside the mask, only makes it stricter)."""
    return result.n_voxels >= MIN_TAIL_FRACTION * int(np.prod(grid.volume.shape))


def coarse_to_fine_picks(grid: Grid, template: Template, options: MatchOptions, particle: str, radius_A: float, *,
                         run: str = "", mask: np.ndarray | None = None, accept: Accept | None = None,
                         progress: Callable[[int, int], None] | None = None,
                         seed: int = 0) -> tuple[Picks, dict[str, Any]]:
    """Coarse-to-fine search (:mod:`tomopick.match.refine`), thresholded on the refined scores.

    1. The FFT search over the ``coarse_step_deg`` set gives a best-score map; its local maxima above the
       background mean + 1 σ are the candidates.
    2. A uniform random sample of :data:`REFINE_SAMPLE` candidates is refined (fine rotations near the best coarse
       rotation, ±2 voxels): the refined background. The automatic threshold is the higher of the noise rule —
       Rickgauer's, with every voxel × (fine + coarse rotations) as trials: a refined peak's score is one of those
       trials, so the bound is the exhaustive search's — and the Gumbel tail fitted to the *refined* sample (scaled
       to all candidates).
    3. Every candidate whose coarse score lies within :data:`BOOST_MARGIN` × the sample's largest gain of that
       threshold is refined; refined peaks closer than the pick distance are merged (best kept); the threshold and
       then the gap rule apply to the refined scores.
    """
    t0 = time.perf_counter()
    fine = uniform_rotations(options.step_deg, options.symmetry)
    coarse = uniform_rotations(options.coarse_step_deg, options.symmetry)
    weight = template_weight(grid, template, options)
    searched = search_mask_for(grid, template, mask)
    result = match_volume(grid.volume, template, coarse, weight, spectrum=grid.spectrum, search_mask=searched,
                          stats_mask="search" if mask is None else search_mask_for(grid, template, None),
                          tile_voxels=options.tile_voxels, device=options.device, progress=progress)
    t1 = time.perf_counter()
    rots = np.concatenate([fine, coarse])  # coarse rotation j is rots[len(fine) + j]
    table = neighbour_table(coarse, fine, NEIGHBOUR_FACTOR * options.coarse_step_deg, options.symmetry)
    radius_vox = float(radius_A) / grid.voxel
    n_trials = result.n_voxels * len(rots)
    noise_threshold = false_alarm_threshold(result.cc_mean, result.cc_std, n_trials, options.false_alarms)
    cands = score_peaks(result, result.cc_mean + result.cc_std, radius_vox, options.distance_factor, mask)
    n = len(cands)
    centres = np.rint(cands.zyx).astype(np.int64).reshape(-1, 3)
    if n:
        centres = np.minimum(np.maximum(centres, 0), np.array(result.score.shape) - 1)
    coarse_idx = result.rotation_index[tuple(centres.T)] if n else np.zeros(0, np.int64)
    scorer = LocalScorer(grid.volume, template, weight, rots, spectrum=grid.spectrum, valid=searched,
                         device=options.device)
    ref_score = np.full(n, np.nan)
    ref_rot = np.zeros(n, dtype=np.int64)
    ref_zyx = centres.astype(np.float64).copy()

    def refine(i: int) -> None:
        j = int(max(coarse_idx[i], 0))
        score, k, zyx = scorer.best(centres[i], [len(fine) + j, *table[j]])
        ref_score[i], ref_rot[i], ref_zyx[i] = score, k, zyx

    rng = np.random.default_rng(seed)
    sample = rng.choice(n, size=min(n, REFINE_SAMPLE), replace=False) if n else np.zeros(0, np.int64)
    for i in sample:
        refine(int(i))
    gain = ref_score[sample] - cands.score[sample]
    gain = gain[np.isfinite(gain)]
    max_gain = float(gain.max()) if len(gain) else 0.0
    tail_threshold = None
    if options.threshold is not None:
        threshold, rule = float(options.threshold), "option"
    else:
        threshold, rule = noise_threshold, f"false-alarm {options.false_alarms:g}/tomogram"
        finite = ref_score[sample][np.isfinite(ref_score[sample])]
        if tail_applies(result, grid):
            tail_threshold = peak_tail_threshold(finite, options.false_alarms, n_peaks=n)
        if tail_threshold is not None and tail_threshold > threshold:
            threshold, rule = tail_threshold, f"false-alarm {options.false_alarms:g}/tomogram, refined peak tail"
    bar = threshold - BOOST_MARGIN * max(max_gain, 0.0)
    todo = [i for i in np.argsort(-cands.score, kind="stable") if cands.score[i] >= bar and np.isnan(ref_score[i])]
    capped = len(todo) > MAX_REFINED
    for i in todo[:MAX_REFINED]:
        refine(int(i))
    done = np.flatnonzero(np.isfinite(ref_score))
    keep = done[suppress(ref_zyx[done], ref_score[done], options.distance_factor * radius_vox)]
    keep = keep[ref_score[keep] >= threshold]
    n_rejected = 0
    if accept is not None and len(keep):
        ok = np.asarray(accept(ref_zyx[keep]), dtype=bool)
        n_rejected = int((~ok).sum())
        keep = keep[ok]
    gap = None
    if options.threshold is None and options.gap:
        gap = gap_threshold(ref_score[keep])
        if gap is not None and gap > threshold:
            threshold, rule = gap, rule + " raised to the gap above look-alikes"
            keep = keep[ref_score[keep] >= threshold]
    keep = keep[np.argsort(-ref_score[keep], kind="stable")]
    xyz = voxel_to_angstrom(ref_zyx[keep], grid.voxel_A)
    picks = Picks.from_arrays(xyz, particle, score=ref_score[keep], rotations=rots[ref_rot[keep]], run=run)
    t2 = time.perf_counter()
    info = {"particle": particle, "threshold": threshold, "threshold_rule": rule, "cc_mean": result.cc_mean,
            "cc_std": result.cc_std, "n_trials": int(n_trials), "n_rotations": len(fine),
            "n_coarse_rotations": len(coarse), "coarse_step_deg": options.coarse_step_deg,
            "step_deg": options.step_deg, "symmetry": options.symmetry, "voxel_size_A": grid.voxel,
            "noise_threshold": noise_threshold, "tail_threshold": tail_threshold, "gap_threshold": gap,
            "count": len(picks), "rejected": n_rejected, "search": "coarse-to-fine", "n_candidates": int(n),
            "n_refined": int(len(done)),
            "refine_capped": bool(capped), "refine_bar": float(bar), "sample_max_gain": max_gain,
            "neighbours_mean": float(np.mean([len(t) for t in table])) if table else 0.0,
            "seconds_coarse": t1 - t0, "seconds_refine": t2 - t1, "seconds_search": t2 - t0,
            "n_voxels": result.n_voxels}
    return picks, info


def score_peaks(result: MatchResult, threshold: float, radius_vox: float, distance_factor: float,
                mask: np.ndarray | None = None) -> Peaks:
    """Peaks of the best-score map above ``threshold`` at least ``distance_factor × radius_vox`` apart, through the
    pick path's score store and block-wise max-pool peak extraction."""
    store = ScoreStore((1, *result.score.shape))
    try:
        store.write(tuple(slice(0, n) for n in result.score.shape), result.score[None])
        return find_peaks_blocks(store.read, store.shape, "maxpool", threshold=float(threshold),
                                 radius_vox=float(radius_vox), distance_factor=float(distance_factor), mask=mask)
    finally:
        store.close()


def mask_on_grid(mask: np.ndarray, grid_shape: tuple[int, ...]) -> np.ndarray:
    """A ``(z, y, x)`` boolean mask of the tomogram's grid sampled (nearest voxel) on the matching grid."""
    mask = np.asarray(mask)
    if tuple(mask.shape) == tuple(grid_shape):
        return mask.astype(bool, copy=False)
    idx = [np.minimum(np.rint(np.arange(g) * (t - 1) / max(g - 1, 1)).astype(int), t - 1)
           for g, t in zip(grid_shape, mask.shape)]
    return mask[np.ix_(*idx)].astype(bool)


def match_tomogram(tomogram: Tomogram, template_volume: np.ndarray, template_voxel_A: float, particle: str,
                   radius_A: float, options: MatchOptions | None = None, *, run: str = "",
                   mask: np.ndarray | None = None, invert: bool = True,
                   progress: Callable[[int, int], None] | None = None) -> tuple[Picks, dict[str, Any]]:
    """Template-match one tomogram (no file read or written).

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume with its voxel size.
    template_volume
        ``(n, n, n)`` map centred at ``n // 2``, voxel size ``template_voxel_A`` (density: protein bright).
    particle, radius_A
        Name written on the picks, and the radius setting the minimum pick distance.
    mask
        Optional ``(z, y, x)`` boolean on the tomogram's grid: only voxels inside are searched and picked.
    invert
        Negate the template unless ``options.invert`` says otherwise (maps are bright, tomograms dark).
    progress
        ``progress(done, total)`` over rotations × tiles.

    Returns
    -------
    (Picks, dict)
        Picks in Å (voxel (0, 0, 0) of ``tomogram`` at the origin) with ``score`` (correlation coefficient) and the
        best rotation; a summary (threshold and its rule, background statistics, rotations, tiles, timings).
    """
    options = options or MatchOptions()
    t0 = time.perf_counter()
    if mask is not None and tuple(np.shape(mask)) != tuple(tomogram.shape):
        raise TomopickError(f"mask shape {tuple(np.shape(mask))} differs from the tomogram's {tomogram.shape}",
                            tomogram.source or None)
    grid = matching_grid(tomogram, options)
    template = template_for(grid, template_volume, template_voxel_A, options, invert=invert)
    if template.box > min(grid.volume.shape):
        raise TomopickError(f"the template ({template.box} voxels at {grid.voxel:.4g} Å) is larger than the tomogram "
                            f"{grid.volume.shape}", tomogram.source or None)
    grid_mask = None if mask is None else mask_on_grid(mask, grid.volume.shape)
    t1 = time.perf_counter()
    picks, info = search_and_pick(grid, template, options, particle, radius_A, run=run, mask=grid_mask,
                                  progress=progress)
    info.update(seconds_prepare=t1 - t0, seconds=time.perf_counter() - t0,
                template_box=template.box, mask_radius_vox=template.mask_radius_vox,
                searched_fraction=info["n_voxels"] / float(np.prod(grid.volume.shape)),
                shape_zyx=list(tomogram.shape), grid_shape_zyx=list(grid.volume.shape))
    return picks, info


def picks_from_result(result: MatchResult, rotations: np.ndarray, grid: Grid, particle: str, radius_A: float,
                      options: MatchOptions, *, run: str = "", mask: np.ndarray | None = None,
                      accept: Accept | None = None) -> tuple[Picks, dict[str, Any]]:
    """Threshold (given or false-alarm), peaks and best rotations of a search, as picks in Å."""
    n_trials = result.n_voxels * result.n_rotations
    radius_vox = float(radius_A) / grid.voxel
    noise_threshold = false_alarm_threshold(result.cc_mean, result.cc_std, n_trials, options.false_alarms)
    tail_threshold = None
    if options.threshold is not None:
        threshold, rule = float(options.threshold), "option"
    else:
        threshold, rule = noise_threshold, f"false-alarm {options.false_alarms:g}/tomogram"
        # every local maximum above the background mean: the tomogram's own background peaks (their tail)
        floor = result.cc_mean + 1.0 * result.cc_std
        if tail_applies(result, grid):
            candidates = score_peaks(result, floor, radius_vox, options.distance_factor, mask)
            tail_threshold = peak_tail_threshold(candidates.score, options.false_alarms)
        if tail_threshold is not None and tail_threshold > threshold:
            threshold, rule = tail_threshold, f"false-alarm {options.false_alarms:g}/tomogram, peak tail"
    peaks = score_peaks(result, threshold, radius_vox, options.distance_factor, mask)
    n_rejected = 0
    if accept is not None and len(peaks):
        ok = np.asarray(accept(peaks.zyx), dtype=bool)
        n_rejected = int((~ok).sum())
        peaks = peaks.select(ok)
    gap = None
    if options.threshold is None and options.gap:
        gap = gap_threshold(peaks.score)
        if gap is not None and gap > threshold:
            threshold, rule = gap, rule + " raised to the gap above look-alikes"
            peaks = peaks.select(peaks.score >= threshold)
    idx = np.rint(peaks.zyx).astype(np.int64)
    if len(idx):
        idx = np.minimum(np.maximum(idx, 0), np.array(result.score.shape) - 1)
    rot_idx = result.rotation_index[tuple(idx.T)] if len(idx) else np.zeros(0, dtype=np.int64)
    mats = rotations[np.maximum(rot_idx, 0)] if len(idx) else np.zeros((0, 3, 3))
    xyz = voxel_to_angstrom(peaks.zyx, grid.voxel_A)
    picks = Picks.from_arrays(xyz, particle, score=peaks.score, rotations=mats, run=run)
    info = {"particle": particle, "threshold": threshold, "threshold_rule": rule, "cc_mean": result.cc_mean,
            "cc_std": result.cc_std, "n_trials": int(n_trials), "n_rotations": result.n_rotations,
            "step_deg": options.step_deg, "symmetry": options.symmetry, "voxel_size_A": grid.voxel,
            "noise_threshold": noise_threshold, "tail_threshold": tail_threshold, "gap_threshold": gap,
            "count": len(picks), "rejected": n_rejected}
    return picks, info
