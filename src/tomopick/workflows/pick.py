"""``pick()``: tomograms + a trained model → picks in Å (the verb behind ``tomopick pick``).

For each input: read it lazily (:func:`tomopick.io.read_tomogram`), pick it with
:func:`tomopick.inference.picking.pick_tomogram` (NaN/Inf check, resampling to the model's voxel size, robust
normalisation, streamed sliding window, peaks slab by slab, picks in Å on the tomogram's own frame), and write the
picks (:func:`tomopick.io.write_picks`): one file with a ``run`` column, one file per input in a folder, or a
copick project (``copick://…``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.inference.picking import inference_settings, pick_tomogram, resolve_thresholds
from tomopick.io.inputs import expand_inputs, run_name

__all__ = ["DEFAULT_MODEL", "PickReport", "expand_inputs", "inference_settings", "pick", "pick_tomogram",
           "resolve_model", "resolve_thresholds", "run_name"]

DEFAULT_MODEL = "czii-10A"


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


# -- inputs / outputs ---------------------------------------------------------------------------------------
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
