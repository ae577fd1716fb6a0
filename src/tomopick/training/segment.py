"""Training a segmentation network (membrane / lumen / gold / carbon) on volumes with class maps: a small dedicated
loop (patches → augmentation → MONAI Dice + cross-entropy → AdamW), pure (arrays in, a model and its history out).

The picker's :class:`~tomopick.training.loop.Trainer` is built around particle picks (targets painted from picks,
validation by CZII F-beta); segmentation targets are dense label volumes and validation is the membrane Dice, so
this loop reuses its parts (patch cropping, the MONAI augmentation pipeline, the network registry, robust
normalisation) rather than the trainer itself. :func:`tomopick.workflows.segment.train_segment_model` adds data
and checkpoint files.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from tomopick.inference.normalize import normalize_robust, robust_config
from tomopick.models.registry import build_model
from tomopick.segment.instances import SEGMENT_CLASSES
from tomopick.training.augment import Augmenter
from tomopick.training.config import AugmentConfig
from tomopick.training.sampling import crop


class SegmentTrainConfig(BaseModel):
    """Every knob of :func:`train_segmenter` (stored in the checkpoint).

    Attributes
    ----------
    network, hparams
        Registered network name and its hyper-parameters (:mod:`tomopick.models.registry`).
    patch_size, batch_size, steps, lr, weight_decay, max_minutes
        Optimisation: patches ``(z, y, x)``, batch, steps (or a wall-clock budget, whichever ends first), AdamW.
    foreground_fraction
        Share of patches centred on a labelled (non-background) voxel.
    ce_weights
        Cross-entropy weight per class (background, membrane, lumen, gold, carbon).
    val_every
        Steps between validations (membrane Dice on the validation patches).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str = "unet"
    hparams: dict[str, Any] = Field(default_factory=lambda: {"channels": [8, 16, 32, 64], "strides": [2, 2, 2],
                                                             "num_res_units": 0})
    patch_size: tuple[int, int, int] = (64, 64, 64)
    batch_size: int = Field(default=2, ge=1)
    steps: int = Field(default=2000, ge=1)
    lr: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    max_minutes: float | None = Field(default=None, gt=0)
    foreground_fraction: float = Field(default=0.7, ge=0, le=1)
    ce_weights: tuple[float, float, float, float, float] = (0.5, 2.0, 1.0, 1.0, 1.0)
    val_every: int = Field(default=200, ge=1)
    augment: AugmentConfig = Field(default_factory=lambda: AugmentConfig(rotate_z_prob=0.0, scale_prob=0.0,
                                                                          noise_prob=0.3, noise_std=0.2))
    seed: int = 0


@dataclass
class SegmentTrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]] = field(default_factory=list)
    best_dice: float = 0.0
    best_step: int = 0
    seconds: float = 0.0


