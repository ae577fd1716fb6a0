"""A 2.5D slice network: a MONAI 2D UNet on a few neighbouring z-slices (as channels) per output slice.

The network looks like any 3D picking network from outside — ``(n, 1, z, y, x)`` in, ``(n, C, z, y, x)`` logits
out — so training, validation, ``tomopick pick`` and ensembles use it unchanged. Inside, every z-slice becomes
one 2D sample whose channels are the slices ``z − k … z + k`` (edge slices repeat the first/last one), and the 2D
UNet predicts the class maps (or centre heatmaps) of the centre slice. It is much cheaper per voxel than a 3D
network (the role the fast slice detectors of the Kaggle CZII solutions play) and sees less context: in an
ensemble (``tomopick pick --model slices.pt --model net3d.pt``) it proposes evidence the 3D network confirms by
weighted voting (the fused weighted mean, :mod:`tomopick.inference.ensemble`).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


class SliceUNet(torch.nn.Module):
    """2.5D network (see the module docstring).

    Parameters
    ----------
    in_channels
        Must be 1 (one tomogram).
    out_channels
        Classes (+ background for softmax heads).
    context
        ``k``: neighbouring slices on each side (``2k + 1`` channels of the 2D network).
    channels, strides, num_res_units, norm, dropout
        The MONAI 2D UNet.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 7, context: int = 2,
                 channels: Sequence[int] = (16, 32, 64, 128), strides: Sequence[int] = (2, 2, 2),
                 num_res_units: int = 1, norm: str = "batch", dropout: float = 0.0) -> None:
        super().__init__()
        from monai.networks.nets import UNet

        if in_channels != 1:
            raise ValueError("the slice network takes one input channel (a tomogram)")
        if context < 0:
            raise ValueError("context must be >= 0")
        self.context = int(context)
        self.net = UNet(spatial_dims=2, in_channels=2 * self.context + 1, out_channels=out_channels,
                        channels=tuple(channels), strides=tuple(strides), num_res_units=num_res_units, norm=norm,
                        dropout=dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, z, y, w = x.shape
        k = self.context
        vol = x[:, 0]
        if k:
            vol = F.pad(vol.unsqueeze(1), (0, 0, 0, 0, k, k), mode="replicate").squeeze(1)  # (n, z + 2k, y, x)
        stack = vol.unfold(1, 2 * k + 1, 1)                       # (n, z, y, x, 2k + 1)
        stack = stack.permute(0, 1, 4, 2, 3).reshape(n * z, 2 * k + 1, y, w).contiguous()
        out = self.net(stack)                                     # (n·z, C, y, x)
        return out.reshape(n, z, -1, y, w).permute(0, 2, 1, 3, 4).contiguous()
