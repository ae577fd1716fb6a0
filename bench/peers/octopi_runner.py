"""Train and run octopi (CZII's 3D U-Net picker, ``pip install octopi==1.7.0``) on a copick project, on CPU.

Run with the python of a SEPARATE virtual environment that holds octopi (never tomopick's):

    /work/octopi-venv/bin/python bench/peers/octopi_runner.py --config PROJECT/copick_config.json \
        --train-runs TS_1 --val-runs TS_2 --test-runs TS_3 --epochs 2 --out /tmp/octopi_run

Steps (each calls octopi's own Python functions; nothing of octopi is copied here):

1. targets  ``octopi.entry_points.run_create_targets.create_all_train_targets``: spheres of
   ``radius_scale x radius`` around the truth picks (user ``--truth-user``) → copick segmentation
   ``targets`` (user ``octopi``, session ``1``) for the train and validation runs;
2. train    ``octopi.entry_points.run_train.train_model`` (MONAI UNet, Tversky loss, octopi's loop) for a fixed
   number of epochs; writes ``best_model.pth`` + ``model_config.yaml`` under ``OUT/model``;
3. segment  ``octopi.pytorch.inference.Predictor.batch_predict`` on the test runs → copick segmentation
   ``predict`` (octopi/1). ``Predictor.__init__`` raises "No GPUs available." when
   ``torch.cuda.device_count() == 0`` although the rest of the class runs on any ``torch.device``; this script
   constructs it on ``torch.device("cpu")`` with ``torch.cuda.device_count`` reporting 1 for the duration of
   the constructor only (no CUDA call is made with it);
4. localize ``octopi.workflows.localize`` (watershed, per class ``radius_min_scale..radius_max_scale x radius``)
   → copick picks of user ``--pick-user`` (session ``--pick-session``) for the test runs;
5. export  the test-run picks and truth as CSV (``x, y, z`` in Å, ``particle_type``, ``experiment``: the Kaggle
   layout) and a ``summary.json`` with timings and counts.

Score with tomopick (its own venv)::

    tomopick evaluate -t PROJECT --truth-user curation -p PROJECT --picks-user octopi
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import random
import sys
import time
from pathlib import Path


def parse_list(text: str | None) -> list[str]:
    return [t for t in (text or "").split(",") if t]


@contextlib.contextmanager
def pretend_one_gpu():
    """Let ``octopi.pytorch.inference.Predictor.__init__`` pass its GPU-count check; restored afterwards."""
    import torch

    original = torch.cuda.device_count
    torch.cuda.device_count = lambda: 1  # type: ignore[assignment]
    try:
        yield
    finally:
        torch.cuda.device_count = original  # type: ignore[assignment]


def cpu_predictor(config: str, model_config: str, weights: str, *, sw_bs: int, overlap: float, ntta: int):
    """An octopi ``Predictor`` on the CPU."""
    import torch
    from octopi.pytorch.inference import Predictor

    with pretend_one_gpu():
        predictor = Predictor(config, model_config, weights, sw_bs=sw_bs, overlap=overlap, ntta=ntta,
                              device=torch.device("cpu"))
    return predictor


def read_picks(root, runs: list[str], user_id: str | None, session_id: str | None) -> list[dict]:
    """All picks of ``runs`` for a copick user/session as Kaggle-style rows (Å)."""
    rows = []
    root.refresh()
    for name in runs:
        run = root.get_run(name)
        if run is None:
            continue
        run.refresh()
        for picks in run.get_picks(user_id=user_id, session_id=session_id):
            for p in picks.points or []:
                rows.append({"x": p.location.x, "y": p.location.y, "z": p.location.z,
                             "particle_type": picks.pickable_object_name, "experiment": name})
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["x", "y", "z", "particle_type", "experiment"])
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Train/segment/localize with octopi on CPU on a copick project.")
    ap.add_argument("--config", required=True, help="copick_config.json of the project (filesystem, local)")
    ap.add_argument("--train-runs", required=True, help="comma-separated run names")
    ap.add_argument("--val-runs", required=True, help="comma-separated run names (octopi needs a validation set)")
    ap.add_argument("--test-runs", required=True, help="comma-separated run names to pick")
    ap.add_argument("--tomo-alg", default="wbp", help="copick tomogram type (e.g. wbp, denoised)")
    ap.add_argument("--voxel-size", type=float, default=10.0, help="voxel spacing in Å")
    ap.add_argument("--truth-user", default="curation")
    ap.add_argument("--truth-session", default=None)
    ap.add_argument("--pick-user", default="octopi")
    ap.add_argument("--pick-session", default="1")
    ap.add_argument("--out", required=True, type=Path, help="folder for the model, CSVs and summary.json")
    # training budget and model (octopi's CLI defaults in brackets)
    ap.add_argument("--epochs", type=int, default=2, help="training epochs [1000]")
    ap.add_argument("--val-interval", type=int, default=1, help="[10]")
    ap.add_argument("--batch-size", type=int, default=2, help="crops per tomogram per epoch [16]")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--tversky-alpha", type=float, default=0.3)
    ap.add_argument("--dim-in", type=int, default=64, help="crop edge in voxels [96]")
    ap.add_argument("--channels", default="32,64,96,96")
    ap.add_argument("--strides", default="2,2,1")
    ap.add_argument("--res-units", type=int, default=1)
    ap.add_argument("--radius-scale", type=float, default=0.7, help="target sphere radius / particle radius")
    ap.add_argument("--best-metric", default="avg_f1")
    ap.add_argument("--train-minutes", type=float, default=None,
                    help="wall-clock cap on training: octopi's own graceful stop (ModelTrainer.stop_requested, "
                         "checked at each epoch start and around validation) fires once this many minutes have "
                         "passed since train_model was called; the best checkpoint so far is used")
    # inference / localisation
    ap.add_argument("--ntta", type=int, default=1, help="test-time augmentations [4]")
    ap.add_argument("--overlap", type=float, default=0.25, help="sliding-window overlap [0.5]")
    ap.add_argument("--sw-bs", type=int, default=2, help="sliding-window batch size [4]")
    ap.add_argument("--method", default="watershed", choices=["watershed", "com"])
    ap.add_argument("--filter-size", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--weights", default=None, help="skip training: use these weights (+ --model-config)")
    ap.add_argument("--model-config", default=None)
    ap.add_argument("--oracle", action="store_true",
                    help="also localize octopi's TRUTH target spheres on the test runs (user octopi-oracle): an upper "
                         "bound of its localisation step, and a check of the pick export")
    args = ap.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg", force=True)
    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)  # octopi samples crops with the global RNGs
    torch.manual_seed(args.seed)
    if torch.cuda.is_available():
        print("note: CUDA is available; this runner still uses the CPU", file=sys.stderr)

    import copick
    import octopi
    from octopi.entry_points.run_create_targets import create_all_train_targets
    from octopi.entry_points.run_train import get_model_config, train_model
    from octopi.workflows import localize

    config = str(Path(args.config).absolute())
    train_runs, val_runs, test_runs = (parse_list(x) for x in (args.train_runs, args.val_runs, args.test_runs))
    out = args.out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    uri = f"{args.tomo_alg}@{args.voxel_size:g}"
    timings: dict[str, float] = {}
    summary: dict = {"octopi": getattr(octopi, "__version__", "?"), "torch": torch.__version__,
                     "config": config, "train_runs": train_runs, "val_runs": val_runs, "test_runs": test_runs,
                     "settings": {k: v for k, v in vars(args).items() if k not in ("out",)}}

    if args.weights and not args.model_config:
        ap.error("--weights needs --model-config")
    target_runs = ([] if args.weights else train_runs + val_runs) + (test_runs if args.oracle else [])
    if target_runs:
        t0 = time.perf_counter()
        create_all_train_targets(
            config=config, picks_session_id=args.truth_session, picks_user_id=args.truth_user,
            voxel_size=args.voxel_size, radius_scale=args.radius_scale, tomogram_algorithm=args.tomo_alg,
            target_segmentation_name="targets", target_user_id="octopi", target_session_id="1",
            run_ids=target_runs,
        )
        timings["targets_s"] = time.perf_counter() - t0
    if args.weights:
        weights, model_cfg = args.weights, args.model_config
    else:
        model_config = get_model_config([int(c) for c in parse_list(args.channels)],
                                        [int(s) for s in parse_list(args.strides)], args.res_units, args.dim_in)
        t0 = time.perf_counter()
        if args.train_minutes is not None:
            from octopi.pytorch import trainer as octopi_trainer

            deadline = t0 + 60 * args.train_minutes
            original_stop = octopi_trainer.ModelTrainer.stop_requested

            best_path = out / "model" / "best_model.pth"

            def stop_requested(self, _orig=original_stop):  # octopi's walltime hook, here driven by the clock
                stop = time.perf_counter() > deadline or _orig(self)
                if stop and not best_path.exists():
                    # stopped before any validation saved weights: keep the current (EMA) weights, as tomopick's
                    # harness falls back to its last checkpoint
                    if getattr(self, "ema_experiment", False):
                        with self.ema_handler.average_parameters():
                            self.save_model(str(best_path.parent))
                    else:
                        self.save_model(str(best_path.parent))
                    summary["weights_kind"] = "last (stopped before the first validation)"
                return stop

            octopi_trainer.ModelTrainer.stop_requested = stop_requested
        train_model(
            copick_config_path=config, target_info=("targets", "octopi", "1"), tomo_uris=[uri],
            trainRunIDs=train_runs, validateRunIDs=val_runs, model_config=model_config,
            output=str(out / "model"), batch_size=args.batch_size, ncache_tomos=len(train_runs), lr=args.lr,
            tversky_alpha=args.tversky_alpha, num_epochs=args.epochs, val_interval=args.val_interval,
            best_metric=args.best_metric,
        )
        timings["train_s"] = time.perf_counter() - t0
        summary.setdefault("weights_kind", f"best by validation {args.best_metric}")
        weights, model_cfg = str(out / "model" / "best_model.pth"), str(out / "model" / "model_config.yaml")
        if not Path(weights).is_file():
            print(f"error: octopi saved no weights at {weights}", file=sys.stderr)
            return 1

    t0 = time.perf_counter()
    predictor = cpu_predictor(config, model_cfg, weights, sw_bs=args.sw_bs, overlap=args.overlap, ntta=args.ntta)
    predictor.batch_predict(runIDs=test_runs, tomo_algorithm=args.tomo_alg, voxel_spacing=args.voxel_size,
                            name="predict", userid="octopi", sessionid="1")
    timings["segment_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    localize(config, args.voxel_size, ["predict", "octopi", "1"], args.pick_user, args.pick_session, n_procs=1,
             method=args.method, filter_size=args.filter_size, run_ids=test_runs)
    timings["localize_s"] = time.perf_counter() - t0

    root = copick.from_file(config)
    if args.oracle:
        from octopi.extract.localize import process_localization

        objects = [[o.name, int(o.label), float(o.radius)] for o in root.pickable_objects if o.is_particle]
        t0 = time.perf_counter()
        for name in test_runs:
            process_localization(root.get_run(name), objects, ("targets", "octopi", "1"), method=args.method,
                                 voxel_size=args.voxel_size, filter_size=args.filter_size, radius_min_scale=0.4,
                                 radius_max_scale=1.0, pick_session_id="1", pick_user_id="octopi-oracle")
        timings["oracle_localize_s"] = time.perf_counter() - t0
        oracle = read_picks(root, test_runs, "octopi-oracle", "1")
        write_csv(oracle, out / "oracle_picks.csv")
        summary["n_oracle_picks"] = len(oracle)
    picks = read_picks(root, test_runs, args.pick_user, args.pick_session)
    truth = read_picks(root, test_runs, args.truth_user, args.truth_session)
    write_csv(picks, out / "octopi_picks.csv")
    write_csv(truth, out / "truth.csv")
    counts: dict[str, int] = {}
    for r in picks:
        counts[r["particle_type"]] = counts.get(r["particle_type"], 0) + 1
    summary.update({"timings": timings, "n_picks": len(picks), "n_truth": len(truth), "picks_per_class": counts,
                    "weights": weights, "model_config": model_cfg})
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"timings": timings, "n_picks": len(picks), "n_truth": len(truth)}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
