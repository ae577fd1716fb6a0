"""CZII metric, one-to-one F-beta and localisation error against hand-computed values."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from tomopick.data import CZII, ParticleSet, ParticleSpec, Picks
from tomopick.errors import TomopickError
from tomopick.evaluation import (
    czii_counts, czii_score, evaluate, fbeta_score, match_hungarian, precision_recall_fbeta,
)


def f4(p: Fraction, r: Fraction) -> Fraction:
    return 17 * p * r / (16 * p + r)


def one_per_class(run: str = "TS_1") -> Picks:
    """One particle per CZII class, 1000 Å apart."""
    xyz = np.array([[1000.0 * (i + 1), 2000.0, 500.0] for i in range(len(CZII))])
    return Picks.from_arrays(xyz, CZII.names, run=run)


def load_truth(shared_data) -> Picks:
    df = pd.read_csv(shared_data / "czii_train_picks.csv")
    return Picks.from_frame(pd.DataFrame({"particle": df["particle_type"], "x_A": df["x"], "y_A": df["y"],
                                          "z_A": df["z"], "run": df["experiment"]}))


def test_fbeta_conventions():
    p, r, f = precision_recall_fbeta([1, 0, 0], [1, 0, 3], [0, 0, 2], beta=4)
    assert p.tolist() == [0.5, 0.0, 0.0] and r.tolist() == [1.0, 0.0, 0.0]
    assert f[0] == pytest.approx(17 / 18) and f[1] == 0 and f[2] == 0
    assert fbeta_score(3, 1, 2, beta=1) == pytest.approx(2 * 0.75 * 0.6 / 1.35)


def test_perfect_picks_score_one():
    truth = one_per_class()
    result = czii_score(truth, truth, CZII)
    assert result.score == 1.0
    assert result.table["tp"].tolist() == [1] * 6 and result.table["fp"].sum() == 0
    assert result.table["rmse_A"].tolist() == [0.0] * 6


def test_missing_weight2_class_scores_five_sevenths():
    truth = one_per_class()
    picks = truth.select(truth.frame["particle"] != "thyroglobulin")
    result = czii_score(truth, picks, CZII)
    assert result.score == pytest.approx(5 / 7, abs=1e-12)
    row = result.table.set_index("particle").loc["thyroglobulin"]
    assert (row["tp"], row["fp"], row["fn"], row["fbeta"]) == (0, 0, 1, 0.0)
    # the weight-0 class does not matter
    assert czii_score(truth, truth.select(truth.frame["particle"] != "beta-amylase"), CZII).score == 1.0


def test_empty_submission_scores_zero():
    truth = one_per_class()
    result = czii_score(truth, Picks.empty(), CZII)
    assert result.score == 0.0
    assert result.table["fn"].tolist() == [1] * 6


def test_duplicate_pick_is_a_false_positive():
    truth = Picks.from_arrays([[1000.0, 1000, 1000]], "ribosome", run="r")
    picks = Picks.from_arrays([[1000.0, 1000, 1000], [1010.0, 1000, 1000]], "ribosome", run="r")
    result = czii_score(truth, picks, CZII)
    row = result.table.iloc[0]
    assert (row["tp"], row["fp"], row["fn"]) == (1, 1, 0)
    assert result.score == pytest.approx(17 / 18)  # P = 1/2, R = 1
    assert evaluate(truth, picks, CZII, "hungarian").score == pytest.approx(17 / 18)


@pytest.mark.parametrize("offset, found", [(75.0, True), (75.0 + 1e-6, False), (74.9, True), (80.0, False)])
def test_matching_distance_is_half_the_radius_inclusive(offset, found):
    truth = Picks.from_arrays([[1000.0, 1000, 1000]], "ribosome", run="r")  # 150 Å → 75 Å
    picks = Picks.from_arrays([[1000.0, 1000, 1000.0 + offset]], "ribosome", run="r")
    result = czii_score(truth, picks, CZII)
    assert result.table.iloc[0]["tp"] == int(found)
    assert result.score == pytest.approx(1.0 if found else 0.0)


def test_matching_is_per_run_and_unknown_runs_are_ignored():
    truth = Picks.concat([one_per_class("a"), one_per_class("b")])
    picks = Picks.concat([one_per_class("b"), one_per_class("c")])  # run a missing, run c unknown
    result = czii_score(truth, picks, CZII)
    assert result.runs == ("a", "b") and result.ignored_runs == ("c",) and result.n_ignored == 6
    assert result.table["tp"].tolist() == [1] * 6 and result.table["fn"].tolist() == [1] * 6
    assert result.table["fp"].sum() == 0
    assert result.score == pytest.approx(float(f4(Fraction(1), Fraction(1, 2))))  # 17/33 for every class
    # the same positions in a different run never match
    wrong_run = one_per_class("b")
    assert czii_score(one_per_class("a"), wrong_run, CZII).score == 0.0


def test_counts_summed_over_runs_before_fbeta():
    spec = ParticleSet(particles=(ParticleSpec(name="p", radius_A=100, weight=1),))
    truth = Picks.from_arrays([[0.0, 0, 0], [1000.0, 0, 0]], "p", run=["a", "b"])
    # run a: found + 3 false positives; run b: missed
    picks = Picks.from_arrays([[10.0, 0, 0], [500, 0, 0], [600, 0, 0], [700, 0, 0]], "p", run="a")
    result = czii_score(truth, picks, spec)
    assert result.score == pytest.approx(float(f4(Fraction(1, 4), Fraction(1, 2))))
    assert result.per_run[["run", "tp", "fp", "fn"]].values.tolist() == [["a", 1, 3, 0], ["b", 0, 0, 1]]


def test_pick_between_two_close_particles_reproduces_the_kaggle_quirk():
    # ground-truth points closer than 2 x 0.5 R: one pick in range of both counts as two TPs and FP = -1
    truth = Picks.from_arrays([[0.0, 0, 0], [40.0, 0, 0]], "apo-ferritin", run="r")  # 30 Å distance
    picks = Picks.from_arrays([[20.0, 0, 0]], "apo-ferritin", run="r")
    assert czii_counts(truth.xyz_A, picks.xyz_A, 30.0) == (2, -1, 0)
    row = czii_score(truth, picks, CZII).table.iloc[0]
    assert row["precision"] == 2.0 and row["fbeta"] == pytest.approx(34 / 33)
    one = evaluate(truth, picks, CZII, "hungarian").table.iloc[0]
    assert (one["tp"], one["fp"], one["fn"]) == (1, 0, 1)
    assert one["fbeta"] == pytest.approx(float(f4(Fraction(1), Fraction(1, 2))))


def test_hungarian_maximises_matches_then_minimises_distance():
    truth = np.array([[0.0, 0, 0], [50.0, 0, 0]])
    picks = np.array([[45.0, 0, 0], [20.0, 0, 0]])  # pick 1 is in range of both (20 and 30 Å)
    m = match_hungarian(truth, picks, 30.0)
    assert m.truth_index.tolist() == [0, 1] and m.pick_index.tolist() == [1, 0]
    assert m.distance_A.tolist() == [20.0, 5.0] and (m.tp, m.fp, m.fn) == (2, 0, 0)
    # the nearest-first greedy choice (pick 0 ↔ truth 1, 5 Å) would leave truth 0 unmatched
    assert match_hungarian(truth, picks[:1], 30.0).tp == 1
    assert match_hungarian(truth, np.zeros((0, 3)), 30.0).fn == 2


def test_hungarian_agrees_with_brute_force(rng):
    from itertools import permutations

    for _ in range(40):
        truth = rng.uniform(0, 60, size=(rng.integers(0, 5), 3))
        picks = rng.uniform(0, 60, size=(rng.integers(0, 5), 3))
        m = match_hungarian(truth, picks, 25.0)
        best = (0, 0.0)
        small, large = (truth, picks) if len(truth) <= len(picks) else (picks, truth)
        for perm in permutations(range(len(large)), len(small)):
            d = np.linalg.norm(small - large[list(perm)], axis=1) if len(small) else np.zeros(0)
            ok = d <= 25.0
            key = (int(ok.sum()), -float(d[ok].sum()))
            best = max(best, key)
        assert m.tp == best[0]
        assert -m.distance_A.sum() == pytest.approx(best[1])


def test_f1_metric_and_fixed_distance():
    spec = ParticleSet(particles=(ParticleSpec(name="p", radius_A=100, weight=1),))
    truth = Picks.from_arrays([[0.0, 0, 0], [500, 0, 0], [1000, 0, 0]], "p", run="r")
    picks = Picks.from_arrays([[0.0, 0, 40], [500, 0, 60], [2000, 0, 0]], "p", run="r")
    res = evaluate(truth, picks, spec, "f1")  # 50 Å: one match
    assert res.beta == 1 and res.table.iloc[0]["tp"] == 1
    assert res.score == pytest.approx(1 / 3)
    res = evaluate(truth, picks, spec, "f1", distance_A=60.0)
    assert res.table.iloc[0]["tp"] == 2 and res.score == pytest.approx(2 / 3)
    assert res.distance_A == 60.0 and res.distance_factor is None
    res = evaluate(truth, picks, spec, "czii", distance_factor=0.4, beta=2)
    assert res.table.iloc[0]["tp"] == 1 and res.table.iloc[0]["distance_A"] == 40.0
    with pytest.raises(TomopickError, match="not both"):
        evaluate(truth, picks, spec, distance_A=10.0, distance_factor=0.5)
    with pytest.raises(TomopickError, match="unknown metric"):
        evaluate(truth, picks, spec, "auc")  # type: ignore[arg-type]


def test_localisation_error():
    truth = Picks.from_arrays([[0.0, 0, 0], [1000.0, 0, 0]], "ribosome", run="r")
    picks = Picks.from_arrays([[3.0, 0, 0], [1000.0, 4, 0]], "ribosome", run="r")
    row = czii_score(truth, picks, CZII).table.iloc[0]
    assert row["n_matched"] == 2 and row["mean_distance_A"] == pytest.approx(3.5)
    assert row["rmse_A"] == pytest.approx(np.sqrt(12.5)) and row["rmse_radius"] == pytest.approx(np.sqrt(12.5) / 150)


def test_unknown_class_is_refused_and_extra_class_not_scored():
    truth = Picks.from_arrays([[0.0, 0, 0]], "ribosome", run="r")
    with pytest.raises(TomopickError, match="proteasome"):
        czii_score(truth, Picks.from_arrays([[0.0, 0, 0]], "proteasome", run="r"), CZII)
    picks = Picks.concat([truth, Picks.from_arrays([[500.0, 0, 0]], "apo-ferritin", run="r")])
    result = czii_score(truth, picks, CZII)
    assert result.table["particle"].tolist() == ["apo-ferritin", "ribosome"]
    assert result.table["scored"].tolist() == [False, True] and result.score == 1.0
    d = result.to_dict()
    assert d["score"] == 1.0 and d["classes"][0]["fp"] == 1 and d["classes"][0]["mean_distance_A"] is None


# -- the real CZII ground truth --------------------------------------------------------------------------------
def test_real_truth_against_itself_and_without_classes(shared_data):
    truth = load_truth(shared_data)
    assert len(truth) == 1269 and len(truth.runs) == 7
    assert czii_score(truth, truth, CZII).score == 1.0
    expected = {"apo-ferritin": 6 / 7, "beta-amylase": 1.0, "beta-galactosidase": 5 / 7, "ribosome": 6 / 7,
                "thyroglobulin": 5 / 7, "virus-like-particle": 6 / 7}
    for name, value in expected.items():
        assert czii_score(truth, truth.select(truth.frame["particle"] != name), CZII).score == pytest.approx(value)


def test_real_truth_one_run_missing(shared_data):
    truth = load_truth(shared_data)
    picks = truth.select(~((truth.frame["run"] == "TS_5_4") & (truth.frame["particle"] == "ribosome")))
    result = czii_score(truth, picks, CZII)
    row = result.table.set_index("particle").loc["ribosome"]
    assert (row["n_truth"], row["tp"], row["fn"], row["fp"]) == (331, 300, 31, 0)
    assert result.score == pytest.approx(float((6 + f4(Fraction(1), Fraction(300, 331))) / 7), abs=1e-12)


def test_real_truth_close_pair_gives_negative_fp(shared_data):
    # TS_73_6 holds two apo-ferritin points 29.5 Å apart (< 2 x 30 Å): one pick at their midpoint finds both
    truth = load_truth(shared_data)
    apo = truth.select((truth.frame["run"] == "TS_73_6") & (truth.frame["particle"] == "apo-ferritin"))
    xyz = apo.xyz_A
    d = np.linalg.norm(xyz[:, None] - xyz[None], axis=-1) + np.eye(len(xyz)) * 1e9
    i, j = np.unravel_index(np.argmin(d), d.shape)
    assert d[i, j] == pytest.approx(29.5, abs=0.05)
    drop = np.zeros(len(truth), dtype=bool)
    rows = np.flatnonzero((truth.frame["run"] == "TS_73_6") & (truth.frame["particle"] == "apo-ferritin"))
    drop[rows[[i, j]]] = True
    midpoint = Picks.from_arrays((xyz[i] + xyz[j]) / 2, "apo-ferritin", run="TS_73_6")
    picks = Picks.concat([truth.select(~drop), midpoint])
    row = czii_score(truth, picks, CZII).table.set_index("particle").loc["apo-ferritin"]
    assert (row["n_truth"], row["n_picks"], row["tp"], row["fp"], row["fn"]) == (375, 374, 375, -1, 0)
    assert row["fbeta"] == pytest.approx(float(f4(Fraction(375, 374), Fraction(1))))
    one = evaluate(truth, picks, CZII, "hungarian").table.set_index("particle").loc["apo-ferritin"]
    assert (one["tp"], one["fp"], one["fn"]) == (374, 0, 1)
