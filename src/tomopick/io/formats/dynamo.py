"""Dynamo tables (``.tbl``): whitespace-separated numbers, one particle per row, at least 26 columns.

Columns used (1-based, Dynamo's table convention): 1 tag, 2 aligned, 3 averaged, 4-6 ``dx dy dz`` shifts
(pixels), 7-9 ``tdrot tilt narot`` (Dynamo ZXZ; converted with :func:`tomopick.data.rotations.dynamo_angles_to_matrix`),
10 ``cc`` (score; all zeros = unscored), 20 ``tomo`` (tomogram index), 21 ``reg`` (region),
22 ``class`` (particle label),
24-26 ``x y z`` (pixels; the particle centre is ``x + dx`` …). Written with the standard 35 columns + ``apix``
(column 36, Dynamo's pixel size), so the pixel size round-trips; reading takes ``voxel_size_A=`` first, else
a positive ``apix``, else asks for ``--voxel-size``.

Runs are tomogram indices: ``tomo`` is 1, 2, … in order of first appearance when writing (or ``tomo_index=``);
reading names runs ``run=`` (one tomogram) else ``"tomo<N>"``. Class labels map to names through ``particles=``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopick.data import Picks
from tomopick.data.rotations import dynamo_angles_to_matrix, matrix_to_dynamo_angles
from tomopick.errors import TomopickError
from tomopick.io.formats._common import (
    class_labels,
    class_names,
    positive_voxel_size,
    run_names,
    with_stated_voxel_size,
)
from tomopick.io.registry import Format, PicksCapabilities, register

N_COLUMNS = 36  # 35 standard columns + apix (36)


def read_dynamo(path: Path, *, voxel_size_A: Any = None, particle: str | None = None, particles: Any = None,
                run: str | None = None, **_: Any) -> Picks:
    """Read a Dynamo table (see the module docstring)."""
    path = Path(path)
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = np.loadtxt(path, dtype=np.float64, ndmin=2, comments=("#", "%"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise TomopickError(f"malformed Dynamo table ({str(exc).splitlines()[0]})", path) from None
    if table.size == 0:
        table = np.zeros((0, N_COLUMNS))
    if table.shape[1] < 26:
        raise TomopickError(f"malformed Dynamo table: {table.shape[1]} columns, need at least 26 (x y z are 24-26)",
                            path)
    if voxel_size_A is None and table.shape[1] >= 36 and len(table) and np.all(table[:, 35] > 0):
        voxel_size_A = float(table[0, 35])
    vs = positive_voxel_size(voxel_size_A, path, "a Dynamo table")
    if not np.all(np.isfinite(table[:, [3, 4, 5, 23, 24, 25]])):
        raise TomopickError("malformed Dynamo table: non-finite coordinates", path)
    xyz = (table[:, 23:26] + table[:, 3:6]) * vs
    tomo = table[:, 19].astype(np.int64)
    tomos = list(dict.fromkeys(tomo.tolist()))
    if run is not None and len(tomos) <= 1:
        runs = [run] * len(table)
    else:
        runs = [f"tomo{t}" for t in tomo]
    labels = table[:, 21].astype(np.int64)
    if particle is None and len(table) and np.all(labels == 0):
        labels = None  # table without classes
    try:
        names = class_names(labels, len(table), particle=particle, particles=particles)
    except TomopickError as exc:
        raise TomopickError(exc.message, path) from None
    rot = dynamo_angles_to_matrix(table[:, 6:9]) if len(table) else None
    score = table[:, 9] if np.any(table[:, 9] != 0) else None  # an all-zero cc column means "not scored"
    return with_stated_voxel_size(Picks.from_arrays(xyz, names, score=score, rotations=rot, run=runs), vs)


def write_dynamo(picks: Picks, path: Path, *, voxel_size_A: Any = None, run: str | None = None, particles: Any = None,
                 tomo_index: int | None = None, **_: Any) -> None:
    """Write a Dynamo table with 36 columns (see the module docstring)."""
    path = Path(path)
    vs = positive_voxel_size(voxel_size_A, path, "a Dynamo table")
    n = len(picks)
    table = np.zeros((n, N_COLUMNS))
    table[:, 0] = np.arange(1, n + 1)
    table[:, 1] = 1
    table[:, 2] = 1
    if picks.has_rotations:
        table[:, 6:9] = matrix_to_dynamo_angles(picks.rotation_matrices())
    scores = picks.scores
    table[:, 9] = np.where(np.isfinite(scores), scores, 0.0)
    runs = run_names(picks, run)
    order = {r: i + 1 for i, r in enumerate(dict.fromkeys(runs))}
    table[:, 19] = [tomo_index if tomo_index is not None else order[r] for r in runs]
    labels = class_labels(picks, particles, path)
    table[:, 20] = labels
    table[:, 21] = labels
    table[:, 23:26] = picks.xyz_A / vs
    table[:, 35] = vs
    int_cols = {0, 1, 2, 19, 20, 21}
    fmt = ["%d" if i in int_cols else "%.10g" for i in range(N_COLUMNS)]
    np.savetxt(path, table, fmt=fmt, delimiter=" ")


register(Format(name="dynamo", kind="picks", extensions=(".tbl",), reader=read_dynamo, writer=write_dynamo,
                description="Dynamo table: pixels (x y z cols 24-26), tdrot/tilt/narot, cc, tomo, class",
                capabilities=PicksCapabilities(scores=True, orientations=True, runs=False, classes="number",
                                               needs_pixel_size=True)))
