"""Accuracy benchmark: tomopick vs octopi on the same simulated tomograms, split and training budget.

1. ``tomopick simulate`` a fixed, seeded set of tomograms (a copick project); sorted by name, the first
   ``--n-train`` train, the next ``--n-val`` validate, the last ``--n-test`` are the test set. The particle weights
   are also written where octopi reads them (``metadata.weight`` of each pickable object; tomopick keeps its own
   under ``metadata.tomopick``), so both validate with the CZII weights.
2. tomopick: its default recipe (``configs/czii-10A.yaml``) on those runs, through ``tomopick.workflows.train``
   (``bench/train_budget.py``), stopped after the first epoch that ends past ``--budget-minutes`` (and/or with
   ``--steps`` total optimiser steps as its schedule); then ``tomopick pick`` on the test runs with the best
   checkpoint and default pick settings.
3. octopi (its own venv, ``bench/peers/octopi_runner.py``): octopi's CLI defaults (3D U-Net 32-64-96-96, crops of
   96³, 16 crops per tomogram per epoch, Tversky loss, validation every 10 epochs, TTA 4, overlap 0.5) with the
   same wall-clock cap through octopi's own walltime stop; segment + localise the test runs.
4. Both pick sets are scored by ``tomopick evaluate`` (CZII metric: F-beta 4, distance 0.5 × radius, weights
   1/0/2/1/2/1), per class; tomopick's optimistic per-class best threshold (``--sweep``) is reported beside it.

Results go to ``OUT/results.json`` and (unless ``--no-write``) replace the ``## accuracy`` section of
``bench/RESULTS.md``. Defaults are the real CZII-size setup (184 × 630 × 630 voxels at 10 Å, 6/2/4 tomograms, full
imaging, 60 minutes of training per tool); that takes hours on a CPU. A small debugging run::

    python bench/accuracy.py --shape 96 192 192 --n-train 2 --n-val 1 --n-test 1 --imaging fast \\
        --budget-minutes 3 --octopi-dim-in 64 --octopi-val-interval 2 --out bench/out/accuracy-small
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OCTOPI_PY, REPO, evaluate_json, last_error_line, machine_info, machine_line,  # noqa: E402
                    markdown_table, replace_section, run_measured, short_cmd, tomopick_cmd)

SECTION = "accuracy"


def split_runs(names: list[str], n_train: int, n_val: int, n_test: int) -> tuple[list[str], list[str], list[str]]:
    """Sorted run names → (train, val, test): the first ``n_train``, the next ``n_val``, the last ``n_test``."""
    names = sorted(names)
    if n_train < 1 or n_val < 1 or n_test < 1:
        raise ValueError("need at least one training, one validation and one test tomogram")
    if n_train + n_val + n_test > len(names):
        raise ValueError(f"{n_train}+{n_val}+{n_test} runs asked for, the project has {len(names)}")
    return names[:n_train], names[n_train:n_train + n_val], names[len(names) - n_test:]


def add_octopi_weights(config_path: Path) -> dict[str, float]:
    """Copy each pickable object's ``metadata.tomopick.weight`` to ``metadata.weight`` (where octopi reads its
    validation weights) in a copick config JSON; returns the weights."""
    cfg = json.loads(config_path.read_text())
    weights = {}
    for obj in cfg.get("pickable_objects", []):
        meta = obj.setdefault("metadata", {}) or {}
        w = (meta.get("tomopick") or {}).get("weight")
        if w is not None:
            meta["weight"] = w
            weights[obj["name"]] = float(w)
        obj["metadata"] = meta
    tmp = config_path.with_name(config_path.name + ".tmp")
    tmp.write_text(json.dumps(cfg, indent=2))
    tmp.replace(config_path)
    return weights


def tomopick_config(recipe: Path, data: Path, voxel_size_A: float, train: list[str], val: list[str], *,
                    steps: int | None, threads: int, seed: int) -> dict[str, Any]:
    """The recipe YAML with the data, split, seed and threads of this benchmark (and the schedule length when
    ``steps`` is given: ``epochs = ceil(steps / steps_per_epoch)``)."""
    cfg = yaml.safe_load(recipe.read_text())
    cfg["data"].update({"kind": "copick", "path": str(data.resolve()), "voxel_size_A": voxel_size_A,
                        "train_runs": train, "val_runs": val, "user_id": "curation"})
    cfg["data"].pop("val_fraction", None)
    cfg["num_threads"] = threads
    cfg["seed"] = seed
    if steps is not None:
        cfg["epochs"] = max(1, math.ceil(steps / cfg.get("steps_per_epoch", 100)))
    return cfg


def class_rows(result: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    if not result:
        return {}
    return {c["particle"]: c for c in result["classes"]}


def zero_result(truth: Path, runs: list[str]) -> dict[str, Any]:
    """The CZII result of an empty pick set (every truth point missed), computed by tomopick.evaluation."""
    from tomopick.data import CZII, Picks
    from tomopick.evaluation import czii_score
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.open(truth)
    truth_picks = Picks.concat([project.read_picks(r, user_id="curation").with_columns(run=r) for r in runs])
    res = czii_score(truth_picks, Picks.empty(), CZII).to_dict()
    res["cmd"] = "(no picks: scored in-process with tomopick.evaluation.czii_score against an empty pick set)"
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs=3, type=int, default=[184, 630, 630], metavar=("Z", "Y", "X"))
    ap.add_argument("--voxel-size", type=float, default=10.0, help="Å (CZII: 10.012; 10 keeps octopi's URIs simple)")
    ap.add_argument("--n-train", type=int, default=6)
    ap.add_argument("--n-val", type=int, default=2)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--imaging", default="full", choices=["fast", "full"])
    ap.add_argument("--snr", type=float, default=None, help="simulation SNR (default: the simulator's)")
    ap.add_argument("--seed", type=int, default=0, help="dataset seed and both trainers' seeds")
    ap.add_argument("--budget-minutes", type=float, default=60.0,
                    help="wall-clock training budget per tool (0 = no cap)")
    ap.add_argument("--steps", type=int, default=None,
                    help="tomopick's schedule length in optimiser steps (default: the recipe's epochs × steps)")
    ap.add_argument("--recipe", type=Path, default=REPO / "configs" / "czii-10A.yaml")
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads for both tools")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "accuracy")
    ap.add_argument("--reuse-data", action="store_true", help="keep OUT/data if it exists (same arguments!)")
    ap.add_argument("--reuse", nargs="+", default=[], choices=["tomopick", "octopi"],
                    help="take this tool's record from the previous OUT/results.json instead of re-running it "
                         "(e.g. after re-running only the other tool)")
    ap.add_argument("--skip-octopi", action="store_true")
    ap.add_argument("--skip-tomopick", action="store_true")
    ap.add_argument("--octopi-epochs", type=int, default=1000)
    ap.add_argument("--octopi-val-interval", type=int, default=10)
    ap.add_argument("--octopi-batch-size", type=int, default=16)
    ap.add_argument("--octopi-dim-in", type=int, default=96)
    ap.add_argument("--octopi-ntta", type=int, default=4)
    ap.add_argument("--octopi-overlap", type=float, default=0.5)
    ap.add_argument("--results", type=Path, default=REPO / "bench" / "RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="do not touch bench/RESULTS.md")
    ap.add_argument("--render-only", action="store_true",
                    help="only re-write the RESULTS.md section from OUT/results.json")
    args = ap.parse_args(argv)

    out = args.out.resolve()
    if args.render_only:
        text = render(json.loads((out / "results.json").read_text()))
        print(text)
        if not args.no_write:
            replace_section(args.results, SECTION, text)
        return 0
    out.mkdir(parents=True, exist_ok=True)
    logs = out / "logs"
    logs.mkdir(exist_ok=True)
    data = out / "data"
    budget = args.budget_minutes if args.budget_minutes and args.budget_minutes > 0 else None
    info = machine_info(octopi=not args.skip_octopi)
    record: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "machine": info, "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    previous = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {}
    for tool in args.reuse:
        if not previous.get(tool):
            ap.error(f"--reuse {tool}: no {tool} record in {out / 'results.json'}")
    cmdline = "python bench/accuracy.py " + " ".join(a if " " not in a else repr(a) for a in (argv or sys.argv[1:]))
    record["command"] = cmdline

    # 1. data
    n = args.n_train + args.n_val + args.n_test
    if not (args.reuse_data and (data / "copick_config.json").is_file()):
        sim = tomopick_cmd("simulate", "--out", str(data), "--n", str(n), "--seed", str(args.seed),
                           "--shape", *map(str, args.shape), "--voxel-size", f"{args.voxel_size:g}",
                           "--imaging", args.imaging, "--no-progress", "--overwrite",
                           *(["--snr", f"{args.snr:g}"] if args.snr is not None else []))
        record["simulate"] = run_measured(sim, logs / "simulate.log")
        if record["simulate"]["rc"] != 0:
            print(f"simulate failed: {last_error_line(logs / 'simulate.log')}", file=sys.stderr)
            return 1
    weights = add_octopi_weights(data / "copick_config.json")
    runs = sorted(p.name for p in (data / "ExperimentRuns").iterdir() if p.is_dir())
    train, val, test = split_runs(runs, args.n_train, args.n_val, args.n_test)
    record["split"] = {"train": train, "val": val, "test": test}
    dataset = yaml.safe_load((data / "simulation" / "dataset.yaml").read_text()) if (
        data / "simulation" / "dataset.yaml").is_file() else {}
    record["dataset"] = dataset
    print(f"train {train}, val {val}, test {test}; octopi weights {weights}", flush=True)

    # 2. tomopick
    if "tomopick" in args.reuse:
        record["tomopick"] = previous["tomopick"]
        record["tomopick"]["reused_from"] = previous.get("started")
    elif not args.skip_tomopick:
        tp = out / "tomopick"
        tp.mkdir(exist_ok=True)
        cfg = tomopick_config(args.recipe, data, args.voxel_size, train, val, steps=args.steps,
                              threads=args.threads, seed=args.seed)
        (tp / "train.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        cmd = [sys.executable, str(REPO / "bench" / "train_budget.py"), str(tp / "train.yaml"), str(tp / "model")]
        if budget is not None:
            cmd += ["--minutes", f"{budget:g}"]
        rec: dict[str, Any] = {"config": cfg, "train": run_measured(cmd, logs / "tomopick_train.log")}
        budget_file = tp / "model" / "budget.json"
        if rec["train"]["rc"] != 0 or not budget_file.is_file():
            rec["error"] = f"training failed: {last_error_line(logs / 'tomopick_train.log')}"
        else:
            rec["budget"] = json.loads(budget_file.read_text())
            ckpt = rec["budget"]["checkpoint"]
            inputs = [f"copick://{data}?run={r}&tomo_type=wbp" for r in test]
            pick = tomopick_cmd("pick", *inputs, "--model", ckpt, "--out", str(tp / "picks.csv"),
                                "--threads", str(args.threads), "--overwrite", "--quiet")
            rec["pick"] = run_measured(pick, logs / "tomopick_pick.log")
            if rec["pick"]["rc"] != 0:
                rec["error"] = f"pick failed: {last_error_line(logs / 'tomopick_pick.log')}"
            else:
                try:
                    rec["eval"] = evaluate_json(data, tp / "picks.csv", test, logs / "tomopick_eval.log", sweep=True)
                except RuntimeError as exc:
                    rec["error"] = str(exc)
        record["tomopick"] = rec
        (out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")

    # 3. octopi
    if "octopi" in args.reuse:
        record["octopi"] = previous["octopi"]
        record["octopi"]["reused_from"] = previous.get("started")
    elif not args.skip_octopi:
        oc = out / "octopi"
        rec = {}
        if not OCTOPI_PY.exists():
            rec["error"] = f"octopi's python {OCTOPI_PY} not found (see bench/peers/README.md to install it)"
        else:
            cmd = [str(OCTOPI_PY), str(REPO / "bench" / "peers" / "octopi_runner.py"),
                   "--config", str(data / "copick_config.json"), "--train-runs", ",".join(train),
                   "--val-runs", ",".join(val), "--test-runs", ",".join(test),
                   "--voxel-size", f"{args.voxel_size:g}", "--out", str(oc),
                   "--epochs", str(args.octopi_epochs), "--val-interval", str(args.octopi_val_interval),
                   "--batch-size", str(args.octopi_batch_size), "--dim-in", str(args.octopi_dim_in),
                   "--ntta", str(args.octopi_ntta), "--overlap", f"{args.octopi_overlap:g}", "--sw-bs", "4",
                   "--threads", str(args.threads), "--seed", str(args.seed)]
            if budget is not None:
                cmd += ["--train-minutes", f"{budget:g}"]
            rec["run"] = run_measured(cmd, logs / "octopi.log")
            summary = oc / "summary.json"
            if rec["run"]["rc"] != 0 or not summary.is_file():
                rec["error"] = f"octopi runner failed: {last_error_line(logs / 'octopi.log')}"
            else:
                rec["summary"] = json.loads(summary.read_text())
                if rec["summary"].get("n_picks", 0) == 0:
                    rec["eval"] = zero_result(data, test)
                else:
                    try:
                        rec["eval"] = evaluate_json(data, oc / "octopi_picks.csv", test, logs / "octopi_eval.log")
                    except RuntimeError as exc:
                        rec["error"] = str(exc)
                results_csv = oc / "model" / "results.csv"
                if results_csv.is_file():
                    rec["train_history_rows"] = max(0, len(results_csv.read_text().splitlines()) - 1)
        record["octopi"] = rec
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    text = render(record)
    (out / "RESULTS-accuracy.md").write_text(text)
    print(text)
    if not args.no_write:
        replace_section(args.results, SECTION, text)
        print(f"wrote the '## {SECTION}' section of {args.results}")
    return 0


# -- report ------------------------------------------------------------------------------------------------------
def _stop_text(b: dict[str, Any]) -> str:
    """How tomopick's training ended, from ``budget.json``."""
    import re

    m = re.match(r"epoch (\d+)/(\d+)", b.get("last_epoch_line") or "")
    done, planned = (int(m.group(1)), int(m.group(2))) if m else (b.get("epochs_done"), None)
    if planned is not None and done == planned:
        return f"{done} of {planned} epochs: the whole schedule ran"
    if b.get("stopped_by_budget"):
        return f"{done} of {planned or '?'} epochs: stopped by the wall-clock budget"
    return f"{done} of {planned or '?'} epochs: early stopping"


