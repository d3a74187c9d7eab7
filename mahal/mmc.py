"""MMC — Mahalanobis Metric for Clustering (Xing, Ng, Jordan & Russell, NIPS 2002).

Given similar pairs ``S`` and dissimilar pairs ``D``, MMC solves

    maximise_A   f(A) = Σ_{(x,x')∈D} ‖x − x'‖_A          (‖δ‖_A = sqrt(δᵀ A δ))
    subject to   Σ_{(x,x')∈S} ‖x − x'‖²_A ≤ 1,   A ⪰ 0.

The objective uses the *unsquared* distance on ``D`` on purpose: with squared distances
in both terms the problem is linear in ``A`` and its optimum is rank one (the top
generalised eigenvector of ``(C_D, C_S)``). ``f`` is concave, the feasible set convex,
so the problem is convex and :func:`mahal.reference.mmc` solves it with cvxpy.

The solver (and how it works) is in :mod:`mahal._mmc_solver`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._mmc_solver import CrossClassPairs, DiffPairs, mmc_solve, scatter
from ._validation import N_CONSTRAINTS, IntAtLeast, check_points, require_y
from .constraints import Constraints
from .base import (
    MahalanobisMixin,
    PairsClassifierMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    initialize_metric,
    resolve_deprecated_aliases,
)
from ._parallel import fit_threads
from .linalg import components_from_metric

__all__ = ["MMC", "MMC_Supervised"]

# Supervised fit with n_constraints=None uses every pair when the data has at most
# _ALL_PAIRS_MAX pairs (n ≤ 2000); beyond, it samples pairs of each kind: at most
# _SAMPLED_PAIRS, and at most _SAMPLED_FLOPS / d² (an explicit pair costs O(d²) per
# iteration), but never fewer than metric-learn's 20·n_classes². The diagonal Newton
# solver needs the Hessian Σ_D w q qᵀ, O(m d²) per iteration with no implicit
# shortcut, hence its smaller budgets (measurements: docs/solver_notes.rst).
_ALL_PAIRS_MAX = 2_000_000
_SAMPLED_PAIRS = 200_000
_ALL_PAIRS_MAX_DIAG = 50_000      # n ≤ 316
_SAMPLED_PAIRS_DIAG = 20_000
_SAMPLED_FLOPS = 2_000_000_000
# metric-learn's floor of 20·n_classes² pairs of each kind, capped so that memory
# stays bounded with many classes (50000 points in classes of 5 would otherwise
# ask for more dissimilar pairs than exist and enumerate all of them).
_MAX_FLOOR_PAIRS = 1_000_000


# ---------------------------------------------------------------------------
# Estimators


class _MMCSolverMixin:
    """``fit``'s common tail: initialise, call :func:`mmc_solve`, store the result;
    and the parameters both estimators share."""

    _parameter_constraints = {
        "max_iter": [IntAtLeast(1)],
        "max_proj": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "init": [StrOptions({"identity", "covariance", "random"}), "array-like"],
        "diagonal": ["boolean"],
        "diagonal_c": [Interval(Real, 0, None, closed="neither")],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
        # metric-learn's deprecated name of ``tol`` (see ``_deprecated_aliases``)
        "convergence_threshold": [StrOptions({"deprecated"}),
                                  Interval(Real, 0, None, closed="neither")],
    }

    def _solve(self, C_S, C_D, make_oracle, points):
        A0 = initialize_metric(points, self.init, random_state=self.random_state)
        A, n_iter = mmc_solve(C_S, C_D, make_oracle, A0, diagonal=bool(self.diagonal),
                              diagonal_c=float(self.diagonal_c),
                              max_iter=int(self.max_iter), tol=float(self.tol),
                              verbose=self.verbose, name=type(self).__name__)
        self.components_ = components_from_metric(A)
        self.n_iter_ = int(n_iter)


class MMC(PairsClassifierMixin, MahalanobisMixin, _MMCSolverMixin, BaseEstimator):
    """Mahalanobis Metric for Clustering, learned from similar/dissimilar pairs.

    Solves ``max_A Σ_D ‖x − x'‖_A  s.t.  Σ_S ‖x − x'‖²_A ≤ 1, A ⪰ 0`` (Xing et al.
    2002) exactly, full or diagonal. The dissimilarity term uses the unsquared distance
    on purpose: with squared distances in both terms the problem would be linear in
    ``A`` with a rank-one optimum. See :mod:`mahal.mmc` for the solver: projected
    gradient ascent in the whitened space of the similar pairs, where the projection
    onto the feasible set is exact (an eigen-decomposition and a simplex projection),
    stopped by a certified optimality gap.

    Parameters
    ----------
    max_iter : int, default=100
        Maximum number of (projected gradient or Newton) iterations.
    max_proj : int, default=10000
        Kept for compatibility with metric-learn, where it bounds the alternating
        projections. Here the projection is exact (no inner iterations), so it is
        unused.
    tol : float, default=1e-3
        Convergence tolerance: the solver stops when the objective is certified to be
        within a relative ``tol`` of the optimum (a Frank–Wolfe duality gap) or, for
        the full solver, when it improved by less than a relative ``tol`` over the
        last 10 iterations.
    init : {'identity', 'covariance', 'random'} or array of shape (d, d), \
