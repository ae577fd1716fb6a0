"""The search space of ``tomopick search``: what a trial may change in a training recipe, and the recipe it gives.

Pure functions: :func:`suggest_params` asks an Optuna trial (anything with ``suggest_categorical``,
``suggest_int`` and ``suggest_float``) for one point of a :class:`SearchSpace`; :func:`config_from_params` turns
such a point and a base :class:`~tomopick.training.config.TrainConfig` (data, particles, epochs, budget) into
the trial's validated ``TrainConfig``; :func:`params_of_config` is its inverse for the base recipe itself (so the
search can start from it). Parameters (Optuna names):

``family``       ``unet`` (plain convolutions) | ``resunet`` (residual units)
``width``        channels of the first level (doubled per level)
``depth``        levels (strides of 2 between them: patch sides must be multiples of 2^(depth − 1))
``res_units``    residual units per level (``resunet`` only)
``norm``         ``batch`` | ``instance``
``target``       label kind: ``sphere`` | ``ball`` | ``tball`` | ``cubic`` (class maps) | ``gaussian`` (heatmaps)
``radius``       label radius as a fraction of the particle radius
``loss``         ``dice_ce`` | ``dice`` | ``ce`` | ``focal`` | ``tversky`` (class maps; heatmaps always use
                 ``huber_laplacian``), with ``tversky_alpha`` (β = 1 − α) and ``focal_gamma``
``patch``        cubic patch side (voxels)
``lr``           AdamW learning rate (log scale)
``augment``      augmentation strength s ∈ [0, 1]: s = 0.5 is the default recipe, 0 no augmentation, 1 twice the
                 default probabilities (capped at 1) and ranges
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, model_validator

from tomopick.training.config import AugmentConfig, TrainConfig, validate_config

CLASS_MAP_TARGETS = ("sphere", "ball", "tball", "cubic")


class SearchSpace(BaseModel):
    """The ranges and choices a search explores (defaults: a space for small CPU searches)."""

    model_config = ConfigDict(extra="forbid")

    families: list[Literal["unet", "resunet"]] = ["unet", "resunet"]
    widths: list[int] = [8, 16, 24]
    depths: list[int] = [2, 3, 4]
    res_units: tuple[int, int] = (1, 2)
    norms: list[Literal["batch", "instance"]] = ["batch", "instance"]
    targets: list[Literal["sphere", "ball", "tball", "cubic", "gaussian"]] = ["sphere", "ball", "tball", "gaussian"]
    radius: tuple[float, float] = (0.3, 1.0)
    losses: list[Literal["dice_ce", "dice", "ce", "focal", "tversky"]] = ["dice_ce", "dice", "ce", "focal", "tversky"]
    tversky_alpha: tuple[float, float] = (0.1, 0.7)
    focal_gamma: tuple[float, float] = (1.0, 3.0)
    patches: list[int] = [32, 48, 64]
    lr: tuple[float, float] = (3e-4, 1e-2)
    augment: tuple[float, float] = (0.0, 1.0)

    @model_validator(mode="after")
    def _sane(self) -> "SearchSpace":
        for name in ("families", "widths", "depths", "norms", "targets", "losses", "patches"):
            if not getattr(self, name):
                raise ValueError(f"{name}: give at least one choice")
        if min(self.widths) < 1 or min(self.depths) < 2:
            raise ValueError("widths must be >= 1 and depths >= 2")
        for name in ("res_units", "radius", "tversky_alpha", "focal_gamma", "lr", "augment"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"{name}: low {lo} > high {hi}")
        if self.lr[0] <= 0 or self.radius[0] <= 0:
            raise ValueError("lr and radius must be > 0")
        if min(self.patches) < 8:
            raise ValueError("patches must be >= 8 voxels")
        for patch in self.patches:
            if all(patch % (2 ** (d - 1)) for d in self.depths):
                raise ValueError(f"patch {patch} is a multiple of no depth's downsampling")
        return self


def suggest_params(trial: Any, space: SearchSpace) -> dict[str, Any]:
    """One point of ``space`` from an Optuna trial (conditional parameters only where they apply)."""
    p: dict[str, Any] = {}
    p["family"] = trial.suggest_categorical("family", list(space.families))
    p["width"] = trial.suggest_categorical("width", list(space.widths))
    p["patch"] = trial.suggest_categorical("patch", list(space.patches))
    depths = [d for d in space.depths if p["patch"] % (2 ** (d - 1)) == 0] or [min(space.depths)]
    p["depth"] = trial.suggest_int("depth", min(depths), max(depths))
    if p["patch"] % (2 ** (p["depth"] - 1)):  # not a multiple of the downsampling: the deepest that fits
        p["depth"] = max(d for d in range(2, p["depth"] + 1) if p["patch"] % (2 ** (d - 1)) == 0)
    if p["family"] == "resunet":
        p["res_units"] = trial.suggest_int("res_units", *space.res_units)
    p["norm"] = trial.suggest_categorical("norm", list(space.norms))
    p["target"] = trial.suggest_categorical("target", list(space.targets))
    p["radius"] = trial.suggest_float("radius", *space.radius)
    if p["target"] != "gaussian":
        p["loss"] = trial.suggest_categorical("loss", list(space.losses))
        if p["loss"] == "tversky":
            p["tversky_alpha"] = trial.suggest_float("tversky_alpha", *space.tversky_alpha)
        if p["loss"] == "focal":
            p["focal_gamma"] = trial.suggest_float("focal_gamma", *space.focal_gamma)
    p["lr"] = trial.suggest_float("lr", *space.lr, log=True)
    p["augment"] = trial.suggest_float("augment", *space.augment)
    return p


def augment_config(strength: float) -> AugmentConfig:
    """The augmentation of strength ``s``: the default probabilities and ranges × 2s (probabilities capped at 1;
    s = 0.5 is the default recipe; mixup and elastic stay as the defaults, off)."""
    base = AugmentConfig()
    f = 2.0 * float(strength)
    lo, hi = base.scale_range
    return base.model_copy(update={
        "flip_prob": min(1.0, base.flip_prob * f), "rot90_xy_prob": min(1.0, base.rot90_xy_prob * f),
        "rotate_z_prob": min(1.0, base.rotate_z_prob * f), "rotate_z_deg": base.rotate_z_deg * f,
        "scale_prob": min(1.0, base.scale_prob * f), "scale_range": (1.0 - (1.0 - lo) * f, 1.0 + (hi - 1.0) * f),
        "gamma_prob": min(1.0, base.gamma_prob * f), "contrast_prob": min(1.0, base.contrast_prob * f),
        "noise_prob": min(1.0, base.noise_prob * f), "noise_std": base.noise_std * f})


def config_from_params(base: TrainConfig, params: dict[str, Any]) -> TrainConfig:
    """The training config of one trial: ``base`` with the network, target, loss, patch, learning rate and
    augmentation of ``params`` (see the module docstring); validated like a YAML config."""
    raw = base.model_dump(mode="json")
    depth = int(params["depth"])
    width = int(params["width"])
    hparams: dict[str, Any] = {"channels": [width * 2**i for i in range(depth)], "strides": [2] * (depth - 1),
                               "num_res_units": int(params.get("res_units", 0)) if params["family"] == "resunet"
                               else 0, "norm": str(params["norm"])}
    raw["network"] = {"name": str(params["family"]), "hparams": hparams}
    raw["target"] = {"kind": str(params["target"]), "radius_fraction": float(params["radius"])}
    loss = dict(raw.get("loss") or {})
    if params["target"] == "gaussian":
        loss["kind"] = "huber_laplacian"
        loss["class_weights"] = None
    else:
        loss["kind"] = str(params["loss"])
        if "tversky_alpha" in params:
            loss["tversky_alpha"] = float(params["tversky_alpha"])
            loss["tversky_beta"] = 1.0 - float(params["tversky_alpha"])
        if "focal_gamma" in params:
            loss["focal_gamma"] = float(params["focal_gamma"])
    raw["loss"] = loss
    raw["patch_size"] = [int(params["patch"])] * 3
    raw["lr"] = float(params["lr"])
    raw["augment"] = augment_config(float(params["augment"])).model_dump(mode="json")
    raw["pick"] = {**(raw.get("pick") or {}), "score": None}  # the default score of the trial's target kind
    return validate_config(raw)


def params_of_config(config: TrainConfig, space: SearchSpace | None = None) -> dict[str, Any] | None:
    """The point of the search space that is ``config``'s own recipe (to enqueue it as the first trial), or
    ``None`` when the recipe lies outside ``space`` (another network, uneven channels, non-cubic patch …)."""
    space = space or SearchSpace()
    net = config.network
    hp = dict(net.hparams)
    channels = list(hp.get("channels", (16, 32, 64, 128)))
    if net.name not in ("unet", "resunet") or net.name not in space.families or not channels:
        return None
    if channels != [channels[0] * 2**i for i in range(len(channels))] or \
            list(hp.get("strides", [2] * (len(channels) - 1))) != [2] * (len(channels) - 1):
        return None
    patch = set(config.patch_size)
    if len(patch) != 1:
        return None
    p: dict[str, Any] = {"family": net.name, "width": int(channels[0]), "patch": int(patch.pop()),
                         "depth": len(channels), "norm": str(hp.get("norm", "batch")),
                         "target": config.target.kind, "radius": float(config.target.radius_fraction),
                         "lr": float(config.lr), "augment": 0.5}
    if net.name == "resunet":
        p["res_units"] = int(hp.get("num_res_units", 2))
    if config.target.kind != "gaussian":
        p["loss"] = config.loss.kind
        if config.loss.kind == "tversky":
            p["tversky_alpha"] = float(config.loss.tversky_alpha)
        if config.loss.kind == "focal":
            p["focal_gamma"] = float(config.loss.focal_gamma)
    if config.augment != AugmentConfig():
        return None
    checks = [(p["width"], space.widths), (p["depth"], space.depths), (p["norm"], space.norms),
              (p["target"], space.targets), (p["patch"], space.patches)]
    if any(v not in choices for v, choices in checks) or ("loss" in p and p["loss"] not in space.losses):
        return None
    if "res_units" in p and not space.res_units[0] <= p["res_units"] <= space.res_units[1]:
        return None
    if not (space.lr[0] <= p["lr"] <= space.lr[1] and space.radius[0] <= p["radius"] <= space.radius[1]):
        return None
    return p
