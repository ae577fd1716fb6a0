"""Picks ↔ napari layer data, with no Qt and no viewer (so it is testable and usable anywhere).

Layers live in world coordinates in Å: a tomogram is an Image layer with ``scale`` = its voxel size ``(z, y, x)``
(voxel ``(0, 0, 0)``'s centre at 0, as tomopick's picks), so a Points layer holds picks as ``(z_A, y_A, x_A)`` with
scale 1 and lines up with the tomogram whatever its voxel size. Point size is the particle diameter in Å, colour the
class colour; every pick column rides along as a layer feature, so saving gives back what was read.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tomopick.data import CZII, ParticleSet, ParticleSpec, Picks
from tomopick.data.picks import COLUMNS

#: Radius (Å) of a class that the particle set does not know.
DEFAULT_RADIUS_A = 100.0
_EXTRA_COLORS = ("#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896")
_FEATURES = [c for c in COLUMNS if c not in ("x_A", "y_A", "z_A")]


def particles_for(names: list[str], particles: ParticleSet | None = None) -> ParticleSet:
    """The set's classes (default: the CZII set), plus any class in ``names`` it lacks (radius
    :data:`DEFAULT_RADIUS_A`, a colour of its own)."""
    base = particles if particles is not None else CZII
    extra = [n for n in dict.fromkeys(names) if n and n not in base]
    if not extra:
        return base
    specs = list(base.particles) + [
        ParticleSpec(name=n, radius_A=DEFAULT_RADIUS_A, color=_EXTRA_COLORS[i % len(_EXTRA_COLORS)])
        for i, n in enumerate(extra)]
    return ParticleSet(name=base.name, particles=tuple(s.model_copy(update={"label": None}) for s in specs))


def picks_layer_data(picks: Picks, particles: ParticleSet | None = None, *, name: str = "picks",
                     source: str = "") -> tuple[np.ndarray, dict[str, Any], str]:
    """A napari ``LayerData`` tuple ``(data, kwargs, "points")`` for ``picks``.

    ``data`` is ``(n, 3)`` ``(z, y, x)`` in Å; ``kwargs`` carry the features (every pick column but the
    position; ``particle`` categorical over the set's classes), the class colours, the size (diameter in Å) and
    ``metadata["tomopick"]`` (the particle set and the source)."""
    pset = particles_for(picks.particles, particles)
    frame = picks.frame
    data = frame[["z_A", "y_A", "x_A"]].to_numpy(np.float64) if len(picks) else np.zeros((0, 3))
    features = frame[_FEATURES].reset_index(drop=True).copy()
    features["particle"] = pd.Categorical(features["particle"], categories=pset.names)
    radius = np.array([pset[p].radius_A for p in frame["particle"]], dtype=np.float64)
    def single(column: str) -> str:  # a new pick joins the layer's run (user, session) when there is one
        values = list(dict.fromkeys(frame[column])) if len(picks) else []
        return str(values[0]) if len(values) == 1 else ""

    defaults = {"particle": pset.names[0], "score": np.nan, "rot_deg": np.nan, "tilt_deg": np.nan,
                "psi_deg": np.nan, "run": single("run"), "instance_id": 0, "user": single("user"),
                "session": single("session")}
    kwargs: dict[str, Any] = {
        "name": name,
        "features": features,
        "feature_defaults": defaults,
        "size": 2.0 * radius if len(picks) else 2.0 * pset.particles[0].radius_A,
        "face_color": "transparent",  # a circle outline in the class colour: the particle stays visible inside
        "border_color": "particle",
        "border_color_cycle": {p.name: p.color for p in pset},
        "border_width": 0.1,
        "border_width_is_relative": True,
        "symbol": "disc",
        "projection_mode": "rescale_spherical",
        "metadata": {"tomopick": {"kind": "picks", "source": source,
                                  "particles": pset.model_dump(mode="json")}},
    }
    return data, kwargs, "points"


def layer_particles(metadata: dict[str, Any] | None) -> ParticleSet:
    """The particle set stored in a layer's ``metadata["tomopick"]`` (the CZII set when there is none)."""
    stored = ((metadata or {}).get("tomopick") or {}).get("particles")
    return ParticleSet.model_validate(stored) if stored else CZII


def layer_picks(data: np.ndarray, features: pd.DataFrame | None) -> Picks:
    """Picks from a Points layer's ``data`` ``(n, 3)`` ``(z, y, x)`` in Å and its features (columns it lacks get
    the defaults: class ``""`` → unnamed, score NaN …)."""
    zyx = np.asarray(data, dtype=np.float64).reshape(-1, 3)
    frame = pd.DataFrame({"x_A": zyx[:, 2], "y_A": zyx[:, 1], "z_A": zyx[:, 0]})
    if features is not None and len(features.columns):
        for col in _FEATURES:
            if col in features.columns:
                values = features[col]
                if isinstance(values.dtype, pd.CategoricalDtype):
                    values = values.astype(object)
                frame[col] = values.to_numpy()
    return Picks(frame)


def point_radii(particle: pd.Series | np.ndarray, particles: ParticleSet) -> np.ndarray:
    """Radii in Å of the points' classes (:data:`DEFAULT_RADIUS_A` for unknown ones)."""
    return np.array([particles[p].radius_A if p in particles else DEFAULT_RADIUS_A for p in np.asarray(particle)],
                    dtype=np.float64)


def visible_mask(particle: np.ndarray, score: np.ndarray, thresholds: dict[str, float]) -> np.ndarray:
    """Which points to show: score at or above their class's threshold (classes without one, and points without a
    score, e.g. added by hand, always show)."""
    particle = np.asarray(particle, dtype=object)
    score = np.asarray(score, dtype=np.float64)
    limit = np.array([thresholds.get(p, -np.inf) for p in particle], dtype=np.float64)
    return ~(score < limit)  # NaN scores compare False: shown
