"""How to pick: every option of ``tomopick pick`` that shapes the picks, as one validated object.

:class:`PickOptions` travels unchanged from the CLI (``tomopick pick``) through
:func:`tomopick.workflows.pick.pick` to :func:`tomopick.inference.picking.pick_tomogram`; it is checked once,
before any model or tomogram is read, and its errors name the CLI option (:func:`option_error`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tomopick.errors import TomopickError
from tomopick.peaks.core import METHODS
from tomopick.peaks.score import DEFAULT_SCORE

#: CLI spelling of each field (for error messages).
CLI_NAMES: dict[str, str] = {
    "threshold": "--threshold", "threshold_rule": "--threshold-rule", "score": "--score",
    "peak_method": "--peak-method", "distance_factor": "--distance", "tta": "--tta", "overlap": "--overlap",
    "batch_size": "--batch-size", "device": "--device", "mode": "--mode", "roi_size": "--roi",
    "voxel_size_A": "--voxel-size", "allow_nonfinite": "--allow-nonfinite", "threads": "--threads",
    "precision": "--precision", "skip_vacuum": "--skip-vacuum", "adapt_norm": "--adapt-norm",
    "prior_correction": "--prior-correction",
}


class PickOptions(BaseModel):
    """Options of picking (defaults = ``tomopick pick`` without options).

    Attributes
    ----------
    threshold
        Score threshold: one value, one per class (model order) or ``{class: value}`` (``"*"``: the rest);
        ``None``: the checkpoint's thresholds for the score in use, else the score's default
        (:mod:`tomopick.peaks.thresholds`).
    threshold_rule
        ``stored`` (the precedence above) or ``valley`` (per tomogram and class: the emptiest ``blob`` score
        between 0.12 and 0.3, :func:`~tomopick.peaks.thresholds.valley_threshold`; given thresholds still win).
    score
        ``blob`` (mean class probability in the sphere the network paints) or ``peak`` (the map's value at the
        peak), :mod:`tomopick.peaks.score`; ``None``: the checkpoint's ``config["pick"]["score"]``, else
        :func:`default_score`.
    peak_method
        ``maxpool`` | ``mpnms`` | ``cc`` | ``localmax``; ``None``: the checkpoint's (``config["pick"]``), else
        ``maxpool``.
    distance_factor
        Minimum distance between picks of a class, × its radius; ``None``: the checkpoint's, else 0.75.
    tta
        Flip test-time augmentation: 1, 4 or 8 variants.
    overlap, batch_size, mode, roi_size, device
        Sliding window (:func:`~tomopick.inference.picking.inference_settings`).
    voxel_size_A
        Override the inputs' voxel size (Å).
    allow_nonfinite
        Treat NaN/Inf voxels as the median instead of refusing the tomogram.
    threads
        torch CPU threads (process-wide); ``None``: torch's default.
    precision
        CPU arithmetic of the network: ``fp32``, ``bf16`` (bfloat16 autocast) or ``auto`` (bf16 where the CPU
        computes bfloat16 natively, :func:`tomopick.inference.sliding.cpu_has_bf16`; the default — the CZII
        score of the bundled model moves by at most 0.01 on the in-distribution and domain-shift sets,
        bench/RESULTS.md). GPUs always use mixed precision.
    skip_vacuum
        Do not run the network on windows entirely outside the specimen slab (vacuum above/below the ice,
        :mod:`tomopick.inference.slab`); their scores are 0.
    adapt_norm
        Test-time adaptation of the network's batch-norm statistics to each tomogram
        (:mod:`tomopick.inference.adapt`): the tomogram's share of the statistics, 0 (off) to 1 (AdaBN);
        ``None``: the checkpoint's ``config["pick"]["adapt_norm"]``, else 0.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    threshold: float | list[float] | dict[str, float] | None = None
    threshold_rule: Literal["stored", "valley"] = "stored"
    score: Literal["blob", "peak"] | None = None
    peak_method: Literal["maxpool", "mpnms", "cc", "localmax"] | None = None
    distance_factor: float | None = Field(default=None, gt=0, le=4)
    tta: Literal[1, 4, 8] = 1
    overlap: float | None = Field(default=None, ge=0, lt=1)
    batch_size: int | None = Field(default=None, ge=1)
    device: str = "cpu"
    mode: Literal["crop", "gaussian"] = "crop"
    roi_size: tuple[int, int, int] | None = None
    voxel_size_A: float | None = Field(default=None, gt=0)
    allow_nonfinite: bool = False
    threads: int | None = Field(default=None, ge=1)
    precision: Literal["fp32", "bf16", "auto"] = "auto"  # the default of `tomopick pick --precision`
    skip_vacuum: bool = False
    adapt_norm: float | None = Field(default=None, ge=0, le=1)

    @field_validator("threshold")
    @classmethod
    def _threshold(cls, value: Any) -> Any:
        values = list(value.values()) if isinstance(value, dict) else (value if isinstance(value, list) else
                                                                         [] if value is None else [value])
        for v in values:
            if not 0 < float(v) <= 1:
                raise ValueError(f"score thresholds must be in (0, 1], got {float(v):g}")
        return value

    @field_validator("roi_size")
    @classmethod
    def _roi(cls, value: Any) -> Any:
        if value is not None and min(value) < 8:
            raise ValueError(f"window sizes must be >= 8 voxels, got {tuple(value)}")
        return value

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not (value == "cpu" or value == "cuda" or value.startswith("cuda:")):
            raise ValueError(f"expected cpu, cuda or cuda:N, got {value!r}")
        return value

    @classmethod
    def make(cls, **values: Any) -> "PickOptions":
        """Build and validate, turning a validation error into one :class:`TomopickError` line that names the
        CLI option (``--distance: Input should be greater than 0``)."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise option_error(exc) from None

    def with_defaults(self, config: dict[str, Any] | None) -> "PickOptions":
        """These options with the score, peak method, spacing and norm adaptation of a checkpoint's config
        (``config["pick"]``) filled in where not given (else :func:`default_score`, ``maxpool``, 0.75 and 0)."""
        config = config or {}
        pick_config = config.get("pick") or {}
        method = self.peak_method or pick_config.get("peak_method") or "maxpool"
        distance = self.distance_factor or pick_config.get("distance_factor") or 0.75
        score = self.score or pick_config.get("score") or default_score(config)
        if method not in METHODS:
            raise TomopickError(f"the checkpoint names an unknown peak method {method!r}")
        adapt = self.adapt_norm if self.adapt_norm is not None else float(pick_config.get("adapt_norm") or 0.0)
        return self.model_copy(update={"peak_method": method, "distance_factor": float(distance), "score": score,
                                       "adapt_norm": adapt})


def default_score(config: dict[str, Any]) -> str:
    """The score of a model that names none: ``peak`` for heatmap networks (Gaussian centroid targets or
    sigmoid outputs, tomoCPT: their peak value is the evidence, and a sphere mean would dilute it), ``blob`` for
    class-map (softmax, sphere-label) networks."""
    target = config.get("target") or {}
    heatmap = str(target.get("kind", "sphere")) == "gaussian" or config.get("output") == "sigmoid"
    return "peak" if heatmap else DEFAULT_SCORE


def option_error(exc: ValidationError) -> TomopickError:
    """One line naming the first invalid option and why."""
    err = exc.errors()[0]
    field = str(err["loc"][0]) if err.get("loc") else "option"
    name = CLI_NAMES.get(field, field)
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    given = err.get("input")
    shown = f" {given!r}" if isinstance(given, (str, int, float)) and not isinstance(given, bool) else ""
    return TomopickError(f"{name}{shown}: {msg}")
