"""copick picks: single JSON files (one particle class each) and whole projects addressed by a ``copick://`` URI.

A copick pick file (also the CryoET Data Portal / Kaggle CZII layout)::

    {"pickable_object_name": "apo-ferritin", "user_id": "curation", "session_id": "0", "run_name": "TS_5_4",
     "voxel_spacing": null, "unit": "angstrom",
     "points": [{"location": {"x": 468.5, "y": 5915.9, "z": 604.2},
                 "transformation_": [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]],
                 "instance_id": 0, "score": 0.93}],
     "trust_orientation": true}

``location`` is in Å from the centre of voxel (0, 0, 0) — tomopick's own convention — and the particle centre is
``location + transformation_[:3, 3]``. The upper-left 3×3 of ``transformation_`` is the rotation that takes the
reference into the particle (tomopick's convention, :mod:`tomopick.data.rotations`). ``score`` is optional
(absent → NaN in tomopick; copick itself reads it as 1.0). ``trust_orientation: false`` → angles NaN.

URI syntax (both picks and tomograms)::

    copick://<copick config .json, or the project folder holding copick_config.json>?run=TS_5_4&user=curation
        &session=0&particle=ribosome&voxel_size=10.012&tomo_type=denoised&level=0

Every query key is optional; picks read every matching run/user/session/particle, tomograms need the run (unless
the project has one) and take the only tomogram type / voxel spacing when there is just one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tomopick.data import Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io.copick_document import copick_document, parse_copick_document
from tomopick.io.copick_project import CopickProject
from tomopick.io.registry import Format, PicksCapabilities, register

__all__ = ["copick_document", "parse_copick_document", "parse_copick_uri", "read_copick_picks",
           "read_copick_tomogram", "write_copick_picks", "write_copick_tomogram"]


# -- single files ---------------------------------------------------------------------------------------------
def _load_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except UnicodeDecodeError:
        raise TomopickError("not a text JSON file", path) from None
    except json.JSONDecodeError as exc:
        raise TomopickError(f"malformed JSON (line {exc.lineno}: {exc.msg})", path) from None


def read_copick_picks(path: Path | str, *, particle: str | None = None, run: str | None = None,
                      user_id: str | None = None, session_id: str | None = None, **_: Any) -> Picks:
    """Read a copick pick file (``.json``), a copick config (reads the whole project) or a ``copick://`` URI."""
    text = str(path)
    if text.startswith("copick://"):
        return _read_uri_picks(text, particle=particle, run=run, user_id=user_id, session_id=session_id)
    if Path(path).is_dir():
        return CopickProject.open(path).read_picks(run=run, particle=particle, user_id=user_id,
                                                   session_id=session_id)
    doc = _load_json(Path(path))
    if isinstance(doc, dict) and "pickable_objects" in doc:
        return CopickProject.open(path).read_picks(run=run, particle=particle, user_id=user_id,
                                                   session_id=session_id)
    return parse_copick_document(doc, path, particle=particle, run=run)


def write_copick_picks(picks: Picks, path: Path | str, *, particle: str | None = None, run: str | None = None,
                       user_id: str | None = None, session_id: str | None = None,
                       voxel_size_A: float | None = None, overwrite: bool = False, **_: Any) -> None:
    """Write one class of picks to a copick JSON file (or, for a ``copick://`` URI, into a project)."""
    text = str(path)
    if text.startswith("copick://"):
        _write_uri_picks(picks, text, particle=particle, run=run, user_id=user_id, session_id=session_id,
                         overwrite=overwrite)
        return
    if particle and len(picks.particles) <= 1:
        picks = picks.with_columns(particle=particle) if len(picks) else picks
    doc = copick_document(picks, particle=particle, run=run, user_id=user_id, session_id=session_id,
                          voxel_size_A=voxel_size_A, source=path)
    Path(path).write_text(json.dumps(doc))


