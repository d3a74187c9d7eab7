"""MLKR's solver: L-BFGS over ``L`` on the row-blocked softmax.

Metric Learning for Kernel Regression (Weinberger & Tesauro, 2007) minimises the
leave-one-out error of Nadaraya–Watson kernel regression with a Gaussian kernel in
the learned metric,

    f(L) = Σ_i (y_i − ŷ_i)²,   ŷ_i = Σ_{j≠i} k_ij y_j / Σ_{j≠i} k_ij,
    k_ij = exp(−‖L(x_i − x_j)‖²),

as metric-learn's ``MLKR``, which forms dense ``n × n`` matrices. Here ``ŷ_i`` is
the softmax statistic of :mod:`mahal._softmax_blocks` (column values ``y``, no
mask), and the objective and its gradient are computed in row blocks; L-BFGS
(:func:`mahal._softmax_blocks.softmax_solve`) minimises it.
"""

import numpy as np

from ._parallel import SERIAL
from ._softmax_blocks import (RowLoss, SoftmaxProblem, softmax_problem_maker,
                              softmax_solve)


class _MLKRRowLoss(RowLoss):
    """``f_i = (y_i − ŷ_i)²``: ``q_i = ŷ_i``, ``∂f_i/∂q_i = 2 (ŷ_i − y_i)``."""

    def __init__(self, y):
        self.y = y

    def __call__(self, q, r0, r1):
        residual = q - self.y[r0:r1]
        return float(residual @ residual), 2.0 * residual


def mlkr_problem(X, y, pool=None, block_rows=None):
    """The :class:`~mahal._softmax_blocks.SoftmaxProblem` of MLKR.

    Parameters
    ----------
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,), float targets
    pool : RowChunkPool, optional
    block_rows : int, optional
    """
    y = np.asarray(y, dtype=np.float64)
    return SoftmaxProblem(X, y, None, _MLKRRowLoss(y), pool or SERIAL, block_rows)


def mlkr_loss_grad(L, X, y, block_rows=None):
    """MLKR's loss ``Σ_i (y_i − ŷ_i)²`` at ``L`` and its gradient w.r.t. ``L``.

    Parameters
    ----------
    L : ndarray of shape (r, d)
    X : ndarray of shape (n, d)
    y : ndarray of shape (n,)
    block_rows : int, optional

    Returns
    -------
    f : float
    grad : ndarray of shape (r, d)
    """
    return mlkr_problem(X, y, block_rows=block_rows).loss_grad(
        np.asarray(L, dtype=np.float64))


def mlkr_solve(X, y, L0, *, max_iter=1000, tol=1e-5, verbose=False, n_threads=1,
               callback=None, name="MLKR", block_rows=None, optimizer="scipy"):
    """Minimise MLKR's loss over ``L`` with L-BFGS.

    Parameters
    ----------
    X : ndarray of shape (n, d) or DistributedPoints
        (a :class:`mahal._dask_cluster.DistributedPoints`: evaluated on the cluster)
    y : ndarray of shape (n,)
    L0 : ndarray of shape (r, d)
    max_iter : int
    tol : float or None
        scipy's ``tol`` for L-BFGS-B (None: scipy's defaults).
    verbose : bool or int
    n_threads : int
        Threads over the row chunks (results do not depend on it).
    callback : callable, optional
        ``callback(L, n_iter)`` after each iteration.
    name : str
    block_rows : int, optional
    optimizer : {'mahal', 'scipy'}
        See :func:`mahal._softmax_blocks.softmax_solve`.

    Returns
    -------
    L : ndarray of shape (r, d)
    n_iter : int
    converged : bool
    info : dict
        ``objective`` (the loss at ``L``), ``n_evals``, ``time``.
    """
    return softmax_solve(softmax_problem_maker(mlkr_problem, X, y, block_rows),
                         X.shape[0], L0, max_iter=max_iter, tol=tol, sign=1.0,
                         verbose=verbose, callback=callback, name=name,
                         n_threads=n_threads, optimizer=optimizer)
