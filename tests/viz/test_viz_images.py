"""Slab and overlay geometry: a planted particle is drawn where it is, at the radius where its sphere cuts the slab."""

from __future__ import annotations

import io

import numpy as np
import pytest

from tomopick.data import CZII, Picks, Tomogram
from tomopick.viz.gallery import average_boxes, central_slices, extract_box, gallery_indices, pick_view
from tomopick.viz.images import (
    N_GREY, average_slab, bin_factor, circles_in_slab, cut_radius, png_bytes, slab_bounds, slab_centres, stretch,
)
from tomopick.viz.report import match_flags, slab_overlay

VS = 10.0  # Å per voxel
APO = CZII["apo-ferritin"]  # radius 60 Å = 6 voxels


def _planted(shape=(40, 64, 96), centre_zyx=(20, 30, 45), radius_vox=6.0, seed=0) -> np.ndarray:
    """Noise (σ 0.1) with one dark ball (−1) of ``radius_vox`` at ``centre_zyx``."""
    z, y, x = np.indices(shape)
    ball = (z - centre_zyx[0]) ** 2 + (y - centre_zyx[1]) ** 2 + (x - centre_zyx[2]) ** 2 <= radius_vox ** 2
    noise = np.random.default_rng(seed).normal(0, 0.1, shape)
    return (noise - ball).astype(np.float32)


def _pick_at(zyx, particle="apo-ferritin", run="") -> Picks:
    z, y, x = zyx
    return Picks.from_arrays([[x * VS, y * VS, z * VS]], particle, score=np.array([0.9]), run=run)


def test_slab_bounds_and_centres():
    assert slab_bounds(40, 19.5, 12) == (14, 26)          # 12 slices centred on 19.5: 14 … 25
    assert slab_bounds(40, 1.0, 12) == (0, 12)            # kept 12 thick at the face
    assert slab_bounds(40, 38.0, 12) == (28, 40)
    assert slab_bounds(5, 2.0, 100) == (0, 5)             # never deeper than the volume
    centres = slab_centres(184, 4, 22)
    assert centres[0] == pytest.approx(91.5)              # the central slab first
    assert centres[1:] == sorted(centres[1:]) and len(centres) == 4
    assert min(centres) >= 11 - 1e-9 and max(centres) <= 183 - 11 + 1e-9
    assert slab_centres(10, 1, 3) == [4.5]
    # with picks: the other slabs go where the picks are, without overlapping each other or the central one
    z = np.concatenate([np.full(10, 40.0), np.full(6, 140.0), np.full(3, 60.0), [93.0]])
    centres = slab_centres(184, 4, 20, z)
    assert centres[0] == pytest.approx(91.5) and len(centres) == 4
    assert any(abs(c - 40) <= 10 for c in centres[1:]) and any(abs(c - 140) <= 10 for c in centres[1:])
    assert any(abs(c - 60) <= 10 for c in centres[1:])
    gaps = np.diff(sorted(centres))
    assert gaps.min() >= 20                               # no two slabs overlap


def test_cut_radius_and_circles_in_slab():
    assert cut_radius(5.0, np.array([0.0, 3.0, 5.0, 7.0])) == pytest.approx([5.0, 4.0, 0.0, 0.0])
    centres = np.array([[10.0, 0, 0], [10.0, 1, 1], [3.0, 2, 2]])
    # slab z 6–7 spans [5.5, 7.5]: the spheres at z = 10 are 2.5 from it (cut √(25 − 6.25)); z = 3 is 2.5 below
    index, radius = circles_in_slab(centres, np.array([5.0, 2.0, 5.0]), 6, 8)
    assert index.tolist() == [0, 2]                       # the small sphere at z = 10 does not reach the slab
    assert radius == pytest.approx([np.sqrt(25 - 6.25)] * 2)
    index, radius = circles_in_slab(centres, 5.0, 8, 12)  # centres inside the slab [7.5, 11.5]: full radius
    assert index.tolist() == [0, 1, 2] and radius == pytest.approx([5.0, 5.0, np.sqrt(25 - 4.5 ** 2)])
    index, _ = circles_in_slab(centres, 5.0, 14, 16)      # [13.5, 15.5]: 3.5 from z = 10, 10.5 from z = 3
    assert index.tolist() == [0, 1]


