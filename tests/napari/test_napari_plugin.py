"""The napari plugin: npe2 registration, readers (lazy tomograms, picks of any format, segmentations), editing and
saving picks (round trip, numbers), score sliders, and the pick widget in its worker thread."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari", reason="napari is not installed (pip install -e '.[napari]')")
pytest.importorskip("pytestqt", reason="pytest-qt is not installed (pip install -e '.[napari]')")

from napari.components import ViewerModel  # noqa: E402
from napari.layers import Layer  # noqa: E402

from tomopick.data import CZII, Picks, Tomogram  # noqa: E402
from tomopick.io import read_picks, write_picks, write_tomogram  # noqa: E402
from tomopick.napari._reader import get_reader  # noqa: E402
from tomopick.napari._widgets import PickWidget, PicksWidget  # noqa: E402
from tomopick.napari._writer import write_points  # noqa: E402
from tomopick.napari.convert import layer_picks, picks_layer_data  # noqa: E402

VS = 10.0


def _picks(run: str = "toy") -> Picks:
    xyz = np.array([[100.0, 200, 120], [300, 220, 140], [500, 300, 160], [150, 400, 100], [420, 420, 200]])
    names = ["apo-ferritin", "apo-ferritin", "apo-ferritin", "ribosome", "ribosome"]
    return Picks.from_arrays(xyz, names, score=np.array([0.2, 0.5, 0.9, 0.3, 0.7]), run=run,
                             rotations=np.stack([np.eye(3)] * 5))


def _layer(layer_data) -> Layer:
    data, kwargs, kind = layer_data
    return Layer.create(data, kwargs, kind)


def test_plugin_is_in_napari_plugin_list():
    from npe2 import PluginManager

    pm = PluginManager.instance()
    pm.discover()
    manifest = pm.get_manifest("tomopick")
    assert manifest.name == "tomopick"
    commands = {c.id for c in manifest.contributions.commands}
    assert {"tomopick.get_reader", "tomopick.write_points", "tomopick.picks_widget",
            "tomopick.pick_widget"} <= commands
    assert {w.display_name for w in manifest.contributions.widgets} == {"Picks", "Pick particles"}
    # napari asks npe2 for a reader of an MRC file and gets ours
    assert any(r.plugin_name == "tomopick" for r in pm.iter_compatible_readers(["tomo.mrc"]))


def test_reader_opens_tomograms_lazily_and_picks_as_points(tmp_path):
    import zarr

    vol = np.random.default_rng(0).normal(size=(24, 32, 40)).astype(np.float32)
    write_tomogram(Tomogram.from_array(vol, VS), tmp_path / "toy.mrc")
    write_tomogram(Tomogram.from_array(vol, VS), tmp_path / "toy.ome.zarr")
    labels = np.zeros((24, 32, 40), dtype=np.uint8)
    labels[5:9, 5:9, 5:9] = 3
    write_tomogram(Tomogram.from_array(labels, VS), tmp_path / "seg.mrc")
    write_picks(_picks(), tmp_path / "picks.star", voxel_size_A=VS)  # RELION 3/4: pixels, classes as numbers
    assert get_reader(str(tmp_path / "notes.docx")) is None

    (data, kwargs, kind), = get_reader(str(tmp_path / "toy.mrc"))(str(tmp_path / "toy.mrc"))
    assert kind == "image" and isinstance(data, np.memmap) and kwargs["scale"] == (VS, VS, VS)
    assert np.array_equal(np.asarray(data), vol)
    (zdata, zkwargs, _), = get_reader(str(tmp_path / "toy.ome.zarr"))(str(tmp_path / "toy.ome.zarr"))
    assert isinstance(zdata, zarr.Array) and np.array_equal(zdata[3:5], vol[3:5])  # lazy: read on demand
    (sdata, _, skind), = get_reader(str(tmp_path / "seg.mrc"))(str(tmp_path / "seg.mrc"))
    assert skind == "labels" and int(np.asarray(sdata).max()) == 3

    (pdata, pkwargs, pkind), = get_reader(str(tmp_path / "picks.star"))(str(tmp_path / "picks.star"))
    assert pkind == "points"
    assert pdata == pytest.approx(_picks().frame[["z_A", "y_A", "x_A"]].to_numpy())   # (z, y, x) in Å
    layer = _layer((pdata, pkwargs, pkind))
    assert layer.size.tolist() == [120.0] * 3 + [300.0] * 2                          # diameters in Å
    blue = [0x1F / 255, 0x77 / 255, 0xB4 / 255, 1.0]
    assert layer.border_color[0] == pytest.approx(blue)                              # apo-ferritin's colour
    assert layer.border_color[3] == pytest.approx([0xD6 / 255, 0x27 / 255, 0x28 / 255, 1.0])  # ribosome's
    assert layer.features["score"].tolist() == pytest.approx([0.2, 0.5, 0.9, 0.3, 0.7])


def test_edit_and_save_round_trip(qtbot, tmp_path):
    viewer = ViewerModel()
    layer = viewer.add_layer(_layer(picks_layer_data(_picks(), CZII, name="picks")))
    widget = PicksWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.layer is layer and widget.visible_count() == 5
    # add a thyroglobulin by hand (no score), delete the first pick, move the second, re-class the fourth
    widget.set_new_class("thyroglobulin")
    layer.add([[250.0, 260.0, 610.0]])
    assert layer.size[-1] == pytest.approx(260.0)                                    # its diameter
    layer.selected_data = {0}
    layer.remove_selected()
    moved = layer.data.copy()
    moved[0] += [10.0, -20.0, 30.0]
    layer.data = moved
    layer.selected_data = {2}
    assert widget.set_class_of_selected("beta-galactosidase") == 1
    assert layer.size[2] == pytest.approx(180.0) and layer.border_color[2] == pytest.approx([0x2C / 255, 0xA0 / 255,
                                                                                            0x2C / 255, 1.0])
    expected = layer_picks(layer.data, layer.features)
    assert expected.frame["particle"].tolist() == ["apo-ferritin", "apo-ferritin", "beta-galactosidase",
                                                   "ribosome", "thyroglobulin"]
    assert expected.xyz_A[0] == pytest.approx([330.0, 200.0, 150.0])       # (300, 220, 140) moved by (30, -20, 10)
    assert np.isnan(expected.scores[-1]) and expected.scores[:4] == pytest.approx([0.5, 0.9, 0.3, 0.7])
    for name in ("edited.star", "edited.csv"):
        star = name.endswith(".star")  # RELION 3/4: pixels and class numbers (the CZII set's labels)
        widget.save(str(tmp_path / name), **({"voxel_size_A": VS} if star else {}))
        back = read_picks(tmp_path / name, **({"particles": CZII} if star else {}))
        assert back.frame["particle"].tolist() == expected.frame["particle"].tolist()
        assert back.xyz_A == pytest.approx(expected.xyz_A, abs=1e-3)
        assert np.allclose(back.scores, expected.scores, equal_nan=True)
    with pytest.raises(Exception, match="--overwrite|exists"):
        widget.save(str(tmp_path / "edited.csv"))
    # napari's own "Save layer" path: the npe2 writer
    assert write_points(str(tmp_path / "w.csv"), layer.data, {"features": layer.features}) == [str(tmp_path / "w.csv")]
    assert read_picks(tmp_path / "w.csv").xyz_A == pytest.approx(expected.xyz_A)


def test_threshold_slider_changes_the_visible_count(qtbot):
    viewer = ViewerModel()
    layer = viewer.add_layer(_layer(picks_layer_data(_picks(), CZII, name="picks")))
    widget = PicksWidget(viewer)
    qtbot.addWidget(widget)
    widget.set_threshold("apo-ferritin", 0.5)          # keeps 0.5, 0.9 of 0.2, 0.5, 0.9; ribosomes untouched
    assert widget.visible_count() == 4 and layer.shown.tolist() == [False, True, True, True, True]
    widget.set_threshold("ribosome", 0.71)             # hides both ribosomes (0.3, 0.7)
    assert widget.visible_count() == 2
    slider = widget._sliders["apo-ferritin"][0]
    slider.setValue(slider.maximum())                  # the top of the range: only the best apo-ferritin
    assert widget.thresholds["apo-ferritin"] == pytest.approx(0.9)
    assert widget.visible_count() == 1 and "1 of 5 picks shown" in widget.count_label.text()
    layer.add([[0.0, 0.0, 0.0]])                       # a pick by hand has no score: always shown
    assert widget.visible_count() == 2


def test_pick_widget_picks_the_open_tomogram_in_a_worker(qtbot):
    from tomopick.simulate import SimulationConfig, simulate_tomogram
    from tomopick.workflows.pick import PickOptions, inference_settings, pick_tomogram, resolve_model

    sim = simulate_tomogram(SimulationConfig(shape_zyx=(48, 96, 96), voxel_size_A=10.012, n_vesicles=0,
                                             counts={"ribosome": 2, "apo-ferritin": 3}), 11)
    viewer = ViewerModel()
    viewer.add_image(sim.tomogram.data, name="sim", scale=(10.012,) * 3)
    widget = PickWidget(viewer)
    qtbot.addWidget(widget)
    assert widget.image_box.currentText() == "sim"
    worker = widget.run()
    with qtbot.waitSignal(worker.finished, timeout=120_000):
        pass
    qtbot.waitUntil(lambda: widget.pick_button.isEnabled(), timeout=10_000)
    assert "sim picks" in viewer.layers
    assert widget.progress.value() == widget.progress.maximum() > 0        # every window reported
    # the same picks as the one pick path called directly
    loaded = resolve_model(None)
    options = PickOptions.make().with_defaults(loaded.config)
    direct, _ = pick_tomogram(sim.tomogram, loaded, options, run="sim", settings=inference_settings(loaded, options))
    assert len(direct) > 0
    got = layer_picks(viewer.layers["sim picks"].data, viewer.layers["sim picks"].features)
    assert got.frame["particle"].tolist() == direct.frame["particle"].tolist()
    assert got.xyz_A == pytest.approx(direct.xyz_A) and got.scores == pytest.approx(direct.scores)
