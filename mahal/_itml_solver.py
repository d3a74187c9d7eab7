"""The ITML solver (Davis, Kulis, Jain, Sra & Dhillon, ICML 2007) and its objective.

ITML learns ``M`` close to a prior ``M0`` in the LogDet divergence, subject to
distance constraints on pairs softened by slack variables:

    min_{M ⪰ 0, ξ}  tr(M M0⁻¹) − log det(M M0⁻¹) − d
                    + γ Σ_c (ξ_c/ξ0_c − log(ξ_c/ξ0_c) − 1)
    s.t.  d_M(x_c, x'_c) ≤ ξ_c  (similar pairs, ξ0_c = u),
          d_M(x_c, x'_c) ≥ ξ_c  (dissimilar pairs, ξ0_c = l),

with ``d_M(x, x') = (x − x')ᵀ M (x − x')`` (squared). :func:`itml_objective` is that
objective as a function of ``M`` alone (the best slack for a given ``M`` is
``ξ_c = max(d_c, u)`` on a similar pair, ``min(d_c, l)`` on a dissimilar one);
:func:`mahal.reference.itml` hands the same program to cvxpy.

How it is solved
----------------
* Cyclic Bregman projections (the paper's Algorithm 1): each constraint in turn,
  ``A`` is projected onto ``{δᵀ A δ = ξ}`` in the LogDet divergence, jointly with its
  slack, and the projection is corrected by the constraint's dual variable ``λ_c ≥ 0``
  (Hildreth-style, so that inequality constraints converge to the optimum of the whole
  program). A projection is a rank-one update ``A ← A + β (Aδ)(Aδ)ᵀ``: ``O(d²)``, no
  inverse, no eigen-decomposition, and ``A`` stays positive definite.
* The step is the one of the authors' code (and metric-learn's), which solves the
  projection's stationarity conditions exactly: ``α = min(λ_c, γ/(γ+1) (1/p − 1/ξ_c))``
  on a similar pair (``p = δᵀAδ``), ``β = α / (1 − α p)``,
  ``ξ_c ← (1/ξ_c + α/γ)⁻¹``; signs flipped on a dissimilar pair. Algorithm 1 as
  printed in the paper (``α = min(λ, δ/2 (1/p − γ/ξ))``) has typos; it does not
  solve those conditions.
* Order: all similar pairs, then all dissimilar pairs, each in the given order (as
  metric-learn, so that both go through the same iterates).
* Stopping rule: after each sweep, the relative change of the dual variables
  ``‖λ − λ_old‖₁ / (‖λ‖₂ + ‖λ_old‖₂) < tol`` (the authors' code and metric-learn; the
  paper itself says "until convergence"). ``λ = 0`` after a sweep means that ``M0``
  satisfies every constraint: it is the optimum.
* A sweep runs in the numba kernel :func:`mahal._itml_kernels.bregman_sweep` (one
  pass over ``A`` per projection); a problem small enough that importing numba would
  cost more than the whole fit runs its first sweeps in NumPy
  (:func:`_bregman_sweep_numpy`, the same arithmetic), until ``_NUMPY_PROJECTIONS``
  projections have been done in the process.
"""

import time
import warnings

import numpy as np
from scipy.linalg.blas import dger
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state

from ._lazy import NumpyBudget, lazy_module

kernels = lazy_module("mahal._itml_kernels")  # (numba: imported on first use)

__all__ = ["itml_solve", "itml_objective", "default_bounds"]

# Projections run in NumPy before the kernel takes over (while the kernel module is
# not yet imported): about what loading numba and the cached kernel costs, so that a
# small fit (ITML_Supervised on wine) never imports numba (docs/solver_notes.rst).
_NUMPY_PROJECTIONS = 60_000
# (the budget is the process's, so a process that fits many such problems pays
# numba's start-up once, not every fit)
_numpy = NumpyBudget("mahal._itml_kernels", _NUMPY_PROJECTIONS)
# Default bounds: exact percentiles over every pair of distinct points up to this many
# pairs (n ≤ 2000); beyond, over this many pairs drawn at random.
_EXACT_PAIRS = 2_000_000
_SAMPLED_PAIRS = 1_000_000
_BLOCK = 1 << 20  # float64 entries per work block


