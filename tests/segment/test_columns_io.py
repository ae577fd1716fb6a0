"""Per-pick context columns travel through CSV, STAR and copick JSON (written, read back equal)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tomopick.data import Picks
from tomopick.io import read_picks, write_picks


@pytest.fixture
def picks():
    rng = np.random.default_rng(0)
    return Picks.from_arrays(rng.uniform(0, 2000, (4, 3)), ["ribosome", "ribosome", "ferritin", "ribosome"],
                             score=rng.uniform(size=4), run="TS_1").with_extra(
        compartment_id=np.array([0, 3, 3, 1]), compartment_class=["background", "lumen", "membrane", "lumen"],
        distance_to_membrane_A=np.array([35.5, -120.25, 0.0, np.nan]), on_membrane=np.array([1, 0, 1, 0]))


@pytest.mark.parametrize("name", ["p.csv", "p.star"])
def test_context_columns_round_trip(tmp_path, picks, name):
    path = tmp_path / name
    write_picks(picks, path, voxel_size_A=10.0)
    back = read_picks(path, voxel_size_A=10.0)
    assert back.extra_columns == picks.extra_columns
    assert back.frame["compartment_id"].tolist() == [0, 3, 3, 1]
    assert back.frame["on_membrane"].tolist() == [1, 0, 1, 0]
    assert back.frame["compartment_class"].tolist() == ["background", "lumen", "membrane", "lumen"]
    np.testing.assert_array_equal(back.frame["distance_to_membrane_A"], [35.5, -120.25, 0.0, np.nan])


def test_context_columns_in_copick_points(tmp_path, picks):
    one = picks.for_particle("ribosome")
    path = tmp_path / "ribosome.json"
    write_picks(one, path)
    doc = json.loads(path.read_text())
    assert doc["points"][0]["distance_to_membrane_A"] == 35.5 and doc["points"][2]["distance_to_membrane_A"] is None
    back = read_picks(path)
    assert back.frame["compartment_class"].tolist() == ["background", "lumen", "lumen"]
    np.testing.assert_array_equal(back.frame["distance_to_membrane_A"], [35.5, -120.25, np.nan])


def test_strict_kaggle_layout_stays_strict(tmp_path, picks):
    path = tmp_path / "k.csv"
    write_picks(picks, path, format="kaggle")
    assert path.read_text().splitlines()[0] == "id,experiment,particle_type,x,y,z"
