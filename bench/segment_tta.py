"""Which flips a segmentation model's test-time augmentation should average, chosen on validation data only.

The volumes are ``bench/segment_calibrate.py``'s: validation tomograms of the training distribution plus the harder
*dev* set (``--dev-snr``), never ``bench/bench_segment.py``'s held-out shapes or imaging. Each volume is predicted
whole (one forward pass per orientation) as it is, flipped along z, y, x, and inverted through its centre (all three
flips); the probabilities are flipped back and averaged over each candidate set of orientations, then post-processed
as ``tomopick segment`` does under prior-correction strengths 0 … 1. Candidates: ``1`` (no TTA), the two-pass sets
``2z``, ``2y``, ``2x``, ``2zyx`` (identity + that flip) and ``4`` (identity + one flip per axis, ``--tta`` today).
Printed per candidate and strength: pooled membrane Dice (the mean of the sets' means), lumen Dice and vesicles
matched; the network passes per window each costs are its number.

``--plans ROI@OVERLAP …`` instead runs ``tomopick segment``'s own windowed path
(:func:`tomopick.segment.predict.segment_tomogram`, with ``--tta`` passes and ``--strength``) over the same volumes
once per window plan, to see what cutting a volume into windows costs against the whole-volume pass above.

Usage::

    python bench/segment_tta.py MODEL.pt --cache /work/data/segment/train-v3 --seeds 1500-1507 \\
        --dev-snr 0.4 --dev-tilt 45 --dev-seeds 1600-1603 [--json tta.json]
    python bench/segment_tta.py MODEL.pt … --plans 112,240,240@0.125 224,240,240@0.125 --tta 2 --strength 0.5
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segment_calibrate import (  # noqa: E402
    STRENGTHS, add_volume_arguments, load_sets, pool, pool_sets, score_volume,
)

#: spatial dims of an ``(n, c, z, y, x)`` tensor flipped by each orientation
ORIENTATIONS = {"id": (), "z": (2,), "y": (3,), "x": (4,), "zyx": (2, 3, 4)}
CANDIDATES = {"1": ("id",), "2z": ("id", "z"), "2y": ("id", "y"), "2x": ("id", "x"), "2zyx": ("id", "zyx"),
              "4": ("id", "z", "y", "x")}


def oriented_probabilities(model, image: np.ndarray, names=tuple(ORIENTATIONS)) -> dict[str, np.ndarray]:
    """Softmax ``(C, z, y, x)`` of the whole volume per orientation (``names``), flipped back to the volume's own."""
    import torch

    x = torch.as_tensor(image)[None, None]
    out = {}
    with torch.inference_mode():
        for name in names:
            dims = ORIENTATIONS[name]
            logits = model(torch.flip(x, dims) if dims else x).float()
            logits = torch.flip(logits, dims) if dims else logits
            out[name] = torch.softmax(logits, 1)[0].numpy()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_volume_arguments(ap)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES),
                    help="TTA candidates to score (default: all)")
    ap.add_argument("--plans", nargs="+", default=None, metavar="ROI@OVERLAP",
                    help="score the windowed path per window plan (e.g. 112,240,240@0.125) instead")
    ap.add_argument("--tta", type=int, default=2, choices=(1, 2, 4, 8), help="with --plans: TTA passes")
    ap.add_argument("--strength", type=float, default=0.5, help="with --plans: prior-correction strength")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from tomopick.models.checkpoint import load_checkpoint
    from tomopick.segment.predict import SegmentOptions

    loaded = load_checkpoint(args.model)
    model = loaded.model.eval()
    sets = load_sets(args)
    if args.plans:
        return windowed(loaded, sets, args)
    variants = {t: SegmentOptions(prior_correction=t) for t in STRENGTHS}
    candidates = {c: CANDIDATES[c] for c in args.candidates}
    per_set: dict[str, dict] = {}
    t0 = time.time()
    for name, (images, labels) in sets.items():
        rows: dict = {(c, t): [] for c in candidates for t in STRENGTHS}
        needed = [n for n in ORIENTATIONS if any(n in names for names in candidates.values())]
        for img, lab in zip(images, labels):
            probs = oriented_probabilities(model, img, needed)
            for cand, names in candidates.items():
                mean = np.mean([probs[n] for n in names], axis=0) if len(names) > 1 else probs[names[0]]
                for t, row in score_volume(loaded, mean, lab, variants).items():
                    rows[(cand, t)].append(row)
            done = len(rows[(next(iter(candidates)), 0.0)])
            print(f"{name}: {done}/{len(images)} volumes ({time.time() - t0:.0f} s)", flush=True)
        per_set[name] = pool(rows)
    results = {}
    print("| TTA | passes | strength | " + " | ".join(f"{n} membrane Dice" for n in per_set) +
          " | pooled membrane Dice | pooled lumen Dice | vesicles |")
    print("|---|---|---|" + "---|" * len(per_set) + "---|---|---|")
    for cand, names in candidates.items():
        for t in STRENGTHS:
            rs = [per_set[n][(cand, t)] for n in per_set]
            pooled = pool_sets(rs)
            results[f"{cand}@{t}"] = {"sets": {n: per_set[n][(cand, t)] for n in per_set}, "pooled": pooled}
            print(f"| {cand} | {len(names)} | {t:.2f} | " + " | ".join(f"{r['membrane_dice']:.3f}" for r in rs) +
                  f" | {pooled['membrane_dice']:.3f} | {pooled['lumen_dice']:.3f} | "
                  f"{pooled['vesicles_matched']}/{pooled['vesicles']} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "results": results}, indent=1))
    return 0


def windowed(loaded, sets: dict, args) -> int:
    """Membrane / lumen Dice and vesicles of ``tomopick segment``'s windowed path per window plan."""
    from tomopick.data import Tomogram
    from tomopick.segment import dice, match_instances
    from tomopick.segment.instances import LUMEN, MEMBRANE, label_instances
    from tomopick.segment.predict import SegmentOptions, segment_tomogram

    vs = float(loaded.config["voxel_size_A"])
    plans = []
    for text in args.plans:
        roi, _, overlap = text.partition("@")
        plans.append((text, tuple(int(v) for v in roi.split(",")), float(overlap or 0.125)))
    print("| window plan | " + " | ".join(f"{n} membrane Dice" for n in sets) + " | pooled membrane Dice | "
          "pooled lumen Dice | vesicles |")
    print("|---|" + "---|" * len(sets) + "---|---|---|")
    results = {}
    for text, roi, overlap in plans:
        opts = SegmentOptions(roi_size=roi, overlap=overlap, tta=args.tta, prior_correction=args.strength)
        per_set = {}
        for name, (images, labels) in sets.items():
            rows = []
            for img, lab in zip(images, labels):
                seg = segment_tomogram(Tomogram(img, (vs, vs, vs)), loaded, opts)
                truth = label_instances(lab, vs)
                ids = [int(i) for i in np.unique(truth[lab == LUMEN]) if i]
                m = match_instances(truth, seg.instances, 0.5, ids=ids)
                rows.append((dice(lab == MEMBRANE, seg.classes == MEMBRANE), dice(lab == LUMEN, seg.classes == LUMEN),
                             m["n_matched"], m["n_truth"]))
            per_set[name] = pool({text: rows})[text]
        rs = list(per_set.values())
        pooled = pool_sets(rs)
        results[text] = {"sets": per_set, "pooled": pooled}
        print(f"| {text} | " + " | ".join(f"{r['membrane_dice']:.3f}" for r in rs) +
              f" | {pooled['membrane_dice']:.3f} | {pooled['lumen_dice']:.3f} | "
              f"{pooled['vesicles_matched']}/{pooled['vesicles']} |", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), "tta": args.tta, "strength": args.strength,
                                         "plans": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
