"""How to align and average: every option of ``tomopick average`` that shapes the result, as one validated object."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from tomopick.errors import TomopickError

#: CLI spelling of each field (for error messages).
CLI_NAMES: dict[str, str] = {
    "box": "--box", "bin": "--bin", "angular_step_deg": "--angular-step", "tilt_range_deg": "--tilt-range",
    "iterations": "--iterations", "max_shift_A": "--max-shift", "mask_radius_A": "--mask-radius",
    "initial_lowpass_A": "--initial-lowpass", "symmetry": "--symmetry", "device": "--device",
    "threads": "--threads", "seed": "--seed",
}


class AverageOptions(BaseModel):
    """Options of subtomogram averaging (defaults = ``tomopick average`` without options).

    Attributes
    ----------
    box
        Box edge in **binned** voxels; ``None``: ``2 × ceil(1.5 × radius / binned voxel)``, at least 24.
    bin
        Binning of the tomogram before extraction (block means).
    angular_step_deg
        Final angular sampling: the covering radius (°) of the local rotation set; the global search uses twice
        this step on 2×-binned boxes, then each pick is refined locally at this step.
    tilt_range_deg
        ``(min, max)`` tilt angles (°) about ``y``: the missing wedge of every pick (``(-90, 90)``: none).
    iterations
        Alignment rounds; from round 2 each half-set is aligned to its own average.
    max_shift_A
        Largest shift searched per axis (Å); ``None``: half the particle radius (at least 2 binned voxels).
    mask_radius_A
        Radius of the soft spherical mask used for alignment and FSC (Å); ``None``: 1.2 × the particle radius,
        capped to fit the box.
    initial_lowpass_A
        Low-pass (Å) of the first-round reference; ``None``: 4 binned voxels (twice the Nyquist limit).
    symmetry
        Point group of the reference (C1, Cn, Dn, T, O, I): the global search covers its asymmetric unit only.
    device
        torch device (``cpu``, ``cuda``, ``cuda:1``).
    threads
        torch CPU threads (process-wide); ``None``: torch's default.
    seed
        Seed of the half-set split (a ``numpy.random.Generator`` permutation).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    box: int | None = Field(default=None, ge=8, le=256)
    bin: int = Field(default=1, ge=1, le=16)
    angular_step_deg: float = Field(default=12.0, gt=1.0, le=60.0)
    tilt_range_deg: tuple[float, float] = (-60.0, 60.0)
    iterations: int = Field(default=3, ge=1, le=20)
    max_shift_A: float | None = Field(default=None, ge=0)
    mask_radius_A: float | None = Field(default=None, gt=0)
    initial_lowpass_A: float | None = Field(default=None, gt=0)
    symmetry: str = "C1"
    device: str = "cpu"
    threads: int | None = Field(default=None, ge=1)
    seed: int = Field(default=0, ge=0)

    @field_validator("tilt_range_deg")
    @classmethod
    def _tilt(cls, value: tuple[float, float]) -> tuple[float, float]:
        lo, hi = value
        if not (-90.0 <= lo < hi <= 90.0):
            raise ValueError(f"expected MIN,MAX with -90 <= MIN < MAX <= 90 degrees, got {lo:g},{hi:g}")
        return (float(lo), float(hi))

    @field_validator("symmetry")
    @classmethod
    def _symmetry(cls, value: str) -> str:
        from tomopick.match.rotations import symmetry_group

        symmetry_group(value)  # raises ValueError with the accepted names
        return value.strip().upper()

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        import re

        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", value.strip()):
            raise ValueError(f"unknown device {value!r}: use cpu, cuda or cuda:N")
        return value.strip()

    @classmethod
    def build(cls, **values: Any) -> "AverageOptions":
        """Validate ``values`` (``None`` means the default); a bad value raises :class:`TomopickError` naming the
        CLI option."""
        clean = {k: v for k, v in values.items() if v is not None}
        try:
            return cls(**clean)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err.get("loc") else ""
            name = CLI_NAMES.get(field, field)
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            raise TomopickError(f"{name}: {msg}") from None
