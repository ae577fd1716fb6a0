"""Targets from picks: exact voxel counts, centroid peaks, truncation and order-independent overlaps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tomopick.data import ParticleSet, ParticleSpec, Picks
from tomopick.errors import TomopickError
from tomopick.labels import TargetSpec, class_map, gaussian_heatmaps, label_radii_vox, make_target

VS = 10.0


def _set(*radii_A: float) -> ParticleSet:
    return ParticleSet(particles=tuple(ParticleSpec(name=f"p{i}", radius_A=r) for i, r in enumerate(radii_A)))


def _picks(zyx: list[tuple[float, float, float]], names: list[str]) -> Picks:
    return Picks.from_voxels(np.array(zyx, dtype=float), VS, names)


def test_label_radii_from_particle_set():
    assert label_radii_vox(_set(60, 150), VS, 0.5) == {"p0": 3.0, "p1": 7.5}


def test_sphere_voxel_count_matches_lattice_and_volume():
    # r = 10 voxels, centred on a voxel: 4169 lattice points (|d| <= 10), 0.5 % below 4/3 pi r^3 = 4188.8
    out = class_map((31, 31, 31), _picks([(15, 15, 15)], ["p0"]), _set(100), VS, "sphere", radius_fraction=1.0)
    n = int((out == 1).sum())
    assert n == 4169
    assert abs(n - 4 / 3 * math.pi * 10**3) / (4 / 3 * math.pi * 10**3) < 0.01
    assert out.dtype == np.uint8 and set(np.unique(out)) == {0, 1}


def test_ball_is_sphere_and_cubic_is_cube():
    picks, ps = _picks([(8, 8, 8)], ["p0"]), _set(40)  # r = 4
    ball = class_map((17, 17, 17), picks, ps, VS, "ball", 1.0)
    sphere = class_map((17, 17, 17), picks, ps, VS, "sphere", 1.0)
    cube = class_map((17, 17, 17), picks, ps, VS, "cubic", 1.0)
    np.testing.assert_array_equal(ball, sphere)
    assert int(cube.sum()) == 9**3
    assert cube[4:13, 4:13, 4:13].all() and cube.sum() == cube[4:13, 4:13, 4:13].sum()


def test_tball_is_ball_of_sqrt2_r_cut_by_cube_of_r():
    # r = 2: cube 5^3 = 125 minus the 8 corners (d^2 = 12) and 24 edge points (d^2 = 9 > 8); d^2 = 8 kept
    out = class_map((9, 9, 9), _picks([(4, 4, 4)], ["p0"]), _set(20), VS, "tball", 1.0)
    assert int(out.sum()) == 93
    assert out[4 + 2, 4 + 2, 4] == 1 and out[4 + 2, 4 + 2, 4 + 1] == 0 and out[4 + 3, 4, 4] == 0


def test_overlap_goes_to_most_central_pick_independent_of_order():
    ps = _set(50, 50)  # r = 5 each, labels 1 and 2
    zyx = [(10, 10, 7), (10, 10, 13)]  # centres 6 apart along x: overlap at x = 8..12
    a = class_map((21, 21, 21), _picks(zyx, ["p0", "p1"]), ps, VS, "sphere", 1.0)
    b = class_map((21, 21, 21), _picks(zyx[::-1], ["p1", "p0"]), ps, VS, "sphere", 1.0)
    np.testing.assert_array_equal(a, b)
    assert a[10, 10, 9] == 1 and a[10, 10, 11] == 2
    assert a[10, 10, 10] == 1  # exact tie (3 voxels from both): the lower label wins
    # a big particle does not swallow a small one's centre: normalised distance decides
    ps2 = _set(100, 30)
    c = class_map((31, 31, 31), _picks([(15, 15, 15), (15, 15, 21)], ["p0", "p1"]), ps2, VS, "sphere", 1.0)
    assert c[15, 15, 21] == 2 and c[15, 15, 15] == 1


def test_shapes_are_clipped_at_the_border_and_unknown_classes_raise():
    out = class_map((10, 10, 10), _picks([(0, 0, 0)], ["p0"]), _set(30), VS, "sphere", 1.0)
    # only the octant of the radius-3 ball inside the volume is drawn
    pts = [(z, y, x) for z in range(4) for y in range(4) for x in range(4) if z * z + y * y + x * x <= 9]
    assert int(out.sum()) == len(pts) == 29
    with pytest.raises(TomopickError, match="unknown particle"):
        class_map((10, 10, 10), _picks([(5, 5, 5)], ["nope"]), _set(30), VS)


def test_gaussian_peak_is_one_truncated_at_R_and_max_on_overlap():
    ps = _set(90)  # R = 9 voxels
    heat = gaussian_heatmaps((21, 21, 21), _picks([(10, 10, 10)], ["p0"]), ps, VS, radius_fraction=1.0)
    assert heat.shape == (1, 21, 21, 21) and heat.dtype == np.float32
    assert heat[0, 10, 10, 10] == pytest.approx(1.0)
    assert heat.max() == pytest.approx(1.0)
    # at d = 3 voxels: mean of the two Gaussians, sigma = 0.95*3 and 0.5*3
    expected = 0.5 * (math.exp(-9 / (2 * (0.95 * 3) ** 2)) + math.exp(-9 / (2 * 1.5**2)))
    assert heat[0, 10, 10, 13] == pytest.approx(expected, rel=1e-5)
    assert heat[0, 10, 10, 19] > 0 and heat[0, 10, 10, 20] == 0  # d = 9 kept, d = 10 > R cut
    assert heat[0, 10, 16, 17] == 0  # d^2 = 36 + 49 > 81
    two = gaussian_heatmaps((21, 21, 21), _picks([(10, 10, 8), (10, 10, 12)], ["p0", "p0"]), ps, VS, 1.0)
    assert two.max() == pytest.approx(1.0)  # maxima, not sums
    assert two[0, 10, 10, 10] == pytest.approx(max(heat[0, 10, 10, 12], heat[0, 10, 10, 8]))


def test_make_target_dispatch():
    ps, picks = _set(40, 60), _picks([(8, 8, 8)], ["p1"])
    m = make_target((16, 16, 16), picks, ps, VS, TargetSpec("sphere", 0.5))
    assert m.shape == (16, 16, 16) and int(m.max()) == 2
    h = make_target((16, 16, 16), picks, ps, VS, TargetSpec("gaussian", 1.0))
    assert h.shape == (2, 16, 16, 16) and h[0].max() == 0 and h[1, 8, 8, 8] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        TargetSpec("donut")
