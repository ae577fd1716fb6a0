"""A → B → A round trips for every pair of picks formats: positions to 1e-3 Å, and classes, scores, orientations
and runs wherever both formats carry them (a format that cannot carry a field gets it back through an option)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from tomopick.data import CZII, Picks
from tomopick.data.rotations import random_rotations
from tomopick.errors import TomopickError
from tomopick.io import PicksCapabilities, formats, get_format, read_picks, write_picks
from tomopick.io.copick_project import CopickProject

VOXEL_A = 10.0
SHAPE = (60, 80, 90)  # z, y, x voxels
RUN = "TS_1"


@dataclass(frozen=True)
class Spec:
    name: str
    suffix: str
    write: dict = field(default_factory=dict)
    read: dict = field(default_factory=dict)

    @property
    def capabilities(self) -> PicksCapabilities:
        caps = get_format(self.name, "picks").capabilities
        assert caps is not None, f"picks format {self.name} declares no capabilities"
        return caps

    @property
    def carries(self) -> frozenset[str]:
        """What the format declares it carries (its registry entry): class, score, rotation, run."""
        return self.capabilities.carries


# how to write and read each format here (what it needs that the picks do not say); what survives is the format's
# own declaration, checked against a real round trip by test_declared_capabilities_match_a_round_trip
SPECS = {s.name: s for s in [
    Spec("copick", ""),
    Spec("relion", ".star", {"voxel_size_A": VOXEL_A}, {"particles": CZII}),
    Spec("relion5", ".star", {"tomogram_shape_zyx": SHAPE, "voxel_size_A": VOXEL_A},
         {"particles": CZII, "tomogram_shape_zyx": SHAPE, "voxel_size_A": VOXEL_A}),
    Spec("warp", ".star", {"voxel_size_A": VOXEL_A}, {"particles": CZII}),
    Spec("dynamo", ".tbl", {"voxel_size_A": VOXEL_A}, {"particles": CZII, "run": RUN}),
    Spec("imod", ".mod", {"voxel_size_A": VOXEL_A}, {"particles": CZII, "run": RUN}),
    Spec("csv", ".csv"),
    Spec("kaggle", ".csv"),
    Spec("xyz", ".csv", {"voxel_size_A": VOXEL_A}, {"voxel_size_A": VOXEL_A, "particle": "ribosome", "run": RUN}),
]}


def _source(rng: np.random.Generator, two_classes: bool) -> Picks:
    n = 7
    xyz = rng.uniform(0, 1, (n, 3)) * (np.array(SHAPE[::-1]) - 1) * VOXEL_A
    names = ["ribosome", "apo-ferritin"] * 4 if two_classes else ["ribosome"] * 8
    return Picks.from_arrays(xyz, names[:n], score=rng.uniform(0.1, 1, n), rotations=random_rotations(n, rng),
                             run=RUN)


def _canonical(p: Picks) -> Picks:
    order = np.lexsort((p.xyz_A[:, 0], p.frame["particle"].to_numpy(dtype=str)))
    return Picks(p.frame.iloc[order].reset_index(drop=True))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> CopickProject:
    """One copick project for the module; each write goes to its own user id."""
    return CopickProject.create(tmp_path_factory.mktemp("copick") / "proj", CZII)


_COUNTER = itertools.count()


def _io(spec: Spec, tmp: Path, tag: str, project: CopickProject):
    if spec.name == "copick":
        target = f"copick://{project.config_path}?run={RUN}&user=u{next(_COUNTER)}"
    else:
        target = tmp / f"{tag}{spec.suffix}"

    def write(p: Picks) -> None:
        write_picks(p, target, format=spec.name, overwrite=True, **spec.write)

    def read() -> Picks:
        return read_picks(target, format=spec.name, **spec.read)

    return write, read


def _compare(got: Picks, want: Picks, fields: set[str]) -> None:
    got, want = _canonical(got), _canonical(want)
    assert len(got) == len(want)
    np.testing.assert_allclose(got.xyz_A, want.xyz_A, atol=1e-3, rtol=0)
    if "class" in fields:
        assert got.frame["particle"].tolist() == want.frame["particle"].tolist()
    if "score" in fields:
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-9)
    if "rotation" in fields:
        np.testing.assert_allclose(got.rotation_matrices(), want.rotation_matrices(), atol=1e-7)
    if "run" in fields:
        assert got.frame["run"].tolist() == want.frame["run"].tolist()


PAIRS = list(itertools.permutations(SPECS, 2))


@pytest.mark.parametrize("a,b", PAIRS, ids=[f"{a}-{b}" for a, b in PAIRS])
def test_round_trip(a, b, tmp_path, rng, project):
    sa, sb = SPECS[a], SPECS[b]
    two = "class" in sa.carries and "class" in sb.carries
    source = _source(rng, two)
    write_a, read_a = _io(sa, tmp_path, "a1", project)
    write_b, read_b = _io(sb, tmp_path, "b", project)
    write_a2, read_a2 = _io(sa, tmp_path, "a2", project)
    write_a(source)
    in_a = read_a()
    _compare(in_a, source, set(sa.carries) | {"run", "class"})
    write_b(in_a)
    in_b = read_b()
    both = set(sa.carries) & set(sb.carries)
    _compare(in_b, source, both | {"run", "class"})
    write_a2(in_b)
    _compare(read_a2(), source, both | {"run", "class"})


@pytest.mark.parametrize("name", list(SPECS))
def test_same_format_is_stable(name, tmp_path, rng, project):
    """Writing what was read gives the same picks again (A → A)."""
    spec = SPECS[name]
    source = _source(rng, "class" in spec.carries)
    write, read = _io(spec, tmp_path, "x", project)
    write(source)
    first = read()
    write(first)
    _compare(read(), first, set(spec.carries) | {"run", "class"})


def test_every_registered_picks_format_is_covered_and_declares_capabilities():
    registered = {f.name for f in formats("picks")}
    assert registered == set(SPECS)
    for name in registered:
        assert isinstance(get_format(name, "picks").capabilities, PicksCapabilities), name


def _by_x(p: Picks) -> Picks:
    return Picks(p.frame.iloc[np.argsort(p.xyz_A[:, 0], kind="stable")].reset_index(drop=True))


@pytest.mark.parametrize("name", list(SPECS))
def test_declared_capabilities_match_a_round_trip(name, tmp_path, rng, project):
    """Write picks with two classes, scores, orientations and a run name; read back with only the options the
    declaration says the format needs; what survived is exactly what the format declares."""
    spec = SPECS[name]
    caps = spec.capabilities
    source = _by_x(_source(rng, True))
    write, _ = _io(spec, tmp_path, "cap", project)
    if name == "copick":
        # a copick picks file holds one class; the project holds the run
        source = source.select(source.frame["particle"] == "ribosome")
    write(source)
    assert ("voxel_size_A" in spec.write) == caps.needs_pixel_size
    assert ("tomogram_shape_zyx" in spec.write) == caps.needs_tomogram_shape
    for needed in ("voxel_size_A", "tomogram_shape_zyx"):  # a declared need is a real one: writing without fails
        if needed in spec.write:
            with pytest.raises(TomopickError):
                write_picks(source, tmp_path / f"no_{needed}{spec.suffix}", format=name,
                            **{k: v for k, v in spec.write.items() if k != needed})
    # read without the options that stand in for a missing field (run=, particle=, particles=)
    plain = {k: v for k, v in spec.read.items() if k not in ("run", "particle", "particles")}
    if name == "copick":
        target = f"copick://{project.config_path}?run={RUN}&user=u{next(_COUNTER) - 1}"
        got = read_picks(target, format=name, **plain)
    else:
        got = read_picks(tmp_path / f"cap{spec.suffix}", format=name, **plain)
    got = _by_x(got)
    assert len(got) == len(source)
    np.testing.assert_allclose(got.xyz_A, source.xyz_A, atol=1e-3, rtol=0)
    scores_kept = bool(np.allclose(got.scores, source.scores, atol=1e-9))
    assert scores_kept == caps.scores
    rot = got.rotation_matrices()
    rotations_kept = bool(np.all(np.isfinite(rot)) and np.allclose(rot, source.rotation_matrices(), atol=1e-7))
    assert rotations_kept == caps.orientations
    assert (got.frame["run"].tolist() == [RUN] * len(got)) == caps.runs
    names_back = sorted(set(got.frame["particle"]))
    if caps.classes == "name":
        assert got.frame["particle"].tolist() == source.frame["particle"].tolist()
    elif caps.classes == "number":
        assert all(n.startswith("class") for n in names_back)  # numbers without a particle set ...
        with_set = _by_x(read_picks(tmp_path / f"cap{spec.suffix}", format=name, **plain, particles=CZII))
        assert with_set.frame["particle"].tolist() == source.frame["particle"].tolist()  # ... names with one
    else:
        assert len(names_back) == 1  # every pick gets the reader's one class (particle= names it)
