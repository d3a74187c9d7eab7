"""SCML — Sparse Compositional Metric Learning (Shi, Bellet & Sha, AAAI 2014).

The metric is a sparse non-negative combination of fixed rank-one bases,
``M = Σ_k w_k b_k b_kᵀ``, learned from (anchor, closer, farther) triplets:

    min_{w ≥ 0}  (1/T) Σ_t [1 + d_M(x_t, x_t⁺) − d_M(x_t, x_t⁻)]_+ + β ‖w‖₁

with squared distances ``d_M``. Given the bases this is a linear program in ``w``;
:mod:`mahal._scml_solver` solves it to a certified optimality gap (metric-learn runs
10 000 AdaGrad steps on batches of 10 triplets), and builds the bases as metric-learn
0.7 does (``'triplet_diffs'``, ``'lda'``).
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._parallel import fit_threads
from ._scml_solver import lda_bases, scml_solve, triplet_diff_bases
from ._validation import IntAtLeast, check_points, check_points_array, require_y
from .base import MahalanobisMixin, SupervisedMixin, TripletsClassifierMixin
from .constraints import Constraints
from .linalg import components_from_metric

__all__ = ["SCML", "SCML_Supervised"]

# Default number of bases per feature: metric-learn's 20 for 'lda' (capped by the
# number of samples, as there); 20 for 'triplet_diffs' where metric-learn has 80
# (measured in docs/solver_notes.rst: as good a k-NN error for a fraction of the time)
_DIFF_BASES_PER_FEATURE = 20
_LDA_BASES_PER_FEATURE = 20


class _SCMLSolverMixin:
    """The parameters both estimators share and ``fit``'s common tail."""

    _parameter_constraints = {
        "beta": [Interval(Real, 0, None, closed="left")],
        "basis": [StrOptions({"triplet_diffs"}), "array-like"],
        "n_basis": [IntAtLeast(1), None],
        "gamma": [Interval(Real, 0, None, closed="neither")],
        "max_iter": [IntAtLeast(1)],
        "output_iter": [IntAtLeast(1)],
        "batch_size": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="neither")],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "random_state": ["random_state"],
    }

    def _basis(self, X, triplets, rng, y=None):
        """The bases (rows), from ``basis`` and ``n_basis``."""
        d = X.shape[1]
        if not isinstance(self.basis, str):
            B = check_points_array(self.basis, name="basis")
            if B.ndim != 2 or B.shape[1] != d:
                raise ValueError(f"basis must be an array of shape (n_basis, "
                                 f"n_features={d}); got shape {B.shape}.")
            if self.n_basis is not None and self.n_basis != B.shape[0]:
                raise ValueError(f"n_basis={self.n_basis} does not match the "
                                 f"{B.shape[0]} rows of the basis array.")
            return B.copy()
        if self.basis == "triplet_diffs":
            n_basis = (self.n_basis if self.n_basis is not None
                       else _DIFF_BASES_PER_FEATURE * d)
            return triplet_diff_bases(X, triplets, n_basis, rng)
        # 'lda' (SCML_Supervised only)
        n, n_classes = X.shape[0], np.unique(y).shape[0]
        r = min(n_classes - 1, d)
        n_basis = (self.n_basis if self.n_basis is not None
                   else min(_LDA_BASES_PER_FEATURE * d, 2 * n * r - 1))
        if n_basis >= 2 * n * r:
            raise ValueError(f"Not enough samples to generate {n_basis} LDA bases: "
                             f"n_basis must be smaller than 2·n_samples·min(n_classes"
                             f" − 1, n_features) = {2 * n * r}.")
        if n_basis < n_classes:
            warnings.warn(f"n_basis={n_basis} is less than the number of classes "
                          f"({n_classes}), which may lead to poor discriminative "
                          "performance.", UserWarning, stacklevel=6)
        return lda_bases(X, y, n_basis, rng)

    def _solve(self, X, triplets, y=None):
        if triplets.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} has no triplet to learn from.")
        rng = check_random_state(self.random_state)
        B = self._basis(X, triplets, rng, y)
        w, n_iter, _, info = scml_solve(
            X, triplets, B, float(self.beta), tol=float(self.tol),
            max_iter=int(self.max_iter), verbose=bool(self.verbose),
            name=type(self).__name__)
        self.basis_, self.weights_ = B, w
        self.n_iter_ = int(n_iter)
        self.objective_ = info["objective"]
        active = w > 0
        d = X.shape[1]
        if not active.any():
            warnings.warn(f"{type(self).__name__}: every weight is zero (the L1 "
                          f"penalty beta={self.beta:g} outweighs what any basis gains"
                          "); the learned metric is zero. Decrease beta.",
                          UserWarning, stacklevel=5)
            self.components_ = np.zeros((1, d))
        elif active.sum() < d:
            warnings.warn(f"The number of bases with nonzero weight ({active.sum()}) "
                          f"is less than the number of features ({d}): the learned "
                          "transformation reduces the dimension to "
                          f"{active.sum()}.", UserWarning, stacklevel=5)
            self.components_ = np.sqrt(w[active])[:, None] * B[active]
        else:
            self.components_ = components_from_metric(B[active].T
                                                      @ (w[active, None] * B[active]))


