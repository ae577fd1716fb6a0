"""``pick()``: tomograms + a trained model → picks in Å (the verb behind ``tomopick pick``).

For each input: read it lazily (:func:`tomopick.io.read_tomogram`), refuse NaN/Inf unless allowed, resample to
the model's voxel size if needed (0.5–2×), estimate robust intensity statistics from a subsample, stream the
network over it window by window into a per-class score store (:mod:`tomopick.inference.sliding`), find peaks
slab by slab (:mod:`tomopick.peaks`), convert to Å on the tomogram's own frame, and write the picks
(:func:`tomopick.io.write_picks`): one file with a ``run`` column, one file per input in a folder, or a copick
project (``copick://…``).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError

DEFAULT_MODEL = "czii-10A"
#: Default largest windows. Large windows with a thin context margin (crop mode, overlap 0.08: 8–10 voxels per
#: side) keep the recomputed fraction small: 1.33× the voxels of a 184 × 630 × 630 tomogram instead of 2.3× with
#: 96 × 160 × 160 windows and overlap 0.2 (bench/bench_pick.py). The network's cost per voxel hardly depends on
#: the window size on CPU.
CPU_ROI = (208, 256, 256)
GPU_ROI = (208, 256, 256)
CROP_OVERLAP = 0.08


@dataclass
class PickReport:
    """What :func:`pick` did, per input: run name, counts per class, timings (s) and where picks went."""

    picks: Picks
    outputs: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


# -- model ------------------------------------------------------------------------------------------------------
def resolve_model(model: Any | None):
    """A :class:`~tomopick.models.checkpoint.LoadedModel` from a path, a loaded model, or ``None`` (the bundled
    ``czii-10A`` model)."""
    from tomopick.models.checkpoint import LoadedModel, load_checkpoint

    if isinstance(model, LoadedModel):
        return model
    if model is None:
        try:
            from tomopick.models.bundled import load_bundled
        except ImportError:
            raise TomopickError(f"no bundled model {DEFAULT_MODEL!r} in this installation; "
                                "pass --model <checkpoint.pt>") from None
        try:
            return load_bundled(DEFAULT_MODEL)
        except TomopickError as exc:
            raise TomopickError(f"{exc.message}; pass --model <checkpoint.pt>", exc.path) from None
        except (FileNotFoundError, KeyError, OSError) as exc:
            raise TomopickError(f"the bundled model {DEFAULT_MODEL!r} is not available ({exc}); "
                                "pass --model <checkpoint.pt>") from None
    return load_checkpoint(model)


def _divisor(config: dict[str, Any]) -> int:
    net = config.get("network", {}) or {}
    hp = net.get("hparams", {}) or {}
    name = net.get("name", "unet")
    if name == "swinunetr":
        return 32
    if "strides" in hp:
        return int(np.prod([int(s) for s in hp["strides"]]))
    if "channels" in hp:
        return 2 ** (len(hp["channels"]) - 1)
    return 8 if name in ("unet", "resunet", "coordresunet") else 16


def _foreground(config: dict[str, Any]) -> tuple[list[int], list[str]]:
    classes = [str(c) for c in config["classes"]]
    keep = [i for i, c in enumerate(classes) if c.lower() != "background"]
    return keep, [classes[i] for i in keep]


# -- inputs / outputs ---------------------------------------------------------------------------------------
def run_name(path: str) -> str:
    """A run name for an input: the copick ``run=`` of a URI, else the file name without its extensions."""
    text = str(path)
    if text.startswith("copick://"):
        from urllib.parse import parse_qs

        query = text.split("?", 1)[1] if "?" in text else ""
        return parse_qs(query).get("run", [""])[-1]
    name = Path(text.rstrip("/")).name
    for ext in (".ome.zarr", ".zarr", ".mrc", ".rec", ".map", ".st", ".mrcs", ".ali", ".tif", ".tiff"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Inputs as strings; a copick URI without ``run=`` expands to every run of the project."""
    out: list[str] = []
    for item in inputs:
        text = str(item)
        if text.startswith("copick://") and "run=" not in text:
            from tomopick.io.copick_project import CopickProject
            from tomopick.io.formats.copick import parse_copick_uri

            target, _ = parse_copick_uri(text)
            runs = CopickProject.open(target).runs()
            if not runs:
                raise TomopickError("the copick project has no runs", text)
            sep = "&" if "?" in text else "?"
            out.extend(f"{text}{sep}run={r}" for r in runs)
        else:
            out.append(text)
    if not out:
        raise TomopickError("no input tomograms given")
    return out


