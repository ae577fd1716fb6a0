"""The training loop: AdamW + warm-up/cosine schedule, EMA of the weights, mixed precision on CUDA only,
validation with early stopping, resumable state.

:class:`Trainer` works on in-memory :class:`~tomopick.training.sampling.Volume` objects and never touches files;
the workflow (:mod:`tomopick.workflows.train`) reads data, saves checkpoints and writes the metrics CSV through
the ``on_epoch_end`` callback.

Reproducibility: every random draw comes from the trainer's own ``numpy.random.Generator`` (patches, mixup, the
per-epoch seed of the MONAI augmentation); the weights are initialised from ``config.seed`` inside
``torch.random.fork_rng`` (the global torch RNG is left untouched);
``torch.use_deterministic_algorithms(True, warn_only=True)`` is switched on for the duration of
:meth:`Trainer.fit` when ``config.deterministic``. Two runs with the same seed, data and thread count on a CPU
give identical weights; a resumed run continues with the exact state saved at the end of an epoch.
"""

from __future__ import annotations

import contextlib
import math
import platform
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from tomopick import __version__
from tomopick.data import ParticleSet
from tomopick.inference.options import default_score
from tomopick.training.augment import Augmenter, mixup
from tomopick.training.config import TrainConfig
from tomopick.training.losses import build_loss
from tomopick.training.sampling import PatchSampler, Volume

#: ``validate(model, volumes, trainer) -> {"score": float, ...}``; larger score = better.
Validator = Callable[[torch.nn.Module, Sequence[Volume], "Trainer"], dict[str, Any]]


@dataclass
class EpochRecord:
    """One row of the metrics CSV."""

    epoch: int
    step: int
    train_loss: float
    lr: float
    time_s: float
    val_loss: float = float("nan")
    val_score: float = float("nan")
    extra: dict[str, Any] = field(default_factory=dict)
    is_best: bool = False
    #: The training time budget (``max_minutes``) ran out during this epoch: training stops after it.
    budget_spent: bool = False

    def row(self) -> dict[str, Any]:
        return {"epoch": self.epoch, "step": self.step, "train_loss": self.train_loss, "val_loss": self.val_loss,
                "val_score": self.val_score, "lr": self.lr, "time_s": self.time_s, "is_best": int(self.is_best),
                **{k: v for k, v in self.extra.items() if isinstance(v, (int, float, str))}}

    def summary(self, epochs: int | None = None) -> str:
        """One log line: what this epoch measured (validation figures only when it validated)."""
        parts = [f"train loss {self.train_loss:.4f}"]
        if math.isfinite(self.val_loss):
            parts.append(f"val loss {self.val_loss:.4f}")
        if math.isfinite(self.val_score):
            parts.append(f"val score {self.val_score:.4f}")
        line = (f"epoch {self.epoch}" + (f"/{epochs}" if epochs else "") + f" step {self.step}: "
                + ", ".join(parts) + (" (best)" if self.is_best else "") + f", {self.time_s:.0f} s")
        return line + (", time budget spent: stopping" if self.budget_spent else "")


def training_classes(particles: ParticleSet) -> ParticleSet:
    """The set with labels renumbered ``1..K`` in set order, so that label ``k`` is network channel ``k``."""
    return ParticleSet(name=particles.name,
                       particles=tuple(p.model_copy(update={"label": i + 1}) for i, p in enumerate(particles)))


def output_layer(model: torch.nn.Module, n_out: int) -> torch.nn.Module | None:
    """The network's output convolution: the last convolution (in module order) with ``n_out`` output channels
    and a bias (None when there is none). Holds for every registered network (UNet/resunet, coordresunet,
    slice-unet, SwinUNETR), where that convolution's output is the logits, at most plus a residual."""
    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    last = None
    for module in model.modules():
        if isinstance(module, convs) and module.out_channels == n_out and module.bias is not None:
            last = module
    return last


