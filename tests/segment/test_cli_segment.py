"""``tomopick segment`` outputs (OME-Zarr label image, MRC, 0/1 mask, instance table) and ``tomopick pick --context
/ --where / --mask`` on a tiny simulated tomogram; bad inputs → one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from tomopick.cli.main import main
from tomopick.data import Tomogram
from tomopick.io import read_picks, read_tomogram, write_tomogram
from tomopick.models.checkpoint import save_checkpoint
from tomopick.models.registry import build_model
from tomopick.segment import SEGMENT_CLASSES, instance_table, label_instances
from tomopick.simulate import ContextConfig, SimulationConfig, simulate_tomogram
from tomopick.training.segment import SegmentTrainConfig, segment_checkpoint_config

VS = 10.0


def run(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A 48 × 64 × 64 simulated tomogram with two vesicles, its truth labels, and an untrained (seeded) tiny
    segmentation checkpoint."""
    root = tmp_path_factory.mktemp("seg")
    ctx = ContextConfig(n_vesicles=(2, 2), vesicle_shapes=("sphere",), vesicle_radius_A=(150.0, 170.0),
                        n_double=(0, 0), n_tubes=(0, 0), n_sheets=(0, 0), n_gold=(1, 1), carbon_probability=0.0,
                        lumenal_fraction=0.6, membrane_bound_fraction=0.2)
    r = simulate_tomogram(SimulationConfig(shape_zyx=(48, 64, 64), voxel_size_A=VS, particle_source="procedural",
                                           context=ctx, counts={"apo-ferritin": 6}, seed=2, n_clutter=0,
                                           ice_slab=False))
    assert "lumen" in set(r.picks.frame["compartment_class"])
    write_tomogram(r.tomogram, root / "tomo.mrc")
    write_tomogram(Tomogram(r.segmentation, (VS,) * 3), root / "truth.mrc")
    torch.manual_seed(0)
    cfg = SegmentTrainConfig(hparams={"channels": [4, 8], "strides": [2], "num_res_units": 0},
                             ce_weights=(1.0, 1.0, 1.0, 1.0, 1.0))  # untrained: no prior correction
    save_checkpoint(root / "tiny.pt", build_model("unet", 1, 5, **cfg.hparams).eval(),
                    segment_checkpoint_config(cfg, VS))
    return root, r


def test_segment_writes_ome_zarr_labels_instances_and_table(data, capsys):
    root, _ = data
    out = root / "a" / "seg.zarr"
    code, stdout, err = run(["segment", root / "tomo.mrc", "--model", root / "tiny.pt", "--out", out, "-q"], capsys)
    assert code == 0, err
    labels = read_tomogram(out)
    assert labels.shape == (48, 64, 64) and np.asarray(labels.data).dtype == np.uint8
    assert labels.voxel_size_A == pytest.approx((VS, VS, VS))
    classes = np.asarray(labels.data)
    assert set(np.unique(classes)) <= set(SEGMENT_CLASSES.values())
    attrs = json.loads((out / ".zattrs").read_text())
    names = {p["label-value"]: p["name"] for p in attrs["image-label"]["properties"]}
    assert names == {v: k for k, v in SEGMENT_CLASSES.items()}
    inst = np.asarray(read_tomogram(root / "a" / "seg_instances.zarr").data)
    np.testing.assert_array_equal(inst, label_instances(classes, VS))
    table = pd.read_csv(root / "a" / "seg_instances.csv")
    expected = instance_table(classes, inst, VS)
    assert table["instance_id"].tolist() == expected["instance_id"].tolist()
    assert len(table) > 0
    np.testing.assert_allclose(table["volume_A3"], expected["volume_A3"], rtol=1e-5)
    assert "written:" in stdout


