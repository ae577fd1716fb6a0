"""Choose a model's default pick settings on the dev shift sets: batch-norm adaptation strength and per-class
blob-score thresholds (never on the bench sets, which only report).

For every project given (the ``dev`` family of ``bench/shift_sets.py``) and every adaptation strength
(``--adapt``, :mod:`tomopick.inference.adapt`), the runs are picked once through ``tomopick pick``'s code path
keeping every candidate above the validation floor (cached as CSV under ``--cache``). Then, per strength:

* per class, the F-beta (CZII, β = 4) at each threshold of a grid, on each set;
* per class, the threshold with the best **mean** F-beta over the sets (``--criterion worst``: the best F-beta of the
  worst set; ``lean``: the lowest threshold within :data:`LEAN` of the best mean; ``robust``: like ``lean`` on
  each threshold's *shift-robust* F-beta, the lower of its own and the next grid threshold's — a threshold just
  below a class's cliff loses the class when another imaging shifts the scores by one step; ties: the lower one —
  recall weighs 16×);
* the CZII score of every set with those per-class thresholds, with one threshold for all classes, and with the
  best threshold per class and set (oracle).

``--reference PROJECT…`` first measures the model's batch-norm statistics on tomograms of its training distribution
and adapts *relative* to them (:func:`tomopick.inference.adapt.adapt_batchnorm`).

``--write-model OUT.pt`` stores the chosen strength and thresholds (and the reference) in a copy of the model
(``config["pick"]["adapt_norm"]``, ``thresholds``, ``thresholds_by_score["blob"]``), as ``tomopick calibrate``
stores its thresholds.

Usage::

    python bench/choose_thresholds.py DEV/dev-snr DEV/dev-defocus DEV/dev-blur DEV/dev-voxel \\
        --adapt 0 1 --cache /work/data/shift/cand [--reference DEV/dev-default]
        [--write-model czii-10A.pt --write-adapt 1]
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tomopick.data import Picks  # noqa: E402
from tomopick.evaluation import apply_thresholds, czii_score, threshold_sweep  # noqa: E402
from tomopick.io.copick_project import CopickProject  # noqa: E402
from tomopick.peaks.thresholds import MIN_SCORE  # noqa: E402
from tomopick.workflows.calibrate import foreground_particles  # noqa: E402
from tomopick.workflows.pick import PickOptions, pick, resolve_model  # noqa: E402

GRID = tuple(round(float(t), 2) for t in np.arange(0.05, 0.601, 0.05))
#: ``--criterion lean``: how much mean F-beta a lower threshold may give up. F-beta curves fall off a cliff just
#: above a class's best threshold and slope gently below it (recall weighs 16×), so on unseen imaging a slightly
#: lower threshold is the safer side.
LEAN = 0.02


def truth_of(root: Path) -> Picks:
    project = CopickProject.open(root)
    return Picks.concat([project.read_picks(run=r, user_id="curation").with_columns(run=r) for r in project.runs()])


def measure_reference(loaded, roots: list[Path]) -> dict:
    """Batch-norm statistics of the model on every run of ``roots`` (tomograms of its training distribution),
    measured as picking measures a tomogram (:func:`tomopick.inference.adapt.measure_batchnorm`)."""
    from tomopick.inference.adapt import measure_batchnorm, reference_statistics
    from tomopick.inference.normalize import normalisation_kwargs, robust_stats

    norm_kwargs = normalisation_kwargs(loaded.config.get("normalisation"))
    norm_kwargs.pop("max_samples", None)
    found = []
    for root in roots:
        project = CopickProject.open(root)
        for run in project.runs():
            tomo = project.read_tomogram(run)
            if max(abs(float(v) - float(loaded.voxel_size_A)) for v in np.atleast_1d(tomo.voxel_size_A)) > 1e-3:
                raise SystemExit(f"{root}/{run}: reference tomograms must be at the model's voxel size")
            data = np.asarray(tomo.data[...], dtype=np.float32)
            means, variances, _ = measure_batchnorm(loaded.model, data, robust_stats(data), norm_kwargs)
            found.append((means, variances))
    reference = reference_statistics(found)
    reference["measured_on"] = ", ".join(str(r.name) for r in roots)
    return reference


def candidates_of(root: Path, loaded, strength: float, cache: Path, threads: int | None) -> Picks:
    tag = "r" if (loaded.config.get("pick") or {}).get("adapt_reference") else ""
    path = cache / f"{root.name}@{strength:g}{tag}.csv"
    if path.is_file():
        return Picks(pd.read_csv(path))
    options = PickOptions(threshold=MIN_SCORE, score="blob", threads=threads, adapt_norm=strength)
    found = pick(f"copick://{root}", loaded, options=options).picks
    cache.mkdir(parents=True, exist_ok=True)
    found.frame.to_csv(path, index=False)
    return found


def per_class_fbeta(truth: Picks, cands: Picks, particles) -> dict[float, pd.Series]:
    """threshold → per-class F-beta (one threshold for every class)."""
    return {t: czii_score(truth, apply_thresholds(cands, {n: t for n in particles.names}), particles)
            .table.set_index("particle")["fbeta"] for t in GRID}


def choose(tables: dict[str, dict[float, pd.Series]], names: list[str], criterion: str = "mean") -> dict[str, float]:
    """Per class, the grid threshold with the best F-beta over the sets — their mean, or (``worst``) the lowest
    set's, ties broken by the mean — the lowest threshold among ties."""
    chosen = {}
    for name in names:
        values = np.array([[tables[s][t][name] for s in tables] for t in GRID])
        means = np.round(values.mean(axis=1), 4)
        if criterion == "robust":  # scores one grid step lower on other imaging: F(t) → F(t + step)
            means = np.minimum(means, np.append(means[1:], means[-1]))
        if criterion in ("lean", "robust"):  # the lowest threshold within LEAN of the best (robust) mean
            chosen[name] = GRID[int(np.flatnonzero(means >= means.max() - LEAN)[0])]
            continue
        key = means if criterion == "mean" else np.round(values.min(axis=1), 4) + 1e-6 * means
        chosen[name] = GRID[int(np.argmax(key))]
    return chosen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("projects", nargs="+", type=Path)
    ap.add_argument("--model", default=None, help="checkpoint (default: the bundled czii-10A)")
    ap.add_argument("--adapt", nargs="+", type=float, default=[0.0, 1.0], help="adaptation strengths to compare")
    ap.add_argument("--criterion", choices=["mean", "worst", "lean", "robust"], default="mean",
                    help="per class: the best mean F-beta over the sets, the best worst-set F-beta, (lean) the "
                         "lowest threshold within 0.02 of the best mean, or (robust) lean on min(F(t), F(t+step))")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/tomopick-thresholds"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--reference", nargs="*", type=Path, default=None,
                    help="copick projects of the training distribution: adapt relative to their statistics")
    ap.add_argument("--write-model", type=Path, default=None, help="write a copy with the chosen settings here")
    ap.add_argument("--write-adapt", type=float, default=None, help="the strength whose thresholds are written")
    args = ap.parse_args()
    loaded = resolve_model(args.model)
    particles = foreground_particles(loaded.config)
    names = list(particles.names)
    if args.reference:
        loaded.config.setdefault("pick", {})["adapt_reference"] = measure_reference(loaded, args.reference)
    truths = {root.name: truth_of(root) for root in args.projects}
    results = {}
    for strength in args.adapt:
        cands = {root.name: candidates_of(root, loaded, strength, args.cache, args.threads)
                 for root in args.projects}
        tables = {s: per_class_fbeta(truths[s], cands[s], particles) for s in cands}
        chosen = choose(tables, names, args.criterion)
        results[strength] = chosen
        print(f"\n## adapt_norm {strength:g}: per-class thresholds (best {args.criterion} F-beta over {len(tables)} "
              "sets)")
        print("| class | threshold | " + " | ".join(tables) + " |")
        print("|---|---|" + "---|" * len(tables))
        for name in names:
            t = chosen[name]
            print(f"| {name} | {t:.2f} | " + " | ".join(f"{tables[s][t][name]:.3f}" for s in tables) + " |")
        glob = {t: np.mean([czii_score(truths[s], apply_thresholds(cands[s], {n: t for n in names}), particles).score
                            for s in cands]) for t in GRID}
        best_global = max(GRID, key=lambda t: round(glob[t], 4))
        print(f"\n| set | per-class chosen | one threshold {best_global:.2f} (best mean) | oracle |")
        print("|---|---|---|---|")
        rows = []
        for s in cands:
            a = czii_score(truths[s], apply_thresholds(cands[s], chosen), particles).score
            g = czii_score(truths[s], apply_thresholds(cands[s], {n: best_global for n in names}), particles).score
            o = threshold_sweep(truths[s], cands[s], particles, "czii").score
            rows.append((a, g, o))
            print(f"| {s} | {a:.3f} | {g:.3f} | {o:.3f} |")
        m = np.mean(rows, axis=0)
        print(f"| mean | {m[0]:.3f} | {m[1]:.3f} | {m[2]:.3f} |")
    if args.write_model is not None:
        write_model(args.write_model, loaded, args.write_adapt, results[args.write_adapt],
                    [p.name for p in args.projects])


def write_model(out: Path, loaded, strength: float, thresholds: dict[str, float], sets: list[str]) -> None:
    from tomopick.models.checkpoint import save_checkpoint
    from tomopick.workflows.calibrate import source_is_half

    config = copy.deepcopy(loaded.config)
    pick_config = dict(config.get("pick") or {})
    by_score = dict(pick_config.get("thresholds_by_score") or {})
    by_score["blob"] = dict(thresholds)
    pick_config.update(score="blob", thresholds=dict(thresholds), thresholds_by_score=by_score,
                       adapt_norm=float(strength),
                       chosen_on=(f"blob: per-class thresholds and batch-norm adaptation {strength:g} chosen on the "
                                  f"dev shift sets {', '.join(sets)} (bench/choose_thresholds.py); peak: "
                                  "calibration runs rnd_000, sim_008, sim_009 (without adaptation)"))
    config["pick"] = pick_config
    save_checkpoint(out, loaded.model, config, copy.deepcopy(loaded.card or {}), overwrite=True,
                    half=source_is_half(loaded.path))
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
