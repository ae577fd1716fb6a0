"""Choose a segmentation checkpoint's prior correction on validation tomograms and store it (with a window plan).

The validation tomograms are the training distribution's (``bench/train_membrane.py``'s vesicle shapes and recipe
imaging, seeds after the training and validation seeds) plus, with ``--dev-snr``, a *dev* set of the same vesicle
shapes under harder imaging (full imaging model, that SNR and ``--dev-tilt``), so the choice also holds where the
network is less sure; never the held-out shapes or imaging of ``bench/bench_segment.py``.
Each is segmented whole (one forward pass per flip of the model's stored TTA) and post-processed as
``tomopick segment`` does (:func:`tomopick.segment.predict.postprocess`: fragments, walled lumen, lumen completion,
instances) under prior-correction strengths 0 … 1 (:func:`tomopick.segment.predict.class_prior_scale`).
The stored strength is the one with the best mean membrane Dice among those that match as many vesicles (lumen
instances, IoU ≥ 0.5) as the plain argmax.

Usage::

    python bench/segment_calibrate.py MODEL.pt --cache /work/data/segment/train-v3 --seeds 1500-1507 \\
        --dev-snr 0.4 --dev-tilt 45 --dev-seeds 1600-1603 --roi 112,240,240 --overlap 0.125 \\
        --out membrane-10A.pt [--json calib.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

STRENGTHS = (0.0, 0.25, 0.5, 0.75, 1.0)


def parse_seeds(text: str) -> list[int]:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def dev_volumes(cache: Path, seeds, snr: float, tilt_deg: float) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Normalised volumes and class maps of the dev set (training shapes, full imaging at ``snr`` and ±``tilt_deg``;
    cached as ``dev_snr<snr>_tilt<tilt>_<seed>.npz``)."""
    from tomopick.simulate import ContextConfig, SimulationConfig, simulate_tomogram
    from tomopick.training.segment import normalise_volumes
    from train_membrane import SHAPE, TRAIN_SHAPES, VOXEL_SIZE_A

    images, labels = [], []
    for seed in seeds:
        path = cache / f"dev_snr{snr:g}_tilt{tilt_deg:g}_{seed}.npz"
        if not path.exists():
            cfg = SimulationConfig(shape_zyx=SHAPE, voxel_size_A=VOXEL_SIZE_A, particle_source="procedural",
                                   context=ContextConfig(vesicle_shapes=TRAIN_SHAPES), randomize=True, imaging="full",
                                   seed=seed, keep_noiseless=False, run_name=f"dev_{seed}", snr=float(snr),
                                   tilt_min_deg=-float(tilt_deg), tilt_max_deg=float(tilt_deg))
            r = simulate_tomogram(cfg)
            img = normalise_volumes([np.asarray(r.tomogram.data, dtype=np.float32)])[0]
            np.savez(path, image=img, labels=r.segmentation)
        with np.load(path) as f:
            images.append(f["image"])
            labels.append(f["labels"])
    return images, labels


def probabilities(loaded, image: np.ndarray) -> np.ndarray:
    """Softmax ``(C, z, y, x)`` of one whole (small) normalised volume: one forward pass per flip of the model's
    stored test-time augmentation (``config["segment"]["tta"]``, else one), averaged by the predictor ``tomopick
    segment`` uses (:func:`tomopick.inference.sliding.make_predictor`)."""
    import torch

    from tomopick.inference.sliding import make_predictor

    n_classes = len(loaded.config.get("segment_classes") or []) or 5
    predict = make_predictor(loaded.model.eval(), output="softmax", channels=list(range(n_classes)),
                             tta=int((loaded.config.get("segment") or {}).get("tta", 1)), channels_last=False,
                             fold_norm=False)
    with torch.inference_mode():
        return predict(torch.as_tensor(image)[None, None])[0].numpy()


def score_variants(loaded, images, labels, variants: dict) -> dict:
    """Membrane / lumen Dice and vesicle matches per variant, pooled over the volumes. A variant is a
    :class:`~tomopick.segment.predict.SegmentOptions` (its ``prior_correction`` and post-processing are applied to
    each volume's probabilities exactly as ``tomopick segment`` applies them)."""
    rows: dict = {key: [] for key in variants}
    for img, lab in zip(images, labels):
        for key, row in score_volume(loaded, probabilities(loaded, img), lab, variants).items():
            rows[key].append(row)
    return pool(rows)


def score_volume(loaded, prob: np.ndarray, lab: np.ndarray, variants: dict) -> dict:
    """``{variant: (membrane Dice, lumen Dice, vesicles matched, vesicles)}`` of one volume's probabilities
    ``(C, z, y, x)`` against its class map ``lab``."""
    from tomopick.segment import dice, match_instances
    from tomopick.segment.instances import LUMEN, MEMBRANE, label_instances
    from tomopick.segment.predict import class_prior_scale, postprocess

    vs = float(loaded.config["voxel_size_A"])
    truth_inst = label_instances(lab, vs)
    ids = [int(i) for i in np.unique(truth_inst[lab == LUMEN]) if i]
    out = {}
    for key, opts in variants.items():
        scale = class_prior_scale(loaded.config, prob.shape[0], float(opts.prior_correction or 0.0))
        p = prob if scale is None else prob * scale[:, None, None, None]
        cls, inst = postprocess(p.argmax(0).astype(np.uint8), vs, opts)
        m = match_instances(truth_inst, inst, 0.5, ids=ids)
        out[key] = (dice(lab == MEMBRANE, cls == MEMBRANE), dice(lab == LUMEN, cls == LUMEN), m["n_matched"],
                    m["n_truth"])
    return out


