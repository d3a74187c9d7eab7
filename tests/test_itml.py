"""ITML and ITML_Supervised against cvxpy's optimum, metric-learn's iterates
(its loop re-implemented here), and scikit-learn's conventions."""

import pickle
import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import ITML, ITML_Supervised
from mahal import _itml_kernels, _itml_solver
from mahal._itml_solver import default_bounds, itml_objective, itml_solve
from mahal.constraints import Constraints, wrap_pairs
from mahal.exceptions import NonPSDError

cvxpy = pytest.importorskip("cvxpy")
from mahal import reference  # noqa: E402


def _problem(seed, n=30, d=5, m=40, kind="plain"):
    """Random points with 3 classes and ``m`` random pairs labelled by class."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
    if kind == "rank_deficient":  # a dependent feature and a constant one
        X[:, 3] = X[:, 0] - 2 * X[:, 1]
        X[:, 4] = 1.5
    if kind == "duplicates":  # repeated points, some pairs of identical points
        X[n // 2:] = X[: n - n // 2]
    labels = rng.integers(0, 3, size=n)
    if kind == "duplicates":
        labels[n // 2:] = labels[: n - n // 2]
    i, j = rng.integers(0, n, size=(2, m))
    if kind == "duplicates":
        i[:4], j[:4] = np.arange(4), np.arange(4) + n // 2  # similar, identical points
    keep = (i != j)
    i, j = i[keep], j[keep]
    pairs = np.stack([X[i], X[j]], axis=1)
    return X, pairs, np.where(labels[i] == labels[j], 1, -1)


CASES = [
    ("plain", 1.0, "identity"),
    ("plain", 10.0, "identity"),
    ("rank_deficient", 1.0, "identity"),
    ("duplicates", 1.0, "identity"),
    ("plain", 0.3, "random"),
    ("plain", 2.0, "covariance"),
]


@pytest.mark.parametrize("seed", range(len(CASES)))
def test_matches_cvxpy_optimum(seed):
    kind, gamma, prior = CASES[seed]
    _, pairs, y = _problem(seed, kind=kind)
    est = ITML(gamma=gamma, prior=prior, tol=1e-10, max_iter=100_000,
               random_state=seed).fit(pairs, y)
    M = est.get_mahalanobis_matrix()
    # the prior the estimator used, rebuilt from its definition
    points = np.unique(pairs.reshape(-1, pairs.shape[2]), axis=0)
    if prior == "identity":
        M0 = np.eye(pairs.shape[2])
    elif prior == "covariance":
        M0 = np.linalg.inv(np.cov(points, rowvar=False))
    else:
        from sklearn.datasets import make_spd_matrix
        M0 = make_spd_matrix(pairs.shape[2], random_state=np.random.RandomState(seed))
    M_ref, f_ref = reference.itml(pairs, y, est.bounds_, gamma=gamma, prior=M0)
    diffs = pairs[:, 0] - pairs[:, 1]
    f_ref_here = itml_objective(M_ref, diffs, y == 1, est.bounds_, gamma, M0)
    # the plain objective and cvxpy's agree at cvxpy's optimum
    assert f_ref_here == pytest.approx(f_ref, rel=1e-5)
    f = itml_objective(M, diffs, y == 1, est.bounds_, gamma, M0)
    assert f >= f_ref_here * (1 - 1e-5)  # (no better than the optimum)
    assert f <= f_ref_here * (1 + 1e-3)
    np.testing.assert_allclose(M, M_ref, atol=2e-3 * np.abs(M_ref).max())


def test_hard_constraints_match_cvxpy():
    # (as many pairs as features: independent differences, so always feasible)
    _, pairs, y = _problem(7, d=6, m=6)
    y[:3], y[3:] = 1, -1
    diffs = pairs[:, 0] - pairs[:, 1]
    d2 = np.einsum("ij,ij->i", diffs, diffs)
    bounds = (np.median(d2), np.median(d2))  # some constraints active
    est = ITML(gamma=np.inf, tol=1e-10, max_iter=100_000).fit(pairs, y, bounds=bounds)
    M = est.get_mahalanobis_matrix()
    M_ref, f_ref = reference.itml(pairs, y, bounds, gamma=np.inf)
    f = itml_objective(M, diffs, y == 1, est.bounds_, np.inf, np.eye(6))
    assert np.isfinite(f)
    assert f == pytest.approx(f_ref, rel=1e-3)


def _metric_learn_sweeps(pairs, y, bounds, gamma, n_sweeps):
    """metric-learn 0.7's ITML loop (metric_learn/itml.py, _BaseITML._fit), with the
    identity prior and given bounds, for ``n_sweeps`` sweeps."""
    A = np.eye(pairs.shape[2])
    pos, neg = pairs[y == 1], pairs[y == -1]
    lam = np.zeros(len(pos) + len(neg))
    gamma_proj = 1. if gamma is np.inf else gamma / (gamma + 1.)
    pos_bhat = np.zeros(len(pos)) + bounds[0]
    neg_bhat = np.zeros(len(neg)) + bounds[1]
    for _ in range(n_sweeps):
        for i, v in enumerate(pos[:, 0] - pos[:, 1]):
            wtw = v.dot(A).dot(v)
            alpha = min(lam[i], gamma_proj * (1. / wtw - 1. / pos_bhat[i]))
            lam[i] -= alpha
            beta = alpha / (1 - alpha * wtw)
            pos_bhat[i] = 1. / ((1 / pos_bhat[i]) + (alpha / gamma))
            Av = A.dot(v)
            A += np.outer(Av, Av * beta)
        for i, v in enumerate(neg[:, 0] - neg[:, 1]):
            wtw = v.dot(A).dot(v)
            alpha = min(lam[i + len(pos)],
                        gamma_proj * (1. / neg_bhat[i] - 1. / wtw))
            lam[i + len(pos)] -= alpha
            beta = -alpha / (1 + alpha * wtw)
            neg_bhat[i] = 1. / ((1 / neg_bhat[i]) - (alpha / gamma))
            Av = A.dot(v)
            A += np.outer(Av, Av * beta)
    return A, lam


@pytest.mark.parametrize("gamma", [1.0, 5.0])
def test_same_iterates_as_metric_learn(gamma):
    _, pairs, y = _problem(3, d=6, m=60)
    bounds = np.array([3.0, 20.0])
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        est = ITML(gamma=gamma, tol=0.0, max_iter=7).fit(pairs, y, bounds=bounds)
    assert est.n_iter_ == 7
    A_ref, _ = _metric_learn_sweeps(pairs, y, bounds, gamma, 7)
    np.testing.assert_allclose(est.get_mahalanobis_matrix(), A_ref, rtol=1e-9,
                               atol=1e-12)


@pytest.mark.parametrize("gamma", [1.0, np.inf])
def test_numpy_sweep_equals_the_kernel(gamma):
    _, pairs, y = _problem(4, d=7, m=80)
    diffs = np.ascontiguousarray(pairs[:, 0] - pairs[:, 1])
    sim = y == 1
    states = []
    for sweep in (_itml_solver._bregman_sweep_numpy, _itml_kernels.bregman_sweep):
        A, lam = np.eye(7), np.zeros(len(y))
        xi = np.where(sim, 2.0, 30.0)
        for _ in range(5):
            sweep(A, diffs, sim, lam, xi, gamma)
        states.append((A, lam, xi))
    for a, b in zip(*states):  # (the same arithmetic, up to rounding)
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-12)


def test_numpy_budget_is_the_process_s():
    # a small fit runs in NumPy and does not load numba; a process that keeps fitting
    # such problems moves to the kernel once its NumPy budget is spent, with the
    # same result to rounding
    from _fresh_process import fresh_output

    code = """
