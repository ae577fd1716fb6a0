"""``tomopick pick --prompt P TOMO`` without a promptable network: template matching + bootstrapping on a CPU.

A prompt is a prompt file (``.npz`` from ``tomopick prompt extract``: a sub-tomogram in the tomogram's contrast) or
a map (``.mrc``…: density, protein bright, inverted before matching). Per tomogram and prompt name:
:func:`tomopick.prompt.bootstrap.bootstrap_picks` matches the prompt, averages the most confident hits
(wedge-aware) and re-matches with the average for a few rounds. Which method ran and its rounds are printed and
stored with the picks (extra columns ``method``, ``rounds``). Outputs are routed like ``tomopick pick``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import Picks
from tomopick.errors import TomopickError
from tomopick.io import read_tomogram
from tomopick.io.inputs import expand_inputs, run_name
from tomopick.match.options import MatchOptions
from tomopick.match.picking import matching_grid
from tomopick.prompt.bootstrap import DEFAULT_ROUNDS, DEFAULT_TOP, Classified, bootstrap_picks
from tomopick.workflows.pick import plan_outputs, write_merged_picks, write_run_picks

METHOD = "template-matching+bootstrap"
#: The class-agnostic detector whose picks gate the prompt's hits (``object_gate``; ``None``: no gate).
DEFAULT_OBJECT_GATE = "generalist-10A"
#: The supervised picker whose classes veto hits at objects of another class (``class_veto``; ``None``: no veto).
DEFAULT_CLASSIFIER = "czii-10A"
#: A hit is "at" one of the classifier's picks within this fraction of the prompt's radius (as the object gate).
VETO_TOLERANCE = 0.75
#: Default angular step of prompt matching (degrees): prompts carry no symmetry; the search is coarse-to-fine
#: (an FFT search every :data:`~tomopick.match.refine.COARSE_STEP_DEG`, refined to this step at the candidates), which
#: keeps a CZII-size tomogram within minutes per round on 2 cores.
PROMPT_STEP_DEG = 15.0
#: The matching grid's voxel size is about this fraction of the particle radius (between 1× and 4× the
#: tomogram's voxel size): 4 voxels per radius are enough to find a particle and keep the search small.
GRID_PER_RADIUS = 0.25
#: The matching grid of a prompt is at least this coarse (Å): each halving of the voxel size costs 8× the time, and
#: 20 Å resolves particles of 60 Å radius (3 voxels).
MIN_GRID_A = 20.0
#: Default false alarms per tomogram of the threshold of prompt matching (recall weighs more than precision in
#: the CZII metric, and the conservative trial count keeps the real rate lower).
PROMPT_FALSE_ALARMS = 5.0


@dataclass
class PromptMatchReport:
    picks: Picks
    outputs: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class PromptInput:
    """A prompt as the bootstrap needs it: volume ``(s, s, s)`` centred at its geometric centre, its voxel size,
    whether it is a bright map (inverted before matching), its name and radius (Å, ``None`` when unknown)."""

    volume: np.ndarray
    voxel_A: float
    invert: bool
    name: str
    radius_A: float | None
    source: str
    xyz_A: np.ndarray | None = None


def read_prompt_input(path: str | os.PathLike[str]) -> PromptInput:
    """A prompt file (``.npz``) or a map (any tomogram format) as a :class:`PromptInput`."""
    p = Path(path)
    if p.suffix.lower() == ".npz":
        from tomopick.prompt.promptfile import read_prompt

        prompt = read_prompt(p)
        vol = prompt.subtomogram
        if vol.shape[0] % 2 == 0:  # an even box is centred on voxel n // 2: drop the first plane per axis
            vol = vol[1:, 1:, 1:]
        radius = prompt.meta.get("radius_A")
        return PromptInput(np.asarray(vol, np.float32), float(prompt.voxel_size_A), False,
                           prompt.particle or p.stem, None if radius is None else float(radius), str(p),
                           np.asarray(prompt.xyz_A, dtype=np.float64))
    from tomopick.workflows.match import read_template

    vol, vs = read_template(p)
    return PromptInput(vol, vs, True, p.stem.split(".")[0], None, str(p))


def default_radius_A(prompt: PromptInput) -> float:
    """The radius when neither ``--radius`` nor the prompt gives one: the extent of the map's density (maps), else a
    quarter of the box (prompt files, as the network path)."""
    if prompt.invert:
        from tomopick.match.template import extent_radius_vox

        return float(extent_radius_vox(prompt.volume - np.median(prompt.volume), 0.2) * prompt.voxel_A)
    return 0.25 * prompt.volume.shape[0] * prompt.voxel_A


def prompt_location(prompt: PromptInput, tomogram: Any, min_corr: float = 0.8) -> np.ndarray | None:
    """Where ``prompt`` was cut in ``tomogram`` (``(z, y, x)`` voxels of the tomogram), or ``None`` when it was not cut
    from it: a map, a position outside, or a box there that does not correlate (Pearson ≥ ``min_corr``) with the
    prompt's sub-tomogram."""
    if prompt.xyz_A is None:
        return None
    vs_zyx = np.asarray(tomogram.voxel_size_A, dtype=np.float64)
    if abs(float(np.mean(vs_zyx)) - prompt.voxel_A) > 0.01 * prompt.voxel_A:
        return None
    zyx = np.asarray(prompt.xyz_A, dtype=np.float64)[::-1] / vs_zyx
    if np.any(zyx < 0) or np.any(zyx > np.array(tomogram.shape) - 1):
        return None
    box = prompt.volume.shape[0]
    if box % 2 == 0:
        return None
    c = np.rint(zyx).astype(int)
    lo = np.maximum(c - box // 2, 0)
    hi = np.minimum(c - box // 2 + box, np.array(tomogram.shape))
    here = np.asarray(tomogram.data[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]], dtype=np.float64).ravel()
    start = lo - (c - box // 2)
    theirs = prompt.volume[tuple(slice(int(a), int(a) + int(n)) for a, n in zip(start, hi - lo))].ravel()
    if len(here) < 27 or float(here.std()) == 0 or float(theirs.std()) == 0:
        return None
    corr = float(np.corrcoef(here, theirs)[0, 1])
    return zyx if corr >= min_corr else None


def _object_centres(tomogram: Any, model: Any, say: Callable[[str], None], run: str,
                    role: str = "the object gate") -> Picks:
    """The objects ``model`` (a class-agnostic detector, or a supervised picker) picks in ``tomogram`` with its
    defaults."""
    from tomopick.inference.options import PickOptions
    from tomopick.inference.picking import inference_settings, pick_tomogram

    options = PickOptions().with_defaults(model.config)
    t0 = time.perf_counter()
    picks, _ = pick_tomogram(tomogram, model, options, run=run, settings=inference_settings(model, options))
    say(f"{run}: {len(picks)} objects from {model.card.get('name') or model.path} for {role} "
        f"({time.perf_counter() - t0:.0f} s)")
    return picks


def grid_bin(tomogram_voxel_A: float, radius_A: float) -> int:
    """Binning of the matching grid: voxel ≈ :data:`GRID_PER_RADIUS` × radius, at least :data:`MIN_GRID_A`, 1–4×
    the tomogram's voxel (at 10 Å: bin 2 for particles up to 100 Å radius, 3 for thyroglobulin, 4 for
    ribosomes)."""
    want = max(GRID_PER_RADIUS * float(radius_A), MIN_GRID_A) / float(tomogram_voxel_A)
    return int(min(4, max(1, round(want))))


def pick_with_prompt_matching(tomogram_paths: Sequence[str | os.PathLike[str]] | str,
                              prompt_paths: Sequence[str | os.PathLike[str]] | str, *,
                              out: str | os.PathLike[str] | None = None, radius_A: float | None = None,
                              threshold: float | None = None, step_deg: float | None = None,
                              bin_factor: int | None = None, rounds: int = DEFAULT_ROUNDS, top: int = DEFAULT_TOP,
                              false_alarms: float = PROMPT_FALSE_ALARMS, tilt_range_deg: Any = (-60.0, 60.0),
                              distance_factor: float | None = None, voxel_size_A: float | None = None,
                              device: str = "cpu", threads: int | None = None, picks_format: str | None = None,
                              overwrite: bool = False, user_id: str = "tomopick", session_id: str = "0",
                              object_gate: str | os.PathLike[str] | None = DEFAULT_OBJECT_GATE,
                              classifier: str | os.PathLike[str] | None = DEFAULT_CLASSIFIER,
                              progress: Callable[[str, int, int], None] | None = None,
                              log: Callable[[str], None] | None = None) -> PromptMatchReport:
    """Pick every copy of each prompted particle by template matching + bootstrapping (no network).

    Parameters
    ----------
    prompt_paths
        Prompt files (``.npz``) or maps; the first prompt of each name is the template (more prompts of a name are
        ignored but for their radius).
    radius_A
        Particle radius for every prompt (else the prompt's own, else :func:`default_radius_A`).
    threshold
        A fixed correlation threshold instead of the false-alarm rule (``false_alarms`` per tomogram).
    step_deg, bin_factor
        Angular step (default :data:`PROMPT_STEP_DEG`) and matching-grid binning (default :func:`grid_bin`).
    rounds, top
        Bootstrap rounds after the first match, and hits averaged per round.
    object_gate
        A picking network (a bundled name or a path; default the class-agnostic ``generalist-10A``) run once per
        tomogram: hits farther than its pick spacing (its stored distance factor, 0.75, × the prompt's radius)
        from all of its picks are dropped in every round (:func:`tomopick.prompt.bootstrap.object_gate`).
        ``None``: no gate.
    classifier
        A supervised picking network (default the bundled ``czii-10A``) run once per tomogram: when it gives the
        prompt's location and most of round 0's best hits the same class, hits at its picks of other classes are
        dropped (:func:`tomopick.prompt.bootstrap.class_veto`). ``None``: no veto.
    """
    say = log or (lambda _m: None)
    items = expand_inputs([tomogram_paths] if isinstance(tomogram_paths, (str, os.PathLike))
                          else list(tomogram_paths))
    prompt_list = [prompt_paths] if isinstance(prompt_paths, (str, os.PathLike)) else list(prompt_paths)
    if not prompt_list:
        raise TomopickError("no prompts given (pass --prompt PROMPT.npz or --prompt MAP.mrc)")
    if rounds < 0 or rounds > 10:
        raise TomopickError(f"--rounds must be 0-10, got {rounds}")
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        dupes = sorted({r for r in runs if runs.count(r) > 1})
        raise TomopickError(f"several inputs share the run name {', '.join(dupes)}; rename them")
    gate_model = None
    if object_gate is not None:  # loaded (and checked) before any heavy work
        from tomopick.workflows.pick import resolve_model

        gate_model = resolve_model(object_gate)
        # "the same object": the detector's own pick spacing (distance factor × radius; 0.75 for generalist-10A)
        gate_factor = float((gate_model.config.get("pick") or {}).get("distance_factor") or 0.75)
    class_model = None
    if classifier is not None:
        from tomopick.workflows.pick import resolve_model

        class_model = resolve_model(classifier)
    prompts: dict[str, PromptInput] = {}
    for path in prompt_list:
        prompt = read_prompt_input(path)
        prompts.setdefault(prompt.name, prompt)
    base = MatchOptions.make(step_deg=step_deg if step_deg is not None else PROMPT_STEP_DEG,
                             tilt_range_deg=tilt_range_deg, false_alarms=false_alarms, threshold=threshold,
                             distance_factor=distance_factor, device=device, voxel_size_A=voxel_size_A,
                             threads=threads)
    if tilt_range_deg is None:  # no wedge (make() reads None as "the default")
        base = base.model_copy(update={"tilt_range_deg": None})
    base.check_device()
    out_text, kind, targets = plan_outputs(out, len(items), runs, picks_format, overwrite)
    read_options = {"voxel_size_A": voxel_size_A} if voxel_size_A is not None else {}
    tomograms = [read_tomogram(item, **read_options) for item in items]
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    report = PromptMatchReport(picks=Picks.empty())
    found = []
    all_options: list[dict[str, Any]] = []
    for item, run, tomo in zip(items, runs, tomograms):
        run_picks = []
        tomo_vs = float(np.mean(tomo.voxel_size_A))
        grids: dict[int, Any] = {}
        objects = None if gate_model is None else _object_centres(tomo, gate_model, say, run)
        objects_xyz = None if objects is None else (objects.xyz_A if len(objects) else np.zeros((0, 3)))
        known = None if class_model is None else _object_centres(tomo, class_model, say, run, "the class veto")
        for name, prompt in prompts.items():
            start = time.perf_counter()
            radius = float(radius_A if radius_A is not None else (prompt.radius_A or default_radius_A(prompt)))
            b = bin_factor or grid_bin(tomo_vs, radius)
            opts = base.model_copy(update={"bin": b})
            if b not in grids:
                grids[b] = matching_grid(tomo, opts)
            say(f"{run} {name}: {METHOD}, {rounds} round{'s' if rounds != 1 else ''} after the first match, "
                f"radius {radius:.0f} Å, grid {grids[b].voxel:.3g} Å, {opts.search_text()} search")
            where = prompt_location(prompt, tomo)
            reference = None if where is None else where * np.asarray(tomo.voxel_size_A) / grids[b].voxel_A
            gate = {} if objects_xyz is None else {
                "objects_zyx": objects_xyz[:, ::-1] / np.asarray(grids[b].voxel_A),
                "object_tolerance_vox": gate_factor * radius / grids[b].voxel}
            if known is not None:
                gate["classified"] = Classified(
                    zyx=(known.xyz_A[:, ::-1] / np.asarray(grids[b].voxel_A)) if len(known) else np.zeros((0, 3)),
                    labels=np.asarray(known.frame["particle"], dtype=object) if len(known) else np.zeros(0, object),
                    tolerance_vox=VETO_TOLERANCE * radius / grids[b].voxel)
            result = bootstrap_picks(grids[b], prompt.volume, prompt.voxel_A, name, radius, opts, **gate,
                                     invert=prompt.invert, rounds=rounds, top=top, run=run, reference_zyx=reference,
                                     progress=None if progress is None else (lambda d, t, r=run: progress(r, d, t)),
                                     log=say)
            picks = result.picks
            picks = picks.select(picks.inside(tomo.shape, tomo.voxel_size_A)) if len(picks) else picks
            done_rounds = result.kept_round
            picks = picks.with_columns(user=user_id, session=session_id) if len(picks) else picks
            method = METHOD if objects_xyz is None else f"{METHOD}+object-gate"
            if any("vetoed" in h for h in result.rounds):
                method += "+class-veto"
            picks = picks.with_extra(method=method, rounds=done_rounds)
            seconds = time.perf_counter() - start
            report.runs.append({"run": run, "input": item, "particle": name, "method": method,
                                "rounds": result.rounds, "kept_round": done_rounds, "count": len(picks),
                                "seconds": seconds, "radius_A": radius, "bin": b, "prompt": prompt.source})
            say(f"{run} {name}: {len(picks)} picks in {seconds:.0f} s")
            run_picks.append(picks)
        merged = Picks.concat(run_picks)
        found.append(merged)
        writer_options = {"voxel_size_A": tomo_vs, "tomogram_shape_zyx": tuple(tomo.shape)}
        all_options.append(writer_options)
        written = write_run_picks(merged, run, writer_options, kind=kind, targets=targets, out_text=out_text,
                                  overwrite=overwrite, picks_format=picks_format, user_id=user_id,
                                  session_id=session_id)
        if written is not None:
            report.outputs.append(written)
    report.picks = Picks.concat(found)
    if kind == "file":
        report.outputs.append(write_merged_picks(report.picks, all_options, out_text=out_text, overwrite=overwrite,
                                                 picks_format=picks_format))
    return report
