"""``demo``: the main job end to end on built-in data, small enough for a laptop CPU (about a minute on 2 idle cores with the defaults).

1. simulate a small CZII-like data set (copick project; train / validation / held-out test runs);
2. train a small picker briefly on the training runs (validation F-beta picks the best epoch);
3. pick the held-out test run with the model just trained and with the bundled ``czii-10A`` model;
4. score both against the ground truth with the CZII metric and return per-class tables.

The one verb that runs other verbs (simulate_dataset, train, pick, evaluate) end to end: that is what the demo is
for. Other verbs share helpers through non-verb modules (e.g. :mod:`tomopick.io.sources`), never import a verb.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from tomopick.errors import TomopickError


@dataclass
class DemoResult:
    """Scores of each model on the held-out run(s) and where everything was written."""

    out_dir: Path
    test_runs: list[str]
    scores: dict[str, Any] = field(default_factory=dict)      # model label -> EvaluationResult
    picks_files: dict[str, Path] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)     # model label -> why it was not run
    report_path: Path | None = None                           # the HTML picking report (last model's picks)


def demo_train_config(data_root: Path, train_runs: list[str], val_runs: list[str], *, epochs: int,
                      steps_per_epoch: int, seed: int) -> dict[str, Any]:
    """The small CPU recipe the demo trains (a mapping accepted by :func:`tomopick.workflows.train.train`)."""
    return {
        "name": "demo",
        "description": "tomopick demo: a few minutes of CPU training on a small simulated data set",
        "data": {"kind": "copick", "path": str(data_root), "tomo_type": "wbp", "user_id": "curation",
                 "train_runs": train_runs, "val_runs": val_runs},
        "particles": "czii",
        "target": {"kind": "sphere", "radius_fraction": 0.5},
        "network": {"name": "resunet", "hparams": {"channels": [16, 32, 64], "strides": [2, 2],
                                                   "num_res_units": 1, "norm": "batch"}},
        "patch_size": [48, 48, 48],
        "batch_size": 2,
        "epochs": epochs,
        "steps_per_epoch": steps_per_epoch,
        "particle_fraction": 0.7,
        "loss": {"kind": "dice_ce"},
        "lr": 0.003,
        "seed": seed,
        "validation": {"every_epochs": 2, "patience": 10},
    }


def run_demo(out: str | Path, *, n_train: int = 3, shape_zyx: tuple[int, int, int] = (96, 256, 256),
             imaging: str = "fast", epochs: int = 8, steps_per_epoch: int = 25, seed: int = 0,
             overwrite: bool = False, use_bundled: bool = True,
             log: Callable[[str], None] = print, command: str | None = None) -> DemoResult:
    """Simulate → train → pick (trained and bundled models) → evaluate, all under ``out``.

    Parameters
    ----------
    out
        Output folder; refused if it exists unless ``overwrite``.
    n_train
        Training tomograms (one more is simulated for validation and one for the held-out test).
    shape_zyx
        Size of each simulated tomogram in voxels ``(z, y, x)`` at 10.012 Å.
    imaging
        Simulator imaging model, ``"fast"`` or ``"full"``.
    epochs, steps_per_epoch
        Training budget of the demo model.
    use_bundled
        Also pick with the bundled ``czii-10A`` model (skipped with a note if it is not installed).
    command
        The command line shown in the HTML report (``out/report.html``, of the last model's picks).
    """
    import shutil

    from tomopick.io import check_output
    from tomopick.workflows.evaluate import evaluate
    from tomopick.workflows.pick import pick
    from tomopick.workflows.report import report_of_pick
    from tomopick.workflows.simulate import simulate_dataset
    from tomopick.workflows.train import train

    out = Path(out)
    if out.exists():
        if not overwrite:
            raise TomopickError("demo output folder exists; pass --overwrite to replace it", out)
        if not (out / "demo.txt").exists():
            raise TomopickError("refusing to overwrite a folder the demo did not make (no demo.txt inside)", out)
        shutil.rmtree(out)
    check_output(out)
    out.mkdir(parents=True)
    (out / "demo.txt").write_text("made by `tomopick demo`; safe to delete\n")
    result = DemoResult(out_dir=out, test_runs=[])

    n_total = n_train + 2
    t0 = time.perf_counter()
    log(f"[1/4] simulating {n_total} tomograms of {shape_zyx[0]}×{shape_zyx[1]}×{shape_zyx[2]} voxels "
        f"({imaging} imaging) into {out / 'data'}")
    summary = simulate_dataset(out / "data", n=n_total, seed=seed, imaging=imaging, fmt="copick",
                               progress=True, shape_zyx=tuple(shape_zyx))
    runs = list(summary.runs)
    train_runs, val_runs, test_runs = runs[:n_train], [runs[n_train]], [runs[n_train + 1]]
    result.test_runs = test_runs
    result.timings_s["simulate"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    log(f"[2/4] training a small residual U-Net for {epochs} × {steps_per_epoch} steps on {', '.join(train_runs)} "
        f"(validation: {val_runs[0]})")
    config = demo_train_config(out / "data", train_runs, val_runs, epochs=epochs, steps_per_epoch=steps_per_epoch,
                               seed=seed)
    trained = train(config, out / "model", progress=True, log=log)
    result.timings_s["train"] = time.perf_counter() - t0

    models: dict[str, Any] = {"trained (demo)": trained.best_checkpoint}
    if use_bundled:
        try:
            from tomopick.models.bundled import bundled_model_path

            models["bundled czii-10A"] = bundled_model_path("czii-10A")
        except (ImportError, TomopickError) as exc:
            result.skipped["bundled czii-10A"] = str(exc)
            log(f"note: bundled model not used ({exc})")

    source = f"copick://{out / 'data'}?run={test_runs[0]}"
    for i, (label, model) in enumerate(models.items()):
        t0 = time.perf_counter()
        slug = "trained" if i == 0 else "bundled"
        picks_path = out / f"picks_{slug}.csv"
        log(f"[3/4] picking {test_runs[0]} with the {label} model → {picks_path}")
        made = pick([source], model=model, out=picks_path, overwrite=True)
        result.picks_files[label] = picks_path
        result.timings_s[f"pick {slug}"] = time.perf_counter() - t0
        log(f"[4/4] scoring {label} picks against the ground truth (CZII metric, β = 4)")
        outcome = evaluate(out / "data", picks_path, truth_user="curation", runs=test_runs,
                           report_dir=out / f"report_{slug}", overwrite=True)
        result.scores[label] = outcome.result
    t0 = time.perf_counter()
    page = report_of_pick(made, [source], model, out=out / "report.html", truth=out / "data", truth_user="curation",
                          command=command, overwrite=True)
    result.report_path = page.path
    result.timings_s["report"] = time.perf_counter() - t0
    log(f"report of the {label} picks: {page.path} ({page.size_bytes / 1e6:.1f} MB)")
    return result
