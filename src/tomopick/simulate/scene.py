"""Build the specimen: an ice slab with particles, vesicles, gold beads, filaments and clutter.

The scene is a Coulomb-potential-like density in *contrast units*: protein interior ≈ 1, vitreous ice
:data:`ICE_DENSITY` (≈ 0.93 / 1.35 g cm⁻³), lipid tails :data:`LIPID_TAIL_DENSITY`, gold :data:`GOLD_DENSITY`,
vacuum 0. Every object displaces the ice it occupies. Particles' masks (density above :data:`MASK_THRESHOLD`)
never intersect each other or any other object.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tomopick.data import ParticleSet, Picks
from tomopick.data.coords import voxel_to_angstrom
from tomopick.data.rotations import random_rotations
from tomopick.simulate.config import CZII_COUNTS, CZII_PROCEDURAL, CZII_REFERENCE_VOLUME_A3, CZII_TEMPLATES
from tomopick.simulate.config import SimulationConfig
from tomopick.simulate.context import clip_box
from tomopick.simulate.templates_io import Template, render_rotated, resolve_template, shape_template
from tomopick.errors import TomopickError

ICE_DENSITY = 0.69
LIPID_TAIL_DENSITY = 0.64
HEADGROUP_EXCESS = 0.6
GOLD_DENSITY = 4.0
MASK_THRESHOLD = 0.25
MAX_ATTEMPTS = 150


@dataclass
class Scene:
    """The simulated specimen (all arrays ``(z, y, x)``).

    Attributes
    ----------
    potential
        float32 density in contrast units (protein bright, vacuum 0).
    instance_labels
        int32, 0 background, ``k`` for the particle with ``instance_id == k``.
    class_labels
        uint8, the particle class label (``ParticleSpec.label``) on each particle's mask.
    slab_bounds
        ``(z_lo, z_hi)``, two ``(y, x)`` float32 maps: the ice surfaces in voxels (``None`` without a slab).
    picks
        Ground-truth picks of the labelled particles.
    context
        Everything else placed (vesicles, beads, filaments, distractors, clutter) and placement statistics.
    occupied
        Boolean: voxels covered by any object's mask (particles, membranes, beads, filaments, clutter).
    segmentation, segmentation_instances
        With ``config.context``: uint8 semantic labels (:data:`~tomopick.simulate.context.SEGMENT_CLASSES`) and
        int32 compartment instance ids; else None.
    """

    potential: np.ndarray
    instance_labels: np.ndarray
    class_labels: np.ndarray
    slab_bounds: tuple[np.ndarray, np.ndarray] | None
    picks: Picks
    context: dict[str, Any] = field(default_factory=dict)
    occupied: np.ndarray | None = None
    segmentation: np.ndarray | None = None
    segmentation_instances: np.ndarray | None = None

    def slab_mask(self) -> np.ndarray:
        """Boolean ``(z, y, x)``: voxels inside the ice (everything when there is no slab)."""
        shape = self.potential.shape
        if self.slab_bounds is None:
            return np.ones(shape, dtype=bool)
        lo, hi = self.slab_bounds
        out = np.zeros(shape, dtype=bool)
        lo_max, hi_min = float(lo.max()), float(hi.min())
        for z in range(shape[0]):
            if lo_max <= z <= hi_min:
                out[z] = True
            else:
                out[z] = (z >= lo) & (z <= hi)
        return out


def _slab_occupancy(z_lo: np.ndarray, z_hi: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Soft (one-voxel edge) ice occupancy for z coordinates broadcast against the (y, x) maps."""
    return np.clip(np.minimum(z - z_lo, z_hi - z) + 0.5, 0.0, 1.0).astype(np.float32)


