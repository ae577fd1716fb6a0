"""Templates for matching: resampled to the matching grid, cropped to their extent, rotated, filtered, normalised.

Pure functions on ``(z, y, x)`` arrays. Input maps are centred at their geometric centre ``(n − 1) / 2`` per
axis (the shared maps, :mod:`tomopick.simulate`); prepared templates have odd boxes centred at voxel ``b // 2``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tomopick.match.wedge import fft_frequencies


@dataclass(frozen=True)
class Template:
    """A template on the matching grid.

    Attributes
    ----------
    volume
        ``(b, b, b)`` float32, odd ``b``, centred at voxel ``b // 2``; the contrast of the tomogram (protein dark
        when inverted from a density map).
    mask
        ``(b, b, b)`` float32 spherical mask (1 inside ``mask_radius_vox``).
    mask_radius_vox
        Radius of the mask in voxels of the matching grid.
    """

    volume: np.ndarray
    mask: np.ndarray
    mask_radius_vox: float

    @property
    def box(self) -> int:
        return int(self.volume.shape[0])


def sphere_mask(box: int, radius_vox: float) -> np.ndarray:
    """``(box, box, box)`` float32 ball of radius ``radius_vox`` about voxel ``box // 2``."""
    c = box // 2
    g = np.arange(box) - c
    r2 = g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2
    return (r2 <= radius_vox * radius_vox).astype(np.float32)


def extent_radius_vox(volume: np.ndarray, fraction: float = 0.1) -> float:
    """Radius in voxels (about the box centre) that holds every voxel whose absolute value exceeds ``fraction`` of
    the absolute maximum."""
    v = np.abs(np.asarray(volume, dtype=np.float32))
    if not np.any(v > 0):
        return 1.0
    idx = np.argwhere(v > fraction * v.max())
    c = np.array(v.shape) // 2
    return float(np.sqrt(((idx - c) ** 2).sum(axis=1)).max())


def prepare_template(volume: np.ndarray, template_voxel_A: float, grid_voxel_A: float, *, invert: bool,
                     mask_radius_A: float | None = None) -> Template:
    """Template ``(z, y, x)`` (any box, centred at its geometric centre ``(n − 1) / 2``, the convention of the shared
    maps and of :mod:`tomopick.simulate`) → :class:`Template` on a grid of ``grid_voxel_A``.

    The volume is resampled by ``template_voxel_A / grid_voxel_A`` (cubic spline after a Gaussian anti-alias
    when shrinking), negated when ``invert``, and cropped to an odd box just holding the mask (radius
    ``mask_radius_A``, default: the density's extent at 10 % of its maximum plus one voxel).
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or min(vol.shape) < 3:
        raise ValueError(f"template must be a 3D volume, got shape {vol.shape}")
    vol = vol - float(np.median(np.concatenate([vol[0].ravel(), vol[-1].ravel(), vol[:, 0].ravel(),
                                                  vol[:, -1].ravel(), vol[:, :, 0].ravel(), vol[:, :, -1].ravel()])))
    zoom = float(template_voxel_A) / float(grid_voxel_A)
    if zoom < 1.0 - 1e-3:
        vol = ndimage.gaussian_filter(vol, sigma=(1.0 / zoom - 1.0) / 2.0)
    centre_in = (np.array(vol.shape, dtype=np.float64) - 1.0) / 2.0  # the geometric centre of any box
    n_out = int(np.floor((max(vol.shape) - 1) * zoom)) + 1
    n_out += 1 - n_out % 2
    c_out = n_out // 2
    if abs(zoom - 1.0) > 1e-3 or np.any(np.array(vol.shape) % 2 == 0) or len(set(vol.shape)) > 1:
        # output voxel o samples the input at centre_in + (o - c_out) / zoom
        vol = ndimage.affine_transform(vol, np.full(3, 1.0 / zoom), offset=centre_in - c_out / zoom,
                                       output_shape=(n_out,) * 3, order=3, mode="constant", cval=0.0)
    if invert:
        vol = -vol
    if mask_radius_A is not None:
        radius = float(mask_radius_A) / float(grid_voxel_A)
    else:
        radius = extent_radius_vox(vol) + 1.0
    half = int(np.ceil(radius)) + 1
    box = 2 * half + 1
    out = np.zeros((box,) * 3, dtype=np.float32)
    c_in = np.array(vol.shape) // 2
    src = [slice(max(0, ci - half), min(n, ci + half + 1)) for ci, n in zip(c_in, vol.shape)]
    dst = [slice(half - (ci - s.start), half + (s.stop - ci)) for ci, s in zip(c_in, src)]
    out[tuple(dst)] = vol[tuple(src)]
    return Template(out, sphere_mask(box, radius), radius)


def rotate_volume(volume: np.ndarray, rotation: np.ndarray, order: int = 1) -> np.ndarray:
    """Rotate a ``(b, b, b)`` volume about voxel ``b // 2`` by ``R`` (acting on ``(x, y, z)``; the project's
    convention: ``out(R p) = volume(p)``)."""
    rot = np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    m = rot.T[::-1, ::-1]  # zyx index of the input = P Rᵀ P · zyx of the output
    c = (np.array(volume.shape) // 2).astype(np.float64)
    return ndimage.affine_transform(np.asarray(volume, dtype=np.float32), m, offset=c - m @ c, order=order,
                                    mode="constant", cval=0.0)


def radial_grid(shape_zyx: tuple[int, int, int], rfft: bool = True) -> np.ndarray:
    """``|k|`` in cycles/voxel on the FFT grid of ``shape_zyx`` (module :mod:`tomopick.match.wedge` layout)."""
    kz, ky, kx = fft_frequencies(shape_zyx, rfft=rfft)
    return np.sqrt(kz * kz + ky * ky + kx * kx)


def normalise_under_mask(volume: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``volume`` × ``mask`` with zero mean and unit sum of squares under the mask (zeros stay zero when flat)."""
    m = mask > 0
    t = np.where(m, volume, 0.0).astype(np.float32)
    n = int(m.sum())
    if n == 0:
        return t
    t[m] -= float(t[m].mean())
    norm = float(np.sqrt((t[m].astype(np.float64) ** 2).sum()))
    return t / norm if norm > 0 else t
