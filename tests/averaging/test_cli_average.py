"""``tomopick average`` end to end on a tiny simulated tomogram, and its one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomopick.cli.main import main
from tomopick.io import read_picks, read_tomogram, write_picks, write_tomogram
from tomopick.simulate import SimulationConfig, simulate_tomogram


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("avg")
    sim = simulate_tomogram(SimulationConfig(
        shape_zyx=(40, 96, 96), voxel_size_A=10.0, particle_source="procedural", counts={"apo-ferritin": 10},
        n_vesicles=0, n_fiducials=0, n_clutter=0, snr=10.0, seed=3))
    tomo, picks = root / "tomo.mrc", root / "picks.csv"
    write_tomogram(sim.tomogram, tomo)
    write_picks(sim.picks, picks)
    return tomo, picks


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def one_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


FAST = ["--iterations", "1", "--angular-step", "30", "--box", "24", "--quiet"]


def test_average_writes_every_output(tiny, tmp_path, capsys):
    tomo, picks = tiny
    out = tmp_path / "avg"
    code, stdout, err = run(["average", tomo, "--picks", picks, "--particle", "apo-ferritin", "--out", out, *FAST],
                            capsys)
    assert code == 0, err
    assert "10 picks" in stdout
    for name in ("summary.json", "average.mrc", "half_map_1.mrc", "half_map_2.mrc", "fsc.png", "particles.star",
                 "particles_kept.star", "particles.csv"):
        assert (out / name).is_file(), name
    s = json.loads((out / "summary.json").read_text())
    assert s["n_particles"] == 10 and s["halves"] == [5, 5]
    assert len(s["fsc"]["fsc"]) == len(s["fsc"]["frequency_per_A"]) == 13  # shells 0 … 12 of a 24³ box
    assert s["fsc"]["frequency_per_A"][1] == pytest.approx(1 / 240.0) and s["nyquist_A"] == pytest.approx(20.0)
    assert s["resolution_A"] is None or s["resolution_A"] >= 20.0
    assert "threshold" in s["cut"] and s["cut"]["rule"] in ("mixture", "mad", "too_few")
    with mrcfile.open(out / "half_map_1.mrc") as m:
        assert m.data.shape == (24, 24, 24) and float(m.voxel_size.x) == pytest.approx(10.0)
    found = read_picks(out / "particles.star", particle="apo-ferritin", tomogram=read_tomogram(tomo))
    assert len(found) == 10 and found.has_rotations and found.has_scores
    truth = read_picks(picks)
    # refined positions: the picks moved by at most the shift range (half the 60 Å radius, per axis)
    d = np.abs(np.sort(found.xyz_A, axis=0) - np.sort(truth.xyz_A, axis=0))
    assert d.max() <= s["geometry"]["max_shift_A"] + 10.0
    # the scores written are the alignment scores of summary/particles.csv
    table = np.genfromtxt(out / "particles.csv", delimiter=",", names=True, dtype=None, encoding="utf-8")
    np.testing.assert_allclose(np.sort(found.scores), np.sort(table["score"]), atol=1e-5)
    assert np.mean(table["score"]) == pytest.approx(s["mean_score"], abs=1e-5)
    # an existing folder is refused without --overwrite, replaced with it
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "apo-ferritin", "--out", out, *FAST],
                       capsys)
    assert code == 2 and "--overwrite" in one_error(err)
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "apo-ferritin", "--out", out, *FAST,
                        "--overwrite"], capsys)
    assert code == 0, err


@pytest.mark.parametrize("extra, needle", [
    (["--tilt-range", "60,-60"], "--tilt-range"),
    (["--tilt-range", "abc"], "--tilt-range"),
    (["--angular-step", "0"], "--angular-step"),
    (["--iterations", "0"], "--iterations"),
    (["--symmetry", "X7"], "--symmetry"),
    (["--device", "tpu"], "--device"),
    (["--box", "400"], "--box"),
])
def test_bad_options_are_one_line(tiny, tmp_path, capsys, extra, needle):
    tomo, picks = tiny
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "apo-ferritin", "--out", tmp_path / "o",
                        *extra], capsys)
    assert code == 2 and needle in one_error(err)
    assert not (tmp_path / "o").exists()


def test_bad_inputs_are_one_line(tiny, tmp_path, capsys):
    tomo, picks = tiny
    base = ["--out", tmp_path / "o"]
    code, _, err = run(["average", tmp_path / "missing.mrc", "--picks", picks, "--particle", "apo-ferritin", *base],
                       capsys)
    assert code == 2 and "missing.mrc" in one_error(err)
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "ribosome", "--box", "24", *base],
                       capsys)
    assert code == 2 and "no picks of class 'ribosome'" in one_error(err)
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "nonesuch", *base], capsys)
    assert code == 2 and "--radius" in one_error(err)
    code, _, err = run(["average", tomo, "--picks", picks, "--particle", "apo-ferritin", "--reference",
                        tmp_path / "ref.mrc", *base], capsys)
    assert code == 2 and "ref.mrc" in one_error(err)
    assert not (tmp_path / "o").exists()