def init_output_prior(model: torch.nn.Module, n_out: int, prior: float) -> bool:
    """Start a sigmoid network near ``prior`` everywhere: its output convolution's bias = ``logit(prior)``.

    A heatmap target is ~0 almost everywhere; from the default initialisation (logits ~0, outputs ~0.5) an Adam
    step moves each weight by about the learning rate, so the background needs thousands of steps to fall from 0.5
    to ~0 — longer than a CPU budget allows (the prior-probability initialisation of RetinaNet / CenterNet).
    Returns whether an output layer was found."""
    layer = output_layer(model, n_out)
    if layer is None:
        return False
    with torch.no_grad():
        layer.bias.fill_(math.log(prior / (1.0 - prior)))
    return True


def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def set_encoder_trainable(model: torch.nn.Module, trainable: bool) -> int:
    """(Un)freeze the encoder of a registered network; returns the number of parameters affected."""
    from tomopick.models.registry import encoder_parameters

    params = encoder_parameters(model)
    for p in params:
        p.requires_grad_(trainable)
    return sum(p.numel() for p in params)


class Trainer:
    """Train one network on in-memory volumes.

    Parameters
    ----------
    config
        The validated training config.
    particles
        The classes trained (labels are renumbered 1..K internally, see :func:`training_classes`).
    voxel_size_A
        Voxel size of all volumes, Å.
    train, val
        Training and validation volumes (targets already made with the config's target spec).
    validator
        Computes the validation score (e.g. :func:`tomopick.training.validation.fbeta_validator`); None: the
        negative validation loss on fixed patches is the score.
    init_state
        A state dict to start from (fine-tuning); keys must match the network.
    progress
        Show a progress bar (tqdm).
    data_summary
        Free-form description of the training data for the model card.
    """

    def __init__(self, config: TrainConfig, particles: ParticleSet, voxel_size_A: float, train: Sequence[Volume],
                 val: Sequence[Volume] = (), validator: Validator | None = None,
                 init_state: dict[str, torch.Tensor] | None = None, progress: bool = True,
                 data_summary: dict[str, Any] | None = None) -> None:
        from tomopick.models import build_model

        self.config = config
        self.particles = training_classes(particles)
        self.voxel_size_A = float(voxel_size_A)
        self.train_volumes = list(train)
        self.val_volumes = list(val)
        self.validator = validator
        self.progress = progress
        self.data_summary = data_summary or {}
        self.device = pick_device(config.device)
        self.heatmap = config.target.kind == "gaussian"
        self.n_out = len(self.particles) if self.heatmap else len(self.particles) + 1
        self.rng = np.random.default_rng(config.seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            self.model = build_model(config.network.name, 1, self.n_out, **config.network.hparams)
        if self.heatmap and init_state is None and config.output_prior is not None:
            init_output_prior(self.model, self.n_out, config.output_prior)
        if init_state is not None:
            self.model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in init_state.items()})
        self.frozen_params = set_encoder_trainable(self.model, False) if config.freeze_encoder else 0
        self.model.to(self.device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
        self.total_steps = config.epochs * config.steps_per_epoch
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.ema = None
        if config.ema_decay:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
        self.use_amp = bool(config.amp and self.device.type == "cuda")
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.loss_fn = build_loss(config.loss, self.n_out)
        self.sampler = PatchSampler(self.train_volumes, config.patch_size, config.particle_fraction)
        self.augment = Augmenter(config.augment, heatmap=self.heatmap, seed=0)
        self.epoch = 0
        self.step = 0
        self.best_score = -math.inf
        #: Per-class score thresholds chosen by the validator at the best validation (``{class: threshold}``).
        self.best_thresholds: dict[str, float] | None = None
        self.best_epoch = 0
        self.epochs_since_best = 0
        self.history: list[EpochRecord] = []
        self.elapsed_s = 0.0
        self._val_patches: list[tuple[np.ndarray, np.ndarray]] | None = None

    # -- schedule ----------------------------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        warm = self.config.warmup_steps
        if warm and step < warm:
            return (step + 1) / warm
        if self.config.schedule == "constant":
            return 1.0
        span = max(self.total_steps - warm, 1)
        progress = min(max(step - warm, 0) / span, 1.0)
        return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * progress))

    # -- models ------------------------------------------------------------------------------------------------
    def inference_model(self) -> torch.nn.Module:
        """The network to evaluate and ship: the EMA copy when EMA is on, else the trained one."""
        return self.ema.module if self.ema is not None else self.model

    def _autocast(self):
        if self.use_amp:
            return torch.autocast("cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    # -- batches -----------------------------------------------------------------------------------------------
    def _batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        images, targets = [], []
        for _ in range(self.config.batch_size):
            img, tgt, _ = self.sampler.draw(self.rng)
            img, tgt = self.augment(img, tgt)
            images.append(img)
            targets.append(tgt)
        x = torch.from_numpy(np.stack(images)).to(self.device)
        y = torch.from_numpy(np.stack(targets))
        y = (y.float() if self.heatmap else y.long()).to(self.device)
        return x, y

    def train_step(self) -> float:
        """One optimisation step; returns the loss."""
        self.model.train()
        x, y = self._batch()
        lam, perm = 1.0, None
        if self.config.augment.mixup_prob > 0 and x.shape[0] > 1 and self.rng.random() < self.config.augment.mixup_prob:
            x, lam, perm = mixup(x, self.rng, self.config.augment.mixup_alpha)
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(x)
        loss = self.loss_fn(logits, y)
        if perm is not None:
            loss = lam * loss + (1.0 - lam) * self.loss_fn(logits, y[perm.to(y.device)])
        if not torch.isfinite(loss):
            raise FloatingPointError(f"non-finite training loss at step {self.step}")
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        self.step += 1
        return float(loss.detach())

    # -- validation --------------------------------------------------------------------------------------------
    def _fixed_val_patches(self, n: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
        if self._val_patches is None:
            rng = np.random.default_rng(self.config.seed + 7919)
            sampler = PatchSampler(self.val_volumes, self.config.patch_size, self.config.particle_fraction)
            self._val_patches = [sampler.draw(rng)[:2] for _ in range(n)]
        return self._val_patches

    @torch.no_grad()
    def validation_loss(self) -> float:
        """Mean loss of the inference model over fixed validation patches (NaN without validation volumes)."""
        if not self.val_volumes:
            return float("nan")
        model = self.inference_model()
        model.eval()
        losses = []
        for img, tgt in self._fixed_val_patches():
            x = torch.from_numpy(img[None]).to(self.device)
            y = torch.from_numpy(tgt[None])
            y = (y.float() if self.heatmap else y.long()).to(self.device)
            with self._autocast():
                logits = model(x)
            losses.append(float(self.loss_fn(logits, y)))
        return float(np.mean(losses))

    def validate(self) -> tuple[float, float, dict[str, Any]]:
        """``(val_loss, score, extra)``; score from the validator, else ``-val_loss``."""
        val_loss = self.validation_loss()
        extra: dict[str, Any] = {}
        if self.validator is not None and self.val_volumes:
            model = self.inference_model()
            model.eval()
            with torch.no_grad():
                result = dict(self.validator(model, self.val_volumes, self))
            score = float(result.pop("score"))
            extra = result
        else:
            score = -val_loss if np.isfinite(val_loss) else float("nan")
        return val_loss, score, extra

    # -- loop --------------------------------------------------------------------------------------------------
    def fit(self, on_epoch_end: Callable[["Trainer", EpochRecord], None] | None = None) -> list[EpochRecord]:
        """Train until ``config.epochs``, early stopping (``validation.patience`` validations without a better
        score) or the end of the time budget (``config.max_minutes``). ``on_epoch_end(trainer, record)`` runs after
        every epoch (checkpointing, CSV).

        The budget counts the trainer's time (training and validation, summed over resumed sessions). It is
        checked after every step: the epoch in which it runs out ends there, and is validated and handed to
        ``on_epoch_end`` like a last epoch (so ``best.pt`` / ``last.pt`` are written as at a normal end)."""
        cfg = self.config
        with self._runtime():
            while self.epoch < cfg.epochs and not self.budget_spent():
                record = self._train_epoch()
                if on_epoch_end is not None:
                    on_epoch_end(self, record)
                if record.budget_spent:
                    break
                if self.val_volumes and self.epochs_since_best >= cfg.validation.patience:
                    break  # early stopping
        return self.history

    def budget_spent(self, running_s: float = 0.0) -> bool:
        """Whether ``config.max_minutes`` is used up (``running_s``: time of the current epoch so far)."""
        limit = self.config.max_minutes
        return limit is not None and self.elapsed_s + running_s >= 60.0 * float(limit)

    @contextlib.contextmanager
    def _runtime(self) -> Iterator[None]:
        """The config's thread count and deterministic algorithms for the duration, restored afterwards (so that
        one epoch run alone computes exactly what it computes inside :meth:`fit`)."""
        cfg = self.config
        previous_det = torch.are_deterministic_algorithms_enabled()
        previous_threads = torch.get_num_threads()
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(previous_det, warn_only=True)
            torch.set_num_threads(previous_threads)

    def train_epoch(self) -> EpochRecord:
        """One epoch of training (and validation when due) under the config's runtime settings."""
        with self._runtime():
            return self._train_epoch()

    def _train_epoch(self) -> EpochRecord:
        cfg = self.config
        t0 = time.perf_counter()
        self.augment.reseed(int(self.rng.integers(2**31)))
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps_per_epoch, desc=f"epoch {self.epoch + 1}/{cfg.epochs}", leave=False,
                       unit="step")
        losses = []
        spent = False
        for _ in range(cfg.steps_per_epoch):
            losses.append(self.train_step())
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
            if self.budget_spent(time.perf_counter() - t0):
                spent = True
                break
        if bar is not None:
            bar.close()
        self.epoch += 1
        record = EpochRecord(epoch=self.epoch, step=self.step, train_loss=float(np.mean(losses)),
                             lr=float(self.optimizer.param_groups[0]["lr"]), time_s=0.0, budget_spent=spent)
        last = self.epoch == cfg.epochs or spent
        if self.epoch % cfg.validation.every_epochs == 0 or last:
            record.val_loss, record.val_score, record.extra = self.validate()
            if np.isfinite(record.val_score) and record.val_score > self.best_score:
                self.best_score = record.val_score
                found = {k[len("threshold_"):]: float(v) for k, v in record.extra.items()
                         if k.startswith("threshold_") and isinstance(v, (int, float))}
                self.best_thresholds = found or self.best_thresholds
                self.best_epoch = self.epoch
                self.epochs_since_best = 0
                record.is_best = True
            else:
                self.epochs_since_best += 1
        if not self.val_volumes and last:
            record.is_best = True  # without validation the last epoch is "best"
        self.elapsed_s += time.perf_counter() - t0
        record.time_s = round(self.elapsed_s, 3)
        self.history.append(record)
        return record

    # -- checkpoints -------------------------------------------------------------------------------------------
    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config`` dict of a checkpoint (see :mod:`tomopick.models.checkpoint`)."""
        cfg = self.config
        classes = ([] if self.heatmap else ["background"]) + self.particles.names
        return {
            "network": {"name": cfg.network.name, "hparams": dict(cfg.network.hparams)},
            "in_channels": 1,
            "out_channels": self.n_out,
            "output": cfg.output,
            "classes": classes,
            "particles": self.particles.model_dump(mode="json"),
            "voxel_size_A": self.voxel_size_A,
            "patch_size": [int(v) for v in cfg.patch_size],
            "normalisation": dict(cfg.normalisation),
            "target": cfg.target.model_dump(mode="json"),
            "training": cfg.model_dump(mode="json"),
            "tomopick_version": __version__,
            "pick": self._pick_config(),
        }

    @property
    def pick_score(self) -> str:
        """The score validation thresholds are chosen for: the config's ``pick.score``, else ``peak`` for heatmap
        networks and ``blob`` for class maps (:func:`~tomopick.inference.options.default_score`)."""
        return self.config.pick.score or default_score({"target": self.config.target.model_dump(mode="json"),
                                                        "output": self.config.output})

    def _pick_config(self) -> dict[str, Any]:
        """``config["pick"]``: the peak method (and spacing) the thresholds were chosen for, and the per-class
        thresholds of the best validation when there are any (``tomopick pick``'s defaults)."""
        out: dict[str, Any] = {"peak_method": self.config.pick.peak_method,
                               "distance_factor": float(self.config.pick.distance_factor),
                               "score": self.pick_score}
        if self.best_thresholds:
            out.update({
                "thresholds": {n: self.best_thresholds[n] for n in self.particles.names if n in self.best_thresholds},
                "chosen_on": "validation runs " + ", ".join(v.name for v in self.val_volumes),
                "epoch": self.best_epoch})
        return out

    def model_card(self) -> dict[str, Any]:
        """A model card: data, recipe, metrics, hardware, time."""
        best = next((r for r in self.history if r.epoch == self.best_epoch), None)
        n_params = sum(p.numel() for p in self.model.parameters())
        return {
            "name": self.config.name,
            "description": self.config.description,
            "data": {"train": [v.name for v in self.train_volumes], "validation": [v.name for v in self.val_volumes],
                     "voxel_size_A": self.voxel_size_A,
                     "train_picks": int(sum(len(v.picks) for v in self.train_volumes)), **self.data_summary},
            "recipe": {"network": self.config.network.name, "parameters": int(n_params),
                       "target": self.config.target.kind, "loss": self.config.loss.kind,
                       "patch_size": list(self.config.patch_size), "batch_size": self.config.batch_size,
                       "steps": self.step, "epochs": self.epoch, "lr": self.config.lr,
                       "ema_decay": self.config.ema_decay, "seed": self.config.seed,
                       "freeze_encoder": self.config.freeze_encoder, "init_from": self.config.init_from},
            "metrics": {"best_epoch": self.best_epoch,
                        "best_val_score": None if not math.isfinite(self.best_score) else self.best_score,
                        "best": None if best is None else {k: v for k, v in best.row().items()}},
            "hardware": {"device": str(self.device),
                         "device_name": (torch.cuda.get_device_name(self.device) if self.device.type == "cuda"
                                         else platform.processor() or platform.machine()),
                         "torch_threads": torch.get_num_threads(), "torch": str(torch.__version__),
                         "python": platform.python_version()},
            "training_time_s": round(self.elapsed_s, 1),
        }

    def state(self) -> dict[str, Any]:
        """Everything needed to resume (plain containers and tensors; loads with ``weights_only=True``)."""
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "ema": None if self.ema is None else {k: v.detach().cpu() for k, v in self.ema.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch, "step": self.step, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "epochs_since_best": self.epochs_since_best, "elapsed_s": self.elapsed_s,
            "best_thresholds": self.best_thresholds,
            "rng": _encode_rng(self.rng.bit_generator.state),
            "history": [r.row() | {"extra": {k: v for k, v in r.extra.items() if isinstance(v, (int, float, str))}}
                        for r in self.history],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state` (resume)."""
        self.model.load_state_dict(state["model"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.best_score, self.best_epoch = float(state["best_score"]), int(state["best_epoch"])
        self.epochs_since_best = int(state["epochs_since_best"])
        self.elapsed_s = float(state["elapsed_s"])
        self.best_thresholds = state.get("best_thresholds")
        self.rng.bit_generator.state = _decode_rng(state["rng"])
        self.history = []
        for row in state.get("history", []):
            self.history.append(EpochRecord(epoch=int(row["epoch"]), step=int(row["step"]),
                                            train_loss=float(row["train_loss"]), lr=float(row["lr"]),
                                            time_s=float(row["time_s"]), val_loss=float(row["val_loss"]),
                                            val_score=float(row["val_score"]), extra=dict(row.get("extra", {})),
                                            is_best=bool(row["is_best"])))


def _encode_rng(state: dict[str, Any]) -> dict[str, Any]:
    """numpy bit-generator state with big integers as strings (safe for ``weights_only`` loading)."""
    def enc(v: Any) -> Any:
        if isinstance(v, dict):
            return {k: enc(x) for k, x in v.items()}
        if isinstance(v, int) and not isinstance(v, bool):
            return str(v)
        return v
    return enc(state)


def _decode_rng(state: dict[str, Any]) -> dict[str, Any]:
    def dec(k: str, v: Any) -> Any:
        if isinstance(v, dict):
            return {kk: dec(kk, x) for kk, x in v.items()}
        if isinstance(v, str) and k != "bit_generator":
            return int(v)
        return v
    return {k: dec(k, v) for k, v in state.items()}
