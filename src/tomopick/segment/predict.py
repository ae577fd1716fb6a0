"""A segmentation network over a whole tomogram: the same streamed sliding window as picking
(:func:`tomopick.inference.sliding.predict_to_store`), then argmax, lumen completion and instances (pure: no files).

A segmentation checkpoint is an ordinary tomopick checkpoint whose config says ``task: segment`` and names its
output channels in ``segment_classes`` (channel ``i`` = class id ``i`` of
:data:`~tomopick.simulate.context.SEGMENT_CLASSES`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.inference.normalize import normalisation_kwargs, robust_stats
from tomopick.inference.rescale import rescale_factors, rescale_volume
from tomopick.inference.sliding import (
    InferenceSettings, ReleasingArray, count_windows, predict_to_store, reuse_freed_memory,
)
from tomopick.segment.instances import (
    SEGMENT_CLASSES, drop_small_membrane, enclosed_lumen, fill_lumen, label_instances,
)

TASK = "segment"
DEFAULT_ROI: tuple[int, int, int] = (96, 256, 256)
DEFAULT_OVERLAP = 0.125


class SegmentOptions(BaseModel):
    """How to segment (defaults = ``tomopick segment`` without options).

    Attributes
    ----------
    tta
        Flip test-time augmentation (:func:`~tomopick.inference.sliding.flip_sets`): 1 (none), 2 (the volume as
        it is and inverted through its centre), 4 or 8 passes; ``None``: the checkpoint's ``config["segment"]["tta"]``
        (chosen with its prior correction on validation and dev tomograms), else 1.
    roi_size, overlap, batch_size, device
        Sliding window (crop mode: each window keeps ``overlap · roi / 2`` voxels of context per side); ``None``:
        the checkpoint's stored plan (``config["segment"]["roi_size"]`` / ``["overlap"]``), else
        :data:`DEFAULT_ROI` at overlap :data:`DEFAULT_OVERLAP`.
    precision
        CPU arithmetic of the network: ``fp32``, ``bf16`` or ``auto`` (bf16 on a CPU with native bfloat16, as
        ``tomopick pick``; half the activation memory).
    fill_lumen
        Lumen post-processing: keep only lumen walled by membrane (:func:`~tomopick.segment.instances.
        enclosed_lumen`), then complete lumens inside membrane rings slice by slice (:func:`~tomopick.segment.
        instances.fill_lumen`).
    min_lumen_A3
        Smallest lumen that counts as a compartment.
    min_membrane_A3
        Membrane pieces smaller than this become background before the lumen post-processing
        (:func:`~tomopick.segment.instances.drop_small_membrane`; 3 × 10⁶ Å³ ≈ 3,000 voxels at 10 Å, chosen on the
        validation and dev tomograms by ``bench/segment_fragments.py``); 0 keeps every piece.
    voxel_size_A
        Override the input's voxel size.
    allow_nonfinite
        Treat NaN/Inf voxels as background instead of refusing the tomogram.
    prior_correction
        How much of the training loss's class weights to undo before the argmax, 0 (plain argmax) to 1: each
        class's probability is multiplied by ``(w_min / w_c) ** prior_correction`` (``w`` the checkpoint's
        ``training.ce_weights``; :func:`class_prior_scale`). A weighted loss shifts the posteriors by those weights
        (membrane ×4 against background for membrane-10A, whose membranes came out ~20 % too thick). ``None``: the
        checkpoint's ``config["segment"]["prior_correction"]`` (chosen on validation tomograms and a low-SNR dev
        set by ``bench/segment_calibrate.py``), else 0.
    adapt_norm
        Test-time adaptation of the network's batch-norm statistics to each tomogram
        (:func:`tomopick.inference.adapt.adapt_batchnorm`, as ``tomopick pick`` does): 0 (off) to 1; ``None``: the
        checkpoint's ``config["segment"]["adapt_norm"]``, else 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    tta: Literal[1, 2, 4, 8] | None = None
    roi_size: tuple[int, int, int] | None = None
    overlap: float | None = Field(default=None, ge=0, lt=1)
    batch_size: int = Field(default=1, ge=1)
    device: str = "cpu"
    precision: Literal["fp32", "bf16", "auto"] = "auto"
    fill_lumen: bool = True
    min_lumen_A3: float = Field(default=4.0e5, ge=0)
    min_membrane_A3: float = Field(default=3.0e6, ge=0)
    voxel_size_A: float | None = Field(default=None, gt=0)
    allow_nonfinite: bool = False
    prior_correction: float | None = Field(default=None, ge=0, le=1)
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


