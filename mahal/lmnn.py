"""Large Margin Nearest Neighbor (LMNN), Weinberger & Saul, JMLR 10 (2009).

The estimators :class:`LMNN` and :class:`LMNNEnergyClassifier`; the solver is in
:mod:`mahal._lmnn_solver`.
"""

import time
import warnings
from numbers import Real

import numpy as np
from sklearn.base import (BaseEstimator, ClassifierMixin, TransformerMixin, _fit_context,
                          clone)
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import HasMethods, Interval, Options, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._lmnn_neighbors import lmnn_energy, prepare_energy, select_target_neighbors
from ._lmnn_solver import lmnn_solve
from ._parallel import fit_threads, n_threads_for
from ._validation import (N_JOBS, IntAtLeast, check_n_components, check_points,
                          dask_rows, is_dask_array, require_y)
from .base import (
    MahalanobisMixin,
    SupervisedMixin,
    copy_fitted_attributes,
    initialize_components,
    resolve_deprecated_aliases,
)


class _HingeWidths(Options):
    """A non-empty sequence of finite Huber widths ≥ 0 (``smoothing``).

    (An ``Options`` for scikit-learn's constraint machinery, which takes only its
    own constraint types; the test is this class's own.)
    """

    def __init__(self):
        super().__init__(object, set())

    def is_satisfied_by(self, val):
        try:
            widths = np.asarray(val, dtype=float).ravel()
        except (TypeError, ValueError):
            return False
        return (not isinstance(val, str) and widths.size > 0
                and bool(np.all(np.isfinite(widths))) and bool(np.all(widths >= 0)))

    def __str__(self):
        return "a non-empty sequence of finite widths >= 0"




def _push_weight(estimator):
    """``μ``, the weight of the push (impostor) term.

    ``1 − regularization`` (metric-learn's ``regularization`` weighs the pull term),
    or ``weight_push_loss`` (pylmnn's name for ``μ``) when that is given; giving both
    is an error unless they agree.
    """
    reg, w = float(estimator.regularization), estimator.weight_push_loss
    if w is None:
        return 1.0 - reg
    if reg != 0.5 and abs(reg - (1.0 - w)) > 1e-12:
        raise ValueError(
            f"{type(estimator).__name__}: regularization={reg!r} (the pull weight, "
            f"metric-learn's meaning) and weight_push_loss={w!r} (the push weight, "
            f"pylmnn's) disagree; give one of them (regularization = 1 − "
            f"weight_push_loss).")
    return float(w)


# metric-learn 0.7's LMNN parameters that L-BFGS has no use for: accepted, so that
# code written for metric-learn runs, with a warning that says why they do nothing.
_IGNORED_METRIC_LEARN = {
    "learn_rate": "L-BFGS chooses its steps by a line search",
    "min_iter": "iterations stop on tol or max_iter only",
    "convergence_tol": ("metric-learn stops on an absolute change of the objective; "
                        "mahal stops on tol, a relative decrease"),
}


def _warn_ignored(estimator):
    for name, why in _IGNORED_METRIC_LEARN.items():
        value = getattr(estimator, name)
        if value is not None:
            warnings.warn(f"{type(estimator).__name__}: {name}={value!r} is accepted "
                          f"for compatibility with metric-learn and has no effect: "
                          f"{why}.", UserWarning, stacklevel=4)


def _count_from(callback, n_done):
    """``callback`` with iterations counted on from ``n_done`` (earlier passes)."""
    if callback is None:
        return None
    return lambda transformation, n_iter: callback(transformation, n_done + n_iter)


def _prepare_targets(estimator, X, y, n_neighbors, targets=None):
    """Encode labels, check class sizes, find target neighbours (or take
    ``targets``, of shape (n_samples, n_neighbors), as they are; then the learner
    that chose them has already warned about small classes)."""
    classes, y_enc = np.unique(y, return_inverse=True)
    y_enc = y_enc.astype(np.int64)
    counts = np.bincount(y_enc)
    small = classes[counts < n_neighbors + 1]
    if np.all(counts < 2):
        raise ValueError(
            f"{type(estimator).__name__} needs at least one class with 2 or more "
            f"members (each point's target neighbours are points of its own class); "
            f"every class here has a single member.")
    if small.shape[0] and targets is None:
        warnings.warn(
            f"{small.shape[0]} class(es) have fewer than n_neighbors + 1 = "
            f"{n_neighbors + 1} members (e.g. {small[:3].tolist()}): their points get "
            f"all their classmates (m − 1 < n_neighbors) as target neighbours; "
            f"singletons only act as impostors.", UserWarning)
    if targets is None:
        targets = select_target_neighbors(X, y_enc, n_neighbors)
    else:
        targets = np.asarray(targets, dtype=np.int64)
    return classes, y_enc, targets


