"""OME-Zarr: the real CZII portal layout (metadata copied, voxels synthetic) and our pyramid writer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io import read_tomogram, write_tomogram
from tomopick.io.formats.omezarr import multiscale_levels

PORTAL_SCALES = [[10.012444196428572, 10.012444196428572, 10.012444537618887],
                 [20.024888392857143, 20.024888392857143, 20.024889075237773],
                 [40.049776785714286, 40.049776785714286, 40.04977815047555]]


@pytest.fixture
def portal_zarr(shared_data, tmp_path):
    """The real denoised.zarr metadata of TS_5_4, with the absent levels' .zarray made consistent with level 2
    (same chunks, codec, separator; shapes of a 184×630×630 tomogram halved) and synthetic voxels in level 2 and
    in one level-0 chunk."""
    import zarr

    src = shared_data / "czii_portal_layout" / "TS_5_4" / "denoised.zarr"
    dst = tmp_path / "denoised.zarr"
    dst.mkdir()
    for name in (".zattrs", ".zgroup"):
        shutil.copy(src / name, dst / name)
    level2 = json.loads((src / "2" / ".zarray").read_text())
    for level, shape in ((0, [184, 630, 630]), (1, [92, 315, 315]), (2, level2["shape"])):
        (dst / str(level)).mkdir()
        meta = dict(level2, shape=shape)
        (dst / str(level) / ".zarray").write_text(json.dumps(meta, indent=4))
    shutil.copy(src / "2" / ".zarray", dst / "2" / ".zarray")  # level 2 stays byte-identical to the portal's
    rng = np.random.default_rng(7)
    lvl2 = rng.normal(size=level2["shape"]).astype("<f4")
    store2 = zarr.storage.DirectoryStore(str(dst / "2"), dimension_separator="/")
    zarr.open_array(store=store2, mode="r+")[...] = lvl2
    block0 = rng.normal(size=(184, 630 - 512, 630 - 512)).astype("<f4")
    store0 = zarr.storage.DirectoryStore(str(dst / "0"), dimension_separator="/")
    zarr.open_array(store=store0, mode="r+")[:, 512:, 512:] = block0
    return dst, lvl2, block0


def test_portal_layout_levels_and_values(portal_zarr):
    path, lvl2, block0 = portal_zarr
    assert (path / "2" / "0" / "0" / "0").is_file()  # chunks stored with the "/" separator
    levels = multiscale_levels(path)
    assert [lv["voxel_size_A"] for lv in levels] == [tuple(s) for s in PORTAL_SCALES]
    t2 = read_tomogram(path, level=2)
    assert t2.shape == (46, 158, 158) and t2.voxel_size_A == tuple(PORTAL_SCALES[2])
    np.testing.assert_array_equal(t2.load(), lvl2)
    assert read_tomogram(path, level=-1).shape == (46, 158, 158)
    t0 = read_tomogram(path)  # lazy: only the chunks sliced are read
    assert t0.shape == (184, 630, 630) and t0.voxel_size_A == tuple(PORTAL_SCALES[0])
    assert t0.voxel_size_A[2] != t0.voxel_size_A[0]  # the anisotropic x scale survives
    np.testing.assert_array_equal(t0.region((slice(0, 184), slice(512, 630), slice(512, 630))), block0)
    assert float(np.abs(t0.region((slice(0, 4), slice(0, 8), slice(0, 8)))).max()) == 0.0  # absent chunk → fill
    assert read_tomogram(path, level=1).shape == (92, 315, 315)
    with pytest.raises(TomopickError, match="level 3 does not exist"):
        read_tomogram(path, level=3)


def test_writer_pyramid_and_metadata(tmp_path, rng):
    vol = rng.normal(size=(9, 14, 17)).astype(np.float32)
    tomo = Tomogram.from_array(vol, (10.0, 10.0, 10.5))
    out = write_tomogram(tomo, tmp_path / "t.zarr", levels=3, chunks=8)
    attrs = json.loads((out / ".zattrs").read_text())
    ms = attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert ms["axes"] == [{"name": n, "type": "space", "unit": "angstrom"} for n in "zyx"]
    assert [d["path"] for d in ms["datasets"]] == ["0", "1", "2"]
    assert [d["coordinateTransformations"] for d in ms["datasets"]] == [
        [{"type": "scale", "scale": [10.0 * 2**i, 10.0 * 2**i, 10.5 * 2**i]}] for i in range(3)]
    z1 = json.loads((out / "1" / ".zarray").read_text())
    assert z1["shape"] == [5, 7, 9] and z1["dimension_separator"] == "/" and z1["compressor"]["cname"] == "lz4"
    back = read_tomogram(out)
    np.testing.assert_array_equal(back.load(), vol)
    lvl1 = read_tomogram(out, level=1)
    assert lvl1.voxel_size_A == (20.0, 20.0, 21.0)
    # 2x2x2 mean (odd edges repeat the last plane)
    padded = np.pad(vol.astype(np.float64), ((0, 1), (0, 0), (0, 1)), mode="edge")
    want = padded.reshape(5, 2, 7, 2, 9, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(lvl1.load(), want, rtol=1e-6, atol=1e-6)
    assert read_tomogram(out, level=2).shape == (3, 4, 5)
    # same top-level structure as the portal's metadata
    assert set(ms) == {"axes", "datasets", "metadata", "name", "version"}


def test_writer_slab_boundaries(tmp_path, rng):
    """Slabs of 4 planes (levels 3 → multiple of 4) give the same pyramid as one slab."""
    vol = rng.integers(0, 1000, size=(13, 6, 6)).astype(np.int16)
    tomo = Tomogram.from_array(vol, 5.0)
    from tomopick.io.formats.omezarr import write_omezarr

    write_omezarr(tomo, tmp_path / "a.zarr", levels=3, slab_depth=4)
    write_omezarr(tomo, tmp_path / "b.zarr", levels=3, slab_depth=64)
    for level in range(3):
        a = read_tomogram(tmp_path / "a.zarr", level=level).load()
        b = read_tomogram(tmp_path / "b.zarr", level=level).load()
        np.testing.assert_array_equal(a, b)
        assert a.dtype == np.int16


def test_not_zarr(tmp_path):
    (tmp_path / "x.zarr").mkdir()
    with pytest.raises(TomopickError, match="not a zarr group"):
        read_tomogram(tmp_path / "x.zarr")
