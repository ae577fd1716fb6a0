"""Alignment finds planted orientations and shifts; the half-sets stay independent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from tomopick.averaging import AverageOptions, average_subtomograms, sample_volumes
from tomopick.averaging.refine import _align, geometry, normalise_boxes
from tomopick.averaging.fsc import soft_sphere_mask
from tomopick.data.rotations import random_rotations, rotation_angle_deg
from tomopick.match.rotations import uniform_rotations
from tomopick.match.wedge import missing_wedge_weight

BOX = 32


def _asymmetric_map(rng: np.random.Generator) -> np.ndarray:
    ref = np.zeros((BOX,) * 3, np.float32)
    for c in rng.integers(11, 21, (7, 3)):
        ref[tuple(c)] += rng.uniform(0.5, 1.5)
    return gaussian_filter(ref, 1.3).astype(np.float32) * 100


def _plant(ref: np.ndarray, rotations: np.ndarray, shifts_xyz: np.ndarray, tilt=(-60.0, 60.0)) -> np.ndarray:
    """particle(x) = ref(Rᵀ (x − t)), then the missing wedge of the tomogram frame."""
    a = torch.tensor(rotations.transpose(0, 2, 1), dtype=torch.float32)
    off = -torch.einsum("nij,nj->ni", a, torch.tensor(shifts_xyz, dtype=torch.float32))
    parts = sample_volumes(torch.tensor(ref), a, off).numpy()
    w = missing_wedge_weight((BOX,) * 3, tilt)
    return np.fft.irfftn(np.fft.rfftn(parts, axes=(1, 2, 3)) * w, s=(BOX,) * 3, axes=(1, 2, 3)).astype(np.float32)


def test_sample_volumes_rotates_about_the_centre_voxel():
    vol = torch.zeros((9, 9, 9))
    vol[4, 4, 7] = 1.0  # x = +3 from the centre
    rz90 = torch.tensor([[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]])  # x → y
    out = sample_volumes(vol, rz90.transpose(1, 2))  # out(x) = vol(Rᵀ x): rotates the content by R
    assert out[0, 4, 7, 4] == pytest.approx(1.0)  # now at y = +3


def test_planted_copies_are_aligned_back_within_the_step_and_one_voxel():
    rng = np.random.default_rng(0)
    ref = _asymmetric_map(rng)
    rots = random_rotations(6, rng)
    shifts = rng.integers(-3, 4, (6, 3)).astype(np.float64)
    parts = _plant(ref, rots, shifts)
    parts += rng.normal(0, 0.3 * parts.std(), parts.shape).astype(np.float32)
    step = 10.0
    opts = AverageOptions(angular_step_deg=step)
    geo = geometry(opts, radius_A=90.0, voxel_size_A=10.0, box=BOX)
    mask = torch.tensor(soft_sphere_mask(BOX, geo.mask_radius_vox))
    from tomopick.averaging.align import local_rotations

    al = _align(torch.tensor(normalise_boxes(parts)) * mask, ref, geo, opts, None,
                uniform_rotations(2 * step), local_rotations(step, 2 * step), mask)
    err = rotation_angle_deg(al.rotations, rots)
    assert np.all(err <= step), err
    assert np.all(np.abs(al.shifts_xyz_vox - shifts) <= 1.0)
    assert np.all(al.scores > 0.5)


def test_half_maps_depend_only_on_their_own_half():
    """With a given reference, replacing every box of half-set 2 by noise leaves half map 1 unchanged."""
    rng = np.random.default_rng(1)
    ref = _asymmetric_map(rng)
    n = 8
    parts = _plant(ref, random_rotations(n, rng), rng.integers(-2, 3, (n, 3)).astype(np.float64))
    opts = AverageOptions(angular_step_deg=20.0, iterations=2)
    first = average_subtomograms(parts, 10.0, 90.0, opts, np.random.default_rng(7), reference=ref)
    other = parts.copy()
    h2 = first.halves == 1
    other[h2] = rng.standard_normal(other[h2].shape).astype(np.float32)
    second = average_subtomograms(other, 10.0, 90.0, opts, np.random.default_rng(7), reference=ref)
    np.testing.assert_array_equal(first.halves, second.halves)
    assert not set(np.nonzero(~h2)[0]) & set(np.nonzero(h2)[0])
    np.testing.assert_allclose(first.half_maps[0], second.half_maps[0], atol=1e-5)
    assert np.abs(first.half_maps[1] - second.half_maps[1]).max() > 0.1
    # the true copies agree with each other far better than with the noise
    assert first.resolution_A is None or first.resolution_A < second.resolution_A
