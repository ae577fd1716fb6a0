"""``tomopick evaluate`` end to end: copick JSON folders, a copick project, reports, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from tomopick.cli.main import app, main
from tomopick.data import CZII, Picks
from tomopick.io import write_picks
from tomopick.workflows.evaluate import align_runs, evaluate, load_picks

runner = CliRunner()


def truth_picks(run: str) -> Picks:
    xyz = np.array([[1000.0 * (i + 1), 2000.0, 500.0] for i in range(len(CZII))])
    return Picks.from_arrays(xyz, CZII.names, run=run)


def write_folder(folder, picks: Picks) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for run in picks.runs:
        for name in picks.for_run(run).particles:
            write_picks(picks.for_run(run).for_particle(name), folder / f"{run}_{name}.json", format="copick")


def test_cli_json_on_copick_folders(tmp_path):
    truth = Picks.concat([truth_picks("a"), truth_picks("b")])
    picks = truth.select(~((truth.frame["run"] == "b") & (truth.frame["particle"] == "thyroglobulin")))
    picks = Picks.concat([picks, Picks.from_arrays([[9000.0, 9000, 9000]], "ribosome", run="a")])
    write_folder(tmp_path / "truth", truth)
    write_folder(tmp_path / "picks", picks)
    out = runner.invoke(app, ["evaluate", "-t", str(tmp_path / "truth"), "-p", str(tmp_path / "picks"), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    classes = {c["particle"]: c for c in doc["classes"]}
    assert doc["runs"] == ["a", "b"] and classes["thyroglobulin"]["fn"] == 1 and classes["ribosome"]["fp"] == 1
    f_thy = 17 * 1 * 0.5 / (16 * 1 + 0.5)
    f_rib = 17 * (2 / 3) * 1 / (16 * (2 / 3) + 1)
    assert doc["score"] == pytest.approx((1 + 2 + 1 * f_rib + 2 * f_thy + 1) / 7)
    table = runner.invoke(app, ["evaluate", "-t", str(tmp_path / "truth"), "-p", str(tmp_path / "picks"),
                                "-m", "f1"])
    assert table.exit_code == 0 and "f1: β = 1" in table.output and "thyroglobulin" in table.output
    table = runner.invoke(app, ["evaluate", "-t", str(tmp_path / "truth"), "-p", str(tmp_path / "picks"),
                                "--per-run"])
    assert table.exit_code == 0 and "per run" in table.output


def test_cli_copick_project_users_report_and_overwrite(tmp_path):
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.create(tmp_path / "proj", CZII)
    truth = truth_picks("TS_1")
    project.write_picks("TS_1", truth, user_id="curation")
    scores = np.linspace(1, 0.1, len(truth))
    jitter = truth.xyz_A + [20.0, 0, 0]  # inside 0.5 R for every class (≥ 30 Å)
    picks = Picks.from_arrays(jitter, truth.frame["particle"].tolist(), score=scores, run="TS_1")
    project.write_picks("TS_1", picks.select(picks.frame["particle"] != "ribosome"), user_id="tomopick")
    report = tmp_path / "report"
    args = ["evaluate", "-t", str(tmp_path / "proj"), "-p", str(tmp_path / "proj" / "copick_config.json"),
            "--truth-user", "curation", "--picks-user", "tomopick", "--sweep", "--report", str(report)]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    assert "score (weighted F4): 0.8571" in out.output and "best-case threshold" in out.output
    assert sorted(p.name for p in report.iterdir()) == ["evaluation.json", "pr_curves.csv", "pr_curves.png",
                                                        "report.html", "report.md"]
    page = (report / "report.html").read_text()  # the picking report, without slabs (no tomogram in the project)
    assert "CZII score (weighted F4): 0.8571" in page and "No tomogram was given" in page
    assert (report / "pr_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    doc = json.loads((report / "evaluation.json").read_text())
    assert doc["score"] == pytest.approx(6 / 7) and doc["sweep"]["score"] == pytest.approx(6 / 7)
    assert {c["particle"]: c["rmse_A"] for c in doc["classes"]}["apo-ferritin"] == pytest.approx(20.0)
    assert "| ribosome |" in (report / "report.md").read_text()
    assert "## Per run" not in (report / "report.md").read_text()  # one run only
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0


def test_run_alignment_and_errors(tmp_path):
    truth = truth_picks("TS_9")
    t, p = align_runs(truth, truth_picks(""))
    assert p.runs == ["TS_9"]
    with pytest.raises(Exception, match="share no run"):
        align_runs(truth, truth_picks("other"))
    one = truth_picks("").for_particle("ribosome")
    write_picks(one, tmp_path / "unnamed.json", format="copick")
    write_folder(tmp_path / "named", truth_picks("TS_9").for_particle("ribosome"))
    res = evaluate(tmp_path / "named", tmp_path / "unnamed.json", metric="hungarian")
    assert res.result.score == 1.0 and res.result.runs == ("TS_9",)
    # a folder of files without run names: the file name is the run
    (tmp_path / "f").mkdir()
    shutil.copy(tmp_path / "unnamed.json", tmp_path / "f" / "TS_3.json")
    assert load_picks(tmp_path / "f").runs == ["TS_3"]


def test_portal_layout_with_one_class_missing(shared_data, tmp_path):
    src = shared_data / "czii_portal_layout" / "TS_5_4" / "Picks"
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in src.glob("*.json"):
        if f.stem != "beta-galactosidase":
            shutil.copy(f, partial / f.name)
    res = evaluate(src, partial)
    assert res.result.runs == ("TS_5_4",)
    assert res.result.table.set_index("particle").loc["beta-galactosidase", "fn"] == 12
    assert res.result.score == pytest.approx(5 / 7)


def test_runs_option_restricts_both_sides(tmp_path):
    truth = Picks.concat([truth_picks("a"), truth_picks("b")])
    write_folder(tmp_path / "truth", truth)
    write_folder(tmp_path / "picks", truth_picks("b"))
    everything = evaluate(tmp_path / "truth", tmp_path / "picks")
    assert everything.result.score == pytest.approx(17 * 0.5 / 16.5)  # run a all missed: R = 1/2
    only_b = evaluate(tmp_path / "truth", tmp_path / "picks", runs=["b"])
    assert only_b.result.score == 1.0 and only_b.result.runs == ("b",)
    out = runner.invoke(app, ["evaluate", "-t", str(tmp_path / "truth"), "-p", str(tmp_path / "picks"),
                              "--runs", "zz"])
    assert out.exit_code != 0


def test_cli_on_the_real_kaggle_csv(shared_data, tmp_path):
    import pandas as pd

    truth = shared_data / "czii_train_picks.csv"
    df = pd.read_csv(truth)
    sub = df[df["particle_type"] != "thyroglobulin"].copy()
    sub.insert(0, "id", range(len(sub)))
    sub[["id", "experiment", "particle_type", "x", "y", "z"]].to_csv(tmp_path / "submission.csv", index=False)
    out = runner.invoke(app, ["evaluate", "-t", str(truth), "-p", str(tmp_path / "submission.csv"), "--json"])
    assert out.exit_code == 0, out.output
    doc = json.loads(out.output)
    assert len(doc["runs"]) == 7 and doc["score"] == pytest.approx(5 / 7)
    assert {c["particle"]: c["fn"] for c in doc["classes"]}["thyroglobulin"] == 251
    pd.DataFrame(columns=["id", "experiment", "particle_type", "x", "y", "z"]).to_csv(tmp_path / "empty.csv",
                                                                                       index=False)
    out = runner.invoke(app, ["evaluate", "-t", str(truth), "-p", str(tmp_path / "empty.csv"), "--json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["score"] == 0.0


def test_numbered_class_formats_map_to_names_through_the_particle_set(tmp_path):
    """STAR / Dynamo store class numbers; evaluate maps them to the particle set's names (score 1 on itself)."""
    import numpy as np

    from tomopick.data import Picks
    from tomopick.io import write_picks
    from tomopick.workflows.evaluate import evaluate as run_evaluate

    xyz = np.array([[100.0, 200.0, 300.0], [900.0, 800.0, 700.0], [400.0, 450.0, 500.0]])
    picks = Picks.from_arrays(xyz, ["apo-ferritin", "ribosome", "thyroglobulin"], score=[0.9, 0.8, 0.7],
                              run="TS_1")
    for ext in ("star", "tbl"):
        path = tmp_path / f"p.{ext}"
        write_picks(picks, path, voxel_size_A=10.0, run="TS_1")
        result = run_evaluate(path, path).result
        assert result.score == 1.0
        assert set(result.table.loc[result.table["scored"], "particle"]) == {"apo-ferritin", "ribosome",
                                                                              "thyroglobulin"}


