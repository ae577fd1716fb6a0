"""Time and size of the HTML picking report (``tomopick report``) of one CZII-size tomogram (184 × 630 × 630 at
10.012 Å, OME-Zarr in a copick project, read lazily) with ground truth and the bundled model's card.

The tomogram is simulated once (``tomopick simulate --imaging full``, not timed). The picks are the truth moved by
a few Å with random scores plus 20 % false positives (the report's cost depends on the number of picks, not on
where they came from). ``tomopick report`` then runs in a fresh process, end to end (imports included), twice.
Results replace the "report" section of ``bench/RESULTS.md``.

Usage::

    python bench/bench_report.py [--data /tmp/tomopick-bench-report] [--repeat 2] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line, markdown_table, replace_section, run_measured, short_cmd, tomopick_cmd  # noqa: E402,E501

LIMIT_S = 15.0
LIMIT_MB = 10.0


def make_picks(data: Path, out: Path, seed: int = 0) -> int:
    """Picks near every true particle (≤ 10 Å off, scores 0.3–1) plus 20 % false positives (scores 0.2–0.5)."""
    from tomopick.data import Picks
    from tomopick.io import read_tomogram, write_picks
    from tomopick.io.sources import load_picks

    rng = np.random.default_rng(seed)
    truth = load_picks(data, user_id="curation")
    frame = truth.frame.copy()
    frame[["x_A", "y_A", "z_A"]] += rng.uniform(-6, 6, (len(frame), 3))
    frame["score"] = rng.uniform(0.3, 1.0, len(frame))
    tomo = read_tomogram(f"copick://{data}?run={truth.runs[0]}")
    n_fp = max(1, len(frame) // 5)
    size_xyz = np.array(tomo.shape[::-1]) * np.array(tomo.voxel_size_A[::-1])
    fp = Picks.from_arrays(rng.uniform(0, 1, (n_fp, 3)) * size_xyz, list(rng.choice(truth.particles, n_fp)),
                           score=rng.uniform(0.2, 0.5, n_fp), run=truth.runs[0])
    picks = Picks.concat([Picks(frame), fp])
    write_picks(picks, out, overwrite=True)
    return len(picks)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=Path("/tmp/tomopick-bench-report"))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-write", action="store_true", help="print the section, leave RESULTS.md alone")
    args = ap.parse_args()
    data = args.data.resolve()
    env = {"OMP_NUM_THREADS": "2"}
    if not (data / "copick_config.json").is_file():
        run_measured(tomopick_cmd("simulate", "--out", str(data), "--n", "1", "--imaging", "full", "--seed", "3"),
                     data.parent / f"{data.name}-simulate.log", env=env)
    picks = data.parent / f"{data.name}-picks.csv"
    n_picks = make_picks(data, picks)
    out = data.parent / f"{data.name}-report.html"
    cmd = tomopick_cmd("report", f"copick://{data}?run=sim_000", "--picks", str(picks), "--truth", str(data),
                       "--truth-user", "curation", "--model", "bundled", "--out", str(out), "--overwrite")
    rows = []
    for i in range(args.repeat):
        res = run_measured(cmd, data.parent / f"{data.name}-report-{i}.log", env=env)
        if res["rc"] != 0:
            raise SystemExit(f"tomopick report failed: see {res['log']}")
        rows.append({"run": i + 1, "wall_s": res["wall_s"], "cpu_s": round(res["user_s"] + res["sys_s"], 1),
                     "size_MB": round(out.stat().st_size / 1e6, 2), "peak_GB": res["maxrss_GB"],
                     "load": f"{res['load_before']:.1f} / {res['load_max']:.1f}", "when": res["started"]})
    info = machine_info(octopi=False)
    text = "\n".join([
        "## report (HTML picking report)",
        "",
        f"One CZII-size tomogram (184 × 630 × 630 at 10.012 Å, OME-Zarr in a copick project) with {n_picks} picks "
        "(the truth moved ≤ 10 Å, random scores, 20 % false positives), its ground truth and the bundled model's "
        "card; `tomopick report` end to end in a fresh process (imports, reading, rendering, writing), "
        f"targets ≤ {LIMIT_S:g} s on 2 cores and ≤ {LIMIT_MB:g} MB.",
        f"Command: `python bench/bench_report.py` — runs `{short_cmd(' '.join(cmd[:2]))} … --truth … --model bundled"
        f" --out report.html` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}).",
        f"Machine: {machine_line(info)}. CPU = user + system seconds of the process (load-independent); load = "
        "1-minute load average before / highest during the run (above 2: measured while other jobs shared the "
        "cores, so wall times are upper bounds).",
        "",
        markdown_table(rows, [("run", "run"), ("wall_s", "wall (s)"), ("cpu_s", "CPU (s)"),
                              ("size_MB", "size (MB)"), ("peak_GB", "peak RSS (GB)"), ("load", "load"),
                              ("when", "started")]),
        "",
    ])
    print(text)
    if not args.no_write:
        replace_section(Path(__file__).resolve().parent / "RESULTS.md", "report (HTML picking report)", text)


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
