"""The batch path of ``tomopick pick`` and ``tomopick match`` (``--workers N | --scheduler ADDRESS | --cluster
slurm``): parse the batch options, call :mod:`tomopick.workflows.batch`, draw one bar over runs, print (docs/batch.md).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from tomopick.errors import TomopickError

#: The cluster options every command that runs on Dask shares (pick, match, search): one declaration, one help.
SchedulerOption = Annotated[Optional[str], typer.Option(
    "--scheduler", help="Run on a running Dask scheduler (tcp://host:8786); its workers must see the inputs and "
                        "the outputs.")]
ClusterOption = Annotated[Optional[str], typer.Option("--cluster", help="Run on: local | slurm (dask-jobqueue).")]
ClusterConfigOption = Annotated[Optional[Path], typer.Option(
    "--cluster-config", help="YAML for --cluster slurm: queue, walltime, memory, cores, gpus, processes, jobs "
                             "(docs/batch.md).")]


def batch_asked(workers: int | None, scheduler: str | None, cluster: str | None, cluster_config: Path | None,
                retries: int | None) -> bool:
    """Whether any batch option was given (else the command runs its plain loop, as always)."""
    return any(v is not None for v in (workers, scheduler, cluster, cluster_config, retries))


def batch_options(workers: int | None, scheduler: str | None, cluster: str | None, cluster_config: Path | None,
                  retries: int | None) -> Any:
    """The :class:`~tomopick.workflows.batch.BatchOptions` of the CLI options, checked (one-line errors)."""
    from tomopick.workflows.batch import BatchOptions, load_cluster_config

    if cluster not in (None, "local", "slurm"):
        raise TomopickError(f"--cluster {cluster!r}: expected local or slurm")
    if cluster_config is not None and cluster != "slurm":
        raise TomopickError("--cluster-config is for --cluster slurm")
    config = load_cluster_config(cluster_config) if cluster_config is not None else None
    return BatchOptions.make(workers=workers, scheduler=scheduler, cluster=cluster or "local",
                             cluster_config=config, retries=retries or 0)


def pick_lines(summary: dict[str, Any]) -> list[str]:
    """``tomopick pick``'s lines for one run: per class the picks kept and the threshold, then the counts."""
    from tomopick.workflows.pick import describe_thresholds

    counts = ", ".join(f"{k} {v}" for k, v in (summary.get("counts") or {}).items()) or "no classes"
    note = f" ({summary['note']})" if summary.get("note") else ""
    again = " (resumed)" if summary.get("resumed") else ""
    return [*describe_thresholds(summary),
            f"{summary['run'] or summary.get('input')}: {counts}; {summary.get('seconds', 0):.1f} s{note}{again}"]


def run_with_bar(call: Callable[..., Any], quiet: bool,
                 lines: Callable[[dict[str, Any]], list[str]] = pick_lines) -> Any:
    """Run ``call(progress=…, log=…)`` with one tqdm bar over runs on stderr; print each run's ``lines``, the
    outputs, and the failed runs (then exit with status 1)."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if quiet:
            return
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(total=total, initial=done, desc="runs", unit="run", file=sys.stderr)
        bar.update(done - bar.n)

    def log(line: str) -> None:
        if bar is not None:
            bar.write(line, file=sys.stderr)
        else:
            typer.echo(line, err=True)

    try:
        report = call(progress=progress, log=log)
    finally:
        if bar is not None:
            bar.close()
    for summary in report.runs:
        for line in lines(summary):
            typer.echo(line)
    if report.outputs:
        typer.echo(f"{len(report.picks)} picks of {len(report.runs)} runs written to {', '.join(report.outputs)}")
    if report.errors:
        typer.echo(f"{len(report.errors)} run{'s' if len(report.errors) > 1 else ''} failed:", err=True)
        for error in report.errors:
            typer.echo(f"  {error}", err=True)
        typer.echo(f"finished runs are kept in {report.work_folder}; rerun the same command to retry the failed "
                   "ones", err=True)
        raise typer.Exit(1)
    return report


def pick_batch(inputs: list[str], model: Any, *, options: Any, out: str, save_scores: Path | None,
               overwrite: bool, picks_format: str | None, quiet: bool, workers: int | None, scheduler: str | None,
               cluster: str | None, cluster_config: Path | None, retries: int | None) -> None:
    """``tomopick pick … --workers/--scheduler/--cluster``."""
    from tomopick.workflows.batch import run_batch

    batch = batch_options(workers, scheduler, cluster, cluster_config, retries)
    run_with_bar(lambda **kw: run_batch(inputs, model, options=options, batch=batch, out=out,
                                        save_scores=save_scores, overwrite=overwrite, picks_format=picks_format,
                                        **kw), quiet)


def match_batch(inputs: list[str], template: str, *, particle: str, options: Any, out: str, radius_A: float | None,
                template_voxel_size_A: float | None, overwrite: bool, picks_format: str | None, quiet: bool,
                workers: int | None, scheduler: str | None, cluster: str | None, cluster_config: Path | None,
                retries: int | None) -> None:
    """``tomopick match … --workers/--scheduler/--cluster``."""
    from tomopick.workflows.batch import run_match_batch

    batch = batch_options(workers, scheduler, cluster, cluster_config, retries)
    run_with_bar(lambda **kw: run_match_batch(inputs, template, particle=particle, options=options,
                                              radius_A=radius_A, template_voxel_size_A=template_voxel_size_A,
                                              batch=batch, out=out, overwrite=overwrite, picks_format=picks_format,
                                              **kw), quiet, lines=match_lines)


def match_lines(summary: dict[str, Any]) -> list[str]:
    """``tomopick match``'s line for one run."""
    from tomopick.workflows.match import describe

    return [describe(summary) + (" (resumed)" if summary.get("resumed") else "")]
