"""Where each pick is: its compartment, its signed distance to the nearest membrane, whether it sits on one, and an
initial orientation from the membrane normal (pure: picks and label volumes in, picks out).

Columns added by :func:`pick_context`:

=========================  =======  =====================================================================
column                     dtype    meaning
=========================  =======  =====================================================================
``compartment_id``         int64    instance id at the pick's voxel (0: none)
``compartment_class``      str      class at the pick's voxel: background / membrane / lumen / gold / carbon
``distance_to_membrane_A`` float64  Å from the pick centre to the nearest membrane voxel outside the particle
                                    (see below); negative in a lumen; NaN when there is no such membrane
``membrane_gap_A``         float64  ``|distance| − radius_A`` of the pick's class (its surface to the membrane)
``on_membrane``            int64    1 when ``membrane_gap_A ≤ on_membrane_gap_A`` (membrane-bound), else 0
=========================  =======  =====================================================================

A particle cannot contain membrane: membrane voxels closer to a pick's centre than its radius plus one voxel are
the particle's own density called membrane by the segmentation (a virus-like particle's protein shell looks like a
small vesicle), so distances are measured to the nearest membrane voxel beyond that (``ContextOptions.skip_own_body``).

For on-membrane picks beside (not inside) a membrane and without an orientation, the rotation is set so that the
particle's z axis is the membrane normal pointing from the membrane to the pick (spin about it unknown: 0;
convention: :mod:`tomopick.data.rotations`).
"""

from __future__ import annotations

import ast
from typing import Any, Mapping

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tomopick.data import Picks
from tomopick.data.rotations import matrix_to_euler_zyz
from tomopick.segment.instances import CLASS_NAMES, LUMEN, MEMBRANE
from tomopick.simulate.context import rotation_from_normal

CONTEXT_COLUMNS: tuple[str, ...] = ("compartment_id", "compartment_class", "distance_to_membrane_A",
                                    "membrane_gap_A", "on_membrane")


class ContextOptions(BaseModel):
    """How picks are put in context.

    Attributes
    ----------
    radii_A
        Particle radius per class (Å) for ``membrane_gap_A``; classes not listed use ``default_radius_A``.
    on_membrane_gap_A
        A pick is on the membrane when its surface is at most this far from it.
    orient
        Set the orientation of on-membrane picks that have none from the membrane normal.
    skip_own_body
        Ignore membrane voxels within the pick's radius plus one voxel (the particle itself); off: the nearest
        membrane voxel whatever its distance (0 when the centre lies in membrane).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    radii_A: dict[str, float] = Field(default_factory=dict)
    default_radius_A: float = Field(default=60.0, ge=0)
    on_membrane_gap_A: float = Field(default=40.0, ge=0)
    orient: bool = True
    skip_own_body: bool = True


def membrane_distances(classes: np.ndarray, zyx_vox: np.ndarray, voxel_size_A: float,
                       exclude_vox: np.ndarray | float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Distance (Å) from points to the nearest membrane voxel and the unit direction ``(n, 3)`` (z, y, x) from
    that voxel to the point (a membrane normal for points beside a membrane).

    A k-d tree over the membrane's *surface* voxels (membrane voxels with a non-membrane face neighbour) answers
    exactly what a Euclidean distance transform would at the points, without a full-volume transform; points inside
    the membrane get 0. ``exclude_vox`` (per point or one value, voxels): only surface voxels at least this far from
    the point count (then no point is "inside"). ``NaN`` distances when there is no (such) membrane.
    """
    from scipy import ndimage
    from scipy.spatial import cKDTree

    pts = np.asarray(zyx_vox, dtype=np.float64).reshape(-1, 3)
    n = len(pts)
    membrane = classes == MEMBRANE
    if n == 0 or not membrane.any():
        return np.full(n, np.nan), np.full((n, 3), np.nan)
    surface = membrane & ~ndimage.binary_erosion(membrane, border_value=1)
    coords = np.argwhere(surface).astype(np.float32)
    tree = cKDTree(coords)
    dist, idx = tree.query(pts)
    vox = np.clip(np.rint(pts).astype(int), 0, np.asarray(classes.shape) - 1)
    inside = membrane[tuple(vox.T)]
    if exclude_vox is not None:
        ex = np.broadcast_to(np.asarray(exclude_vox, dtype=np.float64), (n,))
        inside &= ex <= 0
        for j in np.nonzero(dist < ex)[0]:  # nearest beyond the exclusion: widen the neighbour count until found
            k = 64
            while True:
                kk = min(k, len(coords))
                d, i = tree.query(pts[j], k=kk)
                d, i = np.atleast_1d(d), np.atleast_1d(i)
                far = np.nonzero(d >= ex[j])[0]
                if len(far):
                    dist[j], idx[j] = d[far[0]], i[far[0]]
                    break
                if kk == len(coords):
                    dist[j], idx[j] = np.inf, 0
                    break
                k *= 8
    direction = pts - coords[idx]
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    direction = np.divide(direction, norm, out=np.full_like(direction, np.nan), where=norm > 0)
    dist = dist * float(voxel_size_A)
    dist[inside] = 0.0
    missing = ~np.isfinite(dist)
    dist[missing] = np.nan
    direction[missing] = np.nan
    return dist, direction


