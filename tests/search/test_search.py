"""tomopick search: the search space gives valid training configs; a search on a tiny dataset stores its study,
continues it (trial numbers go on, interrupted trials are retried) and exports a best.yaml that loads as a
training config."""

import csv
import os
import sys
from pathlib import Path

import numpy as np
import optuna
import pytest

from tomopick.data import Tomogram
from tomopick.errors import TomopickError
from tomopick.io import write_picks, write_tomogram
from tomopick.training import load_config, validate_config
from tomopick.training.config import AugmentConfig
from tomopick.training.search_space import (
    SearchSpace, augment_config, config_from_params, params_of_config, suggest_params,
)
from tomopick.workflows.search import search

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "training"))
from _training_toy import PARTICLES, make_volume  # noqa: E402

SPACE = {"families": ["unet"], "widths": [4], "depths": [2], "norms": ["batch"], "targets": ["sphere", "ball"],
         "losses": ["dice_ce", "ce"], "patches": [16], "lr": [3e-4, 1e-2]}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    for seed, name in ((1, "run_a"), (2, "run_b")):
        vol = make_volume(seed, name)
        write_tomogram(Tomogram.from_array(vol.image, vol.voxel_size_A), root / f"{name}.mrc")
        write_picks(vol.picks, root / f"{name}.csv")
    return root


def base_raw(data: Path) -> dict:
    return {"name": "toy-search", "data": {"kind": "folder", "path": str(data), "train_runs": ["run_a"],
                                           "val_runs": ["run_b"]},
            "particles": PARTICLES.model_dump(mode="json"),
            "network": {"name": "unet", "hparams": {"channels": [4, 8], "strides": [2], "num_res_units": 0,
                                                    "norm": "batch"}},
            "patch_size": [16, 16, 16], "batch_size": 2, "epochs": 2, "steps_per_epoch": 2, "warmup_steps": 1,
            "num_threads": 1, "seed": 3}


def test_space_gives_valid_configs_for_every_choice(dataset):
    base = validate_config(base_raw(dataset))
    space = SearchSpace()
    for seed in range(25):
        trial = optuna.trial.FixedTrial(suggest_params(
            optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed)).ask(), space))
        params = suggest_params(trial, space)
        cfg = config_from_params(base, params)
        depth = params["depth"]
        assert cfg.patch_size[0] % 2 ** (depth - 1) == 0
        assert cfg.network.hparams["channels"] == [params["width"] * 2**i for i in range(depth)]
        assert (cfg.loss.kind == "huber_laplacian") == (params["target"] == "gaussian")
        if params.get("loss") == "tversky":
            assert cfg.loss.tversky_alpha + cfg.loss.tversky_beta == pytest.approx(1.0)
        assert cfg.data == base.data and cfg.epochs == base.epochs


def test_augment_strength_half_is_the_default_recipe():
    assert augment_config(0.5) == AugmentConfig()
    none = augment_config(0.0)
    assert none.flip_prob == 0 and none.noise_std == 0 and none.scale_range == (1.0, 1.0)
    strong = augment_config(1.0)
    assert strong.flip_prob == 1.0 and strong.rotate_z_deg == 30.0 and strong.noise_prob == pytest.approx(0.6)


def test_base_recipe_round_trips(dataset):
    base = validate_config(base_raw(dataset))
    params = params_of_config(base, SearchSpace.model_validate(SPACE))
    assert params is not None
    again = config_from_params(base, params)
    assert again.network == base.network and again.target == base.target and again.loss == base.loss
    assert again.augment == base.augment and again.lr == base.lr and again.patch_size == base.patch_size
    assert params_of_config(base.model_copy(update={"lr": 0.5}), SearchSpace.model_validate(SPACE)) is None


