"""One example → every copy without a trained network: template matching with the prompt, then bootstrapping.

Round 0 matches the prompt (a sub-tomogram cut at one particle, or a map) as a template
(:mod:`tomopick.match`). Each further round aligns and averages the most confident hits — each hit is cut from the
matching grid at its peak and rotated back into the reference frame by the inverse of its best rotation; the average
is taken in Fourier space with every hit's missing wedge rotated alongside (``Σ Fᵢ / max(Σ Wᵢ, w_min)``, a
wedge-aware average) — and re-matches the tomogram with that cleaner average. Picks come from the last round through
the same score store and peak extraction as ``tomopick pick``.

A round is kept only if its template re-finds the hits it was averaged from: at least :data:`MIN_AGREEMENT` of them
among its own best hits (:func:`hit_agreement`). Otherwise the average drifted — to a featureless blob or to a
look-alike that matches more of the tomogram than the prompt did — and the bootstrap stops with the previous
round's picks (the prompt's own match when the first re-match drifts).

Pure functions: arrays in, arrays out (the workflow :mod:`tomopick.workflows.prompt` reads prompts and tomograms).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from tomopick.data import Picks
from tomopick.match.options import MatchOptions
from tomopick.match.picking import Grid, search_and_pick
from tomopick.match.template import Template, prepare_template, rotate_volume, sphere_mask
from tomopick.match.wedge import missing_wedge_weight

#: Hits averaged per round at most (the most confident ones above the threshold).
DEFAULT_TOP = 40
#: Re-matching rounds after the first match.
DEFAULT_ROUNDS = 2
#: A re-match is kept only when at least this fraction of the hits its average was made of are among its own best
#: hits (as many as were averaged): a majority, i.e. the new template still ranks the hits that built it first.
MIN_AGREEMENT = 0.5
#: Two hits are the same particle within this fraction of the radius (the CZII/F1 matching distance).
MATCH_TOLERANCE = 0.5
#: A hit may carry at most this many times the prompt's own signal variance under the mask (:func:`contrast_filter`).
MAX_SIGNAL_RATIO = 2.5
#: The class veto (:func:`known_kind`) turns on only when at least this share of round 0's best hits that a
#: classifier labels carry the prompt's own label: a majority, i.e. the classifier names the prompt's copies
#: consistently, rightly or not (labels scattered over the copies, as a kind it never saw may get, keep it off).
MIN_KIND_SHARE = 0.5


@dataclass(frozen=True)
class Classified:
    """Objects a supervised picker found: centres ``zyx`` ``(n, 3)`` on the matching grid (voxels), their class
    names, and the distance (voxels) within which a hit is "at" one of them."""

    zyx: np.ndarray
    labels: np.ndarray
    tolerance_vox: float
    _tree: Any = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        from scipy.spatial import cKDTree

        objects = np.asarray(self.zyx, dtype=np.float64).reshape(-1, 3)
        object.__setattr__(self, "_tree", cKDTree(objects) if len(objects) else None)  # built once, queried per round

    def label_at(self, zyx: np.ndarray) -> np.ndarray:
        """The class of the nearest object within the tolerance of each point ``(m, 3)`` ("" where none is)."""
        points = np.asarray(zyx, dtype=np.float64).reshape(-1, 3)
        out = np.full(len(points), "", dtype=object)
        if not len(points) or self._tree is None:
            return out
        dist, idx = self._tree.query(points)
        near = dist <= float(self.tolerance_vox)
        out[near] = np.asarray(self.labels, dtype=object)[idx[near]]
        return out


@dataclass
class BootstrapResult:
    """Picks of the last round, the final template ``(b, b, b)`` and one summary per round."""

    picks: Picks
    template: np.ndarray
    rounds: list[dict[str, Any]] = field(default_factory=list)
    round_picks: list[Picks] = field(default_factory=list)

    @property
    def kept_round(self) -> int:
        """The round whose picks these are (a later round whose average drifted is summarised but not kept)."""
        kept = [i for i, r in enumerate(self.rounds) if r.get("kept", True)]
        return kept[-1] if kept else 0


def cut_box(volume: np.ndarray, centre_zyx: np.ndarray, box: int) -> np.ndarray:
    """The ``(box, box, box)`` cube of ``volume`` centred on the voxel nearest ``centre_zyx`` (zeros outside)."""
    half = box // 2
    c = np.rint(np.asarray(centre_zyx, dtype=np.float64)).astype(int)
    out = np.zeros((box,) * 3, dtype=np.float32)
    src = tuple(slice(max(0, ci - half), min(n, ci - half + box)) for ci, n in zip(c, volume.shape))
    dst = tuple(slice(s.start - (ci - half), s.stop - (ci - half)) for s, ci in zip(src, c))
    out[dst] = volume[src]
    return out


def wedge_average(boxes: list[np.ndarray], rotations: list[np.ndarray],
                  tilt_range_deg: tuple[float, float] | None, w_min: float = 0.2) -> np.ndarray:
    """Average of sub-volumes ``(b, b, b)`` after rotating each by the inverse of its rotation (into the reference
    frame), in Fourier space with each one's missing wedge rotated alongside: ``Σ Fᵢ / max(Σ Wᵢ, w_min · n)``."""
    if not boxes:
        raise ValueError("no sub-volumes to average")
    b = boxes[0].shape[0]
    if tilt_range_deg is None:
        wedge = np.ones((b,) * 3, dtype=np.float32)
    else:
        wedge = np.fft.fftshift(missing_wedge_weight((b, b, b), tilt_range_deg, rfft=False))
    num = np.zeros((b, b, b), dtype=np.complex128)
    den = np.zeros((b, b, b), dtype=np.float64)
    for box, rot in zip(boxes, rotations):
        inv = np.asarray(rot, dtype=np.float64).T
        aligned = rotate_volume(box, inv)
        w = np.clip(rotate_volume(wedge, inv), 0.0, 1.0)  # centred spectrum rotates like the volume
        f = np.fft.fftshift(np.fft.fftn(aligned))
        num += f * w
        den += w
    avg = num / np.maximum(den, w_min * len(boxes))
    return np.real(np.fft.ifftn(np.fft.ifftshift(avg))).astype(np.float32)


