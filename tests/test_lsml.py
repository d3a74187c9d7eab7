"""LSML and LSML_Supervised: metric-learn's objective, finite differences, the
quadruplet API and scikit-learn."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import LSML, LSML_Supervised
from mahal._lsml_solver import lsml_loss_grad
from mahal.constraints import Constraints


def _ml_total_loss(M, vab, vcd, w, prior_inv):
    """metric-learn 0.7's ``_BaseLSML._total_loss``, one quadruplet at a time."""
    loss = 0.0
    for a, c, wi in zip(vab, vcd, w):
        dab, dcd = a @ M @ a, c @ M @ c
        if dab > dcd:
            loss += wi * (np.sqrt(dab) - np.sqrt(dcd)) ** 2
    sign, logdet = np.linalg.slogdet(M)
    return loss + np.sum(M * prior_inv) - sign * logdet


def _ml_gradient(M, vab, vcd, prior_inv):
    """metric-learn 0.7's ``_BaseLSML._gradient`` (no weights: see the test)."""
    g = prior_inv - np.linalg.inv(M)
    for a, c in zip(vab, vcd):
        dab, dcd = a @ M @ a, c @ M @ c
        if dab > dcd:
            g = g + ((1 - np.sqrt(dcd / dab)) * np.outer(a, a)
                     + (1 - np.sqrt(dab / dcd)) * np.outer(c, c))
    return g


def _ml_fit(vab, vcd, w, prior, max_iter=1000, tol=1e-3):
    """metric-learn 0.7's ``_BaseLSML._fit`` loop: ten step sizes per iteration."""
    prior_inv = np.linalg.inv(prior)
    M, best = prior.copy(), _ml_total_loss(prior, vab, vcd, w, prior_inv)
    for _ in range(max_iter):
        g = _ml_gradient(M, vab, vcd, prior_inv)
        gn = np.linalg.norm(g)
        if gn < tol:
            break
        M_best = None
        for step in np.logspace(-10, 0, 10) / gn:
            lam, V = np.linalg.eigh(M - step * g)
            cand = (V * np.maximum(lam, 1e-8)) @ V.T
            s = _ml_total_loss(cand, vab, vcd, w, prior_inv)
            if s < best:
                best, M_best = s, cand
        if M_best is None:
            break
        M = M_best
    return M, best


def _quadruplets(seed, m=60, d=4, duplicates=False):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, d)) * [3.0, 1.0, 0.5, 2.0][:d]
    y = (X[:, 1] > 0).astype(int) + 2 * (X[:, 2] > 0)
    a, b, c, e = Constraints(y).positive_negative_pairs(m, same_length=True,
                                                        random_state=seed)
    q = X[np.column_stack([a, b, c, e])]
    if duplicates:
        q[:5, 3] = q[:5, 2]   # c = d: d_cd = 0
        q[5:8, 1] = q[5:8, 0]  # a = b: d_ab = 0
    return q


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("duplicates", [False, True])
def test_objective_is_metric_learns(seed, duplicates):
    q = _quadruplets(seed, duplicates=duplicates)
    rng = np.random.default_rng(seed)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    w = rng.random(len(q))
    w /= w.sum()
    P = np.linalg.inv(np.cov(rng.normal(size=(20, 4)), rowvar=False))
    L = rng.normal(size=(4, 4))
    f, _ = lsml_loss_grad(L, vab, vcd, w, P)
    np.testing.assert_allclose(f, _ml_total_loss(L.T @ L, vab, vcd, w, P), rtol=1e-10)
    assert lsml_loss_grad(np.zeros((4, 4)), vab, vcd, w, P)[0] == np.inf


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("duplicates", [False, True])
def test_gradients_against_finite_differences(seed, duplicates):
    q = _quadruplets(seed, duplicates=duplicates)
    rng = np.random.default_rng(10 + seed)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    w = rng.random(len(q))
    w /= w.sum()
    P = np.diag(rng.random(4) + 0.5)
    L = rng.normal(size=(4, 4))
    f, g, gM = lsml_loss_grad(L, vab, vcd, w, P, return_metric_grad=True)
    assert np.all(np.isfinite(g)) and np.all(np.isfinite(gM))
    eps = 1e-6
    num = np.zeros_like(L)
    numM = np.zeros_like(L)
    M = L.T @ L

    def f_of_M(M):
        return lsml_loss_grad(np.linalg.cholesky(M).T, vab, vcd, w, P)[0]

    for i in range(4):
        for j in range(4):
            E = np.zeros_like(L)
            E[i, j] = eps
            num[i, j] = (lsml_loss_grad(L + E, vab, vcd, w, P)[0]
                         - lsml_loss_grad(L - E, vab, vcd, w, P)[0]) / (2 * eps)
            S = 0.5 * (E + E.T)
            numM[i, j] = (f_of_M(M + S) - f_of_M(M - S)) / (2 * eps)
    np.testing.assert_allclose(g, num, atol=1e-6 * max(1.0, np.abs(num).max()))
    np.testing.assert_allclose(gM, numM, atol=1e-5 * max(1.0, np.abs(numM).max()))


