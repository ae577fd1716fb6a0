"""``tomopick match`` and ``tomopick pick --prompt`` (no network) end to end on tiny planted volumes; bad inputs
give one-line errors (exit status 2, no traceback)."""

from __future__ import annotations

from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomopick.data.rotations import random_rotations, rotation_angle_deg

from test_match import asymmetric_blob, plant

VOXEL = 10.0
CENTRES = np.array([[12, 12, 12], [16, 28, 26], [12, 16, 36], [18, 30, 10]])


def run_cli(args: list) -> int:
    from tomopick.cli.main import main

    try:
        main([str(a) for a in args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def write_mrc(path: Path, data: np.ndarray, vs: float = VOXEL) -> Path:
    with mrcfile.new(path, overwrite=True) as m:
        m.set_data(np.asarray(data, dtype=np.float32))
        m.voxel_size = vs
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    t = tmp_path_factory.mktemp("match")
    rng = np.random.default_rng(21)
    rots = random_rotations(len(CENTRES), rng)
    tmpl = asymmetric_blob()
    vol = plant((28, 40, 48), tmpl, rots, CENTRES, 3.0, rng)
    return {"tomo": write_mrc(t / "tomo.mrc", vol), "template": write_mrc(t / "blob.mrc", tmpl),
            "rots": rots, "dir": t}


def test_match_cli_finds_every_copy_with_orientation(files, capsys):
    from tomopick.io import read_picks

    out = files["dir"] / "picks.star"
    code = run_cli(["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
                    "--step", "30", "--tilt-range", "none", "--out", out, "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "false-alarm 1/tomogram" in text and "rotations at 30° C1" in text
    picks = read_picks(out)
    assert len(picks) == len(CENTRES)
    mats = picks.rotation_matrices()
    for r, c in zip(files["rots"], CENTRES):
        d = np.linalg.norm(picks.xyz_A - c[::-1] * VOXEL, axis=1)
        j = int(np.argmin(d))
        assert d[j] <= 1.5 * VOXEL and rotation_angle_deg(mats[j], r)[0] <= 30.0
    # never overwritten without --overwrite
    assert run_cli(["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
                    "--step", "30", "--out", out, "-q"]) == 2
    assert "exists" in capsys.readouterr().err


@pytest.fixture(scope="module")
def prompted(tmp_path_factory):
    t = tmp_path_factory.mktemp("prompted")
    rng = np.random.default_rng(8)
    vol = plant((28, 40, 48), asymmetric_blob(), random_rotations(len(CENTRES), rng), CENTRES, 5.0, rng)
    tomo = write_mrc(t / "tomo.mrc", vol)
    prompt = t / "p.npz"
    c = CENTRES[1]
    assert run_cli(["prompt", "extract", tomo, "--at", f"{c[2] * VOXEL},{c[1] * VOXEL},{c[0] * VOXEL}",
                    "--out", prompt, "--size", "17", "--voxel-size", "10", "--radius", "60", "--particle", "blob"]) == 0
    return tomo, prompt, t


def test_pick_prompt_without_network_runs_matching_and_stores_the_method(prompted, capsys):
    from tomopick.io import read_picks

    tomo, prompt, t = prompted
    out = t / "prompted.csv"
    code = run_cli(["pick", tomo, "--prompt", prompt, "--out", out, "-q", "--threads", "1"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "template-matching+bootstrap, 2 rounds" in text and "round 2" in text
    assert "for the object gate" in text and "object gate: hits farther than 45 Å" in text  # 0.75 × 60 Å
    assert "for the class veto" in text and "class veto" in text.split("round 0")[0]  # czii-10A ran, decided
    picks = read_picks(out)
    assert set(picks.frame["method"]) == {"template-matching+bootstrap+object-gate"}
    assert set(picks.frame["rounds"]) == {2}
    assert np.linalg.norm(picks.xyz_A - CENTRES[1][::-1] * VOXEL, axis=1).min() <= 30.0  # the prompt's own copy
    assert 3 <= len(picks) <= len(CENTRES) + 1
    # --prompt-gate none: the matching alone, and the method says so
    code = run_cli(["pick", tomo, "--prompt", prompt, "--out", t / "ungated.csv", "-q", "--threads", "1",
                    "--prompt-gate", "none", "--prompt-classifier", "none", "--overwrite"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "object gate" not in text and "class veto" not in text
    assert set(read_picks(t / "ungated.csv").frame["method"]) == {"template-matching+bootstrap"}


def test_object_gate_keeps_hits_at_detected_objects_only():
    from tomopick.prompt.bootstrap import object_gate

    accept = object_gate(np.array([[10.0, 10.0, 10.0], [30.0, 5.0, 5.0]]), 3.0)
    hits = np.array([[10.0, 12.0, 11.0], [30.0, 5.0, 8.0], [30.0, 5.0, 8.5], [20.0, 20.0, 20.0]])
    assert accept(hits).tolist() == [True, True, False, False]  # √5 and 3.0 within 3 voxels; 3.5 and far not
    assert object_gate(np.zeros((0, 3)), 3.0)(hits).tolist() == [False] * 4  # no object: no hit kept
    assert accept(np.zeros((0, 3))).shape == (0,)


def test_prompt_bootstrap_finds_every_copy(prompted):
    from tomopick.workflows.prompt_match import pick_with_prompt_matching

    tomo, prompt, _ = prompted
    report = pick_with_prompt_matching([str(tomo)], [str(prompt)], bin_factor=1, rounds=1, step_deg=20.0,
                                       object_gate=None)
    picks = report.picks
    # F1 (one-to-one within 0.5 × radius) at least 0.75: three of the four copies found, at most one extra pick
    # (the fourth copy sits 30-45 Å off at 20° sampling: this small asymmetric blob needs ~15°)
    found = sum(np.linalg.norm(picks.xyz_A - c[::-1] * VOXEL, axis=1).min() <= 30.0 for c in CENTRES)
    assert found >= 3 and len(picks) <= len(CENTRES) + 1
    rounds = report.runs[0]["rounds"]
    assert [r["round"] for r in rounds] == [0, 1] and rounds[0]["averaged"] >= 3


def bad(files, extra, t):
    return ["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
            "--out", t / "x.csv", *extra]


@pytest.mark.parametrize("extra,message", [
    (["--step", "0"], "--step"),
    (["--symmetry", "X7"], "--symmetry"),
    (["--tilt-range", "60"], "--tilt-range"),
    (["--tilt-range", "70,-70"], "--tilt-range"),
    (["--bin", "0"], "--bin"),
    (["--device", "tpu"], "--device"),
    (["--false-alarms", "-1"], "--false-alarms"),
])
def test_bad_options_one_line(files, tmp_path, capsys, extra, message):
    assert run_cli(bad(files, extra, tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err


def test_bad_files_one_line(files, tmp_path, capsys):
    cases = [
        (["match", files["tomo"], "--template", tmp_path / "none.mrc", "--particle", "blob", "--radius", "50",
          "--out", tmp_path / "x.csv"], "none.mrc"),
        (["match", tmp_path / "missing.mrc", "--template", files["template"], "--particle", "blob", "--radius", "50",
          "--out", tmp_path / "x.csv"], "missing.mrc"),
        (["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--out",
          tmp_path / "x.csv"], "--radius"),
        (["match", files["tomo"], "--template", write_mrc(tmp_path / "flat.mrc", np.zeros((9, 9, 9))),
          "--particle", "blob", "--radius", "50", "--out", tmp_path / "x.csv"], "constant"),
        (["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
          "--mask", write_mrc(tmp_path / "m.mrc", np.ones((4, 4, 4))), "--out", tmp_path / "x.csv"], "shape"),
    ]
    for argv, message in cases:
        assert run_cli(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert not (tmp_path / "x.csv").exists()


def test_mask_restricts_the_search(files, tmp_path, capsys):
    from tomopick.io import read_picks

    mask = np.zeros((28, 40, 48), np.float32)
    mask[:, :, :24] = 1  # the copies at x = 12 and 10 voxels are inside, those at x = 26 and 36 outside
    out = tmp_path / "m.csv"
    assert run_cli(["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
                    "--step", "30", "--tilt-range", "none", "--mask", write_mrc(tmp_path / "mask.mrc", mask),
                    "--out", out, "-q"]) == 0
    text = capsys.readouterr().out
    assert "searched" in text
    picks = read_picks(out)
    assert len(picks) >= 1 and np.all(picks.xyz_A[:, 0] < 24 * VOXEL)
    for c in CENTRES[CENTRES[:, 2] < 24]:
        assert np.linalg.norm(picks.xyz_A - c[::-1] * VOXEL, axis=1).min() <= 1.5 * VOXEL


def test_match_cli_runs_coarse_to_fine_for_a_fine_step_and_says_so(files, capsys):
    from tomopick.io import read_picks

    out = files["dir"] / "c2f.star"
    code = run_cli(["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
                    "--step", "20", "--coarse-step", "40", "--tilt-range", "none", "--out", out, "-q"])
    text = capsys.readouterr().out
    assert code == 0, text
    assert "rotations at 20° C1 coarse-to-fine: FFT search over" in text and "at 40°" in text
    picks = read_picks(out)
    assert len(picks) == len(CENTRES)
    for r, c in zip(files["rots"], CENTRES):
        d = np.linalg.norm(picks.xyz_A - c[::-1] * VOXEL, axis=1)
        j = int(np.argmin(d))
        assert d[j] <= 1.5 * VOXEL  # as the exhaustive search above (noise at amplitude 3)
        assert rotation_angle_deg(picks.rotation_matrices()[j], r)[0] <= 25.0  # the exhaustive 20° search: 23.4
    code = run_cli(["match", files["tomo"], "--template", files["template"], "--particle", "blob", "--radius", "50",
                    "--search", "quick", "--out", files["dir"] / "bad.csv", "-q"])
    err = capsys.readouterr().err
    assert code == 2 and "--search" in err and "Traceback" not in err
