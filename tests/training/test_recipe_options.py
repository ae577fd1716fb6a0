"""Recipe options of issue #18: time budget, log lines, radius_fraction defaults, validation peak method,
the tomoCPT recipes."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from _training_toy import PARTICLES, VS, make_volume, tiny_config

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io import write_picks, write_tomogram
from tomopick.models import load_checkpoint
from tomopick.training import Trainer, fbeta_validator, load_config, validate_config
from tomopick.training.config import TargetConfig
from tomopick.training.loop import EpochRecord, training_classes

REPO = Path(__file__).resolve().parents[2]


# -- config -------------------------------------------------------------------------------------------------------
def test_radius_fraction_default_depends_on_the_target_kind():
    from tomopick.labels import gaussian_heatmaps

    assert TargetConfig().radius_fraction == 0.5
    for kind in ("sphere", "ball", "cubic", "tball"):
        assert TargetConfig(kind=kind).radius_fraction == 0.5
    gaussian_default = inspect.signature(gaussian_heatmaps).parameters["radius_fraction"].default
    assert TargetConfig(kind="gaussian").radius_fraction == gaussian_default == 1.0
    assert TargetConfig(kind="gaussian", radius_fraction=0.7).radius_fraction == 0.7  # explicit wins
    cfg = tiny_config(target={"kind": "gaussian"}, loss={"kind": "huber_laplacian"})
    assert cfg.target.radius_fraction == 1.0
    assert cfg.model_dump(mode="json")["target"] == {"kind": "gaussian", "radius_fraction": 1.0}  # stored resolved
    assert tiny_config().target.radius_fraction == 0.5
    with pytest.raises(TomopickError, match="radius_fraction"):
        tiny_config(target={"kind": "gaussian", "radius_fraction": 0})


def test_max_minutes_and_pick_section_validate():
    assert tiny_config().max_minutes is None
    assert tiny_config(max_minutes=1.5).max_minutes == 1.5
    for bad in (0, -1):
        with pytest.raises(TomopickError, match="max_minutes"):
            tiny_config(max_minutes=bad)
    assert tiny_config().pick.peak_method == "maxpool" and tiny_config().pick.distance_factor == 0.75
    assert tiny_config(pick={"peak_method": "localmax"}).pick.peak_method == "localmax"
    with pytest.raises(TomopickError, match="peak_method"):
        tiny_config(pick={"peak_method": "nope"})


# -- log lines ----------------------------------------------------------------------------------------------------
def test_log_line_shows_only_what_was_measured():
    plain = EpochRecord(epoch=3, step=30, train_loss=0.12345, lr=1e-3, time_s=12.4)
    assert plain.summary(10) == "epoch 3/10 step 30: train loss 0.1235, 12 s"
    validated = EpochRecord(epoch=4, step=40, train_loss=0.1, lr=1e-3, time_s=20, val_loss=0.2, val_score=0.75,
                            is_best=True)
    assert validated.summary(10) == "epoch 4/10 step 40: train loss 0.1000, val loss 0.2000, val score 0.7500 (best), 20 s"
    stopped = EpochRecord(epoch=5, step=41, train_loss=0.1, lr=1e-3, time_s=60, is_best=True, budget_spent=True)
    assert stopped.summary(10) == "epoch 5/10 step 41: train loss 0.1000 (best), 60 s, time budget spent: stopping"
    assert "nan" not in plain.summary() and plain.summary().startswith("epoch 3 step 30:")


# -- time budget --------------------------------------------------------------------------------------------------
def test_time_budget_ends_training_after_the_step_that_spends_it(toy_volumes):
    train, val = toy_volumes
    # every_epochs 100: without the budget the first epoch would not validate
    cfg = tiny_config(epochs=20, steps_per_epoch=5, max_minutes=1e-6, validation={"every_epochs": 100})
    seen = []
    t = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    hist = t.fit(lambda tr, rec: seen.append(rec))
    assert len(hist) == 1 and seen == hist
    assert t.epoch == 1 and t.step == 1 and hist[0].step == 1  # stopped inside the first epoch
    assert hist[0].budget_spent and t.budget_spent()
    assert np.isfinite(hist[0].val_loss) and hist[0].is_best and t.best_epoch == 1  # validated like a last epoch
    # a resumed trainer whose budget is spent trains no more
    again = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    again.load_state(t.state())
    assert again.fit() == again.history and again.step == 1


def test_time_budget_counts_wall_clock_across_epochs(toy_volumes):
    train, _ = toy_volumes
    budget_s = 1.0
    t = Trainer(tiny_config(epochs=10_000, steps_per_epoch=2, max_minutes=budget_s / 60), PARTICLES, VS, train,
                progress=False)
    t0 = __import__("time").perf_counter()
    hist = t.fit()
    wall = __import__("time").perf_counter() - t0
    assert 1 < len(hist) < 10_000 and hist[-1].budget_spent and not any(r.budget_spent for r in hist[:-1])
    assert budget_s <= t.elapsed_s <= wall < budget_s + 2.0
    assert hist[-1].is_best and not any(r.is_best for r in hist[:-1])  # no validation: the last epoch ships


def _write_folder(root: Path, n: int = 2) -> Path:
    root.mkdir()
    for i in range(n):
        vol = make_volume(20 + i, f"t{i}", shape=(16, 32, 32), n=4)
        write_tomogram(Tomogram.from_array(vol.image * 3 + 7, VS), root / f"t{i}.mrc")
        write_picks(vol.picks, root / f"t{i}.csv")
    return root


def test_train_workflow_with_budget_and_no_validation(tmp_path):
    from tomopick.workflows.train import train

    data = _write_folder(tmp_path / "data")
    raw = {"data": {"kind": "folder", "path": str(data), "val_fraction": 0},
           "particles": PARTICLES.model_dump(mode="json"),
           "network": {"name": "unet", "hparams": {"channels": [4, 8], "strides": [2]}},
           "patch_size": [16, 16, 16], "batch_size": 1, "epochs": 50, "steps_per_epoch": 4, "warmup_steps": 1,
           "num_threads": 1, "max_minutes": 1e-6, "pick": {"peak_method": "localmax"}}
    lines: list[str] = []
    result = train(raw, tmp_path / "run", progress=False, log=lines.append)
    assert result.epochs == 1 and result.steps == 1
    assert lines == [lines[0]] and lines[0].startswith("epoch 1/50 step 1: train loss ")
    assert "val" not in lines[0] and "nan" not in lines[0] and lines[0].endswith("time budget spent: stopping")
    for name in ("best.pt", "last.pt", "state.pt", "metrics.csv"):
        assert (tmp_path / "run" / name).is_file()
    assert len(list(csv.DictReader((tmp_path / "run" / "metrics.csv").open()))) == 1
    best = load_checkpoint(tmp_path / "run" / "best.pt")
    assert best.config["pick"] == {"peak_method": "localmax", "distance_factor": 0.75,
                                                   "score": "blob"}  # no validation: no thresholds
    assert best.config["training"]["max_minutes"] == 1e-6


# -- validation follows the recipe's peak method ------------------------------------------------------------------
class _Oracle(torch.nn.Module):
    """Class scores from a heatmap image (both classes share it; peaks are 1)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return torch.cat([20 * (x - 0.5), 20 * (x - 0.5)], dim=1)