def class_prior_scale(config: dict[str, Any], n_classes: int, strength: float = 1.0) -> np.ndarray | None:
    """Per-class factors ``(w_min / w_c) ** strength`` that undo (``strength`` 1) the cross-entropy weights ``w`` a
    segmentation checkpoint was trained with (``config["training"]["ce_weights"]``); ``None`` when it has none, they
    are all equal or ``strength`` is 0.

    A loss weighted by ``w`` is minimised by ``q_c ∝ w_c p_c`` (``p`` the true posterior), so ``q_c / w_c`` ranks
    the classes as ``p`` does; a strength below 1 undoes part of the shift (the Dice term of the loss and the
    post-processing also move the best operating point).
    """
    weights = (config.get("training") or {}).get("ce_weights")
    if not weights or strength == 0:
        return None
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_classes,) or not np.all(np.isfinite(w)) or np.any(w <= 0):
        raise TomopickError(f"segmentation checkpoint: training.ce_weights must be {n_classes} positive numbers")
    return None if np.allclose(w, w[0]) else ((w.min() / w) ** float(strength)).astype(np.float32)


def correction_strength(config: dict[str, Any], options: SegmentOptions) -> float:
    """``options.prior_correction``, else the checkpoint's ``config["segment"]["prior_correction"]``, else 0."""
    if options.prior_correction is not None:
        return float(options.prior_correction)
    value = (config.get("segment") or {}).get("prior_correction", 0.0)
    try:
        value = float(value)
    except (TypeError, ValueError):
        value = -1.0
    if not 0 <= value <= 1:
        raise TomopickError("segmentation checkpoint: segment.prior_correction must be a number in [0, 1]")
    return value


def tta_passes(config: dict[str, Any], options: SegmentOptions) -> int:
    """``options.tta``, else the checkpoint's ``config["segment"]["tta"]``, else 1."""
    if options.tta is not None:
        return int(options.tta)
    value = (config.get("segment") or {}).get("tta", 1)
    if value not in (1, 2, 4, 8) or isinstance(value, bool):
        raise TomopickError("segmentation checkpoint: segment.tta must be 1, 2, 4 or 8")
    return int(value)


def window_plan(config: dict[str, Any], options: SegmentOptions) -> tuple[tuple[int, int, int], float]:
    """The sliding-window size and overlap: the options', else the checkpoint's stored plan
    (``config["segment"]["roi_size"]``, ``["overlap"]``), else :data:`DEFAULT_ROI` / :data:`DEFAULT_OVERLAP`."""
    plan = config.get("segment") or {}
    try:
        roi = tuple(int(v) for v in (options.roi_size or plan.get("roi_size") or DEFAULT_ROI))
        overlap = float(options.overlap if options.overlap is not None else plan.get("overlap", DEFAULT_OVERLAP))
    except (TypeError, ValueError):
        raise TomopickError("segmentation checkpoint: segment.roi_size must be three integers and "
                            "segment.overlap a number") from None
    if len(roi) != 3 or min(roi) < 8 or not 0 <= overlap < 1:
        raise TomopickError(f"segmentation window {roi} at overlap {overlap}: expected three sizes >= 8 and an "
                            "overlap in [0, 1)")
    return roi, overlap  # type: ignore[return-value]


