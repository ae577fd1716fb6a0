"""Score thresholds: the one place that decides which threshold each class gets, and how stored ones are chosen.

A pick is kept when its score (:mod:`tomopick.peaks.score`) reaches its class's threshold. The threshold of a
class comes from, in this order:

1. ``option`` — given by the user (``--threshold 0.3`` or ``--threshold ribosome=0.4``);
2. ``checkpoint`` — stored in the checkpoint (``config["pick"]["thresholds"]``, chosen on validation or
   calibration runs by :func:`stored_threshold`) *for the score in use*: thresholds of the saturating ``peak``
   score do not carry over to the ``blob`` score;
3. ``default`` — :data:`DEFAULT_THRESHOLD` of the score (``blob``: 0.2; ``peak``: 0.5).

Stored thresholds are chosen on annotated runs from a threshold sweep: per class the *lowest* threshold whose
F-beta is within :data:`THRESHOLD_TOLERANCE` of the best (recall weighs β² = 16× precision in the CZII metric, and
on other data particles tend to score lower, not higher), at least :data:`MIN_SCORE`; a class that was never
found gets the default.

:func:`valley_threshold` is the per-tomogram alternative (``--threshold-rule valley``): the emptiest score
between two bounds, from the tomogram's own peak scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from tomopick.errors import TomopickError
from tomopick.peaks.score import DEFAULT_SCORE

#: Lowest score kept while validating or calibrating; the sweep chooses the stored threshold above it.
MIN_SCORE = 0.05
#: Peak-value floor of the candidates that the ``blob`` score rescores (a peak of the class map must reach it).
CANDIDATE_FLOOR = 0.05
#: Threshold of a class without a stored or given one, per score.
DEFAULT_THRESHOLD: dict[str, float] = {"blob": 0.2, "peak": 0.5}
#: Among thresholds whose F-beta is within this of the best, the lowest is stored.
THRESHOLD_TOLERANCE = 0.02
#: The band the valley rule looks in (``blob`` scores): below it background peaks, above it particles.
VALLEY_BAND = (0.12, 0.3)


@dataclass(frozen=True)
class ThresholdChoice:
    """The threshold of one class and where it came from (``option``, ``checkpoint``, ``default``, ``valley``)."""

    value: float
    rule: str

    def describe(self) -> str:
        return f"{self.rule} {self.value:.3g}"


def parse_threshold(threshold: Any, names: Sequence[str], source: str | None = None) -> dict[str, float]:
    """``{class: value}`` for the classes a user-given threshold names (every class for one value or a list).

    ``threshold``: ``None`` (nothing given), one number, one per class (model order), or ``{class: value}``
    (``"*"``: every class not named). Values must lie in (0, 1].
    """
    names = list(names)
    if threshold is None:
        return {}
    if isinstance(threshold, Mapping):
        unknown = sorted(set(threshold) - set(names) - {"*"})
        if unknown:
            raise TomopickError(f"threshold given for unknown class(es) {', '.join(unknown)}; "
                                f"the model's classes: {', '.join(names)}", source)
        out = {n: float(threshold[n]) for n in names if n in threshold}
        if "*" in threshold:
            out.update({n: float(threshold["*"]) for n in names if n not in threshold})
    else:
        values = np.atleast_1d(np.asarray(threshold, dtype=np.float64))
        if values.size == 1:
            values = np.repeat(values, len(names))
        if values.size != len(names):
            raise TomopickError(f"{values.size} thresholds for {len(names)} classes ({', '.join(names)})", source)
        out = dict(zip(names, (float(v) for v in values)))
    bad = [v for v in out.values() if not 0 < v <= 1]
    if bad:
        raise TomopickError(f"score thresholds must be in (0, 1], got {bad[0]:g}", source)
    return out


def choose_thresholds(names: Sequence[str], given: Any = None, pick_config: Mapping[str, Any] | None = None,
                      score: str = DEFAULT_SCORE, source: str | None = None) -> list[ThresholdChoice]:
    """Per-class thresholds (model order) by the precedence of the module docstring.

    Parameters
    ----------
    names
        The model's foreground classes in channel order.
    given
        The user's threshold (see :func:`parse_threshold`), or ``None``.
    pick_config
        The checkpoint's ``config["pick"]`` (``thresholds``, ``score``), or ``None``.
    score
        The score in use (``blob`` or ``peak``).
    """
    chosen = parse_threshold(given, names, source)
    stored = stored_for_score(pick_config, score)
    default = DEFAULT_THRESHOLD[score]
    out = []
    for n in names:
        if n in chosen:
            out.append(ThresholdChoice(chosen[n], "option"))
        elif n in stored:
            out.append(ThresholdChoice(float(stored[n]), "checkpoint"))
        else:
            out.append(ThresholdChoice(default, "default"))
    return out


def stored_for_score(pick_config: Mapping[str, Any] | None, score: str) -> dict[str, float]:
    """The checkpoint's stored thresholds for ``score``: ``thresholds_by_score[score]`` where present, else
    ``thresholds`` if they were chosen for ``score`` (checkpoints written before the ``blob`` score existed hold
    ``peak`` thresholds and no ``score`` entry)."""
    pick_config = pick_config or {}
    by_score = pick_config.get("thresholds_by_score") or {}
    if score in by_score:
        return {str(k): float(v) for k, v in (by_score[score] or {}).items()}
    stored = pick_config.get("thresholds") or {}
    made_for = pick_config.get("score") or "peak"
    return {str(k): float(v) for k, v in stored.items()} if made_for == score else {}


def stored_threshold(row: Mapping[str, Any], fixed: float | None = None, min_score: float = MIN_SCORE,
                     score: str = DEFAULT_SCORE) -> float:
    """The threshold to store for one class from a threshold-sweep row (``threshold``, ``tp``): the fixed one
    if configured; else the sweep's choice (at least ``min_score``); the score's default when the class had no
    true positive (absent from the runs, or never found)."""
    if fixed is not None:
        return float(fixed)
    best = float(row.get("threshold", np.nan))
    if not np.isfinite(best) or int(row.get("tp", 0)) == 0:
        return DEFAULT_THRESHOLD[score]
    return float(min(max(best, min_score), 1.0))


def valley_threshold(scores: np.ndarray, low: float = VALLEY_BAND[0], high: float = VALLEY_BAND[1],
                     bandwidth: float = 0.02,
                     steps: int = 73) -> float:
    """The least populated score between ``low`` and ``high`` among one tomogram's peak scores of one class
    (Gaussian kernel density, ``bandwidth`` in score units): where background peaks end and particles begin.

    With no peak in the band the threshold is ``low``; ties go to the lowest score (recall first).
    """
    scores = np.asarray(scores, dtype=np.float64)
    grid = np.linspace(low, high, steps)
    if scores.size == 0:
        return float(low)
    density = np.exp(-0.5 * ((grid[:, None] - scores[None, :]) / bandwidth) ** 2).sum(axis=1)
    return float(grid[int(np.argmin(density))])
