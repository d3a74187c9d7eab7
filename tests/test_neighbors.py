"""MetricKNeighborsClassifier on NumPy data, and its tiled search (mahal._nearest):
against scikit-learn's KNeighborsClassifier on the transformed points and against a
naive loop over the definition. (Dask arrays: test_dask_predict.py.)"""

import pickle
import warnings

import numpy as np
import pytest
from _fresh_process import fresh_output
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.frozen import FrozenEstimator
from sklearn.neighbors import KNeighborsClassifier
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import NCA, MetricKNeighborsClassifier
from mahal._nearest import block_nearest, merge_neighbors, nearest_references, vote

# (short fits, compared all the same)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")


def _naive_neighbors(Q, R, labels, k):
    """The definition: per query, every reference sorted by (squared distance,
    index), the first k."""
    dist, index = [], []
    for q in Q:
        d = np.sum((R - q) ** 2, axis=1)
        order = np.lexsort((np.arange(R.shape[0]), d))[:k]
        dist.append(d[order])
        index.append(order)
    index = np.array(index)
    return np.array(dist), index, labels[index]


def _grid(n, d, seed, radius=2):
    """Points on a small integer grid: many references at exactly equal distances
    (every distance is exact in floating point)."""
    return np.random.default_rng(seed).integers(-radius, radius + 1,
                                                size=(n, d)).astype(float)


@pytest.mark.parametrize("k", [1, 4, 7])
def test_tiles_and_their_merge_equal_the_naive_neighbours(k):
    # exact ties everywhere (a grid); the references split into consecutive pieces
    # of random sizes (some smaller than k), each piece's list by block_nearest,
    # merged in random groups of consecutive lists, as dask's tree merges them
    rng = np.random.default_rng(k)
    Q, R = _grid(30, 2, 1), _grid(90, 2, 2)
    labels = rng.integers(0, 3, 90)
    expected = _naive_neighbors(Q, R, labels, k)
    for _ in range(5):
        cuts = np.sort(rng.choice(np.arange(1, 90), size=6, replace=False))
        lists = [nearest_references(Q, R[a:b], labels[a:b], k, offset=a)
                 for a, b in zip(np.r_[0, cuts], np.r_[cuts, 90])]
        while len(lists) > 1:
            g = int(rng.integers(2, 4))
            lists = [merge_neighbors(lists[i:i + g], k) for i in range(0, len(lists), g)]
        for got, want in zip(lists[0], expected):
            np.testing.assert_array_equal(got, want)


def test_block_nearest_keeps_the_lowest_positions_among_ties():
    rng = np.random.default_rng(0)
    D = rng.integers(0, 4, size=(200, 40)).astype(float)  # ties at every k-th value
    for k in (1, 3, 10, 40, 50):
        want = np.argsort(D, axis=1, kind="stable")[:, :k]
        np.testing.assert_array_equal(block_nearest(D, k), want)


def test_a_search_in_several_tiles_equals_the_naive_loop():
    # more references and queries than one tile holds (mahal._nearest's
    # _TILE_COLUMNS, _TILE_ELEMS), so the in-memory search merges the lists of
    # several tiles for several blocks of queries
    rng = np.random.default_rng(3)
    R = np.round(4 * rng.normal(size=(9000, 2))) / 4  # (quarters: exact ties)
    Q = np.round(4 * rng.normal(size=(300, 2))) / 4
    labels = rng.integers(0, 4, 9000)
    got = nearest_references(Q, R, labels, 5)
    want = _naive_neighbors(Q, R, labels, 5)
    for got_part, want_part in zip(got, want):
        np.testing.assert_array_equal(got_part, want_part)


def _data(n=300, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, d)) + 1.0 * np.eye(3, d)[y], y


@pytest.mark.parametrize("k", [1, 2, 4, 5])
def test_equals_sklearn_knn_on_the_transformed_points(k):
    # continuous data: no two references at exactly the same distance; even k gives
    # many equal votes (the first class wins in both)
    X, y = _data()
    Xq, _ = _data(n=200, seed=1)
    nca = NCA(n_components=3, max_iter=30, random_state=0).fit(X, y)
    clf = MetricKNeighborsClassifier(nca, n_neighbors=k, prefit=True).fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=k).fit(nca.transform(X), y)
    Zq = nca.transform(Xq)
    assert clf.metric_learner_ is nca
    np.testing.assert_array_equal(clf.predict(Xq), ref.predict(Zq))
    np.testing.assert_array_equal(clf.predict_proba(Xq), ref.predict_proba(Zq))
    dist, ind = clf.kneighbors(Xq)
    ref_dist, ref_ind = ref.kneighbors(Zq)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-6)
    np.testing.assert_array_equal(clf.kneighbors(Xq, return_distance=False), ind)
    if k % 2 == 0:  # (the vote ties were there to be broken)
        proba = clf.predict_proba(Xq)
        assert np.any(np.sum(proba == proba.max(axis=1, keepdims=True), axis=1) > 1)


