"""FSC, its 0.143 resolution, masks and filters: numbers from hand-built maps."""

from __future__ import annotations

import numpy as np

from tomopick.averaging.fsc import (
    FSCCurve, apply_lowpass, fourier_shell_correlation, resolution_at, shell_index, soft_sphere_mask,
)


def _smooth_map(box: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(rng.standard_normal((box,) * 3), 1.0).astype(np.float32)


def test_identical_maps_correlate_fully_and_have_no_resolution_number():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((24, 24, 24))
    curve = fourier_shell_correlation(a, a.copy(), voxel_size_A=5.0)
    assert len(curve.fsc) == 13  # shells 0 … 12 (Nyquist)
    np.testing.assert_allclose(curve.fsc[1:], 1.0, atol=1e-9)
    np.testing.assert_allclose(curve.frequency_per_A[[1, 12]], [1 / 120, 12 / 120])
    assert resolution_at(curve) is None  # never below 0.143: no number is made up


def test_independent_noise_is_uncorrelated_and_gives_only_the_coarsest_resolution():
    rng = np.random.default_rng(1)
    box = 32
    a, b = rng.standard_normal((2, box, box, box))
    curve = fourier_shell_correlation(a, b, voxel_size_A=10.0)
    # each shell ~ N(0, 1/sqrt(n coefficients)); shells >= 3 have >= 100 coefficients
    z = curve.fsc[3:] * np.sqrt(curve.n_coefficients[3:])
    assert np.all(np.abs(z) < 4.5)
    assert abs(curve.fsc[3:].mean()) < 0.02
    res = resolution_at(curve)
    # noise crosses 0.143 within the first few shells: a resolution no finer than box/4 shells (80 Å here)
    assert res is not None and res >= box * 10.0 / 4


def test_signal_plus_noise_crosses_where_the_signal_ends():
    """Two maps share a signal band-limited to 1/40 Å⁻¹ plus independent noise: the FSC is high inside the band,
    ≈ 0 outside, and the 0.143 resolution is 40 Å within one shell."""
    rng = np.random.default_rng(2)
    box, vs = 40, 5.0  # shell width 1/200 Å⁻¹; 1/40 Å⁻¹ is shell 5
    sig = np.fft.irfftn(np.fft.rfftn(rng.standard_normal((box,) * 3))
                        * (apply_lowpass_mask(box, vs, 40.0)), s=(box,) * 3)
    sig *= 3.0 / sig.std()
    a = sig + rng.standard_normal(sig.shape)
    b = sig + rng.standard_normal(sig.shape)
    curve = fourier_shell_correlation(a, b, vs)
    assert np.all(curve.fsc[1:5] > 0.8)
    assert np.all(np.abs(curve.fsc[7:]) < 0.1)
    res = resolution_at(curve)
    assert res is not None and 1 / (6 / 200) <= res <= 1 / (4 / 200)


def apply_lowpass_mask(box: int, vs: float, res: float) -> np.ndarray:
    f = np.fft.fftfreq(box, vs)
    fx = np.fft.rfftfreq(box, vs)
    r = np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + fx[None, None, :] ** 2)
    return (r <= 1 / res + 1e-12).astype(float)


def test_resolution_interpolates_linearly_between_shells():
    curve = FSCCurve(frequency_per_A=np.array([0.0, 0.05, 0.1]), fsc=np.array([1.0, 0.5, 0.1]),
                     n_coefficients=np.array([1, 6, 20]))
    t = (0.5 - 0.143) / (0.5 - 0.1)
    assert resolution_at(curve) == 1 / (0.05 + t * 0.05)
    first = FSCCurve(frequency_per_A=np.array([0.0, 0.05, 0.1]), fsc=np.array([1.0, 0.1, 0.9]),
                     n_coefficients=np.array([1, 6, 20]))
    assert resolution_at(first) == 20.0  # below at shell 1: the box size


def test_shells_and_mask():
    s = shell_index(8)
    assert s[0, 0, 0] == 0 and s[0, 0, 4] == 4 and s[1, 1, 1] == 2  # sqrt(3) rounds to 2
    m = soft_sphere_mask(21, radius_vox=5.0, edge_vox=2.0)
    assert m[10, 10, 10] == 1.0 and m[10, 10, 15] == 1.0 and m[10, 10, 17] == 0.0
    assert m[10, 10, 16] == np.float32(0.5)  # half-way down the cosine edge


def test_lowpass_keeps_mean_and_removes_high_frequencies():
    rng = np.random.default_rng(3)
    v = _smooth_map(32, rng) + 2.0
    out = apply_lowpass(v, 10.0, 40.0)
    assert abs(out.mean() - v.mean()) < 1e-5
    spec = np.abs(np.fft.rfftn(out))
    f = np.sqrt(np.fft.fftfreq(32, 10.0)[:, None, None] ** 2 + np.fft.fftfreq(32, 10.0)[None, :, None] ** 2
                + np.fft.rfftfreq(32, 10.0)[None, None, :] ** 2)
    assert spec[f > 1 / 40 + 2 / 320 + 1e-9].max() < 1e-3