class _Builder:
    def __init__(self, cfg: SimulationConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self.vs = float(cfg.voxel_size_A)
        self.shape = tuple(cfg.shape_zyx)
        nz, ny, nx = self.shape
        self.potential = np.zeros(self.shape, dtype=np.float32)
        self.instances = np.zeros(self.shape, dtype=np.int32)
        self.classes = np.zeros(self.shape, dtype=np.uint8)
        self.occupied = np.zeros(self.shape, dtype=bool)
        self.margin_vox = int(np.ceil(cfg.margin_A / self.vs - 1e-9))
        self.context: dict[str, Any] = {"vesicles": [], "fiducials": [], "filaments": []}
        self._make_slab()

    # -- ice ----------------------------------------------------------------------------------------------
    def _make_slab(self) -> None:
        cfg, rng = self.cfg, self.rng
        nz, ny, nx = self.shape
        if not cfg.ice_slab:
            self.z_lo = np.full((ny, nx), -0.5, dtype=np.float32)
            self.z_hi = np.full((ny, nx), nz - 0.5, dtype=np.float32)
            self.slab_bounds = None
            self.context["ice"] = None
            self.slab_volume_A3 = float(np.prod(self.shape)) * self.vs**3
            return
        thickness_vox = (cfg.ice_thickness_A / self.vs if cfg.ice_thickness_A is not None
                         else float(rng.uniform(0.7, 0.9)) * nz)
        z_mid = nz / 2.0 - 0.5 + float(rng.uniform(-0.05, 0.05)) * nz
        tilt = float(rng.uniform(0.0, cfg.ice_tilt_deg))
        phi = float(rng.uniform(0.0, 2 * np.pi))
        y = (np.arange(ny, dtype=np.float32) - (ny - 1) / 2)[:, None]
        x = (np.arange(nx, dtype=np.float32) - (nx - 1) / 2)[None, :]
        mid = z_mid + np.tan(np.radians(tilt)) * (x * np.cos(phi) + y * np.sin(phi))
        self.z_lo = (mid - thickness_vox / 2).astype(np.float32)
        self.z_hi = (mid + thickness_vox / 2).astype(np.float32)
        self.slab_bounds = (self.z_lo, self.z_hi)
        lo_min, lo_max = float(self.z_lo.min()), float(self.z_lo.max())
        hi_min, hi_max = float(self.z_hi.min()), float(self.z_hi.max())
        for z in range(nz):  # only slices crossing a surface need the per-(y, x) computation
            if z - lo_max >= 0.5 and hi_min - z >= 0.5:
                self.potential[z] = ICE_DENSITY
            elif z - lo_min > -0.5 and hi_max - z > -0.5:
                self.potential[z] = ICE_DENSITY * _slab_occupancy(self.z_lo, self.z_hi, np.float32(z))
        self.context["ice"] = {"thickness_A": thickness_vox * self.vs, "center_z_A": z_mid * self.vs,
                               "tilt_deg": tilt, "tilt_axis_deg": float(np.degrees(phi))}
        self.slab_volume_A3 = thickness_vox * ny * nx * self.vs**3

    # -- placement helpers -----------------------------------------------------------------------------------
    def _window(self, center: np.ndarray, half: int) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """Volume slices and matching box slices for a box of half-size ``half`` at integer ``center``."""
        return clip_box(center, (half, half, half), self.shape)

    def _inside_ice(self, vol: tuple[slice, ...], mask: np.ndarray) -> bool:
        if self.slab_bounds is None:
            return True
        zz = np.arange(vol[0].start, vol[0].stop, dtype=np.float32)[:, None, None]
        lo = self.z_lo[vol[1], vol[2]][None]
        hi = self.z_hi[vol[1], vol[2]][None]
        return not np.any(mask & ((zz < lo) | (zz > hi)))

    def _dilated(self, mask: np.ndarray) -> np.ndarray:
        if self.margin_vox <= 0:
            return mask
        from scipy import ndimage

        return ndimage.binary_dilation(mask, iterations=self.margin_vox)

    def _random_center(self, half: int) -> np.ndarray:
        """A random voxel in the volume (x, y anywhere) and inside the ice at that (y, x)."""
        nz, ny, nx = self.shape
        y = int(self.rng.integers(0, ny))
        x = int(self.rng.integers(0, nx))
        lo = max(float(self.z_lo[y, x]) + half * 0.5, 0.0)
        hi = min(float(self.z_hi[y, x]) - half * 0.5, nz - 1.0)
        z = float(self.rng.uniform(lo, hi)) if hi > lo else float(self.rng.uniform(0, nz - 1))
        return np.array([int(round(z)), y, x])

    def _stamp(self, box: np.ndarray, vol: tuple[slice, ...], bsl: tuple[slice, ...], mask: np.ndarray,
               instance: int = 0, label: int = 0) -> None:
        part = box[bsl]
        self.potential[vol] += part - ICE_DENSITY * np.minimum(part, 1.0)
        self.occupied[vol] |= self._dilated(mask)[bsl] if self.margin_vox else mask[bsl]
        if instance:
            m = mask[bsl]
            self.instances[vol][m] = instance
            self.classes[vol][m] = label

    def place(self, box: np.ndarray, center_box: np.ndarray, candidates, instance: int = 0,
              label: int = 0) -> np.ndarray | None:
        """Try candidate integer centres (an iterator) until the mask fits; returns the centre used."""
        half = int(center_box[0])
        mask = box > MASK_THRESHOLD
        check = self._dilated(mask)
        for center in candidates:
            win = self._window(center, half)
            if win is None:
                continue
            vol, bsl = win
            if np.any(self.occupied[vol] & check[bsl]):
                continue
            if not self._inside_ice(vol, mask[bsl]):
                continue
            self._stamp(box, vol, bsl, mask, instance, label)
            return np.asarray(center)
        return None

    # -- context objects --------------------------------------------------------------------------------------
    def add_vesicles(self) -> None:
        cfg, rng, vs = self.cfg, self.rng, self.vs
        thickness_A = float(np.min(self.z_hi - self.z_lo)) * vs
        for _ in range(cfg.n_vesicles):
            r_A = float(rng.uniform(*cfg.vesicle_radius_A))
            r_A = min(r_A, thickness_A / 2 - 40.0)  # vesicles fit in the ice
            if r_A < 100.0:
                continue
            half = int(np.ceil((r_A + 35.0) / vs)) + 1
            ax = np.arange(-half, half + 1, dtype=np.float32)
            frac = rng.uniform(-0.5, 0.5, 3)
            dz, dy, dx = np.meshgrid(ax - frac[0], ax - frac[1], ax - frac[2], indexing="ij", sparse=True)
            d = np.sqrt(dz * dz + dy * dy + dx * dx) * vs - r_A  # Å from the bilayer mid-plane
            sig = np.hypot(5.0, 0.5 * vs)
            occ = np.clip(0.5 - (np.abs(d) - 25.0) / vs, 0.0, 1.0).astype(np.float32)
            dens = (LIPID_TAIL_DENSITY * occ
                    + HEADGROUP_EXCESS * (np.exp(-0.5 * ((d - 20) / sig) ** 2) + np.exp(-0.5 * ((d + 20) / sig) ** 2)))
            excess = (dens - ICE_DENSITY * occ).astype(np.float32)
            mask = occ > 0.0
            check = self._dilated(mask)
            for _attempt in range(MAX_ATTEMPTS // 3):
                center = self._random_center(2 * int(np.ceil(r_A / vs)))
                win = self._window(center, half)
                if win is None:
                    continue
                vol, bsl = win
                if np.any(self.occupied[vol] & check[bsl]) or not self._inside_ice(vol, mask[bsl]):
                    continue
                self.potential[vol] += excess[bsl]
                self.occupied[vol] |= check[bsl]
                self.context["vesicles"].append(
                    {"center_xyz_A": voxel_to_angstrom(center + frac, vs)[0].tolist(), "radius_A": r_A})
                break

    def add_fiducials(self) -> None:
        cfg, rng, vs = self.cfg, self.rng, self.vs
        tmpl = shape_template(f"sphere:{cfg.fiducial_radius_A}", vs)
        tmpl = Template(tmpl.name, tmpl.density * GOLD_DENSITY, vs)
        nz, ny, nx = self.shape
        r_vox = cfg.fiducial_radius_A / vs
        for _ in range(cfg.n_fiducials):
            frac = rng.uniform(-0.5, 0.5, 3)
            box, cb = render_rotated(tmpl, np.eye(3), vs, frac)

            def near_surface():
                for _attempt in range(MAX_ATTEMPTS):
                    y, x = int(rng.integers(0, ny)), int(rng.integers(0, nx))
                    top = rng.random() < 0.5
                    z = (self.z_hi[y, x] - r_vox - 1.5) if top else (self.z_lo[y, x] + r_vox + 1.5)
                    yield np.array([int(round(float(np.clip(z, 0, nz - 1)))), y, x])

            c = self.place(box, cb, near_surface())
            if c is not None:
                self.context["fiducials"].append(
                    {"center_xyz_A": voxel_to_angstrom(c + frac, vs)[0].tolist(), "radius_A": cfg.fiducial_radius_A})

    def add_filaments(self) -> None:
        cfg, rng, vs = self.cfg, self.rng, self.vs
        nz, ny, nx = self.shape
        r_A = cfg.filament_radius_A
        for _ in range(cfg.n_filaments):
            length = float(rng.uniform(*cfg.filament_length_A))
            az = rng.uniform(0, 2 * np.pi)
            el = np.radians(rng.uniform(-15, 15))
            direction = np.array([np.sin(el), np.cos(el) * np.sin(az), np.cos(el) * np.cos(az)])  # zyx
            for _attempt in range(MAX_ATTEMPTS // 3):
                center = self._random_center(int(np.ceil(r_A / vs)) * 2).astype(np.float64)
                a = center - direction * length / 2 / vs
                b = center + direction * length / 2 / vs
                pad = r_A / vs + 2
                lo = np.maximum(np.floor(np.minimum(a, b) - pad), 0).astype(int)
                hi = np.minimum(np.ceil(np.maximum(a, b) + pad) + 1, self.shape).astype(int)
                if np.any(hi <= lo):
                    continue
                vol = tuple(slice(int(l), int(h)) for l, h in zip(lo, hi))
                zz, yy, xx = np.meshgrid(*(np.arange(l, h, dtype=np.float32) for l, h in zip(lo, hi)),
                                         indexing="ij", sparse=True)
                rel = [zz - a[0], yy - a[1], xx - a[2]]
                seg = b - a
                t = np.clip((rel[0] * seg[0] + rel[1] * seg[1] + rel[2] * seg[2]) / float(seg @ seg), 0, 1)
                dist = np.sqrt((rel[0] - t * seg[0]) ** 2 + (rel[1] - t * seg[1]) ** 2 + (rel[2] - t * seg[2]) ** 2)
                dens = np.clip(0.5 - (dist * vs - r_A) / vs, 0.0, 1.0).astype(np.float32)
                if self.slab_bounds is not None:
                    dens *= _slab_occupancy(self.z_lo[vol[1], vol[2]][None], self.z_hi[vol[1], vol[2]][None],
                                            np.arange(lo[0], hi[0], dtype=np.float32)[:, None, None])
                mask = dens > MASK_THRESHOLD
                if np.any(self.occupied[vol] & self._dilated(mask)):
                    continue
                self.potential[vol] += dens - ICE_DENSITY * dens
                self.occupied[vol] |= self._dilated(mask)
                self.context["filaments"].append({
                    "start_xyz_A": voxel_to_angstrom(a, vs)[0].tolist(),
                    "end_xyz_A": voxel_to_angstrom(b, vs)[0].tolist(), "radius_A": r_A})
                break

    def add_unlabelled(self, template: Template, n: int, key: str) -> int:
        rng, vs = self.rng, self.vs
        placed = []
        rots = random_rotations(n, rng)
        for i in range(n):
            frac = rng.uniform(-0.5, 0.5, 3)
            box, cb = render_rotated(template, rots[i], vs, frac)
            c = self.place(box, cb, (self._random_center(int(cb[0])) for _ in range(MAX_ATTEMPTS)))
            if c is not None:
                placed.append(voxel_to_angstrom(c + frac, vs)[0].tolist())
        self.context[key] = placed
        return len(placed)

    def add_clutter(self, n: int) -> int:
        rng, vs = self.rng, self.vs
        placed = 0
        for _ in range(n):
            axes = rng.uniform(15.0, 45.0, 3)
            tmpl = shape_template("ellipsoid:{:.1f},{:.1f},{:.1f}".format(*axes), vs)
            tmpl = Template(tmpl.name, tmpl.density * float(rng.uniform(0.7, 1.0)), vs)
            frac = rng.uniform(-0.5, 0.5, 3)
            box, cb = render_rotated(tmpl, random_rotations(1, rng)[0], vs, frac)
            c = self.place(box, cb, (self._random_center(int(cb[0])) for _ in range(MAX_ATTEMPTS // 5)))
            placed += c is not None
        self.context["n_clutter"] = placed
        return placed

    def _membrane_candidates(self, half: int, extent_vox: float):
        """Centres just outside a random vesicle, stepping outwards until the particle clears the bilayer."""
        rng, vs = self.rng, self.vs
        for _attempt in range(MAX_ATTEMPTS // 5):
            ves = self.context["vesicles"][int(rng.integers(len(self.context["vesicles"])))]
            c = np.asarray(ves["center_xyz_A"])[::-1] / vs
            u = rng.normal(size=3)
            u /= np.linalg.norm(u)
            r0 = (ves["radius_A"] + 25.0) / vs + 0.3 * extent_vox
            for step in range(int(extent_vox) + 3):
                yield np.rint(c + u * (r0 + step)).astype(int)


def default_counts(cfg: SimulationConfig, particle_set: ParticleSet, slab_volume_A3: float,
                   rng: np.random.Generator) -> dict[str, int]:
    """Counts per class: Poisson draws around one randomly chosen real CZII run's counts, scaled by the slab
    volume relative to the CZII tomograms' and by ``crowding``; explicit ``cfg.counts`` win."""
    run = sorted(CZII_COUNTS)[int(rng.integers(len(CZII_COUNTS)))]
    ratio = slab_volume_A3 / CZII_REFERENCE_VOLUME_A3
    counts = {}
    for spec in particle_set:
        if cfg.counts is not None and spec.name in cfg.counts:
            counts[spec.name] = int(cfg.counts[spec.name])
            continue
        if cfg.counts is not None:  # explicit dict given: classes it omits get none
            counts[spec.name] = 0
            continue
        base = CZII_COUNTS[run].get(spec.name, 30)
        counts[spec.name] = int(rng.poisson(base * ratio * cfg.crowding))
    if cfg.counts is not None:
        unknown = sorted(set(cfg.counts) - set(particle_set.names))
        if unknown:
            raise TomopickError(f"counts name unknown particle(s) {', '.join(unknown)}; "
                                f"known: {', '.join(particle_set.names)}")
    return counts


def particle_templates(cfg: SimulationConfig, particle_set: ParticleSet) -> dict[str, Template]:
    """The template of every class: ``cfg.templates`` override → procedural stand-in → spec's ``template_path``
    → bundled CZII map → a sphere of the spec's radius."""
    out = {}
    for spec in particle_set:
        src = None
        if cfg.templates and spec.name in cfg.templates:
            src = cfg.templates[spec.name]
        elif cfg.particle_source == "procedural":
            src = CZII_PROCEDURAL.get(spec.name, f"sphere:{spec.radius_A}")
        elif spec.template_path:
            src = spec.template_path
        elif spec.name in CZII_TEMPLATES:
            src = CZII_TEMPLATES[spec.name]
        else:
            src = f"sphere:{spec.radius_A}"
        out[spec.name] = resolve_template(src, cfg.voxel_size_A)
    return out


def build_scene(cfg: SimulationConfig, particle_set: ParticleSet, rng: np.random.Generator) -> Scene:
    """Assemble a specimen from a config (pure: arrays in memory, randomness only from ``rng``).

    Returns
    -------
    Scene
        Potential, instance and class labels ``(z, y, x)`` of ``cfg.shape_zyx``, ground-truth picks and context.
    """
    too_big = [p.name for p in particle_set if int(p.label) > 255]
    if too_big:
        raise TomopickError(f"class labels must be ≤ 255 for the uint8 label volume: {', '.join(too_big)}")
    b = _Builder(cfg, rng)
    vs = b.vs
    templates = particle_templates(cfg, particle_set)
    counts = default_counts(cfg, particle_set, b.slab_volume_A3, rng)
    painter = None
    if cfg.context is None:
        b.add_vesicles()
        b.add_fiducials()
    else:
        from tomopick.simulate.context import ContextPainter

        painter = ContextPainter(b, cfg.context, np.random.default_rng(int(rng.integers(0, 2**63 - 1))))
        painter.paint()
    b.add_filaments()

    # largest particles first: they are the hardest to fit
    order = sorted(particle_set, key=lambda s: -templates[s.name].extent_radius_A)
    names, xyz, rots, ids = [], [], [], []
    bound: list[int] = []
    placed_counts: dict[str, int] = {}
    next_id = 1
    for spec in order:
        tmpl = templates[spec.name]
        n = counts[spec.name]
        rotations = random_rotations(n, rng) if n else np.zeros((0, 3, 3))
        placed_counts[spec.name] = 0
        for i in range(n):
            frac = rng.uniform(-0.5, 0.5, 3)
            if painter is not None:
                placed = _place_in_context(b, painter, tmpl, rotations[i], frac, next_id, int(spec.label))
                if placed is None:
                    continue
                c, rotation, is_bound = placed
                bound.append(is_bound)
            else:
                box, cb = render_rotated(tmpl, rotations[i], vs, frac)
                half = int(cb[0])
                on_membrane = b.context["vesicles"] and rng.random() < cfg.membrane_particle_fraction
                cands = (b._membrane_candidates(half, tmpl.extent_radius_A / vs) if on_membrane
                         else (b._random_center(half) for _ in range(MAX_ATTEMPTS)))
                c = b.place(box, cb, cands, instance=next_id, label=int(spec.label))
                if c is None:
                    continue
                rotation = rotations[i]
            names.append(spec.name)
            xyz.append(voxel_to_angstrom(c + frac, vs)[0])
            rots.append(rotation)
            ids.append(next_id)
            next_id += 1
            placed_counts[spec.name] += 1

    if cfg.n_distractors:
        b.add_unlabelled(resolve_template(cfg.distractor_template, vs), cfg.n_distractors, "distractors")
    n_clutter = cfg.n_clutter
    if n_clutter is None:
        n_clutter = int(round(150 * b.slab_volume_A3 / CZII_REFERENCE_VOLUME_A3))
    b.add_clutter(n_clutter)

    picks = Picks.from_arrays(
        np.asarray(xyz).reshape(-1, 3), names, rotations=np.asarray(rots).reshape(-1, 3, 3), run=cfg.run_name,
        instance_id=np.asarray(ids, dtype=np.int64), user="tomopick-simulate", session="0",
    )
    b.context["requested_counts"] = counts
    b.context["placed_counts"] = placed_counts
    b.context["templates"] = {k: t.name for k, t in templates.items()}
    if painter is None:
        return Scene(b.potential, b.instances, b.classes, b.slab_bounds, picks, b.context, b.occupied)
    b.context["segment"] = painter.summary
    picks = _context_truth(picks, painter, np.asarray(bound, dtype=np.int64), vs)
    return Scene(b.potential, b.instances, b.classes, b.slab_bounds, picks, b.context, b.occupied,
                 painter.classes, painter.instances)


def _place_in_context(b: _Builder, painter: Any, tmpl: Template, rotation: np.ndarray, frac: np.ndarray,
                      instance: int, label: int) -> tuple[np.ndarray, np.ndarray, int] | None:
    """Place one particle membrane-bound, lumenal or free (chosen by the context's fractions).

    Returns ``(centre zyx, rotation, membrane-bound 0/1)`` or None when it did not fit."""
    ccfg = painter.cfg
    u = b.rng.random()
    if u < ccfg.membrane_bound_fraction and painter.compartments:
        placed = painter.place_membrane_bound(tmpl, frac, instance, label)
        if placed is not None:
            return placed[0], placed[1], 1
        return None
    box, cb = render_rotated(tmpl, rotation, b.vs, frac)
    if u < ccfg.membrane_bound_fraction + ccfg.lumenal_fraction and any(c.closed for c in painter.compartments):
        cands = (q for q, _inst in painter.lumen_candidates())
    else:
        cands = (b._random_center(int(cb[0])) for _ in range(MAX_ATTEMPTS))
    c = b.place(box, cb, cands, instance=instance, label=label)
    return None if c is None else (c, rotation, 0)


def _context_truth(picks: Picks, painter: Any, bound: np.ndarray, voxel_size_A: float) -> Picks:
    """Ground-truth context columns: the compartment (instance id and class at the centre voxel) and whether the
    particle was placed membrane-bound (``membrane_bound``)."""
    from tomopick.simulate.context import SEGMENT_CLASSES

    names = {v: k for k, v in SEGMENT_CLASSES.items()}
    idx = np.clip(picks.voxel_indices(voxel_size_A), 0, np.asarray(painter.classes.shape) - 1) if len(picks) else (
        np.zeros((0, 3), dtype=int))
    cls = painter.classes[tuple(idx.T)] if len(picks) else np.zeros(0, dtype=np.uint8)
    inst = painter.instances[tuple(idx.T)] if len(picks) else np.zeros(0, dtype=np.int32)
    return picks.with_extra(compartment_id=inst.astype(np.int64),
                            compartment_class=[names[int(c)] for c in cls],
                            membrane_bound=bound.reshape(len(picks)))
