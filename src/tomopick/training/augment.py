"""Augmentation of ``(image, target)`` patches with MONAI dictionary transforms (spatial ones applied identically
to both), plus batch-level mixup.

Spatial (image and target together): random flips along z, y, x; 90° rotations in the x–y plane (never tilting
the missing wedge); small rotations about z; per-axis scaling in ``scale_range``; optional elastic deformation.
Class maps are resampled with nearest-neighbour interpolation, heatmaps and images with (tri)linear.
Intensity (image only): gamma, contrast (multiplicative scaling), additive Gaussian noise.

Randomness: :func:`build_augment` returns a MONAI ``Compose`` whose random state is set from an explicit seed
(:meth:`Augmenter.reseed`), so a run is reproducible from the training seed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from tomopick.training.config import AugmentConfig


class Augmenter:
    """Callable ``(image (1,z,y,x), target (C,z,y,x)) -> (image, target)`` numpy arrays.

    Parameters
    ----------
    config
        Probabilities and ranges.
    heatmap
        Targets are float heatmaps (linear resampling) rather than an int class map (nearest).
    seed
        Initial seed of the MONAI random state.
    """

    def __init__(self, config: AugmentConfig, heatmap: bool = False, seed: int = 0) -> None:
        from monai.transforms import (
            Compose, Rand3DElasticd, RandAdjustContrastd, RandAffined, RandFlipd, RandGaussianNoised,
            RandRotate90d, RandScaleIntensityd,
        )

        keys = ["image", "target"]
        label_mode = "bilinear" if heatmap else "nearest"
        t: list[Any] = []
        c = config
        if c.flip_prob > 0:
            t += [RandFlipd(keys, prob=c.flip_prob, spatial_axis=axis) for axis in (0, 1, 2)]
        if c.rot90_xy_prob > 0:
            t.append(RandRotate90d(keys, prob=c.rot90_xy_prob, max_k=3, spatial_axes=(1, 2)))
        if c.rotate_z_prob > 0 or c.scale_prob > 0:
            # MONAI's 3D rotate_range[0] turns the (dim1, dim2) = (y, x) plane, i.e. rotates about z
            rot = math.radians(c.rotate_z_deg)
            lo, hi = c.scale_range
            half = max(abs(1.0 - lo), abs(hi - 1.0))
            prob = 1.0 - (1.0 - c.rotate_z_prob) * (1.0 - c.scale_prob)
            t.append(RandAffined(keys, prob=prob, rotate_range=(rot, 0.0, 0.0),
                                 scale_range=(half, half, half) if c.scale_prob > 0 else None,
                                 mode=("bilinear", label_mode), padding_mode="zeros"))
        if c.elastic_prob > 0:
            t.append(Rand3DElasticd(keys, sigma_range=(5, 8), magnitude_range=(50, 150), prob=c.elastic_prob,
                                    mode=("bilinear", label_mode), padding_mode="zeros"))
        if c.gamma_prob > 0:
            t.append(RandAdjustContrastd(["image"], prob=c.gamma_prob, gamma=(0.7, 1.5)))
        if c.contrast_prob > 0:
            t.append(RandScaleIntensityd(["image"], factors=0.2, prob=c.contrast_prob))
        if c.noise_prob > 0 and c.noise_std > 0:
            t.append(RandGaussianNoised(["image"], prob=c.noise_prob, std=c.noise_std))
        self.heatmap = heatmap
        self.compose = Compose(t)
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Set the random state of every transform from ``seed``."""
        self.compose.set_random_state(seed=int(seed) % (2**32))

    def __call__(self, image: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if not self.compose.transforms:
            return image, target
        dtype = target.dtype
        out = self.compose({"image": torch.as_tensor(image, dtype=torch.float32),
                            "target": torch.as_tensor(target.astype(np.float32))})
        img = np.asarray(out["image"], dtype=np.float32)
        tgt = np.asarray(out["target"], dtype=np.float32)
        if not self.heatmap:
            tgt = np.rint(tgt).astype(dtype)
        return np.ascontiguousarray(img), np.ascontiguousarray(tgt)


def mixup(images: torch.Tensor, rng: np.random.Generator, alpha: float) -> tuple[torch.Tensor, float, torch.Tensor]:
    """Mix each sample with the next one in the batch: ``λ·x_i + (1-λ)·x_{i+1}``, ``λ ~ Beta(α, α)``.

    Returns the mixed images, ``λ`` and the permutation; the loss is ``λ·L(y) + (1-λ)·L(y[perm])``.
    """
    lam = float(rng.beta(alpha, alpha))
    perm = torch.roll(torch.arange(images.shape[0]), 1)
    return lam * images + (1.0 - lam) * images[perm], lam, perm
