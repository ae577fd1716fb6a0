"""calibrate(): thresholds chosen on annotated tomograms equal an independent sweep, land in the checkpoint copy,
and become the default of pick(); float16 stays float16; CLI success and one-line errors."""

import numpy as np
import pandas as pd
import pytest
import torch

from tomopick.cli.main import main
from tomopick.data import CZII, Picks, Tomogram
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.evaluation import threshold_sweep
from tomopick.inference.normalize import robust_config
from tomopick.io import read_picks, write_picks, write_tomogram
from tomopick.models import build_model, register_model, save_checkpoint
from tomopick.models.checkpoint import load_checkpoint
from tomopick.peaks.thresholds import DEFAULT_THRESHOLD, MIN_SCORE, THRESHOLD_TOLERANCE, stored_threshold

MAX_THRESHOLD = DEFAULT_THRESHOLD["blob"]  # stored for a class never found
from tomopick.workflows.calibrate import (
    calibrate, choose_thresholds, foreground_particles, parse_runs, source_is_half,
)
from tomopick.workflows.pick import pick

from _pick_toy import box_filter

PARTICLES = CZII.subset(["apo-ferritin", "ribosome"])
VS = 10.0
SHAPE = (24, 48, 48)  # (z, y, x) voxels
#: Gaussian blobs (x, y, z in Å, amplitude): four annotated apo-ferritins, two decoys absent from the truth.
TRUE = [((100, 100, 120), 6.0), ((300, 120, 120), 6.0), ((120, 350, 100), 2.2), ((360, 360, 140), 1.6)]
DECOYS = [((240, 240, 60), 3.0), ((380, 220, 170), 1.0)]


register_model("test-calibrate-box")(box_filter)


def config(**extra):
    return {"network": {"name": "test-calibrate-box", "hparams": {}}, "in_channels": 1, "out_channels": 3,
            "output": "softmax", "classes": ["background", "apo-ferritin", "ribosome"],
            "particles": PARTICLES.model_dump(mode="json"), "voxel_size_A": VS, "patch_size": [16, 16, 16],
            "normalisation": robust_config(), "target": {"kind": "sphere"}, **extra}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A float32 source checkpoint, the tomogram TS_1.mrc and its truth (RELION STAR)."""
    root = tmp_path_factory.mktemp("calibrate")
    save_checkpoint(root / "source.pt", build_model("test-calibrate-box", 1, 3), config(),
                    card={"name": "box"})
    rng = np.random.default_rng(0)
    vol = rng.normal(size=SHAPE).astype(np.float32)
    grid = np.meshgrid(*[np.arange(n) * VS for n in SHAPE], indexing="ij")
    for (x, y, z), amp in TRUE + DECOYS:
        d2 = (grid[0] - z) ** 2 + (grid[1] - y) ** 2 + (grid[2] - x) ** 2
        vol += amp * np.exp(-d2 / (2 * 20.0**2)).astype(np.float32)
    write_tomogram(Tomogram.from_array(vol, VS), root / "TS_1.mrc")
    truth = Picks.from_arrays(np.array([p for p, _ in TRUE], dtype=float), "apo-ferritin", run="TS_1")
    write_picks(truth, root / "truth.star", voxel_size_A=VS, particles=PARTICLES)
    return root


@pytest.fixture(scope="module")
def calibrated(data):
    return calibrate(data / "TS_1.mrc", data / "truth.star", model=data / "source.pt", out=data / "calibrated.pt",
                     score="peak")


def independent_thresholds(data, model=None):
    """pick at the validator's floor, sweep, stored_threshold: what calibrate() must store."""
    picks = pick(data / "TS_1.mrc", model or data / "source.pt", threshold=MIN_SCORE, score="peak").picks
    truth = read_picks(data / "truth.star", particles=PARTICLES)
    sweep = threshold_sweep(truth, picks, PARTICLES, "czii", beta=4.0, tolerance=THRESHOLD_TOLERANCE)
    return picks, sweep, {r["particle"]: stored_threshold(r, None, score="peak") for _, r in sweep.table.iterrows()}


