"""Tests of LMNN and LMNNEnergyClassifier against plain references."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import LMNN, LMNNEnergyClassifier
from mahal._lmnn_neighbors import find_impostors, select_target_neighbors
from mahal._lmnn_problem import lmnn_loss_grad
from mahal._lmnn_solver import lmnn_solve
from mahal._parallel import RowChunkPool


# ---------------------------------------------------------------------------
# Naive references (triple loops)


def naive_loss_grad(L, X, y, tn, mu=0.5):
    """The LMNN loss and its gradient in L, one triplet at a time."""
    f = 0.0
    g = np.zeros_like(L)
    for i in range(X.shape[0]):
        for j in tn[i]:
            if j < 0:
                continue
            a = X[i] - X[j]
            dij = np.sum((L @ a) ** 2)
            f += (1 - mu) * dij
            g += (1 - mu) * 2 * L @ np.outer(a, a)
            for l in range(X.shape[0]):
                if y[l] == y[i]:
                    continue
                b = X[i] - X[l]
                h = 1 + dij - np.sum((L @ b) ** 2)
                if h > 0:
                    f += mu * h
                    g += mu * 2 * L @ (np.outer(a, a) - np.outer(b, b))
    return f, g


def naive_target_neighbors(X, y, k):
    tn = np.full((X.shape[0], k), -1)
    for i in range(X.shape[0]):
        same = [j for j in range(X.shape[0]) if y[j] == y[i] and j != i]
        d = [np.sum((X[i] - X[j]) ** 2) for j in same]
        for c, idx in enumerate(np.argsort(d, kind="stable")[:k]):
            tn[i, c] = same[idx]
    return tn


def naive_energy(Z, y, tn, Zt, k, mu):
    """Energies of test points, straight from the definition."""
    classes = np.unique(y)
    E = np.zeros((Zt.shape[0], classes.shape[0]))
    d = lambda a, b: float(np.sum((a - b) ** 2))  # noqa: E731
    for t in range(Zt.shape[0]):
        for ci, c in enumerate(classes):
            idx = np.flatnonzero(y == c)
            dc = np.array([d(Zt[t], Z[j]) for j in idx])
            near = idx[np.argsort(dc)[:k]]
            e = 0.0
            for j in near:
                dj = d(Zt[t], Z[j])
                e += (1 - mu) * dj
                for l in np.flatnonzero(y != c):
                    e += mu * max(0.0, 1 + dj - d(Zt[t], Z[l]))
            for i in np.flatnonzero(y != c):
                for j in tn[i]:
                    if j >= 0:
                        e += mu * max(0.0, 1 + d(Z[i], Z[j]) - d(Z[i], Zt[t]))
            E[t, ci] = e
    return E


def _blobs(n=60, d=3, n_classes=3, seed=0, spread=1.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    centres = rng.normal(size=(n_classes, d)) * 1.5
    X = centres[y] + spread * rng.normal(size=(n, d)) * rng.uniform(0.3, 2.0, size=d)
    return X, y


# ---------------------------------------------------------------------------
# Objective, gradient, kernels


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_and_gradient_match_triple_loop(seed):
    X, y = _blobs(40, 4, 3, seed)
    tn = select_target_neighbors(X, y, 3)
    L = np.random.default_rng(seed).normal(size=(4, 4))
    f, g, _ = lmnn_loss_grad(L, X, y, tn, mu=0.3)
    f0, g0 = naive_loss_grad(L, X, y, tn, mu=0.3)
    assert f == pytest.approx(f0, rel=1e-10)
    np.testing.assert_allclose(g, g0, rtol=1e-8, atol=1e-8)
    # rectangular L (fewer components)
    L2 = L[:2]
    f, g, _ = lmnn_loss_grad(L2, X, y, tn, mu=0.3)
    f0, g0 = naive_loss_grad(L2, X, y, tn, mu=0.3)
    assert f == pytest.approx(f0, rel=1e-10)
    np.testing.assert_allclose(g, g0, rtol=1e-8, atol=1e-8)


def test_float32_screen_keeps_impostors_at_the_margin():
    # 40 components (the screened path) and points far from the origin, where the
    # float32 estimate ‖z_i‖² + ‖z_l‖² − 2 z_i·z_l is off by far more than the
    # distances that decide: impostors 1e-6 inside the margin must still count.
    from mahal import _lmnn_kernels as K

    rng = np.random.default_rng(0)
    r, m = 40, 30
    blocks = []
    for _ in range(m):  # (i, its target j, impostor candidate l)
        c = 100.0 * rng.normal(size=r)
        a = rng.uniform(0.5, 2.0)
        u, v = np.linalg.qr(rng.normal(size=(r, 2)))[0].T
        inside = rng.choice([-1e-6, 1e-6])
        blocks += [c, c + np.sqrt(a) * u, c + np.sqrt(1.0 + a + inside) * v]
    Z = np.array(blocks)
    tn = np.full((3 * m, 1), -1, dtype=np.int64)
    tn[0::3, 0] = np.arange(1, 3 * m, 3)
    indptr = np.zeros(3 * m + 1, dtype=np.int64)
    indptr[1::3] = 1
    indptr = np.cumsum(indptr)
    indices = np.arange(2, 3 * m, 3).astype(np.int64)
    norms = np.einsum("ij,ij->i", Z, Z)
    outs = []
    for screen in (True, False):
        out = [np.zeros(3 * m), np.zeros((3 * m, 1)), np.zeros(3 * m, dtype=np.int64),
               np.zeros(3 * m, dtype=np.int64)]
        a_dst, a_w = K.loss_weights(Z, Z.astype(np.float32), norms, screen, tn,
                                    indptr, indices, 0.5, 0.0, 0, 3 * m, *out)
        outs.append([a_dst, a_w] + out)
    d_il = np.einsum("ij,ij->i", Z[0::3] - Z[2::3], Z[0::3] - Z[2::3])
    d_ij = np.einsum("ij,ij->i", Z[0::3] - Z[1::3], Z[0::3] - Z[1::3])
    active = d_il < 1.0 + d_ij
    assert 0 < active.sum() < m
    np.testing.assert_array_equal(outs[0][0], indices[active])  # (a_dst)
    np.testing.assert_array_equal(outs[0][5][0::3], active)  # (a_cnt)
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_float32_screen_of_many_candidates_changes_nothing():
    # The screen takes a row's candidates four at a time, then the remainder one by
    # one; with rows of 5 to 40 candidates (every remainder mod 4), loss, weights
    # and active pairs equal those of the unscreened kernel bit for bit, and the
    # screen did rule candidates out.
    from mahal import _lmnn_kernels as K

    rng = np.random.default_rng(3)
    n, r = 120, 40
    Z = rng.normal(size=(n, r)) + 3.0 * rng.normal(size=(1, r))
    y = np.arange(n) % 3
    tn = select_target_neighbors(Z, y, 3)
    counts = rng.integers(5, 41, size=n)
    assert set(counts % 4) == {0, 1, 2, 3}
    other = [np.flatnonzero(y != y[i]) for i in range(n)]
    indices = np.concatenate([rng.permutation(o)[:c] for o, c in zip(other, counts)])
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    norms = np.einsum("ij,ij->i", Z, Z)
    outs = []
    for screen in (True, False):
        out = K.loss_buffers(n, 3)
        a_dst, a_w = K.loss_weights(Z, Z.astype(np.float32), norms, screen, tn,
                                    indptr, indices.astype(np.int64), 0.5, 0.0, 0, n,
                                    *out)
        outs.append([a_dst, a_w] + list(out))
    d = np.einsum("ij,ij->i", Z[np.repeat(np.arange(n), counts)] - Z[indices],
                  Z[np.repeat(np.arange(n), counts)] - Z[indices])
    rad = np.einsum("ikj,ikj->ik", Z[:, None] - Z[tn], Z[:, None] - Z[tn]).max(1) + 1
    inside = d < np.repeat(rad, counts)
    assert 0 < inside.sum() < 0.9 * inside.size
    assert outs[0][0].shape[0] > 0
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


def test_gradient_matches_finite_differences():
    X, y = _blobs(30, 3, 3, 4)
    tn = select_target_neighbors(X, y, 2)
    rng = np.random.default_rng(5)
    L = rng.normal(size=(3, 3))
    for smooth in (0.0, 0.3):
        f, g, _ = lmnn_loss_grad(L, X, y, tn, smooth=smooth)
        eps = 1e-6
        num = np.zeros_like(L)
        for a in range(3):
            for b in range(3):
                E = np.zeros_like(L)
                E[a, b] = eps
                fp = lmnn_loss_grad(L + E, X, y, tn, smooth=smooth)[0]
                fm = lmnn_loss_grad(L - E, X, y, tn, smooth=smooth)[0]
                num[a, b] = (fp - fm) / (2 * eps)
        np.testing.assert_allclose(g, num, rtol=1e-5, atol=1e-5)


def test_target_neighbors_match_brute_force():
    X, y = _blobs(50, 3, 4, 6)
    y[:3] = 7  # a class of 3 members: only 2 target neighbours each
    tn = select_target_neighbors(X, y, 3)
    np.testing.assert_array_equal(tn, naive_target_neighbors(X, y, 3))


@pytest.mark.parametrize("n_threads", [1, 2])
def test_impostor_search_equals_brute_force(n_threads):
    rng = np.random.default_rng(7)
    Z = rng.normal(size=(300, 5))
    y = rng.integers(0, 4, 300).astype(np.int64)
    rho2 = rng.uniform(0.5, 6.0, 300)
    D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    want = {(i, l) for i, l in zip(*np.nonzero((D < rho2[:, None])
                                                & (y[:, None] != y[None])))}
    pool = RowChunkPool(n_threads)
    try:
        src, dst = find_impostors(Z, y, rho2, pool=pool)
        assert set(zip(src.tolist(), dst.tolist())) == want
        assert src.shape[0] == len(want)  # no duplicates
    finally:
        pool.close()


def test_low_precision_search_equals_brute_force():
    # float32 products: equal to the exact search away from the radius boundary.
    rng = np.random.default_rng(8)
    Z = rng.normal(size=(400, 40)) * np.linspace(2.0, 0.1, 40)
    y = rng.integers(0, 5, 400).astype(np.int64)
    D = ((Z[:, None] - Z[None]) ** 2).sum(-1)
    rho2 = np.quantile(D, 0.05) * rng.uniform(0.5, 1.5, 400)
    inside = (D < rho2[:, None]) & (y[:, None] != y[None])
    near = np.abs(D - rho2[:, None]) < 1e-4 * rho2[:, None]  # rounding-sensitive
    src, dst = find_impostors(Z, y, rho2, low_precision=True)
    got = np.zeros_like(inside)
    got[src, dst] = True
    assert inside.sum() > 100
    assert np.array_equal(got & ~near, inside & ~near)


@pytest.mark.parametrize("max_candidates", [None, 10])
def test_cached_oracle_is_exact(max_candidates):
    # The solver's oracle (enlarged-radius candidates, float32 search, capped
    # fallback to the exact radius) gives the exact loss and gradient after a search.
    from mahal._lmnn_problem import _Problem
    from mahal._lmnn_solver import _LossOracle

    X, y = _blobs(200, 4, 3, 21)
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(2)
    oracle = _LossOracle(_Problem(X, y, tn, 0.5), 4, max_candidates=max_candidates)
    for _ in range(3):
        L = rng.normal(size=(4, 4))
        f, g, _ = oracle.evaluate(L, force_search=True)
        f0, g0, _ = lmnn_loss_grad(L, X, y, tn)
        assert f == pytest.approx(f0, rel=1e-12)
        np.testing.assert_allclose(g, g0, rtol=1e-10, atol=1e-10)
    if max_candidates is not None:
        assert oracle.n_capped >= 1


def _overlapping(n, d, n_classes, seed, n_dup=0):
    """Classes that overlap completely (random labels), optionally with ``n_dup``
    duplicated points: nearly every pair is an impostor."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if n_dup:
        X[-n_dup:] = X[:n_dup]
    y = rng.integers(0, n_classes, n)
    return X, y


