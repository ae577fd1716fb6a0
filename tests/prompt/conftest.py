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