def test_thresholds_equal_an_independent_sweep_and_are_stored(data, calibrated):
    picks, sweep, expected = independent_thresholds(data)
    assert len(picks) == 6 and set(picks.particles) == {"apo-ferritin"}
    t = expected["apo-ferritin"]
    # β = 4: the best threshold keeps 4 TP + 1 decoy (F4 0.986); keeping the weaker decoy too gives F4 0.971,
    # within THRESHOLD_TOLERANCE (0.02) of the best, so the lower threshold (the weak decoy's score) is stored
    assert MIN_SCORE < t < MAX_THRESHOLD
    assert t == pytest.approx(float(picks.scores.min())) and int((picks.scores >= t).sum()) == 6
    best = sweep.curves[sweep.curves["particle"] == "apo-ferritin"]
    assert int(best["tp"].max()) == 4
    assert calibrated.thresholds == {"apo-ferritin": t, "ribosome": DEFAULT_THRESHOLD["peak"]}
    assert calibrated.calibrated == ("apo-ferritin",) and calibrated.runs == ("TS_1",)
    pd.testing.assert_frame_equal(calibrated.table, sweep.table)
    row = calibrated.at_thresholds.set_index("particle").loc["apo-ferritin"]
    assert (int(row["tp"]), int(row["fp"]), int(row["fn"])) == (4, 2, 0)
    f4 = 17 * (2 / 3) * 1.0 / (16 * (2 / 3) + 1.0)  # precision 4/6, recall 1
    assert calibrated.score == pytest.approx(f4) and row["fbeta"] == pytest.approx(f4)

    loaded = load_checkpoint(calibrated.out)
    assert loaded.config["pick"] == {"thresholds": calibrated.thresholds, "chosen_on": "calibration runs TS_1",
                                     "beta": 4.0, "score": "peak", "peak_method": "maxpool", "distance_factor": 0.75}
    card = loaded.card["calibration"]
    assert loaded.card["name"] == "box" and card["runs"] == ["TS_1"] and card["score"] == pytest.approx(f4)
    assert card["classes"]["apo-ferritin"]["tp"] == 4 and card["classes"]["apo-ferritin"]["fbeta"] == pytest.approx(f4)
    source = torch.load(data / "source.pt", weights_only=True)["state_dict"]
    copy = torch.load(calibrated.out, weights_only=True)["state_dict"]
    assert all(copy[k].dtype == torch.float32 and torch.equal(copy[k], v) for k, v in source.items())


def test_pick_with_the_copy_uses_its_thresholds(data, calibrated):
    t = calibrated.thresholds["apo-ferritin"]
    everything = pick(data / "TS_1.mrc", data / "source.pt", threshold=MIN_SCORE, score="peak").picks
    default = pick(data / "TS_1.mrc", calibrated.out).picks  # the copy records its score: peak
    assert len(default) == int((everything.scores >= t).sum()) == 6
    assert default.scores.min() >= t
    assert len(pick(data / "TS_1.mrc", data / "source.pt", score="peak").picks) == int((everything.scores >= 0.5).sum())


def test_float16_source_gives_float16_copy_and_keeps_uncalibrated_thresholds(data, calibrated, tmp_path):
    src = tmp_path / "half.pt"
    save_checkpoint(src, build_model("test-calibrate-box", 1, 3),
                    config(pick={"thresholds": {"apo-ferritin": 0.9, "ribosome": 0.3}, "score": "peak"}), half=True)
    assert source_is_half(src) and not source_is_half(data / "source.pt") and not source_is_half(None)
    res = calibrate([str(data / "TS_1.mrc")], data / "truth.star", model=src, out=tmp_path / "half_cal.pt",
                    runs="TS_1", threads=1, score="peak")
    # apo-ferritin chosen on the truth (float16 weights shift the scores a little); ribosome (not annotated)
    # keeps the source's 0.3
    expected = independent_thresholds(data, src)[2]["apo-ferritin"]
    assert expected == pytest.approx(calibrated.thresholds["apo-ferritin"], abs=1e-3)
    assert res.thresholds == {"apo-ferritin": expected, "ribosome": 0.3}
    state = torch.load(res.out, weights_only=True)["state_dict"]
    assert {v.dtype for v in state.values() if v.is_floating_point()} == {torch.float16}
    assert load_checkpoint(res.out).config["pick"]["thresholds"] == res.thresholds


def test_copick_project_picks_only_the_annotated_runs(data, calibrated, tmp_path):
    from tomopick.io import read_tomogram
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.create(tmp_path / "proj", PARTICLES)
    project.write_tomogram("TS_1", read_tomogram(data / "TS_1.mrc"))
    project.write_tomogram("TS_2", Tomogram.from_array(np.zeros((8, 8, 8), np.float32), VS))
    project.write_picks("TS_1", read_picks(data / "truth.star", particles=PARTICLES), user_id="curation")
    seen = []
    res = calibrate(f"copick://{tmp_path / 'proj'}", tmp_path / "proj", truth_user="curation",
                    model=data / "source.pt", out=tmp_path / "sub" / "m.pt", peak_method="maxpool",
                    roi_size=(16, 32, 32), progress=lambda run, d, t: seen.append(run), score="peak")
    assert set(seen) == {"TS_1"} and res.runs == ("TS_1",)  # TS_2 has no truth: not picked
    assert res.thresholds == calibrated.thresholds
    card = load_checkpoint(res.out).card["calibration"]
    assert card["pick_options"] == {"peak_method": "maxpool", "roi_size": [16, 32, 32], "score": "peak"}