def pool(rows: dict) -> dict:
    """Mean Dice and summed vesicle counts per variant of :func:`score_volume` rows."""
    out = {}
    for key, r in rows.items():
        a = np.asarray(r, dtype=np.float64)
        out[key] = {"membrane_dice": float(a[:, 0].mean()), "lumen_dice": float(a[:, 1].mean()),
                    "vesicles_matched": int(a[:, 2].sum()), "vesicles": int(a[:, 3].sum())}
    return out


def pool_sets(results: list[dict]) -> dict:
    """Several sets' :func:`pool` results of one variant as one: the mean of the sets' mean Dice, vesicles summed."""
    return {"membrane_dice": float(np.mean([r["membrane_dice"] for r in results])),
            "lumen_dice": float(np.mean([r["lumen_dice"] for r in results])),
            "vesicles_matched": sum(r["vesicles_matched"] for r in results),
            "vesicles": sum(r["vesicles"] for r in results)}


def evaluate(loaded, images, labels, strengths=STRENGTHS) -> dict[float, dict]:
    """:func:`score_variants` over prior-correction strengths (the other options at their defaults)."""
    from tomopick.segment.predict import SegmentOptions

    return score_variants(loaded, images, labels, {t: SegmentOptions(prior_correction=t) for t in strengths})


def choose(results: dict[float, dict]) -> float:
    """The strength with the best membrane Dice among those matching as many vesicles as strength 0."""
    floor = results[0.0]["vesicles_matched"]
    ok = [t for t, r in results.items() if r["vesicles_matched"] >= floor]
    return max(ok, key=lambda t: (results[t]["membrane_dice"], -t))


def add_volume_arguments(ap: argparse.ArgumentParser) -> None:
    """The model and the calibration volumes' options (shared with ``bench/segment_tta.py``)."""
    ap.add_argument("model", type=Path)
    ap.add_argument("--cache", type=Path, required=True, help="train_membrane.py's cache of simulated volumes")
    ap.add_argument("--seeds", default="1500-1507", help="validation seeds A-B (simulated into --cache if missing)")
    ap.add_argument("--recipe", default="v3")
    ap.add_argument("--dev-snr", type=float, default=None, help="add a harder dev set at this SNR")
    ap.add_argument("--dev-tilt", type=float, default=45.0, help="dev set tilt range ± degrees")
    ap.add_argument("--dev-seeds", default="1600-1603")


def load_sets(args) -> dict[str, tuple[list[np.ndarray], list[np.ndarray]]]:
    """``{"validation": (images, labels)[, "dev": …]}`` for :func:`add_volume_arguments`' options."""
    from train_membrane import load_or_simulate

    sets = {"validation": load_or_simulate(args.cache, parse_seeds(args.seeds), print, args.recipe)}
    if args.dev_snr is not None:
        sets["dev"] = dev_volumes(args.cache, parse_seeds(args.dev_seeds), args.dev_snr, args.dev_tilt)
    return sets


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_volume_arguments(ap)
    ap.add_argument("--roi", default=None, help="window plan to store, Z,Y,X")
    ap.add_argument("--overlap", type=float, default=None, help="overlap to store with --roi")
    ap.add_argument("--out", type=Path, default=None, help="write the calibrated checkpoint here")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    from tomopick.models.checkpoint import load_checkpoint, save_checkpoint

    loaded = load_checkpoint(args.model)
    seeds = parse_seeds(args.seeds)
    sets = load_sets(args)
    per_set = {name: evaluate(loaded, *vols) for name, vols in sets.items()}
    for name, res in per_set.items():
        for t, r in res.items():
            print(f"{name} strength {t:.2f}: membrane Dice {r['membrane_dice']:.3f}, lumen Dice "
                  f"{r['lumen_dice']:.3f}, vesicles {r['vesicles_matched']}/{r['vesicles']}")
    # pooled: the mean of the sets' mean Dice, vesicles summed
    results = {t: pool_sets([res[t] for res in per_set.values()]) for t in STRENGTHS}
    best = choose(results)
    for t, r in results.items():
        print(f"pooled strength {t:.2f}: membrane Dice {r['membrane_dice']:.3f}, lumen Dice {r['lumen_dice']:.3f}, "
              f"vesicles {r['vesicles_matched']}/{r['vesicles']}" + ("  <- chosen" if t == best else ""))
    plan = {**(loaded.config.get("segment") or {}), "prior_correction": best,
            "prior_correction_chosen_on": {
                "seeds": [seeds[0], seeds[-1]], "recipe": args.recipe,
                "dev": None if args.dev_snr is None else {"snr": args.dev_snr, "tilt_deg": args.dev_tilt,
                                                          "seeds": args.dev_seeds},
                "results": {name: {str(t): r for t, r in res.items()} for name, res in per_set.items()}}}
    if args.roi:
        plan["roi_size"] = [int(v) for v in args.roi.split(",")]
        plan["overlap"] = float(args.overlap if args.overlap is not None else 0.125)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"model": str(args.model), **plan}, indent=1))
    if args.out:
        save_checkpoint(args.out, loaded.model, {**loaded.config, "segment": plan}, card=loaded.card,
                        overwrite=True, half=True)
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
