"""The SAM2 backend: its pure helpers run here; the predictor itself needs sam2, which needs torchvision (no CPU
build in this environment), so that test skips with exactly that reason."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.errors import TomopickError
from tomopick.segment import sam2 as backend
from tomopick.segment.instances import LUMEN, MEMBRANE

try:
    import sam2  # noqa: F401

    HAVE_SAM2 = True
except ImportError:
    HAVE_SAM2 = False

SKIP_REASON = "sam2 needs torchvision, which has no CPU build here"


def test_frames_are_uint8_rgb_with_stretched_contrast():
    vol = np.linspace(-1, 1, 4 * 8 * 8, dtype=np.float32).reshape(4, 8, 8)
    frames = backend.slices_to_frames(vol, 0.0, 100.0)
    assert frames.shape == (4, 8, 8, 3) and frames.dtype == np.uint8
    assert frames[0, 0, 0, 0] == 0 and frames[-1, -1, -1, 0] == 255
    assert np.array_equal(frames[..., 0], frames[..., 2])


def test_prompts_from_labels_and_classes_from_instances():
    inst = np.zeros((3, 20, 20), dtype=np.int32)
    inst[:, 2:12, 2:12] = 4
    inst[1, 15:17, 15:17] = 9  # 4 pixels: below the minimum area
    prompts = backend.prompts_from_labels(inst, 1, min_area_px=10)
    assert list(prompts) == [4] and int(prompts[4].sum()) == 100
    classes = backend.instances_to_classes(inst[:, :, :], rim_vox=2)
    assert int((classes[0] == LUMEN).sum()) == 36 and int((classes[0] == MEMBRANE).sum()) == 64


@pytest.mark.skipif(HAVE_SAM2, reason="sam2 is installed")
def test_missing_sam2_is_one_line():
    with pytest.raises(TomopickError, match="tomopick\\[sam2\\]"):
        backend.require_sam2()


@pytest.mark.skipif(not HAVE_SAM2, reason=SKIP_REASON)
def test_video_predictor_propagates_a_mask_through_z(tmp_path):  # pragma: no cover - not runnable here
    import os

    from sam2.build_sam import build_sam2_video_predictor

    config = os.environ.get("TOMOPICK_SAM2_CONFIG", "configs/sam2.1/sam2.1_hiera_t.yaml")
    ckpt = os.environ.get("TOMOPICK_SAM2_CHECKPOINT")
    if not ckpt:
        pytest.skip("set TOMOPICK_SAM2_CHECKPOINT to local SAM2 weights")
    from PIL import Image

    z, y, x = np.indices((16, 96, 96))
    vol = np.where(np.hypot(y - 48, x - 48) < 20, -1.0, 0.0).astype(np.float32)
    frames = backend.slices_to_frames(vol)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(tmp_path / f"{i:05d}.jpg")
    predictor = build_sam2_video_predictor(config, ckpt, device="cpu")
    prompts = {1: np.hypot(y[8] - 48, x[8] - 48) < 20}
    out = backend.propagate(predictor, str(tmp_path), 16, (96, 96), prompts, 8)
    truth = np.hypot(y - 48, x - 48) < 20
    assert 2 * np.sum((out == 1) & truth) / (np.sum(out == 1) + np.sum(truth)) > 0.8


@pytest.mark.skipif(HAVE_SAM2, reason="sam2 is installed")
def test_cli_sam2_backend_without_sam2_is_one_line(tmp_path, capsys):
    from tomopick.cli.main import main
    from tomopick.data import Tomogram
    from tomopick.io import write_tomogram

    write_tomogram(Tomogram(np.zeros((8, 16, 16), np.float32), (10.0, 10.0, 10.0)), tmp_path / "t.mrc")
    with pytest.raises(SystemExit) as exc:
        main(["segment", str(tmp_path / "t.mrc"), "--out", str(tmp_path / "s.zarr"), "--sam2-config", "c.yaml",
              "--sam2-checkpoint", str(tmp_path / "w.pt")])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert exc.value.code == 2 and len(err) == 1 and "tomopick[sam2]" in err[0]
    assert not (tmp_path / "s.zarr").exists()
