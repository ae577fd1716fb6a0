"""copick JSON keeps its ``voxel_spacing``: converting tomopick's own copick JSON to a pixel format (RELION 3.1
STAR) needs no --voxel-size (lossless round trip)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.io import read_picks, write_picks


def _picks() -> Picks:
    return Picks.from_arrays(np.array([[10.0, 20, 30]]), ["ribosome"], run="TS_1")


def test_copick_json_voxel_spacing_survives_conversion_to_star(tmp_path):
    """Lossless round trip: the voxel_spacing tomopick writes into copick JSON is used for RELION 3.1 STAR."""
    from tomopick.workflows.convert import convert

    src = write_picks(_picks(), tmp_path / "p.json", voxel_size_A=10.0)
    assert json.loads(src.read_text())["voxel_spacing"] == 10.0
    convert(src, tmp_path / "p.star")  # no voxel size given: the JSON states it
    back = read_picks(tmp_path / "p.star", particles="czii")
    np.testing.assert_allclose(back.xyz_A, _picks().xyz_A, atol=1e-6)
    import starfile

    assert float(starfile.read(tmp_path / "p.star")["optics"]["rlnImagePixelSize"].iat[0]) == 10.0


@pytest.mark.parametrize("value", ["ten", -1.0, True])
def test_copick_json_bad_voxel_spacing(tmp_path, value):
    src = write_picks(_picks(), tmp_path / "p.json", voxel_size_A=10.0)
    doc = json.loads(src.read_text())
    doc["voxel_spacing"] = value
    src.write_text(json.dumps(doc))
    with pytest.raises(TomopickError, match="voxel_spacing must be a positive number"):
        read_picks(src)


def test_copick_json_null_voxel_spacing_still_asks(tmp_path):
    """Portal files state no voxel spacing: STAR output still needs one."""
    from tomopick.workflows.convert import convert

    src = write_picks(_picks(), tmp_path / "p.json")
    assert json.loads(src.read_text())["voxel_spacing"] is None
    with pytest.raises(TomopickError, match="pass --voxel-size"):
        convert(src, tmp_path / "p.star")
