"""Validation by the CZII F-beta on held-out tomograms.

:func:`fbeta_validator` returns a :data:`~tomopick.training.loop.Validator`: it predicts every validation
tomogram with MONAI's sliding-window inference (Gaussian blending), turns the class probability maps into scored
picks by local-maximum suppression (:func:`local_maxima_picks`), and scores them with
:func:`tomopick.evaluation.threshold_sweep` (best threshold per class, the optimistic figure) or, when a fixed
threshold is configured, :func:`tomopick.evaluation.czii_score`.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from tomopick.data import ParticleSet, Picks


@torch.no_grad()
def predict_volume(model: torch.nn.Module, image: np.ndarray, patch_size: Sequence[int], output: str,
                   overlap: float = 0.25, sw_batch_size: int = 2, device: torch.device | None = None) -> np.ndarray:
    """Class probabilities ``(K, z, y, x)`` float32 of a normalised ``(z, y, x)`` image (softmax or sigmoid)."""
    from monai.inferers import sliding_window_inference

    device = device or next(model.parameters()).device
    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None, None].to(device)
    logits = sliding_window_inference(x, roi_size=tuple(int(p) for p in patch_size),
                                      sw_batch_size=sw_batch_size, predictor=model, overlap=overlap, mode="gaussian",
                                      padding_mode="constant", cval=0.0)
    probs = torch.softmax(logits, dim=1) if output == "softmax" else torch.sigmoid(logits)
    return probs[0].float().cpu().numpy()


def local_maxima_picks(probs: np.ndarray, particles: ParticleSet, voxel_size_A: float, output: str,
                       min_score: float = 0.1, radius_fraction: float = 0.5, run: str = "",
                       max_per_class: int = 1000) -> Picks:
    """Scored picks at the local maxima of each class map.

    A voxel is a pick when it is the maximum within a cube of half-side ``radius_fraction · radius`` and its
    probability is at least ``min_score``; the score is that probability. At most ``max_per_class`` picks per
    class are kept (the highest scores), bounding the cost of scoring an untrained network's flat maps.

    Parameters
    ----------
    probs
        ``(K, z, y, x)``: background first then the classes (softmax) or the classes only (sigmoid).
    particles
        Classes in channel order.
    """
    from scipy.ndimage import maximum_filter

    offset = 1 if output == "softmax" else 0
    parts = []
    for i, spec in enumerate(particles):
        p = np.asarray(probs[i + offset], dtype=np.float32)
        half = max(1, int(round(radius_fraction * spec.radius_A / voxel_size_A)))
        pooled = maximum_filter(p, size=2 * half + 1, mode="constant", cval=-np.inf)
        peak = (p == pooled) & (p >= min_score)
        zyx = np.argwhere(peak)
        if len(zyx) == 0:
            continue
        scores = p[tuple(zyx.T)].astype(np.float64)
        if len(scores) > max_per_class:
            keep = np.argsort(-scores, kind="stable")[:max_per_class]
            zyx, scores = zyx[keep], scores[keep]
        parts.append(Picks.from_voxels(zyx.astype(np.float64), voxel_size_A, spec.name, score=scores, run=run))
    return Picks.concat(parts)


def fbeta_validator(beta: float = 4.0, overlap: float = 0.25, threshold: float | None = None,
                    min_score: float = 0.1):
    """A validator scoring the CZII F-beta of the validation tomograms (see the module docstring).

    The returned dict holds ``score`` (weighted F-beta), ``n_picks`` and ``fbeta_<class>`` per class.
    """

    def validate(model: torch.nn.Module, volumes: Sequence[Any], trainer: Any) -> dict[str, Any]:
        from tomopick.evaluation import apply_thresholds, czii_score, threshold_sweep

        particles = trainer.particles
        output = trainer.config.output
        truth, picks = [], []
        for vol in volumes:
            probs = predict_volume(model, vol.image, trainer.config.patch_size, output, overlap,
                                   device=trainer.device)
            picks.append(local_maxima_picks(probs, particles, vol.voxel_size_A, output, min_score, run=vol.name))
            truth.append(vol.picks.with_columns(run=vol.name))
        truth_all, picks_all = Picks.concat(truth), Picks.concat(picks)
        if threshold is None:
            sweep = threshold_sweep(truth_all, picks_all, particles, "czii", beta=beta)
            table, score = sweep.table, sweep.score
        else:
            result = czii_score(truth_all, apply_thresholds(picks_all, {n: threshold for n in particles.names}),
                                particles, beta=beta)
            table, score = result.table, result.score
        out: dict[str, Any] = {"score": float(score) if np.isfinite(score) else 0.0, "n_picks": len(picks_all)}
        for _, row in table.iterrows():
            out[f"fbeta_{row['particle']}"] = float(row["fbeta"])
        return out

    return validate
