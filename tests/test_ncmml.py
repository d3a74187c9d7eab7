"""Tests of NCMML (Mensink et al., 2013) against naive loops, finite differences and
scipy's L-BFGS-B."""

import pickle

import numpy as np
import pytest
from scipy.optimize import minimize
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import ConvergenceWarning
from sklearn.preprocessing import StandardScaler
from sklearn.utils import check_random_state
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import NCMML
from mahal._ncmml_solver import NCMMLLine, ncmml_loss_grad
from mahal.fewshot import sample_episodes


def naive_loss(L, X, centroids, centroid_class, y):
    """−mean_i log Σ_{k own} p_ik, one point and one centroid at a time."""
    total = 0.0
    for i in range(X.shape[0]):
        d = np.array([0.5 * np.sum((L @ (X[i] - c)) ** 2) for c in centroids])
        total -= logsumexp(-d[centroid_class == y[i]]) - logsumexp(-d)
    return total / X.shape[0]


def naive_episodic_loss(L, Xq, protos, yq):
    """The mean over episodes and their queries of the prototypical loss."""
    n_way = protos.shape[1]
    losses = [naive_loss(L, Xq[e], protos[e], np.arange(n_way), yq[e]) * Xq.shape[1]
              for e in range(Xq.shape[0])]
    return sum(losses) / (Xq.shape[0] * Xq.shape[1])


def central_differences(fun, L, eps=1e-6):
    g = np.zeros_like(L)
    for idx in np.ndindex(*L.shape):
        E = np.zeros_like(L)
        E[idx] = eps
        g[idx] = (fun(L + E) - fun(L - E)) / (2 * eps)
    return g


@pytest.fixture
def small():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5))
    y = rng.integers(0, 3, 40)
    return X, y


@pytest.mark.parametrize("n_centroids", [1, 2])
@pytest.mark.parametrize("seed", [0, 1])
def test_batch_loss_and_gradient(small, n_centroids, seed):
    X, y = small
    rng = np.random.default_rng(seed)
    centroids = rng.normal(size=(3 * n_centroids, 5))
    owner = np.repeat(np.arange(3), n_centroids)
    L = rng.normal(size=(3, 5))
    f, g = ncmml_loss_grad(L, X, centroids, owner, y)
    assert f == pytest.approx(naive_loss(L, X, centroids, owner, y), rel=1e-12)
    fd = central_differences(lambda M: naive_loss(M, X, centroids, owner, y), L)
    np.testing.assert_allclose(g, fd, atol=1e-7)


def test_episodic_loss_and_gradient():
    rng = np.random.default_rng(3)
    E, n_way, n_query, d = 4, 3, 5, 6
    Xq = rng.normal(size=(E, n_way * n_query, d))
    protos = rng.normal(size=(E, n_way, d))
    yq = np.tile(np.repeat(np.arange(n_way), n_query), (E, 1))
    cc = np.tile(np.arange(n_way), (E, 1))
    L = rng.normal(size=(2, d))
    f, g = ncmml_loss_grad(L, Xq, protos, cc, yq)
    assert f == pytest.approx(naive_episodic_loss(L, Xq, protos, yq), rel=1e-12)
    fd = central_differences(lambda M: naive_episodic_loss(M, Xq, protos, yq), L)
    np.testing.assert_allclose(g, fd, atol=1e-7)


def test_loss_survives_far_points(small):
    # every distance ~1e4: p underflows without the log-sum-exp shift
    X, y = small
    centroids = np.random.default_rng(1).normal(size=(3, 5))
    L = 60.0 * np.eye(5)
    f, g = ncmml_loss_grad(L, X, centroids, np.arange(3), y)
    assert np.isfinite(f) and np.all(np.isfinite(g))
    assert f == pytest.approx(naive_loss(L, X, centroids, np.arange(3), y), rel=1e-9)


def test_line_oracle_matches_loss(small):
    X, y = small
    rng = np.random.default_rng(2)
    centroids, owner = rng.normal(size=(6, 5)), np.repeat(np.arange(3), 2)
    L, P = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    line = NCMMLLine(X, centroids, owner, y, L.shape)
    f0, g0 = line.start(L.ravel())
    np.testing.assert_allclose(g0, ncmml_loss_grad(L, X, centroids, owner, y)[1].ravel())
    line.set_direction(P.ravel())
    for alpha in (0.0, 0.1, 0.7):
        f, dphi = line.trial(alpha)
        f_ref, g_ref = ncmml_loss_grad(L + alpha * P, X, centroids, owner, y)
        assert f == pytest.approx(f_ref, rel=1e-12)
        assert dphi == pytest.approx(np.sum(g_ref * P), rel=1e-9, abs=1e-12)
    f, g = line.accept(0.7)
    np.testing.assert_allclose(
        g, ncmml_loss_grad(L + 0.7 * P, X, centroids, owner, y)[1].ravel(), atol=1e-12)


