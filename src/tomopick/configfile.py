"""Configs are data: read YAML mappings and turn pydantic validation errors into one-line user errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from tomopick.errors import TomopickError


def read_yaml_mapping(path: str | Path, *, missing: str = "config file not found",
                      not_mapping: str = "expected a mapping at the top level",
                      empty_ok: bool = False) -> dict[str, Any]:
    """The top-level mapping of a YAML file; a missing file, bad YAML or a non-mapping raise :class:`TomopickError`.

    Parameters
    ----------
    missing, not_mapping
        The messages for a missing file and for a document that is not a mapping.
    empty_ok
        An empty file reads as ``{}`` instead of an error.
    """
    path = Path(path)
    if not path.is_file():
        raise TomopickError(missing, path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise TomopickError(f"malformed YAML ({str(exc).splitlines()[0]})", path) from None
    if raw is None and empty_ok:
        return {}
    if not isinstance(raw, dict):
        raise TomopickError(not_mapping, path)
    return raw


def first_error(exc: ValidationError) -> str:
    """``"<field.path>: <message>"`` of a pydantic error's first problem."""
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]
