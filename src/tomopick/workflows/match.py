"""``match()``: tomograms + a template map → picks in Å with orientations (the verb behind ``tomopick match``).

For each input: read it (:func:`tomopick.io.read_tomogram`), template-match it with
:func:`tomopick.match.picking.match_tomogram` (matching grid, wedge/CTF/whitening-weighted template, FFT
correlation over a uniform rotation set, false-alarm threshold, the pick path's peak extraction), and write the
picks (:func:`tomopick.io.write_picks`) like ``tomopick pick``: one file with a ``run`` column, one file per input in
a folder, or a copick project.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import Picks
from tomopick.data.particles import CZII
from tomopick.errors import TomopickError
from tomopick.io import read_tomogram
from tomopick.io.inputs import expand_inputs, run_name
from tomopick.match.options import MatchOptions
from tomopick.match.picking import match_tomogram
from tomopick.workflows.pick import plan_outputs, write_merged_picks, write_run_picks


@dataclass
class MatchReport:
    """What :func:`match` did: all picks, where they went, and one summary per input."""

    picks: Picks
    outputs: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


def particle_radius_A(particle: str, radius_A: float | None) -> float:
    """The given radius, else the CZII preset's radius of ``particle``; a one-line error otherwise."""
    if radius_A is not None:
        if not radius_A > 0:
            raise TomopickError(f"--radius must be > 0 Å, got {radius_A:g}")
        return float(radius_A)
    names = {p.name: p.radius_A for p in CZII.particles}
    if particle in names:
        return float(names[particle])
    raise TomopickError(f"--particle {particle!r} is not a CZII class ({', '.join(names)}); give its --radius in Å")


def read_template(path: str | os.PathLike[str], voxel_size_A: float | None = None) -> tuple[np.ndarray, float]:
    """A template map ``(z, y, x)`` float32 and its voxel size (Å); one-line errors for missing, non-3D or
    non-finite maps."""
    tomo = read_tomogram(path, **({"voxel_size_A": voxel_size_A} if voxel_size_A else {}))
    data = np.asarray(tomo.data, dtype=np.float32)
    if data.ndim != 3 or min(data.shape) < 5:
        raise TomopickError(f"the template must be a 3D map of at least 5 voxels per axis, got shape {data.shape}",
                            path)
    if not np.all(np.isfinite(data)):
        raise TomopickError("the template has NaN or infinite voxels", path)
    if float(data.std()) == 0:
        raise TomopickError("the template is constant", path)
    return data, float(np.mean(tomo.voxel_size_A))


def match(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], template: str | os.PathLike[str], *,
          particle: str, options: MatchOptions | None = None, out: str | os.PathLike[str] | None = None,
          radius_A: float | None = None, template_voxel_size_A: float | None = None,
          mask: str | os.PathLike[str] | np.ndarray | None = None, mask_from_model: bool = False,
          mask_model: str | os.PathLike[str] | None = None, overwrite: bool = False,
          picks_format: str | None = None, user_id: str = "tomopick",
          session_id: str = "0", progress: Callable[[str, int, int], None] | None = None,
          log: Callable[[str], None] | None = None) -> MatchReport:
    """Template-match one or more tomograms.

    Parameters
    ----------
    inputs
        Tomogram path(s)/URI(s) (MRC, OME-Zarr, ``copick://…``).
    template
        Template map (MRC …), density (protein bright) unless ``options.invert`` says otherwise.
    particle
        Class name written on the picks; its CZII radius sets the pick spacing unless ``radius_A`` is given.
    options
        :class:`~tomopick.match.options.MatchOptions`.
    out
        Picks file, folder (ends with ``/``) or ``copick://`` project; ``None`` returns the picks only.
    mask
        A mask volume (path, same grid as the single input; non-zero = search) or a boolean array.
    mask_from_model
        Search only where the bundled supervised network sees any particle (dilated by the template radius).
    mask_model
        The network of ``mask_from_model`` (implies it): a checkpoint path or a bundled name, e.g.
        ``generalist-10A`` (class-agnostic: any macromolecule-sized object); default the bundled ``czii-10A``.
    log
        Receives one line per input: picks kept, threshold and its rule, rotations, time.
    """
    options = options or MatchOptions()
    options.check_device()
    items = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        dupes = sorted({r for r in runs if runs.count(r) > 1})
        raise TomopickError(f"several inputs share the run name {', '.join(dupes)}; rename them")
    mask_from_model = bool(mask_from_model or mask_model is not None)
    if mask is not None and mask_from_model:
        raise TomopickError("give either --mask or --mask-from-model/--mask-model, not both")
    mask_loaded = None
    if mask_model is not None:  # checked (and loaded once) before any heavy work
        from tomopick.workflows.pick import resolve_model

        mask_loaded = resolve_model(mask_model)
    if mask is not None and len(items) != 1:
        raise TomopickError("--mask can only be given for a single input tomogram")
    radius = particle_radius_A(particle, radius_A)
    out_text, kind, targets = plan_outputs(out, len(items), runs, picks_format, overwrite)
    tmpl, tmpl_vs = read_template(template, template_voxel_size_A)
    read_options = {"voxel_size_A": options.voxel_size_A} if options.voxel_size_A is not None else {}
    tomograms = [read_tomogram(item, **read_options) for item in items]
    mask_array = None
    if mask is not None:
        mask_array = _read_mask(mask, tomograms[0].shape)
    if options.threads is not None:
        import torch

        torch.set_num_threads(int(options.threads))
    report = MatchReport(picks=Picks.empty())
    all_picks = []
    for item, run, tomogram in zip(items, runs, tomograms):
        this_mask = mask_array
        if mask_from_model:
            this_mask = model_mask(tomogram, radius, model=mask_loaded)
        picks, summary = match_tomogram(
            tomogram, tmpl, tmpl_vs, particle, radius, options, run=run, mask=this_mask,
            progress=None if progress is None else (lambda d, t, r=run: progress(r, d, t)))
        picks = picks.with_columns(user=user_id, session=session_id) if len(picks) else picks
        summary.update(input=item, run=run, method="template matching")
        if log is not None:
            log(describe(summary))
        vs = float(np.mean(tomogram.voxel_size_A))
        writer_options = {"voxel_size_A": vs, "tomogram_shape_zyx": tomogram.shape}
        summary["writer_options"] = writer_options
        written = write_run_picks(picks, run, writer_options, kind=kind, targets=targets, out_text=out_text,
                                  overwrite=overwrite, picks_format=picks_format, user_id=user_id,
                                  session_id=session_id)
        if written is not None:
            report.outputs.append(written)
        report.runs.append(summary)
        all_picks.append(picks)
    report.picks = Picks.concat(all_picks)
    if kind == "file":
        report.outputs.append(write_merged_picks(report.picks, [r["writer_options"] for r in report.runs],
                                                 out_text=out_text, overwrite=overwrite, picks_format=picks_format))
    return report


