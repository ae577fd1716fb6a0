"""``segment()``: tomograms → membrane / lumen / gold / carbon label images, compartment instances and a
per-instance table (the verb behind ``tomopick segment``); and the context that ``tomopick pick --context /
--segment / --where / --mask CLASS`` adds to picks (:class:`PickContext`).

Outputs of one tomogram ``--out seg.zarr`` (or ``seg.ome.zarr``, or ``seg.mrc``):

* ``seg.zarr``: an OME-Zarr NGFF label image (uint8, one level, ``image-label`` metadata naming the classes) of
  the classes 0 background, 1 membrane, 2 lumen, 3 gold, 4 carbon — or, with ``only="membrane"``, a 0/1 mask of
  that class (what other tools take as a mask); MRC (uint8) when the name ends in ``.mrc``;
* ``seg_instances.zarr`` (``seg_instances.mrc``): int32 (MRC: uint16) compartment ids;
* ``seg_instances.csv``: one row per compartment (id, kind, voxels, volume Å³, lumen volume, surface area Å²,
  centre x, y, z in Å, mean radius Å).

Several inputs: ``--out`` is a folder, one ``<run>.ome.zarr`` (+ instances, table) per input.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from tomopick.data import ParticleSet, Picks, Tomogram
from tomopick.errors import TomopickError
from tomopick.io import check_output, read_tomogram, write_tomogram
from tomopick.io.atomic import atomic_output
from tomopick.io.inputs import expand_inputs, run_name
from tomopick.segment import (
    CLASS_NAMES, SEGMENT_CLASSES, ContextOptions, SegmentOptions, Segmentation, WhereError, class_id,
    instance_table, label_instances, parse_where, pick_context, where_mask,
)

DEFAULT_SEGMENT_MODEL = "membrane-10A"
LABEL_COLOURS = {0: [0, 0, 0, 0], 1: [255, 200, 0, 255], 2: [0, 120, 255, 128], 3: [255, 0, 0, 255],
                 4: [120, 120, 120, 255]}


@dataclass
class SegmentReport:
    """What :func:`segment` did: per input the summary and the files written."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    segmentations: list[Segmentation] = field(default_factory=list)


def resolve_segment_model(model: Any | None):
    """A loaded segmentation model from a path, a loaded model, or ``None`` (the bundled ``membrane-10A``)."""
    from tomopick.models.checkpoint import LoadedModel, load_checkpoint

    if isinstance(model, LoadedModel):
        return model
    if model is None:
        from tomopick.models.bundled import load_bundled

        return load_bundled(DEFAULT_SEGMENT_MODEL)
    return load_checkpoint(model)


def _names(out: str) -> tuple[str, str]:
    """``(kind, stem)`` of an output: ``zarr`` or ``mrc`` and the path without its extension."""
    low = out.lower().rstrip("/")
    for ext, kind in ((".ome.zarr", "zarr"), (".zarr", "zarr"), (".mrc", "mrc")):
        if low.endswith(ext):
            return kind, out.rstrip("/")[: -len(ext)]
    raise TomopickError("--out must end in .zarr, .ome.zarr or .mrc (or be a folder for several inputs)", out)


def output_paths(out: str) -> dict[str, Path]:
    """The label image, instance image and table paths of one output name."""
    kind, stem = _names(out)
    ext = ".mrc" if kind == "mrc" else (".ome.zarr" if out.lower().rstrip("/").endswith(".ome.zarr") else ".zarr")
    return {"labels": Path(out.rstrip("/")), "instances": Path(f"{stem}_instances{ext}"),
            "table": Path(f"{stem}_instances.csv"), "kind": Path(kind)}


def _label_attrs(only: int | None) -> dict[str, Any]:
    values = [0, 1] if only is not None else sorted(CLASS_NAMES)
    props = ([{"label-value": 0, "name": "other"}, {"label-value": 1, "name": CLASS_NAMES[only]}] if only is not None
             else [{"label-value": v, "name": CLASS_NAMES[v]} for v in values])
    colours = [{"label-value": v, "rgba": LABEL_COLOURS[only if (only is not None and v == 1) else v]}
               for v in values]
    return {"image-label": {"version": "0.4", "colors": colours, "properties": props,
                            "source": {"image": "the segmented tomogram"}},
            "tomopick": {"segment_classes": SEGMENT_CLASSES}}


