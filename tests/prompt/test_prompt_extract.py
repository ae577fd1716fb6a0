"""Prompt boxes (exact on linear volumes) and the prompt file format (lossless round trip, one-line errors)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.errors import OutputExistsError, TomopickError
from tomopick.prompt.extract import box_bounds, sample_box
from tomopick.prompt.promptfile import Prompt, read_prompt, write_prompt


def _linear(shape):
    z, y, x = np.meshgrid(*(np.arange(s, dtype=np.float64) for s in shape), indexing="ij")
    return (z + 2.0 * y + 3.0 * x).astype(np.float32)


def test_sample_box_centre_and_step_are_exact_on_a_linear_volume():
    vol = _linear((40, 50, 60))
    box = sample_box(vol, (20.25, 24.5, 30.0), size=5, step_vox=1.0)
    # voxel (i, j, k) samples (20.25 + i - 2, 24.5 + j - 2, 30 + k - 2); trilinear is exact for a linear function
    assert box.shape == (5, 5, 5)
    assert box[2, 2, 2] == pytest.approx(20.25 + 2 * 24.5 + 3 * 30.0, abs=1e-3)
    assert box[0, 4, 1] == pytest.approx(18.25 + 2 * 26.5 + 3 * 29.0, abs=1e-3)
    # step 0.5 (e.g. a 5 Å prompt from a 10 Å tomogram): neighbours are half a voxel apart
    half = sample_box(vol, (20, 25, 30), size=5, step_vox=0.5)
    assert half[2, 2, 3] - half[2, 2, 2] == pytest.approx(1.5, abs=1e-4)
    assert half[3, 2, 2] - half[2, 2, 2] == pytest.approx(0.5, abs=1e-4)


def test_box_bounds_region_gives_the_same_box_as_the_whole_volume():
    vol = np.random.default_rng(0).normal(size=(30, 40, 50)).astype(np.float32)
    centre = np.array([12.3, 20.0, 33.7])
    whole = sample_box(vol, centre, 9, step_vox=1.5)
    sl, origin = box_bounds(centre, 9, 1.5, vol.shape)
    part = sample_box(vol[sl], centre - origin, 9, step_vox=1.5)
    # interior voxels agree exactly; the low-pass sees the region edge only near the box border
    assert np.allclose(whole[2:-2, 2:-2, 2:-2], part[2:-2, 2:-2, 2:-2], atol=1e-5)


def test_prompt_file_round_trip(tmp_path):
    sub = np.random.default_rng(1).normal(size=(11, 11, 11)).astype(np.float32)
    p = Prompt(sub, 10.0, np.array([100.0, 200.0, 300.5]), source="tomo.mrc", particle="ribo",
               meta={"radius_A": 150.0})
    path = write_prompt(p, tmp_path / "ribo.npz")
    back = read_prompt(path)
    assert back.subtomogram.tobytes() == sub.tobytes()
    assert back.voxel_size_A == 10.0 and back.particle == "ribo" and back.source == "tomo.mrc"
    assert back.xyz_A.tolist() == [100.0, 200.0, 300.5] and back.meta == {"radius_A": 150.0}
    assert back.box_size == 11
    with pytest.raises(OutputExistsError):
        write_prompt(p, path)
    write_prompt(p, path, overwrite=True)


def test_bad_prompt_files_raise_one_line_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(TomopickError, match="not a prompt file"):
        read_prompt(bad)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(3))
    with pytest.raises(TomopickError, match="format marker"):
        read_prompt(other)
    with pytest.raises(TomopickError, match="not found"):
        read_prompt(tmp_path / "missing.npz")
    with pytest.raises(TomopickError, match="end in .npz"):
        write_prompt(Prompt(np.zeros((8, 8, 8), np.float32), 10.0, np.zeros(3)), tmp_path / "p.mrc")
