"""``tomopick pick … --workers N | --scheduler ADDRESS | --cluster slurm``: the batch path of ``tomopick pick``
(parse, call :func:`tomopick.workflows.batch.run_batch`, print; docs/batch.md)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from tomopick.errors import TomopickError


def pick_batch(inputs: list[str], model: Any, *, options: Any, out: str, save_scores: Path | None,
               overwrite: bool, picks_format: str | None, quiet: bool, workers: int | None, scheduler: str | None,
               cluster: str | None, cluster_config: Path | None, retries: int | None) -> None:
    """Run the batch, one progress bar over runs on stderr; print per-run lines, the error list, and exit 1 when
    any run failed (after its retries)."""
    from tomopick.workflows.batch import BatchOptions, load_cluster_config, run_batch

    if cluster_config is not None and cluster != "slurm":
        raise TomopickError("--cluster-config is for --cluster slurm")
    config = load_cluster_config(cluster_config) if cluster_config is not None else None
    if cluster not in (None, "local", "slurm"):
        raise TomopickError(f"--cluster {cluster!r}: expected local or slurm")
    batch = BatchOptions.make(workers=workers, scheduler=scheduler, cluster=cluster or "local",
                              cluster_config=config, retries=retries or 0)
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
        report = run_batch(inputs, model, options=options, batch=batch, out=out, save_scores=save_scores,
                           overwrite=overwrite, picks_format=picks_format, progress=progress, log=log)
    finally:
        if bar is not None:
            bar.close()
    from tomopick.workflows.pick import describe_thresholds

    for summary in report.runs:
        for line in describe_thresholds(summary):
            typer.echo(line)
    for summary in report.runs:
        counts = ", ".join(f"{k} {v}" for k, v in summary.get("counts", {}).items()) or "no classes"
        note = f" ({summary['note']})" if summary.get("note") else ""
        again = " (resumed)" if summary.get("resumed") else ""
        typer.echo(f"{summary['run'] or summary.get('input')}: {counts}; {summary.get('seconds', 0):.1f} s"
                   f"{note}{again}")
    if report.outputs:
        typer.echo(f"{len(report.picks)} picks of {len(report.runs)} runs written to {', '.join(report.outputs)}")
    if report.errors:
        typer.echo(f"{len(report.errors)} run{'s' if len(report.errors) > 1 else ''} failed:", err=True)
        for error in report.errors:
            typer.echo(f"  {error}", err=True)
        typer.echo(f"finished runs are kept in {report.work_folder}; rerun the same command to retry the failed "
                   "ones", err=True)
        raise typer.Exit(1)
