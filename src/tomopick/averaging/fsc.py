"""Fourier shell correlation between two maps, its 0.143 resolution, and the masks and filters around it.

Maps are cubic ``(b, b, b)`` arrays ``(z, y, x)``; frequencies are in 1/Å. Shell ``s`` holds the Fourier coefficients
whose radius (in cycles per box) rounds to ``s``; shells run from 0 (the mean) to ``b // 2`` (Nyquist).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The "gold-standard" threshold for two independent half maps (Rosenthal & Henderson 2003).
FSC_THRESHOLD = 0.143


@dataclass(frozen=True)
class FSCCurve:
    """An FSC curve.

    Attributes
    ----------
    frequency_per_A
        ``(m,)`` shell frequencies in 1/Å (shell ``s`` of a box of ``b`` voxels of ``v`` Å is ``s / (b v)``).
    fsc
        ``(m,)`` correlation per shell, in [-1, 1]; shell 0 is the maps' means.
    n_coefficients
        ``(m,)`` Fourier coefficients per shell (a shell of independent noise has FSC ≈ N(0, 1/√n)).
    """

    frequency_per_A: np.ndarray
    fsc: np.ndarray
    n_coefficients: np.ndarray

    @property
    def resolution_A(self) -> np.ndarray:
        """``(m,)`` shell resolutions in Å (inf for shell 0)."""
        with np.errstate(divide="ignore"):
            return 1.0 / self.frequency_per_A

    def to_dict(self) -> dict[str, list[float]]:
        return {"frequency_per_A": [float(v) for v in self.frequency_per_A],
                "fsc": [float(v) for v in self.fsc],
                "n_coefficients": [int(v) for v in self.n_coefficients]}


def shell_index(box: int) -> np.ndarray:
    """``(b, b, b)`` integer shell of every coefficient of a full (``numpy.fft.fftn``) spectrum of a ``b³`` box."""
    f = np.fft.fftfreq(box) * box
    kz, ky, kx = np.meshgrid(f, f, f, indexing="ij")
    return np.rint(np.sqrt(kz * kz + ky * ky + kx * kx)).astype(np.int64)


def _check_cubic(a: np.ndarray, name: str) -> int:
    if a.ndim != 3 or len(set(a.shape)) != 1:
        raise ValueError(f"{name} must be a cubic (b, b, b) array, got shape {a.shape}")
    return int(a.shape[0])


def fourier_shell_correlation(a: np.ndarray, b: np.ndarray, voxel_size_A: float) -> FSCCurve:
    """FSC of two cubic maps ``(b, b, b)`` of the same shape, shells 0 … ``b // 2`` (Nyquist).

    ``FSC(s) = Re Σ A·B̄ / √(Σ|A|² Σ|B|²)`` over the coefficients of shell ``s``; a shell with no power in one map
    gets 0.
    """
    box = _check_cubic(np.asarray(a), "a")
    if np.shape(b) != np.shape(a):
        raise ValueError(f"maps differ in shape: {np.shape(a)} vs {np.shape(b)}")
    fa = np.fft.fftn(np.asarray(a, dtype=np.float64))
    fb = np.fft.fftn(np.asarray(b, dtype=np.float64))
    shells = shell_index(box).ravel()
    m = box // 2 + 1
    keep = shells < m
    idx = shells[keep]
    cross = np.bincount(idx, (fa.ravel()[keep] * np.conj(fb.ravel()[keep])).real, minlength=m)
    pa = np.bincount(idx, np.abs(fa.ravel()[keep]) ** 2, minlength=m)
    pb = np.bincount(idx, np.abs(fb.ravel()[keep]) ** 2, minlength=m)
    count = np.bincount(idx, minlength=m)
    denom = np.sqrt(pa * pb)
    fsc = np.divide(cross, denom, out=np.zeros(m), where=denom > 0)
    freq = np.arange(m) / (box * float(voxel_size_A))
    return FSCCurve(frequency_per_A=freq, fsc=np.clip(fsc, -1.0, 1.0), n_coefficients=count)


def resolution_at(curve: FSCCurve, threshold: float = FSC_THRESHOLD) -> float | None:
    """Resolution (Å) where the FSC first falls below ``threshold``, or ``None`` when it never does.

    Shells from 1 (the first non-zero frequency) are scanned; the crossing is interpolated linearly in frequency
    between the last shell above and the first below. A curve below the threshold already at shell 1 gives the
    box size (the coarsest resolution measurable). ``None`` means "at least Nyquist": the data support detail
    beyond what the box samples, not a number.
    """
    f, c = curve.frequency_per_A, curve.fsc
    below = np.nonzero(c[1:] < threshold)[0]
    if not len(below):
        return None
    s = int(below[0]) + 1
    if s == 1:
        return float(1.0 / f[1])
    c0, c1 = c[s - 1], c[s]
    t = (c0 - threshold) / (c0 - c1) if c0 != c1 else 0.0
    freq = f[s - 1] + t * (f[s] - f[s - 1])
    return float(1.0 / freq)


def soft_sphere_mask(box: int, radius_vox: float, edge_vox: float = 3.0) -> np.ndarray:
    """``(b, b, b)`` float32 mask: 1 within ``radius_vox`` of the box centre (index ``b // 2``), a raised-cosine
    fall to 0 over ``edge_vox`` voxels, 0 beyond."""
    c = box // 2
    g = np.arange(box) - c
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    mask = np.where(r <= radius_vox, 1.0, 0.0)
    if edge_vox > 0:
        band = (r > radius_vox) & (r < radius_vox + edge_vox)
        mask[band] = 0.5 * (1.0 + np.cos(np.pi * (r[band] - radius_vox) / edge_vox))
    return mask.astype(np.float32)


def radial_frequency(box: int, voxel_size_A: float, rfft: bool = True) -> np.ndarray:
    """Frequency magnitude (1/Å) of every coefficient of a ``b³`` spectrum: ``(b, b, b // 2 + 1)`` for the
    ``rfftn`` layout, ``(b, b, b)`` for ``fftn``."""
    f = np.fft.fftfreq(box, d=voxel_size_A)
    fx = np.fft.rfftfreq(box, d=voxel_size_A) if rfft else f
    kz, ky, kx = np.meshgrid(f, f, fx, indexing="ij")
    return np.sqrt(kz * kz + ky * ky + kx * kx)


def lowpass_filter(box: int, voxel_size_A: float, resolution_A: float | None, width_shells: float = 2.0,
                   highpass_A: float | None = None, rfft: bool = True, strict: bool = False) -> np.ndarray:
    """Raised-cosine low-pass (and optional high-pass) weights for a ``b³`` spectrum (layout as
    :func:`radial_frequency`): 1 below ``1/resolution_A``, falling to 0 over ``width_shells`` shells above it
    (``None``: no low-pass); with ``strict`` the fall ends at ``1/resolution_A`` (nothing finer than
    ``resolution_A`` passes). Frequencies below ``1/highpass_A`` are set to 0 (the mean always is)."""
    freq = radial_frequency(box, voxel_size_A, rfft)
    shell = 1.0 / (box * voxel_size_A)
    w = np.ones_like(freq)
    if resolution_A is not None:
        width = width_shells * shell
        f0 = 1.0 / resolution_A - (width if strict else 0.0)
        band = (freq > f0) & (freq < f0 + width)
        w[freq >= f0 + width] = 0.0
        w[band] = 0.5 * (1.0 + np.cos(np.pi * (freq[band] - f0) / width))
    if highpass_A is not None:
        w[freq < 1.0 / highpass_A] = 0.0
    w[freq == 0] = 0.0
    return w.astype(np.float32)


def apply_lowpass(volume: np.ndarray, voxel_size_A: float, resolution_A: float | None,
                  strict: bool = False) -> np.ndarray:
    """``volume`` ``(b, b, b)`` low-pass filtered at ``resolution_A`` (raised cosine, mean kept; ``strict`` as
    :func:`lowpass_filter`); ``None``: a copy."""
    box = _check_cubic(np.asarray(volume), "volume")
    if resolution_A is None:
        return np.array(volume, dtype=np.float32)
    w = lowpass_filter(box, voxel_size_A, resolution_A, strict=strict)
    w.flat[0] = 1.0  # keep the mean
    return np.fft.irfftn(np.fft.rfftn(volume) * w, s=volume.shape).astype(np.float32)
