"""Config, sampling, augmentation and losses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tomopick.errors import TomopickError
from tomopick.training import PatchSampler, crop, load_config, resolve_particles
from tomopick.training.augment import Augmenter, mixup
from tomopick.training.config import AugmentConfig, LossConfig
from tomopick.training.losses import build_loss, huber_laplacian_loss, laplacian_3d

REPO = Path(__file__).resolve().parents[2]


def test_shipped_config_validates():
    cfg = load_config(REPO / "configs" / "czii-10A.yaml")
    assert cfg.network.name == "resunet" and cfg.output == "softmax"
    assert Path(cfg.data.path).is_absolute()
    assert resolve_particles(cfg).names[0] == "apo-ferritin" and len(resolve_particles(cfg)) == 6


def test_bad_configs_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: {path: x}\nepochz: 3\n")
    with pytest.raises(TomopickError, match=r"bad.yaml: invalid training config: epochz"):
        load_config(bad)
    bad.write_text("data: {path: x}\ntarget: {kind: gaussian}\n")
    with pytest.raises(TomopickError, match="huber_laplacian"):
        load_config(bad)
    bad.write_text("data: {path: x}\nparticles: czii\nclasses: [ribosome, unicorn]\n")
    with pytest.raises(TomopickError, match="unicorn"):
        resolve_particles(load_config(bad))
    with pytest.raises(TomopickError, match="not found"):
        load_config(tmp_path / "missing.yaml")


def test_crop_pads_with_zeros():
    a = np.arange(27, dtype=np.float32).reshape(3, 3, 3) + 1
    out = crop(a, (-1, 1, 2), (2, 3, 3))
    assert out.shape == (2, 3, 3)
    assert out[0].sum() == 0  # z = -1 is outside
    np.testing.assert_array_equal(out[1, :2, 0], a[0, 1:3, 2])
    assert out[1, 2].sum() == 0 and out[1, :, 1:].sum() == 0
    c = crop(np.ones((2, 4, 4, 4)), (0, 0, 0), (2, 2, 2))
    assert c.shape == (2, 2, 2, 2)


def test_sampler_balances_classes_and_centres_particles(toy_volumes):
    train, _ = toy_volumes
    sampler = PatchSampler(train, (16, 16, 16), particle_fraction=1.0)
    assert sampler.classes == ["big", "small"]
    rng = np.random.default_rng(0)
    hits = {1: 0, 2: 0}
    for _ in range(200):
        img, tgt, info = sampler.draw(rng)
        assert img.shape == (1, 16, 16, 16) and tgt.shape == (1, 16, 16, 16) and info["kind"] == "particle"
        for k in hits:
            hits[k] += int((tgt == k).any())
    # every particle-centred crop holds a particle; both classes appear about equally often
    assert hits[1] > 80 and hits[2] > 80
    rand = PatchSampler(train, (16, 16, 16), particle_fraction=0.0)
    kinds = {rand.draw(rng)[2]["kind"] for _ in range(10)}
    assert kinds == {"random"}
    # same generator state -> same patch
    a = sampler.draw(np.random.default_rng(3))
    b = sampler.draw(np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0]) and a[2] == b[2]


def test_sampler_pads_small_volumes(toy_volumes):
    train, _ = toy_volumes
    sampler = PatchSampler(train, (32, 64, 16), particle_fraction=0.5)
    img, tgt, info = sampler.draw(np.random.default_rng(1))
    assert img.shape == (1, 32, 64, 16)
    assert info["start"][0] == -4 and info["start"][1] == -8  # 24 -> 32 and 48 -> 64: centred


def test_spatial_augmentation_moves_image_and_label_together():
    cfg = AugmentConfig(gamma_prob=0, contrast_prob=0, noise_prob=0, flip_prob=0.5, rot90_xy_prob=1.0,
                        rotate_z_prob=0.5, scale_prob=0.5)
    aug = Augmenter(cfg, heatmap=False, seed=3)
    rng = np.random.default_rng(0)
    lab = np.zeros((1, 12, 16, 16), dtype=np.uint8)
    lab[0, 2:5, 3:7, 9:14] = 1
    lab[0, 7:10, 10:14, 2:5] = 2
    for _ in range(5):
        out_img, out_lab = aug(lab.astype(np.float32), lab.copy())
        assert out_lab.dtype == np.uint8 and set(np.unique(out_lab)) <= {0, 1, 2}
        # the image (a copy of the labels) went through the same geometry: it rounds to the label
        agree = (np.rint(out_img) == out_lab).mean()
        assert agree > 0.97
    aug.reseed(11)
    a = aug(lab.astype(np.float32), lab.copy())
    aug.reseed(11)
    b = aug(lab.astype(np.float32), lab.copy())
    np.testing.assert_array_equal(a[0], b[0])
    mixed, lam, perm = mixup(torch.stack([torch.zeros(1), torch.ones(1)]), rng, 0.4)
    assert perm.tolist() == [1, 0] and mixed[0].item() == pytest.approx(1 - lam)


@pytest.mark.parametrize("kind", ["dice_ce", "dice", "tversky", "focal", "ce"])
def test_class_losses_prefer_the_right_answer(kind):
    torch.manual_seed(0)
    target = torch.randint(0, 3, (2, 1, 6, 6, 6))
    good = torch.nn.functional.one_hot(target[:, 0], 3).permute(0, 4, 1, 2, 3).float() * 8.0
    weights = [0.2, 1.0, 1.0] if kind in ("ce", "dice_ce", "focal") else None
    loss = build_loss(LossConfig(kind=kind, class_weights=weights), 3)
    assert float(loss(good, target)) < float(loss(-good, target))
    if kind == "ce":
        ref = torch.nn.functional.cross_entropy(good, target[:, 0], weight=torch.tensor(weights))
        assert float(loss(good, target)) == pytest.approx(float(ref))
    with pytest.raises(ValueError, match="class_weights"):
        build_loss(LossConfig(kind=kind, class_weights=[1.0, 1.0]), 3)


def test_huber_laplacian():
    assert laplacian_3d(torch.full((1, 2, 4, 4, 4), 3.0)).abs().max() == 0
    x = torch.zeros(1, 1, 5, 5, 5)
    x[0, 0, 2, 2, 2] = 1
    lap = laplacian_3d(x)
    assert lap[0, 0, 2, 2, 2] == -6 and lap[0, 0, 2, 2, 3] == 1 and lap.sum() == 0
    target = torch.rand(1, 2, 6, 6, 6) * 0.98 + 0.01
    perfect = torch.logit(target)
    assert float(huber_laplacian_loss(perfect, target)) < 1e-5
    assert float(huber_laplacian_loss(torch.zeros_like(target), target)) > 0.01


def test_huber_term_has_slope_one_beyond_delta():
    # prediction 0.5 everywhere, target 0: the Huber term divided by delta is |e| - delta/2 (smooth L1), so the
    # Laplacian weight is relative to an L1-sized term whatever delta is
    logits = torch.zeros(1, 1, 4, 4, 4)
    target = torch.zeros(1, 1, 4, 4, 4)
    for delta, expected in ((0.1, 0.45), (0.2, 0.40), (1.0, 0.125 / 1.0)):
        got = float(huber_laplacian_loss(logits, target, delta=delta, laplacian_weight=0.0))
        assert got == pytest.approx(expected, rel=1e-5)


def test_bce_term_keeps_a_gradient_where_the_map_is_wrongly_zero():
    # a map saturated at 0 (logit -10) under a target of 1: Huber and Laplacian pass the sigmoid's slope
    # (~4.5e-5) on; the cross-entropy term's logit gradient is w (p - t), about 1000 times larger
    target = torch.zeros(1, 1, 5, 5, 5)
    target[0, 0, 2, 2, 2] = 1.0
    grads = {}
    for bce in (0.0, 1.0):
        logits = torch.full((1, 1, 5, 5, 5), -10.0, requires_grad=True)
        huber_laplacian_loss(logits, target, bce_weight=bce).backward()
        grads[bce] = float(-logits.grad[0, 0, 2, 2, 2])
    assert grads[0.0] > 0 and grads[1.0] > 1000 * grads[0.0]
    # its minimum stays at the soft target: no Huber or cross-entropy gradient where sigmoid(logits) == target
    soft = torch.rand(1, 2, 4, 4, 4) * 0.9 + 0.05
    logits = torch.logit(soft).requires_grad_(True)
    huber_laplacian_loss(logits, soft, bce_weight=1.0, laplacian_weight=0.0).backward()
    assert float(logits.grad.abs().max()) < 1e-6
