"""MRC / REC / MAP / ST tomograms (modes 0, 1, 2, 6, 12), memory-mapped; voxel size from the header."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import mrcfile
import numpy as np

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io.formats._common import ask_tomogram_voxel_size
from tomopick.io.registry import Format, register

SUPPORTED_MODES = {0: "int8", 1: "int16", 2: "float32", 6: "uint16", 12: "float16"}
_WRITE_DTYPES = {np.dtype(np.int8), np.dtype(np.int16), np.dtype(np.float32), np.dtype(np.uint16),
                 np.dtype(np.float16), np.dtype(np.uint8)}


def _check_header(path: Path) -> int:
    """Check the header words mrcfile trusts (mode, sizes, extended header) against the file; returns the mode.

    A corrupt header otherwise reaches mrcfile/numpy as a negative or huge mmap length (``OverflowError``) or an
    empty volume; here it becomes one line naming the file."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read(1024)
            size = os.fstat(fh.fileno()).st_size
    except IsADirectoryError:
        raise TomopickError("is a folder, not an MRC file", path) from None
    if len(raw) < 1024:
        raise TomopickError(f"not an MRC file (header is {len(raw)} bytes, expected 1024)", path)
    if raw[208:212] != b"MAP ":  # MRC2014 requires it (and mrcfile refuses files without it)
        raise TomopickError(f"not an MRC file (no 'MAP ' identifier at byte 208, found {raw[208:212]!r})", path)
    order = "<" if 0 <= int(np.frombuffer(raw[12:16], dtype="<i4")[0]) < 256 else ">"
    nx, ny, nz, mode = (int(v) for v in np.frombuffer(raw[:16], dtype=f"{order}i4"))
    nsymbt = int(np.frombuffer(raw[92:96], dtype=f"{order}i4")[0])
    if mode not in SUPPORTED_MODES:
        raise TomopickError(
            f"unsupported MRC mode {mode}; supported: "
            + ", ".join(f"{m} ({t})" for m, t in SUPPORTED_MODES.items()), path)
    if min(nx, ny, nz) < 1:
        raise TomopickError(f"corrupt MRC header: size nx, ny, nz = {nx}, {ny}, {nz} (each must be at least 1)", path)
    if nsymbt < 0:
        raise TomopickError(f"corrupt MRC header: negative extended header size ({nsymbt} bytes)", path)
    expected = 1024 + nsymbt + nx * ny * nz * np.dtype(SUPPORTED_MODES[mode]).itemsize
    if size < expected:
        raise TomopickError(f"corrupt or truncated MRC file: the header ({nx} x {ny} x {nz} voxels, mode {mode}) "
                            f"needs {expected} bytes, the file has {size}", path)
    return mode


def read_mrc(path: Path, *, voxel_size_A: float | None = None, mmap: bool = True, **_: Any) -> Tomogram:
    """Read an MRC file memory-mapped.

    Parameters
    ----------
    voxel_size_A
        Override (or supply, when the header says 0) the voxel size in Å.
    mmap
        Memory-map (default) instead of reading into memory.
    """
    path = Path(path)
    _check_header(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            handle = mrcfile.mmap(path, mode="r", permissive=False) if mmap else mrcfile.open(path, mode="r")
    except ValueError as exc:
        reason = str(exc).splitlines()[0].rstrip(".")
        raise TomopickError(f"corrupt or truncated MRC file ({reason})", path) from None
    except OSError as exc:
        raise TomopickError(f"cannot read MRC file ({exc.strerror or exc})", path) from None
    except (OverflowError, MemoryError, EOFError) as exc:  # a header the checks above did not catch
        reason = str(exc).splitlines()[0].rstrip(".") if str(exc) else type(exc).__name__
        raise TomopickError(f"corrupt or truncated MRC file ({reason})", path) from None
    data = handle.data
    if data is None or data.ndim != 3:
        shape = None if data is None else data.shape
        raise TomopickError(f"expected a 3D volume, found data of shape {shape}", path)
    vs = handle.voxel_size
    header_vs = np.array([float(vs.z), float(vs.y), float(vs.x)])
    if voxel_size_A is not None:
        if not np.isfinite(voxel_size_A) or voxel_size_A <= 0:
            raise TomopickError(f"voxel size must be positive, got {voxel_size_A}", path)
        zyx = (float(voxel_size_A),) * 3
    elif np.all(np.isfinite(header_vs)) and np.all(header_vs > 0):
        zyx = tuple(float(v) for v in header_vs)
    else:
        raise TomopickError(f"voxel size in the header is 0, negative or invalid ({header_vs[::-1].tolist()} Å, "
                            f"x, y, z); {ask_tomogram_voxel_size()}", path)
    origin = handle.header.origin
    meta = {"format": "mrc", "mode": int(handle.header.mode), "header_voxel_size_A": header_vs.tolist()}
    return Tomogram(data, zyx, origin_xyz_A=(float(origin.x), float(origin.y), float(origin.z)),
                    source=str(path), metadata=meta)


def write_mrc(tomogram: Tomogram, path: Path, *, dtype: str | None = None, chunk_depth: int = 32, **_: Any) -> None:
    """Write a tomogram as MRC, slab by slab (bounded memory), keeping the voxel size per axis.

    ``dtype`` casts on the way (``float32``, ``float16``, ``int8``, ``int16``, ``uint16``); default keeps the dtype
    when MRC supports it, else float32.
    """
    target = np.dtype(dtype) if dtype else tomogram.dtype
    if target not in _WRITE_DTYPES:
        target = np.dtype(np.float32)
    shape = tomogram.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with mrcfile.new_mmap(path, shape=shape, mrc_mode=_mode_for(target), overwrite=True) as out:
            for z0, slab in tomogram.iter_slabs(chunk_depth):
                out.data[z0 : z0 + slab.shape[0]] = slab.astype(target, copy=False)
            vz, vy, vx = tomogram.voxel_size_A
            out.voxel_size = (vx, vy, vz)
            ox, oy, oz = tomogram.origin_xyz_A
            out.header.origin = (ox, oy, oz)
            out.update_header_stats()


def _mode_for(dtype: np.dtype) -> int:
    return {np.dtype(np.int8): 0, np.dtype(np.uint8): 6, np.dtype(np.int16): 1, np.dtype(np.float32): 2,
            np.dtype(np.uint16): 6, np.dtype(np.float16): 12}[np.dtype(dtype)]


register(Format(
    name="mrc", kind="tomogram", extensions=(".mrc", ".rec", ".map", ".st", ".mrcs", ".ali"),
    reader=read_mrc, writer=write_mrc, description="MRC2014 volume (modes 0, 1, 2, 6, 12), memory-mapped",
))
