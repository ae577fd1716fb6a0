"""Picking one tomogram with a loaded network: the core behind ``tomopick pick`` and the training validator.

:func:`pick_tomogram` takes a :class:`~tomopick.data.Tomogram` (in memory, memory-mapped or lazy) and a
:class:`~tomopick.models.checkpoint.LoadedModel`, resamples to the model's voxel size if needed (0.5–2×),
estimates robust intensity statistics from a subsample, streams the network over it window by window into a
per-class score store (:mod:`tomopick.inference.sliding`), finds peaks slab by slab (:mod:`tomopick.peaks`) and
returns scored picks in Å on the tomogram's own frame. It reads and writes no files:
:func:`tomopick.workflows.pick.pick` adds reading inputs and writing picks (and score maps).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tomopick.data import Picks, Tomogram
from tomopick.data.coords import voxel_to_angstrom
from tomopick.errors import TomopickError
from tomopick.inference.adapt import AdaptSettings, adapt_batchnorm
from tomopick.inference.normalize import normalisation_kwargs, robust_stats
from tomopick.inference.options import PickOptions
from tomopick.inference.rescale import rescale_factors, rescale_volume, rescaled_shape
from tomopick.inference.sliding import (
    InferenceSettings, ReleasingArray, count_windows, numpy_small_pages, predict_to_store, reuse_freed_memory,
)
from tomopick.inference.slab import slab_extent
from tomopick.peaks import find_peaks_blocks
from tomopick.peaks.thresholds import (
    CANDIDATE_FLOOR, VALLEY_BAND, ThresholdChoice, choose_thresholds, valley_threshold,
)

#: Default largest windows. Large windows with a thin context margin (crop mode, overlap 0.08: 8–10 voxels per
#: side) keep the recomputed fraction small: 1.33× the voxels of a 184 × 630 × 630 tomogram instead of 2.3× with
#: 96 × 160 × 160 windows and overlap 0.2 (bench/bench_pick.py). The network's cost per voxel hardly depends on
#: the window size on CPU.
DEFAULT_ROI = (208, 256, 256)
CROP_OVERLAP = 0.08


def _divisor(config: dict[str, Any]) -> int:
    from tomopick.models.registry import network_divisor  # lazy: models import torch

    if config.get("ensemble"):  # a fused ensemble (tomopick.inference.ensemble): its first member's divisor
        return int(config["ensemble"]["divisor"])
    net = config.get("network", {}) or {}
    return network_divisor(net.get("name", "unet"), net.get("hparams", {}) or {})


def _foreground(config: dict[str, Any]) -> tuple[list[int], list[str]]:
    classes = [str(c) for c in config["classes"]]
    keep = [i for i, c in enumerate(classes) if c.lower() != "background"]
    return keep, [classes[i] for i in keep]


def score_radius_fraction(config: dict[str, Any]) -> float:
    """Radius of the ``blob`` score's sphere as a fraction of the particle radius: the radius of the sphere labels
    the network was trained on (``target.radius_fraction``; 0.5 for the bundled model), at most 1."""
    target = config.get("target") or {}
    kind = str(target.get("kind", "sphere"))
    default = 1.0 if kind == "gaussian" else 0.5
    return float(min(1.0, max(0.1, float(target.get("radius_fraction", default) or default))))


def pick_tomogram(tomogram: Tomogram, loaded: Any, options: PickOptions | None = None, *, run: str = "",
                  settings: Any | None = None, mask: np.ndarray | None = None,
                  on_scores: Callable[[list[Tomogram]], None] | None = None, stats: Any | None = None,
                  progress: Callable[[int, int], None] | None = None) -> tuple[Picks, dict[str, Any]]:
    """Pick one tomogram with a loaded model (no picks file written).

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume (lazy or in memory) with its voxel size.
    loaded
        :class:`~tomopick.models.checkpoint.LoadedModel`.
    options
        :class:`~tomopick.inference.options.PickOptions` (score, thresholds, peak method, spacing, windows, TTA);
        peak method and spacing default to the checkpoint's ``config["pick"]``.
    settings
        :class:`~tomopick.inference.sliding.InferenceSettings`; default: :func:`inference_settings` of ``options``.
    mask
        Optional ``(z, y, x)`` boolean array on the tomogram's grid; picks outside are dropped.
    stats
        :class:`~tomopick.inference.normalize.RobustStats` to normalise with; default: estimated from a
        subsample of the (resampled) tomogram. Pass ``RobustStats(0.0, 1.0, 1)`` for an already normalised volume.
    on_scores
        Called with the per-class score maps (one lazy :class:`~tomopick.data.Tomogram` per class, on the
        model's grid, ``source`` = ``"<run>:<class>"``) while they exist, e.g. to write them
        (``tomopick pick --save-scores``; this function writes no files).
    progress
        ``progress(done, total)`` over windows.

    Returns
    -------
    (Picks, dict)
        Picks ``x, y, z`` in Å relative to voxel (0, 0, 0) of ``tomogram``, with ``score`` and ``run``; and a
        summary (shape, rescale factors, timings, counts, and per class the threshold and its rule).
    """
    import torch


    t0 = time.perf_counter()
    source_name = tomogram.source or run or None
    config = loaded.config
    options = (options or PickOptions()).with_defaults(config)
    settings = settings or inference_settings(loaded, options)
    channels, names = _foreground(config)
    summary: dict[str, Any] = {"run": run, "shape_zyx": list(tomogram.shape), "voxel_size_A": tomogram.voxel_size_A,
                               "score": options.score}
    choices = choose_thresholds(names, options.threshold, config.get("pick"), str(options.score), source_name)
    valley = options.threshold_rule == "valley" and options.score == "blob"
    # the valley rule looks at every peak above its lower bound, then chooses per class (given thresholds win)
    thresholds = [VALLEY_BAND[0] if (valley and c.rule != "option") else c.value for c in choices]
    if mask is not None and tuple(np.shape(mask)) != tomogram.shape:
        raise TomopickError(f"mask shape {tuple(np.shape(mask))} differs from the tomogram's {tomogram.shape}",
                            source_name)
    # whole-volume passes go through a view that drops memory-mapped pages as it goes (bounded resident set)
    tomogram.with_data(ReleasingArray(tomogram.data)).check_finite(allow_nonfinite=options.allow_nonfinite)
    if min(tomogram.shape) == 0:
        summary.update(counts={}, seconds=time.perf_counter() - t0, note="empty tomogram")
        return Picks.empty(), summary
    try:
        norm_kwargs = normalisation_kwargs(config.get("normalisation"))
    except ValueError as exc:
        raise TomopickError(str(exc), loaded.path or None) from None
    factors = rescale_factors(tomogram.voxel_size_A, loaded.voxel_size_A, source=source_name)
    summary["rescale_factors_zyx"] = None if factors is None else [float(f) for f in factors]
    try:
        with numpy_small_pages(settings.small_pages), _on_model_grid(tomogram, factors, settings) as (source, grid_vs):
            if stats is None:
                stats = robust_stats(ReleasingArray(source),
                                     **{k: v for k, v in norm_kwargs.items() if k == "max_samples"})
            if stats.n_samples == 0 or stats.is_constant:
                summary.update(counts={n: 0 for n in names}, seconds=time.perf_counter() - t0,
                               note="constant tomogram: nothing to pick")
                return Picks.empty(), summary
            norm_kwargs.pop("max_samples", None)
            total = count_windows(source.shape, settings)
            done = [0]

            def step(n: int) -> None:
                done[0] += n
                if progress is not None:
                    progress(done[0], total)

            model = loaded.model.to(settings.device)
            t1 = time.perf_counter()
            if options.adapt_norm:
                reference = (config.get("pick") or {}).get("adapt_reference")
                model, summary["adapt_norm"] = _adapted(model, source, stats, norm_kwargs, options, settings,
                                                        reference)
            store = predict_to_store(source, model, output=config.get("output", "softmax"), channels=channels,
                                     stats=stats, norm_kwargs=norm_kwargs, settings=settings, progress=step)
            t2 = time.perf_counter()
            try:
                grid_mask = _mask_on_grid(mask, tomogram.shape, store.shape[1:])
                peaks = _store_peaks(store, loaded, names, grid_vs, options, thresholds, grid_mask, settings.device)
                if valley:
                    peaks, choices = _apply_valley(peaks, choices)
                if on_scores is not None:
                    on_scores([Tomogram(_ChannelView(store.array, c), tuple(float(v) for v in grid_vs),
                                        source=f"{run}:{name}") for c, name in enumerate(names)])
            finally:
                store.close()
            t3 = time.perf_counter()
    finally:
        if settings.device != "cpu":
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    xyz = voxel_to_angstrom(peaks.zyx, grid_vs)
    picks = Picks.from_arrays(xyz, [names[c] for c in peaks.channel], score=peaks.score, run=run)
    # rescaled grids can put a pick a fraction of a voxel past the edge: keep only picks inside the tomogram
    picks = picks.select(picks.inside(tomogram.shape, tomogram.voxel_size_A)) if len(picks) else picks
    summary.update(counts={n: int((picks.frame["particle"] == n).sum()) for n in names},
                   thresholds={n: {"value": c.value, "rule": c.rule} for n, c in zip(names, choices)},
                   windows=total, windows_skipped=int(getattr(store, "windows_skipped", 0)),
                   z_range_run=list(getattr(store, "z_range", (0, store.shape[1]))),
                   seconds_network=t2 - t1, seconds_peaks=t3 - t2,
                   seconds=time.perf_counter() - t0, store_on_disk=bool(getattr(store, "on_disk", False)))
    return picks, summary


def _adapted(model: Any, source: Any, stats: Any, norm_kwargs: dict[str, Any], options: PickOptions,
             settings: Any, reference: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
    """The network with its batch-norm statistics adapted to this tomogram (inside the specimen slab; relative
    to the checkpoint's reference statistics when it stores them)."""
    z_range = None
    if settings.skip_vacuum:
        extent = slab_extent(source, stats)
        z_range = (extent.z0, extent.z1)
    # the train-mode passes over the windows allocate activations like the network pass: reuse freed memory
    # (without it, ~1 M page faults and 2.2 s of system time on a CZII-size tomogram; with it 0.25 s)
    with reuse_freed_memory(settings.reuse_memory and settings.device == "cpu"):
        return adapt_batchnorm(model, source, stats, norm_kwargs,
                               settings=AdaptSettings(strength=options.adapt_norm), z_range=z_range,
                               device=settings.device, divisor=settings.divisor, reference=reference)


@contextlib.contextmanager
def _on_model_grid(tomogram: Tomogram, factors: Any, settings: Any) -> Iterator[tuple[Any, np.ndarray]]:
    """``(volume, voxel size zyx)`` on the model's grid: the tomogram's own data when no rescaling is needed,
    else the rescaled volume — in memory, or in a temporary memory-mapped file (deleted on exit) above the
    settings' memory budget."""

    grid_vs = np.asarray(tomogram.voxel_size_A, dtype=np.float64)
    if factors is None:
        yield tomogram.data, grid_vs
        return
    shape = rescaled_shape(tomogram.shape, factors)
    if int(np.prod(shape)) * 4 <= settings.memory_budget:
        yield rescale_volume(ReleasingArray(tomogram.data), factors), grid_vs / factors
        return
    tmp_dir = tempfile.mkdtemp(prefix="tomopick-rescaled-", dir=settings.store_directory)
    try:
        out = np.lib.format.open_memmap(os.path.join(tmp_dir, "rescaled.npy"), mode="w+", dtype=np.float32,
                                        shape=shape)
        rescale_volume(ReleasingArray(tomogram.data), factors, out=ReleasingArray(out))
        yield out, grid_vs / factors
        del out
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _store_peaks(store: Any, loaded: Any, names: list[str], grid_vs: np.ndarray, options: PickOptions,
                 thresholds: list[float], grid_mask: Any, device: str) -> Any:
    """Peaks of every class of the score store, scored as ``options.score`` says (blob: candidates at
    :data:`~tomopick.peaks.thresholds.CANDIDATE_FLOOR` rescored by their sphere mean), at the thresholds."""
    particles = loaded.particles
    radius_vox = [(particles[n].radius_A if n in particles else 50.0) / float(np.mean(grid_vs)) for n in names]
    method = str(options.peak_method)
    blob = options.score == "blob"
    fraction = score_radius_fraction(loaded.config)
    return find_peaks_blocks(store.read, store.shape, method, threshold=thresholds, radius_vox=radius_vox,
                             distance_factor=float(options.distance_factor), mask=grid_mask,
                             device=device if method in ("maxpool", "mpnms") else None,
                             score_radius_vox=[fraction * r for r in radius_vox] if blob else None,
                             floor=[min(CANDIDATE_FLOOR, t) for t in thresholds] if blob else None)


def _apply_valley(peaks: Any, choices: list[ThresholdChoice]) -> tuple[Any, list[ThresholdChoice]]:
    """Per class, the valley threshold of its own peak scores (classes with a given threshold keep it)."""
    keep = np.ones(len(peaks), dtype=bool)
    out = []
    for c, choice in enumerate(choices):
        if choice.rule == "option":
            out.append(choice)
            continue
        mine = peaks.channel == c
        value = valley_threshold(peaks.score[mine])
        keep &= ~mine | (peaks.score >= value)
        out.append(ThresholdChoice(value, "valley"))
    return peaks.select(keep), out


def resolve_thresholds(threshold: Any, names: list[str], source: str | None = None,
                       score: str = "peak") -> list[float]:
    """Per-class thresholds (model order) from one value, a list, or ``{class: value}`` (``"*"``: the rest);
    classes not named get the default of ``score``."""
    return [c.value for c in choose_thresholds(names, threshold, None, score, source)]


def _mask_on_grid(mask: Any, tomo_shape: Sequence[int], grid_shape: Sequence[int]) -> Any:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if tuple(mask.shape) != tuple(tomo_shape):
        raise TomopickError(f"mask shape {tuple(mask.shape)} differs from the tomogram's {tuple(tomo_shape)}")
    if tuple(grid_shape) == tuple(tomo_shape):
        return mask.astype(bool, copy=False)
    idx = [np.minimum(np.rint(np.arange(g) * (t - 1) / max(g - 1, 1)).astype(int), t - 1)
           for g, t in zip(grid_shape, tomo_shape)]
    return mask[np.ix_(*idx)].astype(bool)


class _ChannelView:
    """A ``(z, y, x)`` view of one channel of a ``(C, z, y, x)`` array-like (lazy for zarr)."""

    def __init__(self, array: Any, channel: int) -> None:
        self.array, self.channel = array, channel
        self.shape = tuple(array.shape[1:])
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if key == (Ellipsis,):
            key = ()
        return np.asarray(self.array[(self.channel, *key)])


def window_dependent(config: dict[str, Any]) -> bool:
    """Whether a network's output depends on the window it sees, beyond its receptive field: coordinate channels
    (DeepETPicker) and per-sample normalisation (instance, group or layer norm, SwinUNETR), whose statistics over
    a large window differ from those over the training patches. Such networks are run on windows of their
    training patch size."""
    if config.get("ensemble"):
        return bool(config["ensemble"].get("window_dependent"))
    net = config.get("network", {}) or {}
    name, hparams = net.get("name"), net.get("hparams", {}) or {}
    if name == "coordresunet" and hparams.get("coord_conv", True):
        return True
    if name == "swinunetr":
        return True
    norm = hparams.get("norm", "batch")
    norm_name = (norm[0] if isinstance(norm, (list, tuple)) and norm else norm) or ""
    return str(norm_name).lower() in ("instance", "group", "layer", "instance_nvfuser")


def inference_settings(loaded: Any, options: PickOptions | None = None, *,
                       store_directory: str | None = None) -> Any:
    """The :class:`~tomopick.inference.sliding.InferenceSettings` :func:`pick_tomogram` uses for a model.

    Defaults: the model's stored plan (``config["pick"]["roi_size"]`` and ``["overlap"]``, e.g. czii-10A v5's
    208 × 192 × 192 windows at overlap 0.12) or 208 × 256 × 256 windows with an 8–10 voxel margin in crop mode
    (overlap 0.08; 0.25 in gaussian mode); for networks whose output depends on the window
    (:func:`window_dependent`: coordinate channels,
    instance/group/layer norm) the training patch size, fixed, with overlap 0.25 — with instance norm, 208 × 256 ×
    256 windows instead of the 48³ training patches cut the CZII score of an early czii-10A from 0.82 to 0.75
    (held-out simulated runs, best thresholds); batch 1 on CPU, 4 on GPU; window sizes divisible by the network's
    downsampling."""
    options = options or PickOptions()
    config = loaded.config
    fixed = window_dependent(config) and options.roi_size is None
    on_gpu = str(options.device).startswith("cuda")
    plan = config.get("pick") or {}  # the model's stored inference plan (PickDefaults.roi_size, .overlap)
    roi = tuple(int(v) for v in (options.roi_size or (loaded.patch_size if fixed else
                                                      (plan.get("roi_size") or DEFAULT_ROI))))
    overlap = options.overlap
    if overlap is None:
        crop_overlap = CROP_OVERLAP if plan.get("overlap") is None else float(plan["overlap"])
        overlap = 0.25 if (fixed or options.mode != "crop") else crop_overlap
    try:
        return InferenceSettings(
            mode=options.mode, roi_size=roi,  # type: ignore[arg-type]
            overlap=float(overlap), tta=int(options.tta),
            batch_size=int(options.batch_size or (4 if on_gpu else 1)), device=str(options.device),
            divisor=_divisor(config), fixed_roi=fixed, store_directory=store_directory,
            precision=str(options.precision), skip_vacuum=bool(options.skip_vacuum))
    except ValueError as exc:
        raise TomopickError(str(exc)) from None
