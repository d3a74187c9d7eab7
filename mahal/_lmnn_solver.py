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
import sys
import time

import numpy as np
from sklearn.preprocessing import LabelEncoder

from . import _lmnn_kernels as K
from ._optimize import lbfgs
from ._parallel import _SERIAL, _Pool, single_threaded_blas

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
