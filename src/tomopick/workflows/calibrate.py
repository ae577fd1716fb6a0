"""``calibrate()``: choose a model's per-class score thresholds on annotated tomograms and store them in a copy
of its checkpoint (the verb behind ``tomopick calibrate``).

A checkpoint's ``config["pick"]["thresholds"]`` are the default thresholds of ``tomopick pick``. ``tomopick
train`` chooses them on its validation runs; :func:`calibrate` does the same on the user's own annotated
tomograms, for a model trained elsewhere or on other data:

1. pick every input with :func:`tomopick.workflows.pick.pick`, keeping every peak scoring at least
   :data:`~tomopick.peaks.thresholds.MIN_SCORE` (the validator's floor), with the score in use (``blob`` by
   default, :mod:`tomopick.peaks.score`);
2. match the picks to the ground truth run by run and sweep the score threshold per class
   (:func:`tomopick.evaluation.threshold_sweep`, CZII counting, F-beta);
3. store per class the threshold the validator would store
   (:func:`~tomopick.peaks.thresholds.stored_threshold`: the lowest threshold whose F-beta is within
   ``THRESHOLD_TOLERANCE`` (0.02) of the best, at least ``MIN_SCORE``; the score's default when the class was
   never found);
4. write a copy of the checkpoint with the new thresholds in its config and a ``"calibration"`` entry in its
   model card (runs, F-beta per class at the stored thresholds, overall score).

Classes the truth does not annotate are not calibrated: they keep the source checkpoint's threshold where it had
one for the same score, else the score's default (:data:`~tomopick.peaks.thresholds.DEFAULT_THRESHOLD`).
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from tomopick.data import ParticleSet, Picks
from tomopick.errors import TomopickError
from tomopick.inference.options import PickOptions
from tomopick.jsonable import to_jsonable
from tomopick.peaks.score import DEFAULT_SCORE
from tomopick.peaks.thresholds import (
    DEFAULT_THRESHOLD, MIN_SCORE, THRESHOLD_TOLERANCE, stored_for_score, stored_threshold,
)

__all__ = ["CalibrationResult", "calibrate", "choose_thresholds", "foreground_particles", "parse_runs",
           "source_is_half"]

#: Options of :func:`tomopick.workflows.pick.pick` that :func:`calibrate` sets itself.
_RESERVED = ("threshold", "out", "model", "overwrite", "threads", "progress", "inputs")


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate` chose and wrote.

    Attributes
    ----------
    thresholds
        ``{class: threshold}`` stored in the new checkpoint (every foreground class of the model).
    table
        The :func:`~tomopick.evaluation.threshold_sweep` table (one row per class in the truth or the picks).
    score
        Weighted F-beta over the truth's classes with the stored thresholds applied.
    out
        The checkpoint written.
    runs
        The runs the thresholds were chosen on.
    at_thresholds
        Per class, counts and F-beta with the stored thresholds applied
        (:attr:`~tomopick.evaluation.EvaluationResult.table`: ``n_truth, n_picks, tp, fp, fn, fbeta, …``).
    calibrated
        The classes whose threshold was chosen on the truth; the others kept the source's (or the default).
    """

    thresholds: dict[str, float]
    table: pd.DataFrame
    score: float
    out: Path
    runs: tuple[str, ...] = ()
    at_thresholds: pd.DataFrame | None = None
    calibrated: tuple[str, ...] = field(default_factory=tuple)


# -- pure helpers ---------------------------------------------------------------------------------------------
def parse_runs(runs: str | Sequence[str] | None) -> list[str] | None:
    """``"a, b"`` or ``["a", "b"]`` → ``["a", "b"]`` (order kept, duplicates and blanks dropped); ``None`` or
    nothing → ``None`` (every run)."""
    if runs is None:
        return None
    items = runs.split(",") if isinstance(runs, str) else [p for r in runs for p in str(r).split(",")]
    out: list[str] = []
    for r in (i.strip() for i in items):
        if r and r not in out:
            out.append(r)
    return out or None


def foreground_particles(config: dict[str, Any]) -> ParticleSet:
    """The checkpoint's particle set restricted to the classes its network outputs (``config["classes"]`` without
    ``background``), in channel order, labels kept.

    Parameters
    ----------
    config
        A checkpoint config (see :mod:`tomopick.models.checkpoint`).
    """
    particles = ParticleSet.model_validate(config["particles"])
    names = [str(c) for c in config["classes"] if str(c).lower() != "background"]
    missing = [n for n in names if n not in particles]
    if missing:
        raise TomopickError(f"the checkpoint's classes {', '.join(missing)} are not in its particle set "
                            f"({', '.join(particles.names)})")
    return particles.subset(names)


