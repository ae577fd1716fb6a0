"""A hand-set network for picking tests: a 3³ box filter whose apo-ferritin logit rises with local brightness."""

from __future__ import annotations

import torch


def box_filter(in_channels: int = 1, out_channels: int = 3) -> torch.nn.Module:
    """Channel 1 (apo-ferritin) = 3 × (3³ mean of the input) − 6; background 0, ribosome −20 (never picked)."""
    conv = torch.nn.Conv3d(in_channels, out_channels, 3, padding=1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        conv.weight[1] = 3.0 / 27
        conv.bias[1] = -6.0
        conv.bias[2] = -20.0
    return conv
