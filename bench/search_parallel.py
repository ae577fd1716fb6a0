"""``tomopick search`` in one process vs. on a local Dask cluster: the same base config, the same number of trials.

Runs, each in a fresh output folder (a new study), one after another:

``serial``   ``tomopick search BASE --out DIR/serial --trials N`` (trials one after another; the base config's
             ``num_threads`` torch threads each)
``dask``     ``tomopick search BASE --out DIR/dask --trials N --workers W`` (W worker processes; each trial gets
             cores // W threads)

and reports the wall time, finished trials per minute, each trial's seconds and the best validation score.
Trials are capped by the base config's epochs × steps (remove ``max_minutes`` from it for a fair count: with a
per-trial time cap both modes spend the cap per trial).

Usage::

    python bench/search_parallel.py BASE.yaml --out DIR --trials 8 --workers 2 [--json OUT.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info  # noqa: E402


def run(base: Path, out: Path, trials: int, extra: list[str]) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    exe = Path(sys.executable).with_name("tomopick")  # the CLI of this environment
    cmd = [str(exe) if exe.exists() else "tomopick", "search", str(base), "--out", str(out),
           "--trials", str(trials), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    finished = [r for r in rows if r["state"] in ("COMPLETE", "PRUNED")]
    values = [float(r["value"]) for r in rows if r["state"] == "COMPLETE" and r["value"]]
    return {"command": " ".join(cmd), "wall_s": round(wall, 1), "trials_finished": len(finished),
            "trials_per_min": round(60.0 * len(finished) / wall, 2),
            "trial_seconds": [float(r["seconds"]) for r in finished if r.get("seconds")],
            "best_value": max(values) if values else None,
            "states": {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    result = {"machine": machine_info(octopi=False), "trials": args.trials, "workers": args.workers,
              "serial": run(args.base, args.out / "serial", args.trials, []),
              "dask": run(args.base, args.out / "dask", args.trials, ["--workers", str(args.workers)])}
    result["speedup"] = round(result["serial"]["wall_s"] / result["dask"]["wall_s"], 2)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json is not None:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
