"""The 2.5D + 3D hybrid against the 3D model alone, on held-out simulated runs (score and seconds).

The 2.5D slice network (``slice-unet``, :mod:`tomopick.models.slices`) is trained with ``tomopick train`` like
any model; the hybrid is the ensemble ``tomopick pick --model net3d.pt --model slices.pt --model-weights …``
(fused weighted mean = weighted voting of the two networks' class probabilities). Each of the three is run with
``tomopick pick``'s defaults on the held-out runs and scored with the CZII F-beta (β = 4).

Usage::

    python bench/hybrid_small.py --data SIM --runs sim_006 sim_007 --net3d A.pt --slices B.pt [--weights 0.7,0.3]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from search_small import evaluate  # noqa: E402

from tomopick.inference.ensemble import EnsembleSpec  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--runs", nargs="+", required=True)
    parser.add_argument("--net3d", required=True)
    parser.add_argument("--slices", required=True)
    parser.add_argument("--weights", default="0.7,0.3")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    models = {"3D alone": args.net3d, "2.5D alone": args.slices,
              f"hybrid 3D + 2.5D ({args.weights})": EnsembleSpec([args.net3d, args.slices], args.weights)}
    result = {}
    for label, model in models.items():
        r = evaluate(model, args.data, args.runs)
        result[label] = r
        print(f"{label:28s} held-out CZII F4 defaults {r['defaults']:.3f} oracle {r['oracle']:.3f} "
              f"{r['seconds']:.1f} s", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
