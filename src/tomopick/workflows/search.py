"""``search()``: Bayesian search over training recipes with Optuna (the verb behind ``tomopick search``).

Every trial trains one recipe (:func:`tomopick.training.search_space.config_from_params` of the trial's point
of the :class:`~tomopick.training.search_space.SearchSpace`, on the base config's data, epochs and per-trial time
budget) with :class:`~tomopick.training.Trainer`, validated each epoch by the CZII F-beta of the validation
tomograms picked through ``tomopick pick``'s code path (:func:`tomopick.training.fbeta_validator`). Each
validation is reported to Optuna as an intermediate value (epoch = step), so the pruner (median or Hyperband)
stops poor trials early; the trial's value is its best validation F-beta. The sampler is TPE, multivariate, seeded.
The first trial is the base recipe itself when the space can express it (the recipe to beat).

The study lives in a database (``storage``, default ``sqlite:///OUT/search.db``): running the same command again
continues the study — trials killed with the process are marked failed and retried first — until ``trials``
trials have finished (complete or pruned) or ``minutes`` have passed in this session.

Output folder::

    OUT/search.db         the Optuna study (default storage)
    OUT/trials.csv        one row per trial: number, state, value, epochs, seconds, parameters
    OUT/trials.png        value per trial (best so far) and the validation curves (pruned ones grey)
    OUT/best.yaml         the best trial's recipe as a ready ``tomopick train`` config
    OUT/summary.json      best trial, its parameters and value, counts per state
    OUT/trials/NNNN/      per trial: config.yaml, metrics.csv, best.pt (its best validation weights)

Trials run one after another in this process, or in parallel on the Dask cluster of batch picking
(``batch``: :class:`~tomopick.workflows.batch.BatchOptions` — ``--workers N`` local worker processes,
``--scheduler ADDR`` a running cluster, ``--cluster slurm``): each worker runs trials of the same study against
the same storage (TPE with the constant liar, so running trials are not proposed twice) until the study holds
``trials`` finished ones; the driver prints each trial as it finishes and writes the outputs. The storage must be
reachable from every worker (a SQLite file on a shared file system, or a database URL).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml

from tomopick.errors import TomopickError
from tomopick.io import atomic_output
from tomopick.training.search_space import SearchSpace, config_from_params, params_of_config, suggest_params

OUT_FILES = ("trials.csv", "trials.png", "best.yaml", "summary.json")


@dataclass
class SearchResult:
    """What :func:`search` produced."""

    out_dir: Path
    study_name: str
    storage: str
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    best_config: Path | None
    n_complete: int
    n_pruned: int
    n_failed: int
    table: list[dict[str, Any]]


def _storage_url(storage: str | None, out_dir: Path) -> str:
    if storage is None:
        return f"sqlite:///{(out_dir / 'search.db').resolve()}"
    if "://" not in storage:
        raise TomopickError(f"--storage {storage!r}: expected a database URL, e.g. sqlite:///search.db")
    return storage


def _make_pruner(name: str, epochs: int):
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(epochs, 1), reduction_factor=3)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise TomopickError(f"--pruner {name!r}: expected median, hyperband or none")


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _retry_stale(study, log: Callable[[str], None] | None) -> int:
    """Trials left RUNNING by a killed search: marked FAIL and their parameters enqueued again."""
    from optuna.trial import TrialState

    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
        if t.params:
            study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number}, skip_if_exists=False)
        if log is not None:
            log(f"trial {t.number} was interrupted (killed search): marked failed, retried next")
    return len(stale)


def _trial_dir(out_dir: Path, number: int) -> Path:
    return out_dir / "trials" / f"{number:04d}"


def _objective(base, space: SearchSpace, out_dir: Path, deadline: float | None, log):
    import optuna

    from tomopick.models import save_checkpoint
    from tomopick.training import Trainer, fbeta_validator, resolve_particles
    from tomopick.workflows.train import _write_csv, load_volumes

    def objective(trial) -> float:
        params = suggest_params(trial, space)
        cfg = config_from_params(base, params)
        trial.set_user_attr("process", f"{socket.gethostname()}:{os.getpid()}")
        if deadline is not None:  # the search budget caps the trial's own
            left = max(0.1, (deadline - time.time()) / 60.0)
            cfg = cfg.model_copy(update={"max_minutes": min(cfg.max_minutes or math.inf, left)})
        folder = _trial_dir(out_dir, trial.number)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_output(folder / "config.yaml", overwrite=True) as tmp:
            tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        particles = resolve_particles(cfg)
        train_vols, val_vols, voxel_size_A, summary = load_volumes(cfg, particles)
        if not val_vols:
            raise TomopickError("the search needs validation runs (data.val_runs or data.val_fraction)",
                                cfg.data.path)
        validator = fbeta_validator(beta=cfg.validation.beta, threshold=cfg.validation.threshold)
        trainer = Trainer(cfg, particles, voxel_size_A, train_vols, val_vols, validator=validator, progress=False,
                          data_summary=summary)
        t0 = time.perf_counter()

        def on_epoch_end(tr, record) -> None:
            if record.is_best:
                save_checkpoint(folder / "best.pt", tr.inference_model(), tr.checkpoint_config(), tr.model_card(),
                                overwrite=True)
            _write_csv(folder / "metrics.csv", [r.row() for r in tr.history])
            if np.isfinite(record.val_score):
                trial.report(float(record.val_score), record.epoch)
                if log is not None:
                    log(f"  trial {trial.number} epoch {record.epoch}: validation F-beta {record.val_score:.4f}")
                if trial.should_prune():
                    trial.set_user_attr("epochs", record.epoch)
                    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
                    raise optuna.TrialPruned(f"pruned at epoch {record.epoch}")

        trainer.fit(on_epoch_end)
        trial.set_user_attr("epochs", trainer.epoch)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
        return float(trainer.best_score) if math.isfinite(trainer.best_score) else 0.0

    return objective


def trials_table(study) -> list[dict[str, Any]]:
    """One dict per trial: number, state, value, epochs, seconds, then the parameters (``p_<name>``)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        row: dict[str, Any] = {"number": t.number, "state": t.state.name,
                               "value": None if t.value is None else round(float(t.value), 4),
                               "epochs": t.user_attrs.get("epochs", len(t.intermediate_values) or None),
                               "seconds": t.user_attrs.get("seconds")}
        row.update({f"p_{k}": (round(v, 5) if isinstance(v, float) else v) for k, v in t.params.items()})
        rows.append(row)
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    """The trials as a fixed-width text table (what ``tomopick search`` prints)."""
    if not rows:
        return "(no trials)"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    cells = [[k.removeprefix("p_") for k in keys]] + [["" if r.get(k) is None else str(r.get(k)) for k in keys]
                                                       for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    return "\n".join("  ".join(c[i].ljust(widths[i]) for i in range(len(keys))) for c in cells)


def _plot(study, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    best, xs, ys = -math.inf, [], []
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            ax1.scatter(t.number, t.value, color="tab:blue", zorder=3)
            best = max(best, t.value)
        elif t.state == TrialState.PRUNED:
            last = list(t.intermediate_values.values())[-1] if t.intermediate_values else 0.0
            ax1.scatter(t.number, last, color="tab:grey", marker="x", zorder=3)
        if math.isfinite(best):
            xs.append(t.number)
            ys.append(best)
        steps = sorted(t.intermediate_values)
        if steps:
            ax2.plot(steps, [t.intermediate_values[s] for s in steps], marker=".",
                     color="tab:grey" if t.state == TrialState.PRUNED else "tab:blue", alpha=0.7)
    if xs:
        ax1.step(xs, ys, where="post", color="tab:orange", label="best so far")
        ax1.legend(loc="lower right")
    ax1.set(xlabel="trial", ylabel="validation CZII F-beta", title="trials (x: pruned, last value)")
    ax2.set(xlabel="epoch", ylabel="validation CZII F-beta", title="validation per epoch (grey: pruned)")
    fig.tight_layout()
    with atomic_output(path, overwrite=True) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _write_outputs(study, base, out_dir: Path, storage: str) -> SearchResult:
    from optuna.trial import TrialState

    from tomopick.workflows.train import _write_csv

    rows = trials_table(study)
    if rows:
        _write_csv(out_dir / "trials.csv", rows)
        _plot(study, out_dir / "trials.png")
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    counts = {s: len(study.get_trials(deepcopy=False, states=(s,)))
              for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
    best_path = None
    best = max(complete, key=lambda t: t.value) if complete else None
    if best is not None:
        cfg = config_from_params(base, best.params)
        best_path = out_dir / "best.yaml"
        header = (f"# tomopick search: best trial {best.number} of study {study.study_name!r} "
                  f"(validation CZII F-beta {best.value:.4f}); train it with `tomopick train {best_path.name}`\n")
        with atomic_output(best_path, overwrite=True) as tmp:
            tmp.write_text(header + yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    summary = {"study": study.study_name, "storage": storage,
               "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params,
                                                  "checkpoint": str(_trial_dir(out_dir, best.number) / "best.pt")},
               "counts": {s.name.lower(): n for s, n in counts.items()}}
    with atomic_output(out_dir / "summary.json", overwrite=True) as tmp:
        tmp.write_text(json.dumps(summary, indent=1))
    return SearchResult(out_dir=out_dir, study_name=study.study_name, storage=storage,
                        best_number=None if best is None else best.number,
                        best_value=None if best is None else float(best.value),
                        best_params={} if best is None else dict(best.params), best_config=best_path,
                        n_complete=counts[TrialState.COMPLETE], n_pruned=counts[TrialState.PRUNED],
                        n_failed=counts[TrialState.FAIL], table=rows)


def search(config: Any, out_dir: str | os.PathLike[str], *, trials: int = 20, minutes: float | None = None,
           storage: str | None = None, study_name: str | None = None, pruner: str = "median", seed: int = 0,
           space: SearchSpace | dict[str, Any] | None = None, overwrite: bool = False,
           log: Callable[[str], None] | None = None, batch: Any = None) -> SearchResult:
    """Search training recipes (see the module docstring).

    Parameters
    ----------
    config
        The base :class:`~tomopick.training.TrainConfig` (or mapping / YAML path): data with validation runs,
        particles, epochs, steps per epoch and ``max_minutes`` per trial; the searched fields are replaced.
    out_dir
        Output folder.
    trials
        Finished trials (complete + pruned) the study should hold at the end, counting earlier sessions.
    minutes
        Wall-clock budget of this session (a running trial is cut at the deadline and counts).
    storage
        Optuna storage URL (default ``sqlite:///OUT/search.db``); the same URL and study name continue a study.
    study_name
        Default: the base config's ``name``.
    pruner
        ``median`` | ``hyperband`` | ``none``.
    space
        :class:`~tomopick.training.search_space.SearchSpace` (or its fields); default ranges for small searches.
    overwrite
        Delete the study of this name in the storage and the outputs, and start anew.
    log
        Receives progress lines.
    batch
        :class:`~tomopick.workflows.batch.BatchOptions`: run the trials in parallel on that Dask cluster (one
        trial at a time per worker); ``None``: one after another in this process.
    """
    import optuna
    from pydantic import ValidationError

    from tomopick.configfile import first_error
    from tomopick.workflows.train import _as_train_config

    if trials < 1:
        raise TomopickError(f"--trials {trials}: must be >= 1")
    if minutes is not None and minutes <= 0:
        raise TomopickError(f"--minutes {minutes:g}: must be > 0")
    try:
        space = space if isinstance(space, SearchSpace) else SearchSpace.model_validate(space or {})
    except ValidationError as exc:
        raise TomopickError(f"invalid search space: {first_error(exc)}") from None
    base = _as_train_config(config)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TomopickError("the search output must be a folder, and a file of that name exists", out_dir)
    storage_url = _storage_url(storage, out_dir)
    name = study_name or base.name
    _make_pruner(pruner, base.epochs)  # unknown names fail before anything is written
    _check_data(base)
    out_dir.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    existing = [s.study_name for s in optuna.get_all_study_summaries(storage_url)] if _db_exists(storage_url) else []
    if name in existing and overwrite:
        optuna.delete_study(study_name=name, storage=storage_url)
        shutil.rmtree(out_dir / "trials", ignore_errors=True)
        existing.remove(name)
    if name not in existing:
        stale = [f for f in (*OUT_FILES, "trials") if (out_dir / f).exists()]
        if stale and not overwrite:
            raise TomopickError(f"output folder holds another search ({', '.join(stale)}) but the storage has no "
                                f"study {name!r}; pass --overwrite or another --out", out_dir)
    sampler = optuna.samplers.TPESampler(multivariate=True, seed=seed, n_startup_trials=4)
    study = optuna.create_study(study_name=name, storage=storage_url, direction="maximize", sampler=sampler,
                                pruner=_make_pruner(pruner, base.epochs), load_if_exists=True)
    resumed = name in existing
    recipe = _comparable(base.model_dump(mode="json"))
    if resumed and study.user_attrs.get("base_config") not in (None, recipe):
        raise TomopickError(f"the base config differs from the one study {name!r} was started with (only "
                            "max_minutes may change); pass --overwrite or another --study", storage_url)
    space_raw = space.model_dump(mode="json")
    if resumed and study.user_attrs.get("space") not in (None, space_raw):
        raise TomopickError(f"the search space differs from the one study {name!r} was started with; pass the "
                            "same --space, or --overwrite / another --study", storage_url)
    study.set_user_attr("base_config", recipe)
    study.set_user_attr("space", space_raw)
    if resumed and log is not None:
        log(f"continuing study {name!r}: {_finished(study)} of {trials} trials finished")
    _retry_stale(study, log)
    if not study.trials:
        first = params_of_config(base, space)
        if first is not None:
            study.enqueue_trial(first, user_attrs={"base_recipe": True})
    remaining = trials - _finished(study)
    deadline = None if minutes is None else time.time() + 60.0 * float(minutes)
    if remaining > 0 and batch is not None:
        _search_on_cluster(batch, base, space, out_dir, storage_url, name, trials, deadline, pruner, seed, log)
    elif remaining > 0:
        def after(study_, trial) -> None:
            if log is not None:
                log(_trial_line(trial, study_))
        study.optimize(_objective(base, space, out_dir, deadline, log), n_trials=remaining,
                       timeout=None if minutes is None else 60.0 * float(minutes), callbacks=[after],
                       catch=TRIAL_ERRORS, gc_after_trial=True)
    return _write_outputs(study, base, out_dir, storage_url)


#: Errors that fail one trial (the search goes on); anything else stops the search.
TRIAL_ERRORS = (FloatingPointError, RuntimeError, ValueError)


def _trial_line(trial, study) -> str:
    value = "" if trial.value is None else f" value {trial.value:.4f}"
    where = trial.user_attrs.get("process")
    return (f"trial {trial.number} {trial.state.name.lower()}{value}{f' ({where})' if where else ''}; best so far "
            f"{_best_value(study)}")


def search_worker(base_raw: dict[str, Any], space_raw: dict[str, Any], out_dir: str, storage_url: str, name: str,
                  trials: int, deadline: float | None, pruner: str, seed: int, threads: int | None) -> int:
    """One Dask worker's share of a search: trials of study ``name`` until it holds ``trials`` finished ones or
    ``deadline`` (epoch seconds) passes; returns how many trials this worker ran. ``threads`` overrides the base
    config's ``num_threads`` (the worker's cores)."""
    import optuna
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    from tomopick.workflows.train import _as_train_config

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    base = _as_train_config(base_raw)
    if threads:
        base = base.model_copy(update={"num_threads": int(threads)})
    space = SearchSpace.model_validate(space_raw)
    sampler = optuna.samplers.TPESampler(multivariate=True, seed=seed, n_startup_trials=4, constant_liar=True)
    study = optuna.load_study(study_name=name, storage=storage_url, sampler=sampler,
                              pruner=_make_pruner(pruner, base.epochs))
    left = trials - _finished(study)
    if left <= 0:
        return 0
    before = len(study.trials)
    study.optimize(_objective(base, space, Path(out_dir), deadline, None), n_trials=left,
                   timeout=None if deadline is None else max(0.0, deadline - time.time()),
                   callbacks=[MaxTrialsCallback(trials, states=(TrialState.COMPLETE, TrialState.PRUNED))],
                   catch=TRIAL_ERRORS, gc_after_trial=True)
    return len([t for t in study.get_trials(deepcopy=False)[before:]
                if t.user_attrs.get("process") == f"{socket.gethostname()}:{os.getpid()}"])


def _search_on_cluster(batch: Any, base, space: SearchSpace, out_dir: Path, storage_url: str, name: str,
                       trials: int, deadline: float | None, pruner: str, seed: int,
                       log: Callable[[str], None] | None) -> None:
    """Run :func:`search_worker` once per worker of the cluster ``batch`` asks for, printing trials as they end."""
    import optuna
    from distributed import wait

    from tomopick.workflows.batch import _start_cluster

    if storage_url.startswith("sqlite:///") and batch.scheduler:
        if log is not None:
            log(f"note: the workers of {batch.scheduler} must see the storage file {storage_url[10:]}")
    cluster = _start_cluster(batch, "cpu")
    try:
        client = cluster.client
        client.wait_for_workers(1, timeout=300)
        n_workers = max(1, len(client.scheduler_info().get("workers", {})))
        if log is not None:
            log(f"search on {n_workers} Dask worker(s), {cluster.torch_threads or 'the base config'} torch "
                f"thread(s) each; dashboard {client.dashboard_link}")
        kwargs = {"resources": cluster.resources} if cluster.resources else {}
        futures = [client.submit(search_worker, base.model_dump(mode="json"), space.model_dump(mode="json"),
                                 str(out_dir), storage_url, name, trials, deadline, pruner, seed + 1000 * (i + 1),
                                 cluster.torch_threads, pure=False, key=f"tomopick-search-{name}-{i}", **kwargs)
                   for i in range(n_workers)]
        study = optuna.load_study(study_name=name, storage=storage_url)
        seen = {t.number for t in study.get_trials(deepcopy=False) if t.state.is_finished()}
        while True:
            try:
                wait(futures, timeout=5)
                finished = True
            except TimeoutError:  # distributed's TimeoutError is the builtin one
                finished = False
            for t in study.get_trials(deepcopy=False):
                if t.state.is_finished() and t.number not in seen:
                    seen.add(t.number)
                    if log is not None:
                        log(_trial_line(t, study))
            if finished:
                break
        for i, future in enumerate(futures):
            if future.status == "error":
                exc = future.exception()
                raise TomopickError(f"search worker {i} failed: {type(exc).__name__}: {exc}") from None
    finally:
        cluster.close()


def _comparable(raw: dict[str, Any]) -> dict[str, Any]:
    """A base config without what a continued search may change (the per-trial time budget)."""
    return {k: v for k, v in raw.items() if k != "max_minutes"}


def _check_data(base) -> None:
    """Read the base config's data once (before any trial): tomograms, picks and validation runs exist."""
    from tomopick.training import resolve_particles
    from tomopick.workflows.train import load_volumes

    _, val, _, _ = load_volumes(base, resolve_particles(base))
    if not val:
        raise TomopickError("the search needs validation runs (data.val_runs or data.val_fraction > 0)",
                            base.data.path)


def _best_value(study) -> str:
    try:
        return f"{study.best_value:.4f} (trial {study.best_trial.number})"
    except ValueError:
        return "none yet"


def _db_exists(url: str) -> bool:
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///")).is_file()
    return True