def write_segmentation(seg: Segmentation, out: str, *, only: str | None = None, overwrite: bool = False,
                       origin_xyz_A: Sequence[float] = (0.0, 0.0, 0.0)) -> list[str]:
    """Write a :class:`~tomopick.segment.Segmentation`: labels (or a 0/1 mask of ``only``), instances, table."""
    paths = output_paths(out)
    kind = str(paths["kind"])
    only_id = None if only is None else class_id(only)
    labels = seg.classes if only_id is None else (seg.classes == only_id).astype(np.uint8)
    vs = float(seg.voxel_size_A)
    written = []
    if kind == "mrc":
        write_tomogram(Tomogram(labels, (vs, vs, vs)), paths["labels"], overwrite=overwrite)
        written.append(str(paths["labels"]))
        if only_id is None:
            if seg.instances.max() > np.iinfo(np.uint16).max:
                raise TomopickError("more than 65535 instances: write OME-Zarr (.zarr) instead of MRC", out)
            write_tomogram(Tomogram(seg.instances.astype(np.uint16), (vs, vs, vs)), paths["instances"],
                           overwrite=overwrite)
            written.append(str(paths["instances"]))
    else:
        write_tomogram(Tomogram(labels, (vs, vs, vs)), paths["labels"], overwrite=overwrite, levels=1,
                       dtype="uint8", attrs=_label_attrs(only_id))
        written.append(str(paths["labels"]))
        if only_id is None:
            attrs = {"image-label": {"version": "0.4", "source": {"image": "the segmented tomogram"}}}
            write_tomogram(Tomogram(seg.instances, (vs, vs, vs)), paths["instances"], overwrite=overwrite,
                           levels=1, dtype="int32", attrs=attrs)
            written.append(str(paths["instances"]))
    if only_id is None:
        table = instance_table(seg.classes, seg.instances, vs, origin_A=origin_xyz_A)
        with atomic_output(paths["table"], overwrite=overwrite) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
        written.append(str(paths["table"]))
    return written


def segment(inputs: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], model: Any | None = None, *,
            out: str | os.PathLike[str] | None = None, options: SegmentOptions | None = None,
            only: str | None = None, overwrite: bool = False,
            progress: Callable[[str, int, int], None] | None = None) -> SegmentReport:
    """Segment tomograms with a segmentation network.

    Parameters
    ----------
    inputs
        Tomogram path(s) / URI(s).
    model
        Segmentation checkpoint, a loaded model, or ``None`` for the bundled ``membrane-10A``.
    out
        One input: ``seg.zarr`` / ``seg.ome.zarr`` / ``seg.mrc``; several: a folder (``<run>.ome.zarr`` each).
        ``None``: return the segmentations without writing.
    options
        :class:`~tomopick.segment.SegmentOptions`.
    only
        Write a 0/1 mask of this class (``membrane``, ``lumen``, ``gold``, ``carbon``) instead of all labels (no
        instances or table then).

    Every input is opened and every output checked before the model is loaded.
    """
    options = options or SegmentOptions()
    if only is not None:
        try:
            class_id(only)
        except ValueError as exc:
            raise TomopickError(f"--only: {exc}") from None
    items = expand_inputs([inputs] if isinstance(inputs, (str, os.PathLike)) else list(inputs))
    runs = [run_name(i) for i in items]
    if len(set(runs)) != len(runs):
        raise TomopickError(f"several inputs share a run name ({', '.join(sorted(set(runs)))}); rename them")
    targets: dict[str, str] = {}
    if out is not None:
        out_text = str(out)
        # one input: a file name, or a .zarr store (an existing one is replaced with --overwrite, not written into)
        is_store = out_text.lower().endswith((".zarr", ".mrc"))
        if len(items) == 1 and not out_text.endswith(("/", os.sep)) and (is_store or not Path(out_text).is_dir()):
            targets[runs[0]] = out_text
        else:
            targets = {r: str(Path(out_text) / f"{r}.ome.zarr") for r in runs}
        for target in targets.values():
            paths = output_paths(target)
            directory = str(paths["kind"]) == "zarr"
            check_output(paths["labels"], overwrite, directory=directory)
            if only is None:
                check_output(paths["instances"], overwrite, directory=directory)
                check_output(paths["table"], overwrite, directory=False)
    read_options = {"voxel_size_A": options.voxel_size_A} if options.voxel_size_A is not None else {}
    tomograms = [read_tomogram(item, **read_options) for item in items]
    loaded = resolve_segment_model(model)
    from tomopick.segment.predict import segment_tomogram

    report = SegmentReport()
    for item, run, tomo in zip(items, runs, tomograms):
        seg = segment_tomogram(tomo, loaded, options,
                               progress=None if progress is None else (lambda d, t, r=run: progress(r, d, t)))
        seg.summary.update(run=run, input=str(item))
        if run in targets:
            report.outputs += write_segmentation(seg, targets[run], only=only, overwrite=overwrite,
                                                 origin_xyz_A=tuple(getattr(tomo, "origin_xyz_A", (0, 0, 0))))
        report.runs.append(seg.summary)
        report.segmentations.append(seg)
    return report


