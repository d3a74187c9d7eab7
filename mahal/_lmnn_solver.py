"""LMNN's solver: L-BFGS over ``L`` with exact loss and gradient.

For each point ``i`` its ``k`` target neighbours ``j(i)`` are its ``k`` nearest
same-class points in the input space, fixed before learning. With squared learned
distances ``d_ij = ‖L(x_i − x_j)‖²`` the objective is

    ε(L) = (1 − μ) Σ_{i, j(i)} d_ij + μ Σ_{i, j(i), l: y_l ≠ y_i} [1 + d_ij − d_il]_+

(``μ`` = ``weight_push_loss`` = ``1 − regularization``, the estimator's parameters).
:func:`mahal._lmnn_problem.lmnn_loss_grad` is the plain function of that objective;
:func:`lmnn_solve` minimises it over ``L``; ``mahal.reference.lmnn`` hands the same
objective (in ``M = LᵀL``) to cvxpy.

Design (the measurements behind each choice are in ``docs/solver_notes.rst``):

- L-BFGS (:func:`mahal._optimize.lbfgs`) with its line search in the transformed
  space: along a direction ``P`` a trial point is ``Z + α X Pᵀ`` (an axpy) and its
  directional derivative ``2 ⟨U, X Pᵀ⟩``, so an iteration costs two products with
  ``X`` however many trials its line search makes.
- The hinge is Huber-smoothed with a width that shrinks over a few stages (default
  1, 0.1, then 0 = the exact hinge), each warm-started from the previous one's point
  and correction pairs: the quasi-Newton model needs a smooth function (on the exact
  hinge alone L-BFGS stalls early). The last stage starts from an exact value,
  restarts L-BFGS with a fresh memory when it stops on a small relative decrease
  right after real progress (a line search caught on a kink), and goes back to the
  best point a search verified if it ended above it.
- Impostor *candidates* are kept in a directed sparse graph: row ``i`` holds the
  differently-labelled points within ``(1 + slack)`` times ``i``'s margin radius
  ``√(1 + max_j d_ij)`` at the last search. The loss kernel filters them with the
  exact current radius, so loss and gradient are exact unless an impostor came from
  beyond the enlarged radius. The graph is searched again every ``period``
  iterations, at an accepted point (never inside a line search, so the function
  stays the same along a line); the impostors the old graph missed there are added
  to the evaluation already made. ``period`` adapts to how much the old graph
  missed; the final ``L`` is always verified by a search. ``slack`` halves when the
  enlarged radius would hold too many candidates (high intrinsic dimension).
- The search visits each pair of classes once, in blocks of (rows of class c) ×
  (points of the classes after c), with BLAS dot products in float32 and one numba
  pass comparing with both points' radii. Memory: ``O(n k + candidates + block)``,
  never ``n × n``. Small problems are searched in one compiled pass.
- Memory budget: the candidate graph holds at most ``max(10⁷, 20 n k)`` pairs
  (``max_candidates``). Where a search finds more (classes that overlap heavily:
  random labels, many duplicates), no graph is stored: every evaluation, line-search
  trials included, streams over blocks of distances (:func:`kernels.stream_block`,
  each pair of points of different classes once), so values stay exact in
  ``O(n (k + r))`` memory per lane (``_STREAM_LANES``) plus a block per thread, at
  the cost of a pass over all those pairs per evaluation. The solver goes back to a
  graph (with half the slack) as soon as one fits in half the budget.
- The gradient is ``2 Uᵀ X`` with ``U = Lap(W) Z`` for the sparse weighted pair
  graph ``W`` (target pairs and active impostor pairs), computed per row by a numba
  kernel: no outer products. Large problems form ``Uᵀ X`` and ``X Pᵀ`` in float32;
  values and slopes along a line stay exact for the direction actually followed.
- Parallelism (:mod:`mahal._parallel`): the kernels release the GIL and run on row
  chunks on ``n_threads`` threads; chunks do not depend on the number of threads, so
  results are identical for any ``n_jobs``. Small problems run each evaluation's
  kernels as a single compiled call (fixed costs dominate there).
"""

import sys
import time

