"""An automatic cut on per-pick alignment scores, to drop junk picks.

Rule (:func:`automatic_score_cut`):

1. Fewer than :data:`MIN_PICKS` scores: no cut (``rule="too_few"``, threshold −inf).
2. A two-component Gaussian mixture is fitted to the scores (EM, initialised at the quartiles). When the two
   components are clearly separated — Ashman's ``D = √2 |μ₁ − μ₂| / √(σ₁² + σ₂²) > 2`` and each holds at least
   5 % of the picks — the lower component is taken as *junk*. The cut is the lower of the valley between the two
   (where their weighted densities are equal) and ``μ_junk + 0.5 σ_junk`` (:data:`JUNK_SIGMAS`): only picks that
   score like the bulk of the junk are dropped (``rule="mixture"``). Why so far below the valley: true picks'
   scores have a heavier low tail than a Gaussian, so the fitted junk component also absorbs true picks, and its
   upper part is ambiguous; losing true picks is worse than keeping some junk. (Chosen on one draw of
   ``bench/bench_average.py --parts cut --seed 1``, where cutting at ``μ_junk + σ_junk`` lost 5.0 % of the true
   thyroglobulin picks and a posterior rule up to 12.5 %; tested on another draw, see ``bench/RESULTS.md``.)
3. Otherwise the scores are taken as one population and only its outliers are cut:
   ``median − 3 × 1.4826 × MAD`` (``rule="mad"``), which removes ≈ 0.1 % of a Gaussian population.

The score is the normalised cross-correlation of each pick with its half-set's average after alignment, so it is
comparable between picks of one run, not between runs with different filters or references.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

MIN_PICKS = 10
SEPARATION_D = 2.0
MIN_WEIGHT = 0.05
JUNK_SIGMAS = 0.5
MAD_SIGMAS = 3.0


@dataclass(frozen=True)
class ScoreCut:
    """An automatic score threshold: keep picks with ``score >= threshold``.

    Attributes
    ----------
    threshold
        The cut (−inf: keep all).
    rule
        ``"mixture"``, ``"mad"`` or ``"too_few"`` (see the module docstring).
    n_kept, n_total
        Picks at or above the cut, and all picks with a finite score.
    details
        The mixture's parameters (means, sds, weights, Ashman's D, valley) or the median and MAD.
    """

    threshold: float
    rule: str
    n_kept: int
    n_total: int
    details: dict = field(default_factory=dict)

    def keep(self, scores: np.ndarray) -> np.ndarray:
        """Boolean ``(n,)``: the picks the cut keeps (non-finite scores are dropped)."""
        s = np.asarray(scores, dtype=np.float64)
        return np.isfinite(s) & (s >= self.threshold)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["threshold"] = None if not np.isfinite(self.threshold) else float(self.threshold)
        return out


def _normal_pdf(x: np.ndarray, mu: float, sd: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - mu) / sd) ** 2) / (sd * np.sqrt(2 * np.pi))


def fit_two_gaussians(x: np.ndarray, iterations: int = 300, tol: float = 1e-9) -> dict[str, np.ndarray]:
    """Maximum-likelihood 2-component 1-D Gaussian mixture by EM; components sorted by mean.

    Returns ``{"mean": (2,), "sd": (2,), "weight": (2,), "log_likelihood": float}``.
    """
    x = np.asarray(x, dtype=np.float64)
    spread = float(np.std(x)) or 1.0
    floor = 1e-3 * spread
    mu = np.quantile(x, [0.25, 0.75]).astype(np.float64)
    sd = np.full(2, spread / 2)
    w = np.full(2, 0.5)
    prev = -np.inf
    ll = prev
    for _ in range(iterations):
        dens = np.stack([w[k] * _normal_pdf(x, mu[k], sd[k]) for k in range(2)]) + 1e-300
        total = dens.sum(axis=0)
        ll = float(np.log(total).sum())
        resp = dens / total
        nk = resp.sum(axis=1) + 1e-12
        w = nk / len(x)
        mu = (resp @ x) / nk
        sd = np.sqrt(np.maximum((resp * (x[None] - mu[:, None]) ** 2).sum(axis=1) / nk, floor ** 2))
        if ll - prev < tol * abs(ll):
            break
        prev = ll
    order = np.argsort(mu)
    return {"mean": mu[order], "sd": sd[order], "weight": w[order], "log_likelihood": ll}


def automatic_score_cut(scores: np.ndarray) -> ScoreCut:
    """The automatic cut on alignment scores ``(n,)`` (rule in the module docstring)."""
    s = np.asarray(scores, dtype=np.float64)
    finite = s[np.isfinite(s)]
    n = len(finite)
    if n < MIN_PICKS:
        return ScoreCut(-np.inf, "too_few", n, n, {"min_picks": MIN_PICKS})
    fit = fit_two_gaussians(finite)
    mu, sd, w = fit["mean"], fit["sd"], fit["weight"]
    d = float(np.sqrt(2.0) * abs(mu[1] - mu[0]) / np.sqrt(sd[0] ** 2 + sd[1] ** 2))
    if d > SEPARATION_D and w.min() >= MIN_WEIGHT:
        grid = np.linspace(mu[0], mu[1], 4001)
        good = w[1] * _normal_pdf(grid, mu[1], sd[1])
        junk = w[0] * _normal_pdf(grid, mu[0], sd[0])
        valley = float(grid[np.nonzero(good >= junk)[0][0]]) if (good >= junk).any() else float(mu[1])
        threshold = min(valley, float(mu[0] + JUNK_SIGMAS * sd[0]))
        details = {"means": mu.tolist(), "sds": sd.tolist(), "weights": w.tolist(), "ashman_d": d,
                   "valley": valley, "junk_sigmas": JUNK_SIGMAS}
        rule = "mixture"
    else:
        med = float(np.median(finite))
        mad = float(np.median(np.abs(finite - med)))
        threshold = med - MAD_SIGMAS * 1.4826 * mad
        details = {"median": med, "mad": mad, "mad_sigmas": MAD_SIGMAS, "ashman_d": d}
        rule = "mad"
    kept = int((finite >= threshold).sum())
    return ScoreCut(float(threshold), rule, kept, n, details)
