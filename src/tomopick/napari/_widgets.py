"""napari dock widgets: see and fix picks (per-class score thresholds, class of new / selected picks, save), and
pick the open tomogram with a tomopick model in a worker thread.

Both take the viewer napari passes (``napari_viewer``); they use only its ``layers`` and ``add_layer``, so a
:class:`napari.components.ViewerModel` works too (tests run without OpenGL).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from qtpy.QtCore import QObject, Qt, Signal
from qtpy.QtWidgets import (
    QComboBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox, QHBoxLayout, QLabel, QLineEdit, QProgressBar,
    QPushButton, QSlider, QVBoxLayout, QWidget,
)

from tomopick.napari.convert import layer_particles, picks_layer_data, point_radii, visible_mask

SLIDER_STEPS = 1000


def _is_picks_layer(layer: Any) -> bool:
    from napari.layers import Points

    return isinstance(layer, Points)


class PicksWidget(QWidget):
    """Per-class score sliders that hide / show picks live, the class of new and selected picks, and Save.

    Adding, deleting and moving picks are napari's own Points tools (keys 2, 1/Delete, 3); new picks get the class
    chosen here, its diameter as size, and no score (always shown)."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.thresholds: dict[str, float] = {}
        self._sliders: dict[str, tuple[QSlider, QLabel, float, float]] = {}
        self._layer: Any = None
        layout = QVBoxLayout(self)
        self.layer_box = QComboBox()
        self.layer_box.currentIndexChanged.connect(self._layer_chosen)
        form = QFormLayout()
        form.addRow("picks layer", self.layer_box)
        self.class_box = QComboBox()
        self.class_box.currentTextChanged.connect(self.set_new_class)
        form.addRow("class of new picks", self.class_box)
        layout.addLayout(form)
        row = QHBoxLayout()
        self.apply_button = QPushButton("Set class of selected")
        self.apply_button.clicked.connect(lambda: self.set_class_of_selected(self.class_box.currentText()))
        self.save_button = QPushButton("Save picks…")
        self.save_button.clicked.connect(self._save_dialog)
        row.addWidget(self.apply_button)
        row.addWidget(self.save_button)
        layout.addLayout(row)
        self.slider_box = QGroupBox("score threshold per class")
        self.slider_grid = QGridLayout(self.slider_box)
        layout.addWidget(self.slider_box)
        self.count_label = QLabel("")
        layout.addWidget(self.count_label)
        layout.addStretch(1)
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._refresh_layers)
        self._refresh_layers()

    # -- layer ---------------------------------------------------------------------------------------------------
    @property
    def layer(self) -> Any:
        """The Points layer being edited (``None`` when there is none)."""
        return self._layer

    def _refresh_layers(self, *_: Any) -> None:
        names = [layer.name for layer in self.viewer.layers if _is_picks_layer(layer)]
        current = self.layer_box.currentText()
        self.layer_box.blockSignals(True)
        self.layer_box.clear()
        self.layer_box.addItems(names)
        if current in names:
            self.layer_box.setCurrentText(current)
        self.layer_box.blockSignals(False)
        self._layer_chosen()

    def _layer_chosen(self, *_: Any) -> None:
        name = self.layer_box.currentText()
        layer = self.viewer.layers[name] if name and name in self.viewer.layers else None
        if layer is self._layer:
            return
        if self._layer is not None:
            self._layer.events.data.disconnect(self._data_changed)
        self._layer = layer
        self.thresholds = {}
        if layer is not None:
            layer.events.data.connect(self._data_changed)
        self._build_controls()

    @property
    def particles(self):
        return layer_particles(self._layer.metadata if self._layer is not None else None)

    def _build_controls(self) -> None:
        while self.slider_grid.count():
            item = self.slider_grid.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()
        self._sliders = {}
        self.class_box.blockSignals(True)
        self.class_box.clear()
        if self._layer is None:
            self.class_box.blockSignals(False)
            self._update_count()
            return
        pset = self.particles
        self.class_box.addItems(pset.names)
        default = self._layer.feature_defaults.get("particle") if len(self._layer.feature_defaults.columns) else None
        default = default.iloc[0] if hasattr(default, "iloc") else default
        if default in pset.names:
            self.class_box.setCurrentText(str(default))
        self.class_box.blockSignals(False)
        features = self._layer.features
        for row, spec in enumerate(pset):
            scores = features.loc[features["particle"] == spec.name, "score"].to_numpy(np.float64) \
                if "particle" in features else np.zeros(0)
            scores = scores[np.isfinite(scores)]
            if not scores.size:
                continue
            lo, hi = float(scores.min()), float(scores.max())
            if hi <= lo:
                hi = lo + 1e-6
            name = QLabel(f'<span style="color:{spec.color}">●</span> {spec.name}')
            slider = QSlider(Qt.Horizontal)
            slider.setRange(0, SLIDER_STEPS)
            value = QLabel("")
            slider.valueChanged.connect(lambda v, n=spec.name: self._slider_moved(n, v))
            self.slider_grid.addWidget(name, row, 0)
            self.slider_grid.addWidget(slider, row, 1)
            self.slider_grid.addWidget(value, row, 2)
            self._sliders[spec.name] = (slider, value, lo, hi)
            value.setText(f"≥ {lo:.3g}")
        self._apply()

    # -- thresholds ------------------------------------------------------------------------------------------
    def _slider_moved(self, name: str, step: int) -> None:
        slider, label, lo, hi = self._sliders[name]
        value = lo + (hi - lo) * step / SLIDER_STEPS
        self.thresholds[name] = value
        label.setText(f"≥ {value:.3g}")
        self._apply()

    def set_threshold(self, name: str, value: float) -> None:
        """Show only ``name`` picks scoring at least ``value`` (moves its slider to the nearest step at or below)."""
        if name not in self._sliders:
            raise KeyError(f"no scored picks of class {name!r} in this layer")
        slider, label, lo, hi = self._sliders[name]
        step = int(np.clip(math.floor((value - lo) / (hi - lo) * SLIDER_STEPS + 1e-9), 0, SLIDER_STEPS))
        slider.blockSignals(True)
        slider.setValue(step)
        slider.blockSignals(False)
        self.thresholds[name] = float(value)
        label.setText(f"≥ {value:.3g}")
        self._apply()

    def _apply(self) -> None:
        layer = self._layer
        if layer is None:
            return
        if len(layer.data):
            layer.shown = visible_mask(layer.features["particle"].astype(object).to_numpy(),
                                       layer.features["score"].to_numpy(np.float64), self.thresholds)
        self._update_count()

    def visible_count(self) -> int:
        """Picks shown now."""
        layer = self._layer
        return int(np.asarray(layer.shown).sum()) if layer is not None and len(layer.data) else 0

    def _update_count(self) -> None:
        total = len(self._layer.data) if self._layer is not None else 0
        self.count_label.setText(f"{self.visible_count()} of {total} picks shown")

    def _data_changed(self, event: Any = None) -> None:
        # added points: their class's diameter; every change: thresholds re-applied, counts updated
        layer = self._layer
        if layer is not None and len(layer.data):
            sizes = 2.0 * point_radii(layer.features["particle"].astype(object).to_numpy(), self.particles)
            if np.asarray(layer.size).shape != sizes.shape or not np.allclose(layer.size, sizes):
                layer.size = sizes
        self._apply()

    # -- classes -----------------------------------------------------------------------------------------------
    def set_new_class(self, name: str) -> None:
        """The class (and size) of picks added from now on."""
        layer = self._layer
        if layer is None or not name:
            return
        layer.feature_defaults["particle"] = name
        layer.feature_defaults["score"] = np.nan
        layer.current_size = 2.0 * point_radii(np.array([name]), self.particles)[0]

    def set_class_of_selected(self, name: str) -> int:
        """Give the selected picks class ``name`` (colour and size follow); returns how many changed."""
        layer = self._layer
        if layer is None:
            return 0
        selected = sorted(layer.selected_data)
        if not selected:
            return 0
        features = layer.features
        column = features["particle"]
        if isinstance(column.dtype, pd.CategoricalDtype) and name not in column.cat.categories:
            features["particle"] = column.cat.add_categories([name])
        features.loc[selected, "particle"] = name
        layer.features = features
        layer.refresh_colors(update_color_mapping=False)
        self._data_changed()
        return len(selected)

    # -- saving ------------------------------------------------------------------------------------------------
    def save(self, path: str, *, overwrite: bool = False, **writer_options: Any) -> str:
        """Write the layer's picks (all of them, shown or hidden) to ``path`` in the format its extension names,
        atomically (:func:`tomopick.io.write_picks`)."""
        from tomopick.io import write_picks
        from tomopick.napari.convert import layer_picks

        if self._layer is None:
            raise ValueError("no picks layer to save")
        picks = layer_picks(self._layer.data, self._layer.features)
        info = (self._layer.metadata or {}).get("tomopick") or {}
        if "voxel_size_A" not in writer_options and info.get("voxel_size_A"):
            writer_options["voxel_size_A"] = float(info["voxel_size_A"])
        write_picks(picks, path, overwrite=overwrite, **writer_options)
        return str(path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save picks", "",
                                              "picks (*.star *.csv *.json *.mod *.tbl);;all files (*)")
        if path:
            try:
                self.save(path, overwrite=True)  # the dialog asked about replacing
                self.count_label.setText(f"saved {len(self._layer.data)} picks to {path}")
            except Exception as exc:  # noqa: BLE001 - shown to the person, not raised into Qt
                self.count_label.setText(f"not saved: {exc}")


