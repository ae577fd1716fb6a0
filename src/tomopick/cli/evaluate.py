"""``tomopick evaluate``: score picks against ground truth (CZII metric, F-beta, Hungarian), print a table."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from tomopick.cli.tables import fmt_num, result_table


def evaluate(
    truth: str = typer.Option(..., "--truth", "-t", help="Ground truth: pick file, copick project/URI or folder."),
    picks: str = typer.Option(..., "--picks", "-p", help="Picks to score: pick file, copick project/URI or folder."),
    metric: str = typer.Option("czii", "--metric", "-m",
                               help="czii (Kaggle CZII score), hungarian (one-to-one, β=4) or f1 (one-to-one, β=1)."),
    beta: Optional[float] = typer.Option(None, "--beta", help="F-beta β (default 4 for czii/hungarian, 1 for f1)."),
    distance_factor: Optional[float] = typer.Option(
        None, "--distance-factor", help="Matching distance as a fraction of the particle radius (default 0.5)."),
    distance_A: Optional[float] = typer.Option(None, "--distance-A", help="Matching distance in Å for every class."),
    particles: str = typer.Option("czii", "--particles", help="Particle set: built-in name or YAML file."),
    sweep: bool = typer.Option(False, "--sweep", help="Also report the best score threshold per class (the picks "
                                                      "need scores)."),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON instead of tables."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write report.html (the picking report, "
                                                                 "docs/report.md), report.md, evaluation.json and "
                                                                 "PR curves (PNG, CSV) into this folder."),
    tomograms: Optional[List[str]] = typer.Option(None, "--tomogram",
                                                  help="Tomogram shown in report.html (repeatable; matched to runs "
                                                       "by name). Default: the runs' tomograms of a copick project."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report folder."),
    truth_user: Optional[str] = typer.Option(None, "--truth-user", help="copick user_id of the truth (e.g. curation)."),
    picks_user: Optional[str] = typer.Option(None, "--picks-user", help="copick user_id of the picks."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Only these runs, comma-separated (e.g. test runs)."),
    per_run: bool = typer.Option(False, "--per-run", help="Also print TP/FP/FN per run and class."),
) -> None:
    """Score picks against ground truth, per class and matched within each run.

    czii is the Kaggle "CZII CryoET Object Identification" score: a particle is found when a pick of its class
    lies within 0.5 × its radius, a duplicate is a false positive, F-beta (β=4) per class, weighted mean.
    """
    from rich.console import Console
    from rich.table import Table

    from tomopick.workflows.evaluate import evaluate as run_evaluate
    from tomopick.workflows.reporting import command_line

    outcome = run_evaluate(truth, picks, particles=particles, metric=metric, beta=beta,
                           distance_factor=distance_factor, distance_A=distance_A, sweep=sweep, report_dir=report,
                           overwrite=overwrite, truth_user=truth_user, picks_user=picks_user,
                           runs=[r for r in (runs or "").split(",") if r] or None, tomograms=tomograms or None,
                           command=command_line())
    if as_json:
        typer.echo(json.dumps(outcome.to_dict(), indent=2))
        return
    res = outcome.result
    console = Console() if sys.stdout.isatty() else Console(width=160)
    table = result_table(res)
    if per_run:
        pr = Table(title="per run")
        for c in res.per_run.columns:
            pr.add_column(c, justify="left" if c in ("run", "particle") else "right", no_wrap=True)
        for _, row in res.per_run.iterrows():
            pr.add_row(*(str(v) for v in row.tolist()))
        console.print(pr)
    console.print(table)
    typer.echo(f"score (weighted F{res.beta:g}): {fmt_num(res.score, 4)}    "
               f"unweighted mean: {fmt_num(res.mean_fbeta, 4)}")
    if res.ignored_runs:
        typer.echo(f"ignored {res.n_ignored} picks of runs absent from the truth: {', '.join(res.ignored_runs)}")
    if outcome.sweep is not None:
        sw = Table(title="best-case threshold per class (chosen on this truth: optimistic)")
        scols = ["particle", "threshold", "n_picks", "tp", "fp", "fn", "precision", "recall", "fbeta",
                 "average_precision"]
        for c in scols:
            sw.add_column(c, justify="left" if c == "particle" else "right", no_wrap=True)
        for _, row in outcome.sweep.table.iterrows():
            sw.add_row(row["particle"], *(fmt_num(row[c]) for c in scols[1:]))
        console.print(sw)
        typer.echo(f"score at the best thresholds: {fmt_num(outcome.sweep.score, 4)}")
    if outcome.report_dir is not None:
        typer.echo(f"report written to {outcome.report_dir}")


def register(app: typer.Typer) -> None:
    app.command("evaluate")(evaluate)
