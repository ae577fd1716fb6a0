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
from typing import Any

import torch

from tomopick.data import ParticleSet
from tomopick.errors import TomopickError
from tomopick.io.atomic import atomic_output

FORMAT = "tomopick-checkpoint"
VERSION = 1


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
