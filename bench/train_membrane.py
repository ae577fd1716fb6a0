"""Train the bundled ``membrane-10A`` segmentation model on simulated context (CPU, ~20 minutes).

    nice -n 10 flock /tmp/tomopick-cpu.lock python bench/train_membrane.py --out /work/data/segment/membrane-10A

Data: ``--n-train`` tomograms of 160 × 256 × 256 voxels at 10.012 Å with ``ContextConfig`` context (vesicles of
the shapes ``sphere`` and ``ellipsoid`` only, double membranes, tubes, sheets, gold, carbon), domain-randomised
imaging (``randomize=True``) through the *fast* imaging model. ``deformed`` vesicles and the *full* (tilt series +
WBP) imaging are held out for bench/bench_segment.py. Writes ``best.pt`` (float16 weights), ``history.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


SHAPE = (160, 256, 256)
VOXEL_SIZE_A = 10.012
TRAIN_SHAPES = ("sphere", "ellipsoid")


def simulate(n: int, seed: int, shapes=TRAIN_SHAPES, imaging: str = "fast", shape=SHAPE):
    """``n`` simulated (tomogram, class map, result) triples."""
    from tomopick.simulate import ContextConfig, SimulationConfig, simulate_tomogram

    ctx = ContextConfig(vesicle_shapes=tuple(shapes))
    out = []
    for i in range(n):
        cfg = SimulationConfig(shape_zyx=shape, voxel_size_A=VOXEL_SIZE_A, particle_source="procedural",
                               context=ctx, randomize=True, imaging=imaging, seed=seed + i, keep_noiseless=False,
                               run_name=f"seg_{seed + i:04d}")
        r = simulate_tomogram(cfg)
        out.append((r.tomogram.data, r.segmentation, r))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--n-train", type=int, default=14)
    ap.add_argument("--n-val", type=int, default=2)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--minutes", type=float, default=18.0)
    ap.add_argument("--seed", type=int, default=1000)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from tomopick.models.checkpoint import save_checkpoint
    from tomopick.training.segment import (
        SegmentTrainConfig, normalise_volumes, segment_checkpoint_config, train_segmenter,
    )

    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    train = simulate(args.n_train, args.seed)
    val = simulate(args.n_val, args.seed + 500)
    t_sim = time.time() - t0
    print(f"simulated {len(train)} + {len(val)} tomograms in {t_sim:.0f} s", flush=True)
    cfg = SegmentTrainConfig(steps=args.steps, max_minutes=args.minutes, val_every=250, seed=args.seed)
    images = normalise_volumes([t for t, _, _ in train])
    labels = [s for _, s, _ in train]
    val_images = [v[:, :, :] for v in normalise_volumes([t for t, _, _ in val])]
    val_labels = [s for _, s, _ in val]
    del train, val
    result = train_segmenter(images, labels, cfg, val_images=val_images, val_labels=val_labels,
                             log=lambda line: print(line, flush=True))
    data = {"n_train": args.n_train, "n_val": args.n_val, "shape_zyx": list(SHAPE), "voxel_size_A": VOXEL_SIZE_A,
            "simulator": "tomopick.simulate with ContextConfig(vesicle_shapes=('sphere', 'ellipsoid')), "
                         "randomize=True, imaging='fast', particle_source='procedural'",
            "seeds": [args.seed, args.seed + args.n_train - 1], "val_seeds": [args.seed + 500,
                                                                            args.seed + 500 + args.n_val - 1]}
    metrics = {"val_membrane_dice": result.best_dice, "best_step": result.best_step,
               "train_seconds": result.seconds, "simulate_seconds": t_sim}
    config = segment_checkpoint_config(cfg, VOXEL_SIZE_A, data, metrics)
    card = {"name": "membrane-10A", "task": "segment", "classes": config["segment_classes"], **metrics}
    save_checkpoint(args.out / "best.pt", result.model, config, card=card, overwrite=True, half=True)
    (args.out / "history.json").write_text(json.dumps({"history": result.history, **metrics}, indent=1))
    print(json.dumps(metrics), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
