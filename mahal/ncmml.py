"""Nearest class mean metric learning (NCMML), Mensink et al., TPAMI 2013.

The estimator :class:`NCMML`; its solver is in :mod:`mahal._ncmml_solver`.
"""

import warnings
from numbers import Real

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, StrOptions

from ._ncmml_solver import ncmml_solve
from ._parallel import fit_threads
from ._validation import IntAtLeast, check_n_components, check_points, require_y
from .base import MahalanobisMixin, SupervisedMixin, initialize_components
from .fewshot import sample_episodes


def _class_centroids(X, y_enc, n_classes, n_centroids, random_state):
    """The class means (``n_centroids=1``) or, per class, the k-means centroids of
    its points (at most one per point), fixed before the optimisation as in
    Mensink et al.'s NCMC. Returns ``(centroids, centroid_class)``."""
    if n_centroids == 1:
        counts = np.bincount(y_enc, minlength=n_classes)
        sums = np.zeros((n_classes, X.shape[1]))
        np.add.at(sums, y_enc, X)
        return sums / counts[:, None], np.arange(n_classes)
    from sklearn.cluster import KMeans

    rng = check_random_state(random_state)
    centroids, owner = [], []
    for c in range(n_classes):
        Xc = X[y_enc == c]
        k = min(n_centroids, np.unique(Xc, axis=0).shape[0])
        km = KMeans(n_clusters=k, n_init=3,
                    random_state=rng.randint(np.iinfo(np.int32).max)).fit(Xc)
        centroids.append(km.cluster_centers_)
        owner.append(np.full(k, c))
    return np.vstack(centroids), np.concatenate(owner)