def _triplet_indices(triplets):
    """Distinct points of ``(T, 3, d)`` triplets and the triplets as their indices."""
    T, _, d = triplets.shape
    rows = np.ascontiguousarray(triplets.reshape(-1, d))
    key = rows.view(np.dtype((np.void, rows.dtype.itemsize * d))).ravel()
    _, first, inv = np.unique(key, return_index=True, return_inverse=True)
    return rows[first], inv.reshape(T, 3).astype(np.intp)


class SCML(TripletsClassifierMixin, MahalanobisMixin, _SCMLSolverMixin, BaseEstimator):
    """Sparse Compositional Metric Learning from triplets.

    Learns ``M = Σ_k w_k b_k b_kᵀ`` with sparse weights ``w ≥ 0`` on a fixed set of
    rank-one bases ``b_k``, minimising
    ``(1/T) Σ_t [1 + d_M(x_t, x_t⁺) − d_M(x_t, x_t⁻)]_+ + β ‖w‖₁`` over triplets
    (anchor, closer, farther). Given the bases this is a linear program, solved
    full-batch to a certified duality gap (see :mod:`mahal._scml_solver`).

    Parameters
    ----------
    beta : float, default=1e-5
        Weight of the L1 penalty on ``w``: larger values give fewer active bases.
    basis : 'triplet_diffs' or array of shape (n_basis, n_features), \
default='triplet_diffs'
        The bases. ``'triplet_diffs'``: eigenvectors of ``Σ δ⁺δ⁺ᵀ − δ⁻δ⁻ᵀ`` over
        random groups of triplets (metric-learn's construction; see
        :func:`mahal._scml_solver.triplet_diff_bases`). An array: its rows.
    n_basis : int, optional
        Number of bases to build. Default ``20 · n_features`` for
        ``'triplet_diffs'`` (metric-learn has ``80 · n_features``: on digits that
        fits the training triplets almost exactly, with a 3-NN error no better than
        with 20 per feature, for twice the time; see ``docs/solver_notes.rst``).
        Must match the array's rows if given with an array.
    gamma : float, default=5e-3
        metric-learn's AdaGrad learning rate; kept for compatibility, unused (the
        problem is solved exactly, without a learning rate).
    max_iter : int, default=100
        Maximum number of rounds of the solver (a restricted linear program, then
        pricing of every triplet and basis). metric-learn's ``max_iter`` counts its
        stochastic steps instead; a round here does the work of a full pass.
    output_iter : int, default=500
        Unused (metric-learn's period of objective printing); kept for
        compatibility. ``verbose`` prints every round.
    batch_size : int, default=10
        Unused (metric-learn's stochastic batch size); kept for compatibility.
    tol : float, default=1e-5
        The solver stops when its duality gap certifies the objective within a
        relative ``tol`` of the optimum.
    verbose : bool, default=False
        Print one line per round (objective, gap, size of the restricted problem).
    preprocessor : array-like or callable, optional
        If an array ``X``, triplets may be given as indices into it, shape
        ``(n_triplets, 3)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None
        Seeds the choice of triplets of ``'triplet_diffs'``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        ``G`` with ``M = GᵀG``: ``diag(√w) B`` on the active bases when there are
        fewer of them than features (a dimension reduction, with a warning, as in
        metric-learn), else a factor of ``M`` of shape (n_features, n_features).
    basis_ : ndarray of shape (n_basis, n_features)
        The bases ``b_k`` (rows).
    weights_ : ndarray of shape (n_basis,)
        Their weights ``w_k ≥ 0``.
    objective_ : float
        The objective at ``weights_``.
    n_iter_ : int
        Rounds taken.
    n_features_in_ : int

    References
    ----------
    Y. Shi, A. Bellet and F. Sha. Sparse Compositional Metric Learning. AAAI 2014.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import SCML
    >>> X = np.array([[0., 0.], [0., 1.], [3., 0.], [3., 1.], [0., 2.], [3., 2.]])
    >>> triplets = np.array([[0, 1, 2], [2, 3, 0], [1, 4, 3], [3, 5, 1]])
    >>> scml = SCML(basis=np.eye(2), preprocessor=X).fit(triplets)
    >>> scml.predict(triplets).tolist()
    [1, 1, 1, 1]
    """

    def __init__(self, beta=1e-5, basis="triplet_diffs", n_basis=None, gamma=5e-3,
                 max_iter=100, output_iter=500, batch_size=10, tol=1e-5,
                 verbose=False, preprocessor=None, random_state=None):
        self.beta = beta
        self.basis = basis
        self.n_basis = n_basis
        self.gamma = gamma
        self.max_iter = max_iter
        self.output_iter = output_iter
        self.batch_size = batch_size
        self.tol = tol
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, triplets):
        """Learn the weights from triplets.

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features), or \
(n_triplets, 3) identifiers when a ``preprocessor`` was given
            (anchor, closer, farther): the anchor should be closer to the second
            point than to the third.

        Returns
        -------
        self
        """
        triplets = self._validate_triplets_fit(triplets)
        X, idx = _triplet_indices(triplets)
        self._solve(X, idx)
        return self


