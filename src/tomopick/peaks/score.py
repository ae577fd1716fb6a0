"""What a pick's score means: the peak value of the class map, or the class probability mass around the peak.

``peak``
    The score map's value at the peak voxel. For a softmax network this saturates: on tomograms unlike the
    training data hundreds of background peaks score within a float16 step of 1.0, so no threshold separates them
    from particles (issue #10).
``blob`` (default)
    The mean of the class map over a sphere around the peak, of the radius the network was trained to paint
    (``target.radius_fraction × radius``; the sphere labels of the bundled model are half the particle radius).
    A particle the network sees fills that sphere (score near 1); a noise peak is a small, thin blob (score near
    0), whatever the peak value. The score is a mean over tens to thousands of voxels, so the float16 score store
    does not quantise it, and it reads the same on any tomogram: "the fraction of the particle the network
    painted". Measured on simulated tomograms outside the training distribution (bench/RESULTS.md, domain shift):
    per-class average precision equal or better than ``peak`` and one threshold (0.2) within 0.01 of the
    per-class oracle, where stored ``peak`` thresholds lost a third of the score.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SCORES = ("blob", "peak")
DEFAULT_SCORE = "blob"


@functools.lru_cache(maxsize=64)
def _ball_offsets(radius_vox: float) -> np.ndarray:
    """``(m, 3)`` integer offsets of the voxels within ``radius_vox`` of the origin (at least the origin)."""
    n = max(0, int(math.floor(radius_vox)))
    g = np.mgrid[-n:n + 1, -n:n + 1, -n:n + 1].reshape(3, -1).T
    keep = (g**2).sum(1) <= max(radius_vox, 0.0) ** 2 + 1e-9
    return g[keep].astype(np.int64)


def sphere_mean(values: np.ndarray, zyx: np.ndarray, radius_vox: float) -> np.ndarray:
    """Mean of ``values`` ``(z, y, x)`` over the voxels within ``radius_vox`` of each position.

    Parameters
    ----------
    values
        ``(z, y, x)`` score map (one class).
    zyx
        ``(n, 3)`` voxel positions (fractional positions are rounded to the nearest voxel).
    radius_vox
        Sphere radius in voxels (``< 1``: the voxel itself).

    Returns
    -------
    ``(n,)`` float64 means over the sphere's voxels that lie inside the map (a sphere cut by the map's border is
    averaged over its inside part, so particles at the edge of a tomogram are not penalised).
    """
    values = np.asarray(values)
    centres = np.rint(np.asarray(zyx, dtype=np.float64).reshape(-1, 3)).astype(np.int64)
    if len(centres) == 0:
        return np.zeros(0)
    offsets = _ball_offsets(float(radius_vox))
    shape = np.asarray(values.shape)
    out = np.empty(len(centres))
    # a loop over peaks (hundreds to a few thousand per class) with one gather each: ~10 µs per peak; a convolution
    # of the whole map with the sphere (scipy.ndimage) costs minutes for the 15³ spheres of large particles
    for i, c in enumerate(centres):
        pts = c + offsets
        inside = np.all((pts >= 0) & (pts < shape), axis=1)
        pts = pts[inside]
        out[i] = float(values[pts[:, 0], pts[:, 1], pts[:, 2]].astype(np.float64).mean()) if len(pts) else 0.0
    return out
