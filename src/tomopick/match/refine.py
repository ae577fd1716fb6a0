"""Coarse-to-fine orientation search: the full FFT search over a coarse rotation set, then a local search at the
candidate peaks over the fine rotations near each one's best coarse rotation.

An exhaustive search at a fine angular step costs one full-volume FFT correlation per rotation (6 169 at 12° C1). A
particle correlates with a template turned 20–30° away from its orientation well above background, so a coarse
set (:data:`COARSE_STEP_DEG`) already finds where the candidates are. At each candidate :class:`LocalScorer`
scores exactly the exhaustive search's ``cc_R(x)`` (:mod:`tomopick.match.correlate`: the same whitened volume, the
same rotated, filtered and normalised template, the same masked local normalisation) for every fine rotation within
:data:`NEIGHBOUR_FACTOR` × the coarse step of its best coarse rotation (modulo the symmetry) and every position
within :data:`SHIFT_VOX` voxels, in real space (one matrix product per candidate); the refined peak takes the best
of them. The refined score at a peak is therefore the exhaustive score at that peak, unless the best fine rotation
lies outside the neighbourhood (then it is lower).

Thresholds stay valid (see :func:`tomopick.match.picking.coarse_to_fine_picks`): the noise rule counts every voxel
and every rotation of the fine set as a trial (a refined background peak is one of those trials, so its
false-alarm bound is the exhaustive search's), and the peak-tail fit is made on *refined* peaks — a uniform random
sample of all candidate peaks — so it describes the same max-over-more-rotations distribution as the scores it
thresholds.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy.spatial.transform import Rotation

from tomopick.match.correlate import Spectrum, _prepare_one, _read_mirrored
from tomopick.match.rotations import symmetry_group
from tomopick.match.template import Template, radial_grid

#: Step of the full FFT search of coarse-to-fine (degrees).
COARSE_STEP_DEG = 30.0
#: Fine rotations within this many coarse steps of a candidate's best coarse rotation are scored there.
NEIGHBOUR_FACTOR = 1.0
#: Positions within this many voxels (per axis) of a candidate peak are scored there.
SHIFT_VOX = 2
#: Prepared templates kept in memory at most (bytes); beyond, templates are prepared again when needed.
CACHE_BYTES = 1 << 30


def neighbour_table(coarse: np.ndarray, fine: np.ndarray, radius_deg: float, symmetry: str = "C1") -> list[np.ndarray]:
    """For each coarse rotation, the indices of the fine rotations within ``radius_deg`` (rotation angle, modulo the
    point group: ``min_S angle(C, F @ S)``), nearest first."""
    group = symmetry_group(symmetry)
    q_c = Rotation.from_matrix(np.asarray(coarse, dtype=np.float64)).as_quat()
    fine = np.asarray(fine, dtype=np.float64)
    n_f = len(fine)
    q_f = Rotation.from_matrix(np.concatenate([fine @ s for s in group], axis=0)).as_quat()
    cos_half = np.cos(np.radians(radius_deg) / 2.0)
    out = []
    chunk = max(1, int(2e7 // max(len(q_f), 1)))
    for i in range(0, len(q_c), chunk):
        dots = np.abs(q_c[i:i + chunk] @ q_f.T)  # cos(angle / 2) per symmetry copy
        best = dots.reshape(len(dots), len(group), n_f).max(axis=1)
        for row in best:
            idx = np.flatnonzero(row >= cos_half)
            out.append(idx[np.argsort(-row[idx], kind="stable")])
    return out


class LocalScorer:
    """``cc_R(x)`` of :func:`tomopick.match.correlate.match_volume` at chosen voxels and rotations.

    Parameters
    ----------
    volume
        ``(z, y, x)`` matching-grid volume (mean 0, std 1), as given to ``match_volume``.
    template, weight, spectrum
        As for ``match_volume``.
    rotations
        ``(n, 3, 3)``: the rotations referred to by index in :meth:`best`.
    valid
        Optional ``(z, y, x)`` boolean: voxels that may be scored (the search mask).
    shift
        Positions within ``shift`` voxels per axis of a peak are scored.
    """

    def __init__(self, volume: Any, template: Template, weight: Any, rotations: np.ndarray, *,
                 spectrum: Spectrum | None = None, valid: np.ndarray | None = None, shift: int = SHIFT_VOX,
                 device: str = "cpu") -> None:
        import torch

        self.dev = torch.device(device)
        self.template = template
        self.rotations = np.asarray(rotations, dtype=np.float64).reshape(-1, 3, 3)
        self.weight = torch.as_tensor(np.ascontiguousarray(weight, dtype=np.float32)).to(self.dev)
        self.dims = tuple(int(n) for n in np.shape(volume))
        self.shift = int(shift)
        b = template.box
        self.pad = b // 2 + self.shift
        size = [n + 2 * self.pad for n in self.dims]
        lo = [-self.pad] * 3
        # the whole volume whitened mirrored at its faces, then zero outside (what each tile of match_volume sees)
        v = torch.from_numpy(_read_mirrored(volume, lo, size)).to(self.dev)
        if spectrum is not None:
            white = torch.from_numpy(spectrum.whitening(radial_grid(tuple(size)))).to(self.dev)
            v = torch.fft.irfftn(torch.fft.rfftn(v) * white, s=size)
        inside = torch.zeros(size, dtype=torch.float32, device=self.dev)
        inside[tuple(slice(self.pad, self.pad + n) for n in self.dims)] = 1.0
        self.padded = (v * inside).contiguous()
        self.valid = None if valid is None else np.asarray(valid, dtype=bool)
        self.length = b + 2 * self.shift
        self.n_mask = float(template.mask.sum())
        self.mask_vec = torch.from_numpy(template.mask.reshape(-1) / self.n_mask).to(self.dev, torch.float32)
        self._cache: dict[int, Any] = {}
        self._cache_limit = max(1, CACHE_BYTES // (4 * b ** 3))

    def prepared(self, index: int) -> Any:
        """The rotated, filtered, normalised template of rotation ``index`` (cached)."""
        t = self._cache.get(index)
        if t is None:
            t = _prepare_one(self.template, self.rotations[index], self.weight, self.dev)
            if len(self._cache) < self._cache_limit:
                self._cache[index] = t
        return t

    def best(self, centre_zyx: Sequence[int], indices: Sequence[int]) -> tuple[float, int, np.ndarray]:
        """Best ``cc_R(x)`` over the rotations ``indices`` and the voxels ``x`` within ``shift`` of ``centre_zyx``:
        ``(score, rotation index, voxel zyx)``; score ``-inf`` when no voxel there may be scored.

        Real space, as one matrix product: the ``(2·shift + 1)³`` windows of ``b³`` voxels around the peak times the
        ``K`` prepared templates (``(2s+1)³ × b³ × K`` multiply-adds; faster than FFTs of the box on a CPU)."""
        import torch

        s, b = self.shift, self.template.box
        width = 2 * s + 1
        c = np.asarray(centre_zyx, dtype=np.int64)
        pos = c[:, None] - s + np.arange(width)[None, :]  # (3, width) voxel coordinates per axis
        inside = [(p >= 0) & (p < n) for p, n in zip(pos, self.dims)]
        ok = inside[0][:, None, None] & inside[1][None, :, None] & inside[2][None, None, :]
        if self.valid is not None:
            clipped = [np.clip(p, 0, n - 1) for p, n in zip(pos, self.dims)]
            ok &= self.valid[np.ix_(*clipped)]
        if not ok.any():
            return float("-inf"), int(indices[0]), c
        # padded-volume index of the box whose voxel 0 is the template's voxel 0 at centre c − shift
        start = c - s - b // 2 + self.pad
        patch = self.padded[tuple(slice(int(a), int(a) + self.length) for a in start)]
        windows = patch.unfold(0, b, 1).unfold(1, b, 1).unfold(2, b, 1).reshape(width ** 3, b ** 3)
        mean = windows @ self.mask_vec
        mean2 = (windows * windows) @ self.mask_vec
        var = mean2 - mean * mean
        good = (var > 1e-4) & torch.from_numpy(ok.reshape(-1)).to(self.dev)
        if not bool(good.any()):
            return float("-inf"), int(indices[0]), c
        inv_sd = torch.where(good, torch.rsqrt(torch.clamp(var, min=1e-4)) / float(np.sqrt(self.n_mask)),
                             torch.zeros_like(var))
        idx = [int(i) for i in indices]
        stack = torch.stack([self.prepared(i) for i in idx]).reshape(len(idx), b ** 3)
        cc = (windows @ stack.T) * inv_sd[:, None]  # (positions, rotations)
        cc = torch.where(good[:, None], cc, torch.full_like(cc, float("-inf")))
        flat = int(torch.argmax(cc))
        p, k = divmod(flat, len(idx))
        d = np.array(np.unravel_index(p, (width,) * 3))
        return float(cc.reshape(-1)[flat]), idx[k], c - s + d


def suppress(zyx: np.ndarray, score: np.ndarray, min_distance: float) -> np.ndarray:
    """Greedy non-maximum suppression: indices of the kept points, highest score first, no two closer than
    ``min_distance`` (voxels)."""
    from scipy.spatial import cKDTree

    order = np.argsort(-np.asarray(score), kind="stable")
    if len(order) < 2 or min_distance <= 0:
        return order
    pts = np.asarray(zyx, dtype=np.float64)[order]
    tree = cKDTree(pts)
    alive = np.ones(len(order), dtype=bool)
    for i in range(len(order)):
        if not alive[i]:
            continue
        for j in tree.query_ball_point(pts[i], r=float(min_distance) - 1e-9):
            if j > i:
                alive[j] = False
    return order[alive]
