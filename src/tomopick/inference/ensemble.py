"""Ensembles: several picking networks fused into one predictor that runs in one pass over a tomogram.

:func:`ensemble_model` turns loaded checkpoints (:class:`~tomopick.models.checkpoint.LoadedModel`) and weights
into one ``LoadedModel`` that :func:`tomopick.inference.picking.pick_tomogram` picks with like any model: the same
streamed score store, the same peaks, the same threshold rules. Its network, :class:`FusedNetwork`, maps a
normalised window ``(n, 1, z, y, x)`` on the *common grid* (the first member's voxel size) to the fused class
probabilities ``(n, C, z, y, x)``:

* each member sees the window resampled to its own voxel size (trilinear, voxel centres kept: voxel ``i`` of a
  grid of voxel size ``v`` sits at ``i · v`` Å; a Gaussian of σ = (w/v − 1)/2 voxels first when the member's grid
  is coarser, the rule of :mod:`tomopick.inference.rescale`), padded with the median (0 after normalisation) to a
  multiple of its downsampling, and its softmax/sigmoid probabilities are resampled back;
* classes are matched **by name**; the fused probability of class ``c`` is the weighted mean over the members that
  know ``c``: ``Σ_m w_m p_m,c / Σ_{m knows c} w_m`` — a class only one member knows is that member's map;
* flip test-time augmentation wraps the fused network like any other (``make_predictor``), so it composes.

Thresholds follow the single-model rules (:mod:`tomopick.peaks.thresholds`): the ensemble's stored threshold of a
class, for each score, is the weighted mean over the members that know the class of their stored threshold for
that score (a member without one counts with the score's default); when no member stores one, the class gets the
default. Score, peak method and spacing are the first member's.

Batch-norm adaptation (:mod:`tomopick.inference.adapt`) applies to the fused network as to a single one: its
strength is the first member's stored ``adapt_norm``, and its reference statistics are the members' stored
references concatenated in member order (the order in which the fused network's batch-norm layers come) when every
member with batch norm stores one; otherwise the ensemble adapts without a reference (plain AdaBN).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from tomopick.data import ParticleSet
from tomopick.errors import TomopickError
from tomopick.inference.options import default_score
from tomopick.inference.rescale import DEFAULT_TOLERANCE
from tomopick.peaks.thresholds import DEFAULT_THRESHOLD, stored_for_score

#: The ``config["network"]["name"]`` of a fused ensemble (not a registered network: it is never saved).
ENSEMBLE_NETWORK = "ensemble"


def parse_model_weights(text: str | Sequence[float] | None, n_models: int) -> list[float]:
    """Per-model weights from ``"0.6,0.4"`` (or a list), normalised to sum 1; ``None``: equal weights.

    Raises
    ------
    TomopickError
        One line naming ``--model-weights``: not numbers, a count other than the number of models, a negative
        weight, or all zero.
    """
    if n_models < 1:
        raise TomopickError("--model-weights: no model given")
    if text is None or (isinstance(text, str) and not text.strip()):
        return [1.0 / n_models] * n_models
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise TomopickError(f"--model-weights {text!r}: expected numbers separated by commas, e.g. 0.6,0.4") \
                from None
    else:
        values = [float(v) for v in text]
    if len(values) != n_models:
        raise TomopickError(f"--model-weights {text!r}: {len(values)} weight{'s' if len(values) != 1 else ''} for "
                            f"{n_models} model{'s' if n_models != 1 else ''} (give one per --model)")
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise TomopickError(f"--model-weights {text!r}: weights must be finite and >= 0")
    total = sum(values)
    if total <= 0:
        raise TomopickError(f"--model-weights {text!r}: at least one weight must be > 0")
    return [v / total for v in values]


def _foreground(config: dict[str, Any]) -> list[str]:
    return [str(c) for c in config["classes"] if str(c).lower() != "background"]


def _member_divisor(config: dict[str, Any]) -> int:
    from tomopick.models.registry import network_divisor  # lazy: models import torch

    net = config.get("network", {}) or {}
    return network_divisor(net.get("name", "unet"), net.get("hparams", {}) or {})


def fused_classes(configs: Sequence[dict[str, Any]]) -> list[str]:
    """Foreground classes of the ensemble: the first member's in its order, then each further member's new ones."""
    out: list[str] = []
    for config in configs:
        out += [c for c in _foreground(config) if c not in out]
    return out


def class_weights(configs: Sequence[dict[str, Any]], weights: Sequence[float], classes: Sequence[str]) -> np.ndarray:
    """``(members, classes)`` weights of the fused mean: ``w_m / Σ_{m knows c} w_m`` where member ``m`` knows class
    ``c``, else 0 (every column sums to 1, or is all 0 when no member with weight > 0 knows it)."""
    table = np.zeros((len(configs), len(classes)), dtype=np.float64)
    for m, config in enumerate(configs):
        names = set(_foreground(config))
        for c, name in enumerate(classes):
            if name in names:
                table[m, c] = float(weights[m])
    sums = table.sum(axis=0, keepdims=True)
    return np.divide(table, sums, out=np.zeros_like(table), where=sums > 0)


def fused_thresholds(configs: Sequence[dict[str, Any]], table: np.ndarray, classes: Sequence[str],
                     ) -> dict[str, dict[str, float]]:
    """``{score: {class: threshold}}``: per score, the weighted mean of the members' stored thresholds (a member
    without one for that score and class counts with the score's default); classes no member stores a
    threshold for are left out (they get the default when picking)."""
    out: dict[str, dict[str, float]] = {}
    for score, default in DEFAULT_THRESHOLD.items():
        stored = [stored_for_score(config.get("pick"), score) for config in configs]
        values: dict[str, float] = {}
        for c, name in enumerate(classes):
            if not any(name in s for s in stored):
                continue
            values[name] = float(sum(table[m, c] * float(stored[m].get(name, default))
                                     for m in range(len(configs)) if table[m, c] > 0))
        if values:
            out[score] = values
    return out


def _fused_particles(loaded: Sequence[Any], classes: Sequence[str]) -> ParticleSet:
    """The particle specs of the fused classes (each from the first member that knows it), labels 1..C."""
    specs = []
    for name in classes:
        member = next(m for m in loaded if name in _foreground(m.config))
        particles = member.particles
        spec = particles[name] if name in particles else None
        if spec is None:  # pragma: no cover - checkpoints name a particle for every class
            raise TomopickError(f"class {name!r} has no particle description", member.path or None)
        specs.append(spec.model_copy(update={"label": len(specs) + 1}))
    return ParticleSet(name="ensemble", particles=tuple(specs))


def fused_reference(loaded: Sequence[Any]) -> dict[str, Any] | None:
    """The members' stored batch-norm reference statistics (``config["pick"]["adapt_reference"]``) concatenated
    in member order, or ``None`` when a member with batch-norm layers stores none (or one that does not fit them)."""
    from tomopick.inference.adapt import batchnorm_layers

    means: list[Any] = []
    variances: list[Any] = []
    volumes = []
    for member in loaded:
        layers = batchnorm_layers(member.model)
        if not layers:
            continue
        ref = (member.config.get("pick") or {}).get("adapt_reference") or {}
        m, v = ref.get("means") or [], ref.get("variances") or []
        if len(m) != len(layers) or len(v) != len(layers):
            return None
        means.extend(m)
        variances.extend(v)
        volumes.append(int(ref.get("volumes", 0)))
    if not means:
        return None
    return {"means": means, "variances": variances, "volumes": min(volumes)}


def fused_plan(configs: Sequence[dict[str, Any]], voxel_size_A: float) -> dict[str, Any]:
    """The members' stored inference plans (``config["pick"]["roi_size"]``, ``["overlap"]``) as one: the smallest
    stored window on the common grid (the plan of the member hungriest for memory) and the largest overlap (the
    widest context any member asked for); ``{}`` when no member stores one."""
    plan: dict[str, Any] = {}
    rois = [[max(8, int(round(int(v) * float(c["voxel_size_A"]) / voxel_size_A))) for v in c["pick"]["roi_size"]]
            for c in configs if (c.get("pick") or {}).get("roi_size")]
    if rois:
        plan["roi_size"] = [min(r[i] for r in rois) for i in range(3)]
    overlaps = [float(c["pick"]["overlap"]) for c in configs if (c.get("pick") or {}).get("overlap") is not None]
    if overlaps:
        plan["overlap"] = max(overlaps)
    return plan


def window_dependent_any(configs: Sequence[dict[str, Any]]) -> bool:
    from tomopick.inference.picking import window_dependent

    return any(window_dependent(c) for c in configs)


def fused_config(loaded: Sequence[Any], weights: Sequence[float]) -> dict[str, Any]:
    """The checkpoint-like ``config`` of an ensemble (see the module docstring): classes (foreground only),
    particles, voxel size / normalisation / target / score / peak method of the first member, thresholds per
    score, and ``ensemble``: the members (path, weight, voxel size, classes), the common grid's window divisor and
    whether any member's output depends on the window."""
    configs = [m.config for m in loaded]
    first = configs[0]
    norms = [dict(c.get("normalisation") or {"method": "robust"}) for c in configs]
    for m, norm in enumerate(norms[1:], start=1):
        if norm != norms[0]:
            raise TomopickError(f"ensemble members normalise differently ({norms[0]} vs {norm}); "
                                "an ensemble needs one normalisation", loaded[m].path or None)
    outputs = {str(c.get("output", "softmax")) for c in configs}
    classes = fused_classes(configs)
    if not classes:
        raise TomopickError("the ensemble's models have no foreground classes")
    table = class_weights(configs, weights, classes)
    unweighted = [classes[c] for c in range(len(classes)) if table[:, c].sum() == 0]
    if unweighted:
        raise TomopickError(f"class(es) {', '.join(unweighted)} only known to models of weight 0 (--model-weights)")
    vs0 = float(first["voxel_size_A"])
    scores = {str(c.get("pick", {}).get("score") or default_score(c)) for c in configs}
    pick: dict[str, Any] = {k: v for k, v in (first.get("pick") or {}).items()
                            if k in ("peak_method", "distance_factor")}
    pick["score"] = str((first.get("pick") or {}).get("score") or default_score(first))
    if (first.get("pick") or {}).get("adapt_norm") is not None:
        pick["adapt_norm"] = float(first["pick"]["adapt_norm"])
    reference = fused_reference(loaded)
    if reference is not None:
        pick["adapt_reference"] = reference
    pick.update(fused_plan(configs, vs0))
    by_score = fused_thresholds(configs, table, classes)
    if by_score:
        pick["thresholds_by_score"] = by_score
        pick["chosen_on"] = "weighted mean of the members' stored thresholds"
    target = dict(first.get("target") or {"kind": "sphere"})
    fractions = [(c.get("target") or {}).get("radius_fraction") for c in configs]
    if all(f is not None for f in fractions):
        target["radius_fraction"] = float(sum(w * float(f) for w, f in zip(weights, fractions)))
    dependent = window_dependent_any(configs)
    patch = [int(v) for v in first["patch_size"]]
    if dependent:  # the window of a member whose output depends on it: its training patch, on the common grid
        from tomopick.inference.picking import window_dependent

        m = next(i for i, c in enumerate(configs) if window_dependent(c))
        scale = float(configs[m]["voxel_size_A"]) / vs0
        patch = [max(8, int(round(int(v) * scale))) for v in configs[m]["patch_size"]]
    return {
        "network": {"name": ENSEMBLE_NETWORK, "hparams": {}},
        "in_channels": 1,
        "out_channels": len(classes),
        "output": "probability",
        "classes": list(classes),
        "particles": _fused_particles(loaded, classes).model_dump(mode="json"),
        "voxel_size_A": vs0,
        "patch_size": patch,
        "normalisation": norms[0],
        "target": target,
        "pick": pick,
        "ensemble": {
            "members": [{"path": m.path, "weight": float(w), "voxel_size_A": float(c["voxel_size_A"]),
                         "network": c.get("network", {}).get("name"), "classes": _foreground(c),
                         "output": str(c.get("output", "softmax"))}
                        for m, c, w in zip(loaded, configs, weights)],
            "divisor": _member_divisor(first),
            "window_dependent": dependent,
            "outputs": sorted(outputs),
            "scores": sorted(scores),
        },
    }


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(4.0 * sigma)))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


