"""``tomopick segment TOMO... --out seg.zarr``: membranes, lumens, gold and carbon as label images + instances."""

from __future__ import annotations

from typing import List, Optional

import typer


def segment(
    inputs: List[str] = typer.Argument(..., metavar="TOMO...", help="Tomograms: MRC, OME-Zarr, or copick://…"),
    out: str = typer.Option(..., "--out", "-o",
                            help="seg.zarr / seg.ome.zarr (OME-Zarr label image) or seg.mrc; a folder for several "
                                 "inputs. Instances go to <name>_instances.*, the table to <name>_instances.csv."),
    model: Optional[str] = typer.Option(None, "--model", "-m",
                                        help="Segmentation checkpoint (default: the bundled membrane-10A)."),
    only: Optional[str] = typer.Option(None, "--only",
                                       help="Write a 0/1 mask of one class (membrane | lumen | gold | carbon)."),
    tta: Optional[bool] = typer.Option(None, "--tta/--no-tta",
                                       help="--tta: average over 4 flips; --no-tta: one pass (default: the model's "
                                            "stored setting; docs/segment.md)."),
    no_fill: bool = typer.Option(False, "--no-fill", help="Do not complete lumens inside membrane rings."),
    prior_correction: Optional[float] = typer.Option(
        None, "--prior-correction",
        help="Undo the class weights the model was trained with before the argmax: 0 (plain argmax) to 1 (default: "
             "the model's setting, else 0; docs/segment.md)."),
    roi: Optional[str] = typer.Option(None, "--roi", help="Window Z,Y,X in voxels (default: the model's stored plan, "
                                                          "else 96,256,256)."),
    overlap: Optional[float] = typer.Option(None, "--overlap", help="Share of each window kept as context (default: "
                                                                    "the model's plan, else 0.125)."),
    device: str = typer.Option("cpu", "--device", help="cpu | cuda."),
    precision: str = typer.Option("auto", "--precision", help="CPU arithmetic of the network: fp32 | bf16 | auto "
                                                              "(bf16 where the CPU has it natively)."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="CPU threads."),
    voxel_size: Optional[float] = typer.Option(None, "--voxel-size", help="Override the inputs' voxel size (Å)."),
    allow_nonfinite: bool = typer.Option(False, "--allow-nonfinite", help="Treat NaN/Inf voxels as background."),
    adapt_norm: Optional[float] = typer.Option(
        None, "--adapt-norm", help="Adapt the network's batch-norm statistics to each tomogram: 0 (off) to 1 "
                                   "(default: the model's setting, else 0)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing outputs."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
    sam2_config: Optional[str] = typer.Option(None, "--sam2-config",
                                              help="Segment with SAM2 instead (tomopick[sam2]): the sam2 model config, "
                                                   "e.g. configs/sam2.1/sam2.1_hiera_t.yaml."),
    sam2_checkpoint: Optional[str] = typer.Option(None, "--sam2-checkpoint",
                                                  help="With --sam2-config: the local SAM2 weights file."),
) -> None:
    """Segment membranes (lipid bilayers), lumens, gold and carbon; number each vesicle / organelle
    (docs/segment.md)."""
    from pydantic import ValidationError

    from tomopick.cli.pick import parse_roi, window_progress
    from tomopick.errors import TomopickError
    from tomopick.inference.options import option_error
    from tomopick.segment.predict import SegmentOptions
    from tomopick.workflows.segment import segment as run_segment

    try:
        passes = None if tta is None else (4 if tta else 1)  # None: the model's stored setting
        options = SegmentOptions(tta=passes, fill_lumen=not no_fill, prior_correction=prior_correction,
                                 device=device, roi_size=parse_roi(roi), overlap=overlap, precision=precision,
                                 voxel_size_A=voxel_size, allow_nonfinite=allow_nonfinite, adapt_norm=adapt_norm)
    except ValidationError as exc:
        raise option_error(exc) from None
    if (sam2_config is None) != (sam2_checkpoint is None):
        raise TomopickError("--sam2-config and --sam2-checkpoint go together: name both")
    if sam2_config is not None:
        from tomopick.workflows.segment import segment_sam2_files

        written = segment_sam2_files(inputs, out=out, config=sam2_config, checkpoint=sam2_checkpoint, device=device,
                                     only=only, overwrite=overwrite)
        typer.echo(f"written: {', '.join(written)}")
        return
    if threads is not None:
        import torch

        torch.set_num_threads(int(threads))
    with window_progress(quiet) as progress:
        report = run_segment(inputs, model, out=out, options=options, only=only, overwrite=overwrite,
                             progress=progress)
    for s in report.runs:
        voxels = s.get("voxels", {})
        total = max(1, sum(voxels.values()))
        shares = ", ".join(f"{k} {100.0 * v / total:.1f}%" for k, v in voxels.items() if k != "background")
        typer.echo(f"{s.get('run') or s.get('input')}: {s.get('instances', 0)} compartments; {shares}; "
                   f"{s.get('seconds', 0):.1f} s")
    typer.echo(f"written: {', '.join(report.outputs)}")


def register(app: typer.Typer) -> None:
    app.command("segment")(segment)
