"""Tests of multiple-metric LMNN (LMNNMultiMetricClassifier) against plain
references: a triplet loop, finite differences, single-metric LMNN, cvxpy, a
brute-force nearest-neighbour vote."""

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import LMNN, LMNNMultiMetricClassifier
from mahal._lmnn_multi_solver import multi_metric_loss_grad, multi_metric_solve
from mahal._lmnn_neighbors import select_target_neighbors
from mahal._lmnn_problem import lmnn_loss_grad


def naive_loss_grad(Ls, X, y, tn, mu=0.5):
    """The objective and its gradient, one triplet at a time (``y`` class codes)."""
    f = 0.0
    G = np.zeros_like(Ls)
    for i in range(X.shape[0]):
        a = y[i]
        for j in tn[i]:
            if j < 0:
                continue
            u = X[i] - X[j]
            dij = np.sum((Ls[a] @ u) ** 2)
            f += (1 - mu) * dij
            G[a] += (1 - mu) * 2 * Ls[a] @ np.outer(u, u)
            for l in range(X.shape[0]):
                b = y[l]
                if b == a:
                    continue
                v = X[i] - X[l]
                h = 1 + dij - np.sum((Ls[b] @ v) ** 2)
                if h > 0:
                    f += mu * h
                    G[a] += mu * 2 * Ls[a] @ np.outer(u, u)
                    G[b] -= mu * 2 * Ls[b] @ np.outer(v, v)
    return f, G


def naive_predict(Ls, X, y, Xq, k):
    """Majority vote of the k nearest training points, each in its class's metric
    (ties of distance: lower class, then lower index; of votes: lower class)."""
    out = []
    for q in Xq:
        d = np.array([np.sum((Ls[y[l]] @ (q - X[l])) ** 2) for l in range(len(y))])
        order = np.lexsort((np.arange(len(y)), y, d))[:k]
        out.append(np.argmax(np.bincount(y[order], minlength=Ls.shape[0])))
    return np.array(out)


def naive_energy(Ls, X, y, tn, Xq, k, mu):
    """Energies from their definition, one term at a time (``y`` class codes)."""
    C = Ls.shape[0]

    def d(c, a, b):
        return float(np.sum((Ls[c] @ (a - b)) ** 2))

    E = np.zeros((len(Xq), C))
    for t, q in enumerate(Xq):
        for c in range(C):
            same = np.flatnonzero(y == c)
            near = sorted(same, key=lambda j: (d(c, q, X[j]), j))[:k]
            for j in near:
                dj = d(c, q, X[j])
                E[t, c] += (1 - mu) * dj
                for l in np.flatnonzero(y != c):
                    E[t, c] += mu * max(0.0, 1 + dj - d(y[l], q, X[l]))
            for i in np.flatnonzero(y != c):
                for j in tn[i]:
                    if j >= 0:
                        E[t, c] += mu * max(0.0, 1 + d(y[i], X[i], X[j])
                                            - d(c, X[i], q))
    return E


def _blobs(n=60, d=3, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, d)) * 1.5
    # every class stretched along its own axes: classes of different shapes
    scales = rng.uniform(0.3, 2.0, size=(n_classes, d))
    return centres[y] + rng.normal(size=(n, d)) * scales[y], y


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_grad_equals_triplet_loop(seed):
    X, y = _blobs(45, 4, 3, seed)
    tn = select_target_neighbors(X, y, 3)
    Ls = np.random.default_rng(seed).normal(size=(3, 2, 4))
    f, G, _ = multi_metric_loss_grad(Ls, X, y, tn, mu=0.4)
    f_ref, G_ref = naive_loss_grad(Ls, X, y, tn, mu=0.4)
    assert f == pytest.approx(f_ref, rel=1e-12)
    np.testing.assert_allclose(G, G_ref, rtol=1e-10, atol=1e-10 * np.abs(G_ref).max())


def test_equal_metrics_give_lmnn_objective():
    # with one metric for every class the objective is LMNN's, and the gradient
    # w.r.t. the shared L is the sum of the per-class gradients
    X, y = _blobs(80, 5, 4, 2)
    tn = select_target_neighbors(X, y, 3)
    L = np.random.default_rng(0).normal(size=(3, 5))
    f, G, act = multi_metric_loss_grad(np.repeat(L[None], 4, axis=0), X, y, tn)
    f_ref, g_ref, act_ref = lmnn_loss_grad(L, X, y, tn)
    assert f == pytest.approx(f_ref, rel=1e-12)
    np.testing.assert_allclose(G.sum(axis=0), g_ref, rtol=1e-10,
                               atol=1e-10 * np.abs(g_ref).max())
    assert act == act_ref


