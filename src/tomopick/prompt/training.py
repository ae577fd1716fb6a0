"""Training of the promptable picker, in two stages (as ProPicker):

1. :func:`train_encoder` — deep metric learning of the :class:`~tomopick.prompt.networks.PromptEncoder` on views of
   many particle kinds (:func:`~tomopick.prompt.views.render_view`: random orientation, missing wedge, blur,
   noise) with a batch-hard triplet loss: views of the same kind close, of different kinds far.
2. :func:`train_segmenter` — the FiLM U-Net on simulated scenes (:class:`LabelledVolume`), the encoder frozen: each
   sub-volume is encoded once and decoded once per prompt (a different copy of a kind it may contain, or of a kind
   it does not contain), against the binary target of that kind (BCE).

:func:`finetune_segmenter` is stage 2 on a user's few labelled tomograms with fixed prompts.
Everything is pure (arrays in, weights updated in place, history out) and seeded by the generators passed in.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from tomopick.prompt.extract import sample_box
from tomopick.prompt.networks import PromptablePicker, PromptEncoder
from tomopick.prompt.views import render_view


# ---------------------------------------------------------------------------------------------------------------
# stage 1: prompt encoder
# ---------------------------------------------------------------------------------------------------------------
def batch_hard_triplet_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.3) -> torch.Tensor:
    """Batch-hard triplet loss: for each anchor, ``relu(max d(a, p) - min d(a, n) + margin)`` over the batch.

    Parameters
    ----------
    embeddings
        ``(b, d)`` (unit norm, as the encoder outputs).
    labels
        ``(b,)`` integer kind of each row; every kind present needs ≥ 2 rows and ≥ 2 kinds must be present.
    margin
        Required gap between the farthest positive and the nearest negative (Euclidean distance).
    """
    dist = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=embeddings.device)
    hardest_pos = torch.where(same & ~eye, dist, torch.zeros_like(dist)).max(dim=1).values
    hardest_neg = torch.where(~same, dist, torch.full_like(dist, float("inf"))).min(dim=1).values
    return torch.relu(hardest_pos - hardest_neg + margin).mean()


@dataclass
class ViewSettings:
    """How :func:`render_view` degrades training views (ranges are sampled uniformly per view)."""

    size: int = 37
    snr: tuple[float, float] = (0.3, 3.0)
    max_tilt_deg: tuple[float, float] = (45.0, 70.0)
    blur_vox: tuple[float, float] = (0.3, 1.2)
    shift_vox: float = 1.5
    protein_dark: bool = True

    def render(self, density: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return render_view(density, self.size, rng, snr=float(rng.uniform(*self.snr)),
                           max_tilt_deg=float(rng.uniform(*self.max_tilt_deg)),
                           blur_vox=float(rng.uniform(*self.blur_vox)), shift_vox=self.shift_vox,
                           protein_dark=self.protein_dark)


@dataclass
class History:
    """Loss per step and wall time."""

    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def first(self) -> float:
        return float(np.mean(self.loss[: max(1, len(self.loss) // 10)]))

    @property
    def last(self) -> float:
        return float(np.mean(self.loss[-max(1, len(self.loss) // 10):]))


def train_encoder(encoder: PromptEncoder, densities: Sequence[np.ndarray], *, steps: int, rng: np.random.Generator,
                  kinds_per_batch: int = 8, views_per_kind: int = 4, views: ViewSettings | None = None,
                  lr: float = 1e-3, margin: float = 0.3,
                  callback: Callable[[int, float], None] | None = None) -> History:
    """Metric-learn ``encoder`` on views of ``densities`` (one map per particle kind).

    Parameters
    ----------
    encoder
        Trained in place (left in eval mode).
    densities
        Particle density maps ``(z, y, x)``, protein bright, centred, at the training voxel size; index = kind.
    steps
        Optimiser steps; each draws ``kinds_per_batch`` kinds × ``views_per_kind`` fresh views.
    rng
        Seeds views and kind choice (torch's initialisation is the caller's business).
    """
    views = views or ViewSettings()
    opt = torch.optim.AdamW(encoder.parameters(), lr=lr, weight_decay=1e-4)
    hist = History()
    start = time.perf_counter()
    n_kinds = len(densities)
    if n_kinds < 2:
        raise ValueError("metric learning needs at least two particle kinds")
    encoder.train()
    dev = next(encoder.parameters()).device
    for step in range(steps):
        chosen = rng.choice(n_kinds, size=min(kinds_per_batch, n_kinds), replace=False)
        boxes = [views.render(densities[k], rng) for k in chosen for _ in range(views_per_kind)]
        labels = torch.as_tensor(np.repeat(chosen, views_per_kind))
        x = torch.from_numpy(np.stack(boxes)[:, None]).to(dev)
        loss = batch_hard_triplet_loss(encoder(x), labels.to(dev), margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.loss.append(loss.item())
        if callback is not None:
            callback(step, hist.loss[-1])
    encoder.eval()
    hist.seconds = time.perf_counter() - start
    return hist


# ---------------------------------------------------------------------------------------------------------------
# stage 2: FiLM segmenter
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class LabelledVolume:
    """One training tomogram of the segmenter at the model's voxel size, labelled by particle kind per voxel (not
    to be confused with :class:`tomopick.simulate.scene.Scene`, the simulator's particle layout).

    Attributes
    ----------
    volume
        ``(z, y, x)`` float32, robust-normalised.
    labels
        ``(z, y, x)`` integer kind per voxel (``-1`` or any value not in ``kinds`` = background): the target of
        kind ``k`` is ``labels == k``.
    centres_zyx_vox
        ``(n, 3)`` particle centres (voxels).
    kinds
        ``(n,)`` integer kind of each particle.
    """

    volume: np.ndarray
    labels: np.ndarray
    centres_zyx_vox: np.ndarray
    kinds: np.ndarray


def prompt_pool(scenes: Sequence[LabelledVolume], size: int = 37, per_kind: int = 16,
                rng: np.random.Generator | None = None, kinds: Sequence[int] | None = None) -> dict[int, np.ndarray]:
    """Prompts cut from the (already normalised) scenes: ``{kind: (m, size, size, size)}``, up to ``per_kind``
    random copies per kind — what :func:`tomopick.workflows.prompt.cut_prompt` gives at the scenes' voxel size."""
    rng = rng or np.random.default_rng(0)
    entries: dict[int, list[tuple[int, int]]] = {}
    for s, scene in enumerate(scenes):
        for i, k in enumerate(np.asarray(scene.kinds).tolist()):
            if kinds is None or k in kinds:
                entries.setdefault(int(k), []).append((s, i))
    pool = {}
    for k, items in sorted(entries.items()):
        pick = rng.choice(len(items), size=min(per_kind, len(items)), replace=False)
        boxes = [sample_box(scenes[items[j][0]].volume, scenes[items[j][0]].centres_zyx_vox[items[j][1]], size)
                 for j in pick]
        pool[k] = np.stack(boxes)
    return pool


