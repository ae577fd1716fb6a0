"""Speed and memory of ``tomopick pick``: one CZII-size tomogram end to end, next to plain MONAI, and a huge
memory-mapped tomogram for the memory bound.

Cases (each in a fresh subprocess; wall time, CPU time and peak RSS from ``os.wait4``'s rusage):

``tomopick``  ``tomopick pick TOMO.mrc --model M --out picks.star`` with default settings (read MRC → picks written).
``monai``     the same network with plain MONAI ``sliding_window_inference`` defaults (roi = the training patch,
              overlap 0.25, constant blending, ``sw_batch_size`` 4) on the whole normalised volume in memory, then
              softmax and the same max-pool peak finder and writer.
``margin``    how much the thin crop-mode margin changes the scores: one window over 184 × 256 × 256 voxels vs
              the same tiled into smaller windows with the default margin.
``big``       a 500 × 2000 × 2000 float32 MRC (8 GB, created with ``mrcfile.new_mmap`` and filled slab by slab with
              noise, deleted afterwards) picked through :func:`tomopick.workflows.pick.pick_tomogram` after
              ``read_tomogram`` (memory-mapped). ``--big-runs NETWORK:Z …``: the bundled architecture over z-planes
              0..Z of full 2000 × 2000 planes (the whole volume would take ~30 min on 2 cores), and a tiny UNet
              over the whole volume; the finite check always reads the whole file.

The network is the bundled ``czii-10A`` model when installed, else an untrained network of the bundled
architecture (``configs/czii-10A-pyramid.yaml``: coordresunet 8-16-32-64-128, 1 residual unit, image pyramid, 7
classes) — speed and memory do not depend on the weights. Results replace the "pick" section of ``bench/RESULTS.md``.

``--shape Z Y X`` picks a noise tomogram of another size (e.g. 200 1024 1440, a K3 frame binned to ~10 Å, whose
score map no longer fits the 1 GiB memory budget, so the score store is a compressed temporary zarr on disk).

``--variants NAME=OPTIONS …`` runs several tomopick cases (``'fp32=' 'bf16=--precision bf16'``; leading
``NAME=VALUE`` words set environment variables, e.g. ``TOMOPICK_REUSE_MEMORY=0``) interleaved with ``monai``,
``--repeat`` rounds, and reports user and system seconds, the system share and MONAI / tomopick ratios per case.

Usage::

    python bench/bench_pick.py [--cases tomopick monai margin big] [--big-runs bundled:80 tiny:500] [--workdir DIR]
    python bench/bench_pick.py --cases tomopick monai --variants 'fp32=' 'bf16=--precision bf16' --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, machine_line  # noqa: E402  (bench/common.py)

REPO = Path(__file__).resolve().parents[1]

# Every child prints its own peak resident set (the kernel's VmHWM of its address space) on exit. ``ru_maxrss``
# from wait4 is not used as the peak: Linux carries the parent's high-water mark into a forked child across exec,
# so a parent that once held a large file mapping (creating the 8 GB tomogram) would inflate every child's value.
HWM = r"""
import atexit as _atexit, json as _json
def _report_hwm():
    for _line in open("/proc/self/status"):
        if _line.startswith("VmHWM"):
            print(_json.dumps({"vmhwm_GB": int(_line.split()[1]) / 1024**2}), flush=True)
_atexit.register(_report_hwm)
"""

CLI_CHILD = HWM + r"""
import sys
from tomopick.cli.main import main
main(sys.argv[1:])
"""

MONAI_CHILD = HWM + r"""
import json, sys, time
import numpy as np, torch
from monai.inferers import sliding_window_inference
from tomopick.data import Picks
from tomopick.data.coords import voxel_to_angstrom
from tomopick.inference.normalize import normalize_robust
from tomopick.io import read_tomogram, write_picks
from tomopick.models import load_checkpoint
from tomopick.peaks import find_peaks
tomo_path, ckpt, out = sys.argv[1:4]
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
t0 = time.perf_counter()
loaded = load_checkpoint(ckpt)
tomo = read_tomogram(tomo_path)
x = torch.from_numpy(normalize_robust(tomo.load(np.float32)))[None, None]
with torch.inference_mode():
    logits = sliding_window_inference(x, roi_size=loaded.patch_size, sw_batch_size=4, predictor=loaded.model)
    prob = torch.softmax(logits, dim=1)[0, 1:].numpy()
del logits, x
names = loaded.classes[1:]
radii = [loaded.particles[n].radius_A / tomo.voxel_size_A[0] for n in names]
peaks = find_peaks(prob, "maxpool", threshold=0.5, radius_vox=radii)
picks = Picks.from_arrays(voxel_to_angstrom(peaks.zyx, tomo.voxel_size_A), [names[c] for c in peaks.channel],
                          score=peaks.score, run="bench")
write_picks(picks, out, overwrite=True, voxel_size_A=tomo.voxel_size_A[0])
print(json.dumps({"picks": len(picks), "inner_s": time.perf_counter() - t0}))
"""

BIG_CHILD = HWM + r"""
import json, sys, time
import numpy as np, torch
from tomopick.io import read_tomogram, write_picks
from tomopick.workflows.pick import inference_settings, pick_tomogram, resolve_model
tomo_path, ckpt, out, z1, workdir = sys.argv[1:6]
torch.set_num_threads(len(__import__("os").sched_getaffinity(0)))
t0 = time.perf_counter()
loaded = resolve_model(ckpt)
tomo = read_tomogram(tomo_path)
z1 = min(int(z1), tomo.shape[0])
view = tomo.with_data(tomo.data[:z1])  # still a memory map of the 8 GB file
# the whole file, slab by slab, dropping pages as it goes (as pick_tomogram does for the view)
from tomopick.inference.sliding import ReleasingArray
tomo.with_data(ReleasingArray(tomo.data)).check_finite()
settings = inference_settings(loaded, store_directory=workdir)  # the defaults of `tomopick pick`
picks, summary = pick_tomogram(view, loaded, run="big", settings=settings)
write_picks(picks, out, overwrite=True, voxel_size_A=tomo.voxel_size_A[0])
summary = {k: v for k, v in summary.items() if k not in ("voxel_size_A",)}
print(json.dumps({"picks": len(picks), "inner_s": time.perf_counter() - t0, "z_range": [0, z1],
                  "summary": summary}, default=str))
"""


MARGIN_CHILD = HWM + r"""
import json, sys
import numpy as np, torch
from tomopick.inference.normalize import robust_stats
from tomopick.inference.sliding import InferenceSettings, predict_to_store
from tomopick.io import read_tomogram
from tomopick.workflows.pick import inference_settings, resolve_model
tomo_path, ckpt = sys.argv[1:3]
loaded = resolve_model(ckpt)
vol = np.asarray(read_tomogram(tomo_path).data[:, :256, :256], dtype=np.float32)
stats = robust_stats(vol)
default = inference_settings(loaded)
whole = InferenceSettings(roi_size=(192, 256, 256), overlap=0.0, divisor=default.divisor)
tiled = InferenceSettings(roi_size=(112, 144, 144), overlap=default.overlap, divisor=default.divisor)
kw = dict(output="softmax", channels=list(range(1, 7)), stats=stats)
with predict_to_store(vol, loaded.model, settings=whole, **kw) as a, \
        predict_to_store(vol, loaded.model, settings=tiled, **kw) as b:
    d = np.abs(a.array.astype(np.float32) - b.array.astype(np.float32))
print(json.dumps({"max_abs_diff": float(d.max()), "p999_abs_diff": float(np.quantile(d, 0.999)),
                  "frac_over_0.05": float((d > 0.05).mean()), "tiled_roi": tiled.roi_size,
                  "overlap": tiled.overlap}))
"""


def measured(cmd: list[str], env: dict | None = None) -> dict:
    """Run ``cmd`` (with ``env`` added to the environment); wall, user and system CPU seconds, minor page faults
    and peak RSS of that child alone (``os.wait4``)."""
    load = os.getloadavg()[0]
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            env={**os.environ, **(env or {})})
    stdout, stderr = proc.stdout.read(), proc.stderr.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} … failed ({proc.returncode}):\n{stderr[-3000:]}")
    info: dict = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            info.update(json.loads(line))
    if not set(info) - {"vmhwm_GB"}:
        info["stdout"] = [line for line in stdout.strip().splitlines() if not line.startswith("{")][-2:]
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "user_s": usage.ru_utime,
            "sys_s": usage.ru_stime, "minflt": usage.ru_minflt,
            "peak_rss_GB": info.get("vmhwm_GB", usage.ru_maxrss / 1024**2), "ru_maxrss_GB": usage.ru_maxrss / 1024**2,
            "load_before": load, "load_after": os.getloadavg()[0], "when": when, **info}


def make_czii_tomogram(path: Path, shape=(184, 630, 630), seed=0) -> None:
    """Noise plus bright Gaussian blobs, written slab by slab (float32, 10.012 Å)."""
    import mrcfile
    import numpy as np

    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for z0 in range(0, shape[0], 32):
            mrc.data[z0 : z0 + 32] = rng.standard_normal((min(32, shape[0] - z0), *shape[1:]), dtype=np.float32)
        mrc.voxel_size = 10.012


def make_big_tomogram(path: Path, shape=(500, 2000, 2000), seed=0) -> float:
    import mrcfile
    import numpy as np

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with mrcfile.new_mmap(path, shape=shape, mrc_mode=2, overwrite=True) as mrc:
        for z0 in range(0, shape[0], 16):
            mrc.data[z0 : z0 + 16] = rng.standard_normal((min(16, shape[0] - z0), *shape[1:]), dtype=np.float32)
            mrc.flush()
        mrc.voxel_size = 10.012
    return time.perf_counter() - t0


def model_checkpoint(workdir: Path) -> tuple[Path, str]:
    """The bundled model's file if installed, else an untrained network of its architecture."""
    import torch

    try:
        from tomopick.models.bundled import load_bundled

        loaded = load_bundled("czii-10A")
        return Path(loaded.path), "bundled czii-10A (trained)"
    except Exception:  # noqa: BLE001 - not installed yet: fall back to the architecture
        pass
    from tomopick.data import CZII
    from tomopick.inference.normalize import robust_config
    from tomopick.models import build_model, save_checkpoint

    hp = {"channels": [8, 16, 32, 64, 128], "num_res_units": 1, "norm": "batch", "coord_conv": False, "pyramid": True}
    torch.manual_seed(0)
    model = build_model("coordresunet", 1, 7, **hp)
    config = {"network": {"name": "coordresunet", "hparams": hp}, "in_channels": 1, "out_channels": 7,
              "output": "softmax", "classes": ["background", *CZII.names],
              "particles": CZII.model_dump(mode="json"), "voxel_size_A": 10.012, "patch_size": [64, 64, 64],
              "normalisation": robust_config(), "target": {"kind": "sphere", "radius_fraction": 0.5}}
    path = workdir / "untrained-pyramid.pt"
    save_checkpoint(path, model, config, overwrite=True)
    n = sum(p.numel() for p in model.parameters())
    return path, f"untrained coordresunet 8-16-32-64-128, 1 residual unit, 7 classes ({n / 1e6:.2f} M parameters)"


def tiny_checkpoint(workdir: Path) -> tuple[Path, str]:
    """A small untrained UNet (4-8-16, 2 classes: background + ribosome) for a whole-volume memory run."""
    import torch

    from tomopick.data import CZII
    from tomopick.inference.normalize import robust_config
    from tomopick.models import build_model, save_checkpoint

    hp = {"channels": [4, 8, 16], "strides": [2, 2]}
    torch.manual_seed(0)
    particles = CZII.subset(["ribosome"])
    config = {"network": {"name": "unet", "hparams": hp}, "in_channels": 1, "out_channels": 2,
              "output": "softmax", "classes": ["background", "ribosome"],
              "particles": particles.model_dump(mode="json"), "voxel_size_A": 10.012, "patch_size": [64, 64, 64],
              "normalisation": robust_config(), "target": {"kind": "sphere", "radius_fraction": 0.5}}
    path = workdir / "untrained-tiny.pt"
    save_checkpoint(path, build_model("unet", 1, 2, **hp), config, overwrite=True)
    return path, "untrained unet 4-8-16, 2 classes"


def write_section(text: str, path: Path) -> None:
    """Replace (or append) the ``## pick`` section of RESULTS.md, leaving other sections alone."""
    old = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## pick\b.*?(?=^## |\Z)", re.S | re.M)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else old.rstrip("\n") + "\n\n" + text
    path.write_text(new)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["tomopick", "monai", "margin", "big"],
                    help="cases to run (`report`: none, rewrite the section from earlier results)")
    ap.add_argument("--big-runs", nargs="+", default=["bundled:80", "tiny:500"],
                    help="NETWORK:Z runs on the big tomogram: the bundled architecture or a tiny UNet, picking "
                         "z-planes 0..Z (max 500)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/tomopick-bench"))
    ap.add_argument("--extra", nargs="*", default=[], help="extra tomopick pick options for the tomopick case")
    ap.add_argument("--variants", nargs="+", default=None, metavar="NAME=OPTIONS",
                    help="instead of one tomopick case: several, e.g. 'fp32=' 'bf16=--precision bf16'; all "
                         "tomopick variants and monai run interleaved (A, B, C, A, B, C, …) --repeat times")
    ap.add_argument("--repeat", type=int, default=1, help="rounds of the interleaved tomopick/monai cases")
    ap.add_argument("--big-file", type=Path, default=None, help="reuse this 500 × 2000 × 2000 MRC if it exists")
    ap.add_argument("--keep-big", action="store_true", help="do not delete the big MRC afterwards")
    ap.add_argument("--replace-big", action="store_true", help="drop earlier big-case rows")
    ap.add_argument("--shape", nargs=3, type=int, default=[184, 630, 630], metavar=("Z", "Y", "X"),
                    help="size of the noise tomogram of the tomopick/monai/margin cases (default: CZII's)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    ckpt, model_desc = model_checkpoint(work)
    cache = work / "rows.json"  # results of earlier invocations, so that cases can be run one at a time
    cached = json.loads(cache.read_text()) if cache.exists() else {}
    rows: dict[str, dict] = {}
    if set(args.cases) - {"report"}:
        cached["model"] = model_desc  # what the rows measured
    model_desc = cached.get("model", model_desc)
    shape = tuple(args.shape)
    tomo = work / ("czii_size.mrc" if shape == (184, 630, 630) else "noise_{}x{}x{}.mrc".format(*shape))
    if {"tomopick", "monai", "margin"} & set(args.cases) and not tomo.exists():
        make_czii_tomogram(tomo, shape)
    exe = [sys.executable, "-c", CLI_CHILD]
    variants = ([v.partition("=")[::2] for v in args.variants] if args.variants else
                [("tomopick", " ".join(args.extra))])
    runs: dict[str, list[dict]] = {}
    for _ in range(max(1, args.repeat)):  # interleaved, so that a change of load hits every case alike
        if "tomopick" in args.cases:
            for name, opts in variants:
                key = name if name == "tomopick" else f"tomopick {name}"
                words = opts.split()  # leading NAME=VALUE words (upper-case names) are environment variables
                env = dict(w.split("=", 1) for w in words if re.match(r"^[A-Z_][A-Z0-9_]*=", w))
                words = [w for w in words if not re.match(r"^[A-Z_][A-Z0-9_]*=", w)]
                cmd = [*exe, "pick", str(tomo), "--model", str(ckpt), "--out", str(work / "picks.star"),
                       "--overwrite", "--quiet", *words]
                row = measured(cmd, env) | {"command": f"tomopick pick {tomo.name} --model M --out picks.star {opts}"}
                runs.setdefault(key, []).append(row)
                print(json.dumps({"case": key, **row}), flush=True)
        if "monai" in args.cases:
            row = measured([sys.executable, "-c", MONAI_CHILD, str(tomo), str(ckpt), str(work / "picks_monai.star")])
            runs.setdefault("monai", []).append(row)
            print(json.dumps({"case": "monai", **row}), flush=True)
    for key, rs in runs.items():  # the least disturbed round of each (lowest CPU seconds), with every round kept
        rows[key] = min(rs, key=lambda r: r["cpu_s"]) | {"rounds": len(rs), "all_cpu_s": [r["cpu_s"] for r in rs],
                                                           "all_wall_s": [r["wall_s"] for r in rs]}
    if "margin" in args.cases:
        rows_margin = measured([sys.executable, "-c", MARGIN_CHILD, str(tomo), str(ckpt)])
        print(json.dumps(rows_margin), flush=True)
        cached["margin"] = rows_margin
    big_rows = []
    if "big" in args.cases:
        big = args.big_file or work / "big_500x2000x2000.mrc"
        try:
            if args.big_file is not None and big.exists():
                create_s = float("nan")
            else:  # in a subprocess, so that this process never maps the 8 GB (see HWM above)
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); "
                                "from bench_pick import make_big_tomogram as m; from pathlib import Path; "
                                "m(Path(sys.argv[1]))", str(big), str(Path(__file__).parent)], check=True)
                create_s = time.perf_counter() - t0
            big_rows = []
            for spec in args.big_runs:
                net, _, z = spec.partition(":")
                path, desc = (ckpt, model_desc) if net == "bundled" else tiny_checkpoint(work)
                row = measured([sys.executable, "-c", BIG_CHILD, str(big), str(path), str(work / "picks_big.star"),
                                z or "500", str(work)]) | {"create_s": create_s, "network": desc}
                big_rows.append(row)
                print(json.dumps(row, default=str), flush=True)
        finally:
            if not args.keep_big:
                big.unlink(missing_ok=True)
        earlier = [] if args.replace_big else cached.get("big", [])
        cached["big"] = [r for r in earlier if r["network"] not in {b["network"] for b in big_rows}] + big_rows
        cached["big_runs"] = args.big_runs
    cached.update(rows)
    cache.write_text(json.dumps(cached, default=str, indent=1))
    # the section shows every case measured so far (each row says when)
    rows = {k: v for k, v in cached.items() if k in ("tomopick", "monai") or k.startswith("tomopick ")}
    if runs:  # a fresh interleaved run: show only its own cases
        rows = {k: v for k, v in rows.items() if k in runs}
    big_rows = cached.get("big", [])
    shown = ([k for k in ("tomopick", "monai", "margin") if k in cached or (k == "tomopick" and any(
        r.startswith("tomopick") for r in rows))] + (["big"] if big_rows else []))
    lines = [
        "## pick",
        "",
        f"Network: {model_desc}. Tomogram: {184} × {630} × {630} float32 MRC at 10.012 Å (noise), read memory-"
        "mapped; end to end = process start → picks file written (imports included).",
        f"Command: `python bench/bench_pick.py --cases {' '.join(shown)}"
        + (f" --big-runs {' '.join(cached.get('big_runs', args.big_runs))}" if big_rows else "")
        + (f" --extra {' '.join(args.extra)}" if args.extra else "")
        + (" --variants " + " ".join(f"'{v}'" for v in args.variants) if args.variants else "")
        + (f" --repeat {args.repeat}" if args.repeat > 1 else "")
        + "` (cases may be run one at a time; each row gives its time).",
        f"Machine: {machine_line(machine_info(octopi=False))}. The cores were shared with other jobs: the 1-minute load average is given.",
        "",
        "| case | wall (s) | CPU (s) | user / system (s) | system share | peak RSS (GiB) | picks | "
        "load before/after | when |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        picks = r.get("picks", "?")
        if picks == "?" and r.get("stdout"):
            found = re.search(r"(\d+) picks written", " ".join(r["stdout"]))
            picks = found.group(1) if found else "?"
        split = (f"{r['user_s']:.1f} / {r['sys_s']:.1f} | {100 * r['sys_s'] / r['cpu_s']:.0f} %" if "sys_s" in r
                 else "– | –")
        lines.append(f"| {name} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {split} | {r['peak_rss_GB']:.2f} | "
                     f"{picks} | {r['load_before']:.1f} / {r['load_after']:.1f} | {r.get('when', '')} |")
    if "monai" in rows:
        m = rows["monai"]
        for name, t in rows.items():
            if name.startswith("tomopick"):
                lines += ["", f"Ratios MONAI / {name}: wall {m['wall_s'] / t['wall_s']:.2f}×, CPU "
                              f"{m['cpu_s'] / t['cpu_s']:.2f}×, peak RSS {m['peak_rss_GB'] / t['peak_rss_GB']:.2f}×."]
    lines += ["", "Targets: `tomopick` ≤ 60 s and ≤ 3 GB on the CZII-size tomogram; ≤ 4 GB peak RSS on the 8 GB one. "
                  "With the cores shared, CPU seconds are the steadier figure (wall time grows with the load; the "
                  "network and pooling use both cores, so on two free cores wall ≈ CPU / 2 for those parts)."]
    if "margin" in cached:
        m = cached["margin"]
        lines += ["", f"Crop-mode context margin: the first 184 × 256 × 256 voxels predicted as one window vs tiled "
                      f"into {tuple(m['tiled_roi'])} windows with the default margin (overlap {m['overlap']}): "
                      f"max |Δp| = {m['max_abs_diff']:.3f}, 99.9th percentile {m['p999_abs_diff']:.4f}, "
                      f"{100 * m['frac_over_0.05']:.3f} % of voxels differ by more than 0.05 (6 classes)."]
    if big_rows:
        made = [b["create_s"] for b in big_rows if b.get("create_s") == b.get("create_s")]  # not NaN
        lines += ["", f"Bounded memory: a 500 × 2000 × 2000 float32 MRC (8.0 GB, created with `mrcfile.new_mmap`"
                      + (f" in {made[0]:.0f} s" if made else "") + ", deleted afterwards), read memory-mapped; the finite check "
                      "reads the whole file; picking covers z-planes 0–Z of full 2000 × 2000 planes.", "",
                  "| network | z-planes picked | wall (s) | CPU (s) | peak RSS (GiB) | windows | score store | "
                  "load before/after | when |", "|---|---|---|---|---|---|---|---|---|"]
        for b in big_rows:
            lines.append(f"| {b['network']} | {b['z_range'][0]}–{b['z_range'][1]} | {b['wall_s']:.0f} | "
                         f"{b['cpu_s']:.0f} | {b['peak_rss_GB']:.2f} | {b['summary'].get('windows')} | "
                         f"{'disk (zarr)' if b['summary'].get('store_on_disk') else 'memory'} | "
                         f"{b['load_before']:.1f} / {b['load_after']:.1f} | {b.get('when', '')} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if not args.no_write:
        write_section(text, Path(__file__).with_name("RESULTS.md"))


if __name__ == "__main__":
    main()
