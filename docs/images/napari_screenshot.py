"""Make docs/images/napari.png: a tomogram and its picks in napari with the tomopick widgets docked.

Needs a display with OpenGL (napari draws with it); headless:
    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/images/napari_screenshot.py TOMO PICKS docs/images/napari.png
"""

from __future__ import annotations

import sys
import warnings

warnings.filterwarnings("ignore", message="napari support for the PyQt5 backend")  # no toast in the picture

import napari  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from tomopick.napari._reader import read_layers  # noqa: E402
from tomopick.napari._widgets import PickWidget, PicksWidget  # noqa: E402


def main(tomogram: str, picks: str, out: str) -> None:
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1560, 960)
    for data, kwargs, kind in read_layers([tomogram, picks]):
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    picks_widget = PicksWidget(viewer)
    viewer.window.add_dock_widget(picks_widget, name="tomopick: picks", area="right")
    viewer.window.add_dock_widget(PickWidget(viewer), name="tomopick: pick", area="right")
    for name, value in (("apo-ferritin", 0.3), ("beta-amylase", 0.4)):
        if name in picks_widget._sliders:
            picks_widget.set_threshold(name, value)
    image = viewer.layers[0]
    viewer.dims.set_point(0, image.data.shape[0] // 2 * image.scale[0])
    # points within one particle radius of the slice are drawn, shrunk to where the sphere cuts it
    viewer.dims.margin_left = viewer.dims.margin_right = tuple([75.0] + [0.0] * (viewer.dims.ndim - 1))
    viewer.reset_view()
    from qtpy.QtWidgets import QApplication, QWidget

    for _ in range(20):  # let the docks lay out
        QApplication.processEvents()
    for toast in viewer.window._qt_window.findChildren(QWidget):  # e.g. the PyQt5 deprecation notice
        if "Notification" in type(toast).__name__:
            toast.close()
    for _ in range(5):
        QApplication.processEvents()
    shot = viewer.screenshot(canvas_only=False, flash=False)
    img = Image.fromarray(np.asarray(shot)[..., :3])
    img.thumbnail((1000, 1000))
    img = img.quantize(colors=256, method=Image.Quantize.FASTOCTREE)  # palette PNG: keeps the class colours
    img.save(out, optimize=True)
    print(f"wrote {out} ({img.size[0]}×{img.size[1]})")
    viewer.close()


if __name__ == "__main__":
    main(*sys.argv[1:4])
