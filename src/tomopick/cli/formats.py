"""``tomopick particles``, ``tomopick convert`` and ``tomopick info`` (thin: parse, call the workflow, print)."""

from __future__ import annotations

import json
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table


def particles(
    preset: str = typer.Argument("czii", help="Built-in set name or a YAML file describing one."),
) -> None:
    """List a particle set: names, radii (Å), CZII scoring weights and labels."""
    from tomopick.data import PRESETS, get_particle_set

    pset = get_particle_set(preset)
    table = Table(title=f"particle set {pset.name!r}" + (" (built-in)" if pset.name in PRESETS else ""))
    for col in ("label", "name", "radius_A", "weight", "pdb_id", "template"):
        table.add_column(col)
    for p in pset:
        table.add_row(str(p.label), p.name, f"{p.radius_A:g}", f"{p.weight:g}", p.pdb_id or "", p.template_path or "")
    Console().print(table)
    typer.echo(f"built-in sets: {', '.join(PRESETS)}")


_VOXEL = typer.Option(None, "--voxel-size", help="Pixel size in Å (pixel formats; overrides a tomogram header).")
_PARTICLE = typer.Option(None, "--particle", help="Class name for every pick (formats without classes).")
_PARTICLES = typer.Option(None, "--particles",
                          help="Particle set (built-in name or YAML): maps class numbers to names, checks names.")
_RUN = typer.Option(None, "--run", help="Run / tomogram name (formats without one; copick target run).")
_SHAPE = typer.Option(None, "--tomo-shape", help="Tomogram size Z,Y,X in voxels (RELION 5; outside-volume check).")
_TOMO = typer.Option(None, "--tomogram", help="Tomogram file giving shape and voxel size (RELION 5; checks).")
_LEVEL = typer.Option(0, "--level", help="OME-Zarr / copick pyramid level to read (0 = full resolution).")


def _warn(lines: list[str]) -> None:
    for line in lines:
        typer.echo(f"warning: {line}", err=True)


def convert(
    src: str = typer.Argument(..., metavar="IN", help="Input file, folder (.zarr) or copick:// URI."),
    dst: str = typer.Argument(..., metavar="OUT", help="Output file, folder (.zarr) or copick:// URI."),
    format_in: Optional[str] = typer.Option(None, "--format-in", help="Input format name (default: from IN)."),
    format_out: Optional[str] = typer.Option(None, "--format-out", help="Output format name (default: from OUT)."),
    voxel_size: Optional[float] = _VOXEL,
    particle: Optional[str] = _PARTICLE,
    particles_: Optional[str] = _PARTICLES,
    run: Optional[str] = _RUN,
    tomo_shape: Optional[str] = _SHAPE,
    tomogram: Optional[str] = _TOMO,
    level: int = _LEVEL,
    levels: int = typer.Option(3, "--levels", help="Pyramid levels when writing OME-Zarr / copick tomograms."),
    user: Optional[str] = typer.Option(None, "--user", help="copick user_id for written picks."),
    session: Optional[str] = typer.Option(None, "--session", help="copick session_id for written picks."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace OUT if it exists."),
) -> None:
    """Convert a tomogram or picks between formats (run `tomopick convert --help`; formats in docs/formats.md)."""
    from tomopick.workflows.convert import convert as run_convert

    res = run_convert(src, dst, format_in=format_in, format_out=format_out, overwrite=overwrite,
                      voxel_size_A=voxel_size, particle=particle, particles=particles_, run=run,
                      tomogram_shape_zyx=tomo_shape, tomogram=tomogram, level=level, levels=levels,
                      user_id=user, session_id=session)
    _warn(res.warnings)
    if res.kind == "tomogram":
        z, y, x = res.shape or (0, 0, 0)
        typer.echo(f"wrote {res.output} ({res.format_in} -> {res.format_out}, tomogram {z}x{y}x{x})")
    else:
        counts = ", ".join(f"{k} {v}" for k, v in res.counts.items()) or "none"
        typer.echo(f"wrote {res.output} ({res.format_in} -> {res.format_out}, {res.n_picks} picks: {counts})")


def info(
    path: str = typer.Argument(..., metavar="FILE", help="Tomogram or picks: file, .zarr folder or copick:// URI."),
    format: Optional[str] = typer.Option(None, "--format", help="Format name (default: from FILE)."),
    voxel_size: Optional[float] = _VOXEL,
    particle: Optional[str] = _PARTICLE,
    particles_: Optional[str] = _PARTICLES,
    run: Optional[str] = _RUN,
    tomo_shape: Optional[str] = _SHAPE,
    tomogram: Optional[str] = _TOMO,
    level: int = _LEVEL,
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Describe a tomogram (shape, voxel size, dtype, value statistics) or picks (counts per particle)."""
    from tomopick.workflows.convert import info as run_info

    rep = run_info(path, format=format, voxel_size_A=voxel_size, level=level, particle=particle,
                   particles=particles_, run=run, tomogram_shape_zyx=tomo_shape, tomogram=tomogram)
    if as_json:
        typer.echo(json.dumps(rep, indent=2, default=str))
        _warn(rep["warnings"])
        return
    typer.echo(f"{rep['path']}: {rep['kind']} ({rep['format']})")
    if rep["kind"] == "tomogram":
        z, y, x = rep["shape_zyx"]
        vz, vy, vx = rep["voxel_size_A"]
        s = rep["stats"]
        mib = rep["size_bytes"] / 2**20
        typer.echo(f"  shape (z, y, x): {z} x {y} x {x}   dtype: {rep['dtype']}   size: {mib:.1f} MiB")
        typer.echo(f"  voxel size (z, y, x): {vz:.6g} x {vy:.6g} x {vx:.6g} Å")
        if "n_levels" in rep:
            lv_text = ", ".join("{}: {:.4g} Å".format(lv["path"], lv["voxel_size_A"][-1]) for lv in rep["levels"])
            typer.echo(f"  pyramid: level {rep['level']} of {rep['n_levels']} ({lv_text})")
        typer.echo(f"  values: min {s['min']:.6g}  max {s['max']:.6g}  mean {s['mean']:.6g}  std {s['std']:.6g}  "
                   f"NaN {s['n_nan']}  Inf {s['n_inf']}")
    else:
        typer.echo(f"  picks: {rep['n_picks']}   runs: {', '.join(rep['runs']) or '-'}   "
                   f"scores: {'yes' if rep['has_scores'] else 'no'}   "
                   f"orientations: {'yes' if rep['has_rotations'] else 'no'}")
        for name, count in rep["counts"].items():
            typer.echo(f"    {name:<24} {count}")
        if rep["min_A_xyz"] is not None:
            lo = ", ".join(f"{v:.1f}" for v in rep["min_A_xyz"])
            hi = ", ".join(f"{v:.1f}" for v in rep["max_A_xyz"])
            typer.echo(f"  extent (x, y, z) Å: [{lo}] .. [{hi}]")
    _warn(rep["warnings"])


def register(app: typer.Typer) -> None:
    app.command("particles")(particles)
    app.command("convert")(convert)
    app.command("info")(info)
