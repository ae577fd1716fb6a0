"""Test-time adaptation of batch normalisation to one tomogram (AdaBN, Li et al. 2016).

A network with batch norm divides every feature map by statistics (mean, variance) estimated on its *training*
patches. On a tomogram from another microscope, defocus or reconstruction the features arrive with other means
and spreads: the normalised features drift, and the class probabilities with them (the score scale does not
transfer). AdaBN re-estimates those statistics on the tomogram being picked — unsupervised, no labels, no
gradient steps — so that every layer sees features normalised the way it was trained to see them.

:func:`adapt_batchnorm` returns an adapted *copy* of a network (the loaded model stays untouched): its batch-norm
layers' running statistics follow the tomogram's, measured over a few windows drawn in it (inside the specimen
slab with ``skip_vacuum``) — blended with the trained ones, or (with reference statistics stored with the model)
moved by the tomogram's difference from the training distribution. The windows are fixed by a seeded generator,
so a tomogram always gives the same adapted network.

A volume without specimen structure (uncorrelated noise: a blank or synthetic volume) is left alone: rescaled
to the training features' spread, its noise would look like particles. :func:`correlation_gain` measures how much
structure larger than a voxel the windows hold; below ``AdaptSettings.min_correlation_gain`` nothing is adapted.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tomopick.inference.normalize import RobustStats


@dataclass(frozen=True)
class AdaptSettings:
    """How to adapt: ``windows`` boxes of ``window_zyx`` voxels (clipped to the volume) inside ``z_range``;
    ``strength`` in [0, 1] is the tomogram's share of the statistics (1 = AdaBN, 0 = no change)."""

    windows: int = 6
    window_zyx: tuple[int, int, int] = (64, 160, 160)
    strength: float = 1.0
    seed: int = 0
    min_correlation_gain: float = 1.25


def correlation_gain(volume: Any, size: int = 4) -> float:
    """How much the variance of ``volume`` (any shape, ≥ ``size`` per axis) survives averaging over boxes of
    ``size`` voxels per axis, relative to uncorrelated noise: ``var(box mean) · size^ndim / var``. Uncorrelated
    (white) noise gives 1; structure wider than the box (particles, membranes, ice) gives more — the tomograms of
    ``bench/shift_sets.py`` give 2.7–13 with ``size`` 4, down to SNR 0.35. A constant volume gives 0."""
    from scipy.ndimage import uniform_filter

    x = np.asarray(volume, dtype=np.float32)
    inner = tuple(slice(size, n - size) if n > 3 * size else slice(None) for n in x.shape)  # no edge copies
    var = float(x[inner].var())
    if var <= 0:
        return 0.0
    return float(uniform_filter(x, size=size, mode="reflect")[inner].var() * size ** x.ndim / var)


def has_batchnorm(model: Any) -> bool:
    """Whether ``model`` has batch-norm layers with running statistics (what :func:`adapt_batchnorm` adapts)."""
    return bool(batchnorm_layers(model))


def window_starts(shape: Sequence[int], window: Sequence[int], n: int, rng: np.random.Generator,
                  z_range: tuple[int, int] | None = None) -> list[tuple[int, int, int]]:
    """``n`` window corners ``(z, y, x)`` drawn uniformly so that each ``window`` box (clipped to ``shape``) lies
    inside the volume and, along z, inside ``z_range`` (default: the whole depth)."""
    z0, z1 = z_range or (0, int(shape[0]))
    size = [min(int(w), int(s)) for w, s in zip(window, (z1 - z0, shape[1], shape[2]))]
    highs = [z1 - size[0], int(shape[1]) - size[1], int(shape[2]) - size[2]]
    lows = [z0, 0, 0]
    return [tuple(int(rng.integers(lo, hi + 1)) for lo, hi in zip(lows, highs)) for _ in range(int(n))]


