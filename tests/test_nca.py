"""Tests of NCA (and of the row-blocked softmax it shares with MLKR) against plain
references: a double loop over the paper's formulas, finite differences, and
scikit-learn's NeighborhoodComponentsAnalysis."""

import io
import pickle
import warnings
from contextlib import redirect_stdout
from functools import partial

import numpy as np
import pytest
from _softmax_helpers import central_differences, fits_for_each_n_jobs
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import NeighborhoodComponentsAnalysis
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import NCA
from mahal._nca_solver import nca_objective_grad, nca_problem, nca_solve
from mahal._softmax_blocks import chunk_ranges, lbfgs_tolerances


def naive_nca(L, X, y):
    """NCA's objective and gradient, one pair at a time (Goldberger et al. 2004,
    eq. 5: ∂f/∂L = 2L Σ_i (p_i Σ_k p_ik x_ik x_ikᵀ − Σ_{j∈C_i} p_ij x_ij x_ijᵀ))."""
    n = X.shape[0]
    f = 0.0
    g = np.zeros((X.shape[1], X.shape[1]))
    for i in range(n):
        d = np.array([np.sum((L @ (X[i] - X[j])) ** 2) if j != i else np.inf
                      for j in range(n)])
        e = np.exp(-(d - d.min()))
        p = e / e.sum()
        p_i = sum(p[j] for j in range(n) if y[j] == y[i])
        f += p_i
        for k in range(n):
            outer = np.outer(X[i] - X[k], X[i] - X[k])
            g += p_i * p[k] * outer
            if y[k] == y[i]:
                g -= p[k] * outer
    return f, 2 * L @ g


def sklearn_nca(L, X, y):
    """scikit-learn's objective and gradient (its private _loss_grad_lbfgs)."""
    est = NeighborhoodComponentsAnalysis()
    est.n_iter_ = 1  # (its header is printed at n_iter_ == 0 only)
    f, g = est._loss_grad_lbfgs(L.ravel(), X, y[:, None] == y[None, :], 1.0)
    return f, g.reshape(L.shape)


def _data(n=40, d=4, n_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, n_classes, n)
    return X, y


@pytest.mark.parametrize("block_rows", [None, 1, 7])
def test_objective_and_gradient_equal_the_double_loop(block_rows):
    X, y = _data()
    y[5] = 3  # a class of one point (its p_i is 0)
    L = np.random.default_rng(1).normal(size=(2, 4)) * 0.7
    f, g = nca_objective_grad(L, X, y, block_rows=block_rows)
    f_ref, g_ref = naive_nca(L, X, y)
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_gradient_equals_finite_differences():
    X, y = _data(30, 3)
    rng = np.random.default_rng(2)
    for _ in range(3):
        L = rng.normal(size=(3, 3))
        _, g = nca_objective_grad(L, X, y)
        fd = central_differences(lambda M: nca_objective_grad(M, X, y)[0], L)
        np.testing.assert_allclose(g, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])
def test_objective_equals_scikit_learns(scale):
    # scale 30: every exp(−d_ij) underflows; both take the log-sum-exp per row
    X, y = _data(80, 5, 4)
    L = np.random.default_rng(3).normal(size=(5, 5)) * scale
    f, g = nca_objective_grad(L, X, y, block_rows=16)
    f_sk, g_sk = sklearn_nca(L, X, y)
    np.testing.assert_allclose(f, f_sk, rtol=1e-12)
    np.testing.assert_allclose(g, g_sk, rtol=1e-9, atol=1e-10)