def test_search_resumes_and_exports_a_training_config(dataset, tmp_path):
    out = tmp_path / "search"
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    base = base_raw(dataset)
    first = search(base, out, trials=1, storage=storage, space=SPACE, seed=1)
    assert first.n_complete == 1 and [r["number"] for r in first.table] == [0]
    study = optuna.load_study(study_name="toy-search", storage=storage)
    # trial 0 is the base recipe; it was validated once per epoch (intermediate values for the pruner)
    assert study.trials[0].params == params_of_config(validate_config(base), SearchSpace.model_validate(SPACE))
    assert sorted(study.trials[0].intermediate_values) == [1, 2]
    value0 = study.trials[0].value
    # a search killed mid-trial leaves it RUNNING in the storage: simulate that with a trial asked and never told
    killed = study.ask()
    killed_params = suggest_params(killed, SearchSpace.model_validate(SPACE))
    second = search(base, out, trials=3, storage=storage, space=SPACE, seed=1)
    study = optuna.load_study(study_name="toy-search", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states == ["COMPLETE", "FAIL", "COMPLETE", "COMPLETE"]          # numbering continues after the old ones
    assert study.trials[0].value == value0
    assert study.trials[2].user_attrs.get("retry_of") == killed.number       # the interrupted trial is retried
    assert study.trials[2].params == killed_params
    assert second.n_complete == 3 and second.n_failed == 1
    # the exported recipe is a ready training config: it loads and is the best trial's
    cfg = load_config(second.best_config)
    best = study.best_trial
    assert second.best_number == best.number and second.best_value == pytest.approx(best.value)
    assert cfg == config_from_params(validate_config(base), best.params)
    with open(out / "trials.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["number"]) for r in rows] == [0, 1, 2, 3] and rows[1]["state"] == "FAIL"
    assert (out / "trials.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "trials" / f"{best.number:04d}" / "best.pt").is_file()
    # nothing more to do: a rerun with the same budget adds no trial
    assert len(search(base, out, trials=3, storage=storage, space=SPACE, seed=1).table) == 4


def test_search_input_errors(dataset, tmp_path):
    base = base_raw(dataset)
    out = tmp_path / "s"
    with pytest.raises(TomopickError, match="--pruner"):
        search(base, out, trials=1, pruner="random", space=SPACE)
    with pytest.raises(TomopickError, match="--storage"):
        search(base, out, trials=1, storage="search.db", space=SPACE)
    with pytest.raises(TomopickError, match="invalid search space"):
        search(base, out, trials=1, space={"widths": []})
    no_val = dict(base, data=dict(base["data"], val_runs=[], train_runs=["run_a", "run_b"]))
    with pytest.raises(TomopickError, match="validation runs"):
        search(no_val, out, trials=1, space=SPACE)
    assert not out.exists() or not any(out.iterdir())
    first = search(base, out, trials=1, space=SPACE)
    with pytest.raises(TomopickError, match="search space differs"):
        search(base, out, trials=2, space=dict(SPACE, widths=[4, 8]))
    assert first.n_complete == 1


def test_search_runs_trials_in_parallel_on_a_dask_cluster(dataset, tmp_path):
    from tomopick.workflows.batch import BatchOptions

    out = tmp_path / "search"
    lines: list[str] = []
    result = search(base_raw(dataset), out, trials=4, space=SPACE, seed=2, log=lines.append,
                    batch=BatchOptions.make(workers=2, dashboard_address=":0"))
    study = optuna.load_study(study_name="toy-search", storage=f"sqlite:///{out / 'search.db'}")
    finished = [t for t in study.trials if t.state.name in ("COMPLETE", "PRUNED")]
    # the target is reached (a worker may have started one more while the other finished the last)
    assert 4 <= len(finished) <= 5 and result.n_complete + result.n_pruned == len(finished)
    # two worker processes, neither of them this one, ran the trials; the base recipe is trial 0
    processes = {t.user_attrs["process"] for t in study.trials}
    assert len(processes) == 2 and not any(p.endswith(f":{os.getpid()}") for p in processes)
    assert study.trials[0].params == params_of_config(validate_config(base_raw(dataset)),
                                                      SearchSpace.model_validate(SPACE))
    # every finished trial was printed by the driver, with its process; outputs as in the plain search
    assert {int(line.split()[1]) for line in lines if line.startswith("trial ")} >= {t.number for t in finished}
    assert any(line.startswith("search on 2 Dask worker(s)") for line in lines)
    assert load_config(result.best_config) == config_from_params(validate_config(base_raw(dataset)),
                                                                 study.best_trial.params)
    assert (out / "trials" / f"{study.best_trial.number:04d}" / "best.pt").is_file()
