"""The one exception type users see: a single line naming the file and the problem."""

from __future__ import annotations

from os import PathLike


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
