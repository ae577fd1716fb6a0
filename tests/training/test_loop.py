"""The training loop: learning, reproducibility, resume, frozen encoder, early stopping, validation F-beta."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tomopick.data import Picks
from tomopick.models import load_checkpoint, save_checkpoint
from tomopick.models.registry import encoder_parameters
from tomopick.training import Trainer, fbeta_validator, pick_volume
from tomopick.training.loop import training_classes
from tomopick.peaks.thresholds import DEFAULT_THRESHOLD, MIN_SCORE, stored_threshold

MAX_THRESHOLD = DEFAULT_THRESHOLD["blob"]  # stored for a class never found

from _training_toy import PARTICLES, VS, make_volume, tiny_config


def _weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_training_learns_and_is_reproducible(toy_volumes):
    train, val = toy_volumes
    cfg = tiny_config(epochs=3, steps_per_epoch=6, lr=0.01)
    a = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    hist = a.fit()
    assert [r.epoch for r in hist] == [1, 2, 3] and a.step == 18
    assert hist[-1].train_loss < hist[0].train_loss
    assert np.isfinite(hist[-1].val_loss) and hist[-1].val_score == pytest.approx(-hist[-1].val_loss)
    b = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    b.fit()
    for (k, va), vb in zip(_weights(a.model).items(), _weights(b.model).values()):
        torch.testing.assert_close(va, vb, rtol=0, atol=0, msg=k)
    c = Trainer(tiny_config(epochs=1, steps_per_epoch=2, seed=6), PARTICLES, VS, train, val, progress=False)
    c.fit()
    assert any(not torch.equal(x, y) for x, y in zip(_weights(a.model).values(), _weights(c.model).values()))


def test_resume_continues_exactly(toy_volumes):
    train, val = toy_volumes
    cfg = tiny_config(epochs=2, steps_per_epoch=3)
    full = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    full.fit()
    first = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    first.fit(on_epoch_end=None) if False else first.train_epoch()
    buf = io.BytesIO()
    torch.save(first.state(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    resumed = Trainer(cfg, PARTICLES, VS, train, val, progress=False)
    resumed.load_state(state)
    assert resumed.epoch == 1 and resumed.step == 3
    resumed.fit()
    assert resumed.step == full.step == 6
    for (k, va), vb in zip(_weights(full.model).items(), _weights(resumed.model).values()):
        torch.testing.assert_close(va, vb, msg=k)
    assert [r.epoch for r in resumed.history] == [1, 2]


def test_fine_tune_with_frozen_encoder(toy_volumes):
    train, _ = toy_volumes
    base = Trainer(tiny_config(epochs=1), PARTICLES, VS, train, progress=False)
    start = _weights(base.model)
    tuned = Trainer(tiny_config(epochs=1, freeze_encoder=True, ema_decay=None), PARTICLES, VS, train,
                    init_state=start, progress=False)
    assert tuned.frozen_params > 0
    enc = {id(p) for p in encoder_parameters(tuned.model)}
    tuned.fit()
    changed_enc = changed_dec = 0
    for name, p in tuned.model.named_parameters():
        moved = not torch.equal(p.detach(), start[name])
        if id(p) in enc:
            changed_enc += moved
        else:
            changed_dec += moved
    assert changed_enc == 0 and changed_dec > 0


def test_early_stopping_and_best_tracking(toy_volumes):
    train, val = toy_volumes
    scores = iter([0.5, 0.7, 0.6, 0.65, 0.1, 0.9])
    cfg = tiny_config(epochs=6, steps_per_epoch=1, validation={"every_epochs": 1, "patience": 2})
    t = Trainer(cfg, PARTICLES, VS, train, val, validator=lambda m, v, tr: {"score": next(scores), "x": 1},
                progress=False)
    hist = t.fit()
    assert [r.val_score for r in hist] == [0.5, 0.7, 0.6, 0.65]  # stopped after 2 epochs without improvement
    assert t.best_epoch == 2 and t.best_score == 0.7 and [r.is_best for r in hist] == [True, True, False, False]
    assert hist[0].row()["x"] == 1


def test_heatmap_target_coordresunet_mixup_and_checkpoint(tmp_path):
    train = [make_volume(1, "a", kind="gaussian")]
    cfg = tiny_config(target={"kind": "gaussian", "radius_fraction": 1.0}, loss={"kind": "huber_laplacian"},
                      network={"name": "coordresunet", "hparams": {"channels": [4, 8], "num_res_units": 1}},
                      augment={"mixup_prob": 1.0}, epochs=1, steps_per_epoch=2)
    t = Trainer(cfg, PARTICLES, VS, train, progress=False)
    hist = t.fit()
    assert np.isfinite(hist[0].train_loss) and hist[0].is_best
    config = t.checkpoint_config()
    assert config["output"] == "sigmoid" and config["classes"] == ["big", "small"] and config["out_channels"] == 2
    path = save_checkpoint(tmp_path / "m.pt", t.inference_model(), config, t.model_card())
    loaded = load_checkpoint(path)
    assert loaded.particles.names == ["big", "small"] and loaded.voxel_size_A == VS
    assert loaded.card["recipe"]["steps"] == 2 and loaded.card["hardware"]["device"] == "cpu"


def test_fbeta_validator_picks_like_tomopick_pick():
    # one class map per class from a heatmap image: an "oracle" network, run through pick_tomogram's windows and
    # max-pool peaks, finds every centre exactly (in both classes)
    vol = make_volume(4, "v", shape=(24, 40, 40), n=4, kind="gaussian")
    centres = np.rint(vol.picks.voxel_coords(VS))
    vol.picks = Picks.from_voxels(centres, VS, vol.picks.frame["particle"].tolist(), run="v")
    tp = training_classes(PARTICLES)
    from tomopick.labels import gaussian_heatmaps

    heat = gaussian_heatmaps(vol.shape, vol.picks, tp, VS, 1.0)
    vol.image = heat[0] + heat[1]

    class Oracle(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):  # class maps from the heatmap image (both classes share it; peaks are 1)
            return torch.cat([20 * (x - 0.5), 20 * (x - 0.5)], dim=1)

    trainer = Trainer(tiny_config(target={"kind": "gaussian", "radius_fraction": 1.0}, loss={"kind": "huber_laplacian"}),
                      PARTICLES, VS, [vol], [vol],
                      progress=False)
    assert trainer.checkpoint_config()["output"] == "sigmoid"
    picks = pick_volume(Oracle().eval(), vol, trainer)
    assert len(picks) == 8 and set(picks.frame["run"]) == {"v"}
    for name in ("big", "small"):
        got = sorted(map(tuple, np.rint(picks.select(picks.frame["particle"] == name).voxel_coords(VS)).astype(int)))
        assert got == sorted(map(tuple, centres.astype(int)))
    result = fbeta_validator(beta=4.0)(Oracle().eval(), [vol], trainer)
    # every particle found by its own class; each is also a false positive of the other class
    assert result["n_picks"] == 8
    p, r = 0.5, 1.0
    f4 = (1 + 16) * p * r / (16 * p + r)
    assert result["fbeta_big"] == pytest.approx(f4) and result["fbeta_small"] == pytest.approx(f4)
    assert result["score"] == pytest.approx(f4)
    # every pick scores sigmoid(10) ≈ 1 (float16 score store): that score is the threshold
    assert result["threshold_big"] == result["threshold_small"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("row, fixed, expected", [
    ({"threshold": 0.3, "tp": 2}, None, 0.3),
    ({"threshold": 0.9, "tp": 2}, None, 0.9),
    ({"threshold": 0.01, "tp": 2}, None, MIN_SCORE),         # floor: nothing below the validation floor was seen
    ({"threshold": float("nan"), "tp": 0}, None, MAX_THRESHOLD),  # class absent from the validation runs
    ({"threshold": 0.2, "tp": 0}, None, MAX_THRESHOLD),      # never found: no evidence for a lower threshold
    ({"threshold": 0.3, "tp": 2}, 0.7, 0.7),                 # a fixed validation threshold is stored as is
])
def test_stored_threshold(row, fixed, expected):
    assert stored_threshold(row, fixed) == pytest.approx(expected)


def test_checkpoint_carries_the_best_validation_thresholds(toy_volumes):
    train, val = toy_volumes
    scores = iter([0.4, 0.6, 0.5])
    thresholds = iter([{"big": 0.3, "small": 0.2}, {"big": 0.25, "small": 0.45}, {"big": 0.1, "small": 0.1}])

    def validator(model, volumes, trainer):
        return {"score": next(scores)} | {f"threshold_{k}": v for k, v in next(thresholds).items()}

    t = Trainer(tiny_config(epochs=3, steps_per_epoch=1), PARTICLES, VS, train, val, validator=validator,
                progress=False)
    t.fit()
    assert t.best_epoch == 2
    pick_cfg = t.checkpoint_config()["pick"]
    assert pick_cfg["thresholds"] == {"big": 0.25, "small": 0.45} and pick_cfg["epoch"] == 2
    buf = io.BytesIO()
    torch.save(t.state(), buf)
    buf.seek(0)
    resumed = Trainer(tiny_config(epochs=3, steps_per_epoch=1), PARTICLES, VS, train, val, progress=False)
    resumed.load_state(torch.load(buf, weights_only=True))
    assert resumed.checkpoint_config()["pick"]["thresholds"] == {"big": 0.25, "small": 0.45}


@pytest.mark.gpu
def test_training_on_cuda_with_mixed_precision(toy_volumes):
    train, val = toy_volumes
    t = Trainer(tiny_config(device="cuda", amp=True), PARTICLES, VS, train, val, progress=False)
    assert t.use_amp and t.device.type == "cuda"
    hist = t.fit()
    assert np.isfinite(hist[-1].train_loss) and np.isfinite(hist[-1].val_loss)
    cpu = Trainer(tiny_config(device="cpu", amp=True), PARTICLES, VS, train, val, progress=False)
    assert not cpu.use_amp  # autocast only ever on CUDA
