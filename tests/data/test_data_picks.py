"""The Picks table: normalisation to the fixed columns/dtypes, construction and selection."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tomopick.data import PICK_COLUMNS, Picks
from tomopick.data.rotations import random_rotations


def test_normalise_fills_missing_columns():
    p = Picks(pd.DataFrame({"x_A": [1], "y_A": [2], "z_A": [3.5]}))
    assert tuple(p.frame.columns) == PICK_COLUMNS
    row = p.frame.iloc[0]
    assert row["particle"] == "" and row["run"] == "" and row["instance_id"] == 0
    assert np.isnan(row["score"]) and np.isnan(row["rot_deg"])
    assert p.frame["x_A"].dtype == np.float64 and p.frame["instance_id"].dtype == np.int64
    assert not p.has_scores and not p.has_rotations
    np.testing.assert_array_equal(p.rotation_matrices(), np.eye(3)[None])  # unknown → identity


def test_normalise_rejects_missing_xyz_and_bad_numbers():
    with pytest.raises(ValueError, match="z_A"):
        Picks(pd.DataFrame({"x_A": [1], "y_A": [2]}))
    with pytest.raises(ValueError):
        Picks(pd.DataFrame({"x_A": ["a"], "y_A": [2], "z_A": [3]}))


def test_from_arrays_and_rotations(rng):
    rot = random_rotations(3, rng)
    p = Picks.from_arrays(rng.normal(size=(3, 3)), ["a", "b", "a"], score=[0.1, 0.2, 0.3], rotations=rot,
                          run="TS", instance_id=[1, 2, 3])
    assert p.has_scores and p.has_rotations and p.particles == ["a", "b"] and p.runs == ["TS"]
    np.testing.assert_allclose(p.rotation_matrices(), rot, atol=1e-12)
    assert p.counts() == {"a": 2, "b": 1}


def test_voxels_round_trip_anisotropic():
    p = Picks.from_voxels(np.array([[1.0, 2.0, 3.0]]), (2.0, 3.0, 4.0), "a")
    np.testing.assert_allclose(p.xyz_A, [[12.0, 6.0, 2.0]])
    np.testing.assert_allclose(p.voxel_coords((2.0, 3.0, 4.0)), [[1.0, 2.0, 3.0]])
    np.testing.assert_array_equal(p.voxel_indices(1.0), [[2, 6, 12]])
    assert p.inside((2, 3, 4), (2.0, 3.0, 4.0)).tolist() == [True]
    assert p.inside((1, 3, 4), (2.0, 3.0, 4.0)).tolist() == [False]


def test_selection_concat_sort():
    a = Picks.from_arrays(np.arange(9.0).reshape(3, 3), ["x", "y", "x"], run="R2")
    b = Picks.from_arrays(np.ones((1, 3)), "y", run="R1")
    both = Picks.concat([a, b, Picks.empty()])
    assert len(both) == 4 and both.runs == ["R2", "R1"]
    assert len(both.for_particle("x")) == 2 and len(both.for_run("R1")) == 1
    s = both.sorted()
    assert s.frame["run"].tolist() == ["R1", "R2", "R2", "R2"]
    assert s.frame["particle"].tolist() == ["y", "x", "x", "y"]
    assert s.frame["x_A"].tolist() == [1.0, 0.0, 6.0, 3.0]  # stable within a class
    w = both.with_columns(run="Z")
    assert w.runs == ["Z"] and both.runs == ["R2", "R1"]  # copy, original untouched
    with pytest.raises(KeyError):
        both.with_columns(nonsense=1)
    assert len(Picks.concat([])) == 0
