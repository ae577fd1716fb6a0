"""The network registry: networks defined above ``tomopick.models`` (the promptable picker) are named in
``LAZY_BUILDERS`` and imported when first built, so their checkpoints load in a fresh process that imported only
``tomopick.models``."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap

import pytest
import torch

from tomopick.errors import TomopickError
from tomopick.models import model_names, save_checkpoint
from tomopick.models.registry import LAZY_BUILDERS, build_model


@pytest.mark.parametrize("name", sorted(LAZY_BUILDERS))
def test_every_lazy_builder_resolves_to_a_function(name):
    module, _, function = LAZY_BUILDERS[name].partition(":")
    assert callable(getattr(importlib.import_module(module), function))
    assert name in model_names()


def test_unknown_network_names_the_known_ones():
    with pytest.raises(TomopickError, match="unknown network 'nope'.*promptable-film-unet"):
        build_model("nope")


def test_promptable_checkpoint_loads_in_a_process_that_imported_only_models(tmp_path):
    from tomopick.prompt.networks import NETWORK_NAME, build_promptable
    from tomopick.workflows.prompt import promptable_config

    hparams = {"embed_dim": 8, "encoder_channels": [4, 8], "unet_channels": [4, 8, 16]}
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = build_promptable(**hparams).eval()
    path = save_checkpoint(tmp_path / "prompt.pt", model,
                           promptable_config(hparams, voxel_size_A=10.0, prompt_box=17, patch_size=(32, 32, 32)))
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    torch.save(expected, tmp_path / "expected.pt")

    script = textwrap.dedent(f"""
        import sys
        import torch
        from tomopick.models import load_checkpoint
        assert "tomopick.prompt" not in sys.modules, "importing tomopick.models imported tomopick.prompt"
        loaded = load_checkpoint({str(path)!r})
        assert loaded.config["network"]["name"] == {NETWORK_NAME!r}
        assert type(loaded.model).__name__ == "PromptablePicker", type(loaded.model)
        expected = torch.load({str(tmp_path / "expected.pt")!r}, weights_only=True)
        got = loaded.model.state_dict()
        assert set(got) == set(expected)
        assert all(torch.equal(got[k], expected[k]) for k in expected)
        assert "tomopick.workflows" not in sys.modules
        print("loaded")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "loaded"
