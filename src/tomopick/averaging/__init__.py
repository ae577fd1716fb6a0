"""Subtomogram averaging for checking picks: extract, align, average half-sets, FSC.

Pure functions (arrays in, arrays out; no file I/O): :mod:`extract` cuts boxes at picks, :mod:`align` searches
rotations and shifts with missing-wedge-aware correlation (torch.fft), :mod:`refine` iterates alignment and
wedge-weighted averaging of two independent half-sets, :mod:`fsc` measures their agreement and :mod:`cut` finds an
automatic threshold on the per-pick alignment scores. The verb is :func:`tomopick.workflows.average.average`.

Public API
----------
AverageOptions, extract_subvolumes, average_subtomograms, half_map_fsc, fourier_shell_correlation, resolution_at,
automatic_score_cut, split_halves
"""

from tomopick.averaging.align import Alignment, global_search, local_search, sample_volumes
from tomopick.averaging.cut import ScoreCut, automatic_score_cut
from tomopick.averaging.extract import Subvolumes, bin_volume, extract_subvolumes, fit_box
from tomopick.averaging.fsc import (
    FSC_THRESHOLD, FSCCurve, apply_lowpass, fourier_shell_correlation, resolution_at, soft_sphere_mask,
)
from tomopick.averaging.options import AverageOptions
from tomopick.averaging.refine import AverageResult, average_subtomograms, half_map_fsc, split_halves

__all__ = [
    "Alignment", "AverageOptions", "AverageResult", "FSCCurve", "FSC_THRESHOLD", "ScoreCut", "Subvolumes",
    "apply_lowpass", "automatic_score_cut", "average_subtomograms", "bin_volume", "extract_subvolumes", "fit_box",
    "fourier_shell_correlation", "global_search", "half_map_fsc", "local_search", "resolution_at", "sample_volumes",
    "soft_sphere_mask", "split_halves",
]
