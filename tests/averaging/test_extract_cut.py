"""Extraction (boundaries, binning), half-set split and the automatic score cut."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.averaging import automatic_score_cut, extract_subvolumes, split_halves


def test_extract_matches_slices_and_fills_outside_with_the_inside_mean():
    vol = np.arange(20 * 30 * 40, dtype=np.float32).reshape(20, 30, 40)
    sub = extract_subvolumes(vol, np.array([[10, 15, 20], [1.2, 15, 20]]), box=6)
    np.testing.assert_array_equal(sub.data[0], vol[7:13, 12:18, 17:23])
    assert sub.inside_fraction[0] == 1.0
    # centre at z=1: rows z=-2,-1 lie outside
    inside = vol[0:4, 12:18, 17:23]
    assert sub.inside_fraction[1] == 4 / 6
    np.testing.assert_array_equal(sub.data[1, 2:], inside)
    np.testing.assert_allclose(sub.data[1, :2], inside.mean())
    np.testing.assert_array_equal(sub.centers_zyx_vox[1], [1, 15, 20])


def test_extract_bins_by_block_means():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((32, 32, 32)).astype(np.float32)
    sub = extract_subvolumes(vol, np.array([[16, 16, 16]]), box=4, bin=2)
    # box 4 binned = 8 voxels starting at 16 - 2*2 - 1 = 11
    expected = vol[11:19, 11:19, 11:19].reshape(4, 2, 4, 2, 4, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(sub.data[0], expected, rtol=1e-6)


def test_half_sets_are_disjoint_balanced_and_seeded():
    h = split_halves(11, np.random.default_rng(5))
    assert set(np.unique(h)) == {0, 1}
    a, b = np.nonzero(h == 0)[0], np.nonzero(h == 1)[0]
    assert len(a) == 6 and len(b) == 5 and not set(a) & set(b)
    np.testing.assert_array_equal(h, split_halves(11, np.random.default_rng(5)))
    assert not np.array_equal(h, split_halves(11, np.random.default_rng(6)))


def test_cut_separates_a_mixture_and_keeps_the_good_scores():
    rng = np.random.default_rng(0)
    good = rng.normal(0.6, 0.05, 300)
    junk = rng.normal(0.25, 0.05, 150)
    cut = automatic_score_cut(np.concatenate([good, junk]))
    assert cut.rule == "mixture"
    # the cut sits half a junk-sd above the junk mean: ≈ 31 % of a Gaussian junk population stays, no good is lost
    assert cut.threshold == pytest.approx(0.25 + 0.5 * 0.05, abs=0.01)
    assert (good < cut.threshold).sum() == 0
    assert abs((junk >= cut.threshold).mean() - 0.31) < 0.08
    assert cut.n_kept == int((np.concatenate([good, junk]) >= cut.threshold).sum())


def test_cut_on_one_population_only_removes_outliers():
    rng = np.random.default_rng(1)
    s = rng.normal(0.6, 0.05, 400)
    s[:3] = 0.05  # three outliers
    cut = automatic_score_cut(s)
    assert cut.rule == "mad"
    assert cut.n_total - cut.n_kept <= 5 and not cut.keep(s)[:3].any()


def test_cut_needs_enough_scores():
    cut = automatic_score_cut(np.array([0.1, 0.5, np.nan]))
    assert cut.rule == "too_few" and cut.keep(np.array([0.1, 0.5, np.nan])).tolist() == [True, True, False]