def render(record: dict[str, Any]) -> str:
    """The ``## accuracy`` section of RESULTS.md."""
    a = record["args"]
    m = record["machine"]
    split = record["split"]
    tp = record.get("tomopick") or {}
    oc = record.get("octopi") or {}
    budget = a["budget_minutes"]
    lines = [f"## {SECTION}", ""]
    lines.append(f"Run {record['started']} – {record.get('finished', '?')} with `{record['command']}`.")
    lines.append("")
    lines.append(f"Machine: {machine_line(m)}. Load average at start {m['load_avg_1_5_15']} (the machine was shared "
                 "with other jobs; see the per-step load below).")
    lines.append("")
    shape = "×".join(map(str, a["shape"]))
    czii = a["shape"] == [184, 630, 630]
    lines.append(f"Data: {len(split['train']) + len(split['val']) + len(split['test'])} tomograms from "
                 f"`tomopick simulate` (seed {a['seed']}, {shape} voxels at {a['voxel_size']:g} Å"
                 f"{' = CZII size' if czii else ' — REDUCED from the CZII size 184×630×630'}, imaging "
                 f"`{a['imaging']}`, SNR {a['snr'] if a['snr'] is not None else 'default'}); train "
                 f"{', '.join(split['train'])} · validation {', '.join(split['val'])} · test "
                 f"{', '.join(split['test'])}.")
    lines.append("")
    steps = (f"; tomopick's schedule sized with `--steps {a['steps']}` (rounded up to whole epochs)"
             if a.get("steps") else "")
    lines.append(f"Budget: **{budget:g} minutes of training wall-clock per tool**{steps} on this CPU"
                 + (" — a tiny budget: these numbers say the harness works, not how good either picker can be."
                    if budget and budget < 30 else "."))
    lines.append("")

    rows = []
    t_classes = class_rows(tp.get("eval"))
    t_sweep = {c["particle"]: c for c in ((tp.get("eval") or {}).get("sweep") or {}).get("classes", [])}
    o_classes = class_rows(oc.get("eval"))
    names = list(dict.fromkeys(list(t_classes) + list(o_classes)))
    for name in names:
        t, o, s = t_classes.get(name, {}), o_classes.get(name, {}), t_sweep.get(name, {})
        base = t or o
        label = name if base.get("scored", True) else f"{name} (absent from the test truth: not scored)"
        rows.append({"particle": label, "weight": base.get("weight"), "n_truth": base.get("n_truth"),
                     "t_picks": t.get("n_picks"), "t_p": t.get("precision"), "t_r": t.get("recall"),
                     "t_f": t.get("fbeta"), "t_sweep": s.get("fbeta"),
                     "o_picks": o.get("n_picks"), "o_p": o.get("precision"), "o_r": o.get("recall"),
                     "o_f": o.get("fbeta")})
    if rows:
        t_eval, o_eval = tp.get("eval") or {}, oc.get("eval") or {}
        rows.append({"particle": "**CZII score**", "t_f": t_eval.get("score"),
                     "t_sweep": (t_eval.get("sweep") or {}).get("score"), "o_f": o_eval.get("score")})
        lines.append(markdown_table(rows, [
            ("particle", "class"), ("weight", "weight"), ("n_truth", "test particles"),
            ("t_picks", "tomopick picks"), ("t_p", "P"), ("t_r", "R"), ("t_f", "tomopick F4"),
            ("t_sweep", "F4 at best threshold (optimistic)"),
            ("o_picks", "octopi picks"), ("o_p", "P"), ("o_r", "R"), ("o_f", "octopi F4")]))
        lines.append("")
        lines.append("CZII metric (`tomopick evaluate`, F-beta 4, match distance 0.5 × radius, per-class weights; "
                     "the score divides by the weights of the classes present in the test truth). tomopick picks "
                     "with its default threshold 0.5; the optimistic column picks each class's threshold on the "
                     "test truth itself (`--sweep`) and is not a fair score. octopi outputs argmax labels without "
                     "scores, so it has no sweep.")
        lines.append("")

    lines.append("What ran:")
    lines.append("")
    if record.get("simulate"):
        s = record["simulate"]
        lines.append(f"- simulate: `{short_cmd(s['cmd'])}` — {s['wall_s']:.0f} s, peak RSS {s['maxrss_GB']:.2f} GB")
    for tool, rec in (("tomopick", tp), ("octopi", oc)):
        if rec.get("reused_from"):
            lines.append(f"- {tool}: record reused from the run started {rec['reused_from']} (same data and split)")
    if tp:
        if tp.get("train"):
            t = tp["train"]
            b = tp.get("budget") or {}
            lines.append(f"- tomopick train (recipe `{Path(a['recipe']).name}`: "
                         f"{tp['config']['network']['name']} {tp['config']['network']['hparams'].get('channels')}, "
                         f"patch {tp['config']['patch_size']}, batch {tp['config']['batch_size']}, "
                         f"{tp['config']['epochs']} epochs × {tp['config']['steps_per_epoch']} steps scheduled): "
                         f"`{short_cmd(t['cmd'])}` (started {t.get('started', '?')}) — {t['wall_s']:.0f} s wall, "
                         f"{_stop_text(b)}; "
                         f"used {b.get('checkpoint_kind', '?')} checkpoint; last epoch: `{b.get('last_epoch_line')}`; "
                         f"peak RSS {t['maxrss_GB']:.2f} GB; load {t['load_mean']:.1f} (max {t['load_max']:.1f})")
        if tp.get("pick"):
            p = tp["pick"]
            lines.append(f"- tomopick pick: `{short_cmd(p['cmd'])}` — {p['wall_s']:.0f} s for "
                         f"{len(split['test'])} tomogram(s), peak RSS {p['maxrss_GB']:.2f} GB, load {p['load_mean']:.1f}")
        if tp.get("eval"):
            lines.append(f"- score: `{tp['eval']['cmd']}`")
        if tp.get("error"):
            lines.append(f"- **tomopick failed**: {tp['error']}")
    if a.get("skip_octopi"):
        lines.append("- octopi: skipped (`--skip-octopi`)")
    elif oc:
        if oc.get("run"):
            r = oc["run"]
            timings = (oc.get("summary") or {}).get("timings", {})
            tim = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
            lines.append(f"- octopi (runner, octopi's own API; targets 0.7 × radius spheres, UNet "
                         f"{'32-64-96-96'}, crops {a['octopi_dim_in']}³, {a['octopi_batch_size']} crops/tomogram/"
                         f"epoch, validation every {a['octopi_val_interval']} epochs, up to {a['octopi_epochs']} "
                         f"epochs, TTA {a['octopi_ntta']}, overlap {a['octopi_overlap']:g}): "
                         f"`{short_cmd(r['cmd'])}` (started {r.get('started', '?')}) — {r['wall_s']:.0f} s wall ({tim}); "
                         f"{oc.get('train_history_rows', '?')} rows in octopi's results.csv; "
                         f"weights used: {(oc.get('summary') or {}).get('weights_kind', '?')}; "
                         f"{(oc.get('summary') or {}).get('n_picks', '?')} picks; peak RSS {r['maxrss_GB']:.2f} GB; "
                         f"load {r['load_mean']:.1f} (max {r['load_max']:.1f})")
        if oc.get("eval"):
            lines.append(f"- score: `{oc['eval']['cmd']}`")
        if oc.get("error"):
            lines.append(f"- **octopi failed**: {oc['error']}")
    lines.append("")
    for note in record.get("notes", []):
        lines.append(f"Note: {note}")
        lines.append("")
    lines.append("octopi runs here only through `bench/peers/octopi_runner.py`: its `octopi segment` command refuses a "
                 "machine without a GPU (`RuntimeError: No GPUs available.` from `Predictor.__init__`), so the runner "
                 "builds octopi's `Predictor` on the CPU itself; training and localisation run unchanged "
                 "(details in `bench/peers/README.md`).")
    lines.append("")
    lines.append(f"Raw numbers: `{Path(a['out']).name}/results.json` under `bench/out/` (git-ignored) of that run.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
