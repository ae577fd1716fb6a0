"""Sliding-window prediction streamed over tomograms of any size, into a per-class score store.

Two blending modes:

``crop`` (default; DeepETPicker's overlap-tile strategy)
    The volume is tiled by window *cores*; each window is predicted with a ``margin`` of context on every side
    and only its core is kept. Every output voxel is computed exactly once (no blending, no accumulator), the
    cores are written straight into the score store, and the input is read window by window from the (memory-
    mapped / lazy) tomogram. Memory is therefore bounded by one batch of windows whatever the tomogram size.
    Window sizes are chosen per axis to cover the volume with as little padding as possible.
``gaussian`` (MONAI)
    Blocks of the volume (plus a halo of half a window) are passed to :func:`monai.inferers.sliding_window_inference`
    with Gaussian blending and the requested overlap; the block core is kept. MONAI's function allocates the full
    multi-channel float32 output of what it is given, so it is run per block to keep memory bounded (the halo is
    recomputed: this mode costs more compute than ``crop``).

The per-class scores (softmax or sigmoid probabilities of the foreground classes, optionally averaged over flip
test-time augmentation) are stored as float16 in a :class:`ScoreStore`: an in-memory array for ordinary
tomograms, or a compressed temporary zarr array on disk above a memory budget. The full multi-channel float32
score map of a large tomogram is never held.
"""

from __future__ import annotations

import contextlib
import math
import mmap
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from tomopick.inference.normalize import RobustStats, normalize_robust

#: Scores below this are stored as exactly 0 (they compress to nothing on disk and never reach a threshold).
ZERO_BELOW = 2.0**-9
#: Above this many bytes of float16 scores, the store goes to a temporary zarr array on disk.
DEFAULT_MEMORY_BUDGET = 1 << 30


# -- score store ------------------------------------------------------------------------------------------------
class ScoreStore:
    """Per-class scores ``(C, z, y, x)`` stored as float16, in memory or in a temporary zarr array on disk.

    Parameters
    ----------
    shape
        ``(C, z, y, x)``.
    chunks
        ``(z, y, x)`` chunk shape of the disk store (ideally the window cores).
    memory_budget
        Bytes above which the store goes to disk.
    directory
        Where to create the temporary disk store (default: the system temporary folder).
    """

    def __init__(self, shape: Sequence[int], *, chunks: Sequence[int] | None = None,
                 memory_budget: int = DEFAULT_MEMORY_BUDGET, directory: str | None = None) -> None:
        self.shape = tuple(int(s) for s in shape)
        nbytes = int(np.prod(self.shape)) * 2
        self._tmp: str | None = None
        if nbytes <= memory_budget:
            self.array: Any = np.zeros(self.shape, dtype=np.float16)
            self.on_disk = False
        else:
            import zarr
            from numcodecs import Blosc

            self._tmp = tempfile.mkdtemp(prefix="tomopick-scores-", dir=directory)
            chunk = tuple(int(c) for c in (chunks or (64, 256, 256)))
            chunk = tuple(min(c, s) for c, s in zip(chunk, self.shape[1:]))
            self.array = zarr.open(os.path.join(self._tmp, "scores.zarr"), mode="w", shape=self.shape,
                                   chunks=(1, *chunk), dtype=np.float16, fill_value=0,
                                   compressor=Blosc(cname="lz4", clevel=5, shuffle=Blosc.BITSHUFFLE))
            self.on_disk = True

    def write(self, core: tuple[slice, slice, slice], values: Any) -> None:
        """Store ``values`` ``(C, z, y, x)`` (numpy or torch) at the ``(z, y, x)`` slices ``core``: scores below
        :data:`ZERO_BELOW` become 0, the rest float16."""
        if self.on_disk:
            self.array[(slice(None), *core)] = to_float16(values)
            return
        import torch

        # in memory: one multithreaded pass converts to float16 and reorders (e.g. from channels-last) in place
        t = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.asarray(values))
        dst = torch.from_numpy(self.array)[(slice(None), *core)]
        if t.device.type != "cpu":  # masked and halved on the device: half the bytes cross the bus
            dst.copy_(torch.from_numpy(to_float16(t)))
            return
        small = t < ZERO_BELOW
        dst.copy_(t)
        dst.masked_fill_(small, 0.0)

    def read(self, channel: int, region: slice | tuple[slice, ...] = slice(None), *,
             out: np.ndarray | None = None) -> np.ndarray:
        """Scores of one channel over a z-range or a ``(z, y, x)`` box, as float32 — into ``out`` when given (a
        float32 array of the box's shape, e.g. a work array reused by the peak stage)."""
        region = region if isinstance(region, tuple) else (region,)
        if out is None:
            return np.asarray(self.array[(channel, *region)], dtype=np.float32)
        if self.on_disk:
            out[...] = self.array[(channel, *region)]
            return out
        import torch

        # float16 → float32 by torch into the given array: multithreaded, and no fresh pages to fault in
        torch.from_numpy(out).copy_(torch.from_numpy(self.array[(channel, *region)]))
        return out

    def close(self) -> None:
        """Delete the temporary disk store (if any)."""
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None

    def __enter__(self) -> "ScoreStore":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - safety net
        self.close()


