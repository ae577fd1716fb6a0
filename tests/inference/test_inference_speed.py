"""Speed levers of the sliding window (#17): bf16 arithmetic on CPU and skipping the vacuum above/below the slab."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from tomopick.errors import TomopickError
from tomopick.inference.normalize import robust_stats
from tomopick.inference.options import PickOptions
from tomopick.inference.slab import slab_extent
from tomopick.inference.sliding import InferenceSettings, count_windows, predict_to_store, resolve_precision
from tomopick.peaks import find_peaks


def blob_detector(radius: int = 3) -> torch.nn.Module:
    """A fixed two-class network: class 1 = Gaussian-weighted mean around the voxel (bright blobs; a distinct
    maximum at a sphere's centre), class 0 = a constant; softmax of (0, 6·(mean − 0.6))."""
    k = 2 * radius + 1
    g = np.exp(-0.5 * (np.arange(k) - radius) ** 2 / (radius / 1.5) ** 2)
    kernel = g[:, None, None] * g[None, :, None] * g[None, None, :]
    m = torch.nn.Conv3d(1, 2, k, padding=radius)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[1, 0] = torch.from_numpy(6.0 * kernel / kernel.sum())
        m.bias.copy_(torch.tensor([0.0, -3.6]))
    return m.eval()


def plant(vol: np.ndarray, centres, radius: float, value: float) -> None:
    zz, yy, xx = np.indices(vol.shape)
    for c in centres:
        vol[(zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= radius**2] += value


def test_bf16_scores_close_to_fp32_and_same_picks():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((48, 64, 64)).astype(np.float32)
    centres = [(12, 16, 20), (30, 40, 44), (24, 50, 12)]
    plant(vol, centres, 4, 3.0)
    stats = robust_stats(vol)
    kw = dict(output="softmax", channels=[1], stats=stats, norm_kwargs={"clip": None})
    runs = {}
    for precision in ("fp32", "bf16"):
        settings = InferenceSettings(roi_size=(32, 48, 48), overlap=0.25, divisor=8, precision=precision)
        with predict_to_store(vol, blob_detector(), settings=settings, **kw) as store:
            runs[precision] = store.array.astype(np.float32)
    diff = np.abs(runs["bf16"] - runs["fp32"])
    assert diff.max() < 0.03  # bf16 keeps 8 bits of mantissa: ~0.4 % relative on logits of a few units
    assert runs["fp32"].max() > 0.9
    picks = {p: find_peaks(a, "maxpool", threshold=0.5, radius_vox=4.0) for p, a in runs.items()}
    for p in ("fp32", "bf16"):  # every planted sphere found once, within a voxel, in both precisions
        zyx = picks[p].zyx
        assert len(zyx) == len(centres)
        d = np.linalg.norm(zyx[:, None, :] - np.asarray(centres, float)[None], axis=2)
        assert np.all(d.min(axis=0) <= 1.0)
    d = np.linalg.norm(picks["bf16"].zyx[:, None, :] - picks["fp32"].zyx[None], axis=2)
    assert np.all(d.min(axis=1) <= 1.0)


def slab_volume(rng, shape=(96, 64, 64), slab=(32, 64)):
    """Featureless vacuum (white noise) with a slab of smooth structure (low-pass noise, same voxel std)."""
    vol = rng.standard_normal(shape).astype(np.float32)
    structure = ndimage.gaussian_filter(rng.standard_normal(shape), 2.0)
    structure *= 1.0 / structure.std()
    vol[slab[0] : slab[1]] = 0.4 * vol[slab[0] : slab[1]] + structure[slab[0] : slab[1]].astype(np.float32)
    return vol


def test_slab_extent_finds_slab_conservatively():
    rng = np.random.default_rng(1)
    vol = slab_volume(rng)
    ext = slab_extent(vol, robust_stats(vol), margin_vox=4)
    assert 24 <= ext.z0 <= 28 and 68 <= ext.z1 <= 72  # slab [32, 64) widened by the 4-slice margin
    assert ext.skipped == 96 - (ext.z1 - ext.z0)
    # no vacuum (structure everywhere, or noise everywhere): the whole range
    for whole in (rng.standard_normal((40, 64, 64)).astype(np.float32),
                  ndimage.gaussian_filter(rng.standard_normal((40, 64, 64)), 2.0).astype(np.float32)):
        e = slab_extent(whole, robust_stats(whole))
        assert (e.z0, e.z1, e.skipped) == (0, 40, 0)


def test_skip_vacuum_keeps_particle_at_slab_edge_and_counts_skipped_windows():
    rng = np.random.default_rng(2)
    vol = slab_volume(rng)
    edge = (33, 32, 30)  # 1 voxel inside the slab's lower face
    plant(vol, [edge], 4, 4.0)
    stats = robust_stats(vol)
    kw = dict(output="softmax", channels=[1], stats=stats, norm_kwargs={"clip": None})
    out = {}
    for skip in (False, True):
        settings = InferenceSettings(roi_size=(32, 64, 64), overlap=0.25, divisor=8, skip_vacuum=skip)
        with predict_to_store(vol, blob_detector(), settings=settings, **kw) as store:
            out[skip] = (store.array.astype(np.float32), store.windows_skipped, store.z_range)
    full, skipped, (z0, z1) = out[True]
    assert out[False][1] == 0 and out[False][2] == (0, 96)
    assert skipped > 0 and skipped == count_windows(vol.shape, settings) - count_windows((z1 - z0, 64, 64), settings)
    assert z0 < edge[0] - 4 and z1 > 64  # the particle and the slab lie inside the range run
    # inside the range run the scores are those of the full run (the network's reach, 3 voxels, < the margin)
    np.testing.assert_allclose(full[:, z0:z1], out[False][0][:, z0:z1], atol=1e-3)
    assert np.all(full[:, :z0] == 0) and np.all(full[:, z1:] == 0)  # windows not run score 0
    peaks = find_peaks(full, "maxpool", threshold=0.5, radius_vox=4.0)
    best = peaks.zyx[np.argmax(peaks.score)]  # the planted particle is the strongest peak (the slab has weaker)
    assert np.linalg.norm(best - np.asarray(edge)) <= 1.0
    assert peaks.score.max() == pytest.approx(out[False][0].max(), abs=1e-3)


def test_options_validated_with_one_line_errors():
    with pytest.raises(TomopickError, match=r"^--precision 'fp16': Input should be 'fp32', 'bf16' or 'auto'$"):
        PickOptions.make(precision="fp16")
    with pytest.raises(TomopickError, match=r"^--skip-vacuum"):
        PickOptions.make(skip_vacuum="maybe")
    with pytest.raises(ValueError, match="unknown precision"):
        InferenceSettings(precision="int8")
    assert PickOptions.make(precision="bf16", skip_vacuum=True).precision == "bf16"
    assert resolve_precision("bf16", "cuda") == "fp32"  # GPUs use their own mixed precision (amp)
    assert resolve_precision("auto", "cpu") in ("fp32", "bf16")


def test_reused_memory_gives_the_same_scores():
    rng = np.random.default_rng(3)
    vol = rng.standard_normal((40, 48, 48)).astype(np.float32)
    kw = dict(output="softmax", channels=[1], stats=robust_stats(vol))
    out = []
    for reuse in (False, True):
        settings = InferenceSettings(roi_size=(24, 32, 32), overlap=0.25, divisor=8, reuse_memory=reuse)
        with predict_to_store(vol, blob_detector(), settings=settings, **kw) as store:
            out.append(store.array.copy())
    np.testing.assert_array_equal(out[0], out[1])


def test_chunked_sample_reads_each_chunk_once_and_matches():
    import zarr

    from tomopick.inference.normalize import _chunk_depth, _sample

    rng = np.random.default_rng(4)
    vol = rng.standard_normal((70, 90, 90)).astype(np.float32)
    z = zarr.array(vol, chunks=(32, 45, 45))
    assert _chunk_depth(z) == 32 and _chunk_depth(vol) == 1
    np.testing.assert_array_equal(_sample(z, 20_000), _sample(vol, 20_000))
    assert robust_stats(z, max_samples=20_000) == robust_stats(vol, max_samples=20_000)


def test_cli_rejects_bad_precision_in_one_line(tmp_path, capsys):
    from tomopick.cli.main import main

    tomo = tmp_path / "t.mrc"
    tomo.write_bytes(b"")  # never read: options are checked first
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tomo), "--out", str(tmp_path / "p.star"), "--precision", "fp16"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and "--precision 'fp16'" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "p.star").exists()