def test_pure_helpers():
    assert parse_runs(None) is None and parse_runs(" , ") is None
    assert parse_runs("a, b,a") == ["a", "b"] and parse_runs(["a,b", "c"]) == ["a", "b", "c"]
    assert foreground_particles(config()).names == ["apo-ferritin", "ribosome"]
    assert foreground_particles(config()).particles[1].label == PARTICLES["ribosome"].label
    table = pd.DataFrame({"particle": ["apo-ferritin", "ribosome"], "scored": [True, False],
                          "threshold": [0.01, 0.7], "tp": [3, 0]})
    chosen, done = choose_thresholds(table, ["apo-ferritin", "ribosome"])
    assert chosen == {"apo-ferritin": MIN_SCORE, "ribosome": MAX_THRESHOLD} and done == ("apo-ferritin",)
    assert choose_thresholds(table, ["apo-ferritin", "ribosome"], {"ribosome": 0.2})[0]["ribosome"] == 0.2


def test_errors_before_picking(data, tmp_path):
    other = tmp_path / "other.csv"
    write_picks(Picks.from_arrays([[100.0, 100.0, 100.0]], "thyroglobulin", run="TS_1"), other)
    with pytest.raises(TomopickError, match="none of the model's classes"):
        calibrate(data / "TS_1.mrc", other, model=data / "source.pt", out=tmp_path / "x.pt")
    with pytest.raises(TomopickError, match="TS_2 not among the inputs"):
        calibrate(data / "TS_1.mrc", data / "truth.star", model=data / "source.pt", out=tmp_path / "x.pt",
                  runs="TS_2")
    with pytest.raises(TomopickError, match="TS_2 not in the ground truth"):  # TS_2.mrc need not exist yet
        calibrate([data / "TS_1.mrc", tmp_path / "TS_2.mrc"], data / "truth.star", model=data / "source.pt",
                  out=tmp_path / "x.pt", runs=["TS_2"])
    with pytest.raises(TomopickError, match="calibrate sets threshold itself"):
        calibrate(data / "TS_1.mrc", data / "truth.star", model=data / "source.pt", out=tmp_path / "x.pt",
                  threshold=0.3)
    with pytest.raises(OutputExistsError, match="--overwrite"):
        calibrate(data / "TS_1.mrc", data / "truth.star", model=data / "source.pt", out=data / "source.pt")
    assert not (tmp_path / "x.pt").exists()


def test_cli(data, tmp_path, capsys):
    out = tmp_path / "m2.pt"
    args = ["calibrate", str(data / "TS_1.mrc"), "--truth", str(data / "truth.star"), "--model",
            str(data / "source.pt"), "--out", str(out), "--quiet", "--threads", "1"]
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 0 and out.is_file()
    text = capsys.readouterr().out
    assert "apo-ferritin" in text and f"wrote {out}" in text
    before = out.read_bytes()

    with pytest.raises(SystemExit) as exc:  # existing output, no --overwrite
        main(args[:-3])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--overwrite" in err[0] and str(out) in err[0]
    assert out.read_bytes() == before

    elsewhere = tmp_path / "elsewhere.star"
    write_picks(Picks.from_arrays([[100.0, 100.0, 120.0]], "apo-ferritin", run="TS_7"), elsewhere, voxel_size_A=VS,
                particles=PARTICLES)
    with pytest.raises(SystemExit) as exc:  # truth of another run
        main(["calibrate", str(data / "TS_1.mrc"), "--truth", str(elsewhere), "--model", str(data / "source.pt"),
              "--out", str(tmp_path / "m3.pt"), "--quiet"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "shares no run" in err[0] and "TS_7" in err[0]
    assert not (tmp_path / "m3.pt").exists()


def test_bad_pick_option_is_refused_before_any_work(data, tmp_path):
    with pytest.raises(TomopickError, match="--peak-method 'magic'"):
        calibrate(data / "TS_1.mrc", tmp_path / "no-such-truth.star", model=tmp_path / "no-such-model.pt",
                  out=tmp_path / "c.pt", peak_method="magic")
    assert not (tmp_path / "c.pt").exists()
