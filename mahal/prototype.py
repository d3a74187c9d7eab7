"""Nearest-prototype classification: :class:`PrototypeClassifier`.

The nearest class mean rule (Mensink et al., 2013; prototypical networks, Snell et
al., 2017), the cosine classifier, and matching networks' attention over the support
points (Vinyals et al., 2016), in the input space or in the space of a mahal metric
learner; new classes can be added after ``fit`` from a few labelled points.
"""

from numbers import Real

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, ClassifierMixin, _fit_context, clone
from sklearn.utils._param_validation import HasMethods, Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._nearest import squared_distances
from ._validation import check_points, dask_rows, require_y

_BLOCK = 256          # query rows per block of the attention's point-to-point scores
_TEMPERATURE_ROWS = 500  # at most this many training points fit the attention's
                         # temperature (each against every support point)


def _normalize(Z):
    norms = np.sqrt(np.einsum("ij,ij->i", Z, Z))
    return Z / np.where(norms > 0, norms, 1.0)[:, None]


def _distances(Z, P, metric):
    """``(n, m)`` distances: squared Euclidean, or ``1 − cos`` (rows of ``Z`` and
    ``P`` already normalised for 'cosine')."""
    if metric == "cosine":
        return 1.0 - Z @ P.T
    return squared_distances(Z, P)


def _class_means(Z, y_enc, n_classes):
    counts = np.bincount(y_enc, minlength=n_classes)
    sums = np.zeros((n_classes, Z.shape[1]))
    np.add.at(sums, y_enc, Z)
    return sums, counts


