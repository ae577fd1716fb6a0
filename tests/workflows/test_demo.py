"""End to end through the main path (simulate → train → pick → evaluate) at toy size, as ``make demo`` runs it."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.errors import TomopickError
from tomopick.io.copick_project import CopickProject
from tomopick.workflows.demo import run_demo


@pytest.mark.slow
def test_demo_end_to_end_scores_the_held_out_run(tmp_path):
    out = tmp_path / "demo"
    result = run_demo(out, n_train=1, shape_zyx=(48, 128, 128), epochs=1, steps_per_epoch=2, seed=3,
                      use_bundled=True, log=lambda _: None)
    assert result.test_runs == ["sim_002"]
    truth = CopickProject.open(out / "data").read_picks(run="sim_002", user_id="curation")
    assert len(truth) > 0
    res = result.scores["trained (demo)"]
    table = res.table.set_index("particle")
    # every ground-truth particle of the held-out run is accounted for: tp + fn = n_truth per class
    for name, n in truth.counts().items():
        assert table.loc[name, "n_truth"] == n
        assert table.loc[name, "tp"] + table.loc[name, "fn"] == n
    # the score is the weight-averaged F-beta (β = 4) of the scored classes, each from its own counts
    scored = table[table["scored"]]
    tp, fp, fn = (scored[c].to_numpy(float) for c in ("tp", "fp", "fn"))
    fbeta = np.divide(17 * tp, 17 * tp + 16 * fn + fp, out=np.zeros_like(tp), where=(tp + fp + fn) > 0)
    assert scored["fbeta"].to_numpy() == pytest.approx(fbeta)
    assert res.score == pytest.approx(float((scored["weight"] * fbeta).sum() / scored["weight"].sum()))
    # two training steps leave the demo model untrained (it scores 0 here), so the floor is the bundled model's:
    # the seeded held-out run holds one ribosome, which czii-10A (validation F-beta 0.98) finds (score 1.0 when
    # written); β = 4 all but ignores false positives, so 0.5 means "found its particles", with margin for
    # platform-level numerical differences that move a pick across its threshold
    bundled = result.scores["bundled czii-10A"]
    assert bundled.score >= 0.5
    assert (out / "picks_bundled.csv").is_file()
    assert (out / "picks_trained.csv").is_file() and (out / "model" / "best.pt").is_file()
    assert (out / "report_trained" / "report.md").is_file()
    # the demo ends with the picking report of the bundled model's picks: slabs and the CZII table inside
    assert result.report_path == out / "report.html"
    page = result.report_path.read_text()
    assert page.startswith("<!DOCTYPE html>") and "sim_002" in page and "CZII score (weighted F4)" in page
    assert "data:image/png;base64," in page and "src=\"http" not in page
    with pytest.raises(TomopickError, match="--overwrite"):
        run_demo(out, n_train=1, log=lambda _: None)


def test_demo_refuses_to_replace_a_foreign_folder(tmp_path):
    (tmp_path / "precious.txt").write_text("data")
    with pytest.raises(TomopickError, match="did not make"):
        run_demo(tmp_path, overwrite=True, log=lambda _: None)
    assert (tmp_path / "precious.txt").read_text() == "data"