def choose_thresholds(table: pd.DataFrame, names: Sequence[str], previous: dict[str, float] | None = None,
                      min_score: float | None = None, score: str = DEFAULT_SCORE,
                      ) -> tuple[dict[str, float], tuple[str, ...]]:
    """Per-class thresholds to store from a threshold-sweep table, as the training validator stores them.

    Parameters
    ----------
    table
        :attr:`~tomopick.evaluation.SweepResult.table` (columns ``particle, scored, threshold, tp``).
    names
        Every foreground class of the model, in channel order.
    previous
        The source checkpoint's thresholds: kept for classes the truth does not annotate.
    min_score
        Lowest threshold stored (default :data:`~tomopick.peaks.thresholds.MIN_SCORE`).
    score
        The score the thresholds apply to (its default goes to classes never found).

    Returns
    -------
    ``({class: threshold} for every name, the classes calibrated on the truth)``. A class in the truth gets
    ``stored_threshold(row, None)``; any other class its ``previous`` threshold, else the score's default.
    """
    floor = MIN_SCORE if min_score is None else float(min_score)
    previous = previous or {}
    rows = {str(r["particle"]): r for _, r in table.iterrows()}
    out: dict[str, float] = {}
    calibrated = []
    for name in names:
        row = rows.get(name)
        if row is not None and bool(row["scored"]):
            out[name] = stored_threshold(row, None, floor, score)
            calibrated.append(name)
        elif name in previous:
            out[name] = float(previous[name])
        else:
            out[name] = DEFAULT_THRESHOLD[score]  # what stored_threshold gives a class never found
    return out, tuple(calibrated)


def source_is_half(path: str | os.PathLike[str] | None) -> bool:
    """Whether a checkpoint file stores its floating-point weights as float16, as ``save_checkpoint(half=True)``
    writes them (float16 wherever the values fit; ``False`` when there is no file).

    Reads the state dict's dtypes (``weights_only=True``, memory-mapped where the file allows it)."""
    import torch

    if not path or not Path(path).is_file():
        return False
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - old (non-zip) files cannot be memory-mapped
        payload = torch.load(path, map_location="cpu", weights_only=True)
    state = payload.get("state_dict", {}) if isinstance(payload, dict) else {}
    floats = [v.dtype for v in state.values() if hasattr(v, "is_floating_point") and v.is_floating_point()]
    return any(d == torch.float16 for d in floats)


def _plain(v: Any) -> Any:
    """A JSON-able Python value (NaN → None)."""
    return to_jsonable(v, nonfinite="null")


def _option(v: Any) -> Any:
    """A pick option as the card records it: scalars and short sequences as they are, anything else by type."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return _plain(v)
    if isinstance(v, (list, tuple)) and len(v) <= 8 and all(isinstance(i, (bool, int, float, str)) for i in v):
        return [_plain(i) for i in v]
    if isinstance(v, os.PathLike):
        return str(v)
    return f"<{type(v).__name__}>"


def calibration_card(runs: Sequence[str], thresholds: dict[str, float], calibrated: Sequence[str],
                     at_thresholds: pd.DataFrame, score: float, beta: float, *, source: str = "", truth: str = "",
                     pick_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``"calibration"`` entry of the model card: where and how the thresholds were chosen, and the F-beta
    per class (with counts) at the stored thresholds."""
    from tomopick import __version__

    per_class = {}
    for _, row in at_thresholds.iterrows():
        if not bool(row["scored"]):
            continue
        per_class[str(row["particle"])] = {k: _plain(row[k]) for k in ("fbeta", "precision", "recall", "n_truth",
                                                                        "n_picks", "tp", "fp", "fn")}
    return {"runs": list(runs), "truth": truth, "source": source, "metric": "czii", "beta": float(beta),
            "thresholds": dict(thresholds), "calibrated": list(calibrated), "classes": per_class,
            "score": _plain(float(score)),
            "pick_options": {k: _option(v) for k, v in (pick_options or {}).items()},
            "tomopick_version": __version__}


def _show(names: Sequence[str], limit: int = 8) -> str:
    names = sorted(n or "(unnamed)" for n in names)
    return ", ".join(names[:limit]) + (" …" if len(names) > limit else "") if names else "none"


def _select_inputs(items: list[str], truth: Picks, runs: list[str] | None, truth_source: str) -> list[str]:
    """The inputs worth picking: those of the requested runs that the truth annotates."""
    from tomopick.io.inputs import run_name

    names = [run_name(i) for i in items]
    if runs is not None:
        missing = [r for r in runs if r not in names]
        if missing:
            raise TomopickError(f"run(s) {', '.join(missing)} not among the inputs (inputs: {_show(names)})")
        items = [i for i, n in zip(items, names) if n in runs]
        names = [run_name(i) for i in items]
    t_runs = set(truth.runs)
    if runs is not None and t_runs != {""}:
        missing = [r for r in runs if r not in t_runs]
        if missing:
            raise TomopickError(f"run(s) {', '.join(missing)} not in the ground truth of the model's classes "
                                f"(truth: {_show(t_runs)})", truth_source)
    if t_runs == {""}:  # an unnamed truth file can only describe a single input
        if len(items) != 1:
            raise TomopickError(f"the truth names no run but there are {len(items)} inputs; name the runs in the "
                                "truth or give --runs with one run", truth_source)
        return items
    keep = [i for i, n in zip(items, names) if n in t_runs]
    if not keep:
        raise TomopickError(f"the truth shares no run with the inputs (truth: {_show(t_runs)}; "
                            f"inputs: {_show(names)})", truth_source)
    return keep


# -- the verb -----------------------------------------------------------------------------------------------
def _checked_beta(beta: float, pick_options: dict[str, Any]) -> float:
    """``beta`` as a positive float, refusing pick options that calibrate sets itself."""
    clash = sorted(set(pick_options) & set(_RESERVED))
    if clash:
        raise TomopickError(f"calibrate sets {', '.join(clash)} itself (it picks at score >= {MIN_SCORE:g})")
    PickOptions.make(threshold=MIN_SCORE, **pick_options)  # option errors before the model or truth is read
    beta = float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise TomopickError(f"beta must be positive, got {beta:g}")
    return beta


def _load_truth(truth: str | os.PathLike[str], truth_user: str | None, loaded: Any, particles: ParticleSet) -> Picks:
    """The ground-truth picks of the model's classes, refusing a truth without any."""
    from tomopick.io.sources import load_picks

    truth_source = str(truth)
    t = load_picks(truth, user_id=truth_user, particles=loaded.particles)
    if len(t) == 0:
        raise TomopickError("the ground truth holds no picks", truth_source)
    known = [n for n in t.particles if n in particles]
    if not known:
        raise TomopickError(f"the ground truth holds none of the model's classes (truth: {_show(t.particles)}; "
                            f"model: {', '.join(particles.names)})", truth_source)
    return t.select(t.frame["particle"].isin(particles.names))


def _match_picked_runs(t: Picks, report: Any, truth_source: str) -> tuple[Picks, Picks]:
    """Truth and picks restricted to the runs both hold (run names aligned)."""
    from tomopick.io.sources import align_runs

    picks = report.picks
    picked = {str(r.get("run", "")) for r in report.runs}
    if set(t.runs) != {""}:
        t = t.select(t.frame["run"].isin(sorted(picked)))
    t, picks = align_runs(t, picks)
    picks = picks.select(picks.frame["run"].isin(sorted(set(t.runs))))
    if len(t) == 0:  # e.g. the requested runs hold truth of other classes only
        raise TomopickError("the ground truth holds none of the model's classes in the runs picked", truth_source)
    return t, picks


def _save_calibrated(out_path: Path, loaded: Any, used: Any, chosen_runs: tuple[str, ...],
                     thresholds: dict[str, float], calibrated: Sequence[str], score: str, beta: float, applied: Any,
                     truth_source: str, pick_options: dict[str, Any], half: bool | None, overwrite: bool) -> None:
    """Write the source checkpoint with the new thresholds (and the pick options they hold for) and a
    calibration section in its card."""
    from tomopick.models.checkpoint import save_checkpoint

    config = copy.deepcopy(loaded.config)
    config["pick"] = {**(config.get("pick") or {}), "thresholds": thresholds, "score": score,
                      "peak_method": used.peak_method, "distance_factor": used.distance_factor,
                      "chosen_on": "calibration runs " + ", ".join(chosen_runs), "beta": beta}
    card = copy.deepcopy(loaded.card or {})
    card["calibration"] = calibration_card(chosen_runs, thresholds, calibrated, applied.table, applied.score, beta,
                                           source=str(loaded.path or ""), truth=truth_source,
                                           pick_options=pick_options)
    half_flag = source_is_half(loaded.path) if half is None else bool(half)
    save_checkpoint(out_path, loaded.model, config, card, overwrite=overwrite, half=half_flag)


