"""L-BFGS over a line oracle (mahal._optimize) against closed forms and scipy."""

import numpy as np
import pytest
from scipy.optimize import minimize, rosen, rosen_der

from mahal._optimize import (CONVERGED, LINE_SEARCH_FAILED, MAX_ITER, FunctionLine,
                             _two_loop, _update, lbfgs, line_search)


def _quadratic(seed, n=30):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(n, n))
    A = A @ A.T + np.eye(n)
    b = rng.normal(size=n)
    return A, b, FunctionLine(lambda x: (0.5 * x @ A @ x - b @ x, A @ x - b))


@pytest.mark.parametrize("seed", [0, 1])
def test_quadratic_reaches_the_solution(seed):
    A, b, oracle = _quadratic(seed)
    res = lbfgs(oracle, np.zeros(30), 500, ftol=1e-15, gtol=1e-10)
    assert res.status == CONVERGED
    np.testing.assert_allclose(res.x, np.linalg.solve(A, b), atol=1e-7)
    assert res.fun == pytest.approx(-0.5 * b @ np.linalg.solve(A, b), rel=1e-12)


@pytest.mark.parametrize("n", [2, 10, 40])
def test_rosenbrock_like_scipy(n):
    # as accurate as scipy's L-BFGS-B, in a comparable number of evaluations
    x0 = np.full(n, -1.2)
    x0[1::2] = 1.0
    oracle = FunctionLine(lambda x: (rosen(x), rosen_der(x)))
    res = lbfgs(oracle, x0, 2000, ftol=1e-15, gtol=1e-9)
    ref = minimize(lambda x: (rosen(x), rosen_der(x)), x0, jac=True,
                   method="L-BFGS-B",
                   options=dict(maxiter=2000, ftol=1e-15, gtol=1e-9, maxcor=20))
    assert res.status == CONVERGED
    np.testing.assert_allclose(res.x, np.ones(n), atol=1e-6)
    assert res.fun <= max(ref.fun, 1e-12)
    assert oracle.n_evals <= 1.5 * ref.nfev
    assert res.nfev + 1 == oracle.n_evals  # trials + the start


def test_max_iter_and_callback():
    _, _, oracle = _quadratic(3)
    seen = []
    res = lbfgs(oracle, np.zeros(30), 4, ftol=0.0, callback=lambda k, f, x: seen.append(
        (k, f, x.copy())))
    assert res.status == MAX_ITER and res.nit == 4
    assert [k for k, _, _ in seen] == [1, 2, 3, 4]
    assert all(f1 < f0 for (_, f0, _), (_, f1, _) in zip(seen, seen[1:]))
    assert seen[-1][1] == res.fun
    np.testing.assert_array_equal(seen[-1][2], res.x)


def test_two_loop_matches_dense_bfgs_inverse():
    # The two-loop recursion equals the product with the BFGS inverse-Hessian
    # update applied pair by pair to gamma * I (oldest pair first, circular buffer).
    rng = np.random.default_rng(2)
    N, m = 7, 4
    S = rng.normal(size=(m, N))
    Y = S @ (np.eye(N) + 0.1 * rng.normal(size=(N, N)))  # sᵀy > 0 for these
    Y = np.array([y if s @ y > 0 else -y for s, y in zip(S, Y)])
    rho = 1.0 / np.einsum("ij,ij->i", S, Y)
    head, count, gamma = 2, 3, 0.7  # newest at index 1, then 0, then 3
    H = gamma * np.eye(N)
    for i in [(head - count + c) % m for c in range(count)]:
        V = np.eye(N) - rho[i] * np.outer(Y[i], S[i])
        H = V.T @ H @ V + rho[i] * np.outer(S[i], S[i])
    g = rng.normal(size=N)
    p, d0 = _two_loop(g, S, Y, rho, head, count, gamma)
    np.testing.assert_allclose(p, -H @ g, rtol=1e-12, atol=1e-12)
    assert d0 == pytest.approx(-g @ H @ g, rel=1e-12)


