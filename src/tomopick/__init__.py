"""tomopick: find every copy of a protein complex in cryo-electron tomograms.

Conventions (fixed once, converted only in :mod:`tomopick.io`):

* arrays are ``(z, y, x)`` C-order;
* pick coordinates are ``x, y, z`` in Ångström with the origin at the centre of voxel ``(0, 0, 0)``,
  so a voxel index is ``round(coord_A / voxel_size_A)``;
* orientations are rotation matrices that rotate the reference (template) into the particle
  (``particle_xyz = R @ reference_xyz``), stored in :class:`~tomopick.data.Picks` as ZYZ Euler angles
  ``rot_deg, tilt_deg, psi_deg`` (the RELION angle names; see :mod:`tomopick.data.rotations`).
"""

from tomopick.errors import TomopickError

__version__ = "0.1.0"

__all__ = ["TomopickError", "__version__"]