import numpy as np

from . import _lmnn_dense
from ._lazy import lazy_module
from ._lmnn_problem import _F32_FLOPS, _ROWS_PER_THREAD, _Problem, _default_budget
from ._optimize import lbfgs
from ._parallel import RowChunkPool, blas_threads

kernels = lazy_module("mahal._lmnn_kernels")  # (numba: imported on first use)

# A refresh that finds at most this share of the active impostor pairs missed by
# the old candidate graph does not shorten the search period. (Missed pairs are
# added exactly at the refresh point, so this only bounds how stale the values
# between two searches may be.) In the smoothed stages, which only warm-start the
# exact one, the share missed does not shorten the period; in every stage, an
# exact value that has risen since the previous search does (see _settle).
_MISS_TOL = 0.1
_MAXCOR = 20  # L-BFGS memory
# The last stage restarts L-BFGS (at most _MAX_RESTARTS times) when its final
# check found missed impostors, or when it stopped on ftol within half its budget
# after lowering the objective by more than _RESTART_GAIN (relative).
_MAX_RESTARTS = 3
_RESTART_GAIN = 0.01
_STAGE_SHARE = 1 / 3  # share of max_iter for the smoothed stages together
# Every stage stops when the objective fell by less than ``tol`` (relative) per
# iteration on average over the last _WINDOW iterations. One iteration's decrease
# (scipy's ftol rule, _WINDOW = 1) is a noisy test on the exact hinge, which is
# piecewise linear: an iteration caught on a kink makes little progress far from
# the optimum, and one that crosses a kink makes much progress near it. The
# average over a window is met at a practical optimum (how close, and at what
# cost: docs/benchmarks.rst, "LMNN: defaults that converge").
_WINDOW = 10
# ... and also when the objective fell by less than _STALL[1]·tol (relative) in all
# over the last _STALL[0] iterations: a flat run (on data whose classes overlap
# completely, an iteration costs minutes) stops without waiting out the window.
_STALL = (3, 0.1)


