"""A copick project on the local filesystem, read and written through the real ``copick`` library.

Layout (copick's filesystem backend, also the CryoET Data Portal's)::

    <root>/copick_config.json
    <root>/ExperimentRuns/<run>/VoxelSpacing<vs:.3f>/<tomo_type>.zarr        OME-Zarr multiscale tomogram
    <root>/ExperimentRuns/<run>/Picks/<user>_<session>_<particle>.json       one file per particle class
    <root>/ExperimentRuns/<run>/Segmentations/<vs:.3f>_<user>_<session>_<name>[-multilabel].zarr

Example
-------
>>> from tomopick.data import CZII
>>> project = CopickProject.create("/tmp/proj", CZII)                      # doctest: +SKIP
>>> project.write_tomogram("TS_1", tomogram, tomo_type="wbp")              # doctest: +SKIP
>>> project.write_picks("TS_1", picks, user_id="tomopick", session_id="0")  # doctest: +SKIP
>>> project.read_picks(run="TS_1", particle="ribosome")                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from tomopick.data import ParticleSet, ParticleSpec, Picks, Tomogram
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.io.atomic import atomic_output
from tomopick.io.copick_document import copick_document, parse_copick_document

CONFIG_NAME = "copick_config.json"


def _hex_to_rgba(color: str) -> tuple[int, int, int, int]:
    text = color.lstrip("#")
    try:
        if len(text) == 6:
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), 255)
        if len(text) == 8:
            return (int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16), int(text[6:8], 16))
    except ValueError:
        pass
    return (100, 100, 100, 255)


def _rgba_to_hex(rgba: Any) -> str:
    try:
        r, g, b = (int(c) for c in list(rgba)[:3])
        return f"#{r:02x}{g:02x}{b:02x}"
    except (TypeError, ValueError):
        return "#1f77b4"


def _quiet_copick() -> None:
    for name in ("copick", "fsspec"):
        logging.getLogger(name).setLevel(logging.ERROR)


def pickable_objects(particles: ParticleSet) -> list[dict[str, Any]]:
    """copick ``pickable_objects`` entries for a particle set (weight and template kept under
    ``metadata["tomopick"]``), validated by copick's own model."""
    from copick.models import PickableObject

    out = []
    for p in particles:
        meta: dict[str, Any] = {"tomopick": {"weight": p.weight}}
        if p.template_path:
            meta["tomopick"]["template_path"] = p.template_path
        obj = PickableObject(name=p.name, is_particle=True, label=p.label, color=_hex_to_rgba(p.color),
                             pdb_id=p.pdb_id, radius=p.radius_A, metadata=meta)
        out.append(obj.model_dump(mode="json"))
    return out


