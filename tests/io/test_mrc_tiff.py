"""MRC (modes 0, 1, 2, 6, 12; header voxel size; memory-mapped) and TIFF stacks."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from tomopick.data import Tomogram
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.io import read_tomogram, write_tomogram


@pytest.mark.parametrize("mode,dtype", [(0, np.int8), (1, np.int16), (2, np.float32), (6, np.uint16),
                                        (12, np.float16)])
def test_mrc_modes(tmp_path, rng, mode, dtype):
    vol = (rng.normal(size=(4, 5, 6)) * 20).astype(dtype)
    path = tmp_path / f"m{mode}.mrc"
    with mrcfile.new(path) as m:
        m.set_data(vol)
        m.voxel_size = (7.5, 8.0, 9.0)  # x, y, z
    tomo = read_tomogram(path)
    assert isinstance(tomo.data, np.memmap)
    assert tomo.dtype == np.dtype(dtype) and tomo.metadata["mode"] == mode
    assert tomo.voxel_size_A == (9.0, 8.0, 7.5)  # (z, y, x)
    np.testing.assert_array_equal(tomo.load(), vol)


def test_mrc_write_round_trip(tmp_path, rng):
    vol = rng.normal(size=(40, 7, 8)).astype(np.float32)  # > one slab of 32
    tomo = Tomogram.from_array(vol, (12.0, 11.0, 10.0))
    out = write_tomogram(tomo, tmp_path / "t.mrc")
    back = read_tomogram(out)
    np.testing.assert_array_equal(back.load(), vol)
    assert back.voxel_size_A == pytest.approx((12.0, 11.0, 10.0))
    with pytest.raises(OutputExistsError):
        write_tomogram(tomo, out)
    write_tomogram(Tomogram.from_array(vol[:2], 5.0), out, overwrite=True)
    assert read_tomogram(out).shape == (2, 7, 8)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.mrc"]  # no temp files left


def test_mrc_voxel_size_zero_needs_option(tmp_path):
    path = tmp_path / "z.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((2, 3, 4), np.float32))
        m.voxel_size = 0.0
    with pytest.raises(TomopickError, match="--voxel-size"):
        read_tomogram(path)
    assert read_tomogram(path, voxel_size_A=4.0).voxel_size_A == (4.0, 4.0, 4.0)


def test_mrc_unsupported_mode_and_truncated(tmp_path):
    path = tmp_path / "c.mrc"
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((2, 3, 4), np.complex64))
    with pytest.raises(TomopickError, match="unsupported MRC mode 4"):
        read_tomogram(path)
    good = tmp_path / "g.mrc"
    with mrcfile.new(good) as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
        m.voxel_size = 1.0
    good.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(TomopickError, match="corrupt or truncated"):
        read_tomogram(good)
    (tmp_path / "s.mrc").write_bytes(b"x" * 100)
    with pytest.raises(TomopickError, match="header is 100 bytes"):
        read_tomogram(tmp_path / "s.mrc")


def test_real_template_header(shared_data):
    tomo = read_tomogram(shared_data / "templates_10A" / "1fa2.mrc")
    assert tomo.shape == (47, 47, 47) and tomo.voxel_size_A == pytest.approx((10.0, 10.0, 10.0))
    assert tomo.dtype == np.float32 and tomo.metadata["mode"] == 2


def test_tiff_round_trip_and_voxel_size(tmp_path, rng):
    import tifffile

    vol = rng.normal(size=(5, 6, 7)).astype(np.float32)
    out = write_tomogram(Tomogram.from_array(vol, (10.0, 11.0, 12.0)), tmp_path / "t.tif")
    back = read_tomogram(out)
    assert back.voxel_size_A == pytest.approx((10.0, 11.0, 12.0))
    np.testing.assert_array_equal(back.load(), vol)
    tifffile.imwrite(tmp_path / "plain.tif", vol)
    with pytest.raises(TomopickError, match="--voxel-size"):
        read_tomogram(tmp_path / "plain.tif")
    assert read_tomogram(tmp_path / "plain.tif", voxel_size_A=3.0).shape == (5, 6, 7)
    # nm units are converted to Å
    tifffile.imwrite(tmp_path / "nm.tif", vol, imagej=True, resolution=(1 / 1.2, 1 / 1.2),
                     metadata={"spacing": 1.5, "unit": "nm", "axes": "ZYX"})
    assert read_tomogram(tmp_path / "nm.tif").voxel_size_A == pytest.approx((15.0, 12.0, 12.0))


def test_mrc_origin_is_x_y_z_and_round_trips_byte_identical(tmp_path, rng):
    path = tmp_path / "o.mrc"
    with mrcfile.new(path) as m:
        m.set_data(rng.normal(size=(3, 4, 5)).astype(np.float32))
        m.voxel_size = (10.0, 10.0, 10.0)
        m.header.origin = (1.5, 2.5, 3.5)  # x, y, z
    t = read_tomogram(path)
    assert t.origin_xyz_A == (1.5, 2.5, 3.5)
    assert t.origin_zyx_A == (3.5, 2.5, 1.5)
    with pytest.warns(DeprecationWarning):
        assert t.origin_A == t.origin_xyz_A
    once, twice = tmp_path / "1.mrc", tmp_path / "2.mrc"
    write_tomogram(t, once)
    write_tomogram(read_tomogram(once), twice)
    assert read_tomogram(once).origin_xyz_A == (1.5, 2.5, 3.5)
    assert once.read_bytes() == twice.read_bytes()
    with pytest.warns(DeprecationWarning):
        assert Tomogram(np.zeros((2, 2, 2), np.float32), 1.0, origin_A=(1, 2, 3)).origin_xyz_A == (1.0, 2.0, 3.0)
