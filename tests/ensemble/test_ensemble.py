"""Ensembles: fused scores equal the hand-computed weighted mean (members of different architectures and voxel
sizes, classes matched by name), thresholds follow the single-model rules, and --model-weights errors are one line."""

import numpy as np
import pytest
import torch

from tomopick.cli.main import main
from tomopick.data import CZII, Tomogram
from tomopick.errors import TomopickError
from tomopick.inference.ensemble import EnsembleSpec, class_weights, ensemble_model, parse_model_weights
from tomopick.inference.normalize import RobustStats, robust_config
from tomopick.inference.options import PickOptions
from tomopick.inference.picking import inference_settings, pick_tomogram
from tomopick.inference.rescale import rescale_volume
from tomopick.io import write_tomogram
from tomopick.models import build_model, load_checkpoint, save_checkpoint
from tomopick.models.checkpoint import LoadedModel


def member(network, hparams, classes, voxel_size_A, seed, pick=None):
    torch.manual_seed(seed)
    net = build_model(network, 1, len(classes) + 1, **hparams).eval()
    config = {"network": {"name": network, "hparams": hparams}, "in_channels": 1, "out_channels": len(classes) + 1,
              "output": "softmax", "classes": ["background", *classes],
              "particles": CZII.subset(classes).model_dump(mode="json"), "voxel_size_A": voxel_size_A,
              "patch_size": [16, 16, 16], "normalisation": robust_config(), "target": {"kind": "sphere",
                                                                                        "radius_fraction": 0.5},
              "pick": pick or {}}
    return LoadedModel(model=net, config=config, path=f"{network}-{voxel_size_A:g}A.pt")


@pytest.fixture(scope="module")
def members():
    # A: plain UNet at 10 Å knowing apo-ferritin and ribosome; B: residual UNet at 5 Å knowing ribosome and
    # thyroglobulin, in another channel order
    a = member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["apo-ferritin", "ribosome"], 10.0, 1,
               {"score": "blob", "thresholds_by_score": {"blob": {"apo-ferritin": 0.3, "ribosome": 0.4}}})
    b = member("resunet", {"channels": [3, 6], "strides": [2], "num_res_units": 1}, ["thyroglobulin", "ribosome"],
               5.0, 2, {"score": "blob", "thresholds_by_score": {"blob": {"ribosome": 0.1}}})
    return a, b


def softmax_of(loaded, x):
    with torch.no_grad():
        return torch.softmax(loaded.model(torch.from_numpy(x)[None, None]), dim=1)[0].numpy()


def test_fused_scores_are_the_weighted_mean_by_class_name(members):
    a, b = members
    fused = ensemble_model([a, b], [0.6, 0.4])
    assert fused.classes == ["apo-ferritin", "ribosome", "thyroglobulin"]
    assert fused.voxel_size_A == 10.0
    rng = np.random.default_rng(0)
    vol = rng.normal(0, 1, (16, 32, 32)).astype(np.float32)  # already normalised (stats 0, 1; no value clipped)
    options = PickOptions(threshold=0.99, roi_size=(16, 32, 32), overlap=0.0)
    maps = {}
    pick_tomogram(Tomogram(vol, 10.0), fused, options, run="t", stats=RobustStats(0.0, 1.0, 1),
                  settings=inference_settings(fused, options),
                  on_scores=lambda ms: maps.update({m.source.split(":")[1]: np.asarray(m.data[...]) for m in ms}))
    # by hand: A on the volume; B on the volume resampled to 5 Å (31 × 63 × 63 voxels, voxel j at j · 5 Å),
    # padded with the median (0) to a multiple of its downsampling (2), its softmax sampled back at every other voxel
    pa = softmax_of(a, vol)
    fine = rescale_volume(vol, (2.0, 2.0, 2.0))
    assert fine.shape == (31, 63, 63)
    pb = softmax_of(b, np.pad(fine, ((0, 1), (0, 1), (0, 1))))[:, :31:2, :63:2, :63:2]
    want = {"apo-ferritin": pa[1],                         # only A knows it: A's map
            "ribosome": 0.6 * pa[2] + 0.4 * pb[2],         # A channel 2, B channel 2 (by name, not position)
            "thyroglobulin": pb[1]}                        # only B knows it
    for name, expected in want.items():
        np.testing.assert_allclose(maps[name], expected, atol=2e-3, err_msg=name)  # float16 store
    assert np.abs(maps["ribosome"] - pa[2]).max() > 0.01  # B really contributes