def _out_kind(out: str, n_inputs: int) -> str:
    if out.startswith("copick://"):
        return "copick"
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir() or (not path.suffix and n_inputs > 1):
        return "folder"
    return "file"


def _folder_extension() -> str:
    from tomopick.io import formats

    exts = [e for f in formats("picks") for e in f.extensions if f.writer is not None]
    for preferred in (".star", ".csv"):  # RELION STAR keeps run, class and score
        if preferred in exts:
            return preferred
    if not exts:
        raise TomopickError("no picks format can be written in this installation")
    return exts[0]


# -- the verb -----------------------------------------------------------------------------------------------
def pick_tomogram(tomogram: Tomogram, loaded: Any, *, run: str = "", threshold: float | Sequence[float] | dict |
                  None = None, peak_method: str = "maxpool", distance_factor: float = 0.75,
                  settings: Any | None = None, mask: np.ndarray | None = None, allow_nonfinite: bool = False,
                  scores_out: str | None = None, overwrite: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> tuple[Picks, dict[str, Any]]:
    """Pick one tomogram with a loaded model (no picks file written).

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume (lazy or in memory) with its voxel size.
    loaded
        :class:`~tomopick.models.checkpoint.LoadedModel`.
    threshold
        Score threshold: one value, one per class (model order), or ``{class: value}``; default: the
        checkpoint's ``config["pick"]["thresholds"]`` (chosen on validation data) where present, else 0.5.
    peak_method
        ``maxpool`` | ``mpnms`` | ``cc`` | ``localmax`` (:mod:`tomopick.peaks`).
    distance_factor
        Minimum distance between picks of a class = ``distance_factor × radius``.
    settings
        :class:`~tomopick.inference.sliding.InferenceSettings` (window, overlap, TTA, batch, device).
    mask
        Optional ``(z, y, x)`` boolean array on the tomogram's grid; picks outside are dropped.
    scores_out
        Folder to write the per-class score maps (OME-Zarr, one per class) into.
    progress
        ``progress(done, total)`` over windows.

    Returns
    -------
    (Picks, dict)
        Picks ``x, y, z`` in Å relative to voxel (0, 0, 0) of ``tomogram``, with ``score`` and ``run``; and a
        summary (shape, rescale factors, timings, counts).
    """
    import torch

    from tomopick.inference.normalize import normalisation_kwargs, robust_stats
    from tomopick.inference.rescale import rescale_factors, rescale_volume, rescaled_shape
    from tomopick.inference.sliding import (
        InferenceSettings, ReleasingArray, count_windows, predict_to_store,
    )
    from tomopick.peaks import find_peaks_blocks

    t0 = time.perf_counter()
    source_name = tomogram.source or run or None
    config = loaded.config
    settings = settings or InferenceSettings()
    channels, names = _foreground(config)
    summary: dict[str, Any] = {"run": run, "shape_zyx": list(tomogram.shape), "voxel_size_A": tomogram.voxel_size_A}
    if threshold is None:  # the model's own per-class thresholds (chosen on its validation data), else 0.5
        threshold = (config.get("pick") or {}).get("thresholds")
    thresholds = _thresholds(threshold, names, source_name)  # option errors before any work
    if mask is not None and tuple(np.shape(mask)) != tomogram.shape:
        raise TomopickError(f"mask shape {tuple(np.shape(mask))} differs from the tomogram's {tomogram.shape}",
                            source_name)
    # whole-volume passes go through a view that drops memory-mapped pages as it goes (bounded resident set)
    tomogram.with_data(ReleasingArray(tomogram.data)).check_finite(allow_nonfinite=allow_nonfinite)
    if min(tomogram.shape) == 0:
        summary.update(counts={}, seconds=time.perf_counter() - t0, note="empty tomogram")
        return Picks.empty(), summary
    try:
        norm_kwargs = normalisation_kwargs(config.get("normalisation"))
    except ValueError as exc:
        raise TomopickError(str(exc), loaded.path or None) from None
    factors = rescale_factors(tomogram.voxel_size_A, loaded.voxel_size_A, source=source_name)
    tmp_dir = None
    source: Any = tomogram.data
    grid_vs = np.asarray(tomogram.voxel_size_A, dtype=np.float64)
    try:
        if factors is not None:
            shape = rescaled_shape(tomogram.shape, factors)
            if int(np.prod(shape)) * 4 > settings.memory_budget:
                tmp_dir = tempfile.mkdtemp(prefix="tomopick-rescaled-", dir=settings.store_directory)
                out = np.lib.format.open_memmap(os.path.join(tmp_dir, "rescaled.npy"), mode="w+",
                                                dtype=np.float32, shape=shape)
            else:
                out = None
            if out is None:
                source = rescale_volume(ReleasingArray(tomogram.data), factors)
            else:
                rescale_volume(ReleasingArray(tomogram.data), factors, out=ReleasingArray(out))
                source = out
            grid_vs = grid_vs / factors
        summary["rescale_factors_zyx"] = None if factors is None else [float(f) for f in factors]
        stats = robust_stats(ReleasingArray(source), **{k: v for k, v in norm_kwargs.items() if k == "max_samples"})
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
        store = predict_to_store(source, model, output=config.get("output", "softmax"), channels=channels,
                                 stats=stats, norm_kwargs=norm_kwargs, settings=settings, progress=step)
        t2 = time.perf_counter()
        try:
            particles = loaded.particles
            radius_vox = [(particles[n].radius_A if n in particles else 50.0) / float(np.mean(grid_vs))
                          for n in names]
            grid_mask = _mask_on_grid(mask, tomogram.shape, store.shape[1:])
            device = settings.device if peak_method in ("maxpool", "mpnms") else None
            peaks = find_peaks_blocks(store.read, store.shape, peak_method, threshold=thresholds,
                                     radius_vox=radius_vox, distance_factor=distance_factor, mask=grid_mask,
                                     device=device)
            if scores_out is not None:
                _write_scores(store, names, grid_vs, scores_out, run, overwrite)
        finally:
            store.close()
        t3 = time.perf_counter()
    finally:
        if tmp_dir is not None:
            import shutil

            del source
            shutil.rmtree(tmp_dir, ignore_errors=True)
        if settings.device != "cpu":
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
    from tomopick.data.coords import voxel_to_angstrom

    xyz = voxel_to_angstrom(peaks.zyx, grid_vs)
    picks = Picks.from_arrays(xyz, [names[c] for c in peaks.channel], score=peaks.score, run=run)
    # rescaled grids can put a pick a fraction of a voxel past the edge: keep only picks inside the tomogram
    picks = picks.select(picks.inside(tomogram.shape, tomogram.voxel_size_A)) if len(picks) else picks
    summary.update(counts={n: int((picks.frame["particle"] == n).sum()) for n in names},
                   windows=total, seconds_network=t2 - t1, seconds_peaks=t3 - t2,
                   seconds=time.perf_counter() - t0, store_on_disk=bool(getattr(store, "on_disk", False)))
    return picks, summary


def _thresholds(threshold: Any, names: list[str], source: str | None = None) -> list[float]:
    """Per-class thresholds (model order) from one value, a list, or ``{class: value}`` (``"*"``: the rest)."""
    values = _threshold_values(threshold, names)
    bad = [v for v in values if not 0 < v <= 1]
    if bad:
        raise TomopickError(f"score thresholds must be in (0, 1], got {bad[0]:g}", source)
    return values


def _threshold_values(threshold: Any, names: list[str]) -> list[float]:
    if threshold is None:
        return [0.5] * len(names)
    if isinstance(threshold, dict):
        unknown = sorted(set(threshold) - set(names) - {"*"})
        if unknown:
            raise TomopickError(f"threshold given for unknown class(es) {', '.join(unknown)}; "
                                f"the model's classes: {', '.join(names)}")
        default = float(threshold.get("*", 0.5))
        return [float(threshold.get(n, default)) for n in names]
    values = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
    if values.size == 1:
        return [float(values[0])] * len(names)
    if values.size != len(names):
        raise TomopickError(f"{values.size} thresholds for {len(names)} classes ({', '.join(names)})")
    return [float(v) for v in values]


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


def _write_scores(store: Any, names: list[str], grid_vs: np.ndarray, folder: str, run: str,
                  overwrite: bool) -> None:
    from tomopick.io import write_tomogram

    for c, name in enumerate(names):
        lazy = _ChannelView(store.array, c)
        tomo = Tomogram(lazy, tuple(float(v) for v in grid_vs), source=f"{run}:{name}")
        stem = f"{run}_{name}" if run else name
        write_tomogram(tomo, Path(folder) / f"{stem}_scores.ome.zarr", overwrite=overwrite, levels=1,
                       dtype="float16")


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


def inference_settings(loaded: Any, *, mode: str = "crop", roi_size: Sequence[int] | None = None,
                       overlap: float | None = None, tta: int = 1, batch_size: int | None = None,
                       device: str = "cpu", store_directory: str | None = None) -> Any:
    """The :class:`~tomopick.inference.sliding.InferenceSettings` :func:`pick` uses for a model (defaults:
    208 × 256 × 256 windows with an 8–10 voxel margin in crop mode; the training patch size, fixed, for networks
    with coordinate channels; batch 1 on CPU, 4 on GPU; window sizes divisible by the network's downsampling)."""
    from tomopick.inference.sliding import InferenceSettings

    config = loaded.config
    net = config.get("network", {}) or {}
    coord_net = net.get("name") == "coordresunet" and (net.get("hparams", {}) or {}).get("coord_conv", True)
    on_gpu = str(device).startswith("cuda")
    roi = tuple(int(v) for v in (roi_size or (loaded.patch_size if coord_net else (GPU_ROI if on_gpu else CPU_ROI))))
    try:
        return InferenceSettings(
            mode=mode, roi_size=roi,  # type: ignore[arg-type]
            overlap=(CROP_OVERLAP if mode == "crop" else 0.25) if overlap is None else float(overlap), tta=int(tta),
            batch_size=int(batch_size or (4 if on_gpu else 1)), device=str(device), divisor=_divisor(config),
            fixed_roi=bool(coord_net and roi_size is None), store_directory=store_directory)
    except ValueError as exc:
        raise TomopickError(str(exc)) from None


def pick(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], model: Any | None = None, *,
         out: str | os.PathLike[str] | None = None, threshold: float | Sequence[float] | dict | None = None,
         peak_method: str = "maxpool", distance_factor: float = 0.75, tta: int = 1, overlap: float | None = None,
         batch_size: int | None = None, device: str = "cpu", mode: str = "crop",
         roi_size: Sequence[int] | None = None, voxel_size_A: float | None = None, allow_nonfinite: bool = False,
         save_scores: str | os.PathLike[str] | None = None, mask: np.ndarray | None = None,
         overwrite: bool = False, threads: int | None = None, picks_format: str | None = None,
         user_id: str = "tomopick", session_id: str = "0",
         progress: Callable[[str, int, int], None] | None = None) -> PickReport:
    """Pick particles in one or more tomograms with a trained model.

    Parameters
    ----------
    inputs
        Tomogram path(s)/URI(s) readable by :func:`tomopick.io.read_tomogram` (MRC, OME-Zarr, ``copick://…``;
        a copick URI without ``run=`` means every run).
    model
        Checkpoint path or a loaded model; ``None`` uses the bundled ``czii-10A`` model.
    out
        A picks file (all inputs, ``run`` column set), a folder (one file per input), or a ``copick://`` project;
        ``None`` returns the picks without writing.
    threshold
        Score threshold: one value, one per class, or ``{class: value}`` (default: the model's per-class
        thresholds chosen on its validation data where the checkpoint has them, else 0.5).
    peak_method
        ``maxpool`` (default) | ``mpnms`` | ``cc`` | ``localmax``.
    tta
        Flip test-time augmentation: 1, 4 or 8 variants.
    overlap
        Crop mode: fraction of each window used as context (default 0.08, i.e. 8–10 voxels per side);
        gaussian mode: window overlap (default 0.25).
    batch_size
        Windows per forward pass (default 1 on CPU, 4 on GPU).
    device
        ``cpu`` or ``cuda``; mixed precision is used on GPU only.
    mode
        ``crop`` (overlap-tile, default) or ``gaussian`` (MONAI Gaussian blending per block).
    roi_size
        Largest window ``(z, y, x)``; default 208×256×256 (networks with coordinate channels always use their
        training patch size).
    voxel_size_A
        Override the voxel size of the inputs (Å).
    allow_nonfinite
        Treat NaN/Inf voxels as the median instead of refusing the tomogram.
    save_scores
        Folder for the per-class score maps (OME-Zarr).
    mask
        Optional ``(z, y, x)`` boolean mask (single input only) restricting where picks may be.
    threads
        Set torch's CPU threads (process-wide); default: leave torch's setting (one per physical core).
    progress
        ``progress(run, done, total)`` over windows.

    Returns
    -------
    PickReport
    """
    import torch

    from tomopick.io import check_output, get_format, read_tomogram, write_picks
    from tomopick.peaks import METHODS

    items = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    if peak_method not in METHODS:
        raise TomopickError(f"unknown peak method {peak_method!r}; choose one of {', '.join(METHODS)}")
    if mask is not None and len(items) != 1:
        raise TomopickError("a mask can only be given for a single input tomogram")
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        dupes = sorted({r for r in runs if runs.count(r) > 1})
        raise TomopickError(f"several inputs share the run name {', '.join(dupes)}; rename them")
    out_text = None if out is None else str(out)
    kind = None if out_text is None else _out_kind(out_text, len(items))
    targets: dict[str, Path] = {}
    if kind == "file":
        check_output(out_text, overwrite)
    elif kind == "folder":
        ext = _folder_extension() if picks_format is None else (get_format(picks_format, "picks").extensions
                                                                  or ("",))[0]
        for r in runs:
            targets[r] = check_output(Path(out_text) / f"{r}{ext}", overwrite)
    loaded = resolve_model(model)
    if threads is not None:
        torch.set_num_threads(max(1, int(threads)))  # else torch's default: one per physical core
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TomopickError("--device cuda was asked for but no CUDA GPU is available")
    settings = inference_settings(loaded, mode=mode, roi_size=roi_size, overlap=overlap, tta=tta,
                                  batch_size=batch_size, device=device)
    report = PickReport(picks=Picks.empty())
    all_picks = []
    for item, run in zip(items, runs):
        options = {"voxel_size_A": voxel_size_A} if voxel_size_A is not None else {}
        tomogram = read_tomogram(item, **options)
        picks, summary = pick_tomogram(
            tomogram, loaded, run=run, threshold=threshold, peak_method=peak_method,
            distance_factor=distance_factor, settings=settings, mask=mask, allow_nonfinite=allow_nonfinite,
            scores_out=None if save_scores is None else str(save_scores), overwrite=overwrite,
            progress=None if progress is None else (lambda d, t, r=run: progress(r, d, t)))
        picks = picks.with_columns(user=user_id, session=session_id) if len(picks) else picks
        summary["input"] = item
        vs = float(np.mean(tomogram.voxel_size_A))
        summary["writer_options"] = {"voxel_size_A": vs, "tomogram_shape_zyx": tomogram.shape}
        if kind == "folder":
            write_picks(picks, targets[run], overwrite=overwrite, format=picks_format,
                        **summary["writer_options"])
            report.outputs.append(str(targets[run]))
        elif kind == "copick":
            write_picks(picks, out_text, overwrite=overwrite, run=run, user_id=user_id, session_id=session_id)
            report.outputs.append(f"{out_text} (run {run})")
        report.runs.append(summary)
        all_picks.append(picks)
    report.picks = Picks.concat(all_picks)
    if kind == "file":
        # pixel-based formats need a pixel size (and RELION 5 the tomogram size): given when all inputs agree
        options = [r["writer_options"] for r in report.runs]
        common = {k: v for k, v in options[0].items() if all(o[k] == v for o in options)}
        write_picks(report.picks, out_text, overwrite=overwrite, format=picks_format, **common)
        report.outputs.append(out_text)
    return report
