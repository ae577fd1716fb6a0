"""The training configuration: a pydantic model loaded from YAML (configs are data, never code).

Example (``configs/czii-10A.yaml``)::

    data:
      kind: copick                 # or "folder"
      path: my-project/            # copick project folder / config JSON, or a folder of MRC + picks files
      tomo_type: wbp
      voxel_size_A: 10.0
      val_runs: [TS_5_4]           # held out for validation (or val_fraction)
    particles: czii                # preset name or a YAML file
    target: {kind: sphere, radius_fraction: 0.5}
    network: {name: resunet, hparams: {channels: [16, 32, 64, 128]}}
    patch_size: [64, 64, 64]
    epochs: 20
    steps_per_epoch: 100
    max_minutes: 60                # optional wall-clock budget
    pick: {peak_method: maxpool}   # how validation (and later tomopick pick) finds peaks

Fine-tuning: ``init_from: base.pt`` starts from a checkpoint's weights, ``freeze_encoder: true`` trains only the
decoder (see ``docs/training.md``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tomopick.configfile import first_error, read_yaml_mapping
from tomopick.errors import TomopickError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataConfig(_Strict):
    """Where the training tomograms and picks come from.

    ``kind="copick"``: ``path`` is a copick project (folder or config JSON); tomograms of ``tomo_type`` at
    ``voxel_size_A``, picks of ``user_id``/``session_id`` (None = any). ``kind="folder"``: ``path`` holds
    ``<run>.mrc`` (or any tomogram format) beside ``<run>.<picks format>`` (e.g. ``.csv``, ``.star``, ``.json``);
    pairs are matched by stem.
    """

    kind: Literal["copick", "folder"] = "copick"
    path: str
    tomo_type: str | None = "wbp"
    voxel_size_A: float | None = Field(default=None, gt=0)
    user_id: str | None = None
    session_id: str | None = None
    train_runs: list[str] | None = None
    val_runs: list[str] | None = None
    val_fraction: float = Field(default=0.2, ge=0, lt=1)
    picks_suffixes: list[str] = [".csv", ".star", ".json", ".mod", ".tbl", ".coords", ".txt"]
    tomogram_suffixes: list[str] = [".mrc", ".rec", ".map", ".ome.zarr", ".zarr"]


class TargetConfig(_Strict):
    """The training target (:mod:`tomopick.labels`). ``radius_fraction`` defaults by kind: 1.0 for ``gaussian``
    (the Gaussians are truncated at ``radius_fraction × radius`` and their widths scale with it: 1.0 gives
    tomoCPT's σ = 32 % and 16 % of the radius, as :func:`tomopick.labels.gaussian_heatmaps` by default), 0.5 for
    the class maps (labels of the inner half)."""

    kind: Literal["sphere", "ball", "cubic", "tball", "gaussian"] = "sphere"
    radius_fraction: float = Field(default=None, gt=0, le=2, validate_default=False)  # type: ignore[assignment]

    @model_validator(mode="after")
    def _default_radius_fraction(self) -> "TargetConfig":
        if self.radius_fraction is None:
            self.radius_fraction = 1.0 if self.kind == "gaussian" else 0.5
        return self


class NetworkConfig(_Strict):
    name: str = "resunet"
    hparams: dict[str, Any] = {}


class AugmentConfig(_Strict):
    """Probabilities / ranges of the augmentations (0 disables one)."""

    flip_prob: float = Field(default=0.5, ge=0, le=1)
    rot90_xy_prob: float = Field(default=0.5, ge=0, le=1)
    rotate_z_prob: float = Field(default=0.3, ge=0, le=1)
    rotate_z_deg: float = Field(default=15.0, ge=0)
    scale_prob: float = Field(default=0.3, ge=0, le=1)
    scale_range: tuple[float, float] = (0.95, 1.05)
    elastic_prob: float = Field(default=0.0, ge=0, le=1)
    gamma_prob: float = Field(default=0.2, ge=0, le=1)
    contrast_prob: float = Field(default=0.3, ge=0, le=1)
    noise_prob: float = Field(default=0.3, ge=0, le=1)
    noise_std: float = Field(default=0.1, ge=0)
    mixup_prob: float = Field(default=0.0, ge=0, le=1)
    mixup_alpha: float = Field(default=0.4, gt=0)


class LossConfig(_Strict):
    """``dice_ce`` (default), ``dice``, ``tversky``, ``focal``, ``ce`` (weighted cross-entropy) for class maps;
    ``huber_laplacian`` (weighted Huber + Laplacian gradient term, tomoCPT) for Gaussian heatmaps."""

    kind: Literal["dice_ce", "dice", "tversky", "focal", "ce", "huber_laplacian"] = "dice_ce"
    class_weights: list[float] | None = None     # background first, for ce / dice_ce / focal
    tversky_alpha: float = 0.3
    tversky_beta: float = 0.7
    focal_gamma: float = 2.0
    huber_delta: float = 0.1
    positive_weight: float = 20.0                 # heatmap voxels weighted 1 + positive_weight · target
    laplacian_weight: float = 0.1
    bce_weight: float = Field(default=1.0, ge=0)   # + weighted soft-target cross-entropy (gradients that do not
                                                   # vanish at a wrong 0, tomopick.training.losses); 0: pure tomoCPT


class PickConfig(_Strict):
    """How peaks will be found with the trained model (``tomopick pick --peak-method``). Validation picks the
    same way, so that the per-class thresholds stored in the checkpoint are chosen for this peak method; the
    checkpoint records it as ``config["pick"]["peak_method"]``."""

    peak_method: Literal["maxpool", "mpnms", "cc", "localmax"] = "maxpool"
    distance_factor: float = Field(default=0.75, gt=0)  # minimum distance between picks, × particle radius
    score: Literal["blob", "peak"] | None = None       # what stored thresholds apply to; None: blob for class maps,
                                                        # peak for heatmaps (tomopick.inference.options.default_score)


class ValidationConfig(_Strict):
    every_epochs: int = Field(default=1, ge=1)
    patience: int = Field(default=10, ge=1)       # validations without improvement before stopping
    beta: float = Field(default=4.0, gt=0)
    threshold: float | None = None                # None: best over a threshold sweep (stored in the checkpoint)


class TrainConfig(_Strict):
    """Everything ``tomopick train`` needs; stored whole in every checkpoint."""

    data: DataConfig
    particles: str | dict[str, Any] = "czii"
    classes: list[str] | None = None              # subset of the particle set (None = all)
    target: TargetConfig = TargetConfig()
    network: NetworkConfig = NetworkConfig()
    patch_size: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = Field(default=2, ge=1)
    epochs: int = Field(default=20, ge=1)
    steps_per_epoch: int = Field(default=100, ge=1)
    max_minutes: float | None = Field(default=None, gt=0)  # wall-clock budget: stop (and save) once spent
    particle_fraction: float = Field(default=0.5, ge=0, le=1)
    augment: AugmentConfig = AugmentConfig()
    loss: LossConfig = LossConfig()
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_steps: int = Field(default=50, ge=0)
    ema_decay: float | None = Field(default=0.99, ge=0, lt=1)
    #: Gaussian (sigmoid) targets trained from scratch: every output starts at this probability (the output
    #: convolution's bias is set to logit(prior)) instead of 0.5; None keeps the network's own initialisation.
    output_prior: float | None = Field(default=0.01, gt=0, lt=1)
    amp: bool = True                              # autocast, only ever on CUDA
    device: str = "auto"
    num_threads: int | None = None
    seed: int = 0
    deterministic: bool = True
    validation: ValidationConfig = ValidationConfig()
    pick: PickConfig = PickConfig()
    init_from: str | None = None                  # fine-tune: start from this checkpoint
    freeze_encoder: bool = False
    normalisation: dict[str, Any] = {"method": "robust"}
    name: str = "tomopick-model"
    description: str = ""

    @field_validator("patch_size")
    @classmethod
    def _patch(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(v < 8 for v in value):
            raise ValueError("patch_size sides must be >= 8 voxels")
        return value

    @model_validator(mode="after")
    def _loss_matches_target(self) -> "TrainConfig":
        heat = self.target.kind == "gaussian"
        if heat != (self.loss.kind == "huber_laplacian"):
            raise ValueError("target kind 'gaussian' goes with loss 'huber_laplacian' (and only it)")
        return self

    @property
    def output(self) -> str:
        return "sigmoid" if self.target.kind == "gaussian" else "softmax"


def load_config(path: str | Path) -> TrainConfig:
    """Read and validate a training config YAML; relative data/init paths resolve against the YAML's folder.

    Raises
    ------
    TomopickError
        One line naming the file and the first problem.
    """
    path = Path(path)
    raw = read_yaml_mapping(path, missing="training config not found")
    base = path.parent
    data = raw.get("data")
    if isinstance(data, dict) and isinstance(data.get("path"), str) and "://" not in data["path"]:
        p = Path(data["path"]).expanduser()
        data["path"] = str(p if p.is_absolute() else (base / p).resolve())
    for key in ("init_from",):
        if isinstance(raw.get(key), str):
            p = Path(raw[key]).expanduser()
            raw[key] = str(p if p.is_absolute() else (base / p).resolve())
    if isinstance(raw.get("particles"), str):
        p = Path(raw["particles"])
        if p.suffix.lower() in (".yaml", ".yml") and not p.is_absolute():
            raw["particles"] = str((base / p).resolve())
    return validate_config(raw, path)


def validate_config(raw: dict[str, Any], source: str | Path | None = None) -> TrainConfig:
    """Validate a config mapping; errors become a one-line :class:`TomopickError`."""
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise TomopickError(f"invalid training config: {first_error(exc)}", source) from None


def resolve_particles(config: TrainConfig):
    """The :class:`~tomopick.data.ParticleSet` the config trains (preset, YAML path or inline, optional subset)."""
    from tomopick.data import ParticleSet, get_particle_set

    if isinstance(config.particles, dict):
        try:
            particles = ParticleSet.model_validate(config.particles)
        except ValidationError as exc:
            raise TomopickError(f"invalid particle set in config: {exc.errors()[0]['msg']}") from None
    else:
        particles = get_particle_set(config.particles)
    if config.classes:
        particles.check_names(config.classes)
        particles = particles.subset(list(config.classes))
    return particles
