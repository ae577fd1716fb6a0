"""Roofline of ``tomopick pick`` on one CZII-size tomogram (184 × 630 × 630 at 10 Å): how fast could it be here?

Measures, in one process:

* the bundled ``czii-10A`` network's FLOPs per output voxel (:class:`torch.utils.flop_counter.FlopCounterMode` on
  one window; a FLOP = one multiply or one add, so a multiply-add is 2);
* the machine's 3D-convolution throughput: one ``Conv3d(32, 32, 3)`` on a ``1 × 32 × 64 × 96 × 96`` channels-last
  input (the network's widest full-resolution-ish layer shape), fp32 and bf16 autocast — the "measured peak";
* the network's own throughput on one 112 × 160 × 160 window, fp32 and bf16 (channels-last, as tomopick runs it);
* the nominal peak from the CPU flags (AVX-512 FMA: 32 fp32 FLOP/cycle/core on two 256-bit pipes; AVX512-BF16
  ``vdpbf16ps``: twice that) at the clock ``/proc/cpuinfo`` reports — an upper bound, not reached by convolutions;
* memory bandwidth (a 256 MB numpy copy) for the bytes every pick moves (input float32, scores float16).

Then the table for one CZII tomogram: the work of tomopick's crop-mode plan (windows × window voxels: context
recomputed) and of plain MONAI's defaults (48³ windows, overlap 0.25), the shortest possible time at each measured
peak, and — given ``--measured NAME=SECONDS`` (wall seconds of a run, e.g. from ``bench/bench_pick.py``) — the
achieved fraction of the measured conv peak.

    python bench/roofline.py [--threads 2] [--measured "tomopick fp32=30.1" "tomopick bf16=12.0"] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

CZII = (184, 630, 630)


def best_seconds(fn, repeats: int = 3) -> float:
    """Shortest of ``repeats`` timed calls after one warm-up (the least disturbed by other jobs)."""
    with torch.inference_mode():
        fn()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
    return min(times)


def flops_of(fn) -> int:
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        fn()
    return int(counter.get_total_flops())


def cpu_info() -> dict:
    flags, mhz, name = set(), [], ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "flags":
                flags = set(value.split())
            elif key == "cpu MHz":
                mhz.append(float(value))
            elif key == "model name":
                name = value.strip()
    return {"name": name, "mhz": float(np.mean(mhz)) if mhz else float("nan"),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "avx512_vnni": "avx512_vnni" in flags}


def bandwidth_GBps() -> float:
    a = np.ones(1 << 26, dtype=np.float32)  # 256 MB
    b = np.empty_like(a)
    np.copyto(b, a)
    t0 = time.perf_counter()
    for _ in range(3):
        np.copyto(b, a)
    return 3 * 2 * a.nbytes / (time.perf_counter() - t0) / 1e9  # read + write


def crop_plan_voxels(shape, divisor: int = 16) -> tuple[int, int]:
    """(windows, voxels the network computes) of tomopick's default crop-mode plan."""
    from tomopick.inference.sliding import InferenceSettings, window_plan

    plans = window_plan(shape, InferenceSettings(divisor=divisor))
    n = int(np.prod([len(p.starts) for p in plans]))
    return n, n * int(np.prod([p.roi for p in plans]))


