"""Promptable picking verbs: cut a prompt, pick with prompts, fine-tune the segmenter, train on simulated data.

These compose :mod:`tomopick.prompt` (pure stages), :mod:`tomopick.inference` (normalisation, rescaling),
:mod:`tomopick.peaks`, :mod:`tomopick.labels` and :mod:`tomopick.io`; the CLI (``tomopick prompt extract``,
``tomopick pick --prompt``, ``tomopick finetune``, ``tomopick prompt train``) calls them.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import ParticleSet, ParticleSpec, Picks, Tomogram
from tomopick.data.coords import angstrom_to_voxel, voxel_to_angstrom
from tomopick.errors import TomopickError
from tomopick.jsonable import to_jsonable

PathLike = str | os.PathLike[str]

#: Default radius (fraction of the prompt box edge) when neither the prompt nor the caller gives one.
DEFAULT_RADIUS_FRACTION_OF_BOX = 0.25

#: Defaults of prompted picking (:func:`pick_with_prompts`); the CLI passes ``None`` for an option not given.
PROMPT_PICK_METHOD = "cc"
PROMPT_PICK_THRESHOLD = 0.5
PROMPT_PICK_DISTANCE_FACTOR = 0.75
PROMPT_PICK_ROI = (64, 64, 64)
PROMPT_PICK_BATCH_SIZE = 2


def prompt_window_stride(roi: int | Sequence[int], overlap: float) -> tuple[int, ...]:
    """The sliding-window step for a window context fraction ``overlap`` (as ``tomopick pick --overlap``)."""
    window = tuple(int(r) for r in np.broadcast_to(np.asarray(roi), (3,)))
    return tuple(max(1, int(round(r * (1.0 - overlap)))) for r in window)


# ---------------------------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------------------------
def load_promptable(model: Any = None):
    """A :class:`~tomopick.models.LoadedModel` holding a promptable picker.

    Parameters
    ----------
    model
        Checkpoint path, a ``LoadedModel``, or ``None`` for the bundled model (see :mod:`tomopick.prompt.bundled`).
    """
    from tomopick.models import LoadedModel, load_checkpoint
    from tomopick.prompt.bundled import bundled_checkpoint
    from tomopick.prompt.networks import NETWORK_NAME

    if isinstance(model, LoadedModel):
        loaded = model
    elif model is None:
        path, sha = bundled_checkpoint()
        loaded = load_checkpoint(path, sha256=sha)
    else:
        loaded = load_checkpoint(model)
    if loaded.config.get("network", {}).get("name") != NETWORK_NAME:
        raise TomopickError(f"not a promptable model (network {loaded.config.get('network', {}).get('name')!r}; "
                            f"expected {NETWORK_NAME!r})", loaded.path or None)
    return loaded


def promptable_config(hparams: dict[str, Any], *, voxel_size_A: float, prompt_box: int, patch_size: Sequence[int],
                      **extra: Any) -> dict[str, Any]:
    """The checkpoint ``config`` of a promptable picker (see :mod:`tomopick.models.checkpoint`)."""
    from tomopick.inference.normalize import robust_config
    from tomopick.prompt.networks import NETWORK_NAME

    cfg = {
        "network": {"name": NETWORK_NAME, "hparams": dict(hparams)},
        "in_channels": 1, "out_channels": 1, "output": "sigmoid", "classes": ["prompted"],
        "particles": ParticleSet(name="prompted", particles=(ParticleSpec(name="prompted", radius_A=100.0),))
        .model_dump(mode="json"),
        "voxel_size_A": float(voxel_size_A), "patch_size": [int(p) for p in patch_size],
        "normalisation": robust_config(),
        "prompt": {"box": int(prompt_box), "voxel_size_A": float(voxel_size_A)},
    }
    cfg.update(extra)
    return cfg


# ---------------------------------------------------------------------------------------------------------------
# prompt extraction
# ---------------------------------------------------------------------------------------------------------------
def cut_prompt(tomogram: Tomogram, xyz_A: Sequence[float], *, size: int = 37, voxel_size_A: float | None = 10.0,
               particle: str = "", radius_A: float | None = None, stats=None):
    """A :class:`~tomopick.prompt.promptfile.Prompt` around ``xyz_A`` (Å) of a tomogram (only that region is
    read), resampled to ``voxel_size_A`` (``None``: the tomogram's own) and normalised with the whole tomogram's
    robust statistics."""
    from tomopick import __version__
    from tomopick.inference.normalize import DEFAULT_CLIP, normalize_robust, robust_stats
    from tomopick.prompt.extract import box_bounds, sample_box
    from tomopick.prompt.promptfile import Prompt

    if size < 8:
        raise TomopickError(f"prompt box must be at least 8 voxels, got {size}")
    xyz = np.asarray(xyz_A, dtype=np.float64).reshape(3)
    centre = angstrom_to_voxel(xyz, tomogram.voxel_size_A)[0]
    shape = np.asarray(tomogram.shape)
    if np.any(centre < -0.5) or np.any(centre > shape - 0.5):
        raise TomopickError(f"position {xyz.tolist()} Å lies outside the tomogram "
                            f"({(shape[::-1] * np.asarray(tomogram.voxel_size_A)[::-1]).tolist()} Å)",
                            tomogram.source or None)
    target_vs = float(voxel_size_A) if voxel_size_A else tomogram.isotropic_voxel_size_A
    step = target_vs / np.asarray(tomogram.voxel_size_A)
    stats = stats or robust_stats(tomogram.data)
    sl, origin = box_bounds(centre, size, step, tomogram.shape)
    region = normalize_robust(tomogram.region(sl), stats=stats, clip=DEFAULT_CLIP)
    box = sample_box(region, centre - origin, size, step)
    meta = {"normalisation": {"method": "robust", "center": stats.center, "scale": stats.scale, "clip": DEFAULT_CLIP},
            "source_voxel_size_A": list(tomogram.voxel_size_A), "tomopick_version": __version__}
    if radius_A is not None:
        meta["radius_A"] = float(radius_A)
    return Prompt(box, target_vs, xyz, source=tomogram.source, particle=particle, meta=meta)


def extract_prompt(tomogram_path: PathLike, at_xyz: Sequence[float], out: PathLike, *, size: int = 37,
                   voxel_size_A: float | None = 10.0, particle: str = "", radius_A: float | None = None,
                   at_voxels: bool = False, overwrite: bool = False,
                   tomogram_voxel_size_A: float | None = None) -> Path:
    """Cut a prompt from a tomogram file and write it as a prompt file (``.npz``).

    Parameters
    ----------
    at_xyz
        Particle position ``(x, y, z)``: Å (origin at the centre of voxel 0) or, with ``at_voxels``, voxel indices.
    size
        Box edge in voxels of ``voxel_size_A``.
    voxel_size_A
        Voxel size of the prompt (the model's, 10 Å by default); ``None`` keeps the tomogram's.
    particle
        Name of the particle (becomes the ``particle`` column of picks); default: the output file's stem.
    radius_A
        Particle radius in Å, stored in the prompt and used by picking for peak spacing / size filtering.
    tomogram_voxel_size_A
        Override the tomogram header's voxel size.
    """
    from tomopick.io import check_output, read_tomogram
    from tomopick.prompt.promptfile import write_prompt

    out = Path(out)
    check_output(out, overwrite)
    options = {} if tomogram_voxel_size_A is None else {"voxel_size_A": tomogram_voxel_size_A}
    tomo = read_tomogram(tomogram_path, **options)
    at = np.asarray(at_xyz, dtype=np.float64).reshape(3)
    if at_voxels:
        at = voxel_to_angstrom(at[::-1], tomo.voxel_size_A)[0]
    prompt = cut_prompt(tomo, at, size=size, voxel_size_A=voxel_size_A, particle=particle or out.stem,
                        radius_A=radius_A)
    return write_prompt(prompt, out, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------------------------
# picking
# ---------------------------------------------------------------------------------------------------------------
def _prompt_boxes(prompts, paths: Sequence[PathLike], model_vs: float, box: int) -> np.ndarray:
    """Prompt boxes resampled to the model's voxel size and box edge (centre kept)."""
    from tomopick.prompt.extract import sample_box

    boxes = []
    for prompt, path in zip(prompts, paths):
        ratio = model_vs / prompt.voxel_size_A
        if abs(ratio - 1.0) > 0.5:
            raise TomopickError(f"prompt voxel size {prompt.voxel_size_A:g} Å is too far from the model's "
                                f"{model_vs:g} Å; extract it again with --voxel-size {model_vs:g}", path)
        sub = prompt.subtomogram
        if abs(ratio - 1.0) > 0.01 or sub.shape[0] != box:
            c = sub.shape[0] // 2
            sub = sample_box(sub, (c, c, c), box, ratio)
        boxes.append(sub)
    return np.stack(boxes).astype(np.float32)


def _group_prompts(prompts, paths: Sequence[PathLike]) -> tuple[list[str], list[int]]:
    names: list[str] = []
    groups = []
    for prompt, path in zip(prompts, paths):
        name = prompt.particle or Path(path).stem
        if name not in names:
            names.append(name)
        groups.append(names.index(name))
    return names, groups


def _model_grid(tomo: Tomogram, model_vs: float, norm_kwargs: dict[str, Any],
                allow_nonfinite: bool = False) -> np.ndarray:
    """The tomogram resampled to the model's voxel size and robust-normalised, float32 ``(z, y, x)``."""
    from tomopick.inference.normalize import normalize_robust, robust_stats
    from tomopick.inference.rescale import rescale_factors, rescale_volume

    bad = tomo.check_finite(allow_nonfinite=allow_nonfinite)
    factors = rescale_factors(tomo.voxel_size_A, model_vs, source=tomo.source or None)
    data: Any = tomo.data
    if bad:  # NaN/Inf → the median before resampling spreads them
        data = tomo.load(np.float32)
        data = np.where(np.isfinite(data), data, robust_stats(data).center).astype(np.float32)
    volume = np.asarray(data, dtype=np.float32) if factors is None else rescale_volume(data, factors)
    return normalize_robust(volume, **norm_kwargs)


def _as_path_list(paths: Sequence[PathLike] | PathLike) -> list[PathLike]:
    """One path or a sequence of them, as a list."""
    return [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)


def _check_pick_outputs(out: PathLike | None, runs: Sequence[str], overwrite: bool) -> tuple[str | None, bool]:
    """``(out as text, whether it is a folder of one CSV per run)``, refusing existing outputs unless ``overwrite``."""
    from tomopick.io import check_output

    out_text = None if out is None else str(out)
    folder_out = out_text is not None and not out_text.startswith("copick://") and (
        out_text.endswith(("/", os.sep)) or Path(out_text).is_dir())
    if folder_out:
        for r in runs:
            check_output(Path(out_text) / f"{r}.csv", overwrite)
    elif out_text is not None and not out_text.startswith("copick://"):
        check_output(out_text, overwrite)
    return out_text, folder_out


def _prompt_radii_A(prompts, groups: Sequence[int], n_names: int, radius_A: float | None, box: int,
                    model_vs: float) -> list[float]:
    """Radius (Å) per prompt name: ``radius_A``, else the mean of the prompts' own, else a fraction of the box."""
    radii_A = []
    for g in range(n_names):
        given = [prompts[i].meta.get("radius_A") for i in range(len(prompts)) if groups[i] == g]
        given = [float(r) for r in given if r is not None]
        default = DEFAULT_RADIUS_FRACTION_OF_BOX * box * model_vs
        radii_A.append(float(radius_A) if radius_A is not None else (float(np.mean(given)) if given else default))
    if any(not r > 0 for r in radii_A):
        raise TomopickError(f"particle radius must be > 0 Å, got {radii_A}")
    return radii_A


def _class_thresholds(threshold: float | dict[str, float], names: Sequence[str]) -> list[float]:
    """One threshold per prompt name from a single value or ``{particle: value}`` (``"*"``: the others)."""
    if isinstance(threshold, dict):
        unknown = sorted(set(threshold) - set(names) - {"*"})
        if unknown:
            raise TomopickError(f"threshold given for {', '.join(unknown)}, but the prompts name {', '.join(names)}")
        return [float(threshold.get(n, threshold.get("*", PROMPT_PICK_THRESHOLD))) for n in names]
    return [float(threshold)] * len(names)


def _write_maps(maps: np.ndarray, names: Sequence[str], run: str, maps_out: PathLike, model_vs: float,
                overwrite: bool) -> None:
    """Write each class's probability map as ``<maps_out>/<run>__<particle>.mrc``."""
    from tomopick.io import write_tomogram

    folder = Path(maps_out)
    folder.mkdir(parents=True, exist_ok=True)
    for c, name in enumerate(names):
        write_tomogram(Tomogram.from_array(maps[c], model_vs), folder / f"{run}__{name}.mrc", overwrite=overwrite)


def _promptable_on(model: Any, device: str, threads: int | None):
    """The promptable model (see :func:`load_promptable`) and its network moved to ``device``."""
    import torch

    if threads is not None:
        torch.set_num_threads(int(threads))
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise TomopickError("--device cuda was asked for but no CUDA GPU is available")
    loaded = load_promptable(model)
    return loaded, loaded.model.to(device)


def pick_with_prompts(tomogram_paths: Sequence[PathLike] | PathLike, prompt_paths: Sequence[PathLike] | PathLike,
                      model: Any = None, out: PathLike | None = None, *, method: str | None = PROMPT_PICK_METHOD,
                      threshold: float | dict[str, float] | None = PROMPT_PICK_THRESHOLD,
                      distance_factor: float | None = PROMPT_PICK_DISTANCE_FACTOR,
                      roi: int | Sequence[int] | None = PROMPT_PICK_ROI, stride: int | Sequence[int] | None = None,
                      overlap: float | None = None, batch_size: int | None = PROMPT_PICK_BATCH_SIZE,
                      allow_nonfinite: bool = False,
                      radius_A: float | None = None, overwrite: bool = False, voxel_size_A: float | None = None,
                      maps_out: PathLike | None = None, device: str = "cpu", threads: int | None = None,
                      picks_format: str | None = None, user_id: str = "tomopick", session_id: str = "0",
                      progress: Callable[[str], None] | None = None, **read_options: Any) -> Picks:
    """Pick every copy of the prompted particles in tomograms.

    Prompts of the same ``particle`` name (or file stem when unnamed) are averaged (mean embedding); each
    distinct name is one output class. Per tomogram: resample to the model's voxel size, robust-normalise, run the
    FiLM U-Net over sliding windows (one encoder pass per window, one decoder pass per class), then extract picks
    from each probability map.

    Parameters
    ----------
    tomogram_paths, prompt_paths
        One path or a list each (tomograms: any format :func:`tomopick.io.read_tomogram` reads, ``copick://``
        URIs included; a copick URI without ``run=`` means every run).
    model
        Checkpoint path / ``LoadedModel``; ``None``: the bundled promptable model.
    out
        Picks file to write (format from the extension or ``picks_format``; ``run`` column = tomogram), a folder
        (ends with ``/`` or exists: one ``<run>.csv`` per tomogram) or a ``copick://`` project; ``None``: only
        return the picks.
    method
        ``"cc"`` (connected components of ``map ≥ threshold`` with a size filter from the radius: ProPicker-C)
        or ``"localmax"`` (local maxima ≥ ``threshold`` at least 0.75 radius apart); any method of
        :func:`tomopick.peaks.find_peaks` works.
    threshold
        Probability threshold: one value, or ``{particle: value}`` with ``"*"`` as the default for the others.
    distance_factor
        ``localmax``/``maxpool``: minimum pick spacing as a fraction of the radius.
    roi, stride, overlap
        Sliding window edge(s) and step(s) (voxels at the model's voxel size, ``(z, y, x)`` or one number);
        stride defaults to ``round(roi × (1 − overlap))`` when ``overlap`` is given, else ``roi // 2``.
    batch_size
        Windows per forward pass.

    ``None`` for ``method``, ``threshold``, ``distance_factor``, ``roi`` or ``batch_size`` means the default
    (``PROMPT_PICK_*``: cc, 0.5, 0.75, 64³, 2).
    allow_nonfinite
        Treat NaN/Inf voxels as the median instead of refusing the tomogram.
    radius_A
        Particle radius in Å for every prompt (overrides the prompts' own ``radius_A``; default when neither is
        given: a quarter of the prompt box edge).
    voxel_size_A
        Override the tomograms' header voxel size.
    maps_out
        Optional folder: the probability maps are written there as ``<run>__<particle>.mrc`` (model voxel size).
    device, threads
        Torch device (``cpu``/``cuda``) and CPU threads.
    user_id, session_id
        copick user/session recorded with the picks.

    Returns
    -------
    Picks
        ``particle`` = prompt name, ``score`` = mean (cc) or peak (localmax) probability, ``run`` = tomogram stem.
    """
    import torch

    from tomopick.inference.normalize import normalisation_kwargs
    from tomopick.io import read_tomogram, write_picks
    from tomopick.prompt.picking import embed_prompts, maps_to_picks, predict_maps
    from tomopick.prompt.promptfile import read_prompt

    from tomopick.io.inputs import expand_inputs, run_name

    method = method or PROMPT_PICK_METHOD
    threshold = PROMPT_PICK_THRESHOLD if threshold is None else threshold
    distance_factor = PROMPT_PICK_DISTANCE_FACTOR if distance_factor is None else distance_factor
    roi = PROMPT_PICK_ROI if roi is None else roi
    batch_size = batch_size or PROMPT_PICK_BATCH_SIZE  # 0 or None: the default, as the CLI always did
    if stride is None and overlap is not None:
        stride = prompt_window_stride(roi, overlap)
    tomogram_paths = _as_path_list(tomogram_paths)
    prompt_paths = _as_path_list(prompt_paths)
    if not prompt_paths:
        raise TomopickError("no prompts given (pass --prompt PROMPT.npz, from `tomopick prompt extract`)")
    tomogram_paths = expand_inputs(tomogram_paths)
    runs = [run_name(p) for p in tomogram_paths]
    out_text, folder_out = _check_pick_outputs(out, runs, overwrite)
    say = progress or (lambda _msg: None)
    loaded, net = _promptable_on(model, device, threads)
    model_vs = loaded.voxel_size_A
    box = int(loaded.config.get("prompt", {}).get("box", 37))
    prompts = [read_prompt(p) for p in prompt_paths]
    names, groups = _group_prompts(prompts, prompt_paths)
    radii_A = _prompt_radii_A(prompts, groups, len(names), radius_A, box, model_vs)
    thresholds = _class_thresholds(threshold, names)
    norm_kwargs = normalisation_kwargs(loaded.config.get("normalisation"))
    embeddings = embed_prompts(net, _prompt_boxes(prompts, prompt_paths, model_vs, box), groups)
    options = dict(read_options)
    if voxel_size_A is not None:
        options["voxel_size_A"] = voxel_size_A
    found = []
    for path, run in zip(tomogram_paths, runs):
        start = time.perf_counter()
        tomo = read_tomogram(path, **options)
        volume = _model_grid(tomo, model_vs, norm_kwargs, allow_nonfinite)
        with torch.inference_mode():
            maps = predict_maps(net, volume, embeddings, roi=roi, stride=stride, batch_size=batch_size)
        picks = maps_to_picks(maps, names, [r / model_vs for r in radii_A], model_vs, method=method,
                              threshold=thresholds, distance_factor=distance_factor, run=run)
        keep = picks.inside(tomo.shape, tomo.voxel_size_A)
        found.append(picks.select(keep).with_columns(user=user_id, session=session_id))
        if folder_out:
            write_picks(found[-1], Path(out_text) / f"{run}.csv", overwrite=overwrite)
        if maps_out is not None:
            _write_maps(maps, names, run, maps_out, model_vs, overwrite)
        say(f"{path}: {len(found[-1])} picks ({', '.join(f'{k}: {v}' for k, v in found[-1].counts().items())}) "
            f"in {time.perf_counter() - start:.1f} s")
    picks = Picks.concat(found)
    if out_text is not None and not folder_out:
        write_picks(picks, out_text, format=picks_format, overwrite=overwrite)
    return picks


# ---------------------------------------------------------------------------------------------------------------
# fine-tuning
# ---------------------------------------------------------------------------------------------------------------
def _finetune_radius_A(prompts, radius_A: float | None) -> float:
    """The particle radius (Å) to fine-tune with: ``radius_A``, else the mean of the prompts' own."""
    given = [float(p.meta["radius_A"]) for p in prompts if p.meta.get("radius_A") is not None]
    radius = float(radius_A) if radius_A is not None else (float(np.mean(given)) if given else None)
    if radius is None:
        raise TomopickError("particle radius unknown: pass --radius (Å) or extract the prompt with --radius")
    return radius


def _picks_of_run(all_picks: Picks, run: str, only_tomogram: bool, picks_path: PathLike) -> Picks:
    """The picks of ``run``; a single tomogram also takes picks with an empty run."""
    mine = all_picks.for_run(run)
    if len(mine) == 0 and only_tomogram:
        mine = all_picks.select(np.isin(all_picks.frame["run"].to_numpy(), ["", run]))
    if len(mine) == 0:
        raise TomopickError(f"no picks for run {run!r} in the picks file (runs: {', '.join(all_picks.runs)})",
                            picks_path)
    return mine


def _finetune_scenes(tomogram_paths: Sequence[PathLike], all_picks: Picks, picks_path: PathLike, pset: ParticleSet,
                     particle: str, model_vs: float, norm_kwargs: dict[str, Any], radius_fraction: float,
                     voxel_size_A: float | None) -> tuple[list[Any], int]:
    """Labelled volumes (model grid, sphere targets) of the tomograms, and how many picks they hold."""
    from tomopick.io import read_tomogram
    from tomopick.io.inputs import run_name
    from tomopick.labels import class_map
    from tomopick.prompt.training import LabelledVolume

    options = {} if voxel_size_A is None else {"voxel_size_A": voxel_size_A}
    scenes, n_used = [], 0
    for path in tomogram_paths:
        tomo = read_tomogram(path, **options)
        mine = _picks_of_run(all_picks, run_name(str(path)), len(tomogram_paths) == 1, picks_path)
        volume = _model_grid(tomo, model_vs, norm_kwargs)
        inside = mine.select(mine.inside(volume.shape, model_vs)).with_columns(particle=particle)
        labels = class_map(volume.shape, inside, pset, model_vs, "sphere", radius_fraction).astype(np.int64)
        scenes.append(LabelledVolume(volume, labels, inside.voxel_coords(model_vs), np.ones(len(inside), dtype=np.int64)))
        n_used += len(inside)
    return scenes, n_used


def finetune(tomogram_paths: Sequence[PathLike] | PathLike, prompt_paths: Sequence[PathLike] | PathLike,
             picks_path: PathLike, out: PathLike, model: Any = None, *, steps: int = 200, patch: int = 48,
             batch_size: int = 2, lr: float = 3e-4, radius_A: float | None = None, radius_fraction: float = 0.5,
             seed: int = 0, overwrite: bool = False, voxel_size_A: float | None = None,
             progress: Callable[[str], None] | None = None) -> Path:
    """Adapt a promptable model's segmenter to a few labelled tomograms (prompt encoder and prompts frozen).

    The picks of each tomogram (matched by ``run`` = tomogram stem; a single tomogram takes picks with an empty
    or matching run) become sphere targets of ``radius_fraction × radius`` (radius: ``radius_A``, else the
    prompts' ``radius_A``); every other voxel of those tomograms is background, so label them completely.

    Returns
    -------
    Path
        The fine-tuned checkpoint (``out``), its card recording the fine-tuning data and loss.
    """
    import torch

    from tomopick.inference.normalize import normalisation_kwargs
    from tomopick.io import check_output, read_picks
    from tomopick.models import save_checkpoint
    from tomopick.prompt.promptfile import read_prompt
    from tomopick.prompt.training import finetune_segmenter

    tomogram_paths = _as_path_list(tomogram_paths)
    prompt_paths = _as_path_list(prompt_paths)
    if not prompt_paths:
        raise TomopickError("fine-tuning needs at least one --prompt")
    check_output(out, overwrite)
    say = progress or (lambda _msg: None)
    loaded = load_promptable(model)
    net = loaded.model
    model_vs = loaded.voxel_size_A
    box = int(loaded.config.get("prompt", {}).get("box", 37))
    prompts = [read_prompt(p) for p in prompt_paths]
    names, _ = _group_prompts(prompts, prompt_paths)
    if len(names) != 1:
        raise TomopickError(f"fine-tune one particle at a time; the prompts name {', '.join(names)}")
    radius = _finetune_radius_A(prompts, radius_A)
    all_picks = read_picks(picks_path)
    if len(all_picks) == 0:
        raise TomopickError("no picks to fine-tune on", picks_path)
    if names[0] in all_picks.particles:
        all_picks = all_picks.for_particle(names[0])
    pset = ParticleSet(name="finetune", particles=(ParticleSpec(name=names[0], radius_A=radius, label=1),))
    norm_kwargs = normalisation_kwargs(loaded.config.get("normalisation"))
    scenes, n_used = _finetune_scenes(tomogram_paths, all_picks, picks_path, pset, names[0], model_vs, norm_kwargs,
                                      radius_fraction, voxel_size_A)
    boxes = _prompt_boxes(prompts, prompt_paths, model_vs, box)
    rng = np.random.default_rng(seed)
    patch_size = (patch,) * 3
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        hist = finetune_segmenter(net, scenes, boxes, steps=steps, rng=rng, patch=patch_size, batch=batch_size,
                                  lr=lr, callback=(lambda s, loss: say(f"step {s + 1}/{steps}: loss {loss:.4f}")
                                                   if (s + 1) % max(1, steps // 10) == 0 else None))
    card = dict(loaded.card)
    card["finetuned"] = {
        "from": loaded.path or "bundled", "particle": names[0], "radius_A": radius, "tomograms": [str(p) for p in
                                                                                                 tomogram_paths],
        "picks": str(picks_path), "n_picks": n_used, "steps": steps, "lr": lr, "seed": seed,
        "loss_first": hist.first, "loss_last": hist.last, "seconds": round(hist.seconds, 1),
    }
    return save_checkpoint(out, net, loaded.config, card, overwrite=overwrite)


# ---------------------------------------------------------------------------------------------------------------
# training on simulated data, and the held-out evaluation
# ---------------------------------------------------------------------------------------------------------------
def evaluate_promptable(net, cfg, radii_A: dict[str, float], *, seen_kinds: Sequence[str], workdir: PathLike,
                        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """F1 (matching distance ``distance_factor × radius``, best threshold) of a promptable model on fresh simulated
    tomograms holding ``seen_kinds`` and ``cfg.held_out``; one prompt per kind, cut at a true particle of that
    tomogram (the prompt's own particle counts like any other).

    Returns
    -------
    dict
        ``{"f1": {kind: F1}, "seen": [...], "held_out": [...], "seen_mean_f1", "held_out_mean_f1", "settings"}``.
    """
    from tomopick.data import ParticleSet, ParticleSpec
    from tomopick.evaluation import threshold_sweep
    from tomopick.prompt.extract import sample_box
    from tomopick.prompt.picking import embed_prompts, maps_to_picks, predict_maps
    from tomopick.prompt.recipe import simulate_scene

    say = progress or (lambda _msg: None)
    ev = cfg.evaluation
    vs = cfg.voxel_size_A
    kinds = list(dict.fromkeys(list(seen_kinds) + list(cfg.held_out)))
    index = {k: i for i, k in enumerate(kinds)}
    pset = ParticleSet(name="eval", particles=tuple(ParticleSpec(name=k, radius_A=radii_A[k]) for k in kinds))
    truths, found = [], {t: [] for t in ev.thresholds}
    for t in range(ev.n_tomograms):
        scene, truth, _ = simulate_scene(kinds, index, radii_A, ev.scenes, vs, cfg.segmenter.target_radius_fraction,
                                         seed=cfg.seed + 100_000 + t, workdir=workdir)
        run = f"eval_{t}"
        truths.append(truth.with_columns(run=run))
        present = [k for k in kinds if np.any(scene.kinds == index[k])]
        boxes = np.stack([sample_box(scene.volume, scene.centres_zyx_vox[np.flatnonzero(scene.kinds == index[k])[0]],
                                     cfg.prompt_box) for k in present])
        maps = predict_maps(net, scene.volume, embed_prompts(net, boxes), roi=ev.roi, stride=ev.stride)
        for thr in ev.thresholds:
            found[thr].append(maps_to_picks(maps, present, [radii_A[k] / vs for k in present], vs, method=ev.method,
                                            threshold=thr, run=run))
        say(f"evaluation tomogram {t + 1}/{ev.n_tomograms} done")
    truth_all = Picks.concat(truths)
    best: dict[str, float] = {k: 0.0 for k in kinds if k in truth_all.particles}
    best_thr: dict[str, float] = {}
    for thr, items in found.items():
        picks = Picks.concat(items)
        sweep = threshold_sweep(truth_all, picks, pset, "f1", distance_factor=ev.distance_factor)
        for _, row in sweep.table.iterrows():
            if row["particle"] in best and float(row["fbeta"]) > best[row["particle"]]:
                best[row["particle"]] = float(row["fbeta"])
                best_thr[row["particle"]] = float(thr)
    seen = [k for k in seen_kinds if k in best]
    held = [k for k in cfg.held_out if k in best]
    return {
        "f1": best, "binarisation_threshold": best_thr, "seen": seen, "held_out": held,
        "seen_mean_f1": float(np.mean([best[k] for k in seen])) if seen else float("nan"),
        "held_out_mean_f1": float(np.mean([best[k] for k in held])) if held else float("nan"),
        "settings": {"n_tomograms": ev.n_tomograms, "distance": f"{ev.distance_factor} x radius", "metric": "F1",
                     "method": ev.method, "thresholds": list(ev.thresholds), "shape_zyx": list(ev.scenes.shape_zyx),
                     "snr": list(ev.scenes.snr)},
    }


def _initial_promptable(cfg, say: Callable[[str], None]):
    """A fresh promptable network (seeded by ``cfg.seed``), with ``cfg.init_checkpoint``'s weights when given."""
    import torch

    from tomopick.prompt.networks import build_promptable

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        net = build_promptable(**cfg.hparams())
    if cfg.init_checkpoint:
        init = load_promptable(cfg.init_checkpoint)
        try:
            net.load_state_dict(init.model.state_dict())
        except RuntimeError:
            raise TomopickError("init_checkpoint has other network sizes than the config",
                                cfg.init_checkpoint) from None
        say(f"initialised from {cfg.init_checkpoint}")
    return net


def _train_prompt_encoder(net, cfg, densities: dict[str, Any], say: Callable[[str], None]):
    """Stage 1: metric-learn the prompt encoder on rendered views of ``cfg.kinds``; the loss history."""
    from tomopick.prompt.training import ViewSettings, train_encoder

    enc = cfg.encoder
    views = ViewSettings(size=cfg.prompt_box, snr=enc.snr, max_tilt_deg=enc.max_tilt_deg, blur_vox=enc.blur_vox,
                         shift_vox=enc.shift_vox)
    every = max(1, enc.steps // 20)
    return train_encoder(net.encoder, [densities[k] for k in cfg.kinds], steps=enc.steps,
                         rng=np.random.default_rng([cfg.seed, 1]), kinds_per_batch=enc.kinds_per_batch,
                         views_per_kind=enc.views_per_kind, views=views, lr=enc.lr, margin=enc.margin,
                         callback=lambda s, loss: say(f"encoder step {s + 1}/{enc.steps}: triplet loss {loss:.4f}")
                         if (s + 1) % every == 0 else None)


def _simulate_training_scenes(cfg, radii: dict[str, float], rng: np.random.Generator, workdir: str) -> list[Any]:
    """Stage 2's simulated training tomograms, each holding a random choice of ``cfg.kinds``."""
    from tomopick.prompt.recipe import simulate_scene

    seg = cfg.segmenter
    index = {k: i for i, k in enumerate(cfg.kinds)}
    scenes = []
    for t in range(seg.scenes.n_tomograms):
        n_kinds = min(seg.scenes.kinds_per_tomogram, len(cfg.kinds))
        chosen = [str(k) for k in rng.choice(cfg.kinds, size=n_kinds, replace=False)]
        scene, _, _ = simulate_scene(chosen, index, radii, seg.scenes, cfg.voxel_size_A, seg.target_radius_fraction,
                                     seed=cfg.seed * 1_000_003 + t, workdir=workdir)
        scenes.append(scene)
    return scenes


def _promptable_card(out: PathLike, cfg, radii: dict[str, float], hist_e, hist_s, metrics: dict[str, Any],
                     device: str, started: float) -> dict[str, Any]:
    """The model card of a promptable model trained on simulated data."""
    import platform

    import torch

    from tomopick import __version__

    enc, seg = cfg.encoder, cfg.segmenter
    return {
        "name": Path(out).stem, "task": "promptable particle picking (ProPicker-style FiLM U-Net + prompt encoder)",
        "training_data": "simulated only (tomopick.simulate, imaging='fast'); real templates "
                         f"{[k for k in cfg.kinds if ':' not in k]} and {sum(':' in k for k in cfg.kinds)} procedural "
                         "shapes",
        "held_out_kinds": list(cfg.held_out), "kind_radii_A": {k: round(v, 1) for k, v in radii.items()},
        "encoder_training": {"steps": enc.steps, "loss_first": hist_e.first if hist_e.loss else None,
                             "loss_last": hist_e.last if hist_e.loss else None, "seconds": round(hist_e.seconds)},
        "segmenter_training": {"steps": seg.steps, "loss_first": hist_s.first if hist_s.loss else None,
                               "loss_last": hist_s.last if hist_s.loss else None, "seconds": round(hist_s.seconds)},
        "metrics": metrics, "hardware": {"device": device, "platform": platform.platform(),
                                         "threads": torch.get_num_threads()},
        "wall_seconds": round(time.time() - started), "tomopick_version": __version__,
        "limitations": "trained on simulated data only; check on your data (tomopick evaluate) before trusting it",
    }


def train_promptable(config: Any, out: PathLike, *, overwrite: bool = False, device: str = "cpu",
                     progress: Callable[[str], None] | None = None) -> Path:
    """Train a promptable model on simulated data from a recipe (:class:`~tomopick.prompt.recipe.PromptTrainConfig`
    or its YAML path), evaluate it on seen and held-out kinds, and save a checkpoint with a model card.

    Stage 1 metric-learns the prompt encoder on rendered views of ``cfg.kinds``; stage 2 trains the FiLM U-Net on
    simulated tomograms of those kinds with the encoder frozen. ``cfg.held_out`` kinds appear only in evaluation.
    """
    import tempfile

    import torch

    from tomopick.io import check_output
    from tomopick.models import save_checkpoint
    from tomopick.prompt.recipe import PromptTrainConfig, kind_density, kind_radius_A
    from tomopick.prompt.training import prompt_pool, train_segmenter

    cfg = config if isinstance(config, PromptTrainConfig) else PromptTrainConfig.from_yaml(config)
    check_output(out, overwrite)
    say = progress or (lambda _msg: None)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    vs = cfg.voxel_size_A
    started = time.time()
    all_kinds = list(cfg.kinds) + list(cfg.held_out)
    densities = {k: kind_density(k, vs) for k in all_kinds}
    radii = {k: kind_radius_A(densities[k], vs) for k in all_kinds}
    net = _initial_promptable(cfg, say)
    net.to(device)
    hist_e = _train_prompt_encoder(net, cfg, densities, say)
    seg = cfg.segmenter
    rng = np.random.default_rng([cfg.seed, 2])
    with tempfile.TemporaryDirectory(prefix="tomopick-prompt-") as workdir:
        scenes = _simulate_training_scenes(cfg, radii, rng, workdir)
        say(f"simulated {len(scenes)} training tomograms")
        pool = prompt_pool(scenes, size=cfg.prompt_box, per_kind=seg.prompts_per_kind, rng=rng)
        every = max(1, seg.steps // 50)
        hist_s = train_segmenter(net, scenes, pool, steps=seg.steps, rng=rng, patch=(seg.patch,) * 3, batch=seg.batch,
                                 prompts_per_patch=min(seg.prompts_per_patch, len(pool)), lr=seg.lr,
                                 pos_weight=seg.pos_weight,
                                 callback=lambda s, loss: say(f"segmenter step {s + 1}/{seg.steps}: BCE {loss:.4f}")
                                 if (s + 1) % every == 0 else None)
        del scenes, pool
        n_seen = min(cfg.evaluation.n_seen_kinds, len(cfg.kinds))
        seen = [str(k) for k in np.random.default_rng([cfg.seed, 3]).choice(cfg.kinds, size=n_seen, replace=False)]
        metrics = (evaluate_promptable(net, cfg, radii, seen_kinds=seen, workdir=workdir, progress=say)
                   if cfg.evaluation.n_tomograms else {})
    net.to("cpu")
    config = promptable_config(cfg.hparams(), voxel_size_A=vs, prompt_box=cfg.prompt_box,
                               patch_size=(seg.patch,) * 3, recipe=cfg.model_dump(mode="json"),
                               held_out_kinds=list(cfg.held_out), trained_kinds=list(cfg.kinds))
    card = _promptable_card(out, cfg, radii, hist_e, hist_s, metrics, device, started)
    path = save_checkpoint(out, net, to_jsonable(config, unknown="str"), to_jsonable(card, unknown="str"),
                           overwrite=overwrite, half=True)  # plain containers: weights_only loading requires them
    say(f"metrics: seen-kind mean F1 {metrics.get('seen_mean_f1', float('nan')):.3f}, held-out mean F1 "
        f"{metrics.get('held_out_mean_f1', float('nan')):.3f}")
    return path
