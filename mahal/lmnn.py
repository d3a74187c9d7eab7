"""Large Margin Nearest Neighbor (LMNN), Weinberger & Saul, JMLR 10 (2009).

For each point ``i`` its ``k`` target neighbours ``j(i)`` are its ``k`` nearest
same-class points in the input space, fixed before learning. With squared learned
distances ``d_ij = ‖L(x_i − x_j)‖²`` the objective is

    ε(L) = (1 − μ) Σ_{i, j(i)} d_ij + μ Σ_{i, j(i), l: y_l ≠ y_i} [1 + d_ij − d_il]_+

(``μ`` = ``regularization``). :func:`lmnn_loss_grad` is the plain function of that
objective; :class:`LMNN` minimises it over ``L`` with L-BFGS; ``mahal.reference.lmnn``
hands the same objective (in ``M = LᵀL``) to cvxpy. With ``n_passes > 1`` (the
paper's multi-pass LMNN) the target neighbours are then selected again in the
learned space and the minimisation continues from the learned ``L``.

Solver design (measured in ``benchmarks/lmnn_speed.py``):

- L-BFGS on the flattened ``L`` (:func:`mahal._optimize.lbfgs`), with its line
  search in the transformed space: along a direction ``P`` a trial point is
  ``Z + α X Pᵀ`` (an axpy) and the directional derivative ``2 ⟨U, X Pᵀ⟩``, so
  an iteration costs two products with ``X`` (``X Pᵀ``, and the gradient
  ``2 Uᵀ X`` at the accepted point) however many trials its line search makes.
  (Against scipy's ``L-BFGS-B``, which needs both products at every trial and
  ~0.1 ms of its own per evaluation: wine 13.2 → 10.2 ms, isolet 950 → 825 ms.)
  The hinge is Huber-smoothed with a width that shrinks over a few stages
  (default 1, 0.1, then 0 = the exact hinge), each an L-BFGS run warm-started
  from the previous one's point and correction pairs: the quasi-Newton model
  needs a smooth function (on the exact hinge alone L-BFGS stalls early, with a
  worse metric). The last stage starts from an exact value (a fresh search) and
  restarts L-BFGS with a fresh memory when it stops on a small relative decrease
  right after real progress (a line search caught on a kink), or goes back to the
  best point of the stage that a search verified (its start or later) and
  searches at every iteration if it ended above it (it followed values of a
  stale candidate graph).
- Impostor *candidates* are kept in a directed sparse graph: row ``i`` holds the
  differently-labelled ``l`` within ``(1 + slack)`` times ``i``'s margin radius
  ``√(1 + max_j d_ij)`` at the last search (``slack = 0.15``; against 0.25, fits
  take 0.5× the time on mnist 10000, 0.8× on digits, isolet and letter, at equal
  objective: digits +0.2%, isolet −0.4%). The loss kernel filters them with the
  exact current radius, so loss and gradient are exact unless an impostor came from
  beyond the enlarged radius. The graph is searched again every ``period``
  iterations, at an accepted point (never inside a line search, so the function
  stays the same along a line); the impostors that the old graph had missed there
  are found by graph membership and their terms added to the evaluation already
  made (:func:`K.add_missed`), which makes it exact without a second one.
  ``period`` doubles when a search finds few missed — at most 10% of the active
  impostor pairs — or in a smoothed stage, and halves otherwise or when the
  exact value has risen since the previous search; the final ``L``
  is always verified by a search (and the optimisation continues if anything at
  all was missed). ``slack`` halves when the enlarged
  radius would hold too many candidates (high intrinsic dimension).
  No bounds skip candidates between searches (mlpack's scheme): the triangle bound
  ``‖z_i − z_l‖ ≥ δ_il − ‖Δz_i‖ − ‖Δz_l‖`` (``δ_il`` at the last search, ``Δz`` the
  moves since) rules out 10% of the candidates over a default fit on digits and
  isolet and 18% on letter, and at points that have moved since the search only 6%,
  5% and 12%: points move by more than the 15% shell between searches. The exact
  radius test rules out 89% (digits), 91% (isolet) and 71% (letter); the loss
  kernel's float32 screen (:func:`K.loss_weights`, from 32 components on) makes it
  cheap.
- The search visits each pair of classes once, in blocks of (rows of class c) ×
  (points of the classes after c), computing dot products with BLAS in float32
  (blocks of ~2²⁰ entries, which stay in cache) and comparing with both points'
  radii in one numba pass (branch-free counts per chunk of 64 columns; only chunks
  holding pairs are scanned again to emit them). Memory:
  ``O(n k + candidates + block)``, never ``n × n``. Small problems (``n² r`` up to
  2¹⁸: iris, wine) are searched in one compiled pass instead (``K.search_small``;
  fits 10% faster, the blocked search's set-up being most of its cost there).
- The gradient is ``2 Uᵀ X`` with ``U = Lap(W) Z`` for the sparse weighted pair graph
  ``W`` (target pairs and active impostor pairs), computed per row by a numba kernel:
  no outer products. From ``n d r ≥ 2²⁰`` (digits, letter, isolet, mnist) the
  solver forms ``Uᵀ X`` and the direction's ``X Pᵀ`` in float32 (twice as fast;
  fits 11-12% faster); values and slopes along a line stay exact for the direction
  actually followed (see ``_F32_FLOPS``).
- Parallelism: the kernels release the GIL and run on row chunks in a thread pool
  (``n_jobs``); from ``2 × 4096`` rows on, BLAS is limited to one thread during
  ``fit`` so that two thread pools never spin against each other. Chunks do not
  depend on ``n_jobs``: results are identical for any number of threads. Below
  ``2 × 4096`` rows the kernels never run threaded, one evaluation's kernels run as
  a single compiled call (:func:`K.loss_grad_serial`: fixed costs dominate small
  fits), and BLAS keeps its own threads for the products.
"""

import contextlib
import numbers
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.validation import check_is_fitted

from . import _lmnn_kernels as K
from ._optimize import lbfgs
from ._validation import check_n_components, check_points, require_y
from .base import MahalanobisMixin, initialize_components
from .linalg import single_threaded_blas