@pytest.mark.parametrize("n_threads", [1, 3])
@pytest.mark.parametrize("smooth", [0.0, 0.4])
@pytest.mark.parametrize("n, d, n_classes", [(40, 3, 3), (120, 4, 40)])
def test_streamed_evaluation_matches_triple_loop(n, d, n_classes, smooth, n_threads):
    # Without a candidate graph (indptr None) the impostor terms come straight
    # from blocks of distances: same loss, gradient, active triplets and active
    # pairs as the graph's evaluation (and, for the exact hinge, as the triple
    # loop), for any number of threads, with duplicates and classes of 1-5 points.
    from mahal._lmnn_problem import _Problem

    X, y = _overlapping(n, d, n_classes, n + d, n_dup=5)
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(3)
    pool = RowChunkPool(n_threads)
    try:
        prob = _Problem(X, y, tn, 0.3, pool)
        for scale in (1.0, 0.2):
            L = scale * rng.normal(size=(d, d))
            Z = prob.transform(L)
            f, U, act, n_pairs = prob.weights(Z, None, None, smooth)
            indptr, indices = prob.search(Z, prob.radius(Z))
            f0, U0, act0, n_pairs0 = prob.weights(Z, indptr, indices, smooth)
            assert f == pytest.approx(f0, rel=1e-12)
            np.testing.assert_allclose(U, U0, rtol=1e-10, atol=1e-10 * np.abs(U0).max())
            assert (act, n_pairs) == (act0, n_pairs0)
            assert n_pairs > 0.3 * n * n * (1 - 1 / n_classes)  # (mostly impostors)
            if smooth == 0.0:
                fn, gn = naive_loss_grad(L, X, y, tn, mu=0.3)
                assert f == pytest.approx(fn, rel=1e-10)
                np.testing.assert_allclose(2 * U.T @ prob.Xc, gn, rtol=1e-8,
                                           atol=1e-8 * np.abs(gn).max())
    finally:
        pool.close()


