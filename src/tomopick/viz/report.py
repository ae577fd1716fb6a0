"""The picking report: one self-contained HTML page (every image embedded as a base64 PNG; no script, no external
file) that a person opens in a browser to judge picks by eye.

:func:`render_report` takes tomograms (lazy or in memory), picks, optional ground truth, thresholds, a model card
and the command line, and returns the HTML text; :mod:`tomopick.workflows.report` reads the inputs and writes the
file. Sections: per tomogram, slabs averaged over a particle diameter with the picks drawn as circles of the
radius where each sphere cuts the slab; per class, the score histogram with the threshold, galleries of the
top / median / lowest-scoring picks (and false positives / negatives with a truth) and the average of the picked
subvolumes (central slices), a quick sign that the picks are real; with a truth, the CZII table and
precision–recall curves; the model card and the exact command.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from tomopick.data import ParticleSet, Picks, Tomogram
from tomopick.evaluation import EvaluationResult, class_distances_A, evaluate, neighbours_within, pr_curve
from tomopick.viz.gallery import average_boxes, central_slices, gallery_indices, pick_view, spread_indices
from tomopick.viz.images import (
    bin_factor, bin_image, circles_in_slab, data_uri, label_outlines, overlay_circles, png_bytes, slab_centres,
    stretch, take_slab,
)
from tomopick.viz.plots import pr_curves_png, score_histogram

__all__ = ["ReportInput", "ReportOptions", "RunInput", "match_flags", "render_report", "slab_overlay"]


class ReportOptions(BaseModel):
    """What the report shows and how large it gets.

    Attributes
    ----------
    n_slabs
        Slabs per tomogram: the central one, then others spread over the depth.
    slab_thickness_A
        Slab thickness in Å (default: the diameter of the median particle class present).
    gallery_size
        Picks per gallery row (top, median, lowest; false positives / negatives).
    average_max
        Highest-scoring picks per class averaged into the class average.
    max_image_px
        Overview slabs are binned to at most this many pixels on their longer side.
    max_runs
        Tomograms shown as slabs (the first ones; every run counts in tables, histograms and galleries).
    title
        Page title.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_slabs: int = Field(default=4, ge=1, le=16)
    slab_thickness_A: float | None = Field(default=None, gt=0)
    gallery_size: int = Field(default=6, ge=1, le=32)
    average_max: int = Field(default=200, ge=1)
    max_image_px: int = Field(default=720, ge=64, le=4096)
    max_runs: int = Field(default=6, ge=1)
    title: str = "tomopick picks"


@dataclass
class RunInput:
    """One tomogram's inputs: its run name, the tomogram (``None``: tables and plots only), its picks and optional
    ground truth (both of this run), and an optional segmentation (``(z, y, x)`` integer array-like on the
    tomogram's grid; its region outlines are drawn on the slabs)."""

    run: str
    tomogram: Tomogram | None
    picks: Picks
    truth: Picks | None = None
    segmentation: Any | None = None


@dataclass
class ReportInput:
    """Everything the report shows.

    Attributes
    ----------
    runs
        One :class:`RunInput` per tomogram / run.
    particles
        Particle set (radii in Å, colours, weights).
    thresholds
        Per class, the score threshold the picks were kept at (marked on the histograms).
    threshold_notes
        Per class, where the threshold came from (``"checkpoint"``, ``"option"`` …).
    score_name
        What the score is (``"blob score"``, ``"peak score"``).
    evaluation, curves
        A finished :func:`tomopick.evaluation.evaluate` result and :func:`~tomopick.evaluation.pr_curve` table;
        computed here from the runs' truth when ``None`` and a truth is given.
    model_card
        The model's card / settings (shown as JSON).
    command
        The exact command that made the picks / the report.
    sources
        Named inputs shown at the top (``{"picks": path, …}``).
    notes
        Extra lines shown at the top.
    """

    runs: list[RunInput]
    particles: ParticleSet
    thresholds: dict[str, float] = field(default_factory=dict)
    threshold_notes: dict[str, str] = field(default_factory=dict)
    score_name: str = "score"
    evaluation: EvaluationResult | None = None
    curves: pd.DataFrame | None = None
    model_card: dict[str, Any] | None = None
    command: str | None = None
    sources: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def has_truth(self) -> bool:
        return any(r.truth is not None for r in self.runs)


