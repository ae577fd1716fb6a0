"""``tomopick match TOMO... --template MAP.mrc --particle NAME --out picks.star``: template matching."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tomopick.cli.batch import ClusterConfigOption, ClusterOption, SchedulerOption
from tomopick.errors import TomopickError


def parse_range(text: str | None, option: str) -> tuple[float, float] | None:
    """``"-60,60"`` → ``(-60.0, 60.0)``; ``"none"`` → ``None`` (no wedge)."""
    if text is None or text.strip().lower() in ("none", "off", ""):
        return None
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise TomopickError(f"{option} {text!r}: expected MIN,MAX in degrees (e.g. -60,60) or none") from None
    if len(values) != 2:
        raise TomopickError(f"{option} {text!r}: expected MIN,MAX in degrees (e.g. -60,60) or none")
    return values[0], values[1]


def rotation_progress(quiet: bool):
    """One bar over rotations × tiles per run (see :func:`tomopick.cli.pick.run_progress`)."""
    from tomopick.cli.pick import run_progress

    return run_progress(quiet, "rotation×tile")


def match(
    inputs: List[str] = typer.Argument(..., metavar="TOMO...", help="Tomograms: MRC, OME-Zarr or copick://…"),
    template: str = typer.Option(..., "--template", help="Template map (MRC; density, protein bright)."),
    particle: str = typer.Option(..., "--particle", help="Class name of the picks (a CZII class sets the radius)."),
    out: str = typer.Option(..., "--out", "-o", help="Picks file (any picks format), a folder (end with /) or "
                                                     "copick://project."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Particle radius in Å (default: the CZII "
                                                                  "class's)."),
    step: float = typer.Option(12.0, "--step", help="Angular step in degrees (covering radius of the rotation set)."),
    search: str = typer.Option("auto", "--search",
                               help="auto | exhaustive | coarse-to-fine: an FFT search at --coarse-step, then the "
                                    "fine rotations and ±2 voxels at the candidates (auto: coarse-to-fine when "
                                    "--step is finer than --coarse-step)."),
    coarse_step: float = typer.Option(30.0, "--coarse-step", help="Angular step of the coarse FFT search (degrees)."),
    symmetry: str = typer.Option("C1", "--symmetry", help="Template point group: C1, Cn, Dn, T, O or I."),
    tilt_range: Optional[str] = typer.Option("-60,60", "--tilt-range",
                                             help="Tilt range MIN,MAX in degrees about y (missing wedge), or none."),
    defocus: Optional[float] = typer.Option(None, "--defocus", help="Defocus in µm (underfocus > 0): weight the "
                                                                    "template by the CTF. Default: no CTF."),
    voltage: float = typer.Option(300.0, "--voltage", help="Acceleration voltage (kV) for the CTF."),
    cs: float = typer.Option(2.7, "--cs", help="Spherical aberration (mm) for the CTF."),
    amplitude_contrast: float = typer.Option(0.07, "--amplitude-contrast", help="Amplitude contrast for the CTF."),
    ctf_corrected: bool = typer.Option(True, "--ctf-corrected/--no-ctf-corrected",
                                       help="The tomogram was CTF-corrected (template gets |CTF|)."),
    whiten: bool = typer.Option(True, "--whiten/--no-whiten", help="Whiten by the tomogram's radial spectrum."),
    bin_factor: int = typer.Option(1, "--bin", help="Match on a grid this many times coarser (e.g. 2: 10 → 20 Å)."),
    invert: Optional[bool] = typer.Option(None, "--invert/--no-invert",
                                          help="Negate the template (default: yes, maps are bright and tomograms "
                                               "dark)."),
    false_alarms: float = typer.Option(1.0, "--false-alarms",
                                       help="Expected false picks per tomogram of the automatic threshold."),
    gap: bool = typer.Option(True, "--gap/--no-gap",
                             help="Raise the automatic threshold to a clear gap between look-alikes and the "
                                  "particle among the peaks above it."),
    threshold: Optional[float] = typer.Option(None, "--threshold", "-t",
                                              help="Fixed score threshold (correlation) instead of the automatic."),
    distance: float = typer.Option(1.0, "--distance", help="Minimum pick spacing as a fraction of the radius."),
    mask: Optional[str] = typer.Option(None, "--mask", help="Search only where this volume is non-zero (same grid "
                                                            "as the tomogram)."),
    mask_from_model: bool = typer.Option(False, "--mask-from-model",
                                         help="Search only where the bundled network sees any particle."),
    mask_model: Optional[str] = typer.Option(None, "--mask-model",
                                             help="The network of --mask-from-model (implies it): a checkpoint or "
                                                  "a bundled name, e.g. generalist-10A (any particle)."),
    mask_radius: Optional[float] = typer.Option(None, "--mask-radius",
                                                help="Radius (Å) of the normalisation mask (default: the template's "
                                                     "extent)."),
    lowpass: Optional[float] = typer.Option(None, "--lowpass", help="Low-pass the template at this resolution (Å)."),
    tile_voxels: int = typer.Option(1 << 24, "--tile-voxels", help="Largest FFT tile (voxels; memory bound)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the inputs' voxel size (Å)."),
    template_voxel_size: Optional[float] = typer.Option(None, "--template-voxel-size",
                                                        help="Override the template's voxel size (Å)."),
    picks_format: Optional[str] = typer.Option(None, "--format", help="Picks format (default: from --out)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Batch on a local Dask cluster of N worker processes; resumable: "
                                               "rerun the same command after a crash (docs/batch.md)."),
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
    retries: Optional[int] = typer.Option(None, "--retries", min=0, max=100,
                                          help="Batch: extra attempts for a run that fails (default 0)."),
) -> None:
    """Template matching: FFT cross-correlation over a uniform rotation set, locally normalised, with wedge, CTF and
    whitening; picks above a false-alarm threshold with their best orientation."""
    from tomopick.match.options import MatchOptions

    tilt = parse_range(tilt_range, "--tilt-range")
    options = MatchOptions.make(step_deg=step, search=search, coarse_step_deg=coarse_step, symmetry=symmetry,
                                tilt_range_deg=tilt,
                                defocus_A=None if defocus is None else defocus * 1e4, voltage_kV=voltage, cs_mm=cs,
                                amplitude_contrast=amplitude_contrast, ctf_corrected=ctf_corrected, whiten=whiten,
                                bin=bin_factor, voxel_size_A=voxel_size, invert=invert, false_alarms=false_alarms,
                                threshold=threshold, gap=gap, distance_factor=distance, tile_voxels=tile_voxels,
                                device=device, mask_radius_A=mask_radius, lowpass_A=lowpass, threads=threads)
    if tilt is None:  # --tilt-range none: no wedge (make() reads None as "the default")
        options = options.model_copy(update={"tilt_range_deg": None})
    from tomopick.cli.batch import batch_asked, match_batch

    if batch_asked(workers, scheduler, cluster, cluster_config, retries):
        if mask is not None or mask_from_model or mask_model is not None:
            raise TomopickError("--mask/--mask-from-model/--mask-model: not available with "
                                "--workers/--scheduler/--cluster yet")
        match_batch(inputs, template, particle=particle, options=options, out=out, radius_A=radius,
                    template_voxel_size_A=template_voxel_size, overwrite=overwrite, picks_format=picks_format,
                    quiet=quiet, workers=workers, scheduler=scheduler, cluster=cluster,
                    cluster_config=cluster_config, retries=retries)
        return
    from tomopick.workflows.match import match as run_match

    lines: list[str] = []
    with rotation_progress(quiet) as progress:
        report = run_match(inputs, template, particle=particle, options=options, out=out, radius_A=radius,
                           template_voxel_size_A=template_voxel_size, mask=mask, mask_from_model=mask_from_model,
                           mask_model=mask_model, overwrite=overwrite, picks_format=picks_format,
                           progress=progress, log=lines.append)
    for line in lines:
        typer.echo(line)
    typer.echo(f"{len(report.picks)} picks written to {', '.join(report.outputs)}")


def register(app: typer.Typer) -> None:
    app.command("match")(match)
