"""Template matching and prompt picking on simulated CZII-size tomograms (issue #12 must-shows).

Parts (``--parts``, comma-separated):

``tm``      ``tomopick match`` with the true maps (shared templates_10A) on a simulated 184 × 630 × 630 tomogram at
            10.012 Å, matched at 20 Å (``--bin 2``): CZII F-beta (β = 4) and F1 per class at the automatic
            (false-alarm) threshold, time, peak RSS, rotations. Each class uses its point group (apo-ferritin O,
            beta-galactosidase D2, thyroglobulin C2, virus-like particle I, ribosome C1). ``--step`` sets the angular
            step, ``--search`` the search (default ``auto``: coarse-to-fine from 30° when the step is finer); for an
            exhaustive search the time of a 12° C1 search is extrapolated from the measured time per rotation.
``pytme``   pyTME (``pip install pytme``, the ``bench`` extra) on the same tomogram, template, grid and rotation set
            (ribosome): wall and CPU time and agreement of the peak lists — ``bench/bench_pytme.py``.
``prompt``  One noisy copy cut from the tomogram (``tomopick prompt extract`` at one true particle) → picks of
            every copy with template matching + bootstrap (``tomopick pick --prompt``): F1 per class (one-to-one
            within 0.5 × radius) and time per prompt, for ribosome, thyroglobulin, beta-galactosidase and two kinds
            the bundled model never saw (8vaf, a procedural dumbbell; simulate with ``--preset unseen.yaml``).

Rerun (one command per part; ~20 min each on 2 idle cores)::

    tomopick simulate --out /work/data/match/sim --n 1 --seed 1212 --imaging full --format mrc
    OMP_NUM_THREADS=2 python bench/bench_match.py --parts tm --sim /work/data/match/sim/sim_000 --step 12
    OMP_NUM_THREADS=2 python bench/bench_match.py --parts prompt --sim /work/data/match/sim_unseen/sim_000

The unseen kinds' simulation (a CZII set plus ``8vaf`` and a procedural ``dumbbell``) is made from two small YAML
files written by ``--write-unseen-yaml DIR``::

    python bench/bench_match.py --write-unseen-yaml /work/data/match
    tomopick simulate --out /work/data/match/sim_unseen --n 1 --seed 4242 --imaging full --format mrc \
        --preset /work/data/match/unseen.yaml --config /work/data/match/unseen_cfg.yaml
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

TEMPLATES = Path(__file__).resolve().parents[2] / "shared" / "data" / "templates_10A"
MAPS = {"apo-ferritin": ("8cpv", "O"), "beta-galactosidase": ("6drv", "D2"), "ribosome": ("6qzp", "C1"),
        "thyroglobulin": ("7n4y", "C2"), "virus-like-particle": ("6n4v", "I")}
RADII = {"apo-ferritin": 60.0, "beta-galactosidase": 90.0, "ribosome": 150.0, "thyroglobulin": 130.0,
         "virus-like-particle": 135.0, "8vaf": 60.0, "dumbbell": 110.0, "beta-amylase": 65.0}


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # kB → GB (Linux)


def truth_of(sim: Path):
    from tomopick.data import Picks

    table = pd.read_csv(sim.with_suffix(".csv")) if sim.with_suffix(".csv").exists() else pd.read_csv(
        sim.parent / f"{sim.name}.csv")
    return Picks.from_arrays(table[["x", "y", "z"]].to_numpy(), list(table["particle_type"]), run="r")


def scores(truth, picks, name: str) -> dict[str, float]:
    from tomopick.data.particles import ParticleSet, ParticleSpec
    from tomopick.evaluation import evaluate

    pset = ParticleSet(particles=(ParticleSpec(name=name, radius_A=RADII[name], weight=1),))
    t = truth.for_particle(name)
    p = picks.for_particle(name).with_columns(run="r") if len(picks) else picks
    out = {}
    for metric in ("czii", "f1"):
        row = evaluate(t, p, pset, metric=metric).table.iloc[0]
        out[metric] = float(row["fbeta"])
        out.update(tp=int(row["tp"]), fp=int(row["fp"]), fn=int(row["fn"]))
    return out


def part_tm(args) -> list[dict]:
    import torch

    from tomopick.data import Picks
    from tomopick.io import read_tomogram
    from tomopick.match.options import MatchOptions
    from tomopick.match.picking import match_tomogram
    from tomopick.workflows.match import read_template

    torch.set_num_threads(args.threads)
    sim = Path(args.sim)
    tomo = read_tomogram(sim.parent / f"{sim.name}.mrc")
    tomo = tomo.with_data(np.asarray(tomo.data, dtype=np.float32))
    truth = truth_of(sim)
    rows, all_picks = [], []
    for name in args.classes.split(","):
        key, sym = MAPS[name]
        tmpl, vs = read_template(TEMPLATES / f"{key}.mrc")
        opts = MatchOptions(step_deg=args.step, symmetry=sym, bin=2, false_alarms=args.false_alarms,
                            threads=args.threads, search=args.search)
        t0 = time.perf_counter()
        picks, info = match_tomogram(tomo, tmpl, vs, name, RADII[name], opts, run="r")
        seconds = time.perf_counter() - t0
        all_picks.append(picks)
        Path(args.work).mkdir(parents=True, exist_ok=True)
        picks.frame.to_csv(Path(args.work) / f"tm_{name}_{args.step:g}.csv", index=False)
        s = scores(truth, picks, name)
        from tomopick.match.rotations import uniform_rotations

        n12 = len(uniform_rotations(12.0, "C1"))
        searched = info.get("n_coarse_rotations", info["n_rotations"])
        per_rot = info.get("seconds_coarse", info["seconds_search"]) / searched
        extra = {}
        if info["search"] == "coarse-to-fine":
            extra = dict(coarse_rotations=searched, candidates=info["n_candidates"], refined=info["n_refined"],
                         s_coarse=round(info["seconds_coarse"], 1), s_refine=round(info["seconds_refine"], 1),
                         sample_max_gain=round(info["sample_max_gain"], 4))
        rows.append(dict(part="tm", particle=name, symmetry=sym, step_deg=args.step, search=info["search"],
                         rotations=info["n_rotations"], **extra,
                         threshold=round(info["threshold"], 4), rule=info["threshold_rule"],
                         noise_threshold=round(info["noise_threshold"], 4), picks=len(picks),
                         truth=len(truth.for_particle(name)),
                         fbeta_czii=round(s["czii"], 3), f1=round(s["f1"], 3), tp=s["tp"], fp=s["fp"], fn=s["fn"],
                         seconds=round(seconds, 1), s_per_fft_rotation=round(per_rot, 3),
                         est_s_12deg_C1_exhaustive=round(per_rot * n12 + info["seconds_prepare"], 0),
                         peak_rss_gb=round(peak_rss_gb(), 2)))
        print(json.dumps(rows[-1]), flush=True)
    if len(all_picks) > 1:
        from tomopick.data.particles import CZII
        from tomopick.evaluation import evaluate

        names = args.classes.split(",")
        picks = Picks.concat(all_picks).with_columns(run="r")
        t = truth.select(truth.frame["particle"].isin(names))
        r = evaluate(t, picks, CZII.subset(names), metric="czii")
        rows.append(dict(part="tm", particle="all (CZII score)", fbeta_czii=round(float(r.score), 3)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


def part_pytme(args) -> list[dict]:
    """pyTME side by side on the same job (ribosome, 20 Å, the ``--step`` set): ``bench/bench_pytme.py``."""
    from bench_pytme import run

    return run(argparse.Namespace(sim=args.sim, step=args.step, rotations=args.pytme_rotations or 120,
                                  threads=args.threads, skip_full_job=False))


def part_prompt(args) -> list[dict]:
    import torch

    from tomopick.io import read_tomogram
    from tomopick.workflows.prompt import extract_prompt
    from tomopick.workflows.prompt_match import pick_with_prompt_matching

    torch.set_num_threads(args.threads)
    sim = Path(args.sim)
    mrc = sim.parent / f"{sim.name}.mrc"
    truth = truth_of(sim)
    tomo = read_tomogram(mrc)
    extent = np.array(tomo.shape[::-1]) * np.asarray(tomo.voxel_size_A)[::-1]
    rng = np.random.default_rng(0)
    rows = []
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    for name in args.prompt_classes.split(","):
        t = truth.for_particle(name)
        if not len(t):
            print(f"no {name} in {sim}", file=sys.stderr)
            continue
        # one true copy away from the faces (a noisy copy cut from the tomogram)
        xyz = t.xyz_A
        inner = np.all((xyz > 2 * RADII[name]) & (xyz < extent - 2 * RADII[name]), axis=1)
        choice = xyz[inner][rng.integers(inner.sum())] if inner.any() else xyz[0]
        prompt = extract_prompt(mrc, choice, work / f"{name}.npz", particle=name, radius_A=RADII[name],
                                overwrite=True)
        t0 = time.perf_counter()
        report = pick_with_prompt_matching([str(mrc)], [str(prompt)], rounds=args.rounds,
                                           classifier=None if args.prompt_classifier == "none"
                                           else args.prompt_classifier)
        seconds = time.perf_counter() - t0
        report.picks.frame.to_csv(work / f"prompt_{name}.csv", index=False)
        s = scores(truth, report.picks, name)
        rounds = report.runs[0]["rounds"]
        rows.append(dict(part="prompt", particle=name, truth=len(t), picks=len(report.picks), f1=round(s["f1"], 3),
                         search=rounds[0].get("search"),
                         fbeta_czii=round(s["czii"], 3), tp=s["tp"], fp=s["fp"], fn=s["fn"], seconds=round(seconds, 1),
                         rounds=len(rounds) - 1, kept_round=report.runs[0]["kept_round"],
                         bin=report.runs[0]["bin"], method=report.runs[0]["method"],
                         veto={k: (round(v, 2) if isinstance(v, float) else v) for k, v in rounds[0].items()
                               if k.startswith("veto") or k == "vetoed"},
                         per_round=[dict(n=r["count"], thr=round(r["threshold"], 3), dropped=r.get("rejected", 0),
                                         agree=round(r.get("agreement", 1.0), 2), kept=r.get("kept", True),
                                         s=round(r["seconds"], 1))
                                    for r in rounds], peak_rss_gb=round(peak_rss_gb(), 2)))
        print(json.dumps(rows[-1]), flush=True)
    f1s = [r["f1"] for r in rows]
    if f1s:
        rows.append(dict(part="prompt", particle="mean", f1=round(float(np.mean(f1s)), 3)))
        print(json.dumps(rows[-1]), flush=True)
    return rows


UNSEEN_SET = """name: czii-unseen
particles:
  - {name: apo-ferritin, radius_A: 60, weight: 1}
  - {name: beta-amylase, radius_A: 65, weight: 0}
  - {name: beta-galactosidase, radius_A: 90, weight: 2}
  - {name: ribosome, radius_A: 150, weight: 1}
  - {name: thyroglobulin, radius_A: 130, weight: 2}
  - {name: virus-like-particle, radius_A: 135, weight: 1}
  - {name: 8vaf, radius_A: 60, weight: 1}
  - {name: dumbbell, radius_A: 110, weight: 1}
