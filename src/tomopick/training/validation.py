"""Validation by the CZII F-beta on held-out tomograms, through the same code path as ``tomopick pick``.

:func:`fbeta_validator` returns a :data:`~tomopick.training.loop.Validator`: it picks every validation tomogram
with :func:`tomopick.inference.picking.pick_tomogram` — the function behind ``tomopick pick``, with its default
windows and the peak method and pick spacing of the training config's ``pick:`` section (default ``maxpool``,
0.75 × radius), keeping every peak above a low floor — and scores the picks with
:func:`tomopick.evaluation.threshold_sweep` (best threshold per class) or, when a fixed threshold is configured,
:func:`tomopick.evaluation.czii_score`. The per-class thresholds of the sweep (the lowest within
:data:`~tomopick.peaks.thresholds.THRESHOLD_TOLERANCE` of the best F-beta) are returned too (``threshold_<class>``): :class:`~tomopick.training.loop.Trainer` stores those of the best validation in the
checkpoint, where ``tomopick pick`` takes them as its default.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from tomopick.data import Picks, Tomogram
from tomopick.inference.normalize import RobustStats
from tomopick.inference.options import PickOptions
from tomopick.inference.picking import inference_settings, pick_tomogram
from tomopick.models.checkpoint import LoadedModel
from tomopick.peaks import thresholds

def pick_volume(model: torch.nn.Module, volume: Any, trainer: Any, min_score: float = thresholds.MIN_SCORE,
                peak_method: str = "maxpool", distance_factor: float = 0.75, score: str | None = None) -> Picks:
    """Scored picks (every peak ≥ ``min_score``) of one normalised validation volume, as ``tomopick pick`` would
    find them with this network: same windows (:func:`~tomopick.inference.picking.inference_settings`), same
    peaks, same spacing (``distance_factor × radius``).

    Parameters
    ----------
    model
        The network in eval mode.
    volume
        A :class:`~tomopick.training.data.Volume`: normalised ``(z, y, x)`` image, voxel size, name.
    trainer
        Provides ``checkpoint_config()`` (classes, output, network, patch size) and ``device``.
    """
    loaded = LoadedModel(model=model, config=trainer.checkpoint_config())
    options = PickOptions(threshold=min_score, peak_method=peak_method, distance_factor=distance_factor,
                          score=score or getattr(trainer, "pick_score", None), device=str(trainer.device))
    tomogram = Tomogram(volume.image, float(volume.voxel_size_A), source=volume.name)
    picks, _ = pick_tomogram(tomogram, loaded, options, run=volume.name, settings=inference_settings(loaded, options),
                             stats=RobustStats(0.0, 1.0, 1))  # the volume is normalised already
    return picks


def peak_settings(trainer: Any, peak_method: str | None = None, distance_factor: float | None = None,
                  ) -> tuple[str, float, str]:
    """``(peak_method, distance_factor, score)``: the given ones, else those of ``trainer.config.pick`` (else
    maxpool, 0.75, blob)."""
    pick = getattr(getattr(trainer, "config", None), "pick", None)
    method = peak_method or (pick.peak_method if pick is not None else "maxpool")
    factor = distance_factor if distance_factor is not None else (
        float(pick.distance_factor) if pick is not None else 0.75)
    score = getattr(trainer, "pick_score", None) or "blob"
    return method, float(factor), str(score)


def fbeta_validator(beta: float = 4.0, threshold: float | None = None, min_score: float = thresholds.MIN_SCORE,
                    peak_method: str | None = None, distance_factor: float | None = None):
    """A validator scoring the CZII F-beta of the validation tomograms (see the module docstring).

    ``peak_method`` / ``distance_factor``: how peaks are found; None (default) takes the trainer config's
    ``pick.peak_method`` / ``pick.distance_factor`` (``maxpool``, 0.75 unless configured), so that the stored
    thresholds are chosen for the peak method ``tomopick pick`` will use with the model.

    The returned dict holds ``score`` (weighted F-beta), ``n_picks``, and per class ``fbeta_<class>`` and
    ``threshold_<class>`` (the sweep's best threshold, or the fixed one).
    """

    def validate(model: torch.nn.Module, volumes: Sequence[Any], trainer: Any) -> dict[str, Any]:
        from tomopick.evaluation import apply_thresholds, czii_score, threshold_sweep

        particles = trainer.particles
        method, factor, kind = peak_settings(trainer, peak_method, distance_factor)
        truth, picks = [], []
        for vol in volumes:
            picks.append(pick_volume(model, vol, trainer, min_score, method, factor, kind))
            truth.append(vol.picks.with_columns(run=vol.name))
        truth_all, picks_all = Picks.concat(truth), Picks.concat(picks)
        if threshold is None:
            sweep = threshold_sweep(truth_all, picks_all, particles, "czii", beta=beta, tolerance=thresholds.THRESHOLD_TOLERANCE)
            table, score = sweep.table, sweep.score
        else:
            result = czii_score(truth_all, apply_thresholds(picks_all, {n: threshold for n in particles.names}),
                                particles, beta=beta)
            table, score = result.table, result.score
        out: dict[str, Any] = {"score": float(score) if np.isfinite(score) else 0.0, "n_picks": len(picks_all)}
        for _, row in table.iterrows():
            out[f"fbeta_{row['particle']}"] = float(row["fbeta"])
            out[f"threshold_{row['particle']}"] = thresholds.stored_threshold(row, threshold, min_score, kind)
        return out

    return validate
