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
from tomopick.inference.ensemble import EnsembleSpec
from tomopick.inference.options import PickOptions
from tomopick.inference.picking import inference_settings, pick_tomogram, resolve_thresholds
from tomopick.io import check_output, formats, get_format, read_tomogram, write_picks, write_tomogram
from tomopick.io.inputs import expand_inputs, run_name

__all__ = ["DEFAULT_MODEL", "PickOptions", "PickReport", "describe_thresholds", "expand_inputs",
           "inference_settings", "pick", "pick_tomogram", "resolve_model", "resolve_thresholds", "run_name"]

DEFAULT_MODEL = "czii-10A"


@dataclass
class PickReport:
    """What :func:`pick` did, per input: run name, counts per class, timings (s) and where picks went."""

    picks: Picks
    outputs: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    options: PickOptions | None = None  # as used: peak method and spacing filled in from the model


# -- model ------------------------------------------------------------------------------------------------------
def resolve_model(model: Any | None):
    """A :class:`~tomopick.models.checkpoint.LoadedModel` from a path, a loaded model, or ``None`` (the bundled
    ``czii-10A`` model); an :class:`~tomopick.inference.ensemble.EnsembleSpec` (or a list of two or more) gives
    the fused ensemble (:mod:`tomopick.workflows.ensemble`)."""
    from tomopick.models.checkpoint import LoadedModel, load_checkpoint  # lazy: imports torch (options are checked first)

    if isinstance(model, (list, tuple)) and len(model) == 1:
        model = model[0]
    if isinstance(model, LoadedModel):
        return model
    if isinstance(model, (list, tuple, EnsembleSpec)):
        from tomopick.workflows.ensemble import load_ensemble

        return load_ensemble(model)
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
    from tomopick.models.bundled import bundled_name, bundled_names, load_bundled

    name = bundled_name(model)
    if name is None and isinstance(model, (str, os.PathLike)) and not Path(model).exists():
        raise TomopickError(f"checkpoint not found (bundled picking models: {', '.join(bundled_names('pick'))})",
                           model)
    loaded = load_bundled(name) if name is not None else load_checkpoint(model)
    require_picker(loaded.config, loaded.path or name)
    return loaded


def require_picker(config: dict[str, Any], path: Any = None) -> None:
    """A one-line error unless ``config`` is a picking network's (a segmentation checkpoint, ``task: segment``,
    segments; it does not pick)."""
    if str((config or {}).get("task", "")) == "segment":
        raise TomopickError("a segmentation model, not a picking network: use it with `tomopick segment` or "
                            "`tomopick pick --context/--segment`", path)


# -- inputs / outputs ---------------------------------------------------------------------------------------
def _out_kind(out: str, n_inputs: int) -> str:
    if out.startswith("copick://"):
        return "copick"
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir() or (not path.suffix and n_inputs > 1):
        return "folder"
    return "file"


def _folder_extension() -> str:

    exts = [e for f in formats("picks") for e in f.extensions if f.writer is not None]
    for preferred in (".star", ".csv"):  # RELION STAR keeps run, class and score
        if preferred in exts:
            return preferred
    if not exts:
        raise TomopickError("no picks format can be written in this installation")
    return exts[0]


# -- the verb -----------------------------------------------------------------------------------------------
def plan_outputs(out: Any, n_inputs: int, runs: Sequence[str], picks_format: str | None,
                 overwrite: bool) -> tuple[str | None, str | None, dict[str, Path]]:
    """Where picks go, checked before any work: ``(out_text, kind, targets)`` with kind ``file``, ``folder`` (one
    file per run: ``targets``), ``copick`` or ``None`` (no output). Shared by pick, match and prompt matching."""
    out_text = None if out is None else str(out)
    kind = None if out_text is None else _out_kind(out_text, n_inputs)
    if picks_format is not None:
        get_format(picks_format, "picks")  # unknown names fail here, before any work
    targets: dict[str, Path] = {}
    if kind == "file":
        check_output(out_text, overwrite)
    elif kind == "folder":
        ext = _folder_extension() if picks_format is None else (get_format(picks_format, "picks").extensions
                                                                  or ("",))[0]
        for r in runs:
            targets[r] = check_output(Path(out_text) / f"{r}{ext}", overwrite)
    return out_text, kind, targets


