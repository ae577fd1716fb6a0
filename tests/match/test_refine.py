"""Coarse-to-fine orientation search (:mod:`tomopick.match.refine`, ``MatchOptions.search``)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data import Tomogram
from tomopick.data.rotations import random_rotations, rotation_angle_deg
from tomopick.errors import TomopickError
from tomopick.match.correlate import match_volume, template_filter
from tomopick.match.options import MatchOptions
from tomopick.match.picking import match_tomogram
from tomopick.match.refine import LocalScorer, neighbour_table, suppress
from tomopick.match.rotations import uniform_rotations
from tomopick.match.template import prepare_template

from test_match import VOXEL, asymmetric_blob, plant


def test_neighbour_table_holds_the_fine_rotations_near_each_coarse_one():
    coarse, fine = uniform_rotations(40.0), uniform_rotations(20.0)
    table = neighbour_table(coarse, fine, 40.0)
    counts = np.array([len(t) for t in table])
    # Haar fraction of a 40° ball × the fine count, within 30 %
    d = np.radians(40.0)
    assert counts.mean() == pytest.approx(len(fine) * (d - np.sin(d)) / np.pi, rel=0.3)
    for j in (0, 7, len(coarse) - 1):
        ang = rotation_angle_deg(np.repeat(coarse[j][None], len(fine), 0), fine)
        assert set(table[j]) == set(np.flatnonzero(ang <= 40.0 + 1e-6))
        assert np.all(np.diff(ang[table[j]]) >= -1e-6)  # nearest first
    # with symmetry the distance is taken modulo the group: R and R @ S are the same neighbour
    c2_fine = uniform_rotations(20.0, "C2")
    flip = np.diag([-1.0, -1.0, 1.0])  # the C2 operation about z
    sym = neighbour_table(c2_fine[:1] @ flip, c2_fine, 5.0, "C2")
    assert 0 in sym[0]


def test_local_scorer_equals_the_exhaustive_score():
    rng = np.random.default_rng(5)
    tmpl = asymmetric_blob(13)
    vol = rng.normal(size=(24, 30, 34)).astype(np.float32)
    t = prepare_template(tmpl, VOXEL, VOXEL, invert=True)
    w = template_filter(t.box, VOXEL, tilt_range_deg=(-60, 60), spectrum=None)
    rots = random_rotations(3, rng)
    scorer = LocalScorer(vol, t, w, rots, shift=1)
    for k in range(3):
        full = match_volume(vol, t, rots[k:k + 1], w)
        for c in ([12, 15, 17], [1, 2, 30], [23, 29, 0]):
            score, idx, zyx = scorer.best(c, [k])
            box = full.score[tuple(slice(max(0, ci - 1), ci + 2) for ci in c)]
            assert idx == k
            assert score == pytest.approx(float(box.max()), abs=2e-5)
            assert full.score[tuple(zyx)] == pytest.approx(score, abs=2e-5)


def test_suppress_keeps_the_best_of_close_points():
    zyx = np.array([[0, 0, 0], [0, 0, 2], [0, 0, 10], [0, 0, 11.5]], float)
    keep = suppress(zyx, np.array([0.5, 0.9, 0.3, 0.2]), 3.0)
    assert list(keep) == [1, 2]


def test_coarse_to_fine_finds_planted_templates_at_position_and_fine_rotation():
    rng = np.random.default_rng(7)
    tmpl = asymmetric_blob()
    truth_rot = random_rotations(3, rng)
    centres = np.array([[12, 12, 12], [16, 28, 26], [12, 16, 36]])
    vol = plant((28, 40, 48), tmpl, truth_rot, centres, 6.0, rng)
    opts = MatchOptions(step_deg=12.0, coarse_step_deg=30.0, tilt_range_deg=None)
    assert opts.search_mode() == "coarse-to-fine"
    picks, info = match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 50.0, opts)
    assert info["search"] == "coarse-to-fine" and info["n_rotations"] == len(uniform_rotations(12.0))
    assert info["count"] == 3, picks.frame
    mats = picks.rotation_matrices()
    for r, c in zip(truth_rot, centres):
        d = np.linalg.norm(picks.xyz_A - c[::-1] * VOXEL, axis=1)
        j = int(np.argmin(d))
        assert d[j] <= 1.0 * VOXEL
        assert rotation_angle_deg(mats[j], r)[0] <= 12.0  # the fine step, not the coarse one
    # the noise rule counts every voxel × (fine + coarse rotations), as the exhaustive search at 12° would
    assert info["n_trials"] == info["n_voxels"] * (info["n_rotations"] + info["n_coarse_rotations"])


def test_coarse_to_fine_agrees_with_the_exhaustive_search():
    rng = np.random.default_rng(21)
    tmpl = asymmetric_blob(13)
    truth_rot = random_rotations(2, rng)
    centres = np.array([[10, 10, 10], [14, 22, 24]])
    vol = plant((24, 32, 34), tmpl, truth_rot, centres, 3.0, rng)
    tomo = Tomogram(vol, VOXEL)
    base = dict(step_deg=24.0, coarse_step_deg=48.0, tilt_range_deg=None)
    ex_picks, ex = match_tomogram(tomo, tmpl, VOXEL, "blob", 40.0, MatchOptions(search="exhaustive", **base))
    cf_picks, cf = match_tomogram(tomo, tmpl, VOXEL, "blob", 40.0, MatchOptions(search="coarse-to-fine", **base))
    assert ex["count"] == cf["count"] == 2
    for p in range(2):
        d = np.linalg.norm(cf_picks.xyz_A - ex_picks.xyz_A[p], axis=1)
        j = int(np.argmin(d))
        assert d[j] == 0.0
        # the same score and rotation (the exhaustive best lies in the neighbourhood searched)
        assert cf_picks.scores[j] == pytest.approx(ex_picks.scores[p], abs=2e-3)
        assert rotation_angle_deg(cf_picks.rotation_matrices()[j], ex_picks.rotation_matrices()[p])[0] < 1e-3
    assert cf["noise_threshold"] == pytest.approx(ex["noise_threshold"], abs=3e-3)
    assert cf["seconds_search"] < ex["seconds_search"]


def test_coarse_to_fine_keeps_false_picks_below_the_rate_on_noise():
    rng = np.random.default_rng(4)
    tmpl = asymmetric_blob(11)
    total = 0
    for _ in range(3):
        vol = rng.normal(size=(24, 32, 32)).astype(np.float32)
        _, info = match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 40.0,
                                 MatchOptions(step_deg=20.0, coarse_step_deg=40.0, tilt_range_deg=None))
        assert info["search"] == "coarse-to-fine" and info["n_refined"] >= min(info["n_candidates"], 50)
        total += info["count"]
    assert total <= 3


def test_search_option_is_checked():
    assert MatchOptions(step_deg=30.0).search_mode() == "exhaustive"
    assert MatchOptions(step_deg=12.0, search="exhaustive").search_mode() == "exhaustive"
    with pytest.raises(TomopickError, match="--search"):
        MatchOptions.make(search="fast")
    with pytest.raises(TomopickError, match="--coarse-step 10 is finer than --step 12"):
        MatchOptions.make(step_deg=12.0, coarse_step_deg=10.0, search="coarse-to-fine")