def sample_linear(x: Any, size: Sequence[int], step: float) -> Any:
    """Separable linear samples of ``x`` ``(n, c, z, y, x)`` (torch) at indices ``0, step, 2·step, …`` (``size``
    samples per axis, clamped to the last voxel): voxel ``j`` of the result is at index ``j · step`` of ``x``."""
    import torch

    for axis, n_out in enumerate(size):
        dim = 2 + axis
        n_in = x.shape[dim]
        pos = torch.clamp(torch.arange(int(n_out), dtype=torch.float64, device=x.device) * float(step), 0, n_in - 1)
        i0 = torch.floor(pos).long()
        i1 = torch.clamp(i0 + 1, max=n_in - 1)
        shape = [1] * x.ndim
        shape[dim] = int(n_out)
        w = (pos - i0).to(x.dtype).view(shape)
        x = x.index_select(dim, i0) * (1 - w) + x.index_select(dim, i1) * w
    return x


def _fused_network_class():
    import torch
    import torch.nn.functional as F

    class FusedNetwork(torch.nn.Module):
        """Members run on one window, resampled to their voxel sizes, and fused by class name (see the module
        docstring). Output: probabilities ``(n, C, z, y, x)`` of the fused classes (``output = "probability"``).

        Parameters
        ----------
        members
            The member networks (eval mode).
        scales
            Per member: its voxel size / the common voxel size (1: same grid).
        channels
            Per member: for each fused class, the member's output channel, or -1.
        table
            ``(members, classes)`` fusion weights (:func:`class_weights`).
        outputs
            Per member: ``"softmax"`` or ``"sigmoid"``.
        divisors
            Per member: its window divisor (inputs are padded to a multiple).
        """

        def __init__(self, members: Sequence[Any], scales: Sequence[float], channels: Sequence[Sequence[int]],
                     table: np.ndarray, outputs: Sequence[str], divisors: Sequence[int]) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(members)
            self.scales = [float(s) for s in scales]
            self.outputs = list(outputs)
            self.divisors = [int(d) for d in divisors]
            self.n_classes = int(table.shape[1])
            self.register_buffer("table", torch.as_tensor(table, dtype=torch.float32), persistent=False)
            self.gathers = []
            for m, chans in enumerate(channels):
                used = [c for c, ch in enumerate(chans) if ch >= 0 and table[m, c] > 0]
                self.gathers.append((used, [int(chans[c]) for c in used]))

        def _smooth(self, x: Any, sigma: float) -> Any:
            kernel = torch.as_tensor(_gaussian_kernel(sigma), dtype=x.dtype, device=x.device)
            r = (kernel.numel() - 1) // 2
            n, c = x.shape[:2]
            for axis in range(3):
                shape = [1, 1, 1, 1, 1]
                shape[2 + axis] = kernel.numel()
                pad = [0, 0, 0, 0, 0, 0]
                pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = r
                x = F.conv3d(F.pad(x.reshape(n * c, 1, *x.shape[2:]), pad, mode="replicate"), kernel.view(shape))
                x = x.reshape(n, c, *x.shape[2:])
            return x

        def _run_member(self, m: int, x: Any) -> Any:
            net, scale = self.members[m], self.scales[m]
            size = tuple(int(s) for s in x.shape[2:])
            resample = abs(scale - 1.0) > DEFAULT_TOLERANCE
            xi = x
            if resample:
                if scale > 1.0:  # coarser member grid: smooth first (anti-aliasing)
                    xi = self._smooth(xi, (scale - 1.0) / 2.0)
                # member voxel j sits at common voxel j · scale
                own = tuple(int(math.floor((s - 1) / scale + 1e-6)) + 1 for s in size)
                xi = sample_linear(xi, own, scale)
            own_size = tuple(int(s) for s in xi.shape[2:])
            d = self.divisors[m]
            pad = [(-s) % d for s in own_size]
            if any(pad):
                xi = F.pad(xi, (0, pad[2], 0, pad[1], 0, pad[0]))
            logits = net(xi).float()
            prob = torch.softmax(logits, dim=1) if self.outputs[m] == "softmax" else torch.sigmoid(logits)
            prob = prob[:, :, :own_size[0], :own_size[1], :own_size[2]]
            if resample:  # common voxel i sits at member voxel i / scale
                prob = sample_linear(prob, size, 1.0 / scale)
            return prob

        def forward(self, x: Any) -> Any:
            out = torch.zeros((x.shape[0], self.n_classes, *x.shape[2:]), dtype=torch.float32, device=x.device)
            table = self.table.to(x.device)
            for m in range(len(self.members)):
                used, chans = self.gathers[m]
                if not used:
                    continue
                prob = self._run_member(m, x)
                idx = torch.as_tensor(chans, dtype=torch.long, device=x.device)
                w = table[m, used].view(1, -1, 1, 1, 1)
                out[:, used] += w * prob.index_select(1, idx)
            return out

    return FusedNetwork


