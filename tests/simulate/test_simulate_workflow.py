"""simulate_dataset and ``tomopick simulate``: outputs, sidecar YAML, refusal to overwrite, previews."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from tomopick.errors import OutputExistsError, TomopickError
from tomopick.io import read_picks, read_tomogram
from tomopick.simulate import SimulationConfig, simulate_tomogram
from tomopick.workflows.simulate import simulate_dataset

SMALL = dict(shape_zyx=(32, 64, 64), n_vesicles=0, n_fiducials=0, n_clutter=5, ice_thickness_A=280.0,
             counts={"ribosome": 1, "apo-ferritin": 2, "thyroglobulin": 1})


def test_copick_dataset_round_trip(tmp_path):
    from tomopick.io.copick_project import CopickProject

    kept = []
    out = tmp_path / "proj"
    summary = simulate_dataset(out, n=2, seed=4, progress=False, on_result=kept.append, **SMALL)
    assert summary.runs == ["sim_000", "sim_001"]
    project = CopickProject.open(out)
    assert project.runs() == ["sim_000", "sim_001"]
    for run, result in zip(summary.runs, kept):
        tomo = project.read_tomogram(run)
        assert np.array_equal(tomo.load(), result.tomogram.data)
        picks = project.read_picks(run=run, user_id="curation")
        assert len(picks) == len(result.picks) == 4
        mine = result.picks.sorted().frame
        theirs = picks.sorted().frame
        assert np.allclose(mine[["x_A", "y_A", "z_A"]].to_numpy(), theirs[["x_A", "y_A", "z_A"]].to_numpy(),
                           atol=1e-3)
        assert np.allclose(result.picks.sorted().rotation_matrices(), picks.sorted().rotation_matrices(), atol=1e-5)
        seg = project.read_segmentation(run, "particles", is_multilabel=True).load()
        assert np.array_equal(seg, result.class_labels)
        inst = project.read_segmentation(run, "instances", is_multilabel=True).load()
        assert np.array_equal(inst, result.instance_labels)
        # the sidecar re-makes the same tomogram
        side = yaml.safe_load((out / "simulation" / f"{run}.yaml").read_text())
        again = simulate_tomogram(SimulationConfig(**side["config"]), side["seed"])
        assert np.array_equal(again.tomogram.data, result.tomogram.data)
    with pytest.raises(OutputExistsError):
        simulate_dataset(out, n=1, seed=0, progress=False, **SMALL)
    # overwrite replaces the whole dataset: no stale run survives
    simulate_dataset(out, n=1, seed=9, progress=False, overwrite=True, **SMALL)
    assert CopickProject.open(out).runs() == ["sim_000"]


def test_overwrite_refuses_foreign_folder(tmp_path):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "data.txt").write_text("keep me")
    with pytest.raises(TomopickError, match="not a tomopick simulation output"):
        simulate_dataset(tmp_path / "precious", n=1, overwrite=True, progress=False, **SMALL)
    assert (tmp_path / "precious" / "data.txt").read_text() == "keep me"


def test_mrc_dataset_and_preview(tmp_path):
    out = tmp_path / "mrc"
    summary = simulate_dataset(out, n=1, seed=1, fmt="mrc", progress=False, preview=True, **SMALL)
    run = out / "sim_000"
    tomo = read_tomogram(out / "sim_000.mrc")
    flat = read_picks(out / "sim_000.csv")
    assert flat.counts() == {"ribosome": 1, "apo-ferritin": 2, "thyroglobulin": 1}
    assert set(flat.runs) == {"sim_000"}
    assert tomo.shape == (32, 64, 64) and tomo.voxel_size_A[0] == pytest.approx(10.012, abs=1e-3)
    labels = read_tomogram(run / "class_labels.mrc").load()
    assert set(np.unique(labels)) <= {0, 1, 4, 5}
    picks = read_picks(run / "picks" / "ribosome.json")
    assert len(picks) == 1 and picks.has_rotations
    png = summary.previews[0]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_bad_parameters_are_one_line_errors(tmp_path):
    with pytest.raises(TomopickError, match="snr"):
        simulate_dataset(tmp_path / "x", n=1, snr=-1, progress=False)
    with pytest.raises(TomopickError, match="format"):
        simulate_dataset(tmp_path / "x", n=1, fmt="tiff", progress=False)
    with pytest.raises(TomopickError, match="unknown particle"):
        simulate_dataset(tmp_path / "x", n=1, progress=False, counts={"proteasome": 3}, shape_zyx=(16, 32, 32))


def test_cli_simulate(tmp_path):
    from typer.testing import CliRunner

    from tomopick.cli.main import app

    out = tmp_path / "cli"
    args = ["simulate", "--out", str(out), "--n", "1", "--seed", "3", "--shape", "48", "64", "64",
            "--counts", "ribosome=1,apo-ferritin=1", "--format", "mrc", "--no-progress", "--imaging", "full",
            "--snr", "0.5"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote 1 tomogram(s) with 2 particles" in res.output
    # a particle that cannot fit is reported, not silently dropped
    small = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "thin"), "--n", "1", "--shape", "24", "64",
                                     "64", "--counts", "ribosome=1", "--no-progress", "--format", "mrc"])
    assert small.exit_code == 0 and "could not place every particle" in small.output and "ribosome 0/1" in small.output
    side = yaml.safe_load((out / "sim_000" / "simulation.yaml").read_text())
    assert side["config"]["imaging"] == "full" and side["config"]["snr"] == 0.5
    again = CliRunner().invoke(app, args)
    assert again.exit_code != 0  # refuses to overwrite


def test_preview_draws_one_circle_per_pick_crossing_each_slice():
    from matplotlib.patches import Circle

    from tomopick.simulate.preview import preview_figure

    r = simulate_tomogram(SimulationConfig(**SMALL), 2)
    fig = preview_figure(r.tomogram.data, r.picks, r.particle_set, 10.012)
    ax_xy, ax_xz = fig.axes[:2]
    vox = r.picks.voxel_coords(10.012)
    radius = np.array([r.particle_set[n].radius_A / 10.012 for n in r.picks.frame["particle"]])
    want_xy = int((np.abs(vox[:, 0] - 16) < radius).sum())
    want_xz = int((np.abs(vox[:, 1] - 32) < radius).sum())
    assert sum(isinstance(p, Circle) for p in ax_xy.patches) == want_xy
    assert sum(isinstance(p, Circle) for p in ax_xz.patches) == want_xz
    assert want_xy + want_xz > 0
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert any(t.startswith("ribosome (1)") for t in labels)


def test_cli_reads_config_yaml(tmp_path):
    from typer.testing import CliRunner

    from tomopick.cli.main import app

    cfg = tmp_path / "sim.yaml"
    cfg.write_text(yaml.safe_dump({"shape_zyx": [32, 48, 48], "counts": {"apo-ferritin": 2}, "n_vesicles": 0,
                                   "n_fiducials": 0, "ice_thickness_A": 250.0, "snr": 5.0, "imaging": "full"}))
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "o"), "--n", "1", "--config", str(cfg),
                                   "--format", "mrc", "--no-progress"])
    assert res.exit_code == 0, res.output
    side = yaml.safe_load((tmp_path / "o" / "sim_000" / "simulation.yaml").read_text())
    assert side["config"]["shape_zyx"] == [32, 48, 48] and side["config"]["imaging"] == "full"
    assert side["config"]["snr"] == 5.0 and side["scene"]["placed_counts"]["apo-ferritin"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("snr: -2\n")
    res = CliRunner().invoke(app, ["simulate", "--out", str(tmp_path / "b"), "--n", "1", "--config", str(bad)])
    assert res.exit_code != 0