# -- context for picks ----------------------------------------------------------------------------------------
def read_segmentation(path: str | os.PathLike[str], *, expect_shape: Sequence[int] | None = None,
                      voxel_size_A: float | None = None, min_lumen_A3: float = 4.0e5) -> Segmentation:
    """A segmentation written by :func:`segment` (or any uint8 label volume with the same class ids): classes,
    and instances from the ``_instances`` file beside it, else recomputed."""
    tomo = read_tomogram(path)
    classes = np.asarray(tomo.data)
    if classes.dtype.kind not in "iu" or (classes.size and int(classes.max()) > max(CLASS_NAMES)):
        raise TomopickError(f"not a segmentation label image (integer class ids 0-{max(CLASS_NAMES)} expected)",
                            path)
    classes = classes.astype(np.uint8)
    if expect_shape is not None and tuple(classes.shape) != tuple(expect_shape):
        raise TomopickError(f"segmentation shape {tuple(classes.shape)} differs from the tomogram's "
                            f"{tuple(expect_shape)}", path)
    vs = float(np.mean(tomo.voxel_size_A)) if voxel_size_A is None else float(voxel_size_A)
    inst = None
    try:
        side = output_paths(str(path))["instances"]
    except TomopickError:
        side = None
    if side is not None and side.exists():
        inst = np.asarray(read_tomogram(side).data).astype(np.int32)
        if inst.shape != classes.shape:
            inst = None
    if inst is None:
        inst = label_instances(classes, vs, min_lumen_A3=min_lumen_A3)
    return Segmentation(classes, inst, vs, {"source": str(path)})


def _segmentation_file(context: str, run: str, n_inputs: int) -> str:
    p = Path(context)
    if p.is_dir() and not (p / ".zattrs").exists() and not (p / ".zarray").exists():
        for name in (f"{run}.ome.zarr", f"{run}.zarr", f"{run}.mrc"):
            if (p / name).exists():
                return str(p / name)
        raise TomopickError(f"no segmentation for run {run} in the folder (expected {run}.ome.zarr or {run}.mrc)",
                            context)
    if n_inputs > 1:
        raise TomopickError("--context names one segmentation but several tomograms are picked; pass a folder "
                            "of <run>.ome.zarr segmentations (tomopick segment ... --out FOLDER/)", context)
    if not p.exists():
        raise TomopickError("segmentation not found", context)
    return context


