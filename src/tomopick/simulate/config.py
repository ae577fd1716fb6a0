"""Simulation parameters: one validated :class:`SimulationConfig` holds every knob of the simulator.

Counts default to values drawn around the real per-tomogram counts of the seven CZII training runs
(:data:`CZII_COUNTS`, tabulated from the challenge's ground-truth picks), scaled to the simulated slab volume.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tomopick.simulate.context import ContextConfig

#: Per-run particle counts of the 7 CZII training tomograms (184 × 630 × 630 voxels at 10.012 Å), from the
#: challenge ground truth (dataset 10440, CC-BY 4.0).
CZII_COUNTS: dict[str, dict[str, int]] = {
    "TS_5_4": {"apo-ferritin": 46, "beta-amylase": 10, "beta-galactosidase": 12, "ribosome": 31,
               "thyroglobulin": 30, "virus-like-particle": 11},
    "TS_69_2": {"apo-ferritin": 35, "beta-amylase": 12, "beta-galactosidase": 16, "ribosome": 37,
                "thyroglobulin": 34, "virus-like-particle": 9},
    "TS_6_4": {"apo-ferritin": 58, "beta-amylase": 9, "beta-galactosidase": 12, "ribosome": 74,
               "thyroglobulin": 30, "virus-like-particle": 10},
    "TS_6_6": {"apo-ferritin": 41, "beta-amylase": 14, "beta-galactosidase": 11, "ribosome": 23,
               "thyroglobulin": 35, "virus-like-particle": 19},
    "TS_73_6": {"apo-ferritin": 95, "beta-amylase": 12, "beta-galactosidase": 14, "ribosome": 46,
                "thyroglobulin": 28, "virus-like-particle": 22},
    "TS_86_3": {"apo-ferritin": 64, "beta-amylase": 9, "beta-galactosidase": 23, "ribosome": 55,
                "thyroglobulin": 45, "virus-like-particle": 29},
    "TS_99_9": {"apo-ferritin": 36, "beta-amylase": 21, "beta-galactosidase": 24, "ribosome": 65,
                "thyroglobulin": 49, "virus-like-particle": 13},
}
#: Physical volume (Å³) of the region those counts come from: the CZII tomograms' lateral extent times the
#: ~1500 Å thick z-range that holds the picks.
CZII_REFERENCE_VOLUME_A3: float = (630 * 10.012) ** 2 * 1500.0

#: Built-in particle → bundled-map assignment (see ``templates/README.md``).
CZII_TEMPLATES: dict[str, str] = {
    "apo-ferritin": "8cpv", "beta-amylase": "1fa2", "beta-galactosidase": "6drv", "ribosome": "6qzp",
    "thyroglobulin": "7n4y", "virus-like-particle": "6n4v",
}

#: Procedural stand-ins for the CZII classes (``particle_source="procedural"``): cheap shapes of similar size.
CZII_PROCEDURAL: dict[str, str] = {
    "apo-ferritin": "shell:60", "beta-amylase": "ellipsoid:55,40,35", "beta-galactosidase": "dumbbell:85",
    "ribosome": "sphere:140", "thyroglobulin": "rod:120,45", "virus-like-particle": "shell:135",
}


class SimulationConfig(BaseModel):
    """Every parameter of one simulated tomogram (all lengths in Å unless the name says otherwise).

    Scene
    -----
    shape_zyx, voxel_size_A
        Volume size in voxels ``(z, y, x)`` and its (isotropic) voxel size.
    particles
        Particle set: built-in preset name (``"czii"``) or a YAML file (see :class:`tomopick.data.ParticleSet`).
    particle_source
        ``"maps"``: density maps (bundled CZII maps, or each spec's ``template_path``, or ``templates``);
        ``"procedural"``: simple shapes (fast, for tests).
    templates
        Optional per-class override: a bundled map key (``"8vaf"``), an MRC path (any voxel size; rescaled) or a
        shape spec ``"sphere:R"``, ``"shell:R"``, ``"ellipsoid:A,B,C"``, ``"dumbbell:R"``, ``"rod:L,R"`` (Å).
    counts
        Particles per class; ``None`` draws them around the real CZII per-tomogram counts, scaled to the slab volume.
    crowding
        Multiplier on the default counts (ignored for classes given in ``counts``).
    margin_A
        Minimum gap between particle masks (0: masks may touch but never intersect).
    n_distractors, distractor_template
        Unlabelled copies of another complex (default ``8vaf``) — realistic look-alikes, absent from the picks.
    n_clutter
        Unlabelled small random blobs (other proteins of a crowded sample); ``None`` scales with volume.
    ice_slab, ice_thickness_A, ice_tilt_deg
        A finite ice layer (vacuum above and below); thickness ``None`` draws 70–90 % of the z extent.
    n_vesicles, vesicle_radius_A, membrane_particle_fraction
        Lipid-bilayer vesicles; that fraction of particles is placed on vesicle surfaces.
    n_fiducials, fiducial_radius_A
        Gold beads near the ice surfaces.
    n_filaments, filament_radius_A, filament_length_A
        Actin-like rods lying roughly in the ice plane.
    context
        Cellular context with exact segmentation labels (:class:`~tomopick.simulate.context.ContextConfig`:
        vesicles of many shapes, sheets, double membranes, tubes, gold, carbon; membrane-bound and lumenal
        particles). It replaces ``n_vesicles`` and ``n_fiducials`` (unlabelled). ``None`` (default): no change.

    Imaging
    -------
    imaging
        ``"fast"``: missing-wedge mask + CTF envelope + coloured noise in Fourier space;
        ``"full"``: tilt series, CTF per tilt, dose-dependent noise and weighted back-projection.
    snr
        Particle signal-to-noise ratio: mean squared contrast of the noise-free tomogram over the particle masks
        (relative to the mean of the empty ice) divided by the noise variance (see docs/simulate.md).
    snr_range
        ``(low, high)``: draw the SNR log-uniformly per tomogram instead (domain randomisation); overrides ``snr``.
    tilt_min_deg, tilt_max_deg, tilt_step_deg, tilt_order
        Tilt scheme about the y axis.
    voltage_kV, cs_mm, amplitude_contrast, defocus_um, defocus_spread_um, b_factor_A2
        Microscope: defocus is underfocus in µm (``None`` draws 2.5–5 µm); per-tilt defocus error spread; B-factor.
    ctf_correction
        ``"phaseflip"``, ``"wiener"`` or ``"none"``.
    total_dose
        e⁻/Å² over the whole series (radiation damage attenuates later tilts).
    inelastic_mfp_A
        Inelastic mean free path: fewer electrons pass the energy filter at high tilt (thicker path) → more noise.
    alignment_error_A
        Standard deviation of the residual per-tilt image shift (tilt-series alignment error), per axis.
    lowpass_A
        Optional low-pass applied to the final tomogram (signal and noise alike); ``None`` = none.

    Randomisation
    -------------
    randomize
        Draw every scene and imaging parameter that was not set explicitly from the ranges in
        :data:`RANDOMIZATION` (domain randomisation for training sets); the values drawn are recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    # -- scene --
    shape_zyx: tuple[int, int, int] = (184, 630, 630)
    voxel_size_A: float = Field(default=10.012, gt=0)
    particles: str = "czii"
    particle_source: Literal["maps", "procedural"] = "maps"
    templates: dict[str, str] | None = None
    counts: dict[str, int] | None = None
    crowding: float = Field(default=1.0, ge=0)
    margin_A: float = Field(default=0.0, ge=0)
    n_distractors: int = Field(default=0, ge=0)
    distractor_template: str = "8vaf"
    n_clutter: int | None = Field(default=None, ge=0)
    ice_slab: bool = True
    ice_thickness_A: float | None = Field(default=None, gt=0)
    ice_tilt_deg: float = Field(default=2.0, ge=0, le=20)
    n_vesicles: int = Field(default=2, ge=0)
    vesicle_radius_A: tuple[float, float] = (200.0, 600.0)
    membrane_particle_fraction: float = Field(default=0.1, ge=0, le=1)
    n_fiducials: int = Field(default=3, ge=0)
    fiducial_radius_A: float = Field(default=50.0, gt=0)
    n_filaments: int = Field(default=0, ge=0)
    filament_radius_A: float = Field(default=35.0, gt=0)
    filament_length_A: tuple[float, float] = (1500.0, 5000.0)
    context: ContextConfig | None = None
    # -- imaging --
    imaging: Literal["fast", "full"] = "fast"
    snr: float = Field(default=3.0, gt=0)
    snr_range: tuple[float, float] | None = None
    tilt_min_deg: float = Field(default=-60.0, ge=-90, le=90)
    tilt_max_deg: float = Field(default=60.0, ge=-90, le=90)
    tilt_step_deg: float = Field(default=3.0, gt=0)
    tilt_order: Literal["dose-symmetric", "sequential"] = "dose-symmetric"
    voltage_kV: float = Field(default=300.0, gt=0)
    cs_mm: float = Field(default=2.7, ge=0)
    amplitude_contrast: float = Field(default=0.07, ge=0, le=1)
    defocus_um: float | None = Field(default=None, gt=0)
    defocus_range_um: tuple[float, float] = (2.5, 5.0)
    defocus_spread_um: float = Field(default=0.2, ge=0)
    b_factor_A2: float = Field(default=100.0, ge=0)
    ctf_correction: Literal["phaseflip", "wiener", "none"] = "phaseflip"
    total_dose: float = Field(default=120.0, gt=0)
    inelastic_mfp_A: float = Field(default=3500.0, gt=0)
    alignment_error_A: float = Field(default=2.0, ge=0)
    lowpass_A: float | None = Field(default=None, gt=0)
    # -- bookkeeping --
    randomize: bool = False
    seed: int = 0
    run_name: str = "sim_000"
    keep_noiseless: bool = True

    @field_validator("shape_zyx")
    @classmethod
    def _shape(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(int(v) < 8 for v in value):
            raise ValueError(f"every dimension of shape_zyx must be ≥ 8 voxels, got {tuple(value)}")
        return tuple(int(v) for v in value)  # type: ignore[return-value]

    @model_validator(mode="after")
    def _ranges(self) -> "SimulationConfig":
        if self.tilt_min_deg >= self.tilt_max_deg:
            raise ValueError("tilt_min_deg must be below tilt_max_deg")
        for name in ("vesicle_radius_A", "filament_length_A", "defocus_range_um", "snr_range"):
            if getattr(self, name) is None:
                continue
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise ValueError(f"{name} must be (low, high) with 0 < low ≤ high")
        if self.counts is not None and any(v < 0 for v in self.counts.values()):
            raise ValueError("counts must be ≥ 0")
        return self

    @property
    def tilt_angles_deg(self) -> list[float]:
        """Tilt angles in acquisition order (dose-symmetric: 0, +s, −s, −2s, +2s, … Hagen scheme, pairs alternate)."""
        import numpy as np

        n = int(np.floor((self.tilt_max_deg - self.tilt_min_deg) / self.tilt_step_deg + 1e-6)) + 1
        angles = [self.tilt_min_deg + i * self.tilt_step_deg for i in range(n)]
        if self.tilt_order == "sequential":
            return angles
        # dose-symmetric: start nearest 0°, then groups of two on alternating sides
        start = int(np.argmin(np.abs(angles)))
        order = [start]
        left, right = start - 1, start + 1
        side = +1
        while left >= 0 or right < n:
            for _ in range(2):
                if side > 0 and right < n:
                    order.append(right)
                    right += 1
                elif side < 0 and left >= 0:
                    order.append(left)
                    left -= 1
                elif right < n:
                    order.append(right)
                    right += 1
                elif left >= 0:
                    order.append(left)
                    left -= 1
            side = -side
        return [angles[i] for i in order]


#: Ranges used by ``randomize=True`` (only for fields the user did not set). ``("uniform", lo, hi)``,
#: ``("loguniform", lo, hi)``, ``("int", lo, hi)`` (inclusive), ``("choice", [values], [probabilities])``.
RANDOMIZATION: dict[str, tuple] = {
    "snr": ("loguniform", 1.0, 8.0),
    "defocus_um": ("uniform", 2.0, 6.0),
    "tilt_max_deg": ("uniform", 50.0, 66.0),
    "tilt_asymmetry_deg": ("uniform", -6.0, 6.0),
    "tilt_step_deg": ("choice", [2.0, 3.0, 4.0], [0.25, 0.5, 0.25]),
    "b_factor_A2": ("uniform", 50.0, 250.0),
    "ctf_correction": ("choice", ["phaseflip", "wiener"], [0.7, 0.3]),
    "lowpass_A": ("choice", [None, 20.0, 25.0, 30.0, 40.0], [0.5, 0.125, 0.125, 0.125, 0.125]),
    "alignment_error_A": ("uniform", 0.0, 6.0),
    "amplitude_contrast": ("uniform", 0.05, 0.1),
    "total_dose": ("uniform", 80.0, 160.0),
    "crowding": ("uniform", 0.5, 1.6),
    "n_vesicles": ("int", 0, 4),
    "n_fiducials": ("int", 0, 6),
    "n_filaments": ("int", 0, 3),
    "n_distractors": ("int", 0, 15),
    "clutter_per_czii_volume": ("int", 50, 300),
    "ice_tilt_deg": ("uniform", 0.0, 5.0),
    "membrane_particle_fraction": ("uniform", 0.0, 0.3),
}


def _draw(spec: tuple, rng) -> object:
    kind = spec[0]
    if kind == "uniform":
        return float(rng.uniform(spec[1], spec[2]))
    if kind == "loguniform":
        import math

        return float(math.exp(rng.uniform(math.log(spec[1]), math.log(spec[2]))))
    if kind == "int":
        return int(rng.integers(spec[1], spec[2] + 1))
    values, probs = spec[1], spec[2]
    return values[int(rng.choice(len(values), p=probs))]


def randomized_config(config: SimulationConfig, rng) -> tuple[SimulationConfig, dict[str, object]]:
    """The config with every field the user did not set drawn from :data:`RANDOMIZATION`.

    Returns the new config (``randomize=False``, so it re-makes the same tomogram with the same seed) and the
    values drawn. Every range is drawn (in a fixed order) whether or not it is used, so explicit settings do not
    shift the other draws.
    """
    explicit = set(config.model_fields_set)
    drawn = {name: _draw(spec, rng) for name, spec in RANDOMIZATION.items()}
    update: dict[str, object] = {}
    for name in ("defocus_um", "tilt_step_deg", "b_factor_A2", "ctf_correction", "lowpass_A", "alignment_error_A",
                 "amplitude_contrast", "total_dose", "crowding", "n_vesicles", "n_fiducials", "n_filaments",
                 "n_distractors", "ice_tilt_deg", "membrane_particle_fraction"):
        if name not in explicit:
            update[name] = drawn[name]
    if "snr" not in explicit and "snr_range" not in explicit:
        update["snr"] = drawn["snr"]
    if not {"tilt_min_deg", "tilt_max_deg"} & explicit:
        top = float(drawn["tilt_max_deg"])
        update["tilt_max_deg"] = top
        update["tilt_min_deg"] = -(top + float(drawn["tilt_asymmetry_deg"]))
    if "n_clutter" not in explicit:
        nz, ny, nx = config.shape_zyx
        volume = nz * 0.8 * ny * nx * config.voxel_size_A**3
        update["n_clutter"] = int(round(int(drawn["clutter_per_czii_volume"]) * volume / CZII_REFERENCE_VOLUME_A3))
    update["randomize"] = False
    values = {**config.model_dump(), **update}
    return SimulationConfig(**values), {k: v for k, v in update.items() if k != "randomize"}
