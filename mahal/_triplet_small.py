"""TripletMargin_Supervised's mining and batch loss, with NumPy twins for small fits.

The first call of any numba function in a process costs more than a whole small
``TripletMargin_Supervised`` fit (loading numba and its cached machine code, or
compiling it on a new machine). So batches of at most ``_NUMPY_BATCH`` points are
mined and their hinges summed in NumPy (vectorised over the batch: ``B × B``
distances, at most ``B³`` candidate triplets), without importing numba, until the
process has done ``_NUMPY_WORK`` batches' worth of such work (a batch of ``B``
points counts ``max(1, (B/32)³)``); then, as for larger batches or once the kernels
are loaded, :mod:`mahal._triplet_kernels` take over (a NumPy batch is several times
slower than a compiled one, so a process that keeps fitting pays numba's start-up
once rather than the NumPy price on every fit). The twins select the same triplets, in the same
order, with the same ties (the lowest index), and return the same ``C``; sums may
differ by rounding.
"""

import sys

import numpy as np

from ._lazy import NumpyBudget, lazy_module

kernels = lazy_module("mahal._triplet_kernels")  # (numba: imported on first use)

MINE_ALL, MINE_HARD, MINE_SEMIHARD = 0, 1, 2  # as mahal._triplet_kernels

_NUMPY_BATCH = 128
_NUMPY_WORK = 400.0
_numpy = NumpyBudget("mahal._triplet_kernels", _NUMPY_WORK)  # (in batches' worth)


def use_numpy(batch_size):
    """Whether the next batch of ``batch_size`` points is mined in NumPy: a small
    batch, the kernels not loaded, and the process's NumPy budget not spent."""
    return batch_size <= _NUMPY_BATCH and _numpy.left() > 0


def pairwise_sq_distances(Z):
    """``D[i, j] = ‖Z_i − Z_j‖²`` from the differences (exact, never negative)."""
    diff = Z[:, None, :] - Z[None, :, :]
    return np.einsum("ijk,ijk->ij", diff, diff)


def _masks(codes):
    same = codes[:, None] == codes[None, :]
    pos = same.copy()
    np.fill_diagonal(pos, False)
    return pos, ~same


def select_triplets(D, codes, margin, mode):
    """:func:`mahal._triplet_kernels.select_triplets` in NumPy: ``(triplets,
    n_units)``, rows ``(a, p, n)`` by anchor, then positive, then negative."""
    pos, neg = _masks(codes)
    n_pos, n_neg = pos.sum(1), neg.sum(1)
    if mode == MINE_ALL:
        a, p, n = np.nonzero(pos[:, :, None] & neg[:, None, :])
        return np.stack([a, p, n], axis=1).astype(np.int64), int((n_pos * n_neg).sum())
    if mode == MINE_HARD:
        a = np.flatnonzero((n_pos > 0) & (n_neg > 0))
        hp = np.argmax(np.where(pos, D, -np.inf), axis=1)   # (first of ties)
        hn = np.argmin(np.where(neg, D, np.inf), axis=1)
        return np.stack([a, hp[a], hn[a]], axis=1).astype(np.int64), int(a.shape[0])
    a, p = np.nonzero(pos & (n_neg > 0)[:, None])
    Dan = np.where(neg[a], D[a], np.inf)                      # (pairs, B)
    dap = D[a, p]
    farther = np.where(Dan > dap[:, None], Dan, np.inf)
    best = np.argmin(farther, axis=1)
    best_d = farther[np.arange(a.shape[0]), best]
    found = np.isfinite(best_d)
    far = np.argmax(np.where(neg[a], D[a], -np.inf), axis=1)   # the fallback
    n = np.where(found, best, far)
    keep = ~found | (best_d < dap + margin)
    triplets = np.stack([a[keep], p[keep], n[keep]], axis=1).astype(np.int64)
    return triplets, int(a.shape[0])


def _laplacian(W):
    """``Σ_ab W[a, b] (e_a − e_b)(e_a − e_b)ᵀ`` for counts ``W`` (zero diagonal)."""
    return np.diag(W.sum(0) + W.sum(1)) - W - W.T


def _counts(i, j, B):
    return np.bincount(i * B + j, minlength=B * B).reshape(B, B).astype(np.float64)


def triplet_hinge(D, triplets, margin):
    """:func:`mahal._triplet_kernels.triplet_hinge` in NumPy: ``(total, n_active,
    C)``."""
    B = D.shape[0]
    a, p, n = triplets.T
    h = D[a, p] - D[a, n] + margin
    act = h > 0.0
    a, p, n = a[act], p[act], n[act]
    C = _laplacian(_counts(a, p, B)) - _laplacian(_counts(a, n, B))
    return float(h[act].sum()), int(act.sum()), C


def all_triplets_hinge(D, codes, margin):
    """:func:`mahal._triplet_kernels.all_triplets_hinge` in NumPy: ``(total,
    n_active, C, n_units)``, without listing the triplets."""
    pos, neg = _masks(codes)
    h = D[:, :, None] - D[:, None, :] + margin            # [a, p, n]
    act = pos[:, :, None] & neg[:, None, :] & (h > 0.0)
    C = _laplacian(act.sum(2).astype(np.float64)) - _laplacian(
        act.sum(1).astype(np.float64))
    units = int((pos.sum(1) * neg.sum(1)).sum())
    return float(h[act].sum()), int(act.sum()), C, units


def mined_hinge(Z, codes, margin, mode, in_numpy):
    """Hinge sum of a batch's mined triplets: ``(total, n_active, C, n_units)``
    (see :mod:`mahal._triplet_kernels`), in NumPy when ``in_numpy`` is true."""
    if in_numpy:
        _numpy.spend(max(1.0, (Z.shape[0] / 32) ** 3))
    impl = sys.modules[__name__] if in_numpy else kernels
    D = impl.pairwise_sq_distances(Z)
    if mode == MINE_ALL:
        return impl.all_triplets_hinge(D, codes, margin)
    triplets, n_units = impl.select_triplets(D, codes, margin, mode)
    return (*impl.triplet_hinge(D, triplets, margin), n_units)
