"""Template matching: a planted template is found at the right place and orientation; the false-alarm threshold
gives the expected rate on pure noise."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from tomopick.data import Tomogram
from tomopick.data.rotations import random_rotations, rotation_angle_deg
from tomopick.match.correlate import match_volume, template_filter
from tomopick.match.options import MatchOptions
from tomopick.match.picking import match_tomogram
from tomopick.match.rotations import covering_radius_deg, uniform_rotations
from tomopick.match.stats import expected_exceedances, false_alarm_threshold
from tomopick.match.template import prepare_template, rotate_volume

VOXEL = 10.0


def asymmetric_blob(box: int = 17) -> np.ndarray:
    """Four balls of different sizes at non-symmetric places (no rotational symmetry), density 1, centred at
    box // 2 (odd box: the geometric centre)."""
    g = np.arange(box) - box // 2
    z, y, x = np.meshgrid(g, g, g, indexing="ij")
    out = np.zeros((box,) * 3, np.float32)
    for (cx, cy, cz), r in (((4.0, 0, 0), 2.5), ((-3.5, 0, 0), 1.5), ((0, 3.0, 0), 2.0), ((0, 0, 3.0), 1.2)):
        out += 1.0 / (1.0 + np.exp(np.sqrt((x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2) - r) * 2.0)
    return out


def plant(shape, template, rotations, centres_zyx, amplitude, rng):
    vol = rng.normal(size=shape).astype(np.float32)
    b = template.shape[0]
    h = b // 2
    for r, c in zip(rotations, centres_zyx):
        box = rotate_volume(template, r)
        sl = tuple(slice(ci - h, ci - h + b) for ci in c)
        vol[sl] -= amplitude * box  # protein dark
    return vol


def test_planted_template_found_at_position_and_rotation():
    rng = np.random.default_rng(7)
    tmpl = asymmetric_blob()
    truth_rot = random_rotations(3, rng)
    centres = np.array([[12, 12, 12], [16, 28, 26], [12, 16, 36]])
    vol = plant((28, 40, 48), tmpl, truth_rot, centres, 3.0, rng)
    step = 30.0
    opts = MatchOptions(step_deg=step, tilt_range_deg=None, false_alarms=1.0)
    picks, info = match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 50.0, opts)
    assert info["count"] == 3, picks.frame
    found = picks.xyz_A
    mats = picks.rotation_matrices()
    for r, c in zip(truth_rot, centres):
        d = np.linalg.norm(found - c[::-1] * VOXEL, axis=1)
        j = int(np.argmin(d))
        assert d[j] <= 1.0 * VOXEL  # within one voxel
        assert rotation_angle_deg(mats[j], r)[0] <= step  # within the angular step
    # the threshold is the printed false-alarm rule
    assert info["threshold"] == pytest.approx(false_alarm_threshold(info["cc_mean"], info["cc_std"],
                                                                    info["n_trials"], 1.0))
    assert info["threshold_rule"].startswith("false-alarm")


def test_wedge_weighted_template_is_found_in_wedged_data():
    rng = np.random.default_rng(3)
    tmpl = asymmetric_blob()
    rot = random_rotations(1, rng)
    vol = plant((32, 40, 40), tmpl, rot, [[16, 20, 20]], 3.0, rng)
    # apply a ±50° wedge to the data (the simulator's convention)
    from tomopick.match.wedge import missing_wedge_weight

    vol = np.fft.irfftn(np.fft.rfftn(vol) * missing_wedge_weight(vol.shape, (-50, 50)), s=vol.shape)
    rots = np.concatenate([rot, random_rotations(20, rng)])
    grid_opts = MatchOptions(tilt_range_deg=(-50, 50), whiten=False)
    t = prepare_template(tmpl, VOXEL, VOXEL, invert=True)
    w_wedge = template_filter(t.box, VOXEL, tilt_range_deg=(-50, 50), spectrum=None)
    w_none = template_filter(t.box, VOXEL, tilt_range_deg=None, spectrum=None)
    v = ((vol - vol.mean()) / vol.std()).astype(np.float32)
    with_wedge = match_volume(v, t, rots, w_wedge)
    without = match_volume(v, t, rots, w_none)
    peak = np.array(np.unravel_index(np.argmax(with_wedge.score), v.shape))
    assert np.abs(peak - [16, 20, 20]).max() <= 1  # the wedge elongates the particle along z
    assert with_wedge.rotation_index[tuple(peak)] == 0
    # the wedge-weighted template correlates better with wedged data
    assert with_wedge.score.max() > without.score.max() + 0.02
    assert grid_opts.tilt_range_deg == (-50.0, 50.0)


