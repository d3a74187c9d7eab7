"""LMNN with one metric per class (Weinberger & Saul, 2009, section 5)."""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._available_if import available_if
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _lmnn_multi_predict
from ._lmnn_multi_solver import multi_metric_solve
from ._nearest import vote
from ._parallel import fit_threads, n_threads_for
from ._validation import N_JOBS, IntAtLeast, check_points, dask_rows
from .lmnn import _start_metric


class LMNNMultiMetricClassifier(ClassifierMixin, BaseEstimator):
    """k-nearest-neighbour classification with one LMNN metric per class.

    Weinberger & Saul (2009, section 5, "Multiple metrics") learn a metric ``M_c =
    L_cᵀ L_c`` for every class ``c``. The distance from a point ``x`` to a training
    point ``x_l`` is measured in the metric of ``x_l``'s class, ``d(x, x_l) =
    ‖L_{y_l}(x − x_l)‖²``, in training (a target pair in its class's metric, an
    impostor pair in the impostor's) and in classification (the ``n_neighbors``
    training points nearest in that distance vote). The objective is LMNN's,

        (1 − μ) Σ_{i, j(i)} d(x_i, x_j) + μ Σ_{i, j(i), l: y_l ≠ y_i}
        [1 + d(x_i, x_j) − d(x_i, x_l)]_+,

    minimised over all ``L_c`` together by L-BFGS, every ``L_c`` starting from one
    fitted LMNN metric. With more parameters per class, it fits classes whose
    shapes differ (the paper's MNIST result comes from this model).

    ``classify="energy"`` classifies by the paper's energy instead (§4.2, with
    these metrics: the reference code's ``MMenergyclassify.m``): a test point gets
    the label ``c`` that minimises the loss it would add as a training point of
    class ``c``, its pull and push in the metrics above and its hinges as an
    impostor of training points of other classes in metric ``c``.

    Parameters
    ----------
    metric_learner : LMNN or None, default=None
        The single metric every class starts from. None: an
        ``LMNN(n_neighbors=n_neighbors, regularization=regularization,
        weight_push_loss=weight_push_loss, n_jobs=n_jobs,
        random_state=random_state)`` is fitted. An estimator is cloned and fitted,
        unless ``prefit=True`` (then it must already be fitted on the same
        training points and is used as is). Its target neighbours (however many)
        are the objective's if it has them for these points, as an ``LMNN`` has.
    n_neighbors : int, default=3
        The neighbours that vote in :meth:`predict` (or that a test point's energy
        pulls), and the target neighbours of the default LMNN (or of a metric
        learner that keeps none).
    regularization : float in (0, 1), default=0.5
        Weight of the pull term, as in :class:`LMNN` (metric-learn's meaning); the
        push term has weight ``1 − regularization``.
    max_iter : int, default=200
        L-BFGS iterations over all the metrics.
    tol : float, default=1e-5
        Stop when the objective fell by less than ``tol`` (relative) per iteration
        over the last 5 iterations, at a point an impostor search has verified.
    prefit : bool, default=False
    classify : {"knn", "energy"}, default="knn"
        :meth:`predict` by the vote of the ``n_neighbors`` nearest training
        points (with :meth:`predict_proba`), or by the least :meth:`energy`.
    n_jobs : int, default=None
        Threads, as in scikit-learn: None means 1 unless in a
        :func:`joblib.parallel_config` context, −1 means all cores.
    verbose : bool, default=False
        Print the objective at every iteration.
    callback : callable or None, default=None
        ``callback(components, n_iter)`` after every iteration, with a copy of
        the metrics, shape ``(n_classes, n_components, n_features)``.
    random_state : int, RandomState or None, default=None
        Passed to the default LMNN.
    weight_push_loss : float in (0, 1] or None, default=None
        The push weight under pylmnn's name; see :class:`LMNN`.

    Attributes
    ----------
    metric_learner_ : the fitted single-metric learner (the start)
    components_ : ndarray of shape (n_classes, n_components, n_features)
        ``L_c`` of every class, in the order of ``classes_``.
    classes_ : ndarray of shape (n_classes,)
    target_neighbors_ : ndarray of shape (n_samples, n_neighbors)
    n_iter_ : int
    n_features_in_ : int

    See Also
    --------
    LMNN : one metric for all classes.
    LMNNEnergyClassifier : energy-based classification in one LMNN metric.

    Notes
    -----
    The distance is not symmetric (``d(x_i, x_l)`` is in ``l``'s metric), so there
    is no single ``transform``; ``components_`` holds the metrics. Among equally
    near training points, a lower class (in ``classes_``), then a lower index,
    comes first.

    References
    ----------
    K. Q. Weinberger and L. K. Saul, "Distance Metric Learning for Large Margin
    Nearest Neighbor Classification", JMLR 10 (2009), 207–244, section 5 (multiple
    metrics); its reference code ``MultipleMetric/MMlmnn.m``.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import LMNN, LMNNMultiMetricClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LMNNMultiMetricClassifier(LMNN(max_iter=100), max_iter=50).fit(X, y)
    >>> clf.components_.shape
    (3, 4, 4)
    >>> clf.predict(X[[0, 50, 100]]).tolist()
    [0, 1, 2]
    """

    _parameter_constraints = {
        "metric_learner": [HasMethods(["fit"]), None],
        "n_neighbors": [IntAtLeast(1)],
        "regularization": [Interval(Real, 0, 1, closed="neither")],
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "prefit": ["boolean"],
        "classify": [StrOptions({"knn", "energy"})],
        "n_jobs": N_JOBS,
        "verbose": ["verbose"],
        "callback": [callable, None],
        "random_state": ["random_state"],
        "weight_push_loss": [Interval(Real, 0, 1, closed="right"), None],
    }

    def __init__(self, metric_learner=None, n_neighbors=3, regularization=0.5,
                 max_iter=200, tol=1e-5, prefit=False, classify="knn", n_jobs=None,
                 verbose=False, callback=None, random_state=None,
                 weight_push_loss=None):
        self.metric_learner = metric_learner
        self.n_neighbors = n_neighbors
        self.regularization = regularization
        self.max_iter = max_iter
        self.tol = tol
        self.prefit = prefit
        self.classify = classify
        self.n_jobs = n_jobs
        self.verbose = verbose
        self.callback = callback
        self.random_state = random_state
        self.weight_push_loss = weight_push_loss

    # (the metric learner's own parameters are validated by its own fit)
    @_fit_context(prefer_skip_nested_validation=False)
    @fit_threads
    def fit(self, X, y):
        """Fit the start metric, then one metric per class.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y_enc, targets, L0, mu = _start_metric(
            self, X, y, any_targets=True, random_state=self.random_state,
            verbose=self.verbose)
        Ls, self.n_iter_, converged, _ = multi_metric_solve(
            X, y_enc, targets, L0, self.classes_.shape[0], mu=mu,
            max_iter=self.max_iter, tol=self.tol, verbose=bool(self.verbose),
            n_threads=n_threads_for(self.n_jobs), callback=self.callback,
            name=type(self).__name__)
        if not converged:
            warnings.warn(f"{type(self).__name__} stopped at max_iter={self.max_iter} "
                          f"before meeting tol={self.tol}; raise max_iter.",
                          ConvergenceWarning)
        self.components_ = Ls
        self.target_neighbors_ = targets
        self._mu = mu
        # (the references of prediction: each class's training points, taken to its
        # own metric at prediction, so that components_ alone is the model)
        self._training = X, [np.flatnonzero(y_enc == c)
                             for c in range(self.classes_.shape[0])]
        return self

    def _points(self, X):
        check_is_fitted(self, "classes_")
        return check_points(self, X, reset=False)

    @dask_rows("classes")
    def energy(self, X):
        """Energies ``E(x, c)`` of every point for every class (see the class
        docstring).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        E : ndarray or dask.array.Array of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        X = self._points(X)
        X_train, members = self._training
        return _lmnn_multi_predict.energies(
            X_train, members, self.target_neighbors_, self.components_, X,
            self.n_neighbors, self._mu, n_threads=n_threads_for(self.n_jobs))

    @available_if(lambda self: self.classify == "knn")
    @dask_rows("classes")
    def predict_proba(self, X):
        """Share of each class among the ``n_neighbors`` nearest training points.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        X = self._points(X)
        X_train, members = self._training
        neighbors = _lmnn_multi_predict.neighbors(X_train, members, self.components_,
                                                  X, self.n_neighbors)
        return vote(neighbors, self.classes_.shape[0])

    @dask_rows(None)
    def predict(self, X):
        """Majority label of the ``n_neighbors`` nearest training points (the
        first in ``classes_`` among equal counts, as scikit-learn), or the label of
        least energy (``classify="energy"``).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray or dask.array.Array of shape (n_samples,)
        """
        if self.classify == "energy":
            best = np.argmin(self.energy(X), axis=1)
        else:
            best = np.argmax(self.predict_proba(X), axis=1)
        return self.classes_[best]