@pytest.mark.parametrize("curved", [True, False])
def test_update_stores_a_pair_only_with_positive_curvature(curved):
    # against the textbook step: x += s, (s, y) stored at head with rho = 1 / sᵀy
    # and gamma = sᵀy / yᵀy, only if sᵀy > 1e-10 yᵀy; the other slots untouched
    rng = np.random.default_rng(3)
    N, m, head = 9, 4, 2
    x, p, g = rng.normal(size=(3, N))
    alpha = 0.3
    s = alpha * p
    y = s if curved else -s  # sᵀy > 0, or < 0
    g_new = g + y
    S, Y, rho = rng.normal(size=(m, N)), rng.normal(size=(m, N)), rng.normal(size=m)
    S0, Y0, rho0, x0 = S.copy(), Y.copy(), rho.copy(), x.copy()
    stored, gamma, gmax = _update(x, p, alpha, g, g_new, S, Y, rho, head)
    np.testing.assert_allclose(x, x0 + s, rtol=1e-15)
    assert gmax == np.abs(g_new).max()
    assert stored is curved
    keep = np.arange(m) != head
    np.testing.assert_array_equal(S[keep], S0[keep])
    np.testing.assert_array_equal(Y[keep], Y0[keep])
    np.testing.assert_array_equal(rho[keep], rho0[keep])
    if curved:
        np.testing.assert_allclose(S[head], s, rtol=1e-15)
        np.testing.assert_allclose(Y[head], y, rtol=1e-12, atol=1e-15)
        assert rho[head] == pytest.approx(1.0 / (s @ y), rel=1e-12)
        assert gamma == pytest.approx((s @ y) / (y @ y), rel=1e-12)
    else:
        assert (S[head] == S0[head]).all() and rho[head] == rho0[head]


def test_update_reports_a_nan_gradient():
    # max |g_new| is NaN when the gradient has a NaN (as numpy's max), so that
    # lbfgs never takes a NaN gradient for a converged one (gtol)
    N = 64
    for where in ([0], [N - 1], [5, 40], list(range(N))):
        g_new = np.linspace(1.0, 2.0, N)
        g_new[where] = np.nan
        S, Y = np.zeros((2, N)), np.zeros((2, N))
        _, _, gmax = _update(np.zeros(N), np.ones(N), 0.1, np.zeros(N), g_new, S, Y,
                             np.zeros(2), 0)
        assert np.isnan(gmax)
        assert not gmax <= 1e-12


def test_float32_memory_for_large_problems(monkeypatch):
    # From _F32_MEMORY bytes of float64 pairs on, the pairs are stored in float32;
    # rho is computed from the stored (rounded) pairs, and L-BFGS still reaches
    # the solution of an ill-conditioned quadratic (to the rounding floor of its
    # value, ~1e-6) in about as many iterations.
    from mahal import _optimize

    N = 30_000
    rng = np.random.default_rng(7)
    a = np.exp(rng.uniform(0, np.log(1e3), N))
    b = rng.normal(size=N)

    def run():
        oracle = FunctionLine(lambda x: (0.5 * (a * x * x).sum() - b @ x, a * x - b))
        return lbfgs(oracle, np.zeros(N), 500, ftol=0.0, gtol=1e-8)

    assert 16 * 20 * N >= _optimize._F32_MEMORY
    res32 = run()
    monkeypatch.setattr(_optimize, "_F32_MEMORY", np.inf)
    res64 = run()
    assert res32.memory[0].dtype == np.float32 and res64.memory[0].dtype == np.float64
    for res in (res32, res64):
        assert res.status == CONVERGED
        np.testing.assert_allclose(res.x, b / a, rtol=0, atol=1e-5)
    assert res32.nit <= 1.2 * res64.nit
    S, Y, rho, head, count = res32.memory[:5]
    i = (head - 1) % 20
    assert rho[i] == pytest.approx(1.0 / (S[i].astype(np.float64)
                                          @ Y[i].astype(np.float64)), rel=1e-12)


def test_line_search_meets_strong_wolfe():
    c1, c2 = 1e-4, 0.9
    rng = np.random.default_rng(4)
    for _ in range(20):
        x0 = rng.normal(size=6) * 2
        oracle = FunctionLine(lambda x: (rosen(x), rosen_der(x)))
        f0, g0 = oracle.start(x0)
        p = -g0
        oracle.set_direction(p)
        d0 = float(g0 @ p)
        alpha, f, _ = line_search(oracle, f0, d0, 1.0 / np.linalg.norm(g0), c1, c2)
        assert alpha > 0
        g = rosen_der(x0 + alpha * p)
        assert f == pytest.approx(rosen(x0 + alpha * p))
        assert f <= f0 + c1 * alpha * d0
        assert abs(g @ p) <= -c2 * d0


def test_no_descent_possible_reports_failure():
    # A "gradient" that points the wrong way: no step decreases the value.
    oracle = FunctionLine(lambda x: (float(x @ x), -2.0 * x))
    res = lbfgs(oracle, np.ones(3), 10)
    assert res.status == LINE_SEARCH_FAILED and res.nit == 0
    np.testing.assert_array_equal(res.x, np.ones(3))


