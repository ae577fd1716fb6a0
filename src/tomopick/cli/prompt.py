"""``tomopick prompt extract|train`` and ``tomopick finetune``: the promptable picker's commands.

(``tomopick pick --prompt P TOMO`` lives in :mod:`tomopick.cli.pick` and calls
:func:`tomopick.workflows.prompt.pick_with_prompts`.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional

import typer

from tomopick.errors import TomopickError

prompt_app = typer.Typer(name="prompt", help="Promptable picking: cut prompts from tomograms, train the model.",
                         no_args_is_help=True)


def _parse_xyz(text: str) -> tuple[float, float, float]:
    parts = [p for p in text.replace(" ", "").split(",") if p]
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3:
        raise TomopickError(f"--at expects x,y,z (three numbers separated by commas), got {text!r}")
    return values  # type: ignore[return-value]


@prompt_app.command("extract")
def extract(
    tomogram: str = typer.Argument(..., help="Tomogram to cut the prompt from (MRC, OME-Zarr, copick URI …)."),
    at: str = typer.Option(..., "--at", help="Particle position x,y,z in Å (origin at the centre of voxel 0), "
                                             "or voxel indices x,y,z with --voxels."),
    out: Path = typer.Option(..., "--out", "-o", help="Prompt file to write (.npz)."),
    size: int = typer.Option(37, "--size", help="Box edge in voxels (of --voxel-size)."),
    voxel_size: float = typer.Option(10.0, "--voxel-size", help="Voxel size of the prompt in Å (the model's)."),
    particle: str = typer.Option("", "--particle", help="Particle name for picks made with it (default: file stem)."),
    radius: Optional[float] = typer.Option(None, "--radius", help="Particle radius in Å (used when picking)."),
    voxels: bool = typer.Option(False, "--voxels", help="--at is in voxel indices x,y,z of the tomogram."),
    tomogram_voxel_size: Optional[float] = typer.Option(None, "--tomogram-voxel-size",
                                                        help="Override the tomogram's header voxel size (Å)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing prompt file."),
) -> None:
    """Cut a prompt (a small sub-tomogram around one particle) for `tomopick pick --prompt`."""
    from tomopick.workflows.prompt import extract_prompt

    path = extract_prompt(tomogram, _parse_xyz(at), out, size=size, voxel_size_A=voxel_size, particle=particle,
                          radius_A=radius, at_voxels=voxels, overwrite=overwrite,
                          tomogram_voxel_size_A=tomogram_voxel_size)
    typer.echo(f"wrote {path} ({size}³ voxels at {voxel_size:g} Å)")


@prompt_app.command("train")
def train(
    config: Path = typer.Argument(..., help="Training recipe (YAML), e.g. configs/prompt-10A.yaml."),
    out: Path = typer.Option(..., "--out", "-o", help="Checkpoint to write (.pt)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing checkpoint."),
    device: str = typer.Option("cpu", "--device", help="torch device (cpu, cuda)."),
) -> None:
    """Train a promptable model on simulated data (encoder by metric learning, then the FiLM U-Net)."""
    from tomopick.workflows.prompt import train_promptable

    result = train_promptable(config, out, overwrite=overwrite, device=device, progress=typer.echo)
    typer.echo(f"wrote {result}")


def finetune(
    inputs: List[str] = typer.Argument(..., metavar="DATA...",
                                       help="Supervised: a copick project or a folder of tomograms + pick files "
                                            "(matched by stem). With --prompt: the labelled tomogram(s)."),
    out: Path = typer.Option(..., "--out", "-o",
                             help="Supervised: output folder (best.pt, last.pt, metrics.csv). With --prompt: the "
                                  "checkpoint (.pt)."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Checkpoint to start from (default: the bundled czii-10A, or the "
                                             "bundled promptable model with --prompt)."),
    prompt: Optional[List[str]] = typer.Option(None, "--prompt", "-p",
                                               help="Fine-tune the promptable segmenter for this particle (prompt "
                                                    "file, repeatable) instead of a supervised checkpoint."),
    picks: Optional[str] = typer.Option(None, "--picks", help="With --prompt: picks of that particle (any format)."),
    steps: int = typer.Option(200, "--steps", min=1, help="Optimiser steps."),
    lr: float = typer.Option(3e-4, "--lr", help="Learning rate."),
    freeze_encoder: bool = typer.Option(False, "--freeze-encoder", help="Supervised: train the decoder only."),
    val_runs: Optional[str] = typer.Option(None, "--val-runs",
                                           help="Supervised: comma-separated runs to validate on (their per-class "
                                                "thresholds are stored); default: none, the checkpoint's are kept."),
    user_id: Optional[str] = typer.Option("curation", "--user-id", help="Supervised: copick user of the picks."),
    max_minutes: Optional[float] = typer.Option(None, "--max-minutes", help="Supervised: wall-clock budget."),
    patch: int = typer.Option(48, "--patch", help="With --prompt: training sub-volume edge (voxels)."),
    radius: Optional[float] = typer.Option(None, "--radius", help="With --prompt: particle radius in Å."),
    seed: int = typer.Option(0, "--seed", help="With --prompt: random seed."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the tomograms' voxel size (Å)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
) -> None:
    """Fine-tune a checkpoint on a few annotated tomograms: a supervised picker (default; its own recipe, started
    from its weights — docs/training.md) or, with --prompt, the promptable segmenter (prompt and encoder frozen)."""
    if not prompt:
        from tomopick.workflows.train import finetune_config, train as run_train

        if len(inputs) != 1:
            raise TomopickError("supervised fine-tuning takes one DATA (a copick project or a folder of tomograms "
                                "and pick files)")
        if picks is not None:
            raise TomopickError("--picks goes with --prompt; a supervised DATA folder or project holds its picks")
        runs = [r.strip() for r in (val_runs or "").split(",") if r.strip()]
        cfg = finetune_config(model, inputs[0], steps=steps, lr=lr, freeze_encoder=freeze_encoder, user_id=user_id,
                              val_runs=runs or None, max_minutes=max_minutes)
        result = run_train(cfg, out, overwrite=overwrite, progress=True, log=typer.echo)
        typer.echo(f"fine-tuned {result.steps} steps ({result.time_s:.0f} s); model: {result.best_checkpoint}")
        return
    if picks is None:
        raise TomopickError("--prompt needs --picks (the particle's picks in those tomograms)")
    from tomopick.workflows.prompt import finetune as run_finetune

    path = run_finetune(inputs, prompt, picks, out, model, steps=steps, patch=patch, lr=lr, radius_A=radius,
                        seed=seed, voxel_size_A=voxel_size, overwrite=overwrite, progress=typer.echo)
    typer.echo(f"wrote {path}")


def pick_prompted(inputs: List[str], prompts: List[str], *, out: str, model: Optional[str],
                  threshold: float | dict[str, float] | None, peak_method: Optional[str], distance: Optional[float],
                  roi: tuple[int, int, int] | None, stride: Optional[int], overlap: Optional[float],
                  batch_size: Optional[int], device: str, threads: Optional[int], voxel_size: Optional[float],
                  allow_nonfinite: bool, save_scores: Optional[Path], picks_format: Optional[str],
                  radius: Optional[float], tta: bool, overwrite: bool, quiet: bool,
                  gate: Optional[str] = "generalist-10A", classifier: Optional[str] = "czii-10A") -> None:
    """``tomopick pick --prompt P …``: the options of ``tomopick pick`` mapped onto
    :func:`tomopick.workflows.prompt.pick_with_prompts` when a promptable ``--model`` is given, else onto
    :func:`tomopick.workflows.prompt_match.pick_with_prompt_matching` (template matching + bootstrap, no network;
    called by :mod:`tomopick.cli.pick`)."""
    if model is None:
        _pick_by_matching(inputs, prompts, out=out, threshold=threshold, distance=distance, device=device,
                          threads=threads, voxel_size=voxel_size, picks_format=picks_format, radius=radius,
                          overwrite=overwrite, quiet=quiet, tta=tta, peak_method=peak_method, roi=roi, stride=stride,
                          save_scores=save_scores, gate=gate, classifier=classifier)
        return
    from tomopick.workflows.prompt import pick_with_prompts

    if tta:
        raise TomopickError("--tta is not supported with --prompt")
    # defaults (window 64³, stride from --overlap else half the window, batch 2, threshold 0.5, cc) are the
    # workflow's: options not given pass through as None
    picks = pick_with_prompts(
        inputs, prompts, model, out=out, method=peak_method, threshold=threshold,
        distance_factor=distance, roi=roi, stride=stride, overlap=overlap, batch_size=batch_size, radius_A=radius,
        overwrite=overwrite, voxel_size_A=voxel_size, maps_out=save_scores, device=device, threads=threads,
        picks_format=picks_format, allow_nonfinite=allow_nonfinite, progress=None if quiet else typer.echo)
    typer.echo(f"{len(picks)} picks written to {out}")


def _pick_by_matching(inputs: List[str], prompts: List[str], *, out: str,
                      threshold: float | dict[str, float] | None, distance: Optional[float], device: str,
                      threads: Optional[int], voxel_size: Optional[float], picks_format: Optional[str],
                      radius: Optional[float], overwrite: bool, quiet: bool, tta: bool, peak_method: Optional[str],
                      roi: Any, stride: Optional[int], save_scores: Optional[Path],
                      gate: Optional[str] = "generalist-10A", classifier: Optional[str] = "czii-10A") -> None:
    """``--prompt`` without a promptable ``--model``: template matching with the prompt, then bootstrap rounds."""
    from tomopick.cli.match import rotation_progress
    from tomopick.workflows.prompt_match import pick_with_prompt_matching

    unsupported = {"--tta": tta, "--peak-method": peak_method, "--roi": roi, "--stride": stride,
                   "--save-scores": save_scores}
    given = [k for k, v in unsupported.items() if v]
    if given:
        raise TomopickError(f"{', '.join(given)}: only with a promptable --model (prompt matching uses its own "
                            "search; see docs/prompt.md)")
    if isinstance(threshold, dict):
        raise TomopickError("--threshold: give one correlation value with prompt matching (not CLASS=VALUE)")
    with rotation_progress(quiet) as progress:
        report = pick_with_prompt_matching(inputs, prompts, out=out, radius_A=radius, threshold=threshold,
                                           distance_factor=distance, voxel_size_A=voxel_size, device=device,
                                           threads=threads, picks_format=picks_format, overwrite=overwrite,
                                           object_gate=gate, classifier=classifier, progress=progress,
                                           log=typer.echo)
    typer.echo(f"{len(report.picks)} picks written to {', '.join(report.outputs)}")


def register(app: typer.Typer) -> None:
    app.add_typer(prompt_app, name="prompt")
    app.command("finetune")(finetune)