def test_metric_learns_gradient_drops_the_weights_and_is_nan_on_duplicates():
    # the gradient metric-learn steps along is not that of its loss: its hinge part
    # lacks the weights w_i (which sum to 1), and it is NaN when c = d
    q = _quadruplets(0)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    w = np.full(len(q), 1.0 / len(q))
    L = np.eye(4)
    _, _, gM = lsml_loss_grad(L, vab, vcd, w, np.eye(4), return_metric_grad=True)
    ml = _ml_gradient(np.eye(4), vab, vcd, np.eye(4))
    assert not np.allclose(gM, ml)
    np.testing.assert_allclose(gM, _ml_gradient(np.eye(4), vab * np.sqrt(w)[:, None],
                                                vcd * np.sqrt(w)[:, None], np.eye(4)),
                               atol=1e-12)
    qd = _quadruplets(0, duplicates=True)
    with np.errstate(all="ignore"):
        assert np.isnan(_ml_gradient(np.eye(4), qd[:, 0] - qd[:, 1], qd[:, 2] - qd[:, 3],
                                     np.eye(4))).any()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("prior", ["identity", "random", "covariance"])
def test_objective_no_higher_than_metric_learns_solver(seed, prior):
    q = _quadruplets(seed, m=40)
    lsml = LSML(prior=prior, random_state=seed).fit(q)
    vab, vcd = q[:, 0] - q[:, 1], q[:, 2] - q[:, 3]
    w = np.full(len(q), 1.0 / len(q))
    from mahal.base import initialize_metric
    prior_M = initialize_metric(np.unique(q.reshape(-1, 4), axis=0), prior,
                                random_state=seed)
    _, ml_value = _ml_fit(vab, vcd, w, prior_M)
    value = _ml_total_loss(lsml.get_mahalanobis_matrix(), vab, vcd, w,
                           np.linalg.inv(prior_M))
    np.testing.assert_allclose(value, lsml.objective_, rtol=1e-9)
    assert value <= ml_value + 1e-9 * abs(ml_value)
    # a stationary point: metric-learn's stopping rule holds
    L = np.linalg.cholesky(lsml.get_mahalanobis_matrix()).T
    _, _, gM = lsml_loss_grad(L, vab, vcd, w, np.linalg.inv(prior_M),
                              return_metric_grad=True)
    assert np.linalg.norm(gM) <= lsml.tol


def test_weights_are_metric_learns():
    q = _quadruplets(1)
    w = np.arange(1.0, len(q) + 1)
    w_given = w.copy()
    a = LSML().fit(q, weights=w)
    np.testing.assert_array_equal(w, w_given)  # not scaled in place
    b = LSML().fit(q, weights=3 * w)  # only relative weights matter
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-7, atol=1e-9)
    # a quadruplet of weight 0 does not count
    w[:10] = 0
    c = LSML().fit(q, weights=w)
    d = LSML().fit(q[10:], weights=w[10:])
    np.testing.assert_allclose(c.components_, d.components_, rtol=1e-7, atol=1e-9)


