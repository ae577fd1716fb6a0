"""``tomopick train CONFIG.yaml``: train a picker from a YAML config (see ``configs/czii-10A.yaml``)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def train(
    config: Path = typer.Argument(..., help="Training config YAML (data, particles, target, network, recipe)."),
    out: Optional[Path] = typer.Option(None, "--out", "-o",
                                       help="Output folder (default: ./<config name without .yaml>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a previous run in the output folder."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run saved in the output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars or per-epoch lines."),
) -> None:
    """Train a 3D network on tomograms with picks (copick project, folder of MRC + picks, or simulate output).

    Writes best.pt (best validation CZII F-beta), last.pt, state.pt (for --resume), metrics.csv and config.yaml.
    """
    from tomopick.workflows.train import train as run_train

    out_dir = out if out is not None else Path(config.name.rsplit(".", 1)[0])
    result = run_train(config, out_dir, overwrite=overwrite, resume=resume, progress=not quiet,
                       log=None if quiet else typer.echo)
    score = "n/a" if result.best_score == float("-inf") else f"{result.best_score:.4f}"
    typer.echo(f"trained {result.epochs} epochs ({result.steps} steps, {result.time_s:.0f} s); best validation "
               f"score {score} at epoch {result.best_epoch}; model: {result.best_checkpoint}")


def register(app: typer.Typer) -> None:
    app.command("train")(train)
