"""CSV picks: the Kaggle CZII submission layout (Å) and plain ``x,y,z`` lists (pixels).

* **csv** (the default for ``.csv``): the Kaggle layout ``id,experiment,particle_type,x,y,z`` plus a ``score``
  column when the picks have scores; positions in Å from the centre of voxel (0, 0, 0), ``experiment`` = run.
  Reading also accepts the training-label layout (``x,y,z,particle_type,experiment[,fold]``), an optional
  ``score`` column and no ``id``. No orientations.
* **kaggle**: the CZII Kaggle submission, exactly ``id,experiment,particle_type,x,y,z`` (scores dropped); only
  when asked for by name (``--format-out kaggle`` / ``format="kaggle"``). Read like **csv**.
* **xyz**: one pick per line, ``x,y,z`` in pixels (voxel (0, 0, 0) at 0), optional header ``x,y,z`` and an
  optional 4th column ``score``; the class (``particle=``), run (``run=``) and pixel size (``voxel_size_A=``)
  come in as options.
"""

from __future__ import annotations

import csv as _csv
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.io.formats._common import extra_values, parse_extra, positive_voxel_size, run_names
from tomopick.io.registry import Format, PicksCapabilities, register

KAGGLE_COLUMNS = ("id", "experiment", "particle_type", "x", "y", "z")


def _read_frame(path: Path, header: bool = True) -> pd.DataFrame:
    try:
        return pd.read_csv(path, header=0 if header else None, dtype=str, keep_default_na=False,
                           skipinitialspace=True)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise TomopickError(f"malformed CSV ({str(exc).splitlines()[0]})", path) from None


def _scores(frame: pd.DataFrame, path: Path) -> np.ndarray:
    """The ``score`` column; an empty field (or ``nan``) is a pick without a score, e.g. one added by hand."""
    text = frame["score"].astype(str).str.strip()
    missing = text.str.lower().isin(["", "nan"]).to_numpy()
    values = np.full(len(frame), np.nan)
    if (~missing).any():
        values[~missing] = _floats(frame.loc[~missing, ["score"]], ["score"], path)[:, 0]
    return values


def _floats(frame: pd.DataFrame, cols: list[str], path: Path) -> np.ndarray:
    try:
        values = frame[cols].apply(lambda c: pd.to_numeric(c.str.strip(), errors="raise")).to_numpy(np.float64)
    except (ValueError, TypeError, AttributeError) as exc:
        raise TomopickError(f"malformed CSV: non-numeric value in {', '.join(cols)} ({exc})", path) from None
    if values.size and not np.all(np.isfinite(values)):
        raise TomopickError(f"malformed CSV: non-finite value in {', '.join(cols)}", path)
    return values


def read_kaggle(path: Path, *, particle: str | None = None, run: str | None = None, **_: Any) -> Picks:
    """Read a Kaggle-style CSV (positions in Å)."""
    path = Path(path)
    frame = _read_frame(path)
    frame.columns = [str(c).strip() for c in frame.columns]
    need = ["x", "y", "z"] + ([] if particle else ["particle_type"])
    missing = [c for c in need if c not in frame.columns]
    if missing:
        raise TomopickError(f"CSV lacks column(s) {', '.join(missing)} (expected {','.join(KAGGLE_COLUMNS)})", path)
    xyz = _floats(frame, ["x", "y", "z"], path)
    names = [particle] * len(frame) if particle else [str(v).strip() for v in frame["particle_type"]]
    if any(not n for n in names):
        raise TomopickError("malformed CSV: empty particle_type", path)
    runs = [str(v).strip() for v in frame["experiment"]] if "experiment" in frame.columns else [run or ""] * len(frame)
    score = _scores(frame, path) if "score" in frame.columns else None
    picks = Picks.from_arrays(xyz, names, score=score, run=runs)
    known = set(KAGGLE_COLUMNS) | {"score", "fold"}
    extras = {c: parse_extra(frame[c]) for c in frame.columns if c not in known and c}
    return picks.with_extra(**extras) if extras and len(frame) else picks


def _write_table(picks: Picks, path: Path, run: str | None, scores: bool) -> None:
    xyz = picks.xyz_A
    score = picks.scores if scores and picks.has_scores else None
    extras = extra_values(picks) if scores else {}  # the strict Kaggle layout writes none
    with open(path, "w", newline="") as fh:
        w = _csv.writer(fh)
        w.writerow(KAGGLE_COLUMNS + (("score",) if score is not None else ()) + tuple(extras))
        for i, (r, p, (x, y, z)) in enumerate(zip(run_names(picks, run), picks.frame["particle"], xyz)):
            w.writerow([i, r, p, repr(float(x)), repr(float(y)), repr(float(z))]
                       + ([repr(float(score[i])) if np.isfinite(score[i]) else ""] if score is not None else [])
                       + [repr(v[i]) if isinstance(v[i], float) else v[i] for v in extras.values()])


