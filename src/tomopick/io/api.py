"""The four verbs of :mod:`tomopick.io`. The format modules register the first time the registry is used."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io.atomic import atomic_output
from tomopick.io.registry import Format, detect, get_format


def _resolve(path: str | Path, kind: str, fmt: str | None, for_writing: bool) -> Format:
    return get_format(fmt, kind) if fmt else detect(path, kind, for_writing=for_writing)  # type: ignore[arg-type]


def _check_exists(path: str | Path) -> None:
    """An input must exist, and a file must not be empty (0 bytes: never a valid tomogram or picks file)."""
    text = str(path)
    if "://" in text:
        return
    if not Path(text).exists():
        raise TomopickError("file not found", text)
    if Path(text).is_file() and Path(text).stat().st_size == 0:
        raise TomopickError("file is empty (0 bytes)", text)


def read_tomogram(path: str | Path, *, format: str | None = None, **options: Any) -> Tomogram:
    """Read a tomogram lazily where the format allows (MRC memory-mapped, zarr chunked)."""
    _check_exists(path)
    fmt = _resolve(path, "tomogram", format, False)
    if fmt.reader is None:
        raise TomopickError(f"format {fmt.name!r} cannot be read", path)
    return fmt.reader(Path(path) if "://" not in str(path) else str(path), **options)


def write_tomogram(tomogram: Tomogram, path: str | Path, *, format: str | None = None, overwrite: bool = False,
                   **options: Any) -> Path:
    """Write a tomogram atomically; refuses to replace ``path`` unless ``overwrite``."""
    fmt = _resolve(path, "tomogram", format, True)
    if fmt.writer is None:
        raise TomopickError(f"format {fmt.name!r} cannot be written", path)
    if "://" in str(path):
        fmt.writer(tomogram, str(path), overwrite=overwrite, **options)
        return Path(str(path).split("://", 1)[1].split("?", 1)[0])
    with atomic_output(path, overwrite=overwrite, directory=fmt.directory) as tmp:
        _write_named(fmt, tomogram, tmp, path, options)
    return Path(path)


def read_picks(path: str | Path, *, format: str | None = None, **options: Any) -> Picks:
    """Read picks from any supported format (positions converted to Å, ``x, y, z``)."""
    _check_exists(path)
    fmt = _resolve(path, "picks", format, False)
    if fmt.reader is None:
        raise TomopickError(f"format {fmt.name!r} cannot be read", path)
    return fmt.reader(Path(path) if "://" not in str(path) else str(path), **options)


def write_picks(picks: Picks, path: str | Path, *, format: str | None = None, overwrite: bool = False,
                **options: Any) -> Path:
    """Write picks atomically; refuses to replace ``path`` unless ``overwrite``."""
    fmt = _resolve(path, "picks", format, True)
    if fmt.writer is None:
        raise TomopickError(f"format {fmt.name!r} cannot be written", path)
    if "://" in str(path):  # URI formats (copick://) write into their project themselves, atomically per file
        fmt.writer(picks, str(path), overwrite=overwrite, **options)
        return Path(str(path).split("://", 1)[1].split("?", 1)[0])
    with atomic_output(path, overwrite=overwrite, directory=fmt.directory) as tmp:
        _write_named(fmt, picks, tmp, path, options)
    return Path(path)


def _write_named(fmt: Format, obj: Any, tmp: Path, final: str | Path, options: dict[str, Any]) -> None:
    """Run a writer on the temporary path; its errors name the final path, not the temporary one."""
    try:
        fmt.writer(obj, tmp, **options)
    except TomopickError as exc:
        if exc.path == str(tmp):
            raise TomopickError(exc.message, final) from None
        raise
