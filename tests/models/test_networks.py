"""Registered networks: shapes, coordinate channels, encoder selection, checkpoint round trips."""

from __future__ import annotations

import sys

import pytest
import torch

from tomopick.errors import TomopickError
from tomopick.models import build_model, load_checkpoint, model_names, save_checkpoint
from tomopick.models.networks import coordinate_channels
from tomopick.models.registry import encoder_parameters

SMALL = {
    "unet": {"channels": (4, 8, 16), "strides": (2, 2)},
    "resunet": {"channels": (4, 8, 16), "strides": (2, 2), "num_res_units": 1},
    "coordresunet": {"channels": (4, 8, 16), "num_res_units": 1},
}


def test_registry_lists_all_networks():
    assert {"unet", "resunet", "coordresunet", "swinunetr"} <= set(model_names())
    with pytest.raises(TomopickError, match="unknown network"):
        build_model("nope")
    with pytest.raises(TomopickError, match="bad hyper-parameters"):
        build_model("coordresunet", 1, 3, bogus=1)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_small_networks_map_patch_to_logits(name):
    torch.manual_seed(0)
    model = build_model(name, 1, 3, **SMALL[name])
    out = model(torch.randn(2, 1, 16, 24, 32))
    assert out.shape == (2, 3, 16, 24, 32)
    enc = {id(p) for p in encoder_parameters(model)}
    every = {id(p) for p in model.parameters()}
    assert enc and enc < every  # a proper, non-empty subset


def test_coordinate_channels():
    c = coordinate_channels((3, 5, 2), 2, torch.device("cpu"), torch.float32)
    assert c.shape == (2, 3, 3, 5, 2)
    assert c[0, 0, :, 0, 0].tolist() == [-1.0, 0.0, 1.0]  # z varies along z
    assert c[1, 1, 0, :, 1].tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    assert c[0, 2, 2, 4, :].tolist() == [-1.0, 1.0]


def test_coordconv_and_pyramid_change_the_network():
    full = build_model("coordresunet", 1, 2, channels=(4, 8), num_res_units=1)
    bare = build_model("coordresunet", 1, 2, channels=(4, 8), num_res_units=1, coord_conv=False, pyramid=False)
    # first encoder sees image + 3 coordinate channels; level 1 also the pooled image
    n_full = sum(p.numel() for p in full.parameters())
    n_bare = sum(p.numel() for p in bare.parameters())
    assert n_full > n_bare
    assert bare(torch.randn(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_swinunetr_imports_without_torchvision():
    model = build_model("swinunetr", 1, 3, feature_size=12, depths=(1, 1, 1, 1)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 64, 64, 64))
    assert out.shape == (1, 3, 64, 64, 64)
    assert "torchvision" not in sys.modules
    assert encoder_parameters(model)


def test_checkpoint_round_trip_coordresunet(tmp_path):
    torch.manual_seed(1)
    model = build_model("coordresunet", 1, 3, **SMALL["coordresunet"]).eval()
    config = {"network": {"name": "coordresunet", "hparams": {"channels": [4, 8, 16], "num_res_units": 1}},
              "in_channels": 1, "out_channels": 3, "output": "softmax", "classes": ["background", "a", "b"],
              "particles": {"name": "x", "particles": [{"name": "a", "radius_A": 50}, {"name": "b", "radius_A": 70}]},
              "voxel_size_A": 10.0, "patch_size": [16, 16, 16], "normalisation": {"method": "robust"}}
    path = save_checkpoint(tmp_path / "m.pt", model, config, {"name": "test"})
    loaded = load_checkpoint(path)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(x), model(x))
    assert loaded.classes == ["background", "a", "b"] and loaded.card == {"name": "test"}
    half = load_checkpoint(save_checkpoint(tmp_path / "h.pt", model, config, half=True))
    with torch.no_grad():
        torch.testing.assert_close(half.model(x), model(x), atol=0.05, rtol=0.05)


def test_half_checkpoint_keeps_tensors_float16_cannot_hold(tmp_path):
    # a batch-norm running variance above float16's 65504 (the retrained czii-10A has 1.5e6) must stay float32
    torch.manual_seed(2)
    model = build_model("resunet", 1, 2, channels=[4, 8], strides=[2], num_res_units=1, norm="batch").eval()
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm3d))
    with torch.no_grad():
        bn.running_var.fill_(1.5e6)
        bn.running_mean.fill_(300.0)
    config = {"network": {"name": "resunet", "hparams": {"channels": [4, 8], "strides": [2], "num_res_units": 1,
                                                         "norm": "batch"}},
              "in_channels": 1, "out_channels": 2, "output": "softmax", "classes": ["background", "a"],
              "particles": {"name": "x", "particles": [{"name": "a", "radius_A": 50}]},
              "voxel_size_A": 10.0, "patch_size": [16, 16, 16], "normalisation": {"method": "robust"}}
    path = save_checkpoint(tmp_path / "h.pt", model, config, half=True)
    state = torch.load(path, weights_only=True)["state_dict"]
    name = next(k for k, v in model.state_dict().items() if v is bn.running_var or torch.equal(v, bn.running_var))
    assert state[name].dtype == torch.float32 and float(state[name].max()) == 1.5e6
    weights = [v for k, v in state.items() if k.endswith("conv.weight")]
    assert weights and all(v.dtype == torch.float16 for v in weights)
    loaded = load_checkpoint(path).model.state_dict()
    assert torch.equal(loaded[name], bn.running_var) and torch.equal(loaded[name.replace("var", "mean")],
                                                                      bn.running_mean)
