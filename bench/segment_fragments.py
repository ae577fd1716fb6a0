"""Membrane-fragment limit of a segmentation checkpoint, swept on the validation + dev volumes of
``bench/segment_calibrate.py`` (never the held-out set): membrane Dice and vesicles matched per limit.

Usage::

    python bench/segment_fragments.py [MODEL.pt] --cache /work/data/segment/train-v3 [--strength 0.25]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

LIMITS_VOX = (0, 300, 1000, 3000, 10000)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=None, help="checkpoint (default: the bundled membrane-10A)")
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--seeds", default="1500-1507")
    ap.add_argument("--dev-seeds", default="1600-1603")
    ap.add_argument("--dev-snr", type=float, default=0.4)
    ap.add_argument("--dev-tilt", type=float, default=45.0)
    ap.add_argument("--strength", type=float, default=None, help="prior correction (default: the model's)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from segment_calibrate import dev_volumes, parse_seeds, score_variants
    from train_membrane import load_or_simulate

    from tomopick.segment.predict import SegmentOptions, correction_strength
    from tomopick.workflows.segment import resolve_segment_model

    loaded = resolve_segment_model(args.model)
    strength = correction_strength(loaded.config, SegmentOptions(prior_correction=args.strength))
    vs = float(loaded.config["voxel_size_A"])
    variants = {n: SegmentOptions(prior_correction=strength, min_membrane_A3=n * vs**3) for n in LIMITS_VOX}
    sets = {"validation": load_or_simulate(args.cache, parse_seeds(args.seeds), print, "v3"),
            "dev": dev_volumes(args.cache, parse_seeds(args.dev_seeds), args.dev_snr, args.dev_tilt)}
    for name, (images, labels) in sets.items():
        for n, r in score_variants(loaded, images, labels, variants).items():
            print(f"{name} strength {strength:g}, fragments < {n} voxels dropped: membrane Dice "
                  f"{r['membrane_dice']:.4f}, vesicles {r['vesicles_matched']}/{r['vesicles']}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
