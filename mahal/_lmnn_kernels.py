"""Numba kernels of LMNN's loss and gradient weights (its searches are in
:mod:`mahal._lmnn_search_kernels`).

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
from ._lmnn_search_kernels import _sqdist


@njit(cache=True, nogil=True, fastmath=True)
def row_inner(U, V, r0, r1):
    """``Σ_{r0 ≤ i < r1} ⟨U_i, V_i⟩`` for float64 ``U`` and a float64 or float32
    ``V`` (for float32, numpy would first make a float64 copy of ``V``; see
    docs/solver_notes.rst, "LMNN's kernels")."""
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
    rest are computed exactly in float64. (It pays where ``r`` is large, not where
    the exact distance is as cheap: docs/solver_notes.rst, "LMNN's kernels".) The
    screen's dot products are made four candidates at a time (:func:`_dot32x4`),
    bit-identical to one at a time (the screen only rules out what the exact
    distance would).

    Works on the rows ``r0 ≤ i < r1`` (so that threads can share the work) and
    writes ``row_loss`` (n,), ``wt`` (n, k), ``row_active`` (n,) (number of
    triplets with positive hinge argument) and ``active_count`` (n,) (number of active
    impostor pairs) for those rows. Returns the active pairs themselves, in row
    order: ``active_dst`` (their second point) and ``active_weight`` (their weight).
    (Listing them as they are found, rather than weighting every candidate and
    compacting afterwards, with the Laplacian form of :func:`laplacian_dot`, is the
    faster of the two; see docs/solver_notes.rst, "LMNN's kernels".)
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
    its :func:`point_aux` in the same pass (one pass over ``out`` rather than
    numpy's axpy, then the norms and the float32 copy)."""
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
    product ``Uᵀ Xc`` is left to numpy, whose BLAS call was faster than numba's
    ``np.dot`` (docs/solver_notes.rst, "LMNN's kernels")."""
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
    (Three calls from Python would each pay their bookkeeping, a visible share of
    a wine or iris fit.)"""
    n = Z.shape[0]
    step(Z, ZP, alpha, out, out32, norms, screen, 0, n)
    f, U, act, n_pairs = loss_grad_serial(out, out32, norms, screen, targets, targeted_by_ptr,
                                          targeted_by, indptr, indices, mu, smooth)
    return f, U, act, n_pairs, 2.0 * row_inner(U, ZP, 0, n)


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
