"""``evaluate``: read ground truth and picks in any supported form, score them, optionally write a report.

Sources accepted for both the truth and the picks:

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
from tomopick.io import atomic_output, check_output, read_picks
from tomopick.io.registry import detect
from tomopick.jsonable import to_jsonable

REPORT_FILES = ("report.md", "evaluation.json", "pr_curves.png", "pr_curves.csv")


def _is_copick_dir(path: Path) -> bool:
    return (path / "copick_config.json").is_file()


def _file_run(path: Path) -> str:
    name = path.name
    return name.split(".", 1)[0] if not name.startswith(".") else name


#: Formats that store classes as numbers: their numbers are mapped to names through the particle set.
NUMBERED_CLASS_FORMATS = ("relion", "relion5", "warp", "dynamo", "imod")


def _read_file(path: Path, format: str | None, particles: ParticleSet | None) -> Picks:
    name = format or detect(path, "picks").name
    opts = {"particles": particles} if particles is not None and name in NUMBERED_CLASS_FORMATS else {}
    return read_picks(path, format=format, **opts)


def load_picks(source: str | Path, *, user_id: str | None = None, session_id: str | None = None,
               format: str | None = None, particles: ParticleSet | None = None) -> Picks:
    """Picks from a file, a copick project/URI or a folder of pick files (see the module docstring).

    Parameters
    ----------
    source
        Path or URI.
    user_id, session_id
        copick filters (ignored for plain files).
    format
        Force a picks format for files (as ``tomopick.io.read_picks(format=...)``).
    particles
        Maps class numbers of STAR / Dynamo / IMOD files to names (labels of the set).
    """
    text = str(source)
    copick_opts = {k: v for k, v in (("user_id", user_id), ("session_id", session_id)) if v}
    if "://" in text:
        return read_picks(text, format=format, **copick_opts)
    path = Path(text)
    if not path.exists():
        raise TomopickError("file not found", path)
    if path.is_dir():
        if _is_copick_dir(path):
            from tomopick.io.copick_project import CopickProject

            return CopickProject.open(path).read_picks(user_id=user_id, session_id=session_id)
        parts = []
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if format is None:
                try:
                    detect(f, "picks")
                except TomopickError:
                    continue
            got = _read_file(f, format, particles)
            if len(got) and (got.frame["run"] == "").any():
                frame = got.frame.copy()
                frame.loc[frame["run"] == "", "run"] = _file_run(f)
                got = Picks(frame)
            parts.append(got)
        if not parts:
            raise TomopickError("no pick files in this folder", path)
        return Picks.concat(parts)
    if path.suffix.lower() == ".json":
        return read_picks(path, format=format, **copick_opts)
    return _read_file(path, format, particles)


def align_runs(truth: Picks, picks: Picks) -> tuple[Picks, Picks]:
    """Give an unnamed side the other side's single run name; refuse inputs with no run in common."""
    t_runs, p_runs = set(truth.runs), set(picks.runs)
    if len(picks) and p_runs == {""} and len(t_runs) == 1 and t_runs != {""}:
        picks = picks.with_columns(run=next(iter(t_runs)))
    elif len(truth) and t_runs == {""} and len(p_runs) == 1 and p_runs != {""}:
        truth = truth.with_columns(run=next(iter(p_runs)))
    t_runs, p_runs = set(truth.runs), set(picks.runs)
    if len(truth) and len(picks) and not (t_runs & p_runs):
        def show(runs: set[str]) -> str:
            names = sorted(r or "(unnamed)" for r in runs)
            return ", ".join(names[:6]) + (" …" if len(names) > 6 else "")

        raise TomopickError(f"truth and picks share no run (truth: {show(t_runs)}; picks: {show(p_runs)}); "
                            "name the runs in the files or give one run per side")
    return truth, picks


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
             runs: list[str] | None = None) -> EvaluateOutcome:
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
    with atomic_output(report_dir, overwrite=overwrite, directory=True) as tmp:
        (tmp / "report.md").write_text(text + "\n")
        (tmp / "evaluation.json").write_text(json.dumps(outcome.to_dict(), indent=2) + "\n")
        curves.to_csv(tmp / "pr_curves.csv", index=False)
        fig.savefig(tmp / "pr_curves.png")
    return EvaluateOutcome(result, swept, Path(report_dir), str(truth), str(picks))