class NCMML(SupervisedMixin, MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Nearest class mean metric learning (Mensink, Verbeek, Perronnin & Csurka, 2013).

    Learns a (low-rank) ``L`` (``components_``) under which each point is likely
    to be labelled by its nearest class mean: it maximises the mean log-likelihood
    of the classes,

        max_L (1/n) Σ_i log p(y_i | x_i),
        p(c | x) = Σ_{k ∈ C(c)} exp(−½ ‖L(x − μ_k)‖²) / Σ_k exp(−½ ‖L(x − μ_k)‖²),

    where ``C(c)`` are the centroids of class ``c``: its mean (NCMML), or
    ``n_centroids`` k-means centroids (Mensink's NCMC). Solved with L-BFGS on ``L``
    (exact loss and gradient, ``O(n · n_centroids_total · n_components)`` per
    evaluation beyond the projection of ``X``; see :mod:`mahal._ncmml_solver`).

    With ``episodic=True`` the same loss is optimised on ``n_episodes`` sampled
    N-way K-shot episodes: each episode's centroids are the means of its
    ``n_shot`` support points per class, and its ``n_query`` query points per class
    compete only among the episode's ``n_way`` prototypes: the loss of prototypical
    networks (Snell et al., 2017) for a linear embedding. The episodes are drawn
    once (deterministically from ``random_state``) and the mean loss over all of
    them is minimised with L-BFGS.

    The learned space carries a scale: the softmax sharpens as ``L`` grows, so the
    norm of ``L`` is fitted too (there is no separate temperature). Use the learned
    space with :class:`mahal.PrototypeClassifier` (``metric_learner=``) to classify
    by nearest class mean, or with a k-NN classifier.

    Parameters
    ----------
    n_components : int, optional
        Rank of ``L`` (dimension of the learned space); default ``n_features``.
        Mensink et al. use a low rank, which also regularises.
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or ndarray, default='auto'
        Initial ``L``; see :func:`mahal.base.initialize_components`.
    n_centroids : int, default=1
        Centroids per class (k-means on the class's points in the input space,
        fixed during the optimisation; NCMC). 1 is NCMML's class mean. Not with
        ``episodic=True``.
    episodic : bool, default=False
        Optimise the loss on sampled episodes with support means as prototypes
        (see above) instead of on all points with the class means.
    n_way : int, default=5
        Classes per training episode (``episodic=True``).
    n_shot : int, default=1
        Support points per class in a training episode (its prototype is their
        mean). Matching the shots used at test time is the usual choice.
    n_query : int, default=15
        Query points per class in a training episode (the points the loss is
        summed over).
    n_episodes : int, default=500
        Training episodes. The objective is their mean loss; more episodes make
        it closer to the expected episodic loss, at a proportional cost.
    max_iter : int, default=500
        Maximum number of L-BFGS iterations; a ``ConvergenceWarning`` says when it
        was reached.
    tol : float, default=1e-5
        Stop when the objective fell by less than ``tol`` (relative) in an
        iteration (scipy's ``ftol``).
    random_state : int, RandomState or None
        For ``init='random'``, the k-means of ``n_centroids > 1`` and the episodes.
    verbose : bool, default=False
        Print an iteration table.
    preprocessor : array-like or callable, optional
        If an array ``X``, points may be given as integer indices into it; if a
        callable, it maps a 1-D array of identifiers to points.
    callback : callable, default=None
        If not None, called after every L-BFGS iteration as
        ``callback(transformation, n_iter)`` with a copy of the current ``L``, as
        in scikit-learn's :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
    loss_ : float
        The final objective (mean negative log-likelihood).
    classes_ : ndarray of shape (n_classes,)
    centroids_ : ndarray of shape (n_centroids_total, n_features)
        The class centroids in the input space (not with ``episodic=True``).
    centroid_classes_ : ndarray of shape (n_centroids_total,)
        The label of each centroid.
    n_features_in_ : int

    References
    ----------
    T. Mensink, J. Verbeek, F. Perronnin and G. Csurka, "Distance-Based Image
    Classification: Generalizing to New Classes at Near-Zero Cost", IEEE TPAMI
    35(11) (2013), 2624–2637.

    J. Snell, K. Swersky and R. Zemel, "Prototypical Networks for Few-shot
    Learning", NeurIPS 2017.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import NCMML, PrototypeClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> ncm = NCMML(n_components=2).fit(X, y)
    >>> ncm.transform(X).shape
    (150, 2)
    >>> clf = PrototypeClassifier(metric_learner=ncm, prefit=True).fit(X, y)
    >>> bool(clf.score(X, y) > 0.95)
    True
    """

    _parameter_constraints = {
        "n_components": [IntAtLeast(1), None],
        "init": [StrOptions({"auto", "pca", "lda", "identity", "random"}),
                 "array-like"],
        "n_centroids": [IntAtLeast(1)],
        "episodic": ["boolean"],
        "n_way": [IntAtLeast(2)],
        "n_shot": [IntAtLeast(1)],
        "n_query": [IntAtLeast(1)],
        "n_episodes": [IntAtLeast(1)],
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "callback": [callable, None],
    }

    def __init__(self, n_components=None, init="auto", n_centroids=1, episodic=False,
                 n_way=5, n_shot=1, n_query=15, n_episodes=500, max_iter=500,
                 tol=1e-5, random_state=None, verbose=False, preprocessor=None,
                 callback=None):
        self.n_components = n_components
        self.init = init
        self.n_centroids = n_centroids
        self.episodic = episodic
        self.n_way = n_way
        self.n_shot = n_shot
        self.n_query = n_query
        self.n_episodes = n_episodes
        self.max_iter = max_iter
        self.tol = tol
        self.random_state = random_state
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.callback = callback

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, X, y):
        """Fit the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points.
        y : array-like of shape (n_samples,)
            Their class labels.

        Returns
        -------
        self : NCMML
            The fitted estimator.
        """
        require_y(self, y)
        X, y = check_points(self, X, y, classification=True)
        n_components = check_n_components(self.n_components, X.shape[1])
        self.classes_, y_enc = np.unique(y, return_inverse=True)
        rng = check_random_state(self.random_state)
        L0 = initialize_components(n_components, X, y_enc, self.init, rng)
        if self.episodic:
            if self.n_centroids != 1:
                raise ValueError("n_centroids > 1 is for the batch loss; with "
                                 "episodic=True each class's prototype is the mean "
                                 "of its support points.")
            ep = sample_episodes(y, self.n_way, self.n_shot, self.n_query,
                                 self.n_episodes, rng)
            E, n_way, n_shot = len(ep), self.n_way, self.n_shot
            centroids = X[ep.support].reshape(E, n_way, n_shot, -1).mean(axis=2)
            targets = np.repeat(np.arange(n_way), self.n_query)
            args = (X[ep.query], centroids, np.broadcast_to(np.arange(n_way), (E, n_way)),
                    np.broadcast_to(targets, (E, targets.shape[0])))
        else:
            centroids, owner = _class_centroids(X, y_enc, self.classes_.shape[0],
                                                self.n_centroids, rng)
            self.centroids_, self.centroid_classes_ = centroids, self.classes_[owner]
            args = (X, centroids, owner, y_enc)
        L, n_iter, converged, info = ncmml_solve(
            *args, L0, max_iter=self.max_iter, tol=self.tol, verbose=self.verbose,
            callback=self.callback, name=type(self).__name__)
        if not converged:
            warnings.warn(f"[{type(self).__name__}] NCMML did not converge in "
                          f"max_iter={self.max_iter} iterations.", ConvergenceWarning)
        self.components_ = L
        self.n_iter_ = n_iter
        self.loss_ = info["loss"]
        return self
