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