_BLOCK_ELEMS = 1 << 22  # entries of one distance block (32 MB of float64)
_SEARCH_BLOCK = 1 << 20  # entries of one float32 search block (4 MB: stays in cache)
_SMALL_SEARCH = 1 << 18  # n² r up to this: one compiled pass (K.search_small)
# A refresh that finds at most this share of the active impostor pairs missed by
# the old candidate graph does not shorten the search period. (Missed pairs are
# added exactly at the refresh point, so this only bounds how stale the values
# between two searches may be. 0.1 against 0.01, mean of 5 digits splits:
# 10.4 searches instead of 14.6 at equal objective, 1730.7 against 1730.5; wine
# and iris a few fewer; balance, letter and mnist 10000 unchanged.)
_MISS_TOL = 0.1
# In the smoothed stages, which only warm-start the exact one, the share missed
# does not shorten the period (measured, 5 splits each: digits 10.4 → 9.0
# searches, wine 12.0 → 8.2, iris 7.4 → 7.0, balance 7.8 → 7.0, isolet 10 → 9,
# letter 8 → 7; objectives equal or lower, balance +0.002%); in every stage, an
# exact value that has risen since the previous search does (see _settle).
# Rule out impostor candidates in float32 first from this many components on
# (see K.loss_weights).
_SCREEN_DIM = 32
_CHUNK_ROWS = 2048  # rows per task of the loss kernels
_ROWS_PER_THREAD = 4096  # fewer rows per thread: serial
# Below these sizes the matrix products (multiply-adds) and the axpy / inner
# products (elements) run in one piece (see _Problem.transform).
_THREADED_FLOPS = 1 << 24
_THREADED_ELEMS = 1 << 21
# The solver forms X Pᵀ (search direction) and Uᵀ X (gradient) in float32 from
# this many multiply-adds on. Both are exact where it matters: a trial point is
# Z + α (X Pᵀ) with the float32 product as the direction actually followed, and
# its slope 2 ⟨U, X Pᵀ⟩ is taken along that same array, so values and slopes
# along a line stay consistent; only the direction's L-space copy and the
# gradient that builds the next direction carry float32 rounding. Measured
# (objective, 3-NN error): equal on digits (10 splits, mean 1717.2 against
# 1718.1, 1.52% against 1.54%), isolet (2247.5 against 2253.2), letter (59029.08
# both) and mnist 60000 (239795.6 against 239796.1). Fit time, float32 against
# float64 (median of alternating fits in one process): isolet (1560 × 172 × 172)
# 0.88, letter (16000 × 16 × 16) 0.89, digits (1257 × 64 × 64) 0.89, 300 digits
# points (1.2M multiply-adds) 0.86; below ~2²⁰ the casts cost about what they save.
_F32_FLOPS = 1 << 20
_MAXCOR = 20  # L-BFGS memory
# The last stage restarts L-BFGS (at most _MAX_RESTARTS times) when its final
# check found missed impostors, or when it stopped on ftol within half its budget
# after lowering the objective by more than _RESTART_GAIN (relative).
_MAX_RESTARTS = 3
_RESTART_GAIN = 0.01
_STAGE_SHARE = 1 / 3  # share of max_iter for the smoothed stages together


# ---------------------------------------------------------------------------
# Target neighbours, impostor search, loss


