"""``tomopick match`` side by side with pyTME 0.3.6 on the same job (issue #12 must-show).

The job: one simulated CZII-size tomogram (184 × 630 × 630 at 10.012 Å) matched at 20 Å (bin 2) with the ribosome
map (``shared/data/templates_10A/6qzp.mrc``, C1) over a 12° rotation set. Both tools get the *same* arrays: the
tomogram resampled and normalised by tomopick (:func:`tomopick.match.picking.matching_grid`), the template as
tomopick prepares it (resampled, inverted, cropped, spherical mask) and the same rotation matrices; the score is the
spherically masked FLC in both (pyTME ``FLCSphericalMask`` with ``MaxScoreOverRotations``), without missing wedge
or whitening (pyTME's defaults), so the score maps should agree up to interpolation.

Measured, per tool (``--rotations N``: both exhaustive searches run over every k-th rotation of the 12° set, about N
of them — the same subset for both, so the peak lists are comparable):

* wall time and CPU-seconds (user + system of this process, its children and its live descendants: pyTME's
  joblib workers are never waited for);
* pyTME's time of the whole 12° set, extrapolated from two runs after a warm-up call with one rotation (a quarter
  of the subset and the subset: a fixed set-up cost plus a cost per rotation), and tomopick's *actual* time of the whole 12° job with its default
  coarse-to-fine search (:func:`tomopick.match.picking.search_and_pick`) — the ratio of the two is what a user of
  either tool waits;
* agreement of the peak lists on the shared subset: the fraction of tomopick's top-N peaks (N = its number of picks
  at its automatic threshold) that pyTME's top-N peaks (its own score map, peaks extracted by the same code)
  contain within 0.5 × radius; and, for context, each list's F1 against the simulation's truth.

Run (under the shared CPU lock so that the cores are idle)::

    OMP_NUM_THREADS=2 flock /tmp/tomopick-cpu.lock python bench/bench_pytme.py \
        --sim /work/data/match/sim/sim_000 --rotations 120 --json /work/data/match/pytme.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_match import MAPS, RADII, TEMPLATES, append_jsonl, peak_rss_gb, scores, truth_of  # noqa: E402
from common import machine_info  # noqa: E402


def _descendants_cpu() -> float:
    """CPU seconds (user + system) of the live descendants of this process, from ``/proc`` (pyTME's joblib/loky
    workers stay alive between calls and are never waited for, so ``RUSAGE_CHILDREN`` misses them)."""
    tick = os.sysconf("SC_CLK_TCK")
    parent, cpu = {}, {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            fields = (d / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(d.name)] = int(fields[1])
        cpu[int(d.name)] = (int(fields[11]) + int(fields[12])) / tick
    me, total = os.getpid(), 0.0
    for pid in cpu:
        p = parent.get(pid)
        while p not in (None, 0, 1, me):
            p = parent.get(p)
        if p == me:
            total += cpu[pid]
    return total


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all threads), its waited-for children and its live
    descendants."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime + _descendants_cpu()


def _pytme_version() -> str:
    import importlib.metadata

    return importlib.metadata.version("pytme")


class Clock:
    """Wall and CPU seconds of a ``with`` block."""

    def __enter__(self) -> "Clock":
        self.wall0, self.cpu0 = time.perf_counter(), cpu_seconds()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = cpu_seconds() - self.cpu0


def top_peaks_xyz(score_map: np.ndarray, n: int, radius_vox: float, voxel_A: np.ndarray) -> np.ndarray:
    """The ``n`` highest local maxima of ``score_map`` (tomopick's peak extraction, spacing = radius) in Å."""
    from tomopick.match.correlate import MatchResult
    from tomopick.match.picking import score_peaks

    finite = score_map[np.isfinite(score_map)]
    floor = float(np.quantile(finite, 0.5)) if finite.size else 0.0
    res = MatchResult(np.nan_to_num(score_map, nan=-1.0).astype(np.float32),
                      np.zeros(score_map.shape, np.int32), 0, 1, 1, 1, 0)
    peaks = score_peaks(res, floor, radius_vox, 1.0)
    order = np.argsort(-peaks.score, kind="stable")[:n]
    return peaks.zyx[order][:, ::-1] * np.asarray(voxel_A)[::-1]


def found_fraction(ours_xyz: np.ndarray, theirs_xyz: np.ndarray, tol_A: float) -> tuple[int, float]:
    """How many of ``ours_xyz`` have a point of ``theirs_xyz`` within ``tol_A``, and the fraction."""
    if not len(ours_xyz):
        return 0, float("nan")
    if not len(theirs_xyz):
        return 0, 0.0
    d = np.linalg.norm(ours_xyz[:, None] - theirs_xyz[None], axis=2)
    hit = int((d.min(axis=1) <= tol_A).sum())
    return hit, hit / len(ours_xyz)


def run(args: argparse.Namespace) -> list[dict]:
    import torch

    from tomopick.data import Picks
    from tomopick.io import read_tomogram
    from tomopick.match.options import MatchOptions
    from tomopick.match.picking import matching_grid, picks_from_result, search, search_and_pick, template_for
    from tomopick.match.rotations import uniform_rotations
    from tomopick.workflows.match import read_template

    torch.set_num_threads(args.threads)
    name = "ribosome"
    key, sym = MAPS[name]
    radius = RADII[name]
    sim = Path(args.sim)
    load_start = os.getloadavg()
    tomo = read_tomogram(sim.parent / f"{sim.name}.mrc")
    tomo = tomo.with_data(np.asarray(tomo.data, dtype=np.float32))
    truth = truth_of(sim)
    tmpl, vs = read_template(TEMPLATES / f"{key}.mrc")
    opts = MatchOptions(step_deg=args.step, symmetry=sym, bin=2, tilt_range_deg=None, whiten=False,
                        threads=args.threads, outlier_z=None, search="exhaustive")
    grid = matching_grid(tomo, opts)
    template = template_for(grid, tmpl, vs, opts, invert=True)
    full = uniform_rotations(args.step, sym)
    every = max(1, len(full) // args.rotations) if args.rotations else 1
    rots = full[::every]
    radius_vox = radius / grid.voxel

    # 1. tomopick, exhaustive over the shared subset
    with Clock() as c_ours:
        result, rots = search(grid, template, opts, rotations=rots)
    ours, info = picks_from_result(result, rots, grid, name, radius, opts, run="r")
    n_top = len(ours)

    # 2. pyTME, exhaustive over the same subset (rotations acting on (z, y, x) array axes as pyTME's do)
    from tme.analyzer import MaxScoreOverRotations
    from tme.matching_data import MatchingData
    from tme.matching_exhaustive import MATCHING_EXHAUSTIVE_REGISTER, match_exhaustive

    setup, scoring = MATCHING_EXHAUSTIVE_REGISTER["FLCSphericalMask"]

    def run_pytme(rotations: np.ndarray) -> tuple[Clock, np.ndarray]:
        md = MatchingData(grid.volume.copy(), template.volume.copy(), template_mask=template.mask.copy(),
                          rotations=np.ascontiguousarray(rotations[:, ::-1, ::-1]))
        with Clock() as clock:
            found = match_exhaustive(md, matching_score=scoring, matching_setup=setup,
                                     callback_class=MaxScoreOverRotations, job_schedule=(1, args.threads),
                                     pad_target_edges=True)
        return clock, np.asarray(found[0], dtype=np.float32)

    # one rotation first (its first call also imports and starts workers), then a quarter of the subset and the
    # subset: pyTME's time = fixed set-up + per rotation, both measured
    c_first, _ = run_pytme(rots[:1])
    c_small, _ = run_pytme(rots[::4])
    c_tme, tme_map = run_pytme(rots)
    n_small = len(rots[::4])
    per_rot_wall = (c_tme.wall - c_small.wall) / max(len(rots) - n_small, 1)
    per_rot_cpu = (c_tme.cpu - c_small.cpu) / max(len(rots) - n_small, 1)
    fixed_wall = max(c_tme.wall - per_rot_wall * len(rots), 0.0)
    fixed_cpu = max(c_tme.cpu - per_rot_cpu * len(rots), 0.0)

    # 3. agreement of the peak lists (rank-based: each tool's own top-N) and against the truth
    ours_top = top_peaks_xyz(result.score, n_top, radius_vox, grid.voxel_A)
    theirs_top = top_peaks_xyz(tme_map, n_top, radius_vox, grid.voxel_A)
    agree, frac = found_fraction(ours_top, theirs_top, 0.5 * radius)
    theirs_picks = Picks.from_arrays(theirs_top, name, run="r") if len(theirs_top) else Picks.empty()
    s_ours, s_theirs = scores(truth, ours, name), scores(truth, theirs_picks, name)
    inside = np.isfinite(tme_map) & np.isfinite(result.score)
    map_corr = float(np.corrcoef(tme_map[inside].ravel()[::7], result.score[inside].ravel()[::7])[0, 1])

    scale = len(full) / len(rots)
    row = dict(part="pytme", particle=name, step_deg=args.step, full_rotations=len(full), subset_rotations=len(rots),
               grid_shape_zyx=list(grid.volume.shape), grid_A=round(grid.voxel, 3), template_box=template.box,
               tomopick_subset_s=round(c_ours.wall, 1), tomopick_subset_cpu_s=round(c_ours.cpu, 1),
               pytme_subset_s=round(c_tme.wall, 1), pytme_subset_cpu_s=round(c_tme.cpu, 1),
               ratio_subset_wall=round(c_tme.wall / c_ours.wall, 2), ratio_subset_cpu=round(c_tme.cpu / c_ours.cpu, 2),
               top_n=n_top, top_n_agree=agree, top_n_agree_fraction=round(frac, 3),
               score_map_pearson=round(map_corr, 4),
               f1_tomopick_subset=round(s_ours["f1"], 3), f1_pytme_top_n=round(s_theirs["f1"], 3),
               pytme_per_rotation_s=round(per_rot_wall, 3), pytme_per_rotation_cpu_s=round(per_rot_cpu, 3),
               pytme_fixed_s=round(fixed_wall, 1), pytme_fixed_cpu_s=round(fixed_cpu, 1),
               pytme_first_call_1_rotation_s=round(c_first.wall, 1),
               tomopick_per_rotation_s=round(c_ours.wall / len(rots), 3),
               pytme_full_job_s_extrapolated=round(fixed_wall + per_rot_wall * len(full), 0),
               pytme_full_job_cpu_s_extrapolated=round(fixed_cpu + per_rot_cpu * len(full), 0),
               tomopick_exhaustive_full_s_extrapolated=round(c_ours.wall * scale, 0))

    # 4. the whole 12° job: tomopick's default (coarse-to-fine) search, timed for real
    if not args.skip_full_job:
        c2f = opts.model_copy(update={"search": "auto"})
        with Clock() as c_full:
            full_picks, full_info = search_and_pick(grid, template, c2f, name, radius, run="r")
        s_full = scores(truth, full_picks, name)
        row.update(tomopick_full_job_s=round(c_full.wall, 1), tomopick_full_job_cpu_s=round(c_full.cpu, 1),
                   tomopick_full_job_search=full_info["search"], tomopick_full_job_picks=len(full_picks),
                   tomopick_full_job_f1=round(s_full["f1"], 3),
                   ratio_full_job_wall=round((fixed_wall + per_rot_wall * len(full)) / c_full.wall, 1),
                   ratio_full_job_cpu=round((fixed_cpu + per_rot_cpu * len(full)) / c_full.cpu, 1))
    row.update(threads=args.threads, peak_rss_gb=round(peak_rss_gb(), 2),
               load_start=[round(x, 2) for x in load_start], load_end=[round(x, 2) for x in os.getloadavg()],
               pytme_version=_pytme_version(), machine=machine_info(octopi=False))
    print(json.dumps(row), flush=True)
    return [row]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sim", default="/work/data/match/sim/sim_000", help="simulation: <folder>/<run> (+ .mrc, .csv)")
    ap.add_argument("--step", type=float, default=12.0)
    ap.add_argument("--rotations", type=int, default=120,
                    help="both exhaustive searches over every k-th rotation of the set (about this many); 0 = all")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-full-job", action="store_true", help="skip timing tomopick's whole coarse-to-fine job")
    ap.add_argument("--json", default=None, help="append the result row to this JSON-lines file")
    args = ap.parse_args()
    append_jsonl(args.json, run(args))


if __name__ == "__main__":
    main()
