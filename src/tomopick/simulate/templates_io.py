"""Particle density maps: bundled 10 Å maps, user MRC maps and procedural shapes; rotation and rescaling.

Density is in *contrast units*: the protein interior is ≈ 1 (the bundled maps are divided by one common factor,
so their relative masses stay physical; user maps are scaled so the mean density above 10 % of the maximum is 1).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy import ndimage

from tomopick.errors import TomopickError

#: Common divisor of the bundled maps (their interior density is ≈ 7–11 in the source units).
BUNDLED_SCALE = 10.0
BUNDLED_VOXEL_SIZE_A = 10.0
BUNDLED_KEYS = ("1fa2", "6drv", "6n4v", "6qzp", "7n4y", "8cpv", "8vaf")
SHAPES = ("sphere", "shell", "ellipsoid", "dumbbell", "rod")


@dataclass(frozen=True)
class Template:
    """A particle density map.

    Attributes
    ----------
    name
        Source description (bundled key, file path or shape spec).
    density
        ``(z, y, x)`` float32, contrast units (protein ≈ 1, background 0), centred at ``(n-1)/2`` per axis.
    voxel_size_A
        Voxel size of ``density`` in Å.
    """

    name: str
    density: np.ndarray
    voxel_size_A: float

    @property
    def center_zyx(self) -> np.ndarray:
        return (np.asarray(self.density.shape, dtype=np.float64) - 1.0) / 2.0

    @functools.cached_property
    def extent_radius_A(self) -> float:
        """Radius (Å) of the sphere around the centre holding every voxel above 1 % of the maximum."""
        d = self.density
        idx = np.argwhere(d > 0.01 * float(d.max()))
        if not len(idx):
            return self.voxel_size_A
        r = np.sqrt(((idx - self.center_zyx) ** 2).sum(axis=1)).max()
        return float((r + 1.0) * self.voxel_size_A)


@functools.lru_cache(maxsize=None)
def _bundled_archive() -> dict[str, np.ndarray]:
    ref = resources.files("tomopick.simulate") / "templates" / "maps_10A.npz"
    with resources.as_file(ref) as path, np.load(path) as npz:
        return {k: np.asarray(npz[k], dtype=np.float32) for k in npz.files}


def bundled_template(key: str) -> Template:
    """One of the seven bundled 10 Å maps (``1fa2 6drv 6n4v 6qzp 7n4y 8cpv 8vaf``)."""
    maps = _bundled_archive()
    if key not in maps:
        raise TomopickError(f"unknown bundled map {key!r}; available: {', '.join(sorted(maps))}")
    return Template(key, maps[key] / BUNDLED_SCALE, BUNDLED_VOXEL_SIZE_A)


def mrc_template(path: str | Path) -> Template:
    """A density map from an MRC file (protein bright), scaled so that its interior density is ≈ 1."""
    from tomopick.io import read_tomogram

    tomo = read_tomogram(path)
    data = tomo.load(np.float32)
    if not np.isfinite(data).all():
        raise TomopickError("template map holds NaN/Inf values", path)
    top = float(data.max())
    if top <= 0:
        raise TomopickError("template map has no positive density (protein must be bright)", path)
    interior = float(data[data > 0.1 * top].mean())
    return Template(str(path), np.clip(data, 0, None) / interior, float(np.mean(tomo.voxel_size_A)))


def _soft(signed_distance_vox: np.ndarray) -> np.ndarray:
    """Occupancy from a signed distance in voxels (negative inside), with a one-voxel linear edge."""
    return np.clip(0.5 - signed_distance_vox, 0.0, 1.0).astype(np.float32)


def shape_template(spec: str, voxel_size_A: float) -> Template:
    """A procedural particle, density 1 inside, rendered at ``voxel_size_A``.

    ``spec`` is ``kind:params`` with lengths in Å: ``sphere:R``, ``shell:R`` (hollow, wall 25 % of R, at least 15
    Å), ``ellipsoid:A,B,C`` (semi-axes along x, y, z), ``dumbbell:R`` (two balls of radius R/2 at ±R/2 on x),
    ``rod:L,R`` (cylinder along x, length L, radius R).
    """
    kind, _, args = spec.partition(":")
    try:
        values = [float(v) for v in args.split(",") if v.strip()]
    except ValueError:
        raise TomopickError(f"bad shape spec {spec!r}; expected e.g. 'sphere:60'") from None
    needed = {"sphere": 1, "shell": 1, "ellipsoid": 3, "dumbbell": 1, "rod": 2}
    if kind not in needed or len(values) != needed[kind] or any(v <= 0 for v in values):
        raise TomopickError(
            f"bad shape spec {spec!r}; use sphere:R, shell:R, ellipsoid:A,B,C, dumbbell:R or rod:L,R (Å, > 0)"
        )
    vs = float(voxel_size_A)
    reach = float(np.hypot(values[0] / 2, values[1])) if kind == "rod" else max(values)
    half = int(np.ceil(reach / vs)) + 2
    ax = (np.arange(2 * half + 1, dtype=np.float32) - half) * vs
    z, y, x = np.meshgrid(ax, ax, ax, indexing="ij")
    if kind == "sphere":
        sd = np.sqrt(x * x + y * y + z * z) - values[0]
    elif kind == "shell":
        r_out = values[0]
        wall = max(0.25 * r_out, 15.0)
        r = np.sqrt(x * x + y * y + z * z)
        sd = np.abs(r - (r_out - wall / 2)) - wall / 2
    elif kind == "ellipsoid":
        a, b, c = values
        q = np.sqrt((x / a) ** 2 + (y / b) ** 2 + (z / c) ** 2)
        sd = (q - 1.0) * min(a, b, c)
    elif kind == "dumbbell":
        r = values[0] / 2
        d1 = np.sqrt((x - r) ** 2 + y * y + z * z)
        d2 = np.sqrt((x + r) ** 2 + y * y + z * z)
        sd = np.minimum(d1, d2) - r
    else:  # rod
        length, r = values
        radial = np.sqrt(y * y + z * z) - r
        axial = np.abs(x) - length / 2
        sd = np.maximum(radial, axial)
    return Template(spec, _soft(sd / vs), vs)


def resolve_template(spec: str, voxel_size_A: float) -> Template:
    """A template from a spec: bundled key, shape spec (``kind:params``) or MRC path."""
    if spec in BUNDLED_KEYS:
        return bundled_template(spec)
    if spec.split(":", 1)[0] in SHAPES and ":" in spec:
        return shape_template(spec, voxel_size_A)
    path = Path(spec)
    if not path.is_file():
        raise TomopickError("template not found (expected a bundled map key, a shape spec or an MRC file)", spec)
    return mrc_template(path)


def render_rotated(template: Template, rotation: np.ndarray, voxel_size_A: float,
                   frac_zyx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate and resample a template onto a grid of ``voxel_size_A``.

    Parameters
    ----------
    template
        The map (any voxel size; it is low-passed first when the target grid is coarser).
    rotation
        ``(3, 3)`` matrix acting on ``(x, y, z)`` that rotates the reference into the particle.
    voxel_size_A
        Target voxel size in Å.
    frac_zyx
        Sub-voxel offset ``(3,)`` of the particle centre from the box's central voxel, in target voxels.

    Returns
    -------
    box, center
        ``box`` ``(n, n, n)`` float32 density; ``center`` ``(3,)`` int — index of the central voxel (the particle
        centre lies at ``center + frac_zyx``).
    """
    scale = float(voxel_size_A) / template.voxel_size_A  # template voxels per output voxel
    src = template.density
    if scale > 1.01:  # anti-alias before sampling a coarser grid
        src = ndimage.gaussian_filter(src, sigma=0.5 * np.sqrt(scale * scale - 1.0), mode="constant")
    half = int(np.ceil(template.extent_radius_A / voxel_size_A)) + 2
    n = 2 * half + 1
    center = np.array([half, half, half])
    rot_zyx = np.asarray(rotation, dtype=np.float64)[::-1, ::-1]  # same rotation acting on (z, y, x)
    matrix = rot_zyx.T * scale  # output offset (zyx, out voxels) → template offset (zyx, template voxels)
    offset = template.center_zyx - matrix @ (center + np.asarray(frac_zyx, dtype=np.float64))
    box = ndimage.affine_transform(src, matrix, offset=offset, output_shape=(n, n, n), order=1, mode="constant",
                                   cval=0.0, prefilter=False)
    return np.clip(box, 0.0, None).astype(np.float32, copy=False), center