def test_singular_prior_learns_on_its_range():
    # metric-learn raises (its issues 202, 203): here, a warning and a metric that is
    # zero on the null space of the prior and stationary on its range
    q = _quadruplets(2)
    rng = np.random.default_rng(0)
    B = np.linalg.qr(rng.normal(size=(4, 3)))[0]
    prior = B @ np.diag([1.0, 2.0, 0.5]) @ B.T
    with pytest.warns(UserWarning, match="singular"):
        lsml = LSML(prior=prior).fit(q)
    M = lsml.get_mahalanobis_matrix()
    assert np.all(np.isfinite(M))
    null = np.eye(4) - B @ B.T
    assert np.abs(null @ M).max() <= 1e-10 * np.abs(M).max()
    vab, vcd = (q[:, 0] - q[:, 1]) @ B, (q[:, 2] - q[:, 3]) @ B
    w = np.full(len(q), 1.0 / len(q))
    Mr = B.T @ M @ B
    _, _, gM = lsml_loss_grad(np.linalg.cholesky(Mr).T, vab, vcd, w,
                              np.linalg.inv(B.T @ prior @ B), return_metric_grad=True)
    assert np.linalg.norm(gM) <= lsml.tol
    # prior='covariance' on points with a linearly dependent feature
    q2 = q.copy()
    q2[..., 3] = q2[..., 0] + q2[..., 1]
    with pytest.warns(UserWarning, match="singular"):
        assert np.all(np.isfinite(LSML(prior="covariance").fit(q2).components_))


# ---------------------------------------------------------------------------
# The quadruplet API


@pytest.fixture(scope="module")
def iris_quadruplets():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    a, b, c, d = Constraints(y).positive_negative_pairs(100, same_length=True,
                                                        random_state=0)
    idx = np.column_stack([a, b, c, d])
    return X, idx


