"""Domain-shift benchmark: a checkpoint scored on simulated test sets whose imaging lies outside its training data.

For every set of ``bench/shift_sets.py`` (made beforehand with ``python bench/shift_sets.py bench DATA``) and,
when given, the in-distribution CZII-size test set (``python bench/czii_data.py czii-test DATA/czii-test``):

* pick every run once with ``tomopick pick``'s code path (:func:`tomopick.workflows.pick.pick`), keeping every
  candidate above the validation floor (``MIN_SCORE``);
* **defaults** — the CZII score of the picks ``tomopick pick`` keeps without options (the thresholds its policy
  chooses, :func:`tomopick.peaks.thresholds.choose_thresholds`: the same picks as a run with defaults);
* **oracle** — the best threshold per class chosen on the truth (:func:`tomopick.evaluation.threshold_sweep`);
* their ratio, and per class the average precision (AP) of the ranked picks.

Nothing here trains or selects anything: these sets are for reporting only.

Usage::

    python bench/domain_shift.py DATA [--model M.pt] [--scores blob peak] [--czii-test DATA/czii-test]
        [--json bench/out/domain_shift.json]
    python bench/domain_shift.py --render bench/out/a.json [b.json …]     # markdown table for RESULTS.md
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import machine_info  # noqa: E402
from shift_sets import BENCH_SETS  # noqa: E402

from tomopick.data import Picks  # noqa: E402
from tomopick.evaluation import (  # noqa: E402
    apply_thresholds, average_precisions, czii_score, pr_curve, threshold_sweep,
)
from tomopick.io.copick_project import CopickProject  # noqa: E402
from tomopick.peaks.thresholds import MIN_SCORE, choose_thresholds, valley_threshold  # noqa: E402
from tomopick.workflows.calibrate import foreground_particles  # noqa: E402
from tomopick.workflows.pick import PickOptions, pick, resolve_model  # noqa: E402


def valley_picks(candidates: Picks) -> Picks:
    """The picks ``--threshold-rule valley`` keeps: per run and class, scores >= the valley of that run's scores."""
    keep = np.zeros(len(candidates), dtype=bool)
    frame = candidates.frame.reset_index(drop=True)
    for _, group in frame.groupby(["run", "particle"]):
        scores = group["score"].to_numpy(np.float64)
        keep[group.index.to_numpy()] = scores >= valley_threshold(scores)
    return candidates.select(keep)


def score_set(root: Path, loaded, score: str, threads: int | None, peak_method: str | None = None,
              save_candidates: Path | None = None, **extra) -> dict:
    """Defaults, oracle and per-class AP of one copick project (every run)."""
    project = CopickProject.open(root)
    particles = foreground_particles(loaded.config)
    truth = Picks.concat([project.read_picks(run=r, user_id="curation").with_columns(run=r)
                          for r in project.runs()])
    t0 = time.perf_counter()
    options = PickOptions(threshold=MIN_SCORE, score=score, threads=threads, peak_method=peak_method, **extra)
    report = pick(f"copick://{root}", loaded, options=options)
    seconds = time.perf_counter() - t0
    candidates = report.picks
    if save_candidates is not None:
        save_candidates.mkdir(parents=True, exist_ok=True)
        candidates.frame.to_csv(save_candidates / f"{root.name}.csv", index=False)
    choices = choose_thresholds(particles.names, None, loaded.config.get("pick"), score)
    defaults = {n: c.value for n, c in zip(particles.names, choices)}
    default = czii_score(truth, apply_thresholds(candidates, defaults), particles)
    valley = czii_score(truth, valley_picks(candidates), particles) if score == "blob" else None
    oracle = threshold_sweep(truth, candidates, particles, "czii")
    ap = average_precisions(pr_curve(truth, candidates, particles), particles)
    per_class = {}
    for _, row in default.table.iterrows():
        name = row["particle"]
        o = oracle.table.set_index("particle").loc[name]
        per_class[name] = {"default_fbeta": float(row["fbeta"]), "oracle_fbeta": float(o["fbeta"]),
                           "ap": float(ap.get(name, 0.0)), "n_truth": int(row["tp"] + row["fn"]),
                           "n_default_picks": int(row["tp"] + row["fp"]), "threshold": defaults[name],
                           "threshold_rule": choices[particles.names.index(name)].rule}
    return {"default": float(default.score), "oracle": float(oracle.score),
            "valley": None if valley is None else float(valley.score),
            "ratio": float(default.score / oracle.score) if oracle.score > 0 else float("nan"),
            "classes": per_class, "runs": project.runs(), "seconds_picking": seconds}


