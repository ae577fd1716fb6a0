"""The HTML picking report: what it holds (numbers), how it is written (atomic, no overwrite), and what a real
headless browser makes of it (no console errors, every image decodes, a non-blank screenshot)."""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from tomopick.cli.main import main
from tomopick.data import CZII, Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.evaluation import evaluate
from tomopick.io import read_picks, write_picks, write_tomogram
from tomopick.viz.report import ReportInput, ReportOptions, RunInput, render_report
from tomopick.workflows.report import report

from _browser import find_chromium, open_page

VS = 10.0
# (z, y, x) voxel centres of planted particles and their classes; radii 60 Å (6 vox) and 90 Å (9 vox)
PLANTED = [((16, 20, 20), "apo-ferritin"), ((16, 44, 40), "apo-ferritin"), ((12, 20, 48), "beta-galactosidase")]


def _tomogram(shape=(32, 64, 72)) -> np.ndarray:
    vol = np.random.default_rng(1).normal(0, 0.1, shape).astype(np.float32)
    z, y, x = np.indices(shape)
    for (cz, cy, cx), name in PLANTED:
        r = CZII[name].radius_A / VS
        vol[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 <= r * r] -= 1.0
    return vol


def _picks_and_truth(run: str = "toy") -> tuple[Picks, Picks]:
    xyz = [[x * VS, y * VS, z * VS] for (z, y, x), _ in PLANTED]
    names = [n for _, n in PLANTED]
    # the truth has one more apo-ferritin (missed); the picks one false positive
    truth = Picks.from_arrays(xyz + [[600.0, 100, 160]], names + ["apo-ferritin"], run=run)
    picks = Picks.from_arrays(xyz + [[300.0, 500, 100]], names + ["apo-ferritin"],
                              score=np.array([0.9, 0.6, 0.8, 0.3]), run=run)
    return picks, truth


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.srcs.append(a.get("src", ""))
        for key in ("src", "href"):
            value = a.get(key) or ""
            if value and not value.startswith(("data:", "#")):
                self.external.append(f"{tag} {key}={value[:40]}")


def _parse(page: str) -> _Images:
    parser = _Images()
    parser.feed(page)
    return parser


@pytest.fixture(scope="module")
def toy_page() -> tuple[str, Picks, Picks]:
    picks, truth = _picks_and_truth()
    tomo = Tomogram.from_array(_tomogram(), VS)
    data = ReportInput(runs=[RunInput("toy", tomo, picks, truth)], particles=CZII,
                       thresholds={"apo-ferritin": 0.25}, threshold_notes={"apo-ferritin": "option"},
                       score_name="blob score", model_card={"file": "toy.pt", "card": {"note": "<b>not html</b>"}},
                       command="tomopick report --picks p.csv toy.mrc --out r.html")
    return render_report(data, ReportOptions(n_slabs=2, gallery_size=2)), picks, truth


def test_report_holds_the_numbers_and_only_inline_images(toy_page):
    page, picks, truth = toy_page
    parsed = _parse(page)
    assert parsed.external == []                         # nothing fetched from anywhere
    assert "<script" not in page.lower()
    # 2 slabs; per class a histogram and 3 average views; galleries: apo top 2, median 2 (of 3 picks: 1 left),
    # FP 1, FN 1; beta-gal top 1 only; plus the PR curves
    from PIL import Image

    sizes = []
    for src in parsed.srcs:
        assert src.startswith("data:image/png;base64,")
        sizes.append(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).size)
    n_tiles = (2 + 1 + 1 + 1) + 1
    assert len(parsed.srcs) == 2 + 2 * (1 + 3) + n_tiles + 1
    assert sizes[0] == (72, 64) and sizes[1] == (72, 64)   # slabs at full size (x, y)
    expected = evaluate(truth, picks, CZII).score
    assert f"CZII score (weighted F4): {expected:.4g}" in page
    assert "false positives (1)" in page and "false negatives (1)" in page
    assert "kept at blob score ≥ 0.25 (option)" in page
    assert "&lt;b&gt;not html&lt;/b&gt;" in page           # the model card is escaped, not rendered
    assert "tomopick report --picks p.csv toy.mrc --out r.html" in page
    # the central slab: 15 slices (the median diameter of 120 and 180 Å at 10 Å) around z 15.5; all picks drawn
    assert re.search(r"z 8–22 \(central\); 4 picks drawn", page) and "mean of 15 slices (150 Å" in page


