"""Forward time of candidate network shapes on one picking window (how czii-10A v5's shape was chosen, #10).

Untrained weights (time does not depend on them), bf16 autocast and channels-last as ``tomopick pick`` runs them
on a CPU, one 192 × 256 × 256 window, best of ``--repeat`` passes after a warm-up::

    python bench/network_shapes.py [--threads 2] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import torch

from tomopick.models.registry import build_model

SHAPES = {  # label: (registry name, hyper-parameters)
    "v4 UNet 16-32-64-128, 1 unit": ("resunet", {"channels": [16, 32, 64, 128], "strides": [2, 2, 2],
                                                 "num_res_units": 1}),
    "pyramid 16-32-64-128, 2 units (czii-robust-10A)": ("coordresunet", {"channels": [16, 32, 64, 128],
                                                                        "num_res_units": 2}),
    "pyramid 16-32-64-128, 1 unit": ("coordresunet", {"channels": [16, 32, 64, 128], "num_res_units": 1}),
    "pyramid 8-16-32-64, 2 units": ("coordresunet", {"channels": [8, 16, 32, 64], "num_res_units": 2}),
    "pyramid 8-16-32-64, 1 unit": ("coordresunet", {"channels": [8, 16, 32, 64], "num_res_units": 1}),
    "pyramid 8-16-32-64-128, 1 unit (czii-10A v5)": ("coordresunet", {"channels": [8, 16, 32, 64, 128],
                                                                      "num_res_units": 1}),
    "pyramid 8-16-32-64-128, 2 units": ("coordresunet", {"channels": [8, 16, 32, 64, 128], "num_res_units": 2}),
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cl = torch.channels_last_3d
    x = torch.randn(1, 1, 192, 256, 256).contiguous(memory_format=cl)
    print("| network | parameters | seconds per window |\n|---|---|---|")
    for label, (name, hp) in SHAPES.items():
        extra = {"coord_conv": False, "pyramid": True} if name == "coordresunet" else {}
        net = build_model(name, 1, 7, norm="batch", **hp, **extra).eval().to(memory_format=cl)
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            net(x[..., :64, :64, :64])
            times = []
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                net(x)
                times.append(time.perf_counter() - t0)
        print(f"| {label} | {sum(p.numel() for p in net.parameters()) / 1e6:.2f} M | {min(times):.2f} |", flush=True)


if __name__ == "__main__":
    main()
