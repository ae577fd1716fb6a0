"""Ensemble benchmark: two differently trained checkpoints and their fused ensemble on the domain-shift sets.

For every set (copick projects from ``bench/shift_sets.py``), each model is scored exactly as
``bench/domain_shift.py`` scores one (:func:`domain_shift.score_set`: ``tomopick pick``'s code path, *defaults* =
the thresholds ``tomopick pick`` chooses without options, *oracle* = best threshold per class on the truth),
first every single model, then the ensemble ``tomopick pick --model A --model B --model-weights …`` (one pass
over each tomogram; thresholds = the members' weighted mean). Seconds are the picking time of each.

Usage::

    python bench/ensemble_shift.py DATA --model A.pt --model B.pt [--model-weights 0.5,0.5] [--sets …]
        [--czii-test DIR] --json OUT.json
    python bench/ensemble_shift.py --render OUT1.json [OUT2.json …]     # markdown table for RESULTS.md

``A`` may be ``bundled`` (the shipped czii-10A).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info  # noqa: E402
from domain_shift import score_set  # noqa: E402
from shift_sets import BENCH_SETS  # noqa: E402

from tomopick.inference.ensemble import EnsembleSpec  # noqa: E402
from tomopick.workflows.pick import resolve_model  # noqa: E402


def _model(name: str):
    return resolve_model(None if name == "bundled" else name)


def render(paths: list[Path]) -> str:
    rows = []
    for path in paths:
        res = json.loads(path.read_text())
        for name, by_model in res["sets"].items():
            best_single = max(v["default"] for k, v in by_model.items() if k != "ensemble")
            for label, r in by_model.items():
                mark = "**" if label == "ensemble" and r["default"] > best_single else ""
                rows.append(f"| {name} | {res['labels'].get(label, label)} | {mark}{r['default']:.3f}{mark} | "
                            f"{r['oracle']:.3f} | {r['seconds_picking']:.0f} |")
    head = "| set | model | defaults (F4) | oracle | seconds (picking the set) |\n|---|---|---|---|---|"
    return "\n".join([head, *rows])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--render":
        print(render([Path(p) for p in sys.argv[2:]]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="folder with one copick project per shift set")
    parser.add_argument("--model", action="append", required=True, help="checkpoint (repeat; 'bundled')")
    parser.add_argument("--model-weights", default=None, help="ensemble weights, e.g. 0.5,0.5")
    parser.add_argument("--sets", nargs="*", default=None, help="set folders under DATA (default: the bench sets)")
    parser.add_argument("--czii-test", type=Path, default=None, help="in-distribution test project too")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--singles", type=int, nargs="*", default=None,
                        help="score only these models alone (0-based; default all; their scores are deterministic, "
                             "e.g. from bench/domain_shift.py)")
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    spec = EnsembleSpec(args.model, args.model_weights)
    singles = {f"model{i}": _model(m) for i, m in enumerate(args.model)}
    ensemble = resolve_model(EnsembleSpec([singles[k] for k in singles], spec.weights))
    sets = {name: args.data / name for name in (args.sets or list(BENCH_SETS))}
    if args.czii_test is not None:
        sets["in-distribution (czii-test)"] = args.czii_test
    labels = {k: m for k, m in zip(singles, args.model)}
    labels["ensemble"] = "ensemble " + " + ".join(f"{m} ({w:.2g})" for m, w in zip(args.model, spec.weights))
    results: dict = {"machine": machine_info(octopi=False), "labels": labels, "weights": spec.weights,
                     "thresholds": {k: v for k, v in ensemble.config["pick"].items() if k != "adapt_reference"},
                     "sets": {}}
    if args.json.exists():  # several invocations (one set each) collect into one file
        previous = json.loads(args.json.read_text())
        results["sets"] = previous.get("sets", {})
    t_all = time.perf_counter()
    for name, root in sets.items():
        by_model = {}
        chosen = [(k, m) for i, (k, m) in enumerate(singles.items()) if args.singles is None or i in args.singles]
        for key, loaded in [*chosen, ("ensemble", ensemble)]:
            score = str(loaded.config.get("pick", {}).get("score") or "blob")
            res = score_set(root, loaded, score, args.threads)
            by_model[key] = res
            print(f"{name:28s} {labels[key][:60]:60s} default {res['default']:.3f} oracle {res['oracle']:.3f} "
                  f"{res['seconds_picking']:.0f} s", flush=True)
        results["sets"][name] = by_model
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))
    print(f"total {time.perf_counter() - t_all:.0f} s")


if __name__ == "__main__":
    main()
