"""Seconds per CZII tomogram end to end on one device (a CUDA GPU, or the CPU to check the script), in one call.

For every configuration (mixed precision × window size × windows per batch) one process-wide model is loaded and
one warm-up tomogram is picked (cuDNN chooses its kernels for the window shape then; not counted), then
``--repeat`` tomograms are picked end to end, each: open the MRC (memory-mapped) → robust statistics → network
over all windows (the next batch read, normalised and pinned in a thread while the GPU runs this one) → float16
score store → peaks (max-pool on the device) → picks file written. The device is synchronised before each clock
reading. Reported: median seconds per tomogram, tomograms per hour, seconds of the network and peak stages (from
the pick summary), the peak GPU memory, and the process's start-up (imports, model load, CUDA context) once.

The tomogram is a CZII-size (184 × 630 × 630, 10.012 Å) float32 MRC of noise and bright blobs made once in
``--workdir`` (or ``--tomogram PATH``); the network is the bundled ``czii-10A`` (or ``--model PATH``).

Usage::

    python bench/bench_gpu.py                                   # cuda: bf16/fp16 × default/large/whole windows
    python bench/bench_gpu.py --amp bf16 --roi 192,320,320 --batch-size 1 4 --repeat 5
    python bench/bench_gpu.py --device cpu --shape 64,128,128 --amp fp32 --roi 64,128,128 --repeat 1   # CPU check

``--roi whole`` is one window over the whole tomogram (rounded up to the network's divisor). ``--json FILE`` writes
every row; ``--results`` replaces the ``## gpu pick`` section of bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

T_START = time.perf_counter()
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line, markdown_table, replace_section  # noqa: E402  (bench/common.py)

DEFAULT_ROIS = ["208,256,256", "192,320,320", "whole"]


def make_tomogram(path: Path, shape: tuple[int, int, int], seed: int = 0) -> None:
    """Noise with bright spheres (so that the peak stage has work), written slab by slab (10.012 Å)."""
    import mrcfile
    import numpy as np

    rng = np.random.default_rng(seed)
    centres = rng.uniform(8, np.asarray(shape) - 8, size=(max(1, int(np.prod(shape)) // 200_000), 3))
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for z0 in range(0, shape[0], 16):
            z1 = min(shape[0], z0 + 16)
            slab = rng.standard_normal((z1 - z0, *shape[1:]), dtype=np.float32)
            zz, yy, xx = np.ogrid[z0:z1, : shape[1], : shape[2]]
            for c in centres[np.abs(centres[:, 0] - (z0 + z1) / 2) < 16]:
                slab[((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2) <= 36] += 2.0
            mrc.data[z0:z1] = slab
        mrc.voxel_size = 10.012


def parse_roi(text: str, shape: tuple[int, int, int], divisor: int) -> tuple[int, int, int]:
    if text == "whole":
        return tuple(int(math.ceil(n / divisor) * divisor) for n in shape)  # type: ignore[return-value]
    values = tuple(int(v) for v in text.split(","))
    if len(values) != 3:
        raise SystemExit(f"error: --roi {text!r}: expected Z,Y,X or whole")
    return values  # type: ignore[return-value]


def synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def run_config(tomo_path: Path, loaded, out: Path, *, device: str, amp: str, roi: tuple[int, int, int],
               batch_size: int, repeat: int, whole: bool = False) -> dict:
    import torch

    from tomopick.inference.options import PickOptions
    from tomopick.io import read_tomogram, write_picks
    from tomopick.workflows.pick import inference_settings, pick_tomogram

    on_gpu = device.startswith("cuda")
    options = PickOptions.make(device=device, roi_size=roi, batch_size=batch_size,
                               precision="bf16" if (amp == "bf16" and not on_gpu) else "fp32")
    settings = inference_settings(loaded, options)
    settings.amp = on_gpu and amp != "fp32"
    settings.amp_dtype = amp if amp in ("bf16", "fp16") and on_gpu else None
    settings.roi_size = roi  # exactly as asked (also for window-dependent networks)
    if whole:  # one window, no margin: the volume's edges are the only borders (zero-padded as always)
        settings.overlap = 0.0
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)

    def one() -> tuple[float, dict]:
        synchronize(device)
        t0 = time.perf_counter()
        tomo = read_tomogram(tomo_path)
        picks, summary = pick_tomogram(tomo, loaded, options, run="bench", settings=settings)
        write_picks(picks, out, overwrite=True, voxel_size_A=tomo.voxel_size_A[0])
        synchronize(device)
        return time.perf_counter() - t0, summary | {"picks": len(picks)}

    cold, _ = one()  # warm-up: cuDNN autotuning for this window shape, page cache
    runs = [one() for _ in range(repeat)]
    seconds = [s for s, _ in runs]
    summary = runs[-1][1]
    median = statistics.median(seconds)
    row = {"device": device, "amp": amp, "roi": "×".join(map(str, roi)), "batch": batch_size,
           "windows": summary.get("windows"), "cold_s": cold, "s_per_tomogram": median,
           "tomograms_per_hour": 3600.0 / median, "network_s": summary.get("seconds_network"),
           "peaks_s": summary.get("seconds_peaks"), "all_s": seconds, "picks": summary.get("picks")}
    if on_gpu:
        row["gpu_peak_GiB"] = torch.cuda.max_memory_allocated(device) / 1024**3
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (default cuda)")
    ap.add_argument("--amp", nargs="+", default=None, choices=["bf16", "fp16", "fp32"],
                    help="mixed precision (default: bf16 fp16 on cuda, fp32 on cpu; bf16 on cpu = autocast)")
    ap.add_argument("--roi", nargs="+", default=None, help=f"window Z,Y,X or whole (default: {' '.join(DEFAULT_ROIS)})")
    ap.add_argument("--batch-size", nargs="+", type=int, default=None, help="windows per pass (default 1 4; cpu 1)")
    ap.add_argument("--repeat", type=int, default=3, help="timed tomograms per configuration (default 3)")
    ap.add_argument("--tomogram", type=Path, default=None, help="an MRC to pick (default: a generated CZII-size one)")
    ap.add_argument("--shape", default="184,630,630", help="Z,Y,X of the generated tomogram")
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled czii-10A)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/tomopick-bench-gpu"))
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    ap.add_argument("--results", action="store_true", help="replace the '## gpu pick' section of bench/RESULTS.md")
    args = ap.parse_args()

    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"error: --device {args.device}: no CUDA GPU here (use --device cpu to check the script)")
    on_gpu = args.device.startswith("cuda")
    amps = args.amp or (["bf16", "fp16"] if on_gpu else ["fp32"])
    batches = args.batch_size or ([1, 4] if on_gpu else [1])
    args.workdir.mkdir(parents=True, exist_ok=True)
    shape = tuple(int(v) for v in args.shape.split(","))
    tomo_path = args.tomogram
    if tomo_path is None:
        tomo_path = args.workdir / f"tomo_{'x'.join(map(str, shape))}.mrc"
        if not tomo_path.exists():
            make_tomogram(tomo_path, shape)  # type: ignore[arg-type]

    from tomopick.io import read_tomogram
    from tomopick.workflows.pick import resolve_model

    t0 = time.perf_counter()
    loaded = resolve_model(args.model)
    loaded.model.to(args.device)
    synchronize(args.device)
    startup = {"imports_s": t0 - T_START, "model_to_device_s": time.perf_counter() - t0}
    tomo_shape = read_tomogram(tomo_path).shape
    from tomopick.workflows.pick import inference_settings

    divisor = inference_settings(loaded).divisor  # the network's total downsampling
    rows = []
    for amp in amps:
        for roi_text in args.roi or DEFAULT_ROIS:
            roi = parse_roi(roi_text, tomo_shape, divisor)
            for batch in batches:
                if roi_text == "whole" and batch > 1:
                    continue  # one window: batching changes nothing
                try:
                    row = run_config(tomo_path, loaded, args.workdir / "picks.star", device=args.device, amp=amp,
                                     roi=roi, batch_size=batch, repeat=args.repeat,
                                     whole=roi_text == "whole")
                except torch.cuda.OutOfMemoryError as exc:  # type: ignore[attr-defined]
                    row = {"device": args.device, "amp": amp, "roi": "×".join(map(str, roi)), "batch": batch,
                           "error": f"out of memory: {str(exc).splitlines()[0]}"}
                    torch.cuda.empty_cache()
                rows.append(row)
                print(json.dumps(row, default=float), flush=True)
    best = min((r for r in rows if "s_per_tomogram" in r), key=lambda r: r["s_per_tomogram"], default=None)
    device_name = torch.cuda.get_device_name(args.device) if on_gpu else "CPU"
    cols = [("amp", "amp"), ("roi", "window"), ("batch", "batch"), ("windows", "windows"),
            ("s_per_tomogram", "s / tomogram"), ("tomograms_per_hour", "tomograms / h"), ("network_s", "network (s)"),
            ("peaks_s", "peaks (s)"), ("cold_s", "first (s)"), ("gpu_peak_GiB", "GPU peak (GiB)"), ("error", "error")]
    cols = [c for c in cols if any(c[0] in r for r in rows)]
    lines = ["## gpu pick", "",
             f"`python bench/bench_gpu.py {' '.join(sys.argv[1:])}` on {device_name} ({args.device}); tomogram "
             f"{' × '.join(map(str, tomo_shape))} ({tomo_path.name}); end to end per tomogram = open MRC → picks "
             f"file written, median of {args.repeat} after one warm-up; start-up once: imports "
             f"{startup['imports_s']:.1f} s, model to device {startup['model_to_device_s']:.1f} s. "
             f"Machine: {machine_line(machine_info(octopi=False))}.", "", markdown_table(rows, cols)]
    if best is not None:
        lines += ["", f"Best: {best['amp']}, windows {best['roi']}, batch {best['batch']}: "
                      f"**{best['s_per_tomogram']:.2f} s per tomogram, {best['tomograms_per_hour']:.0f} tomograms "
                      f"per hour**."]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.json is not None:
        args.json.write_text(json.dumps({"startup": startup, "rows": rows, "device": device_name}, indent=1,
                                        default=float))
    if args.results:
        replace_section(Path(__file__).with_name("RESULTS.md"), "gpu pick", text)


if __name__ == "__main__":
    main()
