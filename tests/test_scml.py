"""SCML and SCML_Supervised: the solver against cvxpy, the bases against their
definition, metric-learn's failure cases, scikit-learn conventions."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import SCML, SCML_Supervised
from mahal._scml_solver import (lda_scalings, scml_objective, scml_solve,
                                 triplet_diff_bases)
from mahal.constraints import Constraints

reference = pytest.importorskip("mahal.reference")
pytest.importorskip("cvxpy")


def _problem(seed, n=40, d=5, T=120, K=12, rank=None, duplicates=False):
    """Random points, index triplets and unit bases."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    if rank is not None:  # points in a rank-`rank` subspace
        X = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d))
    if duplicates:  # repeated points, and triplets whose closer point is the anchor
        X[n // 2:] = X[: n - n // 2]
    trip = rng.integers(0, n, size=(T, 3))
    if duplicates:
        trip[: T // 4, 1] = trip[: T // 4, 0]
        trip[T // 4: T // 2, 1] = (trip[T // 4: T // 2, 0] + n // 2) % n
    B = rng.normal(size=(K, d))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    return X, trip, B


PROBLEMS = [
    dict(seed=0),
    dict(seed=1, beta=1e-2),
    dict(seed=2, rank=2),
    dict(seed=3, duplicates=True),
    dict(seed=4, rank=3, duplicates=True, beta=1e-3),
    dict(seed=5, n=60, d=8, T=400, K=40),
]


@pytest.mark.parametrize("spec", PROBLEMS, ids=lambda s: str(s))
def test_solver_reaches_the_cvxpy_optimum(spec):
    spec = dict(spec)
    beta = spec.pop("beta", 1e-5)
    X, trip, B = _problem(**spec)
    w, _, converged, info = scml_solve(X, trip, B, beta, tol=1e-7)
    w_ref, value_ref = reference.scml(B, X[trip], beta)
    value = scml_objective(w, B, X[trip], beta)
    assert converged
    assert np.all(w >= 0)
    # the plain objective agrees with the LP's value at cvxpy's solution ...
    assert scml_objective(w_ref, B, X[trip], beta) == pytest.approx(value_ref,
                                                                    rel=1e-6)
    # ... and the fast solver's optimum with cvxpy's (0.1 %; tighter in fact)
    assert value == pytest.approx(value_ref, rel=1e-3)
    assert value <= value_ref * (1 + 1e-5)
    # the certificate is a true lower bound and the reported objective is the value
    assert info["dual"] <= value_ref * (1 + 1e-6)
    assert info["objective"] == pytest.approx(value, rel=1e-10)


def test_estimator_objective_and_metric():
    X, trip, B = _problem(7)
    scml = SCML(basis=B, preprocessor=X, tol=1e-7).fit(trip)
    _, value_ref = reference.scml(B, X[trip], 1e-5)
    assert scml.objective_ == pytest.approx(value_ref, rel=1e-3)
    M = B.T @ (scml.weights_[:, None] * B)
    np.testing.assert_allclose(scml.get_mahalanobis_matrix(), M, atol=1e-10 *
                               np.abs(M).max())
    np.testing.assert_array_equal(scml.basis_, B)


def test_zero_weights_when_beta_dominates():
    X, trip, B = _problem(8)
    with pytest.warns(UserWarning, match="every weight is zero"):
        scml = SCML(basis=B, beta=1e6, preprocessor=X).fit(trip)
    assert not scml.weights_.any()
    _, value_ref = reference.scml(B, X[trip], 1e6)
    assert value_ref == pytest.approx(1.0, rel=1e-6)


def test_triplet_diff_bases_are_eigenvectors():
    # metric-learn takes the rows of eigh's eigenvector matrix; these must be
    # eigenvectors of Σ δ⁺δ⁺ᵀ − δ⁻δ⁻ᵀ of the first group of triplets.
    X, trip, _ = _problem(9, d=6, T=60)
    d = X.shape[1]
    B = triplet_diff_bases(X, trip, 3 * d, np.random.RandomState(0))
    pick = np.random.RandomState(0).choice(len(trip), size=d, replace=False)
    dp = X[trip[pick, 0]] - X[trip[pick, 1]]
    dn = X[trip[pick, 0]] - X[trip[pick, 2]]
    S = dp.T @ dp - dn.T @ dn
    for b in B[:d]:
        lam = b @ S @ b
        np.testing.assert_allclose(S @ b, lam * b, atol=1e-10 * np.abs(S).max())
    np.testing.assert_allclose(np.linalg.norm(B, axis=1), 1.0)


def test_more_features_than_triplets_metric_learn_issue_348():
    # metric-learn raises "Number of features (10) is greater than the number of
    # triplets (4)" (its issue 348); the bases come from groups of 2 triplets here.
    rng = np.random.default_rng(10)
    X = rng.normal(size=(12, 10))
    trip = np.array([[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # low-rank metric
        scml = SCML(n_basis=20, preprocessor=X, random_state=0, tol=1e-7).fit(trip)
    assert scml.basis_.shape == (20, 10)
    # every basis lies in the span of the triplets' differences
    diffs = np.concatenate([X[trip[:, 0]] - X[trip[:, 1]], X[trip[:, 0]] - X[trip[:, 2]]])
    Q, _ = np.linalg.qr(diffs.T)
    np.testing.assert_allclose(scml.basis_ @ Q @ Q.T, scml.basis_, atol=1e-10)
    _, value_ref = reference.scml(scml.basis_, X[trip], 1e-5)
    assert scml.objective_ == pytest.approx(value_ref, rel=1e-3)
    assert scml.score(trip) == 1.0


def test_triplets_without_extent_raise():
    X = np.ones((3, 4))
    with pytest.raises(ValueError, match="no extent"):
        SCML(preprocessor=X).fit(np.array([[0, 1, 2]]))


def test_triplets_whose_differences_cancel_raise():
    # closer == farther: Σ δ⁺δ⁺ᵀ − δ⁻δ⁻ᵀ is 0 for every group (metric-learn loops
    # forever drawing groups)
    rng = np.random.default_rng(13)
    X = rng.normal(size=(10, 3))
    trip = np.column_stack([np.arange(5), np.arange(5, 10), np.arange(5, 10)])
    with pytest.raises(ValueError, match="cancel"):
        SCML(preprocessor=X, random_state=0).fit(trip)


def test_duplicate_points_are_merged():
    # the same point given in several triplets (and twice in one) is one point
    X, trip, B = _problem(11, duplicates=True)
    a = SCML(basis=B, tol=1e-7).fit(X[trip])
    b = SCML(basis=B, preprocessor=X, tol=1e-7).fit(trip)
    np.testing.assert_allclose(a.weights_, b.weights_, rtol=1e-8, atol=1e-12)
    assert np.isfinite(a.components_).all()


def test_predict_score_and_decision_function():
    X, trip, B = _problem(12)
    scml = SCML(basis=B, preprocessor=X).fit(trip)
    M = scml.get_mahalanobis_matrix()
    t = X[trip]
    dpos = np.sqrt(np.einsum("ti,ij,tj->t", t[:, 0] - t[:, 1], M, t[:, 0] - t[:, 1]))
    dneg = np.sqrt(np.einsum("ti,ij,tj->t", t[:, 0] - t[:, 2], M, t[:, 0] - t[:, 2]))
    np.testing.assert_allclose(scml.decision_function(trip), dneg - dpos, atol=1e-10)
    assert scml.score(trip) == pytest.approx(np.mean(dneg > dpos))


@pytest.mark.parametrize("bad, match", [
    (np.zeros((5, 2, 3)), "3 points per tuple"),
    (np.zeros((5, 3)), "3-D array"),
    (np.full((5, 3, 2), np.nan), "NaN"),
])
def test_bad_triplets(bad, match):
    with pytest.raises(ValueError, match=match):
        SCML().fit(bad)


@pytest.mark.parametrize("params, match", [
    (dict(basis="lda"), "basis"),
    (dict(beta=-1.0), "beta"),
    (dict(n_basis=0), "n_basis"),
    (dict(basis=np.ones((3, 5))), "n_features=4"),
    (dict(basis=np.eye(4), n_basis=3), "does not match"),
    (dict(basis=np.full((4, 4), np.nan)), "NaN"),
])
def test_bad_parameters(params, match):
    X, y = load_iris(return_X_y=True)
    trip = Constraints(y).generate_knntriplets(X, 2, 2)
    with pytest.raises(ValueError, match=match):
        SCML(**params).fit(X[trip])


def test_supervised_lda_n_basis_too_large():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="Not enough samples"):
        SCML_Supervised(n_basis=2 * 150 * 2).fit(X, y)


def test_supervised_is_scml_on_knn_triplets():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    sup = SCML_Supervised(basis="triplet_diffs", n_basis=30, random_state=1,
                          tol=1e-7).fit(X, y)
    trip = Constraints(y).generate_knntriplets(X, 3, 10)
    weak = SCML(basis=sup.basis_, preprocessor=X, tol=1e-7).fit(trip)
    assert sup.objective_ == pytest.approx(weak.objective_, rel=1e-6)
    _, value_ref = reference.scml(sup.basis_, X[trip], 1e-5)
    assert sup.objective_ == pytest.approx(value_ref, rel=1e-3)


def test_supervised_labels_minus_one_are_a_class():
    # Constraints reads −1 as "unlabelled"; a class −1 in y must not be dropped
    X, y = load_iris(return_X_y=True)
    X, y = X[y < 2], y[y < 2]
    a = SCML_Supervised(n_basis=4, random_state=0).fit(X, np.where(y == 0, -1, 1))
    b = SCML_Supervised(n_basis=4, random_state=0).fit(X, y)
    np.testing.assert_allclose(a.weights_, b.weights_)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lda_scalings_are_sklearns(seed):
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(60, 5)) + np.repeat(rng.normal(size=(4, 5)), 15, axis=0)
    if seed == 2:
        X[:, 4] = X[:, 0]  # collinear
    y = np.repeat(np.arange(4), 15)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        ref = LinearDiscriminantAnalysis().fit(X, y).scalings_
    got = lda_scalings(X, y)
    assert got.shape == ref.shape
    # the same directions, each up to its sign
    cos = np.abs(np.sum(got * ref, axis=0)) / (np.linalg.norm(got, axis=0)
                                               * np.linalg.norm(ref, axis=0))
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)


def test_lda_bases_rank_deficient_data():
    # a duplicated feature makes every local LDA rank-deficient
    X, y = load_iris(return_X_y=True)
    X = np.hstack([X, X[:, :1]])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)  # no NaN along the way
        scml = SCML_Supervised(random_state=0).fit(X, y)
    assert np.isfinite(scml.basis_).all()
    np.testing.assert_allclose(np.linalg.norm(scml.basis_, axis=1), 1.0)
    assert np.isfinite(scml.transform(X)).all()
    # the interior point breaks down on this restricted LP; the optimum is still
    # reached (through the simplex)
    trip = Constraints(y).generate_knntriplets(X, 3, 10)
    _, value_ref = reference.scml(scml.basis_, X[trip], 1e-5)
    assert scml.objective_ == pytest.approx(value_ref, rel=1e-3)


def test_deterministic_and_pickles():
    X, y = load_iris(return_X_y=True)
    a = SCML_Supervised(random_state=3).fit(X, y)
    b = SCML_Supervised(random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    np.testing.assert_array_equal(a.basis_, b.basis_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    trip = Constraints(y).generate_knntriplets(X, 2, 3)
    s1 = SCML(random_state=5, n_basis=12).fit(X[trip])
    s2 = pickle.loads(pickle.dumps(clone(s1).fit(X[trip])))
    np.testing.assert_array_equal(s1.weights_, s2.weights_)
    np.testing.assert_array_equal(s1.predict(X[trip]), s2.predict(X[trip]))


def test_cross_val_score_on_triplets_and_pipeline():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    trip = Constraints(y).generate_knntriplets(X, 2, 4)
    rng = np.random.default_rng(0)
    trip = trip[rng.permutation(len(trip))]
    scores = cross_val_score(SCML(n_basis=16, random_state=0, preprocessor=X), trip,
                             cv=3)
    assert scores.shape == (3,) and np.all(scores > 0.7)
    from sklearn.neighbors import KNeighborsClassifier
    pipe = make_pipeline(SCML_Supervised(random_state=0), KNeighborsClassifier(3))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.85


@parametrize_with_checks([SCML_Supervised(n_basis=8, random_state=0)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        check(estimator)
