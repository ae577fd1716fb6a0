"""Image formation: from a specimen potential to a reconstructed tomogram.

Physics (both models; details in ``docs/simulate.md``)
-------------------------------------------------------
* Tilt about the y axis; tilt ``θ`` measures the central section of Fourier space whose in-plane direction in
  ``(kx, kz)`` is ``(cos θ, sin θ)``; frequencies with ``atan2(kz, kx)`` outside the tilt range are never measured
  (the missing wedge around the beam axis ``kz``).
* Weak-phase image contrast ``C = CTF ⊛ P`` with ``CTF(k) = −(√(1−A²) sin χ + A cos χ)``,
  ``χ = π λ Δf k² − π/2 Cs λ³ k⁴`` (Δf > 0 underfocus), so protein is dark; B-factor envelope
  ``exp(−B k²/4)``; radiation damage ``exp(−D/(2 Nₑ(k)))`` with the critical exposure of Grant & Grigorieff (2015)
  and ``D`` the exposure accumulated before the tilt (dose-symmetric order by default).
* Each tilt's true defocus differs from the nominal by a Gaussian error; correction (phase flip / Wiener) uses the
  nominal value, like real processing.
* Shot noise is white in each image with variance ∝ 1 / (dose per pixel · exp(−t / (λ_in cos θ))) (thicker path at
  high tilt → fewer elastic electrons through the energy filter).
* Residual tilt-series alignment error: each image is shifted by N(0, σ²) per axis (``full``); ``fast`` applies
  the expected attenuation ``exp(−2π² σ² k²)``.
* Weighted back-projection: ramp ``|k_u|`` across the tilt axis with IMOD's default radial filter (flat to 0.35
  cycles/voxel, Gaussian fall-off σ = 0.035 beyond).

The output tomogram keeps protein dark, is standardised (mean 0, std 1 over the volume) and its noise is scaled so
that ``var(signal) / var(noise) = snr`` inside the ice slab exactly (signal = the noise-free reconstruction).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import scipy.fft as sfft
from scipy import sparse


def fft_workers() -> int:
    """FFT threads by default: the CPUs this process may run on (``workers=`` of the imaging functions overrides;
    scipy's FFTs give the same numbers with any count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # no sched_getaffinity (macOS, Windows)
        return max(1, os.cpu_count() or 1)


def electron_wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength (Å) at an acceleration voltage in kV."""
    v = voltage_kV * 1e3
    return float(12.2643 / np.sqrt(v * (1.0 + 0.97848e-6 * v)))


def ctf(k: np.ndarray, defocus_A: np.ndarray | float, voltage_kV: float, cs_mm: float,
        amplitude_contrast: float) -> np.ndarray:
    """Phase-contrast transfer ``CTF(k)`` (negative near k = 0 for underfocus: protein dark).

    Parameters
    ----------
    k
        Spatial frequency magnitude in 1/Å (any shape).
    defocus_A
        Underfocus in Å (> 0), broadcast against ``k``.
    """
    lam = electron_wavelength_A(voltage_kV)
    cs = cs_mm * 1e7
    k2 = k * k
    chi = np.pi * lam * defocus_A * k2 - 0.5 * np.pi * cs * lam**3 * k2 * k2
    a = amplitude_contrast
    return -(np.sqrt(1.0 - a * a) * np.sin(chi) + a * np.cos(chi))


def critical_exposure(k: np.ndarray, voltage_kV: float) -> np.ndarray:
    """Critical exposure ``Nₑ(k)`` in e⁻/Å² (Grant & Grigorieff 2015, 300 kV; × 0.8 at 200 kV and below)."""
    ne = 0.245 * np.power(np.maximum(k, 1e-6), -1.665) + 2.81
    return ne * (1.0 if voltage_kV >= 250 else 0.8)


def correction_filter(ctf_nominal: np.ndarray, mode: str, wiener_eps: float = 0.1) -> np.ndarray:
    """Multiplier applied to image spectra to correct the CTF, keeping protein dark.

    ``phaseflip``: ``−sign(CTF)``; ``wiener``: ``−CTF / (CTF² + ε)`` normalised to ≤ 1; ``none``: 1.
    """
    if mode == "phaseflip":
        return -np.sign(ctf_nominal) + (ctf_nominal == 0)  # zeros → pass (sign 0 would drop the frequency)
    if mode == "wiener":
        return -ctf_nominal * (1.0 + wiener_eps) / (ctf_nominal**2 + wiener_eps)
    return np.ones_like(ctf_nominal)


def taper(k_cycles_per_vox: np.ndarray, cutoff: float = 0.35, falloff: float = 0.035) -> np.ndarray:
    """Radial filter of weighted back-projection (IMOD's convention): 1 up to ``cutoff`` cycles/voxel, then a
    Gaussian fall-off of width ``falloff``."""
    excess = np.maximum(k_cycles_per_vox - cutoff, 0.0)
    return np.exp(-0.5 * (excess / falloff) ** 2)


def lowpass(k_per_A: np.ndarray, cutoff_A: float | None) -> np.ndarray | float:
    """Order-8 Butterworth low-pass with half-amplitude at 1/cutoff_A (1 when cutoff is None)."""
    if cutoff_A is None:
        return 1.0
    return 1.0 / np.sqrt(1.0 + (k_per_A * cutoff_A) ** 16)


@dataclass(frozen=True)
class TiltScheme:
    """Per-tilt acquisition parameters (arrays ``(n_tilts,)`` in acquisition order)."""

    angles_deg: np.ndarray
    cumulative_dose: np.ndarray  # e⁻/Å² received before (and half during) each tilt
    defocus_true_A: np.ndarray
    defocus_nominal_A: float
    noise_std: np.ndarray  # relative shot-noise std per image pixel (before the global SNR scale)
    shifts_vox: np.ndarray | None = None  # (n_tilts, 2) residual alignment error (y, u) in voxels
    alignment_error_vox: float = 0.0  # its standard deviation per axis


def make_tilt_scheme(angles_deg: list[float], total_dose: float, defocus_nominal_A: float, defocus_spread_A: float,
                     thickness_A: float, inelastic_mfp_A: float, voxel_size_A: float,
                     rng: np.random.Generator, alignment_error_A: float = 0.0) -> TiltScheme:
    """Dose, defocus, noise level and residual alignment error of each tilt."""
    angles = np.asarray(angles_deg, dtype=np.float64)
    n = len(angles)
    dose = total_dose / n
    cumulative = dose * (np.arange(n) + 0.5)
    defocus = defocus_nominal_A + rng.normal(0.0, 1.0, n) * defocus_spread_A
    defocus = np.maximum(defocus, 1000.0)
    transmitted = np.exp(-thickness_A / (inelastic_mfp_A * np.cos(np.radians(angles))))
    counts = dose * voxel_size_A**2 * transmitted
    sigma = alignment_error_A / voxel_size_A
    shifts = rng.normal(0.0, 1.0, (n, 2)) * sigma
    return TiltScheme(angles, cumulative, defocus, float(defocus_nominal_A), 1.0 / np.sqrt(counts), shifts, sigma)


# ------------------------------------------------------------------------------------------------------------
# statistics helpers (chunked: bounded temporaries on 70 M-voxel volumes)
def masked_mean_var(volume: np.ndarray, mask: np.ndarray | None, depth: int = 16) -> tuple[float, float]:
    """Mean and variance (float64 accumulation) of ``volume`` over ``mask`` (all voxels when None)."""
    n = 0
    s = 0.0
    s2 = 0.0
    for z0 in range(0, volume.shape[0], depth):
        v = volume[z0:z0 + depth]
        if mask is not None:
            m = mask[z0:z0 + depth]
            if not m.any():
                continue
            if not m.all():
                v = v[m]
        v = np.ascontiguousarray(v).ravel()
        n += v.size
        s += float(np.sum(v, dtype=np.float64))
        s2 += float(v @ v)
    if n == 0:
        return 0.0, 0.0
    mean = s / n
    return mean, max(s2 / n - mean * mean, 0.0)


def _fftfreq_grid(shape: tuple[int, int, int], voxel_size_A: float):
    nz, ny, nx = shape
    kz = sfft.fftfreq(nz).astype(np.float32)
    ky = sfft.fftfreq(ny).astype(np.float32)
    kx = sfft.rfftfreq(nx).astype(np.float32)
    return kz, ky, kx


# ------------------------------------------------------------------------------------------------------------
def image_fast(potential: np.ndarray, voxel_size_A: float, scheme: TiltScheme, *, voltage_kV: float, cs_mm: float,
               amplitude_contrast: float, b_factor_A2: float, ctf_correction: str, lowpass_A: float | None,
               rng: np.random.Generator,
               workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Fourier-space imaging without a tilt series.

    Each 3D frequency ``k`` is assigned to the tilt whose central section contains it (``atan2(kz, kx)``); the
    signal gets that tilt's CTF (true defocus) × correction (nominal defocus) × B-factor × damage envelope × taper;
    the noise is white noise shaped by the same tilt's noise level, the correction, the back-projection weighting
    ``√|k_xz|`` and the taper. Frequencies outside the tilt range (the missing wedge) get nothing.
    ``workers`` sets the FFT threads (default :func:`fft_workers`).

    Returns
    -------
    signal, noise
        float32 ``(z, y, x)`` arrays: the noise-free reconstruction and unit-scaled noise (to be scaled by SNR).
    """
    workers = fft_workers() if workers is None else int(workers)
    shape = potential.shape
    nz, ny, nx = shape
    spec = sfft.rfftn(potential, workers=workers)  # complex64
    noise_spec = np.empty_like(spec)
    kz, ky, kx = _fftfreq_grid(shape, voxel_size_A)
    angles = scheme.angles_deg
    order = np.argsort(angles)
    sorted_angles = angles[order]
    step = np.min(np.diff(sorted_angles)) if len(angles) > 1 else 1.0
    lo, hi = sorted_angles[0] - step / 2, sorted_angles[-1] + step / 2
    # Radial transfer per tilt, tabulated on a fine |k| grid (Δk = 1e-4 cycles/voxel: the CTF phase changes by
    # < 0.01 rad per bin at 10 Å and 5 µm defocus), then gathered per voxel — far cheaper than evaluating
    # sin/cos/exp on 36 M frequencies.
    n_bins = 8192
    k_max = float(np.sqrt(3.0) * 0.5) + 1e-3
    kc = (np.arange(n_bins, dtype=np.float64) + 0.0) * (k_max / (n_bins - 1))  # cycles/voxel
    kA = kc / voxel_size_A
    c_nom = ctf(kA, scheme.defocus_nominal_A, voltage_kV, cs_mm, amplitude_contrast)
    corr = correction_filter(c_nom, ctf_correction)
    radial = taper(kc) * lowpass(kA, lowpass_A)
    # B-factor, and the mean effect of Gaussian residual alignment shifts (σ voxels per axis, in the tilt plane)
    benv = np.exp(-b_factor_A2 * kA * kA / 4.0) * np.exp(-2.0 * np.pi**2 * scheme.alignment_error_vox**2 * kc * kc)
    ne = critical_exposure(kA, voltage_kV)
    s_tab = np.empty((len(angles), n_bins), dtype=np.float32)
    n_tab = np.empty((len(angles), n_bins), dtype=np.float32)
    for j, t in enumerate(order):
        c_true = ctf(kA, scheme.defocus_true_A[t], voltage_kV, cs_mm, amplitude_contrast)
        dmg = np.exp(-scheme.cumulative_dose[t] / (2.0 * ne))
        s_tab[j] = c_true * corr * benv * dmg * radial
        n_tab[j] = scheme.noise_std[t] * np.abs(corr) * radial
    inv_dk = np.float32((n_bins - 1) / k_max)
    ky2 = (ky * ky)[:, None]
    kxg = kx[None, :]
    for iz in range(nz):
        kzv = kz[iz]
        theta = np.degrees(np.arctan2(kzv, kxg))  # (1, nxr)
        measured = (theta >= lo) & (theta <= hi)
        ti = np.clip(np.searchsorted(sorted_angles, theta), 0, len(angles) - 1)
        prev = np.clip(ti - 1, 0, len(angles) - 1)
        ti = np.where(np.abs(sorted_angles[prev] - theta) < np.abs(sorted_angles[ti] - theta), prev, ti)
        ramp = (np.sqrt((kzv * kzv + kxg * kxg) / 0.5) * measured).astype(np.float32)  # (1, nxr)
        kbin = np.rint(np.sqrt(ky2 + (kzv * kzv + kxg * kxg)) * inv_dk).astype(np.intp)  # (ny, nxr)
        flat = ti.astype(np.intp) * n_bins + kbin  # index into the (tilt, bin) tables
        h_sig = s_tab.ravel().take(flat)
        h_sig *= measured
        h_noise = n_tab.ravel().take(flat)
        h_noise *= ramp
        spec[iz] *= h_sig
        white = rng.standard_normal((ny, 2 * kx.size), dtype=np.float32).view(np.complex64)
        white *= h_noise
        noise_spec[iz] = white
    spec[0, 0, 0] = 0
    noise_spec[0, 0, 0] = 0
    signal = sfft.irfftn(spec, s=shape, workers=workers).astype(np.float32, copy=False)
    del spec
    noise = sfft.irfftn(noise_spec, s=shape, workers=workers).astype(np.float32, copy=False)
    return signal, noise


# ------------------------------------------------------------------------------------------------------------
def projection_matrix(nz: int, nx: int, angles_deg: np.ndarray, nu: int | None = None) -> sparse.csr_matrix:
    """Sparse single-axis projector for one x–z plane (tilt axis y).

    Voxel ``(iz, ix)`` at tilt ``θ`` lands at detector coordinate ``u = (ix−cx) cos θ + (iz−cz) sin θ + cu`` and is
    split linearly between the two nearest detector pixels. Rows: ``tilt · nu + pixel``; columns: ``iz · nx + ix``.
    Its transpose is the (linear-interpolating) back-projector.
    """
    nu = nx if nu is None else nu
    iz, ix = np.meshgrid(np.arange(nz), np.arange(nx), indexing="ij")
    xc = (ix - (nx - 1) / 2).ravel()
    zc = (iz - (nz - 1) / 2).ravel()
    cols = np.arange(nz * nx)
    rows_all, cols_all, vals_all = [], [], []
    for t, a in enumerate(np.radians(np.asarray(angles_deg, dtype=np.float64))):
        u = xc * np.cos(a) + zc * np.sin(a) + (nu - 1) / 2
        i0 = np.floor(u).astype(np.int64)
        w1 = u - i0
        for off, w in ((0, 1.0 - w1), (1, w1)):
            idx = i0 + off
            ok = (idx >= 0) & (idx < nu) & (w > 0)
            rows_all.append(t * nu + idx[ok])
            cols_all.append(cols[ok])
            vals_all.append(w[ok].astype(np.float32))
    rows = np.concatenate(rows_all)
    cols_c = np.concatenate(cols_all)
    vals = np.concatenate(vals_all)
    return sparse.csr_matrix((vals, (rows, cols_c)), shape=(len(angles_deg) * nu, nz * nx), dtype=np.float32)


def _image_filter(ny: int, nu: int, pad: int, voxel_size_A: float):
    """Frequency grids for padded projection images ``(ny+2p, nu+2p)`` (rfft along u)."""
    fy = sfft.fftfreq(ny + 2 * pad).astype(np.float32)[:, None]
    fu = sfft.rfftfreq(nu + 2 * pad).astype(np.float32)[None, :]
    kcyc = np.sqrt(fy * fy + fu * fu)
    return fu, kcyc, kcyc / voxel_size_A


def image_full(potential: np.ndarray, slab_density: float, voxel_size_A: float, scheme: TiltScheme, *,
               voltage_kV: float, cs_mm: float, amplitude_contrast: float, b_factor_A2: float, ctf_correction: str,
               lowpass_A: float | None, rng: np.random.Generator,
               workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tilt series → CTF per tilt → shot noise → CTF correction → weighted back-projection.

    Projection and back-projection run on all y rows at once with one sparse matrix per x–z plane geometry.
    The flat part of the ice (``slab_density`` times the occupancy averaged over x and y) is removed before
    projecting: a laterally infinite slab projects to a constant, which the ramp filter removes anyway, while the
    finite box would add false edges. ``workers`` sets the FFT threads (default :func:`fft_workers`).

    Returns
    -------
    signal, noise
        float32 ``(z, y, x)``: noise-free reconstruction and the reconstruction of unit-scaled shot noise.
    """
    workers = fft_workers() if workers is None else int(workers)
    nz, ny, nx = potential.shape
    nu = nx
    T = len(scheme.angles_deg)
    A = projection_matrix(nz, nx, scheme.angles_deg, nu)
    # remove the laterally constant part of the potential (mean over y, x per z)
    profile = potential.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)
    flat = potential - profile[:, None, None]
    X = np.ascontiguousarray(flat.transpose(0, 2, 1)).reshape(nz * nx, ny)
    del flat
    proj = (A @ X).reshape(T, nu, ny).transpose(0, 2, 1)  # (T, ny, nu)
    del X
    pad = 32
    fu, kcyc, kA = _image_filter(ny, nu, pad, voxel_size_A)
    fy_img = sfft.fftfreq(ny + 2 * pad).astype(np.float32)[:, None]
    ramp = np.abs(fu) / 0.5 * taper(kcyc) * lowpass(kA, lowpass_A)
    c_nom = ctf(kA, scheme.defocus_nominal_A, voltage_kV, cs_mm, amplitude_contrast)
    corr = correction_filter(c_nom, ctf_correction)
    sig_f = np.empty((T, nu, ny), dtype=np.float32)
    noise_f = np.empty((T, nu, ny), dtype=np.float32)
    benv = np.exp(-b_factor_A2 * kA * kA / 4.0)
    for t in range(T):
        img = np.pad(proj[t], pad)
        f = sfft.rfft2(img, workers=workers)
        c_true = ctf(kA, scheme.defocus_true_A[t], voltage_kV, cs_mm, amplitude_contrast)
        dmg = np.exp(-scheme.cumulative_dose[t] / (2.0 * critical_exposure(kA, voltage_kV)))
        f *= (c_true * benv * dmg * corr * ramp).astype(np.float32)
        if scheme.shifts_vox is not None and scheme.alignment_error_vox > 0:
            sy, su = scheme.shifts_vox[t]
            f *= np.exp(-2j * np.pi * (fy_img * sy + fu * su)).astype(np.complex64)
        out = sfft.irfft2(f, s=img.shape, workers=workers)[pad:-pad, pad:-pad]
        sig_f[t] = out.T
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(scheme.noise_std[t])
        fn = sfft.rfft2(noise, workers=workers)
        fn *= (corr * ramp).astype(np.float32)
        noise_f[t] = sfft.irfft2(fn, s=img.shape, workers=workers)[pad:-pad, pad:-pad].T
    del proj
    AT = A.T.tocsr()
    signal = np.ascontiguousarray((AT @ sig_f.reshape(T * nu, ny)).reshape(nz, nx, ny).transpose(0, 2, 1))
    del sig_f
    noise_vol = np.ascontiguousarray((AT @ noise_f.reshape(T * nu, ny)).reshape(nz, nx, ny).transpose(0, 2, 1))
    return signal.astype(np.float32, copy=False), noise_vol.astype(np.float32, copy=False)
