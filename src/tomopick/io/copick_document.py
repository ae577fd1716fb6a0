"""The copick pick-file document (one particle class per JSON file): parse it into :class:`Picks` and build it
from them. Shared by the copick format (:mod:`tomopick.io.formats.copick`, single files and URIs) and the project
handle (:mod:`tomopick.io.copick_project`); it imports neither, so neither imports the other to reach it — the
format module uses the project, never the other way round. The layout and conventions are described in
:mod:`tomopick.io.formats.copick`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomopick.data import Picks
from tomopick.data.rotations import euler_zyz_to_matrix, matrix_to_euler_zyz
from tomopick.errors import TomopickError, pass_option
from tomopick.io.formats._common import extra_values, parse_extra, with_stated_voxel_size

_UNIT_TO_A = {"angstrom": 1.0, "nanometer": 10.0, "nm": 10.0, "a": 1.0}


def parse_copick_document(doc: Any, source: str | Path, *, particle: str | None = None,
                          run: str | None = None) -> Picks:
    """Picks from a parsed copick pick-file document (see :mod:`tomopick.io.formats.copick`). ``particle``/``run`` fill in
    what the file lacks (they do not override what it states)."""
    if not isinstance(doc, dict) or not isinstance(doc.get("points", []), list):
        raise TomopickError("malformed copick picks JSON (expected an object with a 'points' list)", source)
    name = doc.get("pickable_object_name") or particle
    if not name:
        raise TomopickError("copick picks JSON lacks 'pickable_object_name'"
                            + (f"; {hint}" if (hint := pass_option("particle", "NAME")) else ""), source)
    unit = str(doc.get("unit") or "angstrom").lower()
    if unit not in _UNIT_TO_A:
        raise TomopickError(f"unsupported unit {unit!r} (expected angstrom)", source)
    factor = _UNIT_TO_A[unit]
    points = doc.get("points") or []
    n = len(points)
    xyz = np.zeros((n, 3))
    mats = np.tile(np.eye(4), (n, 1, 1))
    score = np.full(n, np.nan)
    inst = np.zeros(n, dtype=np.int64)
    for i, p in enumerate(points):
        try:
            loc = p["location"]
            xyz[i] = [float(loc["x"]), float(loc["y"]), float(loc["z"])]
            if p.get("transformation_") is not None:
                m = np.asarray(p["transformation_"], dtype=np.float64)
                if m.shape != (4, 4):
                    raise ValueError("transformation_ is not 4x4")
                mats[i] = m
            if p.get("score") is not None:
                score[i] = float(p["score"])
            inst[i] = int(p.get("instance_id") or 0)
        except (KeyError, TypeError, ValueError) as exc:
            raise TomopickError(f"malformed copick picks JSON: point {i} ({type(exc).__name__}: {exc})",
                                source) from None
    if not np.all(np.isfinite(xyz)):
        raise TomopickError("malformed copick picks JSON: non-finite location", source)
    centre = (xyz + mats[:, :3, 3]) * factor
    frame = pd.DataFrame({
        "particle": [str(name)] * n, "x_A": centre[:, 0], "y_A": centre[:, 1], "z_A": centre[:, 2], "score": score,
        "run": [str(doc.get("run_name") or run or "")] * n, "instance_id": inst,
        "user": [str(doc.get("user_id") or "")] * n, "session": [str(doc.get("session_id") or "")] * n,
    })
    for key in _extra_keys(points):  # extra per-point fields tomopick wrote (copick itself ignores them)
        frame[key] = parse_extra([p.get(key) for p in points])
    if doc.get("trust_orientation", True) and n:
        angles = matrix_to_euler_zyz(mats[:, :3, :3])
        for j, col in enumerate(("rot_deg", "tilt_deg", "psi_deg")):
            frame[col] = angles[:, j]
    return with_stated_voxel_size(Picks(frame), _voxel_spacing(doc.get("voxel_spacing"), source))


_POINT_KEYS = frozenset({"location", "transformation_", "instance_id", "score"})


def _extra_keys(points: list[Any]) -> list[str]:
    """Extra scalar fields present in every point (in first-point order)."""
    if not points or not isinstance(points[0], dict):
        return []
    keys = [k for k, v in points[0].items() if k not in _POINT_KEYS and isinstance(v, (int, float, str, type(None)))]
    return [k for k in keys if all(isinstance(p, dict) and k in p and isinstance(p[k], (int, float, str, type(None)))
                                   for p in points)]


def _voxel_spacing(value: Any, source: str | Path) -> float | None:
    """The file's ``voxel_spacing`` (Å, as copick states it; None when null or 0 as the portal writes), kept so that
    a conversion to a pixel format (STAR, Dynamo, IMOD, x,y,z CSV) needs no ``--voxel-size``."""
    if value is None:
        return None
    try:
        spacing = float(value)
    except (TypeError, ValueError):
        spacing = math.nan
    if isinstance(value, bool) or not math.isfinite(spacing) or spacing < 0:
        raise TomopickError(f"malformed copick picks JSON: voxel_spacing must be a positive number, got {value!r}",
                            source)
    return spacing if spacing > 0 else None


def copick_document(picks: Picks, *, particle: str | None = None, run: str | None = None,
                    user_id: str | None = None, session_id: str | None = None,
                    voxel_size_A: float | None = None, source: str | Path | None = None) -> dict[str, Any]:
    """The copick pick-file document for picks of ONE class (keys and order as copick and the portal write).

    Scores are written only where finite (portal files have none); unknown orientations → identity with
    ``trust_orientation: false``.
    """
    names = picks.particles
    if len(names) > 1:
        raise TomopickError(f"a copick picks JSON holds one particle class, these picks have {len(names)} "
                            f"({', '.join(names)}); write to a copick project (copick://…) instead", source)
    name = particle or (names[0] if names else None)
    if not name:
        raise TomopickError("no particle name for the copick picks JSON"
                            + (f"; {hint}" if (hint := pass_option("particle", "NAME")) else ""), source)
    runs = [r for r in picks.runs if r]
    if run is None and len(runs) > 1:
        hint = pass_option("run", "NAME or write to a copick project", otherwise="write to a copick project")
        raise TomopickError(f"picks span {len(runs)} runs; a copick picks JSON holds one ({hint})", source)
    run_name = run if run is not None else (runs[0] if runs else None)
    users = [u for u in dict.fromkeys(picks.frame["user"]) if u]
    sessions = [s for s in dict.fromkeys(picks.frame["session"]) if s]
    angles = picks.angles_deg()
    trust = bool(len(picks)) and bool(np.isfinite(angles).all())
    rots = euler_zyz_to_matrix(np.nan_to_num(angles)) if len(picks) else np.zeros((0, 3, 3))
    points = []
    extras = extra_values(picks)
    for i, (x, y, z) in enumerate(picks.xyz_A):
        t = np.eye(4)
        if trust:
            t[:3, :3] = rots[i]
        point: dict[str, Any] = {"location": {"x": float(x), "y": float(y), "z": float(z)},
                                 "transformation_": t.tolist(),
                                 "instance_id": int(picks.frame["instance_id"].iat[i])}
        s = float(picks.frame["score"].iat[i])
        if math.isfinite(s):
            point["score"] = s
        for key, values in extras.items():  # NaN is not JSON: null
            v = values[i]
            point[key] = None if isinstance(v, float) and not math.isfinite(v) else v
        points.append(point)
    return {
        "pickable_object_name": name,
        "user_id": user_id or (users[0] if users else "tomopick"),
        "session_id": str(session_id if session_id is not None else (sessions[0] if sessions else "0")),
        "run_name": run_name,
        "voxel_spacing": None if voxel_size_A is None else float(voxel_size_A),
        "unit": "angstrom",
        "points": points,
        "trust_orientation": trust if len(picks) else True,
    }
