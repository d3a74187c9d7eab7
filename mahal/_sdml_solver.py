"""SDML's solver: a graphical lasso on ``P = M0⁻¹ + η Σ_p y_p δ_p δ_pᵀ``.

SDML (Qi, Tang, Zha & Zhu, ICML 2009, eq. 8) learns

    min_{M ≻ 0}  tr(M P) − log det M + λ Σ_{i≠j} |M_ij|,
    P = M0⁻¹ + η Σ_p y_p δ_p δ_pᵀ,

(:func:`sdml_objective`), with ``M0`` the prior metric, ``η`` the ``balance_param``,
``λ`` the ``sparsity_param``, ``δ_p`` the difference of the two points of pair ``p`` and
``y_p = +1`` (similar) or ``−1`` (dissimilar). With ``P`` in the place of an empirical
covariance this is the graphical lasso (Friedman, Hastie & Tibshirani 2008, whose
penalty also spares the diagonal). Two solvers of it:

* scikit-learn's ``sklearn.covariance.graphical_lasso`` (block coordinate descent on
  the rows of ``W = M⁻¹``, :func:`glasso_sklearn`) for up to 64 features, where it
  needs no numba start-up; its inner lasso solves run to a tighter tolerance than its
  default, which stalls short of the optimum on an ill-conditioned ``P``;
* the same algorithm compiled (:mod:`mahal._sdml_kernels`, :func:`glasso_compiled`),
  whose row lasso gets the sweeps it needs: above 64 features (where it is many times
  faster) and wherever scikit-learn's fails (it stops with "Non SPD result" on an
  ill-conditioned ``P``, e.g. ``prior='covariance'`` on correlated features).

When is the problem well posed? If ``P ≻ 0``, ``tr(M P) ≥ λ_min(P) tr M`` dominates
``log det M``: the objective is bounded below, strictly convex, with one minimiser.
If ``P`` has a direction ``v`` with ``vᵀ P v < 0`` (dissimilar pairs outweigh the prior
along ``v``), ``M = I + t v vᵀ`` makes ``tr(M P)`` fall linearly in ``t`` while
``log det M`` grows like ``log t``: the problem is unbounded unless the ℓ1 term of the
off-diagonal entries outweighs the fall (in general an SDP to decide). Every solver then
breaks down: metric-learn 0.7 shifts only the *starting point* and hands the indefinite
``P`` to the graphical lasso, which returns a matrix that is not positive definite (or
raises), and metric-learn raises a ``RuntimeError`` (its issues 154, 162, 190) — with
its default ``balance_param``, on every standardised benchmark data set (iris, wine,
balance, breast cancer, digits, letter).

mahal detects this before solving (:func:`effective_balance`): with ``μ`` the smallest
generalised eigenvalue of the pair term relative to the prior (``L v = μ M0⁻¹ v``,
``L = Σ_p y_p δ_p δ_pᵀ``), ``P = M0⁻¹ + η L`` is positive definite iff ``1 + η μ > 0``.
When ``1 + η μ ≤ _PD_MARGIN`` it lowers ``η`` to ``η' = 1 / (2 |μ|)`` — the fix that
metric-learn's own warning recommends ("decrease the balance parameter"), applied
automatically — so that ``P ⪰ ½ M0⁻¹``: in no direction do the pairs cancel more than
half of the prior. The estimator warns and stores the ``η`` it used
(``balance_param_``); the objective solved is then SDML's with ``η'``, checked against
the cvxpy reference like any other.
"""

import warnings

import numpy as np
import scipy.linalg

# P counts as positive definite when 1 + η μ exceeds this (relative to the prior):
# below it, P's condition number relative to M0⁻¹ exceeds 10⁸ and the graphical lasso's
# coordinate descent loses the precision it needs (or P is indefinite).
_PD_MARGIN = 1e-8
# The repaired P is at least this fraction of M0⁻¹ in every direction.
_REPAIR_FLOOR = 0.5
# Up to this many features scikit-learn's graphical lasso, which needs no numba start-up:
# a process would have to fit many such problems before the compiled solver's start-up
# pays; above, the compiled one is much faster (measurements: docs/solver_notes.rst).
_SKLEARN_MAX_FEATURES = 64
# The compiled block coordinate descent: stop when a pass changes no entry of W by more
# than _BCD_TOL · max|P_ij|; each row's lasso gets up to _BCD_INNER_SWEEPS sweeps, to a
# relative step of _BCD_INNER_TOL.
_BCD_TOL = 1e-8
_BCD_INNER_SWEEPS = 10000
_BCD_INNER_TOL = 1e-10


