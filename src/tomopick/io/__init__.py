"""File formats: tomograms (MRC, OME-Zarr, TIFF, copick) and picks (copick JSON, RELION 3/4/5, Warp, IMOD,
Dynamo, CSV), behind one registry. Units and axis conventions are converted here and nowhere else.

Public API
----------
read_tomogram(path, *, format=None, **options) -> Tomogram
write_tomogram(tomogram, path, *, format=None, overwrite=False, **options) -> Path
read_picks(path, *, format=None, **options) -> Picks
write_picks(picks, path, *, format=None, overwrite=False, **options) -> Path
CopickProject.create(root, particles) / CopickProject.open(config_or_root)   (copick projects, see copick_project)

Formats, what each carries and the conventions converted: ``docs/formats.md``.
"""

# The subpackage tomopick.io.formats is imported first, on purpose: the name ``tomopick.io.formats`` then stays the
# registry function imported below (importing a subpackage for the first time rebinds its name on the parent).
import tomopick.io.formats  # noqa: F401,I001
from tomopick.io.api import read_picks, read_tomogram, write_picks, write_tomogram
from tomopick.io.atomic import atomic_output, check_output
from tomopick.io.copick_project import CopickProject
from tomopick.io.registry import Format, PicksCapabilities, detect, formats, get_format, register

__all__ = [
    "CopickProject", "Format", "PicksCapabilities", "atomic_output", "check_output", "detect", "formats",
    "get_format", "read_picks", "read_tomogram", "register", "write_picks", "write_tomogram",
]