def _random_crop(scene: LabelledVolume, patch: Sequence[int], rng: np.random.Generator, focus: float) -> tuple[slice, ...]:
    shape = np.asarray(scene.volume.shape)
    patch = np.minimum(np.asarray(patch), shape)
    if len(scene.centres_zyx_vox) and rng.random() < focus:
        c = np.asarray(scene.centres_zyx_vox[rng.integers(len(scene.centres_zyx_vox))])
        lo = np.rint(c - patch / 2 + rng.uniform(-patch / 4, patch / 4)).astype(int)
    else:
        lo = (rng.random(3) * (shape - patch + 1)).astype(int)
    lo = np.clip(lo, 0, shape - patch)
    return tuple(slice(int(a), int(a + p)) for a, p in zip(lo, patch))


def _pad_to(array: np.ndarray, divisor: int) -> np.ndarray:
    pad = [(0, (-s) % divisor) for s in array.shape]
    return np.pad(array, pad, mode="reflect") if any(p for _, p in pad) else array


def segmenter_step_batch(scenes: Sequence[LabelledVolume], pool: Mapping[int, np.ndarray], *, patch: Sequence[int],
                         batch: int, prompts_per_patch: int, rng: np.random.Generator, focus: float = 0.8,
                         divisor: int = 1) -> tuple[np.ndarray, list[list[tuple[int, int]]], np.ndarray]:
    """Draw one training batch.

    Returns ``x`` ``(b, 1, *patch)``, per patch a list of ``(kind, prompt index)`` pairs (kinds it contains first,
    then absent kinds), and targets ``(b, prompts_per_patch, *patch)`` (``labels == kind``).
    """
    xs, pairs, targets = [], [], []
    kinds = np.array(sorted(pool))
    for _ in range(batch):
        scene = scenes[int(rng.integers(len(scenes)))]
        sl = _random_crop(scene, patch, rng, focus)
        lab = scene.labels[sl]
        present = [k for k in np.unique(lab).tolist() if k in pool]
        chosen: list[int] = list(rng.permutation(present)[:prompts_per_patch]) if present else []
        absent = [k for k in kinds.tolist() if k not in chosen]
        while len(chosen) < prompts_per_patch and absent:
            k = int(absent.pop(int(rng.integers(len(absent)))))
            chosen.append(k)
        while len(chosen) < prompts_per_patch:
            chosen.append(int(kinds[rng.integers(len(kinds))]))
        xs.append(_pad_to(scene.volume[sl], divisor))
        pairs.append([(int(k), int(rng.integers(len(pool[int(k)])))) for k in chosen])
        targets.append(np.stack([_pad_to((lab == k).astype(np.float32), divisor) for k in chosen]))
    return np.stack(xs)[:, None].astype(np.float32), pairs, np.stack(targets)


