"""ParticleSet: the CZII preset, YAML round trip and one-line errors."""

from __future__ import annotations

import pytest

from tomopick.data import CZII, ParticleSet, ParticleSpec, get_particle_set
from tomopick.errors import TomopickError


def test_czii_preset():
    assert CZII.names == ["apo-ferritin", "beta-amylase", "beta-galactosidase", "ribosome", "thyroglobulin",
                          "virus-like-particle"]
    assert [p.radius_A for p in CZII] == [60, 65, 90, 150, 130, 135]
    assert [p.weight for p in CZII] == [1, 0, 2, 1, 2, 1]
    assert CZII["ribosome"].label == 4 and CZII.by_label(5).name == "thyroglobulin"
    assert get_particle_set("czii") is CZII


def test_labels_filled_and_subset():
    s = ParticleSet(particles=(ParticleSpec(name="a", radius_A=10), ParticleSpec(name="b", radius_A=20, label=7)))
    assert [p.label for p in s] == [1, 7]
    sub = CZII.subset(["ribosome", "apo-ferritin"])
    assert sub.names == ["ribosome", "apo-ferritin"] and [p.label for p in sub] == [4, 1]


def test_yaml_round_trip(tmp_path):
    (tmp_path / "t.mrc").write_bytes(b"")
    f = tmp_path / "set.yaml"
    f.write_text("name: mine\nparticles:\n  - {name: prot, radius_A: 85, weight: 2, template_path: t.mrc}\n"
                 "  - {name: other, radius_A: 40}\n")
    s = get_particle_set(f)
    assert s.name == "mine" and s.names == ["prot", "other"] and s["prot"].weight == 2
    assert s["prot"].template_path == str((tmp_path / "t.mrc").resolve())  # relative to the YAML file
    g = tmp_path / "again.yaml"
    g.write_text(s.to_yaml())
    assert ParticleSet.from_yaml(g) == s


@pytest.mark.parametrize("text,match", [
    ("particles: [{name: a, radius_A: -1}]", "radius_A"),
    ("particles: [{name: a, radius_A: 1}, {name: a, radius_A: 2}]", "duplicate particle names"),
    ("particles: [{name: a/b, radius_A: 1}]", "slashes"),
    ("particles: [{name: a, radius_A: 1, colour: red}]", "colour"),
    ("- just a list", "expected a mapping"),
    ("particles: [{name: a, radius_A: 1", "malformed YAML"),
])
def test_yaml_errors_are_one_line(tmp_path, text, match):
    f = tmp_path / "bad.yaml"
    f.write_text(text)
    with pytest.raises(TomopickError, match=match) as info:
        ParticleSet.from_yaml(f)
    assert str(f) in str(info.value) and "\n" not in str(info.value)


def test_unknown_names():
    with pytest.raises(TomopickError, match="unknown particle"):
        CZII["proteasome"]
    with pytest.raises(TomopickError, match="proteasome"):
        CZII.check_names(["ribosome", "proteasome"], "x.csv")
    with pytest.raises(TomopickError, match="unknown particle set"):
        get_particle_set("nope")
    with pytest.raises(TomopickError, match="not found"):
        ParticleSet.from_yaml("/nonexistent/set.yaml")
