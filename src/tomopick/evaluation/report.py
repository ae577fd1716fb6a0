"""Human-readable summaries of an evaluation: a Markdown report and a precision–recall figure (no file I/O here;
:func:`tomopick.workflows.evaluate.evaluate` writes them)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from tomopick.data import ParticleSet
from tomopick.evaluation.curves import SweepResult, average_precision
from tomopick.evaluation.scores import EvaluationResult


def _fmt(v: Any, digits: int = 3) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}" if math.isfinite(v) else ("-inf" if v < 0 else "inf")
    return str(v)


def markdown_table(frame: pd.DataFrame, columns: list[str]) -> str:
    """A GitHub-style Markdown table of ``columns`` of ``frame``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(row[c]) for c in columns) + " |")
    return "\n".join(lines)


def settings_line(result: EvaluationResult) -> str:
    dist = (f"{result.distance_A:g} Å" if result.distance_A is not None
            else f"{result.distance_factor:g} × radius")
    return f"metric `{result.metric}`, β = {result.beta:g}, matching distance {dist}"


def markdown_report(result: EvaluationResult, sweep: SweepResult | None = None, *, title: str = "Evaluation",
                    sources: dict[str, str] | None = None, figure: str | None = None) -> str:
    """The evaluation as a Markdown document.

    Parameters
    ----------
    result
        From :func:`~tomopick.evaluation.evaluate`.
    sweep
        Optional :func:`~tomopick.evaluation.threshold_sweep` result (adds the best-threshold table).
    title
        First heading.
    sources
        Optional ``{"truth": path, "picks": path}`` shown under the title.
    figure
        Optional relative path of the PR-curve image to embed.
    """
    out = [f"# {title}", ""]
    for key, value in (sources or {}).items():
        out.append(f"- {key}: `{value}`")
    out += [f"- {settings_line(result)}", f"- runs: {', '.join(result.runs) or '–'}"]
    if result.ignored_runs:
        out.append(f"- ignored (runs absent from the truth): {result.n_ignored} picks in "
                   f"{', '.join(result.ignored_runs)}")
    out += ["", f"**Score (weighted F{result.beta:g}): {_fmt(result.score, 4)}**  ",
            f"unweighted mean F{result.beta:g}: {_fmt(result.mean_fbeta, 4)}", "", "## Per class", "",
            markdown_table(result.table, ["particle", "weight", "n_truth", "n_picks", "tp", "fp", "fn", "precision",
                                          "recall", "fbeta", "mean_distance_A", "rmse_A", "rmse_radius"]),
            "", "Localisation error (mean distance, RMSE) is over one-to-one matched pairs within the matching "
            "distance; `rmse_radius` is the RMSE as a fraction of the particle radius.", ""]
    if len(result.runs) > 1 and len(result.per_run):
        out += ["## Per run", "", markdown_table(result.per_run, list(result.per_run.columns)), ""]
    if sweep is not None:
        out += ["## Best-case thresholds (per class)", "",
                f"Score with every class at its best threshold: **{_fmt(sweep.score, 4)}** (optimistic: the "
                "thresholds were chosen on this ground truth).", "",
                markdown_table(sweep.table, ["particle", "threshold", "n_picks", "tp", "fp", "fn", "precision",
                                             "recall", "fbeta", "average_precision"]), ""]
    if figure:
        out += ["## Precision–recall", "", f"![precision-recall curves]({figure})", ""]
    return "\n".join(out)


def pr_figure(curves: pd.DataFrame, particles: ParticleSet, *, title: str = "precision–recall"):
    """A matplotlib :class:`~matplotlib.figure.Figure` with one PR curve per class (no pyplot state; save it
    with ``fig.savefig(path)``)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    for spec in particles:
        sub = curves[curves["particle"] == spec.name]
        if len(sub) == 0:
            continue
        ap = average_precision(sub["precision"].to_numpy(), sub["recall"].to_numpy())
        r = np.concatenate([[0.0], sub["recall"].to_numpy()])
        p = np.concatenate([[sub["precision"].iloc[0]], sub["precision"].to_numpy()])
        ax.step(r, p, where="post", color=spec.color, label=f"{spec.name} (AP {ap:.2f})")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig
