"""The bootstrap's wedge-aware average: copies in different orientations, each missing its own wedge, average back
to the reference with the wedge filled; re-centring removes a shifted average's offset."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data.rotations import random_rotations
from tomopick.match.template import rotate_volume
from tomopick.match.wedge import missing_wedge_weight
from tomopick.prompt.bootstrap import cut_box, recentre, wedge_average

from test_match import asymmetric_blob


def wedged(volume: np.ndarray, tilt=(-45.0, 45.0)) -> np.ndarray:
    return np.fft.irfftn(np.fft.rfftn(volume) * missing_wedge_weight(volume.shape, tilt), s=volume.shape)


def corr(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_wedge_average_fills_the_wedge():
    ref = asymmetric_blob(21)
    rots = random_rotations(12, np.random.default_rng(0))
    copies = [wedged(rotate_volume(ref, r)).astype(np.float32) for r in rots]  # each seen through the wedge
    avg = wedge_average(copies, list(rots), (-45.0, 45.0))
    single = rotate_volume(copies[0], rots[0].T)
    # the average is closer to the reference than any single wedged copy, and than a plain (unweighted) mean
    plain = np.mean([rotate_volume(c, r.T) for c, r in zip(copies, rots)], axis=0)
    assert corr(avg, ref) > 0.95
    assert corr(avg, ref) > corr(single, ref) + 0.05
    assert corr(avg, ref) > corr(plain, ref)


def test_recentre_undoes_a_shift_and_cut_box_pads_with_zeros():
    ref = asymmetric_blob(21)
    shifted = np.roll(ref, (1, -2, 1), axis=(0, 1, 2))
    assert np.array_equal(recentre(shifted, ref, max_shift=2), ref)
    vol = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    box = cut_box(vol, np.array([0.2, 3.0, 6.4]), 3)
    assert box.shape == (3, 3, 3)
    assert np.all(box[0] == 0) and box[1, 1, 1] == vol[0, 3, 6] and np.all(box[:, :, 2] == 0)


def test_contrast_filter_drops_denser_blobs_and_keeps_copies_of_the_prompt():
    from tomopick.prompt.bootstrap import contrast_filter, local_sd

    rng = np.random.default_rng(0)
    vol = rng.normal(size=(40, 60, 60)).astype(np.float32)
    g = np.arange(-4, 5)
    ball = ((g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= 9).astype(np.float32)
    copies = [(10, 10, 10), (10, 30, 30), (30, 45, 20)]
    for c in copies:  # the particle: contrast 1
        vol[c[0] - 4:c[0] + 5, c[1] - 4:c[1] + 5, c[2] - 4:c[2] + 5] -= 1.0 * ball
    dense = [(30, 15, 45), (20, 50, 50)]
    for c in dense:  # a denser look-alike: contrast 3
        vol[c[0] - 4:c[0] + 5, c[1] - 4:c[1] + 5, c[2] - 4:c[2] + 5] -= 3.0 * ball
    sd = local_sd(vol, np.array(copies + dense), 4.5)
    assert sd[:3].max() < sd[3:].min()
    accept, info = contrast_filter(vol, np.array(copies[0]), 4.5)
    assert info["background_sd"] == pytest.approx(1.0, abs=0.05)
    assert list(accept(np.array(copies + dense))) == [True, True, True, False, False]
    # a prompt cut where nothing stands out switches the filter off
    none, _ = contrast_filter(rng.normal(size=(30, 30, 30)).astype(np.float32), np.array([15, 15, 15]), 4.5)
    assert none is None
