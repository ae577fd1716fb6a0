"""Particle descriptions: one :class:`ParticleSpec` per complex, grouped in a :class:`ParticleSet`.

The CZII challenge set ships as the built-in preset ``"czii"``; users describe their own in YAML::

    name: my-set
    particles:
      - {name: proteasome, radius_A: 85, weight: 1, template_path: proteasome.mrc}
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tomopick.configfile import first_error, read_yaml_mapping
from tomopick.errors import TomopickError


class ParticleSpec(BaseModel):
    """One particle class.

    Attributes
    ----------
    name
        Class name as used in pick files (copick ``object_name``), e.g. ``"apo-ferritin"``.
    radius_A
        Particle radius in Å (used for labels, peak spacing and the CZII matching distance).
    weight
        Scoring weight in the CZII metric (0 = not scored).
    label
        Integer label in segmentation volumes (1-based; 0 is background). Filled in by the set if omitted.
    color
        Display colour, ``#rrggbb``.
    template_path
        Optional density map (MRC) of the particle, protein bright.
    pdb_id
        Optional PDB/EMDB identifier, for copick's pickable-object metadata.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    radius_A: float = Field(gt=0)
    weight: float = Field(default=1.0, ge=0)
    label: int | None = Field(default=None, ge=1)
    color: str = "#1f77b4"
    template_path: str | None = None
    pdb_id: str | None = None

    @field_validator("name")
    @classmethod
    def _no_whitespace(cls, value: str) -> str:
        if value != value.strip() or any(c in value for c in "\t\n/"):
            raise ValueError(f"particle name {value!r} must not contain slashes or surrounding whitespace")
        return value


class ParticleSet(BaseModel):
    """An ordered set of particle classes with unique names and labels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = "custom"
    particles: tuple[ParticleSpec, ...]

    @model_validator(mode="after")
    def _fill_labels(self) -> "ParticleSet":
        names = [p.name for p in self.particles]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate particle names: {', '.join(duplicates)}")
        filled = tuple(
            p if p.label is not None else p.model_copy(update={"label": i + 1}) for i, p in enumerate(self.particles)
        )
        labels = [p.label for p in filled]
        if len(set(labels)) != len(labels):
            raise ValueError("particle labels must be unique")
        object.__setattr__(self, "particles", filled)
        return self

    # -- lookup -------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[ParticleSpec]:  # type: ignore[override]
        return iter(self.particles)

    def __len__(self) -> int:
        return len(self.particles)

    def __contains__(self, name: object) -> bool:
        return any(p.name == name for p in self.particles)

    def __getitem__(self, name: str) -> ParticleSpec:
        for p in self.particles:
            if p.name == name:
                return p
        known = ", ".join(self.names)
        raise TomopickError(f"unknown particle {name!r}; known particles in set {self.name!r}: {known}")

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.particles]

    def by_label(self, label: int) -> ParticleSpec:
        for p in self.particles:
            if p.label == label:
                return p
        raise TomopickError(f"no particle with label {label} in set {self.name!r}")

    def subset(self, names: list[str]) -> "ParticleSet":
        """The classes named, in the given order, keeping their labels."""
        return ParticleSet(name=self.name, particles=tuple(self[n] for n in names))

    def check_names(self, names: list[str] | set[str], source: str | None = None) -> None:
        """Raise a one-line :class:`TomopickError` if any name is not in the set."""
        unknown = sorted(set(names) - set(self.names))
        if unknown:
            raise TomopickError(
                f"unknown particle name(s) {', '.join(unknown)}; known: {', '.join(self.names)}", source
            )

    # -- YAML -----------------------------------------------------------------------------------------
    @classmethod
    def from_yaml(cls, path: str | Path) -> "ParticleSet":
        """Read a particle set from YAML (``name`` + ``particles`` list); template paths are resolved
        relative to the YAML file."""
        path = Path(path)
        not_mapping = "expected a mapping with a 'particles' list"
        raw = read_yaml_mapping(path, missing="particle set file not found", not_mapping=not_mapping)
        if "particles" not in raw:
            raise TomopickError(not_mapping, path)
        for p in raw.get("particles") or []:
            if isinstance(p, dict) and p.get("template_path"):
                tp = Path(p["template_path"])
                p["template_path"] = str(tp if tp.is_absolute() else (path.parent / tp).resolve())
        raw.setdefault("name", path.stem)
        try:
            return cls.model_validate(raw)
        except ValidationError as exc:
            raise TomopickError(f"invalid particle set: {first_error(exc)}", path) from None

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_none=True), sort_keys=False)


#: CZII "CryoET Object Identification" classes: radii (Å) and scoring weights of the Kaggle metric.
CZII = ParticleSet(
    name="czii",
    particles=(
        ParticleSpec(name="apo-ferritin", radius_A=60, weight=1, label=1, color="#1f77b4", pdb_id="4V1W"),
        ParticleSpec(name="beta-amylase", radius_A=65, weight=0, label=2, color="#ff7f0e", pdb_id="1FA2"),
        ParticleSpec(name="beta-galactosidase", radius_A=90, weight=2, label=3, color="#2ca02c", pdb_id="6DRV"),
        ParticleSpec(name="ribosome", radius_A=150, weight=1, label=4, color="#d62728", pdb_id="6QZP"),
        ParticleSpec(name="thyroglobulin", radius_A=130, weight=2, label=5, color="#9467bd", pdb_id="7N4Y"),
        ParticleSpec(name="virus-like-particle", radius_A=135, weight=1, label=6, color="#8c564b", pdb_id="6N4V"),
    ),
)

PRESETS: dict[str, ParticleSet] = {"czii": CZII}


def get_particle_set(name_or_path: str | Path) -> ParticleSet:
    """A built-in preset by name (``"czii"``) or a YAML file path."""
    key = str(name_or_path)
    if key in PRESETS:
        return PRESETS[key]
    path = Path(key)
    if path.suffix.lower() in {".yaml", ".yml"} or path.exists():
        return ParticleSet.from_yaml(path)
    raise TomopickError(f"unknown particle set {key!r}; built-in sets: {', '.join(PRESETS)} (or give a YAML file)")
