"""``tomopick search BASE.yaml --out DIR``: Bayesian search over training recipes (Optuna TPE + pruning)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tomopick.cli.batch import ClusterConfigOption, ClusterOption, SchedulerOption


def search(
    config: Path = typer.Argument(..., help="Base training config YAML: data (with validation runs), particles, "
                                            "epochs, steps_per_epoch, max_minutes per trial."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (trials.csv, trials.png, best.yaml, trials/)."),
    trials: int = typer.Option(20, "--trials", "-n", help="Finished trials the study should hold (counting earlier "
                                                          "runs of the same study)."),
    minutes: Optional[float] = typer.Option(None, "--minutes", help="Wall-clock budget of this run."),
    storage: Optional[str] = typer.Option(None, "--storage", help="Optuna storage URL (default "
                                                                  "sqlite:///OUT/search.db); rerun to continue."),
    study: Optional[str] = typer.Option(None, "--study", help="Study name (default: the config's name)."),
    pruner: str = typer.Option("median", "--pruner", help="median | hyperband | none."),
    space: Optional[Path] = typer.Option(None, "--space", help="YAML with search-space ranges (docs/search.md)."),
    seed: int = typer.Option(0, "--seed", help="Sampler seed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Delete this study and its outputs; start anew."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only the final table."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Run trials in parallel on a local Dask cluster of N worker "
                                               "processes (the machine's cores shared among them)."),
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
) -> None:
    """Search network family and size, loss, labels, patch size, learning rate and augmentation for the best
    validation CZII F-beta; writes the best recipe as a ready `tomopick train` YAML."""
    from tomopick.cli.batch import batch_asked, batch_options
    from tomopick.configfile import read_yaml_mapping
    from tomopick.workflows.search import format_table, search as run_search

    batch = (batch_options(workers, scheduler, cluster, cluster_config, None)
             if batch_asked(workers, scheduler, cluster, cluster_config, None) else None)
    space_raw = read_yaml_mapping(space, missing="search space not found") if space is not None else None
    result = run_search(config, out, trials=trials, minutes=minutes, storage=storage, study_name=study,
                        pruner=pruner, seed=seed, space=space_raw, overwrite=overwrite,
                        log=None if quiet else typer.echo, batch=batch)
    typer.echo(format_table(result.table))
    typer.echo(f"{result.n_complete} complete, {result.n_pruned} pruned, {result.n_failed} failed trials in study "
               f"{result.study_name!r} ({result.storage})")
    if result.best_config is not None:
        typer.echo(f"best: trial {result.best_number}, validation F-beta {result.best_value:.4f}; recipe "
                   f"{result.best_config} (tomopick train {result.best_config})")
    else:
        typer.echo("no trial completed yet")


def register(app: typer.Typer) -> None:
    app.command("search")(search)
