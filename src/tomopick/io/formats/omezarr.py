"""OME-Zarr (OME-NGFF v0.4, zarr v2) multiscale tomograms: read any level lazily, write a pyramid slab by slab.

The layout matches the CryoET Data Portal and copick: a group with ``.zattrs`` ``multiscales`` metadata (axes
``z, y, x`` in ``angstrom``), datasets ``"0"``, ``"1"``, … each 2× coarser than the last, one ``scale``
``coordinateTransformation`` per level (per axis, so anisotropic voxels survive), chunks stored with the ``"/"``
dimension separator and blosc-lz4 compression.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io.formats._common import ask_tomogram_voxel_size
from tomopick.io.registry import Format, register

#: Length units OME-NGFF allows that tomograms use, as Å per unit.
UNIT_TO_A = {"angstrom": 1.0, "nanometer": 10.0, "micrometer": 1e4, "millimeter": 1e7, "meter": 1e10,
             "picometer": 1e-2}


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise TomopickError(f"malformed zarr metadata ({str(exc).splitlines()[0]})", path) from None
    if not isinstance(value, dict):
        raise TomopickError("malformed zarr metadata (expected a JSON object)", path)
    return value


def multiscale_levels(path: str | Path) -> list[dict[str, Any]]:
    """Describe the levels of an OME-Zarr multiscale image without reading voxels.

    Returns
    -------
    list of dict
        One dict per level with ``path`` (dataset key), ``voxel_size_A`` ``(z, y, x)`` and ``translation_A``
        ``(z, y, x)`` (zeros when absent).
    """
    path = Path(path)
    attrs = _read_json(path / ".zattrs")
    if attrs is None:
        if (path / ".zarray").is_file():
            return [{"path": "", "voxel_size_A": None, "translation_A": (0.0, 0.0, 0.0)}]
        if (path / "zarr.json").is_file():
            raise TomopickError("zarr v3 stores are not supported (zarr 2 is required by copick); "
                                "rewrite it as zarr v2", path)
        raise TomopickError("not a zarr group (no .zattrs / .zarray)", path)
    ms = attrs.get("multiscales")
    if not isinstance(ms, list) or not ms or not isinstance(ms[0], dict):
        if (path / ".zarray").is_file():
            return [{"path": "", "voxel_size_A": None, "translation_A": (0.0, 0.0, 0.0)}]
        raise TomopickError("no OME-NGFF 'multiscales' metadata in .zattrs", path)
    meta = ms[0]
    axes = meta.get("axes") or [{"name": n, "type": "space"} for n in "zyx"]
    axes = [{"name": a, "type": "space"} if isinstance(a, str) else a for a in axes]
    names = [str(a.get("name", "")).lower() for a in axes]
    if names[-3:] != ["z", "y", "x"]:
        raise TomopickError(f"expected the last three axes to be z, y, x; found {names}", path)
    units = {str(a.get("unit", "angstrom")).lower() for a in axes[-3:]}
    if len(units) != 1 or next(iter(units)) not in UNIT_TO_A:
        raise TomopickError(f"unsupported axis unit(s) {sorted(units)}; known: {', '.join(UNIT_TO_A)}", path)
    factor = UNIT_TO_A[next(iter(units))]
    levels = []
    global_tf = meta.get("coordinateTransformations") or []
    for ds in meta.get("datasets") or []:
        scale = np.ones(len(axes))
        translation = np.zeros(len(axes))
        for tf in list(ds.get("coordinateTransformations") or []) + list(global_tf):
            if tf.get("type") == "scale" and "scale" in tf:
                scale = scale * np.asarray(tf["scale"], dtype=np.float64)
            elif tf.get("type") == "translation" and "translation" in tf:
                translation = translation + np.asarray(tf["translation"], dtype=np.float64)
        levels.append({
            "path": str(ds.get("path", "")),
            "voxel_size_A": tuple(float(v) * factor for v in scale[-3:]),
            "translation_A": tuple(float(v) * factor for v in translation[-3:]),
        })
    if not levels:
        raise TomopickError("OME-NGFF metadata lists no datasets", path)
    return levels


def read_omezarr(path: str | Path, *, level: int = 0, voxel_size_A: float | None = None, **_: Any) -> Tomogram:
    """Open one level of an OME-Zarr multiscale tomogram lazily (chunks are read on slicing).

    Parameters
    ----------
    path
        The ``.zarr`` group (folder).
    level
        Pyramid level (0 = full resolution); negative counts from the coarsest.
    voxel_size_A
        Override / supply the voxel size in Å (isotropic) when the metadata has none.

    Returns
    -------
    Tomogram
        ``data`` is a ``zarr.Array`` ``(z, y, x)``; ``voxel_size_A`` from the level's ``scale`` transform.
    """
    import zarr

    path = Path(path)
    if not path.is_dir():
        raise TomopickError("not a zarr folder", path)
    levels = multiscale_levels(path)
    try:
        chosen = levels[level]
    except IndexError:
        raise TomopickError(f"level {level} does not exist; the pyramid has {len(levels)} level(s) "
                            f"(0-{len(levels) - 1})", path) from None
    array_path = path / chosen["path"] if chosen["path"] else path
    zarray = _read_json(array_path / ".zarray")
    if zarray is None:
        raise TomopickError(f"level {level} has no array metadata ({chosen['path']}/.zarray missing)", path)
    try:
        store = zarr.storage.DirectoryStore(str(array_path),
                                            dimension_separator=zarray.get("dimension_separator", "."))
        data = zarr.open_array(store=store, mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises many types for a broken store
        raise TomopickError(f"cannot open zarr array ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                            array_path) from None
    shape = tuple(data.shape)
    if len(shape) != 3:
        raise TomopickError(f"expected a 3D (z, y, x) array, found shape {shape}", array_path)
    vs = chosen["voxel_size_A"]
    if voxel_size_A is not None:
        if not np.isfinite(voxel_size_A) or voxel_size_A <= 0:
            raise TomopickError(f"voxel size must be positive, got {voxel_size_A}", path)
        vs = (float(voxel_size_A),) * 3
    if vs is None or not np.all(np.isfinite(vs)) or np.any(np.asarray(vs) <= 0):
        raise TomopickError("voxel size is 0 or absent in the zarr metadata; " + ask_tomogram_voxel_size(), path)
    tz, ty, tx = chosen["translation_A"]
    meta = {"format": "ome-zarr", "level": level if level >= 0 else len(levels) + level, "n_levels": len(levels),
            "levels": [{"path": lv["path"], "voxel_size_A": lv["voxel_size_A"]} for lv in levels],
            "chunks": tuple(int(c) for c in data.chunks)}
    return Tomogram(data, tuple(vs), origin_xyz_A=(tx, ty, tz), source=str(path), metadata=meta)


def _downsample2(block: np.ndarray) -> np.ndarray:
    """2×2×2 mean of a ``(z, y, x)`` block; odd edges are padded by repeating the last plane."""
    pad = [(0, s % 2) for s in block.shape]
    if any(p[1] for p in pad):
        block = np.pad(block, pad, mode="edge")
    z, y, x = block.shape
    return block.reshape(z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(1, 3, 5), dtype=np.float64)


def pyramid_shapes(shape_zyx: Sequence[int], levels: int) -> list[tuple[int, int, int]]:
    """Shapes of each pyramid level: each axis halved (rounded up) per level."""
    shapes = [tuple(int(s) for s in shape_zyx)]
    for _ in range(1, levels):
        shapes.append(tuple((s + 1) // 2 for s in shapes[-1]))
    return shapes  # type: ignore[return-value]


def write_omezarr(
    tomogram: Tomogram,
    path: str | Path,
    *,
    levels: int = 3,
    chunks: int | Sequence[int] = 256,
    dtype: str | None = None,
    slab_depth: int = 64,
    attrs: dict[str, Any] | None = None,
    **_: Any,
) -> None:
    """Write an OME-Zarr multiscale pyramid (zarr v2, ``"/"`` separator, blosc-lz4), slab by slab.

    Parameters
    ----------
    tomogram
        The volume ``(z, y, x)``; its per-axis voxel size becomes the level-0 ``scale``.
    path
        Folder to create (the caller passes a temporary, empty folder).
    levels
        Number of pyramid levels (each 2× coarser by a 2×2×2 mean; integer data is rounded back).
    chunks
        Chunk edge (or ``(z, y, x)``), clipped to each level's shape.
    dtype
        Cast on the way (default: keep).
    slab_depth
        z-planes read at a time from the source (rounded up to a multiple of ``2**(levels-1)``).
    attrs
        Further group attributes, e.g. ``{"image-label": {...}}`` for an NGFF label image (write labels with
        ``levels=1``: the pyramid's mean does not suit label ids).
    """
    import zarr
    from numcodecs import Blosc
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_multiscales_metadata

    if levels < 1:
        raise TomopickError(f"an OME-Zarr pyramid needs at least 1 level, got {levels}", path)
    path = Path(path)
    target = np.dtype(dtype) if dtype else tomogram.dtype
    shapes = pyramid_shapes(tomogram.shape, levels)
    store = zarr.storage.DirectoryStore(str(path), dimension_separator="/")
    group = zarr.group(store=store, overwrite=True)
    compressor = Blosc(cname="lz4", clevel=5, shuffle=Blosc.SHUFFLE)
    chunk_zyx = np.broadcast_to(np.asarray(chunks, dtype=np.int64), (3,))
    arrays = []
    for i, shape in enumerate(shapes):
        c = tuple(int(min(cc, s)) or 1 for cc, s in zip(chunk_zyx, shape))
        arrays.append(group.create_dataset(str(i), shape=shape, chunks=c, dtype=target, compressor=compressor,
                                           fill_value=0, overwrite=True, dimension_separator="/"))
    step = 2 ** (levels - 1)
    depth = max(step, int(np.ceil(slab_depth / step)) * step)
    is_int = np.issubdtype(target, np.integer)
    for z0, slab in tomogram.iter_slabs(depth):
        block = slab.astype(target, copy=False)
        arrays[0][z0 : z0 + block.shape[0]] = block
        current = slab.astype(np.float64, copy=False) if levels > 1 else None
        for i in range(1, levels):
            current = _downsample2(current)
            zi = z0 // 2**i
            out = np.rint(current) if is_int else current
            if is_int:
                info = np.iinfo(target)
                out = np.clip(out, info.min, info.max)
            arrays[i][zi : zi + current.shape[0]] = out.astype(target)
    vs = np.asarray(tomogram.voxel_size_A, dtype=np.float64)
    datasets = [{"path": str(i), "coordinateTransformations": [{"type": "scale", "scale": (vs * 2**i).tolist()}]}
                for i in range(levels)]
    axes = [{"name": n, "type": "space", "unit": "angstrom"} for n in "zyx"]
    write_multiscales_metadata(group, datasets=datasets, fmt=FormatV04(), axes=axes, metadata={})
    if attrs:
        group.attrs.update(attrs)


def _sniff_zarr(path: Path) -> bool:
    return path.is_dir() and ((path / ".zattrs").is_file() or (path / ".zarray").is_file())


register(Format(
    name="ome-zarr", kind="tomogram", extensions=(".ome.zarr", ".zarr"), reader=read_omezarr, writer=write_omezarr,
    directory=True, description="OME-Zarr multiscale (NGFF 0.4, zarr v2; read any --level, write a 3-level pyramid)",
))
