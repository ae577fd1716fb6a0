"""Robust intensity normalisation — the ONE function used by training and inference alike.

A tomogram is mapped to ``(x - median) / (1.4826 · MAD)`` (a robust z-score), optionally clipped to
``±clip``. The median and MAD are estimated from a deterministic subsample of at most ``max_samples`` voxels
(evenly spaced z-slices, strided in y and x), so that a memory-mapped MRC or a lazy zarr array of any size is
never read whole: memory is bounded by one z-slice plus the samples.

Checkpoints record ``{"method": "robust", "clip": ..., "max_samples": ...}`` (see :func:`robust_config`); the
inference side passes that dict back through :func:`normalisation_kwargs`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

#: Name recorded in checkpoints (``config["normalisation"]["method"]``).
METHOD = "robust"
#: 1 / Φ⁻¹(3/4): turns a MAD into a standard deviation for Gaussian data.
MAD_TO_STD = 1.482602218505602
DEFAULT_CLIP = 5.0
DEFAULT_MAX_SAMPLES = 1 << 20


@dataclass(frozen=True)
class RobustStats:
    """Location and scale of a volume's intensities.

    Attributes
    ----------
    center
        Median of the finite sampled voxels.
    scale
        ``1.4826 · MAD`` of the finite sampled voxels (falls back to the standard deviation when the MAD is 0,
        and to 1.0 for a constant volume, so that dividing by it is always safe).
    n_samples
        How many finite voxels the estimate used.
    minimum, maximum
        Extremes of the finite sampled voxels.
    """

    center: float
    scale: float
    n_samples: int
    minimum: float = float("nan")
    maximum: float = float("nan")

    @property
    def is_constant(self) -> bool:
        """All sampled finite voxels are equal (nothing to normalise, nothing to find)."""
        return bool(self.n_samples > 0 and self.minimum == self.maximum)


def _sample(array: Any, max_samples: int) -> np.ndarray:
    """A deterministic subsample (flat float64) of a 3D array-like, reading one z-slice at a time."""
    shape = tuple(int(s) for s in array.shape)
    if len(shape) != 3:
        flat = np.asarray(array[...], dtype=np.float64).ravel()
        step = max(1, int(np.ceil(flat.size / max_samples)))
        return flat[::step]
    nz, ny, nx = shape
    total = nz * ny * nx
    if total <= max_samples:
        return np.asarray(array[...], dtype=np.float64).ravel()
    # evenly spaced z-slices; within each, a strided (y, x) grid so that the total stays <= max_samples
    n_slices = int(min(nz, max(8, min(64, max_samples // 4096))))
    z_index = np.unique(np.linspace(0, nz - 1, n_slices).round().astype(np.int64))
    per_slice = max(1, max_samples // len(z_index))
    stride = max(1, int(np.ceil(np.sqrt(ny * nx / per_slice))))
    parts = []
    depth = _chunk_depth(array)
    if depth > 1:
        # chunked (zarr): read each z-chunk once, strided, instead of decompressing it again for every slice
        # (CZII OME-Zarr has 184-slice-deep chunks: 64 single-slice reads cost ~27 s of system time)
        for c0 in range(0, nz, depth):
            inside = z_index[(z_index >= c0) & (z_index < c0 + depth)]
            if inside.size:
                block = np.asarray(array[int(inside[0]) : int(inside[-1]) + 1, ::stride, ::stride])
                parts.extend(np.asarray(block[int(z) - int(inside[0])], dtype=np.float64).ravel() for z in inside)
        return np.concatenate(parts)
    for z in z_index:
        plane = np.asarray(array[int(z)])  # one slice in memory (a lazy array reads only this)
        parts.append(np.asarray(plane[::stride, ::stride], dtype=np.float64).ravel())
    return np.concatenate(parts)


def _chunk_depth(array: Any) -> int:
    """z-depth of the storage chunks of a chunked array-like (zarr, dask; also through a wrapper with ``.array``),
    else 1."""
    for candidate in (array, getattr(array, "array", None)):
        chunks = getattr(candidate, "chunks", None)
        if chunks:
            first = chunks[0]
            first = first[0] if isinstance(first, tuple) else first  # dask: per-axis tuples
            try:
                return max(1, int(first))
            except (TypeError, ValueError):
                return 1
    return 1


def robust_stats(array: Any, *, max_samples: int = DEFAULT_MAX_SAMPLES) -> RobustStats:
    """Median and MAD-based scale of a volume, estimated from at most ``max_samples`` voxels.

    Parameters
    ----------
    array
        ``(z, y, x)`` array-like (numpy, memmap, zarr); read one z-slice at a time when it is larger than
        ``max_samples``. Non-finite voxels are ignored.
    max_samples
        Upper bound on the voxels used; arrays no larger than this use every voxel (exact statistics).

    Returns
    -------
    RobustStats
    """
    values = _sample(array, int(max_samples))
    values = values[np.isfinite(values)]
    if values.size == 0:
        return RobustStats(0.0, 1.0, 0)
    center = float(np.median(values))
    scale = MAD_TO_STD * float(np.median(np.abs(values - center)))
    if not scale > 0:
        scale = float(values.std())
    if not scale > 0 or not np.isfinite(scale):
        scale = 1.0
    return RobustStats(center, scale, int(values.size), float(values.min()), float(values.max()))


def normalize_robust(
    array: Any,
    *,
    stats: RobustStats | None = None,
    clip: float | None = DEFAULT_CLIP,
    max_samples: int = DEFAULT_MAX_SAMPLES,
    out_dtype: np.dtype | type = np.float32,
) -> np.ndarray:
    """Robust z-score ``(x - median) / (1.4826 · MAD)``, clipped to ``±clip``; non-finite voxels become 0.

    Parameters
    ----------
    array
        ``(z, y, x)`` (or any shape) array-like. The result is an in-memory array of the same shape, so pass a
        slab of a large tomogram together with ``stats`` computed once on the whole volume.
    stats
        Precomputed :func:`robust_stats` (e.g. of the whole tomogram); estimated from ``array`` if omitted.
    clip
        Clip the result to ``[-clip, clip]`` (``None``: no clipping). Tames gold beads and carbon edges.
    max_samples
        Voxels used to estimate ``stats`` when they are not given.
    out_dtype
        Floating dtype of the result.

    Returns
    -------
    numpy.ndarray
        Same shape as ``array``, dtype ``out_dtype``; a constant input maps to all zeros.

    Examples
    --------
    >>> import numpy as np
    >>> out = normalize_robust(np.array([[[0.0, 1.0, 2.0, 3.0, 100.0]]]))
    >>> [round(float(v), 3) for v in out.ravel()]
    [-1.349, -0.674, 0.0, 0.674, 5.0]
    """
    if stats is None:
        stats = robust_stats(array, max_samples=max_samples)
    data = np.asarray(array)
    out = np.empty(data.shape, dtype=out_dtype)
    np.subtract(data, stats.center, out=out, casting="unsafe")
    out *= np.asarray(1.0 / stats.scale, dtype=out.dtype)
    if np.issubdtype(data.dtype, np.floating):
        np.nan_to_num(out, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    if clip is not None:
        np.clip(out, -clip, clip, out=out)
    return out


def robust_config(clip: float | None = DEFAULT_CLIP, max_samples: int = DEFAULT_MAX_SAMPLES) -> dict[str, Any]:
    """The dict to store as ``config["normalisation"]`` in a checkpoint."""
    return {"method": METHOD, "center": "median", "scale": "mad", "clip": clip, "max_samples": int(max_samples)}


def normalisation_kwargs(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for :func:`normalize_robust` from a checkpoint's ``config["normalisation"]``.

    Raises ``ValueError`` for a method other than ``"robust"``.
    """
    config = dict(config or {"method": METHOD})
    method = config.get("method", METHOD)
    if method != METHOD:
        raise ValueError(f"unsupported normalisation method {method!r} (this tomopick knows {METHOD!r})")
    kwargs: dict[str, Any] = {}
    if "clip" in config:
        kwargs["clip"] = None if config["clip"] is None else float(config["clip"])
    if "max_samples" in config:
        kwargs["max_samples"] = int(config["max_samples"])
    return kwargs