def write_run_picks(picks: Picks, run: str, writer_options: dict[str, Any], *, kind: str | None,
                    targets: dict[str, Path], out_text: str | None, overwrite: bool, picks_format: str | None,
                    user_id: str, session_id: str) -> str | None:
    """Write one run's picks where ``plan_outputs`` said (folder or copick; a single file is written once at the
    end by :func:`write_merged_picks`); returns what was written, for the report."""
    if kind == "folder":
        write_picks(picks, targets[run], overwrite=overwrite, format=picks_format, **writer_options)
        return str(targets[run])
    if kind == "copick":
        write_picks(picks, out_text, overwrite=overwrite, run=run, user_id=user_id, session_id=session_id)
        return f"{out_text} (run {run})"
    return None


def write_merged_picks(picks: Picks, writer_options: list[dict[str, Any]], *, out_text: str, overwrite: bool,
                       picks_format: str | None) -> str:
    """Write all runs' picks to one file; pixel-based formats need a pixel size (and RELION 5 the tomogram size):
    passed on when all runs agree."""
    common = {k: v for k, v in writer_options[0].items() if all(o.get(k) == v for o in writer_options)} \
        if writer_options else {}
    write_picks(picks, out_text, overwrite=overwrite, format=picks_format, **common)
    return out_text


def pick(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], model: Any | None = None, *,
         options: PickOptions | None = None, out: str | os.PathLike[str] | None = None,
         save_scores: str | os.PathLike[str] | None = None, mask: np.ndarray | None = None,
         overwrite: bool = False, picks_format: str | None = None, user_id: str = "tomopick",
         session_id: str = "0", progress: Callable[[str, int, int], None] | None = None,
         log: Callable[[str], None] | None = None, context: Any | None = None,
         **option_values: Any) -> PickReport:
    """Pick particles in one or more tomograms with a trained model.

    Parameters
    ----------
    inputs
        Tomogram path(s)/URI(s) readable by :func:`tomopick.io.read_tomogram` (MRC, OME-Zarr, ``copick://…``;
        a copick URI without ``run=`` means every run).
    model
        Checkpoint path or a loaded model; ``None`` uses the bundled ``czii-10A`` model.
    options
        :class:`~tomopick.inference.options.PickOptions` (score, thresholds, peak method, windows, TTA, device,
        threads …); or give its fields as keywords (``threshold=0.3, tta=4``), validated the same way.
    out
        A picks file (all inputs, ``run`` column set), a folder (one file per input), or a ``copick://`` project;
        ``None`` returns the picks without writing.
    save_scores
        Folder for the per-class score maps (OME-Zarr).
    mask
        Optional ``(z, y, x)`` boolean mask (single input only) restricting where picks may be.
    picks_format
        Picks format name (default: from ``out``).
    progress
        ``progress(run, done, total)`` over windows.
    log
        Receives one line per input and class: picks kept, the threshold and its rule.
    context
        A :class:`tomopick.workflows.segment.PickContext` (``--context`` / ``--segment``): picks get compartment,
        distance-to-membrane and on-membrane columns, ``--where`` filters them, ``--mask CLASS`` restricts them.

    Every input is opened (headers read, voxel sizes checked) and every option and output checked before the
    model is loaded or any tomogram is picked.

    Returns
    -------
    PickReport
    """
    if options is None:
        options = PickOptions.make(**option_values)
    elif option_values:
        raise TomopickError(f"give pick options either as options= or as keywords, not both "
                            f"({', '.join(sorted(option_values))})")
    items = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    if mask is not None and len(items) != 1:
        raise TomopickError("a mask can only be given for a single input tomogram")
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        dupes = sorted({r for r in runs if runs.count(r) > 1})
        raise TomopickError(f"several inputs share the run name {', '.join(dupes)}; rename them")
    out_text, kind, targets = plan_outputs(out, len(items), runs, picks_format, overwrite)
    # open every input first (lazy: headers only): a bad second input must not cost the first one's work
    read_options = {"voxel_size_A": options.voxel_size_A} if options.voxel_size_A is not None else {}
    tomograms = [read_tomogram(item, **read_options) for item in items]
    if context is not None:
        context.check(runs)
    if str(options.device).startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise TomopickError("--device cuda was asked for but no CUDA GPU is available")
    loaded = resolve_model(model)
    if options.threads is not None:
        import torch

        torch.set_num_threads(int(options.threads))  # else torch's default: one per physical core
    options = options.with_defaults(loaded.config)
    settings = inference_settings(loaded, options)
    report = PickReport(picks=Picks.empty(), options=options)
    all_picks = []
    for item, run, tomogram in zip(items, runs, tomograms):
        seg = None if context is None else context.prepare(tomogram, run, len(items))  # workflows/segment.py
        run_mask = mask if seg is None or not context.mask_classes else context.mask(seg)
        picks, summary = pick_tomogram(
            tomogram, loaded, options, run=run, settings=settings, mask=run_mask,
            on_scores=None if save_scores is None else _score_writer(Path(save_scores), run, overwrite),
            progress=None if progress is None else (lambda d, t, r=run: progress(r, d, t)))
        if seg is not None:
            picks = context.apply(picks, seg, getattr(loaded, "particles", None))
            summary["counts"] = {n: int((picks.frame["particle"] == n).sum()) for n in summary.get("counts", {})}
        picks = picks.with_columns(user=user_id, session=session_id) if len(picks) else picks
        summary["input"] = item
        if log is not None:
            for line in describe_thresholds(summary):
                log(line)
        vs = float(np.mean(tomogram.voxel_size_A))
        summary["writer_options"] = {"voxel_size_A": vs, "tomogram_shape_zyx": tomogram.shape}
        written = write_run_picks(picks, run, summary["writer_options"], kind=kind, targets=targets,
                                  out_text=out_text, overwrite=overwrite, picks_format=picks_format,
                                  user_id=user_id, session_id=session_id)
        if written is not None:
            report.outputs.append(written)
        report.runs.append(summary)
        all_picks.append(picks)
    report.picks = Picks.concat(all_picks)
    if kind == "file":
        report.outputs.append(write_merged_picks(report.picks, [r["writer_options"] for r in report.runs],
                                                 out_text=out_text, overwrite=overwrite, picks_format=picks_format))
    return report


