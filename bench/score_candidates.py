"""Which pick score ranks across imaging conditions? Candidate scores of the same peaks, compared on dev sets.

For every run of the given copick projects (the ``dev`` family of ``bench/shift_sets.py``: never the bench sets),
the network's logits are computed once; max-pool peaks of each class map (peak probability >= 0.05, spacing
0.75 × radius) are scored several ways:

``p``           the softmax probability at the peak (the score before the blob score);
``logodds``     log p_c − log Σ_{k≠c} p_k at the peak, from the float32 logits (no float16 store);
``blob<f>``     the mean class probability over a sphere of ``f`` × the particle radius (f = 0.25, 0.5, 0.75);
``blob_lo0.5``  the mean of the log-odds (clipped to ±10) over the sphere of 0.5 × radius.

Printed: per score the CZII score with the best threshold per class (oracle) and the per-class average
precision; then, for the ``blob0.5`` score, the CZII score at one threshold for every class (0.1 … 0.4), and the
per-tomogram rules that were tried (Gaussian-mixture expected-F, density valley).

Usage::

    python bench/score_candidates.py DEV/dev-snr DEV/dev-defocus DEV/dev-blur DEV/dev-voxel [--model M.pt]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from tomopick.data import Picks
from tomopick.evaluation import average_precisions, czii_score, pr_curve, threshold_sweep
from tomopick.inference.normalize import normalisation_kwargs, normalize_robust, robust_stats
from tomopick.inference.rescale import rescale_factors, rescale_volume
from tomopick.io.copick_project import CopickProject
from tomopick.peaks import find_peaks
from tomopick.peaks.score import sphere_mean
from tomopick.peaks.thresholds import valley_threshold
from tomopick.workflows.calibrate import foreground_particles
from tomopick.workflows.pick import resolve_model


def candidates(roots: list[str], loaded) -> tuple[list, Picks]:
    from monai.inferers import sliding_window_inference

    cfg = loaded.config
    particles = foreground_particles(cfg)
    out, truth = [], []
    for root in roots:
        project = CopickProject.open(root)
        for run in project.runs():
            tomo = project.read_tomogram(run)
            data = np.asarray(tomo.data[...], dtype=np.float32)
            factors = rescale_factors(tomo.voxel_size_A, loaded.voxel_size_A)
            vs = float(np.mean(tomo.voxel_size_A))
            if factors is not None:
                data = rescale_volume(data, factors)
                vs = vs / float(np.mean(factors))
            kwargs = normalisation_kwargs(cfg.get("normalisation"))
            stats = robust_stats(data)
            kwargs.pop("max_samples", None)
            x = torch.from_numpy(normalize_robust(data, stats=stats, **kwargs).astype(np.float32))[None, None]
            with torch.inference_mode():
                z = sliding_window_inference(x, roi_size=[128, 160, 160], sw_batch_size=1, predictor=loaded.model,
                                             overlap=0.15, mode="gaussian")[0].numpy()
            p = torch.softmax(torch.from_numpy(z), 0).numpy()
            rows = []
            for name in particles.names:
                c = cfg["classes"].index(name)
                r_vox = particles[name].radius_A / vs
                pc = p[c].astype(np.float16).astype(np.float32)  # as the score store holds it
                pk = find_peaks(pc, "maxpool", threshold=0.05, radius_vox=r_vox)
                if not len(pk):
                    continue
                idx = np.rint(pk.zyx).astype(int)
                logodds = z[c] - np.logaddexp.reduce(np.delete(z, c, axis=0), axis=0)
                feats = {"p": pk.score, "logodds": logodds[tuple(idx.T)]}
                for frac in (0.25, 0.5, 0.75):
                    feats[f"blob{frac}"] = sphere_mean(p[c], pk.zyx, frac * r_vox)
                feats["blob_lo0.5"] = sphere_mean(np.clip(logodds, -10, 10), pk.zyx, 0.5 * r_vox)
                rows.append((name, pk.zyx[:, ::-1] * vs, feats))
            out.append((run, rows))
            truth.append(project.read_picks(run=run, user_id="curation").with_columns(run=run))
            print(f"{run}: {sum(len(r[1]) for r in rows)} candidates", flush=True)
    return out, Picks.concat(truth)


def picks_of(cands, feature: str, keep=None) -> Picks:
    out = []
    for run, rows in cands:
        for name, xyz, feats in rows:
            s = feats[feature]
            k = np.ones(len(s), bool) if keep is None else keep(s)
            out.append(Picks.from_arrays(xyz[k], name, score=s[k], run=run))
    return Picks.concat(out)


def _em2(x: np.ndarray, iters: int = 200) -> np.ndarray:
    """Posterior of the upper component of a two-Gaussian mixture fitted to ``x`` (EM)."""
    mu = np.percentile(x, [25, 90]).astype(float)
    sd = np.array([x.std() + 1e-3] * 2) / 2
    w = np.array([0.7, 0.3])
    for _ in range(iters):
        ll = -0.5 * ((x[:, None] - mu) / sd) ** 2 - np.log(sd) + np.log(w)
        r = np.exp(ll - ll.max(1, keepdims=True))
        r /= r.sum(1, keepdims=True)
        nk = r.sum(0) + 1e-9
        w, mu = nk / nk.sum(), (r * x[:, None]).sum(0) / nk
        sd = np.sqrt((r * (x[:, None] - mu) ** 2).sum(0) / nk) + 0.05
    return r[:, int(np.argmax(mu))]


def mixture_keep(s: np.ndarray, beta: float = 4.0) -> np.ndarray:
    """Keep the top-k peaks that maximise the expected F-beta under the mixture posteriors."""
    if len(s) < 6:
        return s >= 0.2
    c = np.clip(s, 1e-3, 0.999)
    q = _em2(np.log(c / (1 - c)))
    order = np.argsort(-s)
    tp = np.concatenate([[0], np.cumsum(q[order])])
    k = np.arange(len(s) + 1)
    b2 = beta**2
    f = (1 + b2) * tp / np.maximum((1 + b2) * tp + b2 * (q.sum() - tp) + (k - tp), 1e-9)
    keep = np.zeros(len(s), bool)
    keep[order[:int(np.argmax(f))]] = True
    return keep


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("projects", nargs="+")
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    loaded = resolve_model(args.model)
    particles = foreground_particles(loaded.config)
    cands, truth = candidates(args.projects, loaded)
    print("\n| score | oracle | " + " | ".join(f"AP {n}" for n in particles.names) + " |")
    for feature in cands[0][1][0][2]:
        picks = picks_of(cands, feature)
        ap = average_precisions(pr_curve(truth, picks, particles), particles)
        oracle = threshold_sweep(truth, picks, particles, "czii").score
        print(f"| {feature} | {oracle:.3f} | " + " | ".join(f"{ap[n]:.2f}" for n in particles.names) + " |")
    print("\nblob0.5 rules (CZII score):")
    rules = {f"one threshold {t}": (lambda s, t=t: s >= t) for t in (0.1, 0.15, 0.2, 0.25, 0.3, 0.4)}
    rules["mixture expected-F per tomogram"] = mixture_keep
    rules["valley 0.12-0.3 per tomogram"] = lambda s: s >= valley_threshold(s)
    for label, keep in rules.items():
        print(f"  {label}: {czii_score(truth, picks_of(cands, 'blob0.5', keep), particles).score:.3f}")


if __name__ == "__main__":
    main()
