"""Tiny synthetic training volumes: bright spheres of two classes at known positions in noise."""

from __future__ import annotations

import numpy as np

from tomopick.data import ParticleSet, ParticleSpec, Picks
from tomopick.labels import TargetSpec, make_target
from tomopick.training import Volume, training_classes

VS = 20.0
PARTICLES = ParticleSet(name="toy", particles=(ParticleSpec(name="big", radius_A=100, weight=1),
                                               ParticleSpec(name="small", radius_A=60, weight=1)))


def make_volume(seed: int, name: str, shape=(24, 48, 48), n: int = 6, kind: str = "sphere") -> Volume:
    rng = np.random.default_rng(seed)
    zyx = rng.uniform([6, 6, 6], np.asarray(shape) - 6, size=(n, 3))
    names = ["big" if i % 2 == 0 else "small" for i in range(n)]
    picks = Picks.from_voxels(zyx, VS, names, run=name)
    tp = training_classes(PARTICLES)
    image = rng.normal(0, 1, shape).astype(np.float32)
    lab = make_target(shape, picks, tp, VS, TargetSpec("sphere", 1.0))
    image[lab == 1] += 2.5
    image[lab == 2] += 1.5
    target = make_target(shape, picks, tp, VS, TargetSpec(kind, 1.0 if kind == "gaussian" else 0.7))
    return Volume(name, image, target, picks, VS)


def tiny_config(**over):
    from tomopick.training import validate_config

    raw = {"data": {"path": "unused"}, "particles": PARTICLES.model_dump(mode="json"),
           "network": {"name": "unet", "hparams": {"channels": [4, 8, 16], "strides": [2, 2]}},
           "patch_size": [16, 16, 16], "batch_size": 2, "epochs": 2, "steps_per_epoch": 3, "warmup_steps": 1,
           "lr": 0.003, "num_threads": 1, "ema_decay": 0.9, "seed": 5}
    for k, v in over.items():
        raw[k] = v
    return validate_config(raw)
