"""Inference: robust normalisation, rescaling to the model's voxel size, streamed sliding-window prediction
(Gaussian blending or central-crop tiling, flip TTA) over slabs of tomograms of any size."""

from tomopick.inference.normalize import (
    METHOD as NORMALISATION_METHOD,
    RobustStats,
    normalisation_kwargs,
    normalize_robust,
    robust_config,
    robust_stats,
)

__all__ = ["NORMALISATION_METHOD", "RobustStats", "normalisation_kwargs", "normalize_robust", "robust_config",
           "robust_stats"]
