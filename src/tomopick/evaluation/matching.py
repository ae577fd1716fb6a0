"""Matching picks to ground truth within a distance: the CZII ball rule and one-to-one (Hungarian) assignment.

All positions are ``(n, 3)`` arrays ``(x, y, z)`` in Å (any consistent length unit works); distances are
Euclidean and a pair is *in range* when ``distance <= distance_A`` (inclusive, like SciPy's ``KDTree`` ball
queries that the Kaggle CZII metric uses).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import KDTree


def _points(xyz: np.ndarray) -> np.ndarray:
    arr = np.asarray(xyz, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 3))
    arr = arr.reshape(-1, 3)
    if not np.all(np.isfinite(arr)):
        raise ValueError("positions must be finite")
    return arr


def neighbours_within(truth_xyz: np.ndarray, pick_xyz: np.ndarray, distance_A: float) -> list[np.ndarray]:
    """For every pick, the indices of the ground-truth points within ``distance_A`` (inclusive).

    Parameters
    ----------
    truth_xyz
        Ground-truth positions ``(n_truth, 3)`` ``(x, y, z)`` in Å.
    pick_xyz
        Candidate positions ``(n_picks, 3)`` in Å.
    distance_A
        Matching distance in Å.

    Returns
    -------
    list of ``n_picks`` int64 arrays, each sorted ascending.
    """
    truth, picks = _points(truth_xyz), _points(pick_xyz)
    if len(truth) == 0 or len(picks) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in range(len(picks))]
    lists = KDTree(picks).query_ball_tree(KDTree(truth), r=float(distance_A))
    return [np.asarray(sorted(x), dtype=np.int64) for x in lists]


def czii_counts(truth_xyz: np.ndarray, pick_xyz: np.ndarray, distance_A: float) -> tuple[int, int, int]:
    """TP, FP, FN of one class in one tomogram, counted exactly as the Kaggle CZII metric does.

    ``TP`` = number of distinct ground-truth points with at least one pick within ``distance_A``;
    ``FP = n_picks - TP`` (a second pick on the same particle is a false positive; note that this can be
    negative when one pick is in range of several ground-truth points, which needs ground-truth points closer
    than ``2 * distance_A``); ``FN = n_truth - TP``.

    Parameters
    ----------
    truth_xyz, pick_xyz
        Positions ``(n, 3)`` ``(x, y, z)`` in Å.
    distance_A
        Matching distance in Å (the CZII metric uses 0.5 x the particle radius).
    """
    truth, picks = _points(truth_xyz), _points(pick_xyz)
    hits = neighbours_within(truth, picks, distance_A)
    matched = np.unique(np.concatenate(hits)) if hits else np.zeros(0, dtype=np.int64)
    tp = int(len(matched))
    return tp, len(picks) - tp, len(truth) - tp


@dataclass(frozen=True)
class Matching:
    """A one-to-one assignment between ground truth and picks.

    Attributes
    ----------
    truth_index, pick_index
        Matched pairs ``(k,)`` int64: ``truth[truth_index[i]]`` is matched to ``picks[pick_index[i]]``.
    distance_A
        Distances ``(k,)`` of the matched pairs in Å.
    n_truth, n_picks
        Sizes of the two sets.
    """

    truth_index: np.ndarray
    pick_index: np.ndarray
    distance_A: np.ndarray
    n_truth: int
    n_picks: int

    @property
    def tp(self) -> int:
        return int(len(self.truth_index))

    @property
    def fp(self) -> int:
        return self.n_picks - self.tp

    @property
    def fn(self) -> int:
        return self.n_truth - self.tp


def _components(n_truth: int, pairs_t: np.ndarray, pairs_p: np.ndarray, n_picks: int) -> np.ndarray:
    """Connected-component label of every truth node (0..n_truth-1) and pick node (n_truth..) of the graph."""
    n = n_truth + n_picks
    graph = coo_matrix((np.ones(len(pairs_t)), (pairs_t, pairs_p + n_truth)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def match_hungarian(truth_xyz: np.ndarray, pick_xyz: np.ndarray, distance_A: float) -> Matching:
    """One-to-one matching with a distance cutoff: the largest number of pairs within ``distance_A``, and among
    those the smallest total distance.

    Pairs farther than the cutoff are never matched. The problem is split into connected components of the
    "within range" graph and each is solved with :func:`scipy.optimize.linear_sum_assignment` (out-of-range
    pairs carry a cost larger than any sum of in-range distances, so the number of matches is maximised first).

    Parameters
    ----------
    truth_xyz, pick_xyz
        Positions ``(n, 3)`` ``(x, y, z)`` in Å.
    distance_A
        Cutoff in Å (inclusive).

    Returns
    -------
    Matching
        Pairs sorted by truth index.
    """
    truth, picks = _points(truth_xyz), _points(pick_xyz)
    nbrs = neighbours_within(truth, picks, distance_A)
    pairs_p = np.repeat(np.arange(len(picks)), [len(x) for x in nbrs]).astype(np.int64)
    pairs_t = np.concatenate(nbrs) if nbrs else np.zeros(0, dtype=np.int64)
    ti: list[np.ndarray] = []
    pi: list[np.ndarray] = []
    if len(pairs_t):
        labels = _components(len(truth), pairs_t, pairs_p, len(picks))
        pair_label = labels[pairs_t]
        for comp in np.unique(pair_label):
            t_nodes = np.unique(pairs_t[pair_label == comp])
            p_nodes = np.unique(pairs_p[pair_label == comp])
            dist = np.linalg.norm(truth[t_nodes][:, None, :] - picks[p_nodes][None, :, :], axis=-1)
            inside = dist <= distance_A
            big = float(distance_A) * (min(len(t_nodes), len(p_nodes)) + 1) + 1.0
            rows, cols = linear_sum_assignment(np.where(inside, dist, big))
            keep = inside[rows, cols]
            ti.append(t_nodes[rows[keep]])
            pi.append(p_nodes[cols[keep]])
    t_idx = np.concatenate(ti) if ti else np.zeros(0, dtype=np.int64)
    p_idx = np.concatenate(pi) if pi else np.zeros(0, dtype=np.int64)
    order = np.argsort(t_idx, kind="stable")
    t_idx, p_idx = t_idx[order].astype(np.int64), p_idx[order].astype(np.int64)
    d = np.linalg.norm(truth[t_idx] - picks[p_idx], axis=1) if len(t_idx) else np.zeros(0)
    return Matching(t_idx, p_idx, d, len(truth), len(picks))


def tp_by_rank(truth_xyz: np.ndarray, pick_xyz: np.ndarray, order: np.ndarray, distance_A: float,
               one_to_one: bool) -> np.ndarray:
    """True positives when only the first ``k`` picks of ``order`` are kept, for every ``k = 0 … n_picks``.

    Parameters
    ----------
    truth_xyz, pick_xyz
        Positions ``(n, 3)`` in Å.
    order
        Permutation ``(n_picks,)`` of the picks, best first (usually by decreasing score).
    distance_A
        Matching distance in Å (inclusive).
    one_to_one
        False: CZII counting (distinct ground-truth points with a pick in range). True: size of the largest
        one-to-one matching within range — the number of matches :func:`match_hungarian` finds — computed
        incrementally with augmenting paths (adding one pick grows the maximum matching by at most one).

    Returns
    -------
    int64 array ``(n_picks + 1,)``, non-decreasing, starting at 0.
    """
    truth, picks = _points(truth_xyz), _points(pick_xyz)
    order = np.asarray(order, dtype=np.int64)
    nbrs = neighbours_within(truth, picks, distance_A)
    out = np.zeros(len(order) + 1, dtype=np.int64)
    if not one_to_one:
        first_rank = np.full(len(truth), len(order), dtype=np.int64)
        for rank, p in enumerate(order):
            if len(nbrs[p]):
                first_rank[nbrs[p]] = np.minimum(first_rank[nbrs[p]], rank)
        counts = np.bincount(first_rank, minlength=len(order) + 1)[: len(order)]
        out[1:] = np.cumsum(counts)
        return out
    owner = np.full(len(truth), -1, dtype=np.int64)  # truth -> pick currently matched

    def augment(start: int) -> bool:
        # iterative DFS for an augmenting path from pick ``start`` (Kuhn's algorithm)
        seen = np.zeros(len(truth), dtype=bool)
        stack: list[tuple[int, int]] = [(start, 0)]
        path: list[int] = []  # truth nodes chosen along the stack
        while stack:
            p, k = stack[-1]
            cand = nbrs[p]
            advanced = False
            while k < len(cand):
                t = int(cand[k])
                k += 1
                if seen[t]:
                    continue
                seen[t] = True
                stack[-1] = (p, k)
                path.append(t)
                if owner[t] < 0:
                    for (pp, _), tt in zip(stack, path):
                        owner[tt] = pp
                    return True
                stack.append((int(owner[t]), 0))
                advanced = True
                break
            if not advanced:
                stack.pop()
                if path:
                    path.pop()
        return False

    tp = 0
    for rank, p in enumerate(order):
        if len(nbrs[p]) and augment(int(p)):
            tp += 1
        out[rank + 1] = tp
    return out
