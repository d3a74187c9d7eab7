"""Numba kernels of multiple-metric LMNN (:mod:`mahal._lmnn_multi_solver`).

Notation (the solver's docstring explains the layout):

- ``Z`` (S, r): the transformed points, stacked by metric: the rows of metric ``c``
  are ``X_rows Lcᵀ`` for the points that metric ``c`` is needed for;
- ``pos`` (C, n): the row of ``Z`` of point ``i`` in metric ``c`` (−1: not needed);
- ``targets`` (n, k): target neighbours (−1: none), same class;
- impostor candidates: a directed CSR graph ``(cand_ptr, cand_idx)`` by anchor ``i``;
  the pair ``i → l`` is measured in the metric of ``l``'s class.

Both passes write only rows they own, so row chunks run in parallel on threads.
"""

import numpy as np
from ._jit import njit
from ._lmnn_search_kernels import _sqdist


@njit(cache=True, nogil=True, fastmath=True)
def _axpy_diff(U, dst, w, Z, a, b):
    """``U[dst] += w (Z[a] − Z[b])``."""
    for t in range(Z.shape[1]):
        U[dst, t] += w * (Z[a, t] - Z[b, t])


@njit(cache=True, nogil=True)
def anchor_pass(Z, pos, y, targets, cand_ptr, cand_idx, mu, r0, r1, row_loss, wt,
                edge_weight, U):
    """Loss of the anchors ``r0 ≤ i < r1`` and their side of ``U = Lap(W) Z``.

    Writes ``row_loss[i]`` (pull and push terms of anchor ``i``), ``wt[i, k]`` (the
    weight of target pair ``(i, T_ik)``: ``1 − μ`` plus ``μ`` per active triplet),
    ``edge_weight[e]`` (``μ`` times the active triplets of candidate edge ``e``;
    the pair's weight in ``W`` is its negative) and adds to ``U`` the anchor's rows
    (``pos[·, i]``). Returns the number of active triplets.
    """
    k = targets.shape[1]
    dt = np.empty(k)
    active = 0
    for i in range(r0, r1):
        a = y[i]
        pi = pos[a, i]
        loss = 0.0
        for kk in range(k):
            j = targets[i, kk]
            if j < 0:
                wt[i, kk] = 0.0
                continue
            d = _sqdist(Z, pi, pos[a, j])
            dt[kk] = d
            loss += (1.0 - mu) * d
            wt[i, kk] = 1.0 - mu
        for e in range(cand_ptr[i], cand_ptr[i + 1]):
            ll = cand_idx[e]
            b = y[ll]
            pib = pos[b, i]
            pl = pos[b, ll]
            dil = _sqdist(Z, pib, pl)
            w = 0.0
            for kk in range(k):
                if targets[i, kk] < 0:
                    continue
                h = 1.0 + dt[kk] - dil
                if h > 0.0:
                    loss += mu * h
                    wt[i, kk] += mu
                    w += mu
                    active += 1
            edge_weight[e] = w
            if w > 0.0:
                _axpy_diff(U, pib, -w, Z, pib, pl)
        for kk in range(k):
            j = targets[i, kk]
            if j >= 0:
                _axpy_diff(U, pi, wt[i, kk], Z, pi, pos[a, j])
        row_loss[i] = loss
    return active


@njit(cache=True, nogil=True)
def incoming_pass(Z, pos, y, k, wt, targeted_by_ptr, targeted_by, in_ptr, in_edge,
                  cand_src, edge_weight, r0, r1, U):
    """The other side of ``U = Lap(W) Z``: for ``r0 ≤ j < r1``, the target pairs
    that end at ``j`` (``targeted_by``: flat indices ``i k + kk``) and the candidate
    edges that end at ``j`` (``in_edge``), all in ``j``'s class's metric; written
    into row ``pos[y_j, j]`` (after :func:`anchor_pass` of every row)."""
    for j in range(r0, r1):
        c = y[j]
        pj = pos[c, j]
        for p in range(targeted_by_ptr[j], targeted_by_ptr[j + 1]):
            f = targeted_by[p]
            i = f // k
            _axpy_diff(U, pj, -wt[i, f - i * k], Z, pos[c, i], pj)
        for p in range(in_ptr[j], in_ptr[j + 1]):
            e = in_edge[p]
            w = edge_weight[e]
            if w > 0.0:
                _axpy_diff(U, pj, w, Z, pos[c, cand_src[e]], pj)



@njit(cache=True, nogil=True, fastmath=True)
def impostor_energy(D, margin, r0, r1, out):
    """``out[t] = Σ_i Σ_j [margin[i, j] − D[t, i]]_+`` for ``r0 ≤ t < r1``: the
    hinges a test point at squared distances ``D[t]`` causes as an impostor of
    training points with triplet margins ``1 + d_ij`` (−inf: no target)."""
    for t in range(r0, r1):
        s = 0.0
        for i in range(D.shape[1]):
            d = D[t, i]
            for j in range(margin.shape[1]):
                h = margin[i, j] - d
                if h > 0.0:
                    s += h
        out[t] = s
