"""``tomopick demo``: simulate → train → pick → evaluate on built-in data (what ``make demo`` runs)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("demo_out"), "--out", "-o", help="Output folder (data, model, picks, reports)."),
    n_train: int = typer.Option(3, "--n-train", min=1, help="Training tomograms (+1 validation, +1 test)."),
    shape: tuple[int, int, int] = typer.Option((96, 256, 256), "--shape", help="Tomogram size Z Y X in voxels."),
    imaging: str = typer.Option("fast", "--imaging", help="Simulator imaging model: fast or full."),
    epochs: int = typer.Option(8, "--epochs", min=1, help="Training epochs of the demo model."),
    steps: int = typer.Option(25, "--steps", min=1, help="Training steps per epoch."),
    seed: int = typer.Option(0, "--seed", help="Seed of the simulated data and of training."),
    no_bundled: bool = typer.Option(False, "--no-bundled", help="Do not pick with the bundled czii-10A model."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous demo folder."),
) -> None:
    """Run the main job end to end on simulated data: simulate, train, pick, evaluate (about a minute on 2 idle cores).

    Simulates a small CZII-like data set, trains a picker briefly, picks a held-out tomogram with it and with the
    bundled czii-10A model, and scores both with the CZII metric (F-beta, β = 4), printing per-class tables.
    """
    from rich.console import Console

    from tomopick.cli.tables import fmt_num, result_table
    from tomopick.workflows.demo import run_demo
    from tomopick.workflows.reporting import command_line

    if imaging not in ("fast", "full"):
        raise typer.BadParameter("must be 'fast' or 'full'", param_hint="--imaging")
    result = run_demo(out, n_train=n_train, shape_zyx=shape, imaging=imaging, epochs=epochs, steps_per_epoch=steps,
                      seed=seed, overwrite=overwrite, use_bundled=not no_bundled, log=typer.echo,
                      command=command_line())
    console = Console() if sys.stdout.isatty() else Console(width=160)
    for label, res in result.scores.items():
        console.print(result_table(res, title=f"{label} model on held-out run {', '.join(result.test_runs)}"))
        typer.echo(f"{label}: CZII score (weighted F4) = {fmt_num(res.score, 4)}\n")
    times = ", ".join(f"{k} {v:.0f} s" for k, v in result.timings_s.items())
    typer.echo(f"time: {times}; total {sum(result.timings_s.values()):.0f} s")
    typer.echo(f"everything is in {result.out_dir}/ (copick project data/, model/best.pt, picks_*.csv, report_*/)")
    if result.report_path is not None:
        typer.echo(f"open the picking report in a browser: {result.report_path.resolve()}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