def _oracle_volume():
    from tomopick.labels import gaussian_heatmaps

    vol = make_volume(4, "v", shape=(24, 40, 40), n=4, kind="gaussian")
    centres = np.rint(vol.picks.voxel_coords(VS))
    vol.picks = Picks.from_voxels(centres, VS, vol.picks.frame["particle"].tolist(), run="v")
    heat = gaussian_heatmaps(vol.shape, vol.picks, training_classes(PARTICLES), VS, 1.0)
    vol.image = heat[0] + heat[1]
    return vol


@pytest.mark.parametrize("method", ["localmax", "cc", "mpnms"])
def test_validation_picks_with_the_configured_peak_method(method, monkeypatch):
    import tomopick.training.validation as picking

    calls = []
    real = picking.pick_tomogram

    def spy(tomogram, loaded, options, **kwargs):
        calls.append((options.peak_method, options.distance_factor))
        return real(tomogram, loaded, options, **kwargs)

    monkeypatch.setattr(picking, "pick_tomogram", spy)
    vol = _oracle_volume()
    cfg = tiny_config(target={"kind": "gaussian"}, loss={"kind": "huber_laplacian"},
                      pick={"peak_method": method, "distance_factor": 0.6})
    trainer = Trainer(cfg, PARTICLES, VS, [vol], [vol], progress=False)
    result = fbeta_validator(beta=4.0)(_Oracle().eval(), [vol], trainer)
    assert calls == [(method, 0.6)]
    assert 0 < result["score"] <= 1 and all(0.05 <= result[f"threshold_{n}"] <= 1 for n in ("big", "small"))
    if method == "localmax":  # as maxpool: every particle found by its own class, once more by the other class
        f4 = 17 * 0.5 * 1.0 / (16 * 0.5 + 1.0)
        assert result["n_picks"] == 8
        assert result["fbeta_big"] == pytest.approx(f4) and result["fbeta_small"] == pytest.approx(f4)
    # an explicit method still wins over the config
    calls.clear()
    fbeta_validator(peak_method="maxpool", distance_factor=0.75)(_Oracle().eval(), [vol], trainer)
    assert calls == [("maxpool", 0.75)]