def test_fit_over_the_memory_budget_stores_at_most_the_budget():
    # When even the impostors exceed the candidate budget (max_candidates), the
    # solver stores no graph larger than the budget and evaluates from blocks of
    # distances instead (the issue: 50000 points of random labels grew past 21 GB).
    # Exact values throughout, so it reaches the objective of the unbounded fit;
    # and, like the graph's evaluations, it does not depend on the thread count.
    # (600 points: above the dense NumPy path's bound, which stores no graph)
    X, y = _overlapping(600, 5, 3, 7)
    y = y.astype(np.int64)
    tn = select_target_neighbors(X, y, 3)
    fits = {}
    for budget, n_threads in ((None, 1), (1000, 1), (1000, 2)):
        L, _, _, info = lmnn_solve(X, y, tn, np.eye(5), max_iter=60,
                                   max_candidates=budget, n_threads=n_threads)
        fits[budget, n_threads] = L, info, lmnn_loss_grad(L, X, y, tn)[0]
    _, free, f_free = fits[None, 1]
    L, capped, f_capped = fits[1000, 1]
    assert free["peak_candidates"] > 10 * 1000 and free["n_streamed"] == 0
    assert capped["peak_candidates"] <= 1000 and capped["n_streamed"] > 0
    assert f_capped == pytest.approx(f_free, rel=0.01)
    # (n_threads=2 at 600 points: the pool itself is capped at one thread per 4096
    # rows, so the lanes are exercised by the streamed-evaluation test above)
    np.testing.assert_array_equal(fits[1000, 2][0], L)


def test_streamed_line_oracle_is_exact():
    # In the streamed mode every trial's value and slope are exact (no stale
    # graph), and an accepted step counts as verified.
    from mahal._lmnn_problem import _Problem
    from mahal._lmnn_solver import _LossOracle

    X, y = _overlapping(150, 4, 3, 11)
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(4)
    oracle = _LossOracle(_Problem(X, y, tn, 0.5), 4, max_candidates=100)
    L = rng.normal(size=(4, 4))
    oracle.start(L.ravel())
    assert oracle.streaming and oracle.indptr is None
    for alpha in (1e-6, 0.05, 0.3):
        P = rng.normal(size=(4, 4))
        oracle.set_direction(P.ravel())
        f, dphi = oracle.trial(alpha)
        f0, g0, _ = lmnn_loss_grad(L + alpha * P, X, y, tn)
        assert f == pytest.approx(f0, rel=1e-12)
        assert dphi == pytest.approx(np.vdot(g0, P), rel=1e-9)
        f, g = oracle.accept(alpha)
        L = L + alpha * P
        assert oracle.checked == (f, False)
        np.testing.assert_allclose(g.reshape(4, 4), g0, rtol=1e-9,
                                   atol=1e-9 * np.abs(g0).max())


@pytest.mark.parametrize("max_period", [1, 16])
def test_final_point_is_verified_by_a_search(max_period):
    # The solver's final L is one whose loss an impostor search verified: the
    # value it reports for it equals the exact loss (a fresh search at that L). A
    # small slack (candidates within 2% more than the margin radius: just above
    # the float32 search's rounding) makes the graph go stale fast, so an
    # unverified value would be too low.
    X, y = _blobs(150, 4, 3, 12)
    tn = select_target_neighbors(X, y, 3)
    iterates = {0: np.eye(4)}
    L, n_iter, _, info = lmnn_solve(
        X, y.astype(np.int64), tn, np.eye(4), max_iter=30, max_period=max_period,
        slack=0.02, callback=lambda L, it: iterates.__setitem__(it, L))
    assert sorted(iterates) == list(range(n_iter + 1))
    final = [f for it, f in info["verified"] if np.array_equal(iterates[it], L)]
    assert final
    assert final[-1] == pytest.approx(lmnn_loss_grad(L, X, y, tn)[0], rel=1e-12)
    # and every value reported as verified is exact at its point
    for it, f in info["verified"]:
        assert f == pytest.approx(lmnn_loss_grad(iterates[it], X, y, tn)[0],
                                  rel=1e-12)


