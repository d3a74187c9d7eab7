"""LSML — Least Squared-residual Metric Learning (Liu et al., ICDM 2012).

Learns a metric from relative comparisons, quadruplets ``(a, b, c, d)`` saying that
``a`` is closer to ``b`` than ``c`` is to ``d``, by minimising metric-learn 0.7's
objective

    f(M) = Σ_i w_i [d_ab > d_cd] (√d_ab − √d_cd)²  +  tr(M M0⁻¹) − log det M,

weights ``w`` summing to one, ``M0`` the prior. The solver (L-BFGS on ``L`` with
``M = Lᵀ L``) is in :mod:`mahal._lsml_solver`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._lsml_solver import lsml_solve, prior_range
from ._parallel import fit_threads
from ._validation import (N_CONSTRAINTS, IntAtLeast, check_points, check_tuple_weights,
                          require_y)
from .base import (
    MahalanobisMixin,
    QuadrupletsClassifierMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    initialize_metric,
    resolve_deprecated_aliases,
)
from .constraints import Constraints

__all__ = ["LSML", "LSML_Supervised"]


class _LSMLSolverMixin:
    """The parameters both estimators share and ``fit``'s common tail: prior, solve,
    store."""

    _parameter_constraints = {
        "tol": [Interval(Real, 0, None, closed="left")],
        "max_iter": [IntAtLeast(1)],
        "prior": [StrOptions({"identity", "covariance", "random"}), "array-like"],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
    }

    def _solve(self, quadruplets, weights, random_state):
        name = type(self).__name__
        weights = check_tuple_weights(weights, quadruplets.shape[0])
        d = quadruplets.shape[2]
        points = quadruplets.reshape(-1, d)
        if isinstance(self.prior, str) and self.prior == "covariance":
            # the covariance of the distinct points of the quadruplets, as metric-learn
            rows = np.ascontiguousarray(points + 0.0).view(np.dtype((np.void, 8 * d)))
            points = points[np.unique(rows, return_index=True)[1].ravel()]
        M0 = initialize_metric(points, self.prior, random_state=random_state,
                               name="prior")
        rank = prior_range(M0)[1].shape[0]
        if rank == 0:
            raise ValueError(f"{name}: the prior is zero (for prior='covariance': the "
                             "points of the quadruplets do not vary); use "
                             "prior='identity'.")
        if rank < d:
            warnings.warn(
                f"{name}: the prior is singular (rank {rank} of {d}). Along its null "
                "space LSML's objective tr(M M0⁻¹) − log det M has no minimum, so the "
                "metric is learned in the range of the prior and is zero on its null "
                "space. For a metric on every feature, use prior='identity' or a "
                "definite prior.", UserWarning, stacklevel=5)
        vab = quadruplets[:, 0] - quadruplets[:, 1]
        vcd = quadruplets[:, 2] - quadruplets[:, 3]
        L, n_iter, converged, info = lsml_solve(
            vab, vcd, weights, M0, max_iter=int(self.max_iter), tol=float(self.tol),
            verbose=self.verbose, name=name)
        if not converged:
            warnings.warn(f"[{name}] LSML did not converge in max_iter={self.max_iter} "
                          f"iterations (|grad| = {info['grad_norm']:.3g} > tol = "
                          f"{self.tol:g}).", ConvergenceWarning)
        self.components_ = L
        # (at least 1: checking the prior counts as one, as in metric-learn)
        self.n_iter_ = max(int(n_iter), 1)
        self.objective_ = float(info["objective"])
        return self


_PRIOR_DOC = """prior : {'identity', 'covariance', 'random'} or array of shape \
(n_features, n_features), default='identity'
        The prior ``M0`` of the LogDet term, also the starting point. 'identity';
        'covariance': the inverse covariance of the distinct points of the
        quadruplets; 'random': a random positive definite matrix (``random_state``);
        an array: a symmetric PSD matrix. A singular prior (metric-learn raises)
        gives a ``UserWarning`` and a metric learned in its range, zero on its null
        space, where the objective has no minimum."""


class LSML(QuadrupletsClassifierMixin, MahalanobisMixin, _LSMLSolverMixin,
           BaseEstimator):
    """Least Squared-residual Metric Learning, learned from quadruplets.

    Each quadruplet ``(a, b, c, d)`` says that ``a`` is closer to ``b`` than ``c``
    is to ``d``. LSML minimises the weighted squared residual of the violated
    comparisons, ``Σ_i w_i [d_ab > d_cd] (√d_ab − √d_cd)²``, plus the LogDet prior
    term ``tr(M M0⁻¹) − log det M`` (metric-learn 0.7's objective). It is not
    convex: the solver (L-BFGS on ``L``, ``M = Lᵀ L``, from the prior) finds a
    local minimum.

    Parameters
    ----------
    tol : float, default=1e-3
        Stop when the Frobenius norm of the gradient with respect to ``M`` is at
        most ``tol`` (metric-learn's rule), or when the objective stops decreasing.
    max_iter : int, default=1000
        Maximum number of L-BFGS iterations; a ``ConvergenceWarning`` says when it
        was reached.
    {prior}
    verbose : bool, default=False
        Print the objective and gradient norm at every iteration.
    preprocessor : array-like or callable, optional
        If an array ``X``, quadruplets may be given as integer indices into it,
        shape ``(n_quadruplets, 4)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None
        For ``prior='random'``.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``G`` with ``M = Gᵀ G``.
    n_iter_ : int
        L-BFGS iterations; 1 when the prior already meets ``tol`` (as in
        metric-learn, where checking the prior counts as an iteration).
    objective_ : float
        The objective at the solution.
    n_features_in_ : int

    References
    ----------
    .. [1] E. Y. Liu, Z. Guo, X. Zhang, V. Jojic and W. Wang, "Metric Learning from
       Relative Comparisons by Minimizing Squared Residual", ICDM 2012.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.datasets import load_iris
    >>> from mahal import LSML
    >>> from mahal.constraints import Constraints
    >>> X, y = load_iris(return_X_y=True)
    >>> # (same-class pair, different-class pair), as indices into X
    >>> quadruplets = np.column_stack(Constraints(y).positive_negative_pairs(
    ...     100, same_length=True, random_state=0))
    >>> lsml = LSML(preprocessor=X).fit(quadruplets)
    >>> round(lsml.score(quadruplets), 2)
    0.96
    """

    def __init__(self, tol=1e-3, max_iter=1000, prior="identity", verbose=False,
                 preprocessor=None, random_state=None):
        self.tol = tol
        self.max_iter = max_iter
        self.prior = prior
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, quadruplets, weights=None):
        """Learn the metric from quadruplets.

        Parameters
        ----------
        quadruplets : array-like of shape (n_quadruplets, 4, n_features), or \
(n_quadruplets, 4) identifiers when a ``preprocessor`` was given
            ``(a, b, c, d)`` with ``a`` closer to ``b`` than ``c`` to ``d``.
        weights : array-like of shape (n_quadruplets,), optional
            Weight of each quadruplet (non-negative); scaled to sum to one, as in
            metric-learn (which scales the caller's array in place; this copies).
            None gives equal weights.

        Returns
        -------
        self
        """
        quadruplets = self._validate_tuples_fit(quadruplets)
        return self._solve(quadruplets, weights, self.random_state)


class LSML_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                      _LSMLSolverMixin, BaseEstimator):
    """LSML learned from class labels.

    Quadruplets are built from a similar pair (same class) and a dissimilar pair
    (different classes), both sampled with :meth:`Constraints.positive_negative_pairs`
    (``same_length=True``), as in metric-learn.

    Parameters
    ----------
    tol : float, default=1e-3
        As in :class:`LSML`.
    max_iter : int, default=1000
        As in :class:`LSML`.
    {prior}
    n_constraints : int or None, default=None
        Number of similar and of dissimilar pairs to sample, hence of quadruplets;
        None means ``20 · n_classes²``, as in metric-learn.
    weights : array-like of shape (n_constraints,), optional
        Weight of each quadruplet, as in :meth:`LSML.fit`; its length must match the
        number of quadruplets built.
    verbose : bool, default=False
    preprocessor : array-like or callable, optional
        If an array, ``X`` may be given as 1-D indices into it.
    random_state : int, RandomState or None
        Seeds the pair sampling and ``prior='random'``: a fixed seed gives a
        deterministic result.
    num_constraints : int, None or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_constraints`` (deprecated there since
        0.6.3): when set, ``fit`` uses it and warns with a ``FutureWarning``.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
    n_iter_ : int
    objective_ : float
    n_features_in_ : int

    References
    ----------
    E. Y. Liu, Z. Guo, X. Zhang, V. Jojic and W. Wang, "Metric Learning from Relative
    Comparisons by Minimizing Squared Residual", ICDM 2012.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import LSML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> LSML_Supervised(random_state=0).fit(X, y).transform(X).shape
    (150, 4)
    """

    _parameter_constraints = {
        **_LSMLSolverMixin._parameter_constraints,
        **N_CONSTRAINTS,
        "weights": ["array-like", None],
    }

    _deprecated_aliases = {"num_constraints": "n_constraints"}

    def __init__(self, tol=1e-3, max_iter=1000, prior="identity", n_constraints=None,
                 weights=None, verbose=False, preprocessor=None, random_state=None,
                 num_constraints="deprecated"):
        self.tol = tol
        self.max_iter = max_iter
        self.prior = prior
        self.n_constraints = n_constraints
        self.weights = weights
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.num_constraints = num_constraints

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, y):
        """Build quadruplets from the labels and learn the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes and one with two members. A numeric
            label -1 marks a point whose class is unknown, which is in no
            quadruplet (as in metric-learn).

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y))
        require_y(self, y)
        X, y = check_points(self, X, y, ensure_min_samples=2, classification=True)
        cons = Constraints(y)  # (numeric label -1: unknown, as in metric-learn)
        counts = np.unique(cons.known_labels, return_counts=True)[1]
        if counts.shape[0] < 2 or counts.max() < 2:
            raise ValueError(f"{type(self).__name__} needs two classes among the "
                             "labelled points (label -1 means unknown) and one class "
                             "with at least two samples, for a similar and a "
                             "dissimilar pair.")
        n_constraints = self.n_constraints
        if n_constraints is None:  # (metric-learn counts -1 as a class here)
            n_constraints = 20 * np.unique(y).shape[0] ** 2
        rng = check_random_state(self.random_state)
        a, b, c, d = cons.positive_negative_pairs(n_constraints, same_length=True,
                                                  random_state=rng)
        quadruplets = X[np.column_stack([a, b, c, d])]
        return self._solve(quadruplets, self.weights, rng)


LSML.__doc__ = LSML.__doc__.replace("{prior}", _PRIOR_DOC)
LSML_Supervised.__doc__ = LSML_Supervised.__doc__.replace("{prior}", _PRIOR_DOC)
