"""Contrastive — the siamese / DrLIM loss with a linear map (Hadsell, Chopra & LeCun,
CVPR 2006).

Learns ``L`` so that similar pairs are close and dissimilar pairs at least
``margin`` apart: with ``d = ‖L(x − x')‖``, the mean over the pairs of ``d²``
(similar) and ``max(0, margin − d)²`` (dissimilar). The loss, its gradient and the
L-BFGS solve are in :mod:`mahal._contrastive_solver`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._contrastive_solver import contrastive_solve
from ._parallel import fit_threads
from ._validation import IntAtLeast, check_n_components, check_points, require_y
from .base import (
    MahalanobisMixin,
    PairsClassifierMixin,
    SupervisedMixin,
    initialize_components,
)
from .constraints import Constraints

__all__ = ["Contrastive", "Contrastive_Supervised"]

# n_constraints=None samples max(20·n_classes², _PAIRS_PER_POINT·n_samples) pairs
# of each kind (metric-learn's 20·n_classes² alone is a few hundred pairs on a
# small problem), at most _MAX_PAIRS.
_PAIRS_PER_POINT = 5
_MAX_PAIRS = 1_000_000


class _ContrastiveSolverMixin:
    """The parameters both estimators share and ``fit``'s common tail."""

    _parameter_constraints = {
        "margin": [Interval(Real, 0, None, closed="neither")],
        "n_components": [IntAtLeast(1), None],
        "init": [StrOptions({"auto", "pca", "lda", "identity", "random"}),
                 "array-like"],
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
        "callback": [callable, None],
    }

    def _solve(self, diffs, similar, points, labels=None):
        n_components = check_n_components(self.n_components, points.shape[1])
        L0 = initialize_components(n_components, points, labels, self.init,
                                   self.random_state)
        name = type(self).__name__
        L, n_iter, converged, _ = contrastive_solve(
            diffs, similar, L0, margin=float(self.margin), max_iter=int(self.max_iter),
            tol=float(self.tol), verbose=self.verbose, callback=self.callback,
            name=name)
        if not converged:
            warnings.warn(f"[{name}] L-BFGS did not converge in max_iter="
                          f"{self.max_iter} iterations.", ConvergenceWarning)
        self.components_ = L
        self.n_iter_ = n_iter


