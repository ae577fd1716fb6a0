"""Plots as PNG bytes: score histograms with the threshold marked, precision–recall curves.

matplotlib through its object API (a :class:`~matplotlib.figure.Figure` with the Agg canvas; no pyplot state,
no display needed); no file I/O.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np


def figure_png(fig: Any, dpi: int = 80) -> bytes:
    """PNG bytes of a matplotlib figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def score_histogram(scores: np.ndarray, *, color: str, threshold: float | None = None, is_true: np.ndarray | None = None,
                    title: str = "", score_name: str = "score", bins: int = 30) -> bytes:
    """A histogram of one class's pick scores as PNG bytes.

    Parameters
    ----------
    scores
        ``(n,)`` scores (NaN ignored).
    color
        Bar colour ``#rrggbb`` (all picks, or the true positives when ``is_true`` is given).
    threshold
        Marked with a vertical dashed line when given.
    is_true
        Optional ``(n,)`` booleans (pick matched to the truth): bars are stacked true / false positives.
    """
    from matplotlib.figure import Figure

    s = np.asarray(scores, dtype=np.float64)
    ok = np.isfinite(s)
    fig = Figure(figsize=(3.6, 2.4))
    fig.subplots_adjust(left=0.15, right=0.97, bottom=0.19, top=0.88)  # fixed: tight_layout costs 0.1 s a plot
    ax = fig.add_subplot(1, 1, 1)
    if ok.any():
        lo, hi = float(s[ok].min()), float(s[ok].max())
        if threshold is not None and np.isfinite(threshold):
            lo, hi = min(lo, float(threshold)), max(hi, float(threshold))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        edges = np.linspace(lo, hi, bins + 1)
        if is_true is None:
            ax.hist(s[ok], bins=edges, color=color)
        else:
            t = np.asarray(is_true, dtype=bool)
            ax.hist([s[ok & t], s[ok & ~t]], bins=edges, color=[color, "#bbbbbb"], stacked=True,
                    label=["true positive", "false positive"])
            ax.legend(fontsize=7, loc="upper right", frameon=False)
    else:
        ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(float(threshold), color="k", linestyle="--", linewidth=1)
        ax.text(float(threshold), 0.98, f" threshold {threshold:.3g}", transform=ax.get_xaxis_transform(),
                fontsize=7, va="top")
    ax.set_xlabel(score_name, fontsize=8)
    ax.set_ylabel("picks", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=9)
    return figure_png(fig)


def pr_curves_png(curves: Any, particles: Any, title: str = "precision–recall") -> bytes:
    """The precision–recall curves of :func:`tomopick.evaluation.pr_curve` (one per class) as PNG bytes."""
    from tomopick.evaluation import pr_figure

    return figure_png(pr_figure(curves, particles, title=title))