"""
UNSEEN_CONFIG = """templates: {8vaf: 8vaf, dumbbell: "dumbbell:110"}
counts: {apo-ferritin: 40, beta-amylase: 15, beta-galactosidase: 25, ribosome: 40, thyroglobulin: 35,
         virus-like-particle: 20, 8vaf: 25, dumbbell: 25}
"""


def write_unseen_yaml(folder: Path) -> None:
    """The particle set and simulation config of the unseen-kinds simulation (8vaf and a procedural dumbbell)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "unseen.yaml").write_text(UNSEEN_SET)
    (folder / "unseen_cfg.yaml").write_text(UNSEEN_CONFIG)
    print(f"wrote {folder / 'unseen.yaml'} and {folder / 'unseen_cfg.yaml'}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="tm")
    ap.add_argument("--sim", default="/work/data/match/sim/sim_000", help="simulation: <folder>/<run> (+ .mrc, .csv)")
    ap.add_argument("--step", type=float, default=12.0)
    ap.add_argument("--search", default="auto", choices=["auto", "exhaustive", "coarse-to-fine"])
    ap.add_argument("--write-unseen-yaml", default=None, metavar="DIR",
                    help="write unseen.yaml (particle set) and unseen_cfg.yaml (simulation config) into DIR and exit")
    ap.add_argument("--false-alarms", type=float, default=1.0)
    ap.add_argument("--classes", default="ribosome,apo-ferritin,beta-galactosidase,thyroglobulin,virus-like-particle")
    ap.add_argument("--prompt-classes", default="ribosome,thyroglobulin,beta-galactosidase,8vaf,dumbbell")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--prompt-classifier", default="czii-10A", help="the class veto's picker ('none': off)")
    ap.add_argument("--pytme-rotations", type=int, default=0,
                    help="pytme part: search every k-th rotation (about this many) and extrapolate pyTME's time")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default="/work/data/match/bench")
    ap.add_argument("--json", default=None, help="append result rows to this JSON-lines file")
    args = ap.parse_args()
    if args.write_unseen_yaml:
        write_unseen_yaml(Path(args.write_unseen_yaml))
        return
    rows = []
    for part in args.parts.split(","):
        rows += {"tm": part_tm, "pytme": part_pytme, "prompt": part_prompt}[part](args)
    append_jsonl(args.json, rows)


def append_jsonl(path: str | None, rows: list[dict]) -> None:
    """Append one JSON line per result row to ``path`` (nothing when ``None``)."""
    if path:
        with open(path, "a") as fh:
            for r in rows:
                fh.write(json.dumps(r) + "\n")


if __name__ == "__main__":
    main()
