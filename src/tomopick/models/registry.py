"""Network registry: ``build_model(name, in_channels, out_channels, **hparams)``.

Networks are registered with :func:`register_model` under a short name (no class-name lookup); configs name
them and pass hyper-parameters as plain data. All networks map ``(n, c_in, z, y, x)`` → ``(n, c_out, z, y, x)``.

Networks defined in packages above :mod:`tomopick.models` (the promptable picker lives in :mod:`tomopick.prompt`)
are named in :data:`LAZY_BUILDERS` as ``"module:function"``: the module is imported the first time such a network
is built, so a checkpoint of it loads in a process that imported only :mod:`tomopick.models`, while importing
``tomopick.models`` imports none of those packages (the layering contract forbids ``models → prompt``).
"""

from __future__ import annotations

import importlib
import math
from typing import Any, Callable

import torch

from tomopick.errors import TomopickError

_BUILDERS: dict[str, Callable[..., torch.nn.Module]] = {}

#: Networks built by functions outside :mod:`tomopick.models`: name → ``"module:function"`` (the function takes
#: ``in_channels, out_channels, **hparams`` like a registered builder). Resolved with ``importlib`` at build time,
#: so import-linter does not see these edges: each must point to a module that may legitimately depend on
#: ``tomopick.models`` (a stage above it), and ``tests/models/test_registry.py`` checks that every entry resolves.
LAZY_BUILDERS: dict[str, str] = {
    "promptable-film-unet": "tomopick.prompt.networks:build_promptable",
}


def register_model(name: str) -> Callable[[Callable[..., torch.nn.Module]], Callable[..., torch.nn.Module]]:
    """Decorator registering a builder ``f(in_channels, out_channels, **hparams) -> nn.Module``."""

    def deco(fn: Callable[..., torch.nn.Module]) -> Callable[..., torch.nn.Module]:
        _BUILDERS[name] = fn
        return fn

    return deco


def model_names() -> list[str]:
    return sorted(set(_BUILDERS) | set(LAZY_BUILDERS))


def _builder(name: str) -> Callable[..., torch.nn.Module]:
    """The builder registered under ``name``, importing it from :data:`LAZY_BUILDERS` the first time."""
    if name in _BUILDERS:
        return _BUILDERS[name]
    if name not in LAZY_BUILDERS:
        raise TomopickError(f"unknown network {name!r}; known: {', '.join(model_names())}")
    module, _, function = LAZY_BUILDERS[name].partition(":")
    try:
        fn = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as exc:
        raise TomopickError(f"network {name!r} cannot be built: {LAZY_BUILDERS[name]} ({exc})") from None
    _BUILDERS[name] = fn
    return fn


def build_model(name: str, in_channels: int = 1, out_channels: int = 7, **hparams: Any) -> torch.nn.Module:
    """Build a registered network.

    Parameters
    ----------
    name
        Registered name, e.g. ``"unet"`` or ``"resunet"``.
    in_channels, out_channels
        Input channels (1 for a tomogram) and output channels (classes + background for softmax).
    **hparams
        Network-specific hyper-parameters (e.g. ``channels``, ``strides``, ``num_res_units``).
    """
    builder = _builder(name)
    try:
        return builder(in_channels=in_channels, out_channels=out_channels, **hparams)
    except TypeError as exc:
        raise TomopickError(f"bad hyper-parameters for network {name!r}: {exc}") from None


@register_model("unet")
def _unet(in_channels: int, out_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128),
          strides: tuple[int, ...] = (2, 2, 2), num_res_units: int = 0, dropout: float = 0.0,
          norm: str = "batch") -> torch.nn.Module:
    """MONAI UNet (plain convolutions by default). Built as :class:`tomopick.models.unet.LeanUNet` — the same
    modules, names and arithmetic without importing MONAI (1.5–2.7 s of start-up) — where that covers the
    hyper-parameters, else by MONAI."""
    from tomopick.models.unet import lean_unet, supported

    if supported(norm, tuple(strides), tuple(channels)):
        return lean_unet(in_channels, out_channels, tuple(channels), tuple(strides), num_res_units, dropout, norm)
    from monai.networks.nets import UNet

    return UNet(spatial_dims=3, in_channels=in_channels, out_channels=out_channels, channels=tuple(channels),
                strides=tuple(strides), num_res_units=num_res_units, dropout=dropout, norm=norm)


