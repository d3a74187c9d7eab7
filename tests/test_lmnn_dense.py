"""LMNN's NumPy path for small problems (mahal._lmnn_dense, the NumPy L-BFGS
steps) against the numba kernels, naive loops and finite differences."""

import importlib
import sys

import numpy as np
import pytest
from sklearn.datasets import load_iris, load_wine
from sklearn.preprocessing import StandardScaler

from mahal import _lmnn_dense, _optimize
from mahal._lmnn_dense import DenseOracle, DenseProblem, use_dense
from mahal._lmnn_neighbors import select_target_neighbors
from mahal._lmnn_problem import lmnn_loss_grad
from mahal._lmnn_solver import lmnn_solve
from test_lmnn import _blobs, naive_energy, naive_loss_grad, naive_target_neighbors


def _standardised(load):
    X, y = load(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def _dense(L, X, y, tn, mu=0.5, smooth=0.0):
    problem = DenseProblem(X, y, tn, mu)
    f, U, act = problem.weights(problem.transform(L), smooth)
    return f, problem.grad(U), act


@pytest.mark.parametrize("load", [load_iris, load_wine])
@pytest.mark.parametrize("smooth", [0.0, 0.1, 1.0])
def test_dense_equals_kernel_loss_to_rounding(load, smooth):
    # lmnn_loss_grad always evaluates with the kernels (exact impostor search)
    X, y = _standardised(load)
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(0)
    d = X.shape[1]
    for L in (0.5 * rng.normal(size=(d, d)), np.eye(d), rng.normal(size=(2, d))):
        f, g, act = lmnn_loss_grad(L, X, y, tn, mu=0.4, smooth=smooth)
        f2, g2, act2 = _dense(L, X, y, tn, mu=0.4, smooth=smooth)
        assert f2 == pytest.approx(f, rel=1e-13)
        assert act2 == act
        np.testing.assert_allclose(g2, g, rtol=0, atol=1e-12 * np.abs(g).max())


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_matches_triple_loop(seed):
    X, y = _blobs(40, 4, 3, seed)
    tn = select_target_neighbors(X, y, 3)
    tn[5, 2] = -1  # (a missing target neighbour)
    L = np.random.default_rng(seed).normal(size=(4, 4))
    for M in (L, L[:2]):
        f, g, _ = _dense(M, X, y, tn, mu=0.3)
        f0, g0 = naive_loss_grad(M, X, y, tn, mu=0.3)
        assert f == pytest.approx(f0, rel=1e-10)
        np.testing.assert_allclose(g, g0, rtol=1e-8, atol=1e-8)


def test_dense_smoothed_gradient_by_finite_differences():
    X, y = _blobs(30, 3, 3, 4)
    tn = select_target_neighbors(X, y, 2)
    L = np.random.default_rng(4).normal(size=(3, 3))
    f, g, _ = _dense(L, X, y, tn, smooth=0.5)
    h = 1e-6
    for a in range(3):
        for b in range(3):
            E = np.zeros_like(L)
            E[a, b] = h
            fd = (_dense(L + E, X, y, tn, smooth=0.5)[0]
                  - _dense(L - E, X, y, tn, smooth=0.5)[0]) / (2 * h)
            assert fd == pytest.approx(g[a, b], rel=1e-5, abs=1e-6)


def test_dense_oracle_lines():
    # a trial's value and slope are those of the function along the direction;
    # accept returns the trial's value and the full gradient there
    X, y = _standardised(load_wine)
    tn = select_target_neighbors(X, y, 3)
    problem = DenseProblem(X, y, tn, 0.5)
    oracle = DenseOracle(problem, 13)
    oracle.smooth = 0.1
    L = np.eye(13)
    f0, g0 = oracle.start(L.ravel())
    P = -g0 / np.abs(g0).max()
    oracle.set_direction(P)
    alpha, h = 0.01, 1e-6
    f, slope = oracle.trial(alpha)
    assert f == pytest.approx(_dense(L + alpha * P.reshape(13, 13), X, y, tn,
                                     smooth=0.1)[0], rel=1e-12)
    fp = _dense(L + (alpha + h) * P.reshape(13, 13), X, y, tn, smooth=0.1)[0]
    fm = _dense(L + (alpha - h) * P.reshape(13, 13), X, y, tn, smooth=0.1)[0]
    assert slope == pytest.approx((fp - fm) / (2 * h), rel=1e-5)
    f_acc, g_acc = oracle.accept(alpha)
    _, g_ref, _ = _dense(L + alpha * P.reshape(13, 13), X, y, tn, smooth=0.1)
    assert f_acc == f
    np.testing.assert_allclose(g_acc, g_ref.ravel(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("load", [load_iris, load_wine])
def test_small_fit_reaches_the_kernel_paths_objective(load, monkeypatch):
    # Same solver, same problem; the paths differ by rounding and by the kernel
    # path's candidate graph (values between two impostor searches may miss an
    # impostor), so the iterates drift apart, but the optima found agree closely.
    X, y = _standardised(load)
    tn = select_target_neighbors(X, y, 3)
    L0 = np.eye(X.shape[1])
    assert use_dense(X.shape[0], 3, X.shape[1])

    def objective():
        L, _, converged, info = lmnn_solve(X, y, tn, L0, max_iter=200)
        assert converged
        return lmnn_loss_grad(L, X, y, tn)[0], info

    monkeypatch.setattr(_lmnn_dense, "in_budget", lambda: True)
    f_dense, info = objective()
    assert info["n_searches"] == 0  # (the dense path: no impostor search)
    monkeypatch.setattr(_lmnn_dense, "_MAX_N", 0)
    f_kernel, info = objective()
    assert info["n_searches"] > 0
    assert f_dense == pytest.approx(f_kernel, rel=2e-3)


def test_bounds_choose_the_path():
    assert use_dense(178, 3, 13) and use_dense(500, 4, 8)
    assert not use_dense(501, 1, 1)  # n
    assert not use_dense(500, 5, 5)  # n² k
    assert not use_dense(400, 3, 64)  # n² r


@pytest.mark.parametrize("seed", [0, 1])
def test_dense_target_neighbors_equal_the_kernels(seed, monkeypatch):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(120, 5))
    y = rng.integers(0, 4, 120)
    y[:2] = 9  # a class of 2 members: one target neighbour each
    y[2] = 10  # a singleton: none
    X[10] = X[11]  # duplicates
    lattice = rng.integers(0, 3, size=(150, 3)) * 0.1 + 7.3  # many near-ties
    yl = rng.integers(0, 3, 150)
    cases = [(X, y, 3), (X, y, 1)]
    dense = [select_target_neighbors(A, b, k) for A, b, k in cases]
    np.testing.assert_array_equal(dense[0], naive_target_neighbors(X, y, 3))
    # ties of the lattice, rounded differently: by index, as on the exact lattice
    want = naive_target_neighbors(np.round((lattice - 7.3) * 10), yl, 4)
    np.testing.assert_array_equal(select_target_neighbors(lattice, yl, 4), want)
    monkeypatch.setattr(_lmnn_dense, "_MAX_TARGET_ELEMS", 0)
    for (A, b, k), tn in zip(cases, dense):
        np.testing.assert_array_equal(tn, select_target_neighbors(A, b, k))


def _lbfgs_memory(N, count, dtype, seed):
    rng = np.random.default_rng(seed)
    m = 5
    S = rng.normal(size=(m, N)).astype(dtype)
    Y = (S + 0.1 * rng.normal(size=(m, N))).astype(dtype)
    rho = 1.0 / np.einsum("ij,ij->i", S.astype(float), Y.astype(float))
    return S, Y, rho, 3, count, 0.7


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("count", [0, 2, 5])
def test_numpy_two_loop_and_update_equal_the_kernels(dtype, count):
    from mahal import _optimize_kernels as K

    N = 50
    S, Y, rho, head, count, gamma = _lbfgs_memory(N, count, dtype, count)
    g = np.random.default_rng(9).normal(size=N)
    p, d0 = _optimize._two_loop_np(g, S, Y, rho, head, count, gamma)
    p_k, d0_k = K._two_loop(g, S, Y, rho, head, count, gamma)
    np.testing.assert_allclose(p, p_k, rtol=1e-10, atol=1e-12)
    assert d0 == pytest.approx(d0_k, rel=1e-10)
    # (positive curvature along p: the pair is stored unless alpha = 0)
    g_new = g + 0.5 * p + 0.01 * np.random.default_rng(10).normal(size=N)
    for alpha in (0.5, 0.0):  # (0: no curvature, not stored)
        out = []
        for update in (_optimize._update_np, K._update):
            x = np.arange(N, dtype=float)
            S2, Y2, rho2 = S.copy(), Y.copy(), rho.copy()
            stored, gam, gmax = update(x, p, alpha, g, g_new, S2, Y2, rho2, 1)
            out.append((stored, gam, gmax, x, S2, Y2, rho2))
        (a, b) = out
        assert a[0] == b[0] and a[0] == (alpha > 0)
        assert a[1] == pytest.approx(b[1], rel=1e-10)
        assert a[2] == b[2]
        for u, v in zip(a[3:], b[3:]):
            np.testing.assert_allclose(u, v, rtol=1e-6 if dtype == np.float32
                                       else 1e-12)
    g_nan = g_new.copy()
    g_nan[3] = np.nan
    assert np.isnan(_optimize._update_np(np.zeros(N), p, 0.1, g, g_nan, S.copy(),
                                         Y.copy(), rho.copy(), 0)[2])


@pytest.mark.parametrize("k", [1, 3])
def test_dense_energy_equals_the_kernel_and_the_definition(k, monkeypatch):
    from mahal._lmnn_neighbors import lmnn_energy, prepare_energy

    X, y = _blobs(45, 3, 3, 2, spread=2.0)
    y[:2] = 5  # (a class of 2 members: fewer than k + 1 for k = 3)
    Xt = _blobs(20, 3, 3, 3, spread=2.0)[0]
    L = np.random.default_rng(1).normal(size=(3, 3))
    codes = np.unique(y, return_inverse=True)[1].astype(np.int64)
    tn = select_target_neighbors(X, codes, k)
    side = prepare_energy(X @ L.T, codes, tn, 4)
    E = lmnn_energy(side, Xt @ L.T, k, 0.4)
    np.testing.assert_allclose(E, naive_energy(X @ L.T, codes, tn, Xt @ L.T, k, 0.4),
                               rtol=1e-10, atol=1e-10)
    monkeypatch.setattr(_lmnn_dense, "_MAX_N", 0)
    np.testing.assert_allclose(E, lmnn_energy(side, Xt @ L.T, k, 0.4), rtol=1e-12,
                               atol=1e-12)


def test_dense_path_is_for_a_processs_first_small_fits(monkeypatch):
    # dense until the process has made _DENSE_EVALS dense evaluations, or until the
    # kernels are loaded: then the (faster) kernels, for small problems too
    X, y = _standardised(load_iris)
    tn = select_target_neighbors(X, y, 3)
    L0 = np.eye(X.shape[1])
    modules = {k: v for k, v in sys.modules.items() if k != "mahal._lmnn_kernels"}
    monkeypatch.setattr(sys, "modules", modules)  # (as if not loaded yet)
    monkeypatch.setattr(_lmnn_dense._dense, "done", 0)
    _, _, _, info = lmnn_solve(X, y, tn, L0, max_iter=200)
    assert info["n_searches"] == 0 and _lmnn_dense._dense.done == info["n_evals"]
    monkeypatch.setattr(_lmnn_dense._dense, "done", _lmnn_dense._DENSE_EVALS)
    _, _, _, info = lmnn_solve(X, y, tn, L0, max_iter=200)
    assert info["n_searches"] > 0  # (the kernel path)
    monkeypatch.setattr(_lmnn_dense._dense, "done", 0)
    modules["mahal._lmnn_kernels"] = importlib.import_module("mahal._lmnn_kernels")
    _, _, _, info = lmnn_solve(X, y, tn, L0, max_iter=200)
    assert info["n_searches"] > 0
