"""Multiple-metric LMNN's solver: L-BFGS over one ``L_c`` per class.

Weinberger & Saul (JMLR 2009, section 5, "multiple metrics") learn one metric per
class. The distance from a point ``x_i`` to a training point ``x_l`` is measured in
the metric of ``l``'s class, ``d_{y_l}(i, l) = ‖L_{y_l}(x_i − x_l)‖²``, so a target
pair (same class) uses its class's metric and an impostor pair the impostor's:

    ε(L_1..L_C) = (1 − μ) Σ_{i, j(i)} d_{y_i}(i, j)
                  + μ Σ_{i, j(i), l: y_l ≠ y_i} [1 + d_{y_i}(i, j) − d_{y_l}(i, l)]_+

With all ``L_c`` equal it is LMNN's objective. :func:`multi_metric_loss_grad` is the
plain function; :func:`multi_metric_solve` minimises it.

Design (LMNN's, :mod:`mahal._lmnn_solver`, for ``C`` metrics):

- L-BFGS (:func:`mahal._optimize.lbfgs`) on the exact hinge, started from one metric
  (a fitted LMNN's) for every class, with its line search in the transformed space:
  a trial point is ``Z + α X Pᵀ`` and its slope ``2 ⟨U, X Pᵀ⟩``.
- Impostor candidates: the directed pairs ``i → l`` within ``d_{y_l}(i, l) < R_i + 1 +
  margin`` at the last search, ``R_i`` the largest target distance of ``i``; the
  hinge needs ``d < R_i + 1``, so ``margin`` is the room the metrics may move
  before a search is due. Each class's metric is searched by LMNN's impostor search
  (all points of other classes against the class, float32 products), so a search
  costs about one single-metric search. Searches run every ``period`` iterations at
  an accepted point (never inside a line search); the run ends only on a point
  verified by a search.
- Layout: metric ``c`` is needed at the points of class ``c`` and at the anchors
  with a candidate in class ``c``, not at every point, so ``Z`` stacks only those
  rows (``pos[c, i]`` is the row of point ``i`` in metric ``c``) and the products
  ``X Lᵀ``, ``X Pᵀ`` and ``Uᵀ X`` run over them only.
- The gradient w.r.t. ``L_c`` is ``2 U_cᵀ X_c`` with ``U = Lap(W) Z``, built by two
  row-parallel passes (:mod:`mahal._lmnn_multi_kernels`): each anchor's own rows,
  then each point's incoming pairs, so threads never write the same row; row chunks
  do not depend on the number of threads, so results do not either.
"""

import time

import numpy as np
from sklearn.preprocessing import LabelEncoder

from ._lazy import lazy_module
from ._lmnn_neighbors import find_impostors
from ._lmnn_problem import _transpose_targets
from ._optimize import MAX_ITER, lbfgs
from ._parallel import SERIAL, RowChunkPool, blas_threads

kernels = lazy_module("mahal._lmnn_multi_kernels")  # (numba: imported on first use)
lmnn_kernels = lazy_module("mahal._lmnn_kernels")

_CHUNK = 2048  # rows of one product task (within one metric's block)
_MAXCOR = 20  # L-BFGS memory
_WINDOW = 5  # iterations over which tol measures the decrease
_MAX_RUNS = 10  # L-BFGS runs (each ended by a search that changed the function)
# A search that raises the value by at most this share of the decrease since the
# previous search doubles the period (up to max_period); more halves it.
_MISS_TOL = 0.05


def target_distances(X, members, targets, Ls):
    """``d_{y_i}(i, T_ik)`` of every target pair, in its class's metric: ``(n, k)``,
    −inf where a point has fewer target neighbours (``members[c]``: the indices of
    class ``c``)."""
    dist = np.full(targets.shape, -np.inf)
    for idx, L in zip(members, Ls):
        T = targets[idx]
        diff = (X[idx][:, None, :] - X[np.maximum(T, 0)]) @ L.T
        dist[idx] = np.where(T >= 0, np.einsum("nkr,nkr->nk", diff, diff), -np.inf)
    return dist


