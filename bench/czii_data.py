"""The simulated data sets behind the bundled ``czii-10A`` model (training, validation and the held-out tests).

All at 10 Å/voxel with ``imaging="full"`` (tilt series, CTF, dose-dependent noise, weighted back-projection) and
the bundled CZII maps, written as copick projects with the ground truth under user ``curation``:

``train-wide`` 81 runs (czii-10A since v3): ``sim_000``–``sim_015`` and ``rnd_000`` as in ``train`` plus
               ``wide_000``–``wide_063`` drawn from the wider imaging ranges of :data:`WIDE` (SNR 0.5–8, no CTF
               correction, defocus 1.5–7 µm, tilt ±45–66° in 2–5° steps, …; seeds 3000–3063).
``train``      56 runs of 128 × 320 × 320 (czii-10A v2): ``sim_000``–``sim_015`` with the default imaging (SNR 3) and
               ``crowding=1.5`` (seeds 1000–1015), and ``rnd_000``–``rnd_039`` drawn by domain randomisation
               (``randomize=True``: SNR 1–8, defocus, tilt range and step, B-factor, CTF correction, low-pass,
               alignment error, dose, crowding, vesicles, filaments, distractors, clutter; seeds 2000–2039).
               ``configs/czii-10A.yaml`` validates on ``sim_008``, ``sim_009`` and ``rnd_000``.
``test``       3 runs of 128 × 320 × 320 like ``sim_*`` (seeds 5100–5102, ``test_100``–``test_102``).
``czii-test``  3 CZII-size runs, 184 × 630 × 630, default scene and imaging (SNR 3, crowding 1;
               seeds 5200–5202, ``czii_test_0``–``czii_test_2``).

Usage::

    python bench/czii_data.py train-wide DIR   # ~4 min on two cores
    python bench/czii_data.py train-wide DIR --n-wide 128 --add   # czii-10A v6: 64 more wide runs
    python bench/czii_data.py train DIR        # ~3 min on two cores
    python bench/czii_data.py test DIR
    python bench/czii_data.py czii-test DIR    # ~1 min
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from tomopick.data import CZII
from tomopick.io.copick_project import CopickProject
from tomopick.simulate import SimulationConfig, simulate_tomogram

SMALL = (128, 320, 320)


def runs(kind: str, n_wide: int = 64) -> list[SimulationConfig]:
    """The simulation configs of one data set (see the module docstring)."""
    common = dict(voxel_size_A=10.0, imaging="full", keep_noiseless=False)
    if kind == "train":
        fixed = [SimulationConfig(shape_zyx=SMALL, crowding=1.5, seed=1000 + i, run_name=f"sim_{i:03d}", **common)
                 for i in range(16)]
        randomised = [SimulationConfig(shape_zyx=SMALL, randomize=True, seed=2000 + i, run_name=f"rnd_{i:03d}",
                                       **common) for i in range(40)]
        return fixed + randomised
    if kind == "train-wide":
        return wide_runs(n_wide)
    if kind == "test":
        return [SimulationConfig(shape_zyx=SMALL, crowding=1.5, seed=5000 + i, run_name=f"test_{i}", **common)
                for i in range(100, 103)]
    if kind == "czii-test":
        return [SimulationConfig(seed=5200 + i, run_name=f"czii_test_{i}", **common) for i in range(3)]
    raise ValueError(f"unknown data set {kind!r}")


#: Imaging ranges of the ``train-wide`` set (czii-10A v3), wider than :data:`tomopick.simulate.config.RANDOMIZATION`
#: where tomograms of other microscopes and reconstructions differ: SNR down to the edge of visibility, no CTF
#: correction, stronger defocus, narrower tilt ranges and coarser steps, larger alignment error and B-factors,
#: SIRT-like low-pass filtering, more look-alike distractors. Fields not listed are drawn by ``randomize=True``.
WIDE: dict[str, tuple] = {
    "snr": ("loguniform", 0.5, 8.0),
    "defocus_um": ("uniform", 1.5, 7.0),
    "ctf_correction": ("choice", ["phaseflip", "wiener", "none"], [0.5, 0.3, 0.2]),
    "tilt_max_deg": ("uniform", 45.0, 66.0),
    "tilt_step_deg": ("choice", [2.0, 3.0, 4.0, 5.0], [0.2, 0.4, 0.25, 0.15]),
    "alignment_error_A": ("uniform", 0.0, 8.0),
    "b_factor_A2": ("uniform", 50.0, 300.0),
    "lowpass_A": ("choice", [None, 15.0, 20.0, 30.0, 40.0], [0.4, 0.15, 0.15, 0.15, 0.15]),
    "n_distractors": ("int", 0, 30),
}


def wide_runs(n_wide: int = 64) -> list[SimulationConfig]:
    """``train-wide``: ``sim_000``–``sim_015`` as in ``train`` (the validation runs stay the same) and
    ``wide_000``–``wide_{n_wide-1}`` drawn from :data:`WIDE` (seeds 3000 onwards; 64 for czii-10A v3–v5, 128 for
    v6)."""
    import numpy as np

    from tomopick.simulate.config import _draw

    common = dict(voxel_size_A=10.0, imaging="full", keep_noiseless=False, shape_zyx=SMALL)
    out = [SimulationConfig(crowding=1.5, seed=1000 + i, run_name=f"sim_{i:03d}", **common) for i in range(16)]
    out.append(SimulationConfig(randomize=True, seed=2000, run_name="rnd_000", **common))  # a validation run
    for i in range(n_wide):
        rng = np.random.default_rng(3000 + i)
        drawn = {k: _draw(spec, rng) for k, spec in WIDE.items()}
        top = float(drawn.pop("tilt_max_deg"))
        drawn.update(tilt_max_deg=top, tilt_min_deg=-top + float(rng.uniform(-4, 4)))
        out.append(SimulationConfig(randomize=True, seed=3000 + i, run_name=f"wide_{i:03d}", **common, **drawn))
    return out


def write_project(out: Path, configs: list[SimulationConfig], name: str, label: str = "",
                  add: bool = False) -> None:
    """Simulate every config into a new copick project (truth under user ``curation``), one line per run;
    ``add``: into the existing project ``out``, only the runs it does not hold yet."""
    if add:
        project = CopickProject.open(out)
        have = set(project.runs())
        configs = [c for c in configs if c.run_name not in have]
    else:
        project = CopickProject.create(out, CZII, name=name, overwrite=False)
    for cfg in configs:
        t0 = time.time()
        result = simulate_tomogram(cfg)
        project.write_tomogram(cfg.run_name, result.tomogram, tomo_type="wbp")
        project.write_picks(cfg.run_name, result.picks.with_columns(run=cfg.run_name), user_id="curation",
                            session_id="0")
        print(f"{label}{cfg.run_name}: {len(result.picks)} picks, {time.time() - t0:.1f} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("kind", choices=["train", "train-wide", "test", "czii-test"])
    parser.add_argument("out", type=Path, help="copick project folder to create (with --add: to extend)")
    parser.add_argument("--n-wide", type=int, default=64, help="train-wide: wide_* runs (czii-10A v6: 128)")
    parser.add_argument("--add", action="store_true", help="add the runs missing from an existing project")
    args = parser.parse_args()
    if args.add and not args.out.is_dir():
        parser.error(f"--add: {args.out} is not an existing copick project folder")
    write_project(args.out, runs(args.kind, args.n_wide), f"czii-10A-{args.kind}", add=args.add)


if __name__ == "__main__":
    main()