def pair_loss_matrix(diffs, y):
    """``L = Σ_p y_p δ_p δ_pᵀ``, as ``Δᵀ diag(y) Δ`` (no d × d tensor per pair).

    Parameters
    ----------
    diffs : ndarray of shape (n_pairs, n_features)
        ``δ_p``, the difference of the two points of each pair.
    y : ndarray of shape (n_pairs,)
        +1 (similar) or −1 (dissimilar).

    Returns
    -------
    L : ndarray of shape (n_features, n_features)
    """
    L = (diffs.T * y) @ diffs
    return 0.5 * (L + L.T)


def sdml_objective(M, P, sparsity_param):
    """SDML's objective ``tr(M P) − log det M + λ Σ_{i≠j} |M_ij|`` (``+inf`` unless
    ``M ≻ 0``).

    Parameters
    ----------
    M : ndarray of shape (d, d)
        The metric (symmetric).
    P : ndarray of shape (d, d)
        ``M0⁻¹ + η L`` (see :func:`sdml_matrix`).
    sparsity_param : float
        ``λ``, the weight of the ℓ1 norm of the off-diagonal entries.

    Returns
    -------
    value : float
    """
    sign, logdet = np.linalg.slogdet(M)
    if sign <= 0:
        return np.inf
    off_l1 = np.abs(M).sum() - np.abs(np.diag(M)).sum()
    return float(np.sum(M * P) - logdet + sparsity_param * off_l1)


def sdml_matrix(prior_inv, loss_matrix, balance_param):
    """``P = M0⁻¹ + η L``, symmetrised."""
    P = prior_inv + balance_param * loss_matrix
    return 0.5 * (P + P.T)


def effective_balance(prior_inv, loss_matrix, balance_param):
    """The ``η`` to solve with: ``balance_param``, or the repaired one.

    ``P = M0⁻¹ + η L ≻ 0`` iff ``1 + η μ > 0``, with ``μ`` the smallest eigenvalue of
    ``L`` relative to ``M0⁻¹`` (``L v = μ M0⁻¹ v``). When ``1 + η μ ≤ 10⁻⁸`` (``P``
    indefinite or numerically singular), returns ``η' = 1 / (2 |μ|)``, for which
    ``P ⪰ ½ M0⁻¹``.

    Parameters
    ----------
    prior_inv : ndarray of shape (d, d)
        ``M0⁻¹``, symmetric positive definite.
    loss_matrix : ndarray of shape (d, d)
        ``L``.
    balance_param : float
        ``η ≥ 0`` as given.

    Returns
    -------
    eta : float
        The ``η`` to use.
    mu : float
        ``μ``, the smallest generalised eigenvalue.
    """
    mu = float(scipy.linalg.eigh(loss_matrix, prior_inv, eigvals_only=True,
                                 subset_by_index=[0, 0], check_finite=False)[0])
    if 1.0 + balance_param * mu > _PD_MARGIN:
        return float(balance_param), mu
    return (1.0 - _REPAIR_FLOOR) / -mu, mu


def _is_positive_definite(M):
    return bool(np.all(np.isfinite(M))) and np.linalg.eigvalsh(M)[0] > 0


def glasso_sklearn(P, sparsity_param, *, tol, enet_tol, max_iter, verbose=False):
    """scikit-learn's graphical lasso on ``P``; None when it fails.

    Failing means: it raises (``FloatingPointError``, "Non SPD result"), returns a
    matrix that is not finite or not positive definite, or runs out of sweeps with
    its duality gap above ``tol``. Its inner lasso solves' own ``ConvergenceWarning``
    (gaps of 1e-8 against a tolerance of 1e-8) says nothing about the result and is
    dropped.

    Returns
    -------
    M : ndarray of shape (d, d) or None
    n_iter : int
    """
    from sklearn.covariance import graphical_lasso
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _, M, costs, n_iter = graphical_lasso(
                P, alpha=sparsity_param, tol=tol, enet_tol=enet_tol, max_iter=max_iter,
                verbose=bool(verbose), return_costs=True, return_n_iter=True)
        except FloatingPointError:
            return None, max_iter
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if n_iter >= max_iter and not (costs and abs(costs[-1][1]) < tol):
        return None, n_iter
    M = 0.5 * (M + M.T)
    return (M if _is_positive_definite(M) else None), n_iter


def glasso_compiled(P, sparsity_param, *, max_iter):
    """The compiled block coordinate descent of :mod:`mahal._sdml_kernels` on ``P``.

    ``M`` is assembled from the rows' lasso coefficients ``β`` (``M_jj = 1 / (W_jj −
    w_jᵀ β_j)``, ``M_kj = −β_kj M_jj``), which keeps the zeros of the lasso; when that
    symmetrised matrix is not positive definite (inexact ``β``), ``W⁻¹`` instead.

    Returns
    -------
    M : ndarray of shape (d, d)
    n_iter : int
    converged : bool
    """
    from ._sdml_kernels import glasso_bcd

    W, B, n_iter, converged = glasso_bcd(np.ascontiguousarray(P), float(sparsity_param),
                                         int(max_iter), _BCD_TOL, _BCD_INNER_SWEEPS,
                                         _BCD_INNER_TOL)
    diag = 1.0 / (np.diag(W) - np.einsum("jk,kj->j", W, B))
    M = -B * diag
    M[np.diag_indices_from(M)] = diag
    M = 0.5 * (M + M.T)
    if not _is_positive_definite(M):
        M = np.linalg.inv(W)
        M = 0.5 * (M + M.T)
    return M, int(n_iter), bool(converged)


