"""Numba kernels of LMNN: impostor search, loss, and gradient weights.

All kernels are pure functions of float64 / int64 arrays, except some float32 inputs
(a search block's products, the screening copy ``Z32``, the solver's float32
``X Pᵀ``); each has one signature per input dtype it is called with, compiled once
and cached on disk. Notation:

- ``Z`` (n, r): the points in the current transformed space, ``Z = X Lᵀ``;
- ``targets`` (n, k): target neighbours (indices, −1 where a point of a small class has
  fewer than k);
- the impostor *candidates* are stored as a directed CSR graph ``(indptr, indices)``:
  row ``i`` lists the points ``l`` of other classes that may be impostors of ``i``
  (a superset of the true impostors; the loss kernel filters them exactly).
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


@njit(cache=True, nogil=True, fastmath=True)
def row_inner(U, V, r0, r1):
    """``Σ_{r0 ≤ i < r1} ⟨U_i, V_i⟩`` for float64 ``U`` and a float64 or float32
    ``V`` (for float32, numpy would first make a float64 copy of ``V``: 8.3 ms
    against 3.2 ms per digits fit)."""
    s = 0.0
    for i in range(r0, r1):
        for t in range(U.shape[1]):
            s += U[i, t] * V[i, t]
    return s


@njit(cache=True, nogil=True, fastmath=True)
def target_distances(Z, targets, r0, r1, radius):
    """Margin radii: squared distance to the farthest target neighbour + 1.

    Writes ``radius[i] = 1 + max_j d_ij`` for ``r0 ≤ i < r1`` (0 for a point
    without target neighbours: it has no triplets).
    """
    k = targets.shape[1]
    for i in range(r0, r1):
        rmax = -1.0
        for jj in range(k):
            j = targets[i, jj]
            if j < 0:
                continue
            d = _sqdist(Z, i, j)
            if d > rmax:
                rmax = d
        radius[i] = rmax + 1.0 if rmax >= 0.0 else 0.0


# Relative difference of two exact squared distances below which target neighbour
# selection treats them as tied (and takes the lower index): a sum of d rounded
# terms is exact to ~d·2⁻⁵³ relative, so without it a tie of the data (letter's
# lattice of standardised integers has many) would be broken by the summation order.
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
    per row for small ``kk``; ``np.argpartition`` was 5× slower on balance, whose
    lattice distances have many ties). They are ranked by exact squared distance
    (ties, to within ``_TIE``: lower index first) and the first ``kc`` written to
    ``out[a, :kc]``, as indices into ``Xc``. One compiled pass per block (numpy's
    distance block, argsort and re-rank took wine 0.32 ms against 0.21, digits 3.3
    against 2.3, letter 106 against 45, mnist 60000 3.4 s against 2.4 s)."""
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
    set-up costs more than the search (wine: 80 µs against 20 µs). Returns
    ``(src, dst)`` int64 arrays."""
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
    pairs (2% of the entries on digits). (Counting per chunk of 64 columns and
    scanning again the chunks that hold pairs took 10.4 ms per digits fit against
    7.0 ms: at that density most chunks hold one.) Returns ``(src, dst)`` int64
    arrays.
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


@njit(cache=True)
def group_by(keys, n):
    """Counting sort: ``ptr`` (n + 1) and a stable permutation grouping ``keys``."""
    m = keys.shape[0]
    ptr = np.zeros(n + 1, dtype=np.int64)
    for p in range(m):
        ptr[keys[p] + 1] += 1
    for i in range(n):
        ptr[i + 1] += ptr[i]
    fill = ptr[:-1].copy()
    perm = np.empty(m, dtype=np.int64)
    for p in range(m):
        q = keys[p]
        perm[fill[q]] = p
        fill[q] += 1
    return ptr, perm


@njit(cache=True, inline="always", fastmath=True)
def _dot32(Z32, a, b):
    s = np.float32(0.0)
    for t in range(Z32.shape[1]):
        s += Z32[a, t] * Z32[b, t]
    return s


@njit(cache=True, inline="always", fastmath=True)
def _dot32x4(Z32, a, idx, p, out):
    """``out[q] = z_a · z_idx[p+q]`` for q < 4, in one pass over ``z_a`` with four
    independent sums."""
    b0, b1, b2, b3 = idx[p], idx[p + 1], idx[p + 2], idx[p + 3]
    s0 = s1 = s2 = s3 = np.float32(0.0)
    for t in range(Z32.shape[1]):
        za = Z32[a, t]
        s0 += za * Z32[b0, t]
        s1 += za * Z32[b1, t]
        s2 += za * Z32[b2, t]
        s3 += za * Z32[b3, t]
    out[0], out[1], out[2], out[3] = s0, s1, s2, s3


@njit(cache=True, inline="always")
def _pair_triplets(targets, i, dti, d, mu, smooth, wrow):
    """The triplets ``(i, j, l)`` of one impostor pair with ``d = d_il``
    (``dti[jj] = d_ij``): returns the summed (smoothed) hinge, the number of active
    triplets and ``Σ_j g_ijl``, and adds ``μ g_ijl`` to ``wrow[jj]``."""
    push = 0.0
    act = 0
    w = 0.0
    for jj in range(targets.shape[1]):
        if targets[i, jj] < 0:
            continue
        t = 1.0 + dti[jj] - d
        if t > 0.0:
            act += 1
            if t >= smooth:
                push += t - 0.5 * smooth
                g = 1.0
            else:
                push += 0.5 * t * t / smooth
                g = t / smooth
            wrow[jj] += mu * g
            w += g
    return push, act, w


@njit(cache=True, nogil=True, fastmath=True)
def loss_weights(Z, Z32, norms, screen, targets, indptr, indices, mu, smooth, r0, r1,
                 row_loss, wt, row_active, active_count):
    """LMNN loss and the pair weights of its gradient.

    Loss ``Σ_i [(1 − μ) Σ_j d_ij + μ Σ_{j, l ∈ cand(i)} h(1 + d_ij − d_il)]`` with
    ``h`` the hinge (``smooth = 0``) or the Huber-smoothed hinge of width ``smooth``
    (``t²/(2s)`` on ``[0, s]``, ``t − s/2`` above). The gradient w.r.t. ``M`` is
    ``Σ_i Σ_j wt[i, j] x_ij x_ijᵀ + Σ_p active_weight[p] x_il x_ilᵀ`` over the active
    impostor pairs ``p``.

    Most candidates lie outside the current radius. If ``screen``, they are ruled
    out with a float32 copy ``Z32`` of ``Z`` and the float64 squared norms ``norms``
    (``d = ‖z_i‖² + ‖z_l‖² − 2 z_i·z_l``) and a rigorous bound on the float32
    rounding, ``(r + 2) 2⁻²³ (‖z_i‖² + ‖z_l‖²)``, valid in any summation order; the
    rest are computed exactly in float64. (Measured: 27% faster at r = 64 on digits,
    48% slower at r = 16 on letter, where the exact distance is as cheap.) The
    screen's dot products are made four candidates at a time (:func:`_dot32x4`):
    this kernel 10–13% faster on digits and isolet (their fits' evaluations
    replayed), fits 4% faster, bit-identical (the screen only rules out what the
    exact distance would).

    Works on the rows ``r0 ≤ i < r1`` (so that threads can share the work) and
    writes ``row_loss`` (n,), ``wt`` (n, k), ``row_active`` (n,) (number of
    triplets with positive hinge argument) and ``active_count`` (n,) (number of active
    impostor pairs) for those rows. Returns the active pairs themselves, in row
    order: ``active_dst`` (their second point) and ``active_weight`` (their weight).
    (Listing them as they are found, rather than weighting every candidate and
    compacting afterwards, and the Laplacian form of :func:`laplacian_dot`:
    a digits fit's evaluations replayed in 1.45 ms each instead of 1.70 ms.)
    """
    k = targets.shape[1]
    dti = np.zeros(k)
    dots = np.empty(4, dtype=np.float32)
    err = (Z.shape[1] + 2) * 2.0 ** -23
    size = indptr[r1] - indptr[r0]  # (room for every candidate of the rows)
    active_dst = np.empty(size, dtype=np.int64)
    active_weight = np.empty(size)
    m = 0
    for i in range(r0, r1):
        m0 = m
        pull = 0.0
        rmax = -1.0
        for jj in range(k):
            j = targets[i, jj]
            if j < 0:
                wt[i, jj] = 0.0
                continue
            d = _sqdist(Z, i, j)
            dti[jj] = d
            pull += d
            if d > rmax:
                rmax = d
            wt[i, jj] = 1.0 - mu
        push = 0.0
        act = 0
        if rmax >= 0.0:
            rad = rmax + 1.0
            ni = norms[i]
            p0 = indptr[i]
            end = indptr[i + 1]
            end4 = end - (end - p0) % 4
            for p in range(p0, end):
                other = indices[p]
                if screen:
                    if p < end4:
                        q = (p - p0) % 4
                        if q == 0:
                            _dot32x4(Z32, i, indices, p, dots)
                        s = dots[q]
                    else:
                        s = _dot32(Z32, i, other)
                    nn = ni + norms[other]
                    if nn - 2.0 * s - err * nn >= rad:
                        continue
                d = _sqdist(Z, i, other)
                if d >= rad:
                    continue
                h, a, w = _pair_triplets(targets, i, dti, d, mu, smooth, wt[i])
                push += h
                act += a
                if w > 0.0:
                    active_dst[m] = other
                    active_weight[m] = -mu * w
                    m += 1
        active_count[i] = m - m0
        row_loss[i] = (1.0 - mu) * pull + mu * push
        row_active[i] = act
    return active_dst[:m], active_weight[:m]


@njit(cache=True, nogil=True, fastmath=True)
def laplacian_dot(Z, targets, wt, targeted_by_ptr, targeted_by, active_ptr, active_dst,
                  active_weight, active_ptr_by_dst, active_perm_by_dst,
                  active_src, r0, r1, U):
    """``U = Lap(W) Z`` for the weighted pair graph, so that the gradient w.r.t. ``L``
    is ``2 Uᵀ X``.

    The graph has the target pairs ``(i, targets[i, j])`` with weights ``wt`` and the
    active impostor pairs ``(active_src[p], active_dst[p])`` with weights
    ``active_weight`` (grouped by source with ``active_ptr``). ``U_a = Σ_b w_ab (z_a −
    z_b)`` over the pairs (a, b) and (b, a), formed as ``(Σ_b w_ab) z_a − Σ_b w_ab z_b``
    (one multiply-add per entry); the transposed structures (``targeted_by*``,
    ``active_*_by_dst``: pairs grouped by their second point) make each row
    independent, so no atomics are needed.
    Writes the rows ``r0 ≤ i < r1`` of ``U``.
    """
    k = targets.shape[1]
    r = Z.shape[1]
    acc = np.zeros(r)
    for i in range(r0, r1):
        acc[:] = 0.0
        deg = 0.0
        for jj in range(k):
            j = targets[i, jj]
            if j < 0:
                continue
            w = wt[i, jj]
            deg += w
            for t in range(r):
                acc[t] += w * Z[j, t]
        for p in range(active_ptr[i], active_ptr[i + 1]):
            w = active_weight[p]
            other = active_dst[p]
            deg += w
            for t in range(r):
                acc[t] += w * Z[other, t]
        for q in range(targeted_by_ptr[i], targeted_by_ptr[i + 1]):
            f = targeted_by[q]
            s = f // k
            w = wt[s, f - s * k]
            deg += w
            for t in range(r):
                acc[t] += w * Z[s, t]
        for q in range(active_ptr_by_dst[i], active_ptr_by_dst[i + 1]):
            p = active_perm_by_dst[q]
            w = active_weight[p]
            s = active_src[p]
            deg += w
            for t in range(r):
                acc[t] += w * Z[s, t]
        for t in range(r):
            U[i, t] = deg * Z[i, t] - acc[t]


@njit(cache=True, inline="always")
def _row_aux(Z, i, Z32, norms, screen):
    s = 0.0
    for t in range(Z.shape[1]):
        s += Z[i, t] * Z[i, t]
    norms[i] = s
    if screen:
        for t in range(Z.shape[1]):
            Z32[i, t] = np.float32(Z[i, t])


@njit(cache=True, nogil=True, fastmath=True)
def point_aux(Z, Z32, norms, screen, r0, r1):
    """The squared norms of the rows ``r0 ≤ i < r1`` of ``Z`` into ``norms`` and,
    if ``screen``, their float32 copy into ``Z32`` (the screening inputs of
    :func:`loss_weights`)."""
    for i in range(r0, r1):
        _row_aux(Z, i, Z32, norms, screen)


@njit(cache=True, nogil=True, fastmath=True)
def step(Z, ZP, alpha, out, out32, norms, screen, r0, r1):
    """A line-search trial point ``out = Z + alpha ZP`` (rows ``r0 ≤ i < r1``) with
    its :func:`point_aux` in the same pass (numpy's axpy, then the norms and the
    float32 copy, took 113 µs against 32 µs at 1257 × 64)."""
    for i in range(r0, r1):
        for t in range(Z.shape[1]):
            out[i, t] = Z[i, t] + alpha * ZP[i, t]
        _row_aux(out, i, out32, norms, screen)


@njit(cache=True)
def loss_buffers(n, k):
    """Outputs of :func:`loss_weights` for ``n`` rows: ``row_loss`` (n,), ``wt``
    (n, k), ``row_active`` (n,), ``active_count`` (n,)."""
    return (np.zeros(n), np.zeros((n, k)), np.zeros(n, dtype=np.int64),
            np.zeros(n, dtype=np.int64))


@njit(cache=True, nogil=True)
def loss_grad_serial(Z, Z32, norms, screen, targets, targeted_by_ptr, targeted_by, indptr, indices,
                     mu, smooth):
    """Loss, ``U`` (the gradient w.r.t. ``L`` is ``2 Uᵀ Xc``), active triplets and
    active impostor pairs in one call: :func:`loss_weights`, :func:`index_active`
    and :func:`laplacian_dot` over all rows, for problems too small for threads (it
    saves the Python-level calls and allocations between the kernels). ``Z32`` and
    ``norms`` are ``Z``'s screening inputs (:func:`point_aux`, :func:`step`). The
    product ``Uᵀ Xc`` is left to numpy: numba's ``np.dot`` (scipy's BLAS) took 409 µs
    against numpy's 266 µs at 1257 × 64 (digits)."""
    n, k = targets.shape
    row_loss, wt, act, active_count = loss_buffers(n, k)
    active_dst, active_weight = loss_weights(Z, Z32, norms, screen, targets, indptr,
                                             indices, mu, smooth, 0, n, row_loss, wt,
                                             act, active_count)
    (active_ptr, active_src, active_ptr_by_dst,
     active_perm_by_dst) = index_active(active_count, active_dst)
    U = np.empty_like(Z)
    laplacian_dot(Z, targets, wt, targeted_by_ptr, targeted_by, active_ptr, active_dst,
                  active_weight, active_ptr_by_dst, active_perm_by_dst,
                  active_src, 0, n, U)
    return row_loss.sum(), U, act.sum(), active_dst.shape[0]


