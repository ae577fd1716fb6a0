"""Missing-wedge weight: the simulator's convention, rfft and full grids agree."""

from __future__ import annotations

import numpy as np

from tomopick.match.wedge import missing_wedge_weight


def test_wedge_follows_the_tilt_range():
    shape = (32, 8, 32)
    w = missing_wedge_weight(shape, (-60.0, 60.0))
    assert w.shape == (32, 8, 17)
    kz = np.fft.fftfreq(32)
    kx = np.fft.rfftfreq(32)
    # kz = 3/32, kx = 4/32: angle 36.9° → measured; kz = 8/32, kx = 2/32: 76° → missing
    assert w[3, 0, 4] == 1.0 and w[8, 0, 2] == 0.0 and w[-8, 5, 2] == 0.0
    assert kz[3] > 0 and kx[4] > 0
    # origin and the ky axis are always measured; the kz axis never (for ±60)
    assert w[0, :, 0].min() == 1.0 and w[1:, 0, 0].max() == 0.0
    # measured fraction of an (x, z) plane ≈ 120/180
    assert abs(float(w[:, 0, 1:16].mean()) - 120 / 180) < 0.06


def test_full_grid_is_hermitian_and_matches_the_half_grid():
    shape = (16, 6, 16)
    full = missing_wedge_weight(shape, (-45.0, 50.0), rfft=False)
    half = missing_wedge_weight(shape, (-45.0, 50.0))
    assert np.array_equal(full[..., :8], half[..., :8])
    iy, ix = (-np.arange(6)) % 6, (-np.arange(16)) % 16
    iz = (-np.arange(16)) % 16
    mirrored = full[iz][:, iy][:, :, ix]
    # Hermitian away from the Nyquist planes (where +0.5 and -0.5 cycles/voxel are one frequency)
    assert np.array_equal(full[:8, :, :8], mirrored[:8, :, :8]) and np.array_equal(full[9:, :, 9:], mirrored[9:, :, 9:])
    assert missing_wedge_weight(shape, (-90.0, 90.0)).min() == 1.0
