"""Training targets from picks: sphere / Ball / Cubic / TBall class maps and Gaussian centroid heatmaps."""

from tomopick.labels.targets import (
    CLASS_MAP_KINDS,
    HEATMAP_KINDS,
    TargetSpec,
    class_map,
    gaussian_heatmaps,
    label_radii_vox,
    make_target,
)

__all__ = ["CLASS_MAP_KINDS", "HEATMAP_KINDS", "TargetSpec", "class_map", "gaussian_heatmaps", "label_radii_vox",
           "make_target"]
