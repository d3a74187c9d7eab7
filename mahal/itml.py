"""ITML — Information-Theoretic Metric Learning (Davis, Kulis, Jain, Sra & Dhillon,
ICML 2007).

ITML learns the metric ``M`` closest to a prior ``M0`` in the LogDet divergence (the
relative entropy of the two Gaussians they define) such that similar pairs are within
``u`` and dissimilar pairs beyond ``l`` (squared distances), softened by slack
variables weighted by ``gamma``:

    min_{M ⪰ 0, ξ}  tr(M M0⁻¹) − log det(M M0⁻¹) − d
                    + γ Σ_c (ξ_c/ξ0_c − log(ξ_c/ξ0_c) − 1)
    s.t.  d_M(x_c, x'_c) ≤ ξ_c (similar, ξ0_c = u),   ≥ ξ_c (dissimilar, ξ0_c = l).

The objective and the solver (cyclic Bregman projections, compiled) are in
:mod:`mahal._itml_solver`; :func:`mahal.reference.itml` solves the same program with
cvxpy.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_array

from ._itml_solver import default_bounds, itml_solve
from ._parallel import fit_threads
from ._validation import N_CONSTRAINTS, IntAtLeast, check_points, require_y
from .base import (
    MahalanobisMixin,
    PairsClassifierMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    initialize_metric,
    resolve_deprecated_aliases,
)
from .constraints import Constraints
from .exceptions import NonPSDError
from .linalg import components_from_metric

__all__ = ["ITML", "ITML_Supervised"]

# A bound of 0 (e.g. a 5th percentile of 0 among many duplicate points) is replaced
# by this, as metric-learn does: the slack divergence needs ξ0 > 0.
_ZERO_BOUND = 1e-9


def _check_bounds(bounds):
    """``bounds`` given to ``fit``: two finite numbers ≥ 0 (0 becomes 1e-9)."""
    bounds = check_array(bounds, ensure_2d=False, ensure_min_samples=0,
                         input_name="bounds").astype(np.float64).ravel()
    if bounds.size != 2:
        raise ValueError(f"bounds must be an array-like of two numbers (u, l); got "
                         f"{bounds.size} values.")
    if np.any(bounds < 0):
        raise ValueError(f"bounds are squared distances and must be ≥ 0; got "
                         f"{bounds.tolist()}.")
    return bounds


def _distinct_rows(X):
    """The distinct rows of ``X`` (in the order of their last occurrence); a hash of
    each row's bytes, faster than ``np.unique(X, axis=0)``'s sort."""
    X = np.ascontiguousarray(X, dtype=np.float64) + 0.0  # (-0.0 becomes 0.0)
    keys = X.view(np.dtype((np.void, X.dtype.itemsize * X.shape[1]))).ravel()
    last = dict(zip(keys.tolist(), range(X.shape[0])))
    return X[np.sort(np.fromiter(last.values(), dtype=np.intp, count=len(last)))]


def _strict_prior(points, n_features, prior, random_state, name):
    """The prior ``M0`` of ITML: metric-learn's options, and positive definite (the
    LogDet divergence to a singular ``M0`` is infinite). ``points()`` gives the
    points of ``prior='covariance'``."""
    if isinstance(prior, str) and prior == "covariance":
        points = points()
        w = np.linalg.eigvalsh(np.atleast_2d(np.cov(points, rowvar=False)))
        rank = int(np.sum(w > np.abs(w).max() * w.shape[0] * np.finfo(np.float64).eps))
        if rank < w.shape[0]:
            raise NonPSDError(
                f"{name}: prior='covariance' needs an invertible covariance matrix, "
                f"but the covariance of the points is singular (rank {rank} of "
                f"{w.shape[0]}). Use prior='identity', or remove linearly dependent "
                "features first (e.g. with sklearn.decomposition.PCA).")
    else:
        points = np.empty((0, n_features))
    M0 = initialize_metric(points, prior, random_state=random_state, name="prior")
    w = np.linalg.eigvalsh(M0)
    if not w[0] > 1e-10 * max(w[-1], 0.0):
        raise NonPSDError(f"{name}: the prior must be strictly positive definite (the "
                          f"LogDet divergence to a singular prior is infinite); its "
                          f"smallest eigenvalue is {w[0]:.3g}.")
    return M0


class _ITMLSolverMixin:
    """``fit``'s common tail: the prior, the bounds, :func:`itml_solve`, and the
    parameters both estimators share."""

    _parameter_constraints = {
        "gamma": [Interval(Real, 0, None, closed="right")],  # (inf: hard constraints)
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "prior": [StrOptions({"identity", "covariance", "random"}), "array-like"],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
        # metric-learn's deprecated name of ``tol`` (see ``_deprecated_aliases``)
        "convergence_threshold": [StrOptions({"deprecated"}),
                                  Interval(Real, 0, None, closed="left")],
    }

    def _solve(self, diffs, similar, n_features, prior_points, bound_points, bounds):
        """Learn from the pairs' differences. ``prior_points()`` gives the points of
        the 'covariance' prior, ``bound_points()`` the distinct points of the default
        bounds (only called when needed)."""
        name = type(self).__name__
        M0 = _strict_prior(prior_points, n_features, self.prior, self.random_state,
                           name)
        if bounds is None:
            points = bound_points()
            if points.shape[0] < 2:
                raise ValueError(f"{name}: the default bounds need at least two "
                                 "distinct points; pass bounds=(u, l).")
            bounds = default_bounds(points, self.random_state)
        else:
            bounds = _check_bounds(bounds)
        bounds = np.where(bounds == 0, _ZERO_BOUND, bounds)
        self.bounds_ = bounds
        A, n_iter, _, _ = itml_solve(diffs, similar, bounds, M0, gamma=self.gamma,
                                     max_iter=int(self.max_iter), tol=float(self.tol),
                                     verbose=self.verbose, name=name)
        self.components_ = components_from_metric(A)
        self.n_iter_ = int(n_iter)


class ITML(PairsClassifierMixin, MahalanobisMixin, _ITMLSolverMixin, BaseEstimator):
    """Information-Theoretic Metric Learning, from similar/dissimilar pairs.

    Learns the metric ``M`` closest to a prior ``M0`` in the LogDet divergence such
    that similar pairs are at squared distance at most ``u`` and dissimilar pairs at
    least ``l`` (``bounds_ = (u, l)``), each constraint softened by a slack variable
    whose divergence from its bound is weighted by ``gamma`` (see :mod:`mahal.itml`
    for the program). Solved by Davis et al.'s cyclic Bregman projections, compiled:
    each projection is a rank-one update of ``M``, which stays positive definite.

    Parameters
    ----------
    gamma : float, default=1.0
        Weight of the slack variables' divergence: larger values enforce the
        constraints more strictly (``np.inf``: hard constraints, which may be
        infeasible), smaller ones stay closer to the prior.
    max_iter : int, default=1000
        Maximum number of sweeps over the constraints.
    tol : float, default=1e-3
        Convergence tolerance: stop when the relative change of the dual variables
        over a sweep, ``‖λ − λ_old‖₁ / (‖λ‖₂ + ‖λ_old‖₂)``, is below ``tol`` (the
        authors' and metric-learn's test).
    prior : {'identity', 'covariance', 'random'} or array of shape \
