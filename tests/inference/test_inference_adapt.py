"""Test-time batch-norm adaptation (AdaBN): statistics measured on the tomogram, blended, on a copy."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomopick.errors import TomopickError
from tomopick.inference.adapt import AdaptSettings, adapt_batchnorm, has_batchnorm, window_starts
from tomopick.inference.normalize import RobustStats
from tomopick.inference.options import PickOptions


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.BatchNorm3d(2))
    with torch.no_grad():
        net[0].weight[:] = torch.tensor([2.0, -0.5]).view(2, 1, 1, 1, 1)
        net[0].bias[:] = torch.tensor([1.0, 0.25])
        net[1].running_mean[:] = torch.tensor([10.0, 20.0])
        net[1].running_var[:] = torch.tensor([4.0, 9.0])
    return net.eval()


@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_statistics_are_the_tomograms_blended_with_the_trained(strength):
    rng = np.random.default_rng(1)
    vol = (3.0 + 1.5 * rng.standard_normal((16, 32, 32))).astype(np.float32)
    net = _net()
    # one window covering the whole volume, identity normalisation: the BN input is conv(vol) exactly
    adapted, info = adapt_batchnorm(net, vol, RobustStats(0.0, 1.0, 1), {"clip": 100.0},
                                    settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32), min_correlation_gain=0, strength=strength),
                                    divisor=1)
    x = vol.astype(np.float64)
    feats = [2.0 * x + 1.0, -0.5 * x + 0.25]
    mean = np.array([f.mean() for f in feats])
    var = np.array([f.var(ddof=1) for f in feats])  # torch keeps the unbiased variance
    bn = adapted[1]
    np.testing.assert_allclose(bn.running_mean.numpy(), strength * mean + (1 - strength) * np.array([10.0, 20.0]),
                               rtol=1e-4)
    np.testing.assert_allclose(bn.running_var.numpy(), strength * var + (1 - strength) * np.array([4.0, 9.0]),
                               rtol=1e-3)
    assert info["adapted_layers"] == 1 and not adapted.training
    # the loaded network is untouched and still in eval mode
    np.testing.assert_array_equal(net[1].running_mean.numpy(), [10.0, 20.0])
    assert not net.training and bn.momentum == net[1].momentum


def test_adapted_features_are_standardised_on_the_tomogram():
    vol = (7.0 + 3.0 * np.random.default_rng(2).standard_normal((16, 32, 32))).astype(np.float32)
    adapted, _ = adapt_batchnorm(_net(), vol, RobustStats(0.0, 1.0, 1), {"clip": 100.0},
                                 settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32), min_correlation_gain=0), divisor=1)
    with torch.no_grad():
        out = adapted(torch.from_numpy(vol)[None, None]).numpy()
    assert abs(out.mean()) < 1e-3 and abs(out.std() - 1.0) < 1e-2


def test_no_batchnorm_or_zero_strength_returns_the_same_network():
    plain = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 1), torch.nn.InstanceNorm3d(2))
    assert not has_batchnorm(plain)
    vol = np.zeros((8, 8, 8), np.float32)
    assert adapt_batchnorm(plain, vol, RobustStats(0.0, 1.0, 1))[0] is plain
    net = _net()
    assert adapt_batchnorm(net, vol, RobustStats(0.0, 1.0, 1), settings=AdaptSettings(strength=0.0))[0] is net


def test_windows_stay_inside_the_volume_and_the_slab():
    rng = np.random.default_rng(0)
    starts = window_starts((100, 60, 50), (32, 64, 40), 50, rng, z_range=(20, 70))
    for z, y, x in starts:
        assert 20 <= z <= 70 - 32 and y == 0 and 0 <= x <= 10
    assert starts == window_starts((100, 60, 50), (32, 64, 40), 50, np.random.default_rng(0), z_range=(20, 70))


def test_adapt_norm_option_is_checked_and_defaults_from_the_checkpoint():
    with pytest.raises(TomopickError, match="--adapt-norm 1.5"):
        PickOptions.make(adapt_norm=1.5)
    assert PickOptions().with_defaults({"pick": {"adapt_norm": 0.75}}).adapt_norm == 0.75
    assert PickOptions(adapt_norm=0.0).with_defaults({"pick": {"adapt_norm": 0.75}}).adapt_norm == 0.0
    assert PickOptions().with_defaults({}).adapt_norm == 0.0


def test_relative_rule_leaves_a_reference_like_tomogram_as_trained_and_moves_by_the_difference():
    from tomopick.inference.adapt import measure_batchnorm, reference_statistics

    rng = np.random.default_rng(3)
    vol = (3.0 + 1.5 * rng.standard_normal((16, 32, 32))).astype(np.float32)
    net = _net()
    kw = dict(settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32), min_correlation_gain=0), divisor=1)
    means, variances, _ = measure_batchnorm(net, vol, RobustStats(0.0, 1.0, 1), {"clip": 100.0}, **kw)
    reference = reference_statistics([(means, variances)])
    same, info = adapt_batchnorm(net, vol, RobustStats(0.0, 1.0, 1), {"clip": 100.0}, reference=reference, **kw)
    np.testing.assert_allclose(same[1].running_mean.numpy(), [10.0, 20.0], rtol=1e-5)
    np.testing.assert_allclose(same[1].running_var.numpy(), [4.0, 9.0], rtol=1e-4)
    assert info["rule"] == "relative to the stored reference"
    # the same volume brighter and with twice the spread: conv features (w·x + b) move by w·Δmean, variance × 4
    other = (1.0 + 3.0 + 2.0 * (vol - 3.0)).astype(np.float32)
    shift = float(other.astype(np.float64).mean() - vol.astype(np.float64).mean())
    moved, _ = adapt_batchnorm(net, other, RobustStats(0.0, 1.0, 1), {"clip": 100.0}, reference=reference, **kw)
    np.testing.assert_allclose(moved[1].running_mean.numpy(), [10.0 + 2.0 * shift, 20.0 - 0.5 * shift], rtol=1e-4)
    np.testing.assert_allclose(moved[1].running_var.numpy(), [4.0 * 4.0, 9.0 * 4.0], rtol=1e-3)
    # a reference for another network (layer count or channels) is ignored: plain AdaBN
    _, plain = adapt_batchnorm(net, vol, RobustStats(0.0, 1.0, 1), {"clip": 100.0},
                               reference={"means": [[0.0]], "variances": [[1.0]]}, **kw)
    assert plain["rule"] == "AdaBN"


def test_correlation_gain_is_one_for_white_noise_and_large_for_structure():
    from scipy.ndimage import gaussian_filter

    from tomopick.inference.adapt import correlation_gain

    rng = np.random.default_rng(4)
    white = rng.standard_normal((32, 64, 64)).astype(np.float32)
    assert correlation_gain(white) == pytest.approx(1.0, abs=0.08)
    # constant 4³ blocks aligned with nothing: a box mean keeps most of the variance (gain near 4³ · 0.3–0.5)
    blocks = np.kron(rng.standard_normal((8, 16, 16)), np.ones((4, 4, 4))).astype(np.float32)
    assert correlation_gain(blocks) > 15.0
    assert correlation_gain(np.zeros((8, 8, 8), np.float32)) == 0.0
    smooth = gaussian_filter(white, 2.0)
    assert correlation_gain(smooth) > 20.0


def test_uncorrelated_noise_is_not_adapted_and_says_why():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(5)
    white = (3.0 + 1.5 * rng.standard_normal((16, 32, 32))).astype(np.float32)
    net = _net()
    settings = AdaptSettings(windows=2, window_zyx=(16, 32, 32))
    same, info = adapt_batchnorm(net, white, RobustStats(0.0, 1.0, 1), {"clip": 100.0}, settings=settings,
                                 divisor=1)
    assert same is net and info["adapted_layers"] == 0
    assert info["correlation_gain"] == pytest.approx(1.0, abs=0.15) and "uncorrelated noise" in info["skipped"]
    # the same noise with structure wider than a voxel (a tomogram-like volume) is adapted
    textured = (3.0 + 10.0 * gaussian_filter(white - 3.0, 1.5)).astype(np.float32)
    adapted, info = adapt_batchnorm(net, textured, RobustStats(0.0, 1.0, 1), {"clip": 100.0}, settings=settings,
                                    divisor=1)
    assert info["adapted_layers"] == 1 and info["correlation_gain"] > 5.0 and adapted is not net

    from tomopick.workflows.pick import describe_thresholds

    lines = describe_thresholds({"run": "TS_1", "adapt_norm": {"adapted_layers": 0, "skipped": "why"}})
    assert lines == ["  TS_1: batch norm not adapted: why"]