# -- geometry ----------------------------------------------------------------------------------------------------
def slab_overlay(tomogram: Tomogram, picks: Picks, particles: ParticleSet, centre_z: float, thickness_vox: float,
                 max_px: int, segmentation: Any | None = None) -> tuple[Any, dict[str, Any]]:
    """One overview slab of ``tomogram`` with ``picks`` drawn on it.

    The slab (``thickness_vox`` slices around ``centre_z``) is averaged, binned to at most ``max_px`` pixels,
    contrast-stretched, and each pick whose sphere (its class radius) reaches into the slab is drawn as a circle in
    its class colour, of the radius where the sphere cuts the slab (:func:`~tomopick.viz.images.circles_in_slab`).
    A ``segmentation`` (same grid) adds the outlines of its regions in the slab's central slice (yellow).

    Returns
    -------
    overlay
        :class:`~tomopick.viz.images.Overlay` (pixel ``(i, j)`` shows voxels ``(i·b … i·b+b-1, j·b …)`` of the
        slab for binning ``b``).
    info
        ``z0``, ``z1`` (slices), ``bin``, ``index`` (picks drawn), ``centres_yx`` and ``radii`` (pixels).
    """
    vs = float(np.mean(tomogram.voxel_size_A))
    slab = take_slab(tomogram.data, centre_z, thickness_vox)
    b = bin_factor(slab.image.shape, max_px)
    grey = stretch(bin_image(slab.image, b))
    if len(picks):
        zyx = picks.voxel_coords(tomogram.voxel_size_A)
        radius = np.array([particles[p].radius_A if p in particles else 0.0 for p in picks.frame["particle"]]) / vs
        index, cut = circles_in_slab(zyx, radius, slab.z0, slab.z1)
        # binned pixel j covers voxels j·b … j·b+b-1: its centre is voxel j·b + (b-1)/2
        centres = (zyx[index, 1:] - (b - 1) / 2.0) / b
        radii = cut / b
        colors = [particles[p].color for p in picks.frame["particle"].to_numpy()[index]]
    else:
        index, centres, radii, colors = np.zeros(0, dtype=np.int64), np.zeros((0, 2)), np.zeros(0), []
    outline = None
    if segmentation is not None:
        first = (b - 1) // 2  # the voxel nearest each binned pixel's centre
        labels = np.asarray(segmentation[int(round(slab.centre_z)), first::b, first::b])
        outline = label_outlines(labels[: grey.shape[0], : grey.shape[1]])
    overlay = overlay_circles(grey, centres, radii, colors, width=1 if max(grey.shape) < 900 else 2,
                              outline=outline)
    info = {"z0": slab.z0, "z1": slab.z1, "bin": b, "index": index, "centres_yx": centres, "radii": radii}
    return overlay, info