class ClassMapStore:
    """A write target for :func:`~tomopick.inference.sliding.predict_to_store` that keeps only each voxel's class:
    the argmax of ``[1 − Σ fg, fg…] × class_scale`` per window core, as uint8 ``(z, y, x)`` — 1 byte a voxel
    instead of 2 per foreground channel (8 for membrane-10A; 0.5 GB less at CZII size), and no second pass.

    Parameters
    ----------
    shape
        ``(C - 1, z, y, x)``: the foreground channels written and the volume.
    class_scale
        ``(C,)`` factors (:func:`class_prior_scale`) or ``None``.
    """

    def __init__(self, shape: tuple[int, ...], class_scale: np.ndarray | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        self.classes = np.zeros(self.shape[1:], dtype=np.uint8)
        n = self.shape[0] + 1
        self.scale = None if class_scale is None else np.asarray(class_scale, dtype=np.float32).reshape(-1)
        if self.scale is not None and self.scale.shape[0] != n:
            raise ValueError(f"class_scale has {self.scale.shape[0]} entries for {n} classes")

    def write(self, core: tuple[slice, slice, slice], values: Any) -> None:
        import torch

        fg = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
        scale = [1.0] * (fg.shape[0] + 1) if self.scale is None else [float(v) for v in self.scale]
        # a running maximum over the channels (any memory layout; a strict > keeps the first of equals, as argmax)
        best = 1.0 - fg.float().sum(dim=0)
        best *= scale[0]
        out = torch.zeros(best.shape, dtype=torch.uint8)
        for c in range(fg.shape[0]):
            value = fg[c].float() * scale[c + 1]
            out[value > best] = c + 1
            best = torch.maximum(best, value, out=best)
        self.classes[core] = out.numpy()

    def close(self) -> None:
        pass


def postprocess(classes: np.ndarray, voxel_size_A: float,
                options: SegmentOptions | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A network's class map → the final class map and instances: membrane fragments dropped
    (``options.min_membrane_A3``), walled lumen kept and completed (``options.fill_lumen``), compartments numbered
    (``options.min_lumen_A3``). ``classes`` (uint8 ``(z, y, x)``) may be modified in place."""
    options = options or SegmentOptions()
    vs = float(voxel_size_A)
    drop_small_membrane(classes, int(round(options.min_membrane_A3 / vs**3)))
    if options.fill_lumen:
        classes = fill_lumen(enclosed_lumen(classes))
    return classes, label_instances(classes, vs, min_lumen_A3=options.min_lumen_A3)


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
    roi, overlap = window_plan(loaded.config, options)
    strength = correction_strength(loaded.config, options)
    scale = class_prior_scale(loaded.config, len(names), strength)
    settings = InferenceSettings(mode="crop", roi_size=roi, overlap=overlap, tta=tta_passes(loaded.config, options),
                                 batch_size=options.batch_size, device=options.device, precision=options.precision,
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
                             settings=settings, progress=step,
                             make_store=lambda shape, _chunks: ClassMapStore(shape, scale))
    t2 = time.perf_counter()
    classes = store.classes
    del volume
    classes = _to_grid(classes, tomogram.shape)
    vs = float(np.mean(tomogram.voxel_size_A))
    classes, instances = postprocess(classes, vs, options)
    t3 = time.perf_counter()
    counts = np.bincount(classes.ravel(), minlength=len(names))
    summary = {"shape_zyx": list(tomogram.shape), "voxel_size_A": vs, "windows": total,
               "roi_size": list(roi), "overlap": overlap, "tta": settings.tta,
               "rescale_factors_zyx": None if factors is None else [float(f) for f in factors],
               "voxels": {n: int(c) for n, c in zip(names, counts)}, "instances": int(instances.max()),
               "seconds_network": t2 - t1, "seconds_post": t3 - t2, "seconds": t3 - t0, "adapt_norm": adapted,
               "prior_correction": strength,
               "class_scale": None if scale is None else [float(v) for v in scale]}
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
