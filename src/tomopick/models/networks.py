"""Networks beyond MONAI's UNet: a DeepETPicker-style 3D residual UNet with coordinate channels and image-pyramid
inputs, and MONAI's SwinUNETR. Both are registered in :mod:`tomopick.models.registry`.

``CoordResUNet`` (built from MONAI blocks, not a copy of DeepETPicker's code):

* **CoordConv:** three channels holding the voxel's ``z, y, x`` position in the patch, scaled to ``[-1, 1]``, are
  appended to the input of every encoder level (so the network can tell where in the patch it is).
* **Image pyramid:** encoder level ``k`` also receives the input image average-pooled by ``2**k`` (the multi-scale
  inputs of DeepETPicker), concatenated to the downsampled features.
* residual units (MONAI ``ResidualUnit``) in encoder and decoder, transposed-convolution upsampling, skip
  concatenation, a final 1×1×1 convolution to ``out_channels`` logits.
* With ``batch`` or ``instance`` norm the blocks come from :mod:`tomopick.models.unet` (MONAI's ``ResidualUnit`` and
  ``Convolution`` rebuilt from ``torch.nn``: same parameter names, same numbers; tests/models/test_lean_unet.py), so a
  pick with this network does not pay MONAI's 1.5 s import; other norms use MONAI's blocks.

Input ``(n, c_in, z, y, x)`` with each spatial size divisible by ``2**(len(channels)-1)``; output
``(n, c_out, z, y, x)``.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn


def coordinate_channels(shape_zyx: Sequence[int], batch: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``(batch, 3, z, y, x)`` tensor of voxel positions ``z, y, x`` scaled to ``[-1, 1]`` across the patch."""
    axes = [torch.linspace(-1.0, 1.0, int(n), device=device, dtype=dtype) if n > 1
            else torch.zeros(1, device=device, dtype=dtype) for n in shape_zyx]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=0)
    return grid.unsqueeze(0).expand(batch, -1, -1, -1, -1)


def _check_3x3(dims: int, kernel_size: int) -> None:
    if dims != 3 or kernel_size != 3:
        raise ValueError(f"lean blocks are 3D with kernel 3, not dims={dims}, kernel_size={kernel_size}")


def _blocks(norm: object) -> tuple:
    """``(ResidualUnit, Convolution)`` constructors taking MONAI's arguments: tomopick's lean rebuilds for the norms
    they reproduce (:data:`tomopick.models.unet.NORMS`), MONAI's classes otherwise."""
    from tomopick.models import unet

    if isinstance(norm, str) and norm.lower() in unet.NORMS:
        def residual_unit(dims, in_ch, out_ch, *, strides, kernel_size, subunits, norm, dropout):
            _check_3x3(dims, kernel_size)
            return unet.ResidualUnit(in_ch, out_ch, strides=strides, subunits=subunits, norm=norm.lower(),
                                     dropout=dropout)

        def convolution(dims, in_ch, out_ch, *, strides, kernel_size, is_transposed, norm, dropout):
            _check_3x3(dims, kernel_size)
            return unet.convolution_block(in_ch, out_ch, strides=strides, norm=norm.lower(), dropout=dropout,
                                          transposed=is_transposed)

        return residual_unit, convolution
    from monai.networks.blocks import Convolution, ResidualUnit

    return ResidualUnit, Convolution


class CoordResUNet(nn.Module):
    """DeepETPicker-style 3D residual UNet with CoordConv and image-pyramid inputs.

    Parameters
    ----------
    in_channels, out_channels
        Image channels in, logits out.
    channels
        Feature channels per level, e.g. ``(16, 32, 64, 128)``; each level after the first halves the resolution.
    num_res_units
        Residual sub-units per ``ResidualUnit``.
    norm
        MONAI norm name (``"batch"``, ``"instance"``).
    dropout
        Dropout probability inside the residual units.
    coord_conv
        Append coordinate channels at every encoder level.
    pyramid
        Append the pooled input image at every encoder level below the first.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 7, channels: Sequence[int] = (16, 32, 64, 128),
                 num_res_units: int = 2, norm: str = "batch", dropout: float = 0.0, coord_conv: bool = True,
                 pyramid: bool = True) -> None:
        super().__init__()
        ResidualUnit, Convolution = _blocks(norm)
        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise TypeError("channels needs at least two levels")
        self.coord_conv = bool(coord_conv)
        self.pyramid = bool(pyramid)
        self.in_channels = int(in_channels)
        extra = 3 if self.coord_conv else 0
        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        prev = in_channels
        for level, ch in enumerate(channels):
            if level > 0:
                self.downs.append(ResidualUnit(3, prev, ch, strides=2, kernel_size=3, subunits=num_res_units,
                                               norm=norm, dropout=dropout))
                prev = ch
            side = extra + (in_channels if (self.pyramid and level > 0) else 0)
            self.encoders.append(ResidualUnit(3, prev + side, ch, strides=1, kernel_size=3, subunits=num_res_units,
                                              norm=norm, dropout=dropout))
            prev = ch
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        for level in range(len(channels) - 1, 0, -1):
            hi, lo = channels[level], channels[level - 1]
            self.ups.append(Convolution(3, hi, lo, strides=2, kernel_size=3, is_transposed=True, norm=norm,
                                        dropout=dropout))
            self.decoders.append(ResidualUnit(3, 2 * lo, lo, strides=1, kernel_size=3, subunits=num_res_units,
                                              norm=norm, dropout=dropout))
        self.head = nn.Conv3d(channels[0], out_channels, kernel_size=1)

    def _side(self, image: torch.Tensor, feats: torch.Tensor, level: int) -> torch.Tensor:
        parts = [feats]
        if self.pyramid and level > 0:
            parts.append(nn.functional.adaptive_avg_pool3d(image, feats.shape[2:]))
        if self.coord_conv:
            parts.append(coordinate_channels(feats.shape[2:], feats.shape[0], feats.device, feats.dtype))
        return torch.cat(parts, dim=1) if len(parts) > 1 else feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image = x
        skips = []
        h = x
        for level, enc in enumerate(self.encoders):
            if level > 0:
                h = self.downs[level - 1](h)
            h = enc(self._side(image, h, level))
            skips.append(h)
        del skips[-1]  # the bottom level is h; each skip is let go once concatenated (less memory held)
        for up, dec in zip(self.ups, self.decoders):
            skip = skips.pop()
            h = up(h)
            if h.shape[2:] != skip.shape[2:]:  # odd sizes: crop/pad to the skip
                h = nn.functional.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            del skip
            h = dec(h)
        return self.head(h)

    # names of parameters belonging to the encoder (for fine-tuning with a frozen encoder)
    def encoder_parameters(self):
        yield from self.encoders.parameters()
        yield from self.downs.parameters()
