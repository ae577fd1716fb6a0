"""The automatic threshold of template matching: a false-alarm rate from the background score distribution.

Over background, each locally normalised correlation ``cc_R(x)`` is close to Gaussian with mean ``μ`` and standard
deviation ``σ`` (both measured over all searched voxels and rotations, :class:`~tomopick.match.correlate.MatchResult`).
Searching ``N = voxels × rotations`` trials, the score that pure noise exceeds ``FA`` times in expectation is
(Rickgauer et al. 2017, eLife; the rule of pytom-match-pick)::

    threshold = μ + σ · Φ⁻¹(1 − FA / N)

Treating the trials as independent over-counts them (neighbouring voxels and rotations are correlated), so the
threshold is conservative: fewer than ``FA`` false peaks are expected.
"""

from __future__ import annotations

from scipy.stats import norm


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