@njit(cache=True, nogil=True)
def trial_serial(Z, ZP, alpha, out, out32, norms, screen, targets, targeted_by_ptr, targeted_by,
                 indptr, indices, mu, smooth):
    """A line-search trial of a problem too small for threads in one call:
    :func:`step` to ``out = Z + alpha ZP`` (with its screening inputs ``out32``,
    ``norms``), :func:`loss_grad_serial` there, and the directional derivative
    ``2 ⟨U, ZP⟩``. Returns ``(f, U, active triplets, active pairs, slope)``.
    (The three calls from Python cost ~25 µs of bookkeeping per trial: 8% of a
    wine or iris fit.)"""
    n = Z.shape[0]
    step(Z, ZP, alpha, out, out32, norms, screen, 0, n)
    f, U, act, n_pairs = loss_grad_serial(out, out32, norms, screen, targets, targeted_by_ptr,
                                          targeted_by, indptr, indices, mu, smooth)
    return f, U, act, n_pairs, 2.0 * row_inner(U, ZP, 0, n)


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


@njit(cache=True, fastmath=True)
def add_missed(old_ptr, old_idx, new_ptr, new_idx, Z, radius, targets, mu, smooth, U,
               patch):
    """Impostor pairs ``(i, l)`` of the new candidate graph that the old one did
    not hold and that lie inside ``i``'s margin radius (``d_il < radius[i]``, the
    test of :func:`loss_weights`: exactly the pairs with an active triplet).

    With ``patch``, adds their terms to an evaluation made on the old graph at
    ``Z`` (its ``U = Lap(W) Z``, updated in place), which makes it the evaluation
    on the new graph. Returns ``(n_missed, loss increment, active increment)``."""
    n, k = targets.shape
    r = Z.shape[1]
    mark = np.full(n, -1, dtype=np.int64)
    dti = np.zeros(k)
    dw = np.zeros(k)
    missed = 0
    loss = 0.0
    act = 0
    for i in range(n):
        for p in range(old_ptr[i], old_ptr[i + 1]):
            mark[old_idx[p]] = i
        have_dti = False
        for p in range(new_ptr[i], new_ptr[i + 1]):
            other = new_idx[p]
            if mark[other] == i:
                continue
            d = _sqdist(Z, i, other)
            if d >= radius[i]:
                continue
            missed += 1
            if not patch:
                continue
            if not have_dti:  # (i's target distances, once per row)
                for jj in range(k):
                    if targets[i, jj] >= 0:
                        dti[jj] = _sqdist(Z, i, targets[i, jj])
                have_dti = True
            dw[:] = 0.0
            h, a, w = _pair_triplets(targets, i, dti, d, mu, smooth, dw)
            loss += mu * h
            act += a
            # the pair weights: −μ Σ_j g on (i, l), μ g on each (i, j)
            for t in range(r):
                u = -mu * w * (Z[i, t] - Z[other, t])
                U[i, t] += u
                U[other, t] -= u
            for jj in range(k):
                if dw[jj] != 0.0:
                    j = targets[i, jj]
                    for t in range(r):
                        u = dw[jj] * (Z[i, t] - Z[j, t])
                        U[i, t] += u
                        U[j, t] -= u
    return missed, loss, act