def _score_writer(folder: Path, run: str, overwrite: bool) -> Callable[[list[Any]], None]:
    """Writes each class's score map as ``<folder>/<run>_<class>_scores.ome.zarr`` (float16, one level)."""
    def write(maps: list[Any]) -> None:
        for tomo in maps:
            name = str(tomo.source).split(":", 1)[-1]
            stem = f"{run}_{name}" if run else name
            write_tomogram(tomo, folder / f"{stem}_scores.ome.zarr", overwrite=overwrite, levels=1, dtype="float16")

    return write


def describe_thresholds(summary: dict[str, Any]) -> list[str]:
    """One line per class of a :func:`pick_tomogram` summary: picks kept, the score, the threshold and its rule
    (``option``: given; ``checkpoint``: stored in the model; ``default``; ``valley``: this tomogram's own), after a
    line on the batch-norm adaptation when it ran."""
    run = summary.get("run") or summary.get("input") or ""
    counts = summary.get("counts", {})
    out = []
    adapted = summary.get("adapt_norm") or {}
    if adapted.get("adapted_layers"):
        out.append(f"  {run}: batch norm adapted to the tomogram ({adapted['rule']}, strength "
                   f"{adapted['strength']:g}, {adapted['windows']} windows)")
    elif adapted.get("skipped"):
        out.append(f"  {run}: batch norm not adapted: {adapted['skipped']}")
    for name, choice in (summary.get("thresholds") or {}).items():
        n = counts.get(name, 0)
        out.append(f"  {run} {name}: {n} pick{'' if n == 1 else 's'} with {summary.get('score', 'blob')} score >= "
                   f"{choice['value']:.3g} ({choice['rule']})")
    return out
