"""A segmentation network over a whole tomogram: the same streamed sliding window as picking
(:func:`tomopick.inference.sliding.predict_to_store`), then argmax, lumen completion and instances (pure: no files).

A segmentation checkpoint is an ordinary tomopick checkpoint whose config says ``task: segment`` and names its
output channels in ``segment_classes`` (channel ``i`` = class id ``i`` of
:data:`~tomopick.simulate.context.SEGMENT_CLASSES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.inference.normalize import normalisation_kwargs, robust_stats
from tomopick.inference.rescale import rescale_factors, rescale_volume
from tomopick.inference.sliding import (
    InferenceSettings, ReleasingArray, count_windows, predict_to_store, reuse_freed_memory,
)
from tomopick.segment.instances import SEGMENT_CLASSES, enclosed_lumen, fill_lumen, label_instances

TASK = "segment"


class SegmentOptions(BaseModel):
    """How to segment (defaults = ``tomopick segment`` without options).

    Attributes
    ----------
    tta
        Flip test-time augmentation: 1, 4 or 8 variants.
    roi_size, overlap, batch_size, device
        Sliding window (crop mode: each window keeps ``overlap · roi / 2`` voxels of context per side).
    fill_lumen
        Lumen post-processing: keep only lumen walled by membrane (:func:`~tomopick.segment.instances.
        enclosed_lumen`), then complete lumens inside membrane rings slice by slice (:func:`~tomopick.segment.
        instances.fill_lumen`).
    min_lumen_A3
        Smallest lumen that counts as a compartment.
    voxel_size_A
        Override the input's voxel size.
    allow_nonfinite
        Treat NaN/Inf voxels as background instead of refusing the tomogram.
    adapt_norm
        Test-time adaptation of the network's batch-norm statistics to each tomogram
        (:func:`tomopick.inference.adapt.adapt_batchnorm`, as ``tomopick pick`` does): 0 (off) to 1; ``None``: the
        checkpoint's ``config["segment"]["adapt_norm"]``, else 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tta: int = Field(default=1)
    roi_size: tuple[int, int, int] = (96, 256, 256)
    overlap: float = Field(default=0.125, ge=0, lt=1)
    batch_size: int = Field(default=1, ge=1)
    device: str = "cpu"
    fill_lumen: bool = True
    min_lumen_A3: float = Field(default=4.0e5, ge=0)
    voxel_size_A: float | None = Field(default=None, gt=0)
    allow_nonfinite: bool = False
    adapt_norm: float | None = Field(default=None, ge=0, le=1)


@dataclass
class Segmentation:
    """A segmented tomogram (arrays ``(z, y, x)`` on the tomogram's grid).

    Attributes
    ----------
    classes
        uint8 class ids (:data:`SEGMENT_CLASSES`).
    instances
        int32 compartment ids (0 = none).
    voxel_size_A
        Voxel size of the arrays (the tomogram's).
    summary
        Timings, rescale factors, class voxel counts.
    """

    classes: np.ndarray
    instances: np.ndarray
    voxel_size_A: float
    summary: dict[str, Any] = field(default_factory=dict)


def is_segmentation_model(loaded: Any) -> bool:
    return str((loaded.config or {}).get("task", "")) == TASK


def check_segmentation_model(loaded: Any) -> list[str]:
    """The model's class names (channel order); one-line error when it is not a segmentation checkpoint."""
    if not is_segmentation_model(loaded):
        raise TomopickError("not a segmentation checkpoint (config task is not 'segment'); pass a model trained "
                            "for segmentation, e.g. the bundled membrane-10A", loaded.path or None)
    names = [str(c) for c in loaded.config.get("segment_classes") or []]
    wrong = [n for i, n in enumerate(names) if SEGMENT_CLASSES.get(n) != i]
    if not names or wrong:
        raise TomopickError("segmentation checkpoint classes must be background, membrane, lumen, gold, carbon "
                            "in channel order", loaded.path or None)
    return names


def argmax_classes(store: Any, n_classes: int, depth: int = 16) -> np.ndarray:
    """uint8 class map from a score store of the foreground channels ``(C - 1, z, y, x)`` (background = 1 − Σ),
    read ``depth`` slices at a time."""
    shape = tuple(store.shape[1:])
    if store.shape[0] != n_classes - 1:
        raise ValueError(f"score store has {store.shape[0]} channels for {n_classes} classes")
    out = np.zeros(shape, dtype=np.uint8)
    for z0 in range(0, shape[0], depth):
        z1 = min(shape[0], z0 + depth)
        fg = np.stack([store.read(c, slice(z0, z1)) for c in range(n_classes - 1)])
        bg = 1.0 - fg.sum(axis=0, keepdims=True)
        out[z0:z1] = np.argmax(np.concatenate([bg, fg], axis=0), axis=0).astype(np.uint8)
    return out


