"""Cellular context with exact labels: membranes (vesicles of many shapes, sheets, double membranes, ER-like tubes),
gold beads and carbon edges, rendered into a scene together with a semantic label volume and instance ids.

Enabled by ``SimulationConfig(context=ContextConfig(...))``; without it the simulator is unchanged (same arrays for
the same seed). Every membrane is a lipid bilayer drawn from a signed distance ``d`` (Å) to its mid-surface: two
dense head-group leaflets at ``d = ±20 Å`` (40 Å apart) over a hydrophobic core (:data:`~tomopick.simulate.scene.
LIPID_TAIL_DENSITY`), displacing the ice, added to the potential *before* imaging. The labels are exact functions
of the same ``d``:

=====  ===========  ==========================================================================================
id     class        where
=====  ===========  ==========================================================================================
0      background   ice / cytosol-like space (filaments, clutter and particles keep their compartment's class)
1      membrane     ``|d| ≤ 25 Å`` of any bilayer (:data:`MEMBRANE_HALF_THICKNESS_A`)
2      lumen        inside a closed membrane (vesicle, tube, both compartments of a double membrane)
3      gold         gold beads
4      carbon       carbon support film beyond a (curved) edge
=====  ===========  ==========================================================================================

Instance ids (int32): each vesicle / tube / double-membrane organelle (its membrane and lumen) and each sheet has its
own id ``1, 2, …``; 0 elsewhere (gold and carbon have none).

Particles can be placed *membrane-bound* (centre on the outer side of a membrane along its normal, the particle's
z axis along the normal, a random spin about it) or *lumenal* (inside a lumen); see :func:`membrane_candidates`
and :func:`lumen_candidates`, used by :func:`tomopick.simulate.scene.build_scene`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy.spatial.transform import Rotation

#: Semantic class ids of the label volume (also used by :mod:`tomopick.segment`).
SEGMENT_CLASSES: dict[str, int] = {"background": 0, "membrane": 1, "lumen": 2, "gold": 3, "carbon": 4}
MEMBRANE_HALF_THICKNESS_A = 25.0
LEAFLET_OFFSET_A = 20.0  # head groups at ±20 Å: two dense leaflets 40 Å apart
CARBON_DENSITY = 1.1
VESICLE_SHAPES = ("sphere", "ellipsoid", "deformed")


def clip_box(center: np.ndarray, halves: tuple[int, int, int], shape: tuple[int, ...]
             ) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
    """Volume slices and the matching slices of a box of half-sizes ``halves`` (voxels, z/y/x) at integer
    ``center``, clipped to a volume of ``shape``; ``None`` when the box lies wholly outside."""
    vol, box = [], []
    for c, h, n in zip(center, halves, shape):
        lo, hi = int(c) - h, int(c) + h + 1
        a, b = max(lo, 0), min(hi, n)
        if a >= b:
            return None
        vol.append(slice(a, b))
        box.append(slice(a - lo, b - lo))
    return tuple(vol), tuple(box)


class ContextConfig(BaseModel):
    """How much context a simulated tomogram holds (ranges ``(low, high)`` are drawn per tomogram, counts
    inclusive; all lengths in Å).

    Attributes
    ----------
    n_vesicles, vesicle_radius_A, vesicle_shapes
        Single-bilayer vesicles: mean radius (diameter 200–1500 Å by default) and the shapes to draw from
        (``sphere``, ``ellipsoid`` (axes 0.6–1.4 × radius), ``deformed`` (a sphere with smooth random bumps)).
    n_double, double_radius_A, double_gap_A
        Mitochondria-like organelles: an elongated ellipsoid outer bilayer and an inner bilayer ``gap`` inwards.
    n_tubes, tube_radius_A, tube_length_A
        ER-like tubes (capsules).
    n_sheets, sheet_amplitude_A
        Membrane sheets crossing the volume (flat when the amplitude drawn is 0, else sinusoidally curved).
    n_gold, gold_radius_A
        Gold beads anywhere in the ice (label ``gold``).
    carbon_probability, carbon_fraction
        Chance of a carbon edge and the lateral fraction it covers.
    membrane_bound_fraction, lumenal_fraction
        Fraction of particles placed on a membrane / inside a lumen (when the scene has one).
    margin_A
        Gap kept between context objects.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_vesicles: tuple[int, int] = (2, 6)
    vesicle_radius_A: tuple[float, float] = (100.0, 750.0)
    vesicle_shapes: tuple[Literal["sphere", "ellipsoid", "deformed"], ...] = VESICLE_SHAPES
    n_double: tuple[int, int] = (0, 1)
    double_radius_A: tuple[float, float] = (350.0, 600.0)
    double_gap_A: tuple[float, float] = (110.0, 180.0)
    n_tubes: tuple[int, int] = (0, 2)
    tube_radius_A: tuple[float, float] = (150.0, 300.0)
    tube_length_A: tuple[float, float] = (800.0, 3000.0)
    n_sheets: tuple[int, int] = (0, 1)
    sheet_amplitude_A: tuple[float, float] = (0.0, 300.0)
    n_gold: tuple[int, int] = (0, 4)
    gold_radius_A: tuple[float, float] = (40.0, 80.0)
    carbon_probability: float = Field(default=0.3, ge=0, le=1)
    carbon_fraction: tuple[float, float] = (0.1, 0.3)
    membrane_bound_fraction: float = Field(default=0.25, ge=0, le=1)
    lumenal_fraction: float = Field(default=0.25, ge=0, le=1)
    margin_A: float = Field(default=30.0, ge=0)

    @model_validator(mode="after")
    def _ranges(self) -> "ContextConfig":
        for name in ("n_vesicles", "vesicle_radius_A", "n_double", "double_radius_A", "double_gap_A", "n_tubes",
                     "tube_radius_A", "tube_length_A", "n_sheets", "sheet_amplitude_A", "n_gold", "gold_radius_A",
                     "carbon_fraction"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"context {name} must be (low, high) with 0 ≤ low ≤ high")
        if not self.vesicle_shapes:
            raise ValueError("context vesicle_shapes must name at least one shape")
        if self.membrane_bound_fraction + self.lumenal_fraction > 1:
            raise ValueError("context membrane_bound_fraction + lumenal_fraction must be ≤ 1")
        return self


