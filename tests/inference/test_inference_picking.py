"""Window defaults of tomopick pick: networks whose output depends on the window run on their training patch."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tomopick.inference.options import PickOptions
from tomopick.inference.picking import CROP_OVERLAP, DEFAULT_ROI, inference_settings, window_dependent


def _loaded(name="resunet", **hparams):
    config = {"network": {"name": name, "hparams": {"channels": [8, 16, 32], "strides": [2, 2], **hparams}},
              "patch_size": [48, 48, 48]}
    return SimpleNamespace(config=config, patch_size=(48, 48, 48))


@pytest.mark.parametrize("name, hparams, expected", [
    ("resunet", {"norm": "instance"}, True),
    ("unet", {"norm": "INSTANCE"}, True),
    ("unet", {"norm": ["group", {"num_groups": 4}]}, True),
    ("resunet", {"norm": "batch"}, False),
    ("resunet", {}, False),                        # the registry's default is batch norm
    ("coordresunet", {}, True),                    # coordinate channels
    ("coordresunet", {"coord_conv": False}, False),
    ("swinunetr", {}, True),
])
def test_window_dependent(name, hparams, expected):
    assert window_dependent(_loaded(name, **hparams).config) is expected


def test_instance_norm_runs_on_training_patches_batch_norm_on_large_windows():
    inst = inference_settings(_loaded(norm="instance"))
    assert tuple(inst.roi_size) == (48, 48, 48) and inst.fixed_roi and inst.overlap == 0.25
    batch = inference_settings(_loaded(norm="batch"))
    assert tuple(batch.roi_size) == DEFAULT_ROI and not batch.fixed_roi and batch.overlap == CROP_OVERLAP
    assert inference_settings(_loaded(norm="batch"), PickOptions(mode="gaussian")).overlap == 0.25
    # an explicit window is the user's choice, also for instance norm
    chosen = inference_settings(_loaded(norm="instance"), PickOptions(roi_size=(64, 96, 96), overlap=0.1))
    assert tuple(chosen.roi_size) == (64, 96, 96) and not chosen.fixed_roi and chosen.overlap == 0.1


def test_a_model_stored_window_is_the_default_and_the_option_overrides_it():
    """czii-10A v5 stores its inference plan (config["pick"]["roi_size"] and ["overlap"]: its pyramid activations
    at the general 208 × 256 × 256 default would exceed the 3 GB target); --roi / --overlap still win; instance norm
    keeps its patch."""
    from pydantic import ValidationError

    from tomopick.models.checkpoint import PickDefaults

    planned = _loaded(norm="batch")
    planned.config["pick"] = {"roi_size": [208, 160, 160], "overlap": 0.12}
    settings = inference_settings(planned)
    assert tuple(settings.roi_size) == (208, 160, 160) and settings.overlap == 0.12
    chosen = inference_settings(planned, PickOptions(roi_size=(64, 96, 96), overlap=0.05))
    assert tuple(chosen.roi_size) == (64, 96, 96) and chosen.overlap == 0.05
    assert inference_settings(planned, PickOptions(mode="gaussian")).overlap == 0.25
    fixed = _loaded(norm="instance")
    fixed.config["pick"] = {"roi_size": [208, 160, 160]}
    assert tuple(inference_settings(fixed).roi_size) == (48, 48, 48)
    assert PickDefaults(roi_size=(208, 160, 160)).roi_size == (208, 160, 160)
    with pytest.raises(ValidationError, match="roi_size must be three sizes >= 8"):
        PickDefaults(roi_size=(208, 4, 160))
    with pytest.raises(ValidationError):
        PickDefaults(roi_size=(208, 160))
    with pytest.raises(ValidationError):
        PickDefaults(overlap=1.0)


def test_the_bundled_default_stores_a_window_under_the_memory_target():
    from tomopick.models.bundled import load_bundled

    loaded = load_bundled("czii-10A")
    settings = inference_settings(loaded)
    assert tuple(settings.roi_size) == (208, 192, 192) and settings.overlap == 0.12 and not settings.fixed_roi