class _Progress(QObject):
    changed = Signal(int, int)


class PickWidget(QWidget):
    """Pick the open tomogram (an Image layer) with a tomopick model — the same path as ``tomopick pick`` — in a
    worker thread with a progress bar; the picks arrive as a new Points layer."""

    def __init__(self, napari_viewer: Any) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.last_picks: Any = None
        layout = QFormLayout(self)
        self.image_box = QComboBox()
        layout.addRow("tomogram", self.image_box)
        self.model_edit = QLineEdit()
        self.model_edit.setPlaceholderText("bundled czii-10A")
        layout.addRow("model (.pt)", self.model_edit)
        self.threshold_edit = QLineEdit()
        self.threshold_edit.setPlaceholderText("the model's")
        layout.addRow("threshold", self.threshold_edit)
        self.pick_button = QPushButton("Pick")
        self.pick_button.clicked.connect(self.run)
        layout.addRow(self.pick_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        layout.addRow(self.progress)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        layout.addRow(self.status)
        self._signals = _Progress()
        self._signals.changed.connect(self._show_progress)
        self.viewer.layers.events.inserted.connect(self._refresh_images)
        self.viewer.layers.events.removed.connect(self._refresh_images)
        self._refresh_images()

    def _refresh_images(self, *_: Any) -> None:
        from napari.layers import Image

        current = self.image_box.currentText()
        names = [layer.name for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3]
        self.image_box.clear()
        self.image_box.addItems(names)
        if current in names:
            self.image_box.setCurrentText(current)

    def _show_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def run(self) -> Any:
        """Start picking the chosen Image layer; returns the napari worker (its ``returned`` signal carries the
        picks; they are also added as a Points layer)."""
        from napari.qt.threading import create_worker

        from tomopick.data import Tomogram
        from tomopick.inference.options import PickOptions

        name = self.image_box.currentText()
        if not name:
            self.status.setText("open a tomogram first")
            return None
        layer = self.viewer.layers[name]
        info = (layer.metadata or {}).get("tomopick") or {}
        voxel = tuple(float(v) for v in (info.get("voxel_size_A") or layer.scale[-3:]))
        tomogram = Tomogram(layer.data, voxel, source=str(info.get("source") or name))
        text = self.threshold_edit.text().strip()
        try:
            options = PickOptions.make(threshold=float(text) if text else None)
        except Exception as exc:  # noqa: BLE001 - a bad entry (not a number, out of range) is shown in the widget
            self.status.setText(f"threshold: {exc}")
            return None
        model = self.model_edit.text().strip() or None
        self.pick_button.setEnabled(False)
        self.status.setText(f"picking {name} …")
        self.progress.setRange(0, 0)  # busy until the first window is done
        worker = create_worker(_pick_job, tomogram, model, options, name, self._signals.changed.emit)
        worker.returned.connect(lambda result, n=name, v=voxel: self._done(result, n, v))
        worker.errored.connect(self._failed)
        self.worker = worker
        worker.start()
        return worker

    def _done(self, result: tuple[Any, Any], name: str, voxel: tuple[float, ...]) -> None:
        picks, particles = result
        self.last_picks = picks
        data, kwargs, _ = picks_layer_data(picks, particles, name=f"{name} picks")
        kwargs["metadata"]["tomopick"]["voxel_size_A"] = float(np.mean(voxel))
        from napari.layers import Points

        self.viewer.add_layer(Points(data, **kwargs))
        counts = ", ".join(f"{k} {v}" for k, v in picks.counts().items()) or "none"
        self.status.setText(f"{len(picks)} picks: {counts}")
        self.pick_button.setEnabled(True)

    def _failed(self, exc: Exception) -> None:
        self.status.setText(f"picking failed: {exc}")
        self.progress.setRange(0, 1)
        self.pick_button.setEnabled(True)


def _pick_job(tomogram: Any, model: str | None, options: Any, run: str, progress: Any) -> tuple[Any, Any]:
    """Runs in the worker thread: the one pick path (model → settings → :func:`pick_tomogram`)."""
    from tomopick.workflows.pick import inference_settings, pick_tomogram, resolve_model

    loaded = resolve_model(model)
    options = options.with_defaults(loaded.config)
    picks, _ = pick_tomogram(tomogram, loaded, options, run=run, settings=inference_settings(loaded, options),
                             progress=progress)
    return picks, loaded.particles
