"""Speed and memory of ``simulate_tomogram`` for one CZII-size tomogram (184 × 630 × 630 at 10.012 Å).

Each imaging mode runs in a fresh subprocess that reports its wall time and peak RSS (``resource.getrusage``).
Results (with machine info and load) replace the "simulate" section of ``bench/RESULTS.md``.

Usage::

    python bench/bench_simulate.py [--modes fast full] [--shape 184 630 630] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line  # noqa: E402  (bench/common.py)

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from tomopick.simulate import SimulationConfig, simulate_tomogram
mode, shape, seed = sys.argv[1], tuple(int(v) for v in sys.argv[2].split(",")), int(sys.argv[3])
t1 = time.perf_counter()
r = simulate_tomogram(SimulationConfig(shape_zyx=shape, imaging=mode), seed)
t2 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({"mode": mode, "wall_s": t2 - t1, "cpu_s_total": ru.ru_utime + ru.ru_stime, "import_s": t1 - t0, "n_particles": len(r.picks),
                  "timings": r.params["timings_s"], "snr_measured": r.params["snr_measured"],
                  "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2}))
"""

LIMITS = {"fast": 15.0, "full": 120.0}


def run(mode: str, shape: tuple[int, int, int], seed: int) -> dict:
    load = os.getloadavg()[0]
    out = subprocess.run([sys.executable, "-c", CHILD, mode, ",".join(map(str, shape)), str(seed)],
                         capture_output=True, text=True, check=True)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    res["load_before"] = load
    res["load_after"] = os.getloadavg()[0]
    return res


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the ``## simulate`` section of RESULTS.md, leaving other sections alone."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## simulate\b.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", nargs="+", default=["fast", "full"])
    ap.add_argument("--shape", nargs=3, type=int, default=[184, 630, 630])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    shape = tuple(args.shape)
    rows = []
    for mode in args.modes:
        res = run(mode, shape, args.seed)
        rows.append(res)
        print(json.dumps(res), flush=True)
    lines = [
        "## simulate",
        "",
        f"One simulated tomogram {shape[0]} × {shape[1]} × {shape[2]} voxels at 10.012 Å (default CZII-like scene), "
        f"`simulate_tomogram` in a fresh subprocess; peak RSS from `resource.getrusage`.",
        f"Command: `python bench/bench_simulate.py --modes {' '.join(args.modes)}` — {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        f"Machine: {machine_line(machine_info(octopi=False))}. Other jobs were sharing the cores: the 1-minute load average is given.",
        "",
        "CPU = user + system seconds of the whole child process (imports included), a load-independent measure.",
        "",
        "| imaging | wall (s) | target (s) | CPU (s) | scene (s) | imaging (s) | peak RSS (GB) | particles | load before/after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['wall_s']:.1f} | ≤ {LIMITS.get(r['mode'], float('nan')):g} | "
                     f"{r['cpu_s_total']:.1f} | "
                     f"{r['timings']['scene']:.1f} | {r['timings']['imaging']:.1f} | {r['peak_rss_GB']:.2f} | "
                     f"{r['n_particles']} | {r['load_before']:.1f} / {r['load_after']:.1f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