def test_report_workflow_writes_atomically_and_refuses_to_overwrite(tmp_path):
    picks, truth = _picks_and_truth(run="toy")
    write_tomogram(Tomogram.from_array(_tomogram(), VS), tmp_path / "toy.mrc")
    write_picks(picks, tmp_path / "picks.csv")
    write_picks(truth, tmp_path / "truth.csv")
    out = tmp_path / "out" / "report.html"
    made = report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=out, truth=tmp_path / "truth.csv",
                  options=ReportOptions(n_slabs=1, gallery_size=2))
    assert made.path == out and made.size_bytes == out.stat().st_size and made.n_picks == 4
    assert made.runs == ("toy",)
    assert [p.name for p in out.parent.iterdir()] == ["report.html"]   # no temporary left behind
    first = out.read_bytes()
    with pytest.raises(TomopickError, match="--overwrite"):
        report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=out)
    assert out.read_bytes() == first
    with pytest.raises(TomopickError, match=r"\.html"):
        report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=tmp_path / "report.png")
    with pytest.raises(TomopickError, match="unknown particle"):
        write_picks(Picks.from_arrays([[0.0, 0, 0]], "nope", run="toy"), tmp_path / "bad.csv")
        report(tmp_path / "bad.csv", [tmp_path / "toy.mrc"], out=tmp_path / "bad.html")


def test_report_cli(tmp_path, capsys):
    picks, _ = _picks_and_truth(run="toy")
    write_tomogram(Tomogram.from_array(_tomogram(), VS), tmp_path / "toy.mrc")
    write_picks(picks, tmp_path / "picks.csv")
    out = tmp_path / "r.html"
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "toy.mrc"), "--picks", str(tmp_path / "picks.csv"), "--out", str(out),
              "--slabs", "1", "--gallery", "2"])
    assert exc.value.code == 0
    assert f"report of 4 picks in 1 run(s) written to {out}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["report", str(tmp_path / "toy.mrc"), "--picks", str(tmp_path / "picks.csv"), "--out", str(out)])
    assert exc.value.code == 2 and "--overwrite" in capsys.readouterr().err


@pytest.mark.skipif(find_chromium() is None,
                    reason="no Chromium on this machine (Debian: apt-get install chromium) to open the page in")
def test_report_in_a_real_headless_browser(toy_page, tmp_path):
    page, _, _ = toy_page
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    seen = open_page(path, width=1200, height=1400)
    assert seen.errors == []
    assert seen.title == "tomopick picks"
    n_images = len(_parse(page).srcs)
    assert len(seen.image_widths) == n_images and min(seen.image_widths) > 0   # every image decodes
    assert all(u.startswith(("file:", "data:")) for u in seen.requests)        # nothing from the network
    from PIL import Image

    shot = np.asarray(Image.open(io.BytesIO(seen.screenshot_png)).convert("L"), dtype=float)
    assert shot.shape == (1400, 1200)
    assert shot.std() > 20                                                   # not a blank page
    # the slab images are on screen: a region of the screenshot with the tomogram's grey noise
    assert (shot < 128).mean() > 0.02