def test_stale_shift_is_recomputed_exactly():
    # The shift of each row's exp is the last evaluation's log-sum-exp; where the
    # distances moved far since (L scaled by 40), the row is computed again with
    # its exact maximum: the value equals a fresh evaluation's.
    X, y = _data(60, 4)
    L = np.random.default_rng(4).normal(size=(4, 4)) * 0.3
    problem = nca_problem(X, y, block_rows=8)
    problem.loss_grad(L)
    f, g = problem.loss_grad(40 * L)
    f_fresh, g_fresh = nca_objective_grad(40 * L, X, y)
    assert np.isfinite(f)
    np.testing.assert_allclose(f, f_fresh, rtol=1e-12)
    np.testing.assert_allclose(g, g_fresh, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(f, sklearn_nca(40 * L, X, y)[0], rtol=1e-12)


def test_duplicate_points_give_finite_values():
    X, y = _data(30, 3)
    X[10:20] = X[0]
    f, g = nca_objective_grad(np.eye(3), X, y)
    f_sk, g_sk = sklearn_nca(np.eye(3), X, y)
    np.testing.assert_allclose(f, f_sk, rtol=1e-12)
    np.testing.assert_allclose(g, g_sk, rtol=1e-9, atol=1e-12)


def test_blocked_equals_unblocked_fit():
    X, y = _data(120, 5, 3, seed=5)
    L0 = np.eye(5)
    runs = [nca_solve(X, y, L0, max_iter=15, tol=0, block_rows=b)
            for b in (3, 16, 120)]
    for L, n_iter, _, info in runs[1:]:
        assert n_iter == runs[0][1]
        np.testing.assert_allclose(L, runs[0][0], rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(info["objective"], runs[0][3]["objective"],
                                   rtol=1e-12)


def test_same_result_for_any_number_of_threads():
    # 2600 points: more than one row chunk, so the threads share the work; the
    # chunks (and the order of their sums) depend on n and r only.
    X, y = _data(2600, 3, 5, seed=6)
    assert len(chunk_ranges(2600, 3)) > 1
    fits = fits_for_each_n_jobs(partial(NCA, max_iter=4), X, y)
    np.testing.assert_array_equal(fits[0].components_, fits[1].components_)
    assert fits[0].objective_ == fits[1].objective_


def test_fit_improves_the_objective_and_reports_it():
    X, y = load_iris(return_X_y=True)
    L0 = np.eye(4)
    est = NCA(init="identity", max_iter=50).fit(X, y)
    f0 = nca_objective_grad(L0, X, np.unique(y, return_inverse=True)[1])[0]
    f1 = nca_objective_grad(est.components_, X, y)[0]
    assert f1 > f0 + 1
    np.testing.assert_allclose(est.objective_, f1, rtol=1e-12)
    np.testing.assert_allclose(est.objective_, sklearn_nca(est.components_, X, y)[0],
                               rtol=1e-12)


def test_tol_has_scipys_meaning():
    assert lbfgs_tolerances(1e-3) == (1e-3, 1e-3)
    ftol, gtol = lbfgs_tolerances(None)
    assert ftol == pytest.approx(2.220446049250313e-09) and gtol == 1e-5
    X, y = load_iris(return_X_y=True)
    loose = NCA(tol=1e-2, max_iter=500).fit(X, y)
    tight = NCA(tol=None, max_iter=500).fit(X, y)
    assert loose.n_iter_ < tight.n_iter_


def test_callback_verbose_and_convergence_warning():
    X, y = load_iris(return_X_y=True)
    seen = []
    out = io.StringIO()
    with redirect_stdout(out), pytest.warns(ConvergenceWarning, match="max_iter=3"):
        est = NCA(max_iter=3, tol=0, verbose=True,
                  callback=lambda L, it: seen.append((it, L))).fit(X, y)
    assert [it for it, _ in seen] == [1, 2, 3] == list(range(1, est.n_iter_ + 1))
    np.testing.assert_array_equal(seen[-1][1], est.components_)
    lines = out.getvalue().splitlines()
    assert lines[1].split() == ["[NCA]", "Iteration", "Objective", "Value", "Time(s)"]
    values = [float(line.split()[2]) for line in lines[3:6]]
    assert values == sorted(values)  # (the objective rises)
    assert "Training took" in lines[-1]


def test_warm_start_continues_from_the_last_fit():
    X, y = load_iris(return_X_y=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = NCA(init="random", random_state=0, max_iter=3, warm_start=True).fit(X, y)
        first = est.objective_
        est.fit(X, y)
        cold = NCA(init="random", random_state=0, max_iter=3).fit(X, y)
    assert est.objective_ > first + 1e-6 * abs(first)  # (3 more iterations)
    assert cold.objective_ == pytest.approx(first)  # (the same 3 iterations)
    with pytest.raises(ValueError, match="warm_start"):
        est.fit(X[:, :3], y)


def test_deterministic_pickle_and_clone():
    X, y = load_iris(return_X_y=True)
    a = NCA(n_components=2, init="random", random_state=7).fit(X, y)
    b = NCA(n_components=2, init="random", random_state=7).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    assert clone(a).get_params() == a.get_params()


def test_n_components_and_init():
    X, y = load_iris(return_X_y=True)
    for init in ("auto", "pca", "lda", "identity", "random"):
        est = NCA(n_components=2, init=init, random_state=0, max_iter=5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            est.fit(X, y)
        assert est.components_.shape == (2, 4)
    est = NCA(init=np.eye(2, 4), max_iter=0 + 1, tol=0)
    with pytest.warns(ConvergenceWarning):
        est.fit(X, y)
    assert est.components_.shape == (2, 4)


@pytest.mark.parametrize("make, match", [
    (lambda X, y: NCA().fit(X[:, :1] * np.nan, y), "NaN"),
    (lambda X, y: NCA().fit(X, np.zeros_like(y)), "at least 2 classes"),
    (lambda X, y: NCA().fit(X[:1], y[:1]), "minimum of 2"),
    (lambda X, y: NCA().fit(X, None), "requires y"),
    (lambda X, y: NCA(n_components=5).fit(X, y), "n_components"),
    (lambda X, y: NCA(init=np.eye(3)).fit(X, y), "init array must have shape"),
    (lambda X, y: NCA(tol=-1.0).fit(X, y), "'tol' parameter"),
    (lambda X, y: NCA(max_iter=0).fit(X, y), "'max_iter' parameter"),
    (lambda X, y: NCA(init="lda2").fit(X, y), "'init' parameter"),
    (lambda X, y: NCA(n_jobs=0).fit(X, y), "'n_jobs' parameter"),
    # scikit-learn's first positional parameter is n_components, metric-learn's
    # (and mahal's) init: NCA(2) is an error, not a silent init
    (lambda X, y: NCA(2).fit(X, y), "'init' parameter"),
    (lambda X, y: NCA().fit(X, y.astype(float) + 0.5), "Unknown label type"),
])
def test_bad_input_gets_a_clear_error(make, match):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        make(X, y)


@parametrize_with_checks([NCA(max_iter=20)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)
