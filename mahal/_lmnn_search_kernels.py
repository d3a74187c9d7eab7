"""Numba kernels of LMNN's neighbour searches: target neighbours, impostor candidates,
and the energy classifier's per-class scores.

Pure functions of float64 / int64 arrays (a search block's products may be float32),
compiled once per signature and cached on disk. The loss and gradient kernels are in
:mod:`mahal._lmnn_kernels`.
"""

import numpy as np
from ._jit import njit


@njit(cache=True, inline="always", fastmath=True)
def _sqdist(Z, a, b):
    s = 0.0
    for t in range(Z.shape[1]):
        u = Z[a, t] - Z[b, t]
        s += u * u
    return s




_TIE = 1e-10


@njit(cache=True, inline="always")
def _insert(val, idx, p, v, b, tol):
    """Put ``(v, b)`` into the sorted lists ``val``, ``idx`` at position ``p`` or
    before; values within ``tol`` of each other are tied, lower index first."""
    while p > 0 and (val[p - 1] > v + tol
                     or (val[p - 1] >= v - tol and idx[p - 1] > b)):
        val[p] = val[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    val[p] = v
    idx[p] = b


@njit(cache=True, nogil=True, fastmath=True)
def nearest_in_class(Xc, G, nc, s, kk, kc, out):
    """Target neighbours of rows ``s … s + len(G) − 1`` of one class's points ``Xc``.

    ``G`` holds those rows' products with all of ``Xc`` and ``nc`` the squared row
    norms, both of the class's points centred (so that the Gram trick does not
    cancel an offset of the data). Candidates are each row's ``kk`` smallest
    Gram-trick distances ``nc_a + nc_b − 2 G_ab`` (itself excluded; ties, to within
    their rounding error: lower index first), kept with an insertion list (``O(m)``
    per row for small ``kk``; faster than ``np.argpartition`` where lattice
    distances have many ties). They are ranked by exact squared distance (ties, to
    within ``_TIE``: lower index first) and the first ``kc`` written to
    ``out[a, :kc]``, as indices into ``Xc``. One compiled pass per block rather than
    numpy's distance block, argsort and re-rank (docs/solver_notes.rst, "LMNN's
    kernels")."""
    m, d = Xc.shape
    cand = np.empty(kk, dtype=np.int64)
    val = np.empty(kk)
    nc_max = 0.0  # (a loop: ``nc.max()`` compiles numpy's reduction machinery)
    for b in range(m):
        if nc[b] > nc_max:
            nc_max = nc[b]
    for a in range(G.shape[0]):
        i = s + a
        # (Gram-trick distances are exact to ~d·2⁻⁵³ of the squared norms: values
        # closer than twice that are tied, and the one seen first, the lower index,
        # stays ahead, so that a tie of more than kk points keeps the lowest indices)
        tol = 4.0 * (d + 2) * 2.0 ** -53 * (nc[i] + nc_max)
        cnt = 0
        for b in range(m):
            if b == i:
                continue
            v = nc[i] + nc[b] - 2.0 * G[a, b]
            if cnt < kk:
                p = cnt
                cnt += 1
            elif v < val[kk - 1] - tol:
                p = kk - 1
            else:
                continue
            _insert(val, cand, p, v, b, tol)
        # ranked again by exact distance; distances equal to within rounding
        # (relative _TIE) are ties
        for c in range(kk):
            b = cand[c]
            e = _sqdist(Xc, i, b)
            _insert(val, cand, c, e, b, _TIE * e)
        for c in range(kc):
            out[a, c] = cand[c]


@njit(cache=True, inline="always")
def _grow(src, dst, p, need):
    """Copies of the pair buffers (first ``p`` entries kept), at least ``need`` long."""
    cap = 2 * src.shape[0]
    while cap < need:
        cap *= 2
    src2 = np.empty(cap, dtype=np.int64)
    dst2 = np.empty(cap, dtype=np.int64)
    for q in range(p):  # (not a slice assignment: see _update in _optimize.py)
        src2[q] = src[q]
        dst2[q] = dst[q]
    return src2, dst2


@njit(cache=True, nogil=True, fastmath=True)
def search_small(Z, y, rho2):
    """Directed impostor candidates ``i → l`` (``y_l ≠ y_i``, ``‖z_i − z_l‖² <
    rho2[i]``) of a small problem in one compiled pass over all pairs, distances in
    float64: below a few hundred thousand multiply-adds the blocked BLAS search's
    set-up costs more than the search. Returns ``(src, dst)`` int64 arrays."""
    n = Z.shape[0]
    src = np.empty(4 * n, dtype=np.int64)
    dst = np.empty(4 * n, dtype=np.int64)
    p = 0
    for i in range(n):
        for other in range(i + 1, n):
            if y[other] == y[i]:
                continue
            d = _sqdist(Z, i, other)
            if d >= rho2[i] and d >= rho2[other]:
                continue
            if p + 2 > src.shape[0]:
                src, dst = _grow(src, dst, p, p + 2)
            if d < rho2[i]:
                src[p] = i
                dst[p] = other
                p += 1
            if d < rho2[other]:
                src[p] = other
                dst[p] = i
                p += 1
    return src[:p].copy(), dst[:p].copy()


@njit(cache=True, nogil=True, fastmath=True)
def scan_block(G, norm_rows, norm_cols, rows, cols, rho2_rows, rho2_cols):
    """Turn one block of dot products into directed impostor-candidate pairs.

    ``G[a, b] = z_rows[a] · z_cols[b]`` (a BLAS product) and ``norm_* = ‖z‖²`` give
    the squared distances. Emits ``rows[a] → cols[b]`` when the distance is below
    ``rho2_rows[a]`` and ``cols[b] → rows[a]`` when it is below ``rho2_cols[b]``
    (the block's rows and columns are of distinct classes, so labels need no
    check).

    Per row, a vectorised pass writes a code per column (bit 0: ``rows[a] →
    cols[b]``, bit 1: ``cols[b] → rows[a]``), then a pass over the codes emits the
    pairs, which are sparse. (Counting per chunk of 64 columns and scanning again
    the chunks that hold pairs was slower: at that density most chunks hold one.)
    Returns ``(src, dst)`` int64 arrays.
    """
    m, nb = G.shape
    src = np.empty(1024, dtype=np.int64)
    dst = np.empty(1024, dtype=np.int64)
    code = np.empty(nb, dtype=np.uint8)
    two = np.uint8(2)
    p = 0
    for a in range(m):
        ri = rho2_rows[a]
        na = norm_rows[a]
        i = rows[a]
        c = 0
        for b in range(nb):
            d = na + norm_cols[b] - 2.0 * np.float64(G[a, b])
            v = np.uint8(d < ri) + two * np.uint8(d < rho2_cols[b])
            code[b] = v
            c += v
        if c == 0:
            continue
        if p + 2 * nb > src.shape[0]:
            src, dst = _grow(src, dst, p, p + 2 * nb)
        for b in range(nb):
            v = code[b]
            if v == 0:
                continue
            other = cols[b]
            if v & 1:
                src[p] = i
                dst[p] = other
                p += 1
            if v & 2:
                src[p] = other
                dst[p] = i
                p += 1
    return src[:p].copy(), dst[:p].copy()


@njit(cache=True, nogil=True, fastmath=True)
def energy_block(D, y, class_start, k, dt, targets, mu, r0, r1, out):
    """LMNN energies of test points (rows of ``D``) for every class.

    ``D`` (m, n): squared learned distances of test points to the training points;
    ``y`` (n,) training labels in ``[0, C)``; ``class_start`` (C + 1,) offsets of the
    classes in a class-sorted order; ``dt`` (n, k) squared learned distances of every
    training point to its target neighbours ``targets`` (−1 = none). For the rows
    ``r0 ≤ t < r1`` writes ``out[t, c]`` =

        (1 − μ) Σ_{j ∈ kNN_c(t)} D_tj
        + μ Σ_{j ∈ kNN_c(t)} Σ_{l: y_l ≠ c} [1 + D_tj − D_tl]_+
        + μ Σ_{i: y_i ≠ c} Σ_{j(i)} [1 + dt_ij − D_ti]_+

    where ``kNN_c(t)`` are the (at most k) nearest training points of class c. Each
    row is sorted once; per-class sorted distances with prefix sums turn the hinge
    sums into binary searches: ``O(n log n + C k log n)`` per test point.
    """
    n = D.shape[1]
    C = class_start.shape[0] - 1
    kk = targets.shape[1]
    sorted_all = np.empty(n)
    cum_all = np.empty(n + 1)
    sorted_cls = np.empty(n)
    cum_cls = np.empty(n + C)  # per class: a leading 0 then the running sums
    fill = np.empty(C, dtype=np.int64)
    third = np.zeros(C)
    for t in range(r0, r1):
        row = D[t]
        order = np.argsort(row)
        cum_all[0] = 0.0
        for c in range(C):
            fill[c] = class_start[c]
            cum_cls[class_start[c] + c] = 0.0
        for p in range(n):
            i = order[p]
            v = row[i]
            sorted_all[p] = v
            cum_all[p + 1] = cum_all[p] + v
            c = y[i]
            q = fill[c]
            sorted_cls[q] = v
            cum_cls[q + c + 1] = cum_cls[q + c] + v
            fill[c] = q + 1
        # third term: the test point as an impostor of training points
        third[:] = 0.0
        total = 0.0
        for i in range(n):
            s = 0.0
            dti = row[i]
            for jj in range(kk):
                if targets[i, jj] < 0:
                    continue
                h = 1.0 + dt[i, jj] - dti
                if h > 0.0:
                    s += h
            third[y[i]] += s
            total += s
        for c in range(C):
            a0 = class_start[c]
            nc = class_start[c + 1] - a0
            kc = min(k, nc)
            pull = 0.0
            push = 0.0
            for j in range(kc):
                dj = sorted_cls[a0 + j]
                pull += dj
                a = 1.0 + dj
                cnt_all = np.searchsorted(sorted_all, a)
                s_all = cum_all[cnt_all]
                cnt_c = np.searchsorted(sorted_cls[a0:a0 + nc], a)
                s_c = cum_cls[a0 + c + cnt_c]
                push += (cnt_all - cnt_c) * a - (s_all - s_c)
            out[t, c] = (1.0 - mu) * pull + mu * push + mu * (total - third[c])
