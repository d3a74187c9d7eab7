"""Numba kernels of MMC's solvers (see :mod:`mahal.mmc`).

The full-matrix solver works in the *whitened* space of the similarity scatter
``C_S``, where the feasible set ``{A ⪰ 0, ⟨A, C_S⟩ ≤ 1}`` becomes
``K = {M ⪰ 0, tr M ≤ 1}``. The Euclidean projection onto ``K`` is exact and cheap:
eigen-decompose, then project the eigenvalues onto the capped simplex
``{w ≥ 0, Σ w ≤ 1}``. Pure functions, no Python objects, compiled on first use and
cached on disk.
"""

import numpy as np
from ._jit import njit


def project_capped_simplex(v):
    """Euclidean projection of a vector onto ``{w ≥ 0, Σ w ≤ 1}``.

    If clipping the negative entries already gives a sum ≤ 1 that is the answer;
    otherwise the constraint ``Σ w = 1`` is active and the answer is the projection
    onto the probability simplex, ``max(v − θ, 0)`` with the threshold ``θ > 0`` found
    by sorting (Held et al. / Duchi et al.). (Sorts, then calls the kernel that
    :func:`project_trace_psd` applies to its ascending eigenvalues.)
    """
    v = np.asarray(v, dtype=np.float64)
    order = np.argsort(v, kind="stable")
    w = np.empty_like(v)
    w[order] = _capped_simplex_ascending(np.ascontiguousarray(v[order]))
    return w


@njit(cache=True, inline="always")
def _capped_simplex_ascending(u):
    """:func:`project_capped_simplex` of a vector sorted in ascending order (as
    ``eigh`` returns eigenvalues: so no sort is compiled)."""
    n = u.shape[0]
    w = np.empty(n)
    s = 0.0
    for i in range(n):
        w[i] = u[i] if u[i] > 0.0 else 0.0
        s += w[i]
    if s <= 1.0:
        return w
    css = 0.0
    theta = 0.0
    for c in range(n):  # (largest first)
        i = n - 1 - c
        css += u[i]
        t = (css - 1.0) / (c + 1)
        if u[i] - t > 0.0:
            theta = t
    for i in range(n):
        x = u[i] - theta
        w[i] = x if x > 0.0 else 0.0
    return w


@njit(cache=True)
def project_trace_psd(M0):
    """Exact Frobenius projection of a symmetric matrix onto ``{M ⪰ 0, tr M ≤ 1}``.

    The set is unitarily invariant, so the projection keeps the eigenvectors of
    ``M0`` and projects its eigenvalues onto ``{w ≥ 0, Σ w ≤ 1}``.

    Returns
    -------
    P : ndarray (d, d)
    w : ndarray (d,)  eigenvalues of ``P`` (in the order of ``V``'s columns)
    V : ndarray (d, d) eigenvectors
    """
    # (element loops rather than array expressions and ``@``: same speed at these
    # sizes, and much less to compile)
    d = M0.shape[0]
    S = np.empty((d, d))
    for i in range(d):
        for j in range(d):
            S[i, j] = 0.5 * (M0[i, j] + M0[j, i])
    lam, V = np.linalg.eigh(S)
    w = _capped_simplex_ascending(lam)
    # P = V diag(w) Vᵀ over the positive w only (the projection is often of low
    # rank), upper triangle mirrored: exactly symmetric
    P = np.zeros((d, d))
    for k in range(d):
        wk = w[k]
        if wk == 0.0:
            continue
        for i in range(d):
            vik = wk * V[i, k]
            for j in range(i, d):
                P[i, j] += vik * V[j, k]
    for i in range(d):
        for j in range(i + 1, d):
            P[j, i] = P[i, j]
    return P, w, V


@njit(cache=True)
def cross_class_weights(K, sq, codes, s, c0, dmin):
    """Distances and gradient weights of a block of cross-class pairs, in place.

    ``K`` (b, n_cols) holds the Gram block ``Z[s:s+b] @ Z[c0:].T``; ``sq`` the squared
    norms of all rows of ``Z``. Only pairs ``i < j`` with different codes count. On
    return ``K[a, t]`` is the weight ``1 / (2 max(dist, dmin))`` of the pair
    ``(s + a, c0 + t)`` (0 for excluded pairs).

    Returns
    -------
    F : float  sum of the distances of the counted pairs
    rows : ndarray (b,)  row sums of the weights
    cols : ndarray (n_cols,)  column sums of the weights
    """
    b, m = K.shape
    rows = np.zeros(b)
    cols = np.zeros(m)
    F = 0.0
    for a in range(b):
        i = s + a
        ci = codes[i]
        sqi = sq[i]
        t0 = i + 1 - c0
        if t0 < 0:
            t0 = 0
        for t in range(min(t0, m)):
            K[a, t] = 0.0
        for t in range(t0, m):
            j = c0 + t
            if codes[j] == ci:
                K[a, t] = 0.0
                continue
            d2 = sqi + sq[j] - 2.0 * K[a, t]
            dist = np.sqrt(d2) if d2 > 0.0 else 0.0
            F += dist
            w = 0.5 / (dist if dist > dmin else dmin)
            K[a, t] = w
            rows[a] += w
            cols[t] += w
    return F, rows, cols
