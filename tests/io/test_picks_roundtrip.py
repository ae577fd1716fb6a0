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
from tomopick.io import read_picks, write_picks
from tomopick.io.copick_project import CopickProject

VOXEL_A = 10.0
SHAPE = (60, 80, 90)  # z, y, x voxels
RUN = "TS_1"


@dataclass(frozen=True)
class Spec:
    name: str
    suffix: str
    carries: frozenset[str]
    write: dict = field(default_factory=dict)
    read: dict = field(default_factory=dict)


SPECS = {s.name: s for s in [
    Spec("copick", "", frozenset({"class", "score", "rotation", "run"})),
    Spec("relion", ".star", frozenset({"class", "score", "rotation", "run"}), {"voxel_size_A": VOXEL_A},
         {"particles": CZII}),
    Spec("relion5", ".star", frozenset({"class", "score", "rotation", "run"}), {"tomogram_shape_zyx": SHAPE,
         "voxel_size_A": VOXEL_A}, {"particles": CZII, "tomogram_shape_zyx": SHAPE, "voxel_size_A": VOXEL_A}),
    Spec("warp", ".star", frozenset({"class", "score", "rotation", "run"}), {"voxel_size_A": VOXEL_A},
         {"particles": CZII}),
    Spec("dynamo", ".tbl", frozenset({"class", "score", "rotation"}), {"voxel_size_A": VOXEL_A},
         {"particles": CZII, "run": RUN}),
    Spec("imod", ".mod", frozenset({"class"}), {"voxel_size_A": VOXEL_A}, {"particles": CZII, "run": RUN}),
    Spec("csv", ".csv", frozenset({"class", "score", "run"})),
    Spec("kaggle", ".csv", frozenset({"class", "run"})),
    Spec("xyz", ".csv", frozenset({"score"}), {"voxel_size_A": VOXEL_A},
         {"voxel_size_A": VOXEL_A, "particle": "ribosome", "run": RUN}),
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
