"""SDML — Sparse Distance Metric Learning (Qi, Tang, Zha & Zhu, ICML 2009).

From similar / dissimilar pairs, SDML learns

    min_{M ≻ 0}  tr(M P) − log det M + λ Σ_{i≠j} |M_ij|,
    P = M0⁻¹ + η Σ_p y_p δ_p δ_pᵀ,

a log-determinant divergence to the prior ``M0`` plus the pairs' loss (similar pairs
pulled together, dissimilar pushed apart) and an ℓ1 penalty that makes ``M`` sparse.
The solver, and how an unbounded problem (``P`` not positive definite) is detected and
repaired, are in :mod:`mahal._sdml_solver`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._parallel import fit_threads
from ._sdml_solver import pair_loss_matrix, sdml_solve
from ._validation import N_CONSTRAINTS, check_points, require_y
from .base import (
    MahalanobisMixin,
    PairsClassifierMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    resolve_deprecated_aliases,
)
from .constraints import Constraints
from .exceptions import NonPSDError
from .linalg import check_psd, components_from_metric

__all__ = ["SDML", "SDML_Supervised"]

# The graphical lasso's stopping rule (duality gap) and sweep budget: scikit-learn's
# defaults, which metric-learn uses too. The tolerance of its inner lasso solves is
# tighter than scikit-learn's 1e-4: on an ill-conditioned P the looser one stalls
# short of the optimum (docs/solver_notes.rst).
_TOL = 1e-4
_ENET_TOL = 1e-8
_MAX_ITER = 100


def _prior_inverse(points, prior, random_state, name):
    """``M0⁻¹`` for metric-learn's ``prior`` values; ``M0`` must be strictly PD.

    'identity': ``I``; 'covariance': ``M0`` is the inverse covariance of ``points``,
    so ``M0⁻¹`` is the covariance itself (no double inversion, as metric-learn since
    its PR 162); 'random': ``M0 = make_spd_matrix(d, random_state)``; an array: ``M0``.
    """
    d = points.shape[1]
    if isinstance(prior, str):
        if prior == "identity":
            return np.eye(d)
        if prior == "covariance":
            if points.shape[0] < 2:
                raise ValueError(f"{name}: prior='covariance' needs at least 2 points.")
            cov = np.atleast_2d(np.cov(points, rowvar=False))
            w = np.linalg.eigvalsh(cov)
            if w[0] <= np.abs(w).max() * d * np.finfo(np.float64).eps:
                raise NonPSDError(
                    f"{name}: prior='covariance' needs a positive definite covariance, "
                    f"but the covariance of the points is singular (smallest eigenvalue "
                    f"{w[0]:.3g}; e.g. a constant or linearly dependent feature). Remove "
                    "those features or reduce the dimension first (e.g. "
                    "sklearn.decomposition.PCA), or use prior='identity'.")
            return 0.5 * (cov + cov.T)
        from sklearn.datasets import make_spd_matrix

        M0 = make_spd_matrix(d, random_state=check_random_state(random_state))
    else:
        M0 = check_psd(prior, name="prior")
        if M0.shape != (d, d):
            raise ValueError(f"{name}: prior must have shape ({d}, {d}); got "
                             f"{M0.shape}.")
    w, V = np.linalg.eigh(M0)
    if w[0] <= np.abs(w).max() * d * np.finfo(np.float64).eps:
        raise NonPSDError(f"{name}: the prior must be strictly positive definite; its "
                          f"smallest eigenvalue is {w[0]:.3g}. Add a small multiple "
                          "of the identity, or use prior='identity'.")
    inv = (V / w) @ V.T
    return 0.5 * (inv + inv.T)


class _SDMLSolverMixin:
    """The parameters both estimators share and ``fit``'s common tail: the prior,
    the solver, storing the result."""

    _parameter_constraints = {
        "balance_param": [Interval(Real, 0, None, closed="left")],
        "sparsity_param": [Interval(Real, 0, None, closed="left")],
        "prior": [StrOptions({"identity", "covariance", "random"}), "array-like"],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
    }

    def _solve(self, loss_matrix, points):
        name = type(self).__name__
        prior_inv = _prior_inverse(points, self.prior, self.random_state, name)
        M, n_iter, info = sdml_solve(prior_inv, loss_matrix, float(self.balance_param),
                                     float(self.sparsity_param), tol=_TOL,
                                     enet_tol=_ENET_TOL, max_iter=_MAX_ITER,
                                     verbose=self.verbose,
                                     name=name)
        self.components_ = components_from_metric(M)
        self.n_iter_ = n_iter
        self.balance_param_ = info["balance_param"]


_PARAMS_DOC = """\
    balance_param : float, default=0.5
        ``η``, the weight of the pairs' term ``Σ_p y_p δ_p δ_pᵀ`` (a sum over the
        pairs, as in metric-learn: it grows with their number) against the prior's
        ``M0⁻¹`` in ``P``. Too large a value makes ``P`` indefinite and the problem
        unbounded: ``fit`` then warns and lowers it to the value for which
        ``P ⪰ ½ M0⁻¹`` (stored in ``balance_param_``; see Notes).
    sparsity_param : float, default=0.01
        ``λ``, the weight of the ℓ1 norm of ``M``'s off-diagonal entries (the
        graphical lasso's ``alpha``): larger values give a sparser ``M``.
    prior : {'identity', 'covariance', 'random'} or array of shape (d, d), \
