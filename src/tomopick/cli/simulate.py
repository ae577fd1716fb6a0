"""``tomopick simulate``: synthetic tomograms with ground truth (copick project or MRC + picks)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer


def _parse_counts(text: str | None) -> dict[str, int] | None:
    if not text:
        return None
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            from tomopick.errors import TomopickError

            raise TomopickError(f"bad --counts item {item!r}; expected name=N[,name=N…]")
        try:
            counts[name.strip()] = int(value)
        except ValueError:
            from tomopick.errors import TomopickError

            raise TomopickError(f"bad --counts value {value!r} for {name.strip()!r}; expected an integer") from None
    return counts


def simulate(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (copick project root, or MRC folder)."),
    n: int = typer.Option(8, "--n", help="Number of tomograms."),
    seed: int = typer.Option(0, "--seed", help="Dataset seed (each tomogram's own seed is recorded in its YAML)."),
    preset: str = typer.Option("czii", "--preset", "--particles", help="Particle set: built-in name or YAML file."),
    snr: Optional[float] = typer.Option(None, "--snr", help="Particle signal-to-noise ratio (default 3; "
                                                            "see docs/simulate.md)."),
    imaging: Optional[str] = typer.Option(None, "--imaging", help="fast (default: Fourier-space wedge + CTF + "
                                                                  "noise) or full (tilt series + CTF + noise + "
                                                                  "weighted back-projection)."),
    shape: Optional[tuple[int, int, int]] = typer.Option(None, "--shape", help="Volume size Z Y X in voxels "
                                                                                "(default 184 630 630)."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Voxel size in Å (default 10.012)."),
    fmt: str = typer.Option("copick", "--format", help="copick or mrc."),
    counts: Optional[str] = typer.Option(None, "--counts", help="Particles per class, e.g. ribosome=40,apo-ferritin=60 "
                                                               "(classes not named get none)."),
    source: Optional[str] = typer.Option(None, "--source", help="maps (bundled density maps) or procedural shapes."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML file with any SimulationConfig fields."),
    randomize: bool = typer.Option(False, "--randomize", help="Domain randomisation: draw every scene/imaging "
                                                                "parameter not given explicitly from wide ranges "
                                                                "(recorded per tomogram)."),
    preview: bool = typer.Option(False, "--preview", help="Write a PNG per tomogram: central x–y and x–z slices "
                                                          "with the ground truth overlaid."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Simulate tomograms of particles in ice with known positions and orientations.

    Writes the tomogram, ground-truth picks (with orientations), class and instance label volumes, per-class
    masks and a YAML with every parameter and seed.
    """
    from tomopick.configfile import read_yaml_mapping
    from tomopick.workflows.simulate import simulate_dataset

    extra: dict = {}
    if config is not None:
        extra.update(read_yaml_mapping(config, not_mapping="expected a mapping of SimulationConfig fields",
                                       empty_ok=True))
    if shape is not None:
        extra["shape_zyx"] = tuple(shape)
    if voxel_size is not None:
        extra["voxel_size_A"] = voxel_size
    parsed = _parse_counts(counts)
    if parsed is not None:
        extra["counts"] = parsed
    if source is not None:
        extra["particle_source"] = source
    if randomize:
        extra["randomize"] = True
    extra.setdefault("particles", preset)
    preset_name = extra.pop("particles")
    from_file_imaging = extra.pop("imaging", None)
    imaging_mode = imaging or from_file_imaging or "fast"
    from_file_snr = extra.pop("snr", None)
    snr_value = snr if snr is not None else from_file_snr
    summary = simulate_dataset(out, n=n, seed=seed, preset=preset_name, imaging=imaging_mode, snr=snr_value,
                               fmt=fmt, overwrite=overwrite, progress=progress, preview=preview, **extra)
    total = sum(sum(c.values()) for c in summary.counts)
    typer.echo(f"wrote {len(summary.runs)} tomogram(s) with {total} particles to {summary.out} ({summary.fmt})")
    for run, c, sec in zip(summary.runs, summary.counts, summary.seconds):
        per = ", ".join(f"{k} {v}" for k, v in c.items()) or "no particles"
        typer.echo(f"  {run}: {per}  [{sec:.1f} s]")
    for warning in summary.warnings:
        typer.echo(f"warning: {warning}", err=True)
    for png in summary.previews:
        typer.echo(f"  preview: {png}")


def register(app: typer.Typer) -> None:
    app.command("simulate")(simulate)
