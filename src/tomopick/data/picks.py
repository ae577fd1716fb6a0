"""Particle picks: one table for every class, run and source format.

Columns (always present, in this order):

==============  =========  ==========================================================================
column          dtype      meaning
==============  =========  ==========================================================================
``particle``    str        class name (copick ``object_name``)
``x_A``         float64    position in Å, origin at the centre of voxel (0, 0, 0)
``y_A``         float64
``z_A``         float64
``score``       float64    confidence, NaN when the source has none
``rot_deg``     float64    ZYZ Euler angles in degrees (see :mod:`tomopick.data.rotations`); NaN when unknown
``tilt_deg``    float64
``psi_deg``     float64
``run``         str        tomogram / run name ("" when unknown)
``instance_id`` int64      instance label (0 = none)
``user``        str        copick user id ("" when unknown)
``session``     str        copick session id ("" when unknown)
==============  =========  ==========================================================================

Further (*extra*) columns — e.g. the per-pick context of :mod:`tomopick.segment` (``compartment_id``,
``compartment_class``, ``distance_to_membrane_A``, ``on_membrane``) — are kept after these, numeric or text,
added with :meth:`Picks.with_extra`; picks formats that can store them write them (CSV, STAR, copick JSON).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from tomopick.data.coords import VoxelSize, angstrom_to_index, angstrom_to_voxel, inside_volume, voxel_to_angstrom
from tomopick.data.rotations import euler_zyz_to_matrix, matrix_to_euler_zyz

COLUMNS: tuple[str, ...] = (
    "particle", "x_A", "y_A", "z_A", "score", "rot_deg", "tilt_deg", "psi_deg", "run", "instance_id", "user",
    "session",
)
_FLOAT = ("x_A", "y_A", "z_A", "score", "rot_deg", "tilt_deg", "psi_deg")
_STR = ("particle", "run", "user", "session")
ANGLE_COLUMNS = ("rot_deg", "tilt_deg", "psi_deg")
XYZ_COLUMNS = ("x_A", "y_A", "z_A")


def _normalise(frame: pd.DataFrame) -> pd.DataFrame:
    missing_xyz = [c for c in XYZ_COLUMNS if c not in frame.columns]
    if missing_xyz:
        raise ValueError(f"picks table lacks column(s) {', '.join(missing_xyz)}")
    out = pd.DataFrame(index=pd.RangeIndex(len(frame)))
    for col in COLUMNS:
        if col in frame.columns:
            values = frame[col].to_numpy()
        elif col in _FLOAT:
            values = np.full(len(frame), np.nan)
        elif col == "instance_id":
            values = np.zeros(len(frame), dtype=np.int64)
        else:
            values = np.full(len(frame), "", dtype=object)
        if col in _FLOAT:
            out[col] = pd.to_numeric(pd.Series(values), errors="raise").astype(np.float64).to_numpy()
        elif col == "instance_id":
            out[col] = pd.Series(values).fillna(0).astype(np.int64).to_numpy()
        else:
            out[col] = pd.Series(values, dtype=object).fillna("").astype(str).to_numpy(dtype=object)
    for col in frame.columns:
        if col in COLUMNS:
            continue
        values = frame[col].to_numpy()
        if values.dtype.kind in "biuf":
            out[str(col)] = values
        else:
            out[str(col)] = pd.Series(values, dtype=object).fillna("").astype(str).to_numpy(dtype=object)
    return out


@dataclass(frozen=True)
class Picks:
    """A table of picks (see the module docstring for the columns). Construct with :meth:`from_frame`,
    :meth:`from_arrays` or :meth:`empty`; the frame is normalised to the fixed column set and dtypes."""

    frame: pd.DataFrame

    def __post_init__(self) -> None:
        object.__setattr__(self, "frame", _normalise(self.frame))

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def empty(cls) -> "Picks":
        return cls(pd.DataFrame({c: [] for c in XYZ_COLUMNS}))

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> "Picks":
        return cls(frame)

    @classmethod
    def from_arrays(
        cls,
        xyz_A: np.ndarray,
        particle: str | Sequence[str],
        *,
        score: np.ndarray | None = None,
        rotations: np.ndarray | None = None,
        run: str | Sequence[str] = "",
        instance_id: np.ndarray | None = None,
        user: str = "",
        session: str = "",
    ) -> "Picks":
        """Picks from positions ``(n, 3)`` ``(x, y, z)`` in Å and optional scores ``(n,)``, rotation matrices
        ``(n, 3, 3)`` and instance ids ``(n,)``."""
        xyz = np.asarray(xyz_A, dtype=np.float64).reshape(-1, 3)
        n = len(xyz)
        data: dict[str, object] = {
            "particle": [particle] * n if isinstance(particle, str) else list(particle),
            "x_A": xyz[:, 0], "y_A": xyz[:, 1], "z_A": xyz[:, 2],
            "run": [run] * n if isinstance(run, str) else list(run),
            "user": [user] * n, "session": [session] * n,
        }
        if score is not None:
            data["score"] = np.asarray(score, dtype=np.float64).reshape(n)
        if rotations is not None:
            angles = matrix_to_euler_zyz(np.asarray(rotations).reshape(n, 3, 3)) if n else np.zeros((0, 3))
            for i, col in enumerate(ANGLE_COLUMNS):
                data[col] = angles[:, i]
        if instance_id is not None:
            data["instance_id"] = np.asarray(instance_id, dtype=np.int64).reshape(n)
        return cls(pd.DataFrame(data))

    @classmethod
    def from_voxels(cls, zyx_vox: np.ndarray, voxel_size_A: VoxelSize, particle: str | Sequence[str], **kw) -> "Picks":
        """Picks from voxel coordinates ``(n, 3)`` ``(z, y, x)``; keywords as :meth:`from_arrays`."""
        return cls.from_arrays(voxel_to_angstrom(zyx_vox, voxel_size_A), particle, **kw)

    @classmethod
    def concat(cls, items: Iterable["Picks"]) -> "Picks":
        frames = [p.frame for p in items if len(p)]
        return cls(pd.concat(frames, ignore_index=True)) if frames else cls.empty()

    # -- access --------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        counts = ", ".join(f"{k}: {v}" for k, v in self.counts().items())
        return f"Picks({len(self)} picks; {counts})"

    @property
    def xyz_A(self) -> np.ndarray:
        """Positions ``(n, 3)`` ``(x, y, z)`` in Å."""
        return self.frame[list(XYZ_COLUMNS)].to_numpy(dtype=np.float64)

    @property
    def scores(self) -> np.ndarray:
        return self.frame["score"].to_numpy(dtype=np.float64)

    @property
    def has_scores(self) -> bool:
        return bool(len(self)) and bool(np.isfinite(self.scores).any())

    @property
    def has_rotations(self) -> bool:
        return bool(len(self)) and bool(np.isfinite(self.frame[list(ANGLE_COLUMNS)].to_numpy()).all())

    @property
    def particles(self) -> list[str]:
        """Class names present, in order of first appearance."""
        return list(dict.fromkeys(self.frame["particle"]))

    @property
    def runs(self) -> list[str]:
        return list(dict.fromkeys(self.frame["run"]))

    def angles_deg(self) -> np.ndarray:
        """ZYZ Euler angles ``(n, 3)`` in degrees (NaN where unknown)."""
        return self.frame[list(ANGLE_COLUMNS)].to_numpy(dtype=np.float64)

    def rotation_matrices(self) -> np.ndarray:
        """Rotation matrices ``(n, 3, 3)`` (identity where the orientation is unknown)."""
        angles = np.nan_to_num(self.angles_deg(), nan=0.0)
        return euler_zyz_to_matrix(angles) if len(self) else np.zeros((0, 3, 3))

    def voxel_indices(self, voxel_size_A: VoxelSize) -> np.ndarray:
        """Nearest voxel indices ``(n, 3)`` ``(z, y, x)``."""
        return angstrom_to_index(self.xyz_A, voxel_size_A)

    def voxel_coords(self, voxel_size_A: VoxelSize) -> np.ndarray:
        """Continuous voxel coordinates ``(n, 3)`` ``(z, y, x)``."""
        return angstrom_to_voxel(self.xyz_A, voxel_size_A)

    def inside(self, shape_zyx: Sequence[int], voxel_size_A: VoxelSize) -> np.ndarray:
        """Boolean mask ``(n,)`` of picks inside a volume of ``shape_zyx`` voxels."""
        return inside_volume(self.xyz_A, shape_zyx, voxel_size_A)

    def counts(self) -> dict[str, int]:
        """Number of picks per class, in order of first appearance."""
        return {name: int((self.frame["particle"] == name).sum()) for name in self.particles}

    # -- selection -----------------------------------------------------------------------------------------
    def select(self, mask: np.ndarray | pd.Series) -> "Picks":
        return Picks(self.frame[np.asarray(mask, dtype=bool)].reset_index(drop=True))

    def for_particle(self, name: str) -> "Picks":
        return self.select(self.frame["particle"] == name)

    def for_run(self, run: str) -> "Picks":
        return self.select(self.frame["run"] == run)

    def with_columns(self, **values: object) -> "Picks":
        """A copy with columns replaced (scalars broadcast), e.g. ``picks.with_columns(run="TS_5_4")``."""
        frame = self.frame.copy()
        for key, value in values.items():
            if key not in COLUMNS:
                raise KeyError(f"unknown picks column {key!r}")
            frame[key] = value
        return Picks(frame)

    @property
    def extra_columns(self) -> list[str]:
        """Names of the columns beyond the fixed set, in order."""
        return [c for c in self.frame.columns if c not in COLUMNS]

    def with_extra(self, **values: object) -> "Picks":
        """A copy with extra columns added or replaced (``(n,)`` arrays or scalars), e.g.
        ``picks.with_extra(distance_to_membrane_A=d)``; fixed columns go through :meth:`with_columns`."""
        frame = self.frame.copy()
        for key, value in values.items():
            if key in COLUMNS:
                raise KeyError(f"{key!r} is a fixed picks column; use with_columns")
            frame[key] = value
        return Picks(frame)

    def sorted(self) -> "Picks":
        """Stable order: run, particle, then original order."""
        return Picks(self.frame.sort_values(["run", "particle"], kind="stable").reset_index(drop=True))