def test_gradient_matches_finite_differences():
    X, y = _blobs(40, 3, 3, 3)
    tn = select_target_neighbors(X, y, 2)
    rng = np.random.default_rng(1)
    Ls = rng.normal(size=(3, 3, 3))
    _, G, _ = multi_metric_loss_grad(Ls, X, y, tn)
    eps = 1e-6
    for idx in [tuple(rng.integers(0, 3, size=3)) for _ in range(12)]:
        E = np.zeros_like(Ls)
        E[idx] = eps
        fd = (multi_metric_loss_grad(Ls + E, X, y, tn)[0]
              - multi_metric_loss_grad(Ls - E, X, y, tn)[0]) / (2 * eps)
        assert fd == pytest.approx(G[idx], rel=1e-5, abs=1e-6)


def test_solver_reaches_sdp_optimum():
    # the objective is convex in the metrics M_c = L_cᵀ L_c: full-rank L-BFGS
    # reaches cvxpy's optimum
    pytest.importorskip("cvxpy")
    from mahal.reference import lmnn_multi_metric, lmnn_multi_metric_objective

    X, y = _blobs(36, 3, 3, 4)
    tn = select_target_neighbors(X, y, 2)
    Ms, f_opt = lmnn_multi_metric(X, y, tn)
    assert lmnn_multi_metric_objective(Ms, X, y, tn) == pytest.approx(f_opt, rel=1e-5)
    Ls, _, converged, info = multi_metric_solve(X, y, tn, np.eye(3), 3, max_iter=500,
                                                tol=1e-10)
    f = lmnn_multi_metric_objective(np.einsum("cri,crj->cij", Ls, Ls), X, y, tn)
    assert f == pytest.approx(info["loss"], rel=1e-10)
    assert f_opt * (1 - 1e-6) <= f <= f_opt * 1.01
    # and below the best single metric (a feasible point of the multi-metric problem)
    from mahal.reference import lmnn
    assert f < lmnn(X, y, tn)[1]


def test_fit_lowers_the_objective_of_its_start_and_verifies_the_end():
    X, y = _blobs(300, 6, 4, 5)
    start = LMNN(max_iter=50, random_state=0).fit(X, y)
    tn = start.target_neighbors_
    f0 = multi_metric_loss_grad(np.repeat(start.components_[None], 4, axis=0), X, y,
                                tn)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LMNNMultiMetricClassifier(start, prefit=True, max_iter=60).fit(X, y)
    f = multi_metric_loss_grad(clf.components_, X, y, tn)[0]
    assert f < 0.9 * f0
    np.testing.assert_array_equal(clf.target_neighbors_, tn)


def test_threads_give_identical_result():
    # large enough for several row chunks: the chunks, not the threads, fix sums
    X, y = _blobs(9000, 4, 3, 6)
    tn = select_target_neighbors(X, y, 3)
    L0 = np.eye(4)
    one = multi_metric_solve(X, y, tn, L0, 3, max_iter=8, n_threads=1)
    two = multi_metric_solve(X, y, tn, L0, 3, max_iter=8, n_threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    assert one[1] == two[1] == 8


def test_predict_is_brute_force_vote_in_class_metrics():
    X, y = _blobs(120, 3, 3, 7)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LMNNMultiMetricClassifier(LMNN(max_iter=20), max_iter=10,
                                        n_neighbors=3).fit(X, y + 10)
    Xq = _blobs(50, 3, 3, 8)[0]
    ref = naive_predict(clf.components_, X, y, Xq, 3)
    np.testing.assert_array_equal(clf.predict(Xq), ref + 10)
    proba = clf.predict_proba(Xq)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], ref + 10)


def _stripes(rng, n):
    # class 0 on horizontal segments, class 1 on vertical ones, sparse along them:
    # a class's neighbours lie along x for one and along y for the other
    a = np.column_stack([rng.uniform(0, 10, n),
                         rng.choice([0.5, 2.5, 4.5], n) + 0.05 * rng.normal(size=n)])
    b = np.column_stack([rng.choice([1.0, 3.0, 5.0, 7.0, 9.0], n)
                         + 0.05 * rng.normal(size=n), rng.uniform(0, 5, n)])
    return np.vstack([a, b]), np.repeat([0, 1], n)