def write_csv(picks: Picks, path: Path, *, run: str | None = None, **_: Any) -> None:
    """Write ``id,experiment,particle_type,x,y,z[,score]`` (Å, full precision; ``score`` when the picks have
    scores, so that thresholds can be chosen later, e.g. ``tomopick evaluate --sweep``), then any extra columns
    (e.g. ``distance_to_membrane_A``)."""
    _write_table(picks, path, run, scores=True)


def write_kaggle(picks: Picks, path: Path, *, run: str | None = None, **_: Any) -> None:
    """Write a Kaggle CZII submission: exactly ``id,experiment,particle_type,x,y,z`` (Å, full precision)."""
    _write_table(picks, path, run, scores=False)


def read_xyz(path: Path, *, voxel_size_A: Any = None, particle: str | None = None, run: str | None = None,
             **_: Any) -> Picks:
    """Read a plain ``x,y,z[,score]`` list in pixels."""
    path = Path(path)
    vs = positive_voxel_size(voxel_size_A, path, "a plain x,y,z list")
    first = ""
    try:
        with open(path, encoding="utf-8") as fh:
            first = fh.readline()
    except UnicodeDecodeError:
        raise TomopickError("malformed CSV (not text)", path) from None
    has_header = any(c.isalpha() for c in first.replace("e", "").replace("E", "").replace("nan", ""))
    frame = _read_frame(path, header=has_header)
    if has_header:
        frame.columns = [str(c).strip().lower() for c in frame.columns]
        missing = [c for c in ("x", "y", "z") if c not in frame.columns]
        if missing:
            raise TomopickError(f"CSV lacks column(s) {', '.join(missing)}", path)
        cols = ["x", "y", "z"] + (["score"] if "score" in frame.columns else [])
    else:
        if frame.shape[1] not in (0, 3, 4):
            raise TomopickError(f"malformed CSV: {frame.shape[1]} columns, expected x,y,z[,score]", path)
        frame.columns = ["x", "y", "z", "score"][: frame.shape[1]]
        cols = list(frame.columns)
    values = _floats(frame, cols, path) if len(frame) else np.zeros((0, len(cols)))
    return Picks.from_arrays(values[:, :3] * vs, particle or "particle",
                             score=values[:, 3] if len(cols) == 4 else None, run=run or "")


def write_xyz(picks: Picks, path: Path, *, voxel_size_A: Any = None, **_: Any) -> None:
    """Write ``x,y,z`` in pixels (plus ``score`` when the picks have scores)."""
    vs = positive_voxel_size(voxel_size_A, path, "a plain x,y,z list")
    px = picks.xyz_A / vs
    with open(path, "w", newline="") as fh:
        w = _csv.writer(fh)
        scores = picks.scores if picks.has_scores else None
        w.writerow(["x", "y", "z"] + (["score"] if scores is not None else []))
        for i, row in enumerate(px):
            w.writerow([repr(float(v)) for v in row] + ([repr(float(scores[i]))] if scores is not None else []))


def _sniff_xyz(path: Path) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            first = fh.readline().strip().lower()
    except OSError:
        return False
    return "particle_type" not in first and "experiment" not in first


# "csv" is registered first and has no sniffer, so it is what a ".csv" output gets by default (registry.detect)
register(Format(name="csv", kind="picks", extensions=(".csv",), reader=read_kaggle, writer=write_csv,
                description="CSV in Å: id,experiment,particle_type,x,y,z[,score] (Kaggle layout + scores)",
                capabilities=PicksCapabilities(scores=True, orientations=False, runs=True, classes="name")))
register(Format(name="xyz", kind="picks", extensions=(".csv", ".xyz", ".txt"), reader=read_xyz, writer=write_xyz,
                sniff=_sniff_xyz, description="plain x,y,z[,score] list in pixels (--voxel-size, --particle)",
                capabilities=PicksCapabilities(scores=True, orientations=False, runs=False, classes="none",
                                               needs_pixel_size=True)))
register(Format(name="kaggle", kind="picks", extensions=(".csv",), reader=read_kaggle, writer=write_kaggle,
                description="Kaggle CZII submission: exactly id,experiment,particle_type,x,y,z in Å (no scores)",
                capabilities=PicksCapabilities(scores=False, orientations=False, runs=True, classes="name")))
