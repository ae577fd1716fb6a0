"""``tomopick calibrate INPUT... --truth T --out M2.pt``: choose a model's per-class thresholds on annotated
tomograms and write a checkpoint copy that ``tomopick pick`` uses them from."""

from __future__ import annotations

import sys
from typing import List, Optional

import typer

from tomopick.cli.tables import fmt_num


def calibration_table(result):
    """A rich table of a :class:`~tomopick.workflows.calibrate.CalibrationResult`, one row per model class."""
    from rich.table import Table

    table = Table(title=f"thresholds chosen on {len(result.runs)} run(s): {', '.join(result.runs)}")
    cols = ["class", "threshold", "fbeta", "n_truth", "n_picks", "tp", "fp", "fn"]
    for c in cols:
        table.add_column(c, justify="left" if c == "class" else "right", no_wrap=True)
    rows = {}
    if result.at_thresholds is not None:
        rows = {str(r["particle"]): r for _, r in result.at_thresholds.iterrows() if bool(r["scored"])}
    for name, value in result.thresholds.items():
        row = rows.get(name)
        counts = [fmt_num(row[c]) for c in cols[2:]] if row is not None else ["–"] * (len(cols) - 2)
        note = "" if name in result.calibrated else " (not in truth)"
        table.add_row(name + note, f"{value:.4f}", *counts)
    return table


def calibrate(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Annotated tomograms: MRC, OME-Zarr, or copick://project[?run=…]."),
    truth: str = typer.Option(..., "--truth", "-t", help="Ground truth: pick file, copick project/URI or folder."),
    out: str = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt): the model with the new thresholds."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Checkpoint (.pt) to calibrate. Default: the bundled czii-10A model."),
    truth_user: Optional[str] = typer.Option(None, "--truth-user", help="copick user_id of the truth (e.g. curation)."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Only these runs, comma-separated."),
    beta: float = typer.Option(4.0, "--beta", help="F-beta β maximised per class (CZII: 4)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (mixed precision on GPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads (default: one per physical core)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Choose per-class score thresholds on your annotated tomograms and store them in a copy of the model.

    Every input is picked (peaks scoring >= 0.05) and matched to the truth with the CZII rules.

    Per class, the lowest threshold whose F-beta is within 0.02 of the best is stored, as `tomopick train`
    stores it.

    `tomopick pick --model OUT` then uses these thresholds by default.
    """
    from rich.console import Console

    from tomopick.cli.pick import window_progress
    from tomopick.workflows.calibrate import calibrate as run_calibrate

    with window_progress(quiet) as progress:
        result = run_calibrate(inputs, truth, model=model, out=out, truth_user=truth_user, runs=runs, beta=beta,
                               overwrite=overwrite, threads=threads, device=device, progress=progress)
    console = Console() if sys.stdout.isatty() else Console(width=160)
    console.print(calibration_table(result))
    typer.echo(f"score (weighted F{beta:g}) at these thresholds: {fmt_num(result.score, 4)}")
    typer.echo(f"wrote {result.out}")


def register(app: typer.Typer) -> None:
    app.command("calibrate")(calibrate)
