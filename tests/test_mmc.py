"""Tests of MMC and MMC_Supervised against the cvxpy reference (mahal.reference.mmc)."""

import pickle
import re
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.base import clone, is_classifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import MMC, MMC_Supervised
from mahal._mmc_kernels import project_capped_simplex, project_trace_psd
from mahal.constraints import Constraints
from mahal._mmc_solver import CrossClassPairs, DiffPairs, mmc_objective

cvxpy = pytest.importorskip("cvxpy")
from mahal import reference  # noqa: E402


def pair_problem(seed, d, n=40, m=80, rank=None, dup=False):
    """Random labelled pairs; ``rank`` puts the data in a subspace, ``dup`` adds
    zero-length similar and dissimilar pairs."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d)) * rng.uniform(0.3, 3.0, size=d)
    if rank is not None:
        X = X[:, :rank] @ rng.normal(size=(rank, d))
    labels = rng.integers(0, 3, n)
    i, j = rng.integers(0, n, m), rng.integers(0, n, m)
    y = np.where(labels[i] == labels[j], 1, -1)
    if dup:
        X[1] = X[0]
        i[:2], j[:2], y[:2] = 0, 1, [1, -1]   # duplicate points, both labels
        i[2], j[2], y[2] = 3, 3, -1           # a point paired with itself
    assert (y == 1).any() and (y == -1).any()
    return np.stack([X[i], X[j]], axis=1), y


PROBLEMS = [
    dict(seed=0, d=2),
    dict(seed=1, d=5, dup=True),
    dict(seed=2, d=10),
    dict(seed=3, d=8, rank=3),
    dict(seed=4, d=6, dup=True),
    dict(seed=5, d=10, rank=4, dup=True),
]


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: "-".join(
    f"{k}{v}" for k, v in p.items()))
def test_matches_cvxpy_optimum(problem, diagonal):
    pairs, y = pair_problem(**problem)
    _, ref_value = reference.mmc(pairs, y, diagonal=diagonal)
    c = 3.0
    model = MMC(tol=1e-6, max_iter=2000, diagonal=diagonal, diagonal_c=c).fit(pairs, y)
    A = model.get_mahalanobis_matrix()
    value, constraint = mmc_objective(A, pairs, y)
    assert np.all(np.isfinite(A))
    if diagonal:
        assert np.allclose(A, np.diag(np.diag(A)))
        # Xing's minimiser sits at Σ_S d_A = c/2; rescale it to the constraint
        assert constraint == pytest.approx(c / 2, rel=1e-6)
        value /= np.sqrt(constraint)
    else:
        assert constraint <= 1 + 1e-6
    assert value >= ref_value * (1 - 1e-3)
    assert value <= ref_value * (1 + 1e-4)  # no feasible point beats the optimum


def test_default_tol_reaches_the_optimum_within_tol():
    pairs, y = pair_problem(seed=7, d=6)
    _, ref_value = reference.mmc(pairs, y)
    value, constraint = mmc_objective(MMC().fit(pairs, y).get_mahalanobis_matrix(),
                                       pairs, y)
    assert constraint <= 1 + 1e-9
    assert value >= ref_value * (1 - 1e-3)


def test_unbounded_problem_warns_and_returns_limit():
    # feature 2 varies in dissimilar pairs but never in similar ones: unbounded
    rng = np.random.default_rng(0)
    S = rng.normal(size=(20, 2, 3))
    S[:, 1, 2] = S[:, 0, 2]
    D = rng.normal(size=(20, 2, 3))
    pairs, y = np.concatenate([S, D]), np.r_[np.ones(20), -np.ones(20)]
    for diagonal in (False, True):
        with pytest.warns(UserWarning, match="unbounded"):
            model = MMC(diagonal=diagonal).fit(pairs, y)
        dist = model.pair_distance(pairs)
        assert np.allclose(dist[:20], 0.0, atol=1e-10)
        assert np.all(dist[20:] > 0)
        # the null space of the similar scatter is e_3: the limit metric is e_3 e_3ᵀ
        A = model.get_mahalanobis_matrix()
        assert np.allclose(A / np.trace(A), np.diag([0.0, 0.0, 1.0]), atol=1e-10)


# ---------------------------------------------------------------------------
# gradients, Hessians and the projection


def _fd_grad(f, x, h=1e-6):
    """Central differences; for a vector-valued f, row k is ∂f/∂x_k."""
    rows = []
    for k in range(x.shape[0]):
        e = np.zeros_like(x)
        e[k] = h
        rows.append((np.asarray(f(x + e)) - np.asarray(f(x - e))) / (2 * h))
    return np.array(rows)


def test_full_gradient_finite_differences():
    pairs, y = pair_problem(seed=11, d=4, dup=True)
    diffs = (pairs[:, 0] - pairs[:, 1])[y == -1]
    oracle = DiffPairs(diffs=diffs)
    rng = np.random.default_rng(0)
    M = rng.normal(size=(4, 4))
    M = M @ M.T + 0.1 * np.eye(4)
    F, G = oracle.value_grad(M)
    assert F == pytest.approx(np.sum(np.sqrt(np.einsum("ij,jk,ik->i", diffs, M,
                                                       diffs))))
    # gradient w.r.t. a symmetric perturbation: compare directional derivatives
    for _ in range(5):
        E = rng.normal(size=(4, 4))
        E = E + E.T
        h = 1e-6
        fd = (oracle.value_grad(M + h * E, False)[0]
              - oracle.value_grad(M - h * E, False)[0]) / (2 * h)
        assert np.vdot(G, E) == pytest.approx(fd, rel=1e-6)


def test_diagonal_gradient_and_hessian_finite_differences():
    pairs, y = pair_problem(seed=12, d=5, dup=True)
    diffs = (pairs[:, 0] - pairs[:, 1])[y == -1]
    oracle = DiffPairs(diffs=diffs)
    b = np.random.default_rng(1).uniform(0.5, 2.0, size=5)
    F, g, H = oracle.diag_value_grad_hess(b)
    assert np.allclose(g, _fd_grad(lambda v: oracle.diag_value_grad_hess(v)[0], b),
                       rtol=1e-6)
    # H is −∇²f
    assert np.allclose(-H, _fd_grad(lambda v: oracle.diag_value_grad_hess(v)[1], b),
                       rtol=1e-5)
    # and Xing's objective g(b) = Σ b − c log f(b), as the Newton solver builds it
    c = 2.0

    def xing(v):
        return v.sum() - c * np.log(oracle.diag_value_grad_hess(v)[0])

    grad = 1 - c * g / F
    hess = c * (H / F + np.outer(g, g) / F ** 2)
    assert np.allclose(grad, _fd_grad(xing, b), rtol=1e-5, atol=1e-8)
    assert np.allclose(hess, _fd_grad(lambda v: 1 - c * oracle.diag_value_grad_hess(
        v)[1] / oracle.diag_value_grad_hess(v)[0], b), rtol=1e-5, atol=1e-8)


def test_all_cross_class_pairs_oracle_matches_explicit_pairs():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 4))
    codes = rng.integers(0, 3, 150)
    X[5], codes[5], codes[7] = X[7], 0, 1  # a duplicate point across classes
    X = X - X.mean(axis=0)
    _, _, c, d = Constraints(codes).all_pairs()
    implicit, explicit = CrossClassPairs(X, codes), DiffPairs(points=X, i=c, j=d)
    explicit.dmin = implicit.dmin
    M = rng.normal(size=(4, 4))
    M = M @ M.T
    (Fi, Gi), (Fe, Ge) = implicit.value_grad(M), explicit.value_grad(M)
    assert Fi == pytest.approx(Fe, rel=1e-12)
    assert np.allclose(Gi, Ge, rtol=1e-9, atol=1e-9 * np.abs(Ge).max())


@pytest.mark.parametrize("case", ["inside", "clip", "simplex", "negative"])
def test_projection_is_exact(case):
    rng = np.random.default_rng(["inside", "clip", "simplex", "negative"].index(case))
    d = 5
    B = rng.normal(size=(d, d))
    A0 = B + B.T
    if case == "inside":
        A0 = B @ B.T / (10 * np.trace(B @ B.T))
    elif case == "clip":
        A0 = A0 / (20 * np.abs(A0).max())
    elif case == "simplex":
        A0 = B @ B.T
    else:
        A0 = -B @ B.T
    P, w, V = project_trace_psd(A0)
    ref = reference.mmc_projection(A0, np.eye(d))
    assert np.allclose(P, ref, atol=1e-5)
    assert np.linalg.norm(P - A0) <= np.linalg.norm(ref - A0) * (1 + 1e-7)
    # KKT: P ⪰ 0, tr P ≤ 1, P = clip(A0 − θ I) with θ ≥ 0, θ (1 − tr P) = 0
    lam = np.linalg.eigvalsh(P)
    assert lam.min() >= -1e-12 and np.trace(P) <= 1 + 1e-12
    lam0, V0 = np.linalg.eigh(A0)
    theta = 0.0 if np.clip(lam0, 0, None).sum() <= 1 else None
    if theta is None:
        # θ solves Σ max(λ − θ, 0) = 1
        from scipy.optimize import brentq

        theta = brentq(lambda t: np.clip(lam0 - t, 0, None).sum() - 1, 0, lam0.max())
        assert np.trace(P) == pytest.approx(1.0)
    assert np.allclose(P, (V0 * np.clip(lam0 - theta, 0, None)) @ V0.T, atol=1e-12)
    if case == "inside":
        assert np.allclose(P, A0)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6).flatmap(lambda d: hnp.arrays(
    np.float64, (d, d), elements=st.floats(-10, 10, allow_subnormal=False))))
def test_projection_variational_inequality(B):
    """P = Π(A0) iff P is feasible and ⟨A0 − P, Q − P⟩ ≤ 0 for every feasible Q;
    the extreme points of {Q ⪰ 0, tr Q ≤ 1} are 0 and v vᵀ (‖v‖ = 1), so it suffices
    that ⟨A0 − P, P⟩ ≥ 0 and λ_max(A0 − P) ≤ ⟨A0 − P, P⟩."""
    A0 = B + B.T
    P = project_trace_psd(A0)[0]
    scale = 1 + np.abs(A0).max()
    assert np.linalg.eigvalsh(P).min() >= -1e-10 * scale
    assert np.trace(P) <= 1 + 1e-10
    R = A0 - P
    inner = np.vdot(R, P)
    assert inner >= -1e-9 * scale
    assert np.linalg.eigvalsh(R).max() <= inner + 1e-9 * scale


def test_capped_simplex_projection():
    rng = np.random.default_rng(3)
    for _ in range(20):
        v = rng.normal(size=7) * rng.uniform(0.1, 3)
        w = project_capped_simplex(v)
        assert w.min() >= 0 and w.sum() <= 1 + 1e-12
        # optimality: w = max(v − θ, 0) with θ ≥ 0 and θ (1 − Σ w) = 0
        free = w > 0
        theta = np.mean(v[free] - w[free]) if free.any() else 0.0
        assert theta >= -1e-12
        assert np.allclose(w, np.clip(v - theta, 0, None))
        assert theta < 1e-12 or w.sum() == pytest.approx(1.0)


# ---------------------------------------------------------------------------
# estimators


def blobs(n=60, d=4, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = rng.normal(size=(n, d)) + 3 * y[:, None] * rng.normal(size=d)
    if labels is not None:
        y = np.asarray(labels)[y]
    return X, y


@pytest.mark.parametrize("diagonal", [False, True])
def test_supervised_matches_cvxpy_on_all_pairs(diagonal):
    X, y = blobs(n=36, d=3)
    a, b, c, d = Constraints(y).all_pairs()
    from mahal.constraints import wrap_pairs

    pairs, py = wrap_pairs(X, (a, b, c, d))
    _, ref_value = reference.mmc(pairs, py, diagonal=diagonal)
    model = MMC_Supervised(diagonal=diagonal, tol=1e-7, max_iter=1000).fit(X, y)
    value, constraint = mmc_objective(model.get_mahalanobis_matrix(), pairs, py)
    assert value / np.sqrt(constraint) == pytest.approx(ref_value, rel=1e-3)


def test_supervised_sampled_pairs_and_determinism():
    X, y = blobs(n=90, d=5)
    kw = dict(n_constraints=40, init="random", random_state=3)
    G1 = MMC_Supervised(**kw).fit(X, y).components_
    G2 = MMC_Supervised(**kw).fit(X, y).components_
    assert np.array_equal(G1, G2)
    G3 = MMC_Supervised(**{**kw, "random_state": 4}).fit(X, y).components_
    assert not np.allclose(G1, G3)
    mmc = MMC(random_state=0)
    pairs, py = pair_problem(seed=2, d=4)
    assert np.array_equal(mmc.fit(pairs, py).components_,
                          clone(mmc).fit(pairs, py).components_)


@pytest.mark.parametrize("n, diagonal", [(2100, False), (340, True)])
def test_supervised_large_data_samples_pairs(n, diagonal):
    # Past 2·10⁶ pairs (full) or 5·10⁴ (diagonal), n_constraints=None samples pairs:
    # the metric then depends on the seed (all pairs would not), and the same seed
    # gives the same metric.
    X, y = blobs(n=n, d=4)
    assert n * (n - 1) // 2 > (50_000 if diagonal else 2_000_000)
    G1, G2, G3 = (MMC_Supervised(diagonal=diagonal, random_state=seed, max_iter=20,
                                 tol=1e-3).fit(X, y).components_ for seed in (0, 0, 1))
    assert np.array_equal(G1, G2)
    assert not np.allclose(G1, G3)


def test_string_labels_and_pickle():
    X, y = blobs(labels=["cat", "dog", "emu"])
    model = MMC_Supervised().fit(X, y)
    Xn, yn = blobs()
    assert np.allclose(model.components_, MMC_Supervised().fit(Xn, yn).components_)
    clone_ = pickle.loads(pickle.dumps(model))
    assert np.array_equal(clone_.transform(X), model.transform(X))
    pairs, py = pair_problem(seed=3, d=4)
    mmc = MMC().fit(pairs, py)
    again = pickle.loads(pickle.dumps(mmc))
    assert np.array_equal(again.predict(pairs), mmc.predict(pairs))


def test_pair_classifier_api_pipeline_and_cross_validation():
    assert is_classifier(MMC())
    X, labels = blobs(n=60, d=4)
    rng = np.random.default_rng(0)
    idx = rng.integers(0, 60, size=(200, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    y = np.where(labels[idx[:, 0]] == labels[idx[:, 1]], 1, -1)
    scores = cross_val_score(MMC(preprocessor=X), idx, y, scoring="roc_auc", cv=3)
    assert scores.mean() > 0.9
    pairs = X[idx]
    scores = cross_val_score(MMC(), pairs, y, scoring="roc_auc", cv=3)
    assert scores.mean() > 0.9
    mmc = MMC(preprocessor=X).fit(idx, y)
    assert mmc.score(idx, y) > 0.9
    assert set(np.unique(mmc.predict(idx))) <= {-1, 1}
    assert np.allclose(mmc.decision_function(idx),
                       mmc.threshold_ - mmc.pair_distance(pairs))
    mmc.fit(idx, y, calibration_params={"strategy": "max_tpr", "min_rate": 0.5})
    search = GridSearchCV(MMC(preprocessor=X), {"diagonal": [False, True]},
                          scoring="roc_auc", cv=3).fit(idx, y)
    assert search.best_score_ > 0.9
    # the supervised learner in a Pipeline before a k-NN classifier
    pipe = make_pipeline(MMC_Supervised(), KNeighborsClassifier(3)).fit(X, labels)
    assert pipe.score(X, labels) > 0.9


def test_diagonal_supervised_is_diagonal():
    X, y = blobs(n=60, d=4)
    A = MMC_Supervised(diagonal=True).fit(X, y).get_mahalanobis_matrix()
    assert np.allclose(A, np.diag(np.diag(A)))
    assert np.all(np.diag(A) >= 0)


def test_convergence_warning_and_verbose(capsys):
    pairs, y = pair_problem(seed=2, d=10)
    with pytest.warns(ConvergenceWarning, match="did not converge") as record:
        model = MMC(max_iter=1, tol=1e-12, verbose=True).fit(pairs, y)
    assert record[0].filename == __file__  # points at the caller
    assert model.n_iter_ == 1
    out = capsys.readouterr().out
    assert re.search(r"\[MMC\]\s+Iteration\s+Objective Value\s+Time\(s\)", out)
    assert re.search(r"\[MMC\]\s+1\s+\S+e[+-]\d+\s+\d+\.\d\d", out)
    with pytest.warns(ConvergenceWarning):
        MMC(max_iter=1, tol=1e-12, diagonal=True, verbose=True).fit(pairs, y)
    assert re.search(r"\[MMC\]\s+1\s+\S+e[+-]\d+", capsys.readouterr().out)


def test_init_options():
    pairs, y = pair_problem(seed=4, d=3)
    _, ref = reference.mmc(pairs, y)
    for init in ["identity", "covariance", "random", np.diag([1.0, 2.0, 3.0])]:
        A = MMC(init=init, tol=1e-6, max_iter=1000, random_state=0).fit(
            pairs, y).get_mahalanobis_matrix()
        assert mmc_objective(A, pairs, y)[0] >= ref * (1 - 1e-3)
    with pytest.raises(ValueError, match="'init' parameter of MMC must be a str among"):
        MMC(init="pca").fit(pairs, y)


# ---------------------------------------------------------------------------
# bad input


def test_bad_pairs_input():
    pairs, y = pair_problem(seed=0, d=3)
    with pytest.raises(ValueError, match="at least one dissimilar pair"):
        MMC().fit(pairs[y == 1], y[y == 1])
    with pytest.raises(ValueError, match="at least one similar pair"):
        MMC().fit(pairs[y == -1], y[y == -1])
    with pytest.raises(ValueError, match=r"must be \+1 \(similar\) or -1"):
        MMC().fit(pairs, np.where(y == 1, 1, 0))
    with pytest.raises(ValueError, match=r"must be \+1 \(similar\) or -1"):
        MMC().fit(pairs, y * 2)
    bad = pairs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        MMC().fit(bad, y)
    zero = pairs.copy()
    zero[y == -1, 1] = zero[y == -1, 0]
    with pytest.raises(ValueError, match="All dissimilar pairs have zero length"):
        MMC().fit(zero, y)
    for param, value in [("max_iter", 0), ("tol", -1.0), ("diagonal_c", 0.0),
                         ("max_proj", 1.5)]:
        with pytest.raises(ValueError, match=param):
            MMC(**{param: value}).fit(pairs, y)


def test_bad_supervised_input():
    X, y = blobs(n=30, d=3)
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        MMC_Supervised().fit(X, np.zeros(30))
    with pytest.raises(ValueError, match="single sample"):
        MMC_Supervised().fit(X[:3], [0, 1, 2])
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="contains NaN"):
        MMC_Supervised().fit(bad, y)
    with pytest.raises(ValueError, match="n_constraints"):
        MMC_Supervised(n_constraints=0).fit(X, y)
    with pytest.raises(ValueError, match="requires y"):
        MMC_Supervised().fit(X, None)


@parametrize_with_checks([MMC_Supervised(), MMC_Supervised(diagonal=True)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# NumPy steps for small problems (mahal._mmc_small) against the kernels


@pytest.mark.parametrize("d", [1, 4, 13, 40])
@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0])
def test_numpy_trace_projection_equals_the_kernel(d, scale):
    from mahal import _mmc_small

    rng = np.random.default_rng(d)
    A = scale * rng.normal(size=(d, d))  # (not symmetric: its symmetric part counts)
    P, w, _ = _mmc_small.project_trace_psd(A)
    Pk, wk, _ = project_trace_psd(A)
    assert d <= _mmc_small._NUMPY_DIM
    np.testing.assert_allclose(P, Pk, rtol=0, atol=1e-12 * max(1.0, np.abs(Pk).max()))
    np.testing.assert_allclose(w, wk, rtol=0, atol=1e-12 * max(1.0, np.abs(wk).max()))
    np.testing.assert_array_equal(P, P.T)


@pytest.mark.parametrize("s, c0", [(0, 0), (5, 5), (5, 0), (0, 12)])
def test_numpy_cross_class_weights_equal_the_kernel(s, c0):
    from mahal import _mmc_kernels, _mmc_small

    rng = np.random.default_rng(s + c0)
    n = 40
    Z = rng.normal(size=(n, 3))
    Z[7] = Z[20]  # (a duplicate pair: weight capped by dmin)
    sq = np.einsum("ij,ij->i", Z, Z)
    codes = rng.integers(0, 3, n).astype(np.int64)
    K = Z[s:s + 15] @ Z[c0:].T
    a, b = K.copy(), K.copy()
    Fa, ra, ca = _mmc_small.cross_class_weights(a, sq, codes, s, c0, 1e-6)
    Fb, rb, cb = _mmc_kernels.cross_class_weights(b, sq, codes, s, c0, 1e-6)
    assert Fa == pytest.approx(Fb, rel=1e-12)
    for u, v in ((a, b), (ra, rb), (ca, cb)):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-12)


def test_supervised_pair_floor_is_capped_with_many_classes(monkeypatch):
    # metric-learn's floor of 20·C² pairs of each kind is capped at 10⁶: with 500
    # classes it would ask for 5·10⁶ (more similar pairs than exist, so all would be
    # enumerated, and memory would grow with C²).
    import mahal.mmc as mmc_module
    asked = []
    original = Constraints.positive_negative_pairs

    def recording(self, n_constraints, *args, **kwargs):
        asked.append(n_constraints)
        return original(self, n_constraints, *args, **kwargs)

    monkeypatch.setattr(Constraints, "positive_negative_pairs", recording)
    rng = np.random.RandomState(0)
    y = np.repeat(np.arange(500), 5)
    X = rng.randn(2500, 2) + 3 * rng.randn(500, 2)[y]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = MMC_Supervised(random_state=0, max_iter=5).fit(X, y)
    assert asked == [mmc_module._MAX_FLOOR_PAIRS] and 20 * 500 ** 2 > asked[0]
    assert np.all(np.isfinite(model.components_))