def test_checkpoint_records_the_peak_method_next_to_the_thresholds(toy_volumes):
    train, val = toy_volumes

    def validator(model, volumes, trainer):
        return {"score": 0.5, "threshold_big": 0.3, "threshold_small": 0.6}

    t = Trainer(tiny_config(epochs=1, steps_per_epoch=1, pick={"peak_method": "localmax"}), PARTICLES, VS, train,
                val, validator=validator, progress=False)
    assert t.checkpoint_config()["pick"] == {"peak_method": "localmax", "distance_factor": 0.75,
                                                   "score": "blob"}
    t.fit()
    pick = t.checkpoint_config()["pick"]
    assert pick["peak_method"] == "localmax" and pick["thresholds"] == {"big": 0.3, "small": 0.6}
    default = Trainer(tiny_config(epochs=1, steps_per_epoch=1), PARTICLES, VS, train, val, progress=False)
    assert default.checkpoint_config()["pick"]["peak_method"] == "maxpool"


# -- the tomoCPT recipes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, network", [("tomocpt-10A", "swinunetr"), ("tomocpt-resunet-10A", "resunet")])
def test_tomocpt_recipes_load(name, network):
    from tomopick.models import build_model
    from tomopick.training import resolve_particles
    from tomopick.training.losses import build_loss

    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.network.name == network and cfg.output == "sigmoid"
    assert cfg.target.kind == "gaussian" and cfg.target.radius_fraction == 1.0
    assert cfg.loss.kind == "huber_laplacian" and cfg.pick.peak_method == "localmax"
    assert cfg.max_minutes is not None and cfg.max_minutes > 0
    assert Path(cfg.data.path).is_absolute()
    particles = resolve_particles(cfg)
    assert len(particles) == 6
    if network == "swinunetr":
        assert all(s % 32 == 0 for s in cfg.patch_size) and cfg.network.hparams["feature_size"] % 12 == 0
    with torch.random.fork_rng(devices=[]):
        model = build_model(cfg.network.name, 1, len(particles), **cfg.network.hparams)
    assert sum(p.numel() for p in model.parameters()) > 0
    build_loss(cfg.loss, len(particles))
    # a recipe is plain data: it survives a dump/validate round trip unchanged
    assert validate_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json")))) == cfg


def test_the_fine_tuning_example_in_the_docs_is_a_valid_recipe(tmp_path):
    """docs/training.md's worked example validates and matches the bundled model it starts from."""
    import re
    import textwrap

    from tomopick.models.bundled import bundled_model_path

    text = (REPO / "docs" / "training.md").read_text()
    block = next(b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "init_from" in b)
    raw = yaml.safe_load(textwrap.dedent(block))
    raw["init_from"] = str(bundled_model_path())
    (tmp_path / "finetune.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "finetune.yaml")
    assert cfg.freeze_encoder and cfg.init_from == str(bundled_model_path())
    base = load_checkpoint(cfg.init_from)
    assert base.config["network"] == {"name": cfg.network.name, "hparams": dict(cfg.network.hparams)}
    assert base.config["target"] == cfg.target.model_dump(mode="json")
    assert len(base.classes) == 1 + 6 and cfg.output == base.config["output"]
