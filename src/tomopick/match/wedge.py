"""Missing-wedge weights in Fourier space for a single-axis tilt series (tilt axis ``y``).

Convention (the same as :mod:`tomopick.simulate.imaging`): arrays are ``(z, y, x)``; the beam is along ``z`` at tilt
0; the tilt ``θ`` measures the central section of Fourier space whose in-plane direction in ``(kx, kz)`` is
``(cos θ, sin θ)``. A frequency ``k`` is therefore measured when the angle ``atan2(kz, kx)`` of ``k`` (or of ``−k``,
folded to ``kx ≥ 0``) lies in ``[tilt_min, tilt_max]``; the missing wedge is the double cone around ``kz`` outside.
The ``ky`` axis (``kx = kz = 0``) and the origin are always measured. For an asymmetric range the sign follows the
simulator: positive ``θ`` tilts the measured plane towards ``+kz`` for ``+kx``.

Grids are in numpy/torch FFT order (unshifted, frequency 0 at index 0): ``rfft=True`` gives the half grid
``(z, y, x // 2 + 1)`` of :func:`numpy.fft.rfftn` / :func:`torch.fft.rfftn` over all three axes, ``rfft=False`` the full
grid ``(z, y, x)`` of :func:`numpy.fft.fftn`.
"""

from __future__ import annotations

import numpy as np


def fft_frequencies(shape_zyx: tuple[int, int, int], rfft: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable frequency grids ``kz (z,1,1)``, ``ky (1,y,1)``, ``kx (1,1,x')`` in cycles/voxel, FFT order;
    ``x' = x // 2 + 1`` when ``rfft`` else ``x``."""
    nz, ny, nx = (int(v) for v in shape_zyx)
    kz = np.fft.fftfreq(nz)[:, None, None]
    ky = np.fft.fftfreq(ny)[None, :, None]
    kx = (np.fft.rfftfreq(nx) if rfft else np.fft.fftfreq(nx))[None, None, :]
    return kz, ky, kx


def missing_wedge_weight(shape_zyx: tuple[int, int, int], tilt_range_deg: tuple[float, float] = (-60.0, 60.0),
                         rfft: bool = True) -> np.ndarray:
    """Binary weight (float32, 1 = measured, 0 = missing wedge) on the FFT grid of a ``(z, y, x)`` volume.

    ``tilt_range_deg`` is ``(tilt_min, tilt_max)`` in degrees about the ``y`` axis (module docstring for the
    convention). ``(-90, 90)`` gives all ones. Shape ``(z, y, x // 2 + 1)`` when ``rfft`` else ``(z, y, x)``.
    """
    lo, hi = (float(v) for v in tilt_range_deg)
    if not (-90.0 <= lo < hi <= 90.0):
        raise ValueError(f"tilt range must satisfy -90 <= min < max <= 90 degrees, got {tilt_range_deg}")
    kz, _, kx = fft_frequencies(shape_zyx, rfft=rfft)
    ny = int(shape_zyx[1])
    # fold to kx >= 0 (Friedel pairs have the same measured state); on kx == 0 the rfft half grid (and the
    # simulator) use atan2(kz, 0) = ±90°, which we keep for the full grid too
    flip = kx < 0
    kxf = np.where(flip, -kx, kx)
    kzf = np.where(flip, -kz, kz)
    theta = np.degrees(np.arctan2(kzf, kxf))  # (z, 1, x')
    measured = (theta >= lo - 1e-9) & (theta <= hi + 1e-9)
    measured |= (kxf == 0) & (kzf == 0)
    return np.broadcast_to(measured, (measured.shape[0], ny, measured.shape[2])).astype(np.float32)
