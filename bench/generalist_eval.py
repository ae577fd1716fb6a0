"""Zero-shot recall of the class-agnostic ``generalist-10A`` detector on kinds it never saw (issue #12, section 3).

For each simulated tomogram (MRC + truth CSV with ``particle_type``, e.g. ``/work/data/match/sim_unseen/sim_000``:
the six CZII complexes plus 8vaf and dumbbells, full imaging), ``tomopick pick`` with the model (its defaults:
stored threshold, peak method) and, for the ranking, every candidate above the validation floor. Per kind of the
truth: **recall** = the share of its particles with a pick within 0.5 × that kind's radius (a pick may serve
several kinds' particles; the detector has one class); **precision** = the share of picks within 0.5 × radius of
some particle; the best recall reachable at any threshold (candidates at the floor) shows what the ranking holds.

Usage::

    python bench/generalist_eval.py TOMO.mrc [TOMO2.mrc …] [--model generalist-10A] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402

#: Particle radii (Å) of the kinds in the test tomograms (the simulator's).
RADII = {"apo-ferritin": 60.0, "beta-amylase": 65.0, "beta-galactosidase": 90.0, "ribosome": 150.0,
         "thyroglobulin": 130.0, "virus-like-particle": 135.0, "8vaf": 60.0, "dumbbell": 110.0}
SEEN = {"apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"}


def match_stats(truth: pd.DataFrame, xyz: np.ndarray) -> dict:
    from scipy.spatial import cKDTree

    t_xyz = truth[["x", "y", "z"]].to_numpy(dtype=float)
    radius = truth["particle_type"].map(RADII).fillna(60.0).to_numpy()
    out: dict = {"picks": int(len(xyz))}
    if len(xyz):
        d, _ = cKDTree(xyz).query(t_xyz)
        found = d <= 0.5 * radius
        d_pick, j = cKDTree(t_xyz).query(xyz)
        out["precision"] = float(np.mean(d_pick <= 0.5 * radius[j]))
    else:
        found = np.zeros(len(truth), dtype=bool)
        out["precision"] = float("nan")
    kinds = {}
    for kind in sorted(truth["particle_type"].unique()):
        mine = (truth["particle_type"] == kind).to_numpy()
        kinds[kind] = {"n": int(mine.sum()), "recall": float(found[mine].mean()), "seen_in_training": kind in SEEN}
    out["kinds"] = kinds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tomograms", nargs="+", type=Path)
    parser.add_argument("--model", default="generalist-10A")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from tomopick.inference.options import PickOptions
    from tomopick.inference.picking import inference_settings, pick_tomogram
    from tomopick.io import read_tomogram
    from tomopick.peaks.thresholds import MIN_SCORE
    from tomopick.workflows.pick import resolve_model

    loaded = resolve_model(args.model)
    results = {"machine": machine_info(octopi=False), "model": args.model, "tomograms": {}}
    for path in args.tomograms:
        truth = pd.read_csv(path.with_suffix(".csv"))
        tomo = read_tomogram(path)
        row = {}
        for label, options in (("defaults", PickOptions()), ("floor", PickOptions(threshold=MIN_SCORE))):
            used = options.with_defaults(loaded.config)
            t0 = time.perf_counter()
            picks, summary = pick_tomogram(tomo, loaded, used, run=path.stem,
                                           settings=inference_settings(loaded, used))
            row[label] = match_stats(truth, picks.xyz_A) | {"seconds": round(time.perf_counter() - t0, 1),
                                                              "threshold": summary["thresholds"]}
        results["tomograms"][str(path)] = row
        for label in ("defaults", "floor"):
            r = row[label]
            kinds = ", ".join(f"{k} {v['recall']:.2f}{'' if v['seen_in_training'] else ' (unseen)'}"
                              for k, v in r["kinds"].items())
            print(f"{path.name} {label}: {r['picks']} picks, precision {r['precision']:.2f}; recall {kinds}",
                  flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
