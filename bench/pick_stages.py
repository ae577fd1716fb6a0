"""Wall, user and system seconds and minor page faults of each stage of one ``tomopick pick`` (robust statistics,
batch-norm adaptation, network pass into the score store, peak stage) and of the whole process (rusage around each
stage function of :mod:`tomopick.inference.picking`; the pick itself runs through the CLI with its defaults).

Usage::

    python bench/pick_stages.py TOMO [--out /tmp/stages.star] [-- extra tomopick pick options]

For an A/B against another commit, put that commit's ``src`` first on ``PYTHONPATH`` (e.g. a ``git worktree``).
"""

from __future__ import annotations

import resource
import sys
import time

import tomopick.inference.picking as picking

STAGES = ("robust_stats", "_adapted", "predict_to_store", "_store_peaks")


def timed(name, fn):
    def wrap(*args, **kwargs):
        r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            r1 = resource.getrusage(resource.RUSAGE_SELF)
            print(f"{name}: wall {time.perf_counter() - t0:.2f} user {r1.ru_utime - r0.ru_utime:.2f} "
                  f"sys {r1.ru_stime - r0.ru_stime:.2f} minflt {r1.ru_minflt - r0.ru_minflt}", flush=True)
    return wrap


def main() -> None:
    args = sys.argv[1:]
    if not args:
        raise SystemExit(__doc__)
    tomo, rest = args[0], args[1:]
    out = "/tmp/stages.star"
    if rest[:1] == ["--out"]:
        out, rest = rest[1], rest[2:]
    rest = rest[1:] if rest[:1] == ["--"] else rest
    for name in STAGES:
        if hasattr(picking, name):
            setattr(picking, name, timed(name, getattr(picking, name)))
    from tomopick.cli.main import main as cli

    sys.argv = ["tomopick", "pick", tomo, "--out", out, "--overwrite", "-q", *rest]
    try:
        cli()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    finally:
        r = resource.getrusage(resource.RUSAGE_SELF)
        print(f"total user {r.ru_utime:.2f} sys {r.ru_stime:.2f} minflt {r.ru_minflt} "
              f"maxrss {r.ru_maxrss / 1e6:.2f} GB")


if __name__ == "__main__":
    main()
