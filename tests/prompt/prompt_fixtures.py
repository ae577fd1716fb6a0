"""Tiny procedural particles and scenes for the promptable-picker tests (generated, seeded)."""

from __future__ import annotations

import numpy as np


def make_shape(kind: str, box: int = 15) -> np.ndarray:
    """A centred density ``(box, box, box)``, protein bright: ``ball``, ``rod`` (along x), ``shell``, ``slab``."""
    c = (box - 1) / 2.0
    z, y, x = np.meshgrid(*(np.arange(box) - c,) * 3, indexing="ij")
    r = np.sqrt(z**2 + y**2 + x**2)
    if kind == "ball":
        return (r <= 4.0).astype(np.float32)
    if kind == "rod":
        return ((np.sqrt(z**2 + y**2) <= 1.6) & (np.abs(x) <= 6.0)).astype(np.float32)
    if kind == "shell":
        return ((r <= 6.0) & (r >= 4.5)).astype(np.float32)
    if kind == "slab":
        return ((np.abs(z) <= 1.2) & (np.abs(y) <= 5.0) & (np.abs(x) <= 5.0)).astype(np.float32)
    raise ValueError(kind)


SHAPES = ("ball", "rod", "shell", "slab")


def make_scene(shape_zyx, kinds_at, rng, noise=0.3, box=15):
    """Paste shapes (random orientation) at the given centres; labels = kind index within radius 3 of each centre.

    ``kinds_at``: list of (kind index, (z, y, x) integer centre). Returns (volume protein-dark, labels, centres,
    kinds) with labels -1 for background.
    """
    from tomopick.data.rotations import random_rotations
    from tomopick.prompt.views import rotate_density

    vol = np.zeros(shape_zyx, np.float32)
    labels = np.full(shape_zyx, -1, np.int64)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape_zyx), indexing="ij")
    h = box // 2
    for k, c in kinds_at:
        dens = rotate_density(make_shape(SHAPES[k], box), random_rotations(1, rng)[0], box)
        sl = tuple(slice(ci - h, ci - h + box) for ci in c)
        vol[sl] += dens
        labels[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 9] = k
    vol = -vol + rng.normal(0, noise, shape_zyx).astype(np.float32)
    centres = np.array([c for _, c in kinds_at], dtype=np.float64)
    kinds = np.array([k for k, _ in kinds_at], dtype=np.int64)
    return vol, labels, centres, kinds


#: Eight particles in a 32³ volume: positions (z, y, x).
POSITIONS = [(8, 8, 8), (8, 8, 24), (8, 24, 8), (8, 24, 24), (24, 8, 8), (24, 8, 24), (24, 24, 8), (24, 24, 24)]


def ball_rod_scene(seed: int):
    """A normalised 32³ scene with four balls (kind 0) and four rods (kind 1) at :data:`POSITIONS`."""
    from tomopick.prompt.training import LabelledVolume
    from tomopick.prompt.views import normalise_box

    rng = np.random.default_rng(seed)
    kinds = rng.permutation([0, 0, 0, 0, 1, 1, 1, 1]).tolist()
    vol, labels, centres, kinds_a = make_scene((32, 32, 32), list(zip(kinds, POSITIONS)), rng, noise=0.3)
    return LabelledVolume(normalise_box(vol), labels, centres, kinds_a)
