"""MONAI's 3D ``UNet`` rebuilt from plain ``torch.nn`` modules, for start-up speed.

Why this exists: ``import monai`` loads every MONAI sub-package (its ``__init__`` walks them all, and with them
pandas, scikit-learn, jsonschema, scipy.signal and matplotlib's pyplot): 1.5–2.7 s of a 15 s ``tomopick pick``
of a CZII-size tomogram on 2 cores, for a network made of six kinds of layer (bench/RESULTS.md "speed levers
(#17)", fourth pass). :func:`lean_unet` builds the *same* module tree — the same parameter and buffer names, so
checkpoints trained with MONAI's class load strictly, and the same arithmetic (tests/test_lean_unet.py compares
the two outputs, training and eval mode, for the configurations the registry builds) — without importing MONAI.

Scope: ``spatial_dims=3``, kernel 3 down and up, PReLU activations, ``"NDA"`` ordering, bias on, ``batch`` or
``instance`` norm — what :func:`tomopick.models.registry.build_model` asks of MONAI's UNet. Anything else goes to
MONAI (:func:`supported`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

NORMS = ("batch", "instance")


def supported(norm: str, strides: Sequence[int], channels: Sequence[int]) -> bool:
    """Whether :func:`lean_unet` reproduces MONAI's UNet for these hyper-parameters (else build MONAI's)."""
    return (isinstance(norm, str) and norm.lower() in NORMS and len(channels) >= 2
            and len(strides) == len(channels) - 1 and all(isinstance(s, int) and s >= 1 for s in strides))


class SkipConnection(nn.Module):
    """``cat([x, submodule(x)], dim=1)`` (MONAI ``SkipConnection``, mode ``cat``); the wrapped block is
    ``.submodule`` as in MONAI, so parameter names match."""

    def __init__(self, submodule: nn.Module) -> None:
        super().__init__()
        self.submodule = submodule

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.submodule(x)], dim=1)


class ResidualUnit(nn.Module):
    """``conv(x) + residual(x)``: ``conv`` a sequence ``unit0 … unitN`` of convolution + norm/dropout/PReLU blocks,
    ``residual`` the identity or a convolution matching channels and stride (MONAI ``ResidualUnit``)."""

    def __init__(self, in_channels: int, out_channels: int, *, strides: int, subunits: int, norm: str,
                 dropout: float, last_conv_only: bool = False) -> None:
        super().__init__()
        self.conv = nn.Sequential()
        channels, stride = in_channels, strides
        subunits = max(1, subunits)
        for i in range(subunits):
            self.conv.add_module(f"unit{i:d}", convolution_block(channels, out_channels, strides=stride, norm=norm,
                                                            dropout=dropout,
                                                            conv_only=last_conv_only and i == subunits - 1))
            channels, stride = out_channels, 1
        self.residual: nn.Module = nn.Identity()
        if strides != 1:
            self.residual = nn.Conv3d(in_channels, out_channels, 3, strides, 1, bias=True)
        elif in_channels != out_channels:
            self.residual = nn.Conv3d(in_channels, out_channels, 1, 1, 0, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            res = self.residual(x)
            return self.conv(x) + res
        # inference: the sum goes into the convolutions' fresh output (one full-size tensor fewer per unit; the
        # same numbers — unless the dtypes differ, e.g. an identity residual of float32 under bf16 autocast)
        out = self.conv(x)
        res = self.residual(x)
        if out.dtype == res.dtype and out.shape == res.shape and out.data_ptr() != x.data_ptr():
            return out.add_(res)
        return out + res


class PReLU(nn.PReLU):
    """:class:`torch.nn.PReLU` that, without autograd and with one shared slope, works in place on its input (a
    leaky ReLU with the slope rounded to the input's dtype: the same numbers as ``prelu``, one full-size tensor
    fewer). Only used where its input is a fresh intermediate (after a convolution and norm, :func:`_adn`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or self.num_parameters != 1 or not x.is_floating_point():
            return super().forward(x)
        return nn.functional.leaky_relu_(x, float(self.weight.detach().to(x.dtype)))


def _adn(channels: int, norm: str, dropout: float) -> nn.Sequential:
    """Norm, dropout, PReLU as MONAI's ``ADN(ordering="NDA")`` names them (``N``, ``D``, ``A``); the PReLU works in
    place at inference (:class:`PReLU`: its input, the norm's output or a convolution's with the norm folded in,
    is never used again)."""
    adn = nn.Sequential()
    adn.add_module("N", nn.BatchNorm3d(channels) if norm == "batch" else nn.InstanceNorm3d(channels))
    adn.add_module("D", nn.Dropout(p=float(dropout)))  # MONAI's Convolution default dropout_dim is 1
    adn.add_module("A", PReLU())
    return adn


def convolution_block(in_channels: int, out_channels: int, *, strides: int, norm: str, dropout: float,
                 conv_only: bool = False, transposed: bool = False) -> nn.Sequential:
    """A ``conv`` (kernel 3, "same" padding; transposed: output padding ``strides − 1``) then ``adn`` unless
    ``conv_only`` (MONAI ``Convolution``)."""
    block = nn.Sequential()
    if transposed:
        conv: nn.Module = nn.ConvTranspose3d(in_channels, out_channels, 3, strides, 1, output_padding=strides - 1,
                                             bias=True)
    else:
        conv = nn.Conv3d(in_channels, out_channels, 3, strides, 1, bias=True)
    block.add_module("conv", conv)
    if not conv_only:
        block.add_module("adn", _adn(out_channels, norm, dropout))
    return block


class LeanUNet(nn.Module):
    """MONAI ``UNet(spatial_dims=3, …)`` with the defaults tomopick uses; the network is ``.model`` as in MONAI."""

    def __init__(self, in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
                 num_res_units: int = 0, dropout: float = 0.0, norm: str = "batch") -> None:
        super().__init__()
        if not supported(norm, strides, channels):
            raise ValueError(f"LeanUNet does not build norm={norm!r}, channels={channels}, strides={strides}")
        self.norm, self.dropout, self.num_res_units = norm.lower(), float(dropout), int(num_res_units)
        self.model = self._block(in_channels, out_channels, list(channels), list(strides), is_top=True)

    def _down(self, in_channels: int, out_channels: int, strides: int) -> nn.Module:
        if self.num_res_units > 0:
            return ResidualUnit(in_channels, out_channels, strides=strides, subunits=self.num_res_units,
                                norm=self.norm, dropout=self.dropout)
        return convolution_block(in_channels, out_channels, strides=strides, norm=self.norm, dropout=self.dropout)

    def _up(self, in_channels: int, out_channels: int, strides: int, is_top: bool) -> nn.Module:
        conv = convolution_block(in_channels, out_channels, strides=strides, norm=self.norm, dropout=self.dropout,
                            conv_only=is_top and self.num_res_units == 0, transposed=True)
        if self.num_res_units == 0:
            return conv
        return nn.Sequential(conv, ResidualUnit(out_channels, out_channels, strides=1, subunits=1, norm=self.norm,
                                                dropout=self.dropout, last_conv_only=is_top))

    def _block(self, in_channels: int, out_channels: int, channels: list[int], strides: list[int],
               is_top: bool) -> nn.Module:
        c, s = channels[0], strides[0]
        if len(channels) > 2:
            sub = self._block(c, c, channels[1:], strides[1:], is_top=False)
            up_channels = 2 * c
        else:
            sub = self._down(c, channels[1], 1)  # the bottom layer
            up_channels = c + channels[1]
        return nn.Sequential(self._down(in_channels, c, s), SkipConnection(sub),
                             self._up(up_channels, out_channels, s, is_top))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def lean_unet(in_channels: int, out_channels: int, channels: Sequence[int], strides: Sequence[int],
              num_res_units: int = 0, dropout: float = 0.0, norm: str = "batch") -> LeanUNet:
    """:class:`LeanUNet` for ``in_channels → out_channels`` (see the module docstring for its scope)."""
    return LeanUNet(in_channels, out_channels, channels, strides, num_res_units, dropout, norm)
