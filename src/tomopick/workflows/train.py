"""``train``: read training data, build targets, run :class:`tomopick.training.Trainer`, write checkpoints.

Inputs (``config.data``): a copick project (also what ``tomopick simulate`` writes) or a folder of tomograms and
pick files matched by stem. Every tomogram is normalised with the robust z-score of
:func:`tomopick.inference.normalize.normalize_robust` (recorded in the checkpoint).

Output folder::

    OUT/config.yaml     the validated config (as run)
    OUT/metrics.csv     one row per epoch (train/val loss, validation F-beta per class, lr, time)
    OUT/best.pt         checkpoint with the best validation score (what ``tomopick pick`` uses)
    OUT/last.pt         checkpoint after the latest epoch
    OUT/state.pt        optimiser / EMA / RNG state for ``--resume``
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

from tomopick.data import ParticleSet, Picks
from tomopick.errors import TomopickError
from tomopick.io import atomic_output, check_output

OUT_FILES = ("config.yaml", "metrics.csv", "best.pt", "last.pt", "state.pt")


@dataclass
class TrainResult:
    """What :func:`train` produced."""

    out_dir: Path
    best_checkpoint: Path
    best_score: float
    best_epoch: int
    epochs: int
    steps: int
    time_s: float
    history: list[dict[str, Any]]


# -- data ------------------------------------------------------------------------------------------------------
def _normalise(tomogram, norm_cfg: dict[str, Any]) -> np.ndarray:
    from tomopick.inference.normalize import normalisation_kwargs, normalize_robust

    try:
        kwargs = normalisation_kwargs(norm_cfg)
    except ValueError as exc:
        raise TomopickError(str(exc), tomogram.source or None) from None
    return normalize_robust(tomogram.data, **kwargs)


def _copick_items(cfg) -> list[tuple[str, Any, Picks]]:
    from tomopick.io.copick_project import CopickProject

    project = CopickProject.open(cfg.data.path)
    runs = project.runs()
    if not runs:
        raise TomopickError("the copick project has no runs", cfg.data.path)
    items = []
    for run in runs:
        tomo = project.read_tomogram(run, cfg.data.voxel_size_A, cfg.data.tomo_type)
        picks = project.read_picks(run, user_id=cfg.data.user_id, session_id=cfg.data.session_id)
        items.append((run, tomo, picks))
    return items


def _folder_items(cfg) -> list[tuple[str, Any, Picks]]:
    from tomopick.io import read_picks, read_tomogram

    root = Path(cfg.data.path)
    if not root.is_dir():
        raise TomopickError("training data folder not found", root)

    def stem(p: Path, suffixes: list[str]) -> str | None:
        name = p.name.lower()
        for s in sorted(suffixes, key=len, reverse=True):
            if name.endswith(s):
                return p.name[: len(p.name) - len(s)]
        return None

    tomos = {}
    picks_files: dict[str, Path] = {}
    for p in sorted(root.iterdir()):
        s = stem(p, cfg.data.tomogram_suffixes)
        if s is not None:
            tomos[s] = p
            continue
        s = stem(p, cfg.data.picks_suffixes)
        if s is not None and p.is_file():
            picks_files[s] = p
    if not tomos:
        raise TomopickError(f"no tomograms ({', '.join(cfg.data.tomogram_suffixes)}) in the folder", root)
    items = []
    for name, path in tomos.items():
        if name not in picks_files:
            raise TomopickError(f"no picks file for tomogram {path.name} (expected {name}.csv/.star/...)", root)
        tomo = read_tomogram(path)
        picks = read_picks(picks_files[name])
        items.append((name, tomo, picks.with_columns(run=name)))
    return items


def split_runs(names: list[str], train_runs: list[str] | None, val_runs: list[str] | None,
               val_fraction: float) -> tuple[list[str], list[str]]:
    """Deterministic train/validation split of run names (sorted): explicit lists win; otherwise the last
    ``ceil(val_fraction · n)`` runs validate (none when there is only one run)."""
    names = sorted(names)
    if val_runs is not None:
        unknown = sorted(set(val_runs) - set(names))
        if unknown:
            raise TomopickError(f"validation run(s) not found: {', '.join(unknown)}")
        val = [n for n in names if n in set(val_runs)]
    else:
        n_val = math.ceil(val_fraction * len(names)) if len(names) > 1 else 0
        val = names[len(names) - n_val:] if n_val else []
    if train_runs is not None:
        unknown = sorted(set(train_runs) - set(names))
        if unknown:
            raise TomopickError(f"training run(s) not found: {', '.join(unknown)}")
        train = [n for n in names if n in set(train_runs) and n not in set(val)]
    else:
        train = [n for n in names if n not in set(val)]
    if not train:
        raise TomopickError("no training runs left after the validation split")
    return train, val


def load_volumes(cfg, particles: ParticleSet):
    """Read, normalise and label the training and validation tomograms.

    Returns
    -------
    (train, val, voxel_size_A, summary)
        Lists of :class:`~tomopick.training.Volume`, the common voxel size (Å) and a data summary for the card.
    """
    from tomopick.labels import TargetSpec, make_target
    from tomopick.training import Volume, training_classes

    items = _copick_items(cfg) if cfg.data.kind == "copick" else _folder_items(cfg)
    names = [n for n, _, _ in items]
    train_names, val_names = split_runs(names, cfg.data.train_runs, cfg.data.val_runs, cfg.data.val_fraction)
    wanted = set(train_names) | set(val_names)
    tclasses = training_classes(particles)
    spec = TargetSpec(cfg.target.kind, cfg.target.radius_fraction)
    voxel_sizes = []
    train, val = [], []
    dropped: dict[str, int] = {}
    for name, tomo, picks in items:
        if name not in wanted:
            continue
        if not tomo.is_isotropic:
            raise TomopickError(f"tomogram voxel size {tomo.voxel_size_A} Å is not isotropic", tomo.source or name)
        vs = tomo.isotropic_voxel_size_A
        if cfg.data.voxel_size_A is not None and abs(vs - cfg.data.voxel_size_A) > 0.01 * cfg.data.voxel_size_A:
            raise TomopickError(f"tomogram voxel size {vs:g} Å differs from data.voxel_size_A "
                                f"{cfg.data.voxel_size_A:g} Å (resample it first)", tomo.source or name)
        voxel_sizes.append(vs)
        keep = np.isin(picks.frame["particle"].to_numpy(), particles.names)
        for other in set(picks.particles) - set(particles.names):
            dropped[other] = dropped.get(other, 0) + int((picks.frame["particle"] == other).sum())
        picks = picks.select(keep)
        picks = picks.select(picks.inside(tomo.shape, vs))
        image = _normalise(tomo, cfg.normalisation)
        target = make_target(tomo.shape, picks, tclasses, vs, spec)
        vol = Volume(name, image, target, picks, vs)
        (val if name in set(val_names) else train).append(vol)
    if max(voxel_sizes) - min(voxel_sizes) > 0.01 * min(voxel_sizes):
        raise TomopickError(f"training tomograms have different voxel sizes ({min(voxel_sizes):g}–"
                            f"{max(voxel_sizes):g} Å); resample them to one", cfg.data.path)
    summary = {"source": cfg.data.kind, "path": str(cfg.data.path), "tomo_type": cfg.data.tomo_type,
               "train_picks_per_class": {n: int(sum((v.picks.frame["particle"] == n).sum() for v in train))
                                         for n in particles.names},
               "ignored_classes": dropped}
    return train, val, float(np.mean(voxel_sizes)), summary


# -- output ----------------------------------------------------------------------------------------------------
def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow(r)
    with atomic_output(path, overwrite=True) as tmp:
        tmp.write_text(buf.getvalue())


def _save_state(path: Path, state: dict[str, Any]) -> None:
    import torch

    with atomic_output(path, overwrite=True) as tmp:
        torch.save(state, tmp)


def _load_state(path: Path) -> dict[str, Any]:
    import torch

    if not path.is_file():
        raise TomopickError("nothing to resume (no state.pt in the output folder)", path.parent)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001
        raise TomopickError(f"unreadable training state ({str(exc).splitlines()[0][:120]})", path) from None


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """A config without the settings a resumed run may change (``epochs``, ``validation.patience``); a longer
    run keeps the learning-rate schedule of the new total."""
    out = dict(config)
    out.pop("epochs", None)
    out["validation"] = {k: v for k, v in dict(out.get("validation") or {}).items() if k != "patience"}
    return out


def _prepare_out(out_dir: Path, overwrite: bool, resume: bool) -> None:
    if resume:
        if not (out_dir / "state.pt").is_file():
            raise TomopickError("nothing to resume (no state.pt in the output folder)", out_dir)
        return
    existing = [f for f in OUT_FILES if (out_dir / f).exists()]
    if existing and not overwrite:
        raise TomopickError(f"output folder already holds a training run ({', '.join(existing)}); pass --overwrite "
                            "to replace it or --resume to continue it", out_dir)
    check_output(out_dir / "config.yaml", overwrite=True, create_parent=False)  # created once the data are read


def _as_train_config(config: Any):
    """A :class:`~tomopick.training.TrainConfig` from itself, a mapping or a YAML path."""
    from tomopick.training import TrainConfig, load_config
    from tomopick.training.config import validate_config

    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return validate_config(config)
    return load_config(config)


def _check_resumable(out_dir: Path, cfg) -> None:
    """Refuse to resume a run whose saved config differs in more than ``epochs`` and validation patience."""
    config_file = out_dir / "config.yaml"
    previous = yaml.safe_load(config_file.read_text()) if config_file.is_file() else None
    if previous is not None and _comparable(previous) != _comparable(cfg.model_dump(mode="json")):
        raise TomopickError("the config differs from the run being resumed (only epochs and validation "
                            "patience may change)", config_file)


def _init_state(cfg, particles: ParticleSet) -> dict[str, Any] | None:
    """The weights of ``cfg.init_from`` to fine-tune from (None without it), checked against the config."""
    from tomopick.models import load_checkpoint

    if not cfg.init_from:
        return None
    base = load_checkpoint(cfg.init_from)
    if base.config["network"] != {"name": cfg.network.name, "hparams": dict(cfg.network.hparams)}:
        raise TomopickError("fine-tuning: the config's network differs from the checkpoint's "
                            f"({base.config['network']})", cfg.init_from)
    init_state = base.model.state_dict()
    if base.config.get("output") != cfg.output or len(base.classes) != (
            len(particles) + (0 if cfg.output == "sigmoid" else 1)):
        raise TomopickError("fine-tuning: the checkpoint's classes/output do not match the config "
                            f"(checkpoint classes: {', '.join(base.classes)})", cfg.init_from)
    return init_state


def _epoch_writer(out_dir: Path, cfg, log: Callable[[str], None] | None) -> Callable[..., None]:
    """The end-of-epoch callback: best/last checkpoints, resumable state, metrics CSV and the log line."""
    from tomopick.models import save_checkpoint

    def on_epoch_end(tr, record) -> None:
        ckpt_cfg = tr.checkpoint_config()
        card = tr.model_card()
        model = tr.inference_model()
        if record.is_best:
            save_checkpoint(out_dir / "best.pt", model, ckpt_cfg, card, overwrite=True)
        save_checkpoint(out_dir / "last.pt", model, ckpt_cfg, card, overwrite=True)
        _save_state(out_dir / "state.pt", tr.state())
        _write_csv(out_dir / "metrics.csv", [r.row() for r in tr.history])
        if log is not None:
            log(record.summary(cfg.epochs))  # validation figures only where the epoch validated

    return on_epoch_end


def train(config: Any, out_dir: str | Path, *, overwrite: bool = False, resume: bool = False, progress: bool = True,
          validator: Callable[..., dict[str, Any]] | None = None,
          log: Callable[[str], None] | None = None) -> TrainResult:
    """Train a picker from a config and write checkpoints and metrics into ``out_dir``.

    Parameters
    ----------
    config
        A :class:`~tomopick.training.TrainConfig`, a mapping, or a path to its YAML.
    out_dir
        Output folder (see the module docstring).
    overwrite
        Replace a previous run in ``out_dir``.
    resume
        Continue the run saved in ``out_dir`` (its ``state.pt``; the config must be the same).
    progress
        Show progress bars.
    validator
        Validation callable (default: CZII F-beta over the validation tomograms,
        :func:`tomopick.training.fbeta_validator`).
    log
        Receives one line per epoch (e.g. ``print``).
    """
    import torch

    from tomopick.models import save_checkpoint
    from tomopick.training import Trainer, fbeta_validator, resolve_particles

    cfg = _as_train_config(config)
    out_dir = Path(out_dir)
    _prepare_out(out_dir, overwrite, resume)
    if resume:
        _check_resumable(out_dir, cfg)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    particles = resolve_particles(cfg)
    init_state = _init_state(cfg, particles)
    train_vols, val_vols, voxel_size_A, summary = load_volumes(cfg, particles)
    if validator is None and val_vols:
        validator = fbeta_validator(beta=cfg.validation.beta, threshold=cfg.validation.threshold)
    trainer = Trainer(cfg, particles, voxel_size_A, train_vols, val_vols, validator=validator, init_state=init_state,
                      progress=progress, data_summary=summary)
    if resume:
        trainer.load_state(_load_state(out_dir / "state.pt"))
    with atomic_output(out_dir / "config.yaml", overwrite=True) as tmp:
        tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    trainer.fit(_epoch_writer(out_dir, cfg, log))
    if not (out_dir / "best.pt").is_file():  # e.g. no finite validation score ever: ship the last weights
        save_checkpoint(out_dir / "best.pt", trainer.inference_model(), trainer.checkpoint_config(),
                        trainer.model_card(), overwrite=True)
    return TrainResult(out_dir=out_dir, best_checkpoint=out_dir / "best.pt",
                       best_score=trainer.best_score, best_epoch=trainer.best_epoch, epochs=trainer.epoch,
                       steps=trainer.step, time_s=trainer.elapsed_s, history=[r.row() for r in trainer.history])


def finetune_config(model: Any, data: str | Path, *, steps: int = 300, lr: float = 3e-4,
                    freeze_encoder: bool = False, user_id: str | None = "curation", val_runs: Sequence[str] | None = None,
                    max_minutes: float | None = None, batch_size: int | None = None) -> Any:
    """The :class:`~tomopick.training.TrainConfig` that fine-tunes a supervised checkpoint on new annotated data:
    the checkpoint's own recipe (stored in its config as ``training``) with ``init_from`` = the checkpoint, the
    data replaced, a short constant-rate schedule of ``steps`` steps and validation only where ``val_runs`` are
    given (their thresholds are then stored, as ``tomopick train`` does; else the checkpoint's are kept).

    Parameters
    ----------
    model
        Checkpoint path (or ``None``: the bundled ``czii-10A``).
    data
        A copick project or a folder of tomograms with pick files matched by stem (as ``data.path`` of a config).
    user_id
        copick user of the annotations.
    """
    from tomopick.models.bundled import bundled_model_path
    from tomopick.models.checkpoint import load_checkpoint
    from tomopick.training.config import validate_config

    path = Path(bundled_model_path()) if model is None else Path(model)
    base = load_checkpoint(path)
    recipe = dict(base.config.get("training") or {})
    if not recipe:
        raise TomopickError("the checkpoint carries no training recipe (config['training']): fine-tune it with a "
                            "config of your own (init_from:)", path)
    data_path = str(data)
    kind = "copick" if data_path.startswith("copick://") or Path(data_path, "copick_config.json").is_file() \
        or data_path.endswith(".json") else "folder"
    data_cfg = {**(recipe.get("data") or {}), "kind": kind, "path": data_path.removeprefix("copick://"),
                "user_id": user_id, "train_runs": None, "val_runs": list(val_runs) if val_runs else None,
                "val_fraction": 0.0}
    steps_per_epoch = max(1, min(int(steps), 50))
    recipe.update(data=data_cfg, init_from=str(path), freeze_encoder=bool(freeze_encoder), lr=float(lr),
                  epochs=max(1, -(-int(steps) // steps_per_epoch)), steps_per_epoch=steps_per_epoch,
                  schedule="constant", warmup_steps=0, max_minutes=max_minutes)
    if batch_size is not None:
        recipe["batch_size"] = int(batch_size)
    validation = dict(recipe.get("validation") or {})
    validation.update(every_epochs=1, patience=max(1, int(validation.get("patience", 2))))
    recipe["validation"] = validation
    return validate_config(recipe)
