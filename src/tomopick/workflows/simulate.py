"""``simulate_dataset``: simulate ``n`` tomograms with ground truth and write them as a copick project (default) or
as MRC + pick files, each with a sidecar YAML holding every parameter and the seed.

copick layout (``fmt="copick"``)::

    OUT/copick_config.json                                   pickable objects = the particle set
    OUT/ExperimentRuns/<run>/VoxelSpacing<vs>/wbp.zarr       the tomogram (OME-Zarr, 3 levels)
    OUT/ExperimentRuns/<run>/Picks/curation_0_<class>.json   ground truth with orientations (user "curation")
    OUT/ExperimentRuns/<run>/Segmentations/…                 "particles" (class labels, multilabel),
                                                             "instances" (instance ids, multilabel),
                                                             one binary mask per class present;
                                                             with config.context also "context" (multilabel:
                                                             0 background, 1 membrane, 2 lumen, 3 gold, 4 carbon)
    OUT/simulation/<run>.yaml                                every parameter + seed (+ drawn values)
    OUT/simulation/dataset.yaml                              the call, per-run summaries
    OUT/previews/<run>.png                                   with ``preview=True``

MRC layout (``fmt="mrc"``; the top level is what ``tomopick train`` reads from a folder)::

    OUT/<run>.mrc                      the tomogram
    OUT/<run>.csv                      ground truth, Kaggle CZII layout (Å; no orientations)
    OUT/<run>/class_labels.mrc (uint8), instance_labels.mrc (uint16), [segmentation.mrc (uint8: 0 background,
              1 membrane, 2 lumen, 3 gold, 4 carbon), segmentation_instances.mrc (uint16) with config.context],
              picks/<class>.json (copick JSON, with orientations), simulation.yaml, preview.png
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import yaml
from pydantic import ValidationError

from tomopick.data import Picks, Tomogram, get_particle_set
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.io.atomic import atomic_output, check_output
from tomopick.jsonable import to_jsonable
from tomopick.simulate import SimulationConfig, SimulationResult, simulate_tomogram

TRUTH_USER = "curation"
TRUTH_SESSION = "0"


@dataclass
class DatasetSummary:
    """What :func:`simulate_dataset` wrote."""

    out: Path
    fmt: str
    runs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    counts: list[dict[str, int]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    previews: list[Path] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"out": str(self.out), "format": self.fmt, "runs": self.runs, "seeds": self.seeds,
                "counts": self.counts, "seconds": [round(s, 2) for s in self.seconds],
                "previews": [str(p) for p in self.previews], "warnings": self.warnings}


def make_config(preset: str = "czii", imaging: str = "fast", snr: float | None = None,
                **config: Any) -> SimulationConfig:
    """A validated :class:`SimulationConfig`; invalid values → one-line :class:`TomopickError`."""
    values = {"particles": preset, "imaging": imaging, **config}
    if snr is not None:
        values["snr"] = snr
    try:
        return SimulationConfig(**values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(x) for x in first["loc"]) or "config"
        raise TomopickError(f"invalid simulation parameter {where}: {first['msg']}") from None


def _yaml_text(data: Any) -> str:
    return yaml.safe_dump(to_jsonable(data), sort_keys=False, allow_unicode=True)


def _write_text(path: Path, text: str, overwrite: bool) -> None:
    with atomic_output(path, overwrite=overwrite) as tmp:
        tmp.write_text(text)


def _save_preview(result: SimulationResult, path: Path, overwrite: bool) -> Path:
    from tomopick.simulate.preview import preview_figure

    cfg = result.params["config"]
    title = f"{cfg['run_name']} — {cfg['imaging']}, SNR {cfg['snr']:g}, seed {result.params['seed']}"
    fig = preview_figure(result.tomogram.data, result.picks, result.particle_set,
                         float(np.mean(result.tomogram.voxel_size_A)), title=title)
    with atomic_output(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    return path


def _write_copick(project: Any, result: SimulationResult, run: str, overwrite: bool) -> None:
    vs = float(np.mean(result.tomogram.voxel_size_A))
    project.write_tomogram(run, result.tomogram, tomo_type="wbp", overwrite=overwrite)
    if len(result.picks):
        project.write_picks(run, result.picks, user_id=TRUTH_USER, session_id=TRUTH_SESSION, overwrite=overwrite)
    project.write_segmentation(run, "particles", result.class_labels, vs, is_multilabel=True, user_id=TRUTH_USER,
                               session_id=TRUTH_SESSION, overwrite=overwrite)
    ids = result.instance_labels
    project.write_segmentation(run, "instances", ids.astype(np.uint16) if ids.max() < 65536 else ids, vs,
                               is_multilabel=True, user_id=TRUTH_USER, session_id=TRUTH_SESSION,
                               overwrite=overwrite)
    for spec in result.particle_set:
        if spec.name in result.picks.particles:
            project.write_segmentation(run, spec.name, (result.class_labels == spec.label).astype(np.uint8), vs,
                                       is_multilabel=False, user_id=TRUTH_USER, session_id=TRUTH_SESSION,
                                       overwrite=overwrite)
    if result.segmentation is not None:  # config.context: membrane / lumen / gold / carbon labels (#13)
        project.write_segmentation(run, "context", result.segmentation, vs, is_multilabel=True, user_id=TRUTH_USER,
                                   session_id=TRUTH_SESSION, overwrite=overwrite)


def _write_mrc(out: Path, run: str, result: SimulationResult, overwrite: bool) -> None:
    """Flat layout the folder reader of ``tomopick train`` understands (``<run>.mrc`` + ``<run>.csv``), the rest
    in ``<run>/``."""
    from tomopick.io import write_picks, write_tomogram

    vs = result.tomogram.voxel_size_A
    folder = out / run
    folder.mkdir(parents=True, exist_ok=True)
    write_tomogram(result.tomogram, out / f"{run}.mrc", overwrite=overwrite)
    write_picks(result.picks, out / f"{run}.csv", format="csv", overwrite=overwrite)
    write_tomogram(Tomogram(result.class_labels, vs), folder / "class_labels.mrc", overwrite=overwrite)
    ids = result.instance_labels
    write_tomogram(Tomogram(ids.astype(np.uint16) if ids.max() < 65536 else ids.astype(np.float32), vs),
                   folder / "instance_labels.mrc", overwrite=overwrite)
    if result.segmentation is not None:  # config.context: membrane / lumen / gold / carbon labels (#13)
        write_tomogram(Tomogram(result.segmentation, vs), folder / "segmentation.mrc", overwrite=overwrite)
        write_tomogram(Tomogram(result.segmentation_instances.astype(np.uint16), vs),
                       folder / "segmentation_instances.mrc", overwrite=overwrite)
    picks: Picks = result.picks
    (folder / "picks").mkdir(exist_ok=True)
    for name in picks.particles:
        write_picks(picks.for_particle(name), folder / "picks" / f"{name}.json", format="copick",
                    user_id=TRUTH_USER, session_id=TRUTH_SESSION, overwrite=overwrite)


def _prepare_output(out: Path, overwrite: bool, run_prefix: str) -> None:
    """Create ``out``; an existing one only with ``overwrite``, and only when it is an earlier simulation output,
    whose stale runs are removed first."""
    if out.exists() and not overwrite:
        raise OutputExistsError("output exists; pass --overwrite to replace it", out)
    check_output(out, overwrite=True)
    if out.exists() and overwrite:
        if not out.is_dir():
            raise TomopickError("output exists and is not a folder", out)
        if any(out.iterdir()) and not (out / "simulation" / "dataset.yaml").is_file():
            raise TomopickError("refusing to overwrite a non-empty folder that is not a tomopick simulation "
                                "output (no simulation/dataset.yaml); choose another --out", out)
        # stale runs from an earlier, larger dataset would mix with the new one
        for sub in ("ExperimentRuns", "simulation", "previews"):
            if (out / sub).is_dir():
                shutil.rmtree(out / sub)
        for old_run in out.glob(f"{run_prefix}[0-9][0-9][0-9]"):
            if old_run.is_dir() and (old_run / "simulation.yaml").is_file():
                shutil.rmtree(old_run)
                for sibling in (out / f"{old_run.name}.mrc", out / f"{old_run.name}.csv"):
                    sibling.unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _write_run(out: Path, fmt: str, project: Any, run: str, result: SimulationResult, overwrite: bool,
               preview: bool) -> Path | None:
    """Write one simulated tomogram, its ground truth and parameters (and its preview PNG, whose path is returned)."""
    if fmt == "copick":
        _write_copick(project, result, run, overwrite)
        sidecar = out / "simulation" / f"{run}.yaml"
        png = out / "previews" / f"{run}.png"
    else:
        _write_mrc(out, run, result, overwrite)
        sidecar = out / run / "simulation.yaml"
        png = out / run / "preview.png"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    _write_text(sidecar, _yaml_text(result.params), overwrite)
    if not preview:
        return None
    png.parent.mkdir(parents=True, exist_ok=True)
    return _save_preview(result, png, overwrite)


def _record_run(summary: DatasetSummary, run: str, seed: int, result: SimulationResult) -> None:
    """Add a run's seed and counts to the summary, with a warning when not every particle could be placed."""
    summary.runs.append(run)
    summary.seeds.append(seed)
    summary.counts.append(result.picks.counts())
    scene = result.params["scene"]
    short = {k: (v, scene["placed_counts"].get(k, 0)) for k, v in scene["requested_counts"].items()
             if scene["placed_counts"].get(k, 0) < v}
    if short:
        summary.warnings.append(
            f"{run}: could not place every particle (no free space in the ice): "
            + ", ".join(f"{k} {got}/{want}" for k, (want, got) in short.items()))


