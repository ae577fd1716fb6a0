"""Particle views for metric learning: a density map rotated, wedge-filtered, blurred and noised like a sub-tomogram.

Pure numpy/scipy; randomness only through the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tomopick.data.rotations import random_rotations


def wedge_mask(shape_zyx: tuple[int, int, int], max_tilt_deg: float = 60.0) -> np.ndarray:
    """Boolean Fourier mask ``(z, y, x)`` (``numpy.fft.fftn`` layout) of the measured region for a single-axis tilt
    series about y from ``-max_tilt_deg`` to ``+max_tilt_deg``: frequencies with ``|k_z| ≤ |k_x| · tan(max_tilt)``
    are measured (the DC term included); the rest is the missing wedge."""
    kz = np.fft.fftfreq(shape_zyx[0])[:, None, None]
    kx = np.fft.fftfreq(shape_zyx[2])[None, None, :]
    measured = np.abs(kz) <= np.abs(kx) * np.tan(np.radians(max_tilt_deg)) + 1e-12
    return np.broadcast_to(measured, shape_zyx).copy()


def rotate_density(density: np.ndarray, rotation: np.ndarray, size: int) -> np.ndarray:
    """Rotate a centred density ``(z, y, x)`` by ``rotation`` (3×3 acting on ``(x, y, z)``) into a cube of edge
    ``size`` centred on voxel ``size // 2`` (trilinear)."""
    r_zyx = np.asarray(rotation, dtype=np.float64)[::-1, ::-1]  # same rotation acting on (z, y, x) vectors
    c_in = (np.asarray(density.shape, dtype=np.float64) - 1) / 2.0
    c_out = np.full(3, size // 2, dtype=np.float64)
    # output voxel o samples input at R^T (o - c_out) + c_in  (rotating the density by R)
    matrix = r_zyx.T
    offset = c_in - matrix @ c_out
    return ndimage.affine_transform(np.asarray(density, dtype=np.float32), matrix, offset=offset,
                                    output_shape=(size,) * 3, order=1, mode="constant", cval=0.0)


def render_view(density: np.ndarray, size: int, rng: np.random.Generator, *, snr: float = 0.5,
                max_tilt_deg: float | None = 60.0, blur_vox: float = 0.7, protein_dark: bool = True,
                shift_vox: float = 1.5, rotation: np.ndarray | None = None) -> np.ndarray:
    """One noisy view ``(size, size, size)`` float32 of a particle, robust-normalised (median 0, MAD-std 1).

    Parameters
    ----------
    density
        Particle density ``(z, y, x)``, protein bright, centred in its box.
    size
        Output box edge (voxels).
    rng
        Random generator (orientation, sub-voxel shift, noise).
    snr
        Signal-to-noise ratio (variance of the filtered signal in the box over the noise variance).
    max_tilt_deg
        Missing wedge of a ±``max_tilt_deg`` tilt series about y (``None``: none).
    blur_vox
        Gaussian low-pass (voxels), a stand-in for the CTF envelope / reconstruction blur.
    protein_dark
        Invert contrast (protein dark, as in most reconstructions).
    shift_vox
        Uniform random centring error in ±``shift_vox`` voxels per axis.
    rotation
        Fixed rotation; uniform random when omitted.
    """
    rot = random_rotations(1, rng)[0] if rotation is None else np.asarray(rotation)
    view = rotate_density(density, rot, size)
    if shift_vox > 0:
        view = ndimage.shift(view, rng.uniform(-shift_vox, shift_vox, 3), order=1, mode="constant")
    if blur_vox > 0:
        view = ndimage.gaussian_filter(view, blur_vox)
    if max_tilt_deg is not None:
        view = np.real(np.fft.ifftn(np.fft.fftn(view) * wedge_mask(view.shape, max_tilt_deg))).astype(np.float32)
    if protein_dark:
        view = -view
    signal_var = float(view.var())
    noise_sd = np.sqrt(signal_var / max(snr, 1e-6)) if signal_var > 0 else 1.0
    view = view + rng.normal(0.0, noise_sd, view.shape).astype(np.float32)
    return normalise_box(view)


def normalise_box(box: np.ndarray, clip: float = 5.0) -> np.ndarray:
    """Robust z-score of one box (median, 1.4826 · MAD), clipped to ±``clip`` — the same recipe as
    :func:`tomopick.inference.normalize.normalize_robust` applied to a box on its own."""
    from tomopick.inference.normalize import normalize_robust

    return normalize_robust(np.asarray(box, dtype=np.float32), clip=clip)
