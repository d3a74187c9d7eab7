"""The Mahalanobis base API, checked on small learners whose metric is known."""

import pickle

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.spatial.distance import mahalanobis
from sklearn.base import BaseEstimator, clone, is_classifier
from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from mahal import Covariance
from mahal.base import (
    MahalanobisDistance,
    MahalanobisMixin,
    PairsClassifierMixin,
    TripletsClassifierMixin,
    initialize_components,
    initialize_metric,
)


class FixedPairs(PairsClassifierMixin, MahalanobisMixin, BaseEstimator):
    """A pair learner whose metric is the covariance metric of the pairs' points."""

    def __init__(self, preprocessor=None):
        self.preprocessor = preprocessor

    def fit(self, pairs, y):
        pairs, y = self._validate_pairs_fit(pairs, y)
        self.components_ = Covariance().fit(pairs.reshape(-1, pairs.shape[2])).components_
        return self.calibrate_threshold(pairs, y)


class FixedTriplets(TripletsClassifierMixin, MahalanobisMixin, BaseEstimator):
    def __init__(self, components=None, preprocessor=None):
        self.components = components
        self.preprocessor = preprocessor

    def fit(self, triplets, y=None):
        triplets = self._validate_triplets_fit(triplets)
        self.components_ = np.asarray(self.components, dtype=float)
        return self


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def cov(iris):
    return Covariance().fit(iris[0])


def test_get_metric_equals_scipy_mahalanobis(iris, cov):
    X = iris[0]
    metric = cov.get_metric()
    VI = cov.get_mahalanobis_matrix()
    for i, j in [(0, 1), (3, 140), (50, 99), (7, 7)]:
        assert metric(X[i], X[j]) == pytest.approx(mahalanobis(X[i], X[j], VI), abs=1e-12)
        assert metric(X[i], X[j], squared=True) == pytest.approx(
            mahalanobis(X[i], X[j], VI) ** 2, abs=1e-12)


def test_mahalanobis_matrix_is_gtg(cov):
    G = cov.components_
    np.testing.assert_allclose(cov.get_mahalanobis_matrix(), G.T @ G)


def test_transform_and_pair_distance_agree_with_metric(iris, cov):
    X = iris[0]
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(X), size=(30, 2))
    pairs = X[idx]
    metric = cov.get_metric()
    naive = np.array([metric(a, b) for a, b in pairs])
    np.testing.assert_allclose(cov.pair_distance(pairs), naive, rtol=1e-12)
    np.testing.assert_allclose(cov.pair_score(pairs), -naive, rtol=1e-12)
    Z = cov.transform(X)
    np.testing.assert_allclose(np.linalg.norm(Z[idx[:, 0]] - Z[idx[:, 1]], axis=1), naive,
                               rtol=1e-10)


def test_knn_with_learned_metric_equals_euclidean_knn_on_transform(iris, cov):
    X, y = iris
    rng = np.random.default_rng(1)
    test = rng.choice(len(X), 40, replace=False)
    train = np.setdiff1d(np.arange(len(X)), test)
    knn_metric = KNeighborsClassifier(n_neighbors=3, metric=cov.get_metric(),
                                      algorithm="brute").fit(X[train], y[train])
    Z = cov.transform(X)
    knn_euclid = KNeighborsClassifier(n_neighbors=3).fit(Z[train], y[train])
    np.testing.assert_array_equal(knn_metric.predict(X[test]), knn_euclid.predict(Z[test]))
    # Same neighbour distances, not just the same votes (iris has exact ties, so
    # indices may come in another order).
    np.testing.assert_allclose(knn_metric.kneighbors(X[test])[0],
                               knn_euclid.kneighbors(Z[test])[0], rtol=1e-10)


