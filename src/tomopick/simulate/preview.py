"""Preview figure of a simulated tomogram: a central x–y slice and an x–z slice with the ground truth overlaid."""

from __future__ import annotations

import numpy as np

from tomopick.data import ParticleSet, Picks


def preview_figure(volume: np.ndarray, picks: Picks, particle_set: ParticleSet, voxel_size_A: float,
                   z_index: int | None = None, y_index: int | None = None, slab_vox: int = 1, title: str = ""):
    """A matplotlib figure of a tomogram with ground-truth picks (no pyplot; ``fig.savefig`` renders with Agg).

    Parameters
    ----------
    volume
        ``(z, y, x)`` tomogram.
    picks
        Positions in Å; a pick is drawn on a slice as a circle of the radius of its cross-section with that slice
        (``radius_A`` of its class), coloured per class.
    z_index, y_index
        Slices shown (default: the centre). Each view averages ``slab_vox`` slices around it, as viewers do.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure  # no pyplot: no global backend state, renders with Agg on savefig
    from matplotlib.lines import Line2D
    from matplotlib.patches import Circle

    nz, ny, nx = volume.shape
    zi = nz // 2 if z_index is None else int(z_index)
    yi = ny // 2 if y_index is None else int(y_index)
    h = slab_vox // 2
    xy = np.asarray(volume[max(zi - h, 0):zi + h + 1], dtype=np.float32).mean(axis=0)
    xz = np.asarray(volume[:, max(yi - h, 0):yi + h + 1], dtype=np.float32).mean(axis=1)
    lo, hi = np.percentile(xy, [1, 99])
    fig = Figure(figsize=(10, 7.75 * (ny + nz) / nx * 1.12 + 1.3), dpi=110, layout="constrained")
    gs = fig.add_gridspec(2, 1, height_ratios=[ny, nz])
    ax1, ax2 = fig.add_subplot(gs[0]), fig.add_subplot(gs[1])
    ax1.imshow(xy, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
    ax2.imshow(xz, cmap="gray", vmin=lo, vmax=hi, origin="lower", interpolation="nearest", aspect="equal")
    vox = picks.voxel_coords(voxel_size_A) if len(picks) else np.zeros((0, 3))
    names = picks.frame["particle"].to_numpy() if len(picks) else np.array([])
    colors = {p.name: p.color for p in particle_set}
    radius = {p.name: p.radius_A / voxel_size_A for p in particle_set}
    for (z, y, x), name in zip(vox, names):
        r = radius.get(name, 5.0)
        for ax, depth, u, v in ((ax1, z - zi, x, y), (ax2, y - yi, x, z)):
            if abs(depth) < r:
                rr = np.sqrt(r * r - depth * depth)
                ax.add_patch(Circle((u, v), rr, fill=False, lw=1.0, color=colors.get(name, "#ffff00")))
    ax1.set_title(f"x–y slice z = {zi}" + (f" — {title}" if title else ""), fontsize=10)
    ax2.set_title(f"x–z slice y = {yi}", fontsize=10)
    for ax in (ax1, ax2):
        ax.set_xlabel("x (voxels)")
    ax1.set_ylabel("y (voxels)")
    ax2.set_ylabel("z (voxels)")
    counts = picks.counts() if len(picks) else {}
    handles = [Line2D([], [], marker="o", ls="", mfc="none", mec=p.color, label=f"{p.name} ({counts.get(p.name, 0)})")
               for p in particle_set]
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    return fig