class SCML_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                      _SCMLSolverMixin, BaseEstimator):
    """SCML learned from class labels, on k-nearest-neighbour triplets.

    Each point ``i`` gives the triplets ``(i, j, l)`` with ``j`` one of its
    ``k_genuine`` nearest neighbours of the same class and ``l`` one of its
    ``k_impostor`` nearest neighbours of another class
    (:meth:`mahal.Constraints.generate_knntriplets`); then :class:`SCML`'s problem is
    solved on them.

    Parameters
    ----------
    k_genuine : int, default=3
        Same-class neighbours per point.
    k_impostor : int, default=10
        Other-class neighbours per point.
    beta : float, default=1e-5
        Weight of the L1 penalty on ``w``.
    basis : {'lda', 'triplet_diffs'} or array of shape (n_basis, n_features), \
default='lda'
        ``'lda'``: discriminant directions of local regions (k-means centres and
        their neighbours of each class, at two scales; see
        :func:`mahal._scml_solver.lda_bases`), metric-learn's default.
        ``'triplet_diffs'`` as in :class:`SCML`; an array: its rows.
    n_basis : int, optional
        Number of bases. Default for ``'lda'``:
        ``min(20 · n_features, 2 · n_samples · min(n_classes − 1, n_features) − 1)``
        (metric-learn's); for ``'triplet_diffs'`` ``20 · n_features`` (see
        :class:`SCML`).
    gamma, max_iter, output_iter, batch_size, tol, verbose, preprocessor
        As in :class:`SCML`.
    random_state : int, RandomState or None
        Seeds the k-means of ``'lda'`` and the triplet groups of ``'triplet_diffs'``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    basis_ : ndarray of shape (n_basis, n_features)
    weights_ : ndarray of shape (n_basis,)
    objective_ : float
    n_iter_ : int
    n_features_in_ : int

    References
    ----------
    Y. Shi, A. Bellet and F. Sha, "Sparse Compositional Metric Learning", AAAI 2014.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import SCML_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> scml = SCML_Supervised(n_basis=40, random_state=0).fit(X, y)
    >>> scml.transform(X).shape[0]
    150
    """

    _parameter_constraints = {
        **_SCMLSolverMixin._parameter_constraints,
        "basis": [StrOptions({"triplet_diffs", "lda"}), "array-like"],
        "k_genuine": [IntAtLeast(1)],
        "k_impostor": [IntAtLeast(1)],
    }

    def __init__(self, k_genuine=3, k_impostor=10, beta=1e-5, basis="lda",
                 n_basis=None, gamma=5e-3, max_iter=100, output_iter=500,
                 batch_size=10, tol=1e-5, verbose=False, preprocessor=None,
                 random_state=None):
        self.k_genuine = k_genuine
        self.k_impostor = k_impostor
        self.beta = beta
        self.basis = basis
        self.n_basis = n_basis
        self.gamma = gamma
        self.max_iter = max_iter
        self.output_iter = output_iter
        self.batch_size = batch_size
        self.tol = tol
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.random_state = random_state

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, X, y):
        """Build k-NN triplets from the labels and learn the weights.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least two classes, and a class with two members.

        Returns
        -------
        self
        """
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        # class codes: Constraints reads a label −1 as "unknown", y's −1 is a class
        _, codes = np.unique(y, return_inverse=True)
        triplets = Constraints(codes.ravel()).generate_knntriplets(
            X, self.k_genuine, self.k_impostor)
        if triplets.shape[0] == 0:
            raise ValueError(f"{type(self).__name__} found no triplet: no class has "
                             "two members.")
        self._solve(X, triplets, y)
        return self