@settings(max_examples=40, deadline=None)
@given(
    G=arrays(np.float64, (3, 4), elements=st.floats(-3, 3)),
    P=arrays(np.float64, (3, 4), elements=st.floats(-10, 10)),
)
def test_pseudo_metric_axioms(G, P):
    d = MahalanobisDistance(G)
    x, y, z = P
    scale = 1e-9 * (1 + np.abs(G).max() * np.abs(P).max())
    assert d(x, x) == 0.0
    assert d(x, y) >= 0.0
    assert d(x, y) == pytest.approx(d(y, x), abs=scale)
    assert d(x, z) <= d(x, y) + d(y, z) + scale


def test_metric_and_estimator_pickle_and_clone(iris, cov):
    X = iris[0]
    metric = pickle.loads(pickle.dumps(cov.get_metric()))
    assert metric(X[0], X[5]) == cov.get_metric()(X[0], X[5])
    cov2 = pickle.loads(pickle.dumps(cov))
    np.testing.assert_array_equal(cov2.transform(X), cov.transform(X))
    fresh = clone(cov)
    assert not hasattr(fresh, "components_")
    assert fresh.get_params() == cov.get_params()


def test_get_feature_names_out(cov):
    assert list(cov.get_feature_names_out()) == [f"covariance{i}" for i in range(4)]


def test_preprocessor_array_and_callable(iris):
    X = iris[0]
    full = Covariance().fit(X)
    by_index = Covariance(preprocessor=X).fit(np.arange(len(X)))
    np.testing.assert_allclose(by_index.components_, full.components_)
    idx = np.array([[0, 1], [5, 80], [149, 3]])
    np.testing.assert_allclose(by_index.pair_distance(idx), full.pair_distance(X[idx]))
    by_call = Covariance(preprocessor=lambda ids: X[ids]).fit(np.arange(len(X)))
    np.testing.assert_allclose(by_call.pair_distance(idx), full.pair_distance(X[idx]))
    with pytest.raises(ValueError, match="outside"):
        by_index.pair_distance(np.array([[0, 150]]))


# --- pair classifier API ------------------------------------------------------------


