"""TripletMargin — the FaceNet triplet loss with a linear map (Schroff,
Kalenichenko & Philbin, CVPR 2015), on given triplets or with online mining.

With ``d²(x, x') = ‖L(x − x')‖²``, a triplet (anchor, positive, negative) costs
``[d²(a, p) − d²(a, n) + margin]_+``. :class:`TripletMargin` minimises the mean over
given triplets by L-BFGS; :class:`TripletMargin_Supervised` mines triplets in
mini-batches of ``P`` classes × ``K`` points (all, batch-hard or semi-hard) and takes
Adam steps. The losses, the sampler and the optimisers are in
:mod:`mahal._triplet_solver`, the mining kernels in :mod:`mahal._triplet_kernels`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._parallel import fit_threads
from ._triplet_solver import MINING, triplet_sgd, triplet_solve
from ._validation import IntAtLeast, check_n_components, check_points, require_y
from .base import (
    MahalanobisMixin,
    SupervisedMixin,
    TripletsClassifierMixin,
    initialize_components,
)

__all__ = ["TripletMargin", "TripletMargin_Supervised"]

_DEFAULT_CLASSES_PER_BATCH = 8

_SHARED_CONSTRAINTS = {
    "margin": [Interval(Real, 0, None, closed="neither")],
    "n_components": [IntAtLeast(1), None],
    "init": [StrOptions({"auto", "pca", "lda", "identity", "random"}), "array-like"],
    "max_iter": [IntAtLeast(1)],
    "tol": [Interval(Real, 0, None, closed="left")],
    "verbose": ["verbose"],
    "preprocessor": ["array-like", callable, None],
    "random_state": ["random_state"],
    "callback": [callable, None],
}


def _warn_not_converged(name, max_iter, what):
    warnings.warn(f"[{name}] did not converge in max_iter={max_iter} {what}.",
                  ConvergenceWarning)


class TripletMargin(TripletsClassifierMixin, MahalanobisMixin, BaseEstimator):
    """FaceNet's triplet loss with a linear map, learned from given triplets.

    Minimises ``(1/m) Σ [‖L(a − p)‖² − ‖L(a − n)‖² + margin]_+`` over the triplets
    (anchor, positive, negative) by L-BFGS. The loss is convex in ``M = LᵀL``: with
    ``n_components = n_features`` every local minimum in ``L`` is global (the tests
    come within 1e-3 of cvxpy's optimum; the hinge's kinks slow L-BFGS near it).

    Parameters
    ----------
    margin : float, default=1.0
        Gap wanted between the squared distances to the negative and to the
        positive. Only its ratio to the scale of the data and of ``init`` matters.
    n_components : int or None, default=None
        Dimension of the learned space; None keeps ``n_features``.
    init : {'auto', 'pca', 'identity', 'random'} or array of shape \
(n_components, n_features), default='auto'
        Initial ``L``: 'auto' is 'pca' when reducing the dimension, else 'identity'
        (triplets carry no labels, so 'lda' is not available here).
    max_iter : int, default=200
        Maximum number of L-BFGS iterations.
    tol : float, default=1e-5
        L-BFGS stops when the loss fell by at most ``tol`` (relative) per iteration
        over the last 5 iterations.
    verbose : bool, default=False
        Print the loss at every iteration.
    preprocessor : array-like or callable, optional
        If an array ``X``, triplets may be given as indices into it, shape
        ``(n_triplets, 3)``; if a callable, it maps identifiers to points.
    random_state : int, RandomState or None, default=None
        For ``init='random'``.
    callback : callable or None, default=None
        Called after every iteration as ``callback(L, n_iter)``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
    n_features_in_ : int

    References
    ----------
    F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: a unified embedding for
    face recognition and clustering", CVPR 2015.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal import TripletMargin
    >>> X = np.array([[0., 0.], [0., 2.], [1., 0.], [1., 2.]])
    >>> triplets = np.array([[0, 1, 2], [2, 3, 0], [1, 0, 3], [3, 2, 1]])
    >>> model = TripletMargin(preprocessor=X).fit(triplets)
    >>> model.score(triplets)
    1.0
    """

    _parameter_constraints = dict(_SHARED_CONSTRAINTS)

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
    def fit(self, triplets, y=None):
        """Learn the metric from triplets (anchor, positive, negative).

        Parameters
        ----------
        triplets : array-like of shape (n_triplets, 3, n_features), or \
