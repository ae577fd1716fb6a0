"""Memory and time of one network window: what one forward pass of a bundled network adds to the resident set.

Each case runs in a fresh subprocess: the bundled model (``--model``, default ``czii-10A``) is loaded, then three
windows of ``--roi`` voxels of noise are predicted the way ``tomopick pick`` predicts them
(:func:`tomopick.inference.sliding.make_predictor`: folded batch norm, channels-last, the given precision, softmax
over the window core) inside :func:`~tomopick.inference.sliding.reuse_freed_memory` (on, as ``tomopick pick`` runs,
or off). Reported: the resident set before the first window, the peak (the kernel's VmHWM) and their difference —
the network's share of a pick's peak RSS — and the fastest of the three windows.

``--code NAME=SRC_DIR`` adds the same cases for another checkout's ``src`` (e.g. a ``git worktree`` of an earlier
commit) so that two versions are compared in one run.

Usage::

    python bench/window_memory.py [--roi 208,192,192] [--precision bf16 fp32] [--reuse 1 0] [--code old=/tmp/wt/src]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line  # noqa: E402  (bench/common.py)

CHILD = r"""
import json, sys, time
import torch
from tomopick.inference.sliding import make_predictor, reuse_freed_memory
from tomopick.models.bundled import load_bundled

name, roi, precision, reuse = sys.argv[1], tuple(int(v) for v in sys.argv[2].split(",")), sys.argv[3], sys.argv[4]

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key):
            return int(line.split()[1]) / 1024**2

loaded = load_bundled(name)
channels = [i for i, c in enumerate(loaded.config["classes"]) if str(c).lower() != "background"]
x = torch.randn(1, 1, *roi)
crop = tuple(slice(r // 16, r - r // 16) for r in roi)
times = []
with torch.inference_mode(), reuse_freed_memory(reuse == "1"):
    predict = make_predictor(loaded.model.eval(), output="softmax", channels=channels, precision=precision)
    before = status("VmRSS")
    for _ in range(3):
        t = time.perf_counter()
        p = predict(x, crop)
        times.append(time.perf_counter() - t)
        del p
print(json.dumps({"before_GiB": before, "peak_GiB": status("VmHWM"), "s_per_window": min(times)}))
"""


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="czii-10A", help="bundled model name")
    ap.add_argument("--roi", default="208,192,192", help="window Z,Y,X in voxels")
    ap.add_argument("--precision", nargs="+", default=["bf16", "fp32"], choices=("bf16", "fp32"))
    ap.add_argument("--reuse", nargs="+", default=["1"], choices=("1", "0"),
                    help="reuse_freed_memory on (1, as tomopick pick) and/or off (0)")
    ap.add_argument("--code", nargs="*", default=[], metavar="NAME=SRC_DIR",
                    help="also run with another checkout's src directory first on PYTHONPATH")
    args = ap.parse_args(argv)
    bad = [c for c in args.code if "=" not in c]
    if bad:
        ap.error(f"--code takes NAME=SRC_DIR, got {bad[0]!r}")
    codes = [("this", None)] + [tuple(c.split("=", 1)) for c in args.code]
    print(machine_line(machine_info()))
    print("| code | precision | reuse freed memory | RSS before (GiB) | peak (GiB) | network's share (GiB) "
          "| s / window |")
    print("|---|---|---|---|---|---|---|")
    for precision in args.precision:
        for reuse in args.reuse:
            for label, src in codes:
                env = dict(os.environ)
                if src:
                    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
                out = subprocess.run([sys.executable, "-c", CHILD, args.model, args.roi, precision, reuse], env=env,
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"| {label} | {precision} | {reuse} | failed: {out.stderr.strip().splitlines()[-1]} |")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                print(f"| {label} | {precision} | {'on' if reuse == '1' else 'off'} | {r['before_GiB']:.2f} | "
                      f"{r['peak_GiB']:.2f} | {r['peak_GiB'] - r['before_GiB']:.2f} | {r['s_per_window']:.2f} |",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
