"""pick(): end to end on synthetic tomograms with particles at known positions (a hand-set network), outputs,
and every bad-input case."""

import numpy as np
import pytest
import torch

from tomopick.cli.main import main
from tomopick.data import CZII, Tomogram
from tomopick.errors import NonFiniteError, OutputExistsError, TomopickError
from tomopick.inference.normalize import robust_config
from tomopick.io import read_picks, write_tomogram
from tomopick.models import build_model, register_model, save_checkpoint
from tomopick.workflows.pick import pick, resolve_thresholds as _thresholds

from _pick_toy import box_filter

PARTICLES = CZII.subset(["apo-ferritin", "ribosome"])
TRUE_A = np.array([[200.0, 260.0, 150.0], [520.0, 300.0, 260.0], [350.0, 560.0, 200.0]])  # x, y, z in Å


register_model("test-boxfilter")(box_filter)


def config(network="test-boxfilter", hparams=None, voxel_size_A=10.0):
    return {"network": {"name": network, "hparams": hparams or {}}, "in_channels": 1, "out_channels": 3,
            "output": "softmax", "classes": ["background", "apo-ferritin", "ribosome"],
            "particles": PARTICLES.model_dump(mode="json"), "voxel_size_A": voxel_size_A,
            "patch_size": [32, 32, 32], "normalisation": robust_config(), "target": {"kind": "sphere"}}


@pytest.fixture(scope="module")
def blob_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "box.pt"
    save_checkpoint(path, build_model("test-boxfilter", 1, 3), config())
    return path


