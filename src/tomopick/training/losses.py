"""Losses selected by name (:class:`~tomopick.training.config.LossConfig`).

Class maps (softmax networks; logits ``(n, K, z, y, x)``, target ``(n, 1, z, y, x)`` int): MONAI ``DiceCELoss``
(``dice_ce``), ``DiceLoss`` (``dice``), ``TverskyLoss`` (``tversky``), ``FocalLoss`` (``focal``) and weighted
cross-entropy (``ce``). Heatmaps (sigmoid networks; target ``(n, C, z, y, x)`` in [0, 1]): ``huber_laplacian`` —
a Huber loss divided by its ``delta`` (smooth L1: slope 1 beyond ``delta``), weighted ``1 + positive_weight ·
target``, plus ``laplacian_weight`` times the mean absolute difference of the 3D Laplacians of prediction and target
(tomoCPT's gradient term, sharpening the peaks).

Why divided by ``delta``: the plain Huber loss has slope ``delta`` beyond ``delta``, so with ``delta = 0.1`` the
Laplacian term (slope up to 12 per voxel, whatever the error) outweighed it ten times more than its weight says; it
then kept sigmoid maps flat at their initial 0.5 and pushed the centres down (a 150-step toy run: background 0.47,
centres 0.002). Divided by ``delta``, ``laplacian_weight`` is relative to an L1-sized term for every ``delta``.

Why a cross-entropy term (``bce_weight``, 1 in :class:`~tomopick.training.config.LossConfig`): Huber and Laplacian
act on ``sigmoid(logits)``, so their gradients carry the sigmoid's slope ``p (1 − p)`` and vanish where the map is
~0. Early in training the background (most voxels) pulls the whole map towards 0, and there it stays: a resunet
trained 1,157 steps on simulated tomograms ended with centres at 0.001–0.005 over a 0.0001 background (CZII F4
0.09 held out). The cross-entropy's gradient on the logits is ``w (p − t)``, which does not vanish at a wrong 0;
its minimum is still ``p = t``, so the maps keep the Gaussian shape.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from tomopick.training.config import LossConfig

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def laplacian_3d(x: torch.Tensor) -> torch.Tensor:
    """6-neighbour discrete Laplacian of ``(n, C, z, y, x)``, per channel, replicate-padded."""
    c = x.shape[1]
    kernel = torch.zeros((3, 3, 3), dtype=x.dtype, device=x.device)
    kernel[1, 1, 1] = -6.0
    for idx in ((0, 1, 1), (2, 1, 1), (1, 0, 1), (1, 2, 1), (1, 1, 0), (1, 1, 2)):
        kernel[idx] = 1.0
    weight = kernel.expand(c, 1, 3, 3, 3).contiguous()
    return F.conv3d(F.pad(x, (1, 1, 1, 1, 1, 1), mode="replicate"), weight, groups=c)


def huber_laplacian_loss(logits: torch.Tensor, target: torch.Tensor, delta: float = 0.1,
                         positive_weight: float = 20.0, laplacian_weight: float = 0.1,
                         bce_weight: float = 0.0) -> torch.Tensor:
    """Weighted Huber / ``delta`` on ``sigmoid(logits)`` vs ``target`` plus a Laplacian-gradient term, plus
    ``bce_weight`` times the same-weighted binary cross-entropy with the soft target (see the module docstring)."""
    logits = logits.float()
    pred = torch.sigmoid(logits)
    target = target.float()
    w = 1.0 + positive_weight * target
    loss = (w * F.huber_loss(pred, target, reduction="none", delta=delta)).sum() / (w.sum() * delta)
    if bce_weight > 0:
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = loss + bce_weight * (w * bce).sum() / w.sum()
    if laplacian_weight > 0:
        loss = loss + laplacian_weight * (laplacian_3d(pred) - laplacian_3d(target)).abs().mean()
    return loss


def build_loss(config: LossConfig, n_outputs: int) -> LossFn:
    """A loss ``f(logits, target) -> scalar`` for ``n_outputs`` network channels."""
    weight = None
    if config.class_weights is not None:
        if len(config.class_weights) != n_outputs:
            raise ValueError(f"loss.class_weights has {len(config.class_weights)} entries; the network has "
                             f"{n_outputs} outputs (background first)")
        weight = torch.tensor(config.class_weights, dtype=torch.float32)
    kind = config.kind
    if kind == "huber_laplacian":
        return lambda logits, target: huber_laplacian_loss(logits, target, config.huber_delta,
                                                           config.positive_weight, config.laplacian_weight,
                                                           config.bce_weight)
    if kind == "ce":
        def ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            w = None if weight is None else weight.to(logits.device)
            return F.cross_entropy(logits.float(), target[:, 0].long(), weight=w)
        return ce
    from monai.losses import DiceCELoss, DiceLoss, FocalLoss, TverskyLoss

    if kind == "dice_ce":
        fn = DiceCELoss(to_onehot_y=True, softmax=True, weight=weight)
    elif kind == "dice":
        fn = DiceLoss(to_onehot_y=True, softmax=True)
    elif kind == "tversky":
        fn = TverskyLoss(to_onehot_y=True, softmax=True, alpha=config.tversky_alpha, beta=config.tversky_beta)
    elif kind == "focal":
        fn = FocalLoss(to_onehot_y=True, use_softmax=True, gamma=config.focal_gamma, weight=weight)
    else:  # pragma: no cover - the config validator restricts kinds
        raise ValueError(f"unknown loss {kind!r}")

    def monai_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        fn.to(logits.device)
        return fn(logits.float(), target.long())

    return monai_loss
