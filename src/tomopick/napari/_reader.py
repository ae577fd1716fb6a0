"""npe2 reader: tomograms (MRC, OME-Zarr lazily, TIFF) as Image layers — integer volumes (segmentations) as Labels
— and picks in any tomopick format as a Points layer coloured by class, sized by particle diameter."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from tomopick.errors import TomopickError
from tomopick.io import detect, read_tomogram
from tomopick.io.inputs import run_name
from tomopick.napari.convert import picks_layer_data

LayerData = tuple[Any, dict[str, Any], str]


def _kind(path: str) -> str | None:
    for kind in ("tomogram", "picks"):
        try:
            detect(path, kind)  # type: ignore[arg-type]
            return kind
        except TomopickError:
            continue
    return None


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """The reader for ``path`` (or a list of paths), or ``None`` when tomopick reads none of them (napari then
    asks the next plugin)."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    if not paths or any(_kind(str(p)) is None for p in paths):
        return None
    return read_layers


def read_layers(path: str | list[str]) -> list[LayerData]:
    """Layer data for each path: tomograms first in the given order, then picks."""
    paths = [path] if isinstance(path, (str, Path)) else list(path)
    out = []
    for p in paths:
        text = str(p)
        out.append(tomogram_layer_data(text) if _kind(text) == "tomogram" else picks_file_layer_data(text))
    return out


def tomogram_layer_data(path: str, **options: Any) -> LayerData:
    """An Image layer (or Labels for integer data, e.g. a segmentation) in Å world coordinates; the array stays
    lazy (memory-mapped MRC, chunked zarr) and the contrast comes from the central slices only."""
    tomo = read_tomogram(path, **options)
    meta = {"tomopick": {"kind": "tomogram", "source": path, "voxel_size_A": list(tomo.voxel_size_A)}}
    name = run_name(path) or Path(path).name
    if np.issubdtype(tomo.dtype, np.integer):
        return tomo.data, {"name": name, "scale": tomo.voxel_size_A, "metadata": meta}, "labels"
    mid = tomo.shape[0] // 2
    central = np.asarray(tomo.data[max(mid - 2, 0):mid + 3], dtype=np.float32)
    finite = central[np.isfinite(central)]
    lo, hi = (np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0))
    if not hi > lo:
        hi = lo + 1.0
    kwargs = {"name": name, "scale": tomo.voxel_size_A, "metadata": meta,
              "contrast_limits": (float(lo), float(hi)), "colormap": "gray"}
    return tomo.data, kwargs, "image"


def picks_file_layer_data(path: str, **options: Any) -> LayerData:
    """A Points layer of the picks in ``path`` (any tomopick picks format)."""
    from tomopick.data import CZII
    from tomopick.io.sources import load_picks

    # formats that store class numbers (RELION STAR, Dynamo, IMOD) name them through the CZII set's labels
    picks = load_picks(path, particles=CZII, **options)
    return picks_layer_data(picks, name=Path(path).name, source=path)