import sys, warnings
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from mahal import ITML_Supervised
from mahal import _itml_solver
warnings.simplefilter("ignore")
X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
first = ITML_Supervised(random_state=0).fit(X, y).components_
print("mahal._itml_kernels" in sys.modules, 0 < _itml_solver._numpy.done
      <= _itml_solver._NUMPY_PROJECTIONS)
second = ITML_Supervised(random_state=0).fit(X, y).components_
print("mahal._itml_kernels" in sys.modules, np.allclose(first, second, rtol=1e-7,
                                                        atol=1e-10))
"""
    out = fresh_output(code).split()
    assert out == ["False", "True", "True", "True"]


def test_solver_stops_by_the_dual_change_rule():
    # the rule of the authors' code and metric-learn, checked on the returned duals
    _, pairs, y = _problem(5)
    diffs = pairs[:, 0] - pairs[:, 1]
    bounds = (2.0, 15.0)
    A, n_iter, converged, info = itml_solve(diffs, y == 1, bounds, np.eye(5),
                                            tol=1e-4, max_iter=10_000)
    assert converged and n_iter > 1
    _, lam_prev = _metric_learn_sweeps(pairs, y, bounds, 1.0, n_iter - 1)
    _, lam = _metric_learn_sweeps(pairs, y, bounds, 1.0, n_iter)
    _, lam_before = _metric_learn_sweeps(pairs, y, bounds, 1.0, n_iter - 2)
    order = np.concatenate([np.flatnonzero(y == 1), np.flatnonzero(y == -1)])
    np.testing.assert_allclose(info["dual"][order], lam, rtol=1e-8, atol=1e-12)

    def change(new, old):
        return np.abs(old - new).sum() / (np.linalg.norm(new) + np.linalg.norm(old))

    assert change(lam, lam_prev) < 1e-4 <= change(lam_prev, lam_before)


def test_prior_satisfying_every_constraint_is_the_answer():
    _, pairs, y = _problem(6)
    est = ITML().fit(pairs, y, bounds=(1e6, 1e-6))
    np.testing.assert_allclose(est.get_mahalanobis_matrix(), np.eye(5), atol=1e-12)
    assert est.n_iter_ == 1


def test_default_bounds_are_metric_learns_without_self_distances():
    # metric_learn/itml.py, _BaseITML._fit: percentiles (5, 95) of the Euclidean
    # distances between the distinct points of the pairs (prior or not); metric-learn
    # takes them over the n × n matrix, zero diagonal included
    from sklearn.metrics import pairwise_distances

    _, pairs, y = _problem(8)
    M0 = np.diag([1.0, 2.0, 0.5, 3.0, 1.0])
    est = ITML(prior=M0).fit(pairs, y)
    points = np.unique(pairs.reshape(-1, 5), axis=0)
    D = pairwise_distances(points)
    off_diagonal = D[~np.eye(len(points), dtype=bool)]
    np.testing.assert_allclose(est.bounds_, np.percentile(off_diagonal, (5, 95)),
                               rtol=1e-2)
    np.testing.assert_allclose(est.bounds_, np.percentile(pdist(points), (5, 95)),
                               rtol=1e-12)
    # on a handful of points metric-learn's zeros make u = 0 (then 1e-9); not here
    X = np.array([[0., 0.], [0., 1.], [3., 0.], [3.3, 0.2]])
    pairs = X[np.array([[0, 1], [2, 3], [0, 2], [1, 3]])]
    assert np.percentile(pairwise_distances(X), 5) == 0.0
    u, l = ITML().fit(pairs, [1, 1, -1, -1]).bounds_
    assert u == pytest.approx(np.percentile(pdist(X), 5)) and u > 0.3


def test_default_bounds_sampled_on_many_points():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2100, 3)) * [1.0, 3.0, 0.2]  # more than 2·10⁶ pairs
    exact = np.percentile(pdist(X), (5, 95))
    a = default_bounds(X, random_state=0)
    np.testing.assert_allclose(a, exact, rtol=0.02)
    np.testing.assert_array_equal(a, default_bounds(X, random_state=0))


def test_zero_bound_becomes_tiny_and_bad_bounds_raise():
    _, pairs, y = _problem(9)
    assert ITML().fit(pairs, y, bounds=[0, 5]).bounds_.tolist() == [1e-9, 5.0]
    for bad, msg in (([1.0], "two numbers"), ([1, 2, 3], "two numbers"),
                     ([-1, 2], "≥ 0"), ([np.nan, 2], "NaN")):
        with pytest.raises(ValueError, match=msg):
            ITML().fit(pairs, y, bounds=bad)


def test_bad_pairs_input():
    _, pairs, y = _problem(10)
    with pytest.raises(ValueError, match=r"\+1 \(similar\) or -1"):
        ITML().fit(pairs, np.where(y > 0, 1, 2))
    with pytest.raises(ValueError, match="2 points per tuple"):
        ITML().fit(np.concatenate([pairs, pairs[:, :1]], axis=1), y)
    bad = pairs.copy()
    bad[3, 1, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ITML().fit(bad, y)
    dup = pairs.copy()
    k = np.flatnonzero(y == -1)[0]
    dup[k, 1] = dup[k, 0]
    with pytest.raises(ValueError, match="dissimilar pair.*identical points"):
        ITML().fit(dup, y)
    with pytest.raises(ValueError, match="gamma"):
        ITML(gamma=0).fit(pairs, y)
    with pytest.raises(ValueError, match="max_iter"):
        ITML(max_iter=0).fit(pairs, y)


def test_prior_must_be_positive_definite():
    _, pairs, y = _problem(11, kind="rank_deficient")
    with pytest.raises(NonPSDError, match="covariance.*singular"):
        ITML(prior="covariance").fit(pairs, y)
    with pytest.raises(NonPSDError, match="strictly positive definite"):
        ITML(prior=np.diag([1.0, 1.0, 1.0, 1.0, 0.0])).fit(pairs, y)


def test_verbose_and_convergence_warning(capsys):
    _, pairs, y = _problem(12)
    with pytest.warns(ConvergenceWarning, match="max_iter=3"):
        ITML(max_iter=3, tol=0.0, verbose=True).fit(pairs, y)
    out = capsys.readouterr().out
    assert out.count("[ITML]") >= 4 and "Dual change" in out


def test_deprecated_aliases():
    X, pairs, y = _problem(13)
    with pytest.warns(FutureWarning, match="'convergence_threshold' was renamed"):
        old = ITML(convergence_threshold=1e-2).fit(pairs, y)
    assert old.get_params()["convergence_threshold"] == 1e-2
    np.testing.assert_array_equal(old.components_,
                                  ITML(tol=1e-2).fit(pairs, y).components_)
    labels = np.arange(len(X)) % 3
    with pytest.warns(FutureWarning, match="'num_constraints' was renamed"):
        old = ITML_Supervised(num_constraints=15, random_state=0).fit(X, labels)
    new = ITML_Supervised(n_constraints=15, random_state=0).fit(X, labels)
    np.testing.assert_array_equal(old.components_, new.components_)


# ---------------------------------------------------------------------------
# ITML_Supervised


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    X = rng.normal(size=(90, 4)) + 3 * rng.normal(size=(3, 4))[y]
    return X, y


def test_supervised_is_itml_on_the_sampled_pairs(blobs):
    X, y = blobs
    sup = ITML_Supervised(n_constraints=50, random_state=1).fit(X, y)
    a, b, c, d = Constraints(y).positive_negative_pairs(50, random_state=1)
    pairs, yp = wrap_pairs(X, (a, b, c, d))
    bounds = np.percentile(pdist(np.unique(X, axis=0)), (5, 95))
    ref = ITML().fit(pairs, yp, bounds=bounds)
    np.testing.assert_allclose(sup.bounds_, bounds, rtol=1e-12)
    np.testing.assert_allclose(sup.components_, ref.components_, rtol=1e-10,
                               atol=1e-12)
    # metric-learn's default count: 20 · n_classes² pairs of each kind
    default = ITML_Supervised(random_state=1, max_iter=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a, b, c, d = Constraints(y).positive_negative_pairs(180, random_state=1)
        pairs, yp = wrap_pairs(X, (a, b, c, d))
        np.testing.assert_allclose(
            default.fit(X, y).components_,
            ITML(max_iter=1).fit(pairs, yp, bounds=bounds).components_, rtol=1e-10)


def test_supervised_determinism_pickle_and_pipeline(blobs):
    X, y = blobs
    a = ITML_Supervised(random_state=0).fit(X, y)
    b = ITML_Supervised(random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    pipe = make_pipeline(ITML_Supervised(random_state=0),
                         KNeighborsClassifier(n_neighbors=3))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9


def test_supervised_drops_dissimilar_pairs_of_identical_points():
    X = np.array([[0., 0.], [0., 0.], [1., 0.], [1., 0.1], [5., 5.], [5., 5.2]])
    y = np.array([0, 1, 0, 0, 1, 1])  # points 0 and 1 coincide, different labels
    with pytest.warns(UserWarning, match="identical points"):  # (every pair is used)
        est = ITML_Supervised(random_state=0).fit(X, y)
    assert np.all(np.isfinite(est.components_))


def test_supervised_bad_input(blobs):
    X, y = blobs
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ITML_Supervised().fit(bad, y)
    with pytest.raises(ValueError, match="at least 2 classes"):
        ITML_Supervised().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="n_constraints"):
        ITML_Supervised(n_constraints=0).fit(X, y)


@parametrize_with_checks([ITML_Supervised(max_iter=50)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_distinct_rows_are_numpys_unique_rows():
    from mahal.itml import _distinct_rows
    rng = np.random.default_rng(0)
    X = rng.integers(0, 3, size=(200, 3)).astype(float)
    X[0] = [-0.0, 1.0, 2.0]
    X[1] = [0.0, 1.0, 2.0]  # (-0.0 == 0.0: the same point)
    got = _distinct_rows(X)
    np.testing.assert_array_equal(np.unique(got, axis=0), np.unique(X + 0.0, axis=0))
    assert got.shape[0] == np.unique(X + 0.0, axis=0).shape[0]