def test_segment_overwrite_replaces_an_existing_zarr_store(data, capsys):
    """An existing seg.zarr is the output named (refused without --overwrite, replaced with it), never a folder to
    write <run>.ome.zarr into."""
    root, _ = data
    out = root / "ow" / "seg.zarr"
    args = ["segment", root / "tomo.mrc", "--model", root / "tiny.pt", "--out", out, "-q"]
    assert run(args, capsys)[0] == 0
    first = np.asarray(read_tomogram(out).data).copy()
    code, _, err = run(args, capsys)
    assert code == 2 and "exists" in one_error(err)
    code, _, err = run([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["seg.zarr", "seg_instances.csv", "seg_instances.zarr"]
    assert not (out / "tomo.ome.zarr").exists()
    np.testing.assert_array_equal(np.asarray(read_tomogram(out).data), first)


def test_segment_mrc_and_only_membrane_mask(data, capsys):
    root, _ = data
    code, _, err = run(["segment", root / "tomo.mrc", "--model", root / "tiny.pt", "--out", root / "b.mrc", "-q"],
                       capsys)
    assert code == 0, err
    classes = np.asarray(read_tomogram(root / "b.mrc").data)
    code, _, err = run(["segment", root / "tomo.mrc", "--model", root / "tiny.pt", "--out", root / "m.mrc",
                        "--only", "membrane", "-q", "--no-tta"], capsys)  # the tiny model stores no TTA: the same
    assert code == 0, err
    mask = np.asarray(read_tomogram(root / "m.mrc").data)
    np.testing.assert_array_equal(mask, (classes == SEGMENT_CLASSES["membrane"]).astype(np.uint8))
    assert (root / "b_instances.mrc").exists() and not (root / "m_instances.mrc").exists()


@pytest.mark.parametrize("args, words", [
    (["--only", "nucleus"], "--only"),
    (["--out", "{root}/x.tif"], "--out must end in"),
    (["--model", "{root}/missing.pt"], "missing.pt"),
    (["--out", "{root}/exists.mrc"], "exists"),
    (["--adapt-norm", "1.5"], "--adapt-norm"),
    (["--prior-correction", "2"], "--prior-correction"),
    (["--roi", "4,64,64"], "--roi"),
    (["--overlap", "1.5"], "--overlap"),
    (["--precision", "fp8"], "--precision"),
])
def test_segment_bad_inputs_one_line(data, capsys, args, words):
    root, _ = data
    (root / "exists.mrc").write_bytes(b"x")
    base = {"--out": str(root / "c.zarr"), "--model": str(root / "tiny.pt")}
    for i in range(0, len(args), 2):
        base[args[i]] = args[i + 1].format(root=root)
    flat = [v for kv in base.items() for v in kv]
    code, _, err = run(["segment", root / "tomo.mrc", *flat, "-q"], capsys)
    assert code == 2
    assert words in one_error(err)


def test_segment_refuses_a_picking_checkpoint(data, capsys):
    root, _ = data
    from tomopick.models.bundled import bundled_model_path

    code, _, err = run(["segment", root / "tomo.mrc", "--model", bundled_model_path("czii-10A"), "--out",
                        root / "d.zarr", "-q"], capsys)
    assert code == 2 and "not a segmentation checkpoint" in one_error(err)


def test_pick_with_context_where_and_class_mask(data, capsys):
    root, r = data
    out = root / "p.csv"
    code, _, err = run(["pick", root / "tomo.mrc", "--context", root / "truth.mrc", "--threshold", "0.05",
                        "--out", out, "-q"], capsys)
    assert code == 0, err
    picks = read_picks(out)
    assert len(picks) > 0
    cols = ["compartment_id", "compartment_class", "distance_to_membrane_A", "membrane_gap_A", "on_membrane"]
    assert picks.extra_columns == cols
    # the context written equals the context computed from the truth labels at the written positions
    idx = np.clip(picks.voxel_indices(VS), 0, np.asarray(r.segmentation.shape) - 1)
    names = {v: k for k, v in SEGMENT_CLASSES.items()}
    assert picks.frame["compartment_class"].tolist() == [names[int(c)] for c in r.segmentation[tuple(idx.T)]]
    near = root / "near.star"
    code, _, err = run(["pick", root / "tomo.mrc", "--context", root / "truth.mrc", "--threshold", "0.05",
                        "--where", "abs(distance_to_membrane_A) <= 150", "--out", near, "-q"], capsys)
    assert code == 0, err
    kept = read_picks(near, voxel_size_A=VS)
    want = np.abs(picks.frame["distance_to_membrane_A"].to_numpy()) <= 150
    assert len(kept) == int(want.sum())
    np.testing.assert_allclose(np.sort(kept.frame["distance_to_membrane_A"]),
                               np.sort(picks.frame["distance_to_membrane_A"][want]), atol=1e-6)
    lumen = root / "lumen.csv"
    code, _, err = run(["pick", root / "tomo.mrc", "--context", root / "truth.mrc", "--threshold", "0.05",
                        "--mask", "lumen", "--out", lumen, "-q"], capsys)
    assert code == 0, err
    in_lumen = read_picks(lumen)
    assert len(in_lumen) > 0 and set(in_lumen.frame["compartment_class"]) == {"lumen"}


@pytest.mark.parametrize("args, words", [
    (["--where", "distance_to_membrane_A < 40"], "need a segmentation"),
    (["--context", "{root}/truth.mrc", "--where", "x_A.real > 1"], "--where"),
    (["--context", "{root}/nothing.zarr"], "segmentation not found"),
    (["--context", "{root}/truth.mrc", "--mask", "{root}/nomask.mrc"], "mask not found"),
])
def test_pick_context_bad_inputs_one_line(data, capsys, args, words):
    root, _ = data
    code, _, err = run(["pick", root / "tomo.mrc", *[a.format(root=root) for a in args], "--out",
                        root / "never.csv", "-q"], capsys)
    assert code == 2
    assert words in one_error(err)
    assert not (root / "never.csv").exists()


def test_pick_segment_runs_the_segmentation_first(data, capsys):
    root, _ = data
    out = root / "seg_then_pick.csv"
    code, _, err = run(["pick", root / "tomo.mrc", "--segment", "--segment-model", root / "tiny.pt",
                        "--threshold", "0.05", "--out", out, "-q"], capsys)
    assert code == 0, err
    picks = read_picks(out)
    # the context columns equal those computed from the segmentation `tomopick segment` writes with that model
    code, _, err = run(["segment", root / "tomo.mrc", "--model", root / "tiny.pt", "--out", root / "same.mrc", "-q"],
                       capsys)
    assert code == 0, err
    classes = np.asarray(read_tomogram(root / "same.mrc").data)
    idx = np.clip(picks.voxel_indices(VS), 0, np.asarray(classes.shape) - 1)
    names = {v: k for k, v in SEGMENT_CLASSES.items()}
    assert len(picks) > 0
    assert picks.frame["compartment_class"].tolist() == [names[int(c)] for c in classes[tuple(idx.T)]]
