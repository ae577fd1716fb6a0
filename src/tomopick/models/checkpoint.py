"""Self-describing checkpoints: weights + the whole config + a model card, loadable with ``weights_only=True``.

File layout (a ``torch.save`` of plain containers)::

    {
      "format": "tomopick-checkpoint", "version": 1,
      "state_dict": {name: tensor},
      "config": {                      # JSON-able, validated by the training config model
        "network": {"name": "unet", "hparams": {...}},
        "in_channels": 1, "out_channels": 7,
        "output": "softmax",           # or "sigmoid"
        "classes": ["background", "apo-ferritin", ...],   # channel order
        "particles": {...},            # ParticleSet.model_dump(mode="json")
        "voxel_size_A": 10.012,
        "patch_size": [64, 64, 64],    # (z, y, x) voxels
        "normalisation": {"method": "robust", ...},
        "target": {"kind": "sphere", ...},
        ...
      },
      "card": {...},                   # model card: data, recipe, metrics, hardware, time
    }
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tomopick.data import ParticleSet
from tomopick.errors import TomopickError
from tomopick.io.atomic import atomic_output

FORMAT = "tomopick-checkpoint"
VERSION = 1


class AdaptReference(BaseModel):
    """``config["pick"]["adapt_reference"]``: per batch-norm layer the feature means and variances measured on
    tomograms of the training distribution (:func:`tomopick.inference.adapt.reference_statistics`)."""

    model_config = ConfigDict(extra="allow")

    means: list[list[float]]
    variances: list[list[float]]

    @field_validator("variances")
    @classmethod
    def _positive(cls, value: list[list[float]]) -> list[list[float]]:
        if any(not v > 0 for layer in value for v in layer):
            raise ValueError("variances must be > 0")
        return value


class PickDefaults(BaseModel):
    """``config["pick"]``: how picks are made with the model by default (``tomopick pick`` without options).

    ``thresholds`` hold for ``score`` (absent in checkpoints written before the blob score: ``peak``), found with
    ``peak_method`` at spacing ``distance_factor`` × radius (:mod:`tomopick.peaks.thresholds`), with the
    batch-norm statistics adapted to each tomogram by ``adapt_norm`` (:mod:`tomopick.inference.adapt`).
    ``roi_size`` and ``overlap`` are the model's own inference plan, kept with the weights (``--roi`` and
    ``--overlap`` override them): its largest window ``(z, y, x)`` in voxels, for networks whose activations at the
    default window would not fit the memory target, and the crop-mode overlap (the context margin of each window is
    ``overlap · roi / 2`` per side), for networks whose field of view needs more than the default margin."""

    model_config = ConfigDict(extra="allow")

    thresholds: dict[str, float] | None = None
    score: Literal["blob", "peak"] | None = None
    thresholds_by_score: dict[Literal["blob", "peak"], dict[str, float]] | None = None
    peak_method: Literal["maxpool", "mpnms", "cc", "localmax"] | None = None
    distance_factor: float | None = Field(default=None, gt=0)
    adapt_norm: float | None = Field(default=None, ge=0, le=1)
    adapt_reference: AdaptReference | None = None
    roi_size: tuple[int, int, int] | None = None
    overlap: float | None = Field(default=None, ge=0, lt=1)

    @field_validator("roi_size")
    @classmethod
    def _roi(cls, value: tuple[int, int, int] | None) -> tuple[int, int, int] | None:
        if value is not None and any(int(v) < 8 for v in value):
            raise ValueError(f"roi_size must be three sizes >= 8 voxels, got {tuple(value)}")
        return value

    @field_validator("thresholds")
    @classmethod
    def _range(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        for name, v in (value or {}).items():
            if not 0 < float(v) <= 1:
                raise ValueError(f"threshold of {name} must be in (0, 1], got {float(v):g}")
        return value

    @field_validator("thresholds_by_score")
    @classmethod
    def _ranges(cls, value: dict[str, dict[str, float]] | None) -> dict[str, dict[str, float]] | None:
        for table in (value or {}).values():
            cls._range(table)
        return value


class NetworkSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    hparams: dict[str, Any] = Field(default_factory=dict)


class CheckpointConfig(BaseModel):
    """The typed view of a checkpoint's ``config`` (the stored dict keeps any further keys, e.g. the whole
    training config). Checked on every load, so a damaged or hand-edited checkpoint fails with one line.
    Picking checkpoints carry ``classes`` … ``patch_size``; promptable ones (:mod:`tomopick.prompt`) their own
    keys instead."""

    model_config = ConfigDict(extra="allow")

    network: NetworkSpec
    in_channels: int = Field(default=1, ge=1)
    out_channels: int = Field(ge=1)
    output: Literal["softmax", "sigmoid"] = "softmax"
    classes: list[str] | None = None
    particles: dict[str, Any] | None = None
    voxel_size_A: float | None = Field(default=None, gt=0)
    patch_size: tuple[int, int, int] | None = None
    normalisation: dict[str, Any] | None = None
    target: dict[str, Any] | None = None
    pick: PickDefaults = Field(default_factory=PickDefaults)

    @model_validator(mode="after")
    def _consistent(self) -> "CheckpointConfig":
        if self.classes is None:
            return self
        for name in ("particles", "voxel_size_A", "patch_size"):
            if getattr(self, name) is None:
                raise ValueError(f"a picking checkpoint (with classes) needs {name}")
        if len(self.classes) != self.out_channels:
            raise ValueError(f"{len(self.classes)} classes for {self.out_channels} output channels")
        named = set(self.pick.thresholds or {}).union(*[set(t) for t in (self.pick.thresholds_by_score or {}).values()])
        unknown = sorted(named - set(self.classes))
        if unknown:
            raise ValueError(f"pick thresholds for class(es) the model lacks: {', '.join(unknown)}")
        return self


def validate_config(config: Any, path: str | os.PathLike[str] | None = None) -> CheckpointConfig:
    """A checkpoint config dict as :class:`CheckpointConfig`, or one :class:`TomopickError` line naming the file
    and the first problem."""
    try:
        return CheckpointConfig.model_validate(config)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "config"
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        raise TomopickError(f"checkpoint config {where}: {msg}", path) from None


@dataclass
class LoadedModel:
    """A network ready for inference plus everything needed to use it.

    Attributes
    ----------
    model
        The network in eval mode on CPU.
    config
        The checkpoint's config dict (see module docstring).
    card
        The model card dict.
    path
        Where it was loaded from.
    """

    model: torch.nn.Module
    config: dict[str, Any]
    card: dict[str, Any] = field(default_factory=dict)
    path: str = ""

    @property
    def settings(self) -> CheckpointConfig:
        """The config, typed and validated."""
        return validate_config(self.config, self.path or None)

    @property
    def particles(self) -> ParticleSet:
        return ParticleSet.model_validate(self.config["particles"])

    @property
    def voxel_size_A(self) -> float:
        return float(self.config["voxel_size_A"])

    @property
    def classes(self) -> list[str]:
        return list(self.config["classes"])

    @property
    def patch_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.config["patch_size"])  # type: ignore[return-value]


def _maybe_half(tensor: torch.Tensor, half: bool) -> torch.Tensor:
    """``tensor`` as float16 when asked and every value stays finite, else unchanged."""
    if not (half and tensor.is_floating_point()):
        return tensor
    small = tensor.half()
    return small if bool(torch.isfinite(small).all()) or not bool(torch.isfinite(tensor).all()) else tensor


def save_checkpoint(path: str | os.PathLike[str], model: torch.nn.Module, config: dict[str, Any],
                    card: dict[str, Any] | None = None, overwrite: bool = False,
                    half: bool = False) -> Path:
    """Write a checkpoint atomically. ``half`` stores float weights as float16 (smaller bundled models), except
    tensors float16 cannot hold: a batch-norm ``running_var`` of 1.5e6 (the retrained czii-10A has one) would become
    ``inf`` and silence its channels, so such tensors stay float32 (loading converts everything to float32)."""
    state = {k: _maybe_half(v.detach().cpu(), half) for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "state_dict": state, "config": config, "card": card or {}}
    with atomic_output(path, overwrite=overwrite) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], sha256: str | None = None) -> LoadedModel:
    """Load a checkpoint safely (``weights_only=True``) and rebuild its network.

    Parameters
    ----------
    sha256
        If given, the file's SHA-256 must match (bundled models pass their recorded digest).
    """
    from tomopick.models.registry import build_model

    payload = read_checkpoint_payload(path, sha256)
    config = payload["config"]
    try:
        net = config["network"]
        model = build_model(net["name"], config["in_channels"], config["out_channels"], **net.get("hparams", {}))
        state = {k: v.float() if v.is_floating_point() else v for k, v in payload["state_dict"].items()}
        model.load_state_dict(state)
    except (KeyError, RuntimeError) as exc:
        first = str(exc).splitlines()[0]
        raise TomopickError(f"checkpoint does not match its network ({first[:160]})", path) from None
    model.eval()
    return LoadedModel(model=model, config=config, card=payload.get("card", {}), path=str(path))


def read_checkpoint_payload(path: str | os.PathLike[str], sha256: str | None = None) -> dict[str, Any]:
    """A checkpoint's payload (``format``, ``version``, ``state_dict``, validated ``config``, ``card``), read
    safely (``weights_only=True``) without building its network (no MONAI import): what a batch driver needs to
    check a model its workers will load."""
    path = Path(path)
    if not path.is_file():
        raise TomopickError("checkpoint not found", path)
    raw = path.read_bytes()
    if sha256 is not None and hashlib.sha256(raw).hexdigest() != sha256:
        raise TomopickError("checkpoint checksum mismatch (file corrupt or replaced)", path)
    try:
        payload = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - any unpickling failure means "not a checkpoint" (torch's text is pages long)
        raise TomopickError("not a tomopick checkpoint, or one that would run code on load: refused", path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise TomopickError("not a tomopick checkpoint (missing format marker)", path)
    if int(payload.get("version", 0)) > VERSION:
        raise TomopickError(f"checkpoint version {payload.get('version')} is newer than this tomopick", path)
    validate_config(payload.get("config"), path)
    return payload


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
