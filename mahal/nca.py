"""Neighbourhood Components Analysis (NCA), Goldberger et al., NIPS 2004.

The estimator :class:`NCA`; the solver is in :mod:`mahal._nca_solver`, over the
row-blocked softmax of :mod:`mahal._softmax_blocks`.
"""

import warnings
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions

from ._nca_solver import nca_solve
from ._parallel import fit_threads, n_threads_for
from ._validation import (IntAtLeast, check_n_components, check_points, is_dask_array,
                          require_y)
from .base import MahalanobisMixin, SupervisedMixin, initialize_components

# scikit-learn's n_jobs: None, -1, -2, ... or a positive count
_N_JOBS = [Interval(Integral, None, -1, closed="right"), IntAtLeast(1), None]


class NCA(SupervisedMixin, MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Neighbourhood Components Analysis (Goldberger et al., 2004).

    Learns ``L`` (``components_``) that maximises the expected number of training
    points correctly classified by a stochastic nearest-neighbour rule in the
    learned space,

        f(L) = Σ_i Σ_{j: y_j = y_i} p_ij,
        p_ij = exp(−‖L(x_i − x_j)‖²) / Σ_{k≠i} exp(−‖L(x_i − x_k)‖²),  p_ii = 0,

    the objective of metric-learn's ``NCA`` and scikit-learn's
    :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`. Both form dense
    ``n_samples × n_samples`` matrices; here the softmax and the gradient are
    computed in row blocks (memory ``O(block · n_samples)``), and L-BFGS maximises
    ``f`` (see :mod:`mahal._nca_solver`).

    The parameters are metric-learn 0.7's (in its order), plus scikit-learn's
    ``warm_start``, ``callback`` and ``n_jobs``. Where the two disagree: ``tol``
    defaults to 1e-5 (scikit-learn's; metric-learn's None, scipy's defaults,
    is still accepted), ``max_iter`` to 100 (metric-learn's; scikit-learn's is
    50), and ``n_iter_`` counts iterations (scikit-learn's counts one more).

    Parameters
    ----------
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or ndarray, default='auto'
        Initial ``L``; see :func:`mahal.base.initialize_components`. 'auto' is
        'lda' when ``n_components ≤ n_classes − 1``, else 'pca' when
        ``n_components < min(n_samples, n_features)``, else identity (as in
        scikit-learn and metric-learn). The objective is not convex: the
        initialisation decides which local optimum is found.
    n_components : int, optional
        Dimension of the learned space (rows of ``components_``); default
        ``n_features``. Fewer components give a low-dimensional embedding
        (e.g. 2 for a plot).
    max_iter : int, default=100
        Maximum number of L-BFGS iterations. Reaching it gives a
        ``ConvergenceWarning``.
    tol : float or None, default=1e-5
        Stop when the objective changed by at most ``tol`` (relative) in one
        iteration, or the largest gradient entry is at most ``tol``: the meaning
        of ``scipy.optimize.minimize(method='L-BFGS-B', tol=tol)``, which
        metric-learn and scikit-learn call. None: scipy's defaults (relative
        change 2.2e-9, gradient 1e-5).
    verbose : bool or int, default=False
        Print the objective at every iteration, in scikit-learn's format.
    preprocessor : array-like or callable, optional
        With an array, ``X`` may be given as indices into its rows; with a
        callable, as identifiers it maps to points (metric-learn's meaning).
    random_state : int, RandomState or None
        For ``init='random'``; the solver itself is deterministic.
    warm_start : bool, default=False
        If True and the estimator was fitted before, start from its
        ``components_`` instead of ``init`` (scikit-learn's meaning), e.g. to
        continue a fit that reached ``max_iter``.
    callback : callable, default=None
        If not None, called after every L-BFGS iteration as
        ``callback(transformation, n_iter)``, with the current transformation
        (an ndarray of shape (n_components, n_features), a copy; scikit-learn
        passes it flattened) and the number of iterations so far.
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
        ``f(L)`` at ``components_`` (the expected number of correctly
        classified training points).
    n_features_in_ : int
    classes_ : ndarray of shape (n_classes,)

    References
    ----------
    J. Goldberger, S. Roweis, G. Hinton and R. Salakhutdinov, "Neighbourhood
    Components Analysis", NIPS 17 (2004), 513–520.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from mahal import NCA
    >>> X, y = load_iris(return_X_y=True)
    >>> nca = NCA(n_components=2, random_state=0).fit(X, y)
    >>> nca.transform(X).shape
    (150, 2)
    >>> pipe = make_pipeline(NCA(random_state=0), KNeighborsClassifier(3)).fit(X, y)
    >>> round(pipe.score(X, y), 2)
    0.99
    """

    _parameter_constraints = {
        "init": [StrOptions({"auto", "pca", "lda", "identity", "random"}),
                 "array-like"],
        "n_components": [IntAtLeast(1), None],
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left"), None],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
        "warm_start": ["boolean"],
        "callback": [callable, None],
        "n_jobs": _N_JOBS,
    }

    def __init__(self, init="auto", n_components=None, max_iter=100, tol=1e-5,
                 verbose=False, preprocessor=None, random_state=None,
                 warm_start=False, callback=None, n_jobs=None):
        self.init = init
        self.n_components = n_components
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.warm_start = warm_start
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
            Their class labels.

        Returns
        -------
        self : NCA
            The fitted estimator.
        """
        require_y(self, y)
        warm = self.warm_start and hasattr(self, "components_")
        previous = self.components_ if warm else None
        if is_dask_array(X):  # (fitted on the active dask cluster)
            from ._dask_softmax import distribute_points

            X, y = distribute_points(self, X, y, classification=True, ensure_min_samples=2)
        else:
            X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        if warm:
            if previous.shape[1] != X.shape[1]:
                raise ValueError(
                    f"warm_start: X has {X.shape[1]} features, but the previous fit's "
                    f"components_ has {previous.shape[1]}.")
            L0 = previous
        else:
            # an init array gives n_components (as in metric-learn and scikit-learn)
            n_components = check_n_components(
                self.n_components if self.n_components is not None
                or isinstance(self.init, str) else np.shape(self.init)[0], X.shape[1])
            L0 = initialize_components(n_components, X, y_enc, self.init,
                                       self.random_state)
        L, n_iter, converged, info = nca_solve(
            X, y_enc.astype(np.int64), L0, max_iter=self.max_iter, tol=self.tol,
            verbose=self.verbose, n_threads=n_threads_for(self.n_jobs),
            callback=self.callback, name=type(self).__name__)
        if not converged:
            warnings.warn(f"[{type(self).__name__}] NCA did not converge in "
                          f"max_iter={self.max_iter} iterations.", ConvergenceWarning)
        self.components_ = L
        self.n_iter_ = n_iter
        self.objective_ = info["objective"]
        return self
