"""Reader/writer registry: formats are chosen by URI scheme, by extension, or by sniffing the content.

Each built-in format module (:mod:`tomopick.io.formats`) registers itself with :func:`register` when imported; the
registry imports them, in a fixed order, the first time it is used (:func:`load_builtin_formats`), so importing
:mod:`tomopick.io` has no side effects. Users call
:func:`tomopick.io.read_tomogram`, :func:`~tomopick.io.write_tomogram`, :func:`~tomopick.io.read_picks` and
:func:`~tomopick.io.write_picks`; they never pick a reader by hand unless they pass ``format=``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

from tomopick.errors import TomopickError, pass_option

Kind = Literal["tomogram", "picks"]
ClassStorage = Literal["name", "number", "none"]


@dataclass(frozen=True)
class PicksCapabilities:
    """What a picks format carries through a write and a read (declared, checked against a real round trip in
    ``tests/io/test_picks_roundtrip.py``).

    Attributes
    ----------
    scores
        A score per pick survives.
    orientations
        A rotation per pick survives.
    runs
        A run (tomogram) name per pick survives, so one file can hold several tomograms; without, the reader
        takes ``run=`` (or numbers the tomograms).
    classes
        ``"name"``: class names are stored; ``"number"``: class numbers, mapped back to names through a particle
        set (``particles=``; ``"class<N>"`` without one); ``"none"``: no class (the reader takes ``particle=``).
    needs_pixel_size
        Positions are stored in pixels: writing needs ``voxel_size_A`` (and reading may too, when the file does
        not record it).
    needs_tomogram_shape
        Positions are relative to the tomogram centre: writing and reading need ``tomogram_shape_zyx``.
    """

    scores: bool
    orientations: bool
    runs: bool
    classes: ClassStorage
    needs_pixel_size: bool = False
    needs_tomogram_shape: bool = False

    @property
    def carries(self) -> frozenset[str]:
        """The fields that survive, as names: ``class``, ``score``, ``rotation``, ``run``."""
        return frozenset(name for name, kept in (("class", self.classes != "none"), ("score", self.scores),
                                                 ("rotation", self.orientations), ("run", self.runs)) if kept)


@dataclass(frozen=True)
class Format:
    """One file format.

    Attributes
    ----------
    name
        Short name users pass as ``--format`` (``"mrc"``, ``"relion5"`` …).
    kind
        ``"tomogram"`` or ``"picks"``.
    extensions
        Lower-case suffixes it claims (``".mrc"``, ``".ome.zarr"``); the longest match wins.
    reader, writer
        ``reader(path, **options) -> Tomogram | Picks``; ``writer(obj, path, **options) -> None``. Writers get a
        temporary path and must write exactly there (the caller renames it).
    sniff
        Optional ``sniff(path) -> bool`` to choose between formats sharing an extension (e.g. STAR flavours).
        Formats with a sniffer are tried first, in registration order.
    schemes
        URI schemes it claims (``"copick"``).
    directory
        The format writes a folder rather than a file.
    description
        One line for ``tomopick formats``/``--help``.
    capabilities
        Picks formats: what the format carries (:class:`PicksCapabilities`); ``None`` for tomogram formats and
        for a user's picks format that declares nothing.
    """

    name: str
    kind: Kind
    extensions: tuple[str, ...] = ()
    reader: Callable[..., Any] | None = None
    writer: Callable[..., Any] | None = None
    sniff: Callable[[Path], bool] | None = None
    schemes: tuple[str, ...] = ()
    directory: bool = False
    description: str = ""
    capabilities: PicksCapabilities | None = None


_FORMATS: dict[tuple[str, str], Format] = {}

# The built-in format modules, in registration order (order matters for defaults: within one extension, the first
# format without a sniffer is the default for writing). Imported by name, so import-linter does not see these edges.
BUILTIN_FORMAT_MODULES = tuple(f"tomopick.io.formats.{name}" for name in
                               ("copick", "csv", "dynamo", "imod", "mrc", "omezarr", "star", "tiff"))
_builtins_loaded = False


def load_builtin_formats() -> None:
    """Register the built-in formats (once; every lookup and :func:`register` call does this first, so a user's
    format registered later replaces a built-in one of the same name and never precedes the built-ins)."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True  # before importing: the modules call register() while they load
    for module in BUILTIN_FORMAT_MODULES:
        importlib.import_module(module)


def register(fmt: Format) -> Format:
    """Add (or replace) a format in the registry."""
    load_builtin_formats()
    _FORMATS[(fmt.kind, fmt.name)] = fmt
    return fmt


def formats(kind: Kind | None = None) -> list[Format]:
    load_builtin_formats()
    return [f for f in _FORMATS.values() if kind is None or f.kind == kind]


def get_format(name: str, kind: Kind) -> Format:
    load_builtin_formats()
    try:
        return _FORMATS[(kind, name)]
    except KeyError:
        known = ", ".join(f.name for f in formats(kind))
        raise TomopickError(f"unknown {kind} format {name!r}; known: {known}") from None


def _suffix_match(path: str, fmt: Format) -> int:
    lower = path.lower().rstrip("/")
    return max((len(ext) for ext in fmt.extensions if lower.endswith(ext)), default=0)


def detect(path: str | Path, kind: Kind, *, for_writing: bool = False) -> Format:
    """The format for ``path``: URI scheme, then extension (longest match; sniffers break ties when reading)."""
    text = str(path)
    if "://" in text:
        scheme = text.split("://", 1)[0].lower()
        for fmt in formats(kind):
            if scheme in fmt.schemes:
                return fmt
        raise TomopickError(f"no {kind} format handles URIs with scheme {scheme!r}", text)
    candidates = [(f, _suffix_match(text, f)) for f in formats(kind)]
    candidates = [(f, n) for f, n in candidates if n]
    if not candidates and not for_writing and Path(text).exists():
        for fmt in formats(kind):  # no extension matched: let the content decide (e.g. a copick project folder)
            if fmt.sniff is not None and fmt.sniff(Path(text)):
                return fmt
    if not candidates:
        exts = sorted({e for f in formats(kind) for e in f.extensions})
        hint = pass_option("format_out" if for_writing else "format_in")
        raise TomopickError(f"cannot tell the {kind} format from the file name; known extensions: {', '.join(exts)}"
                            + (f" (or {hint})" if hint else ""), text)
    best = max(n for _, n in candidates)
    candidates = [f for f, n in candidates if n == best]
    if len(candidates) == 1:
        return candidates[0]
    if not for_writing and Path(text).exists():
        for fmt in candidates:
            if fmt.sniff is not None and fmt.sniff(Path(text)):
                return fmt
    # default for writing (or when nothing sniffs): the first registered without a sniffer, else the first
    plain = [f for f in candidates if f.sniff is None]
    return (plain or candidates)[0]