def describe(summary: dict[str, Any]) -> str:
    """One line: run, picks kept, the threshold and its rule, rotations and time (and the searched fraction)."""
    run = summary.get("run") or summary.get("input") or ""
    n = summary.get("count", 0)
    searched = summary.get("searched_fraction", 1.0)
    extra = "" if searched >= 0.999 else f", searched {100 * searched:.0f}% of the voxels"
    if summary.get("search") == "coarse-to-fine":
        how = (f"{summary['n_rotations']} rotations at {summary['step_deg']:g}° {summary['symmetry']} coarse-to-fine: "
               f"FFT search over {summary['n_coarse_rotations']} at {summary['coarse_step_deg']:g}°, "
               f"{summary['n_refined']} of {summary['n_candidates']} candidates refined")
    else:
        how = f"{summary['n_rotations']} rotations at {summary['step_deg']:g}° {summary['symmetry']} exhaustive"
    return (f"  {run} {summary.get('particle')}: {n} pick{'' if n == 1 else 's'} with score >= "
            f"{summary['threshold']:.3g} ({summary['threshold_rule']}; background σ {summary['cc_std']:.3g}, "
            f"{how}, {summary['voxel_size_A']:.4g} Å{extra}) in {summary['seconds']:.0f} s")


def _read_mask(mask: Any, shape: tuple[int, ...]) -> np.ndarray:
    if isinstance(mask, np.ndarray):
        arr = mask
        source = None
    else:
        arr = np.asarray(read_tomogram(mask).data)
        source = mask
    if tuple(arr.shape) != tuple(shape):
        raise TomopickError(f"the mask's shape {tuple(arr.shape)} differs from the tomogram's {tuple(shape)}",
                            source)
    out = np.asarray(arr) != 0
    if not out.any():
        raise TomopickError("the mask is empty: nothing to search", source)
    return out


def model_mask(tomogram: Any, radius_A: float, threshold: float = 0.05, model: Any = None) -> np.ndarray:
    """Where a picking network (``model``: loaded, a path or a bundled name; default the bundled ``czii-10A``) sees
    any particle: the voxels whose summed foreground score reaches ``threshold``, dilated by ``radius_A``
    (ProPicker-TM's pre-selection). The dilation runs on a 4× coarser grid (bounded time on CZII-size
    tomograms)."""
    from scipy import ndimage

    from tomopick.inference.picking import pick_tomogram
    from tomopick.match.picking import mask_on_grid
    from tomopick.workflows.pick import resolve_model

    loaded = resolve_model(model)
    maps: list[Any] = []
    pick_tomogram(tomogram, loaded, run="mask", on_scores=lambda m: maps.append(
        np.sum([np.asarray(t.data[...], dtype=np.float32) for t in m], axis=0)))
    if not maps:
        return np.ones(tomogram.shape, dtype=bool)
    prob = maps[0]
    coarse_shape = tuple(max(1, n // 4) for n in prob.shape)
    seen = ndimage.maximum_filter(prob, size=4)[tuple(slice(0, 4 * n, 4) for n in coarse_shape)] >= threshold
    step_A = 4.0 * float(np.mean(tomogram.voxel_size_A)) * tomogram.shape[0] / max(prob.shape[0], 1)
    r = max(1, int(np.ceil(radius_A / step_A)))
    g = np.arange(-r, r + 1)
    ball = (g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2) <= r * r
    return mask_on_grid(ndimage.binary_dilation(seen, structure=ball), tomogram.shape)
