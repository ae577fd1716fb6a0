"""Format details: hand-computed conversions, sniffing, conventions, and the real CZII CSV."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomopick.data import CZII, Picks
from tomopick.errors import TomopickError
from tomopick.io import read_picks, write_picks
from tomopick.io.registry import detect

# A known pair of equivalent orientations (the same particle refined in Dynamo and in RELION; from the
# eulerangles package's tests): Dynamo (tdrot, tilt, narot) and RELION (rot, tilt, psi).
DYNAMO = (-47.2730, 1.1777, -132.3000)
RELION = (137.7000, 1.1777, 42.7270)


def _one(**kw) -> Picks:
    return Picks.from_arrays(np.array([[100.0, 200.0, 300.0]]), "ribosome", run="TS_9", **kw)


def test_relion31_pixels_and_optics(tmp_path):
    star = tmp_path / "p.star"
    star.write_text(
        "data_optics\n\nloop_\n_rlnOpticsGroup #1\n_rlnImagePixelSize #2\n1 5.0\n2 10.0\n\n"
        "data_particles\n\nloop_\n_rlnTomoName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n_rlnCoordinateZ #4\n"
        "_rlnOpticsGroup #5\n_rlnOriginXAngst #6\n_rlnOriginYAngst #7\n_rlnOriginZAngst #8\n_rlnClassNumber #9\n"
        "TS_1 10 20 30 1 0 0 0 4\nTS_2 10 20 30 2 1.5 0 -2 1\n")
    p = read_picks(star, particles=CZII)
    np.testing.assert_allclose(p.xyz_A, [[50, 100, 150], [98.5, 200, 302]])  # pixels × group size − origin
    assert p.frame["particle"].tolist() == ["ribosome", "apo-ferritin"]
    assert p.runs == ["TS_1", "TS_2"] and not p.has_rotations and not p.has_scores
    assert read_picks(star).frame["particle"].tolist() == ["class4", "class1"]  # no set: honest names
    assert read_picks(star, voxel_size_A=1.0).xyz_A[0, 0] == 10.0  # option overrides the optics group


def test_relion5_centred_coordinates(tmp_path):
    picks = _one()
    out = write_picks(picks, tmp_path / "r5.star", format="relion5", tomogram_shape_zyx=(50, 60, 70),
                      voxel_size_A=10.0)
    df = __import__("starfile").read(out)
    # centre = shape/2 × voxel = (350, 300, 250) Å for (x, y, z)
    assert df["rlnCenteredCoordinateXAngst"].iat[0] == pytest.approx(100 - 350)
    assert df["rlnCenteredCoordinateZAngst"].iat[0] == pytest.approx(300 - 250)
    assert detect(out, "picks").name == "relion5"
    with pytest.raises(TomopickError, match="--tomo-shape"):
        read_picks(out)
    back = read_picks(out, tomogram_shape_zyx=(50, 60, 70), voxel_size_A=10.0)
    np.testing.assert_allclose(back.xyz_A, picks.xyz_A)


def test_warp_layout(tmp_path):
    out = write_picks(_one(score=np.array([0.5])), tmp_path / "w.star", format="warp", voxel_size_A=4.0)
    text = out.read_text()
    assert "data_\n" in text and "data_optics" not in text and "TS_9.tomostar" in text
    assert detect(out, "picks").name == "warp"
    back = read_picks(out)
    np.testing.assert_allclose(back.xyz_A, [[100, 200, 300]])
    assert back.runs == ["TS_9"] and back.scores[0] == 0.5
    assert detect(tmp_path / "new.star", "picks", for_writing=True).name == "relion"  # default for writing


def test_dynamo_and_relion_angles_agree(tmp_path):
    """A Dynamo table with known angles converts to the RELION angles of the same orientation."""
    row = np.zeros(36)
    row[[0, 1, 2]] = 1
    row[6:9] = DYNAMO
    row[9] = 0.7
    row[19] = 1
    row[21] = 4  # class → ribosome
    row[23:26] = (10, 20, 30)
    row[3] = 0.5  # dx shift: centre is x + dx
    tbl = tmp_path / "in.tbl"
    np.savetxt(tbl, row[None], fmt="%.6f")
    picks = read_picks(tbl, voxel_size_A=2.0, particles=CZII, run="TS_1")
    np.testing.assert_allclose(picks.xyz_A, [[21.0, 40.0, 60.0]])
    assert picks.frame["particle"].tolist() == ["ribosome"] and picks.scores[0] == pytest.approx(0.7)
    star = write_picks(picks, tmp_path / "out.star", voxel_size_A=2.0)
    df = __import__("starfile").read(star)["particles"]
    got = df[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()[0]
    np.testing.assert_allclose(got, RELION, atol=1e-4)
    assert df["rlnClassNumber"].iat[0] == 4
    # and copick's transformation_ is RELION's (reference → particle) matrix
    from scipy.spatial.transform import Rotation

    np.testing.assert_allclose(picks.rotation_matrices()[0],
                               Rotation.from_euler("ZYZ", RELION, degrees=True).inv().as_matrix(), atol=1e-6)


def test_dynamo_columns(tmp_path):
    picks = Picks.from_arrays(np.array([[10.0, 20, 30], [40, 50, 60]]), ["ribosome", "thyroglobulin"],
                              score=np.array([0.1, 0.2]), run=["A", "B"])
    out = write_picks(picks, tmp_path / "t.tbl", voxel_size_A=10.0)
    table = np.loadtxt(out)
    assert table.shape == (2, 36)
    np.testing.assert_array_equal(table[:, 23:26], [[1, 2, 3], [4, 5, 6]])
    np.testing.assert_array_equal(table[:, 19], [1, 2])  # tomo index by run
    np.testing.assert_array_equal(table[:, 21], [4, 5])  # class = CZII label
    np.testing.assert_array_equal(table[:, 9], [0.1, 0.2])
    assert np.all(table[:, 35] == 10.0)
    assert read_picks(out).frame["run"].tolist() == ["tomo1", "tomo2"]


def test_imod_objects_follow_labels(tmp_path):
    from imodmodel import ImodModel

    picks = Picks.from_arrays(np.array([[10.0, 20, 30], [40, 50, 60]]), ["ribosome", "apo-ferritin"])
    out = write_picks(picks, tmp_path / "m.mod", voxel_size_A=10.0)
    model = ImodModel.from_file(out)
    assert len(model.objects) == 4 and model.header.pixelsize == 10.0 and model.header.units == -10
    np.testing.assert_allclose(model.objects[3].contours[0].points, [[1, 2, 3]])
    back = read_picks(out, particles=CZII)
    assert back.counts() == {"apo-ferritin": 1, "ribosome": 1}


def test_real_czii_training_csv(shared_data, tmp_path):
    src = shared_data / "czii_train_picks.csv"
    picks = read_picks(src)
    raw = pd.read_csv(src)
    assert len(picks) == len(raw) == 1269
    assert set(picks.runs) == set(raw["experiment"]) and len(picks.runs) == 7
    assert picks.counts()["beta-amylase"] == int((raw["particle_type"] == "beta-amylase").sum())
    np.testing.assert_allclose(picks.xyz_A, raw[["x", "y", "z"]].to_numpy())
    out = write_picks(picks.for_run("TS_5_4"), tmp_path / "sub.csv")
    header = out.read_text().splitlines()[0]
    assert header == "id,experiment,particle_type,x,y,z"


def test_xyz_without_header_and_options(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("1,2,3\n4.5,5,6\n")
    with pytest.raises(TomopickError, match="--voxel-size"):
        read_picks(f)
    p = read_picks(f, voxel_size_A=2.0, particle="ribosome", run="TS_1")
    np.testing.assert_allclose(p.xyz_A, [[2, 4, 6], [9, 10, 12]])
    assert p.particles == ["ribosome"] and p.runs == ["TS_1"]
    assert detect(f, "picks").name == "xyz"


@pytest.mark.parametrize("name,text,match", [
    ("bad.star", "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 x\n",
     "STAR"),
    ("nocoord.star", "data_particles\nloop_\n_rlnAngleRot #1\n1\n", "lacks rlnCoordinateX"),
    ("bad.json", "{\"points\": [", "malformed JSON"),
    ("bad2.json", "{\"pickable_object_name\": \"r\", \"points\": [{\"location\": {\"x\": 1}}]}", "point 0"),
    ("bad.csv", "id,experiment,particle_type,x,y,z\n0,TS,ribosome,1,two,3\n", "non-numeric"),
    ("cols.csv", "id,experiment,x,y,z\n0,TS,1,2,3\n", "particle_type"),
    ("bad.tbl", "1 2 3\n", "at least 26"),
    ("bad.mod", "IMODV1.2garbage", "malformed IMOD"),
])
def test_malformed_inputs(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(TomopickError, match=match) as info:
        read_picks(path, voxel_size_A=1.0)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_default_csv_keeps_scores_and_kaggle_is_exact(tmp_path):
    """``--out picks.csv`` (format ``csv``) carries the scores; the Kaggle submission is explicit and exact."""
    scores = np.array([0.123456789, 0.5, 1.0, 1e-7])
    picks = Picks.from_arrays(np.array([[10.5, 20, 30], [40, 50, 60], [1, 2, 3], [7, 8, 9]]),
                              ["ribosome", "apo-ferritin", "ribosome", "ribosome"], score=scores, run="TS_1")
    assert detect(tmp_path / "picks.csv", "picks", for_writing=True).name == "csv"
    out = write_picks(picks, tmp_path / "picks.csv")
    assert out.read_text().splitlines()[0] == "id,experiment,particle_type,x,y,z,score"
    back = read_picks(out)
    np.testing.assert_allclose(back.scores, scores, rtol=0, atol=1e-6)
    np.testing.assert_allclose(back.xyz_A, picks.xyz_A)
    assert back.particles == picks.particles and back.runs == ["TS_1"]
    # without scores: the six columns
    plain = write_picks(Picks.from_arrays(picks.xyz_A, "ribosome", run="TS_1"), tmp_path / "plain.csv")
    assert plain.read_text().splitlines()[0] == "id,experiment,particle_type,x,y,z"
    # the submission flavour, by name only: exactly the Kaggle columns
    sub = write_picks(picks, tmp_path / "submission.csv", format="kaggle")
    lines = sub.read_text().splitlines()
    assert lines[0] == "id,experiment,particle_type,x,y,z" and lines[1].split(",")[:3] == ["0", "TS_1", "ribosome"]
    assert pd.read_csv(sub).columns.tolist() == ["id", "experiment", "particle_type", "x", "y", "z"]
    assert not read_picks(sub).has_scores
    # the plain x,y,z list (pixels) carries scores too
    ribosomes = picks.for_particle("ribosome")
    xyz = write_picks(ribosomes, tmp_path / "p.xyz", voxel_size_A=10.0)
    assert xyz.read_text().splitlines()[0] == "x,y,z,score"
    np.testing.assert_allclose(read_picks(xyz, voxel_size_A=10.0).scores, ribosomes.scores, rtol=0, atol=1e-6)
