"""``run_batch()`` / ``run_match_batch()``: pick (or template-match) many tomograms on a Dask cluster, resumably (the
verbs behind ``tomopick pick|match --workers``, ``--scheduler`` and ``--cluster``).

The work is one *unit* per input (run), described by a small job (:class:`PickJob`: a network, :class:`MatchJob`:
a template). Each unit is computed by a Dask worker, which reads its tomogram from its own storage (MRC memmap,
zarr, copick), picks it with the one pick path (:func:`tomopick.inference.picking.pick_tomogram`, or
:func:`tomopick.match.picking.match_tomogram`) with the model or template loaded once per worker process, and
writes the run's picks atomically into a work folder next to the output::

    <parent of OUT>/.<name of OUT>.tomopick-batch/
        manifest.json          what the batch is: the job (model sha256, options), inputs, output (the batch key)
        units/<run>.json       one finished run: its unit key, input identity, summary and picks (exact floats)

A unit counts as finished only when its file exists and carries the key of the current command: a SHA-256 over
the input's identity (path, size, mtime), the job (model or template SHA-256s and every option) and the copick
user/session. Re-running the very same command after a crash (``kill -9`` of the driver or of a worker, at any moment) skips the
finished units, redoes the rest, and writes the merged output atomically from the units, in input order, exactly
as the plain loop of :func:`tomopick.workflows.pick.pick` would: one picks file, one file per input, or copick
picks. A work folder whose manifest matches the command *owns* the outputs (it checked they did not exist when it
started), so the re-run replaces them without ``--overwrite``. When every run succeeded the work folder is
removed (renamed away first, so a kill during the removal leaves either the complete folder or none).

No scheduler of our own: Dask distributed runs the units (a ``LocalCluster`` by default, any scheduler address,
or SLURM through dask-jobqueue's ``SLURMCluster``); ``retries`` are Dask's task retries, and a worker that dies
mid-unit has its unit rerun by Dask elsewhere. Units are written by the workers, so the work folder must be on
storage the workers share with the driver (always true on one machine; on a cluster, a shared file system).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Sequence, Union

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tomopick import __version__
from tomopick.data import Picks
from tomopick.data.picks import COLUMNS
from tomopick.errors import OutputExistsError, TomopickError
from tomopick.inference.options import PickOptions
from tomopick.io import atomic_output, check_output, get_format, read_tomogram, write_picks
from tomopick.io.inputs import expand_inputs, run_name
from tomopick.jsonable import to_jsonable
from tomopick.workflows.pick import _folder_extension, _out_kind

__all__ = ["BatchOptions", "BatchReport", "ClusterConfig", "MatchJob", "PickJob", "RunError", "input_identity",
           "load_cluster_config", "run_batch", "run_match_batch", "run_units", "slurm_job_script", "work_folder"]

WORK_VERSION = 1
_UNITS = "units"
_MANIFEST = "manifest.json"


# -- options ----------------------------------------------------------------------------------------------------
class ClusterConfig(BaseModel):
    """The ``--cluster-config`` YAML of ``--cluster slurm`` (passed to ``dask_jobqueue.SLURMCluster``).

    Attributes
    ----------
    queue, account
        SLURM partition (``-p``) and account (``-A``).
    walltime
        Per job, ``HH:MM:SS`` (``-t``).
    memory
        Per job, e.g. ``"16GB"`` (``--mem``).
    cores
        CPU cores per job (``--cpus-per-task``); each Dask worker gets ``cores // processes`` torch threads.
    gpus
        GPUs per job (``--gres=gpu:N``); each worker then picks on ``cuda``.
    processes
        Dask workers per job (one per GPU is the usual choice).
    jobs
        Jobs to start (workers = ``jobs × processes``; ``--workers`` overrides the worker count).
    job_extra_directives, job_script_prologue
        Extra ``#SBATCH`` lines (e.g. ``--constraint=a100``) and shell lines run first (``module load …``).
    local_directory, python, interface
        Worker scratch folder, Python executable, network interface (as dask-jobqueue).
    """

    model_config = ConfigDict(extra="forbid")

    queue: str | None = None
    account: str | None = None
    walltime: str = Field("01:00:00", pattern=r"^(\d+-)?\d{1,3}:\d{2}(:\d{2})?$")
    memory: str = "16GB"
    cores: int = Field(4, ge=1)
    gpus: int = Field(0, ge=0)
    processes: int = Field(1, ge=1)
    jobs: int = Field(1, ge=1)
    job_extra_directives: list[str] = Field(default_factory=list)
    job_script_prologue: list[str] = Field(default_factory=list)
    local_directory: str | None = None
    python: str | None = None
    interface: str | None = None


class BatchOptions(BaseModel):
    """How to run a batch (``tomopick pick --workers/--scheduler/--cluster/--retries``).

    Attributes
    ----------
    workers
        Dask workers: local (default 1 on CPU, one per GPU with ``--device cuda``) or SLURM (default
        ``jobs × processes``); not with ``scheduler``.
    scheduler
        Address of a running Dask scheduler (``tcp://host:8786``); its workers must see the inputs and the output
        folder.
    cluster
        ``local`` (a ``LocalCluster`` of worker processes) or ``slurm`` (dask-jobqueue).
    cluster_config
        :class:`ClusterConfig` (``--cluster-config``), for ``slurm``.
    retries
        Extra attempts for a run that raises (Dask task retries).
    dashboard_address
        Dashboard address of a cluster we start (``":0"``: any free port).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    workers: int | None = Field(None, ge=1)
    scheduler: str | None = None
    cluster: Literal["local", "slurm"] = "local"
    cluster_config: ClusterConfig | None = None
    retries: int = Field(0, ge=0, le=100)
    dashboard_address: str = ":8787"

    @classmethod
    def make(cls, **values: Any) -> "BatchOptions":
        names = {"workers": "--workers", "scheduler": "--scheduler", "cluster": "--cluster",
                 "cluster_config": "--cluster-config", "retries": "--retries"}
        try:
            made = cls(**values)
        except ValidationError as exc:
            err = exc.errors()[0]
            name = names.get(str(err["loc"][0]) if err.get("loc") else "", "batch option")
            raise TomopickError(f"{name}: {err.get('msg', 'invalid value')}") from None
        if made.scheduler and made.cluster != "local":
            raise TomopickError("give either --scheduler (a running cluster) or --cluster, not both")
        if made.scheduler and made.workers is not None:
            raise TomopickError("--workers starts a cluster; with --scheduler the cluster's own workers are used")
        if made.cluster == "slurm" and made.cluster_config is None:
            made = made.model_copy(update={"cluster_config": ClusterConfig()})
        return made


def load_cluster_config(path: str | os.PathLike[str]) -> ClusterConfig:
    """Read a ``--cluster-config`` YAML file (see :class:`ClusterConfig`)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TomopickError("cluster config not found", path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TomopickError(f"not valid YAML ({' '.join(str(exc).split())[:120]})", path) from None
    if not isinstance(data, dict):
        raise TomopickError("expected a mapping of settings (queue, walltime, memory, cores, gpus …)", path)
    try:
        return ClusterConfig(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err.get("loc", ())) or "config"
        raise TomopickError(f"{key}: {err.get('msg', 'invalid value')}", path) from None


# -- report -----------------------------------------------------------------------------------------------------
@dataclass
class RunError:
    """A run that failed after its retries: run name, input and the last error (one line)."""

    run: str
    input: str
    error: str

    def __str__(self) -> str:
        error = self.error.removeprefix(f"{self.input}: ")  # the input is named once
        return f"{self.run} ({self.input}): {error}"


@dataclass
class BatchReport:
    """What :func:`run_batch` did.

    Attributes
    ----------
    picks
        The merged picks of every finished run (input order).
    outputs
        Where they were written.
    runs
        Per finished run, the summary of :func:`~tomopick.inference.picking.pick_tomogram` (+ ``input``,
        ``resumed``: taken from an earlier attempt's unit).
    errors
        Failed runs (after retries); empty when all succeeded.
    resumed, computed
        Runs taken from finished units of an earlier attempt / computed now.
    work_folder
        The units' folder (removed when every run succeeded).
    dashboard
        The Dask dashboard address ("" when no cluster was needed).
    model_loads
        Per worker (``host:pid``), how many times that process loaded the model (1 when cached as intended).
    options
        The pick options as used (the checkpoint's defaults filled in; pick batches only).
    """

    picks: Picks
    outputs: list[str] = field(default_factory=list)
    runs: list[dict[str, Any]] = field(default_factory=list)
    errors: list[RunError] = field(default_factory=list)
    resumed: int = 0
    computed: int = 0
    work_folder: str = ""
    dashboard: str = ""
    model_loads: dict[str, int] = field(default_factory=dict)
    options: PickOptions | None = None


# -- identities and keys ----------------------------------------------------------------------------------------
def input_identity(item: str, source: str | None = None) -> dict[str, Any]:
    """What identifies an input's content cheaply: the path, its size and modification time (ns); a folder
    (OME-Zarr) sums its files' sizes and takes their latest mtime. A URI (``copick://…``) is identified by the URI
    and the local file or folder it resolves to (``source``: the :class:`~tomopick.data.Tomogram`'s source, e.g.
    the run's zarr; a remote one by its URI only)."""
    text = str(item)
    if "://" in text:
        local = Path(source) if source and "://" not in str(source) and Path(source).exists() else None
        return {**(input_identity(str(local)) if local is not None else {"size": None, "mtime_ns": None}),
                "input": text}
    path = Path(text)
    if path.is_dir():
        size, mtime = 0, path.stat().st_mtime_ns
        for root, _, files in os.walk(path):
            for name in files:
                st = os.stat(os.path.join(root, name))
                size += st.st_size
                mtime = max(mtime, st.st_mtime_ns)
        return {"input": str(path.resolve()), "size": size, "mtime_ns": mtime}
    stat = path.stat()
    return {"input": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(to_jsonable(value), sort_keys=True, default=str).encode()).hexdigest()


def work_folder(out: str | os.PathLike[str]) -> Path:
    """The hidden folder next to ``out`` holding a batch's manifest and units (inside the project for copick)."""
    text = str(out)
    if text.startswith("copick://"):
        target = Path(text.split("://", 1)[1].split("?", 1)[0])
        root = target.parent if target.suffix == ".json" else target
        return root / f".tomopick-batch-{hashlib.sha256(text.encode()).hexdigest()[:12]}"
    path = Path(text.rstrip("/" + os.sep)) if text.rstrip("/" + os.sep) else Path(text)
    return path.parent / f".{path.name}.tomopick-batch"


# -- jobs: what one unit computes --------------------------------------------------------------------------------
class PickJob(BaseModel):
    """The unit of ``tomopick pick``: one tomogram → picks with a network (checkpoint or ensemble), loaded once
    per worker process. Small and picklable: paths, digests and options, never a model or a volume."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["pick"] = "pick"
    model_paths: list[str]
    model_sha256s: list[str]
    model_weights: list[float] | None = None
    options: dict[str, Any]  # PickOptions as used (the checkpoint's defaults filled in)

    def resource_key(self) -> tuple[Any, ...]:
        return (self.kind, tuple(self.model_paths), tuple(self.model_sha256s), tuple(self.model_weights or ()))

    def load(self) -> Any:
        """The checkpoint (its SHA-256 checked) or the ensemble of checkpoints."""
        from tomopick.models.checkpoint import file_sha256, load_checkpoint

        if len(self.model_paths) == 1:
            return load_checkpoint(self.model_paths[0], sha256=self.model_sha256s[0])
        from tomopick.inference.ensemble import EnsembleSpec
        from tomopick.workflows.pick import resolve_model

        for path, sha in zip(self.model_paths, self.model_sha256s):
            if file_sha256(path) != sha:
                raise TomopickError("checkpoint checksum mismatch (replaced during the batch?)", path)
        return resolve_model(EnsembleSpec(self.model_paths, self.model_weights))

    def run(self, resource: Any, tomogram: Any, run: str, save_scores: str | None) -> tuple[Picks, dict[str, Any]]:
        from tomopick.inference.picking import inference_settings, pick_tomogram
        from tomopick.workflows.pick import _score_writer

        options = PickOptions(**self.options)
        on_scores = None if save_scores is None else _score_writer(Path(save_scores), run, True)
        return pick_tomogram(tomogram, resource, options, run=run, settings=inference_settings(resource, options),
                             on_scores=on_scores)


class MatchJob(BaseModel):
    """The unit of ``tomopick match``: one tomogram → picks by template matching; the template is read once per
    worker process (its SHA-256 checked)."""

    model_config = ConfigDict(frozen=True)

    kind: Literal["match"] = "match"
    template_path: str
    template_sha256: str
    template_voxel_size_A: float | None = None
    particle: str
    radius_A: float
    options: dict[str, Any]  # MatchOptions

    def resource_key(self) -> tuple[Any, ...]:
        return (self.kind, self.template_path, self.template_sha256, self.template_voxel_size_A)

    def load(self) -> Any:
        from tomopick.models.checkpoint import file_sha256
        from tomopick.workflows.match import read_template

        if file_sha256(self.template_path) != self.template_sha256:
            raise TomopickError("template checksum mismatch (replaced during the batch?)", self.template_path)
        return read_template(self.template_path, self.template_voxel_size_A)

    def run(self, resource: Any, tomogram: Any, run: str, save_scores: str | None) -> tuple[Picks, dict[str, Any]]:
        from tomopick.match.options import MatchOptions
        from tomopick.match.picking import match_tomogram

        template, template_vs = resource
        picks, summary = match_tomogram(tomogram, template, template_vs, self.particle, self.radius_A,
                                        MatchOptions(**self.options), run=run)
        summary.update(run=run, method="template matching")
        return picks, summary


Job = Annotated[Union[PickJob, MatchJob], Field(discriminator="kind")]


# -- the worker side --------------------------------------------------------------------------------------------
class UnitSpec(BaseModel):
    """Everything a worker needs for one run (small: paths and options, never volumes)."""

    model_config = ConfigDict(frozen=True)

    job: Job
    run: str
    input: str
    identity: dict[str, Any]
    key: str
    unit_path: str
    torch_threads: int | None = None
    gpu_per_worker: bool = False
    user_id: str = "tomopick"
    session_id: str = "0"
    save_scores: str | None = None


_RESOURCES: dict[tuple[Any, ...], Any] = {}
_LOADS: dict[tuple[Any, ...], int] = {}
_LOCK = threading.Lock()


def _cached(job: Any) -> Any:
    """The job's model (or template), loaded once per worker process and kept for the next units."""
    key = job.resource_key()
    with _LOCK:
        if key not in _RESOURCES:
            _RESOURCES[key] = job.load()
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return _RESOURCES[key]


def _worker_index() -> int | None:
    try:
        from distributed import get_worker

        name = get_worker().name
    except (ImportError, ValueError):
        return None
    try:
        return int(name)
    except (TypeError, ValueError):
        return None


def run_unit(spec: UnitSpec) -> dict[str, Any]:
    """Compute one run on this worker and write its unit atomically; returns a small summary (no picks)."""
    import socket

    import torch

    t0 = time.perf_counter()
    job = spec.job
    resource = _cached(job)
    options = dict(job.options)
    if spec.gpu_per_worker and options.get("device") == "cuda" and torch.cuda.is_available():
        options["device"] = f"cuda:{(_worker_index() or 0) % torch.cuda.device_count()}"  # one GPU per worker
        job = job.model_copy(update={"options": options})
    threads = options.get("threads") or spec.torch_threads
    if threads is not None and torch.get_num_threads() != int(threads):
        torch.set_num_threads(int(threads))
    vs = options.get("voxel_size_A")
    tomogram = read_tomogram(spec.input, **({"voxel_size_A": vs} if vs is not None else {}))
    if input_identity(spec.input, tomogram.source) != spec.identity:
        raise TomopickError("the input changed while the batch ran; rerun the command", spec.input)
    picks, summary = job.run(resource, tomogram, spec.run, spec.save_scores)
    picks = picks.with_columns(user=spec.user_id, session=spec.session_id) if len(picks) else picks
    summary["input"] = spec.input
    summary["writer_options"] = {"voxel_size_A": float(np.mean(tomogram.voxel_size_A)),
                                 "tomogram_shape_zyx": list(tomogram.shape)}
    unit = {"version": WORK_VERSION, "key": spec.key, "run": spec.run, "identity": spec.identity,
            "summary": to_jsonable(summary, unknown="str"),
            "columns": [str(c) for c in picks.frame.columns],
            "picks": {str(c): picks.frame[c].tolist() for c in picks.frame.columns}}
    with atomic_output(spec.unit_path, overwrite=True) as tmp:
        tmp.write_text(json.dumps(unit))
    worker = f"{socket.gethostname()}:{os.getpid()}"
    return {"run": spec.run, "seconds": time.perf_counter() - t0, "worker": worker,
            "model_loads": _LOADS.get(job.resource_key(), 0)}


# -- units on disk ----------------------------------------------------------------------------------------------
def _read_unit(path: Path, key: str) -> dict[str, Any] | None:
    """A finished unit with this key, else ``None`` (missing, from another command, or unreadable)."""
    try:
        unit = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(unit, dict) or unit.get("version") != WORK_VERSION or unit.get("key") != key:
        return None
    return unit


def _unit_picks(unit: dict[str, Any]) -> Picks:
    import pandas as pd

    frame = pd.DataFrame(unit["picks"], columns=unit.get("columns") or list(COLUMNS))
    return Picks.from_frame(frame) if len(frame) else Picks.empty()


def _unit_file(units: Path, run: str) -> Path:
    safe = run if run and "/" not in run and not run.startswith(".") else hashlib.sha256(run.encode()).hexdigest()
    return units / f"{safe}.json"


# -- clusters ---------------------------------------------------------------------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _slurm_kwargs(config: ClusterConfig) -> dict[str, Any]:
    extra = list(config.job_extra_directives)
    if config.gpus:
        extra.append(f"--gres=gpu:{config.gpus}")
    kwargs: dict[str, Any] = dict(
        queue=config.queue, account=config.account, walltime=config.walltime, memory=config.memory,
        cores=config.cores, processes=config.processes, job_extra_directives=extra,
        job_script_prologue=list(config.job_script_prologue),
        # one run at a time per worker (its torch threads use the worker's cores)
        worker_extra_args=["--resources", "tomopick_run=1"],
    )
    for name in ("local_directory", "python", "interface"):
        if getattr(config, name) is not None:
            kwargs[name] = getattr(config, name)
    return kwargs


def slurm_job_script(config: ClusterConfig) -> str:
    """The SLURM job script dask-jobqueue would submit for ``config`` (starts a scheduler, submits nothing)."""
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(**_slurm_kwargs(config), scheduler_options={"dashboard_address": ":0"}) as cluster:
        return cluster.job_script()


@dataclass
class _Cluster:
    client: Any
    close: Callable[[], None]
    torch_threads: int | None
    gpu_per_worker: bool
    resources: dict[str, float] | None


def _start_cluster(batch: BatchOptions, device: str) -> _Cluster:
    """A Dask client on the cluster ``batch`` asks for (LocalCluster, an address, or SLURM)."""
    import dask
    from distributed import Client, LocalCluster

    gpu = str(device).startswith("cuda")
    if batch.scheduler:
        try:
            client = Client(batch.scheduler, timeout="20s")
        except (OSError, TimeoutError) as exc:
            raise TomopickError(f"--scheduler {batch.scheduler}: cannot connect ({exc})") from None
        return _Cluster(client, client.close, None, False, None)
    if batch.cluster == "slurm":
        from dask_jobqueue import SLURMCluster

        config = batch.cluster_config or ClusterConfig()
        cluster = SLURMCluster(**_slurm_kwargs(config),
                               scheduler_options={"dashboard_address": batch.dashboard_address})
        cluster.scale(n=batch.workers or config.jobs * config.processes)
        client = Client(cluster)

        def close_slurm() -> None:
            client.close()
            cluster.close()

        return _Cluster(client, close_slurm, max(1, config.cores // config.processes), bool(config.gpus),
                        {"tomopick_run": 1})
    n_gpus = 0
    if gpu:
        import torch

        n_gpus = torch.cuda.device_count()
    workers = batch.workers or (n_gpus if n_gpus else 1)
    threads = max(1, _cores() // workers)
    env = {k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")}
    # worker processes, one run at a time each; the worker's cores go to torch's intra-op threads
    with dask.config.set({"distributed.worker.daemon": True}):
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=batch.dashboard_address, env=env,
                               silence_logs=logging.CRITICAL)  # failures are listed at the end, one line each
    client = Client(cluster)

    def close_local() -> None:
        client.close()
        cluster.close()

    return _Cluster(client, close_local, threads, bool(n_gpus), None)


# -- the verbs --------------------------------------------------------------------------------------------------
def run_batch(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], model: Any, *,
              options: PickOptions | None = None, batch: BatchOptions | None = None,
              out: str | os.PathLike[str], save_scores: str | os.PathLike[str] | None = None,
              overwrite: bool = False, picks_format: str | None = None, user_id: str = "tomopick",
              session_id: str = "0", progress: Callable[[int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> BatchReport:
    """Pick many tomograms on a Dask cluster; resumable and idempotent (see the module docstring).

    Parameters
    ----------
    inputs
        Tomogram paths/URIs as for :func:`tomopick.workflows.pick.pick`.
    model
        Checkpoint path, ``None`` (the bundled ``czii-10A`` model), or an ensemble
        (:class:`~tomopick.inference.ensemble.EnsembleSpec` or a list of paths); paths, not loaded models: the
        workers load them.
    options
        :class:`~tomopick.inference.options.PickOptions`.
    batch
        :class:`BatchOptions` (workers, scheduler, cluster, retries).
    out
        A picks file, a folder (ends with ``/``), or ``copick://project`` — as :func:`~tomopick.workflows.pick.pick`.
    save_scores
        Folder for the per-class score maps (written by the workers).
    progress
        ``progress(done, total)`` over runs (finished units of an earlier attempt count as done from the start).
    log
        Receives lines for the user: the dashboard address and how many runs were resumed.

    Returns
    -------
    BatchReport
        ``errors`` lists the runs that failed after their retries (their picks are missing from the output; the
        work folder is kept, so re-running the command retries only them).
    """
    from tomopick.models.checkpoint import read_checkpoint_payload
    from tomopick.workflows.pick import resolve_model

    options = options or PickOptions()
    models = _model_files(model)
    # the checkpoint(s) checked here, once, before a cluster starts (one checkpoint: its config only, without
    # building the network, so the driver never imports MONAI)
    if len(models["paths"]) == 1:
        config = read_checkpoint_payload(models["paths"][0], models["sha256"][0])["config"]
        from tomopick.workflows.pick import require_picker

        require_picker(config, models["paths"][0])
    else:
        config = resolve_model(model).config
    used = options.with_defaults(config)
    job = PickJob(model_paths=models["paths"], model_sha256s=models["sha256"], model_weights=models["weights"],
                  options=used.model_dump(mode="json"))
    report = run_units(inputs, job, batch=batch, out=out, save_scores=save_scores, overwrite=overwrite,
                       picks_format=picks_format, user_id=user_id, session_id=session_id, progress=progress,
                       log=log)
    report.options = used
    return report


def run_match_batch(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
                    template: str | os.PathLike[str], *, particle: str, options: Any | None = None,
                    radius_A: float | None = None, template_voxel_size_A: float | None = None,
                    batch: BatchOptions | None = None, out: str | os.PathLike[str], overwrite: bool = False,
                    picks_format: str | None = None, user_id: str = "tomopick", session_id: str = "0",
                    progress: Callable[[int, int], None] | None = None,
                    log: Callable[[str], None] | None = None) -> BatchReport:
    """Template-match many tomograms on a Dask cluster, resumably (``tomopick match … --workers N``): the same
    units, keys and assembly as :func:`run_batch`, the unit being :func:`tomopick.workflows.match.match`'s
    per-tomogram step. ``options``: :class:`~tomopick.match.options.MatchOptions`."""
    from tomopick.match.options import MatchOptions
    from tomopick.models.checkpoint import file_sha256
    from tomopick.workflows.match import particle_radius_A, read_template

    options = options or MatchOptions()
    radius = particle_radius_A(particle, radius_A)
    read_template(template, template_voxel_size_A)  # a bad template fails here, before any cluster starts
    path = str(Path(template).resolve())
    job = MatchJob(template_path=path, template_sha256=file_sha256(path),
                   template_voxel_size_A=template_voxel_size_A, particle=particle, radius_A=radius,
                   options=options.model_dump(mode="json"))
    return run_units(inputs, job, batch=batch, out=out, overwrite=overwrite, picks_format=picks_format,
                     user_id=user_id, session_id=session_id, progress=progress, log=log)


def run_units(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], job: Any, *,
              batch: BatchOptions | None = None, out: str | os.PathLike[str],
              save_scores: str | os.PathLike[str] | None = None, overwrite: bool = False,
              picks_format: str | None = None, user_id: str = "tomopick", session_id: str = "0",
              progress: Callable[[int, int], None] | None = None,
              log: Callable[[str], None] | None = None) -> BatchReport:
    """The resumable batch of any job (:class:`PickJob`, :class:`MatchJob`): check outputs and inputs, skip the
    finished units, compute the rest on Dask, and assemble the output from the units (module docstring)."""
    batch = batch or BatchOptions()
    say = log or (lambda line: None)
    items = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        dupes = sorted({r for r in runs if runs.count(r) > 1})
        raise TomopickError(f"several inputs share the run name {', '.join(dupes)}; rename them")
    out_text = str(out)
    kind = _out_kind(out_text, len(items))
    if picks_format is not None:
        get_format(picks_format, "picks")
    work = work_folder(out_text)
    for old in work.parent.glob(f"{work.name}.done-*"):  # left by a kill during an earlier removal
        shutil.rmtree(old, ignore_errors=True)
    job_fields = job.model_dump(mode="json")
    scores = None if save_scores is None else str(save_scores)
    batch_key = _digest({"version": WORK_VERSION, "job": job_fields, "out": out_text, "format": picks_format,
                         "user": user_id, "session": session_id, "inputs": items, "save_scores": scores})
    manifest_path = work / _MANIFEST
    owned = _manifest_key(manifest_path) == batch_key
    may_replace = overwrite or owned
    targets: dict[str, Path] = {}
    if kind == "file":
        check_output(out_text, may_replace, create_parent=False, directory=False)
    elif kind == "folder":
        ext = _folder_extension() if picks_format is None else (get_format(picks_format, "picks").extensions
                                                                  or ("",))[0]
        for r in runs:
            targets[r] = check_output(Path(out_text) / f"{r}{ext}", may_replace, create_parent=False)
    if save_scores is not None and not may_replace:  # workers write score maps with overwrite: checked here
        taken = [p for r in runs for p in Path(save_scores).glob(f"{r}_*_scores.ome.zarr")]
        if taken:
            raise OutputExistsError("output exists; pass --overwrite to replace it", taken[0])
    # every input opened (headers only) and identified before any work
    vs = job.options.get("voxel_size_A")
    sources = [read_tomogram(item, **({"voxel_size_A": vs} if vs is not None else {})).source for item in items]
    identities = [input_identity(i, src) for i, src in zip(items, sources)]
    device = str(job.options.get("device", "cpu"))
    if device.startswith("cuda") and batch.scheduler is None and batch.cluster == "local":
        import torch

        if not torch.cuda.is_available():
            raise TomopickError(f"--device {device} was asked for but no CUDA GPU is available")
    keys = [_digest({"version": WORK_VERSION, "job": job_fields, "run": r, "identity": ident, "user": user_id,
                     "session": session_id, "save_scores": scores})
            for r, ident in zip(runs, identities)]
    # the work folder and its manifest (atomic)
    units = work / _UNITS
    units.mkdir(parents=True, exist_ok=True)
    if not owned:
        manifest = {"version": WORK_VERSION, "tomopick": __version__, "batch_key": batch_key, "out": out_text,
                    "format": picks_format, "job": job_fields, "user": user_id, "session": session_id,
                    "save_scores": scores,
                    "inputs": [{"run": r, **ident, "key": k} for r, ident, k in zip(runs, identities, keys)]}
        with atomic_output(manifest_path, overwrite=True) as tmp:
            tmp.write_text(json.dumps(manifest, indent=1))
    if save_scores is not None:
        Path(save_scores).mkdir(parents=True, exist_ok=True)

    report = BatchReport(picks=Picks.empty(), work_folder=str(work))
    done: dict[str, dict[str, Any]] = {}
    for r, k in zip(runs, keys):
        unit = _read_unit(_unit_file(units, r), k)
        if unit is not None:
            done[r] = unit
    resumed = set(done)
    report.resumed = len(done)
    if done:
        say(f"resuming: {len(done)} of {len(runs)} runs already done (in {work})")
    if progress is not None:
        progress(len(done), len(runs))
    todo = [(i, r, k) for i, (r, k) in enumerate(zip(runs, keys)) if r not in done]
    if todo:
        specs = [UnitSpec(job=job, run=r, input=items[i], identity=identities[i], key=k,
                          unit_path=str(_unit_file(units, r)), user_id=user_id, session_id=session_id,
                          save_scores=scores) for i, r, k in todo]
        _compute(specs, [i for i, _, _ in todo], items, runs, batch, device, done, report, progress, say)
    # assemble the output from the units, in input order
    all_picks = []
    for item, r, k in zip(items, runs, keys):
        if r not in done:
            continue
        unit = _read_unit(_unit_file(units, r), k)
        if unit is None:  # removed under us: count as failed, never silently missing
            report.errors.append(RunError(r, item, f"its unit {_unit_file(units, r)} vanished"))
            continue
        summary = dict(unit["summary"])
        summary["resumed"] = r in resumed
        report.runs.append(summary)
        all_picks.append(_unit_picks(unit))
    report.picks = Picks.concat(all_picks)
    if report.runs:
        _write_output(report, all_picks, kind, out_text, targets, may_replace, picks_format, user_id, session_id)
    if not report.errors:
        _remove_work_folder(work)
    return report


def _write_output(report: BatchReport, all_picks: list[Picks], kind: str, out_text: str, targets: dict[str, Path],
                  may_replace: bool, picks_format: str | None, user_id: str, session_id: str) -> None:
    """The merged output, as the plain loop writes it: one file, one file per run, or copick picks per run."""
    def plain(options: dict[str, Any]) -> dict[str, Any]:
        return {k: (tuple(v) if isinstance(v, list) else v) for k, v in options.items()}

    if kind == "file":
        # pixel-based formats need a pixel size (and RELION 5 the tomogram size): given when all runs agree
        writer_options = [s["writer_options"] for s in report.runs]
        common = {k: v for k, v in writer_options[0].items() if all(o[k] == v for o in writer_options)}
        Path(out_text).parent.mkdir(parents=True, exist_ok=True)
        write_picks(report.picks, out_text, overwrite=may_replace, format=picks_format, **plain(common))
        report.outputs.append(out_text)
        return
    for summary, picks in zip(report.runs, all_picks):
        r = summary["run"]
        if kind == "folder":
            write_picks(picks, targets[r], overwrite=may_replace, format=picks_format,
                        **plain(summary["writer_options"]))
            report.outputs.append(str(targets[r]))
        else:
            write_picks(picks, out_text, overwrite=may_replace, run=r, user_id=user_id, session_id=session_id)
            report.outputs.append(f"{out_text} (run {r})")


def _model_files(model: Any) -> dict[str, Any]:
    """``{"paths", "sha256", "weights"}`` of a checkpoint path, ``None`` (the bundled model), a list of paths or an
    :class:`~tomopick.inference.ensemble.EnsembleSpec` (workers get paths, never loaded models)."""
    from tomopick.inference.ensemble import EnsembleSpec
    from tomopick.models.checkpoint import file_sha256

    weights = None
    if model is None:
        from tomopick.models.bundled import bundled_model_path, bundled_sha256

        return {"paths": [str(bundled_model_path())], "sha256": [bundled_sha256()], "weights": None}
    if isinstance(model, (list, tuple)) and len(model) == 1:
        model = model[0]
    if isinstance(model, (list, tuple)):
        model = EnsembleSpec(list(model))
    if isinstance(model, EnsembleSpec):
        members, weights = list(model.models), [float(w) for w in model.weights]
    else:
        members = [model]
    from tomopick.models.bundled import bundled_model_path, bundled_name

    paths = []
    for member in members:
        name = bundled_name(member)
        member = bundled_model_path(name) if name is not None else member
        if not isinstance(member, (str, os.PathLike)):
            raise TomopickError("a batch needs checkpoint paths (workers load the model themselves), "
                                "not a loaded model")
        if not Path(member).is_file():
            raise TomopickError("checkpoint not found", member)
        paths.append(str(Path(member).resolve()))
    return {"paths": paths, "sha256": [file_sha256(p) for p in paths], "weights": weights}


def _manifest_key(path: Path) -> str | None:
    try:
        return json.loads(path.read_text()).get("batch_key")
    except (OSError, ValueError, AttributeError):
        return None


def _remove_work_folder(work: Path) -> None:
    """Rename the work folder away (atomic: a kill leaves it whole or gone), then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f"{work.name}.done-", dir=work.parent))
    trash.rmdir()
    try:
        os.replace(work, trash)
    except FileNotFoundError:  # a second driver of the same command finished first
        return
    shutil.rmtree(trash, ignore_errors=True)


def _compute(specs: list[UnitSpec], indices: list[int], items: list[str], runs: list[str], batch: BatchOptions,
             device: str, done: dict[str, dict[str, Any]], report: BatchReport,
             progress: Callable[[int, int], None] | None, say: Callable[[str], None]) -> None:
    """Submit the unfinished units to Dask and wait for them; fills ``done`` (fresh units) and ``report``."""
    from distributed import as_completed

    cluster = _start_cluster(batch, device)
    try:
        report.dashboard = str(cluster.client.dashboard_link or "")
        if report.dashboard:
            say(f"Dask dashboard: {report.dashboard}")
        futures = {}
        # a fresh task key per attempt of the command: a task orphaned by a killed driver may still run on a
        # long-lived cluster; both write the same unit atomically, so neither blocks nor duplicates the other
        nonce = uuid.uuid4().hex[:12]
        for i, spec in zip(indices, specs):
            spec = spec.model_copy(update={"torch_threads": cluster.torch_threads,
                                           "gpu_per_worker": cluster.gpu_per_worker})
            future = cluster.client.submit(run_unit, spec, key=f"tomopick-{spec.job.kind}-{spec.run}-{nonce}",
                                           pure=False, retries=batch.retries, resources=cluster.resources)
            futures[future] = (i, spec)
        finished = len(done)
        for future in as_completed(list(futures)):
            i, spec = futures[future]
            if future.status == "finished":
                result = future.result()
                unit = _read_unit(Path(spec.unit_path), spec.key)
                if unit is None:
                    report.errors.append(RunError(spec.run, items[i], "the worker finished but its unit is missing "
                                                  "(is the output folder shared with the workers?)"))
                else:
                    done[spec.run] = unit
                    report.computed += 1
                    report.model_loads[result["worker"]] = int(result["model_loads"])
            else:
                exc = future.exception()
                message = str(exc) or type(exc).__name__
                if not isinstance(exc, TomopickError):
                    message = f"{type(exc).__name__}: {message}"
                report.errors.append(RunError(spec.run, items[i], " ".join(message.split())))
            finished += 1
            if progress is not None:
                progress(finished, len(runs))
    finally:
        cluster.close()
    order = {r: n for n, r in enumerate(runs)}
    report.errors.sort(key=lambda e: order.get(e.run, 0))
