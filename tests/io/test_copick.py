"""copick JSON pick files and copick projects, checked against the real portal files and the copick library."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomopick.data import CZII, Picks, Tomogram
from tomopick.data.rotations import random_rotations
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.io import read_picks, read_tomogram, write_picks, write_tomogram
from tomopick.io.copick_project import CopickProject


def _picks(rng, n=6, names=("ribosome", "apo-ferritin")) -> Picks:
    particles = [names[i % len(names)] for i in range(n)]
    return Picks.from_arrays(rng.uniform(0, 500, (n, 3)), particles, score=rng.uniform(size=n),
                             rotations=random_rotations(n, rng), instance_id=np.arange(n) + 1)


def _structure(value):
    """Nested keys and value types (numbers unified), to compare file layouts."""
    if isinstance(value, dict):
        return {k: _structure(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_structure(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return type(value).__name__


def test_real_portal_picks_read(shared_data):
    folder = shared_data / "czii_portal_layout" / "TS_5_4" / "Picks"
    picks = read_picks(folder / "apo-ferritin.json")
    doc = json.loads((folder / "apo-ferritin.json").read_text())
    assert len(picks) == len(doc["points"]) == 46
    assert picks.particles == ["apo-ferritin"] and picks.runs == ["TS_5_4"]
    assert picks.frame["user"].iat[0] == "curation" and picks.frame["session"].iat[0] == "0"
    np.testing.assert_allclose(picks.xyz_A[0], [468.514, 5915.906, 604.167])
    np.testing.assert_allclose(picks.angles_deg(), 0.0, atol=1e-9)  # identity transforms
    assert not picks.has_scores  # the portal files carry no score


def test_real_portal_picks_written_with_identical_structure(shared_data, tmp_path):
    folder = shared_data / "czii_portal_layout" / "TS_5_4" / "Picks"
    for src in sorted(folder.glob("*.json")):
        picks = read_picks(src)
        out = write_picks(picks, tmp_path / src.name)
        original, ours = json.loads(src.read_text()), json.loads(out.read_text())
        assert list(ours) == list(original)  # same keys, same order
        assert _structure(ours) == _structure(original)
        assert {k: v for k, v in ours.items() if k != "points"} == {k: v for k, v in original.items() if k != "points"}
        got = np.array([[p["location"][a] for a in "xyz"] for p in ours["points"]])
        want = np.array([[p["location"][a] for a in "xyz"] for p in original["points"]])
        np.testing.assert_allclose(got, want, atol=1e-9)
        assert [p["transformation_"] for p in ours["points"]] == [p["transformation_"] for p in original["points"]]


def test_copick_json_round_trip_and_translation(tmp_path, rng):
    picks = _picks(rng, 4, names=("ribosome",)).with_columns(run="TS_1")
    path = write_picks(picks, tmp_path / "r.json")
    back = read_picks(path)
    np.testing.assert_allclose(back.xyz_A, picks.xyz_A, atol=1e-9)
    np.testing.assert_allclose(back.scores, picks.scores)
    np.testing.assert_allclose(back.rotation_matrices(), picks.rotation_matrices(), atol=1e-9)
    assert back.frame["instance_id"].tolist() == [1, 2, 3, 4]
    # copick's particle centre is location + the translation of transformation_
    doc = json.loads(path.read_text())
    doc["points"][0]["transformation_"][0][3] = 5.0
    doc["points"][0]["location"]["x"] -= 5.0
    path.write_text(json.dumps(doc))
    np.testing.assert_allclose(read_picks(path).xyz_A[0], picks.xyz_A[0], atol=1e-9)


def test_copick_json_refuses_several_classes(tmp_path, rng):
    with pytest.raises(TomopickError, match="one particle class"):
        write_picks(_picks(rng), tmp_path / "two.json")
    assert list(tmp_path.iterdir()) == []


def test_project_picks_and_tomogram_round_trip(tmp_path, rng):
    import copick

    project = CopickProject.create(tmp_path / "proj", CZII)
    cfg = json.loads(project.config_path.read_text())
    assert [o["name"] for o in cfg["pickable_objects"]] == CZII.names
    assert cfg["pickable_objects"][3]["radius"] == 150 and cfg["pickable_objects"][3]["label"] == 4
    assert project.particles.particles == CZII.particles

    vol = rng.normal(size=(12, 17, 20)).astype(np.float32)
    tomo = Tomogram.from_array(vol, (10.0, 10.0, 10.012))
    project.write_tomogram("TS_5_4", tomo, tomo_type="denoised")
    with pytest.raises(OutputExistsError):
        project.write_tomogram("TS_5_4", tomo, tomo_type="denoised")
    picks = _picks(rng)
    files = project.write_picks("TS_5_4", picks, user_id="tomopick", session_id="1")
    assert sorted(f.name for f in files) == ["tomopick_1_apo-ferritin.json", "tomopick_1_ribosome.json"]

    # the real copick library sees what we wrote
    root = copick.from_file(str(project.config_path))
    run = root.get_run("TS_5_4")
    copick_tomo = run.get_voxel_spacing(10.004).get_tomogram("denoised")
    np.testing.assert_array_equal(copick_tomo.numpy(), vol)
    ribo = run.get_picks(object_name="ribosome", user_id="tomopick", session_id="1")[0]
    np.testing.assert_allclose(ribo.numpy()[0], picks.for_particle("ribosome").xyz_A)
    np.testing.assert_allclose(ribo.scores(), picks.for_particle("ribosome").scores)

    # and we read it back
    back = project.read_tomogram("TS_5_4", tomo_type="denoised")
    assert back.voxel_size_A == (10.0, 10.0, 10.012)
    np.testing.assert_array_equal(back.load(), vol)
    assert project.read_tomogram("TS_5_4", voxel_size_A=10.004, tomo_type="denoised", level=1).shape == (6, 9, 10)
    got = project.read_picks(run="TS_5_4", particle="ribosome")
    want = picks.for_particle("ribosome")
    np.testing.assert_allclose(got.xyz_A, want.xyz_A, atol=1e-9)
    np.testing.assert_allclose(got.rotation_matrices(), want.rotation_matrices(), atol=1e-9)
    assert set(got.frame["user"]) == {"tomopick"} and set(got.frame["run"]) == {"TS_5_4"}
    assert len(project.read_picks(user_id="someone-else")) == 0
    assert project.runs() == ["TS_5_4"]


def test_project_errors(tmp_path, rng):
    project = CopickProject.create(tmp_path / "p", CZII.subset(["ribosome"]))
    with pytest.raises(OutputExistsError):
        CopickProject.create(tmp_path / "p", CZII)
    with pytest.raises(TomopickError, match="not pickable objects"):
        project.write_picks("TS_1", _picks(rng))
    assert not (tmp_path / "p" / "ExperimentRuns" / "TS_1" / "Picks").exists()
    project.write_picks("TS_1", _picks(rng, names=("ribosome",)))
    with pytest.raises(OutputExistsError):
        project.write_picks("TS_1", _picks(rng, names=("ribosome",)))
    with pytest.raises(TomopickError, match="not in the project"):
        project.read_tomogram("TS_9")
    with pytest.raises(TomopickError, match="no tomogram matches"):
        project.read_tomogram("TS_1")
    with pytest.raises(TomopickError, match="no copick config"):
        CopickProject.open(tmp_path)


def test_segmentation(tmp_path):
    project = CopickProject.create(tmp_path / "p", CZII)
    labels = np.zeros((8, 9, 10), dtype=np.uint8)
    labels[2:4, 3:5, 4:6] = 4
    path = project.write_segmentation("TS_1", "particles", labels, 10.0)
    assert path.name == "10.000_tomopick_0_particles-multilabel.zarr"
    seg = project.read_segmentation("TS_1", "particles")
    np.testing.assert_array_equal(seg.load(), labels)
    assert seg.voxel_size_A == (10.0, 10.0, 10.0)


def test_copick_uri(tmp_path, rng):
    project = CopickProject.create(tmp_path / "p", CZII)
    picks = _picks(rng).with_columns(run="TS_2")
    uri = f"copick://{project.config_path}?user=me&session=7"
    write_picks(picks, uri)
    assert (tmp_path / "p" / "ExperimentRuns" / "TS_2" / "Picks" / "me_7_ribosome.json").is_file()
    back = read_picks(f"copick://{tmp_path / 'p'}?run=TS_2&particle=apo-ferritin")
    assert back.counts() == {"apo-ferritin": 3}
    assert len(read_picks(project.config_path)) == len(picks)  # a config path reads the whole project
    tomo = Tomogram.from_array(rng.normal(size=(8, 8, 8)).astype(np.float32), 12.0)
    write_tomogram(tomo, f"copick://{tmp_path / 'p'}?run=TS_2&tomo_type=wbp")
    got = read_tomogram(f"copick://{tmp_path / 'p'}?run=TS_2&voxel_size=12")
    np.testing.assert_array_equal(got.load(), tomo.load())
    with pytest.raises(TomopickError, match="unknown copick URI key"):
        read_picks(f"copick://{tmp_path / 'p'}?runs=TS_2")