@dataclass
class PickContext:
    """Context for ``tomopick pick``: where the segmentation comes from, the ``--where`` filter, the mask class.

    Attributes
    ----------
    context
        A segmentation file (one input) or a folder of ``<run>.ome.zarr`` segmentations; ``None`` with
        ``segment=True``.
    segment
        Segment each tomogram with ``segment_model`` first (``tomopick pick --segment``).
    where
        A filter over the pick columns (:func:`tomopick.segment.parse_where`).
    mask_classes
        Segmentation classes picks must lie in (``--mask lumen``).
    save
        With ``segment``: where to write each run's segmentation (a folder), or None.
    """

    context: str | None = None
    segment: bool = False
    segment_model: Any | None = None
    where: str | None = None
    mask_classes: list[int] | None = None
    options: ContextOptions = field(default_factory=ContextOptions)
    segment_options: SegmentOptions = field(default_factory=SegmentOptions)
    _loaded: Any = None

    @classmethod
    def make(cls, *, context: str | None = None, segment: bool = False, segment_model: Any | None = None,
             where: str | None = None, mask: str | None = None) -> "PickContext | None":
        """Validated context settings (``None`` when nothing asks for context); errors name the CLI option."""
        if where is not None:
            try:
                parse_where(where)
            except WhereError as exc:
                raise TomopickError(f"--where: {exc}") from None
        mask_classes = None
        if mask is not None:
            try:
                mask_classes = [class_id(m) for m in str(mask).split(",") if m.strip()]
            except ValueError as exc:
                raise TomopickError(f"--mask: {exc}") from None
        if context is not None and segment:
            raise TomopickError("give --context SEG or --segment, not both")
        if (where is not None or mask_classes) and context is None and not segment:
            raise TomopickError("--where and --mask CLASS need a segmentation: add --context SEG or --segment")
        if context is None and not segment:
            return None
        return cls(context=context, segment=segment, segment_model=segment_model, where=where,
                   mask_classes=mask_classes)

    @staticmethod
    def is_class_mask(value: str | None) -> bool:
        """Whether a ``--mask`` value names segmentation classes rather than a mask file."""
        if value is None:
            return False
        try:
            return all(class_id(v) is not None for v in str(value).split(",") if v.strip())
        except ValueError:
            return False

    def check(self, runs: Sequence[str]) -> None:
        """Resolve every run's segmentation file before any work."""
        if self.context is not None:
            for run in runs:
                _segmentation_file(self.context, run, len(runs))

    def prepare(self, tomogram: Tomogram, run: str, n_inputs: int) -> Segmentation:
        """The segmentation of one tomogram: read (``--context``) or computed (``--segment``)."""
        if self.context is not None:
            return read_segmentation(_segmentation_file(self.context, run, n_inputs), expect_shape=tomogram.shape,
                                     voxel_size_A=float(np.mean(tomogram.voxel_size_A)))
        from tomopick.segment.predict import segment_tomogram

        if self._loaded is None:
            self._loaded = resolve_segment_model(self.segment_model)
        return segment_tomogram(tomogram, self._loaded, self.segment_options)

    def mask(self, seg: Segmentation) -> np.ndarray | None:
        """Boolean ``(z, y, x)`` of the ``--mask`` classes, or None."""
        if not self.mask_classes:
            return None
        return np.isin(seg.classes, self.mask_classes)

    def apply(self, picks: Picks, seg: Segmentation, particles: ParticleSet | None = None) -> Picks:
        """Picks with the context columns, filtered by ``--where``."""
        options = self.options
        if particles is not None and not options.radii_A:
            options = options.model_copy(update={"radii_A": {p.name: float(p.radius_A) for p in particles}})
        out = pick_context(picks, seg.classes, seg.instances, seg.voxel_size_A, options)
        if self.where and len(out):
            try:
                out = out.select(where_mask(out, self.where))
            except WhereError as exc:
                raise TomopickError(f"--where: {exc}") from None
        return out


def read_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """A mask volume (any tomogram format; nonzero = allowed) as a boolean ``(z, y, x)`` array."""
    tomo = read_tomogram(path)
    return np.asarray(tomo.data) != 0


