"""Slabs and overlays: a tomogram's z-slab averaged and contrast-stretched, picks drawn as circles, PNG bytes.

Pure functions on arrays (no file I/O). Volumes are ``(z, y, x)`` array-likes (numpy, memmap or zarr: anything
with numpy slicing; only the slices asked for are read). Pick positions are continuous voxel coordinates
``(z, y, x)`` (index = coordinate, origin at the centre of voxel 0), radii in voxels.

>>> import numpy as np
>>> cut_radius(10.0, np.array([0.0, 6.0, 10.0, 12.0]))
array([10.,  8.,  0.,  0.])
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Grey levels of an overlay image (indices 0..N_GREY-1 of its palette); class colours follow them.
N_GREY = 240


@dataclass(frozen=True)
class Slab:
    """A z-slab ``[z0, z1)`` of a volume, averaged over z: ``image`` is ``(y, x)`` float32."""

    z0: int
    z1: int
    image: np.ndarray

    @property
    def centre_z(self) -> float:
        """Centre of the slab in voxel coordinates (slices ``z0 … z1-1``)."""
        return (self.z0 + self.z1 - 1) / 2.0


def slab_bounds(n_z: int, centre_z: float, thickness_vox: float) -> tuple[int, int]:
    """The slices ``[z0, z1)`` of a slab ``thickness_vox`` thick (at least 1) centred on ``centre_z``, clipped
    to ``[0, n_z)`` (the slab keeps its thickness near the faces where the volume allows)."""
    depth = int(max(1, min(n_z, round(thickness_vox))))
    z0 = int(round(centre_z - (depth - 1) / 2.0))
    z0 = min(max(z0, 0), n_z - depth)
    return z0, z0 + depth


def slab_centres(n_z: int, n: int, thickness_vox: float, z_positions: np.ndarray | None = None) -> list[float]:
    """``n`` slab centres: the central slab first, then ``n - 1`` others in increasing z.

    With pick positions ``z_positions`` (voxels), the others are where the most picks are: chosen one by one,
    each the slab position (half a slab from the faces) holding the most pick centres, not overlapping the slabs
    already chosen. Without picks (or when no position is left), they are spread evenly over the depth."""
    if n < 1:
        return []
    centre = (n_z - 1) / 2.0
    if n == 1:
        return [centre]
    half = min(thickness_vox / 2.0, n_z / 4.0)
    lo, hi = half, n_z - 1 - half
    chosen: list[float] = []
    z = np.asarray(z_positions if z_positions is not None else [], dtype=np.float64).reshape(-1)
    z = z[np.isfinite(z)]
    if z.size:
        candidates = np.arange(np.ceil(lo), np.floor(hi) + 1)
        counts = np.array([np.count_nonzero(np.abs(z - c) <= thickness_vox / 2.0) for c in candidates])
        free = np.abs(candidates - centre) >= thickness_vox
        while len(chosen) < n - 1 and (free & (counts > 0)).any():
            best = candidates[free][int(np.argmax(np.where(counts[free] > 0, counts[free], -1)))]
            chosen.append(float(best))
            free &= np.abs(candidates - best) >= thickness_vox
    if len(chosen) < n - 1:  # evenly spaced, the one nearest the centre left out
        even = np.linspace(lo, hi, n + 1)
        even = np.delete(even, int(np.argmin(np.abs(even - centre))))
        spare = [float(v) for v in even if all(abs(v - c) >= thickness_vox / 2.0 for c in chosen)]
        chosen += spare[: n - 1 - len(chosen)]
    return [centre, *sorted(chosen)]


def average_slab(volume: Any, z0: int, z1: int, *, chunk: int = 16) -> np.ndarray:
    """Mean over slices ``z0 … z1-1`` of ``volume`` ``(z, y, x)`` → ``(y, x)`` float32; reads ``chunk`` slices at a
    time (bounded memory for lazy volumes)."""
    if not 0 <= z0 < z1 <= volume.shape[0]:
        raise ValueError(f"slab [{z0}, {z1}) outside a volume of depth {volume.shape[0]}")
    total = np.zeros(tuple(volume.shape[1:]), dtype=np.float64)
    for start in range(z0, z1, chunk):
        block = np.asarray(volume[start:min(z1, start + chunk)], dtype=np.float32)
        total += np.nan_to_num(block, nan=0.0, posinf=0.0, neginf=0.0).sum(axis=0, dtype=np.float64)
    return (total / (z1 - z0)).astype(np.float32)


def take_slab(volume: Any, centre_z: float, thickness_vox: float) -> Slab:
    """The slab ``thickness_vox`` thick around ``centre_z`` (see :func:`slab_bounds`), averaged."""
    z0, z1 = slab_bounds(int(volume.shape[0]), centre_z, thickness_vox)
    return Slab(z0, z1, average_slab(volume, z0, z1))


def stretch(image: np.ndarray, low_pct: float = 0.5, high_pct: float = 99.5, levels: int = 256) -> np.ndarray:
    """Contrast stretch: the ``low_pct``/``high_pct`` percentiles → 0 / ``levels - 1`` (clipped), as uint8.

    Protein is dark in cryo-ET tomograms and stays dark. NaN (outside the volume) shows as the median; a flat
    image maps to mid-grey."""
    image = np.asarray(image, dtype=np.float32)
    finite = image[np.isfinite(image)]
    if finite.size == 0:
        return np.full(image.shape, levels // 2, dtype=np.uint8)
    lo, hi = np.percentile(finite, [low_pct, high_pct])
    if not hi > lo:
        return np.full(image.shape, levels // 2, dtype=np.uint8)
    fill = float(np.median(finite))
    scaled = (np.nan_to_num(image, nan=fill, posinf=fill, neginf=fill) - lo) / (hi - lo) * (levels - 1)
    return np.clip(np.rint(scaled), 0, levels - 1).astype(np.uint8)


def cut_radius(radius_vox: float | np.ndarray, dz_vox: np.ndarray) -> np.ndarray:
    """Radius of the circle where a sphere of ``radius_vox`` cuts a plane ``dz_vox`` from its centre (0 where the
    plane misses the sphere)."""
    r = np.asarray(radius_vox, dtype=np.float64)
    dz = np.abs(np.asarray(dz_vox, dtype=np.float64))
    return np.sqrt(np.clip(r * r - dz * dz, 0.0, None))


def circles_in_slab(zyx_vox: np.ndarray, radius_vox: np.ndarray, z0: int, z1: int) -> tuple[np.ndarray, np.ndarray]:
    """Which spheres a slab ``[z0, z1)`` cuts, and the radius of the largest circle each shows there.

    Parameters
    ----------
    zyx_vox
        Centres ``(n, 3)`` ``(z, y, x)`` in voxels.
    radius_vox
        Radii ``(n,)`` (or a scalar) in voxels.
    z0, z1
        The slab's slices; it spans ``[z0 - 0.5, z1 - 0.5]`` in voxel coordinates.

    Returns
    -------
    index
        Indices of the spheres that reach into the slab.
    radius
        Their cut radius in voxels: the full radius for a centre inside the slab, else the radius of the cut at
        the slab face nearest the centre.
    """
    zyx = np.asarray(zyx_vox, dtype=np.float64).reshape(-1, 3)
    r = np.broadcast_to(np.asarray(radius_vox, dtype=np.float64), (len(zyx),))
    lo, hi = z0 - 0.5, z1 - 0.5
    z = zyx[:, 0]
    dz = np.where(z < lo, lo - z, np.where(z > hi, z - hi, 0.0))
    cut = cut_radius(r, dz)
    index = np.flatnonzero(cut > 0)
    return index, cut[index]


def bin_factor(shape_yx: Sequence[int], max_px: int) -> int:
    """The smallest integer binning that brings the larger side of an image to at most ``max_px`` pixels."""
    return max(1, int(np.ceil(max(shape_yx) / float(max_px))))


def bin_image(image: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor × factor`` blocks (edges cropped to a multiple of ``factor``)."""
    if factor <= 1:
        return np.asarray(image, dtype=np.float32)
    h, w = (image.shape[0] // factor) * factor, (image.shape[1] // factor) * factor
    return image[:h, :w].reshape(h // factor, factor, w // factor, factor).mean(axis=(1, 3)).astype(np.float32)


def hex_rgb(color: str) -> tuple[int, int, int]:
    """``"#rrggbb"`` → ``(r, g, b)``."""
    text = color.lstrip("#")
    if len(text) != 6:
        raise ValueError(f"expected a colour #rrggbb, got {color!r}")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


@dataclass(frozen=True)
class Overlay:
    """An indexed image: ``pixels`` ``(h, w)`` uint8 index into ``palette`` ``(k, 3)`` uint8 RGB; grey levels
    first (:data:`N_GREY`), then one entry per colour in ``colors``."""

    pixels: np.ndarray
    palette: np.ndarray
    colors: tuple[str, ...]

    def rgb(self) -> np.ndarray:
        """The image as ``(h, w, 3)`` uint8 RGB."""
        return self.palette[self.pixels]

    def color_index(self, color: str) -> int:
        return N_GREY + self.colors.index(color)


def label_outlines(labels: np.ndarray) -> np.ndarray:
    """Boolean ``(h, w)``: the pixels of a 2D label image that lie on the edge of a labelled region (label > 0)."""
    from skimage.segmentation import find_boundaries

    labels = np.asarray(labels)
    return find_boundaries(labels, mode="inner") & (labels > 0)


def overlay_circles(grey: np.ndarray, centres_yx: np.ndarray, radii: np.ndarray, colors: Sequence[str], *,
                    width: int = 1, outline: np.ndarray | None = None, outline_color: str = "#ffd700") -> Overlay:
    """Draw circle outlines on a contrast-stretched image.

    Parameters
    ----------
    grey
        ``(h, w)`` uint8 image (from :func:`stretch`).
    centres_yx
        ``(n, 2)`` circle centres ``(y, x)`` in pixels (continuous; 0 = centre of the first pixel).
    radii
        ``(n,)`` radii in pixels; circles with a radius below 0.5 px are drawn as a dot.
    colors
        ``n`` colours ``#rrggbb`` (one per circle).
    width
        Outline width in pixels (drawn inwards from the radius).
    outline, outline_color
        Optional ``(h, w)`` boolean mask (e.g. :func:`label_outlines` of a segmentation) painted in
        ``outline_color`` under the circles.
    """
    from skimage.draw import circle_perimeter

    unique = tuple(dict.fromkeys([*colors, *([outline_color] if outline is not None else [])]))
    palette = np.zeros((N_GREY + len(unique), 3), dtype=np.uint8)
    palette[:N_GREY] = np.rint(np.linspace(0, 255, N_GREY))[:, None].astype(np.uint8)
    for i, c in enumerate(unique):
        palette[N_GREY + i] = hex_rgb(c)
    pixels = (np.asarray(grey, dtype=np.uint16) * (N_GREY - 1) // 255).astype(np.uint8)
    shape = pixels.shape
    if outline is not None:
        pixels[np.asarray(outline, dtype=bool)] = N_GREY + unique.index(outline_color)
    centres = np.asarray(centres_yx, dtype=np.float64).reshape(-1, 2)
    for (cy, cx), r, c in zip(centres, np.asarray(radii, dtype=np.float64).reshape(-1), colors):
        value = N_GREY + unique.index(c)
        yc, xc = int(round(cy)), int(round(cx))
        if r < 0.5:
            if 0 <= yc < shape[0] and 0 <= xc < shape[1]:
                pixels[yc, xc] = value
            continue
        for k in range(max(1, width)):
            rr, cc = circle_perimeter(yc, xc, max(int(round(r)) - k, 0), shape=shape)
            pixels[rr, cc] = value
    return Overlay(pixels, palette, unique)


def png_bytes(image: np.ndarray | Overlay) -> bytes:
    """PNG bytes of a ``(h, w)`` uint8 grey image, a ``(h, w, 3)`` uint8 RGB image or an :class:`Overlay`
    (written as a palette PNG: one byte per pixel)."""
    from PIL import Image

    if isinstance(image, Overlay):
        pil = Image.fromarray(np.ascontiguousarray(image.pixels), mode="P")
        pil.putpalette(image.palette.reshape(-1).tolist())
    else:
        array = np.ascontiguousarray(image)
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(f"expected (h, w) or (h, w, 3) uint8, got {array.shape} {array.dtype}")
        pil = Image.fromarray(array)
    buffer = io.BytesIO()
    pil.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """A ``data:image/png;base64,…`` URI for embedding PNG bytes in HTML."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
