"""Write outputs atomically: to a temporary sibling, then rename; refuse to overwrite unless asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tomopick.errors import OutputExistsError, TomopickError


def check_output(path: str | os.PathLike[str], overwrite: bool = False, create_parent: bool = True) -> Path:
    """Validate an output path before any work is done: refuse an existing output without ``overwrite`` and a
    parent folder that cannot be created or written. Returns the path.

    With ``create_parent=False`` nothing is created: the nearest existing ancestor must be a writable folder
    (use this for early checks, so that a later failure leaves no empty folders behind)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists; pass --overwrite to replace it", path)
    parent = path.parent if str(path.parent) else Path(".")
    if not create_parent:
        existing = parent
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise TomopickError("cannot create output folder (Not a directory)", parent)
        if not os.access(existing, os.W_OK | os.X_OK):
            raise TomopickError("output folder is not writable", existing)
        return path
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TomopickError(f"cannot create output folder ({exc.strerror or exc})", parent) from None
    if not os.access(parent, os.W_OK | os.X_OK):
        raise TomopickError("output folder is not writable", parent)
    return path


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str], overwrite: bool = False, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``, on error remove it.

    Parameters
    ----------
    path
        Final output (file, or folder when ``directory`` is True, e.g. a zarr store).
    overwrite
        Replace an existing output (only after the new one is complete).
    directory
        The output is a folder: the temporary path is an empty folder created for the writer.
    """
    final = check_output(path, overwrite)
    suffix = "".join(final.suffixes) or ""
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if final.exists():
            if final.is_dir() and not final.is_symlink():
                backup = final.with_name(f".{final.name}.old")
                if backup.exists():
                    shutil.rmtree(backup)
                os.replace(final, backup)
                os.replace(tmp, final)
                shutil.rmtree(backup, ignore_errors=True)
                return
        if not directory:
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