def test_returns_the_best_point_a_search_verified():
    # With a tiny slack the candidate graph goes stale fast and L-BFGS can follow
    # its underestimated values uphill; the solver must not return a point worse
    # than one that a search verified during its last stage (this digits subset
    # and slack make that happen).
    from sklearn.datasets import load_digits
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    idx = np.random.default_rng(1).permutation(len(y))[:400]
    X, y = StandardScaler().fit_transform(X)[idx], y[idx]
    tn = select_target_neighbors(X, y, 3)
    iterates = {0: np.eye(64)}
    L, _, _, info = lmnn_solve(X, y, tn, np.eye(64), slack=0.02, max_iter=50,
                               callback=lambda L, it: iterates.__setitem__(it, L))
    exact = {it: lmnn_loss_grad(iterates[it], X, y, tn)[0]
             for it, _ in info["verified"]}
    # (float32 products here: the solver's points carry float32 rounding of L)
    assert info["low_precision"]
    for it, f in info["verified"]:
        assert f == pytest.approx(exact[it], rel=1e-6)
    f = lmnn_loss_grad(L, X, y, tn)[0]
    assert f <= min(exact.values()) * (1 + 1e-9)


def test_energy_kernel_matches_definition():
    X, y = _blobs(45, 3, 3, 8)
    y[:2] = 3  # a 2-member class (fewer than k members)
    Xt = _blobs(12, 3, 3, 9)[0]
    G = np.random.default_rng(1).normal(size=(3, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, ConvergenceWarning))
        metric = LMNN(max_iter=1).fit(X, y)
        metric.components_ = G  # any metric will do
        clf = LMNNEnergyClassifier(metric, n_neighbors=3, prefit=True,
                                   regularization=0.4).fit(X, y)
    tn = naive_target_neighbors(X, y, 3)
    # regularization weighs the pull term: the push weight μ is 1 − 0.4
    E0 = naive_energy(X @ G.T, y, tn, Xt @ G.T, 3, 0.6)
    np.testing.assert_allclose(clf.energy(Xt), E0, rtol=1e-9, atol=1e-9)
    np.testing.assert_array_equal(clf.predict(Xt), clf.classes_[E0.argmin(1)])


# ---------------------------------------------------------------------------
# Optimality against the SDP


@pytest.mark.parametrize("seed, float32_products", [(0, False), (1, False), (0, True)])
def test_solver_reaches_sdp_optimum(seed, float32_products):
    pytest.importorskip("cvxpy")
    from mahal.reference import lmnn, lmnn_objective

    X, y = _blobs(42, 3, 3, seed)
    tn = select_target_neighbors(X, y, 2)
    M_opt, f_opt = lmnn(X, y, tn, mu=0.5)
    assert lmnn_objective(M_opt, X, y, tn) == pytest.approx(f_opt, rel=1e-5)
    L, _, _, info = lmnn_solve(X, y.astype(np.int64), tn, np.eye(3), mu=0.5,
                               max_iter=300, tol=1e-10, low_precision=float32_products)
    assert info["low_precision"] == float32_products
    f = lmnn_objective(L.T @ L, X, y, tn)
    assert f == pytest.approx(lmnn_loss_grad(L, X, y, tn)[0], rel=1e-10)
    assert f >= f_opt * (1 - 1e-6)
    assert f <= f_opt * 1.01
    # the estimator with its defaults gets there too
    est = LMNN(n_neighbors=2, max_iter=300, tol=1e-10).fit(X, y)
    f_est = lmnn_objective(est.get_mahalanobis_matrix(), X, y, tn)
    assert f_est <= f_opt * 1.01


