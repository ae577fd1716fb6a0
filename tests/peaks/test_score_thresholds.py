"""The blob score, the threshold policy, typed pick options and the typed checkpoint config (issue #10)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.errors import TomopickError
from tomopick.inference.options import PickOptions, default_score
from tomopick.models.checkpoint import load_checkpoint, save_checkpoint, validate_config
from tomopick.peaks import find_peaks_blocks
from tomopick.peaks.score import sphere_mean
from tomopick.peaks.thresholds import (
    DEFAULT_THRESHOLD, choose_thresholds, parse_threshold, stored_for_score, stored_threshold, valley_threshold,
)


def ball_mask(shape, centre, r):
    g = np.indices(shape)
    return ((g - np.asarray(centre)[:, None, None, None]) ** 2).sum(0) <= r * r


def test_sphere_mean_hand_computed():
    m = np.zeros((9, 9, 9), np.float32)
    m[4, 4, 4] = 1.0
    m[4, 4, 5] = 0.5
    # radius 1: the centre and its 6 face neighbours (7 voxels)
    assert sphere_mean(m, [[4, 4, 4]], 1.0)[0] == pytest.approx(1.5 / 7)
    assert sphere_mean(m, [[4, 4, 4]], 0.5)[0] == pytest.approx(1.0)          # the voxel itself
    # at a corner only the inside part counts: (0,0,0) and its 3 inside neighbours
    c = np.zeros((5, 5, 5), np.float32)
    c[0, 0, 0] = 0.8
    assert sphere_mean(c, [[0, 0, 0]], 1.0)[0] == pytest.approx(0.8 / 4)
    assert sphere_mean(c, np.zeros((0, 3)), 2.0).shape == (0,)


def test_blob_score_ranks_a_weak_particle_above_saturated_noise_peaks():
    """A particle the network paints weakly (at most 0.7, a smooth blob) against isolated saturated voxels (1.0):
    the peak score ranks the noise first; the blob score ranks the particle first by a wide margin."""
    shape = (40, 48, 48)
    d2 = ((np.indices(shape) - np.array([20, 24, 24])[:, None, None, None]) ** 2).sum(0)
    score = np.where(d2 <= 25, 0.7 * np.exp(-d2 / 18.0), 0.0).astype(np.float32)
    rng = np.random.default_rng(0)
    noise = [(5, 5, 5), (33, 40, 8), (10, 40, 40), (30, 8, 36)]
    for z, y, x in noise:
        score[z, y, x] = 1.0
        score[z, y, x + 1] = 0.9  # a two-voxel blip
    score += rng.uniform(0, 0.02, shape).astype(np.float32)
    maps = score[None]

    def read(c, region):
        return maps[(c, *region)]

    peak = find_peaks_blocks(read, maps.shape, "maxpool", threshold=0.05, radius_vox=8.0)
    blob = find_peaks_blocks(read, maps.shape, "maxpool", threshold=1e-3, radius_vox=8.0, score_radius_vox=4.0,
                             floor=0.05)
    assert len(peak) == len(blob) == 5
    particle = np.all(np.abs(blob.zyx - [20, 24, 24]) <= 1, axis=1)
    assert particle.sum() == 1
    assert blob.score[particle][0] > 0.35 and blob.score[~particle].max() < 0.05  # wide margin
    top_peak = peak.zyx[np.argmax(peak.score)]
    assert not np.all(np.abs(top_peak - [20, 24, 24]) <= 1)                    # peak score: a noise voxel wins
    # a blob threshold applies to the blob score: only the particle passes 0.2
    kept = find_peaks_blocks(read, maps.shape, "maxpool", threshold=0.2, radius_vox=8.0, score_radius_vox=4.0,
                             floor=0.05)
    assert len(kept) == 1 and np.allclose(kept.zyx[0], [20, 24, 24], atol=1)


def test_blob_scores_are_the_same_in_blocks_as_on_the_whole_map():
    shape = (48, 64, 64)
    rng = np.random.default_rng(1)
    maps = np.zeros((1, *shape), np.float32)
    centres = rng.integers(6, np.asarray(shape) - 6, size=(12, 3))
    for c in centres:
        maps[0][ball_mask(shape, c, 3)] = rng.uniform(0.3, 1.0)

    def read(c, region):
        return maps[(c, *region)]

    whole = find_peaks_blocks(read, maps.shape, "maxpool", threshold=0.2, radius_vox=5.0, score_radius_vox=2.5,
                              floor=0.05)
    blocks = find_peaks_blocks(read, maps.shape, "maxpool", threshold=0.2, radius_vox=5.0, score_radius_vox=2.5,
                               floor=0.05, block_voxels=20_000)
    assert len(whole) == len(blocks) > 5
    order_w, order_b = np.lexsort(whole.zyx.T), np.lexsort(blocks.zyx.T)
    np.testing.assert_allclose(whole.zyx[order_w], blocks.zyx[order_b])
    np.testing.assert_allclose(whole.score[order_w], blocks.score[order_b], rtol=1e-6)


def test_valley_threshold_recovers_a_known_count():
    """25 particles (blob scores 0.35–0.95) among 400 background peaks (0–0.1): the valley between them keeps
    exactly the 25, whatever their exact score scale."""
    rng = np.random.default_rng(2)
    particles = rng.uniform(0.35, 0.95, 25)
    background = rng.beta(1.2, 25, 400)  # mostly < 0.1, a tail towards 0.15
    scores = np.concatenate([particles, background])
    t = valley_threshold(scores)
    assert 0.12 <= t <= 0.3
    assert int((scores >= t).sum()) == 25
    assert valley_threshold(np.array([])) == pytest.approx(0.12)


def test_threshold_precedence_and_rules():
    names = ["apo", "ribo", "thyro"]
    blob_cfg = {"thresholds": {"apo": 0.4, "ribo": 0.3}, "score": "blob"}
    got = choose_thresholds(names, {"ribo": 0.6}, blob_cfg, "blob")
    assert [(c.value, c.rule) for c in got] == [(0.4, "checkpoint"), (0.6, "option"),
                                               (DEFAULT_THRESHOLD["blob"], "default")]
    # thresholds stored without a score are peak thresholds: not used for the blob score
    legacy = {"thresholds": {"apo": 0.999}}
    assert stored_for_score(legacy, "blob") == {} and stored_for_score(legacy, "peak") == {"apo": 0.999}
    assert [c.rule for c in choose_thresholds(names, None, legacy, "peak")] == ["checkpoint", "default", "default"]
    both = {"thresholds": {"apo": 0.999}, "thresholds_by_score": {"blob": {"apo": 0.2}, "peak": {"apo": 0.99}}}
    assert stored_for_score(both, "blob") == {"apo": 0.2} and stored_for_score(both, "peak") == {"apo": 0.99}
    assert parse_threshold(0.3, names) == {"apo": 0.3, "ribo": 0.3, "thyro": 0.3}
    assert parse_threshold({"*": 0.2, "apo": 0.5}, names) == {"apo": 0.5, "ribo": 0.2, "thyro": 0.2}
    with pytest.raises(TomopickError, match="unknown class"):
        parse_threshold({"proteasome": 0.3}, names)
    with pytest.raises(TomopickError, match=r"\(0, 1\]"):
        parse_threshold([0.2, 0.0, 0.3], names)
    assert stored_threshold({"threshold": 0.01, "tp": 3}) == 0.05          # the validation floor
    assert stored_threshold({"threshold": 0.4, "tp": 0}) == DEFAULT_THRESHOLD["blob"]
    assert stored_threshold({"threshold": 0.4, "tp": 0}, score="peak") == DEFAULT_THRESHOLD["peak"]


@pytest.mark.parametrize("values, message", [
    ({"distance_factor": -1}, "--distance -1: Input should be greater than 0"),
    ({"threshold": 1.5}, r"--threshold 1.5: .*\(0, 1\]"),
    ({"threshold": {"apo": -0.1}}, r"--threshold: .*\(0, 1\]"),
    ({"tta": 3}, "--tta 3"),
    ({"overlap": 1.0}, "--overlap 1.0: Input should be less than 1"),
    ({"roi_size": (4, 64, 64)}, "--roi: .*>= 8"),
    ({"score": "mean"}, "--score 'mean'"),
    ({"threshold_rule": "magic"}, "--threshold-rule 'magic'"),
    ({"device": "tpu"}, "--device 'tpu'"),
    ({"batch_size": 0}, "--batch-size 0"),
    ({"bogus": 1}, "bogus"),
])
def test_pick_options_reject_bad_values_naming_the_option(values, message):
    with pytest.raises(TomopickError, match=message):
        PickOptions.make(**values)


def test_pick_options_fill_defaults_from_the_checkpoint():
    sphere = {"target": {"kind": "sphere"}, "output": "softmax",
              "pick": {"peak_method": "localmax", "distance_factor": 0.6}}
    o = PickOptions().with_defaults(sphere)
    assert (o.peak_method, o.distance_factor, o.score) == ("localmax", 0.6, "blob")
    o = PickOptions(peak_method="cc", score="peak").with_defaults(sphere)
    assert (o.peak_method, o.distance_factor, o.score) == ("cc", 0.6, "peak")
    assert default_score({"target": {"kind": "gaussian"}, "output": "sigmoid"}) == "peak"
    assert PickOptions().with_defaults({}).peak_method == "maxpool"


def _config(**pick):
    return {"network": {"name": "unet", "hparams": {"channels": [4, 8], "strides": [2]}}, "in_channels": 1,
            "out_channels": 2, "output": "softmax", "classes": ["background", "apo"],
            "particles": {"name": "x", "particles": [{"name": "apo", "radius_A": 60.0, "label": 1}]},
            "voxel_size_A": 10.0, "patch_size": [16, 16, 16], "pick": pick}


@pytest.mark.parametrize("config, message", [
    (_config(thresholds={"apo": 1.5}), r"pick.thresholds: threshold of apo must be in \(0, 1\]"),
    (_config(thresholds={"ribosome": 0.3}), "pick thresholds for class\\(es\\) the model lacks: ribosome"),
    (_config(thresholds_by_score={"blob": {"apo": 0.2, "vlp": 0.2}}), "the model lacks: vlp"),
    (_config(thresholds_by_score={"peak": {"apo": 2.0}}), "must be in"),
    (_config(score="mean"), "pick.score"),
    (_config(peak_method="magic"), "pick.peak_method"),
    ({**_config(), "voxel_size_A": -1}, "voxel_size_A"),
    ({**_config(), "classes": ["background"]}, "1 classes for 2 output channels"),
    ({**_config(), "patch_size": None}, "needs patch_size"),
])
def test_checkpoint_config_rejects_bad_values(tmp_path, config, message):
    with pytest.raises(TomopickError, match=message):
        validate_config(config, tmp_path / "m.pt")
    from tomopick.models import build_model

    path = save_checkpoint(tmp_path / "m.pt", build_model("unet", 1, 2, channels=(4, 8), strides=(2,)), config)
    with pytest.raises(TomopickError, match="m.pt: checkpoint config"):
        load_checkpoint(path)


def test_a_valid_checkpoint_config_is_typed(tmp_path):
    from tomopick.models import build_model

    path = save_checkpoint(tmp_path / "ok.pt", build_model("unet", 1, 2, channels=(4, 8), strides=(2,)),
                           _config(thresholds={"apo": 0.25}, score="blob"))
    typed = load_checkpoint(path).settings
    assert typed.pick.thresholds == {"apo": 0.25} and typed.pick.score == "blob"
    assert typed.voxel_size_A == 10.0 and typed.patch_size == (16, 16, 16)
