"""RELION STAR picks: RELION 3.1/4 (pixels + optics), RELION 5 (centred Å) and Warp-style (pixels, no optics).

Conventions converted here:

* **relion** (3.1 / 4): ``data_optics`` (``rlnOpticsGroup``, ``rlnImagePixelSize``) + ``data_particles`` with
  ``rlnCoordinate{X,Y,Z}`` in pixels (0-based: voxel (0, 0, 0) is at 0, as tomopick), ``rlnTomoName`` and
  ``rlnMicrographName`` (the run), ``rlnAngle{Rot,Tilt,Psi}``, ``rlnAutopickFigureOfMerit`` (score),
  ``rlnClassNumber`` (particle label), ``rlnOpticsGroup``. Reading also accepts ``rlnTomoTiltSeriesPixelSize``,
  a per-particle ``rlnImagePixelSize``, ``rlnDetectorPixelSize``/``rlnMagnification`` and subtracts
  ``rlnOrigin{X,Y,Z}Angst`` (RELION's particle centre is coordinate − origin).
* **relion5**: ``data_particles`` with ``rlnCenteredCoordinate{X,Y,Z}Angst`` = position − tomogram centre, the
  centre being ``shape / 2 × voxel size`` per axis; needs ``tomogram_shape_zyx`` + ``voxel_size_A`` or
  ``tomogram``.
* **warp**: one unnamed ``data_`` block (RELION 3.0 style, as Warp 1 writes) with pixel coordinates,
  ``rlnMicrographName`` = ``<run>.tomostar``, pixel size as ``rlnDetectorPixelSize`` with
  ``rlnMagnification`` 10000.

Angles: RELION's matrix maps reference to particle (see :mod:`tomopick.data.rotations`). Class numbers map to
names through ``particles=`` (a particle set) or ``particle=`` (one name for all rows).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomopick.data import Picks
from tomopick.data.rotations import matrix_to_relion_angles, relion_angles_to_matrix
from tomopick.errors import TomopickError
from tomopick.io.formats._common import (
    class_labels,
    class_names,
    extra_values,
    parse_extra,
    ask_picks_voxel_size,
    positive_voxel_size,
    run_names,
    tomogram_centre_A,
    with_stated_voxel_size,
)
from tomopick.io.registry import Format, PicksCapabilities, register

_XYZ = ("rlnCoordinateX", "rlnCoordinateY", "rlnCoordinateZ")
_CENTRED = ("rlnCenteredCoordinateXAngst", "rlnCenteredCoordinateYAngst", "rlnCenteredCoordinateZAngst")
_ANGLES = ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi")
_FLOAT_FORMAT = "%.10g"
_STRINGS = ["rlnTomoName", "rlnMicrographName", "rlnOpticsGroupName", "rlnImageName"]


def _read_blocks(path: Path) -> dict[str, pd.DataFrame]:
    import starfile

    try:
        blocks = starfile.read(path, always_dict=True, parse_as_string=_STRINGS)
    except Exception as exc:  # noqa: BLE001 - starfile raises many kinds on bad input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TomopickError(f"malformed STAR file ({msg})", path) from None
    tables = {k: v for k, v in (blocks or {}).items() if isinstance(v, pd.DataFrame)}
    if not tables:
        raise TomopickError("malformed STAR file (no data_ loop found)", path)
    return tables


def _particle_table(tables: dict[str, pd.DataFrame], path: Path) -> tuple[str, pd.DataFrame]:
    if "particles" in tables:
        return "particles", tables["particles"]
    for name, df in tables.items():
        if set(_XYZ) <= set(df.columns) or set(_CENTRED) <= set(df.columns):
            return name, df
    raise TomopickError("STAR file has no particle table with rlnCoordinateX/Y/Z or "
                        "rlnCenteredCoordinateX/Y/ZAngst", path)


def _numeric(df: pd.DataFrame, cols: tuple[str, ...] | list[str], path: Path) -> np.ndarray:
    try:
        return df[list(cols)].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise TomopickError(f"malformed STAR file: non-numeric value in {', '.join(cols)} ({exc})", path) from None


def _pixel_sizes(tables: dict[str, pd.DataFrame], df: pd.DataFrame, voxel_size_A: Any, path: Path) -> np.ndarray:
    """Per-row pixel size in Å: option > optics group > per-particle columns; else error."""
    n = len(df)
    if voxel_size_A is not None:
        return np.full(n, positive_voxel_size(voxel_size_A, path, "RELION"))
    optics = tables.get("optics")
    for col in ("rlnImagePixelSize", "rlnTomoTiltSeriesPixelSize"):
        if optics is not None and col in optics.columns:
            table = dict(zip(pd.to_numeric(optics.get("rlnOpticsGroup", pd.Series([1] * len(optics)))).astype(int),
                             pd.to_numeric(optics[col]).astype(float)))
            groups = (pd.to_numeric(df["rlnOpticsGroup"]).astype(int).to_numpy() if "rlnOpticsGroup" in df.columns
                      else np.full(n, next(iter(table))))
            missing = sorted(set(groups.tolist()) - set(table))
            if missing:
                raise TomopickError(f"particles refer to optics group(s) {missing} that data_optics lacks", path)
            sizes = np.array([table[g] for g in groups], dtype=np.float64)
            break
    else:
        if "rlnImagePixelSize" in df.columns:
            sizes = _numeric(df, ["rlnImagePixelSize"], path)[:, 0]
        elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(df.columns):
            det = _numeric(df, ["rlnDetectorPixelSize", "rlnMagnification"], path)
            sizes = det[:, 0] * 1e4 / det[:, 1]
        else:
            raise TomopickError("STAR file states no pixel size (rlnImagePixelSize / optics group); "
                                + ask_picks_voxel_size(), path)
    if n and (not np.all(np.isfinite(sizes)) or np.any(sizes <= 0)):
        raise TomopickError("pixel size in the STAR file is 0 or invalid; " + ask_picks_voxel_size(), path)
    return sizes


def _run_column(df: pd.DataFrame, run: str | None) -> list[str]:
    if "rlnTomoName" in df.columns:
        return [str(v) for v in df["rlnTomoName"]]
    if "rlnMicrographName" in df.columns:
        out = []
        for v in df["rlnMicrographName"]:
            name = Path(str(v)).name
            for ext in (".tomostar", ".mrc", ".rec", ".st", ".mrcs", ".zarr"):
                if name.lower().endswith(ext):
                    name = name[: -len(ext)]
                    break
            out.append(name)
        return out
    return [run or ""] * len(df)


#: STAR label prefix of the picks' extra columns (``_tomopick_distance_to_membrane_A``).
EXTRA_PREFIX = "tomopick_"


def read_star(path: Path, *, voxel_size_A: Any = None, particle: str | None = None, particles: Any = None,
              run: str | None = None, tomogram_shape_zyx: Any = None, tomogram: Any = None, **_: Any) -> Picks:
    """Read any of the three STAR flavours (see the module docstring)."""
    path = Path(path)
    tables = _read_blocks(path)
    _, df = _particle_table(tables, path)
    n = len(df)
    stated_vs = None
    if set(_CENTRED) <= set(df.columns):
        vs = voxel_size_A
        if tomogram is not None and vs is None:
            vs = tomogram.voxel_size_A
        centre = tomogram_centre_A(tomogram_shape_zyx, vs, tomogram, path)
        xyz = _numeric(df, _CENTRED, path) + centre
    else:
        missing = [c for c in _XYZ if c not in df.columns]
        if missing:
            raise TomopickError(f"STAR particle table lacks {', '.join(missing)}", path)
        sizes = _pixel_sizes(tables, df, voxel_size_A, path)
        xyz = _numeric(df, _XYZ, path) * sizes[:, None]
        if len(sizes) and np.allclose(sizes, sizes[0]):
            stated_vs = float(sizes[0])
    if {"rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"} <= set(df.columns):
        xyz = xyz - _numeric(df, ["rlnOriginXAngst", "rlnOriginYAngst", "rlnOriginZAngst"], path)
    if n and not np.all(np.isfinite(xyz)):
        raise TomopickError("malformed STAR file: non-finite coordinates", path)
    labels = _numeric(df, ["rlnClassNumber"], path)[:, 0].astype(np.int64) if "rlnClassNumber" in df.columns else None
    score = None
    for col in ("rlnAutopickFigureOfMerit", "rlnLCCmax", "rlnMaxValueProbDistribution"):
        if col in df.columns:
            score = _numeric(df, [col], path)[:, 0]
            break
    rotations = relion_angles_to_matrix(_numeric(df, _ANGLES, path)) if set(_ANGLES) <= set(df.columns) and n else None
    try:
        names = class_names(labels, n, particle=particle, particles=particles)
    except TomopickError as exc:
        raise TomopickError(exc.message, path) from None
    picks = Picks.from_arrays(xyz, names, score=score, rotations=rotations, run=_run_column(df, run))
    extras = {c[len(EXTRA_PREFIX):]: parse_extra(df[c]) for c in df.columns
              if str(c).startswith(EXTRA_PREFIX) and len(c) > len(EXTRA_PREFIX)}
    if extras and n:
        picks = picks.with_extra(**extras)
    return with_stated_voxel_size(picks, stated_vs)


def _common_columns(picks: Picks, data: dict[str, Any], particles: Any, path: Path) -> None:
    if picks.has_rotations:
        angles = matrix_to_relion_angles(picks.rotation_matrices())
        for i, col in enumerate(_ANGLES):
            data[col] = angles[:, i]
    if picks.has_scores:
        data["rlnAutopickFigureOfMerit"] = picks.scores
    data["rlnClassNumber"] = class_labels(picks, particles, path)
    for col, values in extra_values(picks).items():  # RELION ignores labels it does not know
        data[EXTRA_PREFIX + col] = values


def _write(blocks: dict[str, pd.DataFrame], path: Path) -> None:
    import starfile

    starfile.write(blocks, path, float_format=_FLOAT_FORMAT, overwrite=True)


def write_relion(picks: Picks, path: Path, *, voxel_size_A: Any = None, run: str | None = None,
                 particles: Any = None, **_: Any) -> None:
    """RELION 3.1/4 particles STAR (pixel coordinates; pixel size in ``data_optics``)."""
    path = Path(path)
    vs = positive_voxel_size(voxel_size_A, path, "RELION 3.1/4 STAR")
    runs = run_names(picks, run)
    px = picks.xyz_A / vs
    data: dict[str, Any] = {"rlnTomoName": runs, "rlnMicrographName": runs,
                            _XYZ[0]: px[:, 0], _XYZ[1]: px[:, 1], _XYZ[2]: px[:, 2]}
    _common_columns(picks, data, particles, path)
    data["rlnOpticsGroup"] = np.ones(len(picks), dtype=np.int64)
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnOpticsGroupName": ["opticsGroup1"], "rlnImagePixelSize": [vs]})
    _write({"optics": optics, "particles": pd.DataFrame(data)}, path)


def write_relion5(picks: Picks, path: Path, *, voxel_size_A: Any = None, run: str | None = None,
                  particles: Any = None, tomogram_shape_zyx: Any = None, tomogram: Any = None, **_: Any) -> None:
    """RELION 5 particles STAR (``rlnCenteredCoordinate*Angst`` relative to the tomogram centre)."""
    path = Path(path)
    centre = tomogram_centre_A(tomogram_shape_zyx, voxel_size_A if tomogram is None else tomogram.voxel_size_A,
                               tomogram, path)
    c = picks.xyz_A - centre
    data: dict[str, Any] = {"rlnTomoName": run_names(picks, run),
                            _CENTRED[0]: c[:, 0], _CENTRED[1]: c[:, 1], _CENTRED[2]: c[:, 2]}
    _common_columns(picks, data, particles, path)
    _write({"particles": pd.DataFrame(data)}, path)


def write_warp(picks: Picks, path: Path, *, voxel_size_A: Any = None, run: str | None = None, particles: Any = None,
               **_: Any) -> None:
    """Warp-style particles STAR: one ``data_`` block, pixel coordinates, ``<run>.tomostar`` names."""
    path = Path(path)
    vs = positive_voxel_size(voxel_size_A, path, "Warp STAR")
    px = picks.xyz_A / vs
    data: dict[str, Any] = {_XYZ[0]: px[:, 0], _XYZ[1]: px[:, 1], _XYZ[2]: px[:, 2]}
    _common_columns(picks, data, particles, path)
    data["rlnMicrographName"] = [f"{r}.tomostar" for r in run_names(picks, run)]
    data["rlnMagnification"] = np.full(len(picks), 10000.0)
    data["rlnDetectorPixelSize"] = np.full(len(picks), vs)
    _write({"": pd.DataFrame(data)}, path)


def _head(path: Path, size: int = 16384) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read(size).decode("utf-8", errors="replace")
    except OSError:
        return ""


def _sniff_relion5(path: Path) -> bool:
    return "_rlnCenteredCoordinateXAngst" in _head(path)


def _sniff_warp(path: Path) -> bool:
    head = _head(path)
    return "data_optics" not in head and "_rlnCoordinateX" in head and (
        ".tomostar" in head or "_rlnMagnification" in head)


register(Format(name="relion", kind="picks", extensions=(".star",), reader=read_star, writer=write_relion,
                description="RELION 3.1/4 STAR: pixel coordinates + optics pixel size, angles, class, score",
                capabilities=PicksCapabilities(scores=True, orientations=True, runs=True, classes="number",
                                               needs_pixel_size=True)))
register(Format(name="relion5", kind="picks", extensions=(".star",), reader=read_star, writer=write_relion5,
                sniff=_sniff_relion5,
                description="RELION 5 STAR: centred Å coordinates (needs the tomogram shape), angles, class",
                capabilities=PicksCapabilities(scores=True, orientations=True, runs=True, classes="number",
                                               needs_pixel_size=True, needs_tomogram_shape=True)))
register(Format(name="warp", kind="picks", extensions=(".star",), reader=read_star, writer=write_warp,
                sniff=_sniff_warp, description="Warp-style STAR: one data_ block, pixels, <run>.tomostar",
                capabilities=PicksCapabilities(scores=True, orientations=True, runs=True, classes="number",
                                               needs_pixel_size=True)))
