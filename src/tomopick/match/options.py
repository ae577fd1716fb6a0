"""Every option of template matching that shapes the scores and picks, as one validated object.

:class:`MatchOptions` travels unchanged from the CLI (``tomopick match``) through
:func:`tomopick.workflows.match.match` to :func:`tomopick.match.picking.match_tomogram`; it is checked once, before
any file is read, and its errors name the CLI option.
"""

from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tomopick.errors import TomopickError

#: CLI spelling of each field (for error messages).
CLI_NAMES: dict[str, str] = {
    "step_deg": "--step", "symmetry": "--symmetry", "tilt_range_deg": "--tilt-range", "defocus_A": "--defocus",
    "voltage_kV": "--voltage", "cs_mm": "--cs", "amplitude_contrast": "--amplitude-contrast",
    "ctf_corrected": "--ctf-corrected", "whiten": "--whiten", "bin": "--bin", "voxel_size_A": "--voxel-size",
    "invert": "--invert", "false_alarms": "--false-alarms", "threshold": "--threshold",
    "distance_factor": "--distance", "tile_voxels": "--tile-voxels", "device": "--device",
    "mask_radius_A": "--mask-radius", "lowpass_A": "--lowpass", "threads": "--threads",
    "outlier_z": "--outlier-z", "gap": "--gap", "search": "--search", "coarse_step_deg": "--coarse-step",
}


