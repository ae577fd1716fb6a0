"""How the CLI reports problems (issue #11): usage errors on one line, Ctrl-C, advice that names only options the
running command has, refused checkpoints, and ``train`` creating its output folder only after the data check."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import typer

from tomopick.cli.main import COMMAND_OPTIONS, app, command_path, main
from tomopick.data import Picks
from tomopick.errors import OPTION_ROLES
from tomopick.io import write_picks

REPO = Path(__file__).resolve().parents[2]


def run(args: list, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _options(path: str) -> set[str]:
    command = typer.main.get_command(app)
    for word in path.split():
        command = command.commands[word]
    return {name for p in command.params for name in (*p.opts, *p.secondary_opts)}


def _all_command_paths() -> list[str]:
    paths, todo = [], [("", typer.main.get_command(app))]
    while todo:
        prefix, group = todo.pop()
        for name, cmd in group.commands.items():
            path = f"{prefix} {name}".strip()
            if hasattr(cmd, "commands"):
                todo.append((path, cmd))
            else:
                paths.append(path)
    return sorted(paths)


# -- usage errors ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args,match", [
    (["convert", "--bogus"], "No such option: --bogus"),
    (["convert"], "Missing argument 'IN'"),
    (["convert", "a.csv", "b.csv", "--levels", "many"], "Invalid value for '--levels'"),
    (["pick", "t.mrc", "--out", "p.csv", "--threads", "0"], "Invalid value for '--threads'"),
    (["nosuchcommand"], "No such command 'nosuchcommand'"),
    (["prompt", "nosuch"], "No such command 'nosuch'"),
    (["demo", "--imaging", "slow"], "must be 'fast' or 'full'"),
    (["evaluate", "--truth", "t.csv"], "Missing option '--picks'"),
])
def test_usage_errors_are_one_line(args, match, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = run(args, capsys)
    line = one_error_line(err)
    assert code == 2 and match in line and "--help" in line and out == ""
    assert "╭" not in err and "Usage:" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args", [["--help"], ["convert", "--help"], ["prompt", "extract", "--help"], ["--version"]])
def test_help_and_version_still_work(args, capsys):
    code, out, err = run(args, capsys)
    assert code == 0 and out and err == ""


def test_command_path():
    assert command_path(["convert", "a", "b"]) == "convert"
    assert command_path(["prompt", "extract", "t.mrc"]) == "prompt extract"
    assert command_path(["--version"]) == "" and command_path([]) == "" and command_path(["nosuch"]) == ""


# -- Ctrl-C ------------------------------------------------------------------------------------------------------
def test_keyboard_interrupt_in_process(tmp_path, capsys, monkeypatch):
    import tomopick.workflows.convert as convert_workflow

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(convert_workflow, "convert", interrupted)
    code, out, err = run(["convert", tmp_path / "a.csv", tmp_path / "b.star"], capsys)
    assert code == 130 and err.strip() == "interrupted" and out == ""


def test_sigint_subprocess(tmp_path):
    """SIGINT while the command blocks reading its input (a FIFO): "interrupted", exit 130, no traceback."""
    fifo = tmp_path / "picks.csv"
    os.mkfifo(fifo)
    # a pytest-xdist worker may run with SIGINT ignored, and an ignored signal stays ignored across exec (Python
    # then installs no KeyboardInterrupt handler): give the child the default disposition, as a shell would
    proc = subprocess.Popen([sys.executable, "-c", "from tomopick.cli.main import main; main()", "info", str(fifo)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = None
    try:
        deadline = time.monotonic() + 60
        while writer is None:  # a writer can open the FIFO without blocking only once the reader has it open
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the command never opened its input"
                time.sleep(0.05)
        time.sleep(0.2)  # now blocked reading the (open, empty) FIFO
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if writer is not None:
            os.close(writer)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "interrupted" and "Traceback" not in err


# -- advice names options the command has ------------------------------------------------------------------------
def test_command_options_table_names_real_options():
    for path, roles in COMMAND_OPTIONS.items():
        assert set(roles) <= set(OPTION_ROLES), path
        assert set(roles.values()) <= _options(path), path


def test_every_pass_hint_in_src_names_an_existing_option():
    """A grep of src/ for ``pass --x`` / ``with --x`` hints: each option must exist in some command (per-command
    wording is checked through COMMAND_OPTIONS and the cases below)."""
    known = set().union(*(_options(p) for p in _all_command_paths()))
    pattern = re.compile(r"(?:pass|with|give|or) (--[a-z][a-z-]*)")
    named = {m.group(1) for f in (REPO / "src" / "tomopick").rglob("*.py") for m in pattern.finditer(f.read_text())}
    assert named and named <= known, sorted(named - known)


def _mrc(path: Path, voxel: float = 10.0) -> Path:
    with mrcfile.new(path) as m:
        m.set_data(np.zeros((4, 5, 6), np.float32))
        m.voxel_size = voxel
    return path


def test_convert_tomogram_to_picks_name(tmp_path, capsys):
    code, _, err = run(["convert", _mrc(tmp_path / "tomo.mrc"), tmp_path / "out.star"], capsys)
    line = one_error_line(err)
    assert code == 2 and "out.star" in line and "names a picks format" in line and ".mrc" in line
    assert "--format)" not in line and "--format-out" not in line.replace("--format-out relion", "")


@pytest.mark.parametrize("command,for_writing,hint", [
    ("convert", False, " (or pass --format-in)"), ("convert", True, " (or pass --format-out)"),
    ("info", False, " (or pass --format)"), ("pick", True, " (or pass --format)"), ("pick", False, ""),
    ("evaluate", False, ""), ("train", False, ""),
])
def test_unknown_extension_hint_names_the_commands_option(tmp_path, command, for_writing, hint):
    from tomopick.errors import TomopickError, command_options
    from tomopick.io import detect

    with command_options(COMMAND_OPTIONS.get(command, {})), pytest.raises(TomopickError) as exc:
        detect(tmp_path / "picks.weird", "picks", for_writing=for_writing)
    assert str(exc.value).endswith(".xyz" + hint), str(exc.value)


def test_convert_to_unknown_extension(tmp_path, capsys):
    src = write_picks(Picks.from_arrays(np.zeros((1, 3)), "ribosome", run="TS_1"), tmp_path / "p.csv")
    code, _, err = run(["convert", src, tmp_path / "out.weird"], capsys)
    assert code == 2 and one_error_line(err).endswith("(or pass --format-out)")


def test_evaluate_empty_picks_says_empty(tmp_path, capsys):
    truth = write_picks(Picks.from_arrays(np.zeros((1, 3)), "ribosome", run="TS_1"), tmp_path / "truth.csv")
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    code, _, err = run(["evaluate", "--truth", truth, "--picks", empty], capsys)
    line = one_error_line(err)
    assert code == 2 and line == f"error: {empty}: file is empty (0 bytes)"


def test_evaluate_pixel_picks_advise_convert_not_a_missing_option(tmp_path, capsys):
    truth = write_picks(Picks.from_arrays(np.zeros((1, 3)), "ribosome", run="TS_1"), tmp_path / "truth.csv")
    xyz = tmp_path / "picks.csv"
    xyz.write_text("1,2,3\n4,5,6\n")
    code, _, err = run(["evaluate", "--truth", truth, "--picks", xyz], capsys)
    line = one_error_line(err)
    assert code == 2 and "--voxel-size <Å>" in line and "tomopick convert" in line and "pass --" not in line


def test_prompt_extract_names_tomogram_voxel_size(tmp_path, capsys):
    tomo = _mrc(tmp_path / "t.mrc", voxel=0.0)
    code, _, err = run(["prompt", "extract", tomo, "--at", "1,1,1", "--out", tmp_path / "p.npz"], capsys)
    line = one_error_line(err)
    assert code == 2 and "pass --tomogram-voxel-size" in line
    code, _, err = run(["info", tomo], capsys)
    assert code == 2 and "pass --voxel-size" in one_error_line(err)


# -- checkpoints -------------------------------------------------------------------------------------------------
class _Arbitrary:
    pass


REFUSED = "not a tomopick checkpoint, or one that would run code on load: refused"


@pytest.mark.parametrize("kind", ["text", "object", "garbage"])
def test_refused_checkpoint_message(tmp_path, kind):
    import torch

    from tomopick.errors import TomopickError
    from tomopick.models import load_checkpoint

    path = tmp_path / "x.pt"
    if kind == "text":
        path.write_text("hello, I am not a checkpoint\n")
    elif kind == "object":
        torch.save({"format": "tomopick-checkpoint", "payload": _Arbitrary()}, path)
    else:
        path.write_bytes(os.urandom(2000))
    with pytest.raises(TomopickError) as exc:
        load_checkpoint(path)
    assert str(exc.value) == f"{path}: {REFUSED}"


# -- train: output folder only after the checks ------------------------------------------------------------------
@pytest.mark.parametrize("data", ["missing", "no_picks", "bad_mrc"])
def test_train_creates_no_output_folder_on_bad_data(tmp_path, capsys, data):
    root = tmp_path / "data"
    if data != "missing":
        root.mkdir()
        tomo = _mrc(root / "t0.mrc")
        if data == "bad_mrc":
            tomo.write_bytes(tomo.read_bytes()[:1100])
            write_picks(Picks.from_arrays(np.zeros((1, 3)), "ribosome", run="t0"), root / "t0.csv")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {kind: folder, path: data}\nparticles: czii\nepochs: 1\n")
    out = tmp_path / "run" / "nested"
    code, _, err = run(["train", cfg, "--out", out, "--quiet"], capsys)
    assert code == 2 and one_error_line(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("command,hint", [("convert", False), ("pick", True)])
def test_out_of_memory_names_batch_size_only_where_it_exists(tmp_path, capsys, monkeypatch, command, hint):
    def no_memory(*_a, **_k):
        raise MemoryError

    if command == "pick":
        import tomopick.workflows.pick as workflow

        monkeypatch.setattr(workflow, "pick", no_memory)
        args = ["pick", tmp_path / "t.mrc", "--out", tmp_path / "p.csv"]
    else:
        import tomopick.workflows.convert as workflow

        monkeypatch.setattr(workflow, "convert", no_memory)
        args = ["convert", tmp_path / "a.csv", tmp_path / "b.csv"]
    code, _, err = run(args, capsys)
    assert code == 1 and one_error_line(err).startswith("error: out of memory")
    assert ("--batch-size" in err) == hint
