"""The segmentation bench's helpers: the 1-voxel-tolerant Dice beside the plain one, and recipe v2's imaging draw
(deterministic per seed, inside its documented ranges)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from bench_segment import tolerant_dice  # noqa: E402
from train_membrane import VOXEL_SIZE_A, imaging_draw  # noqa: E402

from tomopick.segment import dice  # noqa: E402


def test_tolerant_dice_forgives_one_voxel_shift_only():
    truth = np.zeros((20, 20, 20), dtype=bool)
    truth[8:13] = True                     # a 5-voxel-thick sheet, like a bilayer label at 10 Å
    shifted = np.roll(truth, 1, axis=0)
    assert dice(truth, shifted) == pytest.approx(0.8)
    assert tolerant_dice(truth, shifted, 1) == pytest.approx(1.0)
    far = np.roll(truth, 3, axis=0)        # 3 voxels off: the overlap (2 planes) plus one plane of tolerance
    assert tolerant_dice(truth, far, 1) == pytest.approx(0.6)
    assert tolerant_dice(truth, np.zeros_like(truth)) == 0.0
    assert tolerant_dice(np.zeros_like(truth), np.zeros_like(truth)) == 1.0


def test_v2_imaging_draw_is_deterministic_and_in_range():
    draws = [imaging_draw(s) for s in range(1000, 1040)]
    assert imaging_draw(1000) == draws[0]
    assert {d["imaging"] for d in draws} == {"full", "fast"}
    assert sum(d["imaging"] == "full" for d in draws) >= 25
    for d in draws:
        assert 0.35 <= d["snr"] <= 8.0
        assert 40.0 <= d["tilt_max_deg"] <= 66.0 and -72.0 <= d["tilt_min_deg"] <= -34.0
        assert d["ctf_correction"] in ("phaseflip", "wiener", "none")
        assert abs(d["voxel_size_A"] / VOXEL_SIZE_A - 1) <= 0.1
