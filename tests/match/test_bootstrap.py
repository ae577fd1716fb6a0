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


def test_hit_agreement_counts_averaged_hits_among_the_best_of_the_rematch():
    from tomopick.data import Picks
    from tomopick.prompt.bootstrap import hit_agreement

    averaged = np.array([[0.0, 0, 0], [100, 0, 0], [200, 0, 0], [300, 0, 0]])
    # the re-match: three of the four at the top (one 20 Å off), then a stronger stranger pushes the fourth out
    xyz = np.array([[1000.0, 0, 0], [0, 20, 0], [100, 0, 0], [200, 0, 0], [300, 0, 0]])
    picks = Picks.from_arrays(xyz, "p", score=np.array([0.9, 0.8, 0.7, 0.6, 0.5]))
    assert hit_agreement(averaged, picks, 30.0) == 0.75  # the 4 best: stranger + 3 of the averaged hits
    assert hit_agreement(averaged, picks, 10.0) == 0.5  # 20 Å off no longer counts
    assert hit_agreement(averaged, Picks.empty(), 30.0) == 0.0
    assert hit_agreement(np.zeros((0, 3)), picks, 30.0) == 1.0


def drift_scene():
    """Three copies of the prompt (an asymmetric blob) and three dark balls elsewhere, in noise (10 Å voxels)."""
    from test_match import plant

    from tomopick.data.rotations import random_rotations

    rng = np.random.default_rng(3)
    blob = asymmetric_blob()
    copies = np.array([[12, 12, 12], [16, 28, 26], [12, 16, 36]])
    balls = np.array([[19, 10, 24], [19, 31, 39], [8, 30, 10]])
    vol = plant((28, 40, 48), blob, random_rotations(3, rng), copies, 4.0, rng)
    for c in balls:  # dark, like the copies
        vol[c[0] - 8:c[0] + 9, c[1] - 8:c[1] + 9, c[2] - 8:c[2] + 9] -= 1.5 * ball(17)
    return vol.astype(np.float32), blob, copies, balls