def itml_objective(M, diffs, similar, bounds, gamma, M0):
    """The ITML objective at ``M`` (the slack variables at their best for ``M``).

    ``tr(M M0⁻¹) − log det(M M0⁻¹) − d + γ Σ_c φ(ξ_c/ξ0_c)``, ``φ(t) = t − log t − 1``,
    with ``ξ_c = max(d_c, u)`` on similar pairs and ``min(d_c, l)`` on dissimilar ones
    (``d_c = δ_cᵀ M δ_c``, ``(u, l) = bounds``).

    Parameters
    ----------
    M : ndarray of shape (d, d)
        A symmetric positive definite matrix.
    diffs : ndarray of shape (m, d)
        ``δ_c = x_c − x'_c``.
    similar : ndarray of shape (m,), bool
    bounds : (float, float)
        ``(u, l)``: the targets of similar and of dissimilar pairs.
    gamma : float
        Weight of the slack term; ``inf`` means hard constraints (the value is then
        ``inf`` when a constraint is violated by more than a relative ``1e-9``).
    M0 : ndarray of shape (d, d)
        The prior, symmetric positive definite.

    Returns
    -------
    value : float
        ``inf`` when ``M`` is not positive definite, or a dissimilar pair has
        distance 0.
    """
    M = np.asarray(M, dtype=np.float64)
    d = M.shape[0]
    sign, logdet_M = np.linalg.slogdet(M)
    if sign <= 0:
        return np.inf
    L0 = np.linalg.cholesky(M0)
    _, logdet_M0 = np.linalg.slogdet(M0)
    # tr(M M0⁻¹) = tr(L0⁻¹ M L0⁻ᵀ)
    W = np.linalg.solve(L0, np.linalg.solve(L0, M).T)
    value = np.trace(W) - logdet_M + logdet_M0 - d
    dist = np.einsum("ij,jk,ik->i", diffs, M, diffs)
    u, l = bounds
    with np.errstate(divide="ignore"):
        ratio = np.where(similar, np.maximum(dist / u, 1.0),
                         np.minimum(dist / l, 1.0))
        phi = np.where(ratio > 0, ratio - np.log(np.where(ratio > 0, ratio, 1.0)) - 1.0,
                       np.inf)
    if np.isinf(gamma):
        feasible = np.where(similar, dist <= u * (1 + 1e-9), dist >= l * (1 - 1e-9))
        return float(value) if feasible.all() else np.inf
    return float(value + gamma * phi.sum())


