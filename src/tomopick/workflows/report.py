"""``report()``: tomograms + picks (+ truth, model) → one self-contained HTML page to judge the picks by eye (the
verb behind ``tomopick report``, ``tomopick pick --report`` and the demo's last step).

Inputs are read with :mod:`tomopick.io` (tomograms lazily; small ones loaded once), the page is made by
:func:`tomopick.viz.report.render_report` and written atomically (:func:`tomopick.io.atomic_output`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tomopick.data import ParticleSet, Picks, get_particle_set
from tomopick.errors import TomopickError
from tomopick.io.sources import align_runs, load_picks
from tomopick.viz.report import ReportOptions, render_report
from tomopick.workflows.reporting import (
    MAX_LOAD_BYTES, check_report_output, copick_tomogram_uris, model_card, open_tomograms, picks_by_run,
    report_input, write_report_html,
)

__all__ = ["ReportOptions", "ReportOutcome", "report", "report_of_pick"]


@dataclass(frozen=True)
class ReportOutcome:
    """Where the report went, its size in bytes, how long it took (s) and what it holds."""

    path: Path
    size_bytes: int
    seconds: float
    n_picks: int
    runs: tuple[str, ...]


def report(picks: str | os.PathLike[str] | Picks, tomograms: Sequence[str | os.PathLike[str]] = (), *,
           out: str | os.PathLike[str], truth: str | os.PathLike[str] | Picks | None = None,
           truth_user: str | None = None, picks_user: str | None = None, model: Any | None = None,
           particles: str | os.PathLike[str] | ParticleSet = "czii", runs: Sequence[str] | None = None,
           thresholds: dict[str, float] | None = None, threshold_notes: dict[str, str] | None = None,
           score_name: str = "score", options: ReportOptions | None = None, command: str | None = None,
           voxel_size_A: float | None = None, overwrite: bool = False,
           segmentations: Sequence[str | os.PathLike[str]] = (),
           max_load_bytes: int = MAX_LOAD_BYTES) -> ReportOutcome:
    """Write the HTML picking report.

    Parameters
    ----------
    picks
        Picks (a :class:`~tomopick.data.Picks`, a pick file in any format, a copick project/URI or a folder).
    tomograms
        Tomogram paths/URIs (MRC, OME-Zarr, ``copick://…``); matched to the picks by run name (file name without
        extension, or the copick run). None given and ``picks`` is a copick project: its runs' tomograms.
    out
        The ``.html`` file; refused if it exists unless ``overwrite``.
    truth, truth_user, picks_user
        Optional ground truth (adds TP/FP colouring, false positive / negative galleries, the CZII table and PR
        curves); copick ``user_id`` filters.
    model
        Optional checkpoint path (or ``"bundled"``) whose card is shown.
    particles
        Particle set (preset name, YAML path or object): radii, colours, weights.
    runs
        Only these runs.
    thresholds, threshold_notes, score_name
        What the picks were thresholded at and with which score (marked on the histograms).
    options
        :class:`~tomopick.viz.report.ReportOptions`.
    command
        The command line to show (default: none).
    segmentations
        Label volumes (MRC, OME-Zarr, copick) on the grid of the tomogram of the same run name (file name without
        extension and a trailing ``_seg``/``-seg``/``_labels``, or the copick run); their outlines are drawn.
    max_load_bytes
        Tomograms up to this size (as float32) are read into memory once; larger ones are read slab by slab.
    """
    t0 = time.perf_counter()
    out_path = check_report_output(out, overwrite)
    options = options or ReportOptions()
    pset = particles if isinstance(particles, ParticleSet) else get_particle_set(particles)
    picked = picks if isinstance(picks, Picks) else load_picks(picks, user_id=picks_user, particles=pset)
    true = None
    if truth is not None:
        true = truth if isinstance(truth, Picks) else load_picks(truth, user_id=truth_user, particles=pset)
        true, picked = align_runs(true, picked)
    inputs = list(tomograms)
    if not inputs and not isinstance(picks, Picks):
        inputs = copick_tomogram_uris(picks, [r for r in picked.runs if r])
    opened = open_tomograms(inputs, voxel_size_A=voxel_size_A)
    segs = {_seg_run(k, opened): v for k, v in open_tomograms(list(segmentations)).items()}
    picked = picks_by_run(picked, list(opened))
    if true is not None:
        true = picks_by_run(true, list(opened))
    pset.check_names(set(picked.particles), str(picks) if not isinstance(picks, Picks) else None)
    if true is not None:
        pset.check_names(set(true.particles), str(truth) if not isinstance(truth, Picks) else None)
    # the runs reported: those with a tomogram given, else those with picks; a truth covering more runs (a copick
    # project's training runs) is not counted against picks that were never made there (use --runs to widen)
    names = list(dict.fromkeys([*opened, *picked.runs])) if (opened or len(picked)) else list(
        true.runs if true is not None else [])
    if runs:
        names = list(dict.fromkeys([*names, *picked.runs, *(true.runs if true is not None else [])]))
        missing = sorted(set(runs) - set(names))
        if missing:
            raise TomopickError(f"run(s) {', '.join(missing)} not among the picks or tomograms "
                                f"({', '.join(n or '(unnamed)' for n in names[:10])})")
        names = [n for n in names if n in set(runs)]
    if not names:
        raise TomopickError("nothing to report: no picks and no tomogram")
    card = model_card(model) if model is not None else None
    if card is not None and thresholds is None:  # what the model picks at by default (tomopick pick's rule)
        pick_defaults = card.get("pick") or {}
        # checkpoints written before the blob score stored peak-score thresholds without naming the score
        score = pick_defaults.get("score") or ("blob" if pick_defaults.get("thresholds_by_score") else "peak")
        stored = (pick_defaults.get("thresholds_by_score") or {}).get(score) or pick_defaults.get("thresholds")
        if stored:
            thresholds = {k: float(v) for k, v in stored.items()}
            threshold_notes = {k: "the model's default" for k in stored}
            score_name = f"{score} score" if score_name == "score" else score_name
    sources = {"picks": "(in memory)" if isinstance(picks, Picks) else str(picks)}
    if truth is not None:
        sources["truth"] = "(in memory)" if isinstance(truth, Picks) else str(truth)
    if inputs:
        sources["tomograms"] = ", ".join(str(i) for i in inputs[:6]) + (" …" if len(inputs) > 6 else "")
    keep = set(names)
    data = report_input(picked.select(picked.frame["run"].isin(keep)),
                        None if true is None else true.select(true.frame["run"].isin(keep)), pset,
                        {k: v for k, v in opened.items() if k in keep}, max_load_bytes=max_load_bytes,
                        segmentations={k: v for k, v in segs.items() if k in keep},
                        thresholds=dict(thresholds or {}), threshold_notes=dict(threshold_notes or {}),
                        score_name=score_name, model_card=card, command=command, sources=sources)
    text = render_report(data, options)
    write_report_html(text, out_path, overwrite=overwrite)
    return ReportOutcome(out_path, out_path.stat().st_size, time.perf_counter() - t0,
                         sum(len(r.picks) for r in data.runs), tuple(r.run for r in data.runs))


def _seg_run(name: str, tomograms: dict[str, Any]) -> str:
    """The run a segmentation belongs to: its own run name, or that name without a ``_seg``-like suffix, or the
    only tomogram's run."""
    if name in tomograms:
        return name
    for suffix in ("_seg", "-seg", "_segmentation", "_labels", "-labels"):
        if name.endswith(suffix) and name[: -len(suffix)] in tomograms:
            return name[: -len(suffix)]
    return next(iter(tomograms)) if len(tomograms) == 1 else name


