"""Subtomogram averaging as a validation without ground truth (#14 part 1): does the half-map FSC tell real picks from
junk, does the automatic score cut clean a mixed pick list, and how long does it take?

Data: held-out simulations made with ``tomopick simulate`` (never used for training), e.g.::

    tomopick simulate --n 2 --seed 9100 --format mrc --out /work/data/average/sims

Parts (run one at a time under the CPU lock; each writes a JSON and prints a Markdown table):

* ``classes`` — per class, the same alignment (reference = the class's bundled map, low-passed to 40 Å for round 1)
  on (a) the true picks, (b) as many random positions in the ice, (c) as many picks of the other classes; plus the
  "oracle": the true picks averaged at their true orientations and positions (no alignment), i.e. the resolution the
  simulated data support, and the Nyquist limit.
* ``cut`` — per class, a mixed list (the true picks + half as many junk picks: random positions and other classes),
  averaged; the automatic cut on the alignment scores; precision before/after and the fraction of true picks lost.
* ``timing`` — 200 boxes of 37³ with the default options (step 12°, 3 rounds), extraction included, torch on 2
  threads.

Command (all parts; ``--parts`` to choose)::

    OMP_NUM_THREADS=2 nice -n 10 flock /tmp/tomopick-cpu.lock python bench/bench_average.py --parts classes
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from tomopick.averaging import (
    AverageOptions, average_subtomograms, extract_subvolumes, fit_box, half_map_fsc, automatic_score_cut,
)
from tomopick.averaging.align import Alignment
from tomopick.averaging.refine import default_box, geometry, split_halves
from tomopick.data import Picks, get_particle_set
from tomopick.io import read_picks, read_tomogram
from tomopick.simulate import CZII_TEMPLATES, bundled_template, render_rotated

CLASSES = ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin", "virus-like-particle"]


def load_sims(folder: Path):
    """[(tomogram, truth picks with orientations)] for every sim_*.mrc with its sim_*/picks/*.json."""
    out = []
    for mrc in sorted(folder.glob("sim_*.mrc")):
        picks = Picks.concat(read_picks(p) for p in sorted((folder / mrc.stem / "picks").glob("*.json")))
        out.append((read_tomogram(mrc), picks))
    if not out:
        sys.exit(f"no sim_*.mrc in {folder}; run tomopick simulate --format mrc --out {folder} first")
    return out


def reference_map(name: str, voxel_size_A: float, box: int) -> np.ndarray:
    density, _ = render_rotated(bundled_template(CZII_TEMPLATES[name]), np.eye(3), voxel_size_A, np.zeros(3))
    return fit_box(density, box)


def random_positions(tomo, picks: Picks, n: int, rng: np.random.Generator, min_dist_A: float) -> np.ndarray:
    """``n`` positions (x, y, z Å) inside the tomogram, z within the picks' range, at least ``min_dist_A`` from every
    true pick of every class."""
    vs = tomo.voxel_size_A[0]
    zmin, zmax = picks.xyz_A[:, 2].min(), picks.xyz_A[:, 2].max()
    ext = np.array(tomo.shape[::-1]) * vs
    out = []
    while len(out) < n:
        p = np.array([rng.uniform(0.05, 0.95) * ext[0], rng.uniform(0.05, 0.95) * ext[1], rng.uniform(zmin, zmax)])
        if np.min(np.linalg.norm(picks.xyz_A - p, axis=1)) >= min_dist_A:
            out.append(p)
    return np.array(out)


def boxes_at(sims, per_sim_xyz: list[np.ndarray], box: int) -> np.ndarray:
    parts = []
    for (tomo, _), xyz in zip(sims, per_sim_xyz):
        if len(xyz):
            zyx = xyz[:, ::-1] / np.asarray(tomo.voxel_size_A)
            parts.append(extract_subvolumes(tomo.data, zyx, box).data)
    return np.concatenate(parts)


def subsample(per_sim: list[np.ndarray], n_max: int, rng: np.random.Generator) -> list[np.ndarray]:
    """At most ``n_max`` rows over all sims, drawn without replacement."""
    sizes = [len(x) for x in per_sim]
    total = sum(sizes)
    if total <= n_max:
        return per_sim
    keep = np.zeros(total, bool)
    keep[rng.choice(total, n_max, replace=False)] = True
    out, i = [], 0
    for x in per_sim:
        sel = keep[i:i + len(x)]
        out.append(x.select(sel) if isinstance(x, Picks) else x[sel])
        i += len(x)
    return out


def run_average(boxes: np.ndarray, vs: float, radius: float, options: AverageOptions, ref: np.ndarray | None):
    t = time.perf_counter()
    res = average_subtomograms(boxes, vs, radius, options, np.random.default_rng(0), reference=ref)
    return res, time.perf_counter() - t


def part_classes(sims, args) -> list[dict]:
    pset = get_particle_set("czii")
    rng = np.random.default_rng(1 + 1000 * args.seed)
    rows = []
    for name in args.classes:
        radius = float(next(p.radius_A for p in pset.particles if p.name == name))
        vs = sims[0][0].voxel_size_A[0]
        box = default_box(radius, vs)
        opts = AverageOptions(angular_step_deg=args.angular_step, iterations=args.iterations)
        ref = reference_map(name, vs, box)
        true_sel = subsample([p.for_particle(name) for _, p in sims], args.max_particles, rng)
        true_xyz = [p.xyz_A for p in true_sel]
        n = sum(len(x) for x in true_xyz)
        wrong = subsample([p.select(p.frame["particle"] != name).xyz_A for _, p in sims], n, rng)
        rand = [random_positions(t, p, len(x), rng, radius) for (t, p), x in zip(sims, true_xyz)]
        row: dict = {"class": name, "n": n, "box": box, "nyquist_A": 2 * vs}
        # oracle: true orientations and positions, no alignment
        tb = boxes_at(sims, true_xyz, box)
        rots = np.concatenate([p.rotation_matrices() for p in true_sel])
        geo = geometry(opts, radius, vs, box)
        halves = split_halves(len(tb), np.random.default_rng(0))
        _, _, oracle = half_map_fsc(tb, Alignment(rots, np.zeros((len(tb), 3)), np.zeros(len(tb))), halves,
                                    np.ones(len(tb), bool), geo, opts)
        row["oracle_A"] = oracle
        for label, xyz in (("true", true_xyz), ("random", rand), ("wrong_class", wrong)):
            b = tb if label == "true" else boxes_at(sims, xyz, box)
            res, secs = run_average(b, vs, radius, opts, ref)
            row[f"{label}_A"] = res.resolution_A
            row[f"{label}_score"] = float(np.mean(res.alignment.scores))
            row[f"{label}_s"] = secs
            if label == "true":
                from tomopick.data.rotations import rotation_angle_deg

                # orientation error modulo nothing (C1): meaningful only for asymmetric complexes
                err = rotation_angle_deg(res.alignment.rotations, rots)
                row["true_median_angle_err_deg"] = float(np.median(err))
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def part_cut(sims, args) -> list[dict]:
    pset = get_particle_set("czii")
    rng = np.random.default_rng(2 + 1000 * args.seed)
    rows = []
    for name in args.classes:
        radius = float(next(p.radius_A for p in pset.particles if p.name == name))
        vs = sims[0][0].voxel_size_A[0]
        box = default_box(radius, vs)
        opts = AverageOptions(angular_step_deg=args.angular_step, iterations=args.iterations)
        true_xyz = subsample([p.for_particle(name).xyz_A for _, p in sims], args.max_particles, rng)
        n = sum(len(x) for x in true_xyz)
        n_junk = max(2, n // 2)
        wrong = subsample([p.select(p.frame["particle"] != name).xyz_A for _, p in sims], n_junk // 2, rng)
        n_rand = n_junk - sum(len(x) for x in wrong)
        share = np.diff(np.linspace(0, n_rand, len(sims) + 1).round().astype(int))
        rand = [random_positions(t, p, k, rng, radius) for (t, p), k in zip(sims, share)]
        mixed = [np.concatenate([a, b, c]) for a, b, c in zip(true_xyz, wrong, rand)]
        is_true = np.concatenate([np.r_[np.ones(len(a), bool), np.zeros(len(b) + len(c), bool)]
                                  for a, b, c in zip(true_xyz, wrong, rand)])
        boxes = boxes_at(sims, mixed, box)
        res, secs = run_average(boxes, vs, radius, opts, reference_map(name, vs, box))
        cut = automatic_score_cut(res.alignment.scores)
        keep = cut.keep(res.alignment.scores)
        row = {"class": name, "n_true": int(is_true.sum()), "n_junk": int((~is_true).sum()),
               "precision_before": float(is_true.mean()),
               "precision_after": float(is_true[keep].mean()) if keep.any() else None,
               "true_lost_fraction": float(1 - keep[is_true].mean()),
               "junk_removed_fraction": float(1 - keep[~is_true].mean()),
               "rule": cut.rule, "threshold": None if not np.isfinite(cut.threshold) else cut.threshold,
               "resolution_all_A": res.resolution_A, "seconds": secs,
               "mean_score_true": float(res.alignment.scores[is_true].mean()),
               "mean_score_junk": float(res.alignment.scores[~is_true].mean())}
        geo = res.geometry
        _, _, row["resolution_kept_A"] = half_map_fsc(boxes, res.alignment, res.halves, keep, geo, opts)
        if args.scores:
            row["scores_true"] = [round(float(v), 4) for v in res.alignment.scores[is_true]]
            row["scores_junk"] = [round(float(v), 4) for v in res.alignment.scores[~is_true]]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def part_timing(sims, args) -> list[dict]:
    import torch

    torch.set_num_threads(2)
    rng = np.random.default_rng(3)
    all_xyz = [p.xyz_A for _, p in sims]
    xyz = subsample(all_xyz, 200, rng)
    n = sum(len(x) for x in xyz)
    opts = AverageOptions()  # the CLI defaults: step 12°, 3 rounds
    vs = sims[0][0].voxel_size_A[0]
    t0 = time.perf_counter()
    c0 = time.process_time()
    boxes = boxes_at(sims, xyz, 37)
    t1 = time.perf_counter()
    res = average_subtomograms(boxes, vs, 130.0, opts, np.random.default_rng(0))
    t2 = time.perf_counter()
    row = {"n": n, "box": 37, "extract_s": t1 - t0, "align_average_s": t2 - t1, "total_s": t2 - t0,
           "cpu_s": time.process_time() - c0, "threads": torch.get_num_threads(),
           "load_after": os.getloadavg()[0], "rounds": len(res.rounds)}
    print(json.dumps(row), flush=True)
    return [row]


def _fmt(v) -> str:
    if v is None:
        return "≥ Nyquist"
    if isinstance(v, float):
        return f"{v:.1f}" if abs(v) >= 1 else f"{v:.3f}"
    return str(v)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sims", type=Path, default=Path("/work/data/average/sims"))
    ap.add_argument("--parts", nargs="+", default=["classes", "cut", "timing"])
    ap.add_argument("--classes", nargs="+", default=CLASSES)
    ap.add_argument("--max-particles", type=int, default=40)
    ap.add_argument("--angular-step", type=float, default=15.0)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--out", type=Path, default=Path("/work/data/average/bench"))
    ap.add_argument("--scores", action="store_true", help="cut: keep every pick's score in the JSON")
    ap.add_argument("--seed", type=int, default=0, help="offset of the subsampling/junk seeds (a second draw)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    args.out.mkdir(parents=True, exist_ok=True)
    sims = load_sims(args.sims)
    for part in args.parts:
        t = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        rows = {"classes": part_classes, "cut": part_cut, "timing": part_timing}[part](sims, args)
        (args.out / f"{part}.json").write_text(json.dumps({"when": t, "args": {k: str(v) for k, v in
                                                                              vars(args).items()},
                                                           "rows": rows}, indent=2))
        if rows:
            cols = list(rows[0])
            print("| " + " | ".join(cols) + " |\n|" + "---|" * len(cols))
            for r in rows:
                print("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")


if __name__ == "__main__":
    main()
