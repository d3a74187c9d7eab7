"""SDML's fallback graphical lasso: block coordinate descent on ``W = M⁻¹`` (Friedman,
Hastie & Tibshirani 2008) with the row lasso solved to a tight tolerance.

scikit-learn's graphical lasso (the first choice, see :mod:`mahal._sdml_solver`) caps
each row's lasso at as many coordinate sweeps as the outer loop has iterations, and
stops when the precision matrix assembled row by row is not positive definite. On an
ill-conditioned ``P`` the row lasso needs far more sweeps (coordinate descent on a
Gram matrix ``W₁₁`` with condition number ~10⁵), so it fails there; sweeps of a
``d − 1`` lasso cost ``O(d²)`` and are cheap compiled, so this solver gives them the
budget they need, and takes ``M`` from the final ``W``.
"""

import numpy as np

from ._jit import njit


@njit(cache=True, nogil=True)
def _row_lasso(W, P, j, beta, lam, max_sweeps, tol):
    """Coordinate descent on ``min_β ½ βᵀ W₁₁ β − βᵀ p₁₂ + λ ‖β‖₁`` for column ``j``
    (``W₁₁``: ``W`` without row and column ``j``; ``β[j]`` stays 0), warm-started from
    ``beta``; stops when no coordinate moves by more than ``tol`` times the largest
    ``|β|`` (or 1). Returns the number of sweeps."""
    d = W.shape[0]
    u = np.zeros(d)  # u = W β (β[j] = 0)
    for k in range(d):
        if beta[k] != 0.0:
            for i in range(d):
                u[i] += W[i, k] * beta[k]
    for sweep in range(max_sweeps):
        largest_step = 0.0
        largest_beta = 0.0
        for k in range(d):
            if k == j:
                continue
            old = beta[k]
            z = P[k, j] - (u[k] - W[k, k] * old)
            if z > lam:
                new = (z - lam) / W[k, k]
            elif z < -lam:
                new = (z + lam) / W[k, k]
            else:
                new = 0.0
            if new != old:
                step = new - old
                for i in range(d):
                    u[i] += W[i, k] * step
                beta[k] = new
                if abs(step) > largest_step:
                    largest_step = abs(step)
            if abs(new) > largest_beta:
                largest_beta = abs(new)
        if largest_step <= tol * max(largest_beta, 1.0):
            return sweep + 1
    return max_sweeps


@njit(cache=True, nogil=True)
def glasso_bcd(P, lam, max_iter, tol, inner_sweeps, inner_tol):
    """Graphical lasso with an unpenalised diagonal, by block coordinate descent on
    ``W``.

    Parameters
    ----------
    P : ndarray of shape (d, d)
        Symmetric positive definite.
    lam : float
        Weight of the ℓ1 norm of the off-diagonal entries.
    max_iter : int
        Maximum number of passes over the columns.
    tol : float
        Stop when a pass changes no off-diagonal entry of ``W`` by more than ``tol``
        times the largest ``|P_ij|``.
    inner_sweeps, inner_tol : int, float
        Budget and tolerance of each row's lasso (:func:`_row_lasso`).

    Returns
    -------
    W : ndarray of shape (d, d)
        ``M⁻¹`` at the solution.
    B : ndarray of shape (d, d)
        Column ``j``: the coefficients ``β`` of column ``j``'s lasso (``B[j, j] = 0``).
    n_iter : int
        Passes done.
    converged : bool
    """
    d = P.shape[0]
    W = P.copy()
    B = np.zeros((d, d))  # column j: β of column j's lasso, warm starts
    scale = 0.0
    for i in range(d):
        for k in range(d):
            if abs(P[i, k]) > scale:
                scale = abs(P[i, k])
    for it in range(max_iter):
        largest_change = 0.0
        for j in range(d):
            beta = B[:, j].copy()
            _row_lasso(W, P, j, beta, lam, inner_sweeps, inner_tol)
            B[:, j] = beta
            for k in range(d):
                if k == j:
                    continue
                w = 0.0
                for l in range(d):
                    if l != j:
                        w += W[k, l] * beta[l]
                change = abs(w - W[k, j])
                if change > largest_change:
                    largest_change = change
                W[k, j] = w
                W[j, k] = w
        if largest_change <= tol * scale:
            return W, B, it + 1, True
    return W, B, max_iter, False
