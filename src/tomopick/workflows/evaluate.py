"""``evaluate``: read ground truth and picks in any supported form, score them, optionally write a report.

Sources accepted for both the truth and the picks (read by :func:`tomopick.io.sources.load_picks`):

* a pick file in any format :func:`tomopick.io.read_picks` knows (copick JSON, CSV, STAR, …);
* a copick project (its config JSON, its folder, or a ``copick://`` URI), filtered by ``user_id``;
* a folder of pick files: every file whose extension a pick format claims is read (recursively); files whose
  picks carry no run name get the file name (without extensions) as run.

Truth and picks are matched run by run. When one side names no run (e.g. a bare CSV) and the other names
exactly one, the unnamed side is assigned that run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tomopick.data import ParticleSet, Picks, get_particle_set
from tomopick.errors import TomopickError
from tomopick.evaluation import (
    EvaluationResult, SweepResult, evaluate as evaluate_picks, markdown_report, pr_curve, pr_figure,
    threshold_sweep,
)
from tomopick.io import atomic_output, check_output
# load_picks / align_runs live in io.sources (shared with calibrate); re-exported here for existing callers
from tomopick.io.sources import align_runs, load_picks  # noqa: F401
from tomopick.jsonable import to_jsonable

REPORT_FILES = ("report.md", "report.html", "evaluation.json", "pr_curves.png", "pr_curves.csv")


def check_scored(picks: Picks, source: str | Path) -> None:
    """Refuse a threshold sweep over picks without scores (it would report a threshold of −inf: every pick
    kept, whatever the threshold)."""
    import numpy as np

    if not len(picks):
        return
    missing = int((~np.isfinite(picks.scores)).sum())
    if missing == len(picks):
        raise TomopickError("these picks have no scores, so there is no threshold to sweep (--sweep); write "
                            "the picks with their scores (e.g. tomopick pick --out picks.csv, .star or copick "
                            "JSON) or leave out --sweep", source)
    if missing:
        raise TomopickError(f"{missing} of {len(picks)} picks have no score, so a threshold sweep (--sweep) "
                            "would keep them whatever the threshold; give every pick a score or leave out "
                            "--sweep", source)


@dataclass(frozen=True)
class EvaluateOutcome:
    """What :func:`evaluate` produced: the scores, the optional sweep and curves, and the report folder."""

    result: EvaluationResult
    sweep: SweepResult | None
    report_dir: Path | None
    truth_source: str
    picks_source: str

    def to_dict(self) -> dict[str, Any]:
        out = {"truth": self.truth_source, "picks": self.picks_source, **self.result.to_dict()}
        if self.sweep is not None:
            rows = self.sweep.table.to_dict(orient="records")
            out["sweep"] = {"score": to_jsonable(self.sweep.score, nonfinite="text"),
                            "classes": [{k: to_jsonable(v, nonfinite="text") for k, v in r.items()} for r in rows]}
        return out


def evaluate(truth: str | Path, picks: str | Path, *, particles: str | Path | ParticleSet = "czii",
             metric: str = "czii", beta: float | None = None, distance_factor: float | None = None,
             distance_A: float | None = None, sweep: bool = False, report_dir: str | Path | None = None,
             overwrite: bool = False, truth_user: str | None = None, picks_user: str | None = None,
             truth_format: str | None = None, picks_format: str | None = None,
             runs: list[str] | None = None, tomograms: list[str] | None = None,
             command: str | None = None) -> EvaluateOutcome:
    """Score the picks in ``picks`` against the ground truth in ``truth``.

    Parameters
    ----------
    truth, picks
        Sources (file, copick project or URI, folder of pick files).
    particles
        Particle set: preset name, YAML path or a :class:`ParticleSet` (radii and weights).
    metric, beta, distance_factor, distance_A
        As :func:`tomopick.evaluation.evaluate`.
    sweep
        Also find the best-case score threshold per class (:func:`tomopick.evaluation.threshold_sweep`); the
        picks must all have scores (:class:`TomopickError` naming the picks source otherwise).
    report_dir
        Write ``report.md``, ``evaluation.json`` and ``pr_curves.png`` into this folder (atomically).
    overwrite
        Replace an existing ``report_dir``.
    truth_user, picks_user
        copick ``user_id`` filters (e.g. ``"curation"`` for the portal's ground truth).
    truth_format, picks_format
        Force pick formats.
    runs
        Evaluate only these runs (e.g. the test runs of a copick project whose truth covers every run).
    tomograms
        Tomograms shown in ``report_dir/report.html`` (matched to runs by name); default: the runs' tomograms
        when the truth or the picks are a copick project, else none (the page then holds tables and plots).
    command
        The command line shown in ``report.html``.
    """
    if report_dir is not None:
        check_output(report_dir, overwrite)
    pset = particles if isinstance(particles, ParticleSet) else get_particle_set(particles)
    t = load_picks(truth, user_id=truth_user, format=truth_format, particles=pset)
    p = load_picks(picks, user_id=picks_user, format=picks_format, particles=pset)
    if len(t) == 0:
        raise TomopickError("the ground truth holds no picks", truth)
    t, p = align_runs(t, p)
    if runs:
        missing = sorted(set(runs) - set(t.runs))
        if missing:
            raise TomopickError(f"run(s) {', '.join(missing)} not in the ground truth "
                                f"(runs: {', '.join(sorted(t.runs)[:10])})", truth)
        t = t.select(t.frame["run"].isin(runs))
        p = p.select(p.frame["run"].isin(runs))
    if sweep:
        check_scored(p, picks)
    result = evaluate_picks(t, p, pset, metric, beta=beta, distance_factor=distance_factor,  # type: ignore[arg-type]
                            distance_A=distance_A)
    swept = (threshold_sweep(t, p, pset, metric, beta=beta, distance_factor=distance_factor,  # type: ignore[arg-type]
                             distance_A=distance_A) if sweep else None)
    outcome = EvaluateOutcome(result, swept, None, str(truth), str(picks))
    if report_dir is None:
        return outcome
    curves = swept.curves if swept is not None else pr_curve(t, p, pset, metric,  # type: ignore[arg-type]
                                                             distance_factor=distance_factor, distance_A=distance_A)
    text = markdown_report(result, swept, title="tomopick evaluation",
                           sources={"truth": str(truth), "picks": str(picks)}, figure="pr_curves.png")
    fig = pr_figure(curves, pset, title=f"precision–recall ({metric}, distance "
                    + (f"{distance_A:g} Å)" if distance_A is not None else f"{result.distance_factor:g} × radius)"))
    page = _html_report(t, p, pset, result, curves, truth, picks, tomograms, command)
    with atomic_output(report_dir, overwrite=overwrite, directory=True) as tmp:
        (tmp / "report.md").write_text(text + "\n")
        (tmp / "report.html").write_text(page, encoding="utf-8")
        (tmp / "evaluation.json").write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")
        curves.to_csv(tmp / "pr_curves.csv", index=False)
        fig.savefig(tmp / "pr_curves.png")
    return EvaluateOutcome(result, swept, Path(report_dir), str(truth), str(picks))


def _html_report(truth: Picks, picks: Picks, particles: ParticleSet, result: EvaluationResult, curves: Any,
                 truth_source: str | Path, picks_source: str | Path, tomograms: list[str] | None,
                 command: str | None) -> str:
    """``report.html``: the picking report (:mod:`tomopick.viz.report`) with the truth, over the evaluated runs."""
    from tomopick.viz.report import ReportOptions, render_report
    from tomopick.workflows.reporting import (
        copick_tomogram_uris, open_tomograms, picks_by_run, report_input,
    )

    runs = [r for r in truth.runs if r]
    inputs = list(tomograms or [])
    if tomograms is None:
        inputs = copick_tomogram_uris(truth_source, runs) or copick_tomogram_uris(picks_source, runs)
    opened = open_tomograms(inputs)
    if len(opened) == 1 and set(truth.runs) == {""}:  # bare files for one tomogram: its run name
        truth, picks = picks_by_run(truth, list(opened)), picks_by_run(picks, list(opened))
    opened = {k: v for k, v in opened.items() if k in set(truth.runs)}
    data = report_input(picks, truth, particles, opened, evaluation=result, curves=curves, command=command,
                        sources={"truth": str(truth_source), "picks": str(picks_source)})
    return render_report(data, ReportOptions(title="tomopick evaluation"))