def match_flags(picks: Picks, truth: Picks, particles: ParticleSet,
                distance_factor: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per pick, whether a truth point of its class and run lies within the CZII matching distance
    (``distance_factor`` × radius); per truth point, whether a pick does (``False`` = false negative)."""
    dist = class_distances_A(particles, distance_factor)
    pick_ok = np.zeros(len(picks), dtype=bool)
    truth_ok = np.zeros(len(truth), dtype=bool)
    pf, tf = picks.frame, truth.frame
    for (run, name), t_rows in tf.groupby(["run", "particle"], sort=False):
        p_rows = pf[(pf["run"] == run) & (pf["particle"] == name)]
        if not len(p_rows) or name not in dist:
            continue
        t_xyz, p_xyz = t_rows[["x_A", "y_A", "z_A"]].to_numpy(), p_rows[["x_A", "y_A", "z_A"]].to_numpy()
        pick_ok[p_rows.index.to_numpy()] = [len(n) > 0 for n in neighbours_within(t_xyz, p_xyz, dist[name])]
        truth_ok[t_rows.index.to_numpy()] = [len(n) > 0 for n in neighbours_within(p_xyz, t_xyz, dist[name])]
    return pick_ok, truth_ok


# -- HTML helpers ---------------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1500px;padding:0 1em;
color:#222;background:#fff}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{margin:.9em 0 .3em}table{border-collapse:collapse;font-size:.85em;margin:.4em 0}
td,th{border:1px solid #ddd;padding:2px 7px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.row{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start}figure{margin:0}
figcaption{font-size:.78em;color:#555;max-width:720px}
.tile{display:inline-block;text-align:center;font-size:.7em;color:#555;margin:1px}
.tile img{width:72px;height:72px;image-rendering:pixelated;display:block;border:1px solid #ccc}
.gal{margin:.2em 0 .5em}.gal b{display:inline-block;width:8.5em;font-size:.8em;vertical-align:top}
.slab img{max-width:46vw;height:auto}.ortho img{width:120px;height:120px;image-rendering:pixelated;border:1px solid #ccc}
.swatch{display:inline-block;width:.9em;height:.9em;border-radius:50%;border:2px solid;vertical-align:middle;
margin-right:.3em}.note{color:#666;font-size:.85em}pre{background:#f7f7f7;padding:.6em;overflow:auto;
font-size:.8em;max-height:28em}code{background:#f3f3f3;padding:0 .2em}.class{border-left:4px solid;padding-left:.8em;
margin-bottom:1.2em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _img(png: bytes, alt: str, *, width: int | None = None, cls: str = "") -> str:
    size = f' width="{width}"' if width else ""
    klass = f' class="{cls}"' if cls else ""
    return f'<img src="{data_uri(png)}" alt="{_e(alt)}"{size}{klass}>'


def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        if math.isnan(value):
            return "–"
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def _table(frame: pd.DataFrame, columns: Iterable[str], left: Iterable[str] = ("particle", "run")) -> str:
    cols = [c for c in columns if c in frame.columns]
    left = set(left)
    head = "".join(f'<th class="{"l" if c in left else ""}">{_e(c)}</th>' for c in cols)
    rows = []
    for _, row in frame.iterrows():
        rows.append("<tr>" + "".join(f'<td class="{"l" if c in left else ""}">{_e(_fmt(row[c]))}</td>'
                                     for c in cols) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _swatch(color: str) -> str:
    return f'<span class="swatch" style="border-color:{_e(color)}"></span>'


# -- sections ---------------------------------------------------------------------------------------------------
def _classes_present(data: ReportInput) -> list[str]:
    names: set[str] = set()
    for r in data.runs:
        names.update(r.picks.particles)
        if r.truth is not None:
            names.update(r.truth.particles)
    return [p.name for p in data.particles if p.name in names]


def _slab_thickness_vox(data: ReportInput, options: ReportOptions, names: list[str], voxel_size_A: float) -> float:
    if options.slab_thickness_A is not None:
        return max(1.0, options.slab_thickness_A / voxel_size_A)
    radii = [data.particles[n].radius_A for n in names] or [p.radius_A for p in data.particles]
    return max(1.0, 2.0 * float(np.median(radii)) / voxel_size_A)


def _tomogram_section(data: ReportInput, options: ReportOptions, names: list[str]) -> str:
    out = ["<h2>Tomograms</h2>",
           '<p class="legend">' + " ".join(f"{_swatch(data.particles[n].color)}{_e(n)}" for n in names) + "</p>"]
    shown = [r for r in data.runs if r.tomogram is not None][: options.max_runs]
    if not shown:
        out.append('<p class="note">No tomogram was given: slabs and galleries are left out.</p>')
        return "\n".join(out)
    for r in shown:
        tomo = r.tomogram
        assert tomo is not None
        vs = float(np.mean(tomo.voxel_size_A))
        thickness = _slab_thickness_vox(data, options, names, vs)
        nz, ny, nx = tomo.shape
        out.append(f"<h3>{_e(r.run or '(unnamed run)')}</h3>"
                   f'<p class="note">{nz}×{ny}×{nx} voxels (z, y, x) at {vs:.4g} Å; {len(r.picks)} picks. Each '
                   f"slab is the mean of {int(round(thickness))} slices ({thickness * vs:.0f} Å, a particle "
                   "diameter); circles are the picks' spheres where they cut the slab"
                   + ("; yellow: the segmentation's outlines in the slab's central slice" if r.segmentation is not None
                      else "") + ".</p>")
        figures = []
        pick_z = r.picks.voxel_coords(tomo.voxel_size_A)[:, 0] if len(r.picks) else None
        for centre in slab_centres(nz, options.n_slabs, thickness, pick_z):
            overlay, info = slab_overlay(tomo, r.picks, data.particles, centre, thickness, options.max_image_px,
                                         r.segmentation)
            caption = (f"z {info['z0']}–{info['z1'] - 1}" + (" (central)" if not figures else "")
                       + f"; {len(info['index'])} picks drawn" + (f"; binned {info['bin']}×" if info["bin"] > 1
                                                                   else ""))
            figures.append(f"<figure class=\"slab\">{_img(png_bytes(overlay), f'{r.run} slab {caption}')}"
                           f"<figcaption>{_e(caption)}</figcaption></figure>")
        out.append(f'<div class="row">{"".join(figures)}</div>')
    hidden = len([r for r in data.runs if r.tomogram is not None]) - len(shown)
    if hidden > 0:
        out.append(f'<p class="note">{hidden} more tomogram(s) not shown as slabs (max_runs = {options.max_runs}).</p>')
    return "\n".join(out)


@dataclass
class _Item:
    run: int          # index into data.runs
    zyx: np.ndarray   # voxel coordinates
    score: float


def _tiles(data: ReportInput, items: list[_Item], radius_A: float, label: str) -> str:
    tiles = []
    for item in items:
        tomo = data.runs[item.run].tomogram
        if tomo is None:
            continue
        vs = float(np.mean(tomo.voxel_size_A))
        r = radius_A / vs
        view = pick_view(tomo.data, item.zyx, max(3, int(math.ceil(1.4 * r))), max(1, int(round(r / 2))))
        caption = "–" if not np.isfinite(item.score) else f"{item.score:.3g}"
        where = f"{data.runs[item.run].run} " if data.runs[item.run].run else ""
        title = (f"{where}x,y,z = {item.zyx[2] * vs:.0f}, {item.zyx[1] * vs:.0f}, {item.zyx[0] * vs:.0f} Å; "
                 f"score {caption}")
        tiles.append(f'<span class="tile" title="{_e(title)}">{_img(png_bytes(stretch(view)), title)}'
                     f"{_e(caption)}</span>")
    if not tiles:
        return ""
    return f'<div class="gal"><b>{_e(label)}</b>{"".join(tiles)}</div>'


def _class_section(data: ReportInput, options: ReportOptions, name: str,
                   flags: dict[int, tuple[np.ndarray, np.ndarray]]) -> str:
    spec = data.particles[name]
    items: list[_Item] = []
    true_flags: list[bool] = []
    fn_items: list[_Item] = []
    for i, r in enumerate(data.runs):
        sel = (r.picks.frame["particle"] == name).to_numpy()
        vs = r.tomogram.voxel_size_A if r.tomogram is not None else None
        scores = r.picks.scores[sel]
        zyx = r.picks.voxel_coords(vs)[sel] if vs is not None else np.zeros((int(sel.sum()), 3))
        items += [_Item(i, z, float(s)) for z, s in zip(zyx, scores)]
        if i in flags:
            true_flags += list(flags[i][0][sel])
            tsel = (r.truth.frame["particle"] == name).to_numpy() & ~flags[i][1]  # type: ignore[union-attr]
            if vs is not None:
                fn_items += [_Item(i, z, float("nan")) for z in r.truth.voxel_coords(vs)[tsel]]  # type: ignore[union-attr]
    scores = np.array([it.score for it in items], dtype=np.float64)
    threshold = data.thresholds.get(name)
    note = data.threshold_notes.get(name)
    parts = [f'<div class="class" style="border-color:{_e(spec.color)}">',
             f"<h3>{_swatch(spec.color)}{_e(name)}</h3>",
             f'<p class="note">{len(items)} picks; radius {spec.radius_A:g} Å'
             + (f"; kept at {_e(data.score_name)} ≥ {threshold:.3g}" + (f" ({_e(note)})" if note else "")
                if threshold is not None else "")
             + (f"; scores {np.nanmin(scores):.3g} – {np.nanmax(scores):.3g}" if np.isfinite(scores).any() else "")
             + "</p>", '<div class="row">']
    has_truth = bool(flags) and len(true_flags) == len(items)
    parts.append("<figure>" + _img(score_histogram(scores, color=spec.color, threshold=threshold,
                                                   is_true=np.array(true_flags) if has_truth else None,
                                                   title=f"{name} ({len(items)} picks)",
                                                   score_name=data.score_name), f"{name} score histogram")
                 + "</figure>")
    # the class average of the highest-scoring picks: boxes of one size in voxels (set by the first run's voxel size)
    with_tomo = [it for it in items if data.runs[it.run].tomogram is not None]
    if with_tomo:
        order = np.argsort(-np.nan_to_num([it.score for it in with_tomo], nan=-np.inf), kind="stable")
        chosen = [with_tomo[k] for k in order[: options.average_max]]
        first = data.runs[chosen[0].run].tomogram
        assert first is not None
        half = max(3, int(math.ceil(1.5 * spec.radius_A / float(np.mean(first.voxel_size_A)))))
        total, count = None, 0
        for run_index in sorted({it.run for it in chosen}):
            tomo = data.runs[run_index].tomogram
            centres = np.array([it.zyx for it in chosen if it.run == run_index])
            mean, n = average_boxes(tomo.data, centres, half)  # type: ignore[union-attr]
            total = np.nan_to_num(mean) * n if total is None else total + np.nan_to_num(mean) * n
            count += n
        assert total is not None
        avg = total / max(count, 1)
        views = "".join(f'<figure class="ortho">{_img(png_bytes(stretch(v)), f"{name} average {k}")}'
                        f"<figcaption>{k}</figcaption></figure>" for k, v in central_slices(avg).items())
        parts.append(f'<figure><div class="row">{views}</div><figcaption>average of the {count} highest-scoring '
                     f"picks (central slices; a real particle shows a clear blob of its size)</figcaption></figure>")
    parts.append("</div>")
    n = options.gallery_size
    groups = gallery_indices(scores, n)
    for key, label in (("top", "top scores"), ("median", "median scores"), ("lowest", "lowest scores")):
        parts.append(_tiles(data, [items[k] for k in groups[key]], spec.radius_A, label))
    if has_truth:
        fp = [k for k in np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable") if not true_flags[k]][:n]
        parts.append(_tiles(data, [items[k] for k in fp], spec.radius_A,
                            f"false positives ({sum(1 for t in true_flags if not t)})")
                     or '<p class="note">no false positives</p>')
        fn = [fn_items[k] for k in spread_indices(len(fn_items), n)]
        parts.append(_tiles(data, fn, spec.radius_A, f"false negatives ({len(fn_items)})")
                     or '<p class="note">no false negatives</p>')
    parts.append("</div>")
    return "\n".join(parts)


def _evaluation_section(data: ReportInput, result: EvaluationResult, curves: pd.DataFrame | None) -> str:
    dist = (f"{result.distance_A:g} Å" if result.distance_A is not None else f"{result.distance_factor:g} × radius")
    out = ["<h2>Against the ground truth</h2>",
           f"<p><b>CZII score (weighted F{result.beta:g}): {_fmt(result.score, 4)}</b> &nbsp; unweighted mean "
           f"F{result.beta:g}: {_fmt(result.mean_fbeta, 4)} &nbsp; <span class='note'>metric {_e(result.metric)}, "
           f"matching distance {_e(dist)}, runs {_e(', '.join(result.runs))}</span></p>",
           _table(result.table, ["particle", "weight", "n_truth", "n_picks", "tp", "fp", "fn", "precision",
                                 "recall", "fbeta", "mean_distance_A", "rmse_A"])]
    if curves is not None and len(curves):
        out.append("<figure>" + _img(pr_curves_png(curves, data.particles, title="precision–recall by score "
                                                   "threshold"), "precision-recall curves") + "</figure>")
    return "\n".join(out)


def _summary_table(data: ReportInput, names: list[str]) -> str:
    rows = []
    for n in names:
        counts = [int((r.picks.frame["particle"] == n).sum()) for r in data.runs]
        row = {"particle": n, "radius_A": data.particles[n].radius_A, "picks": sum(counts),
               "threshold": data.thresholds.get(n, float("nan"))}
        if data.has_truth:
            row["truth"] = sum(int((r.truth.frame["particle"] == n).sum()) for r in data.runs if r.truth is not None)
        rows.append(row)
    frame = pd.DataFrame(rows)
    return _table(frame, list(frame.columns)) if len(frame) else '<p class="note">no picks</p>'


def render_report(data: ReportInput, options: ReportOptions | None = None) -> str:
    """The report as one HTML document (a string; every image inline as a base64 PNG, no scripts).

    Parameters
    ----------
    data
        Tomograms, picks, optional truth and metadata (:class:`ReportInput`); every pick's class must be in
        ``data.particles``.
    options
        :class:`ReportOptions` (defaults when ``None``).
    """
    options = options or ReportOptions()
    names = _classes_present(data)
    flags: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, r in enumerate(data.runs):
        if r.truth is not None:
            flags[i] = match_flags(r.picks, r.truth, data.particles)
    result, curves = data.evaluation, data.curves
    if result is None and data.has_truth:
        truth = Picks.concat([r.truth for r in data.runs if r.truth is not None])
        picks = Picks.concat([r.picks for r in data.runs])
        result = evaluate(truth, picks, data.particles)
        if curves is None and picks.has_scores:
            curves = pr_curve(truth, picks, data.particles)
    n_picks = sum(len(r.picks) for r in data.runs)
    body = [f"<h1>{_e(options.title)}</h1>",
            f'<p class="note">{n_picks} picks in {len(data.runs)} tomogram(s): '
            + _e(", ".join(r.run or "(unnamed)" for r in data.runs[:12]) + (" …" if len(data.runs) > 12 else ""))
            + "</p>"]
    if data.sources:
        body.append("<ul>" + "".join(f"<li>{_e(k)}: <code>{_e(v)}</code></li>" for k, v in data.sources.items())
                    + "</ul>")
    body += [f'<p class="note">{_e(n)}</p>' for n in data.notes]
    body.append(_summary_table(data, names))
    if result is not None:
        body.append(f"<p><b>CZII score (weighted F{result.beta:g}): {_fmt(result.score, 4)}</b> (details below)</p>")
    body.append(_tomogram_section(data, options, names))
    body.append("<h2>Classes</h2>")
    body.append('<p class="note">Per class: the score histogram (dashed: threshold), the average of the picked '
                "subvolumes, and picks at the top, median and lowest scores (each tile a slab one radius thick "
                "around the pick; hover for its position).</p>")
    for n in names:
        if any((r.picks.frame["particle"] == n).any() for r in data.runs) or flags:
            body.append(_class_section(data, options, n, flags))
    if result is not None:
        body.append(_evaluation_section(data, result, curves))
    if data.model_card:
        card = json.dumps(data.model_card, indent=2, default=str, ensure_ascii=False)
        body.append(f"<h2>Model</h2><pre>{_e(card)}</pre>")
    if data.command:
        body.append(f"<h2>Command</h2><pre>{_e(data.command)}</pre>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(options.title)}</title><link rel=\"icon\" href=\"data:,\">"
            f"<style>{_CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
