"""N-way K-shot episodes: sampling and evaluation (few-shot classification).

An *episode* draws ``n_way`` classes, and from each ``n_shot`` labelled *support*
points and ``n_query`` *query* points (disjoint); a classifier fitted on the support
labels the queries. Few-shot results are the mean accuracy over many episodes with
its 95% confidence interval (Vinyals et al., NeurIPS 2016; Snell et al., NeurIPS
2017), on classes disjoint from those a metric was learned on.
"""

import numpy as np
from sklearn.base import clone
from sklearn.utils import check_random_state


class Episodes:
    """Index arrays of sampled episodes (see :func:`sample_episodes`); the
    parameters are kept as attributes of the same names.

    Parameters
    ----------
    support : ndarray of int of shape (n_episodes, n_way * n_shot)
        Indices of the support points, class by class (``n_shot`` per class, classes
        in the order of ``classes``).
    query : ndarray of int of shape (n_episodes, n_way * n_query)
        Indices of the query points, class by class.
    classes : ndarray of shape (n_episodes, n_way)
        The labels of each episode's classes.
    """

    def __init__(self, support, query, classes):
        self.support, self.query, self.classes = support, query, classes

    def __len__(self):
        return self.support.shape[0]


def sample_episodes(y, n_way=5, n_shot=1, n_query=15, n_episodes=600,
                    random_state=None):
    """Sample N-way K-shot episodes from the labels ``y``, deterministically.

    Each episode draws ``n_way`` distinct classes uniformly, and from each class
    ``n_shot + n_query`` distinct points uniformly without replacement: the first
    ``n_shot`` are the support, the others the queries.

    Parameters
    ----------
    y : array-like of shape (n_samples,)
        Class labels.
    n_way : int, default=5
        Classes per episode.
    n_shot : int, default=1
        Support (labelled) points per class.
    n_query : int, default=15
        Query points per class (0: support only, e.g. for prototypes).
    n_episodes : int, default=600
    random_state : int, RandomState or None
        The same seed gives the same episodes.

    Returns
    -------
    episodes : Episodes
        ``support``, ``query`` (indices into ``y``) and ``classes``.

    Raises
    ------
    ValueError
        If a class has fewer than ``n_shot + n_query`` points, or there are fewer
        than ``n_way`` classes.

    Examples
    --------
    >>> import numpy as np
    >>> from mahal.fewshot import sample_episodes
    >>> y = np.repeat([0, 1, 2, 3], 5)
    >>> ep = sample_episodes(y, n_way=3, n_shot=1, n_query=2, n_episodes=4,
    ...                      random_state=0)
    >>> ep.support.shape, ep.query.shape, ep.classes.shape
    ((4, 3), (4, 6), (4, 3))
    >>> bool(np.all(y[ep.support] == ep.classes))
    True
    """
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"y must be 1-D; got shape {y.shape}.")
    for name, value, low in (("n_way", n_way, 1), ("n_shot", n_shot, 1),
                             ("n_query", n_query, 0), ("n_episodes", n_episodes, 1)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) \
                or value < low:
            raise ValueError(f"{name} must be an int ≥ {low}; got {value!r}.")
    classes, y_enc = np.unique(y, return_inverse=True)
    if classes.shape[0] < n_way:
        raise ValueError(f"{n_way}-way episodes need at least {n_way} classes; y has "
                         f"{classes.shape[0]}.")
    counts = np.bincount(y_enc, minlength=classes.shape[0])
    need = n_shot + n_query
    small = classes[counts < need]
    if small.shape[0]:
        raise ValueError(
            f"{n_shot}-shot episodes with {n_query} queries need {need} points per "
            f"class; {small.shape[0]} class(es) have fewer (e.g. class "
            f"{small.tolist()[0]!r} has {counts[np.searchsorted(classes, small[0])]}).")
    members = np.split(np.argsort(y_enc, kind="stable"), np.cumsum(counts)[:-1])
    rng = check_random_state(random_state)
    support = np.empty((n_episodes, n_way, n_shot), dtype=np.int64)
    query = np.empty((n_episodes, n_way, n_query), dtype=np.int64)
    chosen = np.empty((n_episodes, n_way), dtype=np.int64)
    for e in range(n_episodes):
        chosen[e] = rng.choice(classes.shape[0], n_way, replace=False)
        for w, c in enumerate(chosen[e]):
            picked = rng.choice(members[c], need, replace=False)
            support[e, w] = picked[:n_shot]
            query[e, w] = picked[n_shot:]
    return Episodes(support.reshape(n_episodes, -1), query.reshape(n_episodes, -1),
                    classes[chosen])


def evaluate_episodes(classifier, X, y, episodes):
    """Accuracy of ``classifier`` on every episode.

    For each episode a clone of ``classifier`` is fitted on the support points and
    scored on the queries. A clone of an estimator is unfitted, parameters
    included: to evaluate a metric learned beforehand (on base classes), wrap it in
    scikit-learn's :class:`~sklearn.frozen.FrozenEstimator`, e.g.
    ``PrototypeClassifier(metric_learner=FrozenEstimator(learner))``.

    Parameters
    ----------
    classifier : scikit-learn classifier
        E.g. ``PrototypeClassifier()`` or ``KNeighborsClassifier(1)``, possibly
        after a fitted transformer in a pipeline.
    X : array-like of shape (n_samples, n_features)
    y : array-like of shape (n_samples,)
    episodes : Episodes
        From :func:`sample_episodes` on ``y`` (with ``n_query ≥ 1``).

    Returns
    -------
    accuracies : ndarray of shape (n_episodes,)
        Fraction of each episode's queries labelled correctly.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from mahal import PrototypeClassifier
    >>> from mahal.fewshot import confidence_interval, evaluate_episodes
    >>> from mahal.fewshot import sample_episodes
    >>> X, y = load_iris(return_X_y=True)
    >>> ep = sample_episodes(y, n_way=3, n_shot=5, n_query=10, n_episodes=20,
    ...                      random_state=0)
    >>> acc = evaluate_episodes(PrototypeClassifier(), X, y, ep)
    >>> mean, half_width = confidence_interval(acc)
    >>> bool(mean > 0.8)
    True
    """
    X, y = np.asarray(X), np.asarray(y)
    if episodes.query.shape[1] == 0:
        raise ValueError("The episodes have no queries (n_query=0): nothing to score.")
    acc = np.empty(len(episodes))
    for e in range(len(episodes)):
        s, q = episodes.support[e], episodes.query[e]
        clf = clone(classifier).fit(X[s], y[s])
        acc[e] = np.mean(clf.predict(X[q]) == y[q])
    return acc


def confidence_interval(accuracies, level=0.95):
    """Mean of per-episode accuracies and the half-width of its normal-approximation
    confidence interval (``z · std / √n_episodes``, as the few-shot literature
    reports it).

    Parameters
    ----------
    accuracies : array-like of shape (n_episodes,)
    level : float, default=0.95

    Returns
    -------
    mean : float
    half_width : float

    Examples
    --------
    >>> from mahal.fewshot import confidence_interval
    >>> mean, hw = confidence_interval([0.5, 0.7, 0.6, 0.6])
    >>> round(mean, 3), round(hw, 3)
    (0.6, 0.08)
    """
    from scipy.stats import norm

    a = np.asarray(accuracies, dtype=np.float64)
    z = norm.ppf(0.5 + level / 2.0)
    half = z * a.std(ddof=1) / np.sqrt(a.shape[0]) if a.shape[0] > 1 else np.nan
    return float(a.mean()), float(half)
