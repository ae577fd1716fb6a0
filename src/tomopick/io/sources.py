"""Picks sources: read the picks of a file, a copick project/URI or a folder of pick files as one
:class:`~tomopick.data.Picks`, and pair the runs of two such sources (ground truth and picks).

Shared by the verbs that compare picks with a truth (``evaluate``, ``calibrate``), so that no verb imports another.

* a pick file in any format :func:`tomopick.io.read_picks` knows (copick JSON, CSV, STAR, …);
* a copick project (its config JSON, its folder, or a ``copick://`` URI), filtered by ``user_id``;
* a folder of pick files: every file whose extension a pick format claims is read (recursively); files whose
  picks carry no run name get the file name (without extensions) as run.
"""

from __future__ import annotations

from pathlib import Path

from tomopick.data import ParticleSet, Picks
from tomopick.errors import TomopickError
from tomopick.io.api import read_picks
from tomopick.io.registry import detect, get_format


def _is_copick_dir(path: Path) -> bool:
    return (path / "copick_config.json").is_file()


def _file_run(path: Path) -> str:
    name = path.name
    return name.split(".", 1)[0] if not name.startswith(".") else name


def _read_file(path: Path, format: str | None, particles: ParticleSet | None) -> Picks:
    fmt = get_format(format, "picks") if format else detect(path, "picks")
    numbered = fmt.capabilities is not None and fmt.capabilities.classes == "number"
    # formats that store class numbers get them mapped to names through the particle set
    opts = {"particles": particles} if particles is not None and numbered else {}
    return read_picks(path, format=format, **opts)


def load_picks(source: str | Path, *, user_id: str | None = None, session_id: str | None = None,
               format: str | None = None, particles: ParticleSet | None = None) -> Picks:
    """Picks from a file, a copick project/URI or a folder of pick files (see the module docstring).

    Parameters
    ----------
    source
        Path or URI.
    user_id, session_id
        copick filters (ignored for plain files).
    format
        Force a picks format for files (as ``tomopick.io.read_picks(format=...)``).
    particles
        Maps class numbers of STAR / Dynamo / IMOD files to names (labels of the set).
    """
    text = str(source)
    copick_opts = {k: v for k, v in (("user_id", user_id), ("session_id", session_id)) if v}
    if "://" in text:
        return read_picks(text, format=format, **copick_opts)
    path = Path(text)
    if not path.exists():
        raise TomopickError("file not found", path)
    if path.is_dir():
        if _is_copick_dir(path):
            from tomopick.io.copick_project import CopickProject

            return CopickProject.open(path).read_picks(user_id=user_id, session_id=session_id)
        parts = []
        for f in sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith(".")):
            if format is None:
                try:
                    detect(f, "picks")
                except TomopickError:
                    continue
            got = _read_file(f, format, particles)
            if len(got) and (got.frame["run"] == "").any():
                frame = got.frame.copy()
                frame.loc[frame["run"] == "", "run"] = _file_run(f)
                got = Picks(frame)
            parts.append(got)
        if not parts:
            raise TomopickError("no pick files in this folder", path)
        return Picks.concat(parts)
    if path.suffix.lower() == ".json":
        return read_picks(path, format=format, **copick_opts)
    return _read_file(path, format, particles)


def align_runs(truth: Picks, picks: Picks) -> tuple[Picks, Picks]:
    """Give an unnamed side the other side's single run name; refuse inputs with no run in common."""
    t_runs, p_runs = set(truth.runs), set(picks.runs)
    if len(picks) and p_runs == {""} and len(t_runs) == 1 and t_runs != {""}:
        picks = picks.with_columns(run=next(iter(t_runs)))
    elif len(truth) and t_runs == {""} and len(p_runs) == 1 and p_runs != {""}:
        truth = truth.with_columns(run=next(iter(p_runs)))
    t_runs, p_runs = set(truth.runs), set(picks.runs)
    if len(truth) and len(picks) and not (t_runs & p_runs):
        def show(runs: set[str]) -> str:
            names = sorted(r or "(unnamed)" for r in runs)
            return ", ".join(names[:6]) + (" …" if len(names) > 6 else "")

        raise TomopickError(f"truth and picks share no run (truth: {show(t_runs)}; picks: {show(p_runs)}); "
                            "name the runs in the files or give one run per side")
    return truth, picks
