"""Training data of the bundled class-agnostic ``generalist-10A`` detector (issue #12, section 3).

Simulated tomograms (``tomopick.simulate``, full imaging model, domain-randomised) holding 14 kinds of particle —
the six CZII complexes and eight procedural shapes (spheres, shells, ellipsoids and rods of 35–180 Å; the
particle set and counts in ``bench/generalist/``) — written as MRC + CSV folders, with every pick relabelled
``particle``: one class, "a macromolecule-sized object is centred here". **8vaf and dumbbells are never
simulated**, so the detector's recall on them (``bench/generalist_eval.py``) is zero-shot.

Usage::

    python bench/generalist_data.py OUT --n 36 [--shape 128 256 256] [--seed 7000]

then ``tomopick train bench/generalist/generalist-10A.yaml --out runs/generalist`` (``data.path`` → OUT).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

HERE = Path(__file__).resolve().parent / "generalist"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=36)
    parser.add_argument("--shape", type=int, nargs=3, default=[128, 256, 256])
    parser.add_argument("--seed", type=int, default=7000)
    args = parser.parse_args()
    exe = Path(sys.executable).with_name("tomopick")
    cmd = [str(exe if exe.exists() else "tomopick"), "simulate", "--out", str(args.out), "--n", str(args.n),
           "--seed", str(args.seed), "--shape", *map(str, args.shape), "--voxel-size", "10",
           "--preset", str(HERE / "particles.yaml"), "--config", str(HERE / "simulation.yaml"),
           "--imaging", "full", "--randomize", "--format", "mrc", "--no-progress"]
    subprocess.run(cmd, check=True)
    for csv in sorted(args.out.glob("*.csv")):
        table = pd.read_csv(csv)
        if "particle_type" not in table:
            continue
        table["particle_type"] = "particle"
        table.to_csv(csv, index=False)
    print(f"{len(list(args.out.glob('*.mrc')))} tomograms in {args.out}, every pick relabelled 'particle'")


if __name__ == "__main__":
    main()
