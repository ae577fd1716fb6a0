"""The training recipe of a promptable model on simulated data: a validated config (YAML) and the pure pieces that
turn it into particle kinds, simulated training scenes and held-out evaluation.

Kinds are template specs understood by :func:`tomopick.simulate.resolve_template`: bundled real maps (``"6drv"``)
and procedural shapes (``"shell:60"``, ``"rod:200,40"`` …, lengths in Å). ``held_out`` kinds never reach training
(neither the encoder nor the segmenter) and measure how well picking generalises to unseen particles.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from tomopick.configfile import first_error, read_yaml_mapping
from tomopick.errors import TomopickError

REAL_KINDS = ("8cpv", "1fa2", "6drv", "6qzp", "7n4y", "6n4v", "8vaf")


def default_procedural_kinds() -> list[str]:
    """A spread of procedural shapes and sizes (Å): spheres, shells, ellipsoids, rods, dumbbells."""
    kinds = [f"sphere:{r}" for r in (35, 50, 70, 95, 125)]
    kinds += [f"shell:{r}" for r in (55, 80, 110, 150)]
    kinds += ["ellipsoid:60,40,30", "ellipsoid:90,50,40", "ellipsoid:120,60,60", "ellipsoid:45,45,25",
              "ellipsoid:100,80,40"]
    kinds += ["rod:150,25", "rod:220,40", "rod:120,45", "rod:300,30"]
    kinds += ["dumbbell:60", "dumbbell:90", "dumbbell:130"]
    return kinds


class EncoderStage(BaseModel):
    """Stage 1: metric learning of the prompt encoder on rendered views
    (see :class:`~tomopick.prompt.training.ViewSettings`)."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(3000, ge=0)
    kinds_per_batch: int = Field(16, ge=2)
    views_per_kind: int = Field(4, ge=2)
    lr: float = Field(1e-3, gt=0)
    margin: float = Field(0.3, gt=0)
    snr: tuple[float, float] = (0.2, 3.0)
    max_tilt_deg: tuple[float, float] = (45.0, 70.0)
    blur_vox: tuple[float, float] = (0.3, 1.2)
    shift_vox: float = Field(1.5, ge=0)


class SceneSettings(BaseModel):
    """Simulated tomograms (``imaging="fast"`` of :mod:`tomopick.simulate`) used for segmenter training/evaluation."""

    model_config = ConfigDict(extra="forbid")
    n_tomograms: int = Field(32, ge=1)
    shape_zyx: tuple[int, int, int] = (96, 192, 192)
    kinds_per_tomogram: int = Field(6, ge=1)
    count_per_kind: tuple[int, int] = (6, 16)
    snr: tuple[float, float] = (0.15, 0.6)
    n_vesicles: int = Field(1, ge=0)
    n_fiducials: int = Field(2, ge=0)
    n_clutter: int | None = None


class SegmenterStage(BaseModel):
    """Stage 2: the FiLM U-Net on simulated scenes, encoder frozen."""

    model_config = ConfigDict(extra="forbid")
    steps: int = Field(20000, ge=0)
    patch: int = Field(64, ge=8)
    batch: int = Field(4, ge=1)
    prompts_per_patch: int = Field(3, ge=1)
    lr: float = Field(1e-3, gt=0)
    pos_weight: float = Field(3.0, gt=0)
    target_radius_fraction: float = Field(0.5, gt=0)
    prompts_per_kind: int = Field(32, ge=1)
    scenes: SceneSettings = SceneSettings()


class EvalStage(BaseModel):
    """Held-out evaluation: fresh simulated tomograms holding seen and held-out kinds; one prompt per kind cut from
    the same tomogram at a true position; F1 at distance ≤ ``distance_factor`` × radius at the best threshold."""

    model_config = ConfigDict(extra="forbid")
    n_tomograms: int = Field(2, ge=0)
    n_seen_kinds: int = Field(4, ge=1)
    scenes: SceneSettings = SceneSettings(n_tomograms=2, kinds_per_tomogram=6, count_per_kind=(10, 12))
    method: str = "cc"
    thresholds: tuple[float, ...] = (0.1, 0.2, 0.3, 0.5, 0.7)
    roi: int = 64
    stride: int = 32
    distance_factor: float = 0.5


