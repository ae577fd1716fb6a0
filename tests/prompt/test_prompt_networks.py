"""FiLM U-Net and prompt encoder: shapes, FiLM arithmetic, conditioning, shared encoder pass, checkpoints."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tomopick.prompt.networks import NETWORK_NAME, FiLM, FiLMUNet, PromptEncoder
from tomopick.prompt.picking import embed_prompts, predict_maps


def test_film_is_channelwise_scale_and_shift():
    film = FiLM(embed_dim=2, channels=3)
    with torch.no_grad():
        film.scale.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]))
        film.shift.weight.copy_(torch.tensor([[0.5, 0.0], [0.0, 0.0], [0.0, -1.0]]))
    h = torch.arange(2 * 3 * 2, dtype=torch.float32).view(2, 3, 2)  # (n, c, spatial)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    out = film(h, z)
    # sample 0: scale 1 + (1, 0, 1) = (2, 1, 2), shift (0.5, 0, 0); sample 1: scale (1, 3, 2), shift (0, 0, -1)
    expected = torch.tensor([[[0 * 2 + 0.5, 1 * 2 + 0.5], [2.0, 3.0], [8.0, 10.0]],
                             [[6.0, 7.0], [8 * 3.0, 9 * 3.0], [10 * 2 - 1.0, 11 * 2 - 1.0]]])
    assert torch.allclose(out, expected)


def test_encoder_embeddings_are_unit_norm(tiny_model):
    z = tiny_model.embed(torch.randn(3, 1, 17, 17, 17, generator=torch.Generator().manual_seed(1)))
    assert z.shape == (3, 8)
    assert torch.allclose(z.norm(dim=1), torch.ones(3), atol=1e-5)
    default = PromptEncoder()
    assert default.embed_dim == 32


def test_film_conditioning_changes_output_per_prompt(tiny_model):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(1, 1, 16, 16, 16, generator=g)
    z = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    with torch.no_grad():
        out = tiny_model.segment(x, z)
        again = tiny_model.segment(x, z[:1])
    assert out.shape == (1, 2, 16, 16, 16)
    diff = (out[0, 0] - out[0, 1]).abs().mean().item()
    assert diff > 1e-2 * out.abs().mean().item()  # different prompts → different maps
    assert torch.allclose(out[:, :1], again, atol=1e-6)  # same prompt → same map, independent of the others


def test_unet_rejects_single_level():
    with pytest.raises(ValueError):
        FiLMUNet(channels=(4,))


def test_k_prompts_cost_one_encoder_pass_and_k_decoder_passes(tiny_model, monkeypatch):
    seg = tiny_model.segmenter
    calls = {"encode": 0, "decode": 0}
    enc, dec = seg.encode, seg.decode

    def count_encode(x):
        calls["encode"] += 1
        return enc(x)

    def count_decode(feats, z):
        calls["decode"] += 1
        return dec(feats, z)

    monkeypatch.setattr(seg, "encode", count_encode)
    monkeypatch.setattr(seg, "decode", count_decode)
    volume = np.random.default_rng(0).normal(size=(16, 32, 32)).astype(np.float32)
    boxes = np.random.default_rng(1).normal(size=(3, 17, 17, 17)).astype(np.float32)
    counts = {}
    for k in (1, 3):
        calls.update(encode=0, decode=0)
        maps = predict_maps(tiny_model, volume, embed_prompts(tiny_model, boxes[:k]), roi=16, stride=16, batch_size=1)
        assert maps.shape == (k, 16, 32, 32)
        counts[k] = dict(calls)
    # 1 × 2 × 2 = 4 windows, one per batch: 4 encoder passes whatever k; 4·k decoder passes
    assert counts[1] == {"encode": 4, "decode": 4}
    assert counts[3] == {"encode": 4, "decode": 12}


def test_grouped_prompts_average_embeddings(tiny_model):
    boxes = np.random.default_rng(3).normal(size=(3, 17, 17, 17)).astype(np.float32)
    single = embed_prompts(tiny_model, boxes)
    grouped = embed_prompts(tiny_model, boxes, groups=[0, 0, 1])
    mean = torch.nn.functional.normalize(single[:2].mean(0, keepdim=True), dim=1)
    assert grouped.shape == (2, 8)
    assert torch.allclose(grouped[0:1], mean, atol=1e-6)
    assert torch.allclose(grouped[1], single[2], atol=1e-6)


def test_checkpoint_round_trip_through_registry(tiny_model, tmp_path):
    from tomopick.models import load_checkpoint, save_checkpoint

    config = {"network": {"name": NETWORK_NAME, "hparams": {"embed_dim": 8, "encoder_channels": [4, 8],
                                                             "unet_channels": [4, 8, 16]}},
              "in_channels": 1, "out_channels": 1}
    path = save_checkpoint(tmp_path / "p.pt", tiny_model, config)
    loaded = load_checkpoint(path).model
    x = torch.randn(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(4))
    p = torch.randn(2, 1, 17, 17, 17, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(loaded(x, p), tiny_model(x, p))
