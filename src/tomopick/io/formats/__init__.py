"""One module per format family; importing this package registers them all (order matters for defaults:
within one extension, the first format without a sniffer is the default for writing)."""

from tomopick.io.formats import copick, csv, dynamo, imod, mrc, omezarr, star, tiff  # noqa: F401
