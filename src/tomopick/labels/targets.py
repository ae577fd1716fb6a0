"""Training targets from picks: class maps (spheres, DeepETPicker weak labels) and Gaussian centroid heatmaps.

Two target families, chosen by :class:`TargetSpec.kind`:

* **class maps** (``sphere``, ``ball``, ``cubic``, ``tball``) → ``int`` ``(z, y, x)`` volume, 0 = background,
  ``ParticleSpec.label`` inside a particle's shape; trained with a softmax network.

  - ``sphere`` / ``ball``: voxels whose centre lies within ``r`` of the pick (``r = radius_fraction · radius_A /
    voxel_size_A``). The two names are synonyms; ``sphere`` is the octopi/DeepFindET name, ``ball`` DeepETPicker's.
  - ``cubic``: the cube ``max(|dz|, |dy|, |dx|) <= r`` (DeepETPicker "Cubic").
  - ``tball``: DeepETPicker's *truncated ball*: the ball of radius ``√2·r`` intersected with the cube of
    half-side ``r``, i.e. ``|d| <= √2·r and max|d_i| <= r`` (from DeepETPicker's label generation, where a Gaussian
    template is thresholded at ``exp(-1)`` inside a ``(2r+1)³`` box).

* **heatmaps** (``gaussian``) → ``float32`` ``(C, z, y, x)`` volume, one channel per particle class in the set's
  order; trained with a sigmoid network and a regression loss. tomoCPT-style centroid map: two isotropic Gaussians
  with ``σ₁ = 0.95·R/3`` and ``σ₂ = 0.5·R/3`` summed, set to 0 beyond ``R`` (truncation), and divided by 2 so that
  the value at the pick's own position is exactly 1 (``R = radius_fraction · radius_A / voxel_size_A``).

Overlapping particles are resolved deterministically, independent of the order of the picks:

* class maps: a voxel covered by several shapes takes the class of the pick with the smallest *normalised*
  distance ``|d| / r`` (its "most central" particle); exact ties go to the pick that sorts first by
  ``(label, z, y, x)``.
* heatmaps: within a channel the maximum of the overlapping maps is kept (peaks stay 1, never summed above 1).

Picks whose class is not in the particle set raise; picks outside the volume are ignored (only the part of a
shape inside the volume is drawn).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np

from tomopick.data import ParticleSet, Picks
from tomopick.data.coords import angstrom_to_voxel, voxel_size_zyx

TargetKind = Literal["sphere", "ball", "cubic", "tball", "gaussian"]
CLASS_MAP_KINDS = ("sphere", "ball", "cubic", "tball")
HEATMAP_KINDS = ("gaussian",)

#: tomoCPT's two Gaussian widths as fractions of R/3.
GAUSSIAN_SIGMA_FACTORS = (0.95, 0.5)


@dataclass(frozen=True)
class TargetSpec:
    """How to turn picks into a training target.

    Attributes
    ----------
    kind
        ``"sphere"``/``"ball"``, ``"cubic"``, ``"tball"`` (int class map) or ``"gaussian"`` (float heatmaps).
    radius_fraction
        Label radius as a fraction of each class's ``radius_A`` (e.g. 0.5 labels the inner half).
    """

    kind: TargetKind = "sphere"
    radius_fraction: float = 0.5

    def __post_init__(self) -> None:
        if self.kind not in CLASS_MAP_KINDS + HEATMAP_KINDS:
            raise ValueError(f"unknown target kind {self.kind!r}; known: {', '.join(CLASS_MAP_KINDS + HEATMAP_KINDS)}")
        if not self.radius_fraction > 0:
            raise ValueError(f"radius_fraction must be > 0, got {self.radius_fraction}")

    @property
    def is_heatmap(self) -> bool:
        return self.kind in HEATMAP_KINDS


def label_radii_vox(particles: ParticleSet, voxel_size_A: float, radius_fraction: float = 1.0) -> dict[str, float]:
    """Per-class label radius in voxels: ``radius_fraction · radius_A / voxel_size_A``.

    Parameters
    ----------
    particles
        The particle set (radii in Å).
    voxel_size_A
        Isotropic voxel size in Å.
    radius_fraction
        Fraction of the particle radius to use.

    Returns
    -------
    dict
        ``{class name: radius in voxels}``.
    """
    vs = float(np.mean(voxel_size_zyx(voxel_size_A)))
    return {p.name: radius_fraction * p.radius_A / vs for p in particles}


def _pick_table(picks: Picks, particles: ParticleSet, voxel_size_A: float,
                radius_fraction: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Continuous voxel centres ``(n, 3)``, labels ``(n,)``, channel indices ``(n,)`` and radii ``(n,)`` in voxels,
    sorted by ``(label, z, y, x)`` (the deterministic tie-break order)."""
    particles.check_names(picks.particles)
    names = picks.frame["particle"].to_numpy()
    centres = angstrom_to_voxel(picks.xyz_A, voxel_size_A)
    radii_by_name = label_radii_vox(particles, voxel_size_A, radius_fraction)
    label_by_name = {p.name: int(p.label) for p in particles}  # type: ignore[arg-type]
    channel_by_name = {n: i for i, n in enumerate(particles.names)}
    labels = np.array([label_by_name[n] for n in names], dtype=np.int64)
    channels = np.array([channel_by_name[n] for n in names], dtype=np.int64)
    radii = np.array([radii_by_name[n] for n in names], dtype=np.float64)
    if len(names):
        order = np.lexsort((centres[:, 2], centres[:, 1], centres[:, 0], labels))
    else:
        order = np.zeros(0, dtype=np.int64)
    return centres[order], labels[order], channels[order], radii[order]


