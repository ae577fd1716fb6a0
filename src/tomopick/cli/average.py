"""``tomopick average TOMO --picks PICKS --particle NAME --out DIR``: half-map subtomogram averages and FSC, a check
of whether picks are real (no ground truth needed)."""

from __future__ import annotations

import sys
from typing import Optional

import typer

from tomopick.errors import TomopickError


def parse_tilt_range(text: str | None) -> tuple[float, float] | None:
    """``"-60,60"`` → ``(-60.0, 60.0)``."""
    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise TomopickError(f"--tilt-range {text!r}: expected MIN,MAX in degrees, e.g. -60,60") from None
    if len(values) != 2:
        raise TomopickError(f"--tilt-range {text!r}: expected MIN,MAX in degrees, e.g. -60,60")
    return (values[0], values[1])


def average(
    tomogram: str = typer.Argument(..., metavar="TOMO", help="Tomogram (MRC, OME-Zarr, …)."),
    picks: str = typer.Option(..., "--picks", "-p", help="Picks: file in any picks format, copick project or folder."),
    particle: str = typer.Option(..., "--particle", help="Class to average (its picks are used)."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder (summary.json, maps, fsc.png, STAR)."),
    reference: Optional[str] = typer.Option(None, "--reference", help="Starting map (MRC); default: the first "
                                                                      "average of the picks."),
    bin: Optional[int] = typer.Option(None, "--bin", help="Bin the tomogram by N before extraction (default 1)."),
    box: Optional[int] = typer.Option(None, "--box", help="Box edge in binned voxels (default from the radius)."),
    angular_step: Optional[float] = typer.Option(None, "--angular-step", help="Final angular step in degrees "
                                                                              "(default 12)."),
    tilt_range: Optional[str] = typer.Option(None, "--tilt-range", help="Tilt range MIN,MAX in degrees (missing "
                                                                        "wedge; default -60,60)."),
    iterations: Optional[int] = typer.Option(None, "--iterations", help="Alignment rounds (default 3)."),
    max_shift: Optional[float] = typer.Option(None, "--max-shift", help="Largest shift searched per axis, Å "
                                                                        "(default half the radius)."),
    symmetry: Optional[str] = typer.Option(None, "--symmetry", help="Point group: C1 (default), Cn, Dn, T, O, I."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Particle radius in Å (default: from the "
                                                                  "particle set)."),
    particles: str = typer.Option("czii", "--particles", help="Particle set: built-in name or YAML file."),
    run: Optional[str] = typer.Option(None, "--run", help="Use the picks of this run."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the tomogram's voxel size (Å)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu (default), cuda or cuda:N."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch CPU threads."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Seed of the half-set split (default 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing output folder."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress lines."),
) -> None:
    """Align and average the picks of one class in two independent half-sets; report the half-map FSC resolution.

    A quick validation at the tomogram's resolution, not a refinement (RELION 5 / Warp / M do that): true picks
    average into half maps that agree to a fine resolution, junk does not. Each pick gets an alignment score; the
    automatic cut (summary.json) separates junk. particles.star continues in RELION 5 (or convert it to Warp /
    Dynamo with tomopick convert).
    """
    from tomopick.averaging.options import AverageOptions

    options = AverageOptions.build(box=box, bin=bin, angular_step_deg=angular_step,
                                   tilt_range_deg=parse_tilt_range(tilt_range), iterations=iterations,
                                   max_shift_A=max_shift, symmetry=symmetry, device=device, threads=threads, seed=seed)
    from tomopick.workflows.average import average as run_average

    def progress(done: int, total: int) -> None:
        if not quiet:
            print(f"round {done}/{total}", file=sys.stderr, flush=True)

    report = run_average(tomogram, picks, particle, out, reference=reference, options=options, particles=particles,
                         radius_A=radius, voxel_size_A=voxel_size, run=run, overwrite=overwrite, progress=progress)
    s = report.summary
    res = s["resolution_A"]
    res_text = f"{res:.1f} Å" if res is not None else f"never below 0.143 (at least Nyquist, {s['nyquist_A']:.1f} Å)"
    cut = s["cut"]
    cut_res = cut["resolution_A"]
    thr = cut["threshold"]
    typer.echo(f"{s['particle']}: {s['n_particles']} picks (halves {s['halves'][0]} + {s['halves'][1]}), "
               f"FSC-0.143 resolution {res_text}, mean score {s['mean_score']:.3f}")
    typer.echo(f"automatic cut ({cut['rule']}): score >= {thr:.3f} keeps {cut['n_kept']} of {cut['n_total']}"
               + (f", resolution {cut_res:.1f} Å" if cut_res is not None else "")
               if thr is not None else f"automatic cut ({cut['rule']}): none, all {cut['n_total']} kept")
    typer.echo(f"written to {report.out}")


def register(app: typer.Typer) -> None:
    app.command("average")(average)