default='identity'
        The prior metric ``M0`` (strictly positive definite). 'identity': ``I``;
        'covariance': the inverse covariance of the points (:class:`SDML`: the
        distinct points of the pairs, as metric-learn; :class:`SDML_Supervised`: all
        of ``X``, where metric-learn takes the points of the sampled pairs), so that
        ``M0⁻¹`` is their covariance (an error if it is singular, as in
        metric-learn); 'random': a
        random SPD matrix (``sklearn.datasets.make_spd_matrix`` with
        ``random_state``); an array: used as ``M0``.
    verbose : bool, default=False
        Print the graphical lasso's cost and duality gap at each iteration."""


class SDML(PairsClassifierMixin, MahalanobisMixin, _SDMLSolverMixin, BaseEstimator):
    __doc__ = """Sparse Distance Metric Learning from similar / dissimilar pairs.

    Solves ``min_{M ≻ 0} tr(M P) − log det M + λ Σ_{i≠j} |M_ij|`` with
    ``P = M0⁻¹ + η Σ_p y_p δ_p δ_pᵀ`` (Qi et al. 2009): a log-determinant
    divergence to the prior ``M0``, the pairs' loss (similar pairs, ``y = +1``,
    pulled together; dissimilar, ``y = −1``, pushed apart) and an ℓ1 penalty that
    makes ``M`` sparse. It is a graphical lasso on ``P``, solved by scikit-learn's
    (up to 64 features) or by a compiled one (above, and where scikit-learn's fails
    on an ill-conditioned ``P``).

    Parameters
    ----------
""" + _PARAMS_DOC + """
    preprocessor : array-like or callable, optional
        If an array ``X``, pairs may be given as integer indices into it, shape
        ``(n_pairs, 2)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None
        For ``prior='random'``.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``G`` with ``M = Gᵀ G``.
    n_iter_ : int
        Iterations of the graphical lasso.
    balance_param_ : float
        The ``η`` used: ``balance_param``, or the lowered value when ``P`` was not
        positive definite.
    n_features_in_ : int
    threshold_ : float
        Distance below which a pair is predicted similar (set by
        :meth:`calibrate_threshold` at the end of ``fit``).
    classes_ : ndarray ``[-1, 1]``

    Notes
    -----
    ``P`` is positive definite iff ``1 + η μ > 0``, with ``μ`` the smallest
    eigenvalue of ``L = Σ_p y_p δ_p δ_pᵀ`` relative to ``M0⁻¹``. Otherwise
    (dissimilar pairs outweigh the prior along some direction) the objective is
    unbounded below (unless the ℓ1 term compensates) and metric-learn's fit raises.
    mahal warns and solves with ``η = 1 / (2|μ|)`` instead, the value for which
    ``P ⪰ ½ M0⁻¹``: metric-learn's advice ("decrease balance_param"), applied.

    References
    ----------
    .. [1] G. Qi, J. Tang, Z. Zha, T. Chua, H. Zhang. An efficient sparse metric
       learning in high-dimensional space via l1-penalized log-determinant
       regularization. ICML 2009.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import SDML
    >>> X = np.array([[0., 0.], [0., 1.], [3., 0.], [3.3, 0.2]])
    >>> pairs = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])
    >>> sdml = SDML(balance_param=0.01, preprocessor=X).fit(pairs, [1, 1, -1, -1])
    >>> sdml.predict(pairs).tolist()
    [1, 1, -1, -1]
    """

    def __init__(self, balance_param=0.5, sparsity_param=0.01, prior="identity",
                 verbose=False, preprocessor=None, random_state=None):
        self.balance_param = balance_param
        self.sparsity_param = sparsity_param
        self.prior = prior
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features), or (n_pairs, 2)
            identifiers when a ``preprocessor`` was given.
        y : array-like of shape (n_pairs,)
            +1 for a similar pair, −1 for a dissimilar one.
        calibration_params : dict, optional
            Keyword arguments of :meth:`calibrate_threshold`, checked before the
            metric is learned.

        Returns
        -------
        self
        """
        calibration_params = dict(calibration_params or {})
        self._validate_calibration_params(**calibration_params)
        pairs, y = self._validate_pairs_fit(pairs, y)
        points = pairs.reshape(-1, pairs.shape[2])
        if isinstance(self.prior, str) and self.prior == "covariance":
            # each distinct point of the pairs once, as metric-learn (a sort: only
            # when the prior needs the points)
            points = np.unique(points, axis=0)
        self._solve(pair_loss_matrix(pairs[:, 0] - pairs[:, 1], y), points)
        self.calibrate_threshold(pairs, y, **calibration_params)
        return self


class SDML_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                      _SDMLSolverMixin, BaseEstimator):
    __doc__ = """SDML learned from class labels: same-class pairs similar, others
    dissimilar.

    Samples ``n_constraints`` similar and as many dissimilar pairs with
    :class:`mahal.Constraints` (deterministic given ``random_state``) and solves
    :class:`SDML`'s problem on them.

    Parameters
    ----------
