"""Numba kernels of TripletMargin_Supervised: online mining in a mini-batch, and the
triplet loss with its gradient as a small matrix (see :mod:`mahal._triplet_solver`).

A batch holds ``B`` points (``P`` classes × up to ``K`` points) with class codes
``codes`` and squared distances ``D`` (``B × B``) in the current learned space. A
mining rule selects triplets ``(a, p, n)`` (anchor, positive of the anchor's class,
negative of another class) and the number ``n_units`` of candidates it chose among,
which normalises the loss (the mean over the units, a unit without a triplet
counting zero):

``MINE_ALL``
    every valid triplet (units: the triplets).
``MINE_HARD``
    batch-hard (Hermans, Beyer & Leibe 2017): per anchor, its farthest positive and
    its nearest negative (units: the anchors).
``MINE_SEMIHARD``
    FaceNet's semi-hard rule (Schroff et al. 2015): per anchor-positive pair, the
    nearest negative *farther* than the positive, ``D[a,p] < D[a,n]``, selected when
    it lies inside the margin, ``D[a,n] < D[a,p] + margin`` (beyond the margin its
    loss is zero). When no negative is farther than the positive, the farthest
    negative is taken (the fallback of TensorFlow Addons' ``triplet_semihard_loss``,
    the usual reading of FaceNet: the least hard of the hard negatives, whose loss is
    still positive). Units: the anchor-positive pairs.

Ties go to the lowest index. The loss kernel returns the sum of the hinges
``[D[a,p] − D[a,n] + margin]_+`` and the ``B × B`` matrix ``C = Σ_active
(e_a − e_p)(e_a − e_p)ᵀ − (e_a − e_n)(e_a − e_n)ᵀ``: the gradient of the sum in
``L`` is ``2 Zᵀ C X`` (``Z = X Lᵀ``), one matrix product, no triplet tensor.
Pure functions of arrays and scalars, compiled on first use and cached.
"""

import numpy as np

from ._jit import njit

MINE_ALL, MINE_HARD, MINE_SEMIHARD = 0, 1, 2


@njit(cache=True, nogil=True)
def pairwise_sq_distances(Z):
    """``D[i, j] = ‖Z_i − Z_j‖²`` (from the differences: exact, never negative)."""
    B, r = Z.shape
    D = np.zeros((B, B))
    for i in range(B):
        for j in range(i + 1, B):
            s = 0.0
            for k in range(r):
                t = Z[i, k] - Z[j, k]
                s += t * t
            D[i, j] = s
            D[j, i] = s
    return D


@njit(cache=True, nogil=True)
def _semihard_negative(D, codes, a, p, margin):
    """FaceNet's negative for the pair ``(a, p)`` (see the module docstring), or −1
    when the nearest negative farther than the positive is beyond the margin."""
    B = D.shape[0]
    dap = D[a, p]
    best = -1
    best_d = np.inf
    far = -1
    far_d = -np.inf
    for n in range(B):
        if codes[n] == codes[a]:
            continue
        dan = D[a, n]
        if dan > dap and dan < best_d:
            best, best_d = n, dan
        if dan > far_d:
            far, far_d = n, dan
    if best >= 0:
        return best if best_d < dap + margin else -1
    return far


@njit(cache=True, nogil=True)
def _count_units(codes, mode):
    """Positives and negatives per anchor give the number of units of the rule."""
    B = codes.shape[0]
    total = 0
    for a in range(B):
        same = 0
        for j in range(B):
            if codes[j] == codes[a]:
                same += 1
        n_pos, n_neg = same - 1, B - same
        if mode == MINE_ALL:
            total += n_pos * n_neg
        elif mode == MINE_HARD:
            total += 1 if (n_pos > 0 and n_neg > 0) else 0
        else:
            total += n_pos if n_neg > 0 else 0
    return total


@njit(cache=True, nogil=True)
def select_triplets(D, codes, margin, mode):
    """The triplets a mining rule selects in a batch.

    Parameters
    ----------
    D : ndarray of shape (B, B)
        Squared distances in the learned space.
    codes : ndarray of int64, shape (B,)
        Class of each point.
    margin : float
    mode : int
        ``MINE_ALL``, ``MINE_HARD`` or ``MINE_SEMIHARD``.

    Returns
    -------
    triplets : ndarray of int64, shape (n_triplets, 3)
        Rows ``(a, p, n)``, by anchor, then positive, then negative.
    n_units : int
        Number of candidates (triplets, anchors, anchor-positive pairs).
    """
    B = D.shape[0]
    n_units = _count_units(codes, mode)
    out = np.empty((n_units, 3), dtype=np.int64)
    m = 0
    for a in range(B):
        if mode == MINE_HARD:
            hp, hp_d, hn, hn_d = -1, -np.inf, -1, np.inf
            for j in range(B):
                if j == a:
                    continue
                if codes[j] == codes[a]:
                    if D[a, j] > hp_d:
                        hp, hp_d = j, D[a, j]
                elif D[a, j] < hn_d:
                    hn, hn_d = j, D[a, j]
            if hp >= 0 and hn >= 0:
                out[m, 0], out[m, 1], out[m, 2] = a, hp, hn
                m += 1
            continue
        for p in range(B):
            if p == a or codes[p] != codes[a]:
                continue
            if mode == MINE_ALL:
                for n in range(B):
                    if codes[n] != codes[a]:
                        out[m, 0], out[m, 1], out[m, 2] = a, p, n
                        m += 1
            else:
                n = _semihard_negative(D, codes, a, p, margin)
                if n >= 0:
                    out[m, 0], out[m, 1], out[m, 2] = a, p, n
                    m += 1
    return out[:m], n_units


@njit(cache=True, nogil=True)
def _add_term(C, a, b, sign):
    """``C += sign (e_a − e_b)(e_a − e_b)ᵀ``."""
    C[a, a] += sign
    C[b, b] += sign
    C[a, b] -= sign
    C[b, a] -= sign


@njit(cache=True, nogil=True)
def triplet_hinge(D, triplets, margin):
    """Sum of ``[D[a,p] − D[a,n] + margin]_+`` over ``triplets``, the number of
    active ones (hinge > 0), and the matrix ``C`` of the module docstring."""
    B = D.shape[0]
    C = np.zeros((B, B))
    total = 0.0
    n_active = 0
    for t in range(triplets.shape[0]):
        a, p, n = triplets[t, 0], triplets[t, 1], triplets[t, 2]
        h = D[a, p] - D[a, n] + margin
        if h > 0.0:
            total += h
            n_active += 1
            _add_term(C, a, p, 1.0)
            _add_term(C, a, n, -1.0)
    return total, n_active, C


@njit(cache=True, nogil=True)
def all_triplets_hinge(D, codes, margin):
    """:func:`triplet_hinge` of ``select_triplets(D, codes, margin, MINE_ALL)``
    without listing the triplets: ``(total, n_active, C, n_units)``."""
    B = D.shape[0]
    C = np.zeros((B, B))
    total = 0.0
    n_active = 0
    for a in range(B):
        for p in range(B):
            if p == a or codes[p] != codes[a]:
                continue
            dap = D[a, p]
            for n in range(B):
                if codes[n] == codes[a]:
                    continue
                h = dap - D[a, n] + margin
                if h > 0.0:
                    total += h
                    n_active += 1
                    _add_term(C, a, p, 1.0)
                    _add_term(C, a, n, -1.0)
    return total, n_active, C, _count_units(codes, MINE_ALL)
