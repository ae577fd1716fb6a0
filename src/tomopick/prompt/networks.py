"""Networks of the promptable picker (ProPicker's design, written from its description).

* :class:`PromptEncoder` — a small 3D CNN mapping a prompt sub-tomogram ``(k, 1, s, s, s)`` (default ``s = 37`` at
  10 Å) to an L2-normalised embedding ``(k, d)`` (default ``d = 32``); trained by deep metric learning.
* :class:`FiLMUNet` — a 3D U-Net whose decoder is conditioned on the embedding: after every upsampling stage the
  features ``h`` (channels ``c``) become ``(1 + A·z) ⊙ h + B·z`` with per-stage linear maps ``A, B: R^d → R^c``
  (Feature-wise Linear Modulation; the ``1 +`` keeps an untrained FiLM near the identity). The encoder half never
  sees the prompt, so :meth:`FiLMUNet.encode` runs **once** per sub-volume and :meth:`FiLMUNet.decode` once per
  prompt.
* :class:`PromptablePicker` — both together, the unit saved in one checkpoint. Named in the model registry as
  ``"promptable-film-unet"`` (``in_channels=1, out_channels=1``: a binary "is this the prompted particle" logit
  map); the registry imports :func:`build_promptable` on first use (``tomopick.models.registry.LAZY_BUILDERS``),
  so importing this module registers nothing.

Building blocks are MONAI's (:class:`monai.networks.blocks.Convolution` / ``ResidualUnit``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

NETWORK_NAME = "promptable-film-unet"


def _block(cin: int, cout: int, stride: int, res_units: int, norm: str) -> nn.Module:
    from monai.networks.blocks import Convolution, ResidualUnit

    if res_units > 0:
        return ResidualUnit(3, cin, cout, strides=stride, subunits=res_units, norm=norm)
    return nn.Sequential(Convolution(3, cin, cout, strides=stride, norm=norm),
                         Convolution(3, cout, cout, strides=1, norm=norm))


class PromptEncoder(nn.Module):
    """3D CNN: prompt sub-tomogram ``(k, 1, s, s, s)`` → unit-norm embedding ``(k, embed_dim)``.

    Parameters
    ----------
    embed_dim
        Embedding size ``d`` (32 by default, as in ProPicker).
    channels
        Channels of the stride-2 stages (each halves the box); global average pooling follows, so any box size
        ``s ≥ 2**len(channels)`` works.
    res_units
        Residual sub-units per stage (0: two plain convolutions).
    norm
        MONAI norm name (``"instance"`` by default: independent of batch composition).
    """

    def __init__(self, embed_dim: int = 32, channels: Sequence[int] = (16, 32, 64), res_units: int = 0,
                 norm: str = "instance") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 1
        for c in channels:
            layers.append(_block(cin, c, 2, res_units, norm))
            cin = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Linear(cin, cin), nn.PReLU(), nn.Linear(cin, embed_dim))
        self.embed_dim = int(embed_dim)

    def forward(self, prompts: torch.Tensor) -> torch.Tensor:
        """Embeddings ``(k, d)``, each of unit L2 norm, of prompts ``(k, 1, s, s, s)`` (normalised intensities)."""
        h = self.features(prompts).mean(dim=(2, 3, 4))
        return nn.functional.normalize(self.head(h), dim=1)


class FiLM(nn.Module):
    """Channel-wise modulation ``h ↦ (1 + A z) ⊙ h + B z`` of features ``(n, c, …)`` by embeddings ``(n, d)``."""

    def __init__(self, embed_dim: int, channels: int) -> None:
        super().__init__()
        self.scale = nn.Linear(embed_dim, channels, bias=False)
        self.shift = nn.Linear(embed_dim, channels, bias=False)

    def forward(self, h: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        shape = (z.shape[0], -1) + (1,) * (h.dim() - 2)
        return h * (1.0 + self.scale(z).view(shape)) + self.shift(z).view(shape)


class FiLMUNet(nn.Module):
    """3D U-Net with a FiLM-conditioned decoder.

    Parameters
    ----------
    embed_dim
        Size of the conditioning embedding.
    channels
        Channels per resolution level, finest first; there are ``len(channels) - 1`` stride-2 downsamplings, so
        input sizes must be multiples of ``2 ** (len(channels) - 1)``.
    out_channels
        Output logit channels (1: binary target of the prompted particle).
    res_units, norm
        As :class:`PromptEncoder`.
    """

    def __init__(self, embed_dim: int = 32, channels: Sequence[int] = (16, 32, 64, 128), out_channels: int = 1,
                 res_units: int = 0, norm: str = "instance") -> None:
        super().__init__()
        from monai.networks.blocks import Convolution

        channels = [int(c) for c in channels]
        if len(channels) < 2:
            raise ValueError("FiLMUNet needs at least two levels")
        self.channels = channels
        self.down = nn.ModuleList(
            [_block(1, channels[0], 1, res_units, norm)]
            + [_block(channels[i - 1], channels[i], 2, res_units, norm) for i in range(1, len(channels))]
        )
        self.up = nn.ModuleList()
        self.merge = nn.ModuleList()
        self.film = nn.ModuleList()
        for i in range(len(channels) - 1, 0, -1):
            self.up.append(Convolution(3, channels[i], channels[i - 1], strides=2, kernel_size=3, norm=norm,
                                       is_transposed=True))
            self.merge.append(_block(2 * channels[i - 1], channels[i - 1], 1, res_units, norm))
            self.film.append(FiLM(embed_dim, channels[i - 1]))
        self.bottleneck_film = FiLM(embed_dim, channels[-1])
        self.out = nn.Conv3d(channels[0], out_channels, kernel_size=1)

    @property
    def divisor(self) -> int:
        """Input sizes must be multiples of this."""
        return 2 ** (len(self.channels) - 1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The prompt-independent encoder pass: features of every level, finest first, for ``x`` ``(n, 1, z, y, x)``."""
        feats = []
        h = x
        for layer in self.down:
            h = layer(h)
            feats.append(h)
        return feats

    def decode(self, feats: list[torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, out_channels, z, y, x)`` from :meth:`encode`'s features and embeddings ``z`` ``(n, d)`` (or
        ``(1, d)``, broadcast over the batch)."""
        n = feats[0].shape[0]
        if z.shape[0] != n:
            z = z.expand(n, -1)
        h = self.bottleneck_film(feats[-1], z)
        for k, (up, merge, film) in enumerate(zip(self.up, self.merge, self.film)):
            skip = feats[-2 - k]
            h = up(h)
            h = merge(torch.cat([h, skip], dim=1))
            h = film(h, z)
        return self.out(h)

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x), z)


class PromptablePicker(nn.Module):
    """Prompt encoder + FiLM U-Net segmenter.

    ``forward(x, prompts)`` with ``x`` ``(n, 1, Z, Y, X)`` and prompts ``(k, 1, s, s, s)`` returns logits
    ``(n, k, Z, Y, X)``: channel ``j`` answers "where are particles like prompt ``j``". The segmenter's encoder runs
    once for all ``k`` prompts; its decoder runs ``k`` times.
    """

    def __init__(self, encoder: PromptEncoder, segmenter: FiLMUNet) -> None:
        super().__init__()
        self.encoder = encoder
        self.segmenter = segmenter

    @property
    def embed_dim(self) -> int:
        return self.encoder.embed_dim

    def embed(self, prompts: torch.Tensor) -> torch.Tensor:
        """Unit-norm embeddings ``(k, d)`` of prompts ``(k, 1, s, s, s)``."""
        return self.encoder(prompts)

    def segment(self, x: torch.Tensor, embeddings: torch.Tensor) -> torch.Tensor:
        """Logits ``(n, k, Z, Y, X)`` for sub-volumes ``x`` ``(n, 1, Z, Y, X)`` and embeddings ``(k, d)``: one
        encoder pass, ``k`` decoder passes."""
        feats = self.segmenter.encode(x)
        return torch.cat([self.segmenter.decode(feats, embeddings[j : j + 1]) for j in range(embeddings.shape[0])],
                         dim=1)

    def forward(self, x: torch.Tensor, prompts: torch.Tensor) -> torch.Tensor:
        return self.segment(x, self.embed(prompts))


def build_promptable(in_channels: int = 1, out_channels: int = 1, embed_dim: int = 32,
                     encoder_channels: Sequence[int] = (16, 32, 64), unet_channels: Sequence[int] = (16, 32, 64, 128),
                     res_units: int = 0, norm: str = "instance") -> PromptablePicker:
    """Registry builder for :class:`PromptablePicker` (``in_channels`` must be 1; ``out_channels`` is per prompt)."""
    if in_channels != 1:
        raise TypeError("the promptable picker takes one input channel")
    return PromptablePicker(
        PromptEncoder(embed_dim, encoder_channels, res_units, norm),
        FiLMUNet(embed_dim, unet_channels, out_channels, res_units, norm),
    )
