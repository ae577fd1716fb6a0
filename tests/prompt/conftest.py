"""Fixtures for the promptable-picker tests."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def tiny_model():
    """A seeded promptable picker small enough for CPU tests (~30 k parameters)."""
    from tomopick.prompt.networks import build_promptable

    with torch.random.fork_rng():  # seeded initialisation without touching the global generator
        torch.manual_seed(0)
        return build_promptable(embed_dim=8, encoder_channels=(4, 8), unet_channels=(4, 8, 16)).eval()


@pytest.fixture(scope="session")
def trained_tiny():
    """A tiny model trained in seconds: encoder metric-learned on 4 shapes (50 steps), segmenter 80 steps on 3
    ball/rod scenes. Returns (model, prompt pool, segmenter history, encoder state before stage 2)."""
    import numpy as np

    from prompt_fixtures import SHAPES, ball_rod_scene, make_shape
    from tomopick.prompt.networks import build_promptable
    from tomopick.prompt.training import ViewSettings, prompt_pool, train_encoder, train_segmenter

    torch.set_num_threads(1)
    views = ViewSettings(size=17, snr=(2.0, 4.0), max_tilt_deg=(60.0, 60.0), blur_vox=(0.5, 0.5), shift_vox=0.5)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_promptable(embed_dim=8, encoder_channels=(4, 8, 16), unet_channels=(4, 8, 16))
    train_encoder(model.encoder, [make_shape(s) for s in SHAPES], steps=50, rng=np.random.default_rng(1),
                  kinds_per_batch=4, views_per_kind=4, views=views, lr=3e-3)
    scenes = [ball_rod_scene(s) for s in range(3)]
    pool = prompt_pool(scenes, size=17, per_kind=8, rng=np.random.default_rng(2))
    enc_before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    hist = train_segmenter(model, scenes, pool, steps=80, rng=np.random.default_rng(3), patch=(24, 24, 24), batch=2,
                           prompts_per_patch=2, lr=3e-3)
    return model, pool, hist, enc_before