def to_float16(values: Any) -> np.ndarray:
    """Scores as float16 numpy with values below :data:`ZERO_BELOW` set to 0 (converted by torch: multithreaded)."""
    import torch

    t = values if isinstance(values, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(values))
    half = t.half() if t.dtype != torch.float16 else t.clone()
    return half.masked_fill_(t < ZERO_BELOW, 0.0).cpu().numpy()


# -- window planning --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AxisPlan:
    """Windows along one axis: cores ``[start, start + core)`` (last one clipped), windows read from
    ``start - margin`` with length ``roi``."""

    starts: tuple[int, ...]
    core: int
    margin: int
    roi: int


def plan_axis(n: int, roi_max: int, margin: int, divisor: int = 16, fixed: bool = False) -> AxisPlan:
    """Fewest windows of at most ``roi_max`` voxels (a multiple of ``divisor``) whose cores tile ``n`` voxels,
    with cores as equal as possible (``fixed``: every window exactly ``roi_max``, for networks whose output
    depends on the window size, e.g. coordinate channels)."""
    roi_max = max(divisor, roi_max - roi_max % divisor)
    margin = max(0, min(int(margin), (roi_max - divisor) // 2))
    if fixed:
        core = roi_max - 2 * margin
        return AxisPlan(tuple(range(0, n, core)), core, margin, roi_max)
    k = max(1, math.ceil(n / (roi_max - 2 * margin)))
    while True:
        core = math.ceil(n / k)
        roi = int(math.ceil((core + 2 * margin) / divisor) * divisor)
        if roi <= roi_max or core <= 1:
            break
        k += 1
    starts = tuple(i * core for i in range(k) if i * core < n)
    return AxisPlan(starts, core, margin, roi)


@dataclass
class InferenceSettings:
    """How to run the network over a volume.

    Attributes
    ----------
    mode
        ``"crop"`` (overlap-tile, default) or ``"gaussian"`` (MONAI blending per block).
    roi_size
        Largest window ``(z, y, x)`` in voxels (crop mode adapts it down to tile the volume evenly).
    overlap
        Crop mode: fraction of each window given to context (``margin = overlap · roi / 2`` per side).
        Gaussian mode: MONAI's window overlap.
    tta
        Flip test-time augmentation: 1 (none), 2 (identity + :data:`TTA2_FLIP`), 4 (identity + one flip per axis)
        or 8 (all flip combinations).
    batch_size
        Windows per forward pass.
    device
        ``"cpu"`` or ``"cuda"`` (``"cuda:1"`` …).
    amp
        Mixed precision (bfloat16 where supported, else float16) — GPU only; ``None`` = on for CUDA.
    divisor
        Window sizes are multiples of this (the network's total downsampling).
    block_size
        Gaussian mode: block core ``(z, y, x)``.
    fixed_roi
        Crop mode: always use windows of exactly ``roi_size`` (networks with coordinate channels).
    memory_budget
        Bytes of float16 scores kept in memory before the store goes to disk.
    precision
        CPU arithmetic of the network: ``"fp32"``, ``"bf16"`` (bfloat16 autocast: 3.7× the fp32 convolution
        throughput of the bundled network on a CPU with AVX-512 BF16, bench/roofline.py) or ``"auto"`` (bf16 where
        the CPU has native bfloat16 dot products, :func:`cpu_has_bf16`, else fp32). GPUs use ``amp``.
    skip_vacuum
        Crop mode: windows whose whole input lies in z-slices outside the specimen slab
        (:func:`tomopick.inference.slab.slab_extent`) are not run; their scores stay 0.
    reuse_memory
        CPU: keep freed activation memory for the next window instead of returning it to the kernel
        (:func:`reuse_freed_memory`; less system time, a higher resident set while the network runs); default on
        unless the environment sets ``TOMOPICK_REUSE_MEMORY=0`` (for A/B measurements).
    small_pages
        Pick with numpy's huge-page advice off (:func:`numpy_small_pages`; less system time on the VMs measured);
        default on unless the environment sets ``TOMOPICK_SMALL_PAGES=0`` (for A/B measurements).
    amp_dtype
        GPU mixed precision: ``"bf16"`` or ``"fp16"``; ``None`` = bf16 where the GPU supports it, else fp16.
    prefetch
        Crop mode: read and normalise the next batch of windows (into pinned memory on a GPU) in a thread while
        the network runs on the current one; ``None`` = on for GPUs, off on CPU (the cores are busy there).
    """

    mode: str = "crop"
    roi_size: tuple[int, int, int] = (208, 256, 256)
    overlap: float = 0.08
    tta: int = 1
    batch_size: int = 1
    device: str = "cpu"
    amp: bool | None = None
    divisor: int = 16
    block_size: tuple[int, int, int] = (128, 256, 256)
    memory_budget: int = DEFAULT_MEMORY_BUDGET
    fixed_roi: bool = False
    store_directory: str | None = None
    precision: str = "fp32"
    skip_vacuum: bool = False
    reuse_memory: bool = field(default_factory=lambda: os.environ.get("TOMOPICK_REUSE_MEMORY", "1") != "0")
    small_pages: bool = field(default_factory=lambda: os.environ.get("TOMOPICK_SMALL_PAGES", "1") != "0")
    amp_dtype: str | None = None
    prefetch: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in ("crop", "gaussian"):
            raise ValueError(f"unknown blending mode {self.mode!r}; use 'crop' or 'gaussian'")
        if self.tta not in (1, 2, 4, 8):
            raise ValueError("tta must be 1, 2, 4 or 8")
        if not 0 <= self.overlap < 1:
            raise ValueError("overlap must be in [0, 1)")
        if self.batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if self.amp_dtype not in (None, "bf16", "fp16"):
            raise ValueError(f"unknown amp_dtype {self.amp_dtype!r}; use bf16 or fp16")
        if self.precision not in ("fp32", "bf16", "auto"):
            raise ValueError(f"unknown precision {self.precision!r}; use fp32, bf16 or auto")


def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 dot products natively (AVX-512 BF16 or AMX), so that bf16 autocast
    is faster than fp32 rather than emulated."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and _cpu_flags() & {"avx512_bf16", "amx_bf16"} != set()
    except (AttributeError, RuntimeError):  # pragma: no cover - torch without oneDNN
        return False


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:  # pragma: no cover - not Linux
        pass
    return set()


def resolve_precision(precision: str, device: str = "cpu") -> str:
    """``"fp32"`` or ``"bf16"`` for ``precision`` (``"auto"``: bf16 on a CPU with native bfloat16) on ``device``
    (GPUs: always ``"fp32"`` here; their mixed precision is ``amp``)."""
    if not str(device).startswith("cpu"):
        return "fp32"
    if precision == "auto":
        return "bf16" if cpu_has_bf16() else "fp32"
    return precision


def describe_precision(precision: str, device: str = "cpu") -> str:
    """One line for the pick summary: the arithmetic the network runs in and why (``"bf16 (auto: this CPU has
    native bfloat16)"``, ``"fp32"``, ``"mixed precision (cuda)"``)."""
    if not str(device).startswith("cpu"):
        return f"mixed precision ({device})"
    used = resolve_precision(precision, device)
    if precision != "auto":
        return used
    why = "this CPU has native bfloat16" if used == "bf16" else "no native bfloat16 on this CPU"
    return f"{used} (auto: {why})"


#: The second pass of two-pass TTA: the volume inverted through its centre (all three axes flipped; chosen among the
#: single-axis flips and the inversion on validation and dev tomograms by ``bench/segment_tta.py``).
TTA2_FLIP: tuple[int, ...] = (2, 3, 4)


def flip_sets(tta: int) -> list[tuple[int, ...]]:
    """Spatial dims (of an ``(n, c, z, y, x)`` tensor) flipped by each test-time augmentation: 1 none, 2 identity +
    :data:`TTA2_FLIP`, 4 identity + one flip per axis, 8 every combination."""
    if tta == 1:
        return [()]
    if tta == 2:
        return [(), TTA2_FLIP]
    if tta == 4:
        return [(), (2,), (3,), (4,)]
    return [(), (2,), (3,), (4,), (2, 3), (2, 4), (3, 4), (2, 3, 4)]


def fold_batchnorm(model: Any) -> Any:
    """A copy of ``model`` with every eval-mode batch norm that directly follows a convolution folded into that
    convolution's weights and bias (MONAI ``Convolution`` blocks: ``conv`` then ``adn`` whose first layer is the
    norm), so inference skips one full read and write of each activation; ``model`` itself if there is none.
    Same function up to float rounding (bench/RESULTS.md, "speed levers (#17)")."""
    import torch
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    convs = (torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)
    transposed = (torch.nn.ConvTranspose1d, torch.nn.ConvTranspose2d, torch.nn.ConvTranspose3d)
    norms = (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)

    def foldable(m: Any) -> bool:
        adn = getattr(m, "adn", None)
        first = next(iter(adn._modules.values()), None) if isinstance(adn, torch.nn.Module) else None
        return (isinstance(getattr(m, "conv", None), convs + transposed) and isinstance(first, norms)
                and not first.training and first.running_mean is not None and not m.conv.training)

    if model.training or not any(foldable(m) for m in model.modules()):
        return model
    import copy

    model = copy.deepcopy(model)
    for m in model.modules():
        if foldable(m):
            name = next(iter(m.adn._modules))
            m.conv = fuse_conv_bn_eval(m.conv, m.adn._modules[name], transpose=isinstance(m.conv, transposed))
            m.adn._modules[name] = torch.nn.Identity()
    return model


def make_predictor(model: Any, *, output: str, channels: Sequence[int], tta: int = 1, device: str = "cpu",
                   amp: bool | None = None, channels_last: bool = True, precision: str = "fp32",
                   amp_dtype: str | None = None, fold_norm: bool = True) -> Callable[[Any], Any]:
    """``f(x)`` mapping a normalised batch ``(n, 1, z, y, x)`` to foreground probabilities ``(n, C, z, y, x)``
    float32: flips for TTA, softmax/sigmoid, channel selection, probabilities averaged over flips.

    ``channels_last`` runs the network in the ``channels_last_3d`` memory format (same numbers; measured 1.5×
    faster for the bundled residual UNet on CPU). ``precision="bf16"`` runs it under CPU bfloat16 autocast
    (convolutions in bf16, probabilities computed from float32 logits). GPUs: ``amp`` (default on) with
    ``amp_dtype`` ``"bf16"`` or ``"fp16"`` (default: bf16 where supported). ``fold_norm`` folds eval-mode batch
    norms into the convolutions before them (:func:`fold_batchnorm`). The probabilities are computed in place in
    the network's output (no extra full-size copies) and may be a non-contiguous view."""
    import torch

    dev = torch.device(device)
    if fold_norm:
        model = fold_batchnorm(model)
    memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format
    if channels_last:
        try:
            model = model.to(memory_format=memory_format)
        except RuntimeError:  # 2D layers inside (the 2.5D slice network): run it as it is
            channels_last, memory_format = False, torch.contiguous_format
    use_amp = (dev.type == "cuda") if amp is None else (bool(amp) and dev.type == "cuda")
    if amp_dtype not in (None, "bf16", "fp16"):
        raise ValueError(f"unknown amp_dtype {amp_dtype!r}; use bf16 or fp16")
    if amp_dtype is None:
        amp_dtype = "bf16" if (use_amp and torch.cuda.is_bf16_supported()) else "fp16"
    dtype = torch.bfloat16 if amp_dtype == "bf16" else torch.float16
    if dev.type == "cpu" and resolve_precision(precision, "cpu") == "bf16":
        use_amp, dtype = True, torch.bfloat16
    if dev.type == "cuda":  # one window shape per tomogram: cuDNN's fastest kernels are found once, then reused
        torch.backends.cudnn.benchmark = True
    chans = [int(c) for c in channels]
    contiguous_range = bool(chans) and chans == list(range(chans[0], chans[0] + len(chans)))
    idx = torch.as_tensor(chans, dtype=torch.long, device=dev)
    flips = flip_sets(tta)

    def probabilities(logits: Any) -> Any:
        # a float32 tensor we own: the network's output (or a view of it), or its float32 copy (mixed precision)
        x = logits.float()
        if output == "softmax":  # in place: one full-size tensor instead of three
            x.sub_(x.amax(dim=1, keepdim=True)).exp_()
            x.div_(x.sum(dim=1, keepdim=True))
        elif output != "probability":  # probability: fused ensembles
            x.sigmoid_()
        return x.narrow(1, chans[0], len(chans)) if contiguous_range else x.index_select(1, idx)

    def predict(x: Any, crop: tuple[slice, ...] | None = None) -> Any:
        """Probabilities of the batch ``x``, only inside the ``(z, y, x)`` slices ``crop`` if given (the window
        cores: the margins' probabilities are never computed)."""
        x = x.to(dev, non_blocking=True)
        if channels_last and x.ndim == 5:
            x = x.contiguous(memory_format=memory_format)
        total = None
        for dims in flips:
            xi = torch.flip(x, dims) if dims else x
            with torch.autocast(device_type=dev.type, dtype=dtype, enabled=use_amp):
                logits = model(xi)
            if dims:  # back to the input's orientation before cropping
                logits = torch.flip(logits, dims)
            if crop is not None:
                logits = logits[(slice(None), slice(None), *crop)]
            prob = probabilities(logits)
            del logits
            total = prob if total is None else total.add_(prob)
        return total if len(flips) == 1 else total.div_(len(flips))

    return predict


# -- allocator ------------------------------------------------------------------------------------------------
#: glibc ``mallopt`` parameters.
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4
_GLIBC_MMAP_MAX_DEFAULT = 65536


@contextlib.contextmanager
def reuse_freed_memory(enabled: bool = True) -> Iterator[bool]:
    """While inside, glibc serves large allocations from the heap and keeps freed memory for reuse instead of
    ``mmap``-ing and ``munmap``-ing every activation tensor of every window (each fresh mapping is page-faulted in
    again: 1.3 M minor faults and ~0.9 s of system time per 128 × 256 × 256 window of the bundled network; with
    reuse 0.6 s of 2.7 s system time for three windows, bench/RESULTS.md "speed levers (#17)"). On exit the
    defaults come back and the heap is trimmed (``malloc_trim``), so the resident set shrinks again. Yields
    whether it took effect (glibc only)."""
    libc = None
    if enabled:
        try:
            import ctypes

            libc = ctypes.CDLL("libc.so.6")
            if not (libc.mallopt(_M_MMAP_MAX, 0) and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
                    and libc.mallopt(_M_TOP_PAD, 64 << 20)):
                libc = None
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            libc = None
    try:
        yield libc is not None
    finally:
        if libc is not None:
            libc.mallopt(_M_MMAP_MAX, _GLIBC_MMAP_MAX_DEFAULT)
            libc.mallopt(_M_TRIM_THRESHOLD, 128 << 10)
            libc.mallopt(_M_TOP_PAD, 0)
            libc.malloc_trim(0)


@contextlib.contextmanager
def numpy_small_pages(enabled: bool = True) -> Iterator[bool]:
    """While inside, numpy does not ``madvise`` its large arrays (≥ 4 MB) for transparent huge pages, and the
    kernel backs them with 4 KB pages. On the 2-core VMs measured here, first-touch zeroing of 2 MB pages cost
    ~1.5 s more system time per CZII-size pick than 4 KB pages (3.4–3.7 s → 1.9–2.4 s; the score store and the
    peak stage's work arrays; bench/RESULTS.md #17 "sixth pass"). On exit numpy's setting comes back. Yields
    whether it took effect (numpy's ``_set_madvise_hugepage`` exists on Linux builds)."""
    setter = None
    if enabled:
        # numpy ≥ 2 keeps it in numpy._core, 1.x in numpy.core; builds without madvise have neither
        core = getattr(np, "_core", None) or getattr(np, "core", None)
        setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
    previous = setter(False) if setter is not None else None
    try:
        yield setter is not None
    finally:
        if setter is not None:
            setter(bool(previous))


# -- reading windows ------------------------------------------------------------------------------------------
def release_pages(array: Any) -> None:
    """Tell the kernel the process no longer needs the pages of a memory-mapped array (they stay in the page
    cache and are re-read on demand), so that streaming through a huge MRC does not grow the resident set."""
    base = array
    for _ in range(8):
        mm = getattr(base, "_mmap", None)
        if isinstance(mm, mmap.mmap):
            if getattr(base, "mode", "r") == "c":  # copy-on-write: private changes would be lost
                return
            try:
                mm.madvise(mmap.MADV_DONTNEED)
            except (AttributeError, OSError, ValueError):  # pragma: no cover - platform without madvise
                pass
            return
        base = getattr(base, "base", None)
        if base is None:
            return


class ReleasingArray:
    """A view of a ``(z, y, x)`` array-like that drops memory-mapped pages after every read or write
    (:func:`release_pages`), so that whole-volume passes (finite check, statistics, rescaling) keep a bounded
    resident set."""

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(int(s) for s in array.shape)
        self.dtype = np.dtype(array.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        out = np.array(self.array[key])
        release_pages(self.array)
        return out

    def __setitem__(self, key: Any, value: Any) -> None:
        self.array[key] = value
        release_pages(self.array)


def read_normalised(source: Any, start: Sequence[int], size: Sequence[int], stats: RobustStats,
                    norm_kwargs: dict[str, Any]) -> np.ndarray:
    """The ``size`` box at ``start`` (may extend outside the volume: zero padding, i.e. the median) of the
    normalised volume, float32 ``(z, y, x)``."""
    shape = source.shape
    out = np.zeros(tuple(size), dtype=np.float32)
    src, dst = [], []
    for s, n, dim in zip(start, size, shape):
        a, b = max(0, s), min(dim, s + n)
        if b <= a:
            return out
        src.append(slice(a, b))
        dst.append(slice(a - s, b - s))
    out[tuple(dst)] = normalize_robust(source[tuple(src)], stats=stats, **norm_kwargs)
    return out


# -- the two modes ----------------------------------------------------------------------------------------------
def window_plan(shape: Sequence[int], settings: InferenceSettings) -> list[AxisPlan]:
    """Per-axis window plans of crop mode."""
    return [plan_axis(int(n), int(r), int(round(settings.overlap * r / 2)), settings.divisor, settings.fixed_roi)
            for n, r in zip(shape, settings.roi_size)]


def count_windows(shape: Sequence[int], settings: InferenceSettings) -> int:
    """Forward passes (windows × TTA flips are not counted) needed for a volume of ``shape``."""
    if settings.mode == "crop":
        return int(np.prod([len(p.starts) for p in window_plan(shape, settings)]))
    return len(_blocks(shape, settings.block_size)[0])


def _blocks(shape: Sequence[int], block: Sequence[int]) -> tuple[list[tuple[int, int, int]], list[AxisPlan]]:
    plans = [plan_axis(int(n), int(b), 0, 1) for n, b in zip(shape, block)]
    return [(z, y, x) for z in plans[0].starts for y in plans[1].starts for x in plans[2].starts], plans


def predict_to_store(source: Any, model: Any, *, output: str, channels: Sequence[int], stats: RobustStats,
                     norm_kwargs: dict[str, Any] | None = None, settings: InferenceSettings | None = None,
                     progress: Callable[[int], None] | None = None,
                     make_store: Callable[[tuple[int, ...], Any], Any] | None = None) -> ScoreStore:
    """Run the network over a whole ``(z, y, x)`` volume and return the per-class score store.

    Parameters
    ----------
    source
        ``(z, y, x)`` array-like (numpy, memmap, zarr) in the model's voxel grid, *not* normalised.
    model
        Network mapping ``(n, 1, z, y, x)`` to ``(n, C_all, z, y, x)`` logits (eval mode, on ``settings.device``).
    output
        ``"softmax"``, ``"sigmoid"`` or ``"probability"`` (the network returns probabilities already: fused
        ensembles, :mod:`tomopick.inference.ensemble`).
    channels
        Indices of the output channels to keep (the foreground classes), in order.
    stats
        Robust statistics of the whole volume (:func:`~tomopick.inference.normalize.robust_stats`).
    norm_kwargs
        Extra keywords for :func:`~tomopick.inference.normalize.normalize_robust` (from the checkpoint).
    progress
        Called with the number of windows (crop) or blocks (gaussian) just finished.
    make_store
        ``make_store(shape, chunks)`` → the object the probabilities are written to (``write(core, values)``,
        ``close()``, a ``shape`` attribute), instead of a :class:`ScoreStore` — e.g. one that keeps only each
        voxel's class (:class:`tomopick.segment.predict.ClassMapStore`).

    Returns
    -------
    ScoreStore
        ``(len(channels), z, y, x)`` float16 probabilities (or what ``make_store`` made).
    """
    import torch

    settings = settings or InferenceSettings()
    norm_kwargs = dict(norm_kwargs or {})
    shape = tuple(int(s) for s in source.shape)
    predictor = make_predictor(model, output=output, channels=channels, tta=settings.tta, device=settings.device,
                               amp=settings.amp, precision=settings.precision, amp_dtype=settings.amp_dtype)
    z_range = (0, shape[0])
    if settings.mode == "crop":
        if settings.skip_vacuum:
            from tomopick.inference.slab import slab_extent

            extent = slab_extent(source, stats)
            z_range = (extent.z0, extent.z1)
        plans = window_plan((z_range[1] - z_range[0], *shape[1:]), settings)
        chunks = tuple(p.core for p in plans)
    else:
        chunks = tuple(min(b, s) for b, s in zip(settings.block_size, shape))
    if make_store is not None:
        store = make_store((len(channels), *shape), chunks)
    else:
        store = ScoreStore((len(channels), *shape), chunks=chunks, memory_budget=settings.memory_budget,
                           directory=settings.store_directory)
    try:
        with torch.inference_mode(), reuse_freed_memory(settings.reuse_memory and settings.device == "cpu"):
            if settings.mode == "crop":
                _run_crop(source, predictor, store, plans, stats, norm_kwargs, settings, progress, z_range)
            else:
                _run_gaussian(source, predictor, store, stats, norm_kwargs, settings, len(channels), progress)
    except BaseException:
        store.close()
        raise
    # vacuum skipping: slices outside the slab and the windows of the full plan not run (scores there are 0)
    store.z_range = z_range
    store.windows_run = count_windows((z_range[1] - z_range[0], *shape[1:]), settings)
    store.windows_skipped = count_windows(shape, settings) - store.windows_run
    return store


def _run_crop(source, predictor, store, plans, stats, norm_kwargs, settings, progress, z_range=None) -> None:
    import torch

    pz, py, px = plans
    roi = (pz.roi, py.roi, px.roi)
    shape = store.shape[1:]
    z_offset, z_end = z_range or (0, shape[0])  # planned over [z_offset, z_end): the slab (skip_vacuum)
    pin = settings.device != "cpu" and torch.cuda.is_available()

    def batches() -> Iterator[list[tuple[int, int, int]]]:
        """Windows in groups of ``batch_size`` that never span two z-rows."""
        for z in (z_offset + s for s in pz.starts):
            row = [(z, y, x) for y in py.starts for x in px.starts]
            for i in range(0, len(row), settings.batch_size):
                yield row[i : i + settings.batch_size]

    def load(batch: list[tuple[int, int, int]]) -> Any:
        arrays = [read_normalised(source, (z - pz.margin, y - py.margin, x - px.margin), roi, stats, norm_kwargs)
                  for z, y, x in batch]
        # drop the input pages of this batch from the resident set (a 2000 × 2000 z-row of windows would
        # otherwise keep ~3 GB of the memory-mapped file resident); neighbours re-read them from the page cache
        release_pages(source)
        x_in = torch.from_numpy(np.stack(arrays)[:, None])
        return x_in.pin_memory() if pin else x_in  # pinned: the copy to the GPU runs asynchronously

    # probabilities are computed over the window cores only (relative to the cropped output from here on)
    crop = tuple(slice(p.margin, p.margin + p.core) for p in plans)

    def write(batch: list[tuple[int, int, int]], probs: Any) -> None:
        ends = (z_end, shape[1], shape[2])
        for (z, y, x), p in zip(batch, probs):
            core = tuple(slice(s, min(s + c, n)) for s, c, n in zip((z, y, x), (pz.core, py.core, px.core), ends))
            store.write(core, p[(slice(None), *(slice(0, sl.stop - sl.start) for sl in core))])
        if progress is not None:
            progress(len(batch))

    prefetch = settings.prefetch if settings.prefetch is not None else settings.device != "cpu"
    if not prefetch:
        for batch in batches():
            write(batch, predictor(load(batch), crop))
        return
    # the next batch is read and normalised (and pinned) in a thread while the network runs on this one
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tomopick-prefetch") as pool:
        pending = None
        for batch in batches():
            future = pool.submit(load, batch)
            if pending is not None:
                write(pending[0], predictor(pending[1].result(), crop))
            pending = (batch, future)
        if pending is not None:
            write(pending[0], predictor(pending[1].result(), crop))


def _run_gaussian(source, predictor, store, stats, norm_kwargs, settings, n_channels, progress) -> None:
    import torch
    from monai.inferers import sliding_window_inference

    shape = store.shape[1:]
    starts, plans = _blocks(shape, settings.block_size)
    halo = [r // 2 for r in settings.roi_size]
    for z, y, x in starts:
        core = tuple(slice(s, min(s + p.core, n)) for s, p, n in zip((z, y, x), plans, shape))
        lo = [max(0, sl.start - h) for sl, h in zip(core, halo)]
        hi = [min(n, sl.stop + h) for sl, h, n in zip(core, halo, shape)]
        block = read_normalised(source, lo, [b - a for a, b in zip(lo, hi)], stats, norm_kwargs)
        out = sliding_window_inference(torch.from_numpy(block)[None, None], roi_size=list(settings.roi_size),
                                       sw_batch_size=settings.batch_size, predictor=predictor,
                                       overlap=settings.overlap, mode="gaussian", padding_mode="constant",
                                       sw_device=settings.device, device="cpu")
        local = tuple(slice(sl.start - a, sl.stop - a) for sl, a in zip(core, lo))
        store.write(core, out[0][(slice(None), *local)])
        del out
        release_pages(source)
        if progress is not None:
            progress(1)
