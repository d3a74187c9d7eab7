"""Tests of MLKR against plain references: a double loop over the paper's
formulas, metric-learn 0.7's dense loss and gradient (re-implemented here), and
finite differences."""

import pickle
import warnings
from functools import partial

import numpy as np
import pytest
from _softmax_helpers import central_differences, fits_for_each_n_jobs
from sklearn.base import clone
from sklearn.datasets import make_friedman1
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import MLKR
from mahal._mlkr_solver import mlkr_loss_grad, mlkr_solve
from mahal._softmax_blocks import chunk_ranges


def naive_mlkr(L, X, y):
    """MLKR's loss and gradient, one pair at a time (Weinberger & Tesauro 2007,
    with the kernel exp(−d_ij)): ∂f/∂L = Σ_ij ∂f/∂d_ij · 2L x_ij x_ijᵀ."""
    n = X.shape[0]
    f = 0.0
    g = np.zeros((X.shape[1], X.shape[1]))
    for i in range(n):
        d = np.array([np.sum((L @ (X[i] - X[j])) ** 2) if j != i else np.inf
                      for j in range(n)])
        k = np.exp(-(d - d.min()))
        p = k / k.sum()
        y_hat = sum(p[j] * y[j] for j in range(n))
        f += (y[i] - y_hat) ** 2
        for j in range(n):
            if j == i:
                continue
            # ∂f_i/∂d_ij = 2 (ŷ_i − y_i) ∂ŷ_i/∂d_ij, ∂ŷ_i/∂d_ij = −p_ij (y_j − ŷ_i)
            w = -2 * (y_hat - y[i]) * p[j] * (y[j] - y_hat)
            g += w * np.outer(X[i] - X[j], X[i] - X[j])
    return f, 2 * L @ g


def metric_learn_mlkr(L, X, y):
    """metric-learn 0.7's MLKR._loss (dense n × n), as in its source."""
    from scipy.special import logsumexp

    Z = X @ L.T
    dist = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    np.fill_diagonal(dist, np.inf)
    softmax = np.exp(-dist - logsumexp(-dist, axis=1)[:, None])
    yhat = softmax @ y
    ydiff = yhat - y
    cost = (ydiff ** 2).sum()
    W = softmax * ydiff[:, None] * (y - yhat[:, None])
    W_sym = W + W.T
    np.fill_diagonal(W_sym, -W.sum(axis=0))
    grad = 4 * (Z.T @ W_sym) @ X
    return cost, grad


def _data(n=40, d=4, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = np.sin(X[:, 0]) + 0.1 * rng.normal(size=n)
    return X, y


@pytest.mark.parametrize("block_rows", [None, 1, 7])
def test_loss_and_gradient_equal_the_double_loop_and_metric_learn(block_rows):
    X, y = _data()
    L = np.random.default_rng(1).normal(size=(2, 4)) * 0.7
    f, g = mlkr_loss_grad(L, X, y, block_rows=block_rows)
    f_ref, g_ref = naive_mlkr(L, X, y)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)
    f_ml, g_ml = metric_learn_mlkr(L, X, y)
    np.testing.assert_allclose(f, f_ml, rtol=1e-12)
    np.testing.assert_allclose(g, g_ml, rtol=1e-10, atol=1e-12)


def test_gradient_equals_finite_differences():
    X, y = _data(30, 3)
    rng = np.random.default_rng(2)
    for scale in (0.3, 1.0, 3.0):
        L = rng.normal(size=(3, 3)) * scale
        _, g = mlkr_loss_grad(L, X, y)
        fd = central_differences(lambda M: mlkr_loss_grad(M, X, y)[0], L)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


def test_far_points_give_metric_learns_values():
    # distances in the thousands: every kernel value underflows without the
    # per-row log-sum-exp
    X, y = _data(50, 3)
    L = np.eye(3) * 40
    f, g = mlkr_loss_grad(L, X, y)
    f_ml, g_ml = metric_learn_mlkr(L, X, y)
    np.testing.assert_allclose(f, f_ml, rtol=1e-12)
    np.testing.assert_allclose(g, g_ml, rtol=1e-9, atol=1e-10)


def test_blocked_equals_unblocked_fit():
    X, y = _data(120, 5, seed=5)
    runs = [mlkr_solve(X, y, np.eye(5), max_iter=15, tol=0, block_rows=b)
            for b in (3, 16, 120)]
    for L, n_iter, _, info in runs[1:]:
        assert n_iter == runs[0][1]
        np.testing.assert_allclose(L, runs[0][0], rtol=1e-8, atol=1e-10)


def test_same_result_for_any_number_of_threads():
    X, y = _data(2600, 3, seed=6)
    assert len(chunk_ranges(2600, 3)) > 1
    fits = fits_for_each_n_jobs(partial(MLKR, max_iter=4), X, y)
    np.testing.assert_array_equal(fits[0].components_, fits[1].components_)


def test_learns_to_ignore_irrelevant_features():
    # Friedman #1: y depends on the first 5 features only; 20 more are noise.
    X, y = make_friedman1(n_samples=300, n_features=25, random_state=0)
    X = (X - X.mean(0)) / X.std(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = MLKR(max_iter=200).fit(X, y)
    # each feature's weight in the learned metric, sqrt(M_kk) (1 at the start)
    weight = np.linalg.norm(est.components_, axis=0)
    assert weight[:5].mean() > 1.3 * weight[5:].mean()
    L0 = np.eye(25)
    assert est.objective_ < 0.5 * mlkr_loss_grad(L0, X, y)[0]
    np.testing.assert_allclose(est.objective_,
                               metric_learn_mlkr(est.components_, X, y)[0], rtol=1e-10)


def test_callback_and_deterministic_pickle_clone():
    X, y = _data(60, 4)
    seen = []
    a = MLKR(n_components=2, init="random", random_state=3,
             callback=lambda L, it: seen.append(it)).fit(X, y)
    assert seen == list(range(1, a.n_iter_ + 1))
    b = MLKR(n_components=2, init="random", random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(b))
    np.testing.assert_array_equal(c.transform(X), b.transform(X))
    assert clone(b).get_params() == b.get_params()
    with pytest.warns(ConvergenceWarning, match="max_iter=2"):
        MLKR(max_iter=2, tol=0).fit(X, y)


@pytest.mark.parametrize("make, match", [
    (lambda X, y: MLKR().fit(X, y * np.nan), "NaN"),
    (lambda X, y: MLKR().fit(X, np.array(["a"] * len(y))), "could not convert"),
    (lambda X, y: MLKR().fit(X, np.c_[y, y]), "1-D|1d"),
    (lambda X, y: MLKR().fit(X[:1], y[:1]), "minimum of 2"),
    (lambda X, y: MLKR().fit(X, None), "requires y"),
    (lambda X, y: MLKR(n_components=5).fit(X, y), "n_components"),
    (lambda X, y: MLKR(init="lda").fit(X, y), "'init' parameter"),
    (lambda X, y: MLKR(max_iter=0).fit(X, y), "'max_iter' parameter"),
])
def test_bad_input_gets_a_clear_error(make, match):
    X, y = _data()
    with pytest.raises(ValueError, match=match):
        make(X, y)


@parametrize_with_checks([MLKR(max_iter=20)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