def test_energy_equals_its_definition():
    X, y = _blobs(45, 3, 3, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LMNNMultiMetricClassifier(LMNN(max_iter=20), max_iter=10,
                                        regularization=0.3, n_neighbors=2).fit(X, y)
    Xq = _blobs(12, 3, 3, 13)[0]
    ref = naive_energy(clf.components_, X, y, clf.target_neighbors_, Xq, 2, 0.7)
    np.testing.assert_allclose(clf.energy(Xq), ref, rtol=1e-10)
    clf.set_params(classify="energy")
    np.testing.assert_array_equal(clf.predict(Xq), ref.argmin(axis=1))
    assert not hasattr(clf, "predict_proba")  # (the vote's; energy has none)


def test_energy_with_equal_metrics_is_lmnn_energy():
    # one metric for every class: the single-metric energy classifier's energies
    from mahal import LMNNEnergyClassifier

    X, y = _blobs(1500, 4, 3, 14)  # (past the single metric's dense path)
    Xq = _blobs(300, 4, 3, 15)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = LMNN(max_iter=20, random_state=0).fit(X, y)
        clf = LMNNMultiMetricClassifier(start, prefit=True, max_iter=2).fit(X, y)
    clf.components_ = np.repeat(start.components_[None], 3, axis=0)
    ref = LMNNEnergyClassifier(start, prefit=True).fit(X, y).energy(Xq)
    np.testing.assert_allclose(clf.energy(Xq), ref, rtol=1e-9)


def test_beats_one_metric_where_classes_differ_in_shape():
    # one metric cannot shrink x for one class and y for the other; one per class
    # can: at most half the single metric's test error
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    X, y = _stripes(rng, 150)
    Xt, yt = _stripes(rng, 500)
    single = LMNN(random_state=0).fit(X, y)
    multi = LMNNMultiMetricClassifier(single, prefit=True).fit(X, y)
    err_single = np.mean(KNeighborsClassifier(3).fit(single.transform(X), y).predict(
        single.transform(Xt)) != yt)
    err_multi = np.mean(multi.predict(Xt) != yt)
    assert err_multi < 0.5 * err_single


def test_targets_are_the_metric_learners_and_n_neighbors_the_vote():
    # trained on LMNN(n_neighbors=4)'s target neighbours, voting with 2: the same
    # metrics as voting with 4, a 2-NN vote
    X, y = _blobs(150, 3, 3, 16)
    Xq = _blobs(60, 3, 3, 17)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        start = LMNN(n_neighbors=4, max_iter=20).fit(X, y)
        two = LMNNMultiMetricClassifier(start, prefit=True, n_neighbors=2,
                                        max_iter=10).fit(X, y)
        four = LMNNMultiMetricClassifier(start, prefit=True, n_neighbors=4,
                                         max_iter=10).fit(X, y)
    np.testing.assert_array_equal(two.target_neighbors_, start.target_neighbors_)
    np.testing.assert_array_equal(two.components_, four.components_)
    np.testing.assert_array_equal(
        two.predict(Xq), naive_predict(two.components_, X, y, Xq, 2))


def test_max_iter_warns_and_errors_are_clear():
    X, y = _blobs(60, 3, 3, 9)
    with pytest.warns(ConvergenceWarning, match="max_iter"):
        clf = LMNNMultiMetricClassifier(LMNN(max_iter=5), max_iter=2).fit(X, y)
    assert clf.n_iter_ == 2
    wrong = LMNN(max_iter=5).fit(X[:, :2], y)
    with pytest.raises(ValueError, match="features"):
        LMNNMultiMetricClassifier(wrong, prefit=True).fit(X, y)
    with pytest.raises(ValueError, match="disagree"):
        LMNNMultiMetricClassifier(regularization=0.3, weight_push_loss=0.5).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        clf.predict(X[:, :2])


def test_dask_predict_equals_numpy():
    da = pytest.importorskip("dask.array")
    X, y = _blobs(90, 3, 3, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LMNNMultiMetricClassifier(LMNN(max_iter=10), max_iter=5).fit(X, y)
    Xq = _blobs(70, 3, 3, 11)[0]
    lazy = clf.predict(da.from_array(Xq, chunks=(25, 3)))
    np.testing.assert_array_equal(lazy.compute(scheduler="sync"), clf.predict(Xq))
    np.testing.assert_array_equal(
        clf.predict_proba(da.from_array(Xq, chunks=(31, 3))).compute(scheduler="sync"),
        clf.predict_proba(Xq))


@parametrize_with_checks([
    LMNNMultiMetricClassifier(LMNN(max_iter=20), max_iter=10),
    LMNNMultiMetricClassifier(LMNN(max_iter=20), max_iter=10, classify="energy")])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)