def _iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def test_fit_reaches_scipys_optimum():
    X, y = _iris()
    est = NCMML(n_components=2, init="pca", tol=1e-10, max_iter=2000).fit(X, y)
    means = np.array([X[y == c].mean(axis=0) for c in range(3)])
    # scipy's L-BFGS-B on the same objective from the same start
    from mahal.base import initialize_components
    L0 = initialize_components(2, X, y, "pca")
    res = minimize(lambda v: ncmml_loss_grad(v.reshape(2, 4), X, means, np.arange(3), y),
                   L0.ravel(), jac=True, method="L-BFGS-B",
                   options={"ftol": 1e-14, "gtol": 1e-10, "maxiter": 5000})
    assert est.loss_ <= res.fun + 1e-6
    assert est.loss_ == pytest.approx(naive_loss(est.components_, X, means,
                                                 np.arange(3), y), rel=1e-10)
    np.testing.assert_allclose(est.centroids_, means)
    # a stationary point
    g = ncmml_loss_grad(est.components_, X, means, np.arange(3), y)[1]
    assert np.abs(g).max() < 1e-4


def test_ncmc_centroids_are_per_class_kmeans():
    X, y = _iris()
    est = NCMML(n_centroids=3, random_state=0, max_iter=50).fit(X, y)
    assert est.centroids_.shape == (9, 4)
    np.testing.assert_array_equal(est.centroid_classes_, np.repeat([0, 1, 2], 3))
    for c in range(3):
        own = est.centroids_[est.centroid_classes_ == c]
        # each k-means centroid is the mean of the class points nearest to it
        Xc = X[y == c]
        nearest = np.argmin(((Xc[:, None] - own[None]) ** 2).sum(-1), axis=1)
        for j in range(3):
            np.testing.assert_allclose(own[j], Xc[nearest == j].mean(axis=0), atol=1e-8)
    assert est.loss_ == pytest.approx(naive_loss(
        est.components_, X, est.centroids_, est.centroid_classes_, y), rel=1e-10)


def test_episodic_optimises_the_episodes_loss():
    X, y = load_wine(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kw = dict(n_way=2, n_shot=3, n_query=4, n_episodes=30)
    est = NCMML(episodic=True, init="identity", random_state=7, max_iter=30,
                **kw).fit(X, y)
    # the same episodes, drawn from the same seed (init='identity' draws nothing)
    ep = sample_episodes(y, kw["n_way"], kw["n_shot"], kw["n_query"], kw["n_episodes"],
                         check_random_state(7))
    protos = X[ep.support].reshape(30, 2, 3, -1).mean(axis=2)
    yq = np.tile(np.repeat(np.arange(2), 4), (30, 1))
    assert est.loss_ == pytest.approx(
        naive_episodic_loss(est.components_, X[ep.query], protos, yq), rel=1e-10)
    start = naive_episodic_loss(np.eye(13), X[ep.query], protos, yq)
    assert est.loss_ < start


def test_callback_and_determinism():
    X, y = _iris()
    seen = []
    est = NCMML(n_components=2, init="random", random_state=3, episodic=True, n_way=3,
                n_episodes=20, callback=lambda L, it: seen.append((L, it))).fit(X, y)
    assert [it for _, it in seen] == list(range(1, est.n_iter_ + 1))
    np.testing.assert_array_equal(seen[-1][0], est.components_)
    again = clone(est).set_params(callback=None).fit(X, y)
    np.testing.assert_array_equal(again.components_, est.components_)
    other = clone(again).set_params(random_state=4).fit(X, y)
    assert not np.array_equal(other.components_, est.components_)
    restored = pickle.loads(pickle.dumps(again))
    np.testing.assert_array_equal(restored.transform(X), again.transform(X))


def test_verbose_prints_table(capsys):
    X, y = _iris()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        NCMML(max_iter=3, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "[NCMML]" in out and "Objective Value" in out


@pytest.mark.parametrize("params, match", [
    (dict(episodic=True, n_way=4), "need at least 4 classes"),
    (dict(episodic=True, n_way=3, n_shot=40, n_query=15), "need 55 points per class"),
    (dict(episodic=True, n_centroids=2), "n_centroids > 1"),
    (dict(n_components=5), "n_components"),
    (dict(n_way=1), "n_way"),
])
def test_bad_input(params, match):
    X, y = _iris()
    with pytest.raises(ValueError, match=match):
        NCMML(**params).fit(X, y)


def test_one_point_class_in_episodes_is_an_error():
    X, y = _iris()
    y = y.copy()
    y[0] = 7   # a class with a single point cannot give 1 support + 1 query
    with pytest.raises(ValueError, match="class 7 has 1"):
        NCMML(episodic=True, n_way=2, n_shot=1, n_query=1).fit(X, y)


@parametrize_with_checks([NCMML(max_iter=20), NCMML(episodic=True, n_way=2, n_shot=1,
                                                     n_query=1, n_episodes=5,
                                                     max_iter=20)])
def test_sklearn_compatible(estimator, check):
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


@pytest.mark.parametrize("load", [load_iris, load_wine])
def test_full_rank_optimum_equals_cvxpys(load):
    pytest.importorskip("cvxpy")
    from mahal import reference

    X, y = load(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    if load is load_wine:
        X = X[:, :5]  # (overlapping classes: a finite optimum)
    M, value = reference.ncmml(X, y)
    est = NCMML(init="identity", tol=1e-12, max_iter=3000).fit(X, y)
    assert est.loss_ == pytest.approx(value, abs=1e-6)
    means = np.array([X[y == c].mean(axis=0) for c in np.unique(y)])
    assert reference.ncmml_objective(M, X, means, np.arange(3), y) == pytest.approx(
        value, abs=1e-7)
    assert reference.ncmml_objective(est.get_mahalanobis_matrix(), X, means,
                                     np.arange(3), y) == pytest.approx(est.loss_,
                                                                       rel=1e-10)
