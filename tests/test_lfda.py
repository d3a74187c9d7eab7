"""LFDA against a dense implementation of the paper's formulas (Sugiyama, JMLR 2007).

The reference builds the n × n affinity and weight matrices of the paper's
equations and sums ``½ Σ_ij W_ij (x_i − x_j)(x_i − x_j)ᵀ`` over all pairs; the
eigenproblem is scipy's generalised ``eigh``.
"""

import pickle

import numpy as np
import pytest
import scipy.linalg
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine, make_classification
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import LFDA
from mahal._lfda_solver import lfda_solve, local_scales, local_scatter

# ---------------------------------------------------------------------------
# The dense reference


def paper_affinity(X, y, k):
    """The local-scaling affinity, ``A_ij = exp(−‖x_i − x_j‖² / (σ_i σ_j))`` for
    classmates (σ_i: distance to the k-th nearest classmate), 0 across classes and
    where ``σ_i σ_j = 0``."""
    n = X.shape[0]
    A = np.zeros((n, n))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        D = np.array([[np.sum((X[i] - X[j]) ** 2) for j in idx] for i in idx])
        sigma = np.sqrt(np.sort(D, axis=1)[:, min(k, len(idx) - 1)])
        for a, i in enumerate(idx):
            for b, j in enumerate(idx):
                if sigma[a] * sigma[b] > 0:
                    A[i, j] = np.exp(-D[a, b] / (sigma[a] * sigma[b]))
    return A


def paper_scatter(X, y, k):
    """``(S_lb, S_lw)`` by the paper's pairwise weights, summed over all pairs."""
    n = X.shape[0]
    A = paper_affinity(X, y, k)
    n_l = np.array([np.sum(y == v) for v in y], dtype=float)
    same = y[:, None] == y[None, :]
    W_lw = np.where(same, A / n_l[:, None], 0.0)
    W_lb = np.where(same, A * (1.0 / n - 1.0 / n_l[:, None]), 1.0 / n)
    S_lw, S_lb = np.zeros((2, X.shape[1], X.shape[1]))
    for i in range(n):
        for j in range(n):
            dd = np.outer(X[i] - X[j], X[i] - X[j])
            S_lw += 0.5 * W_lw[i, j] * dd
            S_lb += 0.5 * W_lb[i, j] * dd
    return S_lb, S_lw


def paper_lfda(X, y, n_components, k=7, embedding_type="weighted", floor_rtol=1e-2):
    """LFDA from the dense scatter and scipy's generalised eigh.

    With the documented regularisation: in the span of the centred data (from its
    SVD), a singular ``S_lw`` has its eigenvalues below ``floor_rtol`` times the
    largest raised to it. Returns ``(components, eigenvalues)``.
    """
    S_lb, S_lw = paper_scatter(X, y, k)
    _, s, Vt = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)
    P = Vt[s > 1e-6 * s[0]].T                       # span of the centred data
    B, Wm = P.T @ S_lb @ P, P.T @ S_lw @ P
    w, U = np.linalg.eigh(Wm)
    if w[0] <= 1e-10 * w[-1]:
        Wm = (U * np.maximum(w, floor_rtol * w[-1])) @ U.T
    lam, V = scipy.linalg.eigh(B, Wm)
    lam, V = lam[::-1][:n_components], (P @ V[:, ::-1])[:, :n_components]
    if embedding_type == "weighted":
        V = V * np.sqrt(np.maximum(lam, 0))
    elif embedding_type == "orthonormalized":
        V = np.linalg.qr(V)[0]
    return V.T, lam


def assert_rows_equal_up_to_sign(L, ref, rtol=1e-7):
    assert L.shape == ref.shape
    for a, b in zip(L, ref):
        s = 1.0 if a @ b >= 0 else -1.0
        np.testing.assert_allclose(a, s * b, rtol=rtol,
                                   atol=rtol * np.abs(ref).max())


def _multimodal(n_per=12, d=3, seed=0):
    """Three classes, the first of two clusters, plus a class of one point."""
    rng = np.random.default_rng(seed)
    centres = [(-4.0,) + (0.0,) * (d - 1), (4.0,) + (0.0,) * (d - 1),
               (0.0, 2.0) + (0.0,) * (d - 2), (0.0, -2.0) + (0.0,) * (d - 2)]
    X = np.vstack([rng.normal(size=(n_per, d)) + c for c in centres])
    y = np.repeat([0, 0, 1, 2], n_per)
    X = np.vstack([X, rng.normal(size=(1, d)) + 6.0])
    return X, np.append(y, 3)


