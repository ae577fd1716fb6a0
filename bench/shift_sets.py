"""Simulated test sets whose imaging lies outside the training distribution of the bundled ``czii-10A`` model.

Two families, never used to train a model or to choose a rule:

``bench`` sets (:data:`BENCH_SETS`) — what ``bench/domain_shift.py`` reports. Each moves one or more imaging
parameters beyond the ranges the bundled model was trained on (see ``bench/czii_data.py`` and
``tomopick.simulate.config.RANDOMIZATION``): lower SNR than the training floor, defocus, tilt range and step,
alignment error and B-factor, another voxel size (rescaled by ``tomopick pick``), no CTF correction, more
look-alike distractors and crowding.

``dev`` sets (:data:`DEV_SETS`) — other seeds and milder shifts, for developing score and threshold rules
(choosing among candidate rules happens here, never on the bench sets).

Usage::

    python bench/shift_sets.py bench DIR      # one copick project per set: DIR/<set>/
    python bench/shift_sets.py dev DIR
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from czii_data import write_project  # noqa: E402

from tomopick.simulate import SimulationConfig  # noqa: E402

#: Lateral size of the bench tomograms (z = 184 like CZII; 448² instead of 630² halves the cost).
BENCH_SHAPE = (184, 448, 448)
DEV_SHAPE = (128, 320, 320)

#: name → (description, SimulationConfig keywords). Training ranges of the bundled model for comparison
#: (``RANDOMIZATION``): SNR 1–8, defocus 2–6 µm, tilt ±50–66° in 2–4° steps, alignment error 0–6 Å, B 50–250 Å²,
#: phase flip or Wiener, 0–15 distractors, crowding 0.5–1.6, 10 Å. (The wider ``train-wide`` set tried for a
#: retraining reaches SNR 0.5, defocus 7 µm, ±45°, 5° steps, 8 Å, 300 Å², no CTF correction, 30 look-alikes.)
BENCH_SETS: dict[str, tuple[str, dict[str, Any]]] = {
    "snr-0.35": ("SNR 0.35 (training floor 1), default imaging otherwise",
                 dict(snr=0.35)),
    "defocus9-tilt40": ("defocus 9 µm, tilt ±40° in 4° steps, SNR 1",
                        dict(defocus_um=9.0, tilt_min_deg=-40.0, tilt_max_deg=40.0, tilt_step_deg=4.0, snr=1.0)),
    "blur-misaligned": ("alignment error 12 Å, B-factor 450 Å², low-pass 45 Å, SNR 1.5",
                        dict(alignment_error_A=12.0, b_factor_A2=450.0, lowpass_A=45.0, snr=1.5)),
    "voxel-13.5A": ("voxel size 13.48 Å (rescaled to 10 Å by tomopick pick), SNR 0.8, no CTF correction",
                    dict(voxel_size_A=13.48, snr=0.8, ctf_correction="none")),
    "crowded-lookalikes": ("60 look-alike distractors, crowding 2, dense clutter, SNR 0.8",
                           dict(n_distractors=60, crowding=2.0, n_clutter=900, snr=0.8)),
}

DEV_SETS: dict[str, tuple[str, dict[str, Any]]] = {
    "dev-snr": ("SNR 0.6", dict(snr=0.6)),
    "dev-defocus": ("defocus 7.5 µm, tilt ±48°, SNR 1.2", dict(defocus_um=7.5, tilt_min_deg=-48.0,
                                                             tilt_max_deg=48.0, snr=1.2)),
    "dev-blur": ("alignment error 9 Å, low-pass 35 Å, SNR 1.5", dict(alignment_error_A=9.0, lowpass_A=35.0,
                                                                  snr=1.5)),
    "dev-voxel": ("voxel size 12 Å, SNR 1, 30 distractors", dict(voxel_size_A=12.0, snr=1.0, n_distractors=30)),
    # in distribution (the simulator's default imaging): rules chosen on the dev family must hold here too
    "dev-default": ("default imaging (SNR 3), inside the training distribution", dict()),
    "dev-czii": ("default imaging (SNR 3), CZII-like depth 184 × 448 × 448 (bench size)",
                 dict(shape_zyx=(184, 448, 448))),
}


def _seed_order(table: dict) -> list[str]:
    """Set names in seed order: the first sets sorted, later additions after them (seeds never move)."""
    later = [n for n in ADDED_LATER if n in table]
    return sorted(n for n in table if n not in later) + later


#: Sets added after the first results were published, seeded after the others.
ADDED_LATER = ("dev-default", "dev-czii")


def configs(family: str, name: str, n_runs: int = 2) -> list[SimulationConfig]:
    """The simulation configs of one set (runs ``<name>_0`` … with their own seeds)."""
    table = BENCH_SETS if family == "bench" else DEV_SETS
    _, extra = table[name]
    base_shape = BENCH_SHAPE if family == "bench" else DEV_SHAPE
    vs = float(extra.get("voxel_size_A", 10.0))
    base_shape = tuple(extra.get("shape_zyx", base_shape))
    shape = tuple(max(8, int(round(s * 10.0 / vs))) for s in base_shape)  # same physical size at any voxel size
    seed0 = (7000 if family == "bench" else 8000) + 10 * _seed_order(table).index(name)
    common: dict[str, Any] = dict(imaging="full", keep_noiseless=False, voxel_size_A=10.0, shape_zyx=shape)
    common.update({k: v for k, v in extra.items() if k != "shape_zyx"})
    return [SimulationConfig(seed=seed0 + i, run_name=f"{name.replace('.', '')}_{i}", **common)
            for i in range(n_runs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("family", choices=["bench", "dev"])
    parser.add_argument("out", type=Path, help="folder for one copick project per set")
    parser.add_argument("--sets", nargs="*", help="only these sets")
    parser.add_argument("--runs", type=int, default=2)
    args = parser.parse_args()
    table = BENCH_SETS if args.family == "bench" else DEV_SETS
    for name in args.sets or list(table):
        write_project(args.out / name, configs(args.family, name, args.runs), name, label=f"{name}/")


if __name__ == "__main__":
    main()