def simulate_dataset(out: str | Path, n: int = 8, seed: int = 0, preset: str = "czii", imaging: str = "fast",
                     snr: float | None = None, fmt: str = "copick", overwrite: bool = False, progress: bool = True,
                     preview: bool = False, run_prefix: str = "sim_",
                     on_result: Callable[[SimulationResult], None] | None = None, **config: Any) -> DatasetSummary:
    """Simulate ``n`` tomograms and write them with their ground truth.

    Parameters
    ----------
    out
        Output folder (a copick project root for ``fmt="copick"``).
    n, seed
        Number of tomograms and the dataset seed; tomogram ``i`` uses seed ``SeedSequence(seed).spawn(n)[i]``
        (recorded in its YAML), so one tomogram can be re-made alone.
    preset
        Particle set (preset name or YAML path).
    imaging, snr
        ``"fast"`` or ``"full"``; signal-to-noise ratio (default: :class:`SimulationConfig`'s).
    fmt
        ``"copick"`` or ``"mrc"``.
    overwrite
        Replace existing outputs (without it an existing ``out`` is refused before any work).
    progress
        Show a progress bar (tqdm, on stderr).
    preview
        Also write a PNG per tomogram (central x–y and x–z slices with the ground truth overlaid).
    on_result
        Optional callback receiving each :class:`SimulationResult` (e.g. to keep them in memory).
    **config
        Any other :class:`SimulationConfig` field (``shape_zyx``, ``voxel_size_A``, ``counts`` …).

    Returns
    -------
    DatasetSummary
    """
    if fmt not in ("copick", "mrc"):
        raise TomopickError(f"unknown output format {fmt!r}; use copick or mrc")
    if n < 1:
        raise TomopickError(f"--n must be at least 1, got {n}")
    for key in ("seed", "run_name"):
        config.pop(key, None)
    base = make_config(preset=preset, imaging=imaging, snr=snr, **config)
    pset = get_particle_set(base.particles)
    if base.counts:
        pset.check_names(list(base.counts))
    out = Path(out)
    _prepare_output(out, overwrite, run_prefix)
    project = None
    if fmt == "copick":
        from tomopick.io.copick_project import CopickProject

        project = CopickProject.create(out, pset, name=f"tomopick-simulation-{pset.name}", overwrite=overwrite)
    seeds = [int(s.generate_state(1, dtype=np.uint32)[0]) for s in np.random.SeedSequence(seed).spawn(n)]
    summary = DatasetSummary(out=out, fmt=fmt)
    iterator = range(n)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"simulating ({base.imaging})", unit="tomo", leave=True)
    try:
        for i in iterator:
            run = f"{run_prefix}{i:03d}"
            cfg = base.model_copy(update={"run_name": run, "seed": seeds[i]})
            t0 = time.perf_counter()
            result = simulate_tomogram(cfg, particle_set=pset)
            png = _write_run(out, fmt, project, run, result, overwrite, preview)
            if png is not None:
                summary.previews.append(png)
            if on_result is not None:
                on_result(result)
            _record_run(summary, run, seeds[i], result)
            summary.seconds.append(time.perf_counter() - t0)
            del result
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    dataset = {"call": {"n": n, "seed": seed, "preset": preset, "imaging": base.imaging, "snr": base.snr,
                        "format": fmt, "run_prefix": run_prefix, "config": to_jsonable(config)},
               "truth_user_id": TRUTH_USER, "truth_session_id": TRUTH_SESSION, **summary.to_dict()}
    target = out / "simulation" / "dataset.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_text(target, _yaml_text(dataset), overwrite=True)
    return summary