@dataclass
class Compartment:
    """One membrane object: its instance id, kind, and where its surface lies (for particle placement)."""

    instance: int
    kind: str
    closed: bool
    info: dict[str, Any] = field(default_factory=dict)


# -- bilayer density ------------------------------------------------------------------------------------------
def bilayer(d_A: np.ndarray, voxel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
    """Density and occupancy of a bilayer from the signed distance ``d_A`` (Å) to its mid-surface.

    Returns
    -------
    density, occupancy
        float32 arrays like ``d_A``: lipid density (head groups at ±:data:`LEAFLET_OFFSET_A` over a hydrophobic
        core) and the fraction of each voxel the bilayer fills (a one-voxel ramp centred on the label boundary
        ``|d| = 25 Å``: 1 inside, 0.5 on it, 0 beyond).
    """
    from tomopick.simulate.scene import HEADGROUP_EXCESS, LIPID_TAIL_DENSITY

    vs = float(voxel_size_A)
    sig = np.hypot(5.0, 0.5 * vs)
    occ = np.clip(0.5 - (np.abs(d_A) - MEMBRANE_HALF_THICKNESS_A) / vs, 0.0, 1.0).astype(np.float32)
    dens = (LIPID_TAIL_DENSITY * occ
            + HEADGROUP_EXCESS * (np.exp(-0.5 * ((d_A - LEAFLET_OFFSET_A) / sig) ** 2)
                                  + np.exp(-0.5 * ((d_A + LEAFLET_OFFSET_A) / sig) ** 2)))
    return dens.astype(np.float32), occ


def _normalised(F: np.ndarray, voxel_size_A: float) -> np.ndarray:
    """First-order signed distance ``F / |∇F|`` (Å) from an implicit function sampled on a grid (F in Å-like
    units; exact for spheres and planes, within a few Å of the surface for smooth shapes)."""
    g = np.gradient(F, float(voxel_size_A))
    norm = np.sqrt(sum(gi * gi for gi in g))
    return (F / np.maximum(norm, 1e-3)).astype(np.float32)


def _box_grid(half: tuple[int, int, int], frac: np.ndarray, vs: float) -> list[np.ndarray]:
    """Sparse ``(z, y, x)`` offsets in Å of a box of half-sizes ``half`` from a centre at sub-voxel ``frac``."""
    return np.meshgrid(*((np.arange(-h, h + 1, dtype=np.float32) - f) * vs for h, f in zip(half, frac)),
                       indexing="ij", sparse=True)


def _rotated(grid: list[np.ndarray], rot_xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Box offsets ``(z, y, x)`` expressed in an object frame rotated by ``rot_xyz`` (object → volume, on x,y,z)."""
    z, y, x = grid
    r = np.asarray(rot_xyz, dtype=np.float32)
    # object coordinates = R^T @ (x, y, z)
    u = r[0, 0] * x + r[1, 0] * y + r[2, 0] * z
    v = r[0, 1] * x + r[1, 1] * y + r[2, 1] * z
    w = r[0, 2] * x + r[1, 2] * y + r[2, 2] * z
    return u, v, w


def sdf_sphere(grid: list[np.ndarray], radius_A: float) -> np.ndarray:
    z, y, x = grid
    return (np.sqrt(z * z + y * y + x * x) - radius_A).astype(np.float32)


def sdf_ellipsoid(grid: list[np.ndarray], axes_A: np.ndarray, rot_xyz: np.ndarray, vs: float) -> np.ndarray:
    u, v, w = _rotated(grid, rot_xyz)
    a = np.asarray(axes_A, dtype=np.float32)
    r = np.sqrt((u / a[0]) ** 2 + (v / a[1]) ** 2 + (w / a[2]) ** 2)
    return _normalised((r - 1.0) * float(np.min(a)), vs)


def sdf_deformed(grid: list[np.ndarray], radius_A: float, bumps: np.ndarray, heights: np.ndarray, width: float,
                 vs: float) -> np.ndarray:
    """A sphere whose radius varies smoothly with direction: ``r(u) = R (1 + Σ h_j exp(-(1 - u·v_j) / w²))``."""
    z, y, x = grid
    rho = np.sqrt(z * z + y * y + x * x)
    safe = np.maximum(rho, 1e-3)
    factor = np.ones_like(rho)
    for (bx, by, bz), h in zip(bumps, heights):
        cos = (x * bx + y * by + z * bz) / safe
        factor = factor + h * np.exp(-(1.0 - cos) / (width * width))
    return _normalised(rho - radius_A * factor, vs)


def sdf_capsule(grid: list[np.ndarray], half_length_A: float, radius_A: float, rot_xyz: np.ndarray) -> np.ndarray:
    u, v, w = _rotated(grid, rot_xyz)
    t = np.clip(w, -half_length_A, half_length_A)
    return (np.sqrt(u * u + v * v + (w - t) ** 2) - radius_A).astype(np.float32)


def rotation_from_normal(normal_xyz: np.ndarray, spin_deg: float) -> np.ndarray:
    """Rotation ``(3, 3)`` (reference → particle, on x,y,z) whose z axis is ``normal_xyz``, spun by ``spin_deg``
    about it: ``Rz(rot) · Ry(tilt) · Rz(spin)`` with ``tilt = acos(n_z)``, ``rot = atan2(n_y, n_x)``."""
    n = np.asarray(normal_xyz, dtype=np.float64)
    n = n / max(np.linalg.norm(n), 1e-12)
    tilt = np.degrees(np.arccos(np.clip(n[2], -1.0, 1.0)))
    rot = np.degrees(np.arctan2(n[1], n[0]))
    return Rotation.from_euler("ZYZ", [rot, tilt, spin_deg], degrees=True).as_matrix()


# -- drawing into a scene builder ------------------------------------------------------------------------------
class ContextPainter:
    """Adds context objects to a :class:`tomopick.simulate.scene._Builder` and keeps their labels.

    Attributes
    ----------
    classes
        uint8 ``(z, y, x)`` semantic labels (:data:`SEGMENT_CLASSES`).
    instances
        int32 ``(z, y, x)`` compartment instance ids.
    compartments
        One :class:`Compartment` per instance.
    """

    def __init__(self, builder: Any, config: ContextConfig, rng: np.random.Generator) -> None:
        self.b = builder
        self.cfg = config
        self.rng = rng
        self.vs = float(builder.vs)
        self.shape = tuple(builder.shape)
        self.classes = np.zeros(self.shape, dtype=np.uint8)
        self.instances = np.zeros(self.shape, dtype=np.int32)
        self.compartments: list[Compartment] = []
        self.margin_vox = int(np.ceil(config.margin_A / self.vs))
        self.summary: dict[str, Any] = {"vesicles": [], "double": [], "tubes": [], "sheets": [], "gold": [],
                                        "carbon": None}

    def _count(self, rng_pair: tuple[int, int]) -> int:
        return int(self.rng.integers(rng_pair[0], rng_pair[1] + 1))

    def _uniform(self, pair: tuple[float, float]) -> float:
        return float(self.rng.uniform(pair[0], pair[1]))

    def paint(self) -> None:
        """Draw everything (carbon, sheets, organelles, tubes, vesicles, gold), in that order."""
        cfg = self.cfg
        if self.rng.random() < cfg.carbon_probability:
            self.add_carbon()
        for _ in range(self._count(cfg.n_sheets)):
            self.add_sheet()
        for _ in range(self._count(cfg.n_double)):
            self.add_closed("double")
        for _ in range(self._count(cfg.n_tubes)):
            self.add_closed("tube")
        for _ in range(self._count(cfg.n_vesicles)):
            self.add_closed(str(cfg.vesicle_shapes[int(self.rng.integers(len(cfg.vesicle_shapes)))]))
        for _ in range(self._count(cfg.n_gold)):
            self.add_gold()

    # -- helpers ------------------------------------------------------------------------------------------
    def _ice_thickness_A(self) -> float:
        return float(np.min(self.b.z_hi - self.b.z_lo)) * self.vs

    def _free(self, vol: tuple[slice, ...], region: np.ndarray) -> bool:
        from scipy import ndimage

        grown = ndimage.binary_dilation(region, iterations=self.margin_vox) if self.margin_vox else region
        return not (np.any(self.b.occupied[vol] & grown) or np.any((self.classes[vol] > 0) & grown))

    def _commit(self, vol: tuple[slice, ...], excess: np.ndarray, occupied: np.ndarray, labels: np.ndarray,
                instance: int) -> None:
        self.b.potential[vol] += excess
        self.b.occupied[vol] |= occupied
        write = labels > 0
        self.classes[vol][write] = labels[write]
        if instance:
            self.instances[vol][write] = instance

    # -- closed membranes -----------------------------------------------------------------------------------
    def _closed_sdf(self, kind: str, frac: np.ndarray) -> tuple[Any, ...] | None:
        rng, vs = self.rng, self.vs
        limit = self._ice_thickness_A() / 2 - 40.0
        rot = Rotation.random(random_state=rng).as_matrix()
        info: dict[str, Any] = {"shape": kind}
        gap = 0.0
        if kind in ("sphere", "ellipsoid", "deformed"):
            r = self._uniform(self.cfg.vesicle_radius_A)
            if kind == "ellipsoid":
                axes = r * rng.uniform(0.6, 1.4, 3)
                axes *= min(1.0, limit / float(axes.max()))
                extent = float(axes.max())
                info.update(axes_A=axes.tolist(), rotation=rot.tolist())
            elif kind == "deformed":
                r = min(r, limit / 1.35)
                extent = r * 1.35
                n_b = int(rng.integers(2, 6))
                bumps = rng.normal(size=(n_b, 3))
                bumps /= np.linalg.norm(bumps, axis=1, keepdims=True)
                heights = rng.uniform(-0.25, 0.3, n_b)
                width = float(rng.uniform(0.5, 0.9))
                info.update(radius_A=r, bumps=bumps.tolist(), heights=heights.tolist(), width=width)
            else:
                r = min(r, limit)
                extent = r
                info.update(radius_A=r)
            if extent < 90.0:
                return None
        elif kind == "double":
            r = self._uniform(self.cfg.double_radius_A)
            axes = np.array([r * rng.uniform(1.4, 2.5), r, r * rng.uniform(0.8, 1.0)])
            # long axis roughly in the ice plane
            rot = Rotation.from_euler("ZYX", [rng.uniform(0, 360), rng.uniform(-10, 10), rng.uniform(0, 360)],
                                      degrees=True).as_matrix()
            axes[1:] = np.minimum(axes[1:], limit)
            extent = float(axes.max())
            gap = self._uniform(self.cfg.double_gap_A)
            if float(axes.min()) - gap < 120.0:
                return None
            info.update(axes_A=axes.tolist(), gap_A=gap, rotation=rot.tolist())
        else:  # tube
            r = min(self._uniform(self.cfg.tube_radius_A), limit)
            length = self._uniform(self.cfg.tube_length_A)
            rot = Rotation.from_euler("ZYX", [rng.uniform(0, 360), rng.uniform(70, 110), rng.uniform(0, 360)],
                                      degrees=True).as_matrix()
            extent = length / 2 + r
            info.update(radius_A=r, length_A=length, rotation=rot.tolist())
            if r < 90.0:
                return None
        half = int(np.ceil((extent + MEMBRANE_HALF_THICKNESS_A + 2 * vs) / vs))
        halves = (half, half, half)
        grid = _box_grid(halves, frac, vs)
        if kind == "sphere":
            d = sdf_sphere(grid, info["radius_A"])
        elif kind in ("ellipsoid", "double"):
            d = sdf_ellipsoid(grid, np.asarray(info["axes_A"]), rot, vs)
        elif kind == "deformed":
            d = sdf_deformed(grid, info["radius_A"], np.asarray(info["bumps"]), np.asarray(info["heights"]),
                             info["width"], vs)
        else:
            d = sdf_capsule(grid, info["length_A"] / 2, info["radius_A"], rot)
        return d, halves, info, gap

    def add_closed(self, kind: str) -> int | None:
        """One closed membrane object (vesicle shape, ``double`` or ``tube``); returns its instance id."""
        from tomopick.data.coords import voxel_to_angstrom
        from tomopick.simulate.scene import ICE_DENSITY, MAX_ATTEMPTS

        frac = self.rng.uniform(-0.5, 0.5, 3)
        made = self._closed_sdf(kind, frac)
        if made is None:
            return None
        d, halves, info, gap = made
        dens, occ = bilayer(d, self.vs)
        labels = np.where(d < -MEMBRANE_HALF_THICKNESS_A, SEGMENT_CLASSES["lumen"], 0).astype(np.uint8)
        if gap:
            d2 = d + np.float32(gap)
            dens2, occ2 = bilayer(d2, self.vs)
            dens = dens + dens2
            occ = np.maximum(occ, occ2)
            labels[np.abs(d2) <= MEMBRANE_HALF_THICKNESS_A] = SEGMENT_CLASSES["membrane"]
        labels[np.abs(d) <= MEMBRANE_HALF_THICKNESS_A] = SEGMENT_CLASSES["membrane"]
        excess = dens - ICE_DENSITY * occ
        body = labels > 0
        occupied = occ > 0
        half = np.asarray(halves)
        for _attempt in range(MAX_ATTEMPTS // 3):
            center = self.b._random_center(int(half[0]))
            win = self._window(center, halves)
            if win is None:
                continue
            vol, bsl = win
            if not self.b._inside_ice(vol, body[bsl]) or not self._free(vol, body[bsl]):
                continue
            instance = len(self.compartments) + 1
            self._commit(vol, excess[bsl], occupied[bsl], labels[bsl], instance)
            centre_A = voxel_to_angstrom(center + frac, self.vs)[0].tolist()
            info = {**info, "center_xyz_A": centre_A, "instance": instance}
            self.compartments.append(Compartment(instance, kind, True, info))
            key = {"double": "double", "tube": "tubes"}.get(kind, "vesicles")
            self.summary[key].append({k: v for k, v in info.items() if k not in ("bumps", "rotation")})
            return instance
        return None

    def _window(self, center: np.ndarray, halves: tuple[int, int, int]):
        return clip_box(center, halves, self.shape)

    # -- sheets, carbon, gold ---------------------------------------------------------------------------------
    def _chunks(self, depth: int = 16) -> Iterator[tuple[slice, list[np.ndarray]]]:
        nz, ny, nx = self.shape
        vs = self.vs
        y = (np.arange(ny, dtype=np.float32) * vs)[None, :, None]
        x = (np.arange(nx, dtype=np.float32) * vs)[None, None, :]
        for z0 in range(0, nz, depth):
            z = (np.arange(z0, min(z0 + depth, nz), dtype=np.float32) * vs)[:, None, None]
            yield slice(z0, min(z0 + depth, nz)), [z, y, x]

    def add_sheet(self) -> int | None:
        """A membrane sheet through the volume: plane ``n·(p − c) = a sin(k t·(p − c) + φ)`` (t ⊥ n)."""
        from tomopick.simulate.scene import ICE_DENSITY

        rng, vs = self.rng, self.vs
        nz, ny, nx = self.shape
        # normals mostly in the ice plane: a sheet parallel to the ice would sit in the missing wedge entirely
        az = rng.uniform(0, 2 * np.pi)
        el = np.radians(rng.uniform(-40, 40))
        n = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])  # x, y, z
        t = np.cross(n, [0.0, 0.0, 1.0])
        t = t / max(np.linalg.norm(t), 1e-9)
        c = np.array([rng.uniform(0.2, 0.8) * nx, rng.uniform(0.2, 0.8) * ny, nz / 2.0]) * vs
        amp = self._uniform(self.cfg.sheet_amplitude_A)
        wavelength = float(rng.uniform(1500.0, 5000.0))
        k = 2 * np.pi / wavelength
        phase = float(rng.uniform(0, 2 * np.pi))
        instance = len(self.compartments) + 1
        parts = []
        for zsl, (z, y, x) in self._chunks():
            rel = (x - c[0], y - c[1], z - c[2])
            s = rel[0] * t[0] + rel[1] * t[1] + rel[2] * t[2]
            F = rel[0] * n[0] + rel[1] * n[1] + rel[2] * n[2] - amp * np.sin(k * s + phase)
            d = (F / np.sqrt(1.0 + (amp * k * np.cos(k * s + phase)) ** 2)).astype(np.float32)
            dens, occ = bilayer(d, vs)
            ice = self._ice_fraction(zsl)
            dens *= ice
            occ *= ice
            labels = np.where((np.abs(d) <= MEMBRANE_HALF_THICKNESS_A) & (ice > 0.5),
                              SEGMENT_CLASSES["membrane"], 0).astype(np.uint8)
            if np.any(labels & (self.b.occupied[zsl] | (self.classes[zsl] > 0))):
                return None
            parts.append((zsl, dens - ICE_DENSITY * occ, occ > 0, labels))
        for zsl, excess, occupied, labels in parts:
            self._commit((zsl, slice(None), slice(None)), excess, occupied, labels, instance)
        info = {"normal_xyz": n.tolist(), "point_xyz_A": c.tolist(), "amplitude_A": amp, "wavelength_A": wavelength,
                "phase": phase, "tangent_xyz": t.tolist(), "instance": instance}
        self.compartments.append(Compartment(instance, "sheet", False, info))
        self.summary["sheets"].append({k: v for k, v in info.items() if k != "tangent_xyz"})
        return instance

    def _ice_fraction(self, zsl: slice) -> np.ndarray:
        from tomopick.simulate.scene import _slab_occupancy

        z = np.arange(zsl.start, zsl.stop, dtype=np.float32)[:, None, None]
        return _slab_occupancy(self.b.z_lo[None], self.b.z_hi[None], z)

    def add_carbon(self) -> None:
        """Carbon film (through the ice thickness) beyond a gently curved edge."""
        from scipy import ndimage

        from tomopick.simulate.scene import ICE_DENSITY

        rng, vs = self.rng, self.vs
        nz, ny, nx = self.shape
        az = rng.uniform(0, 2 * np.pi)
        n = np.array([np.cos(az), np.sin(az)])  # x, y
        frac = self._uniform(self.cfg.carbon_fraction)
        # the edge: n·(p − centre) = offset, with a curvature term
        proj_extent = 0.5 * (abs(n[0]) * nx + abs(n[1]) * ny) * vs
        offset = (1.0 - 2.0 * frac) * proj_extent
        curv = float(rng.uniform(-1.0, 1.0)) / 20000.0
        y = (np.arange(ny, dtype=np.float32) - ny / 2)[:, None] * vs
        x = (np.arange(nx, dtype=np.float32) - nx / 2)[None, :] * vs
        s = -x * n[1] + y * n[0]
        edge = (x * n[0] + y * n[1]) - offset - curv * s * s  # > 0: carbon
        inside = np.clip(0.5 + edge / vs, 0.0, 1.0).astype(np.float32)
        texture = ndimage.gaussian_filter(rng.standard_normal((ny, nx)).astype(np.float32), 3.0)
        texture = 1.0 + 0.15 * texture / max(float(texture.std()), 1e-6)
        for zsl, _grid in self._chunks():
            ice = self._ice_fraction(zsl)
            occ = ice * inside[None]
            self.b.potential[zsl] += (CARBON_DENSITY * texture[None] - ICE_DENSITY) * occ
            self.b.occupied[zsl] |= occ > 0
            lab = (occ > 0.5)
            self.classes[zsl][lab] = SEGMENT_CLASSES["carbon"]
        self.summary["carbon"] = {"normal_xy": n.tolist(), "fraction": frac, "curvature_per_A": curv}

    def add_gold(self) -> None:
        from tomopick.data.coords import voxel_to_angstrom
        from tomopick.simulate.scene import GOLD_DENSITY, ICE_DENSITY, MAX_ATTEMPTS

        rng, vs = self.rng, self.vs
        r = self._uniform(self.cfg.gold_radius_A)
        half = int(np.ceil(r / vs)) + 2
        frac = rng.uniform(-0.5, 0.5, 3)
        d = sdf_sphere(_box_grid((half, half, half), frac, vs), r)
        occ = np.clip(0.5 - d / vs, 0.0, 1.0).astype(np.float32)
        labels = np.where(d <= 0, SEGMENT_CLASSES["gold"], 0).astype(np.uint8)
        body = occ > 0
        for _attempt in range(MAX_ATTEMPTS // 3):
            center = self.b._random_center(half)
            win = self._window(center, (half, half, half))
            if win is None:
                continue
            vol, bsl = win
            if not self.b._inside_ice(vol, body[bsl]) or not self._free(vol, body[bsl]):
                continue
            self._commit(vol, ((GOLD_DENSITY - ICE_DENSITY) * occ)[bsl], body[bsl], labels[bsl], 0)
            self.summary["gold"].append({"center_xyz_A": voxel_to_angstrom(center + frac, vs)[0].tolist(),
                                         "radius_A": r})
            return

    # -- particle placement -------------------------------------------------------------------------------
    def surface_point(self) -> tuple[np.ndarray, np.ndarray, int] | None:
        """A random point on a membrane's outer mid-surface (voxels, z,y,x float), its outward unit normal
        (z,y,x) and the compartment id: a random membrane voxel of a random compartment, moved along the gradient
        of the distance to the membrane's lumen side."""
        if not self.compartments:
            return None
        comp = self.compartments[int(self.rng.integers(len(self.compartments)))]
        return self._surface_point_of(comp)

    def _surface_point_of(self, comp: Compartment) -> tuple[np.ndarray, np.ndarray, int] | None:
        rng = self.rng
        for _ in range(20):
            z, y, x = (int(rng.integers(0, n)) for n in self.shape)
            # sample near the object's centre for closed ones, anywhere for sheets
            if comp.closed:
                c = np.asarray(comp.info["center_xyz_A"])[::-1] / self.vs
                u = rng.normal(size=3)
                u /= np.linalg.norm(u)
                ray = c[None, :] + u[None, :] * np.arange(0, max(self.shape))[:, None]
                idx = np.rint(ray).astype(int)
                ok = np.all((idx >= 0) & (idx < np.asarray(self.shape)), axis=1)
                idx = idx[ok]
                hit = (self.instances[tuple(idx.T)] == comp.instance) & (
                    self.classes[tuple(idx.T)] == SEGMENT_CLASSES["membrane"])
                if not hit.any():
                    continue
                last = idx[np.nonzero(hit)[0][-1]]  # the outermost membrane voxel along the ray
                return last.astype(np.float64), u, comp.instance
            n = np.asarray(comp.info["normal_xyz"])
            p = np.asarray(comp.info["point_xyz_A"]) / self.vs  # x, y, z voxels
            t = np.asarray(comp.info["tangent_xyz"])
            b = np.cross(n, t)
            s = rng.uniform(-0.5, 0.5) * max(self.shape)
            q = rng.uniform(-0.5, 0.5) * max(self.shape)
            amp = comp.info["amplitude_A"] / self.vs
            k = 2 * np.pi / (comp.info["wavelength_A"] / self.vs)
            h = amp * np.sin(k * s + comp.info["phase"])
            point = p + s * t + q * b + h * n
            normal = n - amp * k * np.cos(k * s + comp.info["phase"]) * t
            normal /= np.linalg.norm(normal)
            if rng.random() < 0.5:
                normal = -normal
            zyx = point[::-1]
            if np.all(zyx >= 0) and np.all(zyx <= np.asarray(self.shape) - 1):
                return zyx, normal[::-1], comp.instance
        return None

    def place_membrane_bound(self, template: Any, frac: np.ndarray, instance: int,
                             label: int) -> tuple[np.ndarray, np.ndarray, int] | None:
        """Place one particle on a membrane: a random surface point, the particle's z axis along the outward
        normal (random spin), its centre stepped outwards from the bilayer until its mask clears everything.

        Returns ``(centre zyx int, rotation (3, 3), compartment id)`` or None when nothing fitted."""
        from tomopick.simulate.scene import MAX_ATTEMPTS
        from tomopick.simulate.templates_io import render_rotated

        extent_vox = template.extent_radius_A / self.vs
        for _attempt in range(MAX_ATTEMPTS // 10):
            hit = self.surface_point()
            if hit is None:
                return None
            p, normal_zyx, inst = hit
            rot = rotation_from_normal(normal_zyx[::-1], float(self.rng.uniform(0, 360)))
            box, cb = render_rotated(template, rot, self.vs, frac)
            r0 = 0.5 + 0.3 * extent_vox
            shape = np.asarray(self.shape)
            cands = (c for c in (np.rint(p + normal_zyx * (r0 + step)).astype(int)
                                 for step in range(int(extent_vox) + 3))
                     if np.all(c >= 0) and np.all(c < shape))  # centres inside the volume only
            c = self.b.place(box, cb, cands, instance=instance, label=label)
            if c is not None:
                return c, rot, inst
        return None

    def lumen_candidates(self, n: int = 30) -> Iterator[tuple[np.ndarray, int]]:
        """Random lumen voxels ``(zyx int, compartment id)``."""
        lumen_ids = [c.instance for c in self.compartments if c.closed]
        if not lumen_ids:
            return
        for _ in range(n):
            inst = lumen_ids[int(self.rng.integers(len(lumen_ids)))]
            comp = self.compartments[inst - 1]
            c = np.asarray(comp.info["center_xyz_A"])[::-1] / self.vs
            for _try in range(10):
                off = self.rng.normal(size=3) * (0.3 * np.asarray(self.shape).min())
                q = np.rint(c + off * self.rng.uniform(0, 1)).astype(int)
                if np.any(q < 0) or np.any(q >= np.asarray(self.shape)):
                    continue
                if self.classes[tuple(q)] == SEGMENT_CLASSES["lumen"] and self.instances[tuple(q)] == inst:
                    yield q, inst
                    break
