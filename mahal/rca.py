"""RCA — Relevant Component Analysis (Bar-Hillel, Hertz, Shental & Weinshall, 2005).

Learns a metric from chunklets, groups of points known to belong to the same class:
the inverse of the within-chunklet covariance ``C``, the minimiser of

    Σ_chunklets Σ_{x in chunklet} d_M(x, m_chunklet) − N log det M,

so that ``transform`` whitens the chunklets. The closed form, the optional dimension
reduction and the handling of a rank-deficient ``C`` are in :mod:`mahal._rca_solver`.
"""

import warnings

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import StrOptions

from ._parallel import fit_threads
from ._rca_solver import rca_solve
from ._validation import (
    IntAtLeast,
    check_chunks,
    check_n_components,
    check_points,
    require_y,
)
from .base import (
    MahalanobisMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    resolve_deprecated_aliases,
)
from .constraints import Constraints

__all__ = ["RCA", "RCA_Supervised"]


class RCA(MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Relevant Component Analysis, learned from chunklets.

    The metric is the inverse of the within-chunklet covariance ``C`` (points in a
    chunklet share a class, so what varies inside chunklets is irrelevant):
    ``transform`` whitens the chunklets. It is the minimiser of
    ``Σ_chunklets Σ_x d_M(x, m_chunklet) − N log det M``.

    Parameters
    ----------
    n_components : int or None, default=None
        Dimension of the output. None means ``n_features``. Fewer components first
        keep the directions with the smallest ratio of within-chunklet to total
        variance (the paper's Fisher-like reduction, as metric-learn), then whiten
        the chunklets within them.
    preprocessor : array-like or callable, optional
        If an array, ``X`` may be given as 1-D indices into it; if a callable, it
        maps identifiers to points.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        ``G`` with ``M = Gᵀ G``.
    rank_ : int
        Rank of the within-chunklet covariance.
    n_features_in_ : int

    Notes
    -----
    When the within-chunklet covariance is singular (no chunklet varies along some
    directions: constant or linearly dependent features, chunklets of duplicate
    points, or too few points in chunklets, fewer than ``n_features`` plus the
    number of chunklets), its inverse does not exist and the objective has no
    minimum; metric-learn then returns NaN. Here a ``UserWarning`` says so, and the
    metric is the pseudo-inverse ``C⁺``: learned on the span of the within-chunklet
    differences (where it is the unique minimiser), zero on the other directions;
    the rows of ``components_`` beyond ``rank_`` are zero.

    References
    ----------
    .. [1] A. Bar-Hillel, T. Hertz, N. Shental and D. Weinshall, "Learning a
       Mahalanobis Metric from Equivalence Constraints", JMLR 6, 2005.
    .. [2] N. Shental, T. Hertz, D. Weinshall and M. Pavel, "Adjustment Learning and
       Relevant Component Analysis", ECCV 2002.

    Examples
    --------
    >>> from mahal import RCA
    >>> X = [[-0.05, 3.0], [0.05, -3.0], [0.1, -3.55], [-0.1, 3.55],
    ...      [-0.95, -0.05], [0.95, 0.05], [0.4, 0.05], [-0.4, -0.05]]
    >>> chunks = [0, 0, 1, 1, 2, 2, 3, 3]
    >>> RCA().fit(X, chunks).transform(X).shape
    (8, 2)
    """

    _parameter_constraints = {
        "n_components": [IntAtLeast(1), None],
        "preprocessor": ["array-like", callable, None],
    }

    def __init__(self, n_components=None, preprocessor=None):
        self.n_components = n_components
        self.preprocessor = preprocessor

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, chunks):
        """Learn the metric from points and their chunklets.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        chunks : array-like of int of shape (n_samples,)
            ``chunks[i] = j ≥ 0``: point ``i`` is in chunklet ``j``; ``-1``: in none.

        Returns
        -------
        self
        """
        require_y(self, chunks)
        X = check_points(self, X, ensure_min_samples=2)
        chunks = check_chunks(chunks, X.shape[0])
        return self._fit_chunks(X, chunks)

    def _fit_chunks(self, X, chunks):
        name = type(self).__name__
        d = X.shape[1]
        n_components = check_n_components(self.n_components, d)
        G, info = rca_solve(X, chunks, n_components)
        rank = info["rank"]
        if rank == 0:
            raise ValueError(f"{name}: the points of each chunklet are identical, so "
                             "there is no within-chunklet variation to learn from.")
        if rank < d:
            warnings.warn(
                f"{name}: the within-chunklet covariance is singular (rank {rank} of "
                f"{d} features): no chunklet varies along {d - rank} direction(s) "
                "(constant or linearly dependent features, duplicate points, or too "
                "few points in chunklets), so it has no inverse. The metric is its "
                "pseudo-inverse: learned on the span of the within-chunklet "
                "differences, zero on the other directions. Remove dependent "
                "features, or reduce the dimension first (e.g. "
                "sklearn.decomposition.PCA), or use more chunklets.", UserWarning,
                stacklevel=5)
        self.components_ = G
        self.rank_ = rank
        return self


class RCA_Supervised(SupervisedMixin, RCA):
    """RCA learned from class labels: chunklets drawn from the classes.

    Chunklets of ``chunk_size`` same-class points are drawn with
    :meth:`Constraints.chunks` (deterministic with ``random_state``, from every
    class in proportion to its size).

    Parameters
    ----------
    n_components : int or None, default=None
        As in :class:`RCA`.
    n_chunks : int, default=100
        Number of chunklets to draw. When the classes cannot give that many disjoint
        chunklets of ``chunk_size`` points, as many as they can are drawn, with a
        ``UserWarning`` (metric-learn raises a ``ValueError``).
    chunk_size : int, default=2
        Number of points in each chunklet.
    preprocessor : array-like or callable, optional
        As in :class:`RCA`.
    random_state : int, RandomState or None
        Seeds the drawing of the chunklets.
    num_chunks : int or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_chunks`` (deprecated there since 0.6.3):
        when set, ``fit`` uses it and warns with a ``FutureWarning``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    rank_ : int
    chunks_ : ndarray of shape (n_samples,)
        The chunklets drawn (−1: a point in none).
    n_features_in_ : int

    References
    ----------
    A. Bar-Hillel, T. Hertz, N. Shental and D. Weinshall, "Learning Distance Functions
    using Equivalence Relations", ICML 2003.

    A. Bar-Hillel, T. Hertz, N. Shental and D. Weinshall, "Learning a Mahalanobis
    Metric from Equivalence Constraints", JMLR 6 (2005), 937–965.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import RCA_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> RCA_Supervised(n_chunks=30, random_state=0).fit(X, y).transform(X).shape
    (150, 4)
    """

    _parameter_constraints = {
        **RCA._parameter_constraints,
        "n_chunks": [IntAtLeast(1)],
        "chunk_size": [IntAtLeast(2)],
        "random_state": ["random_state"],
        "num_chunks": [StrOptions({"deprecated"}), IntAtLeast(1)],
    }

    _deprecated_aliases = {"num_chunks": "n_chunks"}

    def __init__(self, n_components=None, n_chunks=100, chunk_size=2,
                 preprocessor=None, random_state=None, num_chunks="deprecated"):
        super().__init__(n_components=n_components, preprocessor=preprocessor)
        self.n_chunks = n_chunks
        self.chunk_size = chunk_size
        self.random_state = random_state
        self.num_chunks = num_chunks

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads  # (no n_jobs: one thread, BLAS included)
    def fit(self, X, y):
        """Draw chunklets from the labels and learn the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)
            Class labels; at least one class with ``chunk_size`` members. A numeric
            label -1 marks a point whose class is unknown, which is in no chunklet
            (as in metric-learn).

        Returns
        -------
        self
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y))
        require_y(self, y)
        X, y = check_points(self, X, y, ensure_min_samples=2, classification=True,
                            min_classes=1)
        cons = Constraints(y)  # (numeric label -1: unknown, as in metric-learn)
        chunk_size = int(self.chunk_size)
        counts = np.unique(cons.known_labels, return_counts=True)[1]
        possible = int((counts // chunk_size).sum())
        if possible == 0:
            raise ValueError(f"{type(self).__name__}: no class has chunk_size="
                             f"{chunk_size} members, so no chunklet can be drawn.")
        n_chunks = int(self.n_chunks)
        if n_chunks > possible:
            warnings.warn(f"{type(self).__name__}: the classes give at most {possible} "
                          f"disjoint chunklets of {chunk_size} points, fewer than "
                          f"n_chunks={n_chunks}; drawing {possible}.", UserWarning,
                          stacklevel=4)
            n_chunks = possible
        self.chunks_ = cons.chunks(
            n_chunks=n_chunks, chunk_size=chunk_size,
            random_state=check_random_state(self.random_state))
        return self._fit_chunks(X, self.chunks_)