class MatchOptions(BaseModel):
    """Options of template matching (defaults = ``tomopick match`` without options).

    Attributes
    ----------
    step_deg
        Angular step: covering radius of the rotation set in degrees (:mod:`tomopick.match.rotations`).
    symmetry
        Point group of the template (``C1``, ``Cn``, ``Dn``, ``T``, ``O``, ``I``): only its asymmetric unit is searched.
    tilt_range_deg
        ``(min, max)`` tilt in degrees about ``y`` (:mod:`tomopick.match.wedge`); ``None``: no wedge weighting.
    defocus_A
        Defocus (underfocus, Å) of a CTF applied to the template; ``None``: no CTF.
    voltage_kV, cs_mm, amplitude_contrast
        CTF parameters.
    ctf_corrected
        The tomogram was CTF-corrected (phase-flipped): the template gets ``|CTF|`` instead of ``CTF``.
    whiten
        Whiten tomogram and template by the tomogram's radially averaged amplitude spectrum.
    bin
        Match on a grid this many times coarser than the tomogram's (coordinates come back in Å).
    voxel_size_A
        Override the tomogram's voxel size (Å).
    invert
        Negate the template (maps are density, protein bright; tomograms show protein dark). ``None``: invert map
        templates, keep prompts cut from a tomogram.
    false_alarms
        Expected false picks per tomogram that set the automatic threshold (:mod:`tomopick.match.stats`).
    gap
        Raise the automatic threshold to a clear gap between two groups of peak scores above it (look-alikes below,
        the particle above; :func:`~tomopick.match.stats.gap_threshold`).
    threshold
        A fixed score (correlation coefficient) threshold instead of the automatic one.
    distance_factor
        Minimum distance between picks × the particle radius.
    tile_voxels
        Largest FFT tile in voxels (memory bound: about 40 bytes per voxel).
    mask_radius_A
        Radius of the spherical mask under which the template and the local statistics are normalised (Å);
        ``None``: from the template's extent.
    lowpass_A
        Low-pass the template at this resolution (Å); ``None``: up to Nyquist of the matching grid.
    outlier_z
        Gold fiducials and other extreme-contrast blobs (``z`` robust σ on a 2×-binned, smoothed copy,
        :func:`~tomopick.match.picking.outlier_voxels`) are blanked and kept out of the search, with the template
        radius around them; ``None``: keep everything.
    search
        ``exhaustive``: one FFT correlation per rotation of the ``step_deg`` set; ``coarse-to-fine``: the FFT search
        at ``coarse_step_deg``, then a local search over the fine rotations and ±2 voxels at the candidate peaks
        (:mod:`tomopick.match.refine`); ``auto``: coarse-to-fine when ``step_deg`` is finer than ``coarse_step_deg``.
    coarse_step_deg
        Angular step of the FFT search of coarse-to-fine.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step_deg: float = Field(12.0, gt=0.0, le=180.0)
    symmetry: str = "C1"
    tilt_range_deg: Optional[tuple[float, float]] = (-60.0, 60.0)
    defocus_A: Optional[float] = Field(None, gt=0.0)
    voltage_kV: float = Field(300.0, gt=0.0)
    cs_mm: float = Field(2.7, ge=0.0)
    amplitude_contrast: float = Field(0.07, ge=0.0, le=1.0)
    ctf_corrected: bool = True
    whiten: bool = True
    bin: int = Field(1, ge=1, le=16)
    voxel_size_A: Optional[float] = Field(None, gt=0.0)
    invert: Optional[bool] = None
    false_alarms: float = Field(1.0, gt=0.0)
    threshold: Optional[float] = Field(None, gt=-1.0, lt=1.0)
    distance_factor: float = Field(1.0, gt=0.0, le=4.0)
    tile_voxels: int = Field(1 << 24, ge=1 << 12)
    device: str = "cpu"
    mask_radius_A: Optional[float] = Field(None, gt=0.0)
    lowpass_A: Optional[float] = Field(None, gt=0.0)
    threads: Optional[int] = Field(None, ge=1)
    outlier_z: Optional[float] = Field(30.0, gt=0.0)
    gap: bool = True
    search: Literal["auto", "exhaustive", "coarse-to-fine"] = "auto"
    coarse_step_deg: float = Field(30.0, gt=0.0, le=180.0)

    def search_mode(self) -> str:
        """The search that runs: ``exhaustive`` or ``coarse-to-fine`` (``auto`` resolved)."""
        if self.search == "auto":
            return "coarse-to-fine" if self.step_deg < self.coarse_step_deg - 1e-9 else "exhaustive"
        return self.search

    def search_text(self) -> str:
        """What runs, in words: ``12° coarse-to-fine from 30°`` or ``30° exhaustive``."""
        if self.search_mode() == "coarse-to-fine":
            return f"{self.step_deg:g}° coarse-to-fine from {self.coarse_step_deg:g}°"
        return f"{self.step_deg:g}° exhaustive"

    @field_validator("symmetry")
    @classmethod
    def _symmetry(cls, value: str) -> str:
        name = str(value).strip().upper()
        if not re.fullmatch(r"C[1-9]\d*|D[1-9]\d*|[TOI]", name):
            raise ValueError(f"unknown symmetry {value!r}: use C1, Cn, Dn, T, O or I")
        return name

    @field_validator("tilt_range_deg")
    @classmethod
    def _tilt(cls, value: Any) -> Any:
        if value is None:
            return None
        lo, hi = (float(v) for v in value)
        if not (-90.0 <= lo < hi <= 90.0):
            raise ValueError(f"tilt range must satisfy -90 <= min < max <= 90, got {lo:g},{hi:g}")
        return (lo, hi)

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(value)):
            raise ValueError(f"unknown device {value!r}: use cpu, cuda, cuda:N")
        return str(value)

    @model_validator(mode="after")
    def _check(self) -> "MatchOptions":
        if self.search == "coarse-to-fine" and self.coarse_step_deg < self.step_deg:
            raise ValueError(f"--coarse-step {self.coarse_step_deg:g} is finer than --step {self.step_deg:g}")
        return self

    @classmethod
    def make(cls, **values: Any) -> "MatchOptions":
        """Options from keyword values (``None`` = default); a bad value raises a one-line
        :class:`~tomopick.errors.TomopickError` naming the CLI option."""
        values = {k: v for k, v in values.items() if v is not None}
        try:
            return cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err.get("loc") else ""
            name = CLI_NAMES.get(field, field)
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            raise TomopickError(f"{name}: {msg}" if name else msg) from None

    def check_device(self) -> None:
        """Refuse a CUDA device on a machine without one (one line)."""
        if self.device.startswith("cuda"):
            import torch

            if not torch.cuda.is_available():
                raise TomopickError(f"--device {self.device}: CUDA is not available on this machine")