def _to_grid(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resampling of a label map onto ``shape`` covering the same extent."""
    if tuple(labels.shape) == tuple(shape):
        return labels
    idx = [np.minimum(np.rint(np.arange(t) * (g - 1) / max(t - 1, 1)).astype(int), g - 1)
           for g, t in zip(labels.shape, shape)]
    return labels[np.ix_(*idx)]


def segment_tomogram(tomogram: Tomogram, loaded: Any, options: SegmentOptions | None = None, *,
                     progress: Callable[[int, int], None] | None = None) -> Segmentation:
    """Segment one tomogram with a loaded segmentation model.

    Parameters
    ----------
    tomogram
        ``(z, y, x)`` volume (lazy or in memory) with its voxel size.
    loaded
        :class:`~tomopick.models.checkpoint.LoadedModel` with ``config["task"] == "segment"``.
    options
        :class:`SegmentOptions`.
    progress
        ``progress(done, total)`` over windows.
    """
    options = options or SegmentOptions()
    names = check_segmentation_model(loaded)
    t0 = time.perf_counter()
    source_name = tomogram.source or None
    tomogram.with_data(ReleasingArray(tomogram.data)).check_finite(allow_nonfinite=options.allow_nonfinite)
    vs_model = float(loaded.config["voxel_size_A"])
    factors = rescale_factors(tomogram.voxel_size_A, vs_model, source=source_name)
    try:
        norm_kwargs = normalisation_kwargs(loaded.config.get("normalisation"))
    except ValueError as exc:
        raise TomopickError(str(exc), loaded.path or None) from None
    from tomopick.models.registry import network_divisor

    net = loaded.config.get("network", {})
    settings = InferenceSettings(mode="crop", roi_size=options.roi_size, overlap=options.overlap, tta=options.tta,
                                 batch_size=options.batch_size, device=options.device,
                                 divisor=network_divisor(net.get("name", "unet"), net.get("hparams", {}) or {}))
    volume = tomogram.data if factors is None else rescale_volume(ReleasingArray(tomogram.data), factors)
    stats = robust_stats(ReleasingArray(volume), **{k: v for k, v in norm_kwargs.items() if k == "max_samples"})
    norm_kwargs.pop("max_samples", None)
    total = count_windows(volume.shape, settings)
    done = [0]

    def step(k: int) -> None:
        done[0] += k
        if progress is not None:
            progress(done[0], total)

    model, adapted = _adapted(loaded, volume, stats, norm_kwargs, options, settings)
    t1 = time.perf_counter()
    store = predict_to_store(volume, model.to(settings.device), output="softmax",
                             channels=list(range(1, len(names))), stats=stats, norm_kwargs=norm_kwargs,
                             settings=settings, progress=step)
    t2 = time.perf_counter()
    try:
        classes = argmax_classes(store, len(names))
    finally:
        store.close()
    del volume
    classes = _to_grid(classes, tomogram.shape)
    vs = float(np.mean(tomogram.voxel_size_A))
    if options.fill_lumen:
        classes = fill_lumen(enclosed_lumen(classes))
    instances = label_instances(classes, vs, min_lumen_A3=options.min_lumen_A3)
    t3 = time.perf_counter()
    counts = np.bincount(classes.ravel(), minlength=len(names))
    summary = {"shape_zyx": list(tomogram.shape), "voxel_size_A": vs, "windows": total,
               "rescale_factors_zyx": None if factors is None else [float(f) for f in factors],
               "voxels": {n: int(c) for n, c in zip(names, counts)}, "instances": int(instances.max()),
               "seconds_network": t2 - t1, "seconds_post": t3 - t2, "seconds": t3 - t0, "adapt_norm": adapted}
    return Segmentation(classes, instances, vs, summary)


def _adapted(loaded: Any, volume: Any, stats: Any, norm_kwargs: dict[str, Any], options: SegmentOptions,
             settings: InferenceSettings) -> tuple[Any, dict[str, Any]]:
    """The network with batch norm adapted to this volume (``options.adapt_norm``, else the checkpoint's
    ``segment.adapt_norm``; relative to its ``segment.adapt_reference`` when stored), and a summary."""
    from tomopick.inference.adapt import AdaptSettings, adapt_batchnorm

    stored = loaded.config.get("segment") or {}
    strength = options.adapt_norm if options.adapt_norm is not None else float(stored.get("adapt_norm", 0.0))
    if strength <= 0:
        return loaded.model, {"adapted_layers": 0}
    with reuse_freed_memory(settings.reuse_memory and settings.device == "cpu"):  # as the picker's adaptation
        return adapt_batchnorm(loaded.model, volume, stats, norm_kwargs, settings=AdaptSettings(strength=strength),
                               device=settings.device, divisor=settings.divisor,
                               reference=stored.get("adapt_reference"))
