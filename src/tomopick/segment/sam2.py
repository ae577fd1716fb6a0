"""Optional SAM2 backend (``pip install 'tomopick[sam2]'``): organelles segmented slice-wise by SAM2's *video*
predictor and propagated through z (each z-slice is one video frame), from local weights given by path.

Written against sam2 1.1's public API — ``sam2.build_sam.build_sam2_video_predictor(config, ckpt_path, device)``,
``predictor.init_state(video_path=<folder of 00000.jpg …>)``, ``add_new_mask`` / ``add_new_points_or_box``,
``propagate_in_video(state, start_frame_idx, reverse)`` and, for prompts without a label map,
``sam2.automatic_mask_generator.SAM2AutomaticMaskGenerator(build_sam2(...)).generate(rgb)``. sam2 reads the frames
from a folder itself: :func:`tomopick.workflows.segment.segment_sam2` writes them (:func:`slices_to_frames` makes
the uint8 images), this module only builds prompts, drives the predictor and assembles the 3D result.

sam2 imports torchvision, which has no CPU build in tomopick's pinned environment, so this backend was not run in
its development (the tests skip with that reason; docs/segment.md says so).
"""

from __future__ import annotations

from typing import Any, Iterable

import numpy as np

from tomopick.errors import TomopickError
from tomopick.segment.instances import LUMEN, MEMBRANE

SAM2_MISSING = ("the SAM2 backend needs the optional sam2 package (pip install 'tomopick[sam2]'), which needs "
                "torchvision")


def require_sam2() -> Any:
    """The imported ``sam2`` package, or one-line :class:`TomopickError` saying what is missing."""
    try:
        import sam2  # noqa: F401
        import sam2.build_sam  # noqa: F401
    except ImportError as exc:
        raise TomopickError(f"{SAM2_MISSING} ({exc})") from None
    return sam2


def slices_to_frames(volume: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.0) -> np.ndarray:
    """z-slices of a ``(z, y, x)`` tomogram as uint8 RGB frames ``(z, y, x, 3)`` (contrast stretched between the
    volume's percentiles; protein/membranes dark as in the tomogram)."""
    vol = np.asarray(volume, dtype=np.float32)
    lo, hi = np.percentile(vol[::2, ::4, ::4], [low_pct, high_pct])
    scaled = np.clip((vol - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)
    grey = np.rint(scaled * 255).astype(np.uint8)
    return np.repeat(grey[..., None], 3, axis=-1)


def prompts_from_labels(instances: np.ndarray, frame: int, min_area_px: int = 50) -> dict[int, np.ndarray]:
    """Mask prompts ``{object id: (y, x) bool}`` on one z-slice from an instance map (e.g. membrane-10A's)."""
    plane = np.asarray(instances[frame])
    out = {}
    for k in np.unique(plane):
        if k == 0:
            continue
        m = plane == k
        if int(m.sum()) >= min_area_px:
            out[int(k)] = m
    return out


def prompts_from_generator(generator: Any, frame_rgb: np.ndarray, min_area_px: int = 200,
                           max_area_fraction: float = 0.5) -> dict[int, np.ndarray]:
    """Mask prompts from ``SAM2AutomaticMaskGenerator.generate`` on one frame (objects above ``min_area_px`` and
    below ``max_area_fraction`` of the frame — the ice itself is not an organelle)."""
    masks = generator.generate(frame_rgb)
    total = frame_rgb.shape[0] * frame_rgb.shape[1]
    out, k = {}, 1
    for m in sorted(masks, key=lambda d: -float(d.get("predicted_iou", 0))):
        seg = np.asarray(m["segmentation"], dtype=bool)
        if min_area_px <= int(seg.sum()) <= max_area_fraction * total:
            out[k] = seg
            k += 1
    return out


def propagate(predictor: Any, frames_dir: str, n_frames: int, shape_yx: tuple[int, int],
              prompts: dict[int, np.ndarray], frame: int) -> np.ndarray:
    """Run SAM2's video predictor: mask prompts on ``frame``, propagated forward and backward through z.

    Parameters
    ----------
    predictor
        ``SAM2VideoPredictor`` from ``build_sam2_video_predictor``.
    frames_dir
        Folder of ``00000.jpg …`` frames (one per z-slice), as ``init_state`` reads.
    prompts
        ``{object id: (y, x) bool}`` on ``frame``.

    Returns
    -------
    numpy.ndarray
        int32 ``(z, y, x)`` instance ids (where objects overlap, the later id wins).
    """
    import torch

    out = np.zeros((n_frames, *shape_yx), dtype=np.int32)
    if not prompts:
        return out
    with torch.inference_mode():
        state = predictor.init_state(video_path=frames_dir)
        for obj_id, mask in prompts.items():
            predictor.add_new_mask(state, frame_idx=int(frame), obj_id=int(obj_id), mask=np.asarray(mask, bool))
        for reverse in (False, True):
            for f, obj_ids, logits in predictor.propagate_in_video(state, start_frame_idx=int(frame),
                                                                    reverse=reverse):
                masks = (logits > 0.0).cpu().numpy()[:, 0]
                for obj, m in zip(obj_ids, masks):
                    out[int(f)][m] = int(obj)
        predictor.reset_state(state)
    return out


def instances_to_classes(instances: np.ndarray, rim_vox: int = 2) -> np.ndarray:
    """Class map from SAM2 object masks: each object's interior is lumen, its outer rim (``rim_vox`` voxels,
    in x–y) membrane — SAM2 outlines organelles, it does not trace bilayers."""
    from scipy import ndimage

    classes = np.zeros(instances.shape, dtype=np.uint8)
    inside = instances > 0
    classes[inside] = LUMEN
    for z in range(instances.shape[0]):
        if inside[z].any():
            core = ndimage.binary_erosion(inside[z], iterations=int(rim_vox))
            classes[z][inside[z] & ~core] = MEMBRANE
    return classes


def reference_frame(n_frames: int, frames: Iterable[int] | None = None) -> int:
    """The frame prompts are placed on: the central slice (best contrast, away from the missing-wedge caps)."""
    return int(n_frames // 2) if frames is None else int(next(iter(frames)))
