"""``average()``: a tomogram + picks of one class → half-map subtomogram averages, FSC and per-pick scores (the verb
behind ``tomopick average``).

A quick check of whether picks are real: true copies of a complex average into a map whose two independent half maps
agree to a fine resolution; random positions and wrong-class picks do not. Every input is checked before any box is
cut; the output folder is written atomically (all files appear at once) and never replaces an existing one without
``overwrite``.

Outputs in ``out/``:

* ``summary.json`` — ``resolution_A`` (``null`` when the FSC never falls below 0.143), ``n_particles``, ``halves``,
  ``fsc`` curve, ``cut`` (automatic score threshold), resolution after the cut, rounds, options, geometry;
* ``average.mrc``, ``half_map_1.mrc``, ``half_map_2.mrc`` (unfiltered, voxel size in the header) and
  ``average_filtered.mrc`` (low-passed at the resolution found, when one was);
* ``fsc.png`` — the FSC curves (all picks, and the picks kept by the cut);
* ``particles.star`` — every pick (RELION 5 STAR: centred Å coordinates, refined by the shift found, RELION angles,
  alignment score as ``rlnAutopickFigureOfMerit``); ``particles_kept.star`` — those at or above the cut;
  ``particles.csv`` — per pick: original and refined position, half-set, score, kept, angles.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from tomopick.averaging import (
    AverageOptions, AverageResult, ScoreCut, automatic_score_cut, average_subtomograms, extract_subvolumes, fit_box,
    half_map_fsc,
)
from tomopick.averaging.fsc import apply_lowpass
from tomopick.averaging.refine import default_box
from tomopick.data import ParticleSet, Picks, Tomogram, get_particle_set
from tomopick.errors import TomopickError
from tomopick.io import atomic_output, check_output, read_tomogram, write_picks, write_tomogram
from tomopick.io.inputs import run_name
from tomopick.io.sources import load_picks
from tomopick.jsonable import to_jsonable

OUTPUT_FILES = ("summary.json", "average.mrc", "half_map_1.mrc", "half_map_2.mrc", "fsc.png", "particles.star",
                "particles_kept.star", "particles.csv")
MIN_PICKS = 4


@dataclass
class AverageReport:
    """What :func:`average` did: the stage result, the cut, the picks used and the summary written."""

    result: AverageResult
    cut: ScoreCut
    picks: Picks
    summary: dict[str, Any]
    out: Path
    timings_s: dict[str, float] = field(default_factory=dict)


def _particle_radius(particles: str | Path | ParticleSet, particle: str, radius_A: float | None) -> float:
    if radius_A is not None:
        if not np.isfinite(radius_A) or radius_A <= 0:
            raise TomopickError(f"--radius must be a positive number of Å, got {radius_A}")
        return float(radius_A)
    pset = particles if isinstance(particles, ParticleSet) else get_particle_set(particles)
    names = [p.name for p in pset.particles]
    if particle not in names:
        raise TomopickError(f"--particle {particle!r} is not in the particle set ({', '.join(names)}); pass "
                            "--radius (Å) or --particles FILE")
    return float(next(p.radius_A for p in pset.particles if p.name == particle))


def _select_picks(picks: Picks, particle: str, run: str | None, tomogram_path: str, source: str) -> Picks:
    classes = picks.particles
    if classes == [""]:  # a format without class names (e.g. a bare CSV): these are the picks of ``particle``
        picks = picks.with_columns(particle=particle)
    sel = picks.for_particle(particle)
    if not len(sel):
        listed = ", ".join(classes[:8]) or "none"
        raise TomopickError(f"no picks of class {particle!r} (classes in the file: {listed})", source)
    runs = [r for r in sel.runs if r]
    if run is not None:
        sel = sel.for_run(run)
        if not len(sel):
            raise TomopickError(f"no picks of class {particle!r} in run {run!r} (runs: {', '.join(runs)})", source)
    elif len(runs) > 1:
        own = run_name(tomogram_path)
        if own in runs:
            sel = sel.for_run(own)
        else:
            raise TomopickError(f"picks of {len(runs)} runs ({', '.join(runs[:6])}); pass --run to say which "
                                "belongs to this tomogram", source)
    return sel


def _read_reference(path: str | Path, voxel_size_A: float, box: int) -> np.ndarray:
    ref = read_tomogram(path)
    vs = np.asarray(ref.voxel_size_A)
    data = ref.load(np.float32)
    if len(set(data.shape)) != 1:
        raise TomopickError(f"reference must be a cubic map, got shape {data.shape}", path)
    if not np.all(np.isfinite(data)):
        raise TomopickError("reference holds NaN/Inf values", path)
    if not np.allclose(vs, voxel_size_A, rtol=1e-3):
        from scipy.ndimage import zoom

        factor = float(vs.mean() / voxel_size_A)
        if not 0.1 <= factor <= 10:
            raise TomopickError(f"reference voxel size {vs.mean():g} Å is too far from the boxes' {voxel_size_A:g} Å",
                                path)
        data = zoom(data, factor, order=1).astype(np.float32)
    return fit_box(data, box)


def _fsc_figure(path: Path, curves: list[tuple[str, Any, float | None]]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for label, curve, res in curves:
        text = f"{res:.1f} Å" if res is not None else "> Nyquist (never < 0.143)"
        ax.plot(curve.frequency_per_A[1:], curve.fsc[1:], marker=".", label=f"{label}: {text}")
    ax.axhline(0.143, color="grey", linestyle="--", linewidth=1)
    ax.axhline(0.0, color="black", linewidth=0.5)
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC (masked half maps)")
    ax.set_ylim(-0.2, 1.02)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _write_map(volume: np.ndarray, voxel_size_A: float, path: Path) -> None:
    write_tomogram(Tomogram.from_array(np.asarray(volume, dtype=np.float32), voxel_size_A), path)


def check_inputs(tomogram: str | Path, picks: str | Path, reference: str | Path | None) -> None:
    """Refuse missing input files before anything is read."""
    for label, item in (("tomogram", tomogram), ("picks", picks), ("reference", reference)):
        if item is None or "://" in str(item):
            continue
        if not Path(item).exists():
            raise TomopickError(f"{label} not found", item)


def average(tomogram: str | Path, picks: str | Path, particle: str, out: str | Path, *,
            reference: str | Path | None = None, options: AverageOptions | None = None,
            particles: str | Path | ParticleSet = "czii", radius_A: float | None = None,
            voxel_size_A: float | None = None, run: str | None = None, picks_format: str | None = None,
            overwrite: bool = False, progress: Callable[[int, int], None] | None = None) -> AverageReport:
    """Average the picks of class ``particle`` in ``tomogram`` into two independent half maps; write ``out/``.

    Parameters
    ----------
    tomogram
        Tomogram (MRC, OME-Zarr, …: anything :func:`tomopick.io.read_tomogram` reads), isotropic voxels.
    picks
        Picks source (file in any picks format, copick project, folder).
    particle
        Class to average.
    out
        Output folder (must not exist unless ``overwrite``).
    reference
        Optional starting map (MRC); rescaled to the boxes' voxel size, cropped/padded to the box; its contrast is
        flipped if opposite to the tomogram's.
    options
        :class:`~tomopick.averaging.AverageOptions`.
    particles, radius_A
        The particle radius comes from ``radius_A`` or from the class in the particle set.
    voxel_size_A
        Override the tomogram's voxel size (Å).
    run
        Use the picks of this run (needed when the picks hold several and none is named like the tomogram).
    picks_format
        Force the picks format.
    overwrite
        Replace an existing ``out`` folder.
    progress
        ``progress(round, rounds)`` after each alignment round.
    """
    options = options or AverageOptions()
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    out = check_output(out, overwrite, create_parent=False, directory=True)
    check_inputs(tomogram, picks, reference)
    radius = _particle_radius(particles, particle, radius_A)
    if options.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise TomopickError(f"--device {options.device}: no CUDA device is available here")
    pset = particles if isinstance(particles, ParticleSet) else get_particle_set(particles)
    tomo = read_tomogram(tomogram, **({"voxel_size_A": voxel_size_A} if voxel_size_A else {}))
    if not tomo.is_isotropic:
        raise TomopickError(f"voxel size differs between axes {tomo.voxel_size_A}; averaging needs isotropic voxels",
                            tomogram)
    vs = tomo.isotropic_voxel_size_A
    box_vs = vs * options.bin
    box = options.box or default_box(radius, box_vs)
    if box * options.bin > min(tomo.shape):
        raise TomopickError(f"box of {box} × bin {options.bin} voxels is larger than the tomogram {tomo.shape}; "
                            "pass a smaller --box or --bin", tomogram)
    all_picks = load_picks(picks, format=picks_format, particles=pset)
    sel = _select_picks(all_picks, particle, run, str(tomogram), str(picks))
    inside = sel.inside(tomo.shape, tomo.voxel_size_A)
    n_outside = int((~inside).sum())
    sel = sel.select(inside)
    if len(sel) < MIN_PICKS:
        raise TomopickError(f"{len(sel)} pick(s) of {particle!r} inside the tomogram ({n_outside} outside); need at "
                            f"least {MIN_PICKS} for two half-sets", picks)
    ref_map = _read_reference(reference, box_vs, box) if reference is not None else None
    tomo.check_finite()
    times["read"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    sub = extract_subvolumes(tomo.data, sel.voxel_coords(tomo.voxel_size_A), box, options.bin)
    times["extract"] = time.perf_counter() - t1
    if options.threads:
        import torch

        torch.set_num_threads(options.threads)
    t2 = time.perf_counter()
    initial = sel.rotation_matrices() if sel.has_rotations else None
    result = average_subtomograms(sub.data, box_vs, radius, options, np.random.default_rng(options.seed),
                                  reference=ref_map, initial_rotations=initial, progress=progress)
    times["align"] = time.perf_counter() - t2
    cut = automatic_score_cut(result.alignment.scores)
    keep = cut.keep(result.alignment.scores)
    assert result.geometry is not None
    _, cut_curve, cut_res = half_map_fsc(sub.data, result.alignment, result.halves, keep, result.geometry, options)

    # refined positions: the box centre plus the shift found (x, y, z box voxels → Å)
    centre_xyz_A = sub.centers_zyx_vox[:, ::-1].astype(np.float64) * np.asarray(tomo.voxel_size_A)[::-1]
    refined_xyz = centre_xyz_A + result.alignment.shifts_xyz_vox * box_vs
    run_col = list(sel.frame["run"]) if any(sel.frame["run"]) else run_name(str(tomogram))
    found = Picks.from_arrays(refined_xyz, particle, score=result.alignment.scores,
                              rotations=result.alignment.rotations, run=run_col)
    summary = _summary(result, cut, cut_res, cut_curve, sel, n_outside, options, radius, vs, box_vs, tomogram, picks,
                       reference, sub.inside_fraction)
    times["total"] = time.perf_counter() - t0
    summary["timings_s"] = {k: round(v, 3) for k, v in times.items()}

    with atomic_output(out, overwrite, directory=True) as tmp:
        _write_map(result.average, box_vs, tmp / "average.mrc")
        _write_map(result.half_maps[0], box_vs, tmp / "half_map_1.mrc")
        _write_map(result.half_maps[1], box_vs, tmp / "half_map_2.mrc")
        if result.resolution_A is not None:
            _write_map(apply_lowpass(result.average, box_vs, result.resolution_A), box_vs, tmp / "average_filtered.mrc")
        _fsc_figure(tmp / "fsc.png", [("all picks", result.fsc, result.resolution_A),
                                      (f"{cut.n_kept} above the cut", cut_curve, cut_res)])
        write_picks(found, tmp / "particles.star", format="relion5", tomogram=tomo, particles=pset)
        write_picks(found.select(keep), tmp / "particles_kept.star", format="relion5", tomogram=tomo, particles=pset)
        _per_pick_table(sel, found, result, keep).to_csv(tmp / "particles.csv", index=False, float_format="%.6g")
        (tmp / "summary.json").write_text(json.dumps(to_jsonable(summary), indent=2) + "\n")
    return AverageReport(result=result, cut=cut, picks=found, summary=summary, out=Path(out), timings_s=times)


def _per_pick_table(sel: Picks, found: Picks, result: AverageResult, keep: np.ndarray):
    import pandas as pd

    from tomopick.data.rotations import matrix_to_relion_angles

    angles = matrix_to_relion_angles(result.alignment.rotations)
    xyz, ref = sel.xyz_A, found.xyz_A
    return pd.DataFrame({
        "index": np.arange(len(sel)), "x_A": xyz[:, 0], "y_A": xyz[:, 1], "z_A": xyz[:, 2],
        "refined_x_A": ref[:, 0], "refined_y_A": ref[:, 1], "refined_z_A": ref[:, 2],
        "half": result.halves + 1, "score": result.alignment.scores, "kept": keep,
        "rlnAngleRot": angles[:, 0], "rlnAngleTilt": angles[:, 1], "rlnAnglePsi": angles[:, 2],
        "run": list(found.frame["run"]),
    })


def _summary(result: AverageResult, cut: ScoreCut, cut_res: float | None, cut_curve: Any, sel: Picks,
             n_outside: int, options: AverageOptions, radius: float, vs: float, box_vs: float, tomogram: Any,
             picks: Any, reference: Any, inside_fraction: np.ndarray) -> dict[str, Any]:
    geo = result.geometry
    assert geo is not None
    nyquist = 2.0 * box_vs
    return {
        "resolution_A": result.resolution_A,
        "resolution_note": ("FSC of the masked half maps first falls below 0.143 here" if result.resolution_A
                            is not None else "the FSC never falls below 0.143 up to Nyquist "
                            f"({nyquist:.1f} Å): the resolution is at least Nyquist; no number is given"),
        "nyquist_A": nyquist,
        "n_particles": int(len(sel)),
        "n_outside_tomogram": n_outside,
        "n_partly_outside": int((inside_fraction < 1.0).sum()),
        "halves": [int((result.halves == 0).sum()), int((result.halves == 1).sum())],
        "fsc": result.fsc.to_dict(),
        "fsc_threshold": 0.143,
        "mean_score": float(np.nanmean(result.alignment.scores)),
        "cut": {**cut.to_dict(), "resolution_A": cut_res, "fsc": cut_curve.fsc.tolist()},
        "rounds": result.rounds,
        "reference": None if reference is None else str(reference),
        "reference_inverted": result.reference_inverted,
        "starting_reference": "given map" if reference is not None else (
            "average at the picks' orientations" if sel.has_rotations else "average at identity orientations"),
        "particle": str(sel.frame["particle"].iloc[0]),
        "radius_A": radius,
        "tomogram": str(tomogram),
        "picks": str(picks),
        "tomogram_voxel_size_A": vs,
        "box_voxel_size_A": box_vs,
        "geometry": {"box": geo.box, "mask_radius_A": geo.mask_radius_vox * box_vs,
                     "max_shift_A": geo.max_shift_vox * box_vs, "initial_lowpass_A": geo.initial_lowpass_A},
        "options": options.model_dump(mode="json"),
    }
