"""Promptable picking core: prompts → embeddings → per-prompt probability maps (sliding window) → picks.

Pure: arrays in, arrays out. The sliding window is MONAI's :func:`monai.inferers.sliding_window_inference`; within
each window the segmenter's encoder runs once and its decoder once per particle kind (so ``k`` kinds cost one
encoder pass and ``k`` decoder passes per window).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from tomopick.data import Picks
from tomopick.prompt.networks import PromptablePicker


def embed_prompts(model: PromptablePicker, boxes: np.ndarray, groups: Sequence[int] | None = None) -> torch.Tensor:
    """Embeddings ``(k, d)`` of prompt boxes ``(m, s, s, s)`` (normalised), averaged within groups.

    Parameters
    ----------
    groups
        ``(m,)`` group index ``0 … k-1`` of each box (e.g. one group per particle name); the mean embedding of a
        group is re-normalised to unit length. ``None``: each box its own group.
    """
    dev = next(model.parameters()).device
    boxes_t = torch.from_numpy(np.asarray(boxes, dtype=np.float32)[:, None]).to(dev)
    with torch.no_grad():
        z = model.embed(boxes_t)
    if groups is None:
        return z
    groups_a = np.asarray(groups, dtype=np.int64)
    k = int(groups_a.max()) + 1
    out = torch.stack([z[torch.from_numpy(groups_a == g)].mean(0) for g in range(k)])
    return torch.nn.functional.normalize(out, dim=1)


def predict_maps(model: PromptablePicker, volume: np.ndarray, embeddings: torch.Tensor, *,
                 roi: int | Sequence[int] = 64, stride: int | Sequence[int] | None = None, batch_size: int = 2,
                 blend: str = "gaussian", progress: bool = False) -> np.ndarray:
    """Sigmoid probability maps ``(k, z, y, x)`` float32 of a normalised volume for ``k`` embeddings.

    Parameters
    ----------
    volume
        ``(z, y, x)`` float32, robust-normalised, at the model's voxel size.
    embeddings
        ``(k, d)`` from :func:`embed_prompts`.
    roi
        Window edge(s) in voxels, ``(z, y, x)``; rounded up to a multiple of the U-Net's divisor.
    stride
        Step between windows (voxels, per axis); default ``roi // 2``. MONAI's overlap is ``1 - stride / roi``.
    batch_size
        Windows per forward pass.
    blend
        ``"gaussian"`` or ``"constant"`` weighting of overlapping windows.
    """
    from monai.inferers import sliding_window_inference

    div = model.segmenter.divisor
    roi_a = np.broadcast_to(np.asarray(roi, dtype=np.int64), (3,))
    roi_a = (np.ceil(roi_a / div) * div).astype(np.int64)
    stride_a = roi_a // 2 if stride is None else np.broadcast_to(np.asarray(stride, dtype=np.int64), (3,))
    if np.any(stride_a < 1) or np.any(stride_a > roi_a):
        raise ValueError(f"stride must be between 1 and the window size {roi_a.tolist()}, got {stride_a.tolist()}")
    overlap = [float(1.0 - s / r) for s, r in zip(stride_a, roi_a)]
    model.eval()
    x = torch.from_numpy(np.ascontiguousarray(volume, dtype=np.float32))[None, None]
    z = embeddings.detach()

    def predictor(patch: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(model.segment(patch, z))

    with torch.no_grad():
        out = sliding_window_inference(x, [int(r) for r in roi_a], batch_size, predictor, overlap=overlap,
                                       mode=blend, padding_mode="constant", sw_device=z.device, device="cpu",
                                       progress=progress)
    return out[0].numpy().astype(np.float32, copy=False)


def maps_to_picks(maps: np.ndarray, names: Sequence[str], radii_vox: Sequence[float], voxel_size_A: float, *,
                  method: str = "cc", threshold: float | Sequence[float] = 0.5, distance_factor: float = 0.75,
                  run: str = "") -> Picks:
    """Picks from probability maps ``(k, z, y, x)`` (one per particle ``names[j]`` of radius ``radii_vox[j]``).

    ``method="cc"``: connected components of ``map ≥ threshold`` whose size lies between 5 % and 8× the volume
    of the particle's sphere, at their centroids (ProPicker-C); ``"localmax"``: local maxima ≥ ``threshold`` at
    least ``distance_factor`` × radius apart. ``threshold`` is one value or one per map. Delegates to
    :func:`tomopick.peaks.find_peaks`; positions are converted to Å with ``voxel_size_A`` (the maps' grid).
    """
    from tomopick.peaks import find_peaks

    thr = float(threshold) if np.ndim(threshold) == 0 else [float(t) for t in threshold]  # type: ignore[union-attr]
    peaks = find_peaks(maps, method, threshold=thr, radius_vox=[float(r) for r in radii_vox],
                       distance_factor=distance_factor)
    return Picks.from_voxels(peaks.zyx, voxel_size_A, [names[c] for c in peaks.channel], score=peaks.score, run=run)
