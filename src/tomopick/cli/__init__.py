"""Command line: a thin typer layer over :mod:`tomopick.workflows` (parse, call, print)."""