default='identity'
        Initial matrix ``A`` (the problem is convex: it only affects speed).
    diagonal : bool, default=False
        Learn a diagonal ``A`` with Xing's diagonal formulation
        ``min_a Σ_S ‖δ‖²_a − c log Σ_D ‖δ‖_a`` (projected Newton). Its minimiser is
        ``c/2`` times the optimum of the constrained problem restricted to diagonal
        matrices, so ``Σ_S ‖δ‖²_A = diagonal_c / 2`` (metric-learn's scale).
    diagonal_c : float, default=1.0
        Weight ``c`` of the dissimilarity term in the diagonal formulation.
    verbose : bool, default=False
        Print an iteration table (iteration, objective, time).
    preprocessor : array-like or callable, optional
        If an array ``X``, pairs may be given as integer indices into it, shape
        ``(n_pairs, 2)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None
        For ``init='random'``.
    convergence_threshold : float or 'deprecated', default='deprecated'
        metric-learn's former name of ``tol`` (deprecated there since 0.6.3): when
        set, ``fit`` uses it as ``tol`` and warns with a ``FutureWarning``.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``G`` with ``A = Gᵀ G``.
    n_iter_ : int
    n_features_in_ : int
    threshold_ : float
        Distance below which a pair is predicted similar (set by
        :meth:`calibrate_threshold` at the end of ``fit``).
    classes_ : ndarray ``[-1, 1]``

    Notes
    -----
    When no similar pair varies along a direction in which dissimilar pairs do, the
    problem is unbounded; a ``UserWarning`` is raised and the limiting metric (the
    problem restricted to those directions, normalised to trace 1) is returned.

    References
    ----------
    E. P. Xing, A. Y. Ng, M. I. Jordan and S. Russell, "Distance metric learning,
    with application to clustering with side-information", NIPS 15 (2002).

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import MMC
    >>> X = np.array([[0., 0.], [0., 1.], [3., 0.], [3.3, 0.2]])
    >>> pairs = np.array([[0, 1], [2, 3], [0, 2], [1, 3]])
    >>> mmc = MMC(preprocessor=X).fit(pairs, [1, 1, -1, -1])
    >>> mmc.predict(pairs).tolist()
    [1, 1, -1, -1]
    """

    def __init__(self, max_iter=100, max_proj=10000, tol=1e-3, init="identity",
                 diagonal=False, diagonal_c=1.0, verbose=False, preprocessor=None,
                 random_state=None, convergence_threshold="deprecated"):
        self.convergence_threshold = convergence_threshold
        self.max_iter = max_iter
        self.max_proj = max_proj
        self.tol = tol
        self.init = init
        self.diagonal = diagonal
        self.diagonal_c = diagonal_c
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    _deprecated_aliases = {"convergence_threshold": "tol"}

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, pairs, y, calibration_params=None):
        """Learn the metric from labelled pairs.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features), or (n_pairs, 2)
            identifiers when a ``preprocessor`` was given.
        y : array-like of shape (n_pairs,)
            +1 for a similar pair, −1 for a dissimilar one. Both kinds are needed.
        calibration_params : dict, optional
            Keyword arguments of :meth:`calibrate_threshold` (e.g.
            ``{'strategy': 'f_beta', 'beta': 2}``), checked before the metric is
            learned: invalid ones raise and leave the learner unfitted.

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(pairs, y,
                                                             calibration_params))
        calibration_params = dict(calibration_params or {})
        self._validate_calibration_params(**calibration_params)
        pairs, y = self._validate_pairs_fit(pairs, y)
        pos = y == 1
        if not pos.any():
            raise ValueError("MMC needs at least one similar pair (label +1); y has "
                             "only dissimilar pairs (-1).")
        if pos.all():
            raise ValueError("MMC needs at least one dissimilar pair (label -1); y "
                             "has only similar pairs (+1).")
        diffs = pairs[:, 0] - pairs[:, 1]
        S, D = diffs[pos], diffs[~pos]
        self._solve(S.T @ S, D.T @ D, lambda W: DiffPairs(diffs=D @ W),
                    pairs.reshape(-1, pairs.shape[2]))
        self.calibrate_threshold(pairs, y, **calibration_params)
        return self