@njit(cache=True)
def index_active(active_count, active_dst):
    """Index structures of the active impostor pairs listed by source (``active_count[i]``
    pairs of row ``i``, destinations ``active_dst``): ``active_ptr`` (n + 1), ``active_src``, and
    grouped by destination ``active_ptr_by_dst`` (n + 1), ``active_perm_by_dst`` (as
    :func:`group_by`)."""
    n = active_count.shape[0]
    active_ptr = np.zeros(n + 1, dtype=np.int64)
    active_src = np.empty(active_dst.shape[0], dtype=np.int64)
    for i in range(n):
        active_ptr[i + 1] = active_ptr[i] + active_count[i]
        for q in range(active_ptr[i], active_ptr[i + 1]):
            active_src[q] = i
    active_ptr_by_dst, active_perm_by_dst = group_by(active_dst, n)
    return active_ptr, active_src, active_ptr_by_dst, active_perm_by_dst


# ---------------------------------------------------------------------------
# Streaming evaluation: the impostor terms straight from distance blocks, for
# when the candidate graph would exceed the solver's memory budget.


@njit(cache=True, nogil=True, fastmath=True)
def stream_block(G, norm_rows, norm_cols, a0, c0, rad, rho2, dt, targets, mu, smooth,
                 row_loss, wt, row_active, row_pairs, row_near, deg):
    """Impostor terms of the pairs of rows ``a0 … a0 + len(G) − 1`` and columns
    ``c0 … c0 + G.shape[1] − 1`` (points of other classes), from their dot
    products, in both directions.

    All indices are in one (class-sorted) order. ``G[a, b] = z_{a0+a} · z_{c0+b}``
    (a BLAS product) and the squared norms give the squared distances ``d``;
    ``rad`` (n,) are the exact margin radii ``1 + max_j d_ij``, ``rho2`` (n,) the
    enlarged ones of the candidate graph, ``dt`` (n, k) the squared target
    distances and ``targets`` (n, k) the target neighbours (only their sign is read:
    −1 = none). For each pair ``(i, l)`` and each direction (``i → l`` when ``d <
    rad[i]``, ``l → i`` when ``d < rad[l]``) the triplets ``(i, j, l)`` are added
    to ``i``'s loss ``row_loss``, active triplets, target weights ``wt[i]`` and
    active pairs ``row_pairs``; ``row_near`` counts the pairs within ``rho2`` (the
    size the candidate graph would have). ``G`` is overwritten with the pair
    weights ``W_il = −μ (Σ_j g_ijl + Σ_j g_lji)``, and their sums added to
    ``deg`` of both points: the impostor part of ``U = Lap(W) Z`` is ``deg z −
    W Z_cols`` on the rows and ``− Wᵀ Z_rows`` on the columns. Returns the number
    of nonzero entries of ``W``.
    """
    m, nb = G.shape
    code = np.empty(nb, dtype=np.uint8)
    nnz = 0
    for a in range(m):
        i = a0 + a
        ni = norm_rows[a]
        ri = rad[i]
        rhoi = rho2[i]
        # a vectorised pass: distances into G, and a code per column (bit 0:
        # within i's enlarged radius, bit 1: within l's); the exact radii are
        # inside the enlarged ones, so only coded columns can hold triplets
        near = 0
        c = 0
        for b in range(nb):
            d = ni + norm_cols[b] - 2.0 * G[a, b]
            G[a, b] = d
            v1 = np.uint8(d < rhoi)
            v2 = np.uint8(d < rho2[c0 + b])
            row_near[c0 + b] += v2
            near += v1
            v = v1 + np.uint8(2) * v2
            code[b] = v
            c += v
        row_near[i] += near
        if c == 0:
            G[a, :] = 0.0
            continue
        push = 0.0
        act = 0
        pairs = 0
        dsum = 0.0
        for b in range(nb):
            d = G[a, b]
            G[a, b] = 0.0
            if code[b] == 0:
                continue
            other = c0 + b
            w = 0.0
            if d < ri:
                h, ac, g = _pair_triplets(targets, i, dt[i], d, mu, smooth, wt[i])
                push += h
                act += ac
                pairs += g > 0.0
                w += g
            if d < rad[other]:
                h, ac, g = _pair_triplets(targets, other, dt[other], d, mu, smooth, wt[other])
                row_loss[other] += mu * h
                row_active[other] += ac
                row_pairs[other] += g > 0.0
                w += g
            if w != 0.0:
                w *= -mu
                G[a, b] = w
                nnz += 1
                dsum += w
                deg[other] += w
        row_loss[i] += mu * push
        row_active[i] += act
        row_pairs[i] += pairs
        deg[i] += dsum
    return nnz


