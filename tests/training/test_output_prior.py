"""Sigmoid (Gaussian heatmap) networks start near the background value instead of 0.5."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tomopick.models import build_model
from tomopick.training import Trainer
from tomopick.training.loop import init_output_prior, output_layer

from _training_toy import PARTICLES, VS, make_volume, tiny_config

NETWORKS = [("unet", {"channels": [4, 8, 16], "strides": [2, 2]}),
            ("resunet", {"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1}),
            ("coordresunet", {"channels": [4, 8], "num_res_units": 1}),
            ("slice-unet", {"channels": [4, 8, 16], "strides": [2, 2]})]


def _mean_output(model, shape=(1, 1, 16, 32, 32)) -> float:
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(np.random.default_rng(0).normal(0, 1, shape).astype(np.float32))
        return float(torch.sigmoid(model(x)).mean())


@pytest.mark.parametrize("name,hparams", NETWORKS)
def test_output_prior_sets_the_output_bias(name, hparams):
    torch.manual_seed(0)
    model = build_model(name, 1, 3, **hparams)
    assert 0.3 < _mean_output(model) < 0.7  # the default initialisation: about 0.5 everywhere
    assert init_output_prior(model, 3, 0.01)
    assert output_layer(model, 3).bias.detach().numpy() == pytest.approx(math.log(0.01 / 0.99), abs=1e-6)
    assert _mean_output(model) < 0.05


def test_swinunetr_output_layer_is_found():
    model = build_model("swinunetr", 1, 2, feature_size=12)
    layer = output_layer(model, 2)
    assert layer is model.out.conv.conv


def test_trainer_applies_the_prior_to_heatmaps_only_and_not_when_fine_tuning():
    heat = dict(target={"kind": "gaussian", "radius_fraction": 1.0}, loss={"kind": "huber_laplacian"})
    train = [make_volume(1, "a", kind="gaussian")]
    logit = math.log(0.01 / 0.99)
    t = Trainer(tiny_config(**heat), PARTICLES, VS, train, progress=False)
    assert output_layer(t.model, 2).bias.detach().numpy() == pytest.approx(logit, abs=1e-6)
    off = Trainer(tiny_config(**heat, output_prior=None), PARTICLES, VS, train, progress=False)
    assert np.all(np.abs(output_layer(off.model, 2).bias.detach().numpy()) < 1.0)
    state = {k: v.clone() for k, v in off.model.state_dict().items()}
    tuned = Trainer(tiny_config(**heat), PARTICLES, VS, train, init_state=state, progress=False)
    assert torch.equal(output_layer(tuned.model, 2).bias, output_layer(off.model, 2).bias)
    cls = Trainer(tiny_config(), PARTICLES, VS, [make_volume(1, "a")], progress=False)  # softmax: untouched
    assert np.all(np.abs(output_layer(cls.model, 3).bias.detach().numpy()) < 1.0)


def test_heatmap_background_falls_within_a_few_steps_only_with_the_prior():
    # 30 steps of the tomoCPT loss: from the default initialisation the background of a held-out volume is still
    # near 0.5 (above the centres); with the prior it starts near 0 and the centres rise well above it
    heat = dict(target={"kind": "gaussian", "radius_fraction": 1.0}, loss={"kind": "huber_laplacian"},
                network={"name": "resunet", "hparams": {"channels": [8, 16, 32], "strides": [2, 2],
                                                        "num_res_units": 1}},
                lr=0.003, epochs=1, steps_per_epoch=30, warmup_steps=0, ema_decay=None, particle_fraction=0.7)
    train, held_out = make_volume(1, "a", kind="gaussian"), make_volume(2, "b", kind="gaussian")
    means = {}
    for prior in (None, 0.01):
        t = Trainer(tiny_config(**heat, output_prior=prior), PARTICLES, VS, [train], progress=False)
        t.fit()
        t.model.eval()
        with torch.no_grad():
            pred = torch.sigmoid(t.model(torch.from_numpy(held_out.image[None, None]))).numpy()[0]
        means[prior] = (pred[held_out.target == 0].mean(), pred[held_out.target > 0.9].mean())
    assert means[None][0] > 0.2 and means[None][1] < means[None][0]
    assert means[0.01][0] < 0.05 and means[0.01][1] > 0.1 and means[0.01][1] > 5 * means[0.01][0]
