"""Base API shared by every Mahalanobis learner.

Every learner ends with components ``G`` (``components_``, shape
``(n_components, n_features)``) of the PSD matrix ``A = Gᵀ G``, so that

    d_A(x, x') = sqrt((x − x')ᵀ A (x − x')) = ‖G x − G x'‖.

:class:`MahalanobisMixin` gives the metric API (``transform``,
``get_mahalanobis_matrix``, ``get_metric``, ``pair_distance``, ``pair_score``);
:class:`PairsClassifierMixin`, :class:`TripletsClassifierMixin` and
:class:`QuadrupletsClassifierMixin` (defined in :mod:`mahal._tuple_mixins`, importable
from here) add the classifier API of weakly supervised learners. The names and
signatures follow metric-learn.

Mixins must be listed before ``BaseEstimator`` in a learner's bases, e.g.
``class MMC(PairsClassifierMixin, MahalanobisMixin, BaseEstimator)``, so that
scikit-learn ≥ 1.6 sees the classifier tags (``is_classifier`` is True).
"""

import copy
import math
import warnings

import numpy as np
from sklearn.base import ClassNamePrefixFeaturesOutMixin
from sklearn.utils import check_random_state
from sklearn.utils._set_output import _SetOutputMixin
from sklearn.utils.validation import check_is_fitted

from ._tuple_mixins import (  # noqa: F401 (public here, as before the move)
    PairsClassifierMixin,
    QuadrupletsClassifierMixin,
    TripletsClassifierMixin,
    _row_norms,
)
from ._validation import check_points, check_points_array, check_tuples, is_dask_array
from .linalg import check_psd, metric_from_components


def resolve_deprecated_aliases(est, aliases):
    """A copy of ``est`` with metric-learn's deprecated parameter names resolved.

    ``aliases`` maps each old name (an ``__init__`` parameter whose default is the
    string ``'deprecated'``, stored as given so that ``get_params`` and ``clone`` keep
    it) to its new name. When no old name is set, returns None. Otherwise warns with
    a ``FutureWarning`` for each (as metric-learn 0.7 does, there in ``__init__``) and
    returns a shallow copy of ``est`` whose new names take the old names' values (the
    old name wins, as in metric-learn) and whose old names are ``'deprecated'``:
    ``fit`` fits that copy and hands its fitted attributes back with
    :func:`copy_fitted_attributes`, so that the user's parameters stay as set.

    Parameters
    ----------
    est : estimator
        The estimator whose ``fit`` was called.
    aliases : dict
        Old parameter name → new parameter name.

    Returns
    -------
    resolved : estimator or None
        The copy to fit, or None when no old name is set.
    """
    given = {old: getattr(est, old) for old in aliases
             if not (isinstance(getattr(est, old), str)
                     and getattr(est, old) == "deprecated")}
    if not given:
        return None
    resolved = copy.copy(est)
    for old, value in given.items():
        new = aliases[old]
        warnings.warn(f"{type(est).__name__}: parameter {old!r} was renamed {new!r} in "
                      f"metric-learn 0.6.3 and is deprecated; use {new}={value!r}.",
                      FutureWarning, stacklevel=3)
        setattr(resolved, new, value)
        setattr(resolved, old, "deprecated")
    return resolved


def copy_fitted_attributes(est, fitted):
    """Copy every attribute of ``fitted`` that is not a parameter onto ``est``.

    Parameters
    ----------
    est : estimator
        The estimator the user holds.
    fitted : estimator
        The fitted copy made by :func:`resolve_deprecated_aliases`.

    Returns
    -------
    est : estimator
        ``est``, now fitted.
    """
    params = set(est.get_params(deep=False))
    est.__dict__.update({k: v for k, v in fitted.__dict__.items() if k not in params})
    return est


