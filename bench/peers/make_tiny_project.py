"""Make a tiny copick project for smoke-testing a peer picker (run with tomopick's venv).

Each run is a small tomogram (default 64 x 128 x 128 voxels at 10 Å) holding bright soft spheres of a few CZII
classes at random, non-overlapping positions, plus Gaussian noise; the positions are written as copick picks of
user ``curation`` (session ``0``). This is a plumbing test, not a realistic benchmark (use the simulator for that).

    .venv/bin/python bench/peers/make_tiny_project.py /tmp/tiny_proj --runs 3 --seed 0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from tomopick.data import CZII, Picks, Tomogram
from tomopick.io.copick_project import CopickProject

CLASSES = ("apo-ferritin", "beta-galactosidase", "thyroglobulin", "ribosome")


def make_run(shape_zyx: tuple[int, int, int], voxel_size_A: float, per_class: int,
             rng: np.random.Generator) -> tuple[np.ndarray, Picks]:
    """A volume ``(z, y, x)`` float32 and its picks (Å)."""
    vol = np.zeros(shape_zyx, dtype=np.float32)
    zz, yy, xx = np.meshgrid(*(np.arange(s) for s in shape_zyx), indexing="ij")
    placed: list[tuple[np.ndarray, float]] = []
    xyz_A, names = [], []
    for name in CLASSES:
        r_vox = CZII[name].radius_A / voxel_size_A * 0.6  # a compact core of the particle
        for _ in range(per_class):
            for _attempt in range(200):
                c = np.array([rng.uniform(r_vox, s - 1 - r_vox) for s in shape_zyx])
                if all(np.linalg.norm(c - c2) > r_vox + r2 + 2 for c2, r2 in placed):
                    break
            else:
                continue
            placed.append((c, r_vox))
            d2 = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2
            vol += np.exp(-d2 / (2 * (r_vox / 1.5) ** 2)).astype(np.float32)
            xyz_A.append(c[::-1] * voxel_size_A)
            names.append(name)
    vol += rng.normal(0, 0.3, size=vol.shape).astype(np.float32)
    return vol, Picks.from_arrays(np.array(xyz_A), names)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shape", type=str, default="64,128,128", help="z,y,x voxels")
    ap.add_argument("--voxel-size", type=float, default=10.0)
    ap.add_argument("--per-class", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    rng = np.random.default_rng(args.seed)
    project = CopickProject.create(args.root, CZII)
    for i in range(args.runs):
        run = f"TS_{i + 1}"
        vol, picks = make_run(shape, args.voxel_size, args.per_class, rng)  # type: ignore[arg-type]
        project.write_tomogram(run, Tomogram.from_array(vol, args.voxel_size), tomo_type="wbp", levels=1)
        project.write_picks(run, picks.with_columns(run=run), user_id="curation", session_id="0")
        print(f"{run}: {len(picks)} particles, {picks.counts()}")
    print(f"project: {project.config_path}")


if __name__ == "__main__":
    main()
