"""Training: patch sampling, augmentation, losses, the loop (EMA, AMP on CUDA, early stopping, resume) and
validation by the CZII F-beta. File I/O lives in :mod:`tomopick.workflows.train`."""

from tomopick.training.config import TrainConfig, load_config, resolve_particles, validate_config
from tomopick.training.loop import EpochRecord, Trainer, training_classes
from tomopick.training.sampling import PatchSampler, Volume, crop
from tomopick.training.validation import fbeta_validator, pick_volume

__all__ = ["EpochRecord", "PatchSampler", "TrainConfig", "Trainer", "Volume", "crop", "fbeta_validator",
           "load_config", "pick_volume", "resolve_particles", "training_classes",
           "validate_config"]