# -- URIs -----------------------------------------------------------------------------------------------------
def parse_copick_uri(uri: str) -> tuple[str, dict[str, str]]:
    """``copick://<config or root>?k=v&…`` → (target path, query dict)."""
    body = uri.split("://", 1)[1]
    target, _, query = body.partition("?")
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=False).items()}
    known = {"run", "user", "session", "particle", "voxel_size", "tomo_type", "level"}
    unknown = sorted(set(params) - known)
    if unknown:
        raise TomopickError(f"unknown copick URI key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}", uri)
    if not target:
        raise TomopickError("copick URI lacks the project path (copick://<config.json or folder>?run=…)", uri)
    return target, params


def _read_uri_picks(uri: str, *, particle: str | None, run: str | None, user_id: str | None,
                    session_id: str | None) -> Picks:
    target, q = parse_copick_uri(uri)
    project = CopickProject.open(target)
    return project.read_picks(run=q.get("run", run), particle=q.get("particle", particle),
                              user_id=q.get("user", user_id), session_id=q.get("session", session_id))


def _write_uri_picks(picks: Picks, uri: str, *, particle: str | None, run: str | None, user_id: str | None,
                     session_id: str | None, overwrite: bool) -> None:
    target, q = parse_copick_uri(uri)
    project = CopickProject.open(target)
    name = q.get("particle", particle)
    if name:
        picks = picks.with_columns(particle=name) if len(picks) else picks
    run = q.get("run", run)
    runs = [r for r in picks.runs if r]
    if run is None:
        if len(runs) != 1:
            raise TomopickError(f"the copick URI needs ?run=<name> (the picks name {len(runs)} runs, "
                                "expected exactly one)", uri)
        run = runs[0]
    users = [u for u in dict.fromkeys(picks.frame["user"]) if u]
    sessions = [s for s in dict.fromkeys(picks.frame["session"]) if s]
    project.write_picks(run, picks, user_id=q.get("user", user_id) or (users[0] if len(users) == 1 else "tomopick"),
                        session_id=q.get("session", session_id) or (sessions[0] if len(sessions) == 1 else "0"),
                        overwrite=overwrite)


def read_copick_tomogram(path: str, *, run: str | None = None, voxel_size_A: float | None = None,
                         tomo_type: str | None = None, level: int = 0, **_: Any) -> Tomogram:
    """Read a tomogram from a copick project URI (lazy OME-Zarr)."""
    target, q = parse_copick_uri(str(path))
    project = CopickProject.open(target)
    vs = q.get("voxel_size")
    try:
        level = int(q.get("level", level))
        vs_value = float(vs) if vs is not None else voxel_size_A
    except ValueError:
        raise TomopickError("copick URI: voxel_size must be a number and level an integer", path) from None
    return project.read_tomogram(q.get("run", run), voxel_size_A=vs_value, tomo_type=q.get("tomo_type", tomo_type),
                                 level=level)


def write_copick_tomogram(tomogram: Tomogram, path: str, *, run: str | None = None, tomo_type: str | None = None,
                          overwrite: bool = False, **options: Any) -> None:
    """Write a tomogram into a copick project URI (``?run=`` required; ``tomo_type`` default ``wbp``)."""
    target, q = parse_copick_uri(str(path))
    run = q.get("run", run)
    if not run:
        raise TomopickError("the copick URI needs ?run=<name> to write a tomogram", path)
    project = CopickProject.open(target)
    project.write_tomogram(run, tomogram, tomo_type=q.get("tomo_type", tomo_type) or "wbp", overwrite=overwrite,
                           levels=int(options.get("levels", 3)))


def _sniff_copick_json(path: Path) -> bool:
    if path.is_dir():
        return any((path / n).is_file() for n in ("copick_config.json", "config.json"))
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b'"points"' in head or b'"pickable_object' in head


register(Format(
    name="copick", kind="picks", extensions=(".json",), schemes=("copick",), reader=read_copick_picks,
    writer=write_copick_picks, sniff=_sniff_copick_json,
    description="copick / CryoET portal picks JSON (one class per file), a copick config, or copick://project?run=",
    capabilities=PicksCapabilities(scores=True, orientations=True, runs=True, classes="name"),
))
register(Format(
    name="copick", kind="tomogram", schemes=("copick",), reader=read_copick_tomogram, writer=write_copick_tomogram,
    description="tomogram in a copick project: copick://<config or folder>?run=…&voxel_size=…&tomo_type=…",
))