@pytest.fixture(scope="module")
def tiny_unet(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "unet.pt"
    torch.manual_seed(0)
    hp = {"channels": [4, 8, 16], "strides": [2, 2]}
    save_checkpoint(path, build_model("unet", 1, 3, **hp), config("unet", hp))
    return path


def blob_tomogram(voxel_size_A=10.0, shape_A=(400, 700, 720), seed=0):
    """Noise N(0, 1) plus Gaussian blobs (σ = 20 Å, amplitude 8) at TRUE_A."""
    shape = tuple(int(round(s / voxel_size_A)) for s in shape_A)
    rng = np.random.default_rng(seed)
    vol = rng.normal(size=shape).astype(np.float32)
    grids = np.meshgrid(*[np.arange(n) * voxel_size_A for n in shape], indexing="ij")
    for x, y, z in TRUE_A:
        d2 = (grids[0] - z) ** 2 + (grids[1] - y) ** 2 + (grids[2] - x) ** 2
        vol += 8 * np.exp(-d2 / (2 * 20.0**2)).astype(np.float32)
    return Tomogram.from_array(vol, voxel_size_A)


def write(tmp_path, name, tomo):
    path = tmp_path / name
    write_tomogram(tomo, path)
    return path


def assert_found(picks, tol_A, min_score=0.7):
    assert len(picks) == len(TRUE_A), picks.frame
    assert set(picks.particles) == {"apo-ferritin"}
    got = picks.xyz_A[np.lexsort(picks.xyz_A.T[::-1])]
    want = TRUE_A[np.lexsort(TRUE_A.T[::-1])]
    np.testing.assert_allclose(got, want, atol=tol_A)
    assert np.all(picks.scores > min_score) and np.all(picks.scores <= 1.0)


@pytest.mark.parametrize("method", ["maxpool", "mpnms", "cc", "localmax"])
def test_finds_particles_in_angstrom(tmp_path, blob_model, method):
    mrc = write(tmp_path, "TS_1.mrc", blob_tomogram())
    report = pick(mrc, blob_model, out=tmp_path / "picks.star", peak_method=method, roi_size=(16, 32, 32))
    assert report.runs[0]["windows"] > 1
    # the default blob score: mean probability over the sphere of half the radius around each peak (any method)
    assert_found(report.picks, 10.0, min_score=0.7)
    # peak scores: peak probability (maxpool, localmax), component mean (cc), smoothed occupancy (mpnms)
    peak = pick(mrc, blob_model, peak_method=method, roi_size=(16, 32, 32), score="peak").picks
    assert_found(peak, 10.0, min_score={"mpnms": 0.1, "cc": 0.5}.get(method, 0.9))
    on_disk = read_picks(tmp_path / "picks.star")
    assert list(on_disk.runs) == ["TS_1"]
    np.testing.assert_allclose(np.sort(on_disk.scores), np.sort(report.picks.scores), rtol=1e-6)
    np.testing.assert_allclose(np.sort(on_disk.xyz_A, 0), np.sort(report.picks.xyz_A, 0), atol=1e-3)


def test_rescaled_tomogram_gives_angstrom_of_the_original(tmp_path, blob_model):
    mrc = write(tmp_path, "fine.mrc", blob_tomogram(voxel_size_A=6.0))  # model at 10 Å: factor 0.6
    report = pick(mrc, blob_model)
    assert report.runs[0]["rescale_factors_zyx"] == pytest.approx([0.6, 0.6, 0.6])
    assert_found(report.picks, 10.0)


def test_gaussian_mode_and_tta_agree_with_crop(tmp_path, blob_model):
    mrc = write(tmp_path, "a.mrc", blob_tomogram())
    crop = pick(mrc, blob_model).picks
    gauss = pick(mrc, blob_model, mode="gaussian", roi_size=(32, 48, 48), tta=4).picks
    assert_found(gauss, 10.0)
    np.testing.assert_allclose(np.sort(gauss.xyz_A, 0), np.sort(crop.xyz_A, 0), atol=10.0)


def test_threshold_per_class_and_mask(tmp_path, blob_model):
    tomo = blob_tomogram()
    mrc = write(tmp_path, "a.mrc", tomo)
    assert _thresholds({"*": 0.3, "ribosome": 0.7}, ["apo-ferritin", "ribosome"]) == [0.3, 0.7]
    assert _thresholds([0.2, 0.4], ["apo-ferritin", "ribosome"]) == [0.2, 0.4]
    assert _thresholds(None, ["apo-ferritin"]) == [0.5]
    high = pick(mrc, blob_model, threshold={"apo-ferritin": 0.95, "*": 0.5}, score="peak").picks
    assert len(high) == 3 and high.scores.min() >= 0.95
    blob = pick(mrc, blob_model).picks  # blob scores of the three particles lie between 0.7 and 0.95
    assert len(pick(mrc, blob_model, threshold=float(np.sort(blob.scores)[1])).picks) == 2
    with pytest.raises(TomopickError, match=r"thresholds must be in \(0, 1\]"):
        pick(mrc, blob_model, threshold=0.0)
    mask = np.zeros(tomo.shape, dtype=bool)
    mask[:, :, :40] = True  # x < 400 Å keeps the picks at x = 200 and 350 Å
    kept = pick(mrc, blob_model, mask=mask).picks
    assert sorted(kept.xyz_A[:, 0].round(-1).tolist()) == [200.0, 350.0]
    with pytest.raises(TomopickError, match="unknown class"):
        pick(mrc, blob_model, threshold={"proteasome": 0.3})


def test_model_thresholds_are_the_default(tmp_path):
    """A checkpoint's config["pick"]["thresholds"] for the score in use replace the default when no threshold is
    given; an explicit one wins; thresholds stored for the peak score do not apply to the blob score."""
    mrc = write(tmp_path, "a.mrc", blob_tomogram())
    path = tmp_path / "own.pt"
    save_checkpoint(path, build_model("test-boxfilter", 1, 3),
                    {**config(), "pick": {"thresholds": {"apo-ferritin": 0.99}, "score": "blob"}})
    report = pick(mrc, path)
    assert len(report.picks) == 0  # blob scores of these particles stay below 0.95
    assert report.runs[0]["thresholds"] == {"apo-ferritin": {"value": 0.99, "rule": "checkpoint"},
                                            "ribosome": {"value": 0.2, "rule": "default"}}
    assert len(pick(mrc, path, threshold=0.5).picks) == 3
    legacy = tmp_path / "legacy.pt"  # written before the blob score: its thresholds are peak thresholds
    save_checkpoint(legacy, build_model("test-boxfilter", 1, 3), {**config(), "pick": {"thresholds":
                                                                                       {"apo-ferritin": 0.99}}})
    report = pick(mrc, legacy)
    assert len(report.picks) == 3 and report.runs[0]["thresholds"]["apo-ferritin"]["rule"] == "default"
    assert len(pick(mrc, legacy, score="peak").picks) == 3  # peak probabilities of the three reach 0.99
    bad = tmp_path / "bad.pt"
    save_checkpoint(bad, build_model("test-boxfilter", 1, 3),
                    {**config(), "pick": {"thresholds": {"apo-ferritin": 0.3, "proteasome": 0.3}}})
    with pytest.raises(TomopickError, match="bad.pt.*proteasome"):
        pick(mrc, bad)


def test_several_inputs_one_file_and_folder(tmp_path, tiny_unet, blob_model):
    a = write(tmp_path, "run_a.mrc", blob_tomogram(seed=1))
    b = write(tmp_path, "run_b.mrc", blob_tomogram(seed=2))
    report = pick([a, b], blob_model, out=tmp_path / "all.csv")
    both = read_picks(tmp_path / "all.csv")
    assert both.counts() == {"apo-ferritin": 6} and set(both.runs) == {"run_a", "run_b"}
    out = tmp_path / "per_run"
    report = pick([a, b], tiny_unet, out=str(out) + "/", threshold=0.99)
    assert sorted(p.name for p in out.iterdir()) == ["run_a.star", "run_b.star"]
    assert len(report.outputs) == 2
    with pytest.raises(OutputExistsError):
        pick([a, b], tiny_unet, out=tmp_path / "all.csv")
    pick([a, b], tiny_unet, out=tmp_path / "all.csv", overwrite=True, threshold=0.99)


def test_copick_in_and_out(tmp_path, blob_model):
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.create(tmp_path / "proj", PARTICLES)
    for run, seed in (("TS_1", 3), ("TS_2", 4)):
        project.write_tomogram(run, blob_tomogram(seed=seed), tomo_type="wbp")
    report = pick(f"copick://{tmp_path / 'proj'}", blob_model, out=f"copick://{tmp_path / 'proj'}",
                  user_id="tomopick", session_id="1")
    assert [r["run"] for r in report.runs] == ["TS_1", "TS_2"]
    back = CopickProject.open(tmp_path / "proj").read_picks(user_id="tomopick")
    assert len(back) == 6 and set(back.runs) == {"TS_1", "TS_2"}
    assert_found(back.for_run("TS_1"), 10.0)


def test_bad_inputs_one_line_errors(tmp_path, blob_model):
    good = write(tmp_path, "good.mrc", blob_tomogram())
    not_ckpt = tmp_path / "model.pt"
    not_ckpt.write_text("hello")
    with pytest.raises(TomopickError, match="not a tomopick checkpoint"):
        pick(good, not_ckpt)
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(blob_model.read_bytes()[:300])
    with pytest.raises(TomopickError, match="corrupt.pt"):
        pick(good, corrupt)
    coarse = write(tmp_path, "coarse.mrc", blob_tomogram(voxel_size_A=30.0))
    with pytest.raises(TomopickError, match=r"coarse.mrc: voxel size 30 Å is too far from the model's 10 Å"):
        pick(coarse, blob_model)
    nan = blob_tomogram().data.copy()
    nan[3, 4, 5] = np.nan
    nan_path = write(tmp_path, "nan.mrc", Tomogram.from_array(nan, 10.0))
    with pytest.raises(NonFiniteError, match="nan.mrc: tomogram holds 1 NaN/Inf"):
        pick(nan_path, blob_model)
    assert_found(pick(nan_path, blob_model, allow_nonfinite=True).picks, 10.0)
    with pytest.raises(TomopickError, match="--peak-method 'magic': Input should be 'maxpool'"):
        pick(good, blob_model, peak_method="magic")
    with pytest.raises(TomopickError, match="tta"):
        pick(good, blob_model, tta=3)


@pytest.mark.parametrize("value", [0.0, 3.0])
def test_constant_tomogram_gives_no_picks(tmp_path, blob_model, value):
    path = write(tmp_path, "flat.mrc", Tomogram.from_array(np.full((20, 30, 30), value, np.float32), 10.0))
    report = pick(path, blob_model, out=tmp_path / "flat.csv")
    assert len(report.picks) == 0 and "constant" in report.runs[0]["note"]
    assert len(read_picks(tmp_path / "flat.csv")) == 0


def test_missing_bundled_model_is_a_clear_error(tmp_path, monkeypatch):
    import sys
    import types

    mrc = write(tmp_path, "a.mrc", blob_tomogram())
    monkeypatch.setitem(sys.modules, "tomopick.models.bundled", None)  # import fails as if not installed
    with pytest.raises(TomopickError, match="no bundled model 'czii-10A'.*--model"):
        pick(mrc, None)
    fake = types.ModuleType("tomopick.models.bundled")

    def load_bundled(name):
        raise TomopickError(f"no bundled model {name!r} (bundled: none)")

    fake.load_bundled = load_bundled
    monkeypatch.setitem(sys.modules, "tomopick.models.bundled", fake)  # module present, weights absent
    with pytest.raises(TomopickError, match=r"^no bundled model 'czii-10A' \(bundled: none\); pass --model"):
        pick(mrc, None)


def test_cli(tmp_path, blob_model, capsys):
    mrc = write(tmp_path, "TS_9.mrc", blob_tomogram())
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(mrc), "--model", str(blob_model), "--out", str(tmp_path / "p.csv"), "-t", "0.5",
              "-t", "ribosome=0.9", "--peak-method", "mpnms", "--quiet", "--save-scores", str(tmp_path / "s")])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "TS_9: apo-ferritin 3, ribosome 0" in out and "3 picks written" in out
    assert sorted(p.name for p in (tmp_path / "s").iterdir()) == ["TS_9_apo-ferritin_scores.ome.zarr",
                                                                  "TS_9_ribosome_scores.ome.zarr"]
    from tomopick.io import read_tomogram

    scores = read_tomogram(tmp_path / "s" / "TS_9_apo-ferritin_scores.ome.zarr")
    assert scores.shape == mrc_shape(mrc) and float(np.asarray(scores.data[...]).max()) > 0.99
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(mrc), "--model", str(mrc), "--out", str(tmp_path / "q.csv")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {mrc}: not a tomopick checkpoint")