def test_exact_ties_keep_the_lower_index_and_vote_as_sklearn():
    # a grid and integer components: distances exact, ties everywhere. The
    # neighbours are the naive loop's (lower index first among equal distances);
    # scikit-learn's are at the same distances, and where no tie straddles the k-th
    # neighbour, its neighbours, votes and labels are ours
    X, Xq = _grid(400, 3, 4, radius=8), _grid(150, 3, 5, radius=8)
    y = np.random.default_rng(6).integers(0, 3, 400)
    learner = NCA(max_iter=1).fit(X, y)
    learner.components_ = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
    clf = MetricKNeighborsClassifier(learner, n_neighbors=5, prefit=True).fit(X, y)
    Z, Zq = learner.transform(X), learner.transform(Xq)
    dist, ind = clf.kneighbors(Xq)
    want = _naive_neighbors(Zq, Z, y, 5)
    np.testing.assert_array_equal(ind, want[1])
    ref = KNeighborsClassifier(n_neighbors=5).fit(Z, y)
    ref_dist, ref_ind = ref.kneighbors(Zq)
    np.testing.assert_array_equal(dist, ref_dist)
    all_dist = ((Zq[:, None, :] - Z[None]) ** 2).sum(axis=2)
    kth = dist[:, -1:] ** 2
    clear = (all_dist <= kth).sum(axis=1) == 5  # no tie at the k-th distance
    assert 10 < clear.sum() < clear.size
    np.testing.assert_array_equal(np.sort(ind[clear]), np.sort(ref_ind[clear]))
    np.testing.assert_array_equal(clf.predict(Xq)[clear], ref.predict(Zq)[clear])
    np.testing.assert_array_equal(clf.predict_proba(Xq), vote(want, 3))


def test_default_learner_string_labels_and_frozen_estimator():
    X, y = _data(n=150, seed=2)
    labels = np.array(["b", "a", "c"])[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MetricKNeighborsClassifier(n_neighbors=3).fit(X, labels)
    assert type(clf.metric_learner_).__name__ == "LMNN"
    assert clf.metric_learner_.n_neighbors == 3
    ref = KNeighborsClassifier(3).fit(clf.metric_learner_.transform(X), labels)
    np.testing.assert_array_equal(clf.predict(X),
                                  ref.predict(clf.metric_learner_.transform(X)))
    np.testing.assert_array_equal(clf.classes_, ["a", "b", "c"])
    # a frozen learner survives clone (cross-validation) unfitted-free
    nca = NCA(n_components=2, max_iter=10).fit(X, y)
    frozen = MetricKNeighborsClassifier(FrozenEstimator(nca))
    again = clone(frozen).fit(X[:100], y[:100])
    np.testing.assert_array_equal(again.metric_learner_.transform(X), nca.transform(X))
    restored = pickle.loads(pickle.dumps(again))
    np.testing.assert_array_equal(restored.predict(X), again.predict(X))


def test_bad_input():
    X, y = _data(n=40)
    nca = NCA(max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="Expected n_neighbors <= n_samples_fit"):
        MetricKNeighborsClassifier(nca, n_neighbors=41, prefit=True).fit(X, y)
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        MetricKNeighborsClassifier(nca, prefit=True).fit(X, np.zeros(40))
    with pytest.raises(ValueError, match="n_neighbors"):
        MetricKNeighborsClassifier(n_neighbors=0).fit(X, y)
    clf = MetricKNeighborsClassifier(nca, prefit=True).fit(X, y)
    with pytest.raises(ValueError, match="expecting 4 features"):
        clf.predict(X[:, :3])
    Xq = X.copy()
    Xq[3, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        clf.predict(Xq)
    with pytest.raises(ValueError, match="not fitted"):
        MetricKNeighborsClassifier(nca, prefit=True).predict(X)


def test_numpy_use_does_not_import_dask():
    code = ("import sys, numpy as np\n"
            "from mahal import (NCA, LMNN, LMNNEnergyClassifier, PrototypeClassifier,\n"
            "                   MetricKNeighborsClassifier)\n"
            "X = np.random.default_rng(0).normal(size=(60, 3)); y = np.arange(60) % 2\n"
            "nca = NCA(max_iter=5).fit(X, y)\n"
            "MetricKNeighborsClassifier(nca, prefit=True).fit(X, y).predict_proba(X)\n"
            "PrototypeClassifier(metric_learner=nca, prefit=True).fit(X, y).predict_proba(X)\n"
            "LMNNEnergyClassifier(LMNN(max_iter=5)).fit(X, y).predict(X)\n"
            "print(any(k.split('.')[0] in ('dask', 'distributed') for k in sys.modules))")
    assert fresh_output(code).strip() == "False"


@parametrize_with_checks([MetricKNeighborsClassifier(),
                          MetricKNeighborsClassifier(NCA(max_iter=20), n_neighbors=1)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, ConvergenceWarning))
        check(estimator)


def test_kneighbors_takes_n_neighbors_second_as_sklearn():
    # scikit-learn's kneighbors(X, n_neighbors, return_distance): the second
    # positional argument is the number of neighbours, not return_distance
    X, y = _data()
    Xq, _ = _data(n=50, seed=1)
    nca = NCA(n_components=3, max_iter=30, random_state=0).fit(X, y)
    clf = MetricKNeighborsClassifier(nca, n_neighbors=3, prefit=True).fit(X, y)
    ref = KNeighborsClassifier(n_neighbors=3).fit(nca.transform(X), y)
    Zq = nca.transform(Xq)
    dist, ind = clf.kneighbors(Xq, 6)
    ref_dist, ref_ind = ref.kneighbors(Zq, 6)
    assert ind.shape == (50, 6)
    np.testing.assert_array_equal(ind, ref_ind)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-10, atol=1e-6)
    np.testing.assert_array_equal(clf.kneighbors(Xq, 6, False), ref_ind)
    with pytest.raises(ValueError, match="n_neighbors <= n_samples_fit"):
        clf.kneighbors(Xq, X.shape[0] + 1)
    with pytest.raises(ValueError, match="n_neighbors > 0"):
        clf.kneighbors(Xq, 0)
