"""Helpers shared by the format modules: options that fill in what a format cannot carry, and the advice given
when one is missing (worded for the running command, see :func:`tomopick.errors.option_for`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tomopick.data import CZII, ParticleSet, Picks, get_particle_set
from tomopick.errors import TomopickError, option_for, pass_option

#: Advice for picks in pixels whose pixel size is unknown, for commands without an option to give it.
CONVERT_FIRST = "convert it to Å first: tomopick convert <file> <new.csv> --voxel-size <Å>"


def ask_tomogram_voxel_size() -> str:
    """``"pass --voxel-size (Å)"`` with the running command's option for a tomogram's voxel size, else how to set
    it in the file."""
    return pass_option("voxel_size", "(Å)",
                       otherwise="set it first: tomopick convert <file> <new file> --voxel-size <Å>")


def ask_picks_voxel_size() -> str:
    """``"pass --voxel-size (Å per pixel)"`` where the running command has that option, else how to convert."""
    return pass_option("picks_voxel_size", "(Å per pixel)", otherwise=CONVERT_FIRST)


def positive_voxel_size(voxel_size_A: Any, path: str | Path | None, what: str = "this format") -> float:
    """One positive voxel size in Å from an option (a number or a ``(z, y, x)`` triple that must agree),
    else a one-line error asking for ``--voxel-size``."""
    if voxel_size_A is None:
        raise TomopickError(f"{what} stores positions in pixels; {ask_picks_voxel_size()}", path)
    values = np.atleast_1d(np.asarray(voxel_size_A, dtype=np.float64))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise TomopickError(f"voxel size must be positive, got {values.tolist()}", path)
    if not np.allclose(values, values[0], rtol=1e-6):
        raise TomopickError(f"{what} needs one (isotropic) pixel size, got {values.tolist()} Å", path)
    return float(values[0])


def voxel_size_zyx_option(voxel_size_A: Any, path: str | Path | None, what: str) -> np.ndarray:
    """Per-axis voxel size ``(z, y, x)`` in Å from an option (number or triple), or a one-line error."""
    if voxel_size_A is None:
        raise TomopickError(f"{what}; {ask_picks_voxel_size()}", path)
    values = np.broadcast_to(np.asarray(voxel_size_A, dtype=np.float64), (3,)).copy()
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise TomopickError(f"voxel size must be positive, got {values.tolist()}", path)
    return values


def as_particle_set(particles: ParticleSet | str | Path | None) -> ParticleSet | None:
    """A particle set from an option: a :class:`ParticleSet`, a preset name / YAML path, or None."""
    if particles is None or isinstance(particles, ParticleSet):
        return particles
    return get_particle_set(particles)


def class_labels(picks: Picks, particles: ParticleSet | str | None, path: str | Path | None) -> np.ndarray:
    """Integer class labels ``(n,)`` for formats that store a class number (RELION ``rlnClassNumber``,
    Dynamo column 22, IMOD object). Labels come from the particle set given, else from the CZII preset when
    every name is a CZII class, else 1, 2, … in order of first appearance."""
    pset = as_particle_set(particles)
    names = picks.particles
    if pset is None:
        pset = CZII if names and all(n in CZII for n in names) else None
    if pset is not None:
        pset.check_names(names, str(path) if path else None)
        table = {p.name: int(p.label) for p in pset}
    else:
        table = {n: i + 1 for i, n in enumerate(names)}
    return np.array([table[n] for n in picks.frame["particle"]], dtype=np.int64)


def class_names(labels: Sequence[int] | None, n: int, *, particle: str | None,
                particles: ParticleSet | str | None) -> list[str]:
    """Class names for ``n`` rows read from a format with class numbers (``labels``; None when absent).

    ``particle`` names every row; otherwise ``particles`` maps labels to names; otherwise ``"class<N>"``
    (or ``"particle"`` when the file has no class numbers)."""
    if particle:
        return [particle] * n
    if labels is None:
        return ["particle"] * n
    pset = as_particle_set(particles)
    out = []
    for lab in labels:
        lab = int(lab)
        if pset is not None:
            out.append(pset.by_label(lab).name)
        else:
            out.append(f"class{lab}")
    return out


def run_names(picks: Picks, run: str | None) -> list[str]:
    """Per-row run names for writing: the ``run`` option overrides, else the picks' own (may be "")."""
    if run is not None:
        return [run] * len(picks)
    return [str(r) for r in picks.frame["run"]]


