"""The device-generic GPU path of the sliding window (#17): the next batch read, normalised (and pinned) in a
thread while the network runs, mixed precision on the GPU. Every test runs on the CPU and, where there is one, on a
CUDA GPU (skipped with the reason "no CUDA GPU" otherwise)."""

import numpy as np
import pytest
import torch

from tomopick.inference.normalize import robust_stats
from tomopick.inference.sliding import InferenceSettings, make_predictor, predict_to_store

DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU")])]


def blob_net() -> torch.nn.Module:
    """Two classes: class 1 = a smoothed copy of the input (bright blobs), class 0 = a constant."""
    m = torch.nn.Conv3d(1, 2, 3, padding=1)
    with torch.no_grad():
        m.weight.zero_()
        m.weight[1, 0] = 2.0 / 27
        m.bias.copy_(torch.tensor([0.0, -2.0]))
    return m.eval()


def volume() -> np.ndarray:
    rng = np.random.default_rng(0)
    vol = rng.standard_normal((40, 56, 72)).astype(np.float32)
    vol[10:16, 20:26, 30:36] += 4.0
    return vol


def scores(vol, device, **settings_kw) -> np.ndarray:
    settings = InferenceSettings(roi_size=(32, 32, 32), overlap=0.25, divisor=8, device=device, **settings_kw)
    kw = dict(output="softmax", channels=[1], stats=robust_stats(vol), norm_kwargs={"clip": None})
    with predict_to_store(vol, blob_net().to(device), settings=settings, **kw) as store:
        return store.array.astype(np.float32)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("batch_size", [1, 3])
def test_prefetch_gives_the_same_scores(device, batch_size):
    vol = volume()
    ref = scores(vol, device, prefetch=False, batch_size=batch_size, amp=False)
    got = scores(vol, device, prefetch=True, batch_size=batch_size, amp=False)
    np.testing.assert_array_equal(got, ref)
    assert ref.max() > 0.9 and ref[0, 20:30, 40:50, 50:60].max() < 0.5  # the blob, and background elsewhere


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("amp_dtype", ["bf16", "fp16"])
def test_mixed_precision_close_to_fp32(device, amp_dtype):
    vol = volume()
    ref = scores(vol, device, amp=False)
    got = scores(vol, device, amp=True, amp_dtype=amp_dtype)
    if device == "cpu":  # amp is a GPU setting: the CPU's arithmetic is `precision`
        np.testing.assert_array_equal(got, ref)
    else:
        assert np.abs(got - ref).max() < 0.02


@pytest.mark.parametrize("device", DEVICES)
def test_predictor_returns_probabilities_on_the_device(device):
    predict = make_predictor(blob_net().to(device), output="softmax", channels=[1], device=device, amp=False)
    with torch.inference_mode():
        p = predict(torch.zeros(2, 1, 8, 8, 8))
    assert p.device.type == torch.device(device).type and p.shape == (2, 1, 8, 8, 8)
    assert torch.allclose(p, torch.full_like(p, 1 / (1 + np.e**2)), atol=1e-6)  # softmax of (0, -2)


def test_bad_amp_dtype():
    with pytest.raises(ValueError, match="unknown amp_dtype 'int8'"):
        InferenceSettings(amp_dtype="int8")
