"""k-nearest-neighbour classification in a learned metric:
:class:`MetricKNeighborsClassifier`, whose references may be a dask array larger
than memory.

The search is exact and runs in tiles (:mod:`mahal._nearest`); on dask arrays, one
task per (query block × reference chunk) tile (:mod:`mahal._dask_predict`).
"""

import functools
import numbers

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods
from sklearn.utils.validation import check_is_fitted

from ._nearest import distances, indices, nearest_references, vote, vote_labels
from ._parallel import single_threaded_blas
from ._validation import IntAtLeast, check_points, is_dask_array, require_y
from .lmnn import LMNN


def _check_at_most(k, n_samples_fit):
    """scikit-learn's error for more neighbours than references."""
    if k > n_samples_fit:
        raise ValueError(f"Expected n_neighbors <= n_samples_fit, but n_neighbors = "
                         f"{k}, n_samples_fit = {n_samples_fit}.")


class MetricKNeighborsClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour vote in the space of a metric learner, with references
    that may be a ``dask.array`` larger than memory.

    A point gets the label most frequent among its ``n_neighbors`` nearest training
    points (references) under the learned metric, the nearest neighbours rule (Cover
    and Hart, 1967) in the learned space of LMNN (Weinberger and Saul, 2009), NCA
    or any mahal learner:

        ŷ(x) = argmax_c #{j ∈ kNN(x): y_j = c},
        kNN(x) = the n_neighbors references j of smallest ‖G x − G x_j‖.

    The result is scikit-learn's ``KNeighborsClassifier(n_neighbors)`` (uniform
    weights) on the transformed points: the same neighbours and, among classes of
    equal votes, the first of ``classes_``. Among references at exactly the same
    distance, the one of lower index is nearer here (a fixed rule, whatever the
    chunks), while scikit-learn keeps whichever its search meets first. The search
    is exact, in tiles of (query block × reference block), never
    ``n_queries × n_references`` distances at once.

    The references (``X`` of ``fit``) may be a row-chunked ``dask.array``: they
    are transformed lazily and never gathered; each prediction runs one task per
    (query block × reference chunk) tile, giving that chunk's ``n_neighbors``
    nearest references of each query, and merges these lists in a tree of tasks.
    The queries may be a dask array too (then the results are dask arrays with
    their row chunks, computed when the caller computes them) or a NumPy array
    (then the results are NumPy arrays). Tasks run on the active
    ``distributed.Client``, or else on dask's default scheduler (there, compute a
    lazy result inside ``threadpoolctl.threadpool_limits(1, user_api="blas")``:
    the tiles' products are small, and BLAS's threads would compete with dask's;
    a ``distributed`` worker has one BLAS thread already).

    Parameters
    ----------
    metric_learner : estimator with ``transform`` or None, default=None
        The metric: a mahal learner (for dask arrays it must transform them lazily,
        as every mahal learner does; for NumPy data any transformer will do). None:
        ``LMNN(n_neighbors=n_neighbors)``. Cloned and fitted on the references,
        unless ``prefit=True``.
    n_neighbors : int, default=3
        Neighbours that vote.
    prefit : bool, default=False
        Use ``metric_learner`` as it is (it must be fitted already, e.g. on a sample
        of the references). ``clone`` (as in cross-validation) unfits it; there,
        pass ``metric_learner=FrozenEstimator(learner)`` (scikit-learn's
        :class:`~sklearn.frozen.FrozenEstimator`) instead.

    Attributes
    ----------
    metric_learner_ : estimator
        The fitted metric learner.
    classes_ : ndarray of shape (n_classes,)
    n_samples_fit_ : int
        Number of references.
    n_features_in_ : int

    See Also
    --------
    LMNNEnergyClassifier : LMNN's energy-based classification.
    PrototypeClassifier : nearest class mean in a learned metric.

    References
    ----------
    T. Cover and P. Hart, "Nearest Neighbor Pattern Classification", IEEE Trans.
    Information Theory 13(1) (1967), 21–27.

    K. Q. Weinberger and L. K. Saul, "Distance Metric Learning for Large Margin
    Nearest Neighbor Classification", JMLR 10 (2009), 207–244.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import NCA, MetricKNeighborsClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = MetricKNeighborsClassifier(NCA(random_state=0), n_neighbors=3)
    >>> clf.fit(X, y).predict(X[[0, 50, 100]]).tolist()
    [0, 1, 2]

    References as a dask array (here a small one), with a metric learned before:

    >>> import dask.array as da
    >>> nca = NCA(random_state=0).fit(X, y)
    >>> X_dask = da.from_array(X, chunks=(40, 4))     # 4 chunks of references
    >>> clf = MetricKNeighborsClassifier(nca, prefit=True).fit(X_dask, y)
    >>> labels = clf.predict(X_dask)                   # lazy: nothing computed yet
    >>> labels.chunks
    ((40, 40, 40, 30),)
    >>> bool((labels.compute() == y).mean() > 0.9)
    True
    """

    _parameter_constraints = {
        "metric_learner": [HasMethods(["fit", "transform"]), None],
        "n_neighbors": [IntAtLeast(1)],
        "prefit": ["boolean"],
    }

    def __init__(self, metric_learner=None, n_neighbors=3, prefit=False):
        self.metric_learner = metric_learner
        self.n_neighbors = n_neighbors
        self.prefit = prefit

    # (the metric learner's own parameters are validated by its own fit)
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit (or take) the metric learner and keep the transformed references.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)
            The references. A dask array stays lazy: it is transformed block by
            block at each prediction (``persist`` it first to keep it in the
            workers' memory).
        y : array-like or dask.array.Array of shape (n_samples,)
            Their labels (computed into memory).

        Returns
        -------
        self : MetricKNeighborsClassifier
        """
        require_y(self, y)
        if is_dask_array(X):
            from ._dask_arrays import check_dask_fit

            X, y = check_dask_fit(self, X, y, classification=True)
        else:
            X, y = check_points(self, X, y, classification=True)
        _check_at_most(self.n_neighbors, X.shape[0])
        if self.metric_learner is None:
            learner = LMNN(n_neighbors=self.n_neighbors).fit(X, y)
        elif self.prefit:
            check_is_fitted(self.metric_learner)
            learner = self.metric_learner
        else:
            learner = clone(self.metric_learner).fit(X, y)
        references = learner.transform(X)
        if is_dask_array(X) and not is_dask_array(references):
            raise TypeError(f"metric_learner's transform returned a "
                            f"{type(references).__name__} for a dask array; dask "
                            f"references need a learner that transforms them lazily "
                            f"(every mahal learner does).")
        self.metric_learner_ = learner
        self.classes_, self._labels = np.unique(y, return_inverse=True)
        self._references = references
        self.n_samples_fit_ = X.shape[0]
        return self

    def _from_neighbors(self, X, *results, k=None):
        """Each ``(finish, columns, dtype)`` of ``results`` applied to the lists of
        the ``k`` (default ``n_neighbors``) nearest references of ``X``'s points
        (see :mod:`mahal._nearest`)."""
        k = self.n_neighbors if k is None else k
        lazy = is_dask_array(X)
        if lazy:
            from ._dask_arrays import check_dask_points

            X = check_dask_points(self, X, n_features=self.n_features_in_)
        else:
            X = check_points(self, X, reset=False)
        Z = self.metric_learner_.transform(X)
        if lazy or is_dask_array(self._references):
            import dask

            from ._dask_predict import nearest_blocks

            out = nearest_blocks(Z, self._references, self._labels, k, results)
            if lazy:
                return out
            # (the tiles' products are small: BLAS's threads would only slow them;
            # a distributed worker has one BLAS thread already)
            with single_threaded_blas():
                return dask.compute(*out)
        with single_threaded_blas():
            neighbors = nearest_references(np.asarray(Z, dtype=np.float64),
                                           self._references, self._labels, k)
        return [finish(neighbors) for finish, _, _ in results]

    def predict_proba(self, X):
        """Class probabilities: the fraction of the neighbours in each class.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_queries, n_features)

        Returns
        -------
        proba : ndarray or dask.array.Array of shape (n_queries, n_classes)
            Columns follow ``classes_``; a dask array (``X``'s row chunks) for a
            dask ``X``.
        """
        check_is_fitted(self, "classes_")
        n_classes = self.classes_.shape[0]
        finish = functools.partial(vote, n_classes=n_classes)
        return self._from_neighbors(X, (finish, n_classes, np.float64))[0]

    def predict(self, X):
        """Label of the most votes among the neighbours.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_queries, n_features)

        Returns
        -------
        y : ndarray or dask.array.Array of shape (n_queries,)
            A dask array (``X``'s row chunks) for a dask ``X``.
        """
        check_is_fitted(self, "classes_")
        finish = functools.partial(vote_labels, classes=self.classes_)
        return self._from_neighbors(X, (finish, None, self.classes_.dtype))[0]

    def kneighbors(self, X, n_neighbors=None, return_distance=True):
        """The nearest references of each point, nearest first (the arguments of
        scikit-learn's ``KNeighborsClassifier.kneighbors``, ``X`` required).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_queries, n_features)
        n_neighbors : int, default=None
            Number of neighbours; None: ``n_neighbors`` of the classifier.
        return_distance : bool, default=True
            Also return the distances.

        Returns
        -------
        distances : ndarray or dask.array.Array of shape (n_queries, n_neighbors)
            Learned (Euclidean, in the transformed space) distances; only with
            ``return_distance``.
        indices : ndarray or dask.array.Array of shape (n_queries, n_neighbors)
            Row indices of the references in ``X`` of ``fit``; among equal
            distances the lower index first.
        """
        check_is_fitted(self, "classes_")
        k = self.n_neighbors if n_neighbors is None else n_neighbors
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"Expected n_neighbors > 0 (an integer), got {k!r}.")
        _check_at_most(k, self.n_samples_fit_)
        results = [(indices, k, np.int64)]
        if return_distance:
            results.insert(0, (distances, k, np.float64))
        out = self._from_neighbors(X, *results, k=k)
        return tuple(out) if return_distance else out[0]
