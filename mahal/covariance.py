"""Covariance: the Mahalanobis distance of the data's own covariance (whitening)."""

import numpy as np
from scipy.linalg import pinvh
from sklearn.base import BaseEstimator, TransformerMixin

from ._validation import check_points
from .base import MahalanobisMixin
from .linalg import components_from_metric


class Covariance(MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Covariance metric: ``A = Σ⁻¹``, the inverse covariance of the training data.

    An unsupervised baseline: ``transform`` whitens the data (the transformed training
    set has identity covariance). When ``Σ`` is singular (e.g. constant or collinear
    features) the Moore–Penrose pseudo-inverse is used, so directions without variance
    get zero weight.

    Parameters
    ----------
    preprocessor : array-like or callable, optional
        If an array ``X``, points may be given as integer indices into it; if a
        callable, it maps a 1-D array of identifiers to points.

    Attributes
    ----------
    components_ : ndarray of shape (n_features, n_features)
        ``G`` with ``Gᵀ G = Σ⁺``.
    n_features_in_ : int

    References
    ----------
    P. C. Mahalanobis, "On the generalised distance in statistics", Proceedings of
    the National Institute of Sciences of India 2 (1936), 49–55.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import Covariance
    >>> X = np.random.default_rng(0).normal(size=(100, 3)) * [1.0, 5.0, 0.1]
    >>> Xw = Covariance().fit_transform(X)
    >>> np.allclose(np.cov(Xw, rowvar=False), np.eye(3))
    True
    """

    def __init__(self, preprocessor=None):
        self.preprocessor = preprocessor

    def fit(self, X, y=None):
        """Fit to the points ``X`` (``y`` is ignored).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), n_samples ≥ 2
            Training points (not all identical), or 1-D identifiers when a
            ``preprocessor`` was given.
        y : None
            Ignored; present for scikit-learn's API.

        Returns
        -------
        self

        Raises
        ------
        ValueError
            If all rows of ``X`` are identical (zero covariance).
        """
        X = check_points(self, X, ensure_min_samples=2)
        cov = np.atleast_2d(np.cov(X, rowvar=False))
        if not np.any(cov):
            # pinvh(0) = 0: a metric under which every distance is 0 (metric-learn
            # returns it silently; with one feature it divides by zero).
            raise ValueError("All rows of X are identical: their covariance is zero, "
                             "so Covariance has no metric to learn (it would give "
                             "distance 0 between any two points).")
        self.components_ = components_from_metric(pinvh(cov))
        return self