class MahalanobisDistance:
    """A picklable callable ``metric(u, v, squared=False)`` for the metric ``A = GᵀG``.

    Returned by :meth:`MahalanobisMixin.get_metric`; usable as the ``metric=`` of
    scikit-learn's neighbours estimators and of ``scipy.spatial.distance.cdist``.

    Parameters
    ----------
    components : ndarray of shape (n_components, n_features)
        ``G``: the distance is ``‖G (u − v)‖``.

    References
    ----------
    P. C. Mahalanobis, "On the generalised distance in statistics", Proceedings of
    the National Institute of Sciences of India 2 (1936), 49–55.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import MahalanobisDistance
    >>> metric = MahalanobisDistance(np.diag([2.0, 1.0]))
    >>> metric([1.0, 0.0], [0.0, 0.0]), metric([1.0, 0.0], [0.0, 0.0], squared=True)
    (2.0, 4.0)
    """

    def __init__(self, components):
        self.components = np.asarray(components, dtype=np.float64)

    def __call__(self, u, v, squared=False):
        diff = self.components @ (np.asarray(u, dtype=np.float64).ravel()
                                  - np.asarray(v, dtype=np.float64).ravel())
        d2 = float(diff @ diff)
        return d2 if squared else math.sqrt(d2)

    def __repr__(self):
        return f"MahalanobisDistance(components of shape {self.components.shape})"


class MahalanobisMixin(ClassNamePrefixFeaturesOutMixin, _SetOutputMixin):
    """Metric API for learners that store ``components_`` (``G`` with ``A = GᵀG``).

    Subclasses set ``components_`` and ``n_features_in_`` in ``fit`` and may take a
    ``preprocessor`` parameter: an array ``X`` (then points and tuples may be given as
    integer indices into it) or a callable mapping a 1-D array of identifiers to points.

    ``transform`` honours ``set_output(transform="pandas")`` and
    ``sklearn.set_config(transform_output=...)`` (scikit-learn's ``_SetOutputMixin``
    wraps methods of the class that defines them, so this mixin must be one), and
    keeps float32 input in float32, as scikit-learn's linear transformers do.
    """

    @property
    def _n_features_out(self):
        return self.components_.shape[0]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if tags.transformer_tags is not None:
            tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def transform(self, X):
        """Map points into the space where Euclidean distance is the learned metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Points, or 1-D identifiers when a ``preprocessor`` was given.

        Returns
        -------
        X_new : ndarray of shape (n_samples, n_components)
            ``X Gᵀ``; float32 when ``X`` is float32, else float64. For a
            ``dask.array`` ``X``, a dask array with ``X``'s row chunks, computed
            block by block when the caller computes it.
        """
        check_is_fitted(self, "components_")
        if is_dask_array(X):  # (lazily, block by block)
            from ._dask_arrays import transform_blocks

            return transform_blocks(self, X)
        X = check_points(self, X, reset=False, dtype=[np.float64, np.float32])
        return X @ self.components_.T.astype(X.dtype, copy=False)

    def get_mahalanobis_matrix(self):
        """Return the learned PSD matrix ``A = Gᵀ G``, shape (n_features, n_features)."""
        check_is_fitted(self, "components_")
        return metric_from_components(self.components_)

    def get_metric(self):
        """Return a picklable callable ``metric(u, v, squared=False)``.

        It computes ``sqrt((u − v)ᵀ A (u − v))`` (or its square), as metric-learn's
        ``get_metric``, for any code that takes a distance function of two points
        (``scipy.spatial.distance.cdist``, ``KNeighborsClassifier(metric=...)``). It
        is a snapshot: refitting the learner does not change a metric obtained before.

        Which route to use with scikit-learn's neighbours estimators:

        * **Fastest**: transform, then Euclidean neighbours,
          ``make_pipeline(learner, KNeighborsClassifier())``. Distances in the
          transformed space are the learned ones, computed by BLAS; with
          ``n_components < n_features`` they also cost less.
        * **Metric in the input space** (e.g. the neighbours estimator must see the
          original points): ``KNeighborsClassifier(**learner.get_metric_kwargs())``,
          scikit-learn's compiled ``'mahalanobis'`` metric, made safe for
          rank-deficient ``A`` (see :meth:`get_metric_kwargs`).
        * **This callable** only where a Python function is required: scikit-learn
          calls it once per pair of points, which is many times slower than the
          compiled metric (``benchmarks/metric_route.py`` measures the three).
        """
        check_is_fitted(self, "components_")
        return MahalanobisDistance(self.components_.copy())

    def get_metric_kwargs(self):
        """Keyword arguments for scikit-learn's neighbours estimators.

        ``KNeighborsClassifier(n_neighbors=3, **learner.get_metric_kwargs())`` (also
        ``NearestNeighbors``, ``RadiusNeighborsClassifier``, ``DBSCAN`` ...) uses the
        learned distance through scikit-learn's compiled ``'mahalanobis'`` metric, on
        the original points. See :meth:`get_metric` for when to prefer a Pipeline.

        Returns
        -------
        kwargs : dict
            ``{'metric': 'mahalanobis', 'metric_params': {'VI': A}}``. When ``A`` is
            singular (fewer components than features, or a rank-deficient metric),
            ``VI = A + δI`` with ``δ = 2 d eps ‖A‖_F``, the bound on the rounding
            error of the compiled ``(u−v)ᵀ VI (u−v)`` relative to ``‖u−v‖²``: with
            ``VI = A`` that rounding makes squared distances along the null space
            of ``A`` slightly negative, which scikit-learn turns into NaN distances
            and those points are never returned as neighbours. The shift changes
            squared distances by no more than that rounding already does.
        """
        A = self.get_mahalanobis_matrix()
        d = A.shape[0]
        delta = 2.0 * d * np.finfo(np.float64).eps * np.linalg.norm(A)
        if self.components_.shape[0] < d or np.linalg.eigvalsh(A)[0] <= delta:
            A = A + delta * np.eye(d)
        return {"metric": "mahalanobis", "metric_params": {"VI": A}}

    def _check_tuples(self, tuples, tuple_size):
        check_is_fitted(self, "components_")
        return check_tuples(tuples, tuple_size, getattr(self, "preprocessor", None),
                            n_features=self.n_features_in_)

    def pair_distance(self, pairs):
        """Learned distance between the two points of each pair.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features), or (n_pairs, 2)
            identifiers when a ``preprocessor`` was given.

        Returns
        -------
        distances : ndarray of shape (n_pairs,)
            For a ``dask.array`` of pairs, a dask array computed block by block.
        """
        if is_dask_array(pairs):  # (lazily, block by block)
            from ._dask_arrays import pair_distance_blocks

            check_is_fitted(self, "components_")
            return pair_distance_blocks(self, pairs)
        pairs = self._check_tuples(pairs, 2)
        return _row_norms((pairs[:, 0] - pairs[:, 1]) @ self.components_.T)

    def pair_score(self, pairs):
        """Similarity of each pair: the opposite of :meth:`pair_distance`.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or of identifiers when a ``preprocessor`` was given.

        Returns
        -------
        score : ndarray of shape (n_pairs,)
        """
        return -self.pair_distance(pairs)

    def score_pairs(self, pairs):
        """Deprecated: :meth:`pair_distance` under metric-learn's former name.

        Kept because metric-learn 0.7 still has it (deprecated there too, with a
        ``FutureWarning``): it returns the distance, as metric-learn's does. Use
        :meth:`pair_distance` for distances or :meth:`pair_score` for similarities.

        Parameters
        ----------
        pairs : array-like of shape (n_pairs, 2, n_features) or (n_pairs, 2)
            Pairs of points, or of identifiers when a ``preprocessor`` was given.

        Returns
        -------
        distances : ndarray of shape (n_pairs,)
        """
        warnings.warn("score_pairs is deprecated (as in metric-learn 0.7): use "
                      "pair_distance to compute distances, or pair_score to compute "
                      "similarity scores.", FutureWarning, stacklevel=2)
        return self.pair_distance(pairs)