# ---------------------------------------------------------------------------
# The scatter matrices and the local scales


@pytest.mark.parametrize("k", [1, 3, 7, 50])
def test_local_scatter_equals_the_papers_pairwise_sums(k):
    X, y = _multimodal()
    S_lb, S_lw = local_scatter(X, y, k)
    ref_lb, ref_lw = paper_scatter(X, y, k)
    np.testing.assert_allclose(S_lb, ref_lb, rtol=1e-10, atol=1e-10 * np.abs(ref_lb).max())
    np.testing.assert_allclose(S_lw, ref_lw, rtol=1e-10, atol=1e-10 * np.abs(ref_lw).max())


def test_local_scales_are_the_kth_classmate_distances():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 2))
    for k in (1, 4, 8, 20):
        expected = [np.sort(np.linalg.norm(X - x, axis=1))[min(k, 8)] for x in X]
        np.testing.assert_allclose(local_scales(X, k), expected, rtol=1e-10)


@pytest.mark.filterwarnings("error")
def test_kth_smallest_is_exact_with_ties_in_float32():
    # float32 selection, then the exact float64 value: equal to np.partition's,
    # also where many entries round to the same float32 (or are equal).
    from mahal._lfda_solver import _kth_smallest
    rng = np.random.default_rng(6)
    D = rng.random((50, 40))
    D[:10] = 1.0 + rng.integers(0, 3, size=(10, 40)) * 1e-12   # float32 ties
    D[10:15] = 0.0                                             # duplicates
    D[15:20, ::3] = 1e300                                      # beyond float32
    for kk in (0, 1, 7, 39):
        np.testing.assert_array_equal(_kth_smallest(D, kk),
                                      np.sqrt(np.partition(D, kk, axis=1)[:, kk]))


def test_blocked_and_unblocked_scatter_are_identical_up_to_rounding():
    X, y = _multimodal(n_per=20, d=4)
    full = local_scatter(X, y, 7)
    for block in (1, 7, 64):    # a row at a time, a few rows, ...
        blocked = local_scatter(X, y, 7, block=block)
        for a, b in zip(blocked, full):
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12 * np.abs(b).max())


def test_duplicates_give_zero_affinity_where_sigma_is_zero_and_no_nan():
    # Each point of class 0 appears 3 times: with k = 2, σ = 0 for all of them.
    rng = np.random.default_rng(2)
    base = rng.normal(size=(4, 3))
    X = np.vstack([np.repeat(base, 3, axis=0), rng.normal(size=(8, 3)) + 3.0])
    y = np.repeat([0, 1], [12, 8])
    S_lb, S_lw = local_scatter(X, y, 2)
    ref_lb, ref_lw = paper_scatter(X, y, 2)
    assert np.all(np.isfinite(S_lb)) and np.all(np.isfinite(S_lw))
    np.testing.assert_allclose(S_lw, ref_lw, rtol=1e-9, atol=1e-9 * np.abs(ref_lw).max())
    np.testing.assert_allclose(S_lb, ref_lb, rtol=1e-9, atol=1e-9 * np.abs(ref_lb).max())


def test_scatter_of_data_far_from_the_origin_keeps_its_precision():
    # Computed from centred data: an offset of 1e6 must not cost 12 digits (the
    # Σ x xᵀ − s sᵀ / n form of the reference code and metric-learn loses them).
    X, y = _multimodal()
    near = local_scatter(X, y, 7)
    far = local_scatter(X + 1e6, y, 7)
    for a, b in zip(far, near):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6 * np.abs(b).max())


def test_local_between_scatter_is_positive_semidefinite():
    # S_lb = S_B + Σ_l (1/n_l − 1/n) ½ Σ_ij∈l (1 − A_ij) δδᵀ with 0 ≤ A ≤ 1.
    X, y = load_wine(return_X_y=True)
    S_lb, _ = local_scatter((X - X.mean(0)) / X.std(0), y, 7)
    w = np.linalg.eigvalsh(S_lb)
    assert w[0] >= -1e-12 * w[-1]


