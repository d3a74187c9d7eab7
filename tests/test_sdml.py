"""SDML and SDML_Supervised: the graphical-lasso solver against cvxpy, the handling of
an indefinite P (metric-learn's issues 154, 162, 190), metric-learn's API."""

import pickle
import warnings

import numpy as np
import pytest
from sklearn.covariance import graphical_lasso
from sklearn.datasets import load_iris
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import SDML, SDML_Supervised, reference
from mahal._sdml_solver import (
    glasso_compiled,
    glasso_sklearn,
    pair_loss_matrix,
    sdml_objective,
    sdml_solve,
)
from mahal.constraints import Constraints, wrap_pairs
from mahal.exceptions import NonPSDError


def _random_pairs(rng, n=40, d=5, n_pairs=60, kind="gaussian"):
    X = rng.normal(size=(n, d)) * rng.uniform(0.5, 2.0, size=d)
    if kind == "rank_deficient":  # the points span 3 of 5 dimensions
        X[:, 3] = X[:, 0] - 2 * X[:, 1]
        X[:, 4] = 0.0
    elif kind == "duplicates":  # every point twice: some pairs have δ = 0
        X[n // 2:] = X[:n // 2]
    idx = rng.integers(0, n, size=(n_pairs, 2))
    if kind == "duplicates":
        idx[:10, 1] = (idx[:10, 0] + n // 2) % n
    return X[idx], rng.choice([-1, 1], size=n_pairs)


# (kind, balance_param, sparsity_param, prior): repaired and as-given P, λ = 0 and
# λ large enough to zero many entries, every prior
PROBLEMS = [
    ("gaussian", 0.5, 0.01, "identity"),
    ("gaussian", 0.005, 0.3, "identity"),
    ("rank_deficient", 0.5, 0.05, "identity"),
    ("rank_deficient", 0.002, 0.0, "random"),
    ("duplicates", 0.5, 0.1, "identity"),
    ("duplicates", 0.003, 0.02, "covariance"),
]


@pytest.mark.parametrize("seed,problem", list(enumerate(PROBLEMS)),
                         ids=[f"{p[0]}-eta{p[1]}-lam{p[2]}-{p[3]}" for p in PROBLEMS])
def test_reaches_the_cvxpy_optimum(seed, problem):
    kind, eta, lam, prior = problem
    rng = np.random.default_rng(seed)
    pairs, y = _random_pairs(rng, kind=kind)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the repair's warning
        sdml = SDML(balance_param=eta, sparsity_param=lam, prior=prior,
                    random_state=seed).fit(pairs, y)
    d = pairs.shape[2]
    if prior == "identity":
        prior_inv = np.eye(d)
    elif prior == "covariance":
        prior_inv = np.cov(np.unique(pairs.reshape(-1, d), axis=0), rowvar=False)
    else:
        from sklearn.datasets import make_spd_matrix
        prior_inv = np.linalg.inv(make_spd_matrix(d, random_state=seed))
    P = reference.sdml_matrix(pairs, y, prior_inv, sdml.balance_param_)
    M_ref, f_ref = reference.sdml(P, lam)
    M = sdml.get_mahalanobis_matrix()
    f = reference.sdml_objective(M, P, lam)
    assert abs(f - f_ref) <= 1e-3 * abs(f_ref)
    np.testing.assert_allclose(M, M_ref, atol=2e-3 * np.abs(M_ref).max())
    # the solver's objective is the reference's
    assert sdml_objective(M, P, lam) == pytest.approx(f, rel=1e-10)


def test_large_sparsity_gives_the_diagonal_solution():
    # Graphical lasso: for λ ≥ max_{i≠j} |P_ij| the minimiser is diag(1 / P_ii).
    rng = np.random.default_rng(7)
    pairs, y = _random_pairs(rng)
    eta = 0.004
    P = reference.sdml_matrix(pairs, y, np.eye(5), eta)
    lam = np.abs(P - np.diag(np.diag(P))).max() * 1.01
    sdml = SDML(balance_param=eta, sparsity_param=lam).fit(pairs, y)
    np.testing.assert_allclose(sdml.get_mahalanobis_matrix(), np.diag(1 / np.diag(P)),
                               rtol=1e-8, atol=1e-12)


def test_one_feature_is_the_closed_form():
    # no off-diagonal entry: M = 1 / P exactly (metric-learn refuses one feature)
    pairs = np.array([[[0.0], [1.0]], [[2.0], [5.0]], [[1.0], [1.5]]])
    y = np.array([1, -1, 1])
    sdml = SDML(balance_param=0.05).fit(pairs, y)
    P = 1 + 0.05 * (1.0 - 9.0 + 0.25)
    np.testing.assert_allclose(sdml.get_mahalanobis_matrix(), [[1 / P]], rtol=1e-12)


# ---------------------------------------------------------------------------
# An indefinite P: metric-learn issues 154 (iris, 200 constraints), 162, 190


def _metric_learn_P(X, y, n_constraints, random_state, balance_param):
    """P as metric-learn 0.7 builds it (sdml.py: prior_inv + balance_param ·
    (diff.T * y).dot(diff)), on the pairs that SDML_Supervised samples."""
    a, b, c, d = Constraints(y).positive_negative_pairs(
        n_constraints, random_state=np.random.RandomState(random_state))
    pairs, yp = wrap_pairs(X, (a, b, c, d))
    diff = pairs[:, 0] - pairs[:, 1]
    return np.eye(X.shape[1]) + balance_param * (diff.T * yp).dot(diff), pairs, yp


def test_indefinite_P_is_repaired_where_metric_learn_fails():
    # issue 154's case: iris, SDML_Supervised(n_constraints=200), default
    # balance_param=0.5. P is indefinite, and the graphical lasso that metric-learn
    # calls on it fails: it raises, or returns a matrix that is not finite or not
    # positive definite, which metric-learn turns into a RuntimeError (sdml.py,
    # _BaseSDML._fit).
    X, y = load_iris(return_X_y=True)
    P, pairs, yp = _metric_learn_P(X, y, 200, 1234, 0.5)
    assert np.linalg.eigvalsh(P)[0] < 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _, M_glasso = graphical_lasso(P, alpha=0.01)
            failed = (not np.all(np.isfinite(M_glasso))
                      or np.linalg.eigvalsh(M_glasso)[0] < 0)
        except FloatingPointError:
            failed = True
    assert failed
    # mahal: a warning that names the cause and the fix, then the optimum of SDML
    # with the lowered balance_param, a finite positive definite metric
    with pytest.warns(UserWarning, match="not positive definite.*balance_param below"):
        sdml = SDML_Supervised(n_constraints=200, random_state=1234).fit(X, y)
    L = (pairs[:, 0] - pairs[:, 1]).T * yp @ (pairs[:, 0] - pairs[:, 1])
    mu = np.linalg.eigvalsh(L)[0]  # prior = I: the plain smallest eigenvalue
    assert sdml.balance_param_ == pytest.approx(1 / (2 * abs(mu)), rel=1e-9)
    P_used = np.eye(4) + sdml.balance_param_ * L
    assert np.linalg.eigvalsh(P_used)[0] == pytest.approx(0.5, rel=1e-8)
    M = sdml.get_mahalanobis_matrix()
    assert np.all(np.isfinite(M)) and np.linalg.eigvalsh(M)[0] > 0
    _, f_ref = reference.sdml(P_used, 0.01)
    assert reference.sdml_objective(M, P_used, 0.01) == pytest.approx(f_ref, rel=1e-3)


def test_repair_is_relative_to_the_prior():
    # μ is the generalised eigenvalue of L relative to M0⁻¹: P = M0⁻¹ + η' L has
    # smallest eigenvalue ½ relative to M0⁻¹ (C^{-1/2} P C^{-1/2} ⪰ ½ I, C = M0⁻¹)
    rng = np.random.default_rng(3)
    pairs, y = _random_pairs(rng)
    M0 = np.diag([1.0, 4.0, 0.25, 2.0, 9.0])
    with pytest.warns(UserWarning, match="not positive definite"):
        sdml = SDML(prior=M0).fit(pairs, y)
    C = np.linalg.inv(M0)
    L = pair_loss_matrix(pairs[:, 0] - pairs[:, 1], y)
    C_isqrt = np.diag(1 / np.sqrt(np.diag(C)))
    P = C + sdml.balance_param_ * L
    assert np.linalg.eigvalsh(C_isqrt @ P @ C_isqrt)[0] == pytest.approx(0.5, rel=1e-8)


def test_positive_definite_P_is_solved_as_given():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sdml = SDML_Supervised(balance_param=1e-4, random_state=0).fit(X, y)
    assert sdml.balance_param_ == 1e-4


# ---------------------------------------------------------------------------
# Priors (metric-learn's _initialize_metric_mahalanobis with strict_pd=True)


def test_singular_covariance_prior_raises_a_clear_error():
    X, y = load_iris(return_X_y=True)
    X = np.hstack([X, X[:, :1]])  # a linearly dependent feature
    with pytest.raises(NonPSDError, match="covariance of the points is singular.*PCA"):
        SDML_Supervised(prior="covariance", balance_param=1e-4).fit(X, y)


def test_prior_must_be_strictly_positive_definite():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(NonPSDError, match="strictly positive definite"):
        SDML_Supervised(prior=np.diag([1.0, 1.0, 1.0, 0.0])).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        SDML_Supervised(prior=np.eye(3)).fit(X, y)


def test_covariance_prior_of_supervised_is_the_covariance_of_X():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    sdml = SDML_Supervised(prior="covariance", balance_param=1e-4, n_constraints=50,
                           random_state=2).fit(X, y)
    a, b, c, d = Constraints(y).positive_negative_pairs(
        50, random_state=np.random.RandomState(2))
    pairs, yp = wrap_pairs(X, (a, b, c, d))
    P = reference.sdml_matrix(pairs, yp, np.cov(X, rowvar=False), 1e-4)
    M_ref, _ = reference.sdml(P, 0.01)
    np.testing.assert_allclose(sdml.get_mahalanobis_matrix(), M_ref,
                               atol=1e-3 * np.abs(M_ref).max())


# ---------------------------------------------------------------------------
# metric-learn's API


def test_num_constraints_is_deprecated_alias():
    X, y = load_iris(return_X_y=True)
    kw = dict(balance_param=1e-3, random_state=5)
    with pytest.warns(FutureWarning, match="'num_constraints' was renamed"):
        old = SDML_Supervised(num_constraints=30, **kw).fit(X, y)
    new = SDML_Supervised(n_constraints=30, **kw).fit(X, y)
    np.testing.assert_array_equal(old.components_, new.components_)
    assert old.get_params()["n_constraints"] is None


def test_default_parameters_are_metric_learns():
    assert SDML().get_params() == dict(balance_param=0.5, sparsity_param=0.01,
                                       prior="identity", verbose=False,
                                       preprocessor=None, random_state=None)
    assert SDML_Supervised().get_params() == dict(
        balance_param=0.5, sparsity_param=0.01, prior="identity", n_constraints=None,
        verbose=False, preprocessor=None, random_state=None,
        num_constraints="deprecated")


def test_default_n_constraints_is_20_n_classes_squared():
    # metric-learn: n_constraints = 20 · n_classes² pairs of each kind
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    default = SDML_Supervised(balance_param=1e-4, random_state=0).fit(X, y)
    explicit = SDML_Supervised(balance_param=1e-4, n_constraints=180,
                               random_state=0).fit(X, y)
    np.testing.assert_array_equal(default.components_, explicit.components_)


def test_bad_parameters():
    X, y = load_iris(return_X_y=True)
    for params in ({"balance_param": -1.0}, {"sparsity_param": -0.1},
                   {"prior": "pca"}, {"n_constraints": 0}):
        with pytest.raises(ValueError, match=next(iter(params))):
            SDML_Supervised(**params).fit(X, y)


def test_verbose_prints_the_graphical_lasso_iterations(capsys):
    X, y = load_iris(return_X_y=True)
    SDML_Supervised(balance_param=1e-4, verbose=True, random_state=0).fit(
        StandardScaler().fit_transform(X), y)
    out = capsys.readouterr().out
    assert "[SDML_Supervised] graphical lasso" in out
    assert "[graphical_lasso] Iteration" in out


def test_supervised_deterministic_and_picklable():
    X, y = load_iris(return_X_y=True)
    a = SDML_Supervised(random_state=3)
    b = SDML_Supervised(random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a.fit(X, y)
        b.fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.transform(X), a.transform(X))


def test_in_a_pipeline_with_knn():
    X, y = load_iris(return_X_y=True)
    pipe = make_pipeline(StandardScaler(),
                         SDML_Supervised(balance_param=1e-4, random_state=0),
                         KNeighborsClassifier(n_neighbors=3))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.mean() > 0.9


@parametrize_with_checks([SDML_Supervised(), SDML_Supervised(balance_param=1e-3)])
def test_sklearn_compatible(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the repair's warning
        check(estimator)


def test_ill_conditioned_P_where_scikit_learns_solver_fails():
    # prior='covariance' on breast cancer's 30 strongly correlated features: P's
    # condition number is about 1e5. scikit-learn's graphical lasso (metric-learn's
    # solver) fails there at sparsity_param=0.01 ("Non SPD result"); mahal falls back
    # to its compiled block coordinate descent and reaches the cvxpy optimum, without
    # a ConvergenceWarning (scikit-learn's inner lasso solves warn at gaps of 1e-8).
    from sklearn.datasets import load_breast_cancer

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    a, b, c, d = Constraints(y).positive_negative_pairs(
        80, random_state=np.random.RandomState(0))
    pairs, yp = wrap_pairs(X, (a, b, c, d))
    C = np.cov(X, rowvar=False)
    P = reference.sdml_matrix(pairs, yp, C, 1e-5)
    assert glasso_sklearn(P, 0.01, tol=1e-4, enet_tol=1e-8, max_iter=100)[0] is None
    L = pair_loss_matrix(pairs[:, 0] - pairs[:, 1], yp)
    _, _, info = sdml_solve(C, L, 1e-5, 0.01)
    assert info["solver"] == "compiled"
    for lam in (0.01, 0.03):
        with warnings.catch_warnings():
            warnings.simplefilter("error", ConvergenceWarning)
            sdml = SDML_Supervised(prior="covariance", balance_param=1e-5,
                                   sparsity_param=lam, random_state=0).fit(X, y)
        M = sdml.get_mahalanobis_matrix()
        if lam == 0.01:  # (one cvxpy solve of 30 × 30 takes seconds)
            _, f_ref = reference.sdml(P, lam)
            f = reference.sdml_objective(M, P, lam)
            assert abs(f - f_ref) <= 1e-3 * abs(f_ref)
        else:  # scikit-learn's solver: the compiled one's optimum, KKT-certified
            M_c, _, _ = glasso_compiled(P, lam, max_iter=100)
            assert _kkt_violation(M_c, P, lam) < 1e-4
            assert sdml_objective(M, P, lam) == pytest.approx(
                sdml_objective(M_c, P, lam), rel=1e-6)
    with pytest.warns(ConvergenceWarning, match="did not converge in 2 sweeps"):
        sdml_solve(C, L, 1e-5, 0.01, max_iter=2)


@pytest.mark.parametrize("seed,problem", list(enumerate(PROBLEMS)),
                         ids=[f"{p[0]}-lam{p[2]}" for p in PROBLEMS])
def test_compiled_solver_reaches_the_cvxpy_optimum(seed, problem):
    kind, _, lam, _ = problem
    if lam == 0:
        lam = 0.01
    rng = np.random.default_rng(seed)
    pairs, y = _random_pairs(rng, kind=kind)
    L = pair_loss_matrix(pairs[:, 0] - pairs[:, 1], y)
    eta = 0.5 / abs(np.linalg.eigvalsh(L)[0])  # P ⪰ ½ I
    P = reference.sdml_matrix(pairs, y, np.eye(5), eta)
    M, _, converged = glasso_compiled(P, lam, max_iter=100)
    assert converged
    _, f_ref = reference.sdml(P, lam)
    assert reference.sdml_objective(M, P, lam) == pytest.approx(f_ref, rel=1e-6)


def _kkt_violation(M, P, lam):
    """Largest violation of the graphical lasso's optimality conditions, relative to
    λ: G = P − M⁻¹ has G_ii = 0, G_ij = −λ sign(M_ij) where M_ij ≠ 0, |G_ij| ≤ λ
    elsewhere (entries below 1e-9 max|M| count as zeros: rounding of the
    symmetrisation)."""
    G = P - np.linalg.inv(M)
    off = ~np.eye(len(M), dtype=bool)
    small = np.abs(M) <= 1e-9 * np.abs(M).max()
    nonzero = off & ~small
    zero = off & small
    v = [np.abs(np.diag(G)).max() / lam,
         np.abs(G[nonzero] + lam * np.sign(M[nonzero])).max(initial=0) / lam,
         np.maximum(np.abs(G[zero]) - lam, 0).max(initial=0) / lam]
    return max(v)


def test_above_64_features_the_compiled_solver_is_optimal():
    # 80 features: the compiled path of the estimator; its M satisfies the
    # optimality conditions, is sparse, and its objective is scikit-learn's
    rng = np.random.default_rng(11)
    n, dim = 200, 80
    X = rng.normal(size=(n, dim))
    idx = rng.integers(0, n, size=(300, 2))
    yp = rng.choice([-1, 1], size=300)
    lam = 0.05
    with pytest.warns(UserWarning, match="not positive definite"):
        sdml = SDML(sparsity_param=lam, preprocessor=X).fit(idx, yp)
    M = sdml.get_mahalanobis_matrix()
    P = reference.sdml_matrix(X[idx], yp, np.eye(dim), sdml.balance_param_)
    L = pair_loss_matrix(X[idx[:, 0]] - X[idx[:, 1]], yp)
    M_solver, _, info = sdml_solve(np.eye(dim), L, sdml.balance_param_, lam)
    assert info["solver"] == "compiled"
    assert _kkt_violation(M_solver, P, lam) < 1e-4
    assert np.mean(M_solver == 0) > 0.1  # the ℓ1 term's zeros are kept
    np.testing.assert_allclose(M, M_solver, rtol=1e-8, atol=1e-12)
    M_sk, _ = glasso_sklearn(P, lam, tol=1e-6, enet_tol=1e-8, max_iter=100)
    assert sdml_objective(M_solver, P, lam) == pytest.approx(
        sdml_objective(M_sk, P, lam), rel=1e-7)


def test_pipeline_and_grid_search_on_index_pairs():
    # pairs as indices into X (the preprocessor), in a Pipeline, cross-validated
    # and grid-searched over sparsity_param, scored by ROC AUC
    from sklearn.model_selection import GridSearchCV
    from sklearn.pipeline import Pipeline

    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    a, b, c, d = Constraints(y).positive_negative_pairs(
        60, random_state=np.random.RandomState(0))
    idx = np.concatenate([np.stack([a, b], 1), np.stack([c, d], 1)])
    yp = np.concatenate([np.ones(len(a)), -np.ones(len(c))])
    pipe = Pipeline([("sdml", SDML(balance_param=1e-3, preprocessor=X))])
    scores = cross_val_score(pipe, idx, yp, cv=3, scoring="roc_auc")
    # the same folds by hand: the pipeline adds nothing but must change nothing
    from sklearn.model_selection import StratifiedKFold
    by_hand = []
    for train, test in StratifiedKFold(3).split(idx, yp):
        est = SDML(balance_param=1e-3, preprocessor=X).fit(idx[train], yp[train])
        by_hand.append(est.score(idx[test], yp[test]))
    np.testing.assert_allclose(scores, by_hand)
    grid = GridSearchCV(pipe, {"sdml__sparsity_param": [0.01, 0.5]}, cv=3,
                        scoring="roc_auc").fit(idx, yp)
    assert grid.best_params_["sdml__sparsity_param"] in (0.01, 0.5)
    assert grid.best_estimator_["sdml"].balance_param_ == 1e-3


def test_bad_tuples_and_labels():
    rng = np.random.default_rng(0)
    pairs, y = _random_pairs(rng)
    triplets = np.concatenate([pairs, pairs[:, :1]], axis=1)
    with pytest.raises(ValueError, match="must have 2 points per tuple"):
        SDML().fit(triplets, y)
    with pytest.raises(ValueError, match=r"\+1 \(similar\) or -1"):
        SDML().fit(pairs, np.where(y > 0, 1, 2))
    with pytest.raises(ValueError, match="one label per pair"):
        SDML().fit(pairs, y[:-1])
    bad = pairs.copy()
    bad[3, 1, 2] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        SDML().fit(bad, y)