@register_model("resunet")
def _resunet(in_channels: int, out_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128),
             strides: tuple[int, ...] = (2, 2, 2), num_res_units: int = 2, dropout: float = 0.0,
             norm: str = "batch") -> torch.nn.Module:
    """MONAI UNet with residual units (DeepFindET / octopi style)."""
    return _unet(in_channels, out_channels, channels, strides, num_res_units, dropout, norm)


@register_model("coordresunet")
def _coordresunet(in_channels: int, out_channels: int, channels: tuple[int, ...] = (16, 32, 64, 128),
                  num_res_units: int = 2, norm: str = "batch", dropout: float = 0.0, coord_conv: bool = True,
                  pyramid: bool = True) -> torch.nn.Module:
    """DeepETPicker-style 3D residual UNet with coordinate channels and image-pyramid inputs
    (:class:`tomopick.models.networks.CoordResUNet`)."""
    from tomopick.models.networks import CoordResUNet

    return CoordResUNet(in_channels, out_channels, channels=tuple(channels), num_res_units=num_res_units, norm=norm,
                        dropout=dropout, coord_conv=coord_conv, pyramid=pyramid)


@register_model("swinunetr")
def _swinunetr(in_channels: int, out_channels: int, feature_size: int = 12, depths: tuple[int, ...] = (2, 2, 2, 2),
               num_heads: tuple[int, ...] = (3, 6, 12, 24), window_size: int = 7, dropout: float = 0.0,
               use_v2: bool = False) -> torch.nn.Module:
    """MONAI SwinUNETR (imports without torchvision). Patch sides must be divisible by 32; ``feature_size`` must be
    divisible by 12."""
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(in_channels=in_channels, out_channels=out_channels, feature_size=feature_size,
                     depths=tuple(depths), num_heads=tuple(num_heads), window_size=window_size, drop_rate=dropout,
                     use_v2=use_v2, spatial_dims=3)


@register_model("slice-unet")
def _slice_unet(in_channels: int, out_channels: int, context: int = 2, channels: tuple[int, ...] = (16, 32, 64, 128),
                strides: tuple[int, ...] = (2, 2, 2), num_res_units: int = 1, norm: str = "batch",
                dropout: float = 0.0) -> torch.nn.Module:
    """2.5D: a MONAI 2D UNet on ``2·context + 1`` neighbouring z-slices per output slice
    (:class:`tomopick.models.slices.SliceUNet`); windows need x and y (not z) multiples of the strides' product."""
    from tomopick.models.slices import SliceUNet

    return SliceUNet(in_channels, out_channels, context=context, channels=tuple(channels), strides=tuple(strides),
                     num_res_units=num_res_units, norm=norm, dropout=dropout)


def encoder_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    """The parameters of a network's encoder (contracting path), for fine-tuning with a frozen encoder.

    Supported: ``coordresunet`` (its ``encoders`` and ``downs``), MONAI ``UNet`` / ``resunet`` (the first
    down-sampling block of every level, i.e. each nested ``SkipConnection``'s first sub-block), SwinUNETR (its
    ``swinViT`` transformer and the ``encoder*`` blocks).
    """
    if hasattr(model, "encoder_parameters"):
        return list(model.encoder_parameters())
    if hasattr(model, "swinViT"):
        params = list(model.swinViT.parameters())
        for name, module in model.named_children():
            if name.startswith("encoder"):
                params.extend(module.parameters())
        return params
    params: list[torch.nn.Parameter] = []
    module = getattr(model, "model", None)
    while isinstance(module, torch.nn.Sequential) and len(module) > 0:
        params.extend(module[0].parameters())  # the down block of this level
        nxt = module[1] if len(module) > 1 else None
        if nxt is not None and type(nxt).__name__ == "SkipConnection":  # MONAI's or the lean UNet's
            module = nxt.submodule
        else:
            break
    return params


def network_divisor(name: str, hparams: dict[str, Any] | None = None) -> int:
    """Total downsampling of a registered network: window sizes must be multiples of it (SwinUNETR: 32;
    UNet-likes: the product of their strides, else 2^(levels − 1))."""
    hparams = hparams or {}
    if name == "swinunetr":
        return 32
    if "strides" in hparams:
        return int(math.prod(int(s) for s in hparams["strides"]))
    if "channels" in hparams:
        return 2 ** (len(hparams["channels"]) - 1)
    return 8 if name in ("unet", "resunet", "coordresunet") else 16
