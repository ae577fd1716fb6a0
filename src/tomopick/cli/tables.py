"""Printing helpers shared by the commands: number cells and the per-class evaluation table."""

from __future__ import annotations

import math


def fmt_num(v: object, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, NaN as "–", ±inf spelled out; anything else as ``str``."""
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        if math.isinf(v):
            return "-inf" if v < 0 else "inf"
        return f"{v:.{digits}f}"
    return str(v)


def result_table(res, title: str | None = None):
    """A rich table of an :class:`~tomopick.evaluation.EvaluationResult`, one row per particle class."""
    from rich.table import Table

    dist = f"{res.distance_A:g} Å" if res.distance_A is not None else f"{res.distance_factor:g} × radius"
    table = Table(title=title or f"{res.metric}: β = {res.beta:g}, matching distance {dist}, {len(res.runs)} run(s)")
    cols = ["particle", "weight", "n_truth", "n_picks", "tp", "fp", "fn", "precision", "recall", "fbeta",
            "rmse_A"]
    for c in cols:
        table.add_column(c, justify="left" if c == "particle" else "right", no_wrap=True)
    for _, row in res.table.iterrows():
        name = row["particle"] + ("" if row["scored"] else " (not in truth)")
        table.add_row(name, *(fmt_num(row[c]) if c != "weight" else f"{row[c]:g}" for c in cols[1:]))
    return table