def report_of_pick(pick_report: Any, inputs: Sequence[str | os.PathLike[str]], model: Any | None, *,
                   out: str | os.PathLike[str], options: ReportOptions | None = None, command: str | None = None,
                   voxel_size_A: float | None = None, overwrite: bool = False,
                   truth: str | os.PathLike[str] | Picks | None = None,
                   truth_user: str | None = None) -> ReportOutcome:
    """The report of a finished :func:`tomopick.workflows.pick.pick` run (its
    :class:`~tomopick.workflows.pick.PickReport`): the picks in memory, the thresholds and score each class was
    kept with, the model's card (``model``: the checkpoint path, ``None`` = bundled); ``truth`` as :func:`report`."""
    thresholds: dict[str, float] = {}
    notes: dict[str, str] = {}
    score = "score"
    for summary in pick_report.runs:
        score = f"{summary.get('score', 'blob')} score"
        for name, choice in (summary.get("thresholds") or {}).items():
            value, rule = float(choice["value"]), str(choice.get("rule", ""))
            if name in thresholds and abs(thresholds[name] - value) > 1e-12:
                notes[name] = f"{rule}; differs per tomogram, first shown"
                continue
            thresholds.setdefault(name, value)
            notes.setdefault(name, rule)
    from tomopick.data import CZII
    from tomopick.models.checkpoint import LoadedModel, load_checkpoint

    loaded = None  # an ensemble (or another kind of model) shows no card; its picks are of the CZII set
    if isinstance(model, LoadedModel):
        loaded = model
    elif model is None:
        from tomopick.models.bundled import load_bundled

        loaded = load_bundled()
    elif isinstance(model, (str, os.PathLike)):
        loaded = load_checkpoint(model)
    pset = loaded.particles if loaded is not None and loaded.config.get("particles") else CZII
    return report(pick_report.picks, inputs, out=out, model=loaded, particles=pset,
                  thresholds=thresholds, threshold_notes=notes, score_name=score, options=options, command=command,
                  voxel_size_A=voxel_size_A, overwrite=overwrite, truth=truth, truth_user=truth_user)
