"""``tomopick`` entry point: builds the typer app and turns user errors into one line + exit status 2."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import warnings

import typer

try:  # typer >= 0.2x carries its own copy of click
    from typer._click import exceptions as click_exceptions
except ImportError:  # pragma: no cover - older typer runs on click itself
    from click import exceptions as click_exceptions  # type: ignore[no-redef]

from tomopick import __version__
from tomopick.errors import TomopickError, command_options

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


# Each command module ``tomopick.cli.<name>`` exposes ``register(app)``; heavy imports (torch, monai) stay inside
# the commands. The order is the order of ``tomopick --help``; a new command adds its module name here.
COMMAND_MODULES: tuple[str, ...] = (
    "formats",
    "simulate",
    "train",
    "search",
    "pick",
    "segment",
    "calibrate",
    "prompt",
    "evaluate",
    "match",
    "report",
    "demo",
    "average",
)

for _name in COMMAND_MODULES:
    importlib.import_module(f"tomopick.cli.{_name}").register(app)


#: Per command: the option that plays each role error messages may ask for (``tomopick.errors.OPTION_ROLES``);
#: commands not listed have none of them. ``tests/cli`` checks that every option named here exists.
COMMAND_OPTIONS: dict[str, dict[str, str]] = {
    "convert": {"voxel_size": "--voxel-size", "picks_voxel_size": "--voxel-size", "format_in": "--format-in",
                "format_out": "--format-out", "particle": "--particle", "run": "--run", "tomo_shape": "--tomo-shape",
                "tomogram": "--tomogram"},
    "info": {"voxel_size": "--voxel-size", "picks_voxel_size": "--voxel-size", "format_in": "--format",
             "particle": "--particle", "run": "--run", "tomo_shape": "--tomo-shape", "tomogram": "--tomogram"},
    "pick": {"voxel_size": "--voxel-size", "format_out": "--format", "allow_nonfinite": "--allow-nonfinite"},
    "segment": {"voxel_size": "--voxel-size", "allow_nonfinite": "--allow-nonfinite"},
    "prompt extract": {"voxel_size": "--tomogram-voxel-size"},
    "match": {"voxel_size": "--voxel-size", "format_out": "--format"},
    "average": {"voxel_size": "--voxel-size"},
    "finetune": {"voxel_size": "--voxel-size"},
    "report": {"voxel_size": "--voxel-size"},
}


def _resolve(argv: list[str]) -> tuple[str, object]:
    command = typer.main.get_command(app)
    words: list[str] = []
    for token in argv:
        commands = getattr(command, "commands", None)  # a group
        if commands is None:
            break
        if token.startswith("-"):
            continue
        sub = commands.get(token)
        if sub is None:
            break
        words.append(token)
        command = sub
    return " ".join(words), command


def command_path(argv: list[str]) -> str:
    """The (sub)command ``argv`` runs, e.g. ``"prompt extract"`` ("" for none): the leading non-option words that
    name commands (the root and the ``prompt`` group take flags only)."""
    return _resolve(argv)[0]


def _has_option(argv: list[str], option: str) -> bool:
    params = getattr(_resolve(argv)[1], "params", [])
    return any(option in (*p.opts, *p.secondary_opts) for p in params)


def _usage_error(exc: click_exceptions.UsageError) -> str:
    """A click usage error (unknown option, missing argument, bad value) as one line."""
    message = " ".join(exc.format_message().split()).rstrip(".")
    if exc.ctx is None:
        return message
    return f"{exc.ctx.command_path}: {message} (see '{exc.ctx.command_path} --help')"


def _run(argv: list[str]) -> int:
    """Parse and run one command; usage errors and Ctrl-C propagate to :func:`main` (no rich error boxes)."""
    command = typer.main.get_command(app)
    try:
        with command.make_context("tomopick", list(argv)) as ctx:
            command.invoke(ctx)
    except typer.Exit as exc:  # --help, --version
        return int(exc.exit_code or 0)
    return 0


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; :class:`TomopickError` and usage errors → ``error: <problem>`` on one line of stderr and exit 2;
    Ctrl-C → ``interrupted`` and exit 130."""
    debug = os.environ.get("TOMOPICK_DEBUG", "") not in ("", "0")
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        with command_options(COMMAND_OPTIONS.get(command_path(args), {})), warnings.catch_warnings():
            # torch says this of any pickle it refuses or reads; the refusal is reported on its own line
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            code = _run(args)
    except click_exceptions.NoArgsIsHelpError as exc:  # `tomopick`, `tomopick prompt`: the help, as before
        typer.echo(exc.ctx.get_help())
        sys.exit(2)
    except click_exceptions.UsageError as exc:
        print(f"error: {_usage_error(exc)}", file=sys.stderr)
        sys.exit(2)
    except click_exceptions.ClickException as exc:
        print(f"error: {' '.join(exc.format_message().split())}", file=sys.stderr)
        sys.exit(2)
    except TomopickError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort):
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:
        if exc.errno == errno.EPIPE:  # `tomopick particles | head`: the reader left; nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second EPIPE at exit
            sys.exit(1)
        if debug:
            raise
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"error: {where}{exc.strerror or exc}", file=sys.stderr)
        sys.exit(2)
    except MemoryError:
        smaller = "a smaller --batch-size or " if _has_option(args, "--batch-size") else ""
        print(f"error: out of memory (try {smaller}a machine with more RAM)", file=sys.stderr)
        sys.exit(1)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if debug:
            raise
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"internal error: {type(exc).__name__}: {first} (rerun with TOMOPICK_DEBUG=1 for the traceback)",
              file=sys.stderr)
        sys.exit(1)
    sys.exit(code)


if __name__ == "__main__":  # pragma: no cover
    main()