def _box(centre: np.ndarray, reach: float, shape: Sequence[int]) -> tuple[slice, ...] | None:
    """Index box covering ``centre ± reach`` clipped to the volume, or None when empty."""
    lo = np.maximum(np.ceil(centre - reach - 1e-9).astype(np.int64), 0)
    hi = np.minimum(np.floor(centre + reach + 1e-9).astype(np.int64) + 1, np.asarray(shape))
    if np.any(hi <= lo):
        return None
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))


def _offsets(box: tuple[slice, ...], centre: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dz = np.arange(box[0].start, box[0].stop, dtype=np.float64)[:, None, None] - centre[0]
    dy = np.arange(box[1].start, box[1].stop, dtype=np.float64)[None, :, None] - centre[1]
    dx = np.arange(box[2].start, box[2].stop, dtype=np.float64)[None, None, :] - centre[2]
    return dz, dy, dx


def class_map(shape_zyx: Sequence[int], picks: Picks, particles: ParticleSet, voxel_size_A: float,
              kind: TargetKind = "sphere", radius_fraction: float = 0.5, dtype: type = np.uint8) -> np.ndarray:
    """Integer class map: 0 background, ``ParticleSpec.label`` inside each pick's shape.

    Parameters
    ----------
    shape_zyx
        Output shape ``(z, y, x)`` in voxels.
    picks
        Picks in Å (``x, y, z``, origin at the centre of voxel 0); classes must be in ``particles``.
    particles
        Particle set (radii in Å, labels).
    voxel_size_A
        Isotropic voxel size in Å of the volume.
    kind
        ``"sphere"``/``"ball"``, ``"cubic"`` or ``"tball"`` (see the module docstring).
    radius_fraction
        Label radius as a fraction of the particle radius.
    dtype
        Integer dtype of the result (``uint8`` holds up to 255 classes).

    Returns
    -------
    numpy.ndarray
        ``(z, y, x)`` of ``dtype``.
    """
    if kind not in CLASS_MAP_KINDS:
        raise ValueError(f"class_map: kind must be one of {CLASS_MAP_KINDS}, got {kind!r}")
    shape = tuple(int(s) for s in shape_zyx)
    out = np.zeros(shape, dtype=dtype)
    best = np.full(shape, np.inf, dtype=np.float64)  # normalised distance of the current owner
    centres, labels, _, radii = _pick_table(picks, particles, voxel_size_A, radius_fraction)
    for centre, label, r in zip(centres, labels, radii):
        box = _box(centre, r, shape)  # every shape lies within the cube of half-side r
        if box is None:
            continue
        dz, dy, dx = _offsets(box, centre)
        dist = np.sqrt(dz * dz + dy * dy + dx * dx)
        cheb = np.maximum(np.maximum(np.abs(dz), np.abs(dy)), np.abs(dx))
        if kind in ("sphere", "ball"):
            inside = dist <= r + 1e-9
        elif kind == "cubic":
            inside = cheb <= r + 1e-9
        else:  # tball
            inside = (dist <= np.sqrt(2.0) * r + 1e-9) & (cheb <= r + 1e-9)
        norm = dist / r
        sub_best = best[box]
        take = inside & (norm < sub_best)
        sub_best[take] = norm[take]
        out[box][take] = label
    return out


def gaussian_heatmaps(shape_zyx: Sequence[int], picks: Picks, particles: ParticleSet, voxel_size_A: float,
                      radius_fraction: float = 1.0,
                      sigma_factors: Sequence[float] = GAUSSIAN_SIGMA_FACTORS) -> np.ndarray:
    """tomoCPT-style centroid heatmaps, one channel per class.

    Each pick contributes ``(Σ_k exp(-|d|² / 2σ_k²)) / K`` with ``σ_k = f_k · R / 3``, set to 0 where ``|d| > R``
    (``R = radius_fraction · radius_A / voxel_size_A``); overlaps keep the maximum.

    Parameters
    ----------
    shape_zyx
        Output spatial shape ``(z, y, x)``.
    picks, particles, voxel_size_A
        As :func:`class_map`.
    radius_fraction
        Truncation radius as a fraction of the particle radius.
    sigma_factors
        The ``f_k`` (default tomoCPT's 0.95 and 0.5).

    Returns
    -------
    numpy.ndarray
        ``(C, z, y, x)`` float32 in ``[0, 1]``, ``C = len(particles)`` in the set's order; 1 at a pick that sits on a
        voxel centre.
    """
    shape = tuple(int(s) for s in shape_zyx)
    out = np.zeros((len(particles),) + shape, dtype=np.float32)
    centres, _, channels, radii = _pick_table(picks, particles, voxel_size_A, radius_fraction)
    factors = [float(f) for f in sigma_factors]
    for centre, channel, r in zip(centres, channels, radii):
        box = _box(centre, r, shape)
        if box is None:
            continue
        dz, dy, dx = _offsets(box, centre)
        d2 = dz * dz + dy * dy + dx * dx
        value = sum(np.exp(-d2 / (2.0 * (f * r / 3.0) ** 2)) for f in factors) / len(factors)
        value = np.where(d2 <= r * r + 1e-9, value, 0.0).astype(np.float32)
        sub = out[channel][box]
        np.maximum(sub, value, out=sub)
    return out


def make_target(shape_zyx: Sequence[int], picks: Picks, particles: ParticleSet, voxel_size_A: float,
                spec: TargetSpec) -> np.ndarray:
    """The target selected by ``spec``: an int ``(z, y, x)`` class map or float ``(C, z, y, x)`` heatmaps."""
    if spec.is_heatmap:
        return gaussian_heatmaps(shape_zyx, picks, particles, voxel_size_A, spec.radius_fraction)
    return class_map(shape_zyx, picks, particles, voxel_size_A, spec.kind, spec.radius_fraction)
