"""Fine-tuning the bundled model to a shifted imaging condition with two annotated tomograms, before/after.

The condition is the ``crowded-lookalikes`` imaging of ``bench/shift_sets.py`` (60 look-alike distractors,
crowding 2, dense clutter, SNR 0.8) on new seeds and 128 × 320 × 320 runs: ``adapt_0`` is fine-tuned on,
``adapt_1`` validates (its per-class thresholds are stored), ``adapt_2`` … are the held-out test runs. Before =
the bundled ``czii-10A`` with ``tomopick pick`` defaults; after = the fine-tuned ``best.pt`` with defaults.

Usage::

    python bench/finetune_shift.py OUT [--steps 300] [--test-runs 3] [--freeze-encoder]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from czii_data import write_project  # noqa: E402
from shift_sets import BENCH_SETS  # noqa: E402

from tomopick.data import CZII, Picks  # noqa: E402
from tomopick.evaluation import czii_score  # noqa: E402
from tomopick.io.copick_project import CopickProject  # noqa: E402
from tomopick.simulate import SimulationConfig  # noqa: E402
from tomopick.workflows.pick import pick  # noqa: E402
from tomopick.workflows.train import finetune_config, train  # noqa: E402


def score(project: Path, runs: list[str], model) -> tuple[float, dict]:
    proj = CopickProject.open(project)
    truth = Picks.concat([proj.read_picks(run=r, user_id="curation").with_columns(run=r) for r in runs])
    picks = pick([f"copick://{project}?run={r}" for r in runs], model).picks
    result = czii_score(truth, picks, CZII)
    return float(result.score), {r["particle"]: round(float(r["fbeta"]), 3) for _, r in result.table.iterrows()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--test-runs", type=int, default=3)
    parser.add_argument("--freeze-encoder", action="store_true")
    args = parser.parse_args()
    _, extra = BENCH_SETS["crowded-lookalikes"]
    data = args.out / "adapt"
    if not data.exists():
        configs = [SimulationConfig(shape_zyx=(128, 320, 320), voxel_size_A=10.0, imaging="full",
                                    keep_noiseless=False, seed=9100 + i, run_name=f"adapt_{i}",
                                    **{**extra, "n_distractors": 20, "n_clutter": 300})
                   for i in range(2 + args.test_runs)]
        write_project(data, configs, "adapt")
    test = [f"adapt_{i}" for i in range(2, 2 + args.test_runs)]
    before, before_classes = score(data, test, None)
    # fine-tune on adapt_0, validate on adapt_1 (only these two annotated tomograms are used)
    train_project = args.out / "adapt-annotated"
    if not train_project.exists():
        src = CopickProject.open(data)
        dst = CopickProject.create(train_project, CZII, name="adapt-annotated")
        for run in ("adapt_0", "adapt_1"):
            dst.write_tomogram(run, src.read_tomogram(run), tomo_type="wbp")
            dst.write_picks(run, src.read_picks(run=run, user_id="curation"), user_id="curation")
    t0 = time.perf_counter()
    cfg = finetune_config(None, train_project, steps=args.steps, val_runs=["adapt_1"],
                          freeze_encoder=args.freeze_encoder)
    result = train(cfg, args.out / "finetuned", overwrite=True, progress=False)
    seconds = time.perf_counter() - t0
    after, after_classes = score(data, test, result.best_checkpoint)
    report = {"before": before, "after": after, "before_classes": before_classes, "after_classes": after_classes,
              "steps": args.steps, "freeze_encoder": args.freeze_encoder, "seconds_finetune": seconds,
              "test_runs": test}
    print(json.dumps(report, indent=1))
    (args.out / "finetune_shift.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
