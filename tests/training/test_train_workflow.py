"""``tomopick train`` end to end on tiny inputs: a folder of MRC + CSV picks and a copick project."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
import yaml
from _training_toy import PARTICLES, VS, make_volume

from tomopick.cli.main import main
from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io import write_picks, write_tomogram
from tomopick.models import load_checkpoint
from tomopick.workflows.train import split_runs, train

CONFIG = {
    "particles": PARTICLES.model_dump(mode="json"),
    "network": {"name": "unet", "hparams": {"channels": [4, 8], "strides": [2]}},
    "patch_size": [16, 16, 16], "batch_size": 1, "epochs": 1, "steps_per_epoch": 2, "warmup_steps": 1,
    "num_threads": 1, "validation": {"every_epochs": 1},
}


def _write_folder(root, n=3):
    root.mkdir()
    for i in range(n):
        vol = make_volume(10 + i, f"t{i}", shape=(16, 32, 32), n=4)
        write_tomogram(Tomogram.from_array(vol.image * 3 + 7, VS), root / f"t{i}.mrc")
        write_picks(vol.picks, root / f"t{i}.csv")
    return root


def test_split_runs():
    assert split_runs(["c", "a", "b"], None, None, 0.3) == (["a", "b"], ["c"])
    assert split_runs(["a"], None, None, 0.5) == (["a"], [])
    assert split_runs(["a", "b", "c"], ["a"], ["c"], 0.2) == (["a"], ["c"])
    with pytest.raises(TomopickError, match="not found"):
        split_runs(["a"], None, ["z"], 0.2)


def test_train_from_folder_cli_overwrite_and_resume(tmp_path, capsys):
    data = _write_folder(tmp_path / "data")
    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump({**CONFIG, "data": {"kind": "folder", "path": "data", "val_runs": ["t2"]}}))
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg_path), "--out", str(out), "--quiet"])
    assert exc.value.code == 0
    assert "best validation score" in capsys.readouterr().out
    for name in ("config.yaml", "metrics.csv", "best.pt", "last.pt", "state.pt"):
        assert (out / name).is_file()
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert len(rows) == 1 and rows[0]["epoch"] == "1" and "fbeta_big" in rows[0]
    model = load_checkpoint(out / "best.pt")
    assert model.classes == ["background", "big", "small"] and model.voxel_size_A == VS
    assert model.config["normalisation"]["method"] == "robust"
    # the validator's per-class thresholds (chosen on t2) travel in the checkpoint as tomopick pick's default
    thresholds = model.config["pick"]["thresholds"]
    assert set(thresholds) == {"big", "small"} and all(0.05 <= v <= 1.0 for v in thresholds.values())
    assert rows[0]["threshold_big"] and float(rows[0]["threshold_big"]) == pytest.approx(thresholds["big"])
    assert model.card["data"]["train"] == ["t0", "t1"] and model.card["data"]["validation"] == ["t2"]
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 2
    # refuses to overwrite without --overwrite: one line, exit 2
    with pytest.raises(SystemExit) as exc:
        main(["train", str(cfg_path), "--out", str(out), "--quiet"])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err
    # resume with more epochs continues from step 2
    cfg2 = yaml.safe_load(cfg_path.read_text())
    cfg2["epochs"] = 2
    cfg_path.write_text(yaml.safe_dump(cfg2))
    result = train(cfg_path, out, resume=True, progress=False)
    assert result.epochs == 2 and result.steps == 4
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 2


def test_train_from_copick_and_fine_tune(tmp_path):
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.create(tmp_path / "proj", PARTICLES)
    for i in range(2):
        vol = make_volume(20 + i, f"r{i}", shape=(16, 32, 32), n=4)
        project.write_tomogram(f"r{i}", Tomogram.from_array(vol.image, VS), levels=1)
        project.write_picks(f"r{i}", vol.picks, user_id="curation")
    cfg = {**CONFIG, "data": {"kind": "copick", "path": str(tmp_path / "proj"), "user_id": "curation",
                              "voxel_size_A": VS}}
    first = train(cfg, tmp_path / "a", progress=False)
    assert first.history[0]["epoch"] == 1 and np.isfinite(first.best_score)
    tuned = train({**cfg, "init_from": str(first.best_checkpoint), "freeze_encoder": True}, tmp_path / "b",
                  progress=False)
    assert load_checkpoint(tuned.best_checkpoint).card["recipe"]["freeze_encoder"] is True
    with pytest.raises(TomopickError, match="network differs"):
        train({**cfg, "init_from": str(first.best_checkpoint),
               "network": {"name": "unet", "hparams": {"channels": [4, 16], "strides": [2]}}}, tmp_path / "c",
              progress=False)


def test_finetune_command_adapts_a_supervised_checkpoint(tmp_path, capsys):
    """tomopick finetune DATA --model base.pt: the checkpoint's own recipe, started from its weights, on new data;
    validation runs give new stored thresholds."""
    from tomopick.io.copick_project import CopickProject
    from tomopick.workflows.train import finetune_config

    project = CopickProject.create(tmp_path / "proj", PARTICLES)
    for i in range(2):
        vol = make_volume(30 + i, f"r{i}", shape=(16, 32, 32), n=4)
        project.write_tomogram(f"r{i}", Tomogram.from_array(vol.image, VS), levels=1)
        project.write_picks(f"r{i}", vol.picks, user_id="curation")
    base = train({**CONFIG, "data": {"kind": "copick", "path": str(tmp_path / "proj"), "user_id": "curation",
                                     "voxel_size_A": VS}}, tmp_path / "base", progress=False).best_checkpoint
    cfg = finetune_config(base, f"copick://{tmp_path / 'proj'}", steps=3, lr=1e-4, val_runs=["r1"])
    assert (cfg.init_from, cfg.data.kind, cfg.data.val_runs, cfg.lr) == (str(base), "copick", ["r1"], 1e-4)
    assert cfg.epochs * cfg.steps_per_epoch == 3 and cfg.schedule == "constant"
    assert cfg.network.model_dump() == load_checkpoint(base).config["training"]["network"]
    with pytest.raises(SystemExit) as exc:
        main(["finetune", f"copick://{tmp_path / 'proj'}", "--model", str(base), "--out", str(tmp_path / "ft"),
              "--steps", "3", "--val-runs", "r1", "--freeze-encoder"])
    assert exc.value.code == 0 and "fine-tuned 3 steps" in capsys.readouterr().out
    tuned = load_checkpoint(tmp_path / "ft" / "best.pt")
    assert tuned.card["recipe"]["init_from"] == str(base) and tuned.card["recipe"]["freeze_encoder"] is True
    assert set(tuned.config["pick"]["thresholds"]) == {"big", "small"}
    with pytest.raises(SystemExit) as exc:  # --picks belongs to the promptable path
        main(["finetune", str(tmp_path / "proj"), "--picks", "x.csv", "--out", str(tmp_path / "ft2")])
    assert exc.value.code == 2 and "--picks goes with --prompt" in capsys.readouterr().err
