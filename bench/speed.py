"""Speed benchmark: end-to-end pick time and peak memory per tomogram, tomopick vs octopi's inference.

On one tomogram (default: a CZII-size 184 × 630 × 630 tomogram at 10 Å simulated with ``--seed``), in one run:

* tomopick: ``tomopick pick copick://…?run=R --model CKPT --out picks.csv`` (read, normalise, sliding window,
  peaks, write) as one fresh process;
* octopi: ``bench/peers/octopi_runner.py --weights W --model-config C`` (octopi's ``Predictor.batch_predict`` on
  CPU = read, sliding window with TTA, argmax, write the segmentation; then ``workflows.localize`` = watershed
  per class, write picks; then the CSV export) as one fresh process in octopi's own venv.

Each is timed end to end (process start to exit, imports included) and its peak RSS is measured (kernel rusage of
the largest single process, and the sampled peak of the summed process tree; octopi's localisation runs in a
spawned worker). Internal stage timings are reported too. Ratios are octopi / tomopick (> 1: tomopick is
faster / smaller).

Models: ``--from-accuracy DIR`` takes tomopick's checkpoint and octopi's weights trained by ``bench/accuracy.py``
in ``DIR`` (default ``bench/out/accuracy``), or give them with ``--tomopick-model`` and ``--octopi-weights`` +
``--octopi-model-config``. Both tools use ``--threads`` torch threads (default: all available cores).

    python bench/speed.py --from-accuracy bench/out/accuracy --octopi-ntta 4 1
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (OCTOPI_PY, REPO, last_error_line, machine_info, machine_line, markdown_table,  # noqa: E402
                    replace_section, run_measured, short_cmd, tomopick_cmd)

SECTION = "speed (tomopick vs octopi)"


def models_from_accuracy(folder: Path) -> tuple[str | None, str | None, str | None]:
    """(tomopick checkpoint, octopi weights, octopi model config) written by ``bench/accuracy.py`` in ``folder``."""
    budget = folder / "tomopick" / "model" / "budget.json"
    ckpt = json.loads(budget.read_text())["checkpoint"] if budget.is_file() else None
    w, c = folder / "octopi" / "model" / "best_model.pth", folder / "octopi" / "model" / "model_config.yaml"
    return ckpt, (str(w) if w.is_file() else None), (str(c) if c.is_file() else None)


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or not b else a / b


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shape", nargs=3, type=int, default=[184, 630, 630], metavar=("Z", "Y", "X"))
    ap.add_argument("--voxel-size", type=float, default=10.0)
    ap.add_argument("--imaging", default="fast", choices=["fast", "full"])
    ap.add_argument("--seed", type=int, default=100, help="seed of the simulated test tomogram")
    ap.add_argument("--project", type=Path, default=None,
                    help="use this copick project's tomogram instead of simulating one (octopi writes its "
                         "segmentation and picks into it)")
    ap.add_argument("--reuse-data", action="store_true",
                    help="keep OUT/data from an earlier run with the same --shape/--seed instead of simulating")
    ap.add_argument("--run", default=None, help="run of --project (default: its first)")
    ap.add_argument("--from-accuracy", type=Path, default=REPO / "bench" / "out" / "accuracy")
    ap.add_argument("--tomopick-model", default=None)
    ap.add_argument("--octopi-weights", default=None)
    ap.add_argument("--octopi-model-config", default=None)
    ap.add_argument("--tomopick-tta", nargs="+", type=int, default=[1], help="tomopick TTA variants (1, 4, 8)")
    ap.add_argument("--octopi-ntta", nargs="+", type=int, default=[4], help="octopi TTA variants [its default 4]")
    ap.add_argument("--octopi-overlap", type=float, default=0.5, help="[octopi's default 0.5]")
    ap.add_argument("--octopi-window", type=int, default=96,
                    help="octopi's sliding-window edge (its model config's dim_in; octopi's default model uses 96); "
                         "0 keeps the trained model's value")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--skip-octopi", action="store_true")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "speed")
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
    ckpt, o_w, o_c = models_from_accuracy(args.from_accuracy.resolve())
    ckpt = args.tomopick_model or ckpt
    o_w, o_c = args.octopi_weights or o_w, args.octopi_model_config or o_c
    if ckpt is None:
        print("error: no tomopick checkpoint (run bench/accuracy.py first or pass --tomopick-model)", file=sys.stderr)
        return 2
    if not args.skip_octopi and (o_w is None or o_c is None):
        print("error: no octopi weights/model config (run bench/accuracy.py first or pass --octopi-weights and "
              "--octopi-model-config), or use --skip-octopi", file=sys.stderr)
        return 2
    record: dict[str, Any] = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
                              "machine": machine_info(octopi=not args.skip_octopi),
                              "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
                              "command": "python bench/speed.py " + " ".join(argv or sys.argv[1:]),
                              "models": {"tomopick": ckpt, "octopi_weights": o_w, "octopi_model_config": o_c}}

    if args.project is None and args.reuse_data and (out / "data" / "copick_config.json").is_file():
        project = out / "data"
        record["simulate"] = {"reused": str(project)}
    elif args.project is None:
        project = out / "data"
        sim = tomopick_cmd("simulate", "--out", str(project), "--n", "1", "--seed", str(args.seed),
                           "--shape", *map(str, args.shape), "--voxel-size", f"{args.voxel_size:g}",
                           "--imaging", args.imaging, "--no-progress", "--overwrite")
        record["simulate"] = run_measured(sim, logs / "simulate.log")
        if record["simulate"]["rc"] != 0:
            print(f"simulate failed: {last_error_line(logs / 'simulate.log')}", file=sys.stderr)
            return 1
    else:
        project = args.project.resolve()
    if not args.skip_octopi and args.octopi_window:
        import yaml

        mc = yaml.safe_load(Path(o_c).read_text())
        if int(mc["model"]["dim_in"]) != args.octopi_window:
            record["octopi_window_note"] = (f"trained with dim_in {mc['model']['dim_in']}; run with a copy of its "
                                            f"model config set to dim_in {args.octopi_window} (same weights)")
            mc["model"]["dim_in"] = args.octopi_window
            o_c = str(out / f"octopi_model_config_dim{args.octopi_window}.yaml")
            Path(o_c).write_text(yaml.safe_dump(mc, sort_keys=False))
            record["models"]["octopi_model_config"] = o_c
    runs = sorted(p.name for p in (project / "ExperimentRuns").iterdir() if p.is_dir())
    run = args.run or runs[0]
    record["project"], record["run"] = str(project), run

    results: list[dict[str, Any]] = []
    for tta in args.tomopick_tta:
        cmd = tomopick_cmd("pick", f"copick://{project}?run={run}&tomo_type=wbp", "--model", ckpt,
                           "--out", str(out / f"tomopick_tta{tta}.csv"), "--threads", str(args.threads),
                           "--overwrite", "--quiet", *(["--tta"] if tta > 1 else []))
        if tta not in (1, 4):
            print(f"note: tomopick's CLI has TTA off (1) or on (4 flips); skipping TTA {tta}", file=sys.stderr)
            continue
        m = run_measured(cmd, logs / f"tomopick_tta{tta}.log")
        n = None
        csv = out / f"tomopick_tta{tta}.csv"
        if m["rc"] == 0 and csv.is_file():
            n = max(0, len(csv.read_text().splitlines()) - 1)
        stages = {}
        for line in Path(logs / f"tomopick_tta{tta}.log").read_text().splitlines():
            hit = re.match(rf"^{re.escape(run)}: .*; ([0-9.]+) s", line)
            if hit:  # the CLI's per-tomogram time: read + normalise + network + peaks (no imports, no writing)
                stages["pick_s"] = float(hit.group(1))
        results.append({"tool": "tomopick", "tta": tta, **m, "n_picks": n, "stages": stages,
                        "error": None if m["rc"] == 0 else last_error_line(logs / f"tomopick_tta{tta}.log")})
    if not args.skip_octopi:
        for ntta in args.octopi_ntta:
            o_out = out / f"octopi_tta{ntta}"
            cmd = [str(OCTOPI_PY), str(REPO / "bench" / "peers" / "octopi_runner.py"),
                   "--config", str(project / "copick_config.json"), "--train-runs", run, "--val-runs", run,
                   "--test-runs", run, "--voxel-size", f"{args.voxel_size:g}", "--out", str(o_out),
                   "--weights", o_w, "--model-config", o_c, "--ntta", str(ntta),
                   "--overlap", f"{args.octopi_overlap:g}", "--sw-bs", "4", "--threads", str(args.threads)]
            m = run_measured(cmd, logs / f"octopi_tta{ntta}.log")
            summary = o_out / "summary.json"
            extra: dict[str, Any] = {}
            if m["rc"] == 0 and summary.is_file():
                s = json.loads(summary.read_text())
                extra = {"n_picks": s.get("n_picks"), "stages": s.get("timings")}
            results.append({"tool": "octopi", "tta": ntta, **m, **extra,
                            "error": None if m["rc"] == 0 else last_error_line(logs / f"octopi_tta{ntta}.log")})
    record["results"] = results
    record["finished"] = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    (out / "results.json").write_text(json.dumps(record, indent=2, default=str) + "\n")
    text = render(record)
    (out / "RESULTS-speed.md").write_text(text)
    print(text)
    if not args.no_write:
        replace_section(args.results, SECTION, text)
        print(f"wrote the '## {SECTION}' section of {args.results}")
    return 0


def render(record: dict[str, Any]) -> str:
    """The ``## speed (tomopick vs octopi)`` section of RESULTS.md."""
    a = record["args"]
    m = record["machine"]
    res = record["results"]
    shape = "×".join(map(str, a["shape"])) if not a.get("project") else "(from --project)"
    lines = [f"## {SECTION}", ""]
    lines.append(f"Run {record['started']} – {record['finished']} with `{record['command']}`.")
    lines.append("")
    lines.append(f"Machine: {machine_line(m)}. Load average at start {m['load_avg_1_5_15']}; the machine was shared "
                 "with other jobs, so wall times carry that load (see the load column: 1-minute load average "
                 f"sampled during each run, {m['cores_available']} cores).")
    lines.append("")
    lines.append(f"Tomogram: run `{record['run']}`, {shape} voxels at {a['voxel_size']:g} Å "
                 f"({'CZII size' if a['shape'] == [184, 630, 630] and not a.get('project') else 'not CZII size'}), "
                 f"simulated with seed {a['seed']} (`{a['imaging']}` imaging). Threads: {a['threads']} for both.")
    lines.append(f"Models: tomopick `{short_cmd(str(record['models']['tomopick']))}`, octopi "
                 f"`{short_cmd(str(record['models']['octopi_weights']))}`.")
    if record.get("octopi_window_note"):
        lines.append(f"octopi window: {record['octopi_window_note']}.")
    lines.append("")
    rows = []
    for r in res:
        stages = r.get("stages") or {}
        rows.append({"tool": r["tool"], "tta": r["tta"], "wall": f"{r['wall_s']:.1f}", "rss": f"{r['maxrss_GB']:.2f}",
                     "tree": f"{r['tree_peak_GB']:.2f}", "cpu": f"{r['user_s'] + r['sys_s']:.0f}",
                     "stages": ", ".join(f"{k.replace('_s', '')} {v:.0f} s" for k, v in stages.items()) or None,
                     "picks": r.get("n_picks"), "load": f"{r['load_mean']:.1f} (max {r['load_max']:.1f})",
                     "err": r.get("error")})
    lines.append(markdown_table(rows, [("tool", "tool"), ("tta", "TTA"), ("wall", "end-to-end s"),
                                       ("rss", "peak RSS GB (largest process)"), ("tree", "peak RSS GB (tree)"),
                                       ("cpu", "CPU s"), ("stages", "stages"), ("picks", "picks"),
                                       ("load", "load"), ("err", "error")]))
    lines.append("")
    tps = [r for r in res if r["tool"] == "tomopick" and r["rc"] == 0]
    ocs = [r for r in res if r["tool"] == "octopi" and r["rc"] == 0]
    if tps and ocs:
        lines.append("Ratios octopi / tomopick (> 1: tomopick faster / smaller):")
        lines.append("")
        for o in ocs:
            for t in tps:
                lines.append(f"- octopi TTA {o['tta']} vs tomopick TTA {t['tta']}: time × "
                             f"{ratio(o['wall_s'], t['wall_s']):.2f}, peak RSS × "
                             f"{ratio(o['maxrss_GB'], t['maxrss_GB']):.2f} (tree × "
                             f"{ratio(o['tree_peak_GB'], t['tree_peak_GB']):.2f}), CPU time (user + system, less "
                             f"sensitive to load) × {ratio(o['user_s'] + o['sys_s'], t['user_s'] + t['sys_s']):.2f}")
        lines.append("")
    for note in record.get("notes", []):
        lines.append(f"Note: {note}")
        lines.append("")
    lines.append("Commands:")
    lines.append("")
    for r in res:
        lines.append(f"- `{short_cmd(r['cmd'])}`")
    lines.append("")
    lines.append("tomopick: default pick settings (crop mode, window 96×160×160, overlap 0.2, max-pool peaks). octopi: "
                 f"sliding window of its model's crop size, overlap {a['octopi_overlap']:g}, sw batch 4, TTA as listed "
                 "(octopi's default is 4), watershed localisation with one worker process. End-to-end includes "
                 "process start-up and imports of each tool. octopi's `octopi segment` command refuses a machine "
                 "without a GPU (`RuntimeError: No GPUs available.`), so the runner builds its `Predictor` on the CPU "
                 "(`bench/peers/README.md`).")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