def pick_context(picks: Picks, classes: np.ndarray, instances: np.ndarray, voxel_size_A: float,
                 options: ContextOptions | None = None) -> Picks:
    """Picks with the context columns (:data:`CONTEXT_COLUMNS`) added.

    Parameters
    ----------
    picks
        Picks in Å on the frame of the label volumes (origin at the centre of voxel (0, 0, 0)).
    classes, instances
        ``(z, y, x)`` class map (uint8) and instance ids, e.g. from :mod:`tomopick.segment.instances`.
    voxel_size_A
        Isotropic voxel size of the label volumes.
    """
    options = options or ContextOptions()
    n = len(picks)
    if n == 0:
        return picks.with_extra(**{c: [] for c in CONTEXT_COLUMNS})
    vs = float(voxel_size_A)
    pts = picks.voxel_coords(vs)
    vox = np.clip(np.rint(pts).astype(int), 0, np.asarray(classes.shape) - 1)
    cls = classes[tuple(vox.T)]
    inst = instances[tuple(vox.T)].astype(np.int64)
    radii = np.array([float(options.radii_A.get(p, options.default_radius_A)) for p in picks.frame["particle"]])
    dist, direction = membrane_distances(classes, pts, vs, radii / vs + 1.0 if options.skip_own_body else None)
    signed = np.where(cls == LUMEN, -dist, dist)
    gap = np.abs(signed) - radii
    on = (np.isfinite(gap) & (gap <= options.on_membrane_gap_A)).astype(np.int64)
    out = picks.with_extra(compartment_id=inst, compartment_class=[CLASS_NAMES.get(int(c), str(int(c))) for c in cls],
                           distance_to_membrane_A=signed, membrane_gap_A=gap, on_membrane=on)
    if options.orient:
        angles = out.angles_deg()
        todo = (on == 1) & (dist > 0) & ~np.isfinite(angles).all(axis=1) & np.isfinite(direction).all(axis=1)
        if todo.any():
            frame = out.frame.copy()
            mats = np.stack([rotation_from_normal(d[::-1], 0.0) for d in direction[todo]])
            eul = matrix_to_euler_zyz(mats)
            for j, col in enumerate(("rot_deg", "tilt_deg", "psi_deg")):
                frame.loc[todo, col] = eul[:, j]
            out = Picks(frame)
    return out


# -- --where: a small safe expression language over pick columns ------------------------------------------------
_COMPARE = {ast.Lt: np.less, ast.LtE: np.less_equal, ast.Gt: np.greater, ast.GtE: np.greater_equal,
            ast.Eq: np.equal, ast.NotEq: np.not_equal}
