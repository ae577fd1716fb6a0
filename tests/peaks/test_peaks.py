"""Peak extraction on synthetic score maps with known maxima."""

import numpy as np
import pytest

from tomopick.peaks import (
    METHODS, Peaks, apply_mask, connected_components, find_peaks, local_maxima, maxpool_nms, mp_nms, suppress_close,
)

CENTRES = np.array([[10, 12, 14], [10, 30, 30], [25, 12, 30]])


def blobs(shape=(36, 44, 44), centres=CENTRES, sigma=2.0, heights=(0.9, 0.8, 0.7)):
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    out = np.zeros(shape, dtype=np.float32)
    for (z, y, x), h in zip(centres, heights):
        out = np.maximum(out, h * np.exp(-((zz - z) ** 2 + (yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2)))
    return out


@pytest.mark.parametrize("method", METHODS)
def test_each_method_finds_the_centres(method):
    score = blobs()
    peaks = find_peaks(score, method, threshold=0.3, radius_vox=4)
    assert len(peaks) == 3
    got = peaks.zyx[np.argsort(peaks.zyx[:, 0] * 1e4 + peaks.zyx[:, 1] * 100 + peaks.zyx[:, 2])]
    np.testing.assert_allclose(got, CENTRES, atol=0.51)
    assert np.all(peaks.channel == 0)


def test_maxpool_scores_are_the_peak_values_and_threshold_filters():
    score = blobs()
    peaks = maxpool_nms(score, threshold=0.75, min_distance_vox=3)
    assert len(peaks) == 2
    np.testing.assert_allclose(np.sort(peaks.score), [0.8, 0.9], rtol=1e-6)


def test_multichannel_per_class_thresholds():
    a = blobs()
    b = blobs(centres=CENTRES[:1], heights=(0.6,))
    stack = np.stack([a, b])
    peaks = maxpool_nms(stack, threshold=[0.85, 0.5], min_distance_vox=[3, 3])
    assert sorted(zip(peaks.channel.tolist(), peaks.score.round(3).tolist())) == [(0, 0.9), (1, 0.6)]


def test_plateau_gives_one_peak():
    score = np.zeros((9, 9, 9), dtype=np.float32)
    score[3:6, 3:6, 3:6] = 1.0
    peaks = maxpool_nms(score, 0.5, 3)
    assert len(peaks) == 1
    assert np.all(np.abs(peaks.zyx - 4) <= 1)


def test_suppress_close_keeps_highest():
    p = Peaks.make([[0, 0, 0], [0, 0, 2], [0, 0, 5], [0, 0, 6]], [0.5, 0.9, 0.4, 0.3], [0, 0, 0, 1])
    kept = suppress_close(p, 3)
    assert sorted(map(tuple, kept.zyx.tolist())) == [(0, 0, 2), (0, 0, 5), (0, 0, 6)]


def test_cc_size_filter_and_mean_score():
    score = np.zeros((20, 20, 20), dtype=np.float32)
    score[2:5, 2:5, 2:5] = 0.8  # 27 voxels
    score[10, 10, 10] = 0.9  # 1 voxel: dust
    score[12:16, 12:16, 12:16] = 0.6  # 64 voxels
    peaks = connected_components(score, 0.5, min_size_vox=5, max_size_vox=40)
    assert len(peaks) == 1
    np.testing.assert_allclose(peaks.zyx[0], [3, 3, 3])
    assert peaks.score[0] == pytest.approx(0.8)


def test_mpnms_on_binary_spheres():
    shape = (40, 40, 40)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    score = np.zeros(shape, dtype=np.float32)
    for c in ([12, 12, 12], [27, 26, 25]):
        score[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= 16] = 0.95
    peaks = mp_nms(score, threshold=0.5, diameter_vox=8)
    assert len(peaks) == 2
    got = peaks.zyx[np.argsort(peaks.zyx[:, 0])]
    np.testing.assert_allclose(got, [[12, 12, 12], [27, 26, 25]], atol=1.0)
    assert np.all((peaks.score > 0.1) & (peaks.score <= 1.0))


def test_local_maxima_min_distance():
    score = blobs(centres=np.array([[10, 10, 10], [10, 10, 13]]), heights=(0.9, 0.8), sigma=1.0)
    assert len(local_maxima(score, 0.3, 2)) == 2
    assert len(local_maxima(score, 0.3, 4)) == 1


def test_mask_and_empty_inputs():
    score = blobs()
    mask = np.zeros(score.shape, dtype=bool)
    mask[:, :, :20] = True
    peaks = find_peaks(score, "maxpool", threshold=0.3, radius_vox=4, mask=mask)
    assert len(peaks) == 1 and peaks.zyx[0].tolist() == [10, 12, 14]
    for method in METHODS:
        assert len(find_peaks(np.zeros((8, 8, 8), np.float32), method, threshold=0.5, radius_vox=2)) == 0
        assert len(find_peaks(np.full((8, 8, 8), 0.2, np.float32), method, threshold=0.5, radius_vox=2)) == 0
    assert len(apply_mask(Peaks.empty(), mask)) == 0
    with pytest.raises(ValueError):
        find_peaks(score, "nope")


@pytest.mark.parametrize("kind", ["max", "mean"])
def test_cpu_pooling_matches_torch_pooling(rng, kind):
    import torch

    from tomopick.peaks.core import _pool_separable, _pool_torch

    t = torch.from_numpy(rng.random((11, 13, 17), dtype=np.float32))
    for kernel in (3, 7):
        np.testing.assert_allclose(_pool_separable(t, kernel, kind).numpy(), _pool_torch(t, kernel, kind).numpy(),
                                   rtol=1e-5, atol=1e-6)


@pytest.mark.gpu
def test_maxpool_nms_on_gpu_matches_cpu():
    score = blobs()
    cpu = maxpool_nms(score, 0.3, 3)
    gpu = maxpool_nms(score, 0.3, 3, device="cuda")
    np.testing.assert_allclose(gpu.zyx, cpu.zyx)
    np.testing.assert_allclose(gpu.score, cpu.score, rtol=1e-6)


def test_saturated_plateaus_become_one_peak_each():
    score = np.zeros((10, 30, 40), dtype=np.float32)
    score[2:8, 5:25, 3:13] = 1.0  # saturated (as float16 scores near 1 are): thousands of equal maxima
    score[2:8, 5:25, 25:37] = np.float16(0.7)
    peaks = maxpool_nms(score, 0.5, 3)
    assert len(peaks) == 2
    np.testing.assert_allclose(peaks.zyx, [[4.5, 14.5, 7.5], [4.5, 14.5, 30.5]])
    np.testing.assert_allclose(peaks.score, [1.0, np.float16(0.7)])


# -- plateaus, inclusive thresholds, saturated scores (issue #18) ---------------------------------------------
def cube_plateau(shape=(15, 15, 15), lo=6, size=3, value=1.0):
    score = np.zeros(shape, dtype=np.float32)
    score[lo:lo + size, lo:lo + size, lo:lo + size] = value
    return score


@pytest.mark.parametrize("threshold", [1.0, 0.9])
def test_localmax_plateau_is_one_peak_at_its_centre_threshold_inclusive(threshold):
    peaks = local_maxima(cube_plateau(), threshold, 3)
    assert len(peaks) == 1
    np.testing.assert_allclose(peaks.zyx, [[7, 7, 7]])
    assert peaks.score.tolist() == [1.0]
    via = find_peaks(cube_plateau(), "localmax", threshold=threshold, radius_vox=5)
    np.testing.assert_allclose(via.zyx, [[7, 7, 7]])
    # an even plateau: its centroid, half-way between voxels
    even = local_maxima(cube_plateau(size=4), threshold, 3)
    np.testing.assert_allclose(even.zyx, [[7.5, 7.5, 7.5]])


def test_localmax_single_voxel_threshold_is_inclusive():
    score = np.zeros((9, 9, 9), np.float32)
    score[4, 4, 4] = 1.0
    assert len(local_maxima(score, 1.0, 2)) == 1
    assert len(local_maxima(score, np.nextafter(np.float32(1.0), np.float32(2.0)), 2)) == 0


def test_localmax_plateau_on_a_slope_is_not_a_peak():
    """Equal voxels that continue into a higher voxel are a flank: no peak there, only at the top."""
    score = np.zeros((9, 9, 21), np.float32)
    score[4, 4, 2:10] = 0.6   # a ridge of equal values ...
    score[4, 4, 10] = 0.9     # ... that rises to a single top
    peaks = local_maxima(score, 0.5, 1)
    np.testing.assert_allclose(peaks.zyx, [[4, 4, 10]])
    assert peaks.score.tolist() == [pytest.approx(0.9)]


def test_localmax_subvoxel_centroid():
    score = np.zeros((11, 11, 11), np.float32)
    score[5, 5, 5] = 1.0
    score[5, 5, 6] = 0.5
    score[5, 4, 5] = 0.25
    exact = local_maxima(score, 0.5, 2)
    np.testing.assert_allclose(exact.zyx, [[5, 5, 5]])
    sub = local_maxima(score, 0.5, 2, subvoxel=True)
    # weighted centroid of the 3×3×3 neighbourhood: x = (5·1 + 6·0.5 + 5·0.25) / 1.75, y = (5·1.5 + 4·0.25) / 1.75
    np.testing.assert_allclose(sub.zyx, [[5, (5 * 1.5 + 4 * 0.25) / 1.75, (5 * 1.25 + 6 * 0.5) / 1.75]], atol=1e-9)
    assert sub.score.tolist() == [1.0]
    sub_fp = find_peaks(score, "localmax", threshold=0.5, radius_vox=2, subvoxel=True)
    np.testing.assert_allclose(sub_fp.zyx, sub.zyx)
    # at a border only the voxels inside count; a plateau keeps its centroid
    edge = np.zeros((5, 5, 5), np.float32)
    edge[0, 0, 0], edge[0, 0, 1] = 1.0, 0.5
    np.testing.assert_allclose(local_maxima(edge, 0.5, 1, subvoxel=True).zyx, [[0, 0, 1 / 3]])
    np.testing.assert_allclose(local_maxima(cube_plateau(size=4), 0.5, 3, subvoxel=True).zyx, [[7.5, 7.5, 7.5]])


def test_localmax_subvoxel_recovers_an_off_grid_gaussian_centre():
    centre = np.array([10.3, 11.6, 12.45])
    zz, yy, xx = np.meshgrid(*[np.arange(24)] * 3, indexing="ij")
    score = np.exp(-((zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2) / (2 * 0.7**2))
    grid = local_maxima(score.astype(np.float32), 0.3, 3)
    sub = local_maxima(score.astype(np.float32), 0.3, 3, subvoxel=True)
    assert len(grid) == len(sub) == 1
    np.testing.assert_allclose(grid.zyx[0], [10, 12, 12])
    assert np.linalg.norm(sub.zyx[0] - centre) < 0.5 * np.linalg.norm(grid.zyx[0] - centre)


def saturated_softmax(seed: int, shape=(40, 64, 64), n=10, radius=5.0, noise=1.0):
    """A class-probability map as a trained network gives it in float16: blobs saturated at exactly 1.0 in the
    middle, float16 steps below 1 around them, logit noise everywhere."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(*[np.arange(s) for s in shape], indexing="ij")
    centres: list[np.ndarray] = []
    while len(centres) < n:
        c = rng.uniform([radius + 2] * 3, np.asarray(shape) - radius - 2)
        if all(np.linalg.norm(c - o) > 3 * radius for o in centres):
            centres.append(c)
    logit = np.full(shape, -12.0)
    for c in centres:
        dist = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        logit = np.maximum(logit, 14 * (1 - dist / radius))
    logit += rng.normal(0, noise, shape)
    return (1 / (1 + np.exp(-logit))).astype(np.float16).astype(np.float32), np.asarray(centres)


@pytest.mark.parametrize("seed", [0, 2, 4])
@pytest.mark.parametrize("threshold", [0.5, 0.999, 1.0])
def test_localmax_agrees_with_maxpool_on_saturated_scores(seed, threshold):
    from scipy.optimize import linear_sum_assignment

    score, centres = saturated_softmax(seed)
    assert (score == 1.0).sum() > 300 and np.unique(score[score > 0.99]).size > 10  # plateaus and float16 steps
    maxpool = find_peaks(score, "maxpool", threshold=threshold, radius_vox=5)
    local = find_peaks(score, "localmax", threshold=threshold, radius_vox=5)
    assert len(maxpool) == len(local) == len(centres) == 10
    dist = np.linalg.norm(maxpool.zyx[:, None] - local.zyx[None], axis=-1)
    rows, cols = linear_sum_assignment(dist)
    assert dist[rows, cols].max() <= 1.0
    # and both sit on the blobs
    to_truth = np.linalg.norm(local.zyx[:, None] - centres[None], axis=-1)
    assert to_truth.min(axis=1).max() < 2.0


@pytest.mark.parametrize("threshold", [1.0, 0.9])
def test_mpnms_finds_a_saturated_plateau(threshold):
    peaks = mp_nms(cube_plateau(), threshold, diameter_vox=10)
    assert len(peaks) == 1
    np.testing.assert_allclose(peaks.zyx, [[7, 7, 7]])
    for radius in (1.5, 3, 5):
        via = find_peaks(cube_plateau(), "mpnms", threshold=threshold, radius_vox=radius)
        assert len(via) == 1 and np.allclose(via.zyx, [[7, 7, 7]])
    big = mp_nms(cube_plateau((30, 30, 30), 5, 16), threshold, diameter_vox=6)  # smoothed occupancy: a plateau
    np.testing.assert_allclose(big.zyx, [[12.5, 12.5, 12.5]])
    assert big.score.tolist() == [1.0]


def test_mpnms_minimum_occupancy_scales_with_the_particle():
    from tomopick.peaks.core import particle_occupancy

    # exact sums of the smoothing kernel over a ball (checked against the pooled map itself)
    assert particle_occupancy(10) == pytest.approx(0.6063017, abs=1e-6)
    assert particle_occupancy(3) == pytest.approx(0.10784, abs=1e-6)
    ball = np.zeros((40, 40, 40), np.float32)
    zz, yy, xx = np.meshgrid(*[np.arange(40)] * 3, indexing="ij")
    ball[(zz - 20) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 25] = 1.0
    assert mp_nms(ball, 0.5, 10).score.tolist() == [pytest.approx(particle_occupancy(10), abs=1e-6)]
    dust = np.zeros((15, 15, 15), np.float32)
    dust[7, 7, 7] = 1.0  # one voxel of a 524-voxel particle: dust
    assert len(mp_nms(dust, 0.5, 10)) == 0
    assert len(mp_nms(dust, 0.5, 10, min_value=0.001)) == 1  # an absolute minimum still works
    assert len(mp_nms(cube_plateau(), 0.5, 10, min_value=0.1)) == 0


def test_localmax_halo_gives_whole_map_peaks_on_saturated_scores():
    from tomopick.peaks import find_peaks_blocks, halo_vox

    assert halo_vox("localmax", 5) == halo_vox("maxpool", 5) + 1
    score, _ = saturated_softmax(1)
    stack = score[None]
    whole = find_peaks(stack, "localmax", threshold=0.5, radius_vox=5)
    blocked = find_peaks_blocks(lambda c, region: stack[(c, *region)], stack.shape, "localmax", threshold=0.5,
                                radius_vox=5, block_voxels=20_000)
    np.testing.assert_allclose(blocked.zyx, whole.zyx)
    np.testing.assert_allclose(blocked.score, whole.score)


def test_numpy_maxpool_with_reused_scratch_equals_the_torch_path(rng):
    """The CPU path (numpy, work arrays reused across maps of different shapes) gives exactly the peaks of the
    torch path, plateaus of float16-like quantised scores included."""
    import torch

    from tomopick.peaks.core import Scratch

    scratch = Scratch()
    for shape, d in (((20, 30, 40), 2.0), ((12, 17, 9), 3.5), ((24, 24, 24), 1.0)):
        score = np.round(rng.random(shape, dtype=np.float32) * 16) / 16  # many ties: plateaus
        score[3:6, 4:7, 2:5] = 1.0                                      # a saturated 3³ plateau
        for threshold in (0.5, 0.9375):
            fast = maxpool_nms(score, threshold, d, scratch=scratch)
            slow = maxpool_nms(torch.from_numpy(score), threshold, d)
            assert len(fast) == len(slow) > 0
            np.testing.assert_array_equal(fast.zyx, slow.zyx)
            np.testing.assert_array_equal(fast.score, slow.score)
    # the scratch kept one buffer per slot, grown to the largest map (no new array per call)
    assert scratch.get("pooled", (12, 17, 9), np.float32).base.size == 20 * 30 * 40


@pytest.mark.parametrize("density", [0.002, 0.05, 0.3])
def test_touching_groups_equal_cc3d_labelling(rng, density):
    """The sparse 26-connected grouping of peak voxels is the labelling cc3d gives on the whole mask, including
    voxels on opposite faces of the box (a flat-index neighbour that wraps round a row or plane is not one)."""
    import cc3d

    from tomopick.peaks.core import _touching_groups

    mask = rng.random((9, 11, 13)) < density
    mask[0, 0, 12] = mask[0, 1, 0] = True     # consecutive flat indices, opposite x faces: not touching
    mask[0, 10, 5] = mask[1, 0, 5] = True     # adjacent planes, opposite y faces: not touching
    flat = np.flatnonzero(mask)
    zyx = np.stack(np.unravel_index(flat, mask.shape), axis=1)
    groups, n = _touching_groups(flat, zyx, mask.shape)
    labels, n_cc = cc3d.connected_components(mask, connectivity=26, return_N=True)
    assert n == n_cc
    # the same partition (labels may be numbered differently)
    pairs = set(zip(groups.tolist(), labels.reshape(-1)[flat].tolist()))
    assert len(pairs) == n