def monai_plan_voxels(shape, roi=(48, 48, 48), overlap: float = 0.25) -> tuple[int, int]:
    """(windows, voxels computed) of MONAI ``sliding_window_inference`` defaults (its scan-interval rule)."""
    counts = []
    for n, r in zip(shape, roi):
        step = max(int(r * (1 - overlap)), 1)
        counts.append(1 if n <= r else int(np.ceil((n - r) / step)) + 1)
    w = int(np.prod(counts))
    return w, w * int(np.prod(roi))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--measured", nargs="*", default=[],
                    help="NAME=SECONDS of end-to-end runs on all --threads cores (wall on free cores; on shared "
                         "cores give CPU seconds / threads)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from tomopick.models.bundled import load_bundled

    loaded = load_bundled("czii-10A")
    model = loaded.model.eval().to(memory_format=torch.channels_last_3d)
    cl = torch.channels_last_3d

    # FLOPs per voxel of the network (window-size independent up to padding)
    xw = torch.randn(1, 1, 112, 160, 160).contiguous(memory_format=cl)
    net_flops = flops_of(lambda: model(xw))
    per_voxel = net_flops / xw[0, 0].numel()

    def under(precision, fn):
        def run():
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                fn()
        return run

    conv = torch.nn.Conv3d(32, 32, 3, padding=1).eval().to(memory_format=cl)
    xc = torch.randn(1, 32, 64, 96, 96).contiguous(memory_format=cl)
    conv_flops = flops_of(lambda: conv(xc))
    rates: dict[str, dict[str, float]] = {"conv": {}, "network": {}}
    for precision in ("fp32", "bf16", "fp32", "bf16"):  # interleaved: A B A B, best of each
        s = best_seconds(under(precision, lambda: conv(xc)))
        rates["conv"][precision] = max(rates["conv"].get(precision, 0.0), conv_flops / s / 1e9)
        s = best_seconds(under(precision, lambda: model(xw)), repeats=2)
        rates["network"][precision] = max(rates["network"].get(precision, 0.0), net_flops / s / 1e9)

    info = cpu_info()
    cores = args.threads
    nominal = {"fp32": cores * info["mhz"] / 1e3 * (32 if info["avx512f"] else 16)}
    nominal["bf16"] = nominal["fp32"] * (2 if (info["avx512_bf16"] or info["amx_bf16"]) else 1)
    bw = bandwidth_GBps()
    n_vox = int(np.prod(CZII))
    tp_windows, tp_vox = crop_plan_voxels(CZII)
    mo_windows, mo_vox = monai_plan_voxels(CZII, tuple(loaded.patch_size))
    bytes_moved = n_vox * 4 + n_vox * 6 * 2  # input float32 read once + 6 class scores float16 written

    lines = [
        f"CPU: {info['name']}, {cores} threads, {info['mhz']:.0f} MHz; AVX-512 {info['avx512f']}, "
        f"AVX512-BF16 {info['avx512_bf16']}, AMX {info['amx_bf16']}, VNNI {info['avx512_vnni']}.",
        f"Bundled czii-10A: {per_voxel:.0f} FLOP per output voxel ({net_flops / 1e9:.1f} GFLOP per 112 × 160 × 160 "
        "window, FlopCounterMode).",
        "",
        "| throughput (GFLOP/s) | fp32 | bf16 | bf16 / fp32 |",
        "|---|---|---|---|",
        f"| nominal peak (flags × clock) | {nominal['fp32']:.0f} | {nominal['bf16']:.0f} | "
        f"{nominal['bf16'] / nominal['fp32']:.1f} |",
        f"| measured: one Conv3d 32→32 k3 (64 × 96 × 96) | {rates['conv']['fp32']:.1f} | {rates['conv']['bf16']:.1f} | "
        f"{rates['conv']['bf16'] / rates['conv']['fp32']:.2f} |",
        f"| measured: bundled network, one window | {rates['network']['fp32']:.1f} | "
        f"{rates['network']['bf16']:.1f} | {rates['network']['bf16'] / rates['network']['fp32']:.2f} |",
        "",
        f"Memory bandwidth (numpy copy): {bw:.1f} GB/s; a pick moves ≥ {bytes_moved / 1e9:.2f} GB (input float32 "
        f"once, 6 float16 class maps) = {bytes_moved / bw / 1e9:.2f} s: compute-bound by two orders of magnitude.",
        "",
        "| one CZII tomogram 184 × 630 × 630 | windows | voxels computed / tomogram | TFLOP | shortest s at "
        "measured conv fp32 | at measured conv bf16 |",
        "|---|---|---|---|---|---|",
    ]
    table = {}
    for name, w, vox in (("tomopick crop plan (208 × 256 × 256 max, margin 8–10)", tp_windows, tp_vox),
                         ("plain MONAI defaults (48³, overlap 0.25)", mo_windows, mo_vox),
                         ("every voxel once (no context recomputed)", 1, n_vox)):
        flops = vox * per_voxel
        table[name] = {"windows": w, "voxels": vox, "flops": flops,
                       "s_fp32": flops / rates["conv"]["fp32"] / 1e9, "s_bf16": flops / rates["conv"]["bf16"] / 1e9}
        lines.append(f"| {name} | {w} | {vox / n_vox:.2f}× | {flops / 1e12:.2f} | {table[name]['s_fp32']:.1f} | "
                     f"{table[name]['s_bf16']:.1f} |")
    if args.measured:
        ideal = table["every voxel once (no context recomputed)"]["flops"]
        lines += ["", "| measured run | wall s | useful GFLOP/s (one pass over the tomogram) | fraction of measured "
                      "conv fp32 | of conv bf16 |", "|---|---|---|---|---|"]
        for item in args.measured:
            name, _, sec = item.rpartition("=")
            rate = ideal / float(sec) / 1e9
            lines.append(f"| {name} | {float(sec):.1f} | {rate:.1f} | {rate / rates['conv']['fp32']:.2f} | "
                         f"{rate / rates['conv']['bf16']:.2f} |")
    text = "\n".join(lines)
    print(text)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"per_voxel_flops": per_voxel, "rates": rates, "nominal": nominal, "bandwidth_GBps": bw,
                       "table": table, "cpu": info, "text": text}, fh, indent=1)


if __name__ == "__main__":
    main()
