"""Atomic outputs: like replaces like only (never a folder by a file or a file by a folder, even with overwrite),
and outputs get the permissions of any new file (umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io import atomic_output, check_output, write_picks, write_tomogram


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def _picks() -> Picks:
    return Picks.from_arrays(np.array([[10.0, 20, 30]]), ["ribosome"], run="TS_1")


def test_folder_is_never_replaced_by_a_file(tmp_path):
    folder = tmp_path / "out.csv"
    folder.mkdir()
    (folder / "keep").write_text("precious")
    for overwrite in (False, True):
        with pytest.raises(TomopickError, match="is a folder; will not replace a folder by a file"):
            write_picks(_picks(), folder, overwrite=overwrite)
    assert (folder / "keep").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]  # no temporary file left


def test_file_is_never_replaced_by_a_folder(tmp_path):
    target = tmp_path / "t.zarr"
    target.write_text("a file")
    tomo = Tomogram(np.zeros((4, 4, 4), np.float32), 10.0)
    with pytest.raises(TomopickError, match="is a file; will not replace a file by a folder"):
        write_tomogram(tomo, target, overwrite=True)
    assert target.read_text() == "a file" and sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]


def test_check_output_knows_the_kind_early(tmp_path):
    (tmp_path / "d").mkdir()
    with pytest.raises(TomopickError, match="is a folder"):
        check_output(tmp_path / "d", overwrite=True, create_parent=False, directory=False)
    assert check_output(tmp_path / "d", overwrite=True, create_parent=False, directory=True) == tmp_path / "d"
    assert check_output(tmp_path / "d", overwrite=True) == tmp_path / "d"  # kind unknown: not checked yet


def test_folder_replaces_folder_with_overwrite(tmp_path, umask_022):
    target = tmp_path / "t.zarr"
    tomo = Tomogram(np.zeros((4, 4, 4), np.float32), 10.0)
    write_tomogram(tomo, target)
    write_tomogram(Tomogram(np.ones((4, 4, 4), np.float32), 10.0), target, overwrite=True)
    assert target.is_dir() and _mode(target) == 0o755
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.zarr"]  # no backup or temporary folder left


@pytest.mark.parametrize("mask,expected", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_files_respect_the_umask(tmp_path, mask, expected):
    old = os.umask(mask)
    try:
        first = write_picks(_picks(), tmp_path / "a.csv")
        replaced = tmp_path / "b.csv"
        replaced.write_text("old")
        write_picks(_picks(), replaced, overwrite=True)
        with atomic_output(tmp_path / "c.txt") as tmp:
            tmp.write_text("x")
    finally:
        os.umask(old)
    assert _mode(first) == expected and _mode(replaced) == expected and _mode(tmp_path / "c.txt") == expected