def batchnorm_layers(model: Any) -> list[Any]:
    """The batch-norm layers with running statistics, in module order."""
    import torch

    return [m for m in model.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def read_windows(source: Any, stats: RobustStats, norm_kwargs: dict[str, Any] | None = None, *,
                 settings: AdaptSettings | None = None, z_range: tuple[int, int] | None = None,
                 divisor: int = 16) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The normalised windows of :class:`AdaptSettings` (their boxes clipped to the volume and to multiples of
    ``divisor``) drawn in the ``(z, y, x)`` volume ``source``, and the window size."""
    from tomopick.inference.sliding import read_normalised

    settings = settings or AdaptSettings()
    shape = tuple(int(s) for s in source.shape)
    window = tuple(max(divisor, min(int(w), s) // divisor * divisor) for w, s in zip(settings.window_zyx, shape))
    starts = window_starts(shape, window, settings.windows, np.random.default_rng(settings.seed), z_range)
    return [read_normalised(source, start, window, stats, dict(norm_kwargs or {})) for start in starts], window


def _measure_windows(model: Any, boxes: Sequence[np.ndarray], device: str) -> tuple[list[Any], list[Any]]:
    """Per batch-norm layer of a copy of ``model``: mean and variance of its input over ``boxes`` (train mode)."""
    import torch

    probe = copy.deepcopy(model).to(device)
    layers = batchnorm_layers(probe)
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the windows
    probe.train()
    with torch.no_grad():
        for box in boxes:
            probe(torch.from_numpy(np.ascontiguousarray(box)[None, None]).to(device))
    return ([m.running_mean.detach().clone() for m in layers], [m.running_var.detach().clone() for m in layers])


def measure_batchnorm(model: Any, source: Any, stats: RobustStats, norm_kwargs: dict[str, Any] | None = None, *,
                      settings: AdaptSettings | None = None, z_range: tuple[int, int] | None = None,
                      device: str = "cpu", divisor: int = 16) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """Per batch-norm layer, the mean and (unbiased) variance of its input features over the windows of
    :class:`AdaptSettings` drawn in the ``(z, y, x)`` volume ``source`` (model grid, not normalised; normalised
    with ``stats`` like the sliding window does), each layer fed by the layers before it normalised with the
    volume's own batch statistics (train-mode batch norm). ``model`` is not changed."""
    boxes, window = read_windows(source, stats, norm_kwargs, settings=settings, z_range=z_range, divisor=divisor)
    means, variances = _measure_windows(model, boxes, device)
    return means, variances, {"windows": len(boxes), "window_zyx": list(window)}


def adapt_batchnorm(model: Any, source: Any, stats: RobustStats, norm_kwargs: dict[str, Any] | None = None, *,
                    settings: AdaptSettings | None = None, z_range: tuple[int, int] | None = None,
                    device: str = "cpu", divisor: int = 16,
                    reference: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` (eval mode) whose batch-norm statistics follow those of the volume ``source``
    (:func:`measure_batchnorm`), with strength ``s`` = ``settings.strength``:

    * without ``reference``: ``μ = (1 − s) μ_train + s μ_tomo`` and likewise the variance (AdaBN);
    * with ``reference`` (``{"means": [...], "variances": [...]}``: the same measurement on tomograms of the
      training distribution, stored with the model): only the *difference* between this tomogram and the
      reference moves the trained statistics, ``μ = μ_train + s (μ_tomo − μ_ref)`` and
      ``σ² = σ²_train (σ²_tomo / σ²_ref)^s``. Whole-tomogram windows hold more background than the particle-centred
      training patches; the reference cancels that sampling difference, so a tomogram like the training data
      leaves the network as trained.

    Returns the adapted model and a summary (layers adapted, windows, strength, rule, the windows'
    :func:`correlation_gain`). A model without batch norm, or ``s = 0``, is returned as is; so is one whose
    windows look like uncorrelated noise (median gain below ``settings.min_correlation_gain``; the summary's
    ``skipped`` says why)."""
    settings = settings or AdaptSettings()
    if not has_batchnorm(model) or settings.strength <= 0:
        return model, {"adapted_layers": 0}
    boxes, window = read_windows(source, stats, norm_kwargs, settings=settings, z_range=z_range, divisor=divisor)
    gain = float(np.median([correlation_gain(box) for box in boxes]))
    info = {"windows": len(boxes), "window_zyx": list(window), "correlation_gain": round(gain, 3)}
    if gain < settings.min_correlation_gain:
        return model, {"adapted_layers": 0, **info, "skipped": (
            f"the volume looks like uncorrelated noise (correlation gain {gain:.2f} < "
            f"{settings.min_correlation_gain:g}), no specimen to adapt to")}
    means, variances = _measure_windows(model, boxes, device)
    adapted = copy.deepcopy(model).to(device).eval()
    layers = batchnorm_layers(adapted)
    s = float(settings.strength)
    ref = _reference_tensors(reference, layers)
    for i, m in enumerate(layers):
        mean, var = means[i].to(m.running_mean), variances[i].to(m.running_var)
        if ref is None:
            m.running_mean.mul_(1.0 - s).add_(mean, alpha=s)
            m.running_var.mul_(1.0 - s).add_(var, alpha=s)
        else:
            ref_mean, ref_var = ref[0][i].to(mean), ref[1][i].to(var)
            m.running_mean.add_(mean - ref_mean, alpha=s)
            m.running_var.mul_((var.clamp_min(1e-12) / ref_var.clamp_min(1e-12)) ** s)
    return adapted, {"adapted_layers": len(layers), **info, "strength": s,
                     "rule": "AdaBN" if ref is None else "relative to the stored reference"}


def reference_statistics(measurements: Sequence[tuple[list[Any], list[Any]]]) -> dict[str, Any]:
    """The stored form of a reference: per layer the mean over several volumes' :func:`measure_batchnorm`
    means and variances, as plain lists (JSON-able, kept in ``config["pick"]["adapt_reference"]``)."""
    import torch

    n_layers = len(measurements[0][0])
    means = [torch.stack([m[0][i] for m in measurements]).mean(0).tolist() for i in range(n_layers)]
    variances = [torch.stack([m[1][i] for m in measurements]).mean(0).tolist() for i in range(n_layers)]
    return {"means": means, "variances": variances, "volumes": len(measurements)}


def _reference_tensors(reference: dict[str, Any] | None, layers: list[Any]) -> tuple[list[Any], list[Any]] | None:
    """The reference as tensors when it fits the layers (count and channels), else ``None``."""
    import torch

    if not reference:
        return None
    means, variances = reference.get("means") or [], reference.get("variances") or []
    if len(means) != len(layers) or len(variances) != len(layers):
        return None
    if any(len(a) != m.num_features or len(b) != m.num_features for a, b, m in zip(means, variances, layers)):
        return None
    return ([torch.tensor(a, dtype=torch.float32) for a in means],
            [torch.tensor(b, dtype=torch.float32) for b in variances])
