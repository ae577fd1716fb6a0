"""A tomogram: a ``(z, y, x)`` array — in memory, memory-mapped MRC or lazy zarr — with its voxel size."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tomopick.data.coords import voxel_size_zyx
from tomopick.errors import NonFiniteError, pass_option


@dataclass(frozen=True)
class Tomogram:
    """A 3D volume with physical scale.

    Attributes
    ----------
    data
        Array-like ``(z, y, x)``: ``numpy.ndarray``, ``numpy.memmap`` or ``zarr.Array`` (anything with ``shape``,
        ``dtype`` and numpy slicing). Never read whole unless :meth:`load` is called.
    voxel_size_A
        Voxel size in Å per axis, ``(z, y, x)``.
    origin_xyz_A
        Header origin in Å, in **x, y, z** order as MRC headers and OME-Zarr translations are read (unlike
        ``voxel_size_A`` and the array, which are ``z, y, x``; :attr:`origin_zyx_A` gives it in that order). Kept
        as metadata: picks are always relative to voxel (0, 0, 0). ``origin_A`` (keyword and attribute) is a
        deprecated alias.
    source
        Where it came from (path or URI), for messages.
    metadata
        Free-form extras (MRC header fields, zarr attributes, copick run/type …).
    """

    data: Any
    voxel_size_A: tuple[float, float, float]
    origin_xyz_A: tuple[float, float, float] = (0.0, 0.0, 0.0)
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(getattr(self.data, "shape", ())) != 3:
            raise ValueError(f"a tomogram must be 3D (z, y, x), got shape {getattr(self.data, 'shape', None)}")
        object.__setattr__(self, "voxel_size_A", tuple(float(v) for v in voxel_size_zyx(self.voxel_size_A)))
        object.__setattr__(self, "origin_xyz_A", tuple(float(v) for v in self.origin_xyz_A))

    @property
    def origin_zyx_A(self) -> tuple[float, float, float]:
        """The header origin in Å in ``(z, y, x)`` order, the order of ``voxel_size_A`` and of the array."""
        x, y, z = self.origin_xyz_A
        return (z, y, x)

    @property
    def origin_A(self) -> tuple[float, float, float]:
        """Deprecated alias of :attr:`origin_xyz_A` (``(x, y, z)``, Å)."""
        warnings.warn("Tomogram.origin_A is deprecated: use origin_xyz_A (x, y, z) or origin_zyx_A (z, y, x)",
                      DeprecationWarning, stacklevel=2)
        return self.origin_xyz_A

    @classmethod
    def from_array(cls, array: np.ndarray, voxel_size_A: float | tuple[float, float, float], **kw: Any) -> "Tomogram":
        return cls(np.asarray(array), voxel_size_A, **kw)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.data.dtype)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize

    @property
    def isotropic_voxel_size_A(self) -> float:
        """The voxel size if all axes agree within 0.1 %, else the mean (callers that need exactness check
        :attr:`is_isotropic`)."""
        return float(np.mean(self.voxel_size_A))

    @property
    def is_isotropic(self) -> bool:
        vs = np.asarray(self.voxel_size_A)
        return bool(np.allclose(vs, vs[0], rtol=1e-3))

    def load(self, dtype: np.dtype | type | None = None) -> np.ndarray:
        """The whole volume as an in-memory numpy array (optionally cast)."""
        array = np.asarray(self.data[...])
        return array if dtype is None else array.astype(dtype, copy=False)

    def region(self, slices: tuple[slice, slice, slice]) -> np.ndarray:
        """A ``(z, y, x)`` sub-volume as a numpy array; reads only that part of a lazy array."""
        return np.asarray(self.data[slices])

    def with_data(self, data: Any, voxel_size_A: Any | None = None) -> "Tomogram":
        return replace(self, data=data, voxel_size_A=self.voxel_size_A if voxel_size_A is None else voxel_size_A)

    def iter_slabs(self, depth: int = 32):
        """Yield ``(z0, slab)`` pairs of at most ``depth`` z-slices each, as numpy arrays (bounded memory)."""
        for z0 in range(0, self.shape[0], depth):
            yield z0, np.asarray(self.data[z0 : z0 + depth])

    def value_stats(self, depth: int = 32) -> dict[str, float]:
        """min, max, mean, std and counts of non-finite values, computed slab by slab (bounded memory)."""
        n = 0
        total = 0.0
        total_sq = 0.0
        vmin, vmax = np.inf, -np.inf
        n_nan = n_inf = 0
        for _, slab in self.iter_slabs(depth):
            slab = slab.astype(np.float64, copy=False)
            finite = np.isfinite(slab)
            n_nan += int(np.isnan(slab).sum())
            n_inf += int(np.isinf(slab).sum())
            values = slab[finite] if not finite.all() else slab.ravel()
            if values.size:
                n += values.size
                total += float(values.sum())
                total_sq += float(np.square(values).sum())
                vmin = min(vmin, float(values.min()))
                vmax = max(vmax, float(values.max()))
        mean = total / n if n else float("nan")
        var = max(total_sq / n - mean * mean, 0.0) if n else float("nan")
        return {"min": vmin if n else float("nan"), "max": vmax if n else float("nan"), "mean": mean,
                "std": float(np.sqrt(var)), "n_nan": n_nan, "n_inf": n_inf}

    def check_finite(self, allow_nonfinite: bool = False, depth: int = 32) -> int:
        """Count NaN/Inf voxels; raise :class:`NonFiniteError` if there are any and ``allow_nonfinite`` is False."""
        bad = 0
        for _, slab in self.iter_slabs(depth):
            if np.issubdtype(slab.dtype, np.floating) or np.issubdtype(slab.dtype, np.complexfloating):
                bad += int((~np.isfinite(slab)).sum())
        if bad and not allow_nonfinite:
            raise NonFiniteError(
                f"tomogram holds {bad} NaN/Inf voxel(s); fix the file"
                + (f" or {hint} to treat them as 0" if (hint := pass_option("allow_nonfinite")) else ""),
                self.source or None,
            )
        return bad


_dataclass_init = Tomogram.__init__


def _init_accepting_origin_A(self: Tomogram, *args: Any, origin_A: Any = None, **kwargs: Any) -> None:
    """The dataclass ``__init__``, also accepting the deprecated keyword ``origin_A`` (= ``origin_xyz_A``; it wins
    over ``origin_xyz_A``, so ``dataclasses.replace(t, origin_A=...)`` works too)."""
    if origin_A is not None:
        warnings.warn("Tomogram(origin_A=...) is deprecated: use origin_xyz_A (x, y, z)", DeprecationWarning,
                      stacklevel=2)
        kwargs["origin_xyz_A"] = origin_A
    _dataclass_init(self, *args, **kwargs)


_init_accepting_origin_A.__wrapped__ = _dataclass_init  # type: ignore[attr-defined]
Tomogram.__init__ = _init_accepting_origin_A  # type: ignore[method-assign]
