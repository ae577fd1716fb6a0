"""Scoring picks against ground truth: the CZII challenge metric, F-beta with one-to-one (Hungarian) matching,
localisation error, precision–recall curves, average precision and best-case score thresholds.

Pure functions on :class:`~tomopick.data.Picks` and arrays; positions in Å, matched within each run.

>>> from tomopick.data import CZII, Picks
>>> truth = Picks.from_arrays([[0, 0, 0]], "ribosome", run="TS_1")
>>> picks = Picks.from_arrays([[40, 0, 0], [300, 0, 0]], "ribosome", run="TS_1")
>>> r = evaluate(truth, picks, CZII.subset(["ribosome"]))  # 0.5 x 150 Å = 75 Å matching distance
>>> int(r.table.loc[0, "tp"]), int(r.table.loc[0, "fp"]), round(r.score, 4)
(1, 1, 0.9444)
"""

from tomopick.evaluation.curves import (
    CURVE_COLUMNS, SweepResult, apply_thresholds, average_precision, average_precisions, pr_curve, threshold_sweep,
)
from tomopick.evaluation.matching import Matching, czii_counts, match_hungarian, neighbours_within, tp_by_rank
from tomopick.evaluation.report import markdown_report, pr_figure
from tomopick.evaluation.scores import (
    DEFAULT_BETA, METRICS, TABLE_COLUMNS, EvaluationResult, class_distances_A, czii_score, evaluate, fbeta_score,
    precision_recall_fbeta, weighted_score,
)

__all__ = [
    "CURVE_COLUMNS", "DEFAULT_BETA", "METRICS", "TABLE_COLUMNS", "EvaluationResult", "Matching", "SweepResult",
    "apply_thresholds", "average_precision", "average_precisions", "class_distances_A", "czii_counts",
    "czii_score", "evaluate", "fbeta_score", "markdown_report", "match_hungarian", "neighbours_within",
    "pr_curve", "pr_figure", "precision_recall_fbeta", "threshold_sweep", "tp_by_rank", "weighted_score",
]