def test_tiles_give_the_same_scores_as_one_tile():
    rng = np.random.default_rng(5)
    tmpl = asymmetric_blob(13)
    vol = rng.normal(size=(30, 44, 50)).astype(np.float32)
    t = prepare_template(tmpl, VOXEL, VOXEL, invert=True)
    w = template_filter(t.box, VOXEL, tilt_range_deg=(-60, 60), spectrum=None)
    rots = random_rotations(4, rng)
    one = match_volume(vol, t, rots, w)
    tiled = match_volume(vol, t, rots, w, tile_voxels=28 ** 3)
    np.testing.assert_allclose(tiled.score, one.score, atol=2e-5)
    assert np.array_equal(tiled.rotation_index, one.rotation_index)
    assert tiled.cc_std == pytest.approx(one.cc_std, rel=1e-5)


def test_local_normalisation_makes_scores_independent_of_noise_level():
    # thin ice (noise 1) and thick ice (noise 3) side by side: background scores have the same spread, and a
    # particle scaled with its surroundings (a gain change) scores the same
    rng = np.random.default_rng(11)
    tmpl = asymmetric_blob()
    rot = random_rotations(1, rng)
    left = plant((32, 40, 40), tmpl, rot, [[16, 20, 20]], 3.0, rng)
    vol = np.concatenate([left, 3.0 * left], axis=2)  # the same particle and noise, 3x the gain
    t = prepare_template(tmpl, VOXEL, VOXEL, invert=True)
    w = template_filter(t.box, VOXEL, tilt_range_deg=None, spectrum=None)
    res = match_volume(vol / vol.std(), t, rot, w)
    a, b = res.score[16, 20, 20], res.score[16, 20, 60]
    assert a > 0.3 and abs(a - b) < 0.02 * a
    thin, thick = res.score[:, :, 2:30], res.score[:, :, 50:78]
    thin, thick = thin[np.abs(thin) < 0.2], thick[np.abs(thick) < 0.2]  # background voxels
    assert float(thick.std()) == pytest.approx(float(thin.std()), rel=0.1)


def test_false_alarm_threshold_rate_on_pure_noise():
    # one rotation: the score map is the cc map, so the fraction of voxels above mu + sigma * isf(p) is p
    rng = np.random.default_rng(2)
    vol = rng.normal(size=(48, 64, 64)).astype(np.float32)
    t = prepare_template(asymmetric_blob(11), VOXEL, VOXEL, invert=True)
    w = template_filter(t.box, VOXEL, tilt_range_deg=None, spectrum=None)
    res = match_volume(vol, t, np.eye(3)[None], w)
    n = res.n_voxels
    assert n == vol.size and abs(res.cc_mean) < 0.01
    for p in (0.05, 0.01, 0.001):
        thr = false_alarm_threshold(res.cc_mean, res.cc_std, n, p * n)
        rate = float((res.score > thr).mean())
        assert rate == pytest.approx(p, rel=0.35), (p, rate)
        assert expected_exceedances(thr, res.cc_mean, res.cc_std, n) == pytest.approx(p * n)
    assert false_alarm_threshold(0.0, 1.0, 10 ** 6, 1.0) == pytest.approx(norm.isf(1e-6))


def test_false_alarm_threshold_keeps_false_picks_below_the_rate_on_noise():
    # full search on pure noise: peaks above the 1-per-tomogram threshold, summed over 4 volumes, at most a few
    rng = np.random.default_rng(4)
    tmpl = asymmetric_blob(11)
    total = 0
    for _ in range(4):
        vol = rng.normal(size=(24, 32, 32)).astype(np.float32)
        picks, info = match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 40.0,
                                     MatchOptions(step_deg=40.0, tilt_range_deg=None, false_alarms=1.0))
        total += info["count"]
        assert info["n_trials"] == vol.size * info["n_rotations"]
    assert total <= 4  # expectation ≤ 1 per volume (the trial count is conservative)


