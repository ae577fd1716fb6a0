"""Instances, the per-instance table and per-pick context on planted geometry (numbers computed by hand)."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.segment import (
    ContextOptions, WhereError, dice, enclosed_lumen, fill_lumen, instance_table, label_instances, match_instances,
    parse_where, pick_context, where_mask,
)
from tomopick.segment.instances import LUMEN, MEMBRANE

VS = 10.0


def _two_vesicles(shape=(48, 64, 96)):
    """Two spherical vesicles (membrane shell 3 voxels thick, lumen inside) and a flat sheet."""
    z, y, x = np.indices(shape, dtype=np.float64)
    classes = np.zeros(shape, dtype=np.uint8)
    truth = np.zeros(shape, dtype=np.int32)
    centres = [(24.0, 32.0, 24.0, 12.0), (24.0, 32.0, 66.0, 9.0)]  # z, y, x, outer radius (voxels)
    for k, (cz, cy, cx, r) in enumerate(centres, start=1):
        d = np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2)
        classes[d < r - 3] = LUMEN
        classes[(d >= r - 3) & (d < r)] = MEMBRANE
        truth[d < r] = k
    classes[:, :, 92:95] = MEMBRANE  # a sheet (no lumen)
    truth[:, :, 92:95] = 3
    return classes, truth, centres


def test_instances_join_membrane_to_lumen_and_sheets_get_their_own_id():
    classes, truth, _ = _two_vesicles()
    inst = label_instances(classes, VS, min_lumen_A3=1000.0)
    assert int(inst.max()) == 3
    result = match_instances(truth, inst)
    assert result["accuracy"] == 1.0 and min(result["ious"].values()) == 1.0


def test_instance_table_numbers():
    classes, truth, centres = _two_vesicles()
    inst = label_instances(classes, VS, min_lumen_A3=1000.0)
    table = instance_table(classes, inst, VS).set_index("instance_id")
    for k, (cz, cy, cx, r) in enumerate(centres, start=1):
        row = table.loc[int(np.bincount(inst[truth == k]).argmax())]
        assert row["kind"] == "compartment"
        assert row["n_voxels"] == int((truth == k).sum())
        assert row["volume_A3"] == pytest.approx(row["n_voxels"] * VS**3)
        assert row["lumen_volume_A3"] == pytest.approx(int(((truth == k) & (classes == LUMEN)).sum()) * VS**3)
        assert row[["x_A", "y_A", "z_A"]].tolist() == pytest.approx([cx * VS, cy * VS, cz * VS], abs=0.5)
        r_A = r * VS  # marching cubes at 0.5 puts the surface halfway between inside and outside voxel centres
        assert row["mean_radius_A"] == pytest.approx(r_A, rel=0.05)
        # a voxel staircase measures a few % more area than the smooth sphere
        assert row["surface_area_A2"] == pytest.approx(4 * np.pi * r_A**2, rel=0.1)
    sheet = table[table["kind"] == "membrane"]
    assert len(sheet) == 1 and sheet["n_voxels"].iloc[0] == 48 * 64 * 3


def test_fill_lumen_closes_rings_missing_their_caps():
    shape = (20, 40, 40)
    z, y, x = np.indices(shape, dtype=np.float64)
    d = np.sqrt((y - 20) ** 2 + (x - 20) ** 2)
    classes = np.zeros(shape, dtype=np.uint8)
    classes[5:15][(d[5:15] >= 10) & (d[5:15] < 12)] = MEMBRANE  # a cylinder wall, open at both ends
    filled = fill_lumen(classes)
    np.testing.assert_array_equal(filled[5:15] == LUMEN, d[5:15] < 10)
    assert not (filled[:5] == LUMEN).any() and not (filled[15:] == LUMEN).any()
    assert np.array_equal(filled == MEMBRANE, classes == MEMBRANE)


def test_match_and_dice_counts():
    t = np.zeros((4, 10, 10), dtype=np.int32)
    t[:, :5, :5] = 1
    t[:, 5:, 5:] = 2
    p = np.zeros_like(t)
    p[:, :5, :4] = 7  # IoU 0.8 with 1
    p[:, 5:7, 5:] = 9  # IoU 0.4 with 2
    r = match_instances(t, p)
    assert r["n_truth"] == 2 and r["n_matched"] == 1 and r["ious"][1] == pytest.approx(0.8)
    assert dice(t == 1, p == 7) == pytest.approx(2 * 80 / (100 + 80))
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0


def _slab_geometry(shape=(20, 20, 60)):
    """A flat membrane at x = 20..24 (5 voxels), lumen for x < 20 (instance 1), background beyond."""
    classes = np.zeros(shape, dtype=np.uint8)
    classes[:, :, :20] = LUMEN
    classes[:, :, 20:25] = MEMBRANE
    inst = np.zeros(shape, dtype=np.int32)
    inst[:, :, :25] = 1
    return classes, inst


def test_pick_context_distances_classes_and_normals():
    classes, inst = _slab_geometry()
    xs = np.array([40.0, 10.0, 22.0, 30.0]) * VS
    picks = Picks.from_arrays(np.stack([xs, np.full(4, 100.0), np.full(4, 100.0)], axis=1),
                              ["big", "small", "small", "big"])
    out = pick_context(picks, classes, inst, VS, ContextOptions(radii_A={"big": 50.0, "small": 20.0},
                                                                on_membrane_gap_A=10.0, skip_own_body=False))
    f = out.frame
    # nearest membrane voxel: x = 24 on the outside, x = 20 from the lumen side
    np.testing.assert_allclose(f["distance_to_membrane_A"], [160.0, -100.0, 0.0, 60.0])
    np.testing.assert_allclose(f["membrane_gap_A"], [110.0, 80.0, -20.0, 10.0])
    assert f["on_membrane"].tolist() == [0, 0, 1, 1]
    assert f["compartment_class"].tolist() == ["background", "lumen", "membrane", "background"]
    assert f["compartment_id"].tolist() == [0, 1, 1, 0]
    # the on-membrane pick beside the membrane gets its z axis along the normal (+x); the one inside has none
    z_axis = out.rotation_matrices()[3][:, 2]
    np.testing.assert_allclose(z_axis, [1.0, 0.0, 0.0], atol=1e-9)
    assert np.isnan(out.angles_deg()[:3]).all()


def test_membrane_inside_the_particle_is_its_own_body():
    """A shell the size of a virus-like particle (membrane 100-130 Å from its centre, radius 135 Å) around a pick, a
    flat membrane 300-340 Å away: the distance is measured to the flat membrane (300 Å, gap 165 Å, not on a
    membrane); without skip_own_body, to the shell (100 Å, "on the membrane"). A pick of radius 60 Å 170 Å beyond the
    sheet keeps its plain distance, and one whose own ball holds all membrane gets NaN."""
    shape = (40, 40, 80)
    z, y, x = np.indices(shape, dtype=np.float64)
    classes = np.zeros(shape, dtype=np.uint8)
    d = np.sqrt((z - 20) ** 2 + (y - 20) ** 2 + (x - 20) ** 2)
    classes[(d >= 10) & (d < 13)] = MEMBRANE
    classes[:, :, 50:54] = MEMBRANE
    inst = np.zeros(shape, dtype=np.int32)
    picks = Picks.from_arrays(np.array([[200.0, 200.0, 200.0], [700.0, 200.0, 200.0]]), ["vlp", "small"])
    opts = {"radii_A": {"vlp": 135.0, "small": 60.0}}
    f = pick_context(picks, classes, inst, VS, ContextOptions(**opts)).frame
    np.testing.assert_allclose(f["distance_to_membrane_A"], [300.0, 170.0])
    np.testing.assert_allclose(f["membrane_gap_A"], [165.0, 110.0])
    assert f["on_membrane"].tolist() == [0, 0]
    plain = pick_context(picks, classes, inst, VS, ContextOptions(**opts, skip_own_body=False)).frame
    assert plain["distance_to_membrane_A"].iloc[0] == pytest.approx(100.0) and plain["on_membrane"].iloc[0] == 1
    alone = classes.copy()
    alone[:, :, 50:54] = 0
    g = pick_context(picks.select(np.array([True, False])), alone, inst, VS, ContextOptions(**opts)).frame
    assert np.isnan(g["distance_to_membrane_A"].iloc[0]) and g["on_membrane"].iloc[0] == 0


def test_where_filter_numbers_and_errors():
    classes, inst = _slab_geometry()
    xs = np.array([40.0, 10.0, 22.0, 30.0]) * VS
    picks = pick_context(Picks.from_arrays(np.stack([xs, np.full(4, 100.0), np.full(4, 100.0)], axis=1),
                                           ["a", "b", "a", "b"]), classes, inst, VS)
    assert where_mask(picks, "distance_to_membrane_A < 100").tolist() == [False, True, True, True]
    assert where_mask(picks, "abs(distance_to_membrane_A) <= 100 and particle == 'b'").tolist() == [
        False, True, False, True]
    assert where_mask(picks, "not (compartment_class == 'lumen' or on_membrane == 1)").tolist() == [
        True, False, False, False]
    assert where_mask(picks, "0 <= distance_to_membrane_A < 100").tolist() == [False, False, True, True]
    for bad in ("__import__('os')", "x_A.real > 0", "distance_to_membrane_A <", "unknown_col > 1", "x_A + 1"):
        with pytest.raises(WhereError):
            where_mask(picks, bad)
    with pytest.raises(WhereError):
        parse_where("open('f') == 1")


def test_no_membrane_gives_nan_distances():
    classes = np.zeros((8, 8, 8), dtype=np.uint8)
    picks = Picks.from_arrays(np.array([[30.0, 30.0, 30.0]]), "a")
    out = pick_context(picks, classes, np.zeros_like(classes, dtype=np.int32), VS)
    assert np.isnan(out.frame["distance_to_membrane_A"].iloc[0]) and out.frame["on_membrane"].iloc[0] == 0


def test_enclosed_lumen_drops_lumen_beside_an_open_sheet():
    shape = (6, 40, 60)
    y, x = np.indices(shape[1:], dtype=np.float64)
    plane = np.zeros(shape[1:], dtype=np.uint8)
    d = np.hypot(y - 20, x - 15)
    plane[d < 9] = LUMEN
    plane[(d >= 9) & (d < 11)] = MEMBRANE  # a ring: walled lumen
    plane[:, 40:42] = MEMBRANE  # an open sheet
    plane[5:35, 42:50] = LUMEN  # what a network calls "lumen" beside it
    classes = np.repeat(plane[None], shape[0], axis=0)
    out = enclosed_lumen(classes)
    np.testing.assert_array_equal(out[:, d < 9], LUMEN)
    assert not (out[:, :, 42:50] == LUMEN).any()
    assert np.array_equal(out == MEMBRANE, classes == MEMBRANE)


def test_prior_correction_undoes_the_loss_weights_by_hand():
    """With CE weights (0.5, 2, 1, 1, 1), a voxel at p = (0.30, 0.55, 0.15, 0, 0) is membrane by argmax but
    background after the correction (0.30/0.5 = 0.60 > 0.55/2 = 0.275); one at (0.10, 0.80, 0.10, 0, 0) stays membrane
    (0.2 < 0.4); equal weights mean no correction."""
    from tomopick.segment.predict import ClassMapStore, class_prior_scale

    config = {"training": {"ce_weights": [0.5, 2.0, 1.0, 1.0, 1.0]}}
    scale = class_prior_scale(config, 5)
    np.testing.assert_allclose(scale, [1.0, 0.25, 0.5, 0.5, 0.5])
    assert class_prior_scale({"training": {"ce_weights": [1, 1, 1, 1, 1]}}, 5) is None
    assert class_prior_scale({}, 5) is None
    assert class_prior_scale(config, 5, 0.0) is None
    np.testing.assert_allclose(class_prior_scale(config, 5, 0.5), [1.0, 0.5, 0.5**0.5, 0.5**0.5, 0.5**0.5])
    with pytest.raises(TomopickError, match="ce_weights"):
        class_prior_scale({"training": {"ce_weights": [1, 0, 1, 1, 1]}}, 5)
    fg = np.zeros((4, 1, 1, 2), dtype=np.float32)  # foreground channels; background = 1 - sum
    fg[:, 0, 0, 0] = [0.55, 0.15, 0.0, 0.0]
    fg[:, 0, 0, 1] = [0.80, 0.10, 0.0, 0.0]
    plain, scaled = ClassMapStore((4, 1, 1, 4)), ClassMapStore((4, 1, 1, 4), scale)
    for store in (plain, scaled):  # written as two window cores
        store.write((slice(0, 1), slice(0, 1), slice(0, 2)), fg)
        store.write((slice(0, 1), slice(0, 1), slice(2, 4)), fg[..., ::-1].copy())
    assert plain.classes[0, 0].tolist() == [1, 1, 1, 1]
    assert scaled.classes[0, 0].tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="class_scale"):
        ClassMapStore((4, 1, 1, 4), np.ones(3))


def test_fill_lumen_equals_scipy_fill_holes_slice_by_slice():
    """The cc3d implementation fills exactly what scipy's binary_fill_holes fills per x-y slice (random walls,
    holes of every size, other classes inside holes left alone)."""
    from scipy import ndimage

    rng = np.random.default_rng(3)
    classes = rng.choice([0, 0, 0, 1, 1, 2, 3, 4], size=(6, 40, 50)).astype(np.uint8)
    classes[2] = 0
    classes[2, 10:20, 10] = classes[2, 10:20, 20] = classes[2, 10, 10:21] = classes[2, 19, 10:21] = MEMBRANE
    expected = classes.copy()
    for z in range(classes.shape[0]):
        plane = expected[z]
        holes = ndimage.binary_fill_holes((plane == MEMBRANE) | (plane == LUMEN)) & (plane == 0)
        lab, n = ndimage.label(holes)
        sizes = np.bincount(lab.ravel(), minlength=n + 1)
        plane[(sizes >= 5)[lab] & (lab > 0)] = LUMEN
    got = fill_lumen(classes, min_area_vox=5)
    np.testing.assert_array_equal(got, expected)
    assert (got[2, 11:19, 11:20] == LUMEN).all() and int((got != classes).sum()) > 64


def test_drop_small_membrane_keeps_sheets_and_removes_fragments():
    """A 4 × 20 × 20 sheet (1,600 voxels) stays at a 1,000-voxel limit, a 3 × 3 × 3 fragment (27) and a diagonal
    pair touching only by a corner (26-connected: one piece of 2) become background; lumen is untouched."""
    from tomopick.segment.instances import BACKGROUND, drop_small_membrane

    classes = np.zeros((30, 30, 30), dtype=np.uint8)
    classes[2:6, 5:25, 5:25] = MEMBRANE
    classes[20:23, 20:23, 20:23] = MEMBRANE
    classes[10, 10, 10] = classes[11, 11, 11] = MEMBRANE
    classes[20:23, 2:5, 2:5] = LUMEN
    out = drop_small_membrane(classes.copy(), 1000)
    assert int((out == MEMBRANE).sum()) == 1600 and (out[2:6, 5:25, 5:25] == MEMBRANE).all()
    assert out[21, 21, 21] == BACKGROUND and out[10, 10, 10] == BACKGROUND
    assert int((out == LUMEN).sum()) == 27
    np.testing.assert_array_equal(drop_small_membrane(classes.copy(), 0), classes)
    assert int((drop_small_membrane(classes.copy(), 27) == MEMBRANE).sum()) == 1600 + 27