class PrototypeClassifier(ClassifierMixin, BaseEstimator):
    """Nearest class prototype classifier under a Euclidean, cosine or learned metric.

    With ``aggregate='mean'`` a point gets the label of the nearest class
    prototype, the mean of the class's training (support) points:

        ŷ(x) = argmin_c dist(φ(x), p_c),  p_c = mean_{i: y_i = c} φ(x_i),

    where ``φ`` is the identity, or ``metric_learner.transform`` (then the
    squared Euclidean distance in the learned space is the learned Mahalanobis
    distance), and ``dist`` is the squared Euclidean distance or, for
    ``metric='cosine'``, ``1 − cos`` (the cosine classifier; the points are
    normalised before their mean is taken, and the mean is normalised again). The
    class probabilities are a softmax over negative distances with a temperature
    ``T``: ``p(c | x) ∝ exp(−dist(φ(x), p_c) / T)``, as in Mensink et al.'s NCM
    classifier and prototypical networks (for cosine, ``1 / T`` is the cosine
    classifier's scale).

    With ``aggregate='attention'`` (matching networks' rule) the probability of a
    class is the attention it receives over every training point:
    ``p(c | x) = Σ_{i: y_i = c} softmax_i(−dist(φ(x), φ(x_i)) / T)``; with
    ``metric='cosine'`` this is a softmax over cosine similarities, Vinyals et
    al.'s rule.

    Parameters
    ----------
    metric : {'euclidean', 'cosine'}, default='euclidean'
        The distance in the (learned) space: squared Euclidean, or one minus the
        cosine similarity.
    metric_learner : estimator with ``transform`` or None, default=None
        A mahal metric learner (or any transformer) whose space the prototypes
        live in. None: the input space. Cloned and fitted on the training data,
        unless ``prefit=True``.
    prefit : bool, default=False
        Use ``metric_learner`` as it is (it must be fitted already; e.g. on base
        classes, with the classifier fitted on novel classes' support points).
        ``clone`` (as in cross-validation or
        :func:`mahal.fewshot.evaluate_episodes`) unfits the metric learner; there,
        pass ``metric_learner=FrozenEstimator(learner)`` (scikit-learn's
        :class:`~sklearn.frozen.FrozenEstimator`) instead.
    aggregate : {'mean', 'attention'}, default='mean'
        'mean': nearest class mean. 'attention': matching networks' softmax
        attention over every training point (keeps all of them).
    temperature : float > 0 or None, default=None
        ``T`` of the softmax. None: fitted on the training data by maximising the
        leave-one-out log-likelihood (each training point is scored against
        prototypes, or support points, that exclude it; points of single-member
        classes are left out). When no point can be scored (every class has one
        member, as in 1-shot support sets), ``T`` is the mean distance of the
        training points to the other classes' prototypes (1 with a single class).
        The predicted labels never depend on ``T`` with ``aggregate='mean'``.

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
    prototypes_ : ndarray of shape (n_classes, n_dims)
        The class prototypes in the (learned) space, rows following ``classes_``
        (normalised for 'cosine').
    counts_ : ndarray of shape (n_classes,)
        Training points per class.
    temperature_ : float
    metric_learner_ : estimator or None
        The fitted metric learner.
    support_ : ndarray of shape (n_samples, n_dims)
        The embedded training points (``aggregate='attention'`` only).
    support_labels_ : ndarray of shape (n_samples,)
        Their labels (``aggregate='attention'`` only).
    n_features_in_ : int

    References
    ----------
    T. Mensink, J. Verbeek, F. Perronnin and G. Csurka, "Distance-Based Image
    Classification: Generalizing to New Classes at Near-Zero Cost", IEEE TPAMI
    35(11) (2013).

    O. Vinyals, C. Blundell, T. Lillicrap, K. Kavukcuoglu and D. Wierstra,
    "Matching Networks for One Shot Learning", NeurIPS 2016.

    J. Snell, K. Swersky and R. Zemel, "Prototypical Networks for Few-shot
    Learning", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import PrototypeClassifier
    >>> X = np.array([[0.0, 0.0], [0.0, 2.0], [5.0, 0.0], [5.0, 2.0]])
    >>> clf = PrototypeClassifier().fit(X, ["a", "a", "b", "b"])
    >>> clf.prototypes_
    array([[0., 1.],
           [5., 1.]])
    >>> clf.predict([[1.0, 1.0], [4.0, 0.0]]).tolist()
    ['a', 'b']
    >>> _ = clf.add_classes([[0.0, 9.0]], ["c"])
    >>> clf.predict([[1.0, 8.0]]).tolist()
    ['c']
    """

    _parameter_constraints = {
        "metric": [StrOptions({"euclidean", "cosine"})],
        "metric_learner": [HasMethods(["fit", "transform"]), None],
        "prefit": ["boolean"],
        "aggregate": [StrOptions({"mean", "attention"})],
        "temperature": [Interval(Real, 0, None, closed="neither"), None],
    }

    def __init__(self, metric="euclidean", metric_learner=None, prefit=False,
                 aggregate="mean", temperature=None):
        self.metric = metric
        self.metric_learner = metric_learner
        self.prefit = prefit
        self.aggregate = aggregate
        self.temperature = temperature

    # (the metric learner's own parameters are validated by its own fit)
    @_fit_context(prefer_skip_nested_validation=False)
    def fit(self, X, y):
        """Fit (or take) the metric learner, compute the prototypes and ``T``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training (support) points.
        y : array-like of shape (n_samples,)
            Their labels.

        Returns
        -------
        self : PrototypeClassifier
        """
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True, min_classes=1)
        if self.metric_learner is None:
            self.metric_learner_ = None
        elif self.prefit:
            check_is_fitted(self.metric_learner)
            self.metric_learner_ = self.metric_learner
        else:
            self.metric_learner_ = clone(self.metric_learner).fit(X, y)
        Z = self._embed(X)
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        sums, counts = _class_means(Z, y_enc, self.classes_.shape[0])
        self._sums, self.counts_ = sums, counts
        self.prototypes_ = self._prototypes(sums, counts)
        if self.aggregate == "attention":
            self.support_, self.support_labels_ = Z, y
        self.temperature_ = (float(self.temperature) if self.temperature is not None
                             else self._fit_temperature(Z, y_enc))
        return self

    def _embed(self, X):
        Z = X if self.metric_learner_ is None else np.asarray(
            self.metric_learner_.transform(X), dtype=np.float64)
        return _normalize(Z) if self.metric == "cosine" else Z

    def _prototypes(self, sums, counts):
        P = sums / counts[:, None]
        return _normalize(P) if self.metric == "cosine" else P

    def _fit_temperature(self, Z, y_enc):
        """``T`` maximising the leave-one-out log-likelihood of the training points
        (the negative log-likelihood is convex in ``β = 1/T``)."""
        counts = self.counts_
        D = _distances(Z, self.prototypes_, self.metric)
        if self.aggregate == "mean":
            usable = counts[y_enc] > 1
            n_c = counts[y_enc[usable], None]
            loo = (self._sums[y_enc[usable]] - Z[usable]) / (n_c - 1)
            if self.metric == "cosine":
                loo = _normalize(loo)
            Zu = Z[usable]
            own = (1.0 - np.einsum("ij,ij->i", Zu, loo) if self.metric == "cosine"
                   else np.einsum("ij,ij->i", Zu - loo, Zu - loo))
            S = D[usable].copy()
            S[np.arange(S.shape[0]), y_enc[usable]] = own
            target = y_enc[usable]
            members = None
        else:
            usable = np.flatnonzero(counts[y_enc] > 1)
            usable = usable[np.unique(np.linspace(0, usable.shape[0] - 1, min(
                usable.shape[0], _TEMPERATURE_ROWS)).astype(np.int64))] \
                if usable.shape[0] else usable
            S = _distances(Z[usable], Z, self.metric)
            S[np.arange(usable.shape[0]), usable] = np.inf  # leave the point out
            target = y_enc[usable]
            members = y_enc[None, :] == target[:, None]
        if S.shape[0] == 0:
            mask = y_enc[:, None] != np.arange(D.shape[1])[None, :]
            scale = float(D[mask].mean()) if np.any(mask) else 1.0
            return scale if scale > 0 else 1.0
        finite = S[np.isfinite(S)]
        scale = float(np.mean(finite)) if finite.size and np.mean(finite) > 0 else 1.0

        def nll(beta):
            logits = -beta * S
            if members is None:
                own = logits[np.arange(S.shape[0]), target]
            else:
                own = logsumexp(np.where(members, logits, -np.inf), axis=1)
            return float(np.mean(logsumexp(logits, axis=1) - own))

        res = minimize_scalar(nll, bounds=(0.0, 1e4 / scale), method="bounded",
                              options={"xatol": 1e-6 / scale})
        beta = res.x if res.x > 0 else 1e-12 / scale
        return float(1.0 / beta)

    def _check_input(self, X):
        check_is_fitted(self, "classes_")
        return self._embed(check_points(self, X, reset=False))

    @dask_rows("classes")
    def predict_log_proba(self, X):
        """Log-probabilities of the classes (columns follow ``classes_``).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        log_proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
        """
        Z = self._check_input(X)
        beta = 1.0 / self.temperature_
        if self.aggregate == "mean":
            logits = -beta * _distances(Z, self.prototypes_, self.metric)
            return logits - logsumexp(logits, axis=1, keepdims=True)
        _, sup_enc = np.unique(self.support_labels_, return_inverse=True)
        out = np.empty((Z.shape[0], self.classes_.shape[0]))
        for r0 in range(0, Z.shape[0], _BLOCK):
            logits = -beta * _distances(Z[r0:r0 + _BLOCK], self.support_, self.metric)
            total = logsumexp(logits, axis=1)
            for c in range(self.classes_.shape[0]):
                out[r0:r0 + _BLOCK, c] = logsumexp(logits[:, sup_enc == c], axis=1) - total
        return out

    @dask_rows("classes")
    def predict_proba(self, X):
        """Class probabilities: softmax over negative distances divided by ``T``.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        proba : ndarray or dask.array.Array of shape (n_samples, n_classes)
            Columns follow ``classes_``.
        """
        return np.exp(self.predict_log_proba(X))

    @dask_rows(None)
    def predict(self, X):
        """Label of the nearest prototype (or of the most attended class).

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray or dask.array.Array of shape (n_samples,)
        """
        if self.aggregate == "mean":
            Z = self._check_input(X)
            return self.classes_[np.argmin(_distances(Z, self.prototypes_, self.metric),
                                           axis=1)]
        best = np.argmax(self.predict_log_proba(X), axis=1)
        return self.classes_[best]

    def add_classes(self, X_support, y_support):
        """Add new classes from a few labelled points, without refitting the metric.

        Mensink et al.'s use of a learned nearest-class-mean metric: a class unseen
        during training gets its prototype from its support points at near-zero
        cost. The temperature is kept.

        Parameters
        ----------
        X_support : array-like of shape (n_support, n_features)
        y_support : array-like of shape (n_support,)
            Labels, none of them in ``classes_``.

        Returns
        -------
        self : PrototypeClassifier

        Raises
        ------
        ValueError
            If a label is already a class.
        """
        check_is_fitted(self, "classes_")
        X_support = check_points(self, X_support, reset=False)
        y_support = np.asarray(y_support)
        if y_support.ndim != 1 or y_support.shape[0] != X_support.shape[0]:
            raise ValueError(f"y_support must be 1-D with one label per row of "
                             f"X_support ({X_support.shape[0]}); got shape "
                             f"{y_support.shape}.")
        new, y_enc = np.unique(y_support, return_inverse=True)
        try:
            known = np.isin(new, self.classes_)
        except TypeError:
            raise ValueError("y_support's labels must be of the same type as "
                             "classes_.") from None
        if np.any(known):
            raise ValueError(f"add_classes adds new classes; {new[known][:3].tolist()} "
                             f"already are classes (fit again to change them).")
        Z = self._embed(X_support)
        sums, counts = _class_means(Z, y_enc, new.shape[0])
        classes = np.concatenate([self.classes_, new])
        order = np.argsort(classes, kind="stable")
        self.classes_ = classes[order]
        self._sums = np.vstack([self._sums, sums])[order]
        self.counts_ = np.concatenate([self.counts_, counts])[order]
        self.prototypes_ = self._prototypes(self._sums, self.counts_)
        if self.aggregate == "attention":
            self.support_ = np.vstack([self.support_, Z])
            self.support_labels_ = np.concatenate([self.support_labels_, y_support])
        return self
