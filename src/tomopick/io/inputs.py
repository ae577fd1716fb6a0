"""Input naming shared by the verbs that take many tomograms: run names from paths or copick URIs, and copick
project URIs expanded to one URI per run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from tomopick.errors import TomopickError


def run_name(path: str) -> str:
    """A run name for an input: the copick ``run=`` of a URI, else the file name without its extensions."""
    text = str(path)
    if text.startswith("copick://"):
        from urllib.parse import parse_qs

        query = text.split("?", 1)[1] if "?" in text else ""
        return parse_qs(query).get("run", [""])[-1]
    name = Path(text.rstrip("/")).name
    for ext in (".ome.zarr", ".zarr", ".mrc", ".rec", ".map", ".st", ".mrcs", ".ali", ".tif", ".tiff"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return Path(name).stem


def expand_inputs(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Inputs as strings; a copick URI without ``run=`` expands to every run of the project."""
    out: list[str] = []
    for item in inputs:
        text = str(item)
        if text.startswith("copick://") and "run=" not in text:
            from tomopick.io.copick_project import CopickProject
            from tomopick.io.formats.copick import parse_copick_uri

            target, _ = parse_copick_uri(text)
            runs = CopickProject.open(target).runs()
            if not runs:
                raise TomopickError("the copick project has no runs", text)
            sep = "&" if "?" in text else "?"
            out.extend(f"{text}{sep}run={r}" for r in runs)
        else:
            out.append(text)
    if not out:
        raise TomopickError("no input tomograms given")
    return out