def test_tta_composes_and_single_member_is_the_model(members):
    a, _ = members
    vol = np.random.default_rng(1).normal(0, 1, (16, 32, 32)).astype(np.float32)
    out = {}
    for label, model in (("alone", a), ("ensemble", ensemble_model([a, a], [0.3, 0.7]))):
        options = PickOptions(threshold=0.99, roi_size=(16, 32, 32), overlap=0.0, tta=4)
        pick_tomogram(Tomogram(vol, 10.0), model, options, run="t", stats=RobustStats(0.0, 1.0, 1),
                      settings=inference_settings(model, options),
                      on_scores=lambda ms, k=label: out.update({k: [np.asarray(m.data[...]) for m in ms]}))
    np.testing.assert_allclose(out["ensemble"][0], out["alone"][0], atol=2e-3)
    np.testing.assert_allclose(out["ensemble"][1], out["alone"][1], atol=2e-3)


def test_thresholds_are_the_weighted_mean_of_the_members(members):
    a, b = members
    fused = ensemble_model([a, b], [0.75, 0.25])
    stored = fused.config["pick"]["thresholds_by_score"]["blob"]
    assert stored["apo-ferritin"] == pytest.approx(0.3)             # only A knows it
    assert stored["ribosome"] == pytest.approx(0.75 * 0.4 + 0.25 * 0.1)
    assert "thyroglobulin" not in stored                            # no member stores one: the default applies
    assert "peak" not in fused.config["pick"]["thresholds_by_score"]  # nobody stores peak thresholds: default
    table = class_weights([a.config, b.config], [0.75, 0.25], fused.classes)
    np.testing.assert_allclose(table, [[1.0, 0.75, 0.0], [0.0, 0.25, 1.0]])


def test_members_stored_plans_fuse_to_the_smallest_window_and_the_widest_overlap():
    # A at 10 Å stores 208 × 192 × 192 at overlap 0.12; B at 5 Å stores 128³ of its voxels (64³ on A's grid)
    a = member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["ribosome"], 10.0, 1,
               {"roi_size": [208, 192, 192], "overlap": 0.12})
    b = member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["ribosome"], 5.0, 2,
               {"roi_size": [128, 400, 128], "overlap": 0.05})
    fused = ensemble_model([a, b], [0.5, 0.5])
    assert fused.config["pick"]["roi_size"] == [64, 192, 64] and fused.config["pick"]["overlap"] == 0.12
    settings = inference_settings(fused)
    assert tuple(settings.roi_size) == (64, 192, 64) and settings.overlap == 0.12
    plain = ensemble_model([member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["ribosome"], 10.0, 3),
                            a], [0.5, 0.5])
    assert plain.config["pick"]["roi_size"] == [208, 192, 192]
    neither = ensemble_model([member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["ribosome"], 10.0, 3),
                              member("unet", {"channels": [4, 8, 16], "strides": [2, 2]}, ["ribosome"], 10.0, 4)],
                             [0.5, 0.5])
    assert "roi_size" not in neither.config["pick"] and "overlap" not in neither.config["pick"]


@pytest.mark.parametrize("text, n, message", [
    ("0.6", 2, "1 weight for 2 models"),
    ("0.6,abc", 2, "expected numbers"),
    ("0.6,-0.4", 2, ">= 0"),
    ("0,0", 2, "at least one weight must be > 0"),
    ("1,2,3", 2, "3 weights for 2 models"),
])
def test_model_weights_errors(text, n, message):
    with pytest.raises(TomopickError, match=message) as info:
        parse_model_weights(text, n)
    assert "--model-weights" in str(info.value) and "\n" not in str(info.value)


def test_model_weights_normalised():
    assert parse_model_weights("3,1", 2) == [0.75, 0.25]
    assert parse_model_weights(None, 4) == [0.25] * 4
    assert EnsembleSpec(["a.pt", "b.pt"], "1,1").weights == [0.5, 0.5]


