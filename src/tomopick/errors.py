"""The one exception type users see: a single line naming the file and the problem."""

from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from os import PathLike
from typing import Iterator, Mapping


class TomopickError(Exception):
    """A user-facing error: ``"<path>: <problem>"`` on one line.

    The CLI prints ``str(error)`` and exits with status 2; it never shows a traceback for these.

    Parameters
    ----------
    message
        What is wrong, in words a user can act on (one line).
    path
        The file or folder the problem is about, if any.
    """

    def __init__(self, message: str, path: str | PathLike[str] | None = None) -> None:
        self.message = " ".join(str(message).split())  # force a single line
        self.path = None if path is None else str(path)
        super().__init__(self.__str__())

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class NonFiniteError(TomopickError):
    """The tomogram holds NaN or Inf values (refused unless ``allow_nonfinite``)."""


class OutputExistsError(TomopickError):
    """The output exists and ``overwrite`` was not given."""


# -- advice that names options -----------------------------------------------------------------------------------
# Readers and writers are shared by every command, but each command has its own options: ``convert`` says
# ``--format-in``, ``info`` ``--format``, ``prompt extract`` ``--tomogram-voxel-size``, ``evaluate`` has none of them.
# Messages therefore ask for a *role* and the CLI states, per command, which option plays it (see
# ``tomopick.cli.main``); a role the running command has no option for gets the message's fallback advice.

#: Roles an error message may ask the user to supply, with the option ``tomopick convert`` has for each (the
#: wording used outside the CLI, e.g. from Python).
OPTION_ROLES: dict[str, str] = {
    "voxel_size": "--voxel-size",  # a tomogram's voxel size (Å) where its header has none
    "picks_voxel_size": "--voxel-size",  # the pixel size of picks stored in pixels
    "format_in": "--format-in",  # the format of an input whose name does not tell
    "format_out": "--format-out",  # the format of an output whose name does not tell
    "particle": "--particle",  # the class name for picks of a format without one
    "run": "--run",  # the run name for picks of a format without one
    "tomo_shape": "--tomo-shape",  # the tomogram size (RELION 5 centred coordinates)
    "tomogram": "--tomogram",  # a tomogram file giving size and voxel size
    "allow_nonfinite": "--allow-nonfinite",  # accept NaN/Inf voxels
}

_COMMAND_OPTIONS: ContextVar[Mapping[str, str] | None] = ContextVar("tomopick_command_options", default=None)


def option_for(role: str) -> str | None:
    """The running command's option for ``role`` (see :data:`OPTION_ROLES`), or None when it has none."""
    options = _COMMAND_OPTIONS.get()
    return (OPTION_ROLES if options is None else options).get(role)


def pass_option(role: str, what: str = "", otherwise: str = "") -> str:
    """``"pass --voxel-size (Å)"`` with the running command's option for ``role``, else ``otherwise``."""
    option = option_for(role)
    if option is None:
        return otherwise
    return f"pass {option}" + (f" {what}" if what else "")


@contextmanager
def command_options(options: Mapping[str, str]) -> Iterator[None]:
    """Within the block, :func:`option_for` answers with ``options`` (role → option of the running command)."""
    token = _COMMAND_OPTIONS.set(dict(options))
    try:
        yield
    finally:
        _COMMAND_OPTIONS.reset(token)