""" + _PARAMS_DOC + """
    n_constraints : int or None, default=None
        Number of similar and of dissimilar pairs to sample; None means
        ``20 · n_classes²`` (metric-learn's meaning and default).
    preprocessor : array-like or callable, optional
        If given, ``X`` may be 1-D identifiers that it maps to points.
    random_state : int, RandomState or None
        Seeds the pair sampling and ``prior='random'``.
    num_constraints : int, None or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_constraints`` (deprecated there since
        0.6.3): when set, ``fit`` uses it and warns with a ``FutureWarning``.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
    n_iter_ : int
    balance_param_ : float
        The ``η`` used (see :class:`SDML`).
    n_features_in_ : int

    See Also
    --------
    SDML : the problem solved, and what happens when ``P`` is not positive definite
        (with the default ``balance_param`` and ``20 · n_classes²`` pairs of each
        kind, that is the usual case on standardised data).

    References
    ----------
    G.-J. Qi, J. Tang, Z.-J. Zha, T.-S. Chua and H.-J. Zhang, "An efficient sparse
    metric learning in high-dimensional space via l1-penalized log-determinant
    regularization", ICML 2009.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.preprocessing import StandardScaler
    >>> from mahal import SDML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> X = StandardScaler().fit_transform(X)
    >>> sdml = SDML_Supervised(balance_param=1e-4, random_state=0).fit(X, y)
    >>> sdml.transform(X).shape
    (150, 4)
    """

    def __init__(self, balance_param=0.5, sparsity_param=0.01, prior="identity",
                 n_constraints=None, verbose=False, preprocessor=None,
                 random_state=None, num_constraints="deprecated"):
        self.balance_param = balance_param
        self.sparsity_param = sparsity_param
        self.prior = prior
        self.n_constraints = n_constraints
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.num_constraints = num_constraints

    _parameter_constraints = {
        **_SDMLSolverMixin._parameter_constraints,
        **N_CONSTRAINTS,
    }

    _deprecated_aliases = {"num_constraints": "n_constraints"}

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, y):
        """Learn the metric from points ``X`` and their class labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes and one class with two members.

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y))
        name = type(self).__name__
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True)
        _, codes = np.unique(y, return_inverse=True)
        codes = codes.ravel().astype(np.intp)
        counts = np.bincount(codes)
        if counts.max() < 2:
            raise ValueError(f"{name} needs a class with at least two samples: every "
                             "class has a single sample, so there is no similar pair.")
        n_pairs = self.n_constraints
        if n_pairs is None:
            n_pairs = 20 * counts.shape[0] ** 2
        rng = check_random_state(self.random_state)
        with warnings.catch_warnings():
            if self.n_constraints is None:  # metric-learn's default: fewer is fine
                warnings.simplefilter("ignore", UserWarning)
            a, b, c, d = Constraints(codes).positive_negative_pairs(
                int(n_pairs), random_state=rng)
        diffs = np.concatenate([X[a] - X[b], X[c] - X[d]])
        labels = np.concatenate([np.ones(len(a)), -np.ones(len(c))])
        self._solve(pair_loss_matrix(diffs, labels), X)
        return self
