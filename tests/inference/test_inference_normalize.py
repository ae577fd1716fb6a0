import numpy as np
import pytest

from tomopick.inference.normalize import (
    MAD_TO_STD, RobustStats, normalisation_kwargs, normalize_robust, robust_config, robust_stats,
)


def test_exact_small_volume():
    a = np.array([0.0, 1.0, 2.0, 3.0, 100.0]).reshape(1, 1, 5)
    s = robust_stats(a)
    assert s.center == 2.0
    assert s.scale == pytest.approx(MAD_TO_STD * 1.0)
    out = normalize_robust(a, clip=None)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), (a.ravel() - 2.0) / MAD_TO_STD, rtol=1e-6)
    clipped = normalize_robust(a, clip=5.0)
    assert clipped.ravel()[-1] == 5.0


def test_subsample_matches_gaussian(rng):
    a = rng.normal(7.0, 3.0, size=(40, 200, 200)).astype(np.float32)
    s = robust_stats(a, max_samples=50_000)
    assert s.n_samples <= 50_000
    assert s.center == pytest.approx(7.0, abs=0.1)
    assert s.scale == pytest.approx(3.0, rel=0.03)


def test_memmap_reads_bounded(tmp_path, rng):
    mm = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float32, shape=(64, 128, 128))
    mm[:] = rng.normal(0, 1, size=mm.shape)

    class Counting:
        """Records the largest read so the test can assert that only slices were read."""
        def __init__(self, arr):
            self.arr, self.shape, self.dtype, self.largest = arr, arr.shape, arr.dtype, 0

        def __getitem__(self, key):
            out = np.asarray(self.arr[key])
            self.largest = max(self.largest, out.size)
            return out

    c = Counting(mm)
    s = robust_stats(c, max_samples=10_000)
    assert c.largest <= 128 * 128
    assert s.scale == pytest.approx(1.0, rel=0.1)


def test_constant_and_nonfinite():
    const = np.full((4, 5, 6), 3.5, dtype=np.float32)
    out = normalize_robust(const)
    assert np.all(out == 0)
    a = np.arange(27, dtype=np.float32).reshape(3, 3, 3)
    a[0, 0, 0] = np.nan
    a[1, 1, 1] = np.inf
    s = robust_stats(a)
    assert s.n_samples == 25
    out = normalize_robust(a, stats=s)
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 0 and np.isfinite(out).all()
    allnan = np.full((2, 2, 2), np.nan, dtype=np.float32)
    assert robust_stats(allnan) == RobustStats(0.0, 1.0, 0)


def test_config_round_trip():
    cfg = robust_config(clip=4.0)
    assert cfg["method"] == "robust"
    assert normalisation_kwargs(cfg) == {"clip": 4.0, "max_samples": cfg["max_samples"]}
    with pytest.raises(ValueError):
        normalisation_kwargs({"method": "zscore"})
