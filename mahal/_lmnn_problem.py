"""One LMNN problem: its data, its exact loss and gradient, and how they are
evaluated (candidate graph or streamed blocks of distances, threads, float32).

:func:`lmnn_loss_grad` is the plain function of the objective; the solver
(:mod:`mahal._lmnn_solver`, whose docstring explains the design) minimises it
through :class:`_Problem`.
"""

import numpy as np
from sklearn.preprocessing import LabelEncoder

from ._lazy import lazy_module
from ._lmnn_neighbors import _SEARCH_BLOCK, find_impostors
from ._nearest import squared_norms
from ._parallel import SERIAL

kernels = lazy_module("mahal._lmnn_kernels")  # (numba: imported on first use)

# Rule out impostor candidates in float32 first from this many components on
# (see kernels.loss_weights).
_SCREEN_DIM = 32
_ROWS_PER_THREAD = 4096  # fewer rows per thread: serial
# Lanes of the streamed evaluation (_Problem.stream): each has its own n × (r + k
# + 5) outputs, and at most this many threads work on one evaluation.
_STREAM_LANES = 4
# Below these sizes the matrix products (multiply-adds) and the axpy / inner
# products (elements) run in one piece (see _Problem.transform).
_THREADED_FLOPS = 1 << 24
_THREADED_ELEMS = 1 << 21
# The solver forms X Pᵀ (search direction) and Uᵀ X (gradient) in float32 from
# this many multiply-adds on. Both are exact where it matters: a trial point is
# Z + α (X Pᵀ) with the float32 product as the direction actually followed, and
# its slope 2 ⟨U, X Pᵀ⟩ is taken along that same array, so values and slopes
# along a line stay consistent; only the direction's L-space copy and the
# gradient that builds the next direction carry float32 rounding. Below this size
# the casts cost about what they save.
_F32_FLOPS = 1 << 20


def _screens(r):
    """Whether the loss kernel screens candidates in float32 at ``r`` components."""
    return r >= _SCREEN_DIM


def _to_csr(src, dst, n):
    ptr, perm = kernels.group_by(src, n)
    return ptr, dst[perm]


def _transpose_targets(targets):
    n, k = targets.shape
    flat = targets.ravel()
    keep = np.flatnonzero(flat >= 0)
    ptr, perm = kernels.group_by(flat[keep], n)
    return ptr, keep[perm].astype(np.int64)