def sdml_solve(prior_inv, loss_matrix, balance_param, sparsity_param, *, tol=1e-4,
               enet_tol=1e-8, max_iter=100, verbose=False, name="SDML"):
    """Solve SDML by the graphical lasso on ``P``, repairing ``η`` if ``P ⊁ 0``.

    Up to ``_SKLEARN_MAX_FEATURES`` features, scikit-learn's graphical lasso
    (:func:`glasso_sklearn`: no numba start-up); above, or where it fails, the
    compiled block coordinate descent (:func:`glasso_compiled`).

    Parameters
    ----------
    prior_inv : ndarray of shape (d, d)
        ``M0⁻¹``, symmetric positive definite.
    loss_matrix : ndarray of shape (d, d)
        ``L = Σ_p y_p δ_p δ_pᵀ`` (:func:`pair_loss_matrix`).
    balance_param : float
        ``η``.
    sparsity_param : float
        ``λ``.
    tol : float
        scikit-learn's graphical lasso stops when its duality gap falls below ``tol``.
    enet_tol : float
        Tolerance of its inner lasso solves (scikit-learn's ``enet_tol``; its default,
        1e-4, stalls short of the optimum on ill-conditioned ``P``).
    max_iter : int
        Maximum number of sweeps over the columns, of either solver.
    verbose : bool
        Print which solver ran and how many sweeps it took (scikit-learn's also prints
        its cost and duality gap at each sweep).
    name : str
        The estimator's name, for messages.

    Returns
    -------
    M : ndarray of shape (d, d)
        The learned metric, symmetric positive definite.
    n_iter : int
    info : dict
        ``balance_param`` (the ``η`` used), ``mu`` (see :func:`effective_balance`),
        ``repaired`` (bool), ``solver`` ('closed form', 'scikit-learn' or
        'compiled'), ``P`` and ``objective``.
    """
    eta, mu = effective_balance(prior_inv, loss_matrix, balance_param)
    repaired = eta != balance_param
    if repaired:
        warnings.warn(
            f"{name}: with balance_param={balance_param:g}, the matrix P = prior⁻¹ + "
            f"balance_param · Σ y δδᵀ is not positive definite (dissimilar pairs "
            f"outweigh the prior along some direction; smallest eigenvalue of the pair "
            f"term relative to the prior: {mu:.4g}), so SDML's objective is unbounded "
            f"below. Solving with balance_param={eta:.4g} instead, the value for which "
            f"P ⪰ ½ prior⁻¹ (stored in balance_param_). To choose yourself, set "
            f"balance_param below {1.0 / -mu:.4g}, or use a prior with a larger "
            f"inverse (e.g. a scaled identity).", UserWarning, stacklevel=6)
    P = sdml_matrix(prior_inv, loss_matrix, eta)
    d = P.shape[0]
    M, solver, n_iter, converged = None, "closed form", 0, True
    if d == 1 or sparsity_param == 0:  # no ℓ1 term: M = P⁻¹ exactly
        M = np.linalg.inv(P)
        M = 0.5 * (M + M.T)
    elif d <= _SKLEARN_MAX_FEATURES:
        M, n_iter = glasso_sklearn(P, sparsity_param, tol=tol, enet_tol=enet_tol,
                                   max_iter=max_iter, verbose=verbose)
        solver = "scikit-learn"
    if M is None:
        M, n_iter, converged = glasso_compiled(P, sparsity_param, max_iter=max_iter)
        solver = "compiled"
    if verbose:
        print(f"[{name}] graphical lasso ({solver}) on P: d={d}, balance_param="
              f"{eta:.4g}, sparsity_param={sparsity_param:g}, {n_iter} sweeps")
    if not converged:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(f"{name}: the graphical lasso did not converge in {max_iter} "
                      "sweeps over the columns.", ConvergenceWarning, stacklevel=6)
    if not _is_positive_definite(M):
        raise RuntimeError(f"{name}: the graphical lasso returned a metric that is not "
                           f"finite or not positive definite (P's condition number: "
                           f"{np.linalg.cond(P):.3g}). Raise sparsity_param, or use "
                           f"prior='identity'.")
    info = {"balance_param": eta, "mu": mu, "repaired": repaired, "solver": solver,
            "P": P, "objective": sdml_objective(M, P, sparsity_param)}
    return M, n_iter, info
