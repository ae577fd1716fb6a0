"""Networks (a registry selected by name in config) and self-describing checkpoints."""

from tomopick.models.checkpoint import LoadedModel, load_checkpoint, save_checkpoint
from tomopick.models.registry import build_model, model_names, register_model

__all__ = ["LoadedModel", "build_model", "load_checkpoint", "model_names", "register_model", "save_checkpoint"]