class _MultiProblem:
    """Data of one multiple-metric problem and its candidate layout."""

    def __init__(self, X, y, targets, mu, n_classes, pool=SERIAL):
        self.Xc = np.ascontiguousarray(X - X.mean(axis=0), dtype=np.float64)
        self.y = np.asarray(y, dtype=np.int64)
        self.targets = np.ascontiguousarray(targets, dtype=np.int64)
        self.targeted_by_ptr, self.targeted_by = _transpose_targets(self.targets)
        self.mu = float(mu)
        self.C = int(n_classes)
        self.n = self.Xc.shape[0]
        self.pool = pool
        self.ranges = pool.ranges(self.n)
        self.members = [np.flatnonzero(self.y == c) for c in range(self.C)]

    # -- search and layout ------------------------------------------------------
    def search(self, Ls, margin):
        """Candidate edges ``(src, dst)``: ``d_{y_l}(i, l) < R_i + 1 + margin``."""
        # (the largest target distance; −inf for a point without target neighbours)
        radius = target_distances(self.Xc, self.members, self.targets, Ls).max(axis=1)
        reach = np.where(radius >= 0, radius + 1.0 + margin, -1.0)
        src, dst = [], []
        for c, idx in enumerate(self.members):
            if idx.shape[0] == 0 or idx.shape[0] == self.n:
                continue
            Zc = self._product(self.Xc, Ls[c])
            inside = self.y == c
            # (the class's own points search nothing in this metric)
            rho2 = np.where(inside, -1.0, reach)
            s, t = find_impostors(Zc, inside.astype(np.int64), rho2, pool=self.pool,
                                  low_precision=True)
            src.append(s)
            dst.append(t)
        src = np.concatenate(src) if src else np.zeros(0, np.int64)
        dst = np.concatenate(dst) if dst else np.zeros(0, np.int64)
        return src, dst

    def _product(self, A, L):
        """``A Lᵀ`` over row chunks of the pool."""
        out = np.empty((A.shape[0], L.shape[0]))
        LT = np.ascontiguousarray(L.T)
        self.pool.map(lambda ch: np.matmul(A[ch[0]:ch[1]], LT, out=out[ch[0]:ch[1]]),
                      self.pool.ranges(A.shape[0]))
        return out

    def layout(self, src, dst):
        """The candidate graph and the stacked rows of every metric (see the module
        docstring): a :class:`_Layout`."""
        return _Layout(self, src, dst)


class _Layout:
    """Candidate graph (by anchor and by end point) and stacked rows per metric."""

    def __init__(self, problem, src, dst):
        n, C, y = problem.n, problem.C, problem.y
        # (counting sorts, stable: by anchor, then the edges by end point)
        self.cand_ptr, order = lmnn_kernels.group_by(src, n)
        self.cand_src, self.cand_idx = src[order], dst[order]
        self.in_ptr, self.in_edge = lmnn_kernels.group_by(self.cand_idx, n)
        need = np.zeros((C, n), dtype=bool)
        need[y, np.arange(n)] = True
        need[y[dst], src] = True
        self.pos = np.full((C, n), -1, dtype=np.int64)
        self.blocks = []  # (c, first row, rows)
        start = 0
        for c in range(C):
            rows = np.flatnonzero(need[c])
            self.pos[c, rows] = start + np.arange(rows.shape[0])
            self.blocks.append((c, start, rows))
            start += rows.shape[0]
        self.n_rows = start
        self.Xs = np.concatenate([problem.Xc[rows] for _, _, rows in self.blocks])
        self.tasks = [(c, a, min(a + _CHUNK, s0 + rows.shape[0]))
                      for c, s0, rows in self.blocks
                      for a in range(s0, s0 + rows.shape[0], _CHUNK)]
        self.n_candidates = int(dst.shape[0])


def _evaluate(problem, layout, Z):
    """Loss, ``U = Lap(W) Z`` and the number of active triplets at ``Z``."""
    n, k = problem.targets.shape
    row_loss = np.empty(n)
    wt = np.empty((n, k))
    edge_weight = np.empty(layout.n_candidates)
    U = np.zeros_like(Z)
    counts = problem.pool.map(lambda ch: kernels.anchor_pass(
        Z, layout.pos, problem.y, problem.targets, layout.cand_ptr, layout.cand_idx,
        problem.mu, ch[0], ch[1], row_loss, wt, edge_weight, U), problem.ranges)
    problem.pool.map(lambda ch: kernels.incoming_pass(
        Z, layout.pos, problem.y, k, wt, problem.targeted_by_ptr,
        problem.targeted_by, layout.in_ptr, layout.in_edge, layout.cand_src,
        edge_weight, ch[0], ch[1], U), problem.ranges)
    return float(row_loss.sum()), U, int(sum(counts))


def _transform(problem, layout, Ls):
    """The stacked ``Z``: metric ``c``'s rows times ``L_cᵀ``."""
    Z = np.empty((layout.n_rows, Ls.shape[1]))
    LT = [np.ascontiguousarray(L.T) for L in Ls]
    problem.pool.map(lambda t: np.matmul(layout.Xs[t[1]:t[2]], LT[t[0]],
                                         out=Z[t[1]:t[2]]), layout.tasks)
    return Z