class _Problem:
    """Data of one LMNN problem and the exact loss/gradient for a candidate graph."""

    def __init__(self, X, y, targets, mu, pool=SERIAL):
        self.Xc = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float64)
        self.y = np.asarray(y, dtype=np.int64)
        self.target_neighbors = np.ascontiguousarray(targets, dtype=np.int64)
        # (CSR of the points that have each point as a target neighbour)
        self.targeted_by_ptr, self.targeted_by = _transpose_targets(
            self.target_neighbors)
        self.mu = float(mu)
        self.pool = pool
        self.n = self.Xc.shape[0]
        self.ranges = pool.ranges(self.n)
        # never threaded at this size, whatever n_jobs: the loss kernels run in
        # one compiled call each
        self.serial = pool.n_threads == 1 and self.n < 2 * _ROWS_PER_THREAD
        self._Xc32 = None
        self._sorted = None  # class order and row tasks of :meth:`stream`
        self.stream_rho = 1.0
        self.stream_near = 0

    # Matrix products of fewer than _THREADED_FLOPS multiply-adds, and axpys and
    # inner products of fewer than _THREADED_ELEMS elements, run in one piece in
    # the calling thread: the pool's hand-offs cost more than they save there. The
    # choice depends on sizes only, never on ``n_jobs``.

    def _data(self, low_precision):
        """``Xc`` and its dtype: float64, or a float32 copy (made once)."""
        if not low_precision:
            return self.Xc, np.float64
        if self._Xc32 is None:
            self._Xc32 = self.Xc.astype(np.float32)
        return self._Xc32, np.float32

    def transform(self, L, low_precision=False):
        """``Xc Lᵀ``; in float32 (a float32 array) if ``low_precision``."""
        X, dtype = self._data(low_precision)
        Z = np.empty((self.n, L.shape[0]), dtype=dtype)
        LT = np.ascontiguousarray(L.T, dtype=dtype)
        # (out=: a temporary of this size would cost page faults at every call)
        if Z.size * LT.shape[0] < _THREADED_FLOPS:
            return np.matmul(X, LT, out=Z)
        self.pool.map(lambda chunk: np.matmul(X[chunk[0]:chunk[1]], LT,
                                           out=Z[chunk[0]:chunk[1]]), self.ranges)
        return Z

    def radius(self, Z):
        radius = np.zeros(self.n)
        self.pool.map(lambda chunk: kernels.target_distances(
            Z, self.target_neighbors, chunk[0], chunk[1], radius), self.ranges)
        return radius

    def search(self, Z, rho2, low_precision=False, max_pairs=None):
        res = find_impostors(Z, self.y, rho2, pool=self.pool,
                             low_precision=low_precision, max_pairs=max_pairs)
        if res is None:
            return None
        return _to_csr(res[0], res[1], self.n)

    @staticmethod
    def empty_like(Z):
        """Room for a point of the line search (a trial point)."""
        return np.empty_like(Z)

    def add_missed(self, old_ptr, old_idx, new_ptr, new_idx, Z, radius, smooth, U,
                   patch):
        """:func:`kernels.add_missed` for this problem's target neighbours."""
        return kernels.add_missed(old_ptr, old_idx, new_ptr, new_idx, Z, radius,
                                  self.target_neighbors, self.mu, smooth, U, patch)

    def _rows(self, fn, size):
        """``[fn(r0, r1), ...]`` over all rows: one piece for fewer than
        ``_THREADED_ELEMS`` elements (``size``), else one call per row chunk."""
        if size < _THREADED_ELEMS:
            return [fn(0, self.n)]
        return self.pool.map(lambda chunk: fn(chunk[0], chunk[1]), self.ranges)

    def aux_buffers(self, r):
        """Room for the screening inputs of the loss kernel at a point of ``r``
        components: its float32 copy (a 1 × 1 dummy below _SCREEN_DIM components)
        and its squared row norms."""
        return (np.empty((self.n, r) if _screens(r) else (1, 1), dtype=np.float32),
                np.empty(self.n))

    def aux(self, Z):
        """``(Z32, norms)``: the screening inputs of the loss kernel at ``Z``."""
        out = self.aux_buffers(Z.shape[1])
        screen = _screens(Z.shape[1])
        self._rows(lambda a, b: kernels.point_aux(Z, out[0], out[1], screen, a, b), Z.size)
        return out

    def weights(self, Z, indptr, indices, smooth, aux=None):
        """Loss at ``Z``, ``U`` (the gradient w.r.t. ``L`` is ``2 Uᵀ Xc``), the
        number of active triplets and the number of active impostor pairs. ``aux``:
        ``Z``'s :meth:`aux`, if already made. No graph (``indptr`` None): the
        impostor terms come from blocks of distances (:meth:`stream`)."""
        if indptr is None:
            return self.stream(Z, smooth)
        n, k = self.target_neighbors.shape
        screen = _screens(Z.shape[1])
        Z32, norms = self.aux(Z) if aux is None else aux
        if self.serial:
            f, U, act, n_pairs = kernels.loss_grad_serial(
                Z, Z32, norms, screen, self.target_neighbors, self.targeted_by_ptr,
                self.targeted_by, indptr, indices, self.mu, smooth)
            return f, U, int(act), int(n_pairs)
        row_loss, wt, act, active_count = kernels.loss_buffers(n, k)
        # (each chunk lists its rows' active pairs in row order)
        parts = self.pool.map(lambda chunk: kernels.loss_weights(
            Z, Z32, norms, screen, self.target_neighbors, indptr, indices, self.mu,
            smooth, chunk[0], chunk[1], row_loss, wt, act, active_count), self.ranges)
        active_dst = np.concatenate([p[0] for p in parts])
        active_weight = np.concatenate([p[1] for p in parts])
        (active_ptr, active_src, active_ptr_by_dst,
         active_perm_by_dst) = kernels.index_active(active_count, active_dst)
        U = np.empty_like(Z)
        self.pool.map(lambda chunk: kernels.laplacian_dot(
            Z, self.target_neighbors, wt, self.targeted_by_ptr, self.targeted_by,
            active_ptr, active_dst, active_weight, active_ptr_by_dst,
            active_perm_by_dst, active_src, chunk[0], chunk[1], U), self.ranges)
        return float(row_loss.sum()), U, int(act.sum()), int(active_dst.shape[0])

    def grad(self, U, low_precision=False):
        """``2 Uᵀ Xc``, the gradient w.r.t. ``L`` (the product in float32 if
        ``low_precision``)."""
        X, dtype = self._data(low_precision)
        if U.size * X.shape[1] < _THREADED_FLOPS:
            G = (U.astype(dtype, copy=False).T @ X).astype(np.float64, copy=False)
            G *= 2.0
            return G
        parts = self.pool.map(
            lambda chunk: U[chunk[0]:chunk[1]].astype(dtype, copy=False).T
            @ X[chunk[0]:chunk[1]], self.ranges)
        return 2.0 * np.sum(parts, axis=0, dtype=np.float64)

    def trial(self, Z, ZP, alpha, out, aux, indptr, indices, smooth):
        """Evaluation at ``out = Z + alpha ZP`` (with its :meth:`aux` written into
        ``aux``): ``(f, U, act, n_pairs)`` as :meth:`weights`, and the slope ``2 ⟨U,
        ZP⟩`` along ``ZP``."""
        screen = _screens(Z.shape[1])
        if self.serial and indptr is not None:
            f, U, act, n_pairs, slope = kernels.trial_serial(
                Z, ZP, alpha, out, aux[0], aux[1], screen, self.target_neighbors,
                self.targeted_by_ptr, self.targeted_by, indptr, indices, self.mu,
                smooth)
            return (f, U, int(act), int(n_pairs)), slope
        self._rows(lambda a, b: kernels.step(Z, ZP, alpha, out, aux[0], aux[1],
                                             screen, a, b), Z.size)
        evaluation = self.weights(out, indptr, indices, smooth, aux)
        return evaluation, 2.0 * self.inner(evaluation[1], ZP)

    def inner(self, U, V):
        """``⟨U, V⟩`` (summed over row chunks that do not depend on ``n_jobs``)."""
        if V.dtype == np.float32:
            return float(sum(self._rows(lambda a, b: kernels.row_inner(U, V, a, b),
                                        U.size)))
        return float(sum(self._rows(lambda a, b: np.vdot(U[a:b], V[a:b]), U.size)))

    def loss_grad(self, Z, indptr, indices, smooth):
        f, U, act, _ = self.weights(Z, indptr, indices, smooth)
        return f, self.grad(U), act

    def stream(self, Z, smooth):
        """:meth:`weights` without a candidate graph: the impostor terms straight
        from blocks of distances (:func:`kernels.stream_block`), so that memory
        does not grow with the number of impostors: ``O(n (k + r))`` per lane and a
        block per thread. Sets ``self.stream_near``: the number of directed pairs
        within ``self.stream_rho`` times the squared margin radii (the size of the
        candidate graph that a search with that enlargement would store).

        In three steps, which :mod:`mahal._dask_lmnn` runs as tasks:
        :meth:`stream_prepare`, :meth:`stream_lane` for each of the
        ``_STREAM_LANES`` lanes, :meth:`stream_finish`."""
        prepared = self.stream_prepare(Z, self.stream_rho)
        lanes = self.pool.map(lambda q: self.stream_lane(prepared, smooth, q),
                              range(_STREAM_LANES))
        f, U, act, pairs, self.stream_near = self.stream_finish(Z, prepared, lanes)
        return f, U, act, pairs

    def _stream_tasks(self):
        """The class order and the row tasks of :meth:`stream` (made once)."""
        if self._sorted is None:
            n = self.n
            # points in class order; a task is a block of rows of class c against
            # the (contiguous) points of the classes after c, so each pair of
            # points of different classes is visited once
            order = np.argsort(self.y, kind="stable").astype(np.int64)
            ends = np.searchsorted(self.y[order], np.unique(self.y), side="right")
            tasks, start = [], 0
            for end in ends[:-1]:
                step = max(1, min(256, _SEARCH_BLOCK // (n - end)))
                tasks += [(int(s), int(min(s + step, end)), int(end))
                          for s in range(start, end, step)]
                start = end
            inverse = np.empty_like(order)
            inverse[order] = np.arange(n)
            targets_sorted = self.target_neighbors[order]
            targets_sorted = np.where(targets_sorted >= 0,
                                      inverse[np.maximum(targets_sorted, 0)], -1)
            self._sorted = (order, inverse, np.ascontiguousarray(targets_sorted),
                            tasks)
        return self._sorted

    def stream_prepare(self, Z, rho):
        """The points in class order, their squared norms, target distances and
        margin radii, and the radii enlarged by ``rho`` (the inputs of the lanes)."""
        n, k = self.target_neighbors.shape
        order, _, targets_sorted, _ = self._stream_tasks()
        Zs = np.ascontiguousarray(Z[order], dtype=np.float64)
        norms = squared_norms(Zs)
        target_dist, radius = np.empty((n, k)), np.empty(n)
        self._rows(lambda a, b: kernels.target_table(Zs, targets_sorted, a, b,
                                                     target_dist, radius), Zs.size)
        return Zs, norms, target_dist, radius, radius * rho

    def stream_lane(self, prepared, smooth, q):
        """Lane ``q``'s outputs (loss, wt, active triplets, pairs, near, deg, U):
        its tasks (every ``_STREAM_LANES``-th, in a fixed order), each with its own
        outputs, so that results do not depend on ``n_jobs``."""
        Zs, norms, target_dist, radius, rho2 = prepared
        n, k = self.target_neighbors.shape
        _, _, targets_sorted, tasks = self._stream_tasks()
        out = (np.zeros(n), np.zeros((n, k)), np.zeros(n, dtype=np.int64),
               np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64),
               np.zeros(n), np.zeros_like(Zs))
        U = out[6]
        for a0, a1, c_start in tasks[q::_STREAM_LANES]:
            width = max(1, _SEARCH_BLOCK // (a1 - a0))
            for b0 in range(c_start, n, width):
                b1 = min(b0 + width, n)
                G = Zs[a0:a1] @ Zs[b0:b1].T
                nnz = kernels.stream_block(
                    G, norms[a0:a1], norms[b0:b1], a0, b0, radius, rho2,
                    target_dist, targets_sorted, self.mu, smooth, *out[:6])
                if 8 * nnz < G.size:
                    kernels.sparse_wdot(G, Zs[a0:a1], Zs[b0:b1], U, a0, b0)
                elif nnz:
                    U[a0:a1] -= G @ Zs[b0:b1]
                    U[b0:b1] -= G.T @ Zs[a0:a1]
        return out

    def stream_finish(self, Z, prepared, lanes):
        """The outputs of the ``lanes`` (a list, emptied here to free them) summed
        in lane order and the target pairs' terms added: ``(f, U, active triplets,
        active pairs, near pairs)``."""
        Zs, _, target_dist, _, _ = prepared
        _, inverse, targets_sorted, _ = self._stream_tasks()
        row_loss, wt, act, pairs, near, deg, U_impostors = (
            sum(lane_out[q] for lane_out in lanes) for q in range(7))
        lanes.clear()
        row_loss += (1.0 - self.mu) * target_dist.sum(axis=1)
        wt += np.where(targets_sorted >= 0, 1.0 - self.mu, 0.0)
        U_impostors += deg[:, None] * Zs
        wt = wt[inverse]
        # the target pairs' part of Lap(W) Z (no impostor pairs in this graph)
        none = np.zeros(self.n + 1, dtype=np.int64)
        empty = np.zeros(0, dtype=np.int64)
        U = np.empty_like(Z)
        self._rows(lambda a, b: kernels.laplacian_dot(
            Z, self.target_neighbors, wt, self.targeted_by_ptr, self.targeted_by,
            none, empty, np.zeros(0), none, empty, empty, a, b, U), Z.size)
        U += U_impostors[inverse]
        return (float(row_loss.sum()), U, int(act.sum()), int(pairs.sum()),
                int(near.sum()))


def lmnn_loss_grad(L, X, y, target_neighbors, mu=0.5, smooth=0.0):
    """The LMNN objective and its gradient w.r.t. ``L`` (exact impostor search;
    memory independent of the number of impostors).

    Parameters
    ----------
    L : ndarray of shape (r, d)
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    target_neighbors : ndarray of shape (n, k), int (−1 = none)
    mu : float
        Weight of the push term.
    smooth : float, default=0
        Huber smoothing width of the hinge (0: the exact hinge).

    Returns
    -------
    loss : float
    grad : ndarray of shape (r, d)
    n_active : int
        Number of triplets with a positive hinge argument.
    """
    X = np.asarray(X, dtype=np.float64)
    L = np.asarray(L, dtype=np.float64)
    y = LabelEncoder().fit_transform(y).astype(np.int64)
    problem = _Problem(X, y, target_neighbors, mu)
    Z = problem.transform(L)
    # (past the solver's default budget of impostor pairs: streamed, as in a fit)
    res = problem.search(Z, problem.radius(Z), max_pairs=_default_budget(problem))
    indptr, indices = (None, None) if res is None else res
    return problem.loss_grad(Z, indptr, indices, float(smooth))


def _default_budget(problem):
    """The default ``max_candidates``: ~0.5 GB of candidate pairs, or 20 per
    target pair for data too large for that."""
    return max(10_000_000, 20 * problem.target_neighbors.size)
