"""Metric Learning for Kernel Regression (MLKR), Weinberger & Tesauro, AISTATS 2007.

The estimator :class:`MLKR`; the solver is in :mod:`mahal._mlkr_solver`, over the
row-blocked softmax of :mod:`mahal._softmax_blocks`.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_array
from sklearn.utils._param_validation import Interval, StrOptions

from ._mlkr_solver import mlkr_solve
from ._parallel import fit_threads, n_threads_for
from ._validation import (IntAtLeast, check_n_components, check_points, is_dask_array,
                          require_y)
from .base import MahalanobisMixin, SupervisedMixin, initialize_components

# scikit-learn's n_jobs: None, -1, -2, ... or a positive count
_N_JOBS = [Interval(Integral, None, -1, closed="right"), IntAtLeast(1), None]


class MLKR(SupervisedMixin, MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Metric Learning for Kernel Regression (Weinberger & Tesauro, 2007).

    Learns ``L`` (``components_``) for regression: it minimises the leave-one-out
    squared error of Gaussian kernel regression (Nadaraya–Watson) in the learned
    space,

        f(L) = Σ_i (y_i − ŷ_i)²,   ŷ_i = Σ_{j≠i} k_ij y_j / Σ_{j≠i} k_ij,
        k_ij = exp(−‖L(x_i − x_j)‖²),

    as metric-learn's ``MLKR``, which forms dense ``n_samples × n_samples``
    matrices; here the kernel sums and the gradient are computed in row blocks
    (memory ``O(block · n_samples)``), and L-BFGS minimises ``f`` (see
    :mod:`mahal._mlkr_solver`). The learned space suits k-nearest-neighbour
    regression (in a :class:`~sklearn.pipeline.Pipeline` before
    :class:`~sklearn.neighbors.KNeighborsRegressor`, see the example); the scale
    of ``L`` is learned too (it is the kernel's width), and irrelevant features
    get small weights.

    Parameters are metric-learn 0.7's, plus ``callback`` and ``n_jobs``; ``tol``
    defaults to 1e-5 (metric-learn's None, scipy's defaults, is still accepted).

    Parameters
    ----------
    n_components : int, optional
        Dimension of the learned space (rows of ``components_``); default
        ``n_features``.
    init : {'auto', 'pca', 'identity', 'random'} or ndarray, default='auto'
        Initial ``L``; see :func:`mahal.base.initialize_components`. 'auto' is
        'pca' when ``n_components < min(n_samples, n_features)``, else identity
        (metric-learn's rule; there are no classes for 'lda'). The objective is
        not convex: the initialisation decides which local optimum is found,
        and its scale the initial kernel width, so standardise ``X`` first.
    tol : float or None, default=1e-5
        Stop when the loss changed by at most ``tol`` (relative) in one
        iteration, or the largest gradient entry is at most ``tol``: the meaning
        of ``scipy.optimize.minimize(method='L-BFGS-B', tol=tol)``, which
        metric-learn calls. None: scipy's defaults (relative change 2.2e-9,
        gradient 1e-5).
    max_iter : int, default=1000
        Maximum number of L-BFGS iterations. Reaching it gives a
        ``ConvergenceWarning``.
    verbose : bool or int, default=False
        Print the loss at every iteration, in scikit-learn's NCA format.
    preprocessor : array-like or callable, optional
        With an array, ``X`` may be given as indices into its rows; with a
        callable, as identifiers it maps to points (metric-learn's meaning).
    random_state : int, RandomState or None
        For ``init='random'``; the solver itself is deterministic.
    callback : callable, default=None
        If not None, called after every L-BFGS iteration as
        ``callback(transformation, n_iter)``, with the current transformation
        (an ndarray of shape (n_components, n_features), a copy) and the number
        of iterations so far.
    n_jobs : int, default=None
        Number of threads over row chunks, as in scikit-learn: None means 1
        unless in a :func:`joblib.parallel_config` context, −1 means all cores.
        Results do not depend on it.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned transformation ``L``.
    n_iter_ : int
        L-BFGS iterations run.
    objective_ : float
        The loss ``f(L)`` at ``components_``.
    n_features_in_ : int

    References
    ----------
    K. Q. Weinberger and G. Tesauro, "Metric Learning for Kernel Regression",
    AISTATS 2007, PMLR 2:612–619.

    Examples
    --------
    Friedman's regression problem #1 with 20 irrelevant features: k-NN
    regression in the learned space against k-NN in the standardised input
    space (R², 5-fold cross-validation).

    >>> from sklearn.datasets import make_friedman1
    >>> from sklearn.model_selection import cross_val_score
    >>> from sklearn.neighbors import KNeighborsRegressor
    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from mahal import MLKR
    >>> X, y = make_friedman1(n_samples=300, n_features=25, random_state=0)
    >>> learned = make_pipeline(StandardScaler(), MLKR(max_iter=100),
    ...                         KNeighborsRegressor(n_neighbors=10))
    >>> euclidean = make_pipeline(StandardScaler(),
    ...                           KNeighborsRegressor(n_neighbors=10))
    >>> r2_learned = cross_val_score(learned, X, y, cv=5).mean()
    >>> r2_euclidean = cross_val_score(euclidean, X, y, cv=5).mean()
    >>> bool(r2_learned > r2_euclidean + 0.1)
    True
    """

    _parameter_constraints = {
        "n_components": [IntAtLeast(1), None],
        "init": [StrOptions({"auto", "pca", "identity", "random"}), "array-like"],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "max_iter": [IntAtLeast(1)],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
        "callback": [callable, None],
        "n_jobs": _N_JOBS,
    }

    def __init__(self, n_components=None, init="auto", tol=1e-5, max_iter=1000,
                 verbose=False, preprocessor=None, random_state=None, callback=None,
                 n_jobs=None):
        self.n_components = n_components
        self.init = init
        self.tol = tol
        self.max_iter = max_iter
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.callback = callback
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, X, y):
        """Fit the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points (or identifiers, with a ``preprocessor``).
        y : array-like of shape (n_samples,)
            Their real-valued targets.

        Returns
        -------
        self : MLKR
            The fitted estimator.
        """
        require_y(self, y)
        if is_dask_array(X):  # (fitted on the active dask cluster)
            from ._dask_softmax import distribute_points

            X, y = distribute_points(self, X, y, ensure_min_samples=2)
        else:
            X, y = check_points(self, X, y, ensure_min_samples=2)
        y = check_array(y, ensure_2d=False, dtype=np.float64, input_name="y")
        if y.ndim != 1:
            raise ValueError(f"y must be 1-D (one real target per point); got shape "
                             f"{y.shape}.")
        # an init array gives n_components (as in metric-learn and scikit-learn)
        n_components = check_n_components(
            self.n_components if self.n_components is not None
            or isinstance(self.init, str) else np.shape(self.init)[0], X.shape[1])
        L0 = initialize_components(n_components, X, None, self.init,
                                   self.random_state)
        L, n_iter, converged, info = mlkr_solve(
            X, y, L0, max_iter=self.max_iter, tol=self.tol, verbose=self.verbose,
            n_threads=n_threads_for(self.n_jobs), callback=self.callback,
            name=type(self).__name__)
        if not converged:
            warnings.warn(f"[{type(self).__name__}] MLKR did not converge in "
                          f"max_iter={self.max_iter} iterations.", ConvergenceWarning)
        self.components_ = L
        self.n_iter_ = n_iter
        self.objective_ = info["objective"]
        return self
