"""``tomopick report --picks P [TOMOGRAM...] --out report.html``: one HTML page to judge picks by eye."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def report(
    tomograms: Optional[List[str]] = typer.Argument(
        None, metavar="[TOMOGRAM...]", help="Tomograms (MRC, OME-Zarr, copick://project?run=…; no run = all). "
                                            "Default: the runs' tomograms when --picks is a copick project."),
    picks: str = typer.Option(..., "--picks", "-p", help="Picks: pick file (any format), copick project/URI or "
                                                          "folder."),
    out: Path = typer.Option(..., "--out", "-o", help="The report, one self-contained .html file."),
    truth: Optional[str] = typer.Option(None, "--truth", "-t", help="Ground truth (adds TP/FP, missed particles, "
                                                                     "the CZII table and PR curves)."),
    truth_user: Optional[str] = typer.Option(None, "--truth-user", help="copick user_id of the truth (e.g. "
                                                                        "curation)."),
    picks_user: Optional[str] = typer.Option(None, "--picks-user", help="copick user_id of the picks."),
    model: Optional[str] = typer.Option(None, "--model", "-m", help="Checkpoint whose model card is shown "
                                                                    "('bundled' for czii-10A)."),
    particles: str = typer.Option("czii", "--particles", help="Particle set: built-in name or YAML file."),
    runs: Optional[str] = typer.Option(None, "--runs", help="Only these runs, comma-separated."),
    slabs: int = typer.Option(4, "--slabs", min=1, max=16, help="Slabs per tomogram (the central one first)."),
    slab_A: Optional[float] = typer.Option(None, "--slab-thickness", min=1.0, help="Slab thickness in Å (default: a "
                                                                          "particle diameter)."),
    gallery: int = typer.Option(6, "--gallery", min=1, max=32, help="Picks per gallery row."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the tomograms' voxel size (Å)."),
    segmentation: Optional[List[str]] = typer.Option(None, "--segmentation", help="Label volume on a tomogram's grid "
                                                     "(repeatable; matched by run name): its outlines are drawn."),
    title: str = typer.Option("tomopick picks", "--title", help="Page title."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing report."),
) -> None:
    """Write one self-contained HTML page (images inside, opens offline): slabs with the picks drawn, per-class
    score histograms, galleries and averages, and with --truth the CZII table and precision–recall curves."""
    from tomopick.viz.report import ReportOptions
    from tomopick.workflows.report import report as run_report
    from tomopick.workflows.reporting import command_line

    options = ReportOptions(n_slabs=slabs, slab_thickness_A=slab_A, gallery_size=gallery, title=title)
    outcome = run_report(picks, tomograms or [], out=out, truth=truth, truth_user=truth_user, picks_user=picks_user,
                         model=model, particles=particles, runs=[r for r in (runs or "").split(",") if r] or None,
                         options=options, command=command_line(), voxel_size_A=voxel_size, overwrite=overwrite,
                         segmentations=segmentation or ())
    typer.echo(f"report of {outcome.n_picks} picks in {len(outcome.runs)} run(s) written to {outcome.path} "
               f"({outcome.size_bytes / 1e6:.1f} MB, {outcome.seconds:.1f} s)")


def register(app: typer.Typer) -> None:
    app.command("report")(report)