def train_segmenter(model: PromptablePicker, scenes: Sequence[LabelledVolume], pool: Mapping[int, np.ndarray], *, steps: int,
                    rng: np.random.Generator, patch: Sequence[int] = (48, 48, 48), batch: int = 2,
                    prompts_per_patch: int = 2, lr: float = 1e-3, pos_weight: float = 3.0, focus: float = 0.8,
                    train_encoder: bool = False,
                    callback: Callable[[int, float], None] | None = None) -> History:
    """Train the FiLM segmenter of ``model`` (the prompt encoder frozen unless ``train_encoder``).

    Each step: ``batch`` sub-volumes, each encoded once and decoded for ``prompts_per_patch`` prompts drawn from
    ``pool`` (kinds present in the patch first, then absent kinds, which teach "nothing here"); loss = BCE with
    logits against ``labels == kind``, positives weighted by ``pos_weight``.

    Parameters
    ----------
    pool
        ``{kind: (m, s, s, s)}`` normalised prompt boxes (see :func:`prompt_pool`).
    patch
        Sub-volume size ``(z, y, x)``; padded (reflect) to a multiple of the U-Net's divisor.
    """
    params = list(model.segmenter.parameters()) + (list(model.encoder.parameters()) if train_encoder else [])
    for p in model.encoder.parameters():
        p.requires_grad_(train_encoder)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    dev = next(model.parameters()).device
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pos_weight), device=dev))
    model.segmenter.train()
    model.encoder.train(train_encoder)
    hist = History()
    start = time.perf_counter()
    divisor = model.segmenter.divisor
    pool_t = {k: torch.from_numpy(np.asarray(v, dtype=np.float32)[:, None]) for k, v in pool.items()}
    for step in range(steps):
        x, pairs, target = segmenter_step_batch(scenes, pool, patch=patch, batch=batch,
                                                prompts_per_patch=prompts_per_patch, rng=rng, focus=focus,
                                                divisor=divisor)
        prompts = torch.stack([pool_t[k][i] for row in pairs for k, i in row]).to(dev)
        with torch.set_grad_enabled(train_encoder):
            z = model.embed(prompts).view(batch, prompts_per_patch, -1)
        feats = model.segmenter.encode(torch.from_numpy(x).to(dev))
        logits = torch.cat([model.segmenter.decode(feats, z[:, j]) for j in range(prompts_per_patch)], dim=1)
        loss = loss_fn(logits, torch.from_numpy(target).to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.loss.append(loss.item())
        if callback is not None:
            callback(step, hist.loss[-1])
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist


def finetune_segmenter(model: PromptablePicker, scenes: Sequence[LabelledVolume], prompts: np.ndarray, *, steps: int,
                       rng: np.random.Generator, patch: Sequence[int] = (48, 48, 48), batch: int = 2,
                       lr: float = 3e-4, pos_weight: float = 3.0,
                       callback: Callable[[int, float], None] | None = None) -> History:
    """Adapt the segmenter to a user's data: one particle kind, its prompts ``(m, s, s, s)`` fixed (their mean
    embedding is the conditioning), the prompt encoder frozen. ``scenes`` carry ``labels == 1`` at that kind."""
    dev = next(model.parameters()).device
    with torch.no_grad():
        model.encoder.eval()
        boxes = torch.from_numpy(np.asarray(prompts, dtype=np.float32)[:, None]).to(dev)
        z = model.embed(boxes).mean(0, keepdim=True)
        z = nn.functional.normalize(z, dim=1)
    for p in model.encoder.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.segmenter.parameters(), lr=lr, weight_decay=1e-4)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(float(pos_weight), device=dev))
    model.segmenter.train()
    hist = History()
    start = time.perf_counter()
    divisor = model.segmenter.divisor
    for step in range(steps):
        xs, ts = [], []
        for _ in range(batch):
            scene = scenes[int(rng.integers(len(scenes)))]
            sl = _random_crop(scene, patch, rng, 0.7)
            xs.append(_pad_to(scene.volume[sl], divisor))
            ts.append(_pad_to((scene.labels[sl] == 1).astype(np.float32), divisor))
        x = torch.from_numpy(np.stack(xs)[:, None].astype(np.float32)).to(dev)
        loss = loss_fn(model.segmenter(x, z), torch.from_numpy(np.stack(ts)[:, None]).to(dev))
        opt.zero_grad()
        loss.backward()
        opt.step()
        hist.loss.append(loss.item())
        if callback is not None:
            callback(step, hist.loss[-1])
    for p in model.encoder.parameters():
        p.requires_grad_(True)
    model.eval()
    hist.seconds = time.perf_counter() - start
    return hist