class _LossOracle:
    """LMNN loss/gradient for L-BFGS, with a lazily refreshed impostor-candidate graph.

    Candidates of ``i`` are the other-class points within ``(1 + slack)`` times its
    margin radius at the last search; the loss kernel filters them with the exact
    current radius, so the value is exact whenever no impostor has come from beyond
    the enlarged radius. The graph is searched again every ``period`` iterations
    (at an accepted point, never inside a line search, so that the function stays
    the same along a line); the terms of the impostors that the old graph had
    missed there are added to the evaluation already made (``kernels.add_missed``, a
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
        self.problem = problem
        # the products of the search directions and of the gradient in float32
        # from this size on (see _F32_FLOPS)
        self.low_precision = problem.Xc.size * r >= _F32_FLOPS
        # memory for candidates: ~24 bytes each
        self.max_candidates = (max_candidates if max_candidates is not None
                               else _default_budget(problem))
        self.n_capped = 0
        self.n_streamed = 0  # evaluations made without a graph
        self.log = None  # prints a message (verbose)
        self.streaming = False
        self.peak_candidates = 0  # most candidate pairs stored at once
        self.current_slack = slack
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
        rho2 = radius * (1.0 + self.current_slack) ** 2
        res = self.problem.search(Z, rho2, low_precision=True,
                               max_pairs=self.max_candidates)
        if res is None:
            # Too many candidates within the enlarged radius (high intrinsic
            # dimension, or classes that overlap): no graph; every evaluation
            # streams over blocks of distances (exact values, memory independent
            # of the number of impostors) until the graph with a smaller slack
            # fits in half the budget again (see _settle). (An exact-radius graph
            # in its place goes stale at the first trial step.)
            self.n_capped += 1
            self.current_slack = max(0.01, 0.5 * self.current_slack)
            self.period = 1
        elif (res[1].shape[0] < self.max_candidates // 4
              and self.current_slack < self.slack):
            self.current_slack = min(self.slack, 1.25 * self.current_slack)
        if self.log is not None and (res is None) != self.streaming:
            self.log(f"More than {self.max_candidates:,} impostor candidates: "
                     "evaluating from blocks of distances (exact, nothing stored)."
                     if res is None else f"{res[1].shape[0]:,} impostor candidates: "
                     "back to the candidate graph.")
        self.indptr, self.indices = (None, None) if res is None else res
        self.streaming = res is None
        self.problem.stream_rho = (1.0 + self.current_slack) ** 2
        if res is not None:
            self.peak_candidates = max(self.peak_candidates, res[1].shape[0])
        self.n_search += 1
        self.since = 0
        self.t_search += time.perf_counter() - t0

    def _weights(self, Z, aux=None):
        self.n_evals += 1
        self.n_streamed += self.streaming
        return self.problem.weights(Z, self.indptr, self.indices, self.smooth, aux)

    def _settle(self, force_search=False, evaluation=None):
        """Finish an evaluation at the current point ``self.Z``: search again if
        due (or forced), then form the gradient. ``evaluation = (f, U, act, n_pairs)`` is the
        evaluation there on the current graph, if one was made (a line-search
        trial); after a search, the terms of the impostors that the old graph had
        missed are added to it (:func:`kernels.add_missed`), so it need not be
        evaluated again."""
        Z = self.Z
        missed = False
        searched = True
        if self.streaming:
            # (every streamed value is exact: nothing to search for)
            if evaluation is None:
                evaluation = self._weights(Z)
            if self.problem.stream_near <= self.max_candidates // 2:
                self._refresh(Z, self.problem.radius(Z))  # the graph fits again
        elif self.indptr is None:
            self._refresh(Z, self.problem.radius(Z))
            evaluation = self._weights(Z)
        elif force_search or self.since >= self.period:
            self._drop_line_buffers()
            patch = evaluation is not None
            old_ptr, old_idx = self.indptr, self.indices
            radius = self.problem.radius(Z)
            self._refresh(Z, radius)
            if self.streaming:  # (the old graph, over budget now, missed some)
                evaluation = self._weights(Z)
                n_miss = n_pairs = 1
            else:
                if not patch:
                    evaluation = self._weights(Z)
                f, U, act, n_pairs = evaluation
                n_miss, df, dact = self.problem.add_missed(
                    old_ptr, old_idx, self.indptr, self.indices, Z, radius,
                    self.smooth, U, patch)
            if patch and not self.streaming:
                n_pairs += n_miss
                evaluation = f + df, U, act + dact, n_pairs
            missed = n_miss > 0
            # The period halves when the old graph lacked more than _MISS_TOL of
            # the active impostor pairs (in the last stage; the smoothed ones only
            # warm-start it), or when the exact value has risen since the last
            # search: then values on the stale graph led uphill.
            rose = self._exact_f is not None and evaluation[0] > self._exact_f
            if rose or (n_miss > _MISS_TOL * n_pairs and self.smooth == 0.0):
                self.n_missed += 1
                self.period = max(1, self.period // 2)
            else:
                self.period = min(self.max_period, 2 * self.period)
        else:
            searched = False
            if evaluation is None:
                evaluation = self._weights(Z)
        f, U, act, _ = evaluation
        # (whether this point's value is exact and checked by a search, and what
        # the search found)
        self.checked = (f, missed) if searched else None
        if searched:
            self._exact_f = f
        self.since += 1
        if self.run_start_f is None:
            self.run_start_f = f
        self.n_active = act
        self.n_candidates = 0 if self.streaming else int(self.indices.shape[0])
        return f, self.problem.grad(U, low_precision=self.low_precision), missed

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
        self.Z = self.problem.transform(L)
        return self._settle(force_search)

    def _drop_line_buffers(self):
        # X Pᵀ, the trial point and the last trial's evaluation: n × r arrays each,
        # not needed across a search (dropping them lowers the peak memory)
        self.ZP = self._Zt = self._aux = self._last = None

    # line oracle (mahal._optimize)
    def start(self, x):
        f, g, _ = self.evaluate(x.reshape(self.r, -1))
        return f, g.ravel()

    def set_direction(self, p):
        self.ZP = self.problem.transform(p.reshape(self.r, -1),
                                      low_precision=self.low_precision)
        self._last = None

    def trial(self, alpha):
        if self._Zt is None or self._Zt is self.Z:
            self._Zt = self.problem.empty_like(self.Z)
        if self._aux is None:
            self._aux = self.problem.aux_buffers(self.r)
        self._last = None  # (frees the previous trial's U first)
        self.n_evals += 1
        self.n_streamed += self.streaming
        evaluation, slope = self.problem.trial(self.Z, self.ZP, alpha, self._Zt, self._aux,
                                    self.indptr, self.indices, self.smooth)
        self._last = alpha, evaluation
        return evaluation[0], slope

    def accept(self, alpha):
        if self._last is None or self._last[0] != alpha:
            self.trial(alpha)
        evaluation = self._last[1]
        self._last = None
        self.Z, self._Zt = self._Zt, self.Z
        f, g, _ = self._settle(evaluation=evaluation)
        return f, g.ravel()


def _smoothing_schedule(smoothing):
    if smoothing is None:
        return (0.0,)
    return tuple(float(s) for s in np.ravel(smoothing))


def lmnn_solve(X, y, target_neighbors, L0, mu=0.5, max_iter=1000, tol=1e-5,
               smoothing=(1.0, 0.1, 0.0), verbose=False, slack=0.15, n_threads=1,
               max_period=16, name="LMNN", low_precision=None, callback=None,
               max_candidates=None):
    """Minimise the LMNN objective over ``L`` with L-BFGS.

    Parameters
    ----------
    X : ndarray of shape (n, d) or DistributedPoints
        (a :class:`mahal._dask_cluster.DistributedPoints`: evaluated on the cluster,
        :mod:`mahal._dask_lmnn`)
    y : ndarray of shape (n,), int64 labels
    target_neighbors : ndarray of shape (n, k), int64 (−1 = none)
    L0 : ndarray of shape (r, d)
    mu : float
    max_iter : int
        Total L-BFGS iterations over all smoothing stages (the smoothed stages
        together at most ``_STAGE_SHARE`` of them).
    tol : float
        A stage stops when the loss fell by less than ``tol`` (relative) per
        iteration on average over its last ``_WINDOW`` iterations.
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
    name : str
        Prefix of the verbose output.
    low_precision : bool or None, default=None
        Form the products ``X Pᵀ`` (search direction) and ``Uᵀ X`` (gradient) in
        float32; None: from ``n d r ≥ _F32_FLOPS`` multiply-adds on.
    callback : callable or None
        Called after every L-BFGS iteration as ``callback(L, n_iter)``, with the
        current ``L`` of shape (r, d) (a copy) and the iterations so far.
    max_candidates : int, optional
        Memory budget: most impostor-candidate pairs stored in the graph
        (default ``max(10⁷, 20 n k)``, ~0.5 GB). Where even the impostors
        themselves exceed it, evaluations stream over blocks of distances
        instead (exact values, memory independent of the number of impostors;
        each evaluation then costs a pass over all pairs of points of different
        classes) until the graph fits in half the budget again.

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
        False when the last stage ran out of ``max_iter`` before meeting ``tol``
        (on a value verified by an impostor search).
    info : dict
        Counts and timings (``n_evals``, ``n_searches``, ``time``, ...), and
        ``low_precision`` (whether float32 products were used) and ``verified``:
        the ``(n_iter, loss)`` of the exact stage's points whose loss an impostor
        search verified (``n_iter`` as passed to ``callback``; 0 is ``L0``). The
        returned ``L`` is one of them. ``peak_candidates``: the most candidate
        pairs stored at once; ``n_streamed``: evaluations made without a graph.
    """
    if hasattr(X, "client"):  # X on a dask cluster
        from ._dask_lmnn import lmnn_solve_on_cluster

        return lmnn_solve_on_cluster(
            X, y, target_neighbors, L0, mu=mu, max_iter=max_iter, tol=tol,
            smoothing=smoothing, verbose=verbose, slack=slack, max_period=max_period,
            name=name, low_precision=low_precision, callback=callback,
            max_candidates=max_candidates)
    r, d = L0.shape
    if (not low_precision and max_candidates is None
            and _lmnn_dense.use_dense(X.shape[0], target_neighbors.shape[1], r)
            and _lmnn_dense.in_budget()):
        # small: dense NumPy evaluation, no numba (see mahal._lmnn_dense)
        return _lmnn_lbfgs(_lmnn_dense.DenseProblem(X, y, target_neighbors, mu), L0,
                           max_iter, tol, _smoothing_schedule(smoothing), verbose, slack,
                           max_period, name, low_precision, callback,
                           oracle_class=_lmnn_dense.DenseOracle)
    # Threads only pay off from a few thousand rows each.
    pool = RowChunkPool(min(n_threads, max(1, X.shape[0] // _ROWS_PER_THREAD)))
    try:
        with blas_threads(n_threads, kernels_threaded=pool.n_threads > 1):
            return _lmnn_lbfgs(_Problem(X, y, target_neighbors, mu, pool), L0,
                               max_iter, tol, _smoothing_schedule(smoothing), verbose,
                               slack, max_period, name, low_precision, callback,
                               max_candidates)
    finally:
        pool.close()


def _lmnn_lbfgs(problem, L0, max_iter, tol, stages, verbose, slack, max_period, name,
                low_precision, user_callback, max_candidates=None, oracle_class=None):
    r, d = L0.shape
    if oracle_class is None:
        oracle = _LossOracle(problem, r, slack=slack, max_period=max_period,
                             max_candidates=max_candidates)
    else:
        oracle = oracle_class(problem, r, slack=slack, max_period=max_period)
    if verbose:
        oracle.log = lambda message: print(f"[{name}] {message}", flush=True)
    if low_precision is not None:
        oracle.low_precision = bool(low_precision)
    verified = []  # (n_iter, loss) of the exact stage's points a search verified
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
            verified.append((n_iter, oracle.checked[0]))
            if oracle.checked[0] < best[0]:
                best[:] = oracle.checked[0], xk.copy()
        if user_callback is not None:
            user_callback(xk.reshape(r, d).copy(), n_iter)
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
        x0, n_iter0 = x, n_iter
        best = [np.inf, None]  # the last stage's best point verified by a search
        res = lbfgs(oracle, x, budget, ftol=tol, gtol=1e-12, memory=_MAXCOR,
                    callback=callback, warm=warm, window=_WINDOW,
                    stall=_STALL)
        x = res.x
        # The next stage (a less smoothed hinge) starts with this run's
        # correction pairs (fewer evaluations at equal objective).
        warm = res
        if last:
            # Verify with an exact search at the final L; if impostors were
            # missed, continue from there with the refreshed graph.
            # A run that stopped early on a small relative decrease (ftol) while
            # still making progress is often a line search caught on a kink of the
            # hinge: a fresh L-BFGS memory gets past it.
            f_start = oracle.run_start_f
            verified.append((n_iter0, f_start))
            if oracle.checked is not None:
                # the run ended on a point that its periodic search has just
                # verified (the oracle's current point is always the run's x)
                f_end, missed = oracle.checked
            else:
                f_end, _, missed = oracle.evaluate(x.reshape(r, d), force_search=True)
                verified.append((n_iter, f_end))
            stalled = (res.status == 0 and res.nit < budget // 2
                       and f_start - f_end > _RESTART_GAIN * abs(f_start))
            # Values on a stale candidate graph underestimate the loss; if L-BFGS
            # followed them to a point whose exact value is above the run's exact
            # start or above another point of the run that a search verified, go
            # back to the best of them and search at every evaluation from now on.
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
                n_capped=oracle.n_capped, final_slack=oracle.current_slack,
                n_missed=oracle.n_missed, search_time=oracle.t_search,
                time=time.perf_counter() - t_start, n_candidates=oracle.n_candidates,
                n_active=oracle.n_active, n_restarts=n_restarts,
                low_precision=oracle.low_precision, verified=sorted(set(verified)),
                peak_candidates=oracle.peak_candidates, n_streamed=oracle.n_streamed)
    return x.reshape(r, d), n_iter, converged, info