def test_metric_learns_between_scatter_is_the_papers_plus_twice_the_within():
    # metric-learn 0.7's lfda.py, its formula with the local scales of the paper:
    # tSb = Σ_c [G/n + (1 − n_c/n) X_cᵀX_c + s_c s_cᵀ/n] − (s sᵀ/n − tSw).
    X, y = _multimodal()
    n, d = X.shape
    A = paper_affinity(X, y, 7)
    tSb, tSw = np.zeros((d, d)), np.zeros((d, d))
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        Xc, Ac, n_c = X[idx], A[np.ix_(idx, idx)], len(idx)
        G = Xc.T @ (Ac.sum(axis=0)[:, None] * Xc) - Xc.T @ Ac @ Xc
        tSb += G / n + (1 - n_c / n) * Xc.T @ Xc + np.outer(Xc.sum(0), Xc.sum(0)) / n
        tSw += G / n_c
    tSb -= np.outer(X.sum(0), X.sum(0)) / n - tSw
    S_lb, S_lw = local_scatter(X, y, 7)
    np.testing.assert_allclose(tSw, S_lw, rtol=1e-9, atol=1e-9 * np.abs(S_lw).max())
    np.testing.assert_allclose(tSb, S_lb + 2 * S_lw, rtol=1e-9,
                               atol=1e-9 * np.abs(S_lb).max())
    # hence its eigenvalues are the paper's + 2 (and its 'weighted' scales √(λ + 2))
    lam_ml = scipy.linalg.eigh(tSb, tSw, eigvals_only=True)
    lam = scipy.linalg.eigh(S_lb, S_lw, eigvals_only=True)
    np.testing.assert_allclose(lam_ml, lam + 2, rtol=1e-8)


# ---------------------------------------------------------------------------
# The transformation against the dense reference


@pytest.mark.parametrize("embedding_type", ["weighted", "orthonormalized", "plain"])
@pytest.mark.parametrize("n_components", [1, 2, 3])
def test_lfda_equals_the_dense_reference_with_a_class_of_one_point(embedding_type,
                                                                  n_components):
    X, y = _multimodal()
    lfda = LFDA(n_components=n_components, embedding_type=embedding_type).fit(X, y)
    ref, lam = paper_lfda(X, y, n_components, 7, embedding_type)
    assert_rows_equal_up_to_sign(lfda.components_, ref)
    np.testing.assert_allclose(lfda.eigenvalues_, lam, rtol=1e-9)


@pytest.mark.parametrize("embedding_type", ["weighted", "orthonormalized", "plain"])
def test_lfda_with_more_features_than_points_equals_the_regularised_reference(
        embedding_type):
    # d = 30 > n = 19: S_lw is singular; the documented floor applies.
    rng = np.random.default_rng(3)
    X = rng.normal(size=(19, 30))
    y = np.repeat([0, 1, 2], [9, 9, 1])
    X[y == 1] += 1.5
    m = 5
    lfda = LFDA(n_components=m, k=3, embedding_type=embedding_type).fit(X, y)
    ref, lam = paper_lfda(X, y, m, 3, embedding_type)
    assert np.all(np.isfinite(lfda.components_))
    np.testing.assert_allclose(lfda.eigenvalues_, lam, rtol=1e-8)
    assert_rows_equal_up_to_sign(lfda.components_, ref, rtol=1e-6)
    _, info = lfda_solve(X, y, m, 3)
    assert info["rank"] == 18 and info["n_regularized"] > 0 and info["floor"] > 0


def test_components_beyond_the_rank_of_the_data_have_zero_weight():
    # 30 features, 19 points: only 18 directions vary. 'weighted' rows beyond are 0;
    # 'orthonormalized' still gives an orthonormal basis.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(19, 30))
    y = np.repeat([0, 1], [10, 9])
    w = LFDA(embedding_type="weighted", k=3).fit(X, y)
    assert np.all(w.eigenvalues_[18:] == 0) and np.all(w.components_[18:] == 0)
    o = LFDA(embedding_type="orthonormalized", k=3).fit(X, y)
    np.testing.assert_allclose(o.components_ @ o.components_.T, np.eye(30), atol=1e-10)


def test_constant_features_do_not_trigger_the_regularisation():
    # A constant feature is a direction without variance, not a singular S_lw:
    # the other directions are the paper's, as without that feature.
    X, y = _multimodal()
    X0 = np.hstack([X, np.full((X.shape[0], 1), 2.5)])
    lfda = LFDA(n_components=3).fit(X0, y)
    ref = LFDA(n_components=3).fit(X, y)
    np.testing.assert_allclose(lfda.components_[:, -1], 0.0, atol=1e-12)
    assert_rows_equal_up_to_sign(lfda.components_[:, :-1], ref.components_)


