"""Tests of the single-block evaluation of NCA's and MLKR's softmax (small ``n``:
one symmetric ``n × n`` matrix) against the row-blocked evaluation, and of its
``exp`` kernel against NumPy's."""

from functools import partial

import numpy as np
import pytest
from _softmax_helpers import fits_for_each_n_jobs

from mahal import MLKR, NCA
from mahal import _softmax_blocks as B
from mahal._mlkr_solver import mlkr_problem
from mahal._nca_solver import nca_problem
from mahal._softmax_kernels import _exp_shifted_row


def _data(n, d, seed=0, n_far=0, n_twins=0):
    """Points, class labels and regression targets; the first ``n_far`` points moved
    far from all others (squared distances of thousands), the next ``n_twins`` of
    them given a close twin."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    X[:n_far] *= 40 + 20 * rng.random((n_far, 1))
    X[n_far:n_far + n_twins] = X[:n_twins] + 1e-3 * rng.normal(size=(n_twins, d))
    y = rng.integers(0, 3, n)
    t = X[:, 0] + np.sin(X[:, 1]) + 0.1 * rng.normal(size=n)
    return X, y, t


def _problems(X, y, t, **kw):
    problems = [nca_problem(X, y, **kw), mlkr_problem(X, t, **kw)]
    if not kw:  # (the single block, also below the size where fits choose it)
        for problem in problems:
            problem.single_block = True
    return problems


def _pairs(X, y, t, block_rows):
    """(single-block problem, blocked problem, labels of the dense reference) for
    NCA and MLKR."""
    return zip(_problems(X, y, t), _problems(X, y, t, block_rows=block_rows),
               [dict(y=y), dict(t=t)])


def _spy(problem):
    """Record whether each evaluation took the single-block path."""
    used = []
    single = problem._single_block

    def spy(Z):
        out = single(Z)
        used.append(out is not None)
        return out

    problem._single_block = spy
    return used


def _assert_same(fg, fg_ref):
    (f, g), (f_ref, g_ref) = fg, fg_ref
    np.testing.assert_allclose(f, f_ref, rtol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-12 * np.abs(g_ref).max())


def _dense_extended(L, X, y=None, t=None):
    """The objective and gradient by the dense formulas in extended precision
    (``np.longdouble``): NCA's with labels ``y``, else MLKR's with targets ``t``."""
    X = X.astype(np.longdouble)
    Z = (X - X.mean(axis=0)) @ L.astype(np.longdouble).T
    d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(axis=-1)
    np.fill_diagonal(d, np.inf)
    e = np.exp(-(d - d.min(axis=1, keepdims=True)))
    p = e / e.sum(axis=1, keepdims=True)
    if y is not None:
        M, v = (y[:, None] == y[None, :]).astype(np.longdouble), np.ones(len(y))
        q = (p * M).sum(axis=1)
        f, g = q.sum(), np.ones_like(q)
    else:
        M, v = np.ones_like(p), t.astype(np.longdouble)
        q = p @ v
        f, g = ((q - v) ** 2).sum(), 2 * (q - v)
    W = -g[:, None] * p * (M * v[None, :] - q[:, None])
    U = (W.sum(axis=1) + W.sum(axis=0))[:, None] * Z - W @ Z - W.T @ Z
    return float(f), ((2 * U).T @ (X - X.mean(axis=0))).astype(float)


def _assert_as_accurate(single, blocked, L, X, labels):
    """``single``'s evaluation at ``L`` is as close to the extended-precision one
    as ``blocked``'s, up to a factor 10 (with far points the gradient is a sum of
    terms thousands of times larger than itself: both carry rounding errors of
    1e-12 relative or more)."""
    f_ref, g_ref = _dense_extended(L, X, **labels)
    scale = np.abs(g_ref).max()
    (f1, g1), (f2, g2) = single.loss_grad(L), blocked.loss_grad(L)
    np.testing.assert_allclose([f1, f2], f_ref, rtol=1e-12)
    err1, err2 = (np.abs(g - g_ref).max() / scale for g in (g1, g2))
    assert err1 <= 10 * err2 + 1e-13


def test_exp_kernel_is_within_two_ulps_of_numpys():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-700, 700, 20000), rng.uniform(-1, 1, 20000),
                        [-700.0, -699.5, -1e-300, 0.0, 1e-300, 0.5, 699.9, 700.0]])
    # the kernel computes exp(2 row + (ui + u)): here row = x / 2 exactly
    row, u = x / 2, np.zeros_like(x)
    _exp_shifted_row(row, u, 0.0, np.empty_like(x))
    np.testing.assert_allclose(row, np.exp(x), rtol=2 * np.finfo(float).eps, atol=0)
    # the exponent is clamped to [-700, 700]
    row = np.array([-800.0, 800.0]) / 2
    _exp_shifted_row(row, np.zeros(2), 0.0, np.empty(2))
    np.testing.assert_allclose(row, np.exp([-700.0, 700.0]), rtol=4.5e-16)


@pytest.mark.parametrize("n_far, n_twins", [(0, 0), (4, 2)])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_single_block_equals_the_blocked_evaluation(n_far, n_twins, scale):
    # n_far: points far from all others, whose rows the single block computes
    # exactly apart (two of them have a twin, and so are not far)
    X, y, t = _data(300, 6, seed=1, n_far=n_far, n_twins=n_twins)
    L = np.random.default_rng(2).normal(size=(6, 6)) * scale / np.sqrt(6)
    for single, blocked, labels in _pairs(X, y, t, 32):
        assert single.single_block and not blocked.single_block
        used = _spy(single)
        if n_far:
            _assert_as_accurate(single, blocked, L, X, labels)
        else:
            _assert_same(single.loss_grad(L), blocked.loss_grad(L))
        assert used == [True]


def test_too_many_far_rows_fall_back_to_the_blocks():
    X, y, t = _data(160, 4, seed=3, n_far=40)
    L = np.eye(4)
    for single, blocked, labels in _pairs(X, y, t, 16):
        used = _spy(single)
        _assert_as_accurate(single, blocked, L, X, labels)
        assert used == [False]


def test_non_finite_embedding_falls_back_to_the_blocks():
    X, y, t = _data(50, 3)
    problem = nca_problem(X, y)
    Z = X @ np.eye(3)
    Z[3, 1] = np.inf
    assert problem._single_block(Z) is None


def test_blocked_evaluation_after_a_single_block_uses_its_shift():
    # The single block leaves each row's log-sum-exp as the shift of the next
    # evaluation; the blocked one that follows (here forced) equals a fresh one.
    X, y, t = _data(300, 6, seed=4, n_far=4, n_twins=2)
    L = np.random.default_rng(5).normal(size=(6, 6)) / np.sqrt(6)
    for single, blocked, labels in _pairs(X, y, t, 32):
        single.loss_grad(L)
        single.single_block = False
        _assert_as_accurate(single, blocked, 1.1 * L, X, labels)


@pytest.mark.parametrize("Estimator", [NCA, MLKR])
def test_single_block_fit_is_the_same_for_any_number_of_threads(Estimator):
    X, y, t = _data(1100, 5, seed=6)
    assert B.uses_single_block(1100) and len(B._single_chunks(1100)) > 1
    target = y if Estimator is NCA else t
    fits = fits_for_each_n_jobs(partial(Estimator, max_iter=5), X, target)
    np.testing.assert_array_equal(fits[0].components_, fits[1].components_)


@pytest.mark.parametrize("tol, runs, expected", [
    # a failed line search (status 2), then a run that stops at once: the end
    (1e-5, [(3, 2), (0, 2)], dict(maxiters=[7, 4], nit=3, at_max=False)),
    # a failed line search, then the remaining iterations
    (1e-5, [(3, 2), (4, 1)], dict(maxiters=[7, 4], nit=7, at_max=True)),
    # with tol=0, an iteration that did not lower f ("converged", status 0)
    (0.0, [(2, 0), (5, 1)], dict(maxiters=[7, 5], nit=7, at_max=True)),
    # ... but with tol > 0 that is convergence
    (1e-5, [(2, 0)], dict(maxiters=[7], nit=2, at_max=False)),
])
def test_scipy_lbfgs_starts_again_where_a_line_search_failed(monkeypatch, tol, runs,
                                                             expected):
    # scipy's L-BFGS-B stops at a failed line search; with iterations left, the
    # wrapper starts it again from the point reached (steepest descent).
    import scipy.optimize

    from mahal._optimize import CONVERGED, MAX_ITER

    starts, maxiters = [], []

    def fake_minimize(fun, x, jac, method, callback, options):
        steps, status = runs[len(starts)]
        starts.append(x.copy())
        maxiters.append(options["maxiter"])
        for _ in range(steps):
            x = x + 1.0
            callback(scipy.optimize.OptimizeResult(x=x, fun=0.0))
        return scipy.optimize.OptimizeResult(x=x, fun=0.0, nit=steps, status=status)

    monkeypatch.setattr(scipy.optimize, "minimize", fake_minimize)
    seen = []
    res = B._scipy_lbfgs(None, np.zeros(2), 7, tol, tol,
                         lambda nit, f, x: seen.append(nit))
    assert maxiters == expected["maxiters"]
    for k in range(1, len(starts)):  # (each run starts where the last stopped)
        assert starts[k][0] == sum(steps for steps, _ in runs[:k])
    assert res.nit == expected["nit"] and seen == list(range(1, res.nit + 1))
    assert res.x[0] == res.nit
    assert res.status == (MAX_ITER if expected["at_max"] else CONVERGED)
