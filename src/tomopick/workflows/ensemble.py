"""Loading an ensemble of checkpoints for ``tomopick pick --model A --model B [--model-weights …]``.

The fusion itself is a stage (:mod:`tomopick.inference.ensemble`); this module only reads the checkpoints
(:func:`tomopick.workflows.pick.resolve_model` for each) and hands them over. The result is one
:class:`~tomopick.models.checkpoint.LoadedModel` that :func:`tomopick.workflows.pick.pick` uses like any model.
"""

from __future__ import annotations

from typing import Any, Sequence

from tomopick.inference.ensemble import EnsembleSpec, describe_ensemble, ensemble_model

__all__ = ["EnsembleSpec", "describe_ensemble", "load_ensemble"]


def load_ensemble(spec: EnsembleSpec | Sequence[Any], weights: Sequence[float] | str | None = None) -> Any:
    """A fused :class:`~tomopick.models.checkpoint.LoadedModel` from an :class:`EnsembleSpec` (or a list of
    checkpoint paths / loaded models and optional weights)."""
    from tomopick.workflows.pick import resolve_model

    if not isinstance(spec, EnsembleSpec):
        spec = EnsembleSpec(list(spec), weights)
    members = [resolve_model(m) for m in spec.models]
    return ensemble_model(members, spec.weights)