def _gradient(problem, layout, U):
    """``2 U_cᵀ X_c`` for every metric, ``(C, r, d)``."""
    parts = problem.pool.map(lambda t: U[t[1]:t[2]].T @ layout.Xs[t[1]:t[2]],
                             layout.tasks)
    G = np.zeros((problem.C, U.shape[1], layout.Xs.shape[1]))
    for (c, _, _), part in zip(layout.tasks, parts):
        G[c] += part
    G *= 2.0
    return G


def _inner(problem, layout, U, V):
    return float(sum(problem.pool.map(lambda t: np.vdot(U[t[1]:t[2]], V[t[1]:t[2]]),
                                      layout.tasks)))


class _MultiOracle:
    """Line oracle (:func:`mahal._optimize.lbfgs`) of the multiple-metric objective
    with a candidate graph searched again every ``period`` accepted iterations."""

    def __init__(self, problem, shape, margin, period, max_period):
        self.problem, self.shape = problem, shape
        self.margin, self.period = margin, period
        self.min_period, self.max_period = max(1, period // 2), max(period, max_period)
        self.searched_at = None  # (x, f, g) of the last search
        self.layout = None
        self.since = 0
        self.n_search = 0
        self.n_evals = 0
        self.n_active = 0
        self.t_search = 0.0

    def refresh(self, x):
        """Search at ``x`` and evaluate there: ``(f, g)``."""
        t0 = time.perf_counter()
        Ls = x.reshape(self.shape)
        self.layout = None  # (free the old one first)
        self.layout = self.problem.layout(*self.problem.search(Ls, self.margin))
        self.n_search += 1
        self.since = 0
        self.t_search += time.perf_counter() - t0
        self.x = x.copy()
        self.Z = _transform(self.problem, self.layout, Ls)
        f, g = self._value_grad(self.Z)
        self.searched_at = (self.x, f, g)
        return f, g

    def _value_grad(self, Z):
        f, U, self.n_active = _evaluate(self.problem, self.layout, Z)
        self.n_evals += 1
        return f, _gradient(self.problem, self.layout, U).ravel()

    def start(self, x):
        # (a run that starts where the last search was made: its value and gradient)
        if self.layout is not None and self.since == 0 and np.array_equal(
                x, self.searched_at[0]):
            return self.searched_at[1], self.searched_at[2].copy()
        return self.refresh(np.array(x, dtype=np.float64))

    def set_direction(self, p):
        self.p = p
        self.ZP = _transform(self.problem, self.layout, p.reshape(self.shape))
        self.last = None

    def trial(self, alpha):
        Zt = self.ZP * alpha
        Zt += self.Z
        f, U, act = _evaluate(self.problem, self.layout, Zt)
        self.n_evals += 1
        self.last = (alpha, Zt, f, U, act)
        return f, 2.0 * _inner(self.problem, self.layout, U, self.ZP)

    def accept(self, alpha):
        if self.last is None or self.last[0] != alpha:
            self.trial(alpha)
        _, Zt, f, U, self.n_active = self.last
        self.x = self.x + alpha * self.p
        self.Z, self.last, self.ZP = Zt, None, None
        self.since += 1
        if self.since >= self.period:
            f_before = self.searched_at[1]
            f_new, g = self.refresh(self.x)
            # the impostors the old graph missed cost little: search less often
            if f_new - f <= _MISS_TOL * max(f_before - f, 0.0):
                self.period = min(2 * self.period, self.max_period)
            else:
                self.period = max(self.period // 2, self.min_period)
            return f_new, g
        return f, _gradient(self.problem, self.layout, U).ravel()


def multi_metric_solve(X, y, target_neighbors, L0, n_classes, mu=0.5, max_iter=200,
                       tol=1e-5, margin=1.0, period=10, max_period=40, verbose=False,
                       n_threads=1, callback=None, name="LMNNMultiMetric"):
    """Minimise the multiple-metric LMNN objective with L-BFGS.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), int64 class codes ``0 .. n_classes − 1``
    target_neighbors : ndarray of shape (n, k), int64 (−1 = none), same class
    L0 : ndarray of shape (r, d) or (n_classes, r, d)
        Starting metric(s): one for every class, or one per class.
    n_classes : int
    mu : float
        Weight of the push term.
    max_iter : int
        L-BFGS iterations in all.
    tol : float
        A run stops when the loss fell by less than ``tol`` (relative) per
        iteration over its last ``_WINDOW`` iterations; the fit ends when a search
        at that point finds no change in the value beyond ``tol``.
    margin : float
        Room (in squared distance) of the candidate search beyond the hinge's
        reach.
    period : int
        Iterations between the first candidate searches; the interval doubles
        (up to ``max_period``) while searches find little the old candidates
        missed, and halves (down to ``period // 2``) when they find more.
    max_period : int
    verbose : bool
    n_threads : int
    callback : callable or None
        ``callback(Ls, n_iter)`` after every iteration (a copy of the metrics,
        shape ``(n_classes, r, d)``).
    name : str
        Prefix of the verbose output.

    Returns
    -------
    Ls : ndarray of shape (n_classes, r, d)
    n_iter : int
    converged : bool
    info : dict
        ``loss`` (verified by a search), ``n_evals``, ``n_searches``,
        ``n_candidates`` (at the last search), ``time``, ``search_time``.
    """
    t_start = time.perf_counter()
    L0 = np.asarray(L0, dtype=np.float64)
    if L0.ndim == 2:
        L0 = np.repeat(L0[None], n_classes, axis=0)
    shape = L0.shape
    pool = RowChunkPool(n_threads)
    try:
        with blas_threads(n_threads, kernels_threaded=pool.n_threads > 1):
            problem = _MultiProblem(X, y, target_neighbors, mu, n_classes, pool)
            oracle = _MultiOracle(problem, shape, margin, period, max_period)
            return _run(oracle, L0.ravel().copy(), max_iter, tol, verbose, callback,
                        name, t_start)
    finally:
        pool.close()


def _run(oracle, x, max_iter, tol, verbose, user_callback, name, t_start):
    shape = oracle.shape
    n_iter = 0
    state = {"t": time.perf_counter()}
    if verbose:
        header = "{:>10} {:>20} {:>12} {:>12} {:>10}".format(
            "Iteration", "Objective Value", "#Active", "#Candidates", "Time(s)")
        print(f"[{name}]\n[{name}] {header}\n[{name}] {'-' * len(header)}")

    def callback(_, f, xk):
        nonlocal n_iter
        n_iter += 1
        if user_callback is not None:
            user_callback(xk.reshape(shape).copy(), n_iter)
        if verbose:
            now = time.perf_counter()
            print("[{}] {:>10} {:>20.6e} {:>12,} {:>12,} {:>10.2f}".format(
                name, n_iter, f, oracle.n_active, oracle.layout.n_candidates,
                now - state["t"]), flush=True)
            state["t"] = now

    converged = False
    warm = None
    f_verified = None
    for _ in range(_MAX_RUNS):
        res = lbfgs(oracle, x, max_iter - n_iter, ftol=tol, memory=_MAXCOR,
                    callback=callback, warm=warm, window=_WINDOW)
        x, warm = res.x, res
        # verify: a search at the final point; an unchanged value ends the fit
        f_verified, _ = oracle.refresh(x)
        if res.status == MAX_ITER or n_iter >= max_iter:
            break
        if abs(f_verified - res.fun) <= tol * max(abs(f_verified), 1.0):
            converged = True
            break
        if verbose:
            print(f"[{name}] the search changed the value ({res.fun:.6e} -> "
                  f"{f_verified:.6e}): L-BFGS goes on", flush=True)
    info = {"loss": f_verified, "n_evals": oracle.n_evals,
            "n_searches": oracle.n_search,
            "n_candidates": oracle.layout.n_candidates,
            "time": time.perf_counter() - t_start, "search_time": oracle.t_search}
    return x.reshape(shape), n_iter, converged, info


def multi_metric_loss_grad(Ls, X, y, target_neighbors, mu=0.5):
    """The multiple-metric LMNN objective and its gradient (exact candidate search).

    Parameters
    ----------
    Ls : ndarray of shape (n_classes, r, d)
        One metric per class, in the order of the sorted labels.
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    target_neighbors : ndarray of shape (n, k), int (−1 = none)
    mu : float
        Weight of the push term.

    Returns
    -------
    loss : float
    grad : ndarray of shape (n_classes, r, d)
    n_active : int
        Number of triplets with a positive hinge argument.
    """
    Ls = np.asarray(Ls, dtype=np.float64)
    y = LabelEncoder().fit_transform(y).astype(np.int64)
    problem = _MultiProblem(np.asarray(X, dtype=np.float64), y, target_neighbors, mu,
                            Ls.shape[0])
    # (margin 0: the pairs the hinge can reach, up to float32 rounding of the
    # search, which a small margin covers)
    layout = problem.layout(*problem.search(Ls, 1e-3))
    f, U, act = _evaluate(problem, layout, _transform(problem, layout, Ls))
    return f, _gradient(problem, layout, U), act