class CopickProject:
    """Handle on a copick project (filesystem backend, offline).

    Use :meth:`create` or :meth:`open`; do not call the constructor directly.

    Attributes
    ----------
    config_path
        The copick configuration JSON.
    root
        copick's root object (``copick.impl.filesystem.CopickRootFSSpec``) for anything not wrapped here.
    """

    def __init__(self, config_path: Path, root: Any) -> None:
        self.config_path = Path(config_path)
        self.root = root

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, particles: ParticleSet, name: str = "tomopick",
               overwrite: bool = False) -> "CopickProject":
        """Create a project folder with a copick config listing ``particles`` as pickable objects.

        Parameters
        ----------
        root
            Project folder (created if absent); the config is ``<root>/copick_config.json`` and the overlay root
            (where data go) is ``root`` itself, as an absolute ``local://`` path.
        particles
            Particle classes → copick ``pickable_objects`` (name, label, colour, radius Å, PDB id).
        overwrite
            Replace an existing config (data already in the folder are kept).
        """
        import copick

        root = Path(root).absolute()
        config = root / CONFIG_NAME
        data = {
            "config_type": "filesystem",
            "name": name,
            "description": f"tomopick project {name}",
            "version": copick.__version__,
            "pickable_objects": pickable_objects(particles),
            "overlay_root": "local://" + str(root),
            "overlay_fs_args": {"auto_mkdir": True},
        }
        with atomic_output(config, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(data, indent=4))
        (root / "ExperimentRuns").mkdir(exist_ok=True)
        return cls.open(config)

    @classmethod
    def open(cls, config_or_root: str | Path) -> "CopickProject":
        """Open a project from its config JSON or from the folder that holds ``copick_config.json``."""
        import copick

        _quiet_copick()
        path = Path(config_or_root)
        if path.is_dir():
            candidates = [path / CONFIG_NAME, path / "config.json"]
            found = [c for c in candidates if c.is_file()]
            if not found:
                raise TomopickError(f"no copick config in this folder (expected {CONFIG_NAME})", path)
            path = found[0]
        if not path.is_file():
            raise TomopickError("copick config not found", path)
        try:
            doc = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise TomopickError(f"malformed copick config ({str(exc).splitlines()[0]})", path) from None
        if not isinstance(doc, dict) or "pickable_objects" not in doc:
            raise TomopickError("not a copick config (no 'pickable_objects')", path)
        if doc.get("config_type", "filesystem") != "filesystem":
            raise TomopickError(f"only filesystem copick projects are supported offline, not "
                                f"{doc.get('config_type')!r}", path)
        try:
            root = copick.from_file(str(path))
        except Exception as exc:  # noqa: BLE001 - pydantic / fsspec errors
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TomopickError(f"invalid copick config ({first})", path) from None
        return cls(path, root)

    def __repr__(self) -> str:
        return f"CopickProject({str(self.config_path)!r}, runs={len(self.runs())})"

    # -- metadata -----------------------------------------------------------------------------------------------
    @property
    def overlay_root(self) -> Path:
        """The local folder copick writes to."""
        return Path(self.root.root_overlay)

    @property
    def particles(self) -> ParticleSet:
        """The project's particle classes (``is_particle`` objects) as a :class:`ParticleSet`."""
        specs = []
        for obj in self.root.config.pickable_objects:
            if not obj.is_particle:
                continue
            extra = (obj.metadata or {}).get("tomopick", {}) if isinstance(obj.metadata, dict) else {}
            if not obj.radius or obj.radius <= 0:
                raise TomopickError(f"pickable object {obj.name!r} has no radius", self.config_path)
            specs.append(ParticleSpec(name=obj.name, radius_A=float(obj.radius),
                                      weight=float(extra.get("weight", 1.0)), label=obj.label,
                                      color=_rgba_to_hex(obj.color), pdb_id=obj.pdb_id,
                                      template_path=extra.get("template_path")))
        return ParticleSet(name=str(self.root.config.name or "copick"), particles=tuple(specs))

    @property
    def object_names(self) -> list[str]:
        return [o.name for o in self.root.config.pickable_objects]

    def runs(self) -> list[str]:
        """Run names, sorted."""
        self.root.refresh()
        return sorted(r.name for r in self.root.runs)

    def _run(self, run: str | None, *, create: bool = False) -> Any:
        if run is None:
            names = self.runs()
            if len(names) != 1:
                raise TomopickError(f"name a run (the project has {len(names)}: {', '.join(names[:10])})",
                                    self.config_path)
            run = names[0]
        self.root.refresh()
        obj = self.root.get_run(run)
        if obj is None:
            if not create:
                known = ", ".join(self.runs()[:10])
                raise TomopickError(f"run {run!r} not in the project (runs: {known or 'none'})", self.config_path)
            try:
                obj = self.root.new_run(run, exist_ok=True)
            except Exception as exc:  # noqa: BLE001
                raise TomopickError(f"cannot create run {run!r} ({exc})", self.config_path) from None
        return obj

    def tomograms(self, run: str) -> list[tuple[float, str]]:
        """``(voxel_size_A, tomo_type)`` of every tomogram of a run."""
        r = self._run(run)
        r.refresh()
        return sorted((float(vs.voxel_size), t.tomo_type) for vs in r.voxel_spacings for t in vs.tomograms)

    # -- tomograms ----------------------------------------------------------------------------------------------
    def tomogram_path(self, run: str, voxel_size_A: float, tomo_type: str) -> Path:
        """Where :meth:`write_tomogram` puts a tomogram (copick's layout)."""
        return self.overlay_root / "ExperimentRuns" / run / f"VoxelSpacing{voxel_size_A:.3f}" / f"{tomo_type}.zarr"

    def write_tomogram(self, run: str, tomogram: Tomogram, tomo_type: str = "wbp", overwrite: bool = False,
                       levels: int = 3) -> Path:
        """Write a tomogram as a copick OME-Zarr multiscale (``levels`` levels, 2× each; per-axis ``scale``).

        The voxel-spacing folder is the mean voxel size rounded to 0.001 Å (copick's naming). Returns the path.
        """
        from tomopick.io.formats.omezarr import write_omezarr

        vs = round(float(np.mean(tomogram.voxel_size_A)), 3)
        r = self._run(run, create=True)
        path = self.tomogram_path(r.name, vs, tomo_type)
        if path.exists() and not overwrite:
            raise OutputExistsError("output exists; pass --overwrite to replace it", path)
        r.new_voxel_spacing(vs, exist_ok=True)
        with atomic_output(path, overwrite=overwrite, directory=True) as tmp:
            write_omezarr(tomogram, tmp, levels=levels)
        r.refresh()
        return path

    def read_tomogram(self, run: str | None, voxel_size_A: float | None = None, tomo_type: str | None = "wbp",
                      level: int = 0) -> Tomogram:
        """Open a run's tomogram lazily (zarr-backed :class:`Tomogram`).

        Parameters
        ----------
        voxel_size_A
            Voxel spacing to use (matched within 0.001 Å); None → the only one holding ``tomo_type``.
        tomo_type
            Tomogram type (``"wbp"``, ``"denoised"`` …); None → the only type there is.
        level
            Pyramid level (0 = full resolution).
        """
        from tomopick.io.formats.omezarr import read_omezarr

        r = self._run(run)
        r.refresh()
        found = []
        for vs in r.voxel_spacings:
            if voxel_size_A is not None and abs(float(vs.voxel_size) - float(voxel_size_A)) > 1.5e-3:
                continue
            for t in vs.tomograms:
                if tomo_type is None or t.tomo_type == tomo_type:
                    found.append(t)
        if len(found) != 1:
            have = ", ".join(f"{v:g} Å {t}" for v, t in self.tomograms(r.name)) or "none"
            what = "no tomogram matches" if not found else f"{len(found)} tomograms match"
            raise TomopickError(f"{what} run={r.name} voxel_size={voxel_size_A} tomo_type={tomo_type} "
                                f"(available: {have})", self.config_path)
        t = found[0]
        path = Path(t.static_path if t.read_only else t.overlay_path)
        tomo = read_omezarr(path, level=level)
        tomo.metadata.update({"copick_run": r.name, "tomo_type": t.tomo_type,
                              "copick_voxel_spacing": float(t.voxel_spacing.voxel_size)})
        return tomo

    # -- picks --------------------------------------------------------------------------------------------------
    def picks_path(self, run: str, particle: str, user_id: str, session_id: str) -> Path:
        return self.overlay_root / "ExperimentRuns" / run / "Picks" / f"{user_id}_{session_id}_{particle}.json"

    def write_picks(self, run: str, picks: Picks, user_id: str = "tomopick", session_id: str = "0",
                    overwrite: bool = False) -> list[Path]:
        """Write picks, one copick JSON per particle class. All classes must be pickable objects of the project;
        every target is checked before anything is written. Returns the files written."""
        from copick.util.escape import sanitize_name

        for label, value in (("user_id", user_id), ("session_id", session_id)):
            if not value or sanitize_name(str(value)) != str(value):
                raise TomopickError(f"invalid copick {label} {value!r} (letters, digits, '-' and '.' only: "
                                    "'_' separates the fields of copick file names)", self.config_path)
        unknown = sorted(set(picks.particles) - set(self.object_names))
        if unknown:
            raise TomopickError(f"particle(s) {', '.join(unknown)} are not pickable objects of the project "
                                f"(known: {', '.join(self.object_names)})", self.config_path)
        r = self._run(run, create=True)
        targets = [(name, self.picks_path(r.name, name, user_id, session_id)) for name in picks.particles]
        for _, path in targets:
            if path.exists() and not overwrite:
                raise OutputExistsError("output exists; pass --overwrite to replace it", path)
        written = []
        for name, path in targets:
            doc = copick_document(picks.for_particle(name), run=r.name, user_id=user_id, session_id=str(session_id),
                                  source=path)
            with atomic_output(path, overwrite=overwrite) as tmp:
                tmp.write_text(json.dumps(doc, indent=4))
            written.append(path)
        r.refresh()
        return written

    def read_picks(self, run: str | None = None, particle: str | None = None, user_id: str | None = None,
                   session_id: str | None = None) -> Picks:
        """All picks matching the filters (None = any), concatenated, with ``run``/``user``/``session`` set."""
        self.root.refresh()
        if run is not None and self.root.get_run(run) is None:
            raise TomopickError(f"run {run!r} not in the project (runs: {', '.join(self.runs()[:10]) or 'none'})",
                                self.config_path)
        runs = [self.root.get_run(run)] if run is not None else list(self.root.runs)
        parts = []
        for r in runs:
            r.refresh()
            for p in r.get_picks(object_name=particle, user_id=user_id, session_id=session_id):
                path = Path(p.path)
                try:
                    doc = json.loads(path.read_text())
                except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise TomopickError(f"malformed copick picks JSON ({str(exc).splitlines()[0]})", path) from None
                got = parse_copick_document(doc, path, particle=p.pickable_object_name, run=r.name)
                parts.append(got.with_columns(run=r.name) if len(got) else got)
        return Picks.concat(parts)

    # -- segmentations ------------------------------------------------------------------------------------------
    def write_segmentation(self, run: str, name: str, array_zyx: np.ndarray, voxel_size_A: float,
                           is_multilabel: bool = True, user_id: str = "tomopick", session_id: str = "0",
                           overwrite: bool = False) -> Path:
        """Write a label volume ``(z, y, x)`` (integers; 0 = background, else pickable-object labels) as a copick
        segmentation (OME-Zarr, one level). ``name`` must be an object name unless ``is_multilabel``."""
        array = np.asarray(array_zyx)
        if array.ndim != 3:
            raise TomopickError(f"a segmentation must be 3D (z, y, x), got shape {array.shape}", self.config_path)
        r = self._run(run, create=True)
        vs = round(float(voxel_size_A), 3)
        existing = r.get_segmentations(name=name, user_id=user_id, session_id=session_id, voxel_size=vs,
                                       is_multilabel=is_multilabel)
        if existing and not overwrite:
            raise OutputExistsError("output exists; pass --overwrite to replace it",
                                    getattr(existing[0], "path", name))
        r.new_voxel_spacing(vs, exist_ok=True)
        try:
            seg = r.new_segmentation(voxel_size=vs, name=name, session_id=session_id, is_multilabel=is_multilabel,
                                     user_id=user_id, exist_ok=True)
            seg.from_numpy(array)
        except ValueError as exc:
            raise TomopickError(f"cannot write segmentation {name!r} ({exc})", self.config_path) from None
        return Path(seg.path)

    def read_segmentation(self, run: str, name: str, voxel_size_A: float | None = None,
                          user_id: str | None = None, session_id: str | None = None,
                          is_multilabel: bool | None = None) -> Tomogram:
        """Open a segmentation lazily as a :class:`Tomogram` (integer labels)."""
        from tomopick.io.formats.omezarr import read_omezarr

        r = self._run(run)
        r.refresh()
        segs = r.get_segmentations(name=name, user_id=user_id, session_id=session_id, is_multilabel=is_multilabel)
        if voxel_size_A is not None:
            segs = [s for s in segs if abs(float(s.voxel_size) - float(voxel_size_A)) <= 1.5e-3]
        if len(segs) != 1:
            raise TomopickError(f"{len(segs)} segmentations match name={name!r} run={r.name}", self.config_path)
        return read_omezarr(Path(segs[0].path))