class PromptTrainConfig(BaseModel):
    """Everything needed to train (and evaluate) a promptable model on simulated data."""

    model_config = ConfigDict(extra="forbid")
    voxel_size_A: float = Field(10.0, gt=0)
    prompt_box: int = Field(37, ge=8)
    embed_dim: int = Field(32, ge=2)
    encoder_channels: tuple[int, ...] = (16, 32, 64)
    unet_channels: tuple[int, ...] = (16, 32, 64, 128)
    res_units: int = Field(0, ge=0)
    kinds: list[str] = Field(default_factory=lambda: [k for k in REAL_KINDS if k not in ("7n4y", "8vaf")]
                             + default_procedural_kinds())
    held_out: list[str] = Field(default_factory=lambda: ["7n4y", "8vaf", "dumbbell:110"])
    seed: int = 0
    threads: int | None = Field(None, ge=1)
    #: Start from this promptable checkpoint's weights (same network sizes), e.g. to continue training or to
    #: train only the segmenter on a finished encoder (set ``encoder.steps: 0``).
    init_checkpoint: str | None = None
    encoder: EncoderStage = EncoderStage()
    segmenter: SegmenterStage = SegmenterStage()
    evaluation: EvalStage = EvalStage()

    @model_validator(mode="after")
    def _kinds(self) -> "PromptTrainConfig":
        if len(self.held_out) < 2:
            raise ValueError("hold out at least two particle kinds (held_out) to measure universality")
        overlap = sorted(set(self.kinds) & set(self.held_out))
        if overlap:
            raise ValueError(f"kinds {overlap} are both trained on and held out")
        if len(set(self.kinds)) < 2:
            raise ValueError("train on at least two particle kinds")
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> "PromptTrainConfig":
        path = Path(path)
        raw = read_yaml_mapping(path, empty_ok=True)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise TomopickError(f"invalid prompt training config: {first_error(exc)}", path) from None

    def hparams(self) -> dict[str, Any]:
        return {"embed_dim": self.embed_dim, "encoder_channels": list(self.encoder_channels),
                "unet_channels": list(self.unet_channels), "res_units": self.res_units}


# ---------------------------------------------------------------------------------------------------------------
def kind_density(spec: str, voxel_size_A: float) -> np.ndarray:
    """The density map ``(z, y, x)`` of a kind at ``voxel_size_A`` (protein bright, centred, max-normalised)."""
    from tomopick.simulate import render_rotated, resolve_template

    template = resolve_template(spec, voxel_size_A)
    box, _ = render_rotated(template, np.eye(3), voxel_size_A, np.zeros(3))
    box = np.clip(box.astype(np.float32), 0, None)
    return box / max(float(box.max()), 1e-6)


def kind_radius_A(density: np.ndarray, voxel_size_A: float, level: float = 0.2) -> float:
    """A characteristic radius in Å: ``sqrt(5/3) ×`` the radius of gyration of ``density > level × max`` (exactly
    the radius for a solid ball)."""
    mask = density > level * density.max()
    idx = np.argwhere(mask).astype(np.float64)
    if len(idx) == 0:
        return voxel_size_A
    rg = np.sqrt(np.mean(np.sum((idx - idx.mean(0)) ** 2, axis=1)))
    return float(np.sqrt(5.0 / 3.0) * rg * voxel_size_A)


def simulate_scene(kinds: Sequence[str], kind_index: dict[str, int], radii_A: dict[str, float], settings: SceneSettings,
                   voxel_size_A: float, target_radius_fraction: float, seed: int, workdir: str | Path):
    """One simulated tomogram holding ``kinds`` → (:class:`~tomopick.prompt.training.LabelledVolume`, ground-truth Picks).

    Labels are spheres of ``target_radius_fraction × radius`` around each particle (value = global kind index,
    ``-1`` background); the volume is robust-normalised. ``workdir`` receives the temporary particle-set YAML that
    the simulator reads.
    """
    from tomopick.data import ParticleSet, ParticleSpec
    from tomopick.inference.normalize import normalize_robust
    from tomopick.labels import class_map
    from tomopick.prompt.training import LabelledVolume
    from tomopick.simulate import SimulationConfig, simulate_tomogram

    rng = np.random.default_rng(seed)
    pset = ParticleSet(name="prompt-train", particles=tuple(
        ParticleSpec(name=k, radius_A=radii_A[k], label=i + 1) for i, k in enumerate(kinds)))
    yaml_path = Path(workdir) / f"particles_{seed}.yaml"
    yaml_path.write_text(pset.to_yaml())
    lo, hi = settings.count_per_kind
    cfg = SimulationConfig(
        shape_zyx=settings.shape_zyx, voxel_size_A=voxel_size_A, particles=str(yaml_path),
        templates={k: k for k in kinds}, counts={k: int(rng.integers(lo, hi + 1)) for k in kinds},
        imaging="fast", snr=float(rng.uniform(*settings.snr)), n_vesicles=settings.n_vesicles,
        n_fiducials=settings.n_fiducials, n_clutter=settings.n_clutter, n_distractors=0, keep_noiseless=False,
        run_name=f"sim_{seed}", seed=seed,
    )
    result = simulate_tomogram(cfg, seed)
    volume = normalize_robust(result.tomogram.data)
    labels = class_map(volume.shape, result.picks, pset, voxel_size_A, "sphere", target_radius_fraction)
    lut = np.full(256, -1, dtype=np.int16)
    for i, k in enumerate(kinds):
        lut[i + 1] = kind_index[k]
    centres = result.picks.voxel_coords(voxel_size_A)
    kind_ids = np.array([kind_index[n] for n in result.picks.frame["particle"]], dtype=np.int64)
    return LabelledVolume(volume, lut[labels], centres, kind_ids), result.picks, pset