@pytest.fixture(scope="module")
def pair_data(iris):
    X, y = iris
    rng = np.random.default_rng(2)
    idx = rng.integers(0, len(X), size=(200, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    labels = np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)
    return X[idx], labels


def test_pairs_learner_is_a_classifier(pair_data):
    pairs, y = pair_data
    est = FixedPairs()
    assert is_classifier(est)
    scores = cross_val_score(est, pairs, y, scoring="roc_auc", cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.5)


def test_pairs_predict_decision_score(pair_data):
    pairs, y = pair_data
    est = FixedPairs().fit(pairs, y)
    dist = est.pair_distance(pairs)
    np.testing.assert_allclose(est.decision_function(pairs), est.threshold_ - dist)
    np.testing.assert_array_equal(est.predict(pairs), np.where(dist <= est.threshold_, 1, -1))
    assert est.score(pairs, y) == pytest.approx(roc_auc_score(y, -dist))
    np.testing.assert_array_equal(est.classes_, [-1, 1])
    est.set_threshold(0.0)
    assert np.all(est.predict(pairs) == -1)
    with pytest.raises(ValueError, match="threshold"):
        est.set_threshold(np.nan)


def _brute_force_best(dist, y, strategy, min_rate=None, beta=1.0):
    """Best value of the strategy's criterion over every threshold (naive loop)."""
    cands = np.concatenate(([dist.min() - 1], np.unique(dist), [dist.max() + 1]))
    best = -np.inf
    for t in cands:
        pred = np.where(dist <= t, 1, -1)
        tp = np.sum((pred == 1) & (y == 1))
        fp = np.sum((pred == 1) & (y == -1))
        tn = np.sum((pred == -1) & (y == -1))
        fn = np.sum((pred == -1) & (y == 1))
        tpr, tnr = tp / max(tp + fn, 1), tn / max(tn + fp, 1)
        if strategy == "accuracy":
            val = (tp + tn) / len(y)
        elif strategy == "f_beta":
            den = (1 + beta**2) * tp + beta**2 * fn + fp
            val = (1 + beta**2) * tp / den if den else 0.0
        elif strategy == "max_tpr":
            val = tpr if tnr >= min_rate else -np.inf
        else:
            val = tnr if tpr >= min_rate else -np.inf
        best = max(best, val)
    return best


@pytest.mark.parametrize("strategy, min_rate, beta", [
    ("accuracy", None, 1.0), ("f_beta", None, 1.0), ("f_beta", None, 0.3),
    ("max_tpr", 0.8, 1.0), ("max_tnr", 0.9, 1.0),
])
def test_calibrate_threshold_matches_brute_force(pair_data, strategy, min_rate, beta):
    pairs, y = pair_data
    est = FixedPairs().fit(pairs, y)
    est.calibrate_threshold(pairs, y, strategy=strategy, min_rate=min_rate, beta=beta)
    dist = est.pair_distance(pairs)
    pred = est.predict(pairs)
    tp = np.sum((pred == 1) & (y == 1))
    fp = np.sum((pred == 1) & (y == -1))
    tn = np.sum((pred == -1) & (y == -1))
    fn = np.sum((pred == -1) & (y == 1))
    got = {
        "accuracy": (tp + tn) / len(y),
        "f_beta": (1 + beta**2) * tp / max((1 + beta**2) * tp + beta**2 * fn + fp, 1),
        "max_tpr": tp / (tp + fn), "max_tnr": tn / (tn + fp),
    }[strategy]
    assert got == pytest.approx(_brute_force_best(dist, y, strategy, min_rate, beta))
    if strategy == "max_tpr":
        assert tn / (tn + fp) >= min_rate
    if strategy == "max_tnr":
        assert tp / (tp + fn) >= min_rate


def test_calibrate_threshold_errors(pair_data):
    pairs, y = pair_data
    est = FixedPairs().fit(pairs, y)
    with pytest.raises(ValueError, match="strategy must be one of"):
        est.calibrate_threshold(pairs, y, strategy="best")
    with pytest.raises(ValueError, match="min_rate"):
        est.calibrate_threshold(pairs, y, strategy="max_tpr")
    with pytest.raises(ValueError, match="beta"):
        est.calibrate_threshold(pairs, y, strategy="f_beta", beta=None)


def test_pairs_with_preprocessor(iris):
    X, y = iris
    idx = np.array([[0, 1], [0, 60], [51, 52], [100, 20], [120, 130], [3, 149]])
    labels = np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)
    a = FixedPairs(preprocessor=X).fit(idx, labels)
    b = FixedPairs().fit(X[idx], labels)
    np.testing.assert_allclose(a.decision_function(idx), b.decision_function(X[idx]))


# --- triplet classifier API ---------------------------------------------------------


def test_triplets_api():
    rng = np.random.default_rng(3)
    G = rng.standard_normal((2, 3))
    T = rng.standard_normal((50, 3, 3))
    est = FixedTriplets(components=G).fit(T)
    naive = np.array([np.linalg.norm(G @ (a - f)) - np.linalg.norm(G @ (a - c))
                      for a, c, f in T])
    np.testing.assert_allclose(est.decision_function(T), naive)
    np.testing.assert_array_equal(est.predict(T), np.where(naive > 0, 1, -1))
    assert est.score(T) == pytest.approx(np.mean(naive > 0))
    # Swapping closer and farther flips every decision.
    np.testing.assert_allclose(est.decision_function(T[:, [0, 2, 1]]), -naive)
    with pytest.raises(ValueError, match="3 points per tuple"):
        est.decision_function(T[:, :2])


# --- initialisation helpers ---------------------------------------------------------


