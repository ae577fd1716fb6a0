"""PR curves, average precision, best-case thresholds and the incremental one-to-one counts."""

from __future__ import annotations

import numpy as np
import pytest

from tomopick.data import CZII, ParticleSet, ParticleSpec, Picks
from tomopick.evaluation import (
    apply_thresholds, average_precision, czii_score, evaluate, match_hungarian, pr_curve, threshold_sweep,
    tp_by_rank,
)

SPEC = ParticleSet(particles=(ParticleSpec(name="p", radius_A=100, weight=1),))


def example() -> tuple[Picks, Picks]:
    truth = Picks.from_arrays([[0.0, 0, 0], [1000.0, 0, 0]], "p", run="r")
    picks = Picks.from_arrays([[0.0, 0, 10], [500.0, 0, 0], [1000.0, 0, 5], [0.0, 10, 0]], "p", run="r",
                              score=np.array([0.9, 0.8, 0.7, 0.6]))
    return truth, picks


def test_pr_curve_czii_counting():
    truth, picks = example()
    c = pr_curve(truth, picks, SPEC)
    assert c["threshold"].tolist() == [0.9, 0.8, 0.7, 0.6]
    assert c["tp"].tolist() == [1, 1, 2, 2] and c["fp"].tolist() == [0, 1, 1, 2] and c["fn"].tolist() == [1, 1, 0, 0]
    assert c["precision"].tolist() == pytest.approx([1, 0.5, 2 / 3, 0.5])
    assert c["recall"].tolist() == [0.5, 0.5, 1, 1]
    assert average_precision(c["precision"], c["recall"]) == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_threshold_sweep_picks_the_best_fbeta():
    truth, picks = example()
    sweep = threshold_sweep(truth, picks, SPEC)
    row = sweep.table.iloc[0]
    assert row["threshold"] == 0.7 and row["fbeta"] == pytest.approx(34 / 35)
    assert sweep.score == pytest.approx(34 / 35)
    assert row["average_precision"] == pytest.approx(5 / 6)
    kept = apply_thresholds(picks, sweep.thresholds())
    assert len(kept) == 3 and czii_score(truth, kept, SPEC).score == pytest.approx(34 / 35)
    # β = 1 prefers the same threshold here: F1 = 0.8 at 0.7
    assert threshold_sweep(truth, picks, SPEC, "f1").table.iloc[0]["fbeta"] == pytest.approx(0.8)


def test_threshold_sweep_tolerance_prefers_the_lowest_near_best_threshold():
    truth, picks = example()
    # F4 at 0.7 = 34/35 (best), at 0.6 = 17/18: 0.027 lower; at 0.9 and 0.8 far lower
    assert threshold_sweep(truth, picks, SPEC, tolerance=0.02).table.iloc[0]["threshold"] == 0.7
    row = threshold_sweep(truth, picks, SPEC, tolerance=0.03).table.iloc[0]
    assert row["threshold"] == 0.6 and row["fbeta"] == pytest.approx(17 / 18) and (row["tp"], row["fp"]) == (2, 2)


def test_ties_unscored_and_classes_without_picks():
    truth = Picks.concat([Picks.from_arrays([[0.0, 0, 0]], "p", run="r"),
                          Picks.from_arrays([[0.0, 0, 0]], "ribosome", run="r")])
    picks = Picks.from_arrays([[0.0, 0, 0], [400.0, 0, 0], [800.0, 0, 0]], "p", run="r",
                              score=np.array([0.5, 0.5, np.nan]))
    particles = ParticleSet(particles=(SPEC.particles[0], CZII["ribosome"]))
    c = pr_curve(truth, picks, particles)
    assert c["threshold"].tolist() == [0.5, -np.inf] and c["n_picks"].tolist() == [2, 3]
    sweep = threshold_sweep(truth, picks, particles)
    t = sweep.table.set_index("particle")
    assert t.loc["p", "threshold"] == 0.5 and np.isnan(t.loc["ribosome", "threshold"])
    assert t.loc["ribosome", "fn"] == 1 and t.loc["ribosome", "fbeta"] == 0
    assert sweep.thresholds() == {"p": 0.5}


def test_curve_sums_runs_and_matches_evaluate_at_every_threshold(rng):
    runs = ["a", "b", "c"]
    truth = Picks.concat([Picks.from_arrays(rng.uniform(0, 400, (6, 3)), "p", run=r) for r in runs])
    picks = Picks.concat([Picks.from_arrays(rng.uniform(0, 400, (9, 3)), "p", run=r,
                                            score=rng.integers(0, 5, 9) / 4) for r in runs])
    for metric in ("czii", "hungarian"):
        c = pr_curve(truth, picks, SPEC, metric)
        for _, row in c.iterrows():
            kept = picks.select(picks.scores >= row["threshold"])
            ref = evaluate(truth, kept, SPEC, metric).table.iloc[0]
            assert (row["tp"], row["fp"], row["fn"]) == (ref["tp"], ref["fp"], ref["fn"])


def test_incremental_one_to_one_equals_hungarian(rng):
    for _ in range(30):
        truth = rng.uniform(0, 100, (rng.integers(1, 12), 3))
        picks = rng.uniform(0, 100, (rng.integers(1, 12), 3))
        order = rng.permutation(len(picks))
        tp = tp_by_rank(truth, picks, order, 30.0, one_to_one=True)
        assert tp.tolist() == [match_hungarian(truth, picks[order[:k]], 30.0).tp for k in range(len(picks) + 1)]
        tpc = tp_by_rank(truth, picks, order, 30.0, one_to_one=False)
        from tomopick.evaluation import czii_counts

        assert tpc.tolist() == [czii_counts(truth, picks[order[:k]], 30.0)[0] for k in range(len(picks) + 1)]