(n_features, n_features), default='identity'
        The metric ``M0`` that ITML stays close to, also its starting point; it must
        be strictly positive definite. 'identity': the Euclidean metric;
        'covariance': the inverse covariance of the distinct points of the pairs
        (an error if it is singular); 'random': a random SPD matrix
        (``random_state``).
    verbose : bool, default=False
        Print the change of the dual variables after each sweep.
    preprocessor : array-like or callable, optional
        If an array ``X``, pairs may be given as integer indices into it, shape
        ``(n_pairs, 2)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None
        For ``prior='random'``, and for the default bounds on more than 2000
        distinct points (computed on 10⁶ random pairs of them).
    convergence_threshold : float or 'deprecated', default='deprecated'
        metric-learn's former name of ``tol`` (deprecated there since 0.6.3): when
        set, ``fit`` uses it as ``tol`` and warns with a ``FutureWarning``.

    Attributes
    ----------
    bounds_ : ndarray of shape (2,)
        ``(u, l)``: the squared distance below which similar pairs should be, and
        above which dissimilar pairs should be (bounds of 0 are replaced by 1e-9).
    components_ : ndarray of shape (n_features, n_features)
        ``G`` with ``M = Gᵀ G``.
    n_iter_ : int
        Number of sweeps done.
    n_features_in_ : int
    threshold_ : float
        Distance below which a pair is predicted similar (set by
        :meth:`calibrate_threshold` at the end of ``fit``).
    classes_ : ndarray ``[-1, 1]``

    Notes
    -----
    The default bounds are metric-learn's: the 5th and 95th percentiles of the
    Euclidean (unsquared) distances between the distinct points of the pairs, used as
    bounds on squared distances; but over pairs of distinct points, where
    metric-learn also counts each point's zero distance to itself (which makes
    ``u = 1e-9`` on a few points). The paper and the authors' code take percentiles
    of the squared distance under the prior, ``d_M0``: pass those as ``bounds`` to
    get the paper's program.

    A dissimilar pair of two identical points can never be satisfied (its slack
    term is infinite): it is an error.

    References
    ----------
    .. [1] J. V. Davis, B. Kulis, P. Jain, S. Sra and I. S. Dhillon.
       Information-theoretic metric learning. ICML 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import ITML
    >>> X = np.array([[0., 0.], [0., 1.], [3., 0.], [3.3, 0.2]])
    >>> pairs = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])
    >>> itml = ITML(preprocessor=X).fit(pairs, [1, 1, -1, -1])
    >>> itml.predict(pairs).tolist()
    [1, 1, -1, -1]
    """

    def __init__(self, gamma=1.0, max_iter=1000, tol=1e-3, prior="identity",
                 verbose=False, preprocessor=None, random_state=None,
                 convergence_threshold="deprecated"):
        self.gamma = gamma
        self.max_iter = max_iter
        self.tol = tol
        self.prior = prior
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.convergence_threshold = convergence_threshold

    _deprecated_aliases = {"convergence_threshold": "tol"}

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, pairs, y, bounds=None, calibration_params=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features), or (n_pairs, 2)
            identifiers when a ``preprocessor`` was given.
        y : array-like of shape (n_pairs,)
            +1 for a similar pair, −1 for a dissimilar one.
        bounds : array-like of two numbers, optional
            ``(u, l)``: similar pairs should be at squared distance at most ``u``,
            dissimilar pairs at least ``l``. Default: the 5th and 95th percentiles
            of the Euclidean distances between the distinct points of ``pairs``
            (see Notes).
        calibration_params : dict, optional
            Keyword arguments of :meth:`calibrate_threshold` (e.g.
            ``{'strategy': 'f_beta', 'beta': 2}``), checked before the metric is
            learned.

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(pairs, y, bounds,
                                                             calibration_params))
        calibration_params = dict(calibration_params or {})
        self._validate_calibration_params(**calibration_params)
        pairs, y = self._validate_pairs_fit(pairs, y)
        diffs = pairs[:, 0] - pairs[:, 1]
        zero = ~diffs.any(axis=1)
        similar = y == 1
        bad = np.flatnonzero(zero & ~similar)
        if bad.shape[0]:
            raise ValueError(
                f"ITML: {bad.shape[0]} dissimilar pair(s) (label -1) join two identical "
                f"points, e.g. pair {int(bad[0])}: no metric can put them apart, so the "
                "problem has no solution. Remove those pairs or relabel them.")
        # (a similar pair of identical points is always satisfied: it changes nothing)
        d = pairs.shape[2]

        def points():  # (metric-learn's: the distinct points of the pairs)
            return _distinct_rows(pairs.reshape(-1, d))

        self._solve(diffs[~zero], similar[~zero], d, points, points, bounds)
        self.calibrate_threshold(pairs, y, **calibration_params)
        return self


class ITML_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                      _ITMLSolverMixin, BaseEstimator):
    """ITML learned from class labels: same-class pairs similar, others dissimilar.

    Samples ``n_constraints`` similar and as many dissimilar pairs with
    :class:`mahal.Constraints` (labels ``-1`` mark unlabelled points, as in
    metric-learn) and solves :class:`ITML`'s program on them.

    Parameters
    ----------
    gamma : float, default=1.0
        Weight of the slack variables (see :class:`ITML`).
    max_iter : int, default=1000
        Maximum number of sweeps over the constraints.
    tol : float, default=1e-3
        Convergence tolerance on the relative change of the dual variables (see
        :class:`ITML`).
    n_constraints : int or None, default=None
        Number of similar pairs and of dissimilar pairs to sample. None:
        ``20 · n_classes²`` (metric-learn's default).
    prior : {'identity', 'covariance', 'random'} or array of shape \
(n_features, n_features), default='identity'
        As in :class:`ITML`; 'covariance' is the inverse covariance of ``X``.
    verbose, preprocessor
        As in :class:`ITML` (``X`` may be 1-D identifiers with a preprocessor).
    random_state : int, RandomState or None
        Seeds the pair sampling, ``prior='random'`` and the sampled default bounds;
        the result is deterministic for a fixed seed.
    num_constraints : int, None or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_constraints`` (deprecated there since
        0.6.3): when set, ``fit`` uses it as ``n_constraints`` and warns with a
        ``FutureWarning``.
    convergence_threshold : float or 'deprecated', default='deprecated'
        Former name of ``tol``, likewise.

    Attributes
    ----------
    bounds_ : ndarray of shape (2,)
        ``(u, l)`` (see :class:`ITML`); by default the 5th and 95th percentiles of
        the Euclidean distances between distinct points of ``X``.
    components_ : ndarray of shape (n_features, n_features)
    n_iter_ : int
    n_features_in_ : int

    Notes
    -----
    Two identical points with different labels make a dissimilar pair that no metric
    can satisfy: such sampled pairs are dropped, with a warning.

    References
    ----------
    J. V. Davis, B. Kulis, P. Jain, S. Sra and I. S. Dhillon, "Information-theoretic
    metric learning", ICML 2007.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import ITML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> ITML_Supervised(random_state=0).fit(X, y).transform(X).shape
    (150, 4)
    """

    def __init__(self, gamma=1.0, max_iter=1000, tol=1e-3, n_constraints=None,
                 prior="identity", verbose=False, preprocessor=None, random_state=None,
                 num_constraints="deprecated", convergence_threshold="deprecated"):
        self.gamma = gamma
        self.max_iter = max_iter
        self.tol = tol
        self.n_constraints = n_constraints
        self.prior = prior
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.num_constraints = num_constraints
        self.convergence_threshold = convergence_threshold

    _parameter_constraints = {
        **_ITMLSolverMixin._parameter_constraints,
        **N_CONSTRAINTS,
    }

    _deprecated_aliases = {"num_constraints": "n_constraints",
                           "convergence_threshold": "tol"}

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, y, bounds=None):
        """Sample pairs from the labels and learn the metric from them.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (any hashable type; ``-1`` marks an unlabelled point).
        bounds : array-like of two numbers, optional
            ``(u, l)`` (see :meth:`ITML.fit`). Default: the 5th and 95th percentiles
            of the Euclidean distances between distinct points of ``X`` (metric-learn
            takes those of the points of the sampled pairs).

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y, bounds))
        name = type(self).__name__
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        n_constraints = self.n_constraints
        with warnings.catch_warnings():
            if n_constraints is None:  # (our default count: fewer pairs is fine)
                n_constraints = 20 * np.unique(y).shape[0] ** 2
                warnings.simplefilter("ignore", UserWarning)
            a, b, c, d = Constraints(y).positive_negative_pairs(
                n_constraints, random_state=self.random_state)
        if a.shape[0] + c.shape[0] == 0:
            raise ValueError(f"{name}: the labels give no pair of labelled points to "
                             "learn from.")
        diffs = np.concatenate([X[a] - X[b], X[c] - X[d]])
        similar = np.arange(diffs.shape[0]) < a.shape[0]
        zero = ~diffs.any(axis=1)
        if (zero & ~similar).any():
            warnings.warn(f"{name}: {int((zero & ~similar).sum())} sampled dissimilar "
                          "pair(s) join identical points with different labels (no "
                          "metric can put them apart); they are left out.",
                          UserWarning, stacklevel=3)
        self._solve(diffs[~zero], similar[~zero], X.shape[1], lambda: X,
                    lambda: _distinct_rows(X), bounds)
        return self

