"""The tomoCPT recipe vs the default recipe at the same CPU budget, on held-out simulations and a domain-shift set.

Three recipes, each trained on the same small simulated copick project for the same wall-clock budget
(``max_minutes``, two threads): ``default`` (configs/czii-10A.yaml: resunet, spheres, dice_ce, maxpool),
``tomocpt-resunet`` (configs/tomocpt-resunet-10A.yaml: the same resunet on Gaussian centroid heatmaps,
huber_laplacian, localmax) and ``tomocpt`` (configs/tomocpt-10A.yaml: SwinUNETR, Gaussian heatmaps, localmax).
Each trained ``best.pt`` is scored with ``tomopick pick`` defaults (the thresholds and peak method it stores) and with
the best threshold per class (sweep), CZII F4 and RMSE of matched centres per class.

Usage::

    python bench/tomocpt_parity.py data /work/data/tomocpt/sim          # ~1 min on two cores
    python bench/tomocpt_parity.py train RECIPE DATA OUT --minutes 8    # one recipe under a budget
    python bench/tomocpt_parity.py score OUT/best.pt DATA --runs tc_test_0 tc_test_1 [--json F]
    python bench/tomocpt_parity.py score bundled /work/data/czii-test --runs czii_test_0 --peak-method localmax
    python bench/tomocpt_parity.py table RESULT.json ...             # markdown: F4 / RMSE per class

Data (``data``): 9 runs of 128 × 256 × 256 at 10 Å with the default full imaging (SNR 3) and crowding 1.5:
``tc_000``–``tc_005`` train, ``tc_val`` validates, ``tc_test_0``/``tc_test_1`` are held out (seeds 7000–7008).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parent.parent
RECIPES = {"default": "czii-10A.yaml", "tomocpt-resunet": "tomocpt-resunet-10A.yaml", "tomocpt": "tomocpt-10A.yaml"}
SHAPE = (128, 256, 256)
TRAIN = [f"tc_{i:03d}" for i in range(6)]
VAL = ["tc_val"]
TEST = ["tc_test_0", "tc_test_1"]


def make_data(out: Path) -> None:
    from czii_data import write_project

    from tomopick.simulate import SimulationConfig

    names = TRAIN + VAL + TEST
    configs = [SimulationConfig(shape_zyx=SHAPE, voxel_size_A=10.0, imaging="full", keep_noiseless=False,
                                crowding=1.5, seed=7000 + i, run_name=name) for i, name in enumerate(names)]
    write_project(out, configs, "tomocpt-parity")


def recipe_config(recipe: str, data: Path, minutes: float, overrides: dict | None = None):
    """The recipe's YAML with the data replaced (train/val runs of :func:`make_data`) and ``max_minutes`` set."""
    import yaml

    from tomopick.training.config import validate_config

    raw = yaml.safe_load((ROOT / "configs" / RECIPES[recipe]).read_text())
    raw["data"].update(path=str(data), train_runs=TRAIN, val_runs=VAL)
    raw["max_minutes"] = float(minutes)
    raw["num_threads"] = 2
    for key, value in (overrides or {}).items():  # dotted keys: "loss.positive_weight"
        node = raw
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return validate_config(raw)


def train_recipe(recipe: str, data: Path, out: Path, minutes: float, overrides: dict | None = None) -> dict:
    from tomopick.workflows.train import train

    cfg = recipe_config(recipe, data, minutes, overrides)
    t0 = time.perf_counter()
    result = train(cfg, out, overwrite=True, progress=False, log=lambda line: print(line, flush=True))
    info = {"recipe": recipe, "overrides": overrides or {}, "max_minutes": minutes, "steps": result.steps,
            "epochs": result.epochs, "best_epoch": result.best_epoch, "best_val_score": result.best_score,
            "train_time_s": round(result.time_s, 1), "wall_s": round(time.perf_counter() - t0, 1)}
    (out / "parity_train.json").write_text(json.dumps(info, indent=1) + "\n")
    print(json.dumps(info), flush=True)
    return info