def normalise_volumes(volumes: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each volume robustly standardised exactly as inference does (median / MAD, clipped)."""
    return [normalize_robust(v) for v in volumes]


class _Patches:
    def __init__(self, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], patch: Sequence[int],
                 fg_fraction: float) -> None:
        self.images, self.labels = list(images), list(labels)
        self.patch = np.asarray(patch, dtype=np.int64)
        self.fg = [np.argwhere(lab[::2, ::2, ::2] > 0) * 2 for lab in self.labels]
        self.fg_fraction = fg_fraction

    def draw(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        i = int(rng.integers(len(self.images)))
        shape = np.asarray(self.images[i].shape)
        if len(self.fg[i]) and rng.random() < self.fg_fraction:
            c = self.fg[i][int(rng.integers(len(self.fg[i])))] + rng.integers(-8, 9, 3)
            start = np.clip(c - self.patch // 2, 0, np.maximum(shape - self.patch, 0))
        else:
            start = np.array([int(rng.integers(max(int(n - p), 0) + 1)) for n, p in zip(shape, self.patch)])
        return crop(self.images[i], start, self.patch)[None], crop(self.labels[i], start, self.patch)[None]


def membrane_dice(model: torch.nn.Module, images: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> float:
    """Membrane Dice over whole (small) validation volumes, predicted in one pass each."""
    inter = total = 0
    model.eval()
    with torch.inference_mode():
        for img, lab in zip(images, labels):
            pred = model(torch.as_tensor(img)[None, None]).argmax(1)[0].numpy()
            a, b = pred == SEGMENT_CLASSES["membrane"], lab == SEGMENT_CLASSES["membrane"]
            inter += int(np.count_nonzero(a & b))
            total += int(np.count_nonzero(a)) + int(np.count_nonzero(b))
    model.train()
    return 2.0 * inter / total if total else 1.0


def train_segmenter(images: Sequence[np.ndarray], labels: Sequence[np.ndarray], config: SegmentTrainConfig, *,
                    val_images: Sequence[np.ndarray] = (), val_labels: Sequence[np.ndarray] = (),
                    init_state: Mapping[str, torch.Tensor] | None = None,
                    log: Callable[[str], None] | None = None) -> SegmentTrainResult:
    """Train a segmentation network.

    Parameters
    ----------
    images
        Normalised ``(z, y, x)`` float32 volumes (:func:`normalise_volumes`).
    labels
        uint8 class maps of the same shapes (:data:`SEGMENT_CLASSES`).
    val_images, val_labels
        Validation volumes (each small enough for one forward pass; sizes divisible by the network's
        downsampling); the weights with the best membrane Dice are kept.
    init_state
        Weights to start from (fine-tuning; a state dict of the same network, e.g. a checkpoint's
        ``model.state_dict()``).

    Returns
    -------
    SegmentTrainResult
        The (best) model in eval mode and the history of losses and validation Dice.
    """
    from monai.losses import DiceCELoss

    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    n_classes = len(SEGMENT_CLASSES)
    model = build_model(config.network, 1, n_classes, **config.hparams)
    if init_state is not None:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init_state.items()})
    model.train()
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, batch=True,
                         weight=torch.as_tensor(config.ce_weights, dtype=torch.float32))
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps, pct_start=0.1)
    patches = _Patches(images, labels, config.patch_size, config.foreground_fraction)
    aug = Augmenter(config.augment, heatmap=False, seed=config.seed)
    t0 = time.perf_counter()
    result = SegmentTrainResult(model)
    best_state = None
    running = []
    for step in range(1, config.steps + 1):
        xs, ys = [], []
        for _ in range(config.batch_size):
            x, y = patches.draw(rng)
            x, y = aug(x, y)
            xs.append(x)
            ys.append(y)
        xb = torch.as_tensor(np.stack(xs))
        yb = torch.as_tensor(np.stack(ys).astype(np.int64))
        loss = loss_fn(model(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        running.append(float(loss.detach()))
        out_of_time = config.max_minutes is not None and time.perf_counter() - t0 > 60 * config.max_minutes
        if step % config.val_every == 0 or step == config.steps or out_of_time:
            rec = {"step": step, "loss": float(np.mean(running)), "seconds": time.perf_counter() - t0}
            running = []
            if val_images:
                rec["val_membrane_dice"] = membrane_dice(model, val_images, val_labels)
                if rec["val_membrane_dice"] >= result.best_dice:
                    result.best_dice, result.best_step = rec["val_membrane_dice"], step
                    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            result.history.append(rec)
            if log is not None:
                log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
        if out_of_time:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    result.seconds = time.perf_counter() - t0
    return result


def segment_checkpoint_config(config: SegmentTrainConfig, voxel_size_A: float,
                              data_summary: dict[str, Any] | None = None,
                              metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint ``config`` of a segmentation model (``task: segment``; read by
    :func:`tomopick.segment.predict.segment_tomogram`)."""
    return {
        "task": "segment", "network": {"name": config.network, "hparams": dict(config.hparams)},
        "in_channels": 1, "out_channels": len(SEGMENT_CLASSES), "output": "softmax",
        "segment_classes": list(SEGMENT_CLASSES), "voxel_size_A": float(voxel_size_A),
        "patch_size": list(config.patch_size), "normalisation": robust_config(),
        "training": config.model_dump(mode="json"), "data": data_summary or {}, "metrics": metrics or {},
    }
