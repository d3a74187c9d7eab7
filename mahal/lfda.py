"""Local Fisher Discriminant Analysis (LFDA), Sugiyama, JMLR 8 (2007).

The estimator :class:`LFDA`; the solver is in :mod:`mahal._lfda_solver`.
"""

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.utils._param_validation import StrOptions

from ._lfda_solver import lfda_solve
from ._parallel import fit_threads
from ._validation import N_JOBS, IntAtLeast, check_n_components, check_points, require_y
from .base import MahalanobisMixin, SupervisedMixin



class LFDA(SupervisedMixin, MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Local Fisher Discriminant Analysis for supervised dimensionality reduction.

    A linear map that keeps nearby points of the same class together and pushes
    the classes apart, while (unlike Fisher's LDA) leaving the separate clusters of
    a multimodal class where they are: Fisher's criterion with the pairs weighted
    by a local affinity (Sugiyama, 2007). Its components are the leading
    generalised eigenvectors of

        S_lb φ = λ S_lw φ,

    the local between- and within-class scatter matrices
    ``S = ½ Σ_ij W_ij (x_i − x_j)(x_i − x_j)ᵀ`` with weights ``W_lw_ij = A_ij / n_l``
    and ``W_lb_ij = A_ij (1/n − 1/n_l)`` for points of the same class ``l`` (``n_l``
    of them), ``W_lw_ij = 0`` and ``W_lb_ij = 1/n`` across classes, and the
    local-scaling affinity ``A_ij = exp(−‖x_i − x_j‖² / (σ_i σ_j))``, ``σ_i`` the
    distance from ``x_i`` to its ``k``-th nearest classmate. Computed class by class
    in blocks of rows (never an ``n × n`` matrix; see :mod:`mahal._lfda_solver`),
    then one symmetric eigenproblem: no iterations.

    Differences from metric-learn 0.7, which departs from the paper and from
    Sugiyama's reference code: ``σ_i`` is ``x_i``'s distance to its ``k``-th nearest
    classmate (metric-learn takes, for point ``i``, an entry of a partially sorted
    column of the distance matrix, which is not that distance); ``k`` defaults to 7
    and is capped per class at ``n_l − 1`` (metric-learn: ``min(7, n_features − 1)``,
    and a small class lowers it for every later class); ``S_lb`` is the paper's
    (metric-learn's is ``S_lb + 2 S_lw``, which shifts every eigenvalue by 2 and so
    changes the 'weighted' embedding's scales ``√λ``, and its directions when
    ``S_lw`` is singular). A singular ``S_lw`` is regularised (see Notes) instead of
    failing, and the eigenvectors' signs are fixed, so that fits are deterministic.

    Parameters
    ----------
    n_components : int, optional
        Dimension of the learned space (rows of ``components_``), the number of
        leading eigenvectors kept; default ``n_features``. LFDA is a dimensionality
        reduction: a few components (e.g. up to the number of classes) usually
        carry the discriminative directions.
    k : int or None, default=7
        Which nearest classmate sets a point's local scale ``σ_i`` in the affinity
        (the paper's and Sugiyama's code's default, 7). Larger ``k`` gives wider
        affinities (more like Fisher's LDA); smaller, more local. A class with at
        most ``k`` members uses its farthest member. None means 7.
    embedding_type : {'weighted', 'orthonormalized', 'plain'}, default='weighted'
        How the eigenvectors become ``components_``: 'weighted' multiplies each by
        ``√λ`` (its discriminative power, so that better-separating directions count
        more in distances); 'orthonormalized' uses an orthonormal basis of their
        span (distances are then those of an orthogonal projection); 'plain' uses
        the eigenvectors as they are, normalised so that ``φᵀ S_lw φ = 1``.
    preprocessor : array-like or callable, optional
        If an array ``X``, points may be given as integer indices into it; if a
        callable, it maps a 1-D array of identifiers to points.
    n_jobs : int, default=None
        Number of threads of the matrix products (BLAS), as in scikit-learn: None
        means 1 unless in a :func:`joblib.parallel_config` context, −1 means all
        cores. Results do not depend on it beyond BLAS's last bits.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        The learned transformation ``L``; rows are the (weighted, orthonormalised or
        plain) eigenvectors, in decreasing order of eigenvalue.
    eigenvalues_ : ndarray of shape (n_components,)
        The generalised eigenvalues ``λ ≥ 0``, in decreasing order: the ratio of
        local between- to within-class scatter along each component.
    n_features_in_ : int
    classes_ : ndarray

    Notes
    -----
    Directions in which the training data do not vary get ``λ = 0``. When the local
    within-class scatter ``S_lw`` is singular within the span of the data (classes
    whose points do not span it, e.g. fewer points than features, or duplicates),
    the generalised eigenproblem has infinite eigenvalues and metric-learn's solvers
    fail. Here its eigenvalues below 1% of the largest are then raised to 1% of the
    largest (only the directions where it is nearly singular change); a nonsingular
    ``S_lw`` is used as it is, and the result is then the paper's. Memory: a few
    ``n_features × n_features`` matrices, two ``n_samples × n_features`` arrays and
    blocks of at most 2²² affinities (32 MB),
    whatever the number of points.

    References
    ----------
    M. Sugiyama, "Dimensionality Reduction of Multimodal Labeled Data by Local
    Fisher Discriminant Analysis", JMLR 8 (2007), 1027–1061.

    L. Zelnik-Manor and P. Perona, "Self-Tuning Spectral Clustering", NIPS 17
    (2005) (the local scaling).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from mahal import LFDA
    >>> X, y = load_iris(return_X_y=True)
    >>> lfda = LFDA(n_components=2).fit(X, y)
    >>> lfda.transform(X).shape
    (150, 2)
    >>> pipe = make_pipeline(LFDA(n_components=2), KNeighborsClassifier(3))
    >>> round(pipe.fit(X, y).score(X, y), 2)
    0.97
    """

    _parameter_constraints = {
        "n_components": [IntAtLeast(1), None],
        "k": [IntAtLeast(1), None],
        "embedding_type": [StrOptions({"weighted", "orthonormalized", "plain"})],
        "preprocessor": ["array-like", callable, None],
        "n_jobs": N_JOBS,
    }

    def __init__(self, n_components=None, k=7, embedding_type="weighted",
                 preprocessor=None, n_jobs=None):
        self.n_components = n_components
        self.k = k
        self.embedding_type = embedding_type
        self.preprocessor = preprocessor
        self.n_jobs = n_jobs

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, X, y):
        """Fit the LFDA transformation.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points (or 1-D identifiers when a ``preprocessor`` was given).
        y : array-like of shape (n_samples,)
            Their class labels (at least 2 classes; a class may have one member).

        Returns
        -------
        self : LFDA
            The fitted estimator.

        Raises
        ------
        ValueError
            If there is one class only, ``n_components > n_features``, or no class
            has two distinct points (the within-class scatter is zero).
        """
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        n_components = check_n_components(self.n_components, X.shape[1])
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        k = 7 if self.k is None else int(self.k)
        L, info = lfda_solve(X, y_enc.astype(np.int64), n_components, k=k,
                             embedding_type=self.embedding_type)
        self.components_ = L
        self.eigenvalues_ = info["eigenvalues"]
        return self
