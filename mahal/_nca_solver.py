"""NCA's solver: L-BFGS over ``L`` on the row-blocked softmax.

Neighbourhood Components Analysis (Goldberger et al., 2004) maximises the expected
number of points that a stochastic nearest-neighbour rule classifies correctly,

    f(L) = Σ_i p_i,   p_i = Σ_{j: y_j = y_i} p_ij,
    p_ij = exp(−‖L(x_i − x_j)‖²) / Σ_{k≠i} exp(−‖L(x_i − x_k)‖²),   p_ii = 0,

the objective of scikit-learn's ``NeighborhoodComponentsAnalysis`` and of
metric-learn's ``NCA``. Both form dense ``n × n`` matrices; here the objective and
its gradient are computed in row blocks by :mod:`mahal._softmax_blocks` (the
statistic ``q_i = p_i``: column values 1, the class mask; the points sorted by
class so that the mask is a set of diagonal blocks), and L-BFGS
(:func:`mahal._softmax_blocks.softmax_solve`) maximises it.
"""

import numpy as np

from ._parallel import SERIAL
from ._softmax_blocks import (RowLoss, SoftmaxProblem, softmax_problem_maker,
                              softmax_solve)


class _NCARowLoss(RowLoss):
    """``f_i = p_i`` (the objective, maximised): ``q_i = p_i``, ``∂f_i/∂q_i = 1``."""

    def __call__(self, q, r0, r1):
        return float(q.sum()), np.ones_like(q)


def _sorted_by_class(X, y):
    """``X`` sorted by class (stable) and the class boundaries."""
    order = np.argsort(y, kind="stable")
    y_sorted = y[order]
    counts = np.bincount(y_sorted)
    segments = np.concatenate([[0], np.cumsum(counts)])
    return X[order], segments


def nca_problem(X, y, pool=None, block_rows=None):
    """The :class:`~mahal._softmax_blocks.SoftmaxProblem` of NCA.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), int labels in ``0..n_classes − 1``
    pool : RowChunkPool, optional
    block_rows : int, optional
        Rows per block (default: about 2¹⁹ / n).
    """
    Xs, segments = _sorted_by_class(X, y)
    return SoftmaxProblem(Xs, None, segments, _NCARowLoss(), pool or SERIAL,
                          block_rows)


def nca_objective_grad(L, X, y, block_rows=None):
    """NCA's objective ``Σ_i p_i`` at ``L`` and its gradient w.r.t. ``L``.

    Parameters
    ----------
    L : ndarray of shape (r, d)
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), int labels in ``0..n_classes − 1``
    block_rows : int, optional

    Returns
    -------
    f : float
        ``Σ_i Σ_{j: y_j = y_i} p_ij`` (maximised by NCA).
    grad : ndarray of shape (r, d)
    """
    return nca_problem(X, y, block_rows=block_rows).loss_grad(
        np.asarray(L, dtype=np.float64))


def nca_solve(X, y, L0, *, max_iter=100, tol=1e-5, verbose=False, n_threads=1,
              callback=None, name="NCA", block_rows=None, optimizer="scipy"):
    """Maximise NCA's objective over ``L`` with L-BFGS.

    Parameters
    ----------
    X : ndarray of shape (n, d) or DistributedPoints
        (a :class:`mahal._dask_cluster.DistributedPoints`: evaluated on the cluster)
    y : ndarray of shape (n,), int labels in ``0..n_classes − 1``
    L0 : ndarray of shape (r, d)
    max_iter : int
        L-BFGS iterations.
    tol : float or None
        scipy's ``tol`` for L-BFGS-B: stop when the relative change of the
        objective or the largest gradient entry is at most ``tol`` (None:
        scipy's defaults).
    verbose : bool or int
    n_threads : int
        Threads over the row chunks (results do not depend on it).
    callback : callable, optional
        ``callback(L, n_iter)`` after each iteration.
    name : str
        Prefix of the verbose output.
    block_rows : int, optional
        Rows per block.
    optimizer : {'mahal', 'scipy'}
        See :func:`mahal._softmax_blocks.softmax_solve`.

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
    info : dict
        ``objective`` (``Σ_i p_i`` at ``L``), ``n_evals``, ``time``.
    """
    return softmax_solve(softmax_problem_maker(nca_problem, X, y, block_rows),
                         X.shape[0], L0, max_iter=max_iter, tol=tol, sign=-1.0,
                         verbose=verbose, callback=callback, name=name,
                         n_threads=n_threads, optimizer=optimizer)
