"""TIFF stacks (one page per z-slice) through ``tifffile``; ImageJ metadata carries the voxel size.

Reading memory-maps uncompressed contiguous stacks (else reads them); the voxel size comes from ImageJ's
``spacing`` (z) and the X/Y resolution tags with the ImageJ ``unit`` (Å, nm or µm), or from ``voxel_size_A=``.
Writing streams slices (bounded memory) as an ImageJ hyperstack in Å; dtypes ImageJ cannot hold are written as
float32.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io.formats._common import ask_tomogram_voxel_size
from tomopick.io.registry import Format, register

_UNITS = {"angstrom": 1.0, "å": 1.0, "a": 1.0, "\\u00c5": 1.0, "nm": 10.0, "nanometer": 10.0, "micron": 1e4,
          "um": 1e4, "µm": 1e4, "\\u00b5m": 1e4, "micrometer": 1e4}
_IMAGEJ_DTYPES = {np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)}


def _header_voxel_size(tif: Any) -> tuple[float, float, float] | None:
    ij = tif.imagej_metadata or {}
    unit = str(ij.get("unit", "")).strip().lower()
    if unit not in _UNITS:
        return None
    factor = _UNITS[unit]
    page = tif.pages[0]
    try:
        xr = page.tags["XResolution"].value
        yr = page.tags["YResolution"].value
        vx = factor * xr[1] / xr[0]
        vy = factor * yr[1] / yr[0]
    except (KeyError, ZeroDivisionError, TypeError, IndexError):
        return None
    vz = factor * float(ij.get("spacing", 0) or 0)
    vs = (vz, vy, vx)
    return vs if all(np.isfinite(v) and v > 0 for v in vs) else None


def read_tiff(path: Path, *, voxel_size_A: float | None = None, **_: Any) -> Tomogram:
    """Read a 3D TIFF stack ``(z, y, x)``."""
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = tuple(int(s) for s in series.shape)
            header_vs = _header_voxel_size(tif)
            squeeze = tuple(s for s in shape if s != 1) if len(shape) > 3 else shape
            if len(squeeze) != 3:
                raise TomopickError(f"expected a 3D (z, y, x) stack, found shape {shape}", path)
            try:
                data = tifffile.memmap(path, mode="r").reshape(squeeze)
            except (ValueError, TypeError):
                data = series.asarray().reshape(squeeze)
    except tifffile.TiffFileError as exc:
        raise TomopickError(f"corrupt or truncated TIFF ({str(exc).splitlines()[0]})", path) from None
    if voxel_size_A is not None:
        if not np.isfinite(voxel_size_A) or voxel_size_A <= 0:
            raise TomopickError(f"voxel size must be positive, got {voxel_size_A}", path)
        vs = (float(voxel_size_A),) * 3
    elif header_vs is not None:
        vs = header_vs
    else:
        raise TomopickError("TIFF states no voxel size in Å/nm/µm (ImageJ unit + resolution); "
                            + ask_tomogram_voxel_size(),
                            path)
    return Tomogram(data, vs, source=str(path), metadata={"format": "tiff"})


def write_tiff(tomogram: Tomogram, path: Path, *, dtype: str | None = None, **_: Any) -> None:
    """Write an ImageJ TIFF stack in Å, slice by slice."""
    import tifffile

    target = np.dtype(dtype) if dtype else tomogram.dtype
    if target not in _IMAGEJ_DTYPES:
        target = np.dtype(np.float32)
    vz, vy, vx = tomogram.voxel_size_A

    def slices():
        for _, slab in tomogram.iter_slabs(16):
            for plane in slab:
                yield plane.astype(target, copy=False)

    tifffile.imwrite(path, data=slices(), shape=tomogram.shape, dtype=target, imagej=True,
                     resolution=(1.0 / vx, 1.0 / vy), metadata={"spacing": vz, "unit": "angstrom", "axes": "ZYX"})


register(Format(name="tiff", kind="tomogram", extensions=(".tif", ".tiff"), reader=read_tiff, writer=write_tiff,
                description="TIFF stack (ImageJ metadata for the voxel size), memory-mapped when uncompressed"))