def test_quadruplet_api(iris_quadruplets):
    X, idx = iris_quadruplets
    q = X[idx]
    lsml = LSML().fit(q)
    M = lsml.get_mahalanobis_matrix()

    def dist(u, v):
        return np.sqrt(np.einsum("ij,jk,ik->i", u - v, M, u - v))

    dec = lsml.decision_function(q)
    np.testing.assert_allclose(dec, dist(q[:, 2], q[:, 3]) - dist(q[:, 0], q[:, 1]),
                               rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(lsml.predict(q), np.where(dec > 0, 1, -1))
    assert lsml.score(q) == np.mean(dec > 0)
    with pytest.warns(ConvergenceWarning):  # (one step on reversed quadruplets)
        reversed_fit = LSML(max_iter=1).fit(q[:, [2, 3, 0, 1]])
    assert lsml.score(q) > reversed_fit.score(q)
    # indices through a preprocessor give the same model
    by_index = LSML(preprocessor=X).fit(idx)
    np.testing.assert_allclose(by_index.components_, lsml.components_)
    np.testing.assert_allclose(by_index.decision_function(idx), dec)


def test_quadruplets_in_model_selection(iris_quadruplets):
    X, idx = iris_quadruplets
    q = X[idx]
    scores = cross_val_score(LSML(), q, cv=3)
    assert np.all((scores > 0.5) & (scores <= 1.0))
    pipe = make_pipeline(LSML())
    assert pipe.fit(q).score(q) == LSML().fit(q).score(q)
    grid = GridSearchCV(LSML(), {"prior": ["identity", "covariance"]}, cv=2).fit(q)
    assert grid.best_params_["prior"] in ("identity", "covariance")


def test_unfitted_raises_and_fit_returns_self(iris_quadruplets):
    from sklearn.exceptions import NotFittedError
    X, idx = iris_quadruplets
    q = X[idx]
    est = LSML()
    for method in ("predict", "decision_function", "score"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(q)
    with pytest.raises(NotFittedError):
        est.transform(X)
    params = est.get_params()
    assert est.fit(q) is est
    assert est.get_params() == params
    assert est.n_features_in_ == 4
    assert est.transform(X).shape == (len(X), 4)


def test_deterministic_idempotent_and_picklable(iris_quadruplets):
    X, idx = iris_quadruplets
    q = X[idx]
    a = LSML(prior="random", random_state=0).fit(q)
    b = clone(a).fit(q)
    np.testing.assert_array_equal(a.components_, b.components_)
    a.fit(q)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.decision_function(q), a.decision_function(q))


def test_bad_input(iris_quadruplets):
    X, idx = iris_quadruplets
    q = X[idx]
    with pytest.raises(ValueError, match="4 points per tuple"):
        LSML().fit(q[:, :3])
    with pytest.raises(ValueError, match="3-D array"):
        LSML().fit(q[:, 0])
    bad = q.copy()
    bad[0, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LSML().fit(bad)
    with pytest.raises(ValueError, match="one weight per tuple"):
        LSML().fit(q, weights=np.ones(3))
    with pytest.raises(ValueError, match="non-negative"):
        LSML().fit(q, weights=-np.ones(len(q)))
    with pytest.raises(ValueError, match="prior"):
        LSML(prior="pca").fit(q)
    with pytest.raises(ValueError, match="features"):
        LSML().fit(q).predict(q[:, :, :2])
    with pytest.raises(ValueError, match="prior is zero"):
        LSML(prior=np.zeros((4, 4))).fit(q)


def test_max_iter_warns(iris_quadruplets):
    X, idx = iris_quadruplets
    with pytest.warns(ConvergenceWarning):
        LSML(max_iter=1, tol=0.0).fit(X[idx])


def test_verbose_prints_iterations(iris_quadruplets, capsys):
    X, idx = iris_quadruplets
    lsml = LSML(verbose=True).fit(X[idx])
    lines = [l for l in capsys.readouterr().out.splitlines() if "e+" in l or "e-" in l]
    assert len(lines) == lsml.n_iter_ + 1


# ---------------------------------------------------------------------------
# LSML_Supervised


def test_supervised_is_lsml_on_metric_learns_quadruplets():
    X, y = load_iris(return_X_y=True)
    sup = LSML_Supervised(random_state=3).fit(X, y)
    a, b, c, d = Constraints(y).positive_negative_pairs(
        20 * 3 ** 2, same_length=True, random_state=np.random.RandomState(3))
    plain = LSML().fit(X[np.column_stack([a, b, c, d])])
    np.testing.assert_array_equal(sup.components_, plain.components_)


def test_supervised_deterministic_and_deprecated_alias():
    X, y = load_iris(return_X_y=True)
    a = LSML_Supervised(n_constraints=50, random_state=0).fit(X, y)
    with pytest.warns(FutureWarning, match="num_constraints"):
        b = LSML_Supervised(num_constraints=50, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert b.num_constraints == 50 and b.n_constraints is None


@parametrize_with_checks([LSML_Supervised()])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (fewer pairs than asked)
        check(estimator)


def test_supervised_label_minus_one_is_unknown():
    # metric-learn's Constraints: a numeric label -1 is an unknown class, in no
    # quadruplet; n_constraints=None counts it as a class, as metric-learn does
    X, y = load_iris(return_X_y=True)
    y = y.copy()
    y[::3] = -1
    sup = LSML_Supervised(random_state=0).fit(X, y)
    a, b, c, d = Constraints(y).positive_negative_pairs(
        20 * 4 ** 2, same_length=True, random_state=np.random.RandomState(0))
    idx = np.column_stack([a, b, c, d])
    assert np.all(y[idx] != -1)
    np.testing.assert_array_equal(sup.components_, LSML().fit(X[idx]).components_)
    with pytest.raises(ValueError, match="two classes among the labelled"):
        LSML_Supervised().fit(X, np.where(y == 2, 2, -1))
