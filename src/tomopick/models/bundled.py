"""Models shipped inside the package (``tomopick/models/weights/``), verified by SHA-256 before loading.

Each bundled model ``NAME`` is three files: ``NAME.pt`` (a tomopick checkpoint, float16 weights), ``NAME.sha256``
(its digest, ``sha256sum`` format) and a section of ``MODEL_CARD.md``.

>>> from tomopick.models.bundled import bundled_names
>>> "czii-10A" in bundled_names()
True
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from tomopick.errors import TomopickError
from tomopick.models.checkpoint import LoadedModel, load_checkpoint

DEFAULT_MODEL = "czii-10A"
_PACKAGE = "tomopick.models.weights"


def _weights_dir() -> Path:
    return Path(str(resources.files(_PACKAGE)))


#: what each bundled model does, when not picking (its checkpoint config's ``task``; tests keep this in step), so
#: that listing the models for ``--model`` does not load every checkpoint
_TASKS = {"membrane-10A": "segment"}


def bundled_names(task: str | None = None) -> list[str]:
    """Names of the bundled models (those with both a ``.pt`` and a ``.sha256`` file); with ``task`` (``"pick"``
    or ``"segment"``) only those that do that."""
    folder = _weights_dir()
    names = sorted(p.stem for p in folder.glob("*.pt") if (folder / f"{p.stem}.sha256").is_file())
    return names if task is None else [n for n in names if _TASKS.get(n, "pick") == task]


def bundled_model_path(name: str = DEFAULT_MODEL) -> Path:
    """Path of a bundled model's checkpoint file.

    Raises
    ------
    TomopickError
        The name is not a bundled model.
    """
    path = _weights_dir() / f"{name}.pt"
    if not path.is_file():
        known = ", ".join(bundled_names()) or "none"
        raise TomopickError(f"no bundled model {name!r} (bundled: {known})")
    return path


def bundled_sha256(name: str = DEFAULT_MODEL) -> str:
    """The recorded SHA-256 (hex) of a bundled model."""
    path = _weights_dir() / f"{name}.sha256"
    if not path.is_file():
        raise TomopickError("bundled model has no recorded checksum", path)
    digest = path.read_text().split()[0].strip().lower() if path.read_text().strip() else ""
    if len(digest) != 64:
        raise TomopickError("malformed checksum file", path)
    return digest


def bundled_name(model: object) -> str | None:
    """``model`` when it names a bundled model (``"czii-10A"``, ``"generalist-10A"``, or the short form without
    ``-10A``) and no file of that name exists, else ``None`` — so ``--model generalist`` works from any folder."""
    if not isinstance(model, str) or Path(model).exists():
        return None
    names = bundled_names()
    for candidate in (model, f"{model}-10A"):
        if candidate in names:
            return candidate
    return None


def load_bundled(name: str = DEFAULT_MODEL) -> LoadedModel:
    """Load a bundled model after checking its SHA-256 (``weights_only=True``)."""
    return load_checkpoint(bundled_model_path(name), sha256=bundled_sha256(name))
