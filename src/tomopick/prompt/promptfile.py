"""The prompt file: one ``.npz`` (NumPy zip, read with ``allow_pickle=False``) per prompt.

Keys
----
``format``        ``"tomopick-prompt"``
``version``       1
``subtomogram``   float32 ``(s, s, s)`` ``(z, y, x)``, intensities robust-normalised with the *source tomogram's*
                  statistics (``(v - median) / (1.4826 · MAD)``, clipped to ±5), protein as in the source
``voxel_size_A``  float64 scalar — voxel size of ``subtomogram`` in Å
``xyz_A``         float64 ``(3,)`` — particle position ``(x, y, z)`` in Å in the source tomogram (origin at the
                  centre of voxel (0, 0, 0))
``source``        str — the tomogram it was cut from (path or URI)
``particle``      str — optional name (used as the ``particle`` column of the picks; ``""`` → file stem)
``meta``          str — JSON: normalisation statistics, source voxel size, tomopick version

Several prompts of the same ``particle`` are averaged (their embeddings) when picking.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tomopick.errors import TomopickError
from tomopick.io.atomic import atomic_output

FORMAT = "tomopick-prompt"
VERSION = 1
SUFFIX = ".npz"


@dataclass(frozen=True)
class Prompt:
    """One prompt.

    Attributes
    ----------
    subtomogram
        float32 ``(s, s, s)`` ``(z, y, x)``, robust-normalised.
    voxel_size_A
        Voxel size of ``subtomogram`` in Å.
    xyz_A
        ``(3,)`` position ``(x, y, z)`` in Å in the source tomogram.
    source
        Source tomogram path or URI.
    particle
        Name given to picks made with this prompt ("" → the caller chooses, e.g. the file stem).
    meta
        JSON-able extras.
    """

    subtomogram: np.ndarray
    voxel_size_A: float
    xyz_A: np.ndarray
    source: str = ""
    particle: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def box_size(self) -> int:
        return int(self.subtomogram.shape[0])


def write_prompt(prompt: Prompt, path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write a prompt file atomically (refuses to replace ``path`` unless ``overwrite``)."""
    path = Path(path)
    if path.suffix.lower() != SUFFIX:
        raise TomopickError(f"prompt files end in {SUFFIX}", path)
    payload = {
        "format": np.array(FORMAT), "version": np.array(VERSION, dtype=np.int64),
        "subtomogram": np.ascontiguousarray(prompt.subtomogram, dtype=np.float32),
        "voxel_size_A": np.array(float(prompt.voxel_size_A)),
        "xyz_A": np.asarray(prompt.xyz_A, dtype=np.float64).reshape(3),
        "source": np.array(str(prompt.source)), "particle": np.array(str(prompt.particle)),
        "meta": np.array(json.dumps(prompt.meta, sort_keys=True)),
    }
    with atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **payload)
    return path


def read_prompt(path: str | os.PathLike[str]) -> Prompt:
    """Read and validate a prompt file (one-line :class:`TomopickError` on anything wrong)."""
    path = Path(path)
    if not path.is_file():
        raise TomopickError("prompt file not found", path)
    try:
        with np.load(path, allow_pickle=False) as data:
            items = {k: data[k] for k in data.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise TomopickError(f"not a prompt file ({str(exc).splitlines()[0][:100] if str(exc) else 'unreadable'})",
                            path) from None
    if str(items.get("format", "")) != FORMAT:
        raise TomopickError("not a tomopick prompt file (missing format marker)", path)
    if int(items.get("version", 0)) > VERSION:
        raise TomopickError(f"prompt file version {int(items['version'])} is newer than this tomopick", path)
    sub = items.get("subtomogram")
    if sub is None or sub.ndim != 3 or len(set(sub.shape)) != 1 or sub.shape[0] < 8:
        raise TomopickError(f"prompt sub-tomogram must be a cube of ≥ 8 voxels, got {getattr(sub, 'shape', None)}",
                            path)
    if not np.all(np.isfinite(sub)):
        raise TomopickError("prompt sub-tomogram holds NaN/Inf values", path)
    vs = float(items["voxel_size_A"])
    if not (np.isfinite(vs) and vs > 0):
        raise TomopickError(f"prompt voxel size must be positive, got {vs}", path)
    try:
        meta = json.loads(str(items.get("meta", "{}")))
    except json.JSONDecodeError:
        raise TomopickError("prompt file has malformed metadata", path) from None
    return Prompt(subtomogram=sub.astype(np.float32, copy=False), voxel_size_A=vs,
                  xyz_A=np.asarray(items["xyz_A"], dtype=np.float64).reshape(3), source=str(items.get("source", "")),
                  particle=str(items.get("particle", "")), meta=meta)