def tomogram_centre_A(tomogram_shape_zyx: Any, voxel_size_A: Any, tomogram: Any, path: str | Path | None
                      ) -> np.ndarray:
    """Centre ``(x, y, z)`` in Å of the tomogram (``shape / 2 * voxel size`` per axis, as RELION 5 and copick),
    from ``tomogram`` (a :class:`Tomogram`) or ``tomogram_shape_zyx`` + ``voxel_size_A``."""
    if tomogram is not None:
        shape = np.asarray(tomogram.shape, dtype=np.float64)
        vs = np.asarray(tomogram.voxel_size_A, dtype=np.float64)
    elif tomogram_shape_zyx is not None:
        shape = np.asarray(tomogram_shape_zyx, dtype=np.float64).reshape(-1)
        if shape.shape != (3,) or np.any(shape <= 0):
            raise TomopickError(f"tomogram shape must be three positive sizes z,y,x, got {shape.tolist()}", path)
        vs = voxel_size_zyx_option(voxel_size_A, path, "RELION 5 centred coordinates need the tomogram voxel size")
    else:
        shape_opt, vs_opt, tomo_opt = (option_for(r) for r in ("tomo_shape", "picks_voxel_size", "tomogram"))
        if shape_opt and vs_opt and tomo_opt:
            hint = f"pass {shape_opt} Z,Y,X with {vs_opt}, or {tomo_opt} FILE"
        else:
            hint = "convert it first: tomopick convert <file> <new.csv> --tomogram <tomogram file>"
        raise TomopickError(f"RELION 5 centred coordinates need the tomogram size: {hint}", path)
    return (shape * vs / 2.0)[::-1].copy()


def with_stated_voxel_size(picks: Picks, voxel_size_A: float | None) -> Picks:
    """Record the pixel size a pixel-format file stated (``picks.frame.attrs["voxel_size_A"]``), so that a
    conversion to another pixel format can reuse it (see :func:`stated_voxel_size`)."""
    if voxel_size_A is not None:
        picks.frame.attrs["voxel_size_A"] = float(voxel_size_A)
    return picks


def stated_voxel_size(picks: Picks) -> float | None:
    """The pixel size the source file stated, if the reader recorded one (lost by selections)."""
    value = picks.frame.attrs.get("voxel_size_A")
    return None if value is None else float(value)


# -- extra per-pick columns (e.g. the segmentation context) ------------------------------------------------------
def extra_values(picks: Picks) -> dict[str, list[Any]]:
    """The picks' extra columns (beyond the fixed set) as plain Python lists: numbers stay numbers (ints as int),
    text as str."""
    out: dict[str, list[Any]] = {}
    for col in picks.extra_columns:
        values = picks.frame[col].to_numpy()
        if values.dtype.kind in "biu":
            out[col] = [int(v) for v in values]
        elif values.dtype.kind == "f":
            out[col] = [float(v) for v in values]
        else:
            out[col] = [str(v) for v in values]
    return out


def parse_extra(values: Sequence[Any]) -> np.ndarray:
    """A column read back from text: integers if every value is one, else floats if every value is a number, else
    strings."""
    import pandas as pd

    series = pd.Series(["nan" if v is None else v for v in values], dtype=object)
    text = series.astype(str).str.strip()
    numeric = pd.to_numeric(text, errors="coerce")
    missing = text.isna() | text.str.lower().isin(["nan", "none", "", "<na>"]).fillna(False).astype(bool)
    if len(series) and (numeric.notna() | missing).all() and not missing.all():
        as_float = numeric.to_numpy(dtype=np.float64)
        if np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)) and not any(
                "." in str(v) or "e" in str(v).lower() for v in series):
            return as_float.astype(np.int64)
        return as_float
    return series.astype(str).to_numpy(dtype=object)
