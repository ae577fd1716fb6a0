"""Write outputs atomically: to a temporary sibling, then rename; refuse to overwrite unless asked."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tomopick.errors import OutputExistsError, TomopickError


def check_output(path: str | os.PathLike[str], overwrite: bool = False, create_parent: bool = True,
                 directory: bool | None = None) -> Path:
    """Validate an output path before any work is done: refuse an existing output without ``overwrite``, a folder
    where a file will be written (or a file where a folder will), even with ``overwrite``, and a parent folder
    that cannot be created or written. Returns the path.

    With ``create_parent=False`` nothing is created: the nearest existing ancestor must be a writable folder
    (use this for early checks, so that a later failure leaves no empty folders behind). ``directory`` says
    whether the output is a folder (``None``: not known yet, only checked by :func:`atomic_output`)."""
    path = Path(path)
    if directory is not None:
        check_output_kind(path, directory)
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists; pass --overwrite to replace it", path)
    parent = path.parent if str(path.parent) else Path(".")
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise TomopickError(f"cannot create output folder ({existing} is a file)", parent)
    if not create_parent:
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
    final = check_output(path, overwrite, directory=directory)
    suffix = "".join(final.suffixes) or ""
    if directory:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=f".tmp{suffix}", dir=final.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        # mkstemp/mkdtemp create 0600/0700: give the output the permissions of any new file (umask applies)
        os.chmod(tmp, (0o777 if directory else 0o666) & ~_umask())
        check_output_kind(final, directory)  # the path may have changed while the writer ran
        if directory and final.exists():
            backup = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, backup)  # an empty folder is replaced by a folder
            try:
                os.replace(tmp, final)
            except BaseException:
                os.replace(backup, final)
                raise
            shutil.rmtree(backup, ignore_errors=True)
            return
        os.replace(tmp, final)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def check_output_kind(path: str | os.PathLike[str], directory: bool) -> None:
    """Refuse to replace a folder by a file or a file by a folder (``--overwrite`` replaces like by like only)."""
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return
    if path.is_symlink() and directory:
        raise TomopickError("is a link; will not replace it by a folder (remove it or choose another name)", path)
    if path.is_dir() and not directory:
        raise TomopickError("is a folder; will not replace a folder by a file (remove it or choose another name)",
                            path)
    if directory and not path.is_dir():
        raise TomopickError("is a file; will not replace a file by a folder (remove it or choose another name)",
                            path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
