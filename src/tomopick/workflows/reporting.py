"""Reading what the HTML picking report shows, and writing it (shared by ``report``, ``pick --report``, ``evaluate
--report`` and the demo; not a verb, so the verbs may all import it).

The page itself is made by :func:`tomopick.viz.report.render_report` (pure); here: tomograms opened lazily and
loaded when small enough, tomograms of copick runs found, a model's card read, the file written atomically.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io import atomic_output, check_output, read_tomogram
from tomopick.io.inputs import expand_inputs, run_name

#: Tomograms are read into memory once (fast slabs and galleries) while their float32 sizes add up to at most this;
#: the others stay lazy (memory-mapped MRC, chunked zarr) and only the slabs and boxes shown are read.
MAX_LOAD_BYTES = 2 << 30

REPORT_SUFFIXES = (".html", ".htm")


def check_report_output(path: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Refuse a report path that is not ``.html``, exists without ``overwrite``, or is a folder (before any work)."""
    path = Path(path)
    if path.suffix.lower() not in REPORT_SUFFIXES:
        raise TomopickError("the report is one HTML file: give a path ending in .html", path)
    return check_output(path, overwrite, create_parent=False, directory=False)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command being run, quoted so that it can be pasted into a shell (``tomopick …``); ``argv`` defaults to
    this process's. A process that is not the ``tomopick`` script (the CLI called from Python) says so."""
    args = list(sys.argv if argv is None else argv)
    if args and Path(args[0]).name == "tomopick":
        return shlex.join(["tomopick", *args[1:]])
    return f"(tomopick called from another program: {shlex.join(args)})"


def open_tomograms(inputs: Sequence[str | os.PathLike[str]], *, voxel_size_A: float | None = None) -> dict[str, Tomogram]:
    """Tomograms by run name (lazy; headers only). A copick URI without ``run=`` expands to every run."""
    if not inputs:
        return {}
    items = expand_inputs(list(inputs))
    out: dict[str, Tomogram] = {}
    options = {"voxel_size_A": voxel_size_A} if voxel_size_A is not None else {}
    for item in items:
        run = run_name(item)
        if run in out:
            raise TomopickError(f"several tomograms share the run name {run!r}; rename them", item)
        out[run] = read_tomogram(item, **options)
    return out


def load_if_small(tomogram: Tomogram, max_bytes: int = MAX_LOAD_BYTES) -> Tomogram:
    """The tomogram in memory as float32 when it is at most ``max_bytes`` (as float32), else unchanged (lazy)."""
    if isinstance(tomogram.data, np.ndarray) and not isinstance(tomogram.data, np.memmap):
        return tomogram
    if int(np.prod(tomogram.shape)) * 4 > max_bytes:
        return tomogram
    return tomogram.with_data(tomogram.load(np.float32))


def copick_tomogram_uris(source: str | os.PathLike[str], runs: Sequence[str]) -> list[str]:
    """``copick://`` URIs of the given runs when ``source`` is a copick project (config JSON, folder or URI) that
    holds a tomogram for them; ``[]`` otherwise (a plain picks file names no tomogram)."""
    text = str(source)
    if text.startswith("copick://"):
        root = text.split("://", 1)[1].split("?", 1)[0]
    else:
        path = Path(text)
        if path.is_dir() and (path / "copick_config.json").is_file():
            root = str(path)
        elif path.is_file() and path.suffix == ".json" and path.name.startswith("copick"):
            root = str(path)
        else:
            return []
    uris = []
    for run in runs:
        uri = f"copick://{root}?run={run}"
        try:
            read_tomogram(uri)
        except (TomopickError, OSError, KeyError, ValueError):
            continue
        uris.append(uri)
    return uris


def model_card(model: Any | None) -> dict[str, Any] | None:
    """What the report shows about a model: its file, network, classes, voxel size, pick defaults and card. ``model``
    is a checkpoint path, a loaded model, or ``"bundled"``/``None`` for the bundled ``czii-10A``."""
    from tomopick.models.checkpoint import LoadedModel, load_checkpoint

    if isinstance(model, LoadedModel):
        loaded = model
    elif model is None or str(model) == "bundled":
        from tomopick.models.bundled import load_bundled

        loaded = load_bundled()
    else:
        loaded = load_checkpoint(model)
    config = loaded.config
    keys = ("network", "classes", "voxel_size_A", "patch_size", "normalisation", "target", "pick")
    return {"file": str(loaded.path) if loaded.path else "(in memory)",
            **{k: config[k] for k in keys if k in config}, "card": loaded.card}


def picks_by_run(picks: Picks, runs: Sequence[str]) -> Picks:
    """``picks`` with an empty run name set to the single run given (a bare CSV for one tomogram)."""
    if len(picks) and set(picks.runs) == {""} and len(runs) == 1:
        return picks.with_columns(run=runs[0])
    return picks


def write_report_html(text: str, out: str | os.PathLike[str], overwrite: bool = False) -> Path:
    """Write the HTML atomically (a temporary sibling renamed onto ``out``)."""
    with atomic_output(out, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(out)


def report_input(picks: Picks, truth: Picks | None, particles: Any, tomograms: dict[str, Tomogram], *,
                 segmentations: dict[str, Tomogram] | None = None, max_load_bytes: int = MAX_LOAD_BYTES,
                 **fields: Any):
    """A :class:`~tomopick.viz.report.ReportInput` with one run per run name of the tomograms, picks and truth
    (tomograms loaded when small; segmentations, by run name, must have their tomogram's shape); ``fields`` fill
    the rest (thresholds, evaluation, model_card, command …)."""
    from tomopick.viz.report import ReportInput, RunInput

    names = list(dict.fromkeys([*tomograms, *picks.runs, *(truth.runs if truth is not None else [])]))
    segmentations = segmentations or {}
    for name, seg in segmentations.items():
        if name not in tomograms:
            raise TomopickError(f"a segmentation of run {name!r} was given but no tomogram of that run",
                                seg.source or None)
        if seg.shape != tomograms[name].shape:
            raise TomopickError(f"segmentation shape {seg.shape} differs from its tomogram's {tomograms[name].shape}",
                                seg.source or None)
    runs = []
    budget = max_load_bytes  # for all tomograms together: a report of 100 runs must not hold 100 in memory
    for name in names:
        tomo = tomograms.get(name)
        seg = segmentations.get(name)
        if tomo is not None:
            loaded = load_if_small(tomo, budget)
            budget -= int(np.prod(tomo.shape)) * 4 if loaded is not tomo else 0
            tomo = loaded
        runs.append(RunInput(run=name, tomogram=tomo,
                             picks=picks.for_run(name), truth=None if truth is None else truth.for_run(name),
                             segmentation=None if seg is None else seg.data))
    return ReportInput(runs=runs, particles=particles, **fields)
