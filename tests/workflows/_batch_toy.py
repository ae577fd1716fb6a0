"""Tiny batch fixtures: a small MONAI UNet checkpoint (a registered network, so Dask worker processes can rebuild
it) with a sharpened last layer, and noise tomograms of 48³ voxels (10 Å) it picks a handful of particles in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tomopick.data import CZII, Tomogram
from tomopick.inference.normalize import robust_config
from tomopick.io import write_tomogram
from tomopick.models import build_model, save_checkpoint

HPARAMS = {"channels": [4, 8, 16], "strides": [2, 2]}
#: the blob-score threshold giving a few picks per tomogram with this model (all scores lie near 1/3)
THRESHOLD = 0.37


def make_model(path: Path) -> Path:
    torch.manual_seed(0)
    net = build_model("unet", 1, 3, **HPARAMS)
    with torch.no_grad():
        net.model[2].conv.weight.mul_(6.0)  # sharper class maps: scores spread away from 1/3
    config = {"network": {"name": "unet", "hparams": HPARAMS}, "in_channels": 1, "out_channels": 3,
              "output": "softmax", "classes": ["background", "apo-ferritin", "ribosome"],
              "particles": CZII.subset(["apo-ferritin", "ribosome"]).model_dump(mode="json"), "voxel_size_A": 10.0,
              "patch_size": [32, 32, 32], "normalisation": robust_config(), "target": {"kind": "sphere"}}
    save_checkpoint(path, net, config)
    return path


def make_tomograms(folder: Path, n: int, size: int = 48, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        vol = rng.normal(size=(size, size, size)).astype(np.float32)
        path = folder / f"TS_{i:02d}.mrc"
        write_tomogram(Tomogram.from_array(vol, 10.0), path)
        paths.append(path)
    return paths
