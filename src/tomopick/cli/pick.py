"""``tomopick pick [--model M] INPUT... --out OUT``: pick particles with a trained network."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer

from tomopick.cli.batch import ClusterConfigOption, ClusterOption, SchedulerOption
from tomopick.errors import TomopickError


def parse_thresholds(values: list[str] | None) -> float | dict[str, float] | None:
    """``["0.4"]`` → 0.4; ``["0.5", "ribosome=0.3"]`` → ``{"*": 0.5, "ribosome": 0.3}``."""
    if not values:
        return None
    out: dict[str, float] = {}
    for item in values:
        for part in str(item).split(","):
            part = part.strip()
            if not part:
                continue
            name, _, value = part.rpartition("=")
            try:
                number = float(value)
            except ValueError:
                raise TomopickError(f"--threshold {part!r}: expected a number or CLASS=NUMBER") from None
            out[name or "*"] = number
    if list(out) == ["*"]:
        return out["*"]
    return out


@contextlib.contextmanager
def run_progress(quiet: bool, unit: str = "window") -> Iterator[Callable[[str, int, int], None] | None]:
    """A ``progress(run, done, total)`` callback drawing one tqdm bar of ``unit`` per run on stderr (``None`` when
    quiet); the last bar is closed on exit."""
    if quiet:
        yield None
        return
    bar = None

    def progress(run: str, done: int, total: int) -> None:
        nonlocal bar
        from tqdm import tqdm

        if bar is None or bar.desc != run:
            if bar is not None:
                bar.close()
            bar = tqdm(total=total, desc=run, unit=unit, file=sys.stderr, leave=False)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()


def window_progress(quiet: bool):
    """One bar of sliding windows per run (see :func:`run_progress`)."""
    return run_progress(quiet, "window")


def parse_roi(text: str | None) -> tuple[int, int, int] | None:
    if not text:
        return None
    try:
        values = [int(v) for v in text.replace("x", ",").split(",") if v.strip()]
    except ValueError:
        raise TomopickError(f"--roi {text!r}: expected Z,Y,X integers") from None
    if len(values) == 1:
        values = values * 3
    if len(values) != 3 or min(values) < 8:
        raise TomopickError(f"--roi {text!r}: expected three sizes >= 8 (Z,Y,X)")
    return tuple(values)  # type: ignore[return-value]


def pick(
    inputs: List[str] = typer.Argument(..., metavar="INPUT...",
                                       help="Tomograms: MRC, OME-Zarr, or copick://project?run=… (no run = all)."),
    out: str = typer.Option(..., "--out", "-o",
                            help="Picks file (all inputs, run column), a folder (one file per input, end with /), "
                                 "or copick://project."),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m",
                                              help="Checkpoint (.pt) or a bundled model's name (czii-10A, "
                                                   "czii-robust-10A: larger, ~3x slower, best with czii-10A "
                                                   "as an ensemble; "
                                                   "generalist-10A). "
                                                   "Default: the bundled czii-10A model. "
                                                   "Repeat to pick with an ensemble (docs/ensemble.md)."),
    model_weights: Optional[str] = typer.Option(None, "--model-weights",
                                                help="Ensemble weights, one per --model (e.g. 0.6,0.4; "
                                                     "default equal)."),
    threshold: Optional[List[str]] = typer.Option(None, "--threshold", "-t",
                                                  help="Score threshold, or CLASS=VALUE; repeatable. Default: the model's "
                                                       "per-class thresholds for the score in use (chosen on its "
                                                       "validation data), else 0.2 (blob) / 0.5 (peak)."),
    score: Optional[str] = typer.Option(None, "--score",
                                        help="blob (mean class probability in the sphere the network paints; "
                                             "transfers across tomograms) | peak (the class map's value at the "
                                             "peak; saturates). Default: the model's (blob; peak for heatmap "
                                             "models)."),
    threshold_rule: str = typer.Option("stored", "--threshold-rule",
                                       help="stored (given, else the model's, else the default) | valley (per "
                                            "tomogram and class: the emptiest blob score in 0.12-0.3)."),
    peak_method: Optional[str] = typer.Option(
        None, "--peak-method",
        help="maxpool | mpnms (DeepETPicker) | cc (connected components; --prompt default) | localmax. "
             "Default: the model's (config pick.peak_method), else maxpool."),
    distance: Optional[float] = typer.Option(None, "--distance",
                                             help="Minimum pick spacing as a fraction of the radius (default: the "
                                                  "model's, else 0.75)."),
    tta: bool = typer.Option(False, "--tta", help="Average over 4 flips (4× slower)."),
    overlap: Optional[float] = typer.Option(None, "--overlap",
                                            help="Window context fraction (crop: the model's stored "
                                                 "overlap, else 0.08; gaussian: 0.25)."),
    mode: str = typer.Option("crop", "--mode", help="crop (overlap-tile, fast) | gaussian (MONAI blending)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Largest window Z,Y,X in voxels (default: the model's "
                                                          "stored window, else 208,256,256; the training patch "
                                                          "for instance-norm and coordinate-channel networks)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help="Windows per forward pass."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda (mixed precision on GPU)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1,
                                          help="CPU threads (default: one per physical core)."),
    precision: Optional[str] = typer.Option(None, "--precision",
                                            help="CPU arithmetic of the network: fp32 | bf16 (bfloat16 autocast, "
                                                 "~3.5x faster network on CPUs with AVX-512 BF16/AMX) | auto (bf16 "
                                                 "where native; the default); the one used is printed after "
                                                 "picking."),
    skip_vacuum: bool = typer.Option(False, "--skip-vacuum",
                                     help="Do not run the network on z-slices of vacuum above/below the specimen "
                                          "slab (found from per-slice statistics, conservatively)."),
    adapt_norm: Optional[float] = typer.Option(
        None, "--adapt-norm",
        help="Adapt the network's batch-norm statistics to each tomogram (test-time AdaBN, no labels): the "
             "tomogram's share, 0 (off) to 1. Default: the model's (config pick.adapt_norm), else 0."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the inputs' voxel size (Å)."),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="Treat NaN/Inf voxels as background."),
    save_scores: Optional[Path] = typer.Option(None, "--save-scores",
                                               help="Folder for per-class score maps (OME-Zarr)."),
    picks_format: Optional[str] = typer.Option(None, "--format", help="Picks format (default: from --out)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    context: Optional[str] = typer.Option(None, "--context",
                                          help="Segmentation from `tomopick segment` (a folder of <run>.ome.zarr for "
                                               "several inputs): adds compartment_id, compartment_class, "
                                               "distance_to_membrane_A, membrane_gap_A, on_membrane (docs/segment.md)."),
    segment: bool = typer.Option(False, "--segment", help="Segment each tomogram first (membrane-10A) and add the "
                                                          "same context columns."),
    segment_model: Optional[str] = typer.Option(None, "--segment-model",
                                                help="With --segment: a segmentation checkpoint."),
    where: Optional[str] = typer.Option(None, "--where",
                                        help="Keep picks where this holds, e.g. \"distance_to_membrane_A < 40 and "
                                             "particle == 'ribosome'\" (columns, numbers, 'text', < <= > >= == !=, "
                                             "and/or/not, abs())."),
    mask: Optional[str] = typer.Option(None, "--mask",
                                       help="Allowed region: a mask volume (nonzero), or segmentation class(es) "
                                            "with --context/--segment, e.g. lumen or lumen,membrane."),
    prompt: Optional[List[str]] = typer.Option(
        None, "--prompt", "-p", help="Prompt file(s) from `tomopick prompt extract`, or a map (.mrc): pick every "
                                     "copy of that particle — by template matching + bootstrap on the CPU, or with "
                                     "a promptable --model (repeatable; see docs/prompt.md)."),
    stride: Optional[int] = typer.Option(None, "--stride", min=1, help="With --prompt: sliding-window step (voxels)."),
    radius: Optional[float] = typer.Option(None, "--radius", help="With --prompt: particle radius in Å."),
    prompt_gate: str = typer.Option("generalist-10A", "--prompt-gate",
                                    help="With --prompt (matching, no promptable --model): keep only hits where "
                                         "this class-agnostic detector sees an object (a bundled name or a "
                                         "checkpoint); 'none' turns it off."),
    prompt_classifier: str = typer.Option("czii-10A", "--prompt-classifier",
                                          help="With --prompt (matching): when this supervised picker gives the "
                                               "prompt and most of its best hits one class, drop hits at its picks "
                                               "of other classes; 'none' turns it off."),
    report_html: Optional[Path] = typer.Option(None, "--report",
                                               help="Also write an HTML report of the picks: slabs with the picks "
                                                    "drawn, galleries, score histograms (docs/report.md)."),
    workers: Optional[int] = typer.Option(None, "--workers", min=1,
                                          help="Batch on a local Dask cluster of N worker processes (default with "
                                               "other batch options: 1 on CPU, one per GPU); resumable: rerun the "
                                               "same command after a crash (docs/batch.md)."),
    scheduler: SchedulerOption = None,
    cluster: ClusterOption = None,
    cluster_config: ClusterConfigOption = None,
    retries: Optional[int] = typer.Option(None, "--retries", min=0, max=100,
                                          help="Batch: extra attempts for a run that fails (default 0)."),
) -> None:
    """Pick particles in tomograms with a trained 3D network; writes x, y, z in Å with a score per pick."""
    from tomopick.inference.ensemble import EnsembleSpec

    if model_weights is not None and len(model or []) < 2:
        raise TomopickError("--model-weights needs two or more --model (an ensemble)")
    model_arg = EnsembleSpec(model, model_weights) if len(model or []) > 1 else (model[0] if model else None)
    if report_html is not None:  # checked before any work
        if prompt:
            raise TomopickError("--report is not available with --prompt yet; run `tomopick report` on the picks")
        from tomopick.workflows.reporting import check_report_output

        check_report_output(report_html, overwrite)
    from tomopick.cli.batch import batch_asked

    batched = batch_asked(workers, scheduler, cluster, cluster_config, retries)
    if prompt and batched:
        raise TomopickError("--prompt picking does not run as a batch yet (--workers, --scheduler, --cluster)")
    if prompt:
        from tomopick.cli.prompt import pick_prompted

        if isinstance(model_arg, EnsembleSpec):
            raise TomopickError("--prompt picks with one promptable --model, not an ensemble")

        pick_prompted(inputs, prompt, out=out, model=model_arg, threshold=parse_thresholds(threshold),
                      peak_method=peak_method, distance=distance, roi=parse_roi(roi),
                      stride=stride, overlap=overlap,
                      batch_size=batch_size, device=device, threads=threads, voxel_size=voxel_size,
                      allow_nonfinite=allow_nonfinite, save_scores=save_scores, picks_format=picks_format,
                      radius=radius, tta=tta, overwrite=overwrite, quiet=quiet,
                      gate=None if prompt_gate.lower() == "none" else prompt_gate,
                      classifier=None if prompt_classifier.lower() == "none" else prompt_classifier)
        return
    from tomopick.inference.options import PickOptions
    from tomopick.workflows.pick import pick as run_pick

    # every option is checked here, before torch or the model is loaded
    options = PickOptions.make(threshold=parse_thresholds(threshold), threshold_rule=threshold_rule, score=score,
                               peak_method=peak_method, distance_factor=distance, tta=4 if tta else 1,
                               overlap=overlap, batch_size=batch_size, device=device, mode=mode,
                               roi_size=parse_roi(roi), voxel_size_A=voxel_size, allow_nonfinite=allow_nonfinite,
                               threads=threads, skip_vacuum=skip_vacuum, adapt_norm=adapt_norm,
                               **({} if precision is None else {"precision": precision}))
    if batched:
        from tomopick.cli.batch import pick_batch

        unsupported = [name for name, value in (("--report", report_html), ("--context", context),
                                                ("--segment", segment), ("--where", where), ("--mask", mask)) if value]
        if unsupported:
            raise TomopickError(f"{', '.join(unsupported)}: not available with --workers/--scheduler/--cluster yet")
        pick_batch(inputs, model_arg, options=options, out=out, save_scores=save_scores, overwrite=overwrite,
                   picks_format=picks_format, quiet=quiet, workers=workers, scheduler=scheduler, cluster=cluster,
                   cluster_config=cluster_config, retries=retries)
        return
    from tomopick.workflows.segment import pick_context_from_cli

    pick_context, mask_array = pick_context_from_cli(context=context, segment=segment, segment_model=segment_model,
                                                     where=where, mask=mask)
    lines: list[str] = []
    with window_progress(quiet) as progress:
        report = run_pick(inputs, model_arg, options=options, out=out, save_scores=save_scores, overwrite=overwrite,
                          picks_format=picks_format, progress=progress, log=lines.append, context=pick_context,
                          mask=mask_array)
    if isinstance(model_arg, EnsembleSpec):  # its "checkpoint" thresholds: the members' weighted mean
        typer.echo("ensemble: " + ", ".join(f"{m} (weight {w:.3g})" for m, w in zip(model_arg.models,
                                                                                    model_arg.weights)))
    for line in lines:
        typer.echo(line)
    if report.runs:
        from tomopick.inference.sliding import describe_precision

        typer.echo(f"network arithmetic: {describe_precision(options.precision, options.device)}")
    for summary in report.runs:
        counts = ", ".join(f"{k} {v}" for k, v in summary.get("counts", {}).items()) or "no classes"
        note = f" ({summary['note']})" if summary.get("note") else ""
        typer.echo(f"{summary['run'] or summary.get('input')}: {counts}; {summary.get('seconds', 0):.1f} s{note}")
    typer.echo(f"{len(report.picks)} picks written to {', '.join(report.outputs)}")
    if report_html is not None:
        from tomopick.workflows.report import report_of_pick
        from tomopick.workflows.reporting import command_line

        made = report_of_pick(report, inputs, model_arg, out=report_html, command=command_line(),
                              voxel_size_A=voxel_size, overwrite=overwrite)
        typer.echo(f"report written to {made.path} ({made.size_bytes / 1e6:.1f} MB)")


def register(app: typer.Typer) -> None:
    app.command("pick")(pick)
