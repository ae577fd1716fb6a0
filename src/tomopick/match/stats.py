"""The automatic threshold of template matching: a false-alarm rate from the background score distribution.

Over background, each locally normalised correlation ``cc_R(x)`` is close to Gaussian with mean ``μ`` and standard
deviation ``σ`` (both measured over all searched voxels and rotations, :class:`~tomopick.match.correlate.MatchResult`).
Searching ``N = voxels × rotations`` trials, the score that pure noise exceeds ``FA`` times in expectation is
(Rickgauer et al. 2017, eLife; the rule of pytom-match-pick)::

    threshold = μ + σ · Φ⁻¹(1 − FA / N)

Treating the trials as independent over-counts them (neighbouring voxels and rotations are correlated), so the
threshold is conservative against noise: fewer than ``FA`` false peaks are expected. Structured background (other
particles, membranes) is not noise: :func:`peak_tail_threshold` fits the tail of the tomogram's own peak scores,
and :func:`tomopick.match.picking.picks_from_result` uses the higher of the two. Above that, the peaks of a
crowded tomogram often form two groups — look-alikes (other particles) and the particle itself, the latter
scoring far higher; :func:`gap_threshold` finds the split when the groups are clearly apart.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm

#: Fewest local maxima for the extreme-value (Gumbel) fit of :func:`peak_tail_threshold`.
MIN_PEAKS_FOR_FIT = 50


def false_alarm_threshold(cc_mean: float, cc_std: float, n_trials: int, false_alarms: float = 1.0) -> float:
    """Score exceeded ``false_alarms`` times in expectation by ``n_trials`` Gaussian background trials with mean
    ``cc_mean`` and standard deviation ``cc_std``."""
    if n_trials <= 0 or cc_std <= 0:
        return float("inf")
    p = min(0.5, float(false_alarms) / float(n_trials))
    return float(cc_mean + cc_std * norm.isf(p))


def expected_exceedances(threshold: float, cc_mean: float, cc_std: float, n_trials: int) -> float:
    """Expected number of background trials above ``threshold`` (the inverse of :func:`false_alarm_threshold`)."""
    if cc_std <= 0:
        return 0.0
    return float(n_trials * norm.sf((threshold - cc_mean) / cc_std))


def peak_tail_threshold(peak_scores: np.ndarray, false_alarms: float = 1.0,
                        n_peaks: int | None = None) -> float | None:
    """Score that ``false_alarms`` background peaks exceed in expectation, from the tomogram's own local maxima.

    The local maxima of a best-over-rotations score map are, but for the few particles, background maxima whose
    upper tail follows a Gumbel law (the maximum of many correlated trials). Its location ``μ`` and scale ``β`` come
    from the median and inter-quartile range of all peak scores (robust to the particles in the tail:
    ``IQR = 1.5725 β``, ``median = μ + 0.3665 β``); the threshold is ``μ − β ln(−ln(1 − FA/n))`` for ``n`` peaks.
    Unlike :func:`false_alarm_threshold` it sees structured background (other particles, membranes, ice) that
    pure-noise statistics miss. ``None`` with fewer than :data:`MIN_PEAKS_FOR_FIT` peaks.

    ``peak_scores`` may be a uniform random sample of the peaks: ``n_peaks`` is then the number of all peaks (the
    quantiles come from the sample, the false-alarm level from ``n_peaks``).
    """
    x = np.asarray(peak_scores, dtype=np.float64)
    x = x[np.isfinite(x)]
    n = len(x)
    if n < MIN_PEAKS_FOR_FIT:
        return None
    q25, q50, q75 = np.quantile(x, [0.25, 0.5, 0.75])
    beta = (q75 - q25) / 1.5725
    if not beta > 0:
        return None
    mu = q50 - 0.3665 * beta
    p = min(0.5, float(false_alarms) / (n if n_peaks is None else max(int(n_peaks), n)))
    return float(mu - beta * np.log(-np.log1p(-p)))


#: Separation (difference of means over the pooled standard deviation) two groups of peak scores need for
#: :func:`gap_threshold` to split them.
MIN_SEPARATION = 4.0


def gap_threshold(peak_scores: np.ndarray, min_separation: float = MIN_SEPARATION) -> float | None:
    """The split between two well-separated groups of peak scores (particles above, look-alikes below), or ``None``.

    Otsu's threshold of the scores (``skimage.filters.threshold_otsu``) decides whether there are two groups: they
    must be ``min_separation`` pooled standard deviations apart, each with at least 3 peaks; the cut is then the middle
    of the widest empty interval between the two group means. Scores that form one group (no clear particle
    population) give ``None``.
    """
    from skimage.filters import threshold_otsu

    x = np.asarray(peak_scores, dtype=np.float64)
    x = x[np.isfinite(x)]
    if len(x) < 6 or float(x.max() - x.min()) <= 0:
        return None
    t = float(threshold_otsu(x))
    lo, hi = x[x < t], x[x >= t]
    if len(hi) < 3 or len(lo) < 3:
        return None
    pooled = np.sqrt((lo.var() * len(lo) + hi.var() * len(hi)) / len(x))
    if not pooled > 0 or (hi.mean() - lo.mean()) / pooled < min_separation:
        return None
    # Otsu leans into the larger group: cut in the middle of the widest empty interval between the group means
    between = np.sort(x[(x >= lo.mean()) & (x <= hi.mean())])
    if len(between) >= 2:
        widest = int(np.argmax(np.diff(between)))
        t = float(0.5 * (between[widest] + between[widest + 1]))
    return t
