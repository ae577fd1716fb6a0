"""Plain values for JSON, YAML and checkpoints: numpy (and 0-d torch) scalars and arrays → Python, containers →
dicts and lists. One function, used wherever a workflow writes a summary, a report or a checkpoint card.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

__all__ = ["to_jsonable"]

_PRIMITIVES = (type(None), bool, int, float, str)


def to_jsonable(value: Any, *, nonfinite: Literal["keep", "null", "text"] = "keep",
                unknown: Literal["keep", "str"] = "keep") -> Any:
    """``value`` with every container and number made plain, recursively.

    Dicts become dicts with ``str`` keys, lists and tuples become lists, numpy arrays nested lists, numpy scalars
    and other 0-d values with ``.item()`` (torch scalars) Python scalars.

    Parameters
    ----------
    nonfinite
        Non-finite floats: ``"keep"`` them (YAML writes ``.nan``; Python's json ``NaN``), ``"null"``: NaN and ±inf →
        ``None``, ``"text"``: NaN → ``None``, ±inf → ``"inf"`` / ``"-inf"`` (strict JSON that keeps the sign).
    unknown
        Anything else (paths, objects): ``"keep"`` as it is, or ``"str"``: its ``str()``.

    Examples
    --------
    >>> to_jsonable({"a": np.float32(0.5), 1: (np.int64(2), np.array([1, 2]))})
    {'a': 0.5, '1': [2, [1, 2]]}
    >>> to_jsonable([float("nan"), np.inf], nonfinite="text")
    [None, 'inf']
    """
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, np.ndarray):
            return plain(v.tolist())
        if isinstance(v, np.generic):
            v = v.item()
        elif not isinstance(v, _PRIMITIVES) and hasattr(v, "item") and getattr(v, "ndim", None) == 0:
            v = v.item()
        if type(v) not in _PRIMITIVES and isinstance(v, (int, float, str)):  # IntEnum, str Enum …: the plain value
            v = str.__str__(v) if isinstance(v, str) else int(v) if isinstance(v, int) else float(v)
        if isinstance(v, float) and not math.isfinite(v) and nonfinite != "keep":
            return None if nonfinite == "null" or math.isnan(v) else ("inf" if v > 0 else "-inf")
        if unknown == "str" and not isinstance(v, _PRIMITIVES):
            return str(v)
        return v

    return plain(value)
