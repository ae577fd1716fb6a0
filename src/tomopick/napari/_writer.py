"""npe2 writer: a Points layer of picks saved in any tomopick picks format (STAR, CSV, copick JSON, IMOD, Dynamo),
atomically through :func:`tomopick.io.write_picks` (napari has asked about replacing an existing file already)."""

from __future__ import annotations

from typing import Any

from tomopick.io import write_picks
from tomopick.napari.convert import layer_picks


def write_points(path: str, data: Any, meta: dict[str, Any]) -> list[str]:
    """Write one Points layer (``data`` ``(n, 3)`` ``(z, y, x)`` in Å, ``meta`` its attributes) to ``path``."""
    picks = layer_picks(data, meta.get("features"))
    info = (meta.get("metadata") or {}).get("tomopick") or {}
    options = {"voxel_size_A": float(info["voxel_size_A"])} if info.get("voxel_size_A") else {}
    write_picks(picks, path, overwrite=True, **options)
    return [path]