class MMC_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                     _MMCSolverMixin, BaseEstimator):
    """MMC learned from class labels: same-class pairs similar, others dissimilar.

    Parameters
    ----------
    max_iter : int, default=100
    max_proj : int, default=10000
        Unused (see :class:`MMC`); kept for compatibility.
    tol : float, default=1e-6
        Relative optimality gap / progress at which to stop (see :class:`MMC`).
    n_constraints : int or None, default=None
        Number of similar and of dissimilar pairs to sample (with ``random_state``).
        None uses **all** pairs when there are at most 2·10⁶ of them
        (``n_samples ≤ 2000``): the full solver then never materialises the pairs
        (distances come in row blocks of a Gram matrix, O(n² d) per iteration), so
        this is both the most faithful and fast.
        Larger data sample ``min(2·10⁵, 2·10⁹ / d²)`` pairs of each kind (an
        explicit pair costs O(d²) per iteration), but at least metric-learn's
        ``20 · n_classes²`` up to 10⁶ (memory and time per iteration grow with the
        number of pairs; a given ``n_constraints`` is taken as is). With ``diagonal=True`` the Newton solver needs an
        O(n_pairs · d²) Hessian per iteration, so all pairs are used up to 5·10⁴
        pairs (``n_samples ≤ 316``), else ``min(2·10⁴, 2·10⁹ / d²)`` of each kind are
        sampled. (metric-learn's default, ``20 · n_classes²`` pairs of each kind,
        gives a noisier metric.)
    init, diagonal, diagonal_c, verbose, preprocessor
        As in :class:`MMC`.
    random_state : int, RandomState or None
        Seeds pair sampling and ``init='random'``; the result is deterministic for a
        fixed seed.
    num_constraints : int, None or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_constraints`` (deprecated there since
        0.6.3): when set, ``fit`` uses it as ``n_constraints`` and warns with a
        ``FutureWarning``.
    convergence_threshold : float or 'deprecated', default='deprecated'
        Former name of ``tol``, likewise.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
    n_iter_ : int
    n_features_in_ : int

    References
    ----------
    E. P. Xing, A. Y. Ng, M. I. Jordan and S. Russell, "Distance metric learning,
    with application to clustering with side-information", NIPS 15 (2002).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import MMC_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> MMC_Supervised().fit(X, y).transform(X).shape
    (150, 4)
    """

    def __init__(self, max_iter=100, max_proj=10000, tol=1e-6, n_constraints=None,
                 init="identity", diagonal=False, diagonal_c=1.0, verbose=False,
                 preprocessor=None, random_state=None, num_constraints="deprecated",
                 convergence_threshold="deprecated"):
        self.num_constraints = num_constraints
        self.convergence_threshold = convergence_threshold
        self.max_iter = max_iter
        self.max_proj = max_proj
        self.tol = tol
        self.n_constraints = n_constraints
        self.init = init
        self.diagonal = diagonal
        self.diagonal_c = diagonal_c
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    _parameter_constraints = {
        **_MMCSolverMixin._parameter_constraints,
        **N_CONSTRAINTS,
    }

    _deprecated_aliases = {"num_constraints": "n_constraints",
                           "convergence_threshold": "tol"}

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, y):
        """Learn the metric from points ``X`` and their class labels ``y``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels (any hashable type, e.g. strings); at least two classes and
            one class with two members.

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y))
        name = type(self).__name__
        require_y(self, y)
        nc = self.n_constraints
        X, y = check_points(self, X, y, classification=True)
        _, codes = np.unique(y, return_inverse=True)
        codes = codes.ravel().astype(np.intp)
        counts = np.bincount(codes)
        if counts.max() < 2:
            raise ValueError(f"{name} needs a class with at least two samples: every "
                             "class has a single sample, so there is no similar pair.")
        n, d = X.shape
        Xc = X - X.mean(axis=0)
        diagonal = bool(self.diagonal)
        all_max = _ALL_PAIRS_MAX_DIAG if diagonal else _ALL_PAIRS_MAX
        if nc is None and n * (n - 1) // 2 <= all_max:
            # every pair: C_S = Σ_c n_c · scatter_c, C_D = n · scatter − C_S
            C_S = np.zeros((d, d))
            for c in np.flatnonzero(counts > 1):
                Xk = Xc[codes == c]
                Xk = Xk - Xk.mean(axis=0)
                C_S += counts[c] * (Xk.T @ Xk)
            C_D = n * (Xc.T @ Xc) - C_S
            if diagonal:
                _, _, ci, di = Constraints(codes).all_pairs()

                def make_oracle(W):
                    return DiffPairs(points=Xc @ W, i=ci, j=di)
            else:
                def make_oracle(W):
                    return CrossClassPairs(Xc @ W, codes)
        else:
            if nc is not None:
                n_pairs = int(nc)
            else:
                cap = _SAMPLED_PAIRS_DIAG if diagonal else _SAMPLED_PAIRS
                n_pairs = max(min(20 * counts.shape[0] ** 2, _MAX_FLOOR_PAIRS),
                              min(cap, _SAMPLED_FLOPS // max(d * d, 1)))
            rng = check_random_state(self.random_state)
            with warnings.catch_warnings():
                if nc is None:  # our own budget: fewer pairs than it is fine
                    warnings.simplefilter("ignore", UserWarning)
                a, b, ci, di = Constraints(codes).positive_negative_pairs(
                    n_pairs, random_state=rng)
            C_S = scatter(Xc, a, b)
            C_D = scatter(Xc, ci, di)

            def make_oracle(W):
                return DiffPairs(points=Xc @ W, i=ci, j=di)
        self._solve(C_S, C_D, make_oracle, X)
        return self