def pick_context_from_cli(*, context: str | None, segment: bool, segment_model: str | None, where: str | None,
                          mask: str | None) -> tuple["PickContext | None", np.ndarray | None]:
    """``tomopick pick``'s ``--context/--segment/--segment-model/--where/--mask`` as a :class:`PickContext` and a
    mask array (``--mask FILE``; ``--mask CLASS[,CLASS]`` goes into the context)."""
    class_mask = PickContext.is_class_mask(mask)
    if segment_model is not None and not segment:
        raise TomopickError("--segment-model needs --segment")
    ctx = PickContext.make(context=context, segment=segment, segment_model=segment_model, where=where,
                           mask=mask if class_mask else None)
    array = None
    if mask is not None and not class_mask:
        if not Path(mask).exists():
            raise TomopickError("mask not found (give a mask volume, or a class: membrane, lumen, gold, carbon, "
                                "background with --context/--segment)", mask)
        array = read_mask(mask)
    return ctx, array


# -- SAM2 backend -------------------------------------------------------------------------------------------------
def segment_sam2(tomogram: Tomogram, *, config: str, checkpoint: str | os.PathLike[str], device: str = "cpu",
                 prompt_instances: np.ndarray | None = None) -> Segmentation:
    """Segment organelles with SAM2's video predictor (slice-wise, propagated in z) from local weights.

    ``config`` is a sam2 model config name (e.g. ``configs/sam2.1/sam2.1_hiera_t.yaml``) and ``checkpoint`` its
    weights file; prompts are ``prompt_instances`` on the central slice (e.g. membrane-10A's compartments) or, without
    them, SAM2's automatic mask generator on that slice. The z-slices are written as JPEG frames to a temporary
    folder for sam2 to read. Not run in tomopick's own tests (sam2 needs torchvision; see docs/segment.md).
    """
    import shutil
    import tempfile

    from tomopick.segment import sam2 as backend

    backend.require_sam2()
    if not Path(checkpoint).is_file():
        raise TomopickError("SAM2 checkpoint not found", checkpoint)
    from PIL import Image
    from sam2.build_sam import build_sam2, build_sam2_video_predictor

    volume = np.asarray(tomogram.data, dtype=np.float32)
    frames = backend.slices_to_frames(volume)
    ref = backend.reference_frame(len(frames))
    tmp = tempfile.mkdtemp(prefix="tomopick-sam2-")
    try:
        for i, rgb in enumerate(frames):
            Image.fromarray(rgb).save(os.path.join(tmp, f"{i:05d}.jpg"), quality=95)
        if prompt_instances is not None:
            prompts = backend.prompts_from_labels(prompt_instances, ref)
        else:
            from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

            generator = SAM2AutomaticMaskGenerator(build_sam2(config, str(checkpoint), device=device))
            prompts = backend.prompts_from_generator(generator, frames[ref])
        predictor = build_sam2_video_predictor(config, str(checkpoint), device=device)
        instances = backend.propagate(predictor, tmp, len(frames), volume.shape[1:], prompts, ref)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    classes = backend.instances_to_classes(instances)
    vs = float(np.mean(tomogram.voxel_size_A))
    return Segmentation(classes, instances, vs, {"backend": "sam2", "config": config, "checkpoint": str(checkpoint),
                                                 "prompts": len(prompts), "reference_frame": ref})


def segment_sam2_files(inputs: Sequence[str], *, out: str, config: str, checkpoint: str, device: str = "cpu",
                       only: str | None = None, overwrite: bool = False) -> list[str]:
    """``tomopick segment --sam2-config C --sam2-checkpoint W``: one input, SAM2 prompts from its automatic mask
    generator, written like :func:`segment`'s output."""
    from tomopick.segment import sam2 as backend

    items = expand_inputs(list(inputs))
    if len(items) != 1:
        raise TomopickError("the SAM2 backend segments one tomogram at a time")
    paths = output_paths(out)
    check_output(paths["labels"], overwrite, directory=str(paths["kind"]) == "zarr")
    backend.require_sam2()
    tomo = read_tomogram(items[0])
    seg = segment_sam2(tomo, config=config, checkpoint=checkpoint, device=device)
    return write_segmentation(seg, out, only=only, overwrite=overwrite)