class LMNN(SupervisedMixin, MahalanobisMixin, TransformerMixin, BaseEstimator):
    """Large Margin Nearest Neighbor metric learning (Weinberger & Saul, 2009).

    Learns ``L`` (``components_``) so that each point's ``n_neighbors`` target
    neighbours (its nearest same-class points in the input space) are closer than
    any differently-labelled point by a margin of 1 (in squared learned distance):

        min_L (1 − μ) Σ_{i, j(i)} d_ij + μ Σ_{i, j(i), l: y_l ≠ y_i} [1 + d_ij − d_il]_+

    with ``d_ij = ‖L(x_i − x_j)‖²`` and the push weight ``μ = 1 − regularization``
    (metric-learn's meaning: ``regularization`` weighs the pull term), or
    ``μ = weight_push_loss`` (pylmnn's name). Solved with L-BFGS on ``L`` with exact
    loss and gradient (see :mod:`mahal._lmnn_solver`).

    The margin is 1 in absolute units, so the scale of ``X`` matters: standardise
    features (or e.g. map pixels to [0, 1]) first. Differences from metric-learn
    0.7: ``max_iter`` counts L-BFGS iterations, ``tol`` replaces ``convergence_tol``
    (``learn_rate``, ``min_iter`` and ``convergence_tol`` are accepted and ignored,
    with a warning), and a class with at most ``n_neighbors`` members is handled
    (metric-learn's check is off by one).

    Parameters
    ----------
    n_neighbors : int, default=3
        Number of target neighbours per point. Classes with at most
        ``n_neighbors`` members use all their classmates (with a warning).
    n_components : int, optional
        Dimension of the learned space (rows of ``components_``); default
        ``n_features``. With fewer components than features the problem is
        nonconvex.
    init : {'auto', 'pca', 'lda', 'identity', 'random'} or ndarray, default='auto'
        Initial ``L``; see :func:`mahal.base.initialize_components`. 'auto' is
        'lda' when ``n_components ≤ n_classes − 1``, else 'pca' when
        ``n_components < n_features``, else identity (which for full rank gives
        the same distances as 'pca', pylmnn's default).
    max_iter : int, default=1000
        Maximum number of L-BFGS iterations (over all smoothing stages; the
        smoothed stages together may use at most a third of them). A cap, as in
        metric-learn (whose default it is): a fit stops on ``tol`` well before it,
        and a ``ConvergenceWarning`` says that it did not. (50, pylmnn's default
        and this one's before, stopped many fits before they converged.)
    tol : float, default=1e-5
        Stop a stage when the objective fell by less than ``tol`` (relative) per
        iteration, on average over its last 10 iterations. This is scipy's
        ``ftol`` rule (pylmnn's ``tol``) averaged over a window: on the exact
        hinge, which is piecewise linear, one iteration's decrease says little
        about how far the optimum is (an iteration caught on a kink makes little
        progress far from it).
    regularization : float in (0, 1), default=0.5
        Weight of the pull term (target neighbours), as in metric-learn; the push
        (impostor) term has weight ``1 − regularization``.
    n_passes : int, default=1
        Multi-pass LMNN (Weinberger & Saul, 2009, "multiple passes"): after each
        pass the target neighbours are selected again, as the nearest same-class
        points in the learned space, and the next pass continues from the learned
        ``L`` with them; stops early when the target neighbours no longer change.
        Each pass runs up to ``max_iter`` iterations. Helps where the input space's
        nearest classmates are poor targets (e.g. balance, letter), can cost a
        little elsewhere; choose it by cross-validation.
    smoothing : sequence of float, default=(1.0, 0.1, 0.0)
        Widths of the Huber-smoothed hinge in successive L-BFGS stages; the last
        stage should be 0 (the exact hinge). The smoothed stages give L-BFGS a
        smooth function to build its model on before the exact hinge.
    random_state : int, RandomState or None
        For ``init='random'``; the solver itself is deterministic.
    verbose : bool, default=False
        Print an iteration table.
    preprocessor : array-like or callable, optional
    n_jobs : int, default=None
        Number of threads, as in scikit-learn: None means 1 unless in a
        :func:`joblib.parallel_config` context, −1 means all cores. The compiled
        kernels split the rows among the threads, at most one thread per 4096
        training points (smaller shares cost more in hand-offs than they save).
        With one thread BLAS is limited to one thread during ``fit`` too; with
        more, BLAS keeps its own threads (set with ``threadpoolctl`` or
        ``OMP_NUM_THREADS``) while the kernels run serially, and is limited to one
        thread while they run on several (see :mod:`mahal._parallel`). Results do
        not depend on ``n_jobs``; BLAS's thread count may change their last bits,
        as for any BLAS-based estimator.
    callback : callable, default=None
        If not None, called after every L-BFGS iteration as
        ``callback(transformation, n_iter)``, with the current transformation (an
        ndarray of shape (n_components, n_features), a copy) and the number of
        iterations so far, counted over all passes; as in scikit-learn's
        :class:`~sklearn.neighbors.NeighborhoodComponentsAnalysis`. For monitoring
        (e.g. recording the objective along the way).
    weight_push_loss : float in (0, 1] or None, default=None
        The push weight ``μ`` under pylmnn's name (the pull term then has weight
        ``1 − μ``): for code written for pylmnn. None: ``1 − regularization``.
    k : int or 'deprecated', default='deprecated'
        metric-learn's former name of ``n_neighbors``: when set, ``fit`` uses it as
        ``n_neighbors`` and warns with a ``FutureWarning``.
    learn_rate, min_iter, convergence_tol : None
        metric-learn's step size, minimum number of iterations and absolute
        stopping tolerance of its gradient descent: accepted for compatibility and
        ignored with a warning (L-BFGS chooses its steps; ``max_iter`` and ``tol``
        stop it).

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
    n_iter_ : int
        L-BFGS iterations, summed over the passes.
    n_passes_ : int
        Passes run (at most ``n_passes``).
    n_features_in_ : int
    classes_ : ndarray
    target_neighbors_ : ndarray of shape (n_samples, n_neighbors)
        The target neighbours of the last pass (indices into the training set,
        −1 = none).

    Notes
    -----
    Memory does not grow with the number of impostors. Impostor candidates are
    stored while they number at most ``max(10⁷, 20 · n_samples · n_neighbors)``
    pairs; beyond (classes that overlap heavily), every evaluation of the
    objective streams over blocks of pairwise distances instead, storing none:
    the objective stays exact (nothing is sampled, unlike pylmnn's
    ``max_impostors``, which keeps a random subset of impostor pairs at each
    evaluation), and each evaluation then costs a pass over all pairs of points
    of different classes, ``O(n_samples² · n_components)``.

    References
    ----------
    K. Q. Weinberger and L. K. Saul, "Distance Metric Learning for Large Margin
    Nearest Neighbor Classification", JMLR 10 (2009), 207–244.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from sklearn.neighbors import KNeighborsClassifier
    >>> from sklearn.pipeline import make_pipeline
    >>> from mahal import LMNN
    >>> X, y = load_iris(return_X_y=True)
    >>> lmnn = LMNN(n_neighbors=3, max_iter=200).fit(X, y)
    >>> lmnn.transform(X).shape
    (150, 4)
    >>> pipe = make_pipeline(LMNN(max_iter=200), KNeighborsClassifier(3)).fit(X, y)
    >>> round(pipe.score(X, y), 2)
    0.97
    """

    _parameter_constraints = {
        "n_neighbors": [IntAtLeast(1)],
        "n_components": [IntAtLeast(1), None],
        "init": [StrOptions({"auto", "pca", "lda", "identity", "random"}),
                 "array-like"],
        "max_iter": [IntAtLeast(1)],
        "tol": [Interval(Real, 0, None, closed="left")],
        "regularization": [Interval(Real, 0, 1, closed="neither")],
        "weight_push_loss": [Interval(Real, 0, 1, closed="right"), None],
        "n_passes": [IntAtLeast(1)],
        "smoothing": [_HingeWidths(), None],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "preprocessor": ["array-like", callable, None],
        "n_jobs": N_JOBS,
        "callback": [callable, None],
        "k": [StrOptions({"deprecated"}), IntAtLeast(1)],
        "learn_rate": [Interval(Real, 0, None, closed="neither"), None],
        "min_iter": [IntAtLeast(0), None],
        "convergence_tol": [Interval(Real, 0, None, closed="left"), None],
    }

    _deprecated_aliases = {"k": "n_neighbors"}

    def __init__(self, n_neighbors=3, n_components=None, init="auto", max_iter=1000,
                 tol=1e-5, regularization=0.5, n_passes=1, smoothing=(1.0, 0.1, 0.0),
                 random_state=None, verbose=False, preprocessor=None, n_jobs=None,
                 callback=None, weight_push_loss=None, k="deprecated", learn_rate=None,
                 min_iter=None, convergence_tol=None):
        self.n_neighbors = n_neighbors
        self.n_components = n_components
        self.init = init
        self.max_iter = max_iter
        self.tol = tol
        self.regularization = regularization
        self.n_passes = n_passes
        self.smoothing = smoothing
        self.random_state = random_state
        self.verbose = verbose
        self.preprocessor = preprocessor
        self.n_jobs = n_jobs
        self.callback = callback
        self.weight_push_loss = weight_push_loss
        self.k = k
        self.learn_rate = learn_rate
        self.min_iter = min_iter
        self.convergence_tol = convergence_tol

    @_fit_context(prefer_skip_nested_validation=True)
    @fit_threads
    def fit(self, X, y):
        """Fit the metric.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training points; a row-chunked ``dask.array`` is fitted on the active
            ``distributed`` cluster (see the user guide, "Larger than memory:
            Dask").
        y : array-like of shape (n_samples,)
            Their class labels; a point's target neighbours are its nearest
            classmates.

        Returns
        -------
        self : LMNN
            The fitted estimator.
        """
        resolved = resolve_deprecated_aliases(self, self._deprecated_aliases)
        if resolved is not None:
            return copy_fitted_attributes(self, resolved.fit(X, y))
        _warn_ignored(self)
        k, mu = self.n_neighbors, _push_weight(self)
        require_y(self, y)
        if is_dask_array(X):  # (fitted on the active dask cluster)
            from ._dask_lmnn import distribute_points

            X, y = distribute_points(self, X, y)
        else:
            X, y = check_points(self, X, y, classification=True, ensure_min_samples=2)
        n_components = check_n_components(self.n_components, X.shape[1])
        self.classes_, y_enc, targets = _prepare_targets(self, X, y, k)
        L = initialize_components(n_components, X, y_enc, self.init,
                                  self.random_state)
        n_iter = n_passes = 0
        all_converged = True
        t_start = time.perf_counter()
        for p in range(self.n_passes):
            if p > 0:
                # multi-pass: new target neighbours in the learned space
                new_targets = select_target_neighbors(X @ L.T, y_enc, k)
                n_changed = int(np.count_nonzero(np.any(new_targets != targets, axis=1)))
                if self.verbose:
                    print(f"[{type(self).__name__}] Pass {p + 1}: {n_changed} "
                          f"points have new target neighbours.")
                if n_changed == 0:
                    break
                targets = new_targets
            L, it, converged, info = lmnn_solve(
                X, y_enc, targets, L, mu=mu, max_iter=self.max_iter, tol=self.tol,
                smoothing=self.smoothing, verbose=self.verbose,
                n_threads=n_threads_for(self.n_jobs), name=type(self).__name__,
                callback=_count_from(self.callback, n_iter))
            n_iter += it
            n_passes += 1
            all_converged = all_converged and converged
            if self.verbose:
                print(f"[{type(self).__name__}] Training took {info['time']:8.2f}s "
                      f"({info['n_evals']} evaluations, {info['n_searches']} "
                      f"impostor searches).")
        if not all_converged:
            warnings.warn(f"[{type(self).__name__}] LMNN did not converge in "
                          f"max_iter={self.max_iter} iterations.", ConvergenceWarning)
        if self.verbose and self.n_passes > 1:
            print(f"[{type(self).__name__}] {n_passes} pass(es) took "
                  f"{time.perf_counter() - t_start:8.2f}s.")
        self.components_ = L
        self.n_iter_ = n_iter
        self.n_passes_ = n_passes
        self.target_neighbors_ = targets
        return self