def test_covering_of_the_search_set_is_what_the_picks_rely_on():
    assert covering_radius_deg(uniform_rotations(30.0), 5000) <= 33.0


def test_peak_tail_threshold_matches_a_gumbel_background_and_ignores_particles():
    from tomopick.match.stats import peak_tail_threshold

    rng = np.random.default_rng(9)
    for fa in (20.0, 200.0):  # summed over 5 tomograms' worth of peaks: 5 × FA expected above the thresholds
        total = 0
        for _ in range(5):
            background = rng.gumbel(0.1, 0.01, size=20000)
            total += int((background > peak_tail_threshold(background, fa)).sum())
        assert total == pytest.approx(5 * fa, rel=0.3)
    with_particles = np.concatenate([background, np.full(100, 0.5)])  # 100 strong particles in the tail
    assert peak_tail_threshold(with_particles, 20.0) == pytest.approx(peak_tail_threshold(background, 20.0), abs=2e-3)
    assert peak_tail_threshold(background[:10], 1.0) is None  # too few peaks to fit


def test_gap_threshold_splits_two_clear_groups_only():
    from tomopick.match.stats import gap_threshold

    rng = np.random.default_rng(10)
    lookalikes = rng.normal(0.14, 0.01, 150)
    particles = rng.normal(0.30, 0.02, 60)
    t = gap_threshold(np.concatenate([lookalikes, particles]))
    assert t is not None and lookalikes.max() < t < particles.min()
    assert gap_threshold(rng.normal(0.2, 0.03, 300)) is None  # one group: no gap
    assert gap_threshold(np.array([0.2, 0.3])) is None  # too few peaks


def test_masked_search_takes_background_statistics_from_the_whole_tile():
    """A search restricted to small regions around the particles (``--mask-model``) keeps the background moments
    of the unrestricted search (they are measured over the searched tiles, not inside the restriction, where most
    voxels lie on particles), skips the peak-tail rule, and still finds every planted copy."""
    from tomopick.match.correlate import match_volume
    from tomopick.match.picking import Grid, tail_applies

    rng = np.random.default_rng(11)
    tmpl = asymmetric_blob(13)
    centres = [(12, 14, 14), (12, 14, 40), (12, 40, 26)]
    vol = plant((26, 56, 56), tmpl, random_rotations(3, rng), centres, 1.2, rng)
    t = prepare_template(tmpl, VOXEL, VOXEL, invert=True)
    w = template_filter(t.box, VOXEL, tilt_range_deg=None, spectrum=None)
    rots = random_rotations(6, rng)
    mask = np.zeros(vol.shape, dtype=bool)
    for c in centres:
        mask[tuple(slice(ci - 3, ci + 4) for ci in c)] = True
    whole = match_volume(vol, t, rots, w)
    inside = match_volume(vol, t, rots, w, search_mask=mask)  # the old behaviour: moments inside the mask
    masked = match_volume(vol, t, rots, w, search_mask=mask, stats_mask=None)
    assert masked.cc_std == pytest.approx(whole.cc_std, rel=1e-6)
    assert masked.cc_mean == pytest.approx(whole.cc_mean, abs=1e-7)
    assert inside.cc_std > 1.1 * whole.cc_std  # particle voxels inflate the "background" spread
    assert masked.n_voxels == inside.n_voxels == int(mask.sum())
    np.testing.assert_allclose(masked.score[mask], whole.score[mask], atol=1e-6)
    grid = Grid(volume=vol, voxel_A=np.full(3, VOXEL), spectrum=None, factors=None)
    assert not tail_applies(masked, grid) and tail_applies(whole, grid)
    picks, info = match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 40.0,
                                 MatchOptions(step_deg=30.0, tilt_range_deg=None), mask=mask)
    assert info["tail_threshold"] is None and "peak tail" not in info["threshold_rule"]
    assert info["cc_std"] == pytest.approx(
        match_tomogram(Tomogram(vol, VOXEL), tmpl, VOXEL, "blob", 40.0,
                       MatchOptions(step_deg=30.0, tilt_range_deg=None))[1]["cc_std"], rel=1e-6)
    found = np.rint(picks.xyz_A[:, ::-1] / VOXEL).astype(int)
    for c in centres:
        assert np.min(np.abs(found - np.array(c)).max(axis=1)) <= 1
