"""Held-out check of a small ``tomopick search``: the base recipe (trial 0) against the best trial.

Both checkpoints come from the same search (``OUT/trials/NNNN/best.pt``: each trial's best validation weights,
trained with the same per-trial budget). Each is run with ``tomopick pick``'s defaults (its own stored thresholds)
on held-out runs of the simulated copick project that neither training nor validation saw, and scored with the
CZII F-beta (β = 4); the oracle (best threshold per class on the truth) is given too.

Usage::

    python bench/search_small.py OUT --data SIM --runs sim_006 sim_007 [--json OUT/heldout.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from tomopick.data import Picks
from tomopick.evaluation import czii_score, threshold_sweep
from tomopick.io.copick_project import CopickProject
from tomopick.peaks.thresholds import MIN_SCORE
from tomopick.workflows.calibrate import foreground_particles
from tomopick.workflows.pick import PickOptions, pick, resolve_model


def evaluate(checkpoint: Any, data: Path, runs: list[str]) -> dict:
    """Defaults and oracle CZII F4 of a model (a checkpoint path, or anything ``resolve_model`` takes: an
    ensemble spec) on the held-out runs, and the seconds of the defaults pass."""
    loaded = resolve_model(checkpoint)
    particles = foreground_particles(loaded.config)
    project = CopickProject.open(data)
    truth = Picks.concat([project.read_picks(run=r, user_id="curation").with_columns(run=r) for r in runs])
    truth = truth.select(truth.frame["particle"].isin(particles.names).to_numpy())
    inputs = [f"copick://{data}?run={r}" for r in runs]
    t0 = time.perf_counter()
    defaults = pick(inputs, loaded, options=PickOptions()).picks
    seconds = time.perf_counter() - t0
    candidates = pick(inputs, loaded, options=PickOptions(threshold=MIN_SCORE)).picks
    score = czii_score(truth, defaults, particles)
    oracle = threshold_sweep(truth, candidates, particles, "czii")
    return {"checkpoint": str(checkpoint), "defaults": float(score.score), "oracle": float(oracle.score),
            "seconds": seconds,
            "classes": {row["particle"]: float(row["fbeta"]) for _, row in score.table.iterrows()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="the search's output folder")
    parser.add_argument("--data", type=Path, required=True, help="copick project of the simulated data")
    parser.add_argument("--runs", nargs="+", required=True, help="held-out runs")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    summary = json.loads((args.out / "summary.json").read_text())
    best = int(summary["best"]["number"])
    result = {"runs": args.runs, "best_trial": best, "best_validation": summary["best"]["value"],
              "base_recipe": evaluate(args.out / "trials" / "0000" / "best.pt", args.data, args.runs),
              "best": evaluate(args.out / "trials" / f"{best:04d}" / "best.pt", args.data, args.runs)}
    for key in ("base_recipe", "best"):
        r = result[key]
        classes = ", ".join(f"{k} {v:.3f}" for k, v in r["classes"].items())
        print(f"{key:12s} held-out CZII F4 defaults {r['defaults']:.3f} oracle {r['oracle']:.3f} ({classes})")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    sys.exit(main())