def score_model(model: Path | None, data: Path, runs: list[str], peak_method: str | None = None) -> dict:
    """CZII F4 with the checkpoint's stored defaults (``peak_method``: another peak method, else the stored one)
    and with the best threshold per class, RMSE per class. ``model`` None: the bundled czii-10A."""
    from tomopick.data import CZII, Picks
    from tomopick.evaluation import apply_thresholds, czii_score, threshold_sweep
    from tomopick.inference.options import PickOptions
    from tomopick.io.copick_project import CopickProject
    from tomopick.models.checkpoint import load_checkpoint
    from tomopick.peaks import thresholds
    from tomopick.workflows.pick import pick

    proj = CopickProject.open(data)
    truth = Picks.concat([proj.read_picks(run=r, user_id="curation").with_columns(run=r) for r in runs])
    uris = [f"copick://{data}?run={r}" for r in runs]
    t0 = time.perf_counter()
    extra = {"peak_method": peak_method} if peak_method else {}
    expensive = model is not None and load_checkpoint(model).config["network"]["name"] == "swinunetr"
    if expensive:
        # one inference only (SwinUNETR: seconds per window on a CPU): the picks of `tomopick pick` defaults are
        # those of a low-threshold pick kept above the stored thresholds (exact for the peak score, whose
        # thresholds only filter; checked on the resunet models, where both are computed)
        loaded = load_checkpoint(model)
        options = PickOptions.make(**extra).with_defaults(loaded.config)
        low = pick(uris, model, threshold=thresholds.MIN_SCORE, peak_method=options.peak_method).picks
        seconds = time.perf_counter() - t0
        method, chosen = options.peak_method, default_thresholds(loaded, options)
        default = czii_score(truth, apply_thresholds(low, chosen), CZII)
        postfilter = default
    else:
        report = pick(uris, model, **extra)  # the checkpoint's stored thresholds (and peak method)
        seconds = time.perf_counter() - t0
        default = czii_score(truth, report.picks, CZII)
        method = report.options.peak_method
        low = pick(uris, model, threshold=thresholds.MIN_SCORE, peak_method=method).picks
        chosen = {n: float(v["value"]) for n, v in report.runs[0]["thresholds"].items()}
        postfilter = czii_score(truth, apply_thresholds(low, chosen), CZII)
    sweep = threshold_sweep(truth, low, CZII, "czii", beta=4.0)
    swept = czii_score(truth, apply_thresholds(low, sweep.thresholds()), CZII)
    per_class = {}
    for _, row in default.table.iterrows():
        per_class[row["particle"]] = {"fbeta": round(float(row["fbeta"]), 3), "rmse_A": round(float(row["rmse_A"]), 2),
                                      "n_picks": int(row["n_picks"])}
    out = {"model": str(model), "runs": runs, "peak_method": method, "f4_defaults": round(float(default.score), 4),
           "f4_defaults_one_pick": round(float(postfilter.score), 4), "one_pick": expensive, "thresholds": chosen,
           "f4_sweep": round(float(sweep.score), 4), "classes": per_class, "pick_seconds": round(seconds, 1)}
    out["rmse_sweep"] = {r["particle"]: round(float(r["rmse_A"]), 2) for _, r in swept.table.iterrows()}
    return out


def default_thresholds(loaded, options) -> dict[str, float]:
    """The per-class thresholds ``tomopick pick`` uses by default with this checkpoint (stored, else the default)."""
    from tomopick.peaks.thresholds import choose_thresholds

    names = [n for n in loaded.config["classes"] if n != "background"]
    choices = choose_thresholds(names, options.threshold, loaded.config.get("pick"), str(options.score))
    return {n: float(c.value) for n, c in zip(names, choices)}


def table(paths: list[Path]) -> str:
    """A markdown table of ``score --json`` results: F4 (defaults, sweep), per class F4 and RMSE (Å) at defaults."""
    from tomopick.data import CZII

    names = CZII.names
    lines = ["| model | peaks | F4 defaults | F4 sweep | " + " | ".join(names) + " |",
             "|---|---|---|---|" + "---|" * len(names)]
    for path in paths:
        r = json.loads(Path(path).read_text())
        cells = []
        for n in names:
            c = r["classes"].get(n)
            cells.append("–" if c is None else f"{c['fbeta']:.2f} / {c['rmse_A']:.1f}")
        lines.append(f"| {Path(path).stem} | {r['peak_method']} | **{r['f4_defaults']:.3f}** | {r['f4_sweep']:.3f} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("data")
    d.add_argument("out", type=Path)
    t = sub.add_parser("train")
    t.add_argument("recipe", choices=sorted(RECIPES))
    t.add_argument("data", type=Path)
    t.add_argument("out", type=Path)
    t.add_argument("--minutes", type=float, required=True)
    t.add_argument("--set", nargs="*", default=[], help="config overrides key=value (YAML values), dotted keys")
    s = sub.add_parser("score")
    s.add_argument("model", help="a checkpoint, or 'bundled'")
    s.add_argument("data", type=Path)
    s.add_argument("--runs", nargs="+", default=None)
    s.add_argument("--json", type=Path, default=None)
    s.add_argument("--peak-method", default=None, help="instead of the checkpoint's stored one")
    tb = sub.add_parser("table")
    tb.add_argument("json", nargs="+", type=Path)
    args = parser.parse_args()
    if args.cmd == "table":
        print(table(args.json))
    elif args.cmd == "data":
        make_data(args.out)
    elif args.cmd == "train":
        import yaml

        overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
        train_recipe(args.recipe, args.data, args.out, args.minutes, overrides)
    else:
        from tomopick.io.copick_project import CopickProject

        runs = args.runs or CopickProject.open(args.data).runs()
        model = None if args.model == "bundled" else Path(args.model)
        result = score_model(model, args.data, list(runs), args.peak_method)
        print(json.dumps(result, indent=1))
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
