"""Score-threshold analysis: precision–recall curves, average precision and the best-case threshold per class.

A *threshold* ``t`` keeps the picks with ``score >= t``. The curve has one point per distinct score (highest
first); picks without a score (NaN) rank below every scored pick and appear only in the last point
(threshold ``-inf`` = all picks). Counting follows the chosen metric: ``"czii"`` counts distinct ground-truth
points in range (a duplicate pick is a false positive); ``"hungarian"``/``"f1"`` count the largest one-to-one
matching, exactly what :func:`~tomopick.evaluation.match_hungarian` finds at that threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from tomopick.data import ParticleSet, Picks
from tomopick.evaluation.matching import tp_by_rank
from tomopick.evaluation.scores import (
    Metric, _check_names, _resolve_settings, class_distances_A, precision_recall_fbeta, weighted_score,
)

CURVE_COLUMNS: tuple[str, ...] = ("particle", "threshold", "n_picks", "tp", "fp", "fn", "precision", "recall")


def pr_curve(truth: Picks, picks: Picks, particles: ParticleSet, metric: Metric = "czii", *,
             distance_factor: float | None = None, distance_A: float | None = None) -> pd.DataFrame:
    """Precision and recall at every score threshold, per class, with counts summed over the truth's runs.

    Parameters
    ----------
    truth, picks
        Ground truth and scored picks; matched within each run. Picks of runs the truth lacks are ignored.
    particles
        Particle set (radii for the matching distance).
    metric
        Counting rule, ``"czii"`` or one-to-one (``"hungarian"``/``"f1"``; identical here).
    distance_factor, distance_A
        Matching distance as a fraction of the radius (default 0.5) or in Å.

    Returns
    -------
    DataFrame with :data:`CURVE_COLUMNS`, per class one row per distinct threshold in decreasing order
    (recall non-decreasing). Classes without picks have no rows.
    """
    _, distance_factor = _resolve_settings(metric, None, distance_factor, distance_A)
    _check_names(truth, particles, "the ground truth")
    _check_names(picks, particles, "the picks")
    dist = class_distances_A(particles, distance_factor, distance_A)
    runs = sorted(truth.runs)
    picks = picks.select(picks.frame["run"].isin(runs))
    one_to_one = metric != "czii"
    xyz = ["x_A", "y_A", "z_A"]
    t_groups = {k: g for k, g in truth.frame.groupby(["run", "particle"], sort=False)}
    p_groups = {k: g for k, g in picks.frame.groupby(["run", "particle"], sort=False)}
    frames = []
    for spec in particles:
        if spec.name not in set(picks.particles):
            continue
        per_run = []
        all_scores = []
        n_truth = 0
        for run in runs:
            tg, pg = t_groups.get((run, spec.name)), p_groups.get((run, spec.name))
            t_xyz = tg[xyz].to_numpy(np.float64) if tg is not None else np.zeros((0, 3))
            n_truth += len(t_xyz)
            if pg is None:
                continue
            s = np.nan_to_num(pg["score"].to_numpy(np.float64), nan=-np.inf)
            order = np.argsort(-s, kind="stable")
            prefix = tp_by_rank(t_xyz, pg[xyz].to_numpy(np.float64), order, dist[spec.name], one_to_one)
            per_run.append((np.sort(s), prefix))
            all_scores.append(s)
        thresholds = np.unique(np.concatenate(all_scores))[::-1]
        n = np.zeros(len(thresholds), dtype=np.int64)
        tp = np.zeros(len(thresholds), dtype=np.int64)
        for sorted_s, prefix in per_run:
            k = len(sorted_s) - np.searchsorted(sorted_s, thresholds, side="left")
            n += k
            tp += prefix[k]
        fp, fn = n - tp, n_truth - tp
        precision, recall, _ = precision_recall_fbeta(tp, fp, fn, 1.0)
        frames.append(pd.DataFrame({"particle": spec.name, "threshold": thresholds, "n_picks": n, "tp": tp,
                                    "fp": fp, "fn": fn, "precision": precision, "recall": recall}))
    if not frames:
        return pd.DataFrame({c: [] for c in CURVE_COLUMNS})
    return pd.concat(frames, ignore_index=True)[list(CURVE_COLUMNS)]


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """Area under a precision–recall curve, all-point interpolated (PASCAL VOC 2010+/COCO style).

    ``AP = sum_k (r_k - r_{k-1}) * max_{j >= k} p_j`` with ``r_0 = 0``, points ordered by increasing recall
    (i.e. decreasing threshold, as :func:`pr_curve` returns them).

    Parameters
    ----------
    precision, recall
        Arrays ``(m,)`` of one class's curve, in decreasing-threshold order.
    """
    p = np.asarray(precision, dtype=np.float64)
    r = np.asarray(recall, dtype=np.float64)
    if len(p) == 0:
        return 0.0
    envelope = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.diff(np.concatenate([[0.0], r]))
    return float(np.sum(steps * envelope))


def average_precisions(curves: pd.DataFrame, particles: ParticleSet) -> dict[str, float]:
    """Average precision of every class in a :func:`pr_curve` table (0 for classes without picks)."""
    out = {}
    for spec in particles:
        sub = curves[curves["particle"] == spec.name]
        out[spec.name] = average_precision(sub["precision"].to_numpy(), sub["recall"].to_numpy())
    return out


@dataclass(frozen=True)
class SweepResult:
    """Best-case score thresholds.

    Attributes
    ----------
    table
        Per class (present in truth or picks): ``particle, weight, scored, threshold`` (keep ``score >=
        threshold``; NaN when the class has no picks), ``n_picks, tp, fp, fn, precision, recall, fbeta`` at that
        threshold, and ``average_precision``.
    score
        Weighted F-beta over scored classes with every class at its own best threshold.
    curves
        The :func:`pr_curve` table the sweep was taken from.
    """

    table: pd.DataFrame
    score: float
    curves: pd.DataFrame
    metric: str
    beta: float

    def thresholds(self) -> dict[str, float]:
        """``{particle: threshold}`` for classes with picks."""
        sub = self.table[~np.isnan(self.table["threshold"].to_numpy(np.float64))]
        return dict(zip(sub["particle"], sub["threshold"].astype(float)))


def threshold_sweep(truth: Picks, picks: Picks, particles: ParticleSet, metric: Metric = "czii", *,
                    beta: float | None = None, distance_factor: float | None = None,
                    distance_A: float | None = None, tolerance: float = 0.0) -> SweepResult:
    """The score threshold maximising F-beta, chosen per class (an optimistic, best-case figure).

    Every distinct score is tried (exact, no grid); among equal F-beta the highest threshold (fewest picks)
    wins. With ``tolerance > 0`` the lowest threshold whose F-beta is within ``tolerance`` of the best wins
    instead: the F-beta of a few tens of particles is only known to a few hundredths, and a lower threshold keeps
    recall when a network's scores shift on other data (``tomopick train`` and ``tomopick calibrate`` choose their
    stored thresholds this way). Other parameters as :func:`~tomopick.evaluation.evaluate`.
    """
    beta, distance_factor = _resolve_settings(metric, beta, distance_factor, distance_A)
    curves = pr_curve(truth, picks, particles, metric, distance_factor=distance_factor, distance_A=distance_A)
    aps = average_precisions(curves, particles)
    in_truth = set(truth.particles)
    truth_counts = truth.counts()
    rows = []
    for spec in particles:
        if spec.name not in in_truth and spec.name not in set(picks.particles):
            continue
        sub = curves[curves["particle"] == spec.name]
        base = {"particle": spec.name, "weight": float(spec.weight), "scored": spec.name in in_truth}
        if len(sub) == 0:
            n_t = truth_counts.get(spec.name, 0)
            rows.append({**base, "threshold": np.nan, "n_picks": 0, "tp": 0, "fp": 0, "fn": n_t, "precision": 0.0,
                         "recall": 0.0, "fbeta": 0.0, "average_precision": 0.0})
            continue
        _, _, fb = precision_recall_fbeta(sub["tp"], sub["fp"], sub["fn"], beta)
        best = int(np.argmax(fb))  # first maximum = highest threshold (rows go from high to low thresholds)
        if tolerance > 0:
            best = int(np.flatnonzero(fb >= fb[best] - tolerance)[-1])
        r = sub.iloc[best]
        rows.append({**base, "threshold": float(r["threshold"]), "n_picks": int(r["n_picks"]), "tp": int(r["tp"]),
                     "fp": int(r["fp"]), "fn": int(r["fn"]), "precision": float(r["precision"]),
                     "recall": float(r["recall"]), "fbeta": float(fb[best]),
                     "average_precision": aps[spec.name]})
    table = pd.DataFrame(rows, columns=["particle", "weight", "scored", "threshold", "n_picks", "tp", "fp", "fn",
                                        "precision", "recall", "fbeta", "average_precision"])
    scored = table[table["scored"].astype(bool)]
    score = weighted_score(scored["fbeta"].to_numpy(), scored["weight"].to_numpy())
    return SweepResult(table=table, score=score, curves=curves, metric=metric, beta=beta)


def apply_thresholds(picks: Picks, thresholds: dict[str, float]) -> Picks:
    """Keep picks with ``score >= thresholds[particle]``; classes not in ``thresholds`` are kept whole."""
    keep = np.ones(len(picks), dtype=bool)
    names = picks.frame["particle"].to_numpy()
    scores = np.nan_to_num(picks.scores, nan=-np.inf)
    for name, t in thresholds.items():
        sel = names == name
        keep[sel] = scores[sel] >= t
    return picks.select(keep)
