"""Run ``tomopick.workflows.train.train`` under a wall-clock budget (a child of ``bench/accuracy.py``).

    python bench/train_budget.py CONFIG.yaml OUT --minutes 30

Training follows the config (its own epochs / steps); in addition, after any epoch that ends past the budget
(measured from the start of the ``train`` call, so it includes reading and labelling the data), training stops.
The stop is made from the per-epoch ``log`` callback, which the workflow calls after writing ``best.pt`` /
``last.pt`` for that epoch, so the checkpoints on disk are complete. ``OUT/budget.json`` records what happened and
which checkpoint to use: ``best.pt`` (best validation score so far) or, if no validation has run yet,
``last.pt``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


class BudgetExhausted(Exception):
    """Raised from the epoch callback when the wall-clock budget is spent."""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("config", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--minutes", type=float, default=None, help="wall-clock budget (none: the config's schedule)")
    args = ap.parse_args(argv)

    from tomopick.workflows.train import train

    t0 = time.perf_counter()
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)
        if args.minutes is not None and time.perf_counter() - t0 > 60 * args.minutes:
            raise BudgetExhausted(line)

    stopped = False
    result = None
    try:
        result = train(args.config, args.out, overwrite=True, progress=False, log=log)
    except BudgetExhausted:
        stopped = True
    wall = time.perf_counter() - t0
    best = args.out / "best.pt"
    checkpoint = best if best.is_file() else args.out / "last.pt"
    info = {"budget_minutes": args.minutes, "stopped_by_budget": stopped, "wall_s": round(wall, 1),
            "epochs_done": len(lines), "last_epoch_line": lines[-1] if lines else None,
            "checkpoint": str(checkpoint), "checkpoint_kind": "best" if checkpoint == best else "last (no validation yet)"}
    if result is not None:
        info.update({"best_score": result.best_score, "best_epoch": result.best_epoch, "steps": result.steps})
    (args.out / "budget.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info), flush=True)
    return 0 if checkpoint.is_file() else 1


if __name__ == "__main__":
    sys.exit(main())