def test_warm_memory_continues_a_run():
    # A run split in two, the second warm-started with the first's correction
    # pairs, follows the single run exactly.
    A, b, _ = _quadratic(5)

    def fun(x):
        return 0.5 * x @ A @ x - b @ x, A @ x - b

    one = lbfgs(FunctionLine(fun), np.zeros(30), 12, ftol=0.0)
    first = lbfgs(FunctionLine(fun), np.zeros(30), 5, ftol=0.0)
    second = lbfgs(FunctionLine(fun), first.x, 7, ftol=0.0, warm=first)
    cold = lbfgs(FunctionLine(fun), first.x, 7, ftol=0.0)
    np.testing.assert_allclose(second.x, one.x, rtol=1e-10, atol=1e-12)
    assert np.abs(cold.x - one.x).max() > 1e-6


@pytest.mark.parametrize("window", [1, 5, 10])
def test_window_stops_at_the_first_small_average_decrease(window):
    # reference: the values the run went through (FunctionLine's value at an
    # accepted point is its line search's), and the rule applied to them by hand
    x0 = np.full(6, -1.2)
    x0[1::2] = 1.0
    oracle = FunctionLine(lambda x: (rosen(x), rosen_der(x)))
    f = [oracle.start(x0)[0]]
    ftol = 1e-4
    res = lbfgs(oracle, x0, 500, ftol=ftol, gtol=0.0, window=window,
                callback=lambda nit, fk, x: f.append(fk))

    def met(k):  # the rule at iteration k, over iterations k − window + 1 .. k
        return k >= window and f[k - window] - f[k] <= window * ftol * max(
            abs(f[k - window]), abs(f[k]), 1.0)

    assert res.status == CONVERGED
    stop = next(k for k in range(1, len(f)) if met(k))
    assert res.nit == stop == len(f) - 1
    # the wider window does not stop on one iteration of little progress
    if window > 1:
        assert any(f[k - 1] - f[k] <= ftol * max(abs(f[k - 1]), abs(f[k]), 1.0)
                   for k in range(1, stop))


@pytest.mark.parametrize("stall", [(2, 0.5), (3, 0.1)])
def test_stall_stops_at_the_first_flat_stretch(stall):
    # reference: the two rules applied by hand to the values the run went through;
    # the run stops at the first iteration where either is met, and the stall
    # rule, tested on fewer iterations than the window, stops it sooner
    x0 = np.full(6, -1.2)
    x0[1::2] = 1.0
    oracle = FunctionLine(lambda x: (rosen(x), rosen_der(x)))
    f = [oracle.start(x0)[0]]
    ftol, window = 1e-4, 30
    res = lbfgs(oracle, x0, 500, ftol=ftol, gtol=0.0, window=window, stall=stall,
                callback=lambda nit, fk, x: f.append(fk))
    s, c = stall

    def met(k):
        flat = k >= s and f[k - s] - f[k] <= c * ftol * max(abs(f[k - s]), abs(f[k]),
                                                            1.0)
        average = k >= window and f[k - window] - f[k] <= window * ftol * max(
            abs(f[k - window]), abs(f[k]), 1.0)
        return flat or average

    assert res.status == CONVERGED
    stop = next(k for k in range(1, len(f)) if met(k))
    assert res.nit == stop == len(f) - 1
    without = lbfgs(FunctionLine(lambda x: (rosen(x), rosen_der(x))), x0, 500,
                    ftol=ftol, gtol=0.0, window=window)
    assert res.nit < without.nit


def test_rounding_floor_ends_as_converged():
    # values carry noise of 1e-13 relative (as a long sum's rounding does): near
    # the optimum no step can show a sufficient decrease, and the run ends as
    # converged at the solution (a wrong gradient still fails: the test above)
    A, b, _ = _quadratic(3)
    x_star = np.linalg.solve(A, b)
    f_star = -0.5 * b @ x_star

    def fun(x):
        noise = 1e-13 * abs(f_star) * np.sin(1e9 * x.sum())
        return 0.5 * x @ A @ x - b @ x + noise, A @ x - b

    res = lbfgs(FunctionLine(fun), np.zeros(30), 500, ftol=0.0, gtol=0.0)
    assert res.status == CONVERGED and res.nit < 500
    np.testing.assert_allclose(res.x, x_star, atol=1e-5)
