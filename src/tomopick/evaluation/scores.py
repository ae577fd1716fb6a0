"""Per-class detection scores: the CZII challenge metric, F-beta with one-to-one matching, localisation error.

Metrics
-------
``"czii"``
    The Kaggle "CZII - CryoET Object Identification" score: per class and tomogram (run), a ground-truth point
    is found when at least one pick of that class lies within ``distance_factor x radius_A`` (0.5 by default,
    inclusive); ``TP`` = distinct ground-truth points found, ``FP = n_picks - TP``, ``FN = n_truth - TP``.
    Counts are summed over runs per class, then precision, recall and F-beta (beta = 4) per class, and the score
    is ``sum(weight * F-beta) / sum(weight)`` over the classes present in the ground truth.
``"hungarian"``
    Same distance rule, but picks and ground truth are matched one-to-one (:func:`match_hungarian`), so a
    pick never counts for two particles. Default beta = 4, directly comparable to ``"czii"``.
``"f1"``
    One-to-one matching like ``"hungarian"``, with beta = 1 by default.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd

from tomopick.data import ParticleSet, Picks
from tomopick.errors import TomopickError
from tomopick.evaluation.matching import czii_counts, match_hungarian

Metric = Literal["czii", "hungarian", "f1"]
METRICS: tuple[str, ...] = ("czii", "hungarian", "f1")
DEFAULT_BETA: dict[str, float] = {"czii": 4.0, "hungarian": 4.0, "f1": 1.0}
DEFAULT_DISTANCE_FACTOR = 0.5

#: Columns of :attr:`EvaluationResult.table`, one row per particle class.
TABLE_COLUMNS: tuple[str, ...] = (
    "particle", "radius_A", "distance_A", "weight", "scored", "n_truth", "n_picks", "tp", "fp", "fn", "precision",
    "recall", "fbeta", "n_matched", "mean_distance_A", "rmse_A", "rmse_radius",
)


def precision_recall_fbeta(tp: Any, fp: Any, fn: Any, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F-beta from counts (scalars or arrays), 0 wherever undefined.

    ``precision = tp / (tp + fp)`` (0 if ``tp + fp <= 0``), ``recall = tp / (tp + fn)`` (0 if ``tp + fn <= 0``),
    ``F = (1 + beta²) P R / (beta² P + R)`` (0 if ``P + R <= 0``) — the conventions of the Kaggle CZII metric.
    """
    tp, fp, fn = (np.asarray(v, dtype=np.float64) for v in (tp, fp, fn))
    b2 = float(beta) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        fbeta = np.where(precision + recall > 0,
                         (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
    return precision, recall, fbeta


def fbeta_score(tp: float, fp: float, fn: float, beta: float) -> float:
    """F-beta of one set of counts (0 where undefined), see :func:`precision_recall_fbeta`."""
    return float(precision_recall_fbeta(tp, fp, fn, beta)[2])


def class_distances_A(particles: ParticleSet, distance_factor: float | None = None,
                      distance_A: float | None = None) -> dict[str, float]:
    """Matching distance in Å for every class: ``distance_factor x radius_A`` or one fixed ``distance_A``.

    With neither given, the CZII default 0.5 x radius is used. Giving both is an error.
    """
    if distance_factor is not None and distance_A is not None:
        raise TomopickError("give either a distance factor (fraction of the radius) or a distance in Å, not both")
    if distance_A is not None:
        if not (math.isfinite(distance_A) and distance_A > 0):
            raise TomopickError(f"matching distance must be positive, got {distance_A} Å")
        return {p.name: float(distance_A) for p in particles}
    factor = DEFAULT_DISTANCE_FACTOR if distance_factor is None else float(distance_factor)
    if not (math.isfinite(factor) and factor > 0):
        raise TomopickError(f"distance factor must be positive, got {factor}")
    return {p.name: factor * float(p.radius_A) for p in particles}


@dataclass(frozen=True)
class EvaluationResult:
    """Scores of one set of picks against ground truth.

    Attributes
    ----------
    table
        One row per particle class present in the truth or the picks (in particle-set order), columns
        :data:`TABLE_COLUMNS`: counts summed over runs, precision, recall, F-beta, the matching distance, and the
        localisation error of one-to-one matched pairs (mean distance and RMSE in Å, RMSE as a fraction of the
        radius; NaN without matches). ``scored`` is False for classes absent from the truth (they do not
        enter :attr:`score`, as in the Kaggle metric).
    score
        ``sum(weight * fbeta) / sum(weight)`` over scored classes (NaN when the weights sum to 0).
    mean_fbeta
        Unweighted mean F-beta over scored classes.
    per_run
        TP/FP/FN per ``(run, particle)``.
    metric, beta, distance_factor, distance_A
        The settings used (one of the two distance settings is None).
    runs
        Runs evaluated (those of the truth).
    ignored_runs, n_ignored
        Runs present only in the picks, and how many picks they held (not counted, as in the Kaggle metric).
    """

    table: pd.DataFrame
    score: float
    mean_fbeta: float
    per_run: pd.DataFrame
    metric: str
    beta: float
    distance_factor: float | None
    distance_A: float | None
    runs: tuple[str, ...]
    ignored_runs: tuple[str, ...] = ()
    n_ignored: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-compatible summary (NaN → None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, (float, np.floating)):
                return None if not math.isfinite(float(v)) else float(v)
            if isinstance(v, (np.integer,)):
                return int(v)
            if isinstance(v, (np.bool_,)):
                return bool(v)
            return v

        return {
            "metric": self.metric, "beta": self.beta, "distance_factor": self.distance_factor,
            "distance_A": self.distance_A, "score": clean(self.score), "mean_fbeta": clean(self.mean_fbeta),
            "runs": list(self.runs), "ignored_runs": list(self.ignored_runs), "n_ignored_picks": self.n_ignored,
            "classes": [{k: clean(v) for k, v in row.items()} for row in self.table.to_dict(orient="records")],
            "per_run": [{k: clean(v) for k, v in row.items()} for row in self.per_run.to_dict(orient="records")],
            **{k: v for k, v in self.extra.items()},
        }


def _check_names(picks: Picks, particles: ParticleSet, what: str) -> None:
    unknown = sorted(set(picks.particles) - set(particles.names))
    if unknown:
        raise TomopickError(f"{what} hold particle class(es) not in the particle set {particles.name!r}: "
                            f"{', '.join(unknown)} (known: {', '.join(particles.names)})")


def _resolve_settings(metric: str, beta: float | None, distance_factor: float | None,
                      distance_A: float | None) -> tuple[float, float | None]:
    if metric not in METRICS:
        raise TomopickError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")
    beta = DEFAULT_BETA[metric] if beta is None else float(beta)
    if not (math.isfinite(beta) and beta > 0):
        raise TomopickError(f"beta must be positive, got {beta}")
    if distance_factor is None and distance_A is None:
        distance_factor = DEFAULT_DISTANCE_FACTOR
    return beta, distance_factor


def weighted_score(fbeta: np.ndarray, weight: np.ndarray) -> float:
    """``sum(weight * fbeta) / sum(weight)``; NaN when the weights sum to 0."""
    fbeta, weight = np.asarray(fbeta, dtype=np.float64), np.asarray(weight, dtype=np.float64)
    total = float(weight.sum())
    return float((weight * fbeta).sum() / total) if total > 0 else float("nan")


def evaluate(truth: Picks, picks: Picks, particles: ParticleSet, metric: Metric = "czii", *,
             beta: float | None = None, distance_factor: float | None = None,
             distance_A: float | None = None) -> EvaluationResult:
    """Score picks against ground truth, class by class, matched within each run (``Picks.run``).

    Parameters
    ----------
    truth
        Ground-truth picks (positions in Å; ``run`` names the tomogram).
    picks
        Picks to score. Picks of runs that the truth lacks are ignored (and reported), as in the Kaggle metric.
    particles
        Particle set giving ``radius_A`` and ``weight`` of every class; every class in the truth and the picks
        must be in it.
    metric
        ``"czii"``, ``"hungarian"`` or ``"f1"`` (see the module docstring).
    beta
        F-beta parameter; default 4 for ``"czii"``/``"hungarian"``, 1 for ``"f1"``.
    distance_factor, distance_A
        Matching distance as a fraction of each class radius (default 0.5), or one distance in Å for all classes.

    Returns
    -------
    EvaluationResult
    """
    beta, distance_factor = _resolve_settings(metric, beta, distance_factor, distance_A)
    _check_names(truth, particles, "the ground truth")
    _check_names(picks, particles, "the picks")
    dist = class_distances_A(particles, distance_factor, distance_A)
    runs = tuple(sorted(truth.runs))
    picks_runs = set(picks.runs)
    ignored = tuple(sorted(picks_runs - set(runs)))
    n_ignored = int(picks.frame["run"].isin(ignored).sum())
    in_truth, in_picks = set(truth.particles), set(picks.particles)
    classes = [p for p in particles if p.name in in_truth or p.name in in_picks]

    t_groups = {k: g for k, g in truth.frame.groupby(["run", "particle"], sort=False)}
    p_groups = {k: g for k, g in picks.frame.groupby(["run", "particle"], sort=False)}
    xyz = ["x_A", "y_A", "z_A"]
    empty = np.zeros((0, 3))
    rows, run_rows = [], []
    for spec in classes:
        tp = fp = fn = n_t = n_p = 0
        distances: list[np.ndarray] = []
        for run in runs:
            tg, pg = t_groups.get((run, spec.name)), p_groups.get((run, spec.name))
            t_xyz = tg[xyz].to_numpy(np.float64) if tg is not None else empty
            p_xyz = pg[xyz].to_numpy(np.float64) if pg is not None else empty
            match = match_hungarian(t_xyz, p_xyz, dist[spec.name])
            if metric == "czii":
                c = czii_counts(t_xyz, p_xyz, dist[spec.name])
            else:
                c = (match.tp, match.fp, match.fn)
            distances.append(match.distance_A)
            tp, fp, fn = tp + c[0], fp + c[1], fn + c[2]
            n_t, n_p = n_t + len(t_xyz), n_p + len(p_xyz)
            if len(t_xyz) or len(p_xyz):
                run_rows.append({"run": run, "particle": spec.name, "n_truth": len(t_xyz), "n_picks": len(p_xyz),
                                 "tp": c[0], "fp": c[1], "fn": c[2]})
        precision, recall, fb = (float(v) for v in precision_recall_fbeta(tp, fp, fn, beta))
        d = np.concatenate(distances) if distances else np.zeros(0)
        mean_d = float(d.mean()) if len(d) else float("nan")
        rmse = float(np.sqrt(np.mean(d**2))) if len(d) else float("nan")
        rows.append({
            "particle": spec.name, "radius_A": float(spec.radius_A), "distance_A": dist[spec.name],
            "weight": float(spec.weight), "scored": spec.name in in_truth, "n_truth": n_t, "n_picks": n_p,
            "tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "fbeta": fb,
            "n_matched": len(d), "mean_distance_A": mean_d, "rmse_A": rmse, "rmse_radius": rmse / spec.radius_A,
        })
    table = pd.DataFrame(rows, columns=list(TABLE_COLUMNS))
    table = table.astype({"n_truth": "int64", "n_picks": "int64", "tp": "int64", "fp": "int64", "fn": "int64",
                          "n_matched": "int64", "scored": "bool"})
    scored = table[table["scored"]]
    score = weighted_score(scored["fbeta"].to_numpy(), scored["weight"].to_numpy())
    mean_fbeta = float(scored["fbeta"].mean()) if len(scored) else float("nan")
    per_run = pd.DataFrame(run_rows, columns=["run", "particle", "n_truth", "n_picks", "tp", "fp", "fn"])
    return EvaluationResult(
        table=table, score=score, mean_fbeta=mean_fbeta, per_run=per_run, metric=metric, beta=beta,
        distance_factor=None if distance_A is not None else distance_factor,
        distance_A=None if distance_A is None else float(distance_A), runs=runs, ignored_runs=ignored,
        n_ignored=n_ignored,
    )


def czii_score(truth: Picks, picks: Picks, particles: ParticleSet, *, beta: float = 4.0,
               distance_factor: float = 0.5) -> EvaluationResult:
    """The Kaggle CZII challenge score (``evaluate(..., metric="czii")``); ``result.score`` is the leaderboard
    number for the given runs."""
    return evaluate(truth, picks, particles, "czii", beta=beta, distance_factor=distance_factor)