def local_sd(volume: np.ndarray, zyx: np.ndarray, radius_vox: float) -> np.ndarray:
    """Standard deviation of ``volume`` under a ball of ``radius_vox`` about each point ``(n, 3)`` (nearest voxel;
    the part of the ball inside the volume)."""
    r = int(np.ceil(radius_vox))
    g = np.arange(-r, r + 1)
    offsets = np.argwhere((g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
                          <= radius_vox * radius_vox) - r
    centres = np.rint(np.asarray(zyx, dtype=np.float64).reshape(-1, 3)).astype(np.int64)
    out = np.zeros(len(centres))
    dims = np.array(volume.shape)
    for i, c in enumerate(centres):
        idx = c + offsets
        idx = idx[np.all((idx >= 0) & (idx < dims), axis=1)]
        out[i] = float(volume[tuple(idx.T)].std()) if len(idx) else 0.0
    return out


def contrast_filter(volume: np.ndarray, reference_zyx: np.ndarray, radius_vox: float,
                    max_ratio: float = MAX_SIGNAL_RATIO, n_background: int = 2000,
                    seed: int = 0) -> tuple[Any, dict[str, float]] | tuple[None, dict[str, float]]:
    """Drop hits denser or larger than the prompt: ``accept(zyx)`` keeps points whose signal variance under the mask
    (local variance minus the background's, the median over random voxels) is at most ``max_ratio`` × the
    prompt's own, measured at ``reference_zyx`` (where the prompt was cut).

    A single noisy copy correlates almost as well with any blob of its size or larger: under a normalised
    correlation a ribosome or thyroglobulin outscores other copies of a small particle (measured on simulations:
    the local standard deviation under a 72 Å mask is 1.2–1.35 at 8vaf, 2.0–2.4 at apo-ferritin, ribosome,
    thyroglobulin, 0.97 in the background). ``None`` when the prompt does not stand out from the background."""
    rng = np.random.default_rng(seed)
    probe = np.stack([rng.integers(0, n, n_background) for n in volume.shape], axis=1)
    background = float(np.median(local_sd(volume, probe, radius_vox)))
    own = float(local_sd(volume, np.asarray(reference_zyx)[None], radius_vox)[0])
    excess = own * own - background * background
    info = {"background_sd": background, "prompt_sd": own}
    if not excess > 0.05 * background * background:
        return None, info
    limit = float(np.sqrt(background * background + max_ratio * excess))
    info["limit_sd"] = limit
    return (lambda zyx: local_sd(volume, zyx, radius_vox) <= limit), info


def object_gate(objects_zyx: np.ndarray, tolerance_vox: float) -> Callable[[np.ndarray], np.ndarray]:
    """``accept(zyx)``: points within ``tolerance_vox`` of one of ``objects_zyx`` ``(n, 3)`` (voxels; none given:
    nothing is accepted)."""
    objects = np.asarray(objects_zyx, dtype=np.float64).reshape(-1, 3)
    near = Classified(objects, np.full(len(objects), "object", dtype=object), float(tolerance_vox))
    return lambda zyx: near.label_at(zyx) != ""


def known_kind(prompt_label: str, hit_labels: Any, min_share: float = MIN_KIND_SHARE) -> tuple[str | None, float]:
    """The class a classifier consistently gives the prompt's copies: ``prompt_label`` when at least
    ``min_share`` of the labelled ``hit_labels`` ("" = unlabelled) carry it, else ``None``; and that share."""
    labels = [str(x) for x in hit_labels if str(x)]
    if not prompt_label or not labels:
        return None, 0.0
    share = sum(x == prompt_label for x in labels) / len(labels)
    return (prompt_label if share >= float(min_share) else None), share


def class_veto(classified: Classified, kind: str) -> Callable[[np.ndarray], np.ndarray]:
    """``accept(zyx)``: drops points at an object the classifier calls another class than ``kind`` (points at no
    classified object, or at one of ``kind``, are kept)."""

    def accept(zyx: np.ndarray) -> np.ndarray:
        found = classified.label_at(zyx)
        return (found == "") | (found == kind)

    return accept


def _both(first: Callable[[np.ndarray], np.ndarray],
          second: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    return lambda zyx: np.asarray(first(zyx), dtype=bool) & np.asarray(second(zyx), dtype=bool)


def bootstrap_picks(grid: Grid, prompt: np.ndarray, prompt_voxel_A: float, particle: str, radius_A: float,
                    options: MatchOptions, *, invert: bool = False, rounds: int = DEFAULT_ROUNDS,
                    top: int = DEFAULT_TOP, run: str = "", mask: np.ndarray | None = None,
                    reference_zyx: np.ndarray | None = None, isolate: bool | None = None,
                    objects_zyx: np.ndarray | None = None, object_tolerance_vox: float = 0.0,
                    classified: Classified | None = None,
                    progress: Callable[[int, int], None] | None = None,
                    log: Callable[[str], None] | None = None) -> BootstrapResult:
    """Match ``prompt`` over ``grid``, then ``rounds`` times: average the ``top`` best hits (wedge-aware) and
    re-match with the average.

    Parameters
    ----------
    grid
        The tomogram on the matching grid (:func:`tomopick.match.picking.matching_grid`).
    prompt
        ``(s, s, s)`` sub-tomogram (the tomogram's contrast) or map (``invert=True`` for bright density), centred at
        its geometric centre, voxel size ``prompt_voxel_A``.
    radius_A
        Particle radius: pick spacing, and the mask of the template (1.2 × radius unless ``options.mask_radius_A``).
    isolate
        Flatten the prompt beyond the particle radius (:func:`isolate_particle`) before the first match; default:
        for sub-tomograms (``invert=False``), whose box holds neighbours, not for maps.
    reference_zyx
        Where the prompt was cut, on the matching grid (voxels), when it comes from this tomogram: hits much denser
        than the prompt there are dropped (:func:`contrast_filter`).
    objects_zyx, object_tolerance_vox
        Object centres on the matching grid (voxels; e.g. a class-agnostic detector's picks): in every round, hits
        farther than ``object_tolerance_vox`` from all of them are dropped (:func:`object_gate`) — a hit on the rim
        of a larger complex or on a membrane is not an object's centre. ``None``: no gate.
    classified
        Objects a supervised picker classified (:class:`Classified`): after round 0, the prompt's label is the
        class at ``reference_zyx`` (else the commonest among round 0's best hits); when the classifier gives most of
        the labelled best hits that label (:func:`known_kind`), hits at objects of another class are dropped from
        the picks of every round, after the thresholds (:func:`class_veto`; it only removes picks) — one noisy copy
        correlates with complexes of other kinds as well as with its own. ``None``: no veto.
    progress
        ``progress(done, total)`` over rotations × tiles of all rounds (``total`` is per round).

    Returns
    -------
    BootstrapResult
        Picks (``score`` = correlation of the last round, best rotation), the last template, per round the
        threshold, number of picks and hits averaged, and seconds.
    """
    say = log or (lambda _m: None)
    mask_A = options.mask_radius_A if options.mask_radius_A is not None else 1.2 * float(radius_A)
    opts = options.model_copy(update={"mask_radius_A": mask_A})
    template = prepare_template(prompt, prompt_voxel_A, grid.voxel, invert=invert, mask_radius_A=mask_A)
    if (not invert) if isolate is None else isolate:
        template = isolate_particle(template, float(radius_A) / grid.voxel)
    first = template
    history: list[dict[str, Any]] = []
    all_picks: list[Picks] = []
    picks = Picks.empty()
    accept = None
    if reference_zyx is not None:
        accept, found = contrast_filter(grid.volume, reference_zyx, template.mask_radius_vox)
        if accept is None:
            say(f"  contrast filter off: the prompt's local σ {found['prompt_sd']:.3g} is the background's "
                f"({found['background_sd']:.3g})")
        else:
            say(f"  contrast filter: hits with local σ > {found['limit_sd']:.3g} dropped (prompt "
                f"{found['prompt_sd']:.3g}, background {found['background_sd']:.3g})")
    if objects_zyx is not None:
        gate = object_gate(objects_zyx, object_tolerance_vox)
        accept = gate if accept is None else _both(accept, gate)
        say(f"  object gate: hits farther than {object_tolerance_vox * grid.voxel:.0f} Å from all of "
            f"{len(objects_zyx)} detected objects dropped")
    averaged_xyz = np.zeros((0, 3))
    veto = None
    for r in range(int(rounds) + 1):
        t0 = time.perf_counter()
        found_picks, info = search_and_pick(grid, template, opts, particle, radius_A, run=run, mask=mask,
                                            accept=accept, progress=progress)
        info.update(round=r, seconds=time.perf_counter() - t0,
                    template="prompt" if r == 0 else f"average of {history[-1]['averaged']} hits")
        if r == 0 and classified is not None and len(found_picks):
            veto, found = _class_veto_for(classified, found_picks, grid, reference_zyx, top)
            info.update(found)
            say(f"  class veto off: {found['veto_reason']}" if veto is None else
                f"  class veto: the classifier calls {found['veto_share']:.0%} of the labelled best hits "
                f"{found['veto_kind']}, as the prompt; hits at its objects of other classes are dropped")
        if veto is not None and len(found_picks):  # after the thresholds: the veto only removes picks
            keep = veto(found_picks.xyz_A[:, ::-1] / grid.voxel_A)
            found_picks = found_picks.select(keep)
            info["vetoed"] = int((~keep).sum())
        all_picks.append(found_picks)
        if r > 0:
            # the average must find the hits it was made of among its own best: else it drifted to something else
            agreement = hit_agreement(averaged_xyz, found_picks, MATCH_TOLERANCE * float(radius_A))
            info["agreement"] = agreement
            if agreement < MIN_AGREEMENT:
                info.update(averaged=0, kept=False)
                history.append(info)
                say(f"  round {r}: {len(found_picks)} picks above {info['threshold']:.3g} ({info['template']}), "
                    f"but only {agreement:.0%} of the hits averaged are among its {len(averaged_xyz)} best: the "
                    f"average drifted; keeping round {r - 1}'s {len(picks)} picks in {info['seconds']:.0f} s")
                break
        picks = found_picks
        info["kept"] = True
        agreed = "" if r == 0 else f"; {info['agreement']:.0%} of the hits averaged among its best"
        agreed = (f"; {info['vetoed']} vetoed" if "vetoed" in info else "") + agreed
        if r == int(rounds) or len(picks) == 0:
            info["averaged"] = 0
            history.append(info)
            say(f"  round {r}: {len(picks)} picks above {info['threshold']:.3g} ({info['template']}; "
                f"{info['rejected']} denser hits dropped{agreed}) in {info['seconds']:.0f} s")
            break
        # the most confident hits: cut, rotate back, wedge-aware average → the next template
        order = np.argsort(-picks.scores, kind="stable")[:top]
        averaged_xyz = picks.xyz_A[order]
        zyx = averaged_xyz[:, ::-1] / grid.voxel_A
        mats = picks.rotation_matrices()[order]
        boxes = [cut_box(grid.volume, c, template.box) for c in zyx]
        avg = wedge_average(boxes, list(mats), opts.tilt_range_deg)
        avg = recentre(avg, first.volume, max_shift=max(1, int(round(template.mask_radius_vox / 3))))
        template = Template(_soft_masked(avg, template.mask_radius_vox), template.mask, template.mask_radius_vox)
        info["averaged"] = len(boxes)
        history.append(info)
        say(f"  round {r}: {len(picks)} picks above {info['threshold']:.3g} ({info['template']}; "
            f"{info['rejected']} denser hits dropped{agreed}); averaging the best {len(boxes)} in "
            f"{info['seconds']:.0f} s")
    return BootstrapResult(picks, template.volume, history, all_picks)


def _class_veto_for(classified: Classified, picks: Picks, grid: Grid, reference_zyx: np.ndarray | None,
                    top: int) -> tuple[Callable[[np.ndarray], np.ndarray] | None, dict[str, Any]]:
    """The class veto for round 0's ``picks`` (or ``None``) and what decided it."""
    order = np.argsort(-picks.scores, kind="stable")[:top]
    hit_labels = classified.label_at(picks.xyz_A[order][:, ::-1] / grid.voxel_A)
    if reference_zyx is not None:
        prompt_label = str(classified.label_at(np.asarray(reference_zyx)[None])[0])
        if not prompt_label:
            return None, {"veto_reason": "the classifier found no object where the prompt was cut"}
    else:
        named = [str(x) for x in hit_labels if str(x)]
        prompt_label = max(set(named), key=named.count) if named else ""
    kind, share = known_kind(prompt_label, hit_labels)
    found: dict[str, Any] = {"veto_kind": prompt_label, "veto_share": share}
    if kind is None:
        found["veto_reason"] = (f"the classifier labels {share:.0%} of the labelled best hits "
                                f"{prompt_label or '(none)'} (a majority is needed)")
        return None, found
    return class_veto(classified, kind), found


def hit_agreement(averaged_xyz: np.ndarray, picks: Picks, tolerance_A: float) -> float:
    """Fraction of the hits averaged (``(n, 3)`` Å) that lie within ``tolerance_A`` of one of the ``n`` best of
    ``picks`` (the re-match with their average); 1.0 when nothing was averaged.

    A bootstrap that converges re-finds the hits that made its template among its most confident ones; when the
    average has drifted (e.g. to a featureless blob that matches any density of its size), its best hits are
    elsewhere and the fraction collapses."""
    n = len(averaged_xyz)
    if n == 0:
        return 1.0
    if len(picks) == 0:
        return 0.0
    best = picks.xyz_A[np.argsort(-picks.scores, kind="stable")[:n]]
    d = np.linalg.norm(np.asarray(averaged_xyz, dtype=np.float64)[:, None] - best[None], axis=2)
    return float(np.mean(d.min(axis=1) <= tolerance_A))


def isolate_particle(template: Template, radius_vox: float) -> Template:
    """``template`` with everything beyond the particle radius set to the background level (the median of the box
    outside ``radius_vox``), with a cosine edge from ``radius_vox`` to the mask radius (at least one voxel wide).

    A sub-tomogram cut at one particle also holds what lies next to it — a membrane under a membrane-bound
    complex, a neighbour in a crowded spot. Under a mask of 1.2 × radius the band beyond the radius is 42 % of the
    masked voxels, so a dense neighbour there dominates the normalised template, and the prompt then matches "a
    blob next to something dense": the rims of large complexes. The particle's own density lies within its
    radius; the template keeps that and a flat background around it (the mask, and so the normalisation, is
    unchanged)."""
    b = template.box
    g = np.arange(b) - b // 2
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    vol = template.volume
    outside = r > radius_vox
    if not outside.any():
        return template
    level = float(np.median(vol[outside]))
    width = max(1.0, template.mask_radius_vox - radius_vox)
    t = np.clip((r - radius_vox) / width, 0.0, 1.0)
    weight = 0.5 + 0.5 * np.cos(np.pi * t)
    return Template((level + (vol - level) * weight).astype(np.float32), template.mask, template.mask_radius_vox)


def recentre(volume: np.ndarray, reference: np.ndarray, max_shift: int = 2) -> np.ndarray:
    """``volume`` shifted by the whole-voxel translation (at most ``max_shift`` per axis) that best aligns it with
    ``reference`` (same box): averages of hits found a voxel off would otherwise drift the particle centre from
    round to round."""
    f = np.fft.fftn(volume) * np.conj(np.fft.fftn(reference))
    cc = np.real(np.fft.ifftn(f))
    b = volume.shape[0]
    best, shift = -np.inf, (0, 0, 0)
    rng = range(-max_shift, max_shift + 1)
    for dz in rng:
        for dy in rng:
            for dx in rng:
                v = cc[dz % b, dy % b, dx % b]
                if v > best:
                    best, shift = v, (dz, dy, dx)
    return np.roll(volume, tuple(-d for d in shift), axis=(0, 1, 2))


def _soft_masked(volume: np.ndarray, radius_vox: float) -> np.ndarray:
    """``volume`` with its background level removed and a soft spherical edge (2 voxels) at ``radius_vox``."""
    b = volume.shape[0]
    g = np.arange(b) - b // 2
    r = np.sqrt(g[:, None, None] ** 2 + g[None, :, None] ** 2 + g[None, None, :] ** 2)
    edge = np.clip((radius_vox + 1.0 - r) / 2.0, 0.0, 1.0)
    shell = (r > radius_vox) & (r <= radius_vox + 2)
    level = float(volume[shell].mean()) if shell.any() else 0.0
    return ((volume - level) * (0.5 - 0.5 * np.cos(np.pi * edge))).astype(np.float32)


__all__ = ["BootstrapResult", "DEFAULT_ROUNDS", "DEFAULT_TOP", "MIN_AGREEMENT", "bootstrap_picks", "contrast_filter",
           "cut_box", "hit_agreement", "isolate_particle", "local_sd", "recentre", "sphere_mask", "wedge_average"]
