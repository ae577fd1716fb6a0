"""Mechanics of the streamed sliding window: every voxel predicted as the whole-volume network would."""

import numpy as np
import pytest
import torch

from tomopick.inference.normalize import normalize_robust, robust_stats
from tomopick.inference.sliding import (
    InferenceSettings, ScoreStore, count_windows, make_predictor, numpy_small_pages, plan_axis, predict_to_store,
    release_pages,
)


def conv_model(kernel=3, out_channels=3, seed=0):
    torch.manual_seed(seed)
    m = torch.nn.Conv3d(1, out_channels, kernel, padding=kernel // 2)
    with torch.no_grad():
        m.weight.mul_(3.0)
    return m.eval()


def reference(vol, model, channels, output="softmax"):
    x = torch.from_numpy(normalize_robust(vol))[None, None]
    with torch.no_grad():
        logits = model(x)
    prob = torch.softmax(logits, 1) if output == "softmax" else torch.sigmoid(logits)
    return prob[0, channels].numpy()


@pytest.mark.parametrize("n,roi,margin", [(100, 48, 4), (37, 32, 2), (10, 64, 8), (64, 64, 0)])
def test_plan_axis_tiles_exactly(n, roi, margin):
    p = plan_axis(n, roi, margin, divisor=8)
    assert p.roi % 8 == 0 and p.roi <= roi
    covered = np.zeros(n, int)
    for s in p.starts:
        covered[s : min(s + p.core, n)] += 1
    assert np.all(covered == 1)
    assert p.core + 2 * p.margin <= p.roi


def test_fixed_roi_plan():
    p = plan_axis(100, 32, 4, divisor=8, fixed=True)
    assert p.roi == 32 and p.core == 24 and p.starts == (0, 24, 48, 72, 96)


@pytest.mark.parametrize("output", ["softmax", "sigmoid"])
def test_crop_mode_equals_whole_volume(rng, output):
    vol = rng.normal(size=(21, 45, 38)).astype(np.float32)
    model = conv_model()
    settings = InferenceSettings(roi_size=(16, 24, 16), overlap=0.25, divisor=8, batch_size=3)
    assert count_windows(vol.shape, settings) > 8
    with predict_to_store(vol, model, output=output, channels=[1, 2], stats=robust_stats(vol),
                          settings=settings) as store:
        got = np.asarray(store.array, dtype=np.float32)
    ref = reference(vol, model, [1, 2], output)
    ref = np.where(ref < 2.0**-9, 0, ref)
    np.testing.assert_allclose(got, ref, atol=2e-3)


def test_gaussian_mode_equals_whole_volume_for_pointwise_model(rng):
    vol = rng.normal(size=(20, 40, 36)).astype(np.float32)
    model = conv_model(kernel=1)
    settings = InferenceSettings(mode="gaussian", roi_size=(16, 16, 16), overlap=0.25, block_size=(20, 24, 20),
                                 divisor=8)
    assert count_windows(vol.shape, settings) == 4  # blocks
    done = []
    with predict_to_store(vol, model, output="softmax", channels=[0, 2], stats=robust_stats(vol),
                          settings=settings, progress=done.append) as store:
        got = np.asarray(store.array, dtype=np.float32)
    ref = reference(vol, model, [0, 2])
    np.testing.assert_allclose(got, np.where(ref < 2.0**-9, 0, ref), atol=2e-3)
    assert done == [1, 1, 1, 1]


def test_tta_averages_flipped_predictions(rng):
    model = conv_model()
    x = torch.from_numpy(rng.normal(size=(2, 1, 8, 8, 8)).astype(np.float32))
    with torch.no_grad():
        got = make_predictor(model, output="softmax", channels=[1], tta=4)(x)
        parts = [torch.softmax(model(x), 1)]
        for d in (2, 3, 4):
            parts.append(torch.flip(torch.softmax(model(torch.flip(x, (d,))), 1), (d,)))
    expected = torch.stack(parts).mean(0)[:, [1]]
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)
    with torch.no_grad():
        plain = make_predictor(model, output="softmax", channels=[1], tta=1)(x)
    assert not torch.allclose(plain, got)  # this conv is not flip-symmetric


def test_disk_store_matches_memory(rng, tmp_path):
    vol = rng.normal(size=(18, 30, 30)).astype(np.float32)
    model = conv_model()
    common = dict(roi_size=(16, 16, 16), overlap=0.25, divisor=8)
    stats = robust_stats(vol)
    with predict_to_store(vol, model, output="softmax", channels=[1, 2], stats=stats,
                          settings=InferenceSettings(**common)) as mem, \
         predict_to_store(vol, model, output="softmax", channels=[1, 2], stats=stats,
                          settings=InferenceSettings(**common, memory_budget=1000,
                                                     store_directory=str(tmp_path))) as disk:
        assert not mem.on_disk and disk.on_disk
        assert list(tmp_path.iterdir())
        np.testing.assert_array_equal(np.asarray(disk.array[:]), mem.array)
        np.testing.assert_array_equal(disk.read(1, slice(3, 9)), mem.read(1, slice(3, 9)))
    assert not list(tmp_path.iterdir())  # temporary store removed


def test_store_zeroes_tiny_scores():
    s = ScoreStore((1, 2, 2, 2))
    s.write((slice(0, 2), slice(0, 2), slice(0, 2)), np.full((1, 2, 2, 2), 1e-3, np.float32))
    assert np.all(s.array == 0)


def test_release_pages_on_memmap(tmp_path):
    mm = np.lib.format.open_memmap(tmp_path / "a.npy", mode="w+", dtype=np.float32, shape=(4, 8, 8))
    mm[:] = 1.0
    mm.flush()
    ro = np.load(tmp_path / "a.npy", mmap_mode="r")
    assert float(ro.sum()) == 256.0
    release_pages(ro[1:3])  # a view: finds the mapping through .base
    assert float(ro.sum()) == 256.0  # pages come back from the file
    release_pages(np.zeros(3))  # plain arrays: no-op


def test_settings_validation():
    for bad in (dict(mode="x"), dict(tta=3), dict(overlap=1.0), dict(batch_size=0)):
        with pytest.raises(ValueError):
            InferenceSettings(**bad)


def test_numpy_small_pages_switches_numpy_huge_page_advice_off_and_back():
    from numpy._core.multiarray import _set_madvise_hugepage

    before = _set_madvise_hugepage(True)  # a known state (the call returns the previous one)
    try:
        with numpy_small_pages() as took:
            assert took is True
            assert _set_madvise_hugepage(False) is False  # off inside
        assert _set_madvise_hugepage(True) is True  # restored on exit
        with numpy_small_pages(False) as took:  # disabled: numpy's own setting stays
            assert took is False and _set_madvise_hugepage(True) is True
    finally:
        _set_madvise_hugepage(before)
    assert InferenceSettings().small_pages is True