SHORT = {"apo-ferritin": "apo", "beta-amylase": "β-amy", "beta-galactosidase": "β-gal", "ribosome": "ribo",
         "thyroglobulin": "thyro", "virus-like-particle": "VLP"}


def render(paths: list[Path]) -> str:
    """Markdown tables (one row per model × score × set) from result files written with ``--json``."""
    rows = []
    for path in paths:
        res = json.loads(path.read_text())
        for score, sets in res["scores"].items():
            for name, r in sets.items():
                aps = " / ".join(f"{v['ap']:.2f}" for v in r["classes"].values())
                valley = "–" if r.get("valley") is None else f"{r['valley']:.3f}"
                rows.append(f"| {res['model']} | {score} | {name} | **{r['default']:.3f}** | {r['oracle']:.3f} | "
                            f"{r['ratio']:.2f} | {valley} | {aps} |")
    classes = " / ".join(SHORT.values())
    head = (f"| model | score | set | defaults | oracle | defaults / oracle | valley rule | AP {classes} |\n"
            "|---|---|---|---|---|---|---|---|")
    return "\n".join([head, *rows])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--render":
        print(render([Path(p) for p in sys.argv[2:]]))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data", type=Path, help="folder with one copick project per shift set")
    parser.add_argument("--model", default=None, help="checkpoint (default: the bundled czii-10A)")
    parser.add_argument("--scores", nargs="+", default=["blob"], choices=["blob", "peak"])
    parser.add_argument("--sets", nargs="*", default=None, help="only these shift sets")
    parser.add_argument("--czii-test", type=Path, default=None, help="in-distribution test project too")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--peak-method", default=None, help="peak method (default: the model's)")
    parser.add_argument("--label", default=None, help="model name in the tables")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"], help="CPU arithmetic")
    parser.add_argument("--skip-vacuum", action="store_true", help="skip windows outside the specimen slab")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--save-candidates", type=Path, default=None,
                        help="write every set's candidate picks (all scores above the floor) as DIR/<set>.csv")
    args = parser.parse_args()
    loaded = resolve_model(args.model)
    sets = {name: args.data / name for name in (args.sets or list(BENCH_SETS))}
    if args.czii_test is not None:
        sets["in-distribution (czii-test)"] = args.czii_test
    label = args.label or args.model or "czii-10A (bundled)"
    if args.peak_method:
        label += f", {args.peak_method}"
    results: dict = {"machine": machine_info(octopi=False), "model": label,
                     "sets": {n: BENCH_SETS[n][0] if n in BENCH_SETS else "default imaging, SNR 3" for n in sets},
                     "scores": {}}
    for score in args.scores:
        results["scores"][score] = {}
        for name, root in sets.items():
            res = score_set(root, loaded, score, args.threads, args.peak_method, args.save_candidates,
                            precision=args.precision,
                            skip_vacuum=args.skip_vacuum)
            results["scores"][score][name] = res
            aps = " ".join(f"{k[:5]} {v['ap']:.2f}" for k, v in res["classes"].items())
            valley = "" if res.get("valley") is None else f" valley {res['valley']:.3f}"
            print(f"{score:5s} {name:28s} default {res['default']:.3f}{valley} oracle {res['oracle']:.3f} "
                  f"ratio {res['ratio']:.2f} | AP {aps}", flush=True)
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
