"""One module per format family; importing this package registers them all."""

from tomopick.io.formats import copick, mrc, omezarr  # noqa: F401
