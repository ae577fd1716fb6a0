"""Inference: robust normalisation, rescaling to the model's voxel size, streamed sliding-window prediction
(overlap-tile or Gaussian blending, flip TTA) over tomograms of any size into a per-class score store."""

from tomopick.inference.normalize import (
    METHOD as NORMALISATION_METHOD,
    RobustStats,
    normalisation_kwargs,
    normalize_robust,
    robust_config,
    robust_stats,
)
from tomopick.inference.rescale import rescale_factors, rescale_slab, rescale_volume, rescaled_shape
from tomopick.inference.sliding import (
    InferenceSettings,
    ReleasingArray,
    ScoreStore,
    count_windows,
    make_predictor,
    plan_axis,
    predict_to_store,
    release_pages,
)

__all__ = [
    "InferenceSettings", "NORMALISATION_METHOD", "ReleasingArray", "RobustStats", "ScoreStore", "count_windows",
    "make_predictor", "normalisation_kwargs", "normalize_robust", "plan_axis", "predict_to_store", "release_pages",
    "rescale_factors", "rescale_slab", "rescale_volume", "rescaled_shape", "robust_config", "robust_stats",
]
