"""RCA and RCA_Supervised: against cvxpy, metric-learn's formulas and scikit-learn."""

import pickle
import warnings

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import RCA, RCA_Supervised
from mahal import reference


def _naive_inner_cov(X, chunks):
    """metric-learn's ``_chunk_mean_centering`` + ``np.cov(bias=1)``, as a loop."""
    rows = []
    for c in range(chunks.max() + 1):
        pts = X[chunks == c]
        for x in pts:
            rows.append(x - pts.mean(axis=0))
    D = np.array(rows)
    return np.atleast_2d(np.cov(D, rowvar=False, bias=True))


def _ml_components(X, chunks, n_components=None):
    """metric-learn 0.7's RCA.fit, re-implemented (lstsq + eig, inverse sqrt)."""
    inner = _naive_inner_cov(X, chunks)
    d = X.shape[1]

    def inv_sqrtm(x):
        vals, vecs = np.linalg.eigh(x)
        with np.errstate(all="ignore"):
            return (vecs / np.sqrt(vals)).dot(vecs.T)

    if n_components is not None and n_components < d:
        total = np.cov(X[chunks != -1], rowvar=False)
        vals, vecs = np.linalg.eig(np.linalg.lstsq(total, inner, rcond=None)[0])
        A = vecs[:, np.argsort(vals)[:n_components]].real
        return inv_sqrtm(A.T @ inner @ A) @ A.T
    return inv_sqrtm(inner).T


def _problem(kind, seed):
    """Random points and chunklets; ``kind`` picks a degenerate case."""
    rng = np.random.default_rng(seed)
    d = 5
    X = rng.normal(size=(40, d)) @ rng.normal(size=(d, d))
    chunks = np.repeat(np.arange(10), 4)
    if kind == "unchunked":           # some points in no chunklet, unequal sizes
        chunks[rng.choice(40, 8, replace=False)] = -1
        chunks[:3] = 11
    elif kind == "dependent":         # a feature that is a combination of others
        X[:, 4] = X[:, 0] - 2 * X[:, 1]
    elif kind.startswith("duplicates"):  # chunklets of identical points
        for c in range(9 if kind == "duplicates_most" else 7):
            X[chunks == c] = X[chunks == c][0]
    elif kind == "few_chunks":        # 3 chunklets of 2: rank 3 < 5
        chunks[:] = -1
        chunks[:6] = np.repeat(np.arange(3), 2)
    elif kind == "constant":          # a constant feature
        X[:, 2] = 3.0
    return X, chunks


KINDS = ["full", "unchunked", "dependent", "duplicates", "duplicates_most", "few_chunks",
         "constant"]


def _span_of_differences(X, chunks):
    """Orthonormal basis of the span of the within-chunklet differences."""
    rows = [X[chunks == c] - X[chunks == c].mean(axis=0)
            for c in np.unique(chunks[chunks >= 0])]
    return scipy.linalg.orth(np.vstack(rows).T, rcond=1e-10)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_reaches_the_cvxpy_optimum(kind, seed):
    X, chunks = _problem(kind, seed)
    basis = _span_of_differences(X, chunks)
    degenerate = basis.shape[1] < X.shape[1]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rca = RCA().fit(X, chunks)
    assert any("singular" in str(w.message) for w in caught) == degenerate
    M = rca.get_mahalanobis_matrix()
    assert np.all(np.isfinite(M))
    ref_basis = basis if degenerate else None
    M_ref, value_ref = reference.rca(X, chunks, basis=ref_basis)
    value = reference.rca_objective(M, X, chunks, basis=ref_basis)
    assert abs(value - value_ref) <= 1e-3 * max(1.0, abs(value_ref))
    np.testing.assert_allclose(M, M_ref, atol=2e-3 * np.abs(M_ref).max())
    if degenerate:  # the metric is zero off the span of the differences
        off = np.eye(X.shape[1]) - basis @ basis.T
        assert np.abs(off @ M).max() <= 1e-8 * np.abs(M).max()