def test_wide_problem_uses_float32_products_at_equal_objective():
    # From n d r >= _F32_FLOPS the solver's products run in float32 by default; the
    # objective it reaches after 100 iterations equals the float64 solver's (here
    # within 0.5%; runs stopped far from the optimum, at 30, differ by ~1%).
    from mahal._lmnn_problem import _F32_FLOPS

    X, y = _blobs(1000, 130, 5, 31, spread=3.0)
    assert X.size * X.shape[1] >= _F32_FLOPS
    tn = select_target_neighbors(X, y, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fast, _, _, info_fast = lmnn_solve(X, y, tn, np.eye(130), max_iter=100)
        exact, _, _, info_exact = lmnn_solve(X, y, tn, np.eye(130), max_iter=100,
                                             low_precision=False)
    assert info_fast["low_precision"] and not info_exact["low_precision"]
    f_fast = lmnn_loss_grad(fast, X, y, tn)[0]
    f_exact = lmnn_loss_grad(exact, X, y, tn)[0]
    assert f_fast == pytest.approx(f_exact, rel=5e-3)


@pytest.mark.parametrize("split, float32_products", [(2, False), (13, False), (2, True)])
def test_default_budget_does_not_stall_on_digits(split, float32_products):
    # The default budget gets within 5% of a long run's objective on these digits
    # splits: on split 2 a last stage could stop on ftol after a few iterations (a
    # line search caught on a kink of the hinge), which the restart with a fresh
    # memory gets past; on split 13 L-BFGS could follow values of a stale impostor
    # graph, which the exact start of the last stage prevents. (The reference runs
    # 300 iterations with no decrease test: more than the default fit makes here.)
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    X, y = load_digits(return_X_y=True)
    X, _, y, _ = train_test_split(X, y, test_size=0.3, stratify=y,
                                  random_state=split)
    X = StandardScaler().fit_transform(X)
    tn = select_target_neighbors(X, y, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        # (LMNN's defaults: identity start for a full-rank metric, max_iter, tol)
        short = lmnn_solve(X, y, tn, np.eye(64), max_iter=LMNN().max_iter,
                           tol=LMNN().tol, low_precision=float32_products)[0]
        long = lmnn_solve(X, y, tn, np.eye(64), max_iter=300, tol=0.0,
                          low_precision=float32_products)[0]
    f_short = lmnn_loss_grad(short, X, y, tn)[0]
    f_long = lmnn_loss_grad(long, X, y, tn)[0]
    assert f_short <= 1.05 * f_long


# ---------------------------------------------------------------------------
# Estimator behaviour


def test_lmnn_improves_knn_on_iris_and_pipeline():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(0)
    X = np.column_stack([X, 5 * rng.normal(size=(150, 3))])  # noise features
    idx = rng.permutation(150)
    tr, te = idx[:100], idx[100:]
    base = KNeighborsClassifier(3).fit(X[tr], y[tr]).score(X[te], y[te])
    pipe = make_pipeline(LMNN(random_state=0), KNeighborsClassifier(3))
    pipe.fit(X[tr], y[tr])
    assert pipe.score(X[te], y[te]) > base
    est = pipe[0]
    assert est.components_.shape == (7, 7)
    assert est.n_features_in_ == 7 and est.n_iter_ >= 1


def test_callback_sees_every_iteration_of_every_pass():
    # scikit-learn NCA's callback(transformation, n_iter): called after every
    # iteration, n_iter counted over all passes, with the current transformation;
    # with one pass the solver's last verified iterate is the result.
    X, y, _, _ = _balance_train()
    seen = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = LMNN(n_components=3, max_iter=20, n_jobs=1,
                   callback=lambda L, it: seen.append((it, L))).fit(X, y)
        assert [it for it, _ in seen] == list(range(1, one.n_iter_ + 1))
        assert all(L.shape == (3, X.shape[1]) for _, L in seen)
        assert any(np.array_equal(L, one.components_) for _, L in seen)
        seen.clear()
        two = LMNN(n_components=3, max_iter=20, n_passes=2, n_jobs=1,
                   callback=lambda L, it: seen.append((it, L))).fit(X, y)
    assert two.n_passes_ == 2
    assert [it for it, _ in seen] == list(range(1, two.n_iter_ + 1))


def test_n_components_and_init():
    X, y = _blobs(60, 5, 3, 3)
    for init in ("pca", "lda", "identity", "random"):
        est = LMNN(n_components=2, init=init, random_state=0).fit(X, y)
        assert est.components_.shape == (2, 5)
        assert est.transform(X).shape == (60, 2)


@pytest.mark.parametrize("float32_products", [False, True])
def test_same_result_for_any_number_of_threads(float32_products):
    # 8200 points of 46 features: the kernels run on the pool's row chunks and the
    # products too (n r d above the size from which they are threaded); the sums
    # over chunks do not depend on the number of threads.
    X, y = _blobs(8200, 46, 3, 11)
    tn = select_target_neighbors(X, y, 3)
    L0 = np.random.default_rng(3).normal(size=(46, 46))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fits = [lmnn_solve(X, y, tn, L0, max_iter=4, n_threads=n,
                           low_precision=float32_products) for n in (2, 1)]
    np.testing.assert_array_equal(fits[0][0], fits[1][0])
    assert fits[0][1] == fits[1][1]


def test_deterministic_and_pickle():
    X, y = _blobs(1200, 4, 3, 11)
    a = LMNN(init="random", random_state=3, n_jobs=2).fit(X, y)
    b = LMNN(init="random", random_state=3, n_jobs=1).fit(X, y)
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12, atol=1e-12)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    clf = LMNNEnergyClassifier(n_jobs=2).fit(X, y)
    clf2 = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(clf2.energy(X), clf.energy(X))
    clone(clf)


def test_verbose_and_convergence_warning(capsys):
    X, y = _blobs(60, 3, 3, 12)
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        LMNN(max_iter=2, verbose=True).fit(X, y)
    out = capsys.readouterr().out
    assert "Iteration" in out and "Objective Value" in out and "Training took" in out


def _breast_cancer_train():
    from sklearn.preprocessing import StandardScaler

    from mahal import load_dataset

    d = load_dataset("breast_cancer", random_state=0)
    return StandardScaler().fit_transform(d.X_train), d.y_train


def test_default_fit_converges_near_a_long_run_optimum():
    # breast_cancer (398 × 30) needs a few hundred iterations; the reference is
    # a run of 3000 iterations with no decrease test (tol=0). The default fit
    # stops on tol within 0.2% of it, without a warning (under the previous
    # defaults, max_iter=50 and one iteration's decrease, it stopped on max_iter
    # 4% above, with a warning).
    X, y = _breast_cancer_train()
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        fit = LMNN().fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        long = LMNN(max_iter=3000, tol=0.0).fit(X, y)
    tn = fit.target_neighbors_
    f_fit, f_long = (lmnn_loss_grad(m.components_, X, y, tn)[0] for m in (fit, long))
    assert fit.n_iter_ < fit.max_iter
    assert f_long <= f_fit <= (1 + 2e-3) * f_long


def test_fit_stopped_by_max_iter_warns_and_is_not_converged():
    X, y = _breast_cancer_train()
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        short = LMNN(max_iter=30).fit(X, y)
    fit = LMNN().fit(X, y)
    tn = fit.target_neighbors_
    f_short, f_fit = (lmnn_loss_grad(m.components_, X, y, tn)[0] for m in (short, fit))
    assert short.n_iter_ == 30 and f_short > (1 + 2e-3) * f_fit


def test_energy_classifier_and_prefit():
    X, y = load_iris(return_X_y=True)
    rng = np.random.default_rng(1)
    X = np.column_stack([X, 3 * rng.normal(size=(150, 2))])
    idx = rng.permutation(150)
    tr, te = idx[:100], idx[100:]
    clf = LMNNEnergyClassifier().fit(X[tr], y[tr])
    base = KNeighborsClassifier(3).fit(X[tr], y[tr]).score(X[te], y[te])
    assert clf.score(X[te], y[te]) >= base
    assert clf.energy(X[te]).shape == (50, 3)
    # a prefit metric learner is used as is
    m = clf.metric_learner_
    clf2 = LMNNEnergyClassifier(m, prefit=True).fit(X[tr], y[tr])
    assert clf2.metric_learner_ is m
    np.testing.assert_array_equal(clf2.predict(X[te]), clf.predict(X[te]))


# ---------------------------------------------------------------------------
# Bad input


def test_bad_input():
    X, y = _blobs(30, 3, 3, 13)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LMNN().fit(X, np.zeros(30))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LMNN().fit(Xn, y)
    with pytest.raises(ValueError, match="single member"):
        LMNN().fit(X[:4], np.arange(4))
    with pytest.raises(ValueError, match="n_neighbors"):
        LMNN(n_neighbors=0).fit(X, y)
    with pytest.raises(ValueError, match="regularization"):
        LMNN(regularization=1.5).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        LMNN(n_components=9).fit(X, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        LMNNEnergyClassifier().fit(X, np.zeros(30))


@pytest.mark.parametrize("param, value", [
    ("n_neighbors", 0), ("n_neighbors", True), ("max_iter", 1.5), ("n_passes", 0),
    ("tol", -1.0), ("regularization", 0.0), ("smoothing", ()), ("smoothing", [1, -1]),
    ("smoothing", [np.nan]), ("init", "foo"), ("n_jobs", 0), ("n_components", 0)])
def test_bad_parameter_gets_one_clear_message(param, value):
    # scikit-learn's declarative validation: the message names the parameter, the
    # estimator, what is allowed and the value given
    X, y = _blobs(30, 3, 3, 13)
    with pytest.raises(ValueError, match=f"The '{param}' parameter of LMNN must be "
                                         r".* Got .* instead\."):
        LMNN(**{param: value}).fit(X, y)


def test_small_class_warns_and_uses_classmates():
    X, y = _blobs(30, 3, 3, 14)
    y = y.copy()
    y[:2] = 5  # two points: one target neighbour each
    with pytest.warns(UserWarning, match="fewer than n_neighbors"):
        est = LMNN().fit(X, y)
    tn = est.target_neighbors_
    assert tn[0, 0] == 1 and tn[1, 0] == 0 and np.all(tn[:2, 1:] == -1)
    y[0] = 6  # a singleton: no target neighbour, it only acts as an impostor
    with pytest.warns(UserWarning, match="singletons"):
        est = LMNN().fit(X, y)
    assert np.all(est.target_neighbors_[0] == -1)


def test_duplicates_and_constant_features():
    X, y = _blobs(40, 3, 2, 15)
    X = np.vstack([X, X[:10]])  # exact duplicates
    y = np.concatenate([y, y[:10]])
    X = np.column_stack([X, np.full(50, 3.0)])  # constant feature
    est = LMNN().fit(X, y)
    assert np.all(np.isfinite(est.components_))
    clf = LMNNEnergyClassifier().fit(X, y)
    assert np.all(np.isfinite(clf.energy(X)))


# ---------------------------------------------------------------------------
# scikit-learn conventions


@parametrize_with_checks([LMNN(), LMNN(n_passes=2), LMNNEnergyClassifier()])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (UserWarning, ConvergenceWarning))
        check(estimator)


@pytest.mark.parametrize("smooth", [0.0, 0.5])
def test_add_missed_kernel(smooth):
    # Pairs of the new candidate graph that the old one lacks and that lie inside
    # the margin radius, against a set-based loop; with ``patch``, the evaluation
    # on the old graph plus their terms equals the evaluation on the new graph.
    from mahal import _lmnn_kernels as K
    from mahal._lmnn_problem import _Problem

    X, y = _blobs(60, 3, 3, 4)
    tn = select_target_neighbors(X, y, 3)
    prob = _Problem(X, y, tn, 0.4)
    Z = prob.transform(np.random.default_rng(4).normal(size=(3, 3)))
    radius = prob.radius(Z)
    rng = np.random.default_rng(6)
    n = len(y)

    def graph(p):  # random other-class candidates
        rows = [np.flatnonzero((rng.random(n) < p) & (y != y[i])) for i in range(n)]
        ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])]).astype(np.int64)
        return rows, ptr, np.concatenate(rows).astype(np.int64)

    old_rows, old_ptr, old_idx = graph(0.4)
    new_rows, new_ptr, new_idx = graph(0.7)
    expect = sum(1 for i in range(n) for l in set(new_rows[i]) - set(old_rows[i])
                 if ((Z[i] - Z[l]) ** 2).sum() < radius[i])
    assert expect > 10
    U0 = np.zeros((1, 3))
    got = K.add_missed(old_ptr, old_idx, new_ptr, new_idx, Z, radius, prob.target_neighbors,
                       prob.mu, smooth, U0, False)
    assert got[0] == expect and not U0.any()
    # a graph holds all of its own pairs
    assert K.add_missed(new_ptr, new_idx, new_ptr, new_idx, Z, radius, prob.target_neighbors,
                        prob.mu, smooth, U0, False)[0] == 0
    # patch: old ∪ new evaluated directly against old + the missed terms
    both = [np.union1d(o, w) for o, w in zip(old_rows, new_rows)]
    b_ptr = np.concatenate([[0], np.cumsum([len(r) for r in both])]).astype(np.int64)
    b_idx = np.concatenate(both).astype(np.int64)
    f_b, U_b, act_b, _ = prob.weights(Z, b_ptr, b_idx, smooth)
    f_o, U_o, act_o, _ = prob.weights(Z, old_ptr, old_idx, smooth)
    n_miss, df, dact = K.add_missed(old_ptr, old_idx, b_ptr, b_idx, Z, radius,
                                    prob.target_neighbors, prob.mu, smooth, U_o, True)
    assert n_miss == expect and dact > 0
    assert f_o + df == pytest.approx(f_b, rel=1e-12)
    assert act_o + dact == act_b
    np.testing.assert_allclose(U_o, U_b, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("serial", [True, False])
@pytest.mark.parametrize("low_precision", [False, True])
def test_line_oracle_is_exact(low_precision, serial):
    # The solver's line oracle: a trial along P gives the loss at L + αP and the
    # directional derivative ⟨∇f, P⟩ on the current candidate graph; a step
    # accepted with a search due gives the exact loss and gradient, whether the
    # new graph found missed impostors (then patched in) or not. With float32
    # products, the trial point is Z + α Q with Q = X Pᵀ in float32: value and
    # slope are exact for that point and direction, and within float32 rounding
    # of those at L + αP. Both ways of making a trial: one compiled call (small
    # problems, serial) and the row-chunked kernels.
    from mahal._lmnn_problem import _Problem
    from mahal._lmnn_solver import _LossOracle

    X, y = _blobs(200, 4, 3, 21)
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(5)
    prob = _Problem(X, y, tn, 0.5)
    assert prob.serial
    prob.serial = serial
    oracle = _LossOracle(prob, 4, slack=0.0)
    oracle.low_precision = low_precision
    rel = 1e-5 if low_precision else 1e-10
    L = rng.normal(size=(4, 4))
    oracle.start(L.ravel())
    n_stale = 0
    for alpha in (1e-6, 0.05, 0.3):
        P = rng.normal(size=(4, 4))
        oracle.set_direction(P.ravel())
        Q = oracle.ZP
        assert Q.dtype == (np.float32 if low_precision else np.float64)
        f, dphi = oracle.trial(alpha)
        Zt = oracle.Z + alpha * Q.astype(np.float64)
        ft, Ut, _, _ = oracle.problem.weights(Zt, oracle.indptr, oracle.indices, 0.0)
        assert f == pytest.approx(ft, rel=1e-12)
        assert dphi == pytest.approx(2 * np.vdot(Ut, Q.astype(np.float64)), rel=1e-10)
        f0, g0, _ = oracle.problem.loss_grad(oracle.problem.transform(L + alpha * P),
                                          oracle.indptr, oracle.indices, 0.0)
        assert f == pytest.approx(f0, rel=rel / 10)
        assert dphi == pytest.approx(np.vdot(g0, P), rel=rel)
        L = L + alpha * P
        f1, g1, _ = lmnn_loss_grad(L, X, y, tn)
        n_stale += f1 > f0 * (1 + 1e-9)  # (slack 0: the stale graph misses some)
        oracle.since = oracle.period  # a search is due
        n_evals = oracle.n_evals
        f, g = oracle.accept(alpha)
        assert oracle.n_evals == n_evals  # (the trial's evaluation was kept)
        assert f == pytest.approx(f1, rel=rel / 10)
        # (float32: the error is relative to the largest entries)
        np.testing.assert_allclose(g.reshape(4, 4), g1, rtol=rel,
                                   atol=rel * np.abs(g1).max())
    assert n_stale == 2


def test_trial_point_carries_its_screening_inputs():
    # A line-search trial point comes with its squared row norms and float32 copy
    # (K.step makes all three in one pass); with 40 components the loss kernel
    # screens candidates with them, and the trial's value equals an evaluation
    # that makes them from scratch.
    from mahal._lmnn_problem import _SCREEN_DIM, _Problem
    from mahal._lmnn_solver import _LossOracle

    X, y = _blobs(300, 40, 3, 4)
    assert X.shape[1] >= _SCREEN_DIM
    tn = select_target_neighbors(X, y, 3)
    rng = np.random.default_rng(2)
    oracle = _LossOracle(_Problem(X, y, tn, 0.5), 40)
    oracle.start((np.eye(40) + 0.1 * rng.normal(size=(40, 40))).ravel())
    oracle.set_direction(rng.normal(size=40 * 40))
    for alpha in (0.01, 0.2):
        f, _ = oracle.trial(alpha)
        Zt = oracle.Z + alpha * oracle.ZP
        Z32, norms = oracle._aux
        np.testing.assert_array_equal(Z32, oracle._Zt.astype(np.float32))
        np.testing.assert_allclose(oracle._Zt, Zt, rtol=1e-14, atol=1e-12)
        np.testing.assert_allclose(norms, (Zt ** 2).sum(1), rtol=1e-12)
        ft = oracle.problem.weights(Zt, oracle.indptr, oracle.indices, 0.0)[0]
        assert f == pytest.approx(ft, rel=1e-12)


@pytest.mark.parametrize("n, n_jobs, limited", [(600, 1, True), (600, 2, False),
                                                (8192, 2, True)])
def test_blas_threads_follow_the_shared_policy(n, n_jobs, limited):
    # One thread (n_jobs=1): BLAS too is limited to one. With more, BLAS keeps its
    # own threads while the kernels run serially (below 2 × 4096 points) and is
    # limited to one while they run on the pool's threads. (Seen from the
    # callback, which runs inside the fit.)
    from threadpoolctl import threadpool_info, threadpool_limits

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    seen = []
    X, y = _blobs(n, 3, 3, 4)
    with threadpool_limits(2, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        outside = blas_threads()
        LMNN(max_iter=2, n_jobs=n_jobs,
             callback=lambda L, it: seen.append(blas_threads())).fit(X, y)
    assert seen and all(s == ([1] * len(outside) if limited else outside)
                        for s in seen)


@pytest.mark.parametrize("n", [700, 200])
def test_find_impostors_chunked_scan_matches_bruteforce(n):
    # The blocked search's scan (700 points) and the one-pass search of small
    # problems (200 points: n² r below _SMALL_SEARCH), both with many pairs and
    # buffer growth, equal a dense check; max_pairs gives up.
    from mahal._lmnn_neighbors import _SMALL_SEARCH

    assert (n * n * 3 <= _SMALL_SEARCH) == (n == 200)
    rng = np.random.default_rng(5)
    Z = rng.normal(size=(n, 3))
    y = rng.integers(0, 4, size=n).astype(np.int64)
    rho2 = rng.uniform(0.5, 3.0, size=n)
    src, dst = find_impostors(Z, y, rho2)
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    want = (D < rho2[:, None]) & (y[:, None] != y[None, :])
    got = np.zeros_like(want)
    got[src, dst] = True
    assert src.shape[0] == want.sum() > 8 * n
    assert np.array_equal(got, want)
    assert find_impostors(Z, y, rho2, max_pairs=int(want.sum()) - 1) is None


# ---------------------------------------------------------------------------
# Multi-pass LMNN


def _balance_train():
    from mahal import load_dataset
    from sklearn.preprocessing import StandardScaler

    d = load_dataset("balance", random_state=0)
    sc = StandardScaler().fit(d.X_train)
    return sc.transform(d.X_train), d.y_train, sc.transform(d.X_test), d.y_test


def test_multi_pass_is_warm_started_solve_with_new_targets():
    X, y, _, _ = _balance_train()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = LMNN(n_jobs=1).fit(X, y)
        two = LMNN(n_passes=2, n_jobs=1).fit(X, y)
    # reference: the 3 nearest classmates in the learned space, by a full
    # distance matrix; balance is a lattice, so equal difference vectors give
    # exact ties: compare the distances of the chosen targets, not their indices
    Z = one.transform(X)
    D = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    D[y[:, None] != y[None, :]] = np.inf
    np.fill_diagonal(D, np.inf)
    ref = np.sort(D, axis=1)[:, :3]
    tn = two.target_neighbors_
    assert np.all(y[tn] == y[:, None]) and np.all(tn != np.arange(len(y))[:, None])
    np.testing.assert_allclose(np.sort(np.take_along_axis(D, tn, 1), axis=1), ref,
                               rtol=1e-9, atol=1e-12)
    assert np.count_nonzero(np.any(tn != one.target_neighbors_, axis=1)) > 0
    y_enc = np.unique(y, return_inverse=True)[1].astype(np.int64)
    L, n_iter, _, _ = lmnn_solve(X, y_enc, tn, one.components_,
                                 max_iter=two.max_iter)
    assert two.n_passes_ == 2
    np.testing.assert_allclose(two.components_, L, rtol=1e-10, atol=1e-12)
    assert two.n_iter_ == one.n_iter_ + n_iter


def test_multi_pass_stops_when_target_neighbors_do_not_change():
    # in one dimension any metric is a scaling: the nearest classmates stay the same
    pos = np.array([0.0, 1.0, 3.0, 7.0, 15.0])
    X = np.concatenate([pos, pos + 0.5]).reshape(-1, 1)
    y = np.repeat([0, 1], 5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        one = LMNN(n_neighbors=2, n_jobs=1).fit(X, y)
        many = LMNN(n_neighbors=2, n_passes=4, n_jobs=1).fit(X, y)
    assert many.n_passes_ == 1 and one.n_passes_ == 1
    np.testing.assert_array_equal(many.components_, one.components_)
    assert many.n_iter_ == one.n_iter_


def test_multi_pass_lowers_balance_error():
    # Weinberger & Saul's balance figure (5.86%) is below what one pass reaches:
    # the input space's nearest classmates on balance's lattice are poor targets
    X, y, Xt, yt = _balance_train()
    err = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for p in (1, 4):
            m = LMNN(n_passes=p, n_jobs=1).fit(X, y)
            knn = KNeighborsClassifier(3).fit(m.transform(X), y)
            err[p] = 1 - knn.score(m.transform(Xt), yt)
    assert err[4] < err[1] - 0.05


def test_energy_uses_the_learners_multi_pass_targets():
    X, y = _blobs(45, 3, 3, 8, spread=2.0)
    Xt = _blobs(12, 3, 3, 9, spread=2.0)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        metric = LMNN(n_passes=3, n_jobs=1).fit(X, y)
    tn = metric.target_neighbors_
    assert metric.n_passes_ >= 2
    assert np.any(tn != naive_target_neighbors(X, y, 3))
    clf = LMNNEnergyClassifier(metric, prefit=True).fit(X, y)
    G = metric.components_
    E0 = naive_energy(X @ G.T, y, tn, Xt @ G.T, 3, 0.5)
    np.testing.assert_allclose(clf.energy(Xt), E0, rtol=1e-9, atol=1e-9)


def test_target_neighbor_ties_go_to_the_lower_index():
    # A lattice scaled by 0.1 (not exact in binary): its many tied distances come
    # out unequal in the last bits, differently for different summation orders.
    # Ties must still be broken by index, as on the exact integer lattice.
    rng = np.random.default_rng(3)
    for d in (3, 4, 16):
        Xi = rng.integers(0, 4, size=(300, d)).astype(float)
        y = rng.integers(0, 3, 300)
        want = naive_target_neighbors(Xi, y, 3)  # exact integer arithmetic
        np.testing.assert_array_equal(select_target_neighbors(Xi, y, 3), want)
        np.testing.assert_array_equal(select_target_neighbors(Xi * 0.1, y, 3), want)
        np.testing.assert_array_equal(select_target_neighbors(Xi * 0.1 + 7.3, y, 3),
                                      want)
        # an offset far larger than the spread (exact here: integers below 2⁵³)
        # must not cancel the Gram-trick distances away
        np.testing.assert_array_equal(select_target_neighbors(Xi + 1e9, y, 3), want)