def test_cli_ensemble_and_weight_errors(tmp_path, members, capsys):
    a, b = members
    paths = []
    for m in (a, b):
        path = tmp_path / m.path
        save_checkpoint(path, m.model, m.config)
        paths.append(str(path))
    assert load_checkpoint(paths[1]).voxel_size_A == 5.0
    rng = np.random.default_rng(2)
    mrc = tmp_path / "TS_1.mrc"
    write_tomogram(Tomogram.from_array(rng.normal(0, 1, (20, 40, 40)).astype(np.float32), 10.0), mrc)
    out = tmp_path / "picks.csv"
    for args, message in ((["--model-weights", "0.5"], "1 weight for 2 models"),
                          (["--model-weights", "x,y"], "expected numbers")):
        with pytest.raises(SystemExit) as exit_info:
            main(["pick", str(mrc), "--out", str(out), "--model", paths[0], "--model", paths[1], *args, "-q"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --model-weights") and message in err and "\n" not in err
        assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        main(["pick", str(mrc), "--out", str(out), "--model", paths[0], "--model", paths[1],
              "--model-weights", "0.6,0.4", "-q"])
    assert exit_info.value.code == 0
    printed = capsys.readouterr().out
    assert "ensemble:" in printed and "weight 0.6" in printed
    # per class, the ensemble's threshold and its rule: ribosome 0.6 · 0.4 + 0.4 · 0.1 = 0.28 from the checkpoints
    assert "ribosome" in printed and ">= 0.28 (checkpoint)" in printed
    assert "thyroglobulin" in printed and ">= 0.2 (default)" in printed
    assert out.is_file()


def test_coarser_member_matches_the_tomogram_resampler():
    """A member at 20 Å on the 10 Å grid: smoothing + resampling per window equals tomopick's whole-volume
    resampler (inference.rescale) followed by linear interpolation back (scipy)."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    fine = member("unet", {"channels": [4, 8], "strides": [2]}, ["apo-ferritin"], 10.0, 3)
    coarse = member("unet", {"channels": [4, 8], "strides": [2]}, ["ribosome"], 20.0, 4)
    fused = ensemble_model([fine, coarse])
    vol = (3 * gaussian_filter(np.random.default_rng(3).normal(0, 1, (17, 33, 33)), 2)).astype(np.float32)
    with torch.no_grad():
        out = fused.model(torch.from_numpy(vol)[None, None])[0].numpy()
    small = rescale_volume(vol, (0.5, 0.5, 0.5))                  # 9 × 17 × 17, voxel j at 2j
    prob = softmax_of(coarse, np.pad(small, [(0, 1)] * 3))[1, :9, :17, :17]
    back = map_coordinates(prob, np.meshgrid(*[np.arange(n) / 2 for n in vol.shape], indexing="ij"), order=1)
    np.testing.assert_allclose(out[1], back, atol=1e-4)
    np.testing.assert_allclose(out[0], softmax_of(fine, np.pad(vol, [(0, 1)] * 3))[1, :17, :33, :33], atol=1e-5)


def test_ensemble_adapts_each_members_batch_norm_as_alone_with_its_own_reference():
    from tomopick.inference.adapt import AdaptSettings, adapt_batchnorm, batchnorm_layers, measure_batchnorm
    from tomopick.inference.adapt import reference_statistics
    from scipy.ndimage import gaussian_filter

    hp = {"channels": [4, 8], "strides": [2], "num_res_units": 1, "norm": "batch"}
    rng = np.random.default_rng(5)
    vol = gaussian_filter(rng.normal(0, 1, (16, 32, 32)), 1.5).astype(np.float32) * 4.0  # correlated: adapted
    stats, kw = RobustStats(0.0, 1.0, 1), dict(settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32)), divisor=4)
    members = []
    for seed in (3, 4):
        m = member("resunet", hp, ["apo-ferritin", "ribosome"], 10.0, seed)
        assert batchnorm_layers(m.model)
        ref_vol = gaussian_filter(rng.normal(0, 1, (16, 32, 32)), 1.5).astype(np.float32)
        means, variances, _ = measure_batchnorm(m.model, ref_vol, stats, {"clip": 100.0}, **kw)
        m.config["pick"] = {"adapt_norm": 0.5, "adapt_reference": reference_statistics([(means, variances)])}
        members.append(m)
    fused = ensemble_model(members, [0.5, 0.5])
    assert fused.config["pick"]["adapt_norm"] == 0.5
    assert PickOptions().with_defaults(fused.config).adapt_norm == 0.5  # what `tomopick pick` uses by default
    reference = fused.config["pick"]["adapt_reference"]
    together, info = adapt_batchnorm(fused.model, vol, stats, {"clip": 100.0}, reference=reference,
                                     settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32), strength=0.5),
                                     divisor=4)
    assert info["rule"] == "relative to the stored reference"
    expected = []
    for m in members:
        alone, _ = adapt_batchnorm(m.model, vol, stats, {"clip": 100.0}, reference=m.config["pick"]["adapt_reference"],
                                   settings=AdaptSettings(windows=1, window_zyx=(16, 32, 32), strength=0.5), divisor=4)
        expected += batchnorm_layers(alone)
    got = batchnorm_layers(together)
    assert len(got) == len(expected) == 2 * len(batchnorm_layers(members[0].model))
    for g, e in zip(got, expected):
        torch.testing.assert_close(g.running_mean, e.running_mean, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g.running_var, e.running_var, rtol=1e-4, atol=1e-5)
    assert max(float((g.running_mean - b.running_mean).abs().max())
               for g, b in zip(got, batchnorm_layers(fused.model))) > 1e-3  # the statistics did move
    # a member with batch norm but no reference: no fused reference (plain AdaBN for all)
    members[1].config["pick"].pop("adapt_reference")
    assert "adapt_reference" not in ensemble_model(members, [0.5, 0.5]).config["pick"]