def default_bounds(points, random_state=None):
    """The default bounds: the 5th and 95th percentiles of the Euclidean distances
    between distinct points (metric-learn's, without its self-distances).

    metric-learn computes ``np.percentile(pairwise_distances(points), (5, 95))`` over
    the ``n × n`` matrix, whose ``n`` zeros on the diagonal (a point's distance to
    itself) make the 5th percentile 0 whenever ``n ≤ 19``, and then ``u = 1e-9``. Here
    the percentiles are over the pairs ``i < j``: all of them when there are at most
    ``_EXACT_PAIRS``, else ``_SAMPLED_PAIRS`` pairs ``i ≠ j`` drawn with
    ``random_state``; never an ``n × n`` matrix.

    Parameters
    ----------
    points : ndarray of shape (n, d)
        Distinct points, ``n ≥ 2``.
    random_state : int, RandomState or None
        For sampling pairs of a large ``points``.

    Returns
    -------
    bounds : ndarray of shape (2,)
        ``[u, l]``.
    """
    n = points.shape[0]
    if n * (n - 1) // 2 <= _EXACT_PAIRS:
        from scipy.spatial.distance import pdist

        return np.percentile(pdist(points), (5, 95))
    rng = check_random_state(random_state)
    i = rng.randint(0, n, size=_SAMPLED_PAIRS)
    j = rng.randint(0, n - 1, size=_SAMPLED_PAIRS)
    j += j >= i  # (never i itself)
    dist = np.empty(_SAMPLED_PAIRS)
    step = max(1, _BLOCK // max(points.shape[1], 1))
    for s in range(0, _SAMPLED_PAIRS, step):
        D = points[i[s:s + step]] - points[j[s:s + step]]
        dist[s:s + step] = np.sqrt(np.einsum("ij,ij->i", D, D))
    return np.percentile(dist, (5, 95))


def _bregman_sweep_numpy(A, diffs, similar, dual, slack, gamma):
    """:func:`mahal._itml_kernels.bregman_sweep` in NumPy (for small problems).

    At these sizes (``d`` of ten or so) a projection costs NumPy's per-call overhead
    more than arithmetic: the scalars live in Python lists during the sweep, and the
    rank-one update is BLAS's ``dger`` in place (on ``Aᵀ``, Fortran-ordered: the
    update is symmetric), with no temporary outer product.
    """
    if np.isinf(gamma):
        gamma_proj, inv_gamma = 1.0, 0.0
    else:
        gamma_proj, inv_gamma = gamma / (gamma + 1.0), 1.0 / gamma
    At = A.T
    lams, xis, sims = dual.tolist(), slack.tolist(), similar.tolist()
    dot = np.dot
    for c, v in enumerate(diffs):
        Av = dot(A, v)
        p = float(dot(v, Av))
        if p <= 0.0:
            continue
        lam, xi = lams[c], xis[c]
        if sims[c]:
            alpha = min(lam, gamma_proj * (1.0 / p - 1.0 / xi))
            beta = alpha / (1.0 - alpha * p)
            xis[c] = 1.0 / (1.0 / xi + alpha * inv_gamma)
        else:
            alpha = min(lam, gamma_proj * (1.0 / xi - 1.0 / p))
            beta = -alpha / (1.0 + alpha * p)
            xis[c] = 1.0 / (1.0 / xi - alpha * inv_gamma)
        lams[c] = lam - alpha
        if beta != 0.0:
            dger(beta, Av, Av, a=At, overwrite_a=1)
    dual[:] = lams
    slack[:] = xis


def itml_solve(diffs, similar, bounds, M0, *, gamma=1.0, max_iter=1000, tol=1e-3,
               verbose=False, name="ITML"):
    """Minimise the ITML objective (:func:`itml_objective`) by cyclic Bregman
    projections.

    Parameters
    ----------
    diffs : ndarray of shape (m, d)
        ``δ_c = x_c − x'_c`` of the constrained pairs, none of them zero.
    similar : ndarray of shape (m,), bool
        True for a similar pair (``d_M ≤ u``), False for a dissimilar one.
    bounds : (float, float)
        ``(u, l)``, both positive.
    M0 : ndarray of shape (d, d)
        The prior, symmetric positive definite; also the starting point.
    gamma : float, default=1.0
        Slack trade-off (``inf``: hard constraints).
    max_iter : int, default=1000
        Maximum number of sweeps over the constraints.
    tol : float, default=1e-3
        Stop when the relative change of the dual variables over a sweep is below it.
    verbose : bool, default=False
        Print one line per sweep.
    name : str
        For messages.

    Returns
    -------
    A : ndarray of shape (d, d)
    n_iter : int
        Sweeps done.
    converged : bool
    info : dict
        ``dual`` and ``slack`` (in the order of ``diffs``), ``conv`` (the last
        relative change), ``numpy_sweeps`` (sweeps done in NumPy).
    """
    diffs = np.asarray(diffs, dtype=np.float64)
    similar = np.asarray(similar, dtype=bool)
    order = np.concatenate([np.flatnonzero(similar), np.flatnonzero(~similar)])
    V = np.ascontiguousarray(diffs[order])
    sim = np.ascontiguousarray(similar[order])
    u, l = float(bounds[0]), float(bounds[1])
    slack = np.where(sim, u, l).astype(np.float64)
    dual = np.zeros(V.shape[0])
    dual_old = np.zeros_like(dual)
    A = np.array(M0, dtype=np.float64, order="C", copy=True)
    gamma = float(gamma)
    m = V.shape[0]
    numpy_budget = _numpy.left()
    numpy_sweeps = 0
    converged, conv, n_iter = False, np.inf, 0
    if verbose:
        print(f"[{name}]\n[{name}] {'Iteration':>10} {'Dual change':>14} "
              f"{'Time(s)':>10}\n[{name}] {'-' * 36}")
    for it in range(max_iter):
        t0 = time.perf_counter()
        if (numpy_sweeps + 1) * m <= numpy_budget:
            _bregman_sweep_numpy(A, V, sim, dual, slack, gamma)
            numpy_sweeps += 1
            _numpy.spend(m)
        else:
            kernels.bregman_sweep(A, V, sim, dual, slack, gamma)
        A += A.T
        A *= 0.5
        n_iter = it + 1
        normsum = np.linalg.norm(dual) + np.linalg.norm(dual_old)
        if normsum == 0:
            converged, conv = True, 0.0
        else:
            conv = float(np.abs(dual_old - dual).sum() / normsum)
            converged = conv < tol
        if verbose:
            print(f"[{name}] {n_iter:>10d} {conv:>14.6e} "
                  f"{time.perf_counter() - t0:>10.3f}")
        if converged:
            break
        dual_old[:] = dual
    if not converged:
        warnings.warn(f"[{name}] ITML did not converge in max_iter={max_iter} sweeps "
                      f"(relative change of the dual variables {conv:.3g} > tol={tol}).",
                      ConvergenceWarning)
    inverse = np.empty_like(order)
    inverse[order] = np.arange(m)
    info = {"dual": dual[inverse], "slack": slack[inverse], "conv": conv,
            "numpy_sweeps": numpy_sweeps}
    return A, n_iter, converged, info