def test_definite_case_is_metric_learns_formula():
    X, chunks = _problem("unchunked", 3)
    chunks = np.unique(chunks, return_inverse=True)[1].ravel() - 1  # ids from 0, -1 kept
    np.testing.assert_allclose(RCA().fit(X, chunks).components_,
                               _ml_components(X, chunks), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("n_components", [1, 3])
def test_dimension_reduction_is_metric_learns(n_components):
    X, chunks = _problem("full", 4)
    rca = RCA(n_components=n_components).fit(X, chunks)
    assert rca.components_.shape == (n_components, X.shape[1])
    G = _ml_components(X, chunks, n_components)
    # the same metric (components are defined up to a rotation)
    np.testing.assert_allclose(rca.get_mahalanobis_matrix(), G.T @ G, rtol=1e-7,
                               atol=1e-10 * np.abs(G.T @ G).max())
    # and the optimum of RCA's objective on the chosen subspace
    basis = np.linalg.qr(rca.components_.T)[0]
    _, value_ref = reference.rca(X, chunks, basis=basis)
    value = reference.rca_objective(rca.get_mahalanobis_matrix(), X, chunks, basis)
    assert abs(value - value_ref) <= 1e-3 * max(1.0, abs(value_ref))


@pytest.mark.parametrize("kind", ["dependent", "duplicates_most", "few_chunks",
                                  "constant"])
def test_rank_deficiency_warns_instead_of_nan(kind):
    X, chunks = _problem(kind, 0)
    with pytest.warns(UserWarning, match="singular"):
        rca = RCA().fit(X, chunks)
    assert np.all(np.isfinite(rca.components_))
    # metric-learn's formula (its issues 49, 263, 275) gives NaN or inf here, or
    # (an eigenvalue rounded to just above 0) rounding noise blown up
    ml = _ml_components(X, chunks)
    assert (not np.all(np.isfinite(ml))
            or np.abs(ml).max() > 1e4 * np.abs(rca.components_).max())
    assert rca.rank_ == _span_of_differences(X, chunks).shape[1]
    assert np.all(rca.components_[rca.rank_:] == 0)
    with pytest.warns(UserWarning, match="singular"):
        low = RCA(n_components=2).fit(X, chunks)
    assert np.all(np.isfinite(low.components_))


def test_bad_input():
    X, chunks = _problem("full", 0)
    with pytest.raises(ValueError, match="one chunklet id per point"):
        RCA().fit(X, chunks[:-1])
    with pytest.raises(ValueError, match="-1 for a point in no"):
        RCA().fit(X, np.where(chunks == 0, -2, chunks))
    with pytest.raises(ValueError, match="integer chunklet ids"):
        RCA().fit(X, chunks + 0.5)
    with pytest.raises(ValueError, match="no chunklet of two or more"):
        RCA().fit(X, np.arange(X.shape[0]))
    with pytest.raises(ValueError, match="identical"):
        RCA().fit(np.repeat(X[:10], 2, axis=0), np.repeat(np.arange(10), 2))
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        RCA().fit(bad, chunks)
    with pytest.raises(ValueError, match="n_components"):
        RCA(n_components=6).fit(X, chunks)
    with pytest.raises(ValueError, match="requires y"):
        RCA().fit(X, None)


# ---------------------------------------------------------------------------
# RCA_Supervised


def test_supervised_is_rca_on_the_drawn_chunklets(iris=load_iris(return_X_y=True)):
    X, y = iris
    sup = RCA_Supervised(n_chunks=30, chunk_size=3, random_state=1).fit(X, y)
    chunks = sup.chunks_
    assert (np.bincount(chunks[chunks >= 0]) == 3).all() and chunks.max() == 29
    for c in range(30):  # each chunklet within one class
        assert np.unique(y[chunks == c]).shape[0] == 1
    np.testing.assert_array_equal(sup.components_, RCA().fit(X, chunks).components_)


def test_supervised_deterministic_and_picklable():
    X, y = load_iris(return_X_y=True)
    a = RCA_Supervised(n_chunks=40, random_state=0).fit(X, y)
    b = RCA_Supervised(n_chunks=40, random_state=0).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))
    assert not np.array_equal(
        RCA_Supervised(n_chunks=40, random_state=1).fit(X, y).components_, a.components_)


def test_supervised_too_many_chunks_draws_what_exists():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(UserWarning, match="at most 75 disjoint chunklets"):
        sup = RCA_Supervised(n_chunks=100, random_state=0).fit(X, y)
    assert sup.chunks_.max() == 74
    with pytest.raises(ValueError, match="no class has chunk_size=60"):
        RCA_Supervised(chunk_size=60).fit(X, y)


def test_supervised_num_chunks_is_deprecated():
    X, y = load_iris(return_X_y=True)
    with pytest.warns(FutureWarning, match="num_chunks"):
        old = RCA_Supervised(num_chunks=20, random_state=0).fit(X, y)
    assert old.num_chunks == 20 and old.n_chunks == 100  # parameters as set
    new = RCA_Supervised(n_chunks=20, random_state=0).fit(X, y)
    np.testing.assert_array_equal(old.components_, new.components_)


def test_supervised_in_a_pipeline():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(RCA_Supervised(n_chunks=40, random_state=0),
                         KNeighborsClassifier(n_neighbors=3))
    assert cross_val_score(pipe, X, y, cv=3).mean() > 0.9


@parametrize_with_checks([RCA_Supervised(), RCA_Supervised(n_chunks=20, chunk_size=3),
                          RCA_Supervised(n_components=1)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # (chunklet budget, rank)
        check(estimator)


def test_supervised_label_minus_one_is_unknown():
    # metric-learn's Constraints: a numeric label -1 is an unknown class
    X, y = load_iris(return_X_y=True)
    y = y.copy()
    y[::3] = -1
    sup = RCA_Supervised(n_chunks=30, random_state=0).fit(X, y)
    assert np.all(sup.chunks_[y == -1] == -1)
    assert sup.chunks_.max() == 29
