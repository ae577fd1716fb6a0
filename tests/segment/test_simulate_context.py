"""The simulator's context: exact bilayer labels, membrane-bound and lumenal particles, and the default unchanged."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data import ParticleSet, ParticleSpec
from tomopick.simulate import SEGMENT_CLASSES, ContextConfig, SimulationConfig, build_scene
from tomopick.simulate.context import LEAFLET_OFFSET_A, MEMBRANE_HALF_THICKNESS_A, bilayer

VS = 10.0
ONLY_SPHERE = dict(n_vesicles=(1, 1), vesicle_shapes=("sphere",), vesicle_radius_A=(200.0, 200.0), n_double=(0, 0),
                   n_tubes=(0, 0), n_sheets=(0, 0), n_gold=(0, 0), carbon_probability=0.0)
PSET = ParticleSet(particles=[ParticleSpec(name="blob", radius_A=40.0, weight=1.0, label=1)])


def _scene(context: ContextConfig, counts: dict[str, int] | None = None, seed: int = 0, shape=(64, 80, 80)):
    cfg = SimulationConfig(shape_zyx=shape, voxel_size_A=VS, particle_source="procedural", ice_slab=False,
                           templates={"blob": "sphere:40"}, counts=counts or {"blob": 0}, n_clutter=0,
                           context=context)
    return build_scene(cfg, PSET, np.random.default_rng(seed))


def _distance_from_centre(scene) -> np.ndarray:
    ves = scene.context["segment"]["vesicles"][0]
    cx, cy, cz = (np.asarray(ves["center_xyz_A"]) / VS)
    z, y, x = np.indices(scene.segmentation.shape, dtype=np.float64)
    return np.sqrt((z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2) * VS


def test_sphere_vesicle_membrane_at_its_radius():
    scene = _scene(ContextConfig(**ONLY_SPHERE))
    assert len(scene.context["segment"]["vesicles"]) == 1
    r = scene.context["segment"]["vesicles"][0]["radius_A"]
    assert r == pytest.approx(200.0)
    dist = _distance_from_centre(scene)
    seg = scene.segmentation
    membrane = seg == SEGMENT_CLASSES["membrane"]
    # exactly the voxels within the bilayer's half-thickness of the sphere are membrane
    np.testing.assert_array_equal(membrane, np.abs(dist - r) <= MEMBRANE_HALF_THICKNESS_A)
    np.testing.assert_array_equal(seg == SEGMENT_CLASSES["lumen"], dist < r - MEMBRANE_HALF_THICKNESS_A)
    assert abs(float(dist[membrane].mean()) - r) < 2.0
    inst = scene.segmentation_instances
    assert set(np.unique(inst[seg > 0])) == {1} and not inst[seg == 0].any()


def test_bilayer_has_two_leaflets_40A_apart():
    d = np.linspace(-60, 60, 1201, dtype=np.float32)
    dens, occ = bilayer(d, 2.0)
    inside = np.abs(d) < 35
    peaks = d[1:-1][(dens[1:-1] > dens[:-2]) & (dens[1:-1] > dens[2:]) & inside[1:-1]]
    np.testing.assert_allclose(np.sort(peaks), [-LEAFLET_OFFSET_A, LEAFLET_OFFSET_A], atol=0.2)
    # occupancy: a one-voxel (2 Å) ramp centred on the label boundary |d| = 25 Å
    assert occ[np.abs(d) <= MEMBRANE_HALF_THICKNESS_A - 1.0].min() == 1.0
    assert occ[np.abs(d) >= MEMBRANE_HALF_THICKNESS_A + 1.0].max() == 0.0
    np.testing.assert_allclose(occ[np.isclose(np.abs(d), MEMBRANE_HALF_THICKNESS_A)], 0.5, atol=1e-5)


def test_membrane_bound_particles_sit_on_the_surface_along_the_normal():
    ctx = ContextConfig(**{**ONLY_SPHERE, "membrane_bound_fraction": 1.0, "lumenal_fraction": 0.0})
    scene = _scene(ctx, counts={"blob": 6}, seed=3, shape=(72, 96, 96))
    picks = scene.picks
    assert len(picks) >= 3
    assert picks.frame["membrane_bound"].tolist() == [1] * len(picks)
    ves = scene.context["segment"]["vesicles"][0]
    radial = picks.xyz_A - np.asarray(ves["center_xyz_A"])
    dist = np.linalg.norm(radial, axis=1)
    # centre outside the bilayer, within one particle radius (+ a voxel) of its outer face
    assert np.all(dist > ves["radius_A"] + MEMBRANE_HALF_THICKNESS_A + 40.0 - VS)
    assert np.all(dist < ves["radius_A"] + MEMBRANE_HALF_THICKNESS_A + 40.0 + 2.5 * VS)
    z_axis = picks.rotation_matrices()[:, :, 2]
    cos = np.sum(z_axis * radial / dist[:, None], axis=1)
    assert np.degrees(np.arccos(np.clip(cos, -1, 1))).max() < 10.0
    assert set(picks.frame["compartment_class"]) == {"background"}


def test_lumenal_particles_are_inside_the_lumen():
    ctx = ContextConfig(**{**ONLY_SPHERE, "vesicle_radius_A": (300.0, 300.0), "membrane_bound_fraction": 0.0,
                           "lumenal_fraction": 1.0})
    scene = _scene(ctx, counts={"blob": 4}, seed=5, shape=(80, 96, 96))
    picks = scene.picks
    assert len(picks) >= 2
    assert set(picks.frame["compartment_class"]) == {"lumen"}
    assert set(picks.frame["compartment_id"]) == {1}
    ves = scene.context["segment"]["vesicles"][0]
    dist = np.linalg.norm(picks.xyz_A - np.asarray(ves["center_xyz_A"]), axis=1)
    assert np.all(dist + 40.0 <= ves["radius_A"] - MEMBRANE_HALF_THICKNESS_A + VS)


def test_every_context_kind_is_labelled():
    ctx = ContextConfig(n_vesicles=(1, 1), vesicle_shapes=("deformed",), vesicle_radius_A=(120.0, 120.0),
                        n_double=(1, 1), double_radius_A=(220.0, 220.0), double_gap_A=(80.0, 80.0), n_tubes=(1, 1),
                        tube_radius_A=(100.0, 100.0), tube_length_A=(500.0, 500.0), n_sheets=(1, 1),
                        n_gold=(2, 2), carbon_probability=1.0, carbon_fraction=(0.1, 0.1))
    scene = _scene(ctx, seed=1, shape=(72, 128, 128))
    seg = scene.segmentation
    counts = np.bincount(seg.ravel(), minlength=5)
    assert all(counts[SEGMENT_CLASSES[k]] > 0 for k in ("membrane", "lumen", "gold", "carbon"))
    summary = scene.context["segment"]
    assert len(summary["gold"]) == 2 and summary["carbon"] is not None
    # each compartment's membrane and lumen carry its id; gold and carbon carry none
    assert not scene.segmentation_instances[(seg == SEGMENT_CLASSES["gold"]) | (seg == SEGMENT_CLASSES["carbon"])].any()
    assert scene.segmentation_instances.max() == sum(len(summary[k]) for k in ("vesicles", "double", "tubes", "sheets"))


def test_without_context_no_labels_and_no_context_columns():
    cfg = SimulationConfig(shape_zyx=(32, 48, 48), voxel_size_A=VS, particle_source="procedural",
                           templates={"blob": "sphere:40"}, counts={"blob": 2}, n_clutter=0)
    assert cfg.context is None
    scene = build_scene(cfg, PSET, np.random.default_rng(0))
    assert scene.segmentation is None and scene.picks.extra_columns == []


def test_simulate_command_writes_the_context_labels(tmp_path):
    from tomopick.cli.main import main
    from tomopick.io import read_picks, read_tomogram

    (tmp_path / "ctx.yaml").write_text("particle_source: procedural\nice_slab: false\ncounts: {apo-ferritin: 3}\n"
                                       "context: {n_vesicles: [1, 1], vesicle_shapes: [sphere], "
                                       "vesicle_radius_A: [150, 150], n_double: [0, 0], n_tubes: [0, 0], "
                                       "n_sheets: [0, 0], n_gold: [0, 0], carbon_probability: 0}\n")
    with pytest.raises(SystemExit) as exc:
        main(["simulate", "--n", "1", "--shape", "40", "56", "56", "--config", str(tmp_path / "ctx.yaml"),
              "--format", "mrc", "--out", str(tmp_path / "sim"), "--no-progress"])
    assert exc.value.code in (0, None)
    seg = np.asarray(read_tomogram(tmp_path / "sim" / "sim_000" / "segmentation.mrc").data)
    inst = np.asarray(read_tomogram(tmp_path / "sim" / "sim_000" / "segmentation_instances.mrc").data)
    assert set(np.unique(seg)) == {0, 1, 2} and set(np.unique(inst)) == {0, 1}
    np.testing.assert_array_equal(inst > 0, seg > 0)
    truth = read_picks(tmp_path / "sim" / "sim_000.csv")
    assert {"compartment_id", "compartment_class", "membrane_bound"} <= set(truth.extra_columns)
    idx = truth.voxel_indices(10.012)
    names = {v: k for k, v in SEGMENT_CLASSES.items()}
    assert truth.frame["compartment_class"].tolist() == [names[int(c)] for c in seg[tuple(idx.T)]]