def test_average_slab_and_stretch():
    vol = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4, 2, 3)
    assert average_slab(vol, 1, 3, chunk=1) == pytest.approx((vol[1] + vol[2]) / 2)
    img = np.linspace(0, 1, 101, dtype=np.float32).reshape(1, 101)
    out = stretch(img, 10, 90)
    assert out.dtype == np.uint8 and out[0, 10] == 0 and out[0, 90] == 255 and out[0, 0] == 0 and out[0, 50] == 128
    assert (stretch(np.ones((3, 3))) == 128).all()
    with_nan = img.copy()
    with_nan[0, 0] = np.nan
    lo, hi = 0.01, 1.0                                    # NaN shows as the median of the rest (0.505)
    assert abs(int(stretch(with_nan, 0, 100)[0, 0]) - (0.505 - lo) / (hi - lo) * 255) <= 0.5 + 1e-6


@pytest.mark.parametrize("max_px", [1000, 40])
def test_planted_particle_is_drawn_where_it_is(max_px):
    centre = (20, 30, 45)
    tomo = Tomogram.from_array(_planted(centre_zyx=centre), VS)
    picks = _pick_at(centre)
    overlay, info = slab_overlay(tomo, picks, CZII, centre_z=20, thickness_vox=12, max_px=max_px)
    b = info["bin"]
    assert b == bin_factor((64, 96), max_px) and (b > 1) == (max_px == 40)
    assert (info["z0"], info["z1"]) == (14, 26) and info["index"].tolist() == [0]
    # circle centre in pixels: voxel c lies in binned pixel (c − (b − 1)/2) / b
    cy, cx = (30 - (b - 1) / 2) / b, (45 - (b - 1) / 2) / b
    assert info["centres_yx"][0] == pytest.approx([cy, cx]) and info["radii"][0] == pytest.approx(6.0 / b)
    ring = np.argwhere(overlay.pixels == overlay.color_index(APO.color))
    assert len(ring) > 8
    dist = np.hypot(ring[:, 0] - round(cy), ring[:, 1] - round(cx))
    assert np.all(np.abs(dist - round(6.0 / b)) <= 1.0)   # every ring pixel at the radius
    # the particle is the darkest part of the slab, and it sits inside the ring
    grey = overlay.pixels.astype(float)
    yy, xx = np.indices(grey.shape)
    r_px = np.hypot(yy - cy, xx - cx)
    inside, outside = grey[r_px <= 6.0 / b - 1.5], grey[(r_px >= 6.0 / b + 1.5) & (grey < N_GREY)]
    assert inside.mean() < 0.3 * outside.mean()          # dark particle in the ring, grey noise around it
    assert (inside < N_GREY).all()                       # nothing drawn over the particle itself
    # colours: the ring in the class colour, PNG round trip exact
    from PIL import Image

    rgb = np.asarray(Image.open(io.BytesIO(png_bytes(overlay))).convert("RGB"))
    assert np.array_equal(rgb, overlay.rgb())
    assert tuple(rgb[tuple(ring[0])]) == (0x1F, 0x77, 0xB4)


def test_sphere_cut_at_the_slab_face_and_missed():
    tomo = Tomogram.from_array(_planted(), VS)
    picks = _pick_at((20, 30, 45))
    # slab 25–28 (span [24.5, 28.5]): the centre is 4.5 below it → cut radius √(36 − 20.25)
    _, info = slab_overlay(tomo, picks, CZII, centre_z=26.5, thickness_vox=4, max_px=1000)
    assert (info["z0"], info["z1"]) == (25, 29) and info["radii"][0] == pytest.approx(np.sqrt(36 - 4.5 ** 2))
    _, info = slab_overlay(tomo, picks, CZII, centre_z=35, thickness_vox=4, max_px=1000)
    assert len(info["index"]) == 0                        # 13 slices away: not drawn