def test_sweep_refuses_picks_without_scores(tmp_path, capsys):
    truth = truth_picks("TS_1")
    write_picks(truth, tmp_path / "truth.csv")
    unscored = write_picks(truth, tmp_path / "picks.csv")  # no scores: the six Kaggle columns
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "-t", str(tmp_path / "truth.csv"), "-p", str(unscored), "--sweep"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith(f"error: {unscored}: ") and "no scores" in err and "--sweep" in err
    assert "-inf" not in err
    # without --sweep the same picks score fine
    assert runner.invoke(app, ["evaluate", "-t", str(tmp_path / "truth.csv"), "-p", str(unscored)]).exit_code == 0
    # some scored, some not (a folder of files): refused too, with the count
    (tmp_path / "mixed").mkdir()
    write_picks(truth.for_particle("ribosome"), tmp_path / "mixed" / "TS_1_a.json", format="copick")
    scored = truth.for_particle("apo-ferritin")
    write_picks(Picks.from_arrays(scored.xyz_A, "apo-ferritin", score=[0.7], run="TS_1"),
                tmp_path / "mixed" / "TS_1_b.json", format="copick")
    with pytest.raises(Exception, match="1 of 2 picks have no score"):
        evaluate(tmp_path / "truth.csv", tmp_path / "mixed", sweep=True)


def test_sweep_on_the_default_csv_output_uses_its_scores(tmp_path):
    truth = truth_picks("TS_1")
    write_picks(truth, tmp_path / "truth.csv")
    scores = np.linspace(0.9, 0.3, len(truth))
    picks = Picks.from_arrays(truth.xyz_A, truth.frame["particle"].tolist(), score=scores, run="TS_1")
    decoy = Picks.from_arrays([[30000.0, 30000, 30000]], "ribosome", score=[0.2], run="TS_1")
    write_picks(Picks.concat([picks, decoy]), tmp_path / "picks.csv")
    out = evaluate(tmp_path / "truth.csv", tmp_path / "picks.csv", sweep=True)
    table = out.sweep.table.set_index("particle")
    # every class found at its own score: the best threshold is that score (the decoy at 0.2 is below)
    np.testing.assert_allclose(table.loc[truth.particles, "threshold"].to_numpy(dtype=float), scores, atol=1e-6)
    assert out.sweep.score == pytest.approx(1.0) and out.result.score < 1.0
