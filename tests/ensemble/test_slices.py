"""The 2.5D slice network: each output slice is the 2D UNet on its neighbouring slices (edges repeated), it trains
with the ordinary Trainer, and it joins an ensemble like any model."""

import sys
from pathlib import Path

import numpy as np
import torch

from tomopick.data import CZII, Tomogram
from tomopick.inference.ensemble import ensemble_model
from tomopick.inference.normalize import RobustStats, robust_config
from tomopick.inference.options import PickOptions
from tomopick.inference.picking import inference_settings, pick_tomogram
from tomopick.models import build_model
from tomopick.models.checkpoint import LoadedModel
from tomopick.training import Trainer

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _training_toy import PARTICLES, make_volume, tiny_config  # noqa: E402


def test_each_slice_sees_its_neighbours():
    torch.manual_seed(0)
    net = build_model("slice-unet", 1, 3, context=1, channels=[4, 8], strides=[2]).eval()
    x = torch.randn(2, 1, 5, 16, 16)
    with torch.no_grad():
        out = net(x)
        assert out.shape == (2, 3, 5, 16, 16)
        torch.testing.assert_close(out[:, :, 2], net.net(x[:, 0, 1:4]))
        edge = torch.stack([x[:, 0, 4], x[:, 0, 4], x[:, 0, 3]][::-1], dim=1)  # slices 3, 4, 4 (last repeated)
        torch.testing.assert_close(out[:, :, 4], net.net(edge))


def test_trains_with_the_trainer():
    cfg = tiny_config(network={"name": "slice-unet", "hparams": {"context": 1, "channels": [4, 8],
                                                                 "strides": [2]}},
                      epochs=1, steps_per_epoch=3)
    trainer = Trainer(cfg, PARTICLES, 20.0, [make_volume(1, "a")], progress=False)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.fit()
    assert trainer.step == 3
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters()))


def test_joins_an_ensemble_with_a_3d_network():
    torch.manual_seed(1)
    names = ["apo-ferritin", "ribosome"]

    def loaded(network, hparams):
        config = {"network": {"name": network, "hparams": hparams}, "in_channels": 1, "out_channels": 3,
                  "output": "softmax", "classes": ["background", *names],
                  "particles": CZII.subset(names).model_dump(mode="json"), "voxel_size_A": 10.0,
                  "patch_size": [16, 16, 16], "normalisation": robust_config(), "target": {"kind": "sphere"}}
        return LoadedModel(build_model(network, 1, 3, **hparams).eval(), config, path=network)

    slices = loaded("slice-unet", {"context": 2, "channels": [4, 8], "strides": [2]})
    net3d = loaded("unet", {"channels": [4, 8, 16], "strides": [2, 2]})
    fused = ensemble_model([net3d, slices], [0.7, 0.3])
    vol = np.random.default_rng(0).normal(0, 1, (16, 32, 32)).astype(np.float32)
    maps = {}
    options = PickOptions(threshold=0.99, roi_size=(16, 32, 32), overlap=0.0)
    pick_tomogram(Tomogram(vol, 10.0), fused, options, stats=RobustStats(0.0, 1.0, 1),
                  settings=inference_settings(fused, options),
                  on_scores=lambda ms: maps.update({m.source.split(":")[1]: np.asarray(m.data[...]) for m in ms}))
    with torch.no_grad():
        x = torch.from_numpy(vol)[None, None]
        want = 0.7 * torch.softmax(net3d.model(x), 1) + 0.3 * torch.softmax(slices.model(x), 1)
    for c, name in enumerate(names, start=1):
        np.testing.assert_allclose(maps[name], want[0, c].numpy(), atol=2e-3)