def calibrate(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], truth: str | os.PathLike[str], *,
              model: Any | None = None, out: str | os.PathLike[str], truth_user: str | None = None,
              runs: str | Sequence[str] | None = None, beta: float = 4.0, overwrite: bool = False,
              threads: int | None = None, half: bool | None = None,
              progress: Callable[[str, int, int], None] | None = None, **pick_options: Any) -> CalibrationResult:
    """Choose per-class score thresholds on annotated tomograms and write a checkpoint copy that uses them.

    Parameters
    ----------
    inputs
        Tomogram path(s)/URI(s) as for :func:`tomopick.workflows.pick.pick` (MRC, OME-Zarr, ``copick://…``; a
        copick URI without ``run=`` means every run). Each input's run name (file name without extension, or
        the copick run) is matched to the truth's runs; inputs the truth does not annotate are not picked.
    truth
        Ground truth: a pick file, a copick project/URI or a folder of pick files
        (:func:`tomopick.workflows.evaluate.load_picks`). Classes the model does not output are ignored.
    model
        Source checkpoint path or a loaded model; ``None`` uses the bundled ``czii-10A`` model.
    out
        The checkpoint to write (a copy of the source with the new thresholds).
    truth_user
        copick ``user_id`` of the truth (e.g. ``"curation"``).
    runs
        Calibrate on these runs only (comma-separated text or a sequence); default: every run in both the inputs
        and the truth.
    beta
        F-beta β maximised per class (CZII: 4, recall weighs β² = 16× precision).
    overwrite
        Replace an existing ``out``.
    threads
        torch CPU threads for picking (process-wide); default: torch's setting.
    half
        Store float16 weights; ``None``: as the source file does (float32 for an in-memory model).
    progress
        ``progress(run, done, total)`` over the windows of each input.
    **pick_options
        Passed to :func:`tomopick.workflows.pick.pick` (``peak_method``, ``distance_factor``, ``tta``, ``device``,
        ``mode``, ``roi_size``, ``voxel_size_A``, …); they are recorded in the card, since the thresholds hold
        for picking with the same options.

    Returns
    -------
    CalibrationResult

    Raises
    ------
    TomopickError
        ``out`` exists without ``overwrite``; the truth holds no picks, none of the model's classes, or no run in
        common with the inputs; a run of ``runs`` is missing.
    """
    from tomopick.evaluation import apply_thresholds, czii_score, threshold_sweep
    from tomopick.io import check_output
    from tomopick.io.inputs import expand_inputs
    from tomopick.workflows.pick import pick, resolve_model

    beta = _checked_beta(beta, pick_options)
    out_path = check_output(out, overwrite, create_parent=False)  # before any work; nothing created yet
    loaded = resolve_model(model)
    particles = foreground_particles(loaded.config)
    wanted = parse_runs(runs)

    # truth first: its errors cost nothing, picking costs minutes
    truth_source = str(truth)
    t = _load_truth(truth, truth_user, loaded, particles)
    items = [inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs)
    items = _select_inputs(expand_inputs(items), t, wanted, truth_source)

    report = pick(items, loaded, threshold=MIN_SCORE, out=None, threads=threads, progress=progress,
                  **pick_options)
    t, picks = _match_picked_runs(t, report, truth_source)
    chosen_runs = tuple(sorted(set(t.runs)))

    sweep = threshold_sweep(t, picks, particles, "czii", beta=beta, tolerance=THRESHOLD_TOLERANCE)
    score = str(report.options.score)  # as picked: the option, else the model's (blob, or peak for heatmaps)
    previous = stored_for_score(loaded.config.get("pick"), score)
    thresholds, calibrated = choose_thresholds(sweep.table, particles.names, previous, MIN_SCORE, score)
    applied = czii_score(t, apply_thresholds(picks, thresholds), particles, beta=beta)

    # the peak method and spacing actually used (report.options): the thresholds hold for them
    _save_calibrated(out_path, loaded, report.options, chosen_runs, thresholds, calibrated, score, beta, applied,
                     truth_source, pick_options, half, overwrite)
    return CalibrationResult(thresholds=thresholds, table=sweep.table, score=float(applied.score), out=out_path,
                             runs=chosen_runs, at_thresholds=applied.table, calibrated=calibrated)