class LMNNEnergyClassifier(ClassifierMixin, BaseEstimator):
    """Energy-based classification with an LMNN metric (Weinberger & Saul, 2009, §4.2
    "Energy-based classification").

    A test point ``x_t`` gets the label ``c`` that minimises the LMNN loss it would
    cause as a training point of class ``c``:

        E(x_t, c) = (1 − μ) Σ_{j ∈ kNN_c(x_t)} d(x_t, x_j)
                    + μ Σ_{j ∈ kNN_c(x_t)} Σ_{l: y_l ≠ c} [1 + d(x_t, x_j) − d(x_t, x_l)]_+
                    + μ Σ_{i: y_i ≠ c} Σ_{j(i)} [1 + d(x_i, x_j) − d(x_i, x_t)]_+

    with squared learned distances ``d``, ``kNN_c(x_t)`` the ``n_neighbors`` nearest
    training points of class ``c`` (its would-be target neighbours), and ``j(i)`` the
    target neighbours of training point ``i`` (the metric learner's
    ``target_neighbors_`` if it has them for these training points, as after a
    multi-pass fit; else its nearest classmates in the input space): the first two
    terms are the pull and push losses of ``x_t``, the third the push loss ``x_t``
    causes as an impostor of training points of other classes. ``μ`` is the push
    weight, ``1 − regularization`` or ``weight_push_loss``, as in :class:`LMNN`.

    Parameters
    ----------
    metric_learner : LMNN or None, default=None
        The metric. None: an ``LMNN(n_neighbors=n_neighbors,
        regularization=regularization, weight_push_loss=weight_push_loss,
        n_jobs=n_jobs)`` is fitted. An estimator is
        cloned and fitted, unless ``prefit=True`` (then it must already be fitted on
        the same training points and is used as is).
    n_neighbors : int, default=3
        Target neighbours per point (for the energy; and for the default LMNN).
    regularization : float in (0, 1), default=0.5
        Weight of the pull term in the energy (and in the default LMNN), as in
        metric-learn's LMNN; the push terms have weight ``1 − regularization``.
    prefit : bool, default=False
    n_jobs : int, default=None
        Threads for the energies (and the default LMNN), as in scikit-learn: None
        means 1 unless in a :func:`joblib.parallel_config` context, −1 means all
        cores.
    weight_push_loss : float in (0, 1] or None, default=None
        The push weight under pylmnn's name; see :class:`LMNN`.

    Attributes
    ----------
    metric_learner_ : the fitted metric learner
    classes_ : ndarray of shape (n_classes,)
    n_features_in_ : int

    Notes
    -----
    There is no ``predict_proba``: the energies are sums of hinge losses whose scale
    depends on the data set, so a softmax of ``−E`` is not a calibrated probability.
    :meth:`energy` returns the energies themselves.

    References
    ----------
    K. Q. Weinberger and L. K. Saul, "Distance Metric Learning for Large Margin
    Nearest Neighbor Classification", JMLR 10 (2009), 207–244 (energy-based
    classification).

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import LMNN, LMNNEnergyClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = LMNNEnergyClassifier(LMNN(max_iter=200)).fit(X, y)
    >>> clf.energy(X[:2]).shape
    (2, 3)
    >>> clf.predict(X[[0, 50, 100]]).tolist()
    [0, 1, 2]
    """

    _parameter_constraints = {
        "metric_learner": [HasMethods(["fit"]), None],
        "n_neighbors": [IntAtLeast(1)],
        "regularization": [Interval(Real, 0, 1, closed="neither")],
        "prefit": ["boolean"],
        "n_jobs": N_JOBS,
        "weight_push_loss": [Interval(Real, 0, 1, closed="right"), None],
    }

    def __init__(self, metric_learner=None, n_neighbors=3, regularization=0.5,
                 prefit=False, n_jobs=None, weight_push_loss=None):
        self.metric_learner = metric_learner
        self.n_neighbors = n_neighbors
        self.regularization = regularization
        self.prefit = prefit
        self.n_jobs = n_jobs
        self.weight_push_loss = weight_push_loss

    # (the metric learner's own parameters are validated by its own fit)
    @_fit_context(prefer_skip_nested_validation=False)
    @fit_threads
    def fit(self, X, y):
        """Fit (or take) the metric and store the transformed training set.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : array-like of shape (n_samples,)

        Returns
        -------
        self
        """
        X, y_enc, targets, G, mu = _start_metric(self, X, y)
        self._training_side = prepare_energy(X @ G.T, y_enc, targets,
                                             self.classes_.shape[0])
        self._components = G
        self._mu = float(mu)
        self._k = self.n_neighbors
        return self

    @dask_rows("classes")
    def energy(self, X):
        """Energies ``E(x, c)`` of every point for every class.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        E : ndarray or dask.array.Array of shape (n_samples, n_classes)
            Columns follow ``classes_``. For a dask ``X``, a dask array with its row
            chunks, each block computed (when the caller computes it) as an
            in-memory ``X``.
        """
        check_is_fitted(self, "classes_")
        X = check_points(self, X, reset=False)
        return lmnn_energy(self._training_side, X @ self._components.T, self._k,
                           self._mu, n_threads=n_threads_for(self.n_jobs))

    @dask_rows(None)
    def predict(self, X):
        """Label of minimal energy for every point.

        Parameters
        ----------
        X : array-like or dask.array.Array of shape (n_samples, n_features)

        Returns
        -------
        y : ndarray or dask.array.Array of shape (n_samples,)
            A dask array with ``X``'s row chunks for a dask ``X`` (lazily).
        """
        E = self.energy(X)
        return self.classes_[np.argmin(E, axis=1)]


