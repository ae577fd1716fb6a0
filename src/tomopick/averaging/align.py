"""Align subvolumes to a reference over rotations and shifts, with missing-wedge-aware correlation (torch.fft).

Conventions (:mod:`tomopick.data.rotations`): a pick's orientation ``R`` (3×3 on ``(x, y, z)``) rotates the reference
into the particle, and its shift ``t`` (``x, y, z`` voxels) moves the reference centre onto the particle centre:
``particle(x) ≈ reference(Rᵀ (x − t))`` with ``x`` relative to the box centre (index ``b // 2``).

Score of a rotation and shift: the normalised cross-correlation of the particle and the rotated, shifted reference,
both restricted to the frequencies the particle has — the reference is rotated into the particle's frame and then
multiplied by the particle's missing-wedge weight (in the tomogram frame, the same for every pick) and a band-pass —
so the missing wedge neither rewards nor penalises any orientation. Scores lie in [−1, 1].

Search: a global pass over a uniform rotation set (:func:`tomopick.match.rotations.uniform_rotations`, twice the
final step) on 2×-binned boxes, then local passes per pick on full boxes: over the rotations within that coarse step
of its best one at the final step, then within the final step at half of it (so the orientation found lies within
about half the final step of the best one). Shifts are searched exhaustively within ``max_shift_vox`` per axis (FFT).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from tomopick.data.rotations import rotation_angle_deg
from tomopick.match.rotations import uniform_rotations

#: Elements of one batch of correlation maps (float32): bounds memory at ≈ 4 × this many bytes.
BATCH_ELEMENTS = 12_000_000


@dataclass(frozen=True)
class Alignment:
    """Best orientation and shift per particle.

    Attributes
    ----------
    rotations
        ``(n, 3, 3)`` float64 ``R`` (reference → particle).
    shifts_xyz_vox
        ``(n, 3)`` shifts ``t`` in voxels of the boxes aligned, ``(x, y, z)``.
    scores
        ``(n,)`` normalised cross-correlation at the optimum.
    """

    rotations: np.ndarray
    shifts_xyz_vox: np.ndarray
    scores: np.ndarray


def sample_volumes(volumes: torch.Tensor, matrices: torch.Tensor,
                   offsets_xyz: torch.Tensor | None = None) -> torch.Tensor:
    """Resample cubic volumes: ``out_i(y) = vol_i(A_i y + b_i)`` (trilinear, 0 outside).

    Parameters
    ----------
    volumes
        ``(m, b, b, b)`` or one ``(b, b, b)`` volume used for every matrix.
    matrices
        ``(m, 3, 3)`` ``A`` acting on ``(x, y, z)`` voxel coordinates relative to the centre voxel ``b // 2``.
    offsets_xyz
        ``(m, 3)`` ``b`` in voxels ``(x, y, z)``; ``None``: 0.

    Returns ``(m, b, b, b)``. With ``A = Rᵀ`` this rotates a reference into a particle's frame; with ``A = R`` and
    ``b = t`` it brings an aligned particle back into the reference frame.
    """
    m = matrices.shape[0]
    box = volumes.shape[-1]
    dev, dt = volumes.device, volumes.dtype
    c = box // 2
    g = torch.arange(box, device=dev, dtype=dt) - c
    z, y, x = torch.meshgrid(g, g, g, indexing="ij")
    xyz = torch.stack([x, y, z], dim=-1).reshape(1, -1, 3).expand(m, -1, -1)
    # grid_sample's normalised coordinates (align_corners=True): u = s (index) − 1 with s = 2 / (b − 1)
    scale = 2.0 / (box - 1)
    a = matrices.to(dev, dt)
    trans = torch.full((m, 3), float(c), device=dev, dtype=dt)
    if offsets_xyz is not None:
        trans = trans + offsets_xyz.to(dev, dt)
    grid = torch.baddbmm((scale * trans - 1.0)[:, None, :], xyz, (scale * a).transpose(1, 2))
    vols = volumes[None].expand(m, -1, -1, -1) if volumes.dim() == 3 else volumes
    out = F.grid_sample(vols[:, None], grid.reshape(m, box, box, box, 3), mode="bilinear", padding_mode="zeros",
                        align_corners=True)
    return out[:, 0]


def _hermitian_weights(box: int, device: torch.device) -> torch.Tensor:
    """Weights of the rfft half-grid columns for Parseval sums (2 for columns standing for a conjugate pair)."""
    w = torch.full((box // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if box % 2 == 0:
        w[-1] = 1.0
    return w


def _normalise_spectra(spec: torch.Tensor, box: int) -> torch.Tensor:
    """Spectra ``(..., b, b, b//2+1)`` scaled so that their real-space signals have unit norm."""
    w = _hermitian_weights(box, spec.device)
    energy = (spec.real ** 2 + spec.imag ** 2).mul(w).sum(dim=(-3, -2, -1)) / box ** 3
    return spec / energy.clamp_min(1e-20).sqrt()[..., None, None, None]


def _window_index(box: int, max_shift: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices into a ``b³`` correlation map of the shifts within ±``max_shift`` per axis (z-major), and the
    signed shifts per axis."""
    s = int(min(max_shift, (box - 1) // 2))
    signed = torch.arange(-s, s + 1, device=device)
    idx = signed % box
    flat = (idx[:, None, None] * box * box + idx[None, :, None] * box + idx[None, None, :]).reshape(-1)
    return flat, signed


def _best_in_window(cc: torch.Tensor, flat_idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``cc`` ``(..., b, b, b)`` → max and flat window index of the max over the shift window."""
    w = cc.reshape(*cc.shape[:-3], -1).index_select(-1, flat_idx)
    return w.max(dim=-1)


def _unravel(flat: torch.Tensor, signed: torch.Tensor) -> np.ndarray:
    """Flat window indices → shifts ``(n, 3)`` ``(x, y, z)``."""
    k = len(signed)
    iz, rem = flat // (k * k), flat % (k * k)
    iy, ix = rem // k, rem % k
    return torch.stack([signed[ix], signed[iy], signed[iz]], dim=-1).cpu().numpy().astype(np.float64)


def particle_spectra(particles: torch.Tensor, filt: torch.Tensor) -> torch.Tensor:
    """Unit-norm filtered spectra ``(n, b, b, b//2+1)`` of particles ``(n, b, b, b)``."""
    box = particles.shape[-1]
    return _normalise_spectra(torch.fft.rfftn(particles, dim=(-3, -2, -1)) * filt, box)


def global_search(particles: torch.Tensor, reference: torch.Tensor, rotations: np.ndarray, filt: torch.Tensor,
                  max_shift_vox: int) -> Alignment:
    """Every particle against the reference under every rotation of a shared set.

    Parameters
    ----------
    particles
        ``(n, b, b, b)`` masked, normalised boxes.
    reference
        ``(b, b, b)`` masked reference.
    rotations
        ``(m, 3, 3)`` candidate ``R``.
    filt
        ``(b, b, b//2+1)`` spectral weight in the particle frame (missing wedge × band-pass).
    max_shift_vox
        Largest shift searched per axis.
    """
    n, box = particles.shape[0], particles.shape[-1]
    dev = particles.device
    pf = particle_spectra(particles, filt)
    idx, signed = _window_index(box, max_shift_vox, dev)
    best = torch.full((n,), -torch.inf, device=dev)
    best_rot = torch.zeros(n, dtype=torch.long, device=dev)
    best_flat = torch.zeros(n, dtype=torch.long, device=dev)
    mats = torch.as_tensor(np.asarray(rotations), dtype=reference.dtype, device=dev)
    per_rot = max(1, BATCH_ELEMENTS // (n * box ** 3))
    ref_chunk = max(per_rot, 8)
    for r0 in range(0, len(mats), ref_chunk):
        rs = mats[r0:r0 + ref_chunk]
        rotated = sample_volumes(reference, rs.transpose(1, 2))
        rf = _normalise_spectra(torch.fft.rfftn(rotated, dim=(-3, -2, -1)) * filt, box).conj()
        for k0 in range(0, len(rs), per_rot):
            sub = rf[k0:k0 + per_rot]
            cc = torch.fft.irfftn(pf[:, None] * sub[None], s=(box,) * 3, dim=(-3, -2, -1))
            val, flat = _best_in_window(cc, idx)  # (n, k)
            v, j = val.max(dim=1)
            better = v > best
            best = torch.where(better, v, best)
            best_rot = torch.where(better, j + r0 + k0, best_rot)
            best_flat = torch.where(better, flat.gather(1, j[:, None])[:, 0], best_flat)
    return Alignment(rotations=np.asarray(rotations)[best_rot.cpu().numpy()],
                     shifts_xyz_vox=_unravel(best_flat, signed), scores=best.cpu().numpy().astype(np.float64))


def local_search(particles: torch.Tensor, reference: torch.Tensor, centres: np.ndarray, local: np.ndarray,
                 filt: torch.Tensor, max_shift_vox: int) -> Alignment:
    """Each particle ``i`` against the reference under the rotations ``centres[i] @ local[j]``.

    ``centres`` ``(n, 3, 3)``; ``local`` ``(k, 3, 3)`` rotations near the identity (include the identity to keep
    the centre). Other arguments as :func:`global_search`.
    """
    n, box = particles.shape[0], particles.shape[-1]
    dev = particles.device
    pf = particle_spectra(particles, filt)
    idx, signed = _window_index(box, max_shift_vox, dev)
    cand = np.einsum("nij,kjl->nkil", np.asarray(centres, dtype=np.float64), np.asarray(local, dtype=np.float64))
    k = cand.shape[1]
    per_particle = max(1, BATCH_ELEMENTS // (k * box ** 3))
    scores = np.empty(n)
    choice = np.empty(n, dtype=np.int64)
    flats = torch.empty(n, dtype=torch.long, device=dev)
    for i0 in range(0, n, per_particle):
        c = cand[i0:i0 + per_particle]
        m = torch.as_tensor(c.reshape(-1, 3, 3), dtype=reference.dtype, device=dev)
        rotated = sample_volumes(reference, m.transpose(1, 2))
        rf = _normalise_spectra(torch.fft.rfftn(rotated, dim=(-3, -2, -1)) * filt, box).conj()
        rf = rf.reshape(len(c), k, *rf.shape[1:])
        cc = torch.fft.irfftn(pf[i0:i0 + len(c), None] * rf, s=(box,) * 3, dim=(-3, -2, -1))
        val, flat = _best_in_window(cc, idx)  # (c, k)
        v, j = val.max(dim=1)
        scores[i0:i0 + len(c)] = v.cpu().numpy()
        choice[i0:i0 + len(c)] = j.cpu().numpy()
        flats[i0:i0 + len(c)] = flat.gather(1, j[:, None])[:, 0]
    rots = cand[np.arange(n), choice]
    return Alignment(rotations=rots, shifts_xyz_vox=_unravel(flats, signed), scores=scores)


def local_rotations(step_deg: float, radius_deg: float) -> np.ndarray:
    """Rotations ``(k, 3, 3)`` of a uniform set at ``step_deg`` that lie within ``radius_deg`` of the identity,
    the identity first."""
    mats = uniform_rotations(step_deg)
    near = mats[rotation_angle_deg(np.broadcast_to(np.eye(3), mats.shape), mats) <= radius_deg]
    return np.concatenate([np.eye(3)[None], near], axis=0)


def bin2(volumes: torch.Tensor) -> torch.Tensor:
    """``(n, b, b, b)`` → ``(n, b//2, b//2, b//2)`` block means of voxels ``2j, 2j+1``: the centre voxel ``b // 2``
    falls into output voxel ``(b // 2) // 2``, within half a binned voxel of its centre."""
    nb = volumes.shape[-1] // 2
    v = volumes[..., : 2 * nb, : 2 * nb, : 2 * nb]
    return F.avg_pool3d(v[:, None], kernel_size=2)[:, 0]