def test_default_k_is_seven_and_none_means_seven():
    X, y = load_iris(return_X_y=True)
    a = LFDA(n_components=2).fit(X, y).components_
    b = LFDA(n_components=2, k=None).fit(X, y).components_
    c, _ = paper_lfda(X[::3], y[::3], 2, 7)
    np.testing.assert_array_equal(a, b)
    assert_rows_equal_up_to_sign(LFDA(n_components=2).fit(X[::3], y[::3]).components_, c)


def test_weighted_embedding_is_finite_on_metric_learns_issue_107():
    # metric-learn's issue 107: LFDA in a Pipeline gave "invalid value in sqrt" and
    # NaN components on this split.
    X, y = make_classification(random_state=0)
    X_train, X_test, y_train, y_test = train_test_split(X, y, random_state=7)
    pipe = make_pipeline(LFDA(), KNeighborsClassifier()).fit(X_train, y_train)
    L = pipe[0].components_
    assert np.all(np.isfinite(L)) and np.all(pipe[0].eigenvalues_ >= 0)
    assert pipe.score(X_test, y_test) >= 0.8


# ---------------------------------------------------------------------------
# Determinism, scikit-learn conventions


def test_signs_are_deterministic_under_a_permutation_of_the_points():
    # The same problem with the points in another order: the same components,
    # signs included (an eigensolver's signs are arbitrary: metric-learn's 211).
    X, y = load_wine(return_X_y=True)
    X = (X - X.mean(0)) / X.std(0)
    perm = np.random.default_rng(5).permutation(len(y))
    for emb in ("weighted", "orthonormalized", "plain"):
        a = LFDA(n_components=4, embedding_type=emb).fit(X, y).components_
        b = LFDA(n_components=4, embedding_type=emb).fit(X[perm], y[perm]).components_
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10 * np.abs(a).max())
        if emb != "orthonormalized":   # (there: QR's R has a positive diagonal)
            rows = np.argmax(np.abs(a), axis=1)
            assert np.all(a[np.arange(4), rows] > 0)


def test_same_result_for_any_n_jobs():
    X, y = load_wine(return_X_y=True)
    a = LFDA(n_components=3, n_jobs=1).fit(X, y).components_
    b = LFDA(n_components=3, n_jobs=-1).fit(X, y).components_
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12 * np.abs(a).max())


def test_pickle_and_clone():
    X, y = load_iris(return_X_y=True)
    lfda = LFDA(n_components=2, k=5).fit(X, y)
    again = pickle.loads(pickle.dumps(lfda))
    np.testing.assert_array_equal(again.transform(X), lfda.transform(X))
    c = clone(lfda)
    assert c.get_params() == lfda.get_params() and not hasattr(c, "components_")


def test_preprocessor_indices():
    X, y = load_iris(return_X_y=True)
    a = LFDA(n_components=2, preprocessor=X).fit(np.arange(len(y)), y)
    b = LFDA(n_components=2).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)


@parametrize_with_checks([LFDA(), LFDA(n_components=1, embedding_type="plain")])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# Bad input


@pytest.mark.parametrize("params, match", [
    ({"k": 0}, "'k' parameter of LFDA must be"),
    ({"k": True}, "'k' parameter of LFDA must be"),
    ({"n_components": 0}, "'n_components' parameter of LFDA must be"),
    ({"embedding_type": "whitened"}, "'embedding_type' parameter of LFDA must be"),
    ({"n_components": 5}, r"n_components must be None or an integer in \[1, "
                          r"n_features=4\]"),
])
def test_bad_parameters(params, match):
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match=match):
        LFDA(**params).fit(X, y)


def test_bad_data():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        LFDA().fit(X, np.zeros(len(y)))
    with pytest.raises(ValueError, match="NaN"):
        LFDA().fit(np.where(np.arange(X.size).reshape(X.shape) == 7, np.nan, X), y)
    with pytest.raises(ValueError, match="requires y"):
        LFDA().fit(X, None)
    with pytest.raises(ValueError, match="within-class scatter is zero"):
        LFDA().fit(X[:5], np.arange(5))              # every class a single point
    with pytest.raises(ValueError, match="within-class scatter is zero"):
        LFDA().fit(np.repeat(X[:3], 2, axis=0), [0, 0, 1, 1, 2, 2])  # duplicates