def ball(box: int, radius: float = 5.5) -> np.ndarray:
    g = np.arange(box) - box // 2
    return ((g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= radius ** 2).astype(np.float32)


def test_bootstrap_keeps_the_previous_round_when_the_average_drifts(monkeypatch):
    import tomopick.prompt.bootstrap as bs
    from tomopick.data import Tomogram
    from tomopick.match.options import MatchOptions
    from tomopick.match.picking import matching_grid

    vol, blob, copies, balls = drift_scene()
    opts = MatchOptions(step_deg=30.0, tilt_range_deg=None, false_alarms=1.0)
    grid = matching_grid(Tomogram(vol, 10.0), opts)

    def near(picks, centres):
        return sum(np.linalg.norm(picks.xyz_A - c[::-1] * 10.0, axis=1).min() <= 30.0 for c in centres)

    # a bootstrap that converges: the average re-finds its own hits, round 1 is kept
    ok = bs.bootstrap_picks(grid, blob, 10.0, "blob", 60.0, opts, invert=True, rounds=1)
    assert [r["kept"] for r in ok.rounds] == [True, True] and ok.kept_round == 1
    assert ok.rounds[1]["agreement"] == 1.0 and near(ok.picks, copies) == 3
    # an average that drifted to a ball: its best hits are the balls, none of the blobs it was made of
    monkeypatch.setattr(bs, "wedge_average", lambda boxes, rots, tilt: -ball(boxes[0].shape[0]))
    drifted = bs.bootstrap_picks(grid, blob, 10.0, "blob", 60.0, opts, invert=True, rounds=2)
    assert near(drifted.round_picks[1], balls) == 3
    assert drifted.rounds[1]["agreement"] < bs.MIN_AGREEMENT and drifted.rounds[1]["kept"] is False
    assert len(drifted.rounds) == 2 and drifted.kept_round == 0  # stopped at the drift, round 2 never ran
    assert drifted.picks is drifted.round_picks[0] and near(drifted.picks, copies) == 3


def test_isolate_particle_flattens_a_neighbour_beyond_the_radius():
    from tomopick.match.template import Template, sphere_mask
    from tomopick.prompt.bootstrap import isolate_particle

    b, r, mask_r = 15, 3.0, 5.0
    rng = np.random.default_rng(1)
    vol = 0.05 * rng.normal(size=(b, b, b)).astype(np.float32) + 0.2  # background level 0.2
    vol -= ball(b, r)  # the particle (dark)
    vol[:, :, 7 + 4:7 + 6] -= 2.0  # a membrane 4-5 voxels off the centre, inside the mask
    t = Template(vol, sphere_mask(b, mask_r), mask_r)
    out = isolate_particle(t, r)
    inner = ball(b, r) > 0
    assert np.allclose(out.volume[inner], vol[inner], atol=1e-5)  # the particle untouched
    far = ~(ball(b, r + 2.0) > 0)  # beyond the cosine edge: flat at the background level
    assert np.allclose(out.volume[far], 0.2, atol=0.02)
    assert out.mask is t.mask and out.mask_radius_vox == mask_r
    # the membrane no longer dominates the template: its band is flat
    assert abs(float(out.volume[7, 7, 12] - 0.2)) < 0.02 and float(vol[7, 7, 12]) < -1.5


def test_known_kind_needs_the_prompt_label_on_most_labelled_hits():
    from tomopick.prompt.bootstrap import known_kind

    assert known_kind("thyroglobulin", ["thyroglobulin"] * 3 + ["beta-galactosidase"] * 2 + [""] * 5) == (
        "thyroglobulin", 0.6)  # unlabelled hits do not count
    assert known_kind("a", ["a", "b", "c", ""]) == (None, 1 / 3)  # scattered labels: a kind the model never saw
    assert known_kind("a", ["a", "b"]) == ("a", 0.5)
    assert known_kind("", ["a", "a"]) == (None, 0.0) and known_kind("a", ["", ""]) == (None, 0.0)


def test_class_veto_drops_hits_at_objects_of_other_classes_only():
    from tomopick.prompt.bootstrap import Classified, class_veto

    known = Classified(np.array([[10.0, 10.0, 10.0], [30.0, 5.0, 5.0]]), np.array(["a", "b"], dtype=object), 3.0)
    hits = np.array([[10.0, 12.0, 11.0], [30.0, 5.0, 7.0], [30.0, 5.0, 8.5], [20.0, 20.0, 20.0]])
    assert known.label_at(hits).tolist() == ["a", "b", "", ""]  # √5 and 2 within 3 voxels; 3.5 and far: none
    assert class_veto(known, "a")(hits).tolist() == [True, False, True, True]
    empty = Classified(np.zeros((0, 3)), np.zeros(0, dtype=object), 3.0)
    assert empty.label_at(hits).tolist() == [""] * 4


@pytest.mark.parametrize("copy_labels, vetoed", [(["blob"] * 3, True), (["a", "b", "c"], False)])
def test_bootstrap_vetoes_hits_the_classifier_calls_another_kind(copy_labels, vetoed):
    import tomopick.prompt.bootstrap as bs
    from tomopick.data import Tomogram
    from tomopick.match.options import MatchOptions
    from tomopick.match.picking import matching_grid

    vol, blob, copies, _ = drift_scene()
    opts = MatchOptions(step_deg=30.0, tilt_range_deg=None, threshold=0.05)  # low: round 0 hits more than copies
    grid = matching_grid(Tomogram(vol, 10.0), opts)
    plain = bs.bootstrap_picks(grid, blob, 10.0, "blob", 60.0, opts, invert=True, rounds=0)
    hits = plain.picks.xyz_A[np.argsort(-plain.picks.scores)][:, ::-1] / 10.0
    at_copy = np.array([np.linalg.norm(copies - h, axis=1).min() <= 3.0 for h in hits])
    assert at_copy.sum() == 3 and (~at_copy).sum() >= 5
    others = hits[~at_copy][:3]  # the classifier sees another class at the three best other hits, nothing elsewhere
    known = bs.Classified(np.concatenate([copies, others]), np.array(copy_labels + ["ball"] * 3, dtype=object), 2.0)
    out = bs.bootstrap_picks(grid, blob, 10.0, "blob", 60.0, opts, invert=True, rounds=0, classified=known,
                             reference_zyx=copies[1].astype(float))
    kept = out.picks.xyz_A[:, ::-1] / 10.0

    def found(points):
        return sum(np.linalg.norm(kept - c, axis=1).min() <= 1.0 for c in points)

    assert found(copies) == 3 and found(hits[~at_copy][3:]) == (~at_copy).sum() - 3  # unlabelled hits stay
    assert found(others) == (0 if vetoed else 3)
    assert out.rounds[0]["veto_kind"] == copy_labels[1]
    assert out.rounds[0]["veto_share"] == pytest.approx(0.5 if vetoed else 1 / 6)
    assert out.rounds[0].get("vetoed", 0) == (3 if vetoed else 0)
