"""Patch sampling: a balanced mix of particle-centred and uniformly random crops.

A :class:`Volume` holds one normalised training tomogram with its target and picks. :class:`PatchSampler` draws
``(image, target)`` patches with an explicit :class:`numpy.random.Generator`:

* with probability ``particle_fraction`` a **particle-centred** crop: a class is drawn uniformly among the classes
  present in the training set (so rare classes are seen as often as common ones), then a volume holding that class,
  then one of its picks; the patch centre is the pick plus a uniform jitter of up to a quarter patch per axis;
* otherwise a **random** crop: a volume with probability proportional to its voxel count, a uniform position.

Crops are clamped inside the volume; a volume smaller than the patch is zero-padded (target padded with
background).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tomopick.data import Picks


@dataclass
class Volume:
    """One training tomogram.

    Attributes
    ----------
    name
        Run / tomogram name.
    image
        ``(z, y, x)`` float32, normalised.
    target
        ``(z, y, x)`` int class map or ``(C, z, y, x)`` float heatmaps, same spatial shape as ``image``.
    picks
        The picks the target was made from (Å).
    voxel_size_A
        Isotropic voxel size in Å.
    """

    name: str
    image: np.ndarray
    target: np.ndarray
    picks: Picks
    voxel_size_A: float
    centres_vox: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.image.ndim != 3:
            raise ValueError(f"image must be (z, y, x), got shape {self.image.shape}")
        if self.target.shape[-3:] != self.image.shape:
            raise ValueError(f"target shape {self.target.shape} does not match image {self.image.shape}")
        if not self.centres_vox:
            inside = self.picks.select(self.picks.inside(self.image.shape, self.voxel_size_A))
            for name in inside.particles:
                self.centres_vox[name] = inside.for_particle(name).voxel_coords(self.voxel_size_A)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.image.shape)  # type: ignore[return-value]


def crop(array: np.ndarray, start_zyx: Sequence[int], size_zyx: Sequence[int]) -> np.ndarray:
    """The ``size_zyx`` box at ``start_zyx`` of the last three axes, zero-padded where it leaves the array."""
    spatial = array.shape[-3:]
    out = np.zeros(array.shape[:-3] + tuple(int(s) for s in size_zyx), dtype=array.dtype)
    src, dst = [], []
    for s, n, total in zip(start_zyx, size_zyx, spatial):
        a, b = max(int(s), 0), min(int(s) + int(n), int(total))
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - int(s), b - int(s)))
    out[(..., *dst)] = array[(..., *src)]
    return out


class PatchSampler:
    """Draw training patches from a list of :class:`Volume` (see the module docstring).

    Parameters
    ----------
    volumes
        Training volumes.
    patch_size
        ``(z, y, x)`` patch size in voxels.
    particle_fraction
        Share of particle-centred crops.
    """

    def __init__(self, volumes: Sequence[Volume], patch_size: Sequence[int], particle_fraction: float = 0.5) -> None:
        if not volumes:
            raise ValueError("no training volumes")
        self.volumes = list(volumes)
        self.patch = np.asarray(patch_size, dtype=np.int64)
        self.particle_fraction = float(particle_fraction)
        self.classes = sorted({c for v in self.volumes for c, xyz in v.centres_vox.items() if len(xyz)})
        sizes = np.array([np.prod(v.shape) for v in self.volumes], dtype=np.float64)
        self.volume_p = sizes / sizes.sum()

    def _start_for_centre(self, centre: np.ndarray, shape: Sequence[int]) -> np.ndarray:
        shape = np.asarray(shape, dtype=np.int64)
        start = np.rint(centre - self.patch / 2.0).astype(np.int64)
        fits = shape >= self.patch
        # axes where the volume is smaller than the patch: centre the volume in the (zero-padded) patch
        return np.where(fits, np.clip(start, 0, np.maximum(shape - self.patch, 0)), -((self.patch - shape) // 2))

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        """One patch: image ``(1, z, y, x)`` float32, target ``(1, z, y, x)`` int or ``(C, z, y, x)`` float, info."""
        if self.classes and rng.random() < self.particle_fraction:
            cls = self.classes[int(rng.integers(len(self.classes)))]
            holders = [i for i, v in enumerate(self.volumes) if len(v.centres_vox.get(cls, ()))]
            vi = holders[int(rng.integers(len(holders)))]
            vol = self.volumes[vi]
            pts = vol.centres_vox[cls]
            centre = pts[int(rng.integers(len(pts)))] + rng.uniform(-0.25, 0.25, 3) * self.patch
            start = self._start_for_centre(centre, vol.shape)
            kind = "particle"
        else:
            vi = int(rng.choice(len(self.volumes), p=self.volume_p))
            vol = self.volumes[vi]
            shape = np.asarray(vol.shape, dtype=np.int64)
            hi = np.maximum(shape - self.patch, 0)
            start = np.array([int(rng.integers(h + 1)) for h in hi], dtype=np.int64)
            start = np.where(shape >= self.patch, start, -((self.patch - shape) // 2))
            kind = "random"
        image = crop(vol.image, start, self.patch)[None]
        target = crop(vol.target, start, self.patch)
        if target.ndim == 3:
            target = target[None]
        return image, target, {"volume": vol.name, "start": start.tolist(), "kind": kind}
