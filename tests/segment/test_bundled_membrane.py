"""The bundled ``membrane-10A`` model: its checksum, its config, and a small inference run that must find a
simulated vesicle's membrane."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tomopick.models import bundled
from tomopick.segment import SegmentOptions, dice, match_instances, segment_tomogram
from tomopick.simulate import ContextConfig, SimulationConfig, simulate_tomogram


def test_checksum_and_config():
    path = bundled.bundled_model_path("membrane-10A")
    assert hashlib.sha256(path.read_bytes()).hexdigest() == bundled.bundled_sha256("membrane-10A")
    assert path.stat().st_size < 20e6
    loaded = bundled.load_bundled("membrane-10A")
    assert loaded.config["task"] == "segment"
    assert loaded.config["segment_classes"] == ["background", "membrane", "lumen", "gold", "carbon"]
    assert loaded.config["voxel_size_A"] == pytest.approx(10.012)


def _one_vesicle():
    """A 64 × 96 × 96 simulation holding one spherical vesicle of 220 Å radius (SNR 4)."""
    ctx = ContextConfig(n_vesicles=(1, 1), vesicle_shapes=("sphere",), vesicle_radius_A=(220.0, 220.0),
                        n_double=(0, 0), n_tubes=(0, 0), n_sheets=(0, 0), n_gold=(0, 0), carbon_probability=0.0)
    return simulate_tomogram(SimulationConfig(shape_zyx=(64, 96, 96), voxel_size_A=10.012,
                                              particle_source="procedural", context=ctx, counts={"apo-ferritin": 3},
                                              seed=11, snr=4.0, ice_slab=False))


def test_tiny_inference_finds_the_vesicle_membrane():
    r = _one_vesicle()
    seg = segment_tomogram(r.tomogram, bundled.load_bundled("membrane-10A"), SegmentOptions(roi_size=(64, 96, 96)))
    assert seg.classes.shape == r.segmentation.shape and seg.classes.dtype == np.uint8
    assert dice(r.segmentation == 1, seg.classes == 1) > 0.6
    assert match_instances(r.segmentation_instances, seg.instances)["accuracy"] == 1.0


def test_adapted_segmentation_still_finds_the_membrane_and_leaves_the_model_alone():
    r = _one_vesicle()
    loaded = bundled.load_bundled("membrane-10A")
    before = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    seg = segment_tomogram(r.tomogram, loaded, SegmentOptions(roi_size=(64, 96, 96), adapt_norm=1.0))
    assert seg.summary["adapt_norm"]["adapted_layers"] > 0 and seg.summary["adapt_norm"]["strength"] == 1.0
    assert dice(r.segmentation == 1, seg.classes == 1) > 0.6
    assert all((before[k] == v).all() for k, v in loaded.model.state_dict().items())
    plain = segment_tomogram(r.tomogram, loaded, SegmentOptions(roi_size=(64, 96, 96)))
    assert plain.summary["adapt_norm"] == {"adapted_layers": 0}
    with pytest.raises(ValueError):
        SegmentOptions(adapt_norm=1.5)


def test_window_plan_and_prior_correction_from_options_checkpoint_or_default():
    from dataclasses import replace

    from tomopick.errors import TomopickError
    from tomopick.segment.predict import DEFAULT_OVERLAP, DEFAULT_ROI, window_plan

    loaded = bundled.load_bundled("membrane-10A")
    assert 0 <= loaded.config["segment"]["prior_correction"] <= 1  # the calibrated strength is stored (v5: 0)
    plan = {**loaded.config.get("segment", {}), "roi_size": [64, 96, 96], "overlap": 0.25, "prior_correction": 0.5}
    stored = {**loaded.config, "segment": plan}
    assert window_plan({}, SegmentOptions()) == (DEFAULT_ROI, DEFAULT_OVERLAP)
    assert window_plan(stored, SegmentOptions()) == ((64, 96, 96), 0.25)
    assert window_plan(stored, SegmentOptions(roi_size=(32, 64, 64), overlap=0.0)) == ((32, 64, 64), 0.0)
    with pytest.raises(TomopickError, match="segment.roi_size"):
        window_plan({"segment": {"roi_size": ["a", 1, 2]}}, SegmentOptions())
    with pytest.raises(TomopickError, match="three sizes"):
        window_plan({"segment": {"roi_size": [4, 96, 96]}}, SegmentOptions())
    r = _one_vesicle()
    seg = segment_tomogram(r.tomogram, replace(loaded, config=stored), SegmentOptions())
    assert seg.summary["roi_size"] == [64, 96, 96] and seg.summary["overlap"] == 0.25
    weights = loaded.config["training"]["ce_weights"]
    assert seg.summary["prior_correction"] == 0.5  # the checkpoint's strength
    t = seg.summary["prior_correction"]
    assert seg.summary["class_scale"] == pytest.approx([(min(weights) / w) ** t for w in weights])
    plain = segment_tomogram(r.tomogram, loaded, SegmentOptions(roi_size=(64, 96, 96), prior_correction=0))
    assert plain.summary["prior_correction"] == 0 and plain.summary["class_scale"] is None
    with pytest.raises(TomopickError, match="prior_correction"):
        segment_tomogram(r.tomogram, replace(loaded, config={**stored, "segment": {"prior_correction": 2}}),
                         SegmentOptions())
    # the correction thins the (over-thick) membrane: fewer membrane voxels than the plain argmax
    assert (seg.classes == 1).sum() < (plain.classes == 1).sum()


def test_tta_from_options_checkpoint_or_default():
    from dataclasses import replace

    from pydantic import ValidationError

    from tomopick.errors import TomopickError
    from tomopick.segment.predict import tta_passes

    loaded = bundled.load_bundled("membrane-10A")
    assert tta_passes({}, SegmentOptions()) == 1
    assert tta_passes({"segment": {"tta": 2}}, SegmentOptions()) == 2
    assert tta_passes({"segment": {"tta": 2}}, SegmentOptions(tta=1)) == 1
    assert tta_passes(loaded.config, SegmentOptions()) == 2  # stored: two passes (bench/segment_tta.py)
    for bad in (3, "2", True):
        with pytest.raises(TomopickError, match="segment.tta"):
            tta_passes({"segment": {"tta": bad}}, SegmentOptions())
    with pytest.raises(ValidationError):
        SegmentOptions(tta=3)
    r = _one_vesicle()
    stored = replace(loaded, config={**loaded.config, "segment": {**loaded.config["segment"], "tta": 2}})
    two = segment_tomogram(r.tomogram, stored, SegmentOptions(roi_size=(64, 96, 96)))
    one = segment_tomogram(r.tomogram, stored, SegmentOptions(roi_size=(64, 96, 96), tta=1))
    assert two.summary["tta"] == 2 and one.summary["tta"] == 1
    assert dice(r.segmentation == 1, two.classes == 1) > 0.6
    assert not np.array_equal(two.classes, one.classes)  # the second pass changes some voxels
