"""Score maps → picks: max-pool NMS, DeepETPicker MP-NMS, connected components, local maxima, masks."""

from tomopick.peaks.stream import block_grid, find_peaks_blocks
from tomopick.peaks.core import (
    METHODS,
    Peaks,
    apply_mask,
    connected_components,
    find_peaks,
    halo_vox,
    local_maxima,
    maxpool_nms,
    mp_nms,
    mp_passes,
    suppress_close,
)

__all__ = ["METHODS", "Peaks", "apply_mask", "connected_components", "block_grid", "find_peaks", "find_peaks_blocks", "halo_vox", "local_maxima",
           "maxpool_nms", "mp_nms", "mp_passes", "suppress_close"]