def test_pick_writes_its_report(tmp_path, capsys):
    from tomopick.simulate import SimulationConfig, simulate_tomogram

    sim = simulate_tomogram(SimulationConfig(shape_zyx=(48, 96, 96), voxel_size_A=10.012, n_vesicles=0,
                                             counts={"ribosome": 2, "apo-ferritin": 3}), 11)
    write_tomogram(sim.tomogram, tmp_path / "sim.mrc")
    # a wrong report path is refused before any picking
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tmp_path / "sim.mrc"), "--out", str(tmp_path / "p.csv"), "--report",
              str(tmp_path / "r.png"), "--quiet"])
    assert exc.value.code == 2 and ".html" in capsys.readouterr().err and not (tmp_path / "p.csv").exists()
    with pytest.raises(SystemExit) as exc:
        main(["pick", str(tmp_path / "sim.mrc"), "--out", str(tmp_path / "p.csv"), "--report",
              str(tmp_path / "r.html"), "--quiet"])
    assert exc.value.code == 0
    assert f"report written to {tmp_path / 'r.html'}" in capsys.readouterr().out
    page = (tmp_path / "r.html").read_text()
    picks = read_picks(tmp_path / "p.csv")
    assert f"{len(picks)} picks in 1 tomogram(s): sim" in page
    # the thresholds the picks were kept at (the bundled model's, for the blob score) are marked
    assert "kept at blob score ≥ 0.15 (checkpoint)" in page and "&quot;card&quot;" in page  # ribosome's


def test_report_with_a_segmentation(tmp_path):
    picks, _ = _picks_and_truth(run="toy")
    write_tomogram(Tomogram.from_array(_tomogram(), VS), tmp_path / "toy.mrc")
    labels = np.zeros((32, 64, 72), dtype=np.uint8)
    labels[10:20, 10:30, 10:30] = 1
    write_tomogram(Tomogram.from_array(labels, VS), tmp_path / "toy_seg.mrc")
    write_picks(picks, tmp_path / "picks.csv")
    report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=tmp_path / "r.html",
           segmentations=[tmp_path / "toy_seg.mrc"], options=ReportOptions(n_slabs=1, gallery_size=1))
    assert "yellow: the segmentation" in (tmp_path / "r.html").read_text()
    write_tomogram(Tomogram.from_array(labels[:, :32], VS), tmp_path / "small_seg.mrc")
    with pytest.raises(TomopickError, match="segmentation shape"):
        report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=tmp_path / "r2.html",
               segmentations=[tmp_path / "small_seg.mrc"])


def test_tomograms_are_loaded_within_one_memory_budget(tmp_path):
    from tomopick.io import read_tomogram
    from tomopick.workflows.reporting import report_input

    vol = _tomogram()
    for run in ("a", "b", "c"):
        write_tomogram(Tomogram.from_array(vol, VS), tmp_path / f"{run}.mrc")
    tomos = {r: read_tomogram(tmp_path / f"{r}.mrc") for r in ("a", "b", "c")}
    data = report_input(Picks.empty(), None, CZII, tomos, max_load_bytes=2 * vol.nbytes)
    kinds = [type(r.tomogram.data) for r in data.runs]
    assert kinds == [np.ndarray, np.ndarray, np.memmap]     # two fit in the budget, the third stays lazy
    assert np.array_equal(data.runs[2].tomogram.data, vol)


def test_truth_of_other_runs_is_not_counted(tmp_path):
    picks, truth = _picks_and_truth(run="toy")
    other = Picks.from_arrays([[100.0, 100, 100]] * 3, "ribosome", run="train_1")  # a run never picked
    write_tomogram(Tomogram.from_array(_tomogram(), VS), tmp_path / "toy.mrc")
    write_picks(picks, tmp_path / "picks.csv")
    made = report(tmp_path / "picks.csv", [tmp_path / "toy.mrc"], out=tmp_path / "r.html",
                  truth=Picks.concat([truth, other]), options=ReportOptions(n_slabs=1, gallery_size=1))
    assert made.runs == ("toy",)
    page = (tmp_path / "r.html").read_text()
    assert f"CZII score (weighted F4): {evaluate(truth, picks, CZII).score:.4g}" in page