@njit(cache=True, nogil=True, fastmath=True)
def sparse_wdot(W, Za, Zb, U, a0, c0):
    """``U[a0 + a] −= Σ_b W[a, b] Zb[b]`` and ``U[c0 + b] −= Σ_a W[a, b] Za[a]``
    over the nonzero entries of ``W`` (the products of :func:`stream_block`'s
    weights with the points, for a block with few active pairs)."""
    m, nb = W.shape
    r = Za.shape[1]
    for a in range(m):
        for b in range(nb):
            w = W[a, b]
            if w != 0.0:
                for t in range(r):
                    U[a0 + a, t] -= w * Zb[b, t]
                    U[c0 + b, t] -= w * Za[a, t]


@njit(cache=True, nogil=True, fastmath=True)
def target_table(Z, targets, r0, r1, dt, rad):
    """Squared target distances ``dt[i, j] = d_{i, targets[i, j]}`` (0 where none) and
    the margin radii ``rad[i]`` as :func:`target_distances`, rows ``r0 ≤ i < r1``."""
    k = targets.shape[1]
    for i in range(r0, r1):
        rmax = -1.0
        for jj in range(k):
            j = targets[i, jj]
            d = _sqdist(Z, i, j) if j >= 0 else 0.0
            dt[i, jj] = d
            if j >= 0 and d > rmax:
                rmax = d
        rad[i] = rmax + 1.0 if rmax >= 0.0 else 0.0