def _start_metric(estimator, X, y, any_targets=False, **defaults):
    """The start of a classifier built on LMNN (``metric_learner``, ``prefit``,
    ``n_neighbors``, ``regularization``, ``weight_push_loss``, ``n_jobs``): ``X`` and
    ``y`` checked, then the metric: the learner fitted (a clone), taken as it is
    (``prefit``), or, if None, an LMNN with the classifier's parameters (and
    ``defaults``) fitted. Sets ``metric_learner_`` and ``classes_``; returns the
    checked ``X``, the encoded labels, the target neighbours (the learner's own if it
    has them for these points, as after a multi-pass fit: not searched twice; with
    ``any_targets``, whatever their number, else only ``n_neighbors`` of them), the
    learner's ``components_`` and the push weight ``μ``."""
    k, mu = estimator.n_neighbors, _push_weight(estimator)
    require_y(estimator, y)
    X, y = check_points(estimator, X, y, classification=True, ensure_min_samples=2)
    if estimator.metric_learner is None:
        learner = LMNN(n_neighbors=k, regularization=estimator.regularization,
                       weight_push_loss=estimator.weight_push_loss,
                       n_jobs=estimator.n_jobs, **defaults)
        learner.fit(X, y)
    elif estimator.prefit:
        check_is_fitted(estimator.metric_learner, "components_")
        learner = estimator.metric_learner
    else:
        learner = clone(estimator.metric_learner).fit(X, y)
    estimator.metric_learner_ = learner
    learned_targets = getattr(learner, "target_neighbors_", None)
    shape = np.shape(learned_targets)
    if len(shape) != 2 or shape[0] != X.shape[0] or not (any_targets or shape[1] == k):
        learned_targets = None
    estimator.classes_, y_enc, targets = _prepare_targets(estimator, X, y, k,
                                                          learned_targets)
    G = np.asarray(learner.components_, dtype=np.float64)
    if G.shape[1] != X.shape[1]:
        raise ValueError(f"metric_learner has {G.shape[1]} features; X has "
                         f"{X.shape[1]}.")
    return X, y_enc, targets, G, mu