def mrc_shape(path):
    from tomopick.io import read_tomogram

    return read_tomogram(path).shape


@pytest.mark.gpu
def test_gpu_with_autocast_matches_cpu(tmp_path, blob_model):
    mrc = write(tmp_path, "g.mrc", blob_tomogram())
    cpu = pick(mrc, blob_model).picks
    gpu = pick(mrc, blob_model, device="cuda", tta=4, batch_size=2).picks
    assert_found(gpu, 10.0)
    np.testing.assert_allclose(np.sort(gpu.xyz_A, 0), np.sort(cpu.xyz_A, 0), atol=10.0)


def test_default_model_is_the_bundled_one(tmp_path):
    try:
        from tomopick.models.bundled import load_bundled

        loaded = load_bundled("czii-10A")
    except (ImportError, TomopickError):
        pytest.skip("bundled czii-10A model not installed")
    vol = np.random.default_rng(0).normal(size=(48, 64, 64)).astype(np.float32)
    mrc = write(tmp_path, "noise.mrc", Tomogram.from_array(vol, loaded.voxel_size_A))
    report = pick(mrc, None, out=tmp_path / "p.star")
    assert set(report.runs[0]["counts"]) == set(loaded.classes) - {"background"}
    assert set(report.picks.particles) <= set(loaded.classes)


def test_cli_score_defaults_to_the_models(tmp_path, capsys):
    """Without --score the model decides (its config's pick.score); --score overrides it."""
    mrc = write(tmp_path, "a.mrc", blob_tomogram())
    path = tmp_path / "peaky.pt"
    save_checkpoint(path, build_model("test-boxfilter", 1, 3), {**config(), "pick": {"score": "peak"}})
    for extra, expected in (([], "peak"), (["--score", "blob"], "blob")):
        with pytest.raises(SystemExit) as exc:
            main(["pick", str(mrc), "--model", str(path), "--out", str(tmp_path / f"p{len(extra)}.csv"), "-q",
                  *extra])
        assert exc.value.code == 0
        assert f"with {expected} score >=" in capsys.readouterr().out
