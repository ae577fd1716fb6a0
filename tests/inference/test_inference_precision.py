"""Network arithmetic of the sliding window (#17): batch-norm folding, probabilities computed in place, the
``--precision`` default taken from :class:`PickOptions` and printed after picking."""

import numpy as np
import pytest
import torch

from tomopick.inference.options import PickOptions
from tomopick.inference.sliding import (
    InferenceSettings, describe_precision, fold_batchnorm, make_predictor, predict_to_store, resolve_precision,
    to_float16,
)
from tomopick.inference.normalize import robust_stats
from tomopick.models import build_model


def bundled_like_unet(seed: int = 0) -> torch.nn.Module:
    """A small residual UNet of the bundled architecture (MONAI Convolution blocks with batch norm), with
    non-trivial running statistics so that folding changes every weight."""
    torch.manual_seed(seed)
    model = build_model("resunet", 1, 4, channels=[4, 8, 16], strides=[2, 2], num_res_units=1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm3d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.3, 0.3)
    return model.eval()


def test_fold_batchnorm_same_function_and_leaves_the_model_alone():
    model = bundled_like_unet()
    n_norms = sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules())
    folded = fold_batchnorm(model)
    assert n_norms == 6 and folded is not model
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in folded.modules()) == 0
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in model.modules()) == n_norms  # original untouched
    x = torch.randn(2, 1, 16, 24, 32)
    with torch.inference_mode():
        ref, out = model(x), folded(x)
    assert ref.abs().max() > 1.0
    assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


def test_fold_batchnorm_keeps_training_models_and_models_without_norms():
    model = bundled_like_unet().train()
    assert fold_batchnorm(model) is model
    plain = torch.nn.Sequential(torch.nn.Conv3d(1, 2, 3)).eval()
    assert fold_batchnorm(plain) is plain


@pytest.mark.parametrize("channels", [[1, 2, 3], [3, 1]])  # a range (a view) and a reordering (a copy)
@pytest.mark.parametrize("tta", [1, 2, 4])
def test_predictor_probabilities_equal_torch_softmax(channels, tta):
    model = bundled_like_unet(1)
    x = torch.randn(1, 1, 16, 16, 16)
    predict = make_predictor(model, output="softmax", channels=channels, tta=tta)
    with torch.inference_mode():
        got = predict(x)
        ref = torch.zeros_like(got)
        flips = {1: [()], 2: [(), (2, 3, 4)], 4: [(), (2,), (3,), (4,)]}[tta]  # 2: inverted through the centre
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            p = torch.softmax(model(xi), dim=1)[:, channels]
            ref += torch.flip(p, dims) if dims else p
        ref /= len(flips)
    assert got.shape == (1, len(channels), 16, 16, 16)
    assert torch.allclose(got, ref, atol=2e-6)


def test_predictor_sigmoid_in_place():
    model = bundled_like_unet(2)
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.inference_mode():
        got = make_predictor(model, output="sigmoid", channels=[0, 1, 2, 3])(x)
        ref = torch.sigmoid(model(x))
    assert torch.allclose(got, ref, atol=2e-6)


def test_to_float16_zeroes_small_scores_without_touching_the_input():
    values = np.array([0.0, 2.0**-10, 2.0**-9, 0.25, 0.999], dtype=np.float32)
    kept = values.copy()
    out = to_float16(values)
    assert out.dtype == np.float16
    np.testing.assert_array_equal(out, np.array([0.0, 0.0, 2.0**-9, 0.25, 0.999], dtype=np.float16))
    np.testing.assert_array_equal(values, kept)
    t = torch.from_numpy(values)
    np.testing.assert_array_equal(to_float16(t.half()), out)
    assert torch.equal(t, torch.from_numpy(kept))


def test_folded_store_matches_unfolded_network_scores():
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((32, 40, 48)).astype(np.float32)
    model = bundled_like_unet(3)
    settings = InferenceSettings(roi_size=(32, 32, 32), overlap=0.25, divisor=4)
    kw = dict(output="softmax", channels=[1, 2, 3], stats=robust_stats(vol), norm_kwargs={"clip": None})
    with predict_to_store(vol, model, settings=settings, **kw) as store:
        got = store.array.astype(np.float32)
    # reference: the same plan with the unfolded network and torch.softmax
    import tomopick.inference.sliding as sliding

    real = sliding.fold_batchnorm
    try:
        sliding.fold_batchnorm = lambda m: m
        with predict_to_store(vol, model, settings=settings, **kw) as store:
            ref = store.array.astype(np.float32)
    finally:
        sliding.fold_batchnorm = real
    assert np.abs(got - ref).max() <= 2e-3  # float16 storage: one rounding step at most
    assert got.max() - got.min() > 0.2  # scores that vary (the comparison means something)


def test_describe_precision():
    assert describe_precision("fp32") == "fp32"
    assert describe_precision("bf16") == "bf16"
    auto = describe_precision("auto")
    assert auto.startswith(resolve_precision("auto") + " (auto: ")
    assert describe_precision("auto", "cuda:0") == "mixed precision (cuda:0)"


def test_cli_precision_default_comes_from_pick_options(monkeypatch, tmp_path, capsys):
    """``tomopick pick`` without --precision uses PickOptions' default (one line to flip) and prints it."""
    from tomopick.cli.main import main
    import tomopick.workflows.pick as workflow

    seen = {}

    class Report:
        runs = [{"run": "t", "counts": {"ribosome": 0}, "seconds": 0.1}]
        picks: list = []
        outputs = ["p.star"]

    def fake_pick(inputs, model, *, options, **kw):
        seen["precision"] = options.precision
        return Report()

    monkeypatch.setattr(workflow, "pick", fake_pick)
    tomo = tmp_path / "t.mrc"
    tomo.write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tomo), "--out", str(tmp_path / "p.star"), "-q"])
    assert exc.value.code == 0
    assert seen["precision"] == PickOptions().precision
    assert f"network arithmetic: {describe_precision(PickOptions().precision)}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tomo), "--out", str(tmp_path / "p.star"), "-q", "--precision", "auto"])
    assert exc.value.code == 0 and seen["precision"] == "auto"
    assert f"network arithmetic: {describe_precision('auto')}" in capsys.readouterr().out