def test_initialize_components(iris):
    X, y = iris
    np.testing.assert_array_equal(initialize_components(2, X, y, "identity"), np.eye(2, 4))
    np.testing.assert_allclose(initialize_components(3, X, y, "pca"),
                               PCA(3, svd_solver="full").fit(X).components_)
    lda = LinearDiscriminantAnalysis(n_components=2).fit(X, y)
    np.testing.assert_allclose(initialize_components(2, X, y, "lda"), lda.scalings_[:, :2].T)
    # 'auto': lda when n_components <= n_classes - 1, pca below n_features, else identity
    np.testing.assert_allclose(initialize_components(2, X, y, "auto"), lda.scalings_[:, :2].T)
    np.testing.assert_allclose(initialize_components(3, X, y, "auto"),
                               PCA(3, svd_solver="full").fit(X).components_)
    np.testing.assert_array_equal(initialize_components(4, X, y, "auto"), np.eye(4))
    r1 = initialize_components(2, X, y, "random", random_state=0)
    np.testing.assert_array_equal(r1, initialize_components(2, X, y, "random", 0))
    assert not np.array_equal(r1, initialize_components(2, X, y, "random", 1))
    with pytest.raises(ValueError, match="init array must have shape"):
        initialize_components(2, X, y, np.eye(3))
    with pytest.raises(ValueError, match="init must be one of"):
        initialize_components(2, X, y, "svd")
    with pytest.raises(ValueError, match="lda"):
        initialize_components(3, X, y, "lda")


def test_initialize_metric(iris):
    X = iris[0]
    from scipy.linalg import pinvh

    np.testing.assert_array_equal(initialize_metric(X, "identity"), np.eye(4))
    np.testing.assert_allclose(initialize_metric(X, "covariance"), pinvh(np.cov(X.T)))
    A = initialize_metric(X, "random", random_state=0)
    np.testing.assert_array_equal(A, initialize_metric(X, "random", random_state=0))
    assert np.linalg.eigvalsh(A).min() > 0
    with pytest.raises(ValueError, match="positive semi-definite"):
        initialize_metric(X, np.diag([1.0, 1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="shape"):
        initialize_metric(X, np.eye(3))
    with pytest.raises(ValueError, match="init must be one of"):
        initialize_metric(X, "pca")


class FixedComponents(MahalanobisMixin, BaseEstimator):
    """A learner whose components are given (to test the metric API alone)."""

    def __init__(self, components=None):
        self.components = components

    def fit(self, X, y=None):
        self.n_features_in_ = np.asarray(X).shape[1]
        self.components_ = np.asarray(self.components, dtype=float)
        return self


@pytest.mark.parametrize("rank", [10, 64])
def test_get_metric_kwargs_gives_the_learned_distances(rank):
    """scikit-learn's compiled 'mahalanobis' with get_metric_kwargs() finds the same
    neighbours at the same distances as Euclidean neighbours after transform, also
    for a rank-deficient metric, where VI = A gives NaN for pairs that differ along
    its null space (and those points are never returned as neighbours)."""
    from sklearn.metrics import DistanceMetric
    from sklearn.neighbors import NearestNeighbors

    rng = np.random.default_rng(0)
    G = rng.normal(size=(rank, 64))
    X = rng.normal(size=(300, 64))
    N = np.linalg.svd(G)[2][rank:]               # null space of A = GᵀG
    Y = X + rng.normal(size=(300, 64 - rank)) @ N if rank < 64 else X + 1e-3
    learner = FixedComponents(G).fit(X)
    kwargs = learner.get_metric_kwargs()
    assert kwargs["metric"] == "mahalanobis"
    D = DistanceMetric.get_metric("mahalanobis", **kwargs["metric_params"]).pairwise(X, Y)
    ref = np.linalg.norm((X @ G.T)[:, None] - (Y @ G.T)[None], axis=2)
    assert np.all(np.isfinite(D))
    scale = np.sqrt(np.linalg.norm(G.T @ G)) * np.abs(X - Y).max()
    np.testing.assert_allclose(D, ref, atol=1e-6 * scale)
    nn = NearestNeighbors(n_neighbors=3, **kwargs).fit(X)
    dist, ind = nn.kneighbors(Y)
    ref_dist, _ = NearestNeighbors(n_neighbors=3).fit(X @ G.T).kneighbors(Y @ G.T)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-6 * scale)
    if rank < 64:   # each Y[i] is X[i] moved along the null space: distance 0
        np.testing.assert_array_equal(ind[:, 0], np.arange(300))