def select_target_neighbors(X, y, n_neighbors):
    """The ``n_neighbors`` nearest same-class points of every point (input space).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), int labels
    n_neighbors : int

    Returns
    -------
    tn : ndarray of shape (n_samples, n_neighbors), int64
        Indices; a point whose class has ``m ≤ n_neighbors`` members gets its ``m − 1``
        classmates and ``−1`` in the remaining columns.
    """
    X = np.asarray(X, dtype=np.float64)
    n = X.shape[0]
    tn = np.full((n, n_neighbors), -1, dtype=np.int64)
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        m = idx.shape[0]
        kc = min(n_neighbors, m - 1)
        if kc < 1:
            continue
        Xc = X[idx]
        # a few spare candidates from the Gram-trick distances of the centred
        # points, then ranked by exact distances (ties: lower index first)
        Xm = Xc - Xc.mean(axis=0)
        nc = _sq_norms(Xm)
        kk = min(m - 1, kc + 4)
        out = np.empty((m, kc), dtype=np.int64)
        step = max(1, _BLOCK_ELEMS // m)
        for s in range(0, m, step):
            e = min(s + step, m)
            K.nearest_in_class(Xc, Xm[s:e] @ Xm.T, nc, s, kk, kc, out[s:e])
        tn[idx, :kc] = idx[out]
    return tn


def _sq_norms(Z):
    return np.einsum("ij,ij->i", Z, Z)


def _screens(r):
    """Whether the loss kernel screens candidates in float32 at ``r`` components."""
    return r >= _SCREEN_DIM


class _Pool:
    """Run independent row-chunk tasks on ``n_threads`` Python threads.

    The numba kernels release the GIL, and BLAS is limited to one thread during a
    ``fit`` that uses the pool's threads, so the threads run truly in parallel
    without two thread pools spinning against each other. Results keep task order.
    """

    def __init__(self, n_threads=1):
        self.n_threads = max(1, int(n_threads))
        self._ex = None
        if self.n_threads > 1:
            from concurrent.futures import ThreadPoolExecutor

            self._ex = ThreadPoolExecutor(self.n_threads)

    def map(self, fn, tasks):
        if self._ex is None or len(tasks) <= 1:
            return [fn(t) for t in tasks]
        return list(self._ex.map(fn, tasks))

    def ranges(self, n, min_rows=None):
        """Row chunks (of at least ``_CHUNK_ROWS`` rows); they do not depend on the
        number of threads, so that sums over chunks (and hence results) are the
        same for any ``n_jobs``."""
        n_chunks = min(32, max(1, n // (min_rows or _CHUNK_ROWS)))
        bounds = np.linspace(0, n, n_chunks + 1).astype(np.int64)
        return [(int(bounds[c]), int(bounds[c + 1])) for c in range(n_chunks)]

    def close(self):
        if self._ex is not None:
            self._ex.shutdown()
            self._ex = None


_SERIAL = _Pool(1)


def find_impostors(Z, y, rho2, pool=_SERIAL, low_precision=False, max_pairs=None):
    """Directed impostor candidates: ``i → l`` with ``y_l ≠ y_i`` and
    ``‖z_i − z_l‖² < rho2[i]``.

    Each unordered pair of classes is visited once, in blocks of (class-c rows) ×
    (points of the classes after c).

    Parameters
    ----------
    Z : ndarray of shape (n, r)
        Points in the transformed space.
    y : ndarray of shape (n,), int64
    rho2 : ndarray of shape (n,)
        Squared search radius of every point.
    pool : _Pool
        Threads for the blocks.
    low_precision : bool, default=False
        Compute the dot products in float32 (twice as fast). Only for enlarged
        radii: a pair's squared distance may then be off by ~1e-6 of the squared
        norms, which the solver's margin of safety (``slack``) absorbs; the loss
        kernel recomputes every candidate's distance in float64.
    max_pairs : int, optional
        Give up (return None) as soon as more pairs than this are found.

    Returns
    -------
    src, dst : ndarray of int64
        (None if ``max_pairs`` was exceeded.)
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    rho2 = np.asarray(rho2, dtype=np.float64)
    n = Z.shape[0]
    if n * n * Z.shape[1] <= _SMALL_SEARCH:
        src, dst = K.search_small(Z, y, rho2)
        if max_pairs is not None and src.shape[0] > max_pairs:
            return None
        return src, dst
    # Class-sorted copy: the rows of class c and the points of the classes after c
    # are contiguous slices (no gathers per block).
    order = np.argsort(y, kind="stable").astype(np.int64)
    Zs = Z[order]
    norms = _sq_norms(Zs)
    rs = rho2[order]
    Zg = Zs.astype(np.float32) if low_precision else Zs
    bounds = np.searchsorted(y[order], np.unique(y), side="right")
    tasks = []
    start = 0
    for end in bounds[:-1]:
        step = max(64, _SEARCH_BLOCK // max(1, n - end))
        for s in range(start, end, step):
            tasks.append((s, min(s + step, end), end, n))
        start = end

    def run(task):
        a0, a1, b0, b1 = task
        G = Zg[a0:a1] @ Zg[b0:b1].T
        return K.scan_block(G, norms[a0:a1], norms[b0:b1], order[a0:a1],
                            order[b0:b1], y, rs[a0:a1], rs[b0:b1], True, False)

    if max_pairs is not None:
        import threading

        lock = threading.Lock()
        found = [0]
        inner = run

        def run(task):
            if found[0] > max_pairs:
                return None
            res = inner(task)
            with lock:
                found[0] += res[0].shape[0]
            return res

    out = pool.map(run, tasks)
    if max_pairs is not None and found[0] > max_pairs:
        return None
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate([o[0] for o in out]),
            np.concatenate([o[1] for o in out]))


def _to_csr(src, dst, n):
    ptr, perm = K.group_by(src, n)
    return ptr, dst[perm]


def _transpose_targets(tn):
    n, k = tn.shape
    flat = tn.ravel()
    keep = np.flatnonzero(flat >= 0)
    ptr, perm = K.group_by(flat[keep], n)
    return ptr, keep[perm].astype(np.int64)


class _Problem:
    """Data of one LMNN problem and the exact loss/gradient for a candidate graph."""

    def __init__(self, X, y, tn, mu, pool=_SERIAL):
        self.Xc = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float64)
        self.y = np.asarray(y, dtype=np.int64)
        self.tn = np.ascontiguousarray(tn, dtype=np.int64)
        self.tnT = _transpose_targets(self.tn)
        self.mu = float(mu)
        self.pool = pool
        self.n = self.Xc.shape[0]
        self.ranges = pool.ranges(self.n)
        # never threaded at this size, whatever n_jobs: the loss kernels run in
        # one compiled call each
        self.serial = pool.n_threads == 1 and self.n < 2 * _ROWS_PER_THREAD
        self._Xc32 = None

    # Matrix products of fewer than _THREADED_FLOPS multiply-adds, and axpys and
    # inner products of fewer than _THREADED_ELEMS elements, run in one piece in
    # the calling thread (measured on letter, 16000 × 16, with 2 threads on 7
    # chunks: gradient product 925 µs, axpy 1 ms; in one piece 301 µs and 167 µs;
    # on wine the pool's bookkeeping took 10.5 µs for a 3.9 µs product). The
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
        # (out=: a temporary of this size costs page faults at every call, 2 ms
        # against 0.4 ms at 16000 × 16)
        if Z.size * LT.shape[0] < _THREADED_FLOPS:
            return np.matmul(X, LT, out=Z)
        self.pool.map(lambda rg: np.matmul(X[rg[0]:rg[1]], LT,
                                           out=Z[rg[0]:rg[1]]), self.ranges)
        return Z

    def radius(self, Z):
        radius = np.zeros(self.n)
        self.pool.map(lambda rg: K.target_distances(Z, self.tn, rg[0], rg[1], radius),
                      self.ranges)
        return radius

    def search(self, Z, rho2, low_precision=False, max_pairs=None):
        res = find_impostors(Z, self.y, rho2, pool=self.pool,
                             low_precision=low_precision, max_pairs=max_pairs)
        if res is None:
            return None
        return _to_csr(res[0], res[1], self.n)

    def _rows(self, fn, size):
        """``[fn(r0, r1), ...]`` over all rows: one piece for fewer than
        ``_THREADED_ELEMS`` elements (``size``), else one call per row chunk."""
        if size < _THREADED_ELEMS:
            return [fn(0, self.n)]
        return self.pool.map(lambda rg: fn(rg[0], rg[1]), self.ranges)

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
        self._rows(lambda a, b: K.point_aux(Z, out[0], out[1], screen, a, b), Z.size)
        return out

    def weights(self, Z, indptr, indices, smooth, aux=None):
        """Loss at ``Z``, ``U`` (the gradient w.r.t. ``L`` is ``2 Uᵀ Xc``), the
        number of active triplets and the number of active impostor pairs. ``aux``:
        ``Z``'s :meth:`aux`, if already made."""
        n, k = self.tn.shape
        screen = _screens(Z.shape[1])
        Z32, norms = self.aux(Z) if aux is None else aux
        if self.serial:
            f, U, act, n_pairs = K.loss_grad_serial(
                Z, Z32, norms, screen, self.tn, self.tnT[0], self.tnT[1], indptr,
                indices, self.mu, smooth)
            return f, U, int(act), int(n_pairs)
        row_loss, wt, act, a_cnt = K.loss_buffers(n, k)
        # (each chunk lists its rows' active pairs in row order)
        parts = self.pool.map(lambda rg: K.loss_weights(
            Z, Z32, norms, screen, self.tn, indptr, indices, self.mu, smooth, rg[0],
            rg[1], row_loss, wt, act, a_cnt), self.ranges)
        a_dst = np.concatenate([p[0] for p in parts])
        a_w = np.concatenate([p[1] for p in parts])
        a_ptr, a_src, a_ptrT, a_permT = K.index_active(a_cnt, a_dst)
        U = np.empty_like(Z)
        self.pool.map(lambda rg: K.laplacian_dot(
            Z, self.tn, wt, self.tnT[0], self.tnT[1], a_ptr, a_dst, a_w, a_ptrT,
            a_permT, a_src, rg[0], rg[1], U), self.ranges)
        return float(row_loss.sum()), U, int(act.sum()), int(a_dst.shape[0])

    def grad(self, U, low_precision=False):
        """``2 Uᵀ Xc``, the gradient w.r.t. ``L`` (the product in float32 if
        ``low_precision``)."""
        X, dtype = self._data(low_precision)
        if U.size * X.shape[1] < _THREADED_FLOPS:
            G = (U.astype(dtype, copy=False).T @ X).astype(np.float64, copy=False)
            G *= 2.0
            return G
        parts = self.pool.map(lambda rg: U[rg[0]:rg[1]].astype(dtype, copy=False).T
                              @ X[rg[0]:rg[1]], self.ranges)
        return 2.0 * np.sum(parts, axis=0, dtype=np.float64)

    def trial(self, Z, ZP, alpha, out, aux, indptr, indices, smooth):
        """Evaluation at ``out = Z + alpha ZP`` (with its :meth:`aux` written into
        ``aux``): ``(f, U, act, n_pairs)`` as :meth:`weights`, and the slope ``2 ⟨U,
        ZP⟩`` along ``ZP``."""
        screen = _screens(Z.shape[1])
        if self.serial:
            f, U, act, n_pairs, slope = K.trial_serial(
                Z, ZP, alpha, out, aux[0], aux[1], screen, self.tn, self.tnT[0],
                self.tnT[1], indptr, indices, self.mu, smooth)
            return (f, U, int(act), int(n_pairs)), slope
        self._rows(lambda a, b: K.step(Z, ZP, alpha, out, aux[0], aux[1], screen, a,
                                       b), Z.size)
        ev = self.weights(out, indptr, indices, smooth, aux)
        return ev, 2.0 * self.inner(ev[1], ZP)

    def inner(self, U, V):
        """``⟨U, V⟩`` (summed over row chunks that do not depend on ``n_jobs``)."""
        if V.dtype == np.float32:
            return float(sum(self._rows(lambda a, b: K.row_inner(U, V, a, b),
                                        U.size)))
        return float(sum(self._rows(lambda a, b: np.vdot(U[a:b], V[a:b]), U.size)))

    def loss_grad(self, Z, indptr, indices, smooth):
        f, U, act, _ = self.weights(Z, indptr, indices, smooth)
        return f, self.grad(U), act


def lmnn_loss_grad(L, X, y, target_neighbors, mu=0.5, smooth=0.0):
    """The LMNN objective and its gradient w.r.t. ``L`` (exact impostor search).

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
    prob = _Problem(X, y, target_neighbors, mu)
    Z = prob.transform(L)
    indptr, indices = prob.search(Z, prob.radius(Z))
    return prob.loss_grad(Z, indptr, indices, float(smooth))


class _LossOracle:
    """LMNN loss/gradient for L-BFGS, with a lazily refreshed impostor-candidate graph.

    Candidates of ``i`` are the other-class points within ``(1 + slack)`` times its
    margin radius at the last search; the loss kernel filters them with the exact
    current radius, so the value is exact whenever no impostor has come from beyond
    the enlarged radius. The graph is searched again every ``period`` iterations
    (at an accepted point, never inside a line search, so that the function stays
    the same along a line); the terms of the impostors that the old graph had
    missed there are added to the evaluation already made (``K.add_missed``, a
    membership test: no second evaluation). ``period`` doubles when at most
    ``_MISS_TOL`` of the active impostor pairs were missed (or in a smoothed
    stage) and halves otherwise, or when the exact value has risen since the
    previous search.
    ``evaluate(L, force_search=True)`` does an exact search at ``L``.

    It is a line oracle for :func:`mahal._optimize.lbfgs`: a trial step along ``P``
    costs ``Z + α X Pᵀ`` (``X Pᵀ`` once per direction) and the loss kernel; the
    directional derivative is ``2 ⟨U, X Pᵀ⟩``; the gradient product ``2 Uᵀ X`` is
    only formed at accepted points. Lives only during ``fit`` (never stored on the
    estimator).
    """

    def __init__(self, problem, r, slack=0.15, max_period=16, max_candidates=None):
        self.prob = problem
        # the products of the search directions and of the gradient in float32
        # from this size on (see _F32_FLOPS)
        self.low_precision = problem.Xc.size * r >= _F32_FLOPS
        # memory for candidates: ~24 bytes each
        self.max_candidates = (max_candidates if max_candidates is not None
                               else max(10_000_000, 20 * problem.tn.size))
        self.n_capped = 0
        self.slack_eff = slack
        self.r = r
        self.slack = slack
        self.max_period = max_period
        self.period = 1
        self.since = 0
        self.smooth = 0.0
        self.indptr = self.indices = None
        self.n_search = 0
        self.n_missed = 0
        self.n_evals = 0
        self.t_search = 0.0
        self.n_active = 0
        self.n_candidates = 0
        self.run_start_f = None  # first value of the current L-BFGS run
        self._exact_f = None  # value at the run's last search
        self.Z = self.ZP = self._Zt = self._aux = self._last = None
        self.checked = None

    def _refresh(self, Z, radius):
        t0 = time.perf_counter()
        rho2 = radius * (1.0 + self.slack_eff) ** 2
        res = self.prob.search(Z, rho2, low_precision=True,
                               max_pairs=self.max_candidates)
        if res is None:
            # Too many candidates within the enlarged radius (high intrinsic
            # dimension): take the exact impostors now, a smaller slack next time.
            self.n_capped += 1
            self.slack_eff = max(0.01, 0.5 * self.slack_eff)
            # (the margin covers the float32 rounding, ~1e-7 of the squared norms)
            margin = 1e-3 * radius + 1e-5 * _sq_norms(Z).max()
            res = self.prob.search(Z, radius + margin, low_precision=True)
            self.period = 1
        elif (res[1].shape[0] < self.max_candidates // 4
              and self.slack_eff < self.slack):
            self.slack_eff = min(self.slack, 1.25 * self.slack_eff)
        self.indptr, self.indices = res
        self.n_search += 1
        self.since = 0
        self.t_search += time.perf_counter() - t0

    def _weights(self, Z, aux=None):
        self.n_evals += 1
        return self.prob.weights(Z, self.indptr, self.indices, self.smooth, aux)

    def _settle(self, force_search=False, ev=None):
        """Finish an evaluation at the current point ``self.Z``: search again if
        due (or forced), then form the gradient. ``ev = (f, U, act, n_pairs)`` is the
        evaluation there on the current graph, if one was made (a line-search
        trial); after a search, the terms of the impostors that the old graph had
        missed are added to it (:func:`K.add_missed`), so it need not be
        evaluated again."""
        Z = self.Z
        missed = False
        searched = True
        if self.indptr is None:
            self._refresh(Z, self.prob.radius(Z))
            ev = self._weights(Z)
        elif force_search or self.since >= self.period:
            self._drop_line_buffers()
            patch = ev is not None
            old_ptr, old_idx = self.indptr, self.indices
            radius = self.prob.radius(Z)
            self._refresh(Z, radius)
            if not patch:
                ev = self._weights(Z)
            f, U, act, n_pairs = ev
            n_miss, df, dact = K.add_missed(
                old_ptr, old_idx, self.indptr, self.indices, Z, radius, self.prob.tn,
                self.prob.mu, self.smooth, U, patch)
            if patch:
                n_pairs += n_miss
                ev = f + df, U, act + dact, n_pairs
            missed = n_miss > 0
            # The period halves when the old graph lacked more than _MISS_TOL of
            # the active impostor pairs (in the last stage; the smoothed ones only
            # warm-start it), or when the exact value has risen since the last
            # search: then values on the stale graph led uphill (seen with a small
            # slack, e.g. 0.1 on isolet: ×6 at one search of a smoothed stage).
            rose = self._exact_f is not None and ev[0] > self._exact_f
            if rose or (n_miss > _MISS_TOL * n_pairs and self.smooth == 0.0):
                self.n_missed += 1
                self.period = max(1, self.period // 2)
            else:
                self.period = min(self.max_period, 2 * self.period)
        else:
            searched = False
            if ev is None:
                ev = self._weights(Z)
        f, U, act, _ = ev
        # (whether this point's value is exact and checked by a search, and what
        # the search found)
        self.checked = (f, missed) if searched else None
        if searched:
            self._exact_f = f
        self.since += 1
        if self.run_start_f is None:
            self.run_start_f = f
        self.n_active = act
        self.n_candidates = int(self.indices.shape[0])
        return f, self.prob.grad(U, low_precision=self.low_precision), missed

    def new_run(self, exact_start=False):
        """Start of an L-BFGS run (on a new function if the smoothing changed);
        with ``exact_start`` its first value is checked by a search."""
        self.run_start_f = self._exact_f = None
        if exact_start:
            self.since = self.period

    def evaluate(self, L, force_search=False):
        """Loss, gradient (r, d) and whether the search (if one was made) found
        impostors that the old candidate graph had missed; ``L`` becomes the
        current point."""
        self._drop_line_buffers()
        self.Z = None
        self.Z = self.prob.transform(L)
        return self._settle(force_search)

    def _drop_line_buffers(self):
        # X Pᵀ, the trial point and the last trial's evaluation: n × r arrays each,
        # not needed across a search (peak on mnist 60000: 928 MB with them
        # alive, 711 MB without)
        self.ZP = self._Zt = self._aux = self._last = None

    # line oracle (mahal._optimize)
    def start(self, x):
        f, g, _ = self.evaluate(x.reshape(self.r, -1))
        return f, g.ravel()

    def set_direction(self, p):
        self.ZP = self.prob.transform(p.reshape(self.r, -1),
                                      low_precision=self.low_precision)
        self._last = None

    def trial(self, alpha):
        if self._Zt is None or self._Zt is self.Z:
            self._Zt = np.empty_like(self.Z)
        if self._aux is None:
            self._aux = self.prob.aux_buffers(self.r)
        self._last = None  # (frees the previous trial's U first)
        self.n_evals += 1
        ev, slope = self.prob.trial(self.Z, self.ZP, alpha, self._Zt, self._aux,
                                    self.indptr, self.indices, self.smooth)
        self._last = alpha, ev
        return ev[0], slope

    def accept(self, alpha):
        if self._last is None or self._last[0] != alpha:
            self.trial(alpha)
        ev = self._last[1]
        self._last = None
        self.Z, self._Zt = self._Zt, self.Z
        f, g, _ = self._settle(ev=ev)
        return f, g.ravel()


def _smoothing_schedule(smoothing):
    if smoothing is None:
        return (0.0,)
    return tuple(float(s) for s in np.ravel(smoothing))


def lmnn_solve(X, y, target_neighbors, L0, mu=0.5, max_iter=100, tol=1e-5,
               smoothing=(1.0, 0.1, 0.0), verbose=False, slack=0.15, n_threads=1,
               max_period=16, name="LMNN"):
    """Minimise the LMNN objective over ``L`` with L-BFGS.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), int64 labels
    target_neighbors : ndarray of shape (n, k), int64 (−1 = none)
    L0 : ndarray of shape (r, d)
    mu : float
    max_iter : int
        Total L-BFGS iterations over all smoothing stages.
    tol : float
        Relative decrease of the loss below which a stage stops (scipy ``ftol``).
    smoothing : sequence of float
        Huber widths of the successive stages; the last should be 0 (exact hinge).
    verbose : bool
    slack : float
        Relative enlargement of the search radius for impostor candidates.
    n_threads : int
        At most this many threads (fewer for small problems: at most one per
        4096 rows).
    max_period : int
        Longest interval (in iterations) between two impostor searches.

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
    info : dict
    """
    r, d = L0.shape
    # Threads only pay off from a few thousand rows each (measured, fits with 1
    # and 2 threads: iris 7 ms / 14 ms, digits 313 ms / 373 ms, isolet (1560 rows)
    # 1.07 s both, letter (16000) 2.63 s / 1.84 s).
    pool = _Pool(min(n_threads, max(1, X.shape[0] // _ROWS_PER_THREAD)))
    # Below 2 × _ROWS_PER_THREAD rows the kernels never run threaded (whatever
    # n_jobs), so BLAS keeps its own threads for the products: nothing competes with
    # them for the cores (median of 9 fits, limited against not: digits 165 → 136
    # ms, isolet 514 → 442 ms). From there on the kernels may run on the pool's
    # threads, and BLAS is limited to one thread, so that two pools never spin
    # against each other (letter with both: 1.34 → 1.89 s). The choice depends on
    # the size only, so results do not depend on n_jobs.
    blas = (contextlib.nullcontext() if X.shape[0] < 2 * _ROWS_PER_THREAD
            else single_threaded_blas())
    try:
        with blas:
            return _lmnn_lbfgs(_Problem(X, y, target_neighbors, mu, pool), L0,
                               max_iter, tol, _smoothing_schedule(smoothing), verbose,
                               slack, max_period, name)
    finally:
        pool.close()


def _lmnn_lbfgs(prob, L0, max_iter, tol, stages, verbose, slack, max_period, name):
    r, d = L0.shape
    oracle = _LossOracle(prob, r, slack=slack, max_period=max_period)
    x = np.ascontiguousarray(L0, dtype=np.float64).ravel().copy()
    n_iter = 0
    converged = True
    t_start = time.perf_counter()
    if verbose:
        header = "{:>10} {:>8} {:>20} {:>12} {:>12} {:>10}".format(
            "Iteration", "Smooth", "Objective Value", "#Active", "#Candidates",
            "Time(s)")
        print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}")
    state = {"t": time.perf_counter()}

    def callback(_, f, xk):
        nonlocal n_iter
        n_iter += 1
        if oracle.smooth == 0.0 and oracle.checked is not None:
            if oracle.checked[0] < best[0]:
                best[:] = oracle.checked[0], xk.copy()
        if verbose:
            now = time.perf_counter()
            print("[{}] {:>10} {:>8.3g} {:>20.6e} {:>12,} {:>12,} {:>10.2f}".format(
                name, n_iter, oracle.smooth, f, oracle.n_active,
                oracle.n_candidates, now - state["t"]))
            state["t"] = now
            sys.stdout.flush()

    n_stages = len(stages)
    si = 0
    n_restarts = 0
    tol_met = False
    warm = None
    while si < n_stages:
        smooth = stages[si]
        oracle.smooth = smooth
        remaining = max_iter - n_iter
        if remaining <= 0:
            converged = False
            break
        last = si == n_stages - 1
        # Earlier (smoothed) stages only need a rough solution.
        budget = remaining if last else max(1, min(remaining, int(
            _STAGE_SHARE * max_iter / max(1, n_stages - 1)) + 1))
        oracle.new_run(exact_start=last)
        x0 = x
        best = [np.inf, None]  # the last stage's best point verified by a search
        res = lbfgs(oracle, x, budget, ftol=tol, gtol=1e-12, memory=_MAXCOR,
                    callback=callback, warm=warm)
        x = res.x
        # The next stage (a less smoothed hinge) starts with this run's
        # correction pairs (measured: 5-18% fewer evaluations on iris, wine,
        # digits and letter, at equal objective).
        warm = res
        if last:
            # Verify with an exact search at the final L; if impostors were
            # missed, continue from there with the refreshed graph.
            # A run that stopped early on a small relative decrease (ftol) while
            # still making progress is often a line search caught on a kink of the
            # hinge: a fresh L-BFGS memory gets past it (measured on digits: one
            # split stopped at objective 6100 instead of ~1750, with 3.15% test
            # error instead of 2.22%).
            f_start = oracle.run_start_f
            if oracle.checked is not None:
                # the run ended on a point that its periodic search has just
                # verified (the oracle's current point is always the run's x)
                f_end, missed = oracle.checked
            else:
                f_end, _, missed = oracle.evaluate(x.reshape(r, d), force_search=True)
            stalled = (res.status == 0 and res.nit < budget // 2
                       and f_start - f_end > _RESTART_GAIN * abs(f_start))
            # Values on a stale candidate graph underestimate the loss; if L-BFGS
            # followed them to a point whose exact value is above the run's exact
            # start or above another point of the run that a search verified, go
            # back to the best of them and search at every evaluation from now on.
            # (Measured with slack 0.1 on isolet: the run ended at 3341 after
            # verifying 2964 eight iterations earlier.)
            if f_start <= best[0]:
                best[:] = f_start, x0
            worse = f_end > best[0]
            if worse:
                x = best[1]
                oracle.max_period = oracle.period = 1
            # a run that met ``tol`` on exact values has converged, even if the
            # optional restart after it then runs out of iterations
            tol_met = tol_met or (res.status == 0 and not missed and not worse)
            if ((missed or stalled or worse) and n_restarts < _MAX_RESTARTS
                    and n_iter < max_iter):
                n_restarts += 1
                warm = None  # (a restart wants a fresh memory)
                continue
            if res.status == 1 and n_iter >= max_iter and not tol_met:
                converged = False
        si += 1
    info = dict(n_evals=oracle.n_evals, n_searches=oracle.n_search,
                n_capped=oracle.n_capped, final_slack=oracle.slack_eff,
                n_missed=oracle.n_missed, search_time=oracle.t_search,
                time=time.perf_counter() - t_start, n_candidates=oracle.n_candidates,
                n_active=oracle.n_active, n_restarts=n_restarts)
    return x.reshape(r, d), n_iter, converged, info


# ---------------------------------------------------------------------------
# Estimator


def _n_threads(n_jobs):
    """Number of worker threads for ``n_jobs`` (None or −1: all cores)."""
    import os

    n_cpu = os.cpu_count() or 1
    if n_jobs is None:
        return n_cpu
    if n_jobs < 0:
        return max(1, n_cpu + 1 + n_jobs)
    return max(1, min(int(n_jobs), n_cpu))


def _check_positive_int(value, name, minimum=1):
    if (not isinstance(value, numbers.Integral) or isinstance(value, bool)
            or value < minimum):
        raise ValueError(f"{name} must be an integer ≥ {minimum}; got {value!r}.")
    return int(value)


def _check_regularization(mu):
    """``μ`` (``regularization``) as a float in (0, 1)."""
    if not isinstance(mu, numbers.Real) or not 0.0 < mu < 1.0:
        raise ValueError(f"regularization must be a number in (0, 1); got {mu!r}.")
    return float(mu)


def _prepare_targets(estimator, X, y, n_neighbors, targets=None):
    """Encode labels, check class sizes, find target neighbours (or take
    ``targets``, of shape (n_samples, n_neighbors), as they are)."""
    classes, y_enc = np.unique(y, return_inverse=True)
    y_enc = y_enc.astype(np.int64)
    counts = np.bincount(y_enc)
    small = classes[counts < n_neighbors + 1]
    if np.all(counts < 2):
        raise ValueError(
            f"{type(estimator).__name__} needs at least one class with 2 or more "
            f"members (each point's target neighbours are points of its own class); "
            f"every class here has a single member.")
    if small.shape[0]:
        warnings.warn(
            f"{small.shape[0]} class(es) have fewer than n_neighbors + 1 = "
            f"{n_neighbors + 1} members (e.g. {small[:3].tolist()}): their points get "
            f"all their classmates (m − 1 < n_neighbors) as target neighbours; "
            f"singletons only act as impostors.", UserWarning)
    if targets is None:
        tn = select_target_neighbors(X, y_enc, n_neighbors)
    else:
        tn = np.asarray(targets, dtype=np.int64)
    return classes, y_enc, tn


class LMNN(MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Large Margin Nearest Neighbor metric learning (Weinberger & Saul, 2009).

    Learns ``L`` (``components_``) so that each point's ``n_neighbors`` target
    neighbours (its nearest same-class points in the input space) are closer than
    any differently-labelled point by a margin of 1 (in squared learned distance):

        min_L (1 − μ) Σ_{i, j(i)} d_ij + μ Σ_{i, j(i), l: y_l ≠ y_i} [1 + d_ij − d_il]_+

    with ``μ = regularization`` and ``d_ij = ‖L(x_i − x_j)‖²``. Solved with L-BFGS on
    ``L`` with exact loss and gradient (see the module docstring).

    The margin is 1 in absolute units, so the scale of ``X`` matters: standardise
    features (or e.g. map pixels to [0, 1]) first. Differences from metric-learn
    0.7: ``max_iter`` counts L-BFGS iterations (no ``learn_rate``/``min_iter``),
    ``tol`` replaces ``convergence_tol``, and a class with at most ``n_neighbors``
    members is handled (metric-learn's check is off by one).

    Parameters
    ----------
    n_neighbors : int, default=3
        Number of target neighbours per point. Classes with at most
        ``n_neighbors`` members use all their classmates (with a warning).
    n_components : int, optional
        Dimension of the learned space (rows of ``components_``); default
        ``n_features``. With fewer components than features the problem is
        nonconvex.
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or ndarray, default='auto'
        Initial ``L``; see :func:`mahal.base.initialize_components`. 'auto' is
        'lda' when ``n_components ≤ n_classes − 1``, else 'pca' when
        ``n_components < n_features``, else identity (which for full rank gives
        the same distances as 'pca', pylmnn's default). Measured on letter
        (full rank): 'lda' (the 'auto' choice there) 3.55% and 'identity' 3.60%
        3-NN test error.
    max_iter : int, default=50
        Maximum number of L-BFGS iterations (over all smoothing stages).
    tol : float, default=1e-5
        Stop a stage when the relative decrease of the objective falls below
        ``tol`` (the ``ftol`` rule of scipy's L-BFGS-B).
    regularization : float in (0, 1), default=0.5
        ``μ``, the weight of the push (impostor) term; ``1 − μ`` weighs the pull.
    n_passes : int, default=1
        Multi-pass LMNN (Weinberger & Saul, 2009, "multiple passes"): after each
        pass the target neighbours are selected again, as the nearest same-class
        points in the learned space, and the next pass continues from the learned
        ``L`` with them; stops early when the target neighbours no longer change.
        Each pass runs up to ``max_iter`` iterations. Helps where the input space's
        nearest classmates are poor targets; choose it by cross-validation.
        Measured 3-NN test errors: balance (mean of 100 random 70/30 splits)
        17.29% with 1 pass, 5.26% with ``n_passes`` chosen among 1, 2, 4, 8 by
        3-fold CV on each training split; letter 3.55% with 1 pass, 2.20% with
        the 4 passes CV chose among 1, 2, 4; but iris 3.87% against 4.11% and
        wine 2.33% against 2.44% with the CV choice.
    smoothing : sequence of float, default=(1.0, 0.1, 0.0)
        Widths of the Huber-smoothed hinge in successive L-BFGS stages; the last
        stage should be 0 (the exact hinge). Measured: ``(1, 0)`` gives test
        errors within a test point (wine 2.59% for both over 10 splits, letter
        3.57% against 3.55%: 1 of 4000);
        on 4 small problems (42 points) both reach the SDP optimum to within
        0.1%. (With scipy's L-BFGS-B in place of this solver's own line search,
        ``(1, 0)`` had stopped 5% above the optimum on such a problem.)
    random_state : int, RandomState or None
        For ``init='random'``; the solver itself is deterministic.
    verbose : bool, default=False
        Print an iteration table.
    preprocessor : array-like or callable, optional
    n_jobs : int, optional
        Number of threads for the compiled kernels (None or −1: all cores); the
        threads split the rows, at most one thread per 4096 training points, as
        smaller shares cost more in hand-offs than they save. BLAS's own threads
        (set with ``threadpoolctl`` or ``OMP_NUM_THREADS``) run the matrix
        products of fits below 8192 points; from there on BLAS is limited to one
        thread during ``fit``. Results do not depend on ``n_jobs``; BLAS's thread
        count may change their last bits, as for any BLAS-based estimator.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
        L-BFGS iterations, summed over the passes.
    n_passes_ : int
        Passes run (at most ``n_passes``).
    n_features_in_ : int
    classes_ : ndarray
    target_neighbors_ : ndarray of shape (n_samples, n_neighbors)
        The target neighbours of the last pass (indices into the training set,
        −1 = none).
    """

    def __init__(self, n_neighbors=3, n_components=None, init="auto", max_iter=50,
                 tol=1e-5, regularization=0.5, n_passes=1, smoothing=(1.0, 0.1, 0.0),
                 random_state=None, verbose=False, preprocessor=None, n_jobs=None):
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.regularization = regularization
        self.n_passes = n_passes
        self.smoothing = smoothing
        self.random_state = random_state
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags

    def _check_params(self):
        k = _check_positive_int(self.n_neighbors, "n_neighbors")
        _check_positive_int(self.max_iter, "max_iter")
        _check_positive_int(self.n_passes, "n_passes")
        mu = _check_regularization(self.regularization)
        if not isinstance(self.tol, numbers.Real) or not self.tol >= 0:
            raise ValueError(f"tol must be a number ≥ 0; got {self.tol!r}.")
        if self.smoothing is not None:
            sm = np.asarray(self.smoothing, dtype=float).ravel()
            if sm.size == 0 or np.any(~np.isfinite(sm)) or np.any(sm < 0):
                raise ValueError("smoothing must be a non-empty sequence of widths ≥ "
                                 f"0; got {self.smoothing!r}.")
        if self.n_jobs is not None and (not isinstance(self.n_jobs, numbers.Integral)
                                        or self.n_jobs == 0):
            raise ValueError(f"n_jobs must be None or a non-zero integer; got "
                             f"{self.n_jobs!r}.")
        return k, mu

    def fit(self, X, y):
        """Fit the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        k, mu = self._check_params()
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        n_components = check_n_components(self.n_components, X.shape[1])
        self.classes_, y_enc, tn = _prepare_targets(self, X, y, k)
        L = initialize_components(n_components, X, y_enc, self.init,
                                  self.random_state)
        n_iter = n_passes = 0
        all_converged = True
        t_start = time.perf_counter()
        for p in range(self.n_passes):
            if p > 0:
                # multi-pass: new target neighbours in the learned space
                tn_new = select_target_neighbors(X @ L.T, y_enc, k)
                n_changed = int(np.count_nonzero(np.any(tn_new != tn, axis=1)))
                if self.verbose:
                    print(f"[{type(self).__name__}] Pass {p + 1}: {n_changed} "
                          f"points have new target neighbours.")
                if n_changed == 0:
                    break
                tn = tn_new
            L, it, converged, info = lmnn_solve(
                X, y_enc, tn, L, mu=mu, max_iter=self.max_iter, tol=self.tol,
                smoothing=self.smoothing, verbose=self.verbose,
                n_threads=_n_threads(self.n_jobs), name=type(self).__name__)
            n_iter += it
            n_passes += 1
            all_converged = all_converged and converged
            if self.verbose:
                print(f"[{type(self).__name__}] Training took {info['time']:8.2f}s "
                      f"({info['n_evals']} evaluations, {info['n_searches']} "
                      f"impostor searches).")
        if not all_converged:
            warnings.warn(f"[{type(self).__name__}] LMNN did not converge in "
                          f"max_iter={self.max_iter} iterations.", ConvergenceWarning)
        if self.verbose and self.n_passes > 1:
            print(f"[{type(self).__name__}] {n_passes} pass(es) took "
                  f"{time.perf_counter() - t_start:8.2f}s.")
        self.components_ = L
        self.n_iter_ = n_iter
        self.n_passes_ = n_passes
        self.target_neighbors_ = tn
        return self


class LMNNEnergyClassifier(ClassifierMixin, BaseEstimator):
    """Energy-based classification with an LMNN metric (Weinberger & Saul, 2009, §4.2
    "Energy-based classification").

    A test point ``x_t`` gets the label ``c`` that minimises the LMNN loss it would
    cause as a training point of class ``c``:

        E(x_t, c) = (1 − μ) Σ_{j ∈ kNN_c(x_t)} d(x_t, x_j)
                    + μ Σ_{j ∈ kNN_c(x_t)} Σ_{l: y_l ≠ c} [1 + d(x_t, x_j) − d(x_t, x_l)]_+
                    + μ Σ_{i: y_i ≠ c} Σ_{j(i)} [1 + d(x_i, x_j) − d(x_i, x_t)]_+

    with squared learned distances ``d``, ``kNN_c(x_t)`` the ``n_neighbors`` nearest
    training points of class ``c`` (its would-be target neighbours), and ``j(i)`` the
    target neighbours of training point ``i`` (the metric learner's
    ``target_neighbors_`` if it has them for these training points, as after a
    multi-pass fit; else its nearest classmates in the input space): the first two
    terms are the pull and push losses of ``x_t``, the third the push loss ``x_t``
    causes as an impostor of training points of other classes.

    Parameters
    ----------
    metric_learner : LMNN or None, default=None
        The metric. None: an ``LMNN(n_neighbors=n_neighbors,
        regularization=regularization, n_jobs=n_jobs)`` is fitted. An estimator is
        cloned and fitted, unless ``prefit=True`` (then it must already be fitted on
        the same training points and is used as is).
    n_neighbors : int, default=3
        Target neighbours per point (for the energy; and for the default LMNN).
    regularization : float in (0, 1), default=0.5
        ``μ`` of the energy (and of the default LMNN).
    prefit : bool, default=False
    n_jobs : int, optional
        Threads for the energies (and the default LMNN).

    Attributes
    ----------
    metric_learner_ : the fitted metric learner
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Notes
    -----
    There is no ``predict_proba``: the energies are sums of hinge losses whose scale
    depends on the data set, so a softmax of ``−E`` is not a calibrated probability.
    :meth:`energy` returns the energies themselves.
    """

    def __init__(self, metric_learner=None, n_neighbors=3, regularization=0.5,
                 prefit=False, n_jobs=None):
        self.metric_learner = metric_learner
        self.n_neighbors = n_neighbors
        self.regularization = regularization
        self.prefit = prefit
        self.n_jobs = n_jobs

    def fit(self, X, y):
        """Fit (or take) the metric and store the transformed training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        from sklearn.base import clone

        k = _check_positive_int(self.n_neighbors, "n_neighbors")
        mu = _check_regularization(self.regularization)
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        if self.metric_learner is None:
            learner = LMNN(n_neighbors=k, regularization=mu, n_jobs=self.n_jobs)
            learner.fit(X, y)
        elif self.prefit:
            check_is_fitted(self.metric_learner, "components_")
            learner = self.metric_learner
        else:
            learner = clone(self.metric_learner).fit(X, y)
        self.metric_learner_ = learner
        # the learner's own targets if it has them for these points (after
        # multi-pass: chosen in the learned space), so they are not searched twice
        learned_tn = getattr(learner, "target_neighbors_", None)
        if np.shape(learned_tn) != (X.shape[0], k):
            learned_tn = None
        self.classes_, y_enc, tn = _prepare_targets(self, X, y, k, learned_tn)
        G = np.asarray(learner.components_, dtype=np.float64)
        if G.shape[1] != X.shape[1]:
            raise ValueError(f"metric_learner has {G.shape[1]} features; X has "
                             f"{X.shape[1]}.")
        order = np.argsort(y_enc, kind="stable")
        self._Z = np.ascontiguousarray(X[order] @ G.T)
        self._y = np.ascontiguousarray(y_enc[order])
        inv = np.empty_like(order)
        inv[order] = np.arange(order.shape[0])
        tn_sorted = np.where(tn[order] >= 0, inv[np.maximum(tn[order], 0)], -1)
        self._tn = np.ascontiguousarray(tn_sorted, dtype=np.int64)
        Zi = self._Z[:, None, :] - self._Z[np.maximum(self._tn, 0)]
        self._dt = np.where(self._tn >= 0, np.einsum("nkr,nkr->nk", Zi, Zi), 0.0)
        counts = np.bincount(self._y, minlength=self.classes_.shape[0])
        self._class_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
        self._components = G
        self._mu = float(mu)
        self._k = k
        return self

    def energy(self, X):
        """Energies ``E(x, c)`` of every point for every class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        E : ndarray of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        check_is_fitted(self, "classes_")
        X = check_points(self, X, reset=False)
        Zt = X @ self._components.T
        m, n = Zt.shape[0], self._Z.shape[0]
        C = self.classes_.shape[0]
        E = np.empty((m, C))
        zn = _sq_norms(self._Z)
        step = max(1, _BLOCK_ELEMS // max(1, n))
        pool = _Pool(_n_threads(self.n_jobs))
        try:
            for s in range(0, m, step):
                Zb = Zt[s:s + step]
                D = _sq_norms(Zb)[:, None] + zn[None, :] - 2.0 * (Zb @ self._Z.T)
                np.maximum(D, 0.0, out=D)
                out = E[s:s + step]
                pool.map(lambda rg: K.energy_block(
                    D, self._y, self._class_start, self._k, self._dt, self._tn,
                    self._mu, rg[0], rg[1], out), pool.ranges(D.shape[0], 64))
        finally:
            pool.close()
        return E

    def predict(self, X):
        """Label of minimal energy for every point.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray of shape (n_samples,)
        """
        E = self.energy(X)
        return self.classes_[np.argmin(E, axis=1)]
