"""Core data model: :class:`Tomogram`, :class:`Picks`, :class:`ParticleSpec` / :class:`ParticleSet`."""

from tomopick.data.coords import angstrom_to_index, angstrom_to_voxel, inside_volume, voxel_to_angstrom
from tomopick.data.particles import CZII, PRESETS, ParticleSet, ParticleSpec, get_particle_set
from tomopick.data.picks import COLUMNS as PICK_COLUMNS
from tomopick.data.picks import Picks
from tomopick.data.tomogram import Tomogram

__all__ = [
    "CZII", "PICK_COLUMNS", "PRESETS", "ParticleSet", "ParticleSpec", "Picks", "Tomogram", "angstrom_to_index",
    "angstrom_to_voxel", "get_particle_set", "inside_volume", "voxel_to_angstrom",
]