(n_triplets, 3) identifiers when a ``preprocessor`` was given
            The anchor should end closer to the positive than to the negative.
        y : None
            Ignored (scikit-learn's signature).

        Returns
        -------
        self
        """
        if isinstance(self.init, str) and self.init == "lda":
            raise ValueError("TripletMargin: init='lda' needs class labels; triplets "
                             "have none (use TripletMargin_Supervised, or another "
                             "init).")
        triplets = self._validate_triplets_fit(triplets)
        points = triplets.reshape(-1, triplets.shape[2])
        n_components = check_n_components(self.n_components, points.shape[1])
        L0 = initialize_components(n_components, points, None, self.init,
                                   self.random_state)
        name = type(self).__name__
        L, n_iter, converged, _ = triplet_solve(
            triplets[:, 0] - triplets[:, 1], triplets[:, 0] - triplets[:, 2], L0,
            margin=float(self.margin), max_iter=int(self.max_iter),
            tol=float(self.tol), verbose=self.verbose, callback=self.callback,
            name=name)
        if not converged:
            _warn_not_converged(name, self.max_iter, "L-BFGS iterations")
        self.components_, self.n_iter_ = L, n_iter
        return self


class TripletMargin_Supervised(SupervisedMixin, MahalanobisMixin, TransformerMixin,
                               BaseEstimator):
    """FaceNet's triplet loss with a linear map and online triplet mining.

    Draws mini-batches of ``classes_per_batch`` (P) classes × ``samples_per_class``
    (K) points, selects triplets in each by the ``mining`` rule in the current
    learned space, and takes an Adam step on the batch's mean triplet hinge
    ``[d²(a, p) − d²(a, n) + margin]_+`` (``d²`` the squared learned distance).
    Deterministic under ``random_state``.

    Parameters
    ----------
    margin : float, default=1.0
        Gap wanted between the squared distances to the negative and to the
        positive. Only its ratio to the scale of the data and of ``init`` matters.
    mining : {'semihard', 'hard', 'all'}, default='semihard'
        Which triplets of a batch train the metric.
        'all': every (anchor, positive, negative); the loss is their mean hinge.
        'hard': batch-hard (Hermans et al. 2017): per anchor, its farthest positive
        and nearest negative; the mean over the anchors.
        'semihard': FaceNet's rule, for every anchor-positive pair the nearest
        negative farther than the positive, when it is inside the margin
        (``d²(a,p) < d²(a,n) < d²(a,p) + margin``); when no negative is farther than
        the positive, the farthest negative (TensorFlow Addons' fallback); the mean
        over the anchor-positive pairs.
    n_components : int or None, default=None
        Dimension of the learned space; None keeps ``n_features``.
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or array of shape \
(n_components, n_features), default='auto'
        Initial ``L``. 'auto' as scikit-learn's NeighborhoodComponentsAnalysis:
        'lda' when ``n_components ≤ n_classes − 1``, else 'pca' when reducing the
        dimension, else 'identity'.
    classes_per_batch : int or None, default=None
        P, the classes in a batch (at least 2: a triplet needs a negative). None
        uses ``min(8, n_classes)``; a value above the number of classes is an
        error.
    samples_per_class : int, default=8
        K, the points per class in a batch (at least 2: a positive; a class with
        fewer points gives all of them).
    learning_rate : float, default=0.01
        Adam's initial step (on the entries of ``L``).
    max_iter : int, default=100
        Maximum number of epochs (``ceil(n_samples / (P K))`` batches each);
        reaching it gives a ``ConvergenceWarning``.
    tol : float, default=1e-3
        When two epochs in a row fail to lower the epoch's mean batch loss by
        ``tol`` (relative) below its best, the step is divided by 5
        (scikit-learn's ``MLPClassifier(learning_rate='adaptive')``); the third
        time, the fit has converged. An epoch with zero loss also ends it.
    verbose : bool, default=False
        Print the epoch loss, step and number of active triplets.
    preprocessor : array-like or callable, optional
        Maps 1-D identifiers in ``X`` to points.
    random_state : int, RandomState or None, default=None
        Seeds the batches and ``init='random'``.
    callback : callable or None, default=None
        Called after every epoch as ``callback(L, n_iter)``.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
        Epochs.
    loss_curve_ : list of float
        The mean batch loss of every epoch.
    n_features_in_ : int

    References
    ----------
    F. Schroff, D. Kalenichenko and J. Philbin, "FaceNet: a unified embedding for
    face recognition and clustering", CVPR 2015.
    A. Hermans, L. Beyer and B. Leibe, "In defense of the triplet loss for person
    re-identification", arXiv:1703.07737, 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import TripletMargin_Supervised
    >>> X, y = load_iris(return_X_y=True)
    >>> TripletMargin_Supervised(random_state=0).fit(X, y).transform(X).shape
    (150, 4)
    """

    _parameter_constraints = {
        **_SHARED_CONSTRAINTS,
        "mining": [StrOptions(set(MINING))],
        "classes_per_batch": [IntAtLeast(2), None],
        "samples_per_class": [IntAtLeast(2)],
        "learning_rate": [Interval(Real, 0, None, closed="neither")],
    }

    def __init__(self, margin=1.0, mining="semihard", n_components=None, init="auto",
                 classes_per_batch=None, samples_per_class=8, learning_rate=0.01,
                 max_iter=100, tol=1e-3, verbose=False, preprocessor=None,
                 random_state=None, callback=None):
        self.margin = margin
        self.mining = mining
        self.n_components = n_components
        self.init = init
        self.classes_per_batch = classes_per_batch
        self.samples_per_class = samples_per_class
        self.learning_rate = learning_rate
        self.max_iter = max_iter
        self.tol = tol
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
            Class labels: at least two classes (``classes_per_batch`` if given),
            each with at least two points (an anchor and a positive).

        Returns
        -------
        self
        """
        name = type(self).__name__
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True)
        classes, codes = np.unique(y, return_inverse=True)
        codes = codes.ravel().astype(np.int64)
        counts = np.bincount(codes)
        if counts.min() < 2:
            lonely = classes[counts < 2]
            raise ValueError(
                f"{name} needs at least 2 points in every class (an anchor and a "
                f"positive); {lonely.shape[0]} class(es) have a single point, e.g. "
                f"{lonely[0]!r}. Remove them or merge them into other classes.")
        P = self.classes_per_batch
        if P is None:
            P = min(_DEFAULT_CLASSES_PER_BATCH, classes.shape[0])
        elif P > classes.shape[0]:
            raise ValueError(
                f"{name}: classes_per_batch={P} but y has only {classes.shape[0]} "
                f"classes; a batch draws distinct classes, so use at most "
                f"{classes.shape[0]}.")
        n_components = check_n_components(self.n_components, X.shape[1])
        rng = check_random_state(self.random_state)
        L0 = initialize_components(n_components, X, codes, self.init, rng)
        L, n_iter, converged, info = triplet_sgd(
            X, codes, L0, margin=float(self.margin), mode=MINING[self.mining],
            classes_per_batch=int(P), samples_per_class=int(self.samples_per_class),
            learning_rate=float(self.learning_rate), max_iter=int(self.max_iter),
            tol=float(self.tol), rng=rng, verbose=self.verbose,
            callback=self.callback, name=name)
        if not converged:
            _warn_not_converged(name, self.max_iter, "epochs")
        self.components_, self.n_iter_ = L, n_iter
        self.loss_curve_ = info["losses"]
        return self
