"""``tomopick convert`` / ``info`` through the CLI entry point: exit codes, one-line errors naming the file, and
nothing (output or temp file) left behind on failure."""

from __future__ import annotations

import json
import os
from pathlib import Path

import mrcfile
import numpy as np
import pytest

from tomopick.cli.main import main
from tomopick.data import Picks
from tomopick.io import read_picks, write_picks


def run(args: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def assert_one_line_error(err: str, path: str | Path, match: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and str(path) in lines[0] and match in lines[0], lines[0]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _mrc(path: Path, data: np.ndarray, voxel: float = 10.0) -> Path:
    with mrcfile.new(path) as m:
        m.set_data(data)
        m.voxel_size = voxel
    return path


@pytest.fixture
def picks_csv(tmp_path) -> Path:
    picks = Picks.from_arrays(np.array([[10.0, 20, 30], [400, 50, 60], [5000, 5, 5]]),
                              ["ribosome", "ribosome", "apo-ferritin"], run="TS_1")
    return write_picks(picks, tmp_path / "in" / "picks.csv")


def test_help_lists_commands(capsys):
    code, out, _ = run(["--help"], capsys)
    assert code == 0 and "convert" in out and "info" in out and "particles" in out


def test_convert_picks_between_formats(tmp_path, picks_csv, capsys):
    out = tmp_path / "out" / "p.star"
    code, stdout, err = run(["convert", picks_csv, out, "--voxel-size", "10"], capsys)
    assert code == 0, err
    assert "3 picks" in stdout and out.is_file()
    back = read_picks(out, particles="czii")
    np.testing.assert_allclose(back.xyz_A, read_picks(picks_csv).xyz_A, atol=1e-6)
    code, stdout, _ = run(["convert", out, tmp_path / "out" / "p.tbl", "--particles", "czii"], capsys)
    assert code == 0 and "dynamo" in stdout
    code, stdout, _ = run(["info", tmp_path / "out" / "p.tbl", "--particles", "czii"], capsys)
    assert code == 0 and "ribosome" in stdout and "picks: 3" in stdout


def test_convert_tomogram_and_info(tmp_path, rng, capsys):
    vol = rng.normal(size=(6, 7, 8)).astype(np.float32)
    src = _mrc(tmp_path / "t.mrc", vol, 12.0)
    code, stdout, err = run(["convert", src, tmp_path / "t.zarr", "--levels", "2"], capsys)
    assert code == 0, err
    code, stdout, _ = run(["info", tmp_path / "t.zarr", "--json"], capsys)
    rep = json.loads(stdout)
    assert rep["shape_zyx"] == [6, 7, 8] and rep["voxel_size_A"] == [12.0, 12.0, 12.0] and rep["n_levels"] == 2
    assert rep["stats"]["max"] == pytest.approx(float(vol.max())) and rep["stats"]["n_nan"] == 0
    code, stdout, _ = run(["convert", tmp_path / "t.zarr", tmp_path / "back.mrc", "--level", "1"], capsys)
    assert code == 0 and mrcfile.open(tmp_path / "back.mrc").data.shape == (3, 4, 4)


def test_info_portal_picks(shared_data, capsys):
    path = shared_data / "czii_portal_layout" / "TS_5_4" / "Picks" / "apo-ferritin.json"
    code, stdout, _ = run(["info", path], capsys)
    assert code == 0 and "apo-ferritin" in stdout and "46" in stdout


def test_copick_project_folder_and_uri(tmp_path, picks_csv, capsys):
    from tomopick.data import CZII
    from tomopick.io.copick_project import CopickProject

    CopickProject.create(tmp_path / "proj", CZII)
    code, stdout, err = run(["convert", picks_csv, f"copick://{tmp_path / 'proj'}?user=me"], capsys)
    assert code == 0, err
    assert (tmp_path / "proj" / "ExperimentRuns" / "TS_1" / "Picks" / "me_0_ribosome.json").is_file()
    code, stdout, _ = run(["info", tmp_path / "proj"], capsys)
    assert code == 0 and "picks: 3" in stdout and "TS_1" in stdout
    code, stdout, _ = run(["info", f"copick://{tmp_path / 'proj'}?particle=ribosome"], capsys)
    assert code == 0 and "picks: 2" in stdout


# -- bad input ---------------------------------------------------------------------------------------------------
def test_missing_file(tmp_path, capsys):
    missing = tmp_path / "nope.mrc"
    code, _, err = run(["info", missing], capsys)
    assert code == 2
    assert_one_line_error(err, missing, "not found")
    code, _, err = run(["convert", missing, tmp_path / "new" / "o.zarr"], capsys)
    assert code == 2 and leftovers(tmp_path) == []  # not even the output's folder


@pytest.mark.parametrize("case", ["truncated", "garbage", "mode4"])
def test_bad_mrc(tmp_path, capsys, case):
    src = tmp_path / "bad.mrc"
    if case == "truncated":
        _mrc(src, np.zeros((8, 8, 8), np.float32))
        src.write_bytes(src.read_bytes()[:-64])
        match = "truncated"
    elif case == "garbage":
        src.write_bytes(os.urandom(3000))
        match = "MRC"
    else:
        _mrc(src, np.zeros((2, 2, 2), np.complex64))
        match = "unsupported MRC mode 4"
    out = tmp_path / "sub" / "out.zarr"
    code, _, err = run(["convert", src, out], capsys)
    assert code == 2
    assert_one_line_error(err, src, match)
    assert leftovers(tmp_path) == ["bad.mrc"]


def test_voxel_size_zero_asks_for_option(tmp_path, capsys):
    src = _mrc(tmp_path / "z.mrc", np.ones((3, 3, 3), np.float32), voxel=0.0)
    code, _, err = run(["convert", src, tmp_path / "o.mrc"], capsys)
    assert code == 2
    assert_one_line_error(err, src, "--voxel-size")
    assert leftovers(tmp_path) == ["z.mrc"]
    code, _, _ = run(["convert", src, tmp_path / "o.mrc", "--voxel-size", "7"], capsys)
    assert code == 0 and float(mrcfile.open(tmp_path / "o.mrc").voxel_size.x) == pytest.approx(7.0)


@pytest.mark.filterwarnings("ignore:Data array contains NaN:RuntimeWarning")
def test_nonfinite_values_reported(tmp_path, capsys):
    vol = np.ones((3, 4, 5), np.float32)
    vol[0, 0, 0] = np.nan
    vol[1, 1, 1] = np.inf
    src = _mrc(tmp_path / "nan.mrc", vol)
    code, stdout, err = run(["info", src], capsys)
    assert code == 0 and "NaN 1" in stdout and "Inf 1" in stdout
    assert err.count("\n") == 1 and err.startswith("warning: ") and str(src) in err


def test_picks_outside_volume_warn_and_are_kept(tmp_path, picks_csv, capsys):
    out = tmp_path / "o.json"
    single = write_picks(read_picks(picks_csv).for_particle("ribosome"), tmp_path / "r.csv")
    code, _, err = run(["convert", single, out, "--tomo-shape", "10,10,10", "--voxel-size", "10"], capsys)
    assert code == 0
    assert err.count("\n") == 1 and "1 of 2 pick(s) lie outside" in err and str(single) in err
    assert len(read_picks(out)) == 2


def test_unknown_particle_names(tmp_path, capsys):
    src = write_picks(Picks.from_arrays(np.zeros((1, 3)), "proteasome", run="TS_1"), tmp_path / "p.csv")
    out = tmp_path / "o.star"
    code, _, err = run(["convert", src, out, "--particles", "czii", "--voxel-size", "10"], capsys)
    assert code == 2
    assert_one_line_error(err, src, "unknown particle name(s) proteasome")
    assert leftovers(tmp_path) == ["p.csv"]


@pytest.mark.parametrize("name,text,match", [
    ("m.star", "data_particles\nloop_\n_rlnCoordinateX #1\n_rlnCoordinateY #2\n_rlnCoordinateZ #3\n1 2 x\n",
     "STAR"),
    ("m.json", "{\"points\": [", "malformed JSON"),
    ("m.csv", "id,experiment,particle_type,x,y,z\n0,TS,ribosome,1,two,3\n", "malformed CSV"),
])
def test_malformed_picks(tmp_path, capsys, name, text, match):
    src = tmp_path / name
    src.write_text(text)
    code, _, err = run(["convert", src, tmp_path / "out.csv", "--voxel-size", "1"], capsys)
    assert code == 2
    assert_one_line_error(err, src, match)
    assert leftovers(tmp_path) == [name]


def test_output_exists_refused(tmp_path, picks_csv, capsys):
    out = tmp_path / "o.csv"
    out.write_text("keep me")
    code, _, err = run(["convert", picks_csv, out], capsys)
    assert code == 2
    assert_one_line_error(err, out, "--overwrite")
    assert out.read_text() == "keep me" and leftovers(tmp_path) == ["in", "o.csv"]
    code, _, _ = run(["convert", picks_csv, out, "--overwrite"], capsys)
    assert code == 0 and len(read_picks(out)) == 3 and leftovers(tmp_path) == ["in", "o.csv"]


def test_unwritable_directory(tmp_path, picks_csv, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    out = blocker / "sub" / "o.csv"  # parent is a file: cannot be created
    code, _, err = run(["convert", picks_csv, out], capsys)
    assert code == 2
    assert_one_line_error(err, blocker / "sub", "cannot create output folder")
    if os.geteuid() != 0:  # root may write anywhere
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            code, _, err = run(["convert", picks_csv, locked / "o.csv"], capsys)
            assert code == 2
            assert_one_line_error(err, locked, "not writable")
        finally:
            locked.chmod(0o755)


def test_failed_write_leaves_no_temp_file(tmp_path, capsys):
    """A writer that fails after starting (two classes into one copick JSON) leaves nothing."""
    src = write_picks(Picks.from_arrays(np.zeros((2, 3)), ["ribosome", "apo-ferritin"], run="TS_1"),
                      tmp_path / "two.csv")
    out = tmp_path / "one.json"
    code, _, err = run(["convert", src, out], capsys)
    assert code == 2
    assert_one_line_error(err, out, "one particle class")
    assert leftovers(tmp_path) == ["two.csv"]


def test_relion5_with_tomogram_file(tmp_path, picks_csv, capsys):
    """--tomogram gives RELION 5 the shape and voxel size, and the outside-the-volume check."""
    tomo = _mrc(tmp_path / "t.mrc", np.zeros((8, 9, 10), np.float32), voxel=10.0)
    out = tmp_path / "r5.star"
    code, _, err = run(["convert", picks_csv, out, "--format-out", "relion5", "--tomogram", tomo], capsys)
    assert code == 0
    assert "2 of 3 pick(s) lie outside the 8x9x10 volume" in err  # x = 400 Å and 5000 Å exceed 10 voxels
    import starfile

    df = starfile.read(out)
    assert df["rlnCenteredCoordinateXAngst"].iat[0] == pytest.approx(10.0 - 50.0)  # centre x = 10/2 × 10 Å
    from tomopick.io import read_tomogram

    back = read_picks(out, tomogram=read_tomogram(tomo))
    np.testing.assert_allclose(back.xyz_A, read_picks(picks_csv).xyz_A, atol=1e-6)
