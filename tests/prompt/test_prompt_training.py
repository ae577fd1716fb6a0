"""Metric learning separates shapes; segmenter training learns where prompted particles are (tiny, seeded)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from prompt_fixtures import SHAPES, ball_rod_scene, make_shape
from tomopick.prompt.networks import PromptEncoder
from tomopick.prompt.picking import embed_prompts, predict_maps
from tomopick.prompt.training import (
    LabelledVolume,
    ViewSettings,
    batch_hard_triplet_loss,
    finetune_segmenter,
    prompt_pool,
    train_encoder,
    train_segmenter,
)
from tomopick.prompt.views import normalise_box, rotate_density, wedge_mask

VIEWS = ViewSettings(size=17, snr=(2.0, 4.0), max_tilt_deg=(60.0, 60.0), blur_vox=(0.5, 0.5), shift_vox=0.5)


def test_triplet_loss_hand_computed():
    e = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.6, 0.8]])
    labels = torch.tensor([0, 0, 1, 1])
    # anchor 0: hardest positive d(0,1)=√2, hardest negative d(0,2)=0 → √2 + m
    # anchor 1: pos √2, neg min(d(1,2)=√2, d(1,3)=√0.4) → √2 - √0.4 + m
    # anchor 2: pos d(2,3)=√0.8, neg min(0, √2) = 0 → √0.8 + m
    # anchor 3: pos √0.8, neg min(d(3,0)=√0.8, d(3,1)=√0.4) → √0.8 - √0.4 + m
    m = 0.1
    expected = (2**0.5 + m + 2**0.5 - 0.4**0.5 + m + 0.8**0.5 + m + 0.8**0.5 - 0.4**0.5 + m) / 4
    assert batch_hard_triplet_loss(e, labels, m).item() == pytest.approx(expected, abs=1e-6)


def test_wedge_mask_and_rotation():
    mask = wedge_mask((8, 8, 8), 60.0)
    assert mask[0, 0, 0] and mask[0, 3, 2]  # DC and the k_y axis... (kz = 0) are measured
    assert not mask[3, 0, 1]  # |kz| = 3/8 > |kx| tan 60° = 0.217
    assert mask[1, 0, 1]  # |kz| = 1/8 ≤ 0.217
    rod = make_shape("rod", 15)  # along x
    from scipy.spatial.transform import Rotation

    turned = rotate_density(rod, Rotation.from_euler("z", 90, degrees=True).as_matrix(), 15)  # x → y
    assert turned[7, 7 + 5, 7] > 0.9 and turned[7, 7, 7 + 5] < 0.1


def _triplet_accuracy(encoder, densities, rng):
    boxes = np.stack([VIEWS.render(densities[k], rng) for k in range(len(densities)) for _ in range(6)])
    lab = np.repeat(np.arange(len(densities)), 6)
    with torch.no_grad():
        d = torch.cdist(*(encoder(torch.from_numpy(boxes[:, None])),) * 2).numpy()
    ok = total = 0
    for a in range(len(lab)):
        pos = d[a][(lab == lab[a]) & (np.arange(len(lab)) != a)]
        neg = d[a][lab != lab[a]]
        ok += int((pos[:, None] < neg[None, :]).sum())
        total += pos.size * neg.size
    return ok / total


def test_metric_learning_brings_rotated_copies_of_a_shape_together():
    torch.set_num_threads(1)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        encoder = PromptEncoder(embed_dim=8, channels=(4, 8, 16))
    densities = [make_shape(s) for s in SHAPES]
    before = _triplet_accuracy(encoder, densities, np.random.default_rng(99))
    hist = train_encoder(encoder, densities, steps=70, rng=np.random.default_rng(1), kinds_per_batch=4,
                         views_per_kind=4, views=VIEWS, lr=3e-3)
    after = _triplet_accuracy(encoder, densities, np.random.default_rng(99))
    # fresh views (new orientations, noise): same shape closer than a different shape in ≥ 90 % of triplets
    assert after >= 0.9, (before, after)
    assert after > before + 0.2
    assert hist.last < 0.75 * hist.first


def test_segmenter_training_finds_particles_and_keeps_encoder_frozen(trained_tiny):
    model, pool, hist, enc_before = trained_tiny
    assert hist.last < 0.7 * hist.first
    assert all(torch.equal(v, enc_before[k]) for k, v in model.encoder.state_dict().items())
    test = ball_rod_scene(10)
    maps = predict_maps(model, test.volume, embed_prompts(model, np.stack([pool[0][0], pool[1][0]])), roi=16,
                        stride=8)
    idx = test.centres_zyx_vox.astype(int)
    at_particles = maps[:, idx[:, 0], idx[:, 1], idx[:, 2]]
    background = np.median(maps, axis=(1, 2, 3))
    assert np.all(at_particles.min(axis=1) > background + 0.2)


def test_finetune_changes_only_the_segmenter(trained_tiny):
    import copy

    model = copy.deepcopy(trained_tiny[0])
    scene = ball_rod_scene(20)
    labels = np.where(scene.labels == 1, 1, 0)  # the user labelled the rods only
    enc = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    seg = {k: v.clone() for k, v in model.segmenter.state_dict().items()}
    hist = finetune_segmenter(model, [LabelledVolume(scene.volume, labels, scene.centres_zyx_vox, scene.kinds)],
                              trained_tiny[1][1][:2], steps=5, rng=np.random.default_rng(4), patch=(24, 24, 24))
    assert len(hist.loss) == 5 and np.all(np.isfinite(hist.loss))
    assert all(torch.equal(v, enc[k]) for k, v in model.encoder.state_dict().items())
    assert any(not torch.equal(v, seg[k]) for k, v in model.segmenter.state_dict().items()
               if v.is_floating_point())