_FUNCS = {"abs": np.abs}


class WhereError(ValueError):
    """A ``--where`` expression that cannot be parsed or names an unknown column."""


def parse_where(text: str) -> ast.Expression:
    """Parse a filter such as ``"distance_to_membrane_A < 40 and compartment_class == 'lumen'"``.

    Grammar: comparisons (``< <= > >= == !=``, chains allowed) of columns, numbers and quoted strings, joined by
    ``and`` / ``or`` / ``not`` and parentheses, and ``abs(…)``. The tree is checked node by node: nothing else
    (attribute access, calls other than ``abs``, subscripts …) is accepted, and it is never passed to ``eval``.
    """
    try:
        tree = ast.parse(str(text).strip(), mode="eval")
    except SyntaxError as exc:
        raise WhereError(f"cannot parse {text!r} ({exc.msg})") from None
    allowed = (ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd, ast.Compare,
               ast.Name, ast.Load, ast.Constant, ast.Call, *_COMPARE)
    for node in ast.walk(tree):
        if not isinstance(node, allowed):
            raise WhereError(f"{text!r}: {type(node).__name__} is not allowed (use columns, numbers, 'text', "
                             "comparisons, and/or/not, abs())")
        if isinstance(node, ast.Call):
            func = node.func
            if not isinstance(func, ast.Name) or func.id not in _FUNCS or len(node.args) != 1 or node.keywords:
                raise WhereError(f"{text!r}: only abs(x) may be called")
        if isinstance(node, ast.Constant) and not isinstance(node.value, (int, float, str)):
            raise WhereError(f"{text!r}: constant {node.value!r} is not a number or text")
    return tree


def _value(node: ast.AST, columns: Mapping[str, Any], text: str) -> Any:
    if isinstance(node, ast.Expression):
        return _value(node.body, columns, text)
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        if node.id not in columns:
            raise WhereError(f"{text!r}: unknown column {node.id!r} (columns: {', '.join(columns)})")
        return np.asarray(columns[node.id])
    if isinstance(node, ast.Call):
        return _FUNCS[node.func.id](_value(node.args[0], columns, text))  # type: ignore[union-attr]
    if isinstance(node, ast.UnaryOp):
        v = _value(node.operand, columns, text)
        if isinstance(node.op, ast.Not):
            return ~np.asarray(v, dtype=bool)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BoolOp):
        parts = [np.asarray(_value(v, columns, text), dtype=bool) for v in node.values]
        out = parts[0]
        for p in parts[1:]:
            out = (out & p) if isinstance(node.op, ast.And) else (out | p)
        return out
    if isinstance(node, ast.Compare):
        left = _value(node.left, columns, text)
        result = None
        for op, right_node in zip(node.ops, node.comparators):
            right = _value(right_node, columns, text)
            try:
                part = _COMPARE[type(op)](left, right)
            except TypeError:
                raise WhereError(f"{text!r}: cannot compare {left!r} with {right!r}") from None
            result = part if result is None else (result & part)
            left = right
        return result
    raise WhereError(f"{text!r}: unsupported expression")


def where_mask(picks: Picks, text: str) -> np.ndarray:
    """Boolean ``(n,)``: the picks for which the :func:`parse_where` expression holds (NaN compares false)."""
    tree = parse_where(text)
    columns = {c: picks.frame[c].to_numpy() for c in picks.frame.columns}
    columns = {c: (v.astype(str) if v.dtype == object else v) for c, v in columns.items()}
    with np.errstate(invalid="ignore"):
        mask = np.asarray(_value(tree, columns, text))
    if mask.dtype != bool:
        raise WhereError(f"{text!r} is not a condition (e.g. distance_to_membrane_A < 40)")
    return np.broadcast_to(mask, (len(picks),)).copy()
