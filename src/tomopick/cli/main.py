"""``tomopick`` entry point: builds the typer app and turns user errors into one line + exit status 2."""

from __future__ import annotations

import os
import sys

import typer

from tomopick import __version__
from tomopick.errors import TomopickError

app = typer.Typer(
    name="tomopick",
    help="Find every copy of a protein complex in cryo-electron tomograms: simulate, train, pick, evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"tomopick {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """tomopick: particle picking for cryo-ET. Coordinates are x, y, z in Ångström; arrays are (z, y, x)."""


# Each command module exposes ``register(app)``; heavy imports (torch, monai) stay inside the commands.
from tomopick.cli import calibrate as _calibrate  # noqa: E402
from tomopick.cli import demo as _demo  # noqa: E402
from tomopick.cli import evaluate as _evaluate  # noqa: E402
from tomopick.cli import formats as _formats  # noqa: E402
from tomopick.cli import pick as _pick  # noqa: E402
from tomopick.cli import prompt as _prompt  # noqa: E402
from tomopick.cli import simulate as _simulate  # noqa: E402
from tomopick.cli import train as _train  # noqa: E402

for _module in (_formats, _simulate, _train, _pick, _calibrate, _prompt, _evaluate, _demo):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; :class:`TomopickError` → ``error: <file>: <problem>`` on stderr and exit 2."""
    debug = os.environ.get("TOMOPICK_DEBUG", "") not in ("", "0")
    try:
        app(args=argv, prog_name="tomopick", standalone_mode=True)
    except TomopickError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        print("error: out of memory (try a smaller --batch-size or a machine with more RAM)", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"internal error: {type(exc).__name__}: {first} (rerun with TOMOPICK_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
