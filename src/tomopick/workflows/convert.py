"""``convert`` and ``info``: move tomograms and picks between formats, and describe any file tomopick reads.

Both work for every registered format (see ``docs/formats.md``). Units and conventions are converted by
:mod:`tomopick.io`; this module adds the checks that need more than one file (picks against the tomogram shape,
names against a particle set) and keeps outputs atomic (nothing is written when an error is raised).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from tomopick.data import ParticleSet, Picks, Tomogram, get_particle_set
from tomopick.errors import TomopickError
from tomopick.io import check_output, read_picks, read_tomogram, write_picks, write_tomogram
from tomopick.io.formats._common import stated_voxel_size
from tomopick.io.registry import Format, detect, formats, get_format

Kind = Literal["tomogram", "picks"]


@dataclass
class ConvertResult:
    """What :func:`convert` did: ``kind``, output path, formats, counts and warnings (one line each)."""

    kind: Kind
    output: str
    format_in: str
    format_out: str
    n_picks: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    shape: tuple[int, int, int] | None = None
    warnings: list[str] = field(default_factory=list)


def _is_uri(text: str) -> bool:
    return "://" in text


def detect_kind(path: str | Path, format: str | None = None) -> Kind:
    """Whether ``path`` holds a tomogram or picks (by ``format`` name, URI query, or file name)."""
    text = str(path)
    if format:
        kinds = [k for k in ("tomogram", "picks")
                 if any(f.name == format for f in formats(k))]  # type: ignore[arg-type]
        if len(kinds) == 1:
            return kinds[0]  # type: ignore[return-value]
        if not kinds:
            known = ", ".join(sorted({f.name for f in formats()}))
            raise TomopickError(f"unknown format {format!r}; known: {known}", text)
    if Path(text).is_dir() and any((Path(text) / n).is_file() for n in ("copick_config.json", "config.json")):
        return "picks"  # a copick project folder
    if text.startswith("copick://"):
        query = text.split("?", 1)[1] if "?" in text else ""
        return "tomogram" if any(k in query for k in ("tomo_type=", "voxel_size=", "level=")) else "picks"
    if _is_uri(text):
        raise TomopickError(f"unknown URI scheme {text.split('://', 1)[0]!r} (known: copick)", text)
    try:
        detect(text, "tomogram")
        return "tomogram"
    except TomopickError:
        pass
    detect(text, "picks")  # raises the "cannot tell the format" message if neither knows it
    return "picks"


def _output_format(dst: str, kind: Kind, format_out: str | None, src: str) -> Format:
    """The output format for ``kind``; a name or ``--format-out`` of the other kind (a tomogram to ``.star``) says
    so instead of "cannot tell the format"."""
    other: Kind = "picks" if kind == "tomogram" else "tomogram"
    try:
        return get_format(format_out, kind) if format_out else detect(dst, kind, for_writing=True)
    except TomopickError as exc:
        try:
            get_format(format_out, other) if format_out else detect(dst, other, for_writing=True)
        except TomopickError:
            raise exc from None
    exts = ", ".join(sorted({e for f in formats(kind) if f.writer is not None for e in f.extensions}))
    held = {"tomogram": "a tomogram, which converts", "picks": "picks, which convert"}[kind]
    what = f"--format-out {format_out} is" if format_out else "names"
    raise TomopickError(f"{what} a {other} format, but {src} holds {held} only to a {kind} format ({exts})",
                        None if format_out else dst)


def parse_shape(text: str | Sequence[int] | None) -> tuple[int, int, int] | None:
    """``"184,630,630"`` (z, y, x) → a tuple of three positive ints (None stays None)."""
    if text is None:
        return None
    parts = text.replace("x", ",").split(",") if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except ValueError:
        raise TomopickError(f"tomogram shape must be Z,Y,X integers, got {text!r}") from None
    if len(shape) != 3 or min(shape) <= 0:
        raise TomopickError(f"tomogram shape must be three positive sizes Z,Y,X, got {text!r}")
    return shape  # type: ignore[return-value]


def _particles(particles: ParticleSet | str | Path | None) -> ParticleSet | None:
    if particles is None or isinstance(particles, ParticleSet):
        return particles
    return get_particle_set(particles)


def _picks_options(voxel_size_A: float | None, particle: str | None, particles: ParticleSet | None, run: str | None,
                   shape: tuple[int, int, int] | None, tomogram: Tomogram | None) -> dict[str, Any]:
    vs = voxel_size_A
    if vs is None and tomogram is not None and tomogram.is_isotropic:
        vs = tomogram.isotropic_voxel_size_A  # pixel formats: the tomogram's pixel size
    opts: dict[str, Any] = {"voxel_size_A": vs, "particle": particle, "particles": particles, "run": run,
                            "tomogram_shape_zyx": shape, "tomogram": tomogram}
    return {k: v for k, v in opts.items() if v is not None}


def check_picks(picks: Picks, source: str, *, particles: ParticleSet | None = None,
                shape_zyx: Sequence[int] | None = None, voxel_size_A: Any = None) -> list[str]:
    """Checks that need context: unknown names (error) and picks outside the volume (warning line returned)."""
    if particles is not None:
        particles.check_names(picks.particles, source)
    warnings = []
    if shape_zyx is not None and voxel_size_A is not None and len(picks):
        outside = int((~picks.inside(shape_zyx, voxel_size_A)).sum())
        if outside:
            z, y, x = shape_zyx
            warnings.append(f"{source}: {outside} of {len(picks)} pick(s) lie outside the {z}x{y}x{x} volume "
                            "(kept)")
    return warnings


def convert(
    src: str | Path,
    dst: str | Path,
    *,
    format_in: str | None = None,
    format_out: str | None = None,
    overwrite: bool = False,
    voxel_size_A: float | None = None,
    particle: str | None = None,
    particles: ParticleSet | str | Path | None = None,
    run: str | None = None,
    tomogram_shape_zyx: str | Sequence[int] | None = None,
    tomogram: str | Path | Tomogram | None = None,
    level: int = 0,
    levels: int = 3,
    user_id: str | None = None,
    session_id: str | None = None,
) -> ConvertResult:
    """Convert a tomogram or a picks file to another format (kind detected from ``src``).

    Parameters
    ----------
    src, dst
        Paths or ``copick://`` URIs; formats from the extension unless ``format_in`` / ``format_out``.
    voxel_size_A
        Pixel size in Å for formats that store pixels (or to override/supply a tomogram's).
    particle, particles, run
        What the input format cannot carry: one class name for every pick, a particle set (preset name, YAML
        or :class:`ParticleSet`) to map class numbers and check names, the run/tomogram name.
    tomogram_shape_zyx, tomogram
        Tomogram size (``"Z,Y,X"``) or a tomogram file, for RELION 5 centred coordinates and the
        outside-the-volume check.
    level, levels
        OME-Zarr: level to read; number of pyramid levels to write.
    """
    src_text, dst_text = str(src), str(dst)
    kind = detect_kind(src_text, format_in)
    fin = get_format(format_in, kind) if format_in else detect(src_text, kind)
    fout = _output_format(dst_text, kind, format_out, src_text)
    if fout.writer is None:
        raise TomopickError(f"format {fout.name!r} cannot be written", dst_text)
    if not _is_uri(src_text) and not Path(src_text).exists():
        raise TomopickError("file not found", src_text)
    if kind == "tomogram" and levels < 1:
        raise TomopickError(f"--levels must be at least 1, got {levels}")
    if not _is_uri(dst_text):  # refuse early, before reading anything big (creates nothing yet)
        check_output(dst_text, overwrite, create_parent=False, directory=fout.directory)
    if kind == "tomogram":
        tomo = read_tomogram(src_text, format=fin.name, voxel_size_A=voxel_size_A, level=level)
        opts: dict[str, Any] = {"levels": levels}
        if fout.name == "copick" and run:
            opts["run"] = run
        write_tomogram(tomo, dst_text, format=fout.name, overwrite=overwrite, **opts)
        return ConvertResult("tomogram", dst_text, fin.name, fout.name, shape=tomo.shape)
    pset = _particles(particles)
    tomo = read_tomogram(tomogram) if isinstance(tomogram, (str, Path)) else tomogram
    shape = parse_shape(tomogram_shape_zyx) or (tomo.shape if tomo is not None else None)
    opts = _picks_options(voxel_size_A, particle, pset, run, shape, tomo)
    picks = read_picks(src_text, format=fin.name, **opts)
    vs_check = tomo.voxel_size_A if tomo is not None else voxel_size_A
    warnings = check_picks(picks, src_text, particles=pset, shape_zyx=shape, voxel_size_A=vs_check)
    wopts = {k: v for k, v in opts.items() if k != "particle"}  # names are in the picks by now
    if "voxel_size_A" not in wopts and stated_voxel_size(picks) is not None:
        wopts["voxel_size_A"] = stated_voxel_size(picks)  # pixel size stated by the input file
    if user_id:
        wopts["user_id"] = user_id
    if session_id:
        wopts["session_id"] = session_id
    write_picks(picks, dst_text, format=fout.name, overwrite=overwrite, **wopts)
    return ConvertResult("picks", dst_text, fin.name, fout.name, n_picks=len(picks), counts=picks.counts(),
                         warnings=warnings)


def info(
    path: str | Path,
    *,
    format: str | None = None,
    voxel_size_A: float | None = None,
    level: int = 0,
    particle: str | None = None,
    particles: ParticleSet | str | Path | None = None,
    run: str | None = None,
    tomogram_shape_zyx: str | Sequence[int] | None = None,
    tomogram: str | Path | Tomogram | None = None,
    slab_depth: int = 32,
) -> dict[str, Any]:
    """Describe a tomogram (shape, dtype, voxel size, value statistics computed slab by slab, NaN/Inf counts) or a
    picks file (count per class, runs, scores/orientations present, extent in Å, outside-the-volume count).

    Returns a JSON-ready dict with ``kind`` and ``warnings`` (one line each).
    """
    text = str(path)
    kind = detect_kind(text, format)
    fmt = get_format(format, kind) if format else detect(text, kind)
    if not _is_uri(text) and not Path(text).exists():
        raise TomopickError("file not found", text)
    if kind == "tomogram":
        tomo = read_tomogram(text, format=fmt.name, voxel_size_A=voxel_size_A, level=level)
        stats = tomo.value_stats(depth=slab_depth)
        out: dict[str, Any] = {
            "kind": "tomogram", "path": text, "format": fmt.name, "shape_zyx": list(tomo.shape),
            "dtype": str(tomo.dtype), "voxel_size_A": list(tomo.voxel_size_A), "size_bytes": tomo.nbytes,
            "extent_A_xyz": (np.asarray(tomo.shape[::-1]) * np.asarray(tomo.voxel_size_A[::-1])).tolist(),
            "stats": stats, "warnings": [],
        }
        meta = tomo.metadata or {}
        for key in ("mode", "level", "n_levels", "levels", "chunks", "tomo_type", "copick_run"):
            if key in meta:
                out[key] = meta[key]
        bad = stats["n_nan"] + stats["n_inf"]
        if bad:
            out["warnings"].append(f"{text}: {stats['n_nan']} NaN and {stats['n_inf']} Inf voxel(s)")
        return out
    pset = _particles(particles)
    tomo = read_tomogram(tomogram) if isinstance(tomogram, (str, Path)) else tomogram
    shape = parse_shape(tomogram_shape_zyx) or (tomo.shape if tomo is not None else None)
    picks = read_picks(text, format=fmt.name, **_picks_options(voxel_size_A, particle, pset, run, shape, tomo))
    vs_check = tomo.voxel_size_A if tomo is not None else voxel_size_A
    warnings = check_picks(picks, text, particles=pset, shape_zyx=shape, voxel_size_A=vs_check)
    xyz = picks.xyz_A
    out = {
        "kind": "picks", "path": text, "format": fmt.name, "n_picks": len(picks), "counts": picks.counts(),
        "runs": [r for r in picks.runs if r], "has_scores": picks.has_scores, "has_rotations": picks.has_rotations,
        "min_A_xyz": xyz.min(axis=0).tolist() if len(picks) else None,
        "max_A_xyz": xyz.max(axis=0).tolist() if len(picks) else None,
        "warnings": warnings,
    }
    if picks.has_scores:
        s = picks.scores[np.isfinite(picks.scores)]
        out["score_range"] = [float(s.min()), float(s.max())]
    return out
