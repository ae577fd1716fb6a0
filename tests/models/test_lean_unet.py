"""The lean UNet (tomopick.models.unet) is MONAI's UNet without importing MONAI: same names, same numbers."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from monai.networks.nets import UNet

from tomopick.models.registry import build_model, encoder_parameters
from tomopick.models.unet import LeanUNet, lean_unet, supported

CASES = [  # (channels, strides, residual units, norm, dropout)
    ((16, 32, 64, 128), (2, 2, 2), 1, "batch", 0.0),  # the bundled czii-10A architecture
    ((16, 32, 64), (2, 2), 0, "batch", 0.0),  # plain convolutions (family "unet")
    ((8, 16, 32, 64), (2, 2, 2), 2, "instance", 0.1),
    ((4, 8, 16), (1, 2), 3, "BATCH", 0.0),  # a stride-1 level, upper-case norm
    ((8, 16), (2,), 1, "batch", 0.2),  # two levels: the bottom layer right under the top
]


def _assert_same_network(lean, ref, shape):
    """Same parameter names and shapes; after loading ``ref``'s weights, bit-identical outputs in train mode (batch
    statistics, dropout on the same random stream) and eval mode."""
    assert [(k, tuple(v.shape)) for k, v in lean.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in ref.state_dict().items()]
    lean.load_state_dict(ref.state_dict(), strict=True)
    x = torch.randn(*shape)
    for mode in ("train", "eval"):
        ref.train(mode == "train")
        lean.train(mode == "train")
        torch.manual_seed(1)
        expected = ref(x)
        torch.manual_seed(1)
        got = lean(x)
        assert got.shape == (shape[0], 3, *shape[2:])
        assert torch.equal(got, expected), f"{mode}: max difference {float((got - expected).abs().max())}"
    # inference (no autograd): the lean blocks add and activate in place — still the same numbers, in float32
    # and under CPU bfloat16 autocast (how tomopick pick runs on CPUs with native bf16)
    for autocast in (False, True):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            expected, got = ref(x), lean(x)
        assert got.dtype == expected.dtype and torch.equal(got, expected), f"inference, autocast {autocast}"


@pytest.mark.parametrize("channels,strides,res_units,norm,dropout", CASES)
def test_same_parameters_and_outputs_as_monai(channels, strides, res_units, norm, dropout):
    torch.manual_seed(0)
    monai_net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=channels, strides=strides,
                     num_res_units=res_units, dropout=dropout, norm=norm)
    lean = lean_unet(1, 3, channels, strides, res_units, dropout, norm)
    _assert_same_network(lean, monai_net, (2, 1, 16, 24, 32))
    # running statistics updated identically in train mode
    for (name, a), b in zip(lean.state_dict().items(), monai_net.state_dict().values()):
        assert torch.equal(a, b), name


def test_registry_builds_lean_and_falls_back_to_monai():
    net = build_model("resunet", channels=[16, 32, 64, 128], strides=[2, 2, 2], num_res_units=1)
    assert isinstance(net, LeanUNet)
    assert not supported("group", (2, 2), (8, 16, 32))
    other = build_model("unet", channels=[8, 16, 32], strides=[2, 2], norm=("group", {"num_groups": 4}))
    assert isinstance(other, UNet)
    # the encoder of the lean network is what it is for MONAI's: the first block of every level
    ref = UNet(spatial_dims=3, in_channels=1, out_channels=7, channels=(16, 32, 64, 128), strides=(2, 2, 2),
               num_res_units=1, norm="batch")
    ref_names = {id(p): n for n, p in ref.named_parameters()}
    lean_names = {id(p): n for n, p in net.named_parameters()}
    assert [lean_names[id(p)] for p in encoder_parameters(net)] == [ref_names[id(p)] for p in encoder_parameters(ref)]
    assert len(encoder_parameters(net)) == 3 * 7  # 3 down levels: conv w+b, norm w+b, PReLU, residual w+b


def test_loading_a_picking_model_does_not_import_monai(tmp_path):
    """The point of the lean UNet: ``tomopick pick`` with a resunet checkpoint (or a coordresunet one, batch norm)
    starts without MONAI."""
    code = (
        "import sys\n"
        "from tomopick.models.registry import build_model\n"
        "from tomopick.models import load_checkpoint\n"
        "net = build_model('resunet', channels=[8, 16, 32], strides=[2, 2], num_res_units=1)\n"
        "net = build_model('coordresunet', channels=[8, 16, 32], num_res_units=2, coord_conv=False)\n"
        "import tomopick.inference.picking, tomopick.workflows.pick\n"
        "print(sorted(m for m in sys.modules if m == 'monai' or m.startswith('monai.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


COORD_CASES = [  # (channels, residual units, norm, dropout, coord_conv, pyramid)
    ((16, 32, 64, 128), 2, "batch", 0.0, False, True),  # the bundled czii-robust-10A architecture
    ((8, 16, 32, 64, 128), 1, "batch", 0.0, False, True),
    ((8, 16, 32), 2, "instance", 0.1, True, True),
    ((4, 8), 1, "BATCH", 0.0, True, False),
]


@pytest.mark.parametrize("channels,res_units,norm,dropout,coord_conv,pyramid", COORD_CASES)
def test_coordresunet_lean_blocks_match_monai_blocks(monkeypatch, channels, res_units, norm, dropout, coord_conv,
                                                     pyramid):
    from monai.networks.blocks import Convolution, ResidualUnit

    from tomopick.models import networks

    torch.manual_seed(0)
    lean = networks.CoordResUNet(1, 3, channels, res_units, norm, dropout, coord_conv, pyramid)
    monkeypatch.setattr(networks, "_blocks", lambda norm: (ResidualUnit, Convolution))
    ref = networks.CoordResUNet(1, 3, channels, res_units, norm, dropout, coord_conv, pyramid)
    assert type(ref.encoders[0]) is ResidualUnit and type(lean.encoders[0]) is not ResidualUnit
    _assert_same_network(lean, ref, (2, 1, 16, 16, 32))


def test_coordresunet_other_norms_use_monai():
    from monai.networks.blocks import ResidualUnit

    from tomopick.models.networks import CoordResUNet

    net = CoordResUNet(1, 2, (4, 8), 1, ("group", {"num_groups": 2}), 0.0, False, True)
    assert type(net.encoders[0]) is ResidualUnit
    assert net(torch.randn(1, 1, 8, 8, 8)).shape == (1, 2, 8, 8, 8)


def test_inference_blocks_work_in_place():
    """Without autograd the PReLU overwrites its input and a residual unit adds into its convolutions' output:
    the same numbers (above) with one full-size tensor fewer each; with autograd nothing is overwritten."""
    from tomopick.models.unet import PReLU, ResidualUnit

    act = PReLU()
    with torch.no_grad():
        act.weight.fill_(0.3)
    x = torch.randn(2, 4, 5, 6, 7)
    expected = torch.nn.functional.prelu(x, act.weight.detach())
    with torch.no_grad():
        y = x.clone()
        out = act(y)
    assert out.data_ptr() == y.data_ptr() and torch.equal(out, expected)
    y = x.clone()
    out = act(y)  # autograd on: out of place, input untouched
    assert out.data_ptr() != y.data_ptr() and torch.equal(y, x) and torch.allclose(out, expected)
    unit = ResidualUnit(4, 4, strides=1, subunits=1, norm="batch", dropout=0.0).eval()  # identity residual
    with torch.no_grad():
        expected = unit.conv(x) + x
        got = unit(x)
    assert torch.equal(got, expected) and got.data_ptr() != x.data_ptr()


def _peak_live_bytes(net, x):
    """Largest sum of the sizes of the tensors the network's operations created that were alive at once
    (tensors of at least 64 KiB, released when their Python object is)."""
    import weakref

    from torch.utils._python_dispatch import TorchDispatchMode

    live, state = {}, {"now": 0, "peak": 0}

    def release(key):
        state["now"] -= live.pop(key, 0)

    class Track(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in out if isinstance(out, (tuple, list)) else [out]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().nbytes() >= 1 << 16:
                    key = t.untyped_storage().data_ptr()
                    if key not in live:
                        live[key] = t.untyped_storage().nbytes()
                        state["now"] += live[key]
                        weakref.finalize(t, release, key)
            state["peak"] = max(state["peak"], state["now"])
            return out

    with torch.inference_mode(), Track():
        y = net(x)
    del y
    return state["peak"]


def test_coordresunet_inference_holds_few_full_size_tensors():
    """The bundled picker's architecture at inference: the decoder's concatenation (2 × 8 channels) and two
    8-channel tensors of the full window at once — 4.0 full-size 8-channel float32 tensors at the peak, where
    out-of-place blocks and skips kept to the end held 8.3 (bench/RESULTS.md "pick", memory)."""
    from tomopick.models.networks import CoordResUNet

    torch.manual_seed(0)
    net = CoordResUNet(1, 7, (8, 16, 32, 64, 128), 1, "batch", 0.0, False, True).eval()
    x = torch.randn(1, 1, 32, 32, 32)
    unit = 8 * x.numel() * 4  # one 8-channel float32 tensor of the window
    peak = _peak_live_bytes(net, x)
    assert peak <= 4.9 * unit, peak / unit
