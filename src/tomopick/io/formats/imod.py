"""IMOD models (``.mod``) through ``imodmodel``: scattered points, one IMOD object per particle class.

Positions are IMOD model coordinates in pixels of the tomogram they were clicked on, taken with voxel (0, 0, 0)
at 0 (no half-pixel shift). The model header's pixel size (``pixelsize`` with ``units`` −10 = Å, −9 = nm) is
written and read back; without it pass ``voxel_size_A``. Object *k* (1-based) holds the class with label *k*
(empty objects fill gaps); names come back through ``particles=`` / ``particle=``. IMOD carries no scores or
orientations. Points are stored as float32 (IMOD's format): ~1e-4 pixel precision.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.io.formats._common import class_labels, class_names, positive_voxel_size, with_stated_voxel_size
from tomopick.io.registry import Format, PicksCapabilities, register

_UNITS_TO_A = {-10: 1.0, -9: 10.0, -6: 1e4}


def read_imod(path: Path, *, voxel_size_A: Any = None, particle: str | None = None, particles: Any = None,
              run: str | None = None, **_: Any) -> Picks:
    """Read the points of every object of an IMOD model (see the module docstring)."""
    from imodmodel import ImodModel

    path = Path(path)
    try:
        model = ImodModel.from_file(path)
    except Exception as exc:  # noqa: BLE001 - the parser raises struct/pydantic/value errors on bad input
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TomopickError(f"malformed IMOD model ({msg})", path) from None
    header = model.header
    if voxel_size_A is None and int(header.units) in _UNITS_TO_A and float(header.pixelsize) > 0:
        voxel_size_A = float(header.pixelsize) * _UNITS_TO_A[int(header.units)]
    vs = positive_voxel_size(voxel_size_A, path, "an IMOD model")
    pts, labels = [], []
    for k, obj in enumerate(model.objects):
        for contour in obj.contours:
            p = np.asarray(contour.points, dtype=np.float64).reshape(-1, 3)
            pts.append(p)
            labels.extend([k + 1] * len(p))
    xyz = np.concatenate(pts) * vs if pts else np.zeros((0, 3))
    try:
        names = class_names(labels, len(xyz), particle=particle, particles=particles)
    except TomopickError as exc:
        raise TomopickError(exc.message, path) from None
    return with_stated_voxel_size(Picks.from_arrays(xyz, names, run=run or ""), vs)


def write_imod(picks: Picks, path: Path, *, voxel_size_A: Any = None, particles: Any = None, **_: Any) -> None:
    """Write scattered-point objects, one per class label (see the module docstring)."""
    from imodmodel.models import Contour, ImodModel, Object

    path = Path(path)
    vs = positive_voxel_size(voxel_size_A, path, "an IMOD model")
    labels = class_labels(picks, particles, path)
    px = (picks.xyz_A / vs).astype(np.float32)
    model = ImodModel()
    for label in range(1, int(labels.max(initial=0)) + 1):
        obj = Object()
        sel = px[labels == label]
        if len(sel):
            obj.contours.append(Contour(points=sel))
        obj.header.flags.scattered = True
        obj.header.flags.open = False
        obj.update_sizes()
        model.objects.append(obj)
    model.header.pixelsize = float(vs)
    model.header.units = -10
    if len(px):
        model.header.xmax, model.header.ymax, model.header.zmax = (int(np.ceil(v)) + 1 for v in px.max(axis=0))
    model.update_sizes()
    model.to_file(path)


register(Format(name="imod", kind="picks", extensions=(".mod",), reader=read_imod, writer=write_imod,
                description="IMOD model: scattered points in pixels, one object per class (no scores/angles)",
                capabilities=PicksCapabilities(scores=False, orientations=False, runs=False, classes="number",
                                               needs_pixel_size=True)))