class SupervisedMixin:
    """For learners fitted on points and their class labels: ``fit`` requires ``y``
    (scikit-learn's ``target_tags.required``)."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.required = True
        return tags


# ---------------------------------------------------------------------------
# Initialisation helpers

_INIT_COMPONENTS = ("auto", "pca", "lda", "identity", "random")
_INIT_METRIC = ("identity", "covariance", "random")


def initialize_components(n_components, X, y=None, init="auto", random_state=None):
    """Initial components ``G`` of shape (n_components, n_features).

    Parameters
    ----------
    n_components : int
    X : ndarray of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,), optional
        Needed for 'lda' (and used by 'auto').
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or array of shape \
(n_components, n_features)
        'auto' picks 'lda' when ``n_components ≤ min(n_features, n_classes − 1)``,
        else 'pca' when ``n_components < min(n_samples, n_features)``, else
        'identity' (as scikit-learn's NeighborhoodComponentsAnalysis).
    random_state : int, RandomState or None
        For 'random'.

    Returns
    -------
    G : ndarray of shape (n_components, n_features)
    """
    if hasattr(X, "initialize_components"):  # X on a cluster (mahal._dask_cluster)
        return X.initialize_components(n_components, y, init, random_state)
    n_samples, n_features = X.shape
    if not isinstance(init, str):
        G = check_points_array(init, name="init")
        if G.shape != (n_components, n_features):
            raise ValueError(f"init array must have shape (n_components, n_features) = "
                             f"({n_components}, {n_features}); got {G.shape}.")
        return G.copy()
    if init not in _INIT_COMPONENTS:
        raise ValueError(f"init must be one of {_INIT_COMPONENTS} or an array; got "
                         f"{init!r}.")
    n_classes = np.unique(y).shape[0] if y is not None else 0
    if init == "auto":
        if y is not None and n_components <= min(n_features, n_classes - 1):
            init = "lda"
        elif n_components < min(n_samples, n_features):
            init = "pca"
        else:
            init = "identity"
    if init == "identity":
        return np.eye(n_components, n_features)
    if init == "random":
        return check_random_state(random_state).standard_normal((n_components,
                                                                 n_features))
    if init == "pca":
        from sklearn.decomposition import PCA

        if n_components > min(n_samples, n_features):
            raise ValueError(f"init='pca' needs n_components ≤ min(n_samples, "
                             f"n_features) = {min(n_samples, n_features)}; got "
                             f"{n_components}.")
        return PCA(n_components=n_components, svd_solver="full").fit(X).components_
    # lda
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    if y is None:
        raise ValueError("init='lda' needs class labels y.")
    if n_components > min(n_features, n_classes - 1):
        raise ValueError(f"init='lda' needs n_components ≤ min(n_features, n_classes − "
                         f"1) = {min(n_features, n_classes - 1)}; got {n_components}.")
    lda = LinearDiscriminantAnalysis(n_components=n_components, solver="svd").fit(X, y)
    return lda.scalings_[:, :n_components].T.copy()


def initialize_metric(X, init="identity", random_state=None, name="init"):
    """Initial (or prior) PSD matrix ``A`` of shape (n_features, n_features).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Points (for tuples: all the points of the tuples, stacked).
    init : {'identity', 'covariance', 'random'} or array of shape (d, d)
        'covariance' is the (pseudo-)inverse of the covariance of ``X``; 'random' a
        random symmetric positive definite matrix; an array must be symmetric PSD.
    random_state : int, RandomState or None
    name : str
        The parameter's name, for error messages.

    Returns
    -------
    A : ndarray of shape (n_features, n_features)
    """
    n_features = X.shape[1]
    if not isinstance(init, str):
        A = check_psd(init, name=name)
        if A.shape != (n_features, n_features):
            raise ValueError(f"{name} must have shape ({n_features}, {n_features}); got "
                             f"{A.shape}.")
        return A.copy()
    if init not in _INIT_METRIC:
        raise ValueError(f"{name} must be one of {_INIT_METRIC} or an array; got "
                         f"{init!r}.")
    if init == "identity":
        return np.eye(n_features)
    if init == "covariance":
        if X.shape[0] < 2:
            raise ValueError(f"{name}='covariance' needs at least 2 points.")
        return _pinv_covariance(X, name)
    from sklearn.datasets import make_spd_matrix

    return make_spd_matrix(n_features, random_state=check_random_state(random_state))


def _pinv_covariance(X, name):
    """(Pseudo-)inverse of the covariance of ``X``; warns when it is singular.

    Singular means an eigenvalue below ``max|λ| · d · eps`` (numpy's ``matrix_rank``
    tolerance, as metric-learn's): the pseudo-inverse then gives zero weight to the
    directions without variance, which the user should know about.
    """
    cov = np.atleast_2d(np.cov(X, rowvar=False))
    w, V = np.linalg.eigh(cov)
    tol = np.abs(w).max() * w.shape[0] * np.finfo(np.float64).eps
    keep = w > tol
    if not keep.all():
        warnings.warn(
            f"{name}='covariance': the covariance matrix of the points is singular "
            f"(rank {int(keep.sum())} of {w.shape[0]}), so its pseudo-inverse is used. "
            "To make it invertible, remove linearly dependent features or reduce the "
            "dimension first (e.g. with sklearn.decomposition.PCA).", UserWarning,
            stacklevel=4)
    Vk = V[:, keep]
    A = (Vk / w[keep]) @ Vk.T
    return 0.5 * (A + A.T)