def test_boxes_views_and_averages():
    vol = _planted(centre_zyx=(20, 30, 45))
    box = extract_box(vol, np.array([20.2, 29.8, 45.0]), 8)
    assert box.shape == (17, 17, 17) and box[8, 8, 8] == vol[20, 30, 45]
    corner = extract_box(vol, np.array([0, 0, 0]), 3)
    assert np.isnan(corner[:3]).all() and corner[3, 3, 3] == vol[0, 0, 0]
    view = pick_view(vol, np.array([20, 30, 45]), 8, 2)
    assert view.shape == (17, 17) and view[8, 8] == pytest.approx(vol[18:23, 30, 45].mean())
    # two copies of the same particle average to it; central slices show the ball's disc
    vol2 = np.concatenate([vol, vol], axis=0)
    mean, n = average_boxes(vol2, np.array([[20, 30, 45], [60, 30, 45]]), 8)
    assert n == 2 and mean == pytest.approx(extract_box(vol, np.array([20, 30, 45]), 8), abs=1e-6)
    slices = central_slices(mean)
    assert set(slices) == {"xy", "xz", "yz"} and all(s.shape == (17, 17) for s in slices.values())
    assert (slices["xy"][8, 8 - 5:8 + 6] < -0.5).all() and slices["xy"][8, 0] > -0.5


def test_gallery_indices():
    scores = np.array([0.5, 0.9, 0.1, 0.7, 0.3, 0.8, 0.2, 0.6, 0.4, np.nan])
    g = gallery_indices(scores, 2)
    assert g["top"].tolist() == [1, 5] and g["lowest"].tolist() == [2, 9]   # NaN ranks lowest
    assert g["median"].tolist() == [0, 8]  # ranks 5 and 6 of 10 (scores 0.5, 0.4): either side of the median
    small = gallery_indices(np.array([0.3, 0.2, 0.1]), 2)
    assert small["top"].tolist() == [0, 1] and small["median"].tolist() == [2] and small["lowest"].tolist() == []


def test_match_flags_czii_rule():
    truth = Picks.from_arrays([[300.0, 300, 200], [600, 600, 200]], "apo-ferritin", run="a")
    picks = Picks.from_arrays([[320.0, 300, 200], [900, 900, 200], [300, 300, 400]], "apo-ferritin", run="a")
    ok_p, ok_t = match_flags(picks, truth, CZII)              # matching distance 0.5 × 60 Å = 30 Å
    assert ok_p.tolist() == [True, False, False] and ok_t.tolist() == [True, False]


def test_segmentation_outlines_on_the_slab():
    centre = (20, 30, 45)
    z, y, x = np.indices((40, 64, 96))
    labels = ((z - 20) ** 2 + (y - 30) ** 2 + (x - 45) ** 2 <= 10 ** 2).astype(np.uint8) * 2
    tomo = Tomogram.from_array(_planted(centre_zyx=centre), VS)
    overlay, info = slab_overlay(tomo, _pick_at(centre), CZII, centre_z=20, thickness_vox=12, max_px=1000,
                                 segmentation=labels)
    edge = np.argwhere(overlay.pixels == overlay.color_index("#ffd700"))
    # the central slice of the slab (z 19.5 → 20) cuts the labelled ball (radius 10) in a circle of radius 10;
    # "inner" boundaries lie just inside it
    dist = np.hypot(edge[:, 0] - 30, edge[:, 1] - 45)
    assert len(edge) > 40 and dist.max() <= 10.0 and dist.min() >= 8.5
    assert tuple(overlay.rgb()[tuple(edge[0])]) == (0xFF, 0xD7, 0x00)