def ensemble_model(loaded: Sequence[Any], weights: Sequence[float] | None = None) -> Any:
    """One :class:`~tomopick.models.checkpoint.LoadedModel` fusing ``loaded`` (see the module docstring).

    Parameters
    ----------
    loaded
        Two or more loaded picking checkpoints (any networks, voxel sizes within 0.5–2× of the first's).
    weights
        One weight per model (normalised to sum 1); ``None``: equal.
    """
    from tomopick.inference.rescale import DEFAULT_RANGE
    from tomopick.models.checkpoint import LoadedModel

    loaded = list(loaded)
    if not loaded:
        raise TomopickError("an ensemble needs at least one model")
    weights = parse_model_weights(None if weights is None else list(weights), len(loaded))
    for m in loaded:
        if not m.config.get("classes"):
            raise TomopickError("not a picking checkpoint (no classes): cannot be an ensemble member", m.path or None)
    config = fused_config(loaded, weights)
    vs0 = config["voxel_size_A"]
    scales = []
    for m in loaded:
        scale = float(m.config["voxel_size_A"]) / vs0
        lo, hi = DEFAULT_RANGE
        if not lo <= 1.0 / scale <= hi:
            raise TomopickError(f"voxel size {m.config['voxel_size_A']:g} Å is too far from the first model's "
                                f"{vs0:g} Å for one ensemble (ratio allowed {lo:g}-{hi:g})", m.path or None)
        scales.append(scale)
    classes = config["classes"]
    channels = [[[str(c) for c in m.config["classes"]].index(name) if name in _foreground(m.config) else -1
                 for name in classes] for m in loaded]
    table = class_weights([m.config for m in loaded], weights, classes)
    network = _fused_network_class()(
        [m.model for m in loaded], scales, channels, table,
        [str(m.config.get("output", "softmax")) for m in loaded], [_member_divisor(m.config) for m in loaded])
    network.eval()
    path = " + ".join(f"{m.path or 'model'} ({w:.3g})" for m, w in zip(loaded, weights))
    return LoadedModel(model=network, config=config, card={"name": "ensemble", "members": [m.card for m in loaded]},
                       path=path)


def describe_ensemble(config: dict[str, Any]) -> list[str]:
    """One line per member of an ensemble config: path, weight, voxel size, network, classes."""
    out = []
    for m in (config.get("ensemble") or {}).get("members", []):
        out.append(f"  member {m['path']}: weight {m['weight']:.3g}, {m['network']} at {m['voxel_size_A']:g} Å, "
                   f"classes {', '.join(m['classes'])}")
    return out


class EnsembleSpec:
    """Which checkpoints to fuse and with what weights (``tomopick pick --model A --model B --model-weights``),
    checked before anything is loaded.

    Attributes
    ----------
    models
        Checkpoint paths (or loaded models), at least two.
    weights
        One weight per model, normalised to sum 1.
    """

    def __init__(self, models: Sequence[Any], weights: str | Sequence[float] | None = None) -> None:
        self.models = list(models)
        if len(self.models) < 2:
            raise TomopickError("an ensemble needs at least two --model")
        self.weights = parse_model_weights(weights, len(self.models))

    def __repr__(self) -> str:
        return f"EnsembleSpec({self.models!r}, weights={self.weights!r})"