class Contrastive(PairsClassifierMixin, MahalanobisMixin, _ContrastiveSolverMixin,
                  BaseEstimator):
    """Siamese / DrLIM contrastive loss with a linear map, learned from labelled pairs.

    Minimises, over ``L``, the mean over pairs of ``d²`` for similar pairs and
    ``max(0, margin − d)²`` for dissimilar ones, ``d = ‖L(x − x')‖`` (Hadsell, Chopra
    & LeCun 2006), by L-BFGS with the gradient as a matrix product. In ``M = LᵀL``
    the objective is convex: with ``n_components = n_features`` every local minimum
    in ``L`` is global (the tests find cvxpy's optimum).

    Parameters
    ----------
    margin : float, default=1.0
        Distance (unsquared, in the learned space) that dissimilar pairs should
        exceed; closer dissimilar pairs pay ``(margin − d)²``. Only the ratio of
        ``margin`` to the scale of the data and of ``init`` matters.
    n_components : int or None, default=None
        Dimension of the learned space (rows of ``components_``); None keeps
        ``n_features``.
    init : {'auto', 'pca', 'identity', 'random'} or array of shape \
(n_components, n_features), default='auto'
        Initial ``L``. 'auto' is 'pca' when reducing the dimension, else
        'identity' (pairs carry no class labels, so 'lda' is not available here).
    max_iter : int, default=200
        Maximum number of L-BFGS iterations; reaching it gives a
        ``ConvergenceWarning``.
    tol : float, default=1e-5
        L-BFGS stops when an iteration lowers the loss by at most ``tol``
        (relative).
    verbose : bool, default=False
        Print the loss at every iteration.
    preprocessor : array-like or callable, optional
        If an array ``X``, pairs may be given as integer indices into it, shape
        ``(n_pairs, 2)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None, default=None
        For ``init='random'``.
    callback : callable or None, default=None
        Called after every iteration as ``callback(L, n_iter)``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned ``L``.
    n_iter_ : int
        L-BFGS iterations.
    n_features_in_ : int
    threshold_ : float
        Distance below which a pair is predicted similar (calibrated on the
        training pairs at the end of ``fit``).
    classes_ : ndarray ``[-1, 1]``

    References
    ----------
    R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality reduction by learning an
    invariant mapping", CVPR 2006.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import Contrastive
    >>> X = np.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.2]])
    >>> pairs = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])
    >>> model = Contrastive(preprocessor=X).fit(pairs, [1, 1, -1, -1])
    >>> model.predict(pairs).tolist()
    [1, 1, -1, -1]
    """

    def __init__(self, margin=1.0, n_components=None, init="auto", max_iter=200,
                 tol=1e-5, verbose=False, preprocessor=None, random_state=None,
                 callback=None):
        self.margin = margin
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.callback = callback

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features), or (n_pairs, 2)
            identifiers when a ``preprocessor`` was given.
        y : array-like of shape (n_pairs,)
            +1 for a similar pair, −1 for a dissimilar one; both kinds are needed.
        calibration_params : dict, optional
            Keyword arguments of :meth:`calibrate_threshold`, checked before the
            metric is learned.

        Returns
        -------
        self
        """
        if isinstance(self.init, str) and self.init == "lda":
            raise ValueError("Contrastive: init='lda' needs class labels; pairs have "
                             "none (use Contrastive_Supervised, or another init).")
        calibration_params = dict(calibration_params or {})
        self._validate_calibration_params(**calibration_params)
        pairs, y = self._validate_pairs_fit(pairs, y)
        # with one kind only the loss is degenerate: L = 0 (similar pairs only) or
        # any L large enough (dissimilar only) is optimal
        for label, kind in ((1, "similar pair (label +1)"),
                            (-1, "dissimilar pair (label -1)")):
            if not (y == label).any():
                raise ValueError(f"Contrastive needs at least one {kind}; y has "
                                 f"none.")
        diffs = pairs[:, 0] - pairs[:, 1]
        self._solve(diffs, y == 1, pairs.reshape(-1, pairs.shape[2]))
        self.calibrate_threshold(pairs, y, **calibration_params)
        return self


class Contrastive_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                             _ContrastiveSolverMixin, BaseEstimator):
    """Contrastive loss on pairs sampled from class labels (same class: similar).

    Samples ``n_constraints`` similar and ``n_constraints`` dissimilar pairs with
    :class:`mahal.Constraints` (deterministic under ``random_state``) and minimises
    :class:`Contrastive`'s loss on them.

    Parameters
    ----------
    margin : float, default=1.0
        Distance (unsquared, in the learned space) that dissimilar pairs should
        exceed; closer dissimilar pairs pay ``(margin − d)²``. Only the ratio of
        ``margin`` to the scale of the data and of ``init`` matters.
    n_components : int or None, default=None
        Dimension of the learned space; None keeps ``n_features``.
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or array of shape \
(n_components, n_features), default='auto'
        Initial ``L``. 'auto' as scikit-learn's NeighborhoodComponentsAnalysis:
        'lda' when ``n_components ≤ n_classes − 1``, else 'pca' when reducing the
        dimension, else 'identity'.
    max_iter : int, default=200
        Maximum number of L-BFGS iterations.
    tol : float, default=1e-5
        L-BFGS's relative decrease at which to stop.
    n_constraints : int or None, default=None
        Number of similar pairs, and of dissimilar pairs, to sample (metric-learn's
        meaning). None samples ``max(20 · n_classes², 5 · n_samples)`` of each kind
        (at most 10⁶, and at most as many as exist): metric-learn's
        ``20 · n_classes²`` alone leaves most points out of every pair.
    verbose : bool, default=False
        Print the loss at every iteration.
    preprocessor : array-like or callable, optional
        Maps 1-D identifiers in ``X`` to points.
    random_state : int, RandomState or None, default=None
        Seeds the pair sampling and ``init='random'``.
    callback : callable or None, default=None
        Called after every iteration as ``callback(L, n_iter)``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
    n_features_in_ : int

    References
    ----------
    R. Hadsell, S. Chopra and Y. LeCun, "Dimensionality reduction by learning an
    invariant mapping", CVPR 2006.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import Contrastive_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> Contrastive_Supervised(random_state=0).fit(X, y).transform(X).shape
    (150, 4)
    """

    _parameter_constraints = {
        **_ContrastiveSolverMixin._parameter_constraints,
        "n_constraints": [IntAtLeast(1), None],
    }

    def __init__(self, margin=1.0, n_components=None, init="auto", max_iter=200,
                 tol=1e-5, n_constraints=None, verbose=False, preprocessor=None,
                 random_state=None, callback=None):
        self.margin = margin
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.n_constraints = n_constraints
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state
        self.callback = callback

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
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
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True)
        _, codes = np.unique(y, return_inverse=True)
        codes = codes.ravel()
        counts = np.bincount(codes)
        if counts.max() < 2:
            raise ValueError(f"{type(self).__name__} needs a class with at least two "
                             "samples: every class has a single sample, so there is "
                             "no similar pair.")
        n = X.shape[0]
        nc = self.n_constraints
        n_pairs = int(nc) if nc is not None else min(
            _MAX_PAIRS, max(20 * counts.shape[0] ** 2, _PAIRS_PER_POINT * n))
        rng = check_random_state(self.random_state)
        with warnings.catch_warnings():
            if nc is None:  # our own budget: fewer pairs than it is fine
                warnings.simplefilter("ignore", UserWarning)
            a, b, c, d = Constraints(codes).positive_negative_pairs(
                n_pairs, random_state=rng)
        diffs = np.concatenate([X[a] - X[b], X[c] - X[d]])
        similar = np.arange(diffs.shape[0]) < a.shape[0]
        self._solve(diffs, similar, X, codes)
        return self
