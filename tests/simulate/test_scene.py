"""Scene geometry: templates, rotation convention, placement without overlaps, ground-truth consistency."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tomopick.data import CZII
from tomopick.data.rotations import euler_zyz_to_matrix
from tomopick.errors import TomopickError
from tomopick.simulate import SimulationConfig, bundled_template, build_scene, render_rotated, shape_template
from tomopick.simulate.config import CZII_PROCEDURAL, CZII_TEMPLATES
from tomopick.simulate.scene import MASK_THRESHOLD

VS = 10.012
SMALL = dict(shape_zyx=(48, 96, 96), voxel_size_A=VS, n_vesicles=0, n_fiducials=0, n_clutter=0,
             ice_thickness_A=440.0, ice_tilt_deg=0.0)


def test_bundled_maps_load_with_expected_boxes():
    sizes = {"1fa2": 47, "6drv": 58, "6n4v": 73, "6qzp": 70, "7n4y": 63, "8cpv": 52, "8vaf": 48}
    for key, n in sizes.items():
        t = bundled_template(key)
        assert t.density.shape == (n, n, n)
        assert t.voxel_size_A == 10.0
        assert 0.5 < t.density.max() < 2.5  # contrast units: interior ≈ 1
    # apo-ferritin is hollow: the centre is empty, the shell dense
    fer = bundled_template("8cpv").density
    c = fer.shape[0] // 2
    assert fer[c, c, c] < 0.05 * fer.max()


def test_rotation_convention_reference_into_particle():
    """A rod along x, rotated by R = Rz(90°), must lie along y (R acts on (x, y, z): particle = R @ reference)."""
    rod = shape_template("rod:200,20", VS)
    R = euler_zyz_to_matrix(np.array([[90.0, 0.0, 0.0]]))[0]
    assert np.allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-9)
    box, c = render_rotated(rod, R, VS, np.zeros(3))
    zc, yc, xc = c
    assert box[zc, yc + 8, xc] > 0.9  # 80 Å along +y: inside the rod
    assert box[zc, yc, xc + 8] < 0.05  # 80 Å along +x: outside


def test_subvoxel_offset_moves_centre_of_mass():
    sphere = shape_template("sphere:40", VS)
    frac = np.array([0.3, -0.2, 0.45])
    box, c = render_rotated(sphere, np.eye(3), VS, frac)
    com = np.array(ndimage.center_of_mass(box))
    assert np.allclose(com, c + frac, atol=0.05)


def test_rescaling_conserves_mass():
    t = bundled_template("6drv")
    box10, _ = render_rotated(t, np.eye(3), 10.0, np.zeros(3))
    box20, _ = render_rotated(t, np.eye(3), 20.0, np.zeros(3))
    mass10 = box10.sum() * 10.0**3
    mass20 = box20.sum() * 20.0**3
    assert mass20 == pytest.approx(mass10, rel=0.03)


def test_bad_shape_spec_is_one_line_error():
    with pytest.raises(TomopickError, match="bad shape spec"):
        shape_template("cube:3", VS)


@pytest.fixture(scope="module")
def scene():
    cfg = SimulationConfig(**SMALL, counts={"apo-ferritin": 4, "beta-amylase": 3, "beta-galactosidase": 2,
                                            "ribosome": 2, "thyroglobulin": 2, "virus-like-particle": 1})
    return build_scene(cfg, CZII, np.random.default_rng(7)), cfg


def _assert_masks_intact(sc, templates):
    """Re-rendering every pick from its recorded position and rotation reproduces its instance mask exactly
    (so positions, rotations and labels agree, and no other object overlaps it)."""
    picks = sc.picks
    ids = picks.frame["instance_id"].to_numpy()
    assert sorted(ids) == list(range(1, len(picks) + 1))
    assert set(np.unique(sc.instance_labels)) == {0, *ids}
    vox = picks.voxel_coords(VS)
    rots = picks.rotation_matrices()
    for i, (name, iid) in enumerate(zip(picks.frame["particle"], ids)):
        centre = np.rint(vox[i]).astype(int)
        box, c = render_rotated(templates[name], rots[i], VS, vox[i] - centre)
        mask = box > MASK_THRESHOLD
        full = np.zeros(sc.instance_labels.shape, bool)
        lo = centre - c
        sl_v, sl_b = [], []
        for ax in range(3):
            a, b = max(lo[ax], 0), min(lo[ax] + box.shape[ax], full.shape[ax])
            sl_v.append(slice(a, b))
            sl_b.append(slice(a - lo[ax], b - lo[ax]))
        full[tuple(sl_v)] = mask[tuple(sl_b)]
        assert np.array_equal(full, sc.instance_labels == iid), name
        assert np.all(sc.class_labels[full] == CZII[name].label)
    assert np.array_equal(sc.class_labels > 0, sc.instance_labels > 0)


def test_ground_truth_matches_label_volumes(scene):
    sc, cfg = scene
    assert len(sc.picks) == 14
    _assert_masks_intact(sc, {k: bundled_template(v) for k, v in CZII_TEMPLATES.items()})


def test_particles_inside_ice_and_volume(scene):
    sc, _ = scene
    assert sc.picks.inside((48, 96, 96), VS).all()
    slab = sc.slab_mask()
    assert not np.any((sc.instance_labels > 0) & ~slab)


def test_noiseless_correlation_peaks_at_truth(scene):
    """Cross-correlating the clean potential with each rotated template peaks within 1 voxel of the pick."""
    sc, _ = scene
    pot = sc.potential - sc.potential[sc.instance_labels == 0].mean()
    vox = sc.picks.voxel_coords(VS)
    rots = sc.picks.rotation_matrices()
    keys = {"apo-ferritin": "8cpv", "beta-amylase": "1fa2", "beta-galactosidase": "6drv", "ribosome": "6qzp",
            "thyroglobulin": "7n4y", "virus-like-particle": "6n4v"}
    pad = 3
    for i, name in enumerate(sc.picks.frame["particle"]):
        box, c = render_rotated(bundled_template(keys[name]), rots[i], VS, np.zeros(3))
        box = box - box.mean()
        centre = np.rint(vox[i]).astype(int)
        best, best_pos = -np.inf, None
        for dz in range(-pad, pad + 1):
            for dy in range(-pad, pad + 1):
                for dx in range(-pad, pad + 1):
                    p = centre + [dz, dy, dx]
                    lo = p - c
                    region = np.zeros_like(box)
                    sv, sb = [], []
                    for ax in range(3):
                        a, b = max(lo[ax], 0), min(lo[ax] + box.shape[ax], pot.shape[ax])
                        sv.append(slice(a, b))
                        sb.append(slice(a - lo[ax], b - lo[ax]))
                    region[tuple(sb)] = pot[tuple(sv)]
                    score = float((region * box).sum())
                    if score > best:
                        best, best_pos = score, p
        assert np.max(np.abs(best_pos - vox[i])) <= 1.0, (name, best_pos, vox[i])


def test_no_overlap_under_crowding():
    """Crowded procedural scene with clutter and distractors: every particle mask stays intact."""
    counts = {n: 6 for n in CZII.names}
    cfg = SimulationConfig(**{**SMALL, "n_clutter": 60}, particle_source="procedural", counts=counts,
                           n_distractors=4, margin_A=10.0)
    sc = build_scene(cfg, CZII, np.random.default_rng(3))
    assert len(sc.picks) >= 15
    assert sc.context["n_clutter"] > 20
    assert len(sc.context["distractors"]) >= 1
    _assert_masks_intact(sc, {k: shape_template(v, VS) for k, v in CZII_PROCEDURAL.items()})


def test_crowding_scales_default_counts():
    from tomopick.simulate.scene import default_counts

    vol = 1500.0 * (630 * VS) ** 2
    n1 = sum(sum(default_counts(SimulationConfig(), CZII, vol, np.random.default_rng(s)).values()) for s in range(5))
    n2 = sum(sum(default_counts(SimulationConfig(crowding=2.0), CZII, vol, np.random.default_rng(s)).values())
             for s in range(5))
    assert n2 / n1 == pytest.approx(2.0, rel=0.1)


def test_context_objects_are_placed():
    cfg = SimulationConfig(shape_zyx=(64, 128, 128), voxel_size_A=VS, n_vesicles=1, vesicle_radius_A=(150, 200),
                           n_fiducials=2, n_filaments=1, filament_length_A=(600, 800), n_clutter=5,
                           counts={"ribosome": 2}, membrane_particle_fraction=1.0)
    sc = build_scene(cfg, CZII, np.random.default_rng(1))
    assert len(sc.context["vesicles"]) == 1
    assert len(sc.context["fiducials"]) == 2
    assert len(sc.context["filaments"]) == 1
    assert sc.potential.max() > 3.0  # gold
    assert sc.potential.min() >= 0.0  # vacuum is the lowest potential
    # membrane-bound ribosomes sit next to the vesicle surface
    ves = sc.context["vesicles"][0]
    d = np.linalg.norm(sc.picks.xyz_A - np.asarray(ves["center_xyz_A"]), axis=1)
    assert np.all(d < ves["radius_A"] + 350.0)


def test_default_counts_follow_czii_density():
    cfg = SimulationConfig(shape_zyx=(184, 630, 630), voxel_size_A=VS, ice_thickness_A=1500.0)
    from tomopick.simulate.scene import default_counts

    counts = default_counts(cfg, CZII, 1500.0 * (630 * VS) ** 2, np.random.default_rng(0))
    assert 100 <= sum(counts.values()) <= 300  # CZII runs hold 140–225 picks
    assert counts["apo-ferritin"] > counts["beta-amylase"]


def test_unknown_count_name_raises():
    cfg = SimulationConfig(**SMALL, counts={"proteasome": 2})
    with pytest.raises(TomopickError, match="proteasome"):
        build_scene(cfg, CZII, np.random.default_rng(0))


def test_template_errors_are_one_line(tmp_path):
    from tomopick.simulate import resolve_template

    with pytest.raises(TomopickError, match="template not found"):
        resolve_template(str(tmp_path / "missing.mrc"), VS)
    import mrcfile

    with mrcfile.new(tmp_path / "empty.mrc") as m:
        m.set_data(np.zeros((8, 8, 8), np.float32))
        m.voxel_size = 10.0
    with pytest.raises(TomopickError, match="no positive density"):
        resolve_template(str(tmp_path / "empty.mrc"), VS)
    with pytest.raises(TomopickError, match="unknown bundled map"):
        bundled_template("9xyz")
