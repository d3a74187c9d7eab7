"""metric-learn 0.7's API and meanings, and no silent wrong answers (issue 18).

Each reference is metric-learn's behaviour as read in its source (cited per test), or
scikit-learn's convention, re-implemented here.
"""

import numpy as np
import pytest
import sklearn
from _fresh_process import fresh_output
from numpy.linalg import LinAlgError
from scipy.spatial.distance import mahalanobis
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.metrics import precision_recall_curve
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from mahal import LMNN, MMC, Covariance, MMC_Supervised
from mahal import Contrastive_Supervised, TripletMargin_Supervised
from mahal import LSML_Supervised, RCA_Supervised
from mahal import LFDA
from mahal import ITML_Supervised
from mahal import SDML_Supervised
from mahal import MLKR, NCA
from mahal import NCMML
from mahal import SCML_Supervised
from mahal.base import initialize_metric
from mahal.exceptions import NonPSDError, PreprocessorError
from mahal.linalg import components_from_metric


@pytest.fixture(scope="module")
def iris():
    return load_iris(return_X_y=True)


@pytest.fixture(scope="module")
def pairs_iris(iris):
    X, y = iris
    rng = np.random.default_rng(0)
    idx = rng.integers(0, len(X), size=(200, 2))
    idx = idx[idx[:, 0] != idx[:, 1]]
    labels = np.where(y[idx[:, 0]] == y[idx[:, 1]], 1, -1)
    return X, idx, labels


def _transformers():
    return [
        Covariance(),
        MMC_Supervised(random_state=0),
        LMNN(n_neighbors=3, max_iter=200, random_state=0),
        LSML_Supervised(random_state=0),
        RCA_Supervised(n_chunks=40, random_state=0),
        Contrastive_Supervised(random_state=0),
        TripletMargin_Supervised(random_state=0),
        LFDA(),
        ITML_Supervised(random_state=0),
        SDML_Supervised(balance_param=1e-5, random_state=0),
        NCA(max_iter=50),
        MLKR(max_iter=50),
        NCMML(random_state=0),
        SCML_Supervised(random_state=0),
    ]


# ---------------------------------------------------------------------------
# score_pairs (metric_learn/base_metric.py: MahalanobisMixin.score_pairs)


def test_score_pairs_is_deprecated_and_returns_the_distance(pairs_iris):
    X, idx, labels = pairs_iris
    mmc = MMC(preprocessor=X).fit(idx, labels)
    A = mmc.get_mahalanobis_matrix()
    # metric-learn returns pair_distance: sqrt((x − x')ᵀ A (x − x'))
    expected = [mahalanobis(X[i], X[j], A) for i, j in idx[:20]]
    with pytest.warns(FutureWarning, match="pair_distance.*pair_score"):
        got = mmc.score_pairs(idx[:20])
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    with pytest.warns(FutureWarning):
        np.testing.assert_allclose(Covariance().fit(X).score_pairs(X[idx[:5]]),
                                   Covariance().fit(X).pair_distance(X[idx[:5]]))


# ---------------------------------------------------------------------------
# Deprecated aliases (metric_learn/mmc.py: _BaseMMC.__init__,
# MMC_Supervised.__init__): the old name's value replaces the new one's.


def test_mmc_convergence_threshold_is_tol(pairs_iris):
    X, idx, labels = pairs_iris
    old = MMC(convergence_threshold=1e-2, preprocessor=X)
    assert old.get_params()["convergence_threshold"] == 1e-2
    assert clone(old).get_params()["convergence_threshold"] == 1e-2
    with pytest.warns(FutureWarning, match="'convergence_threshold' was renamed 'tol'"):
        old.fit(idx, labels)
    new = MMC(tol=1e-2, preprocessor=X).fit(idx, labels)
    np.testing.assert_array_equal(old.components_, new.components_)
    assert old.n_iter_ == new.n_iter_
    assert old.threshold_ == new.threshold_
    # the parameters stay as the user set them
    assert old.get_params()["tol"] == 1e-3
    assert old.get_params()["convergence_threshold"] == 1e-2


def test_mmc_supervised_num_constraints_and_convergence_threshold(iris):
    X, y = iris
    old = MMC_Supervised(num_constraints=40, convergence_threshold=1e-3,
                         random_state=1)
    with pytest.warns(FutureWarning) as record:
        old.fit(X, y)
    messages = " ".join(str(w.message) for w in record)
    assert "'num_constraints' was renamed 'n_constraints'" in messages
    assert "'convergence_threshold' was renamed 'tol'" in messages
    new = MMC_Supervised(n_constraints=40, tol=1e-3, random_state=1).fit(X, y)
    np.testing.assert_array_equal(old.components_, new.components_)
    assert old.get_params()["n_constraints"] is None


# ---------------------------------------------------------------------------
# set_threshold (metric_learn/base_metric.py: check_is_fitted first)


def test_set_threshold_on_unfitted_learner_raises_not_fitted():
    with pytest.raises(NotFittedError):
        MMC().set_threshold(1.0)


# ---------------------------------------------------------------------------
# Exceptions (metric_learn/exceptions.py)


def test_exception_hierarchy():
    assert issubclass(NonPSDError, LinAlgError) and issubclass(NonPSDError, ValueError)
    assert issubclass(PreprocessorError, ValueError)
    assert str(NonPSDError()) == "Matrix is not positive semidefinite (PSD)."
    err = PreprocessorError(IndexError("boom"))
    assert str(err) == ("An error occurred when trying to use the preprocessor: "
                        "IndexError('boom')")


@pytest.mark.parametrize("catch", [NonPSDError, ValueError, LinAlgError])
def test_non_psd_init_raises_non_psd_error(pairs_iris, catch):
    X, idx, labels = pairs_iris
    init = np.diag([1.0, 1.0, 1.0, -0.5])
    with pytest.raises(catch, match="positive semi-definite"):
        MMC(init=init, preprocessor=X).fit(idx, labels)
    with pytest.raises(catch):
        initialize_metric(X, init, name="prior")


@pytest.mark.parametrize("catch", [PreprocessorError, ValueError])
def test_preprocessor_index_errors(pairs_iris, catch):
    X, idx, labels = pairs_iris
    bad = idx.copy()
    bad[0, 0] = len(X) + 5
    with pytest.raises(catch, match="preprocessor"):
        MMC(preprocessor=X).fit(bad, labels)

    def lookup(ids):
        return X[ids + 1000]   # IndexError inside the user's function

    with pytest.raises(catch, match="IndexError"):
        MMC(preprocessor=lookup).fit(idx, labels)


@pytest.mark.parametrize("make", [
    lambda X, y: Covariance(preprocessor=4).fit(X),
    lambda X, y: MMC_Supervised(preprocessor=4).fit(X, y),
    lambda X, y: LMNN(preprocessor=4).fit(X, y),
    lambda X, y: MMC(preprocessor=4).fit(np.stack([X[:-1], X[1:]], axis=1),
                                         np.where(y[:-1] == y[1:], 1, -1)),
])
def test_invalid_preprocessor_raises_at_fit_with_points(iris, make):
    X, y = iris
    # (learners with declarative parameter constraints say it in scikit-learn's words)
    with pytest.raises(ValueError, match=r"Invalid type for the preprocessor|"
                       r"'preprocessor' parameter .* must be an array-like"):
        make(X, y)


# ---------------------------------------------------------------------------
# init='covariance' with a singular covariance (metric_learn/_util.py:
# _initialize_metric_mahalanobis warns and uses the pseudo-inverse)


def test_singular_covariance_init_warns(pairs_iris):
    X, idx, labels = pairs_iris
    Xs = np.column_stack([X, X[:, 0] + X[:, 1]])   # rank 4 of 5
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        A = initialize_metric(Xs, "covariance", name="prior")
    np.testing.assert_allclose(A, np.linalg.pinv(np.cov(Xs, rowvar=False)),
                               atol=1e-8 * np.abs(A).max())
    with pytest.warns(UserWarning, match="pseudo-inverse"):
        MMC(init="covariance", preprocessor=Xs).fit(idx, labels)


def test_regular_covariance_init_does_not_warn(iris):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        A = initialize_metric(iris[0], "covariance")
    np.testing.assert_allclose(A, np.linalg.inv(np.cov(iris[0], rowvar=False)),
                               rtol=1e-10)


# ---------------------------------------------------------------------------
# calibration_params (metric_learn/mmc.py: MMC.fit validates them first) and
# calibrate_threshold's beta (_validate_calibration_params: any real number)


@pytest.mark.parametrize("params", [{"strategy": "best"}, {"strategy": "max_tpr"},
                                    {"strategy": "f_beta", "beta": None}])
def test_invalid_calibration_params_fail_before_the_solve(pairs_iris, params):
    # checked after the solve, the metric would be stored when the check fails
    X, idx, labels = pairs_iris
    mmc = MMC(preprocessor=X)
    with pytest.raises(ValueError):
        mmc.fit(idx, labels, calibration_params=params)
    with pytest.raises(NotFittedError):
        check_is_fitted(mmc)


def _best_f_beta(dist, y, beta):
    """metric-learn's f_beta calibration: the largest F-beta over the cut-offs of
    precision_recall_curve (NaN counted as 0)."""
    precision, recall, _ = precision_recall_curve(y, -dist, pos_label=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = (1 + beta ** 2) * precision * recall / (beta ** 2 * precision + recall)
    return np.nanmax(np.where(np.isnan(f), 0.0, f))


def _f_beta(pred, y, beta):
    tp = np.sum((pred == 1) & (y == 1))
    fp = np.sum((pred == 1) & (y == -1))
    fn = np.sum((pred == -1) & (y == 1))
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    den = beta ** 2 * precision + recall
    return (1 + beta ** 2) * precision * recall / den if den > 0 else 0.0


@pytest.mark.parametrize("beta", [0, 0.5, -2, 2])
def test_calibrate_f_beta_accepts_any_real_beta(pairs_iris, beta):
    X, idx, labels = pairs_iris
    mmc = MMC(preprocessor=X).fit(idx, labels)
    mmc.calibrate_threshold(idx, labels, strategy="f_beta", beta=beta)
    got = _f_beta(mmc.predict(idx), labels, beta)
    assert got == pytest.approx(_best_f_beta(mmc.pair_distance(idx), labels, beta),
                                rel=1e-12)


# ---------------------------------------------------------------------------
# components_from_metric (metric_learn/_util.py: "The input metric should be
# symmetric.")


def test_components_from_metric_rejects_non_symmetric():
    A = np.array([[2.0, 1.0], [0.0, 2.0]])
    with pytest.raises(ValueError, match="symmetric"):
        components_from_metric(A)
    B = np.array([[2.0, 0.5], [0.5, 2.0]])
    B_round = B + np.array([[0.0, 1e-15], [0.0, 0.0]])   # rounding-level asymmetry
    G = components_from_metric(B_round)
    np.testing.assert_allclose(G.T @ G, B, rtol=1e-12)
    with pytest.raises(NonPSDError):
        components_from_metric(np.diag([1.0, -1.0]))


# ---------------------------------------------------------------------------
# Data whose squared distances overflow float64


@pytest.mark.parametrize("make", [
    lambda X, y: LMNN(max_iter=5).fit(X, y),
    lambda X, y: MMC_Supervised(max_iter=5).fit(X, y),
    lambda X, y: Covariance().fit(X),
    lambda X, y: MMC(max_iter=5).fit(np.stack([X[:-1], X[1:]], axis=1),
                                     np.where(y[:-1] == y[1:], 1, -1)),
])
def test_overflowing_scale_raises(iris, make):
    X, y = iris
    with pytest.raises(ValueError, match="overflow"):
        make(X * 1e300, y)
    with pytest.raises(ValueError, match="underflow"):
        make(X * 1e-300, y)


def test_large_but_safe_scale_gives_the_scaled_metric(iris):
    X = iris[0]
    ref = Covariance().fit(X).get_mahalanobis_matrix()
    big = Covariance().fit(X * 1e100).get_mahalanobis_matrix()
    np.testing.assert_allclose(big * 1e200, ref, rtol=1e-8)


def test_covariance_of_identical_rows_raises():
    X = np.tile([[1.0, 2.0, 3.0]], (5, 1))
    with pytest.raises(ValueError, match="identical"):
        Covariance().fit(X)


# ---------------------------------------------------------------------------
# set_output and float32 (scikit-learn's transformer conventions)


@pytest.mark.parametrize("est", _transformers(), ids=lambda e: type(e).__name__)
def test_feature_names_out(iris, est):
    X, y = iris
    est = clone(est).fit(X, y)
    names = est.get_feature_names_out()
    assert list(names) == [f"{type(est).__name__.lower()}{i}" for i in range(4)]
    # "default" output is the plain array transform returns
    np.testing.assert_array_equal(est.set_output(transform="default").transform(X),
                                  X @ est.components_.T)


@pytest.mark.parametrize("est", _transformers(), ids=lambda e: type(e).__name__)
def test_transform_honours_set_output(iris, est):
    import pandas as pd  # (in the test extra: scikit-learn's pandas output is tested)
    X, y = iris
    Xdf = pd.DataFrame(X, columns=["sl", "sw", "pl", "pw"])
    est = clone(est).fit(Xdf, y)
    expected = est.transform(Xdf)
    names = est.get_feature_names_out()
    est.set_output(transform="pandas")
    out = est.transform(Xdf)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(names)
    np.testing.assert_allclose(out.to_numpy(), expected)
    with sklearn.config_context(transform_output="pandas"):
        out = clone(est).fit(Xdf, y).transform(Xdf)
    assert isinstance(out, pd.DataFrame) and list(out.columns) == list(names)
    # inside a Pipeline, after a scaler
    pipe = make_pipeline(StandardScaler(), clone(est)).set_output(transform="pandas")
    pipe.fit(Xdf, y)
    out = pipe.transform(Xdf)
    assert isinstance(out, pd.DataFrame)
    assert list(out.columns) == list(pipe.get_feature_names_out())
    scaled = StandardScaler().fit(X).transform(X)
    np.testing.assert_allclose(out.to_numpy(), scaled @ pipe[-1].components_.T)


@pytest.mark.parametrize("est", _transformers(), ids=lambda e: type(e).__name__)
def test_transform_preserves_float32(iris, est):
    X, y = iris
    est = clone(est).fit(X, y)
    assert "float32" in est.__sklearn_tags__().transformer_tags.preserves_dtype
    Z64 = est.transform(X)
    Z32 = est.transform(X.astype(np.float32))
    assert Z64.dtype == np.float64 and Z32.dtype == np.float32
    np.testing.assert_allclose(Z32, Z64, rtol=1e-5, atol=1e-5 * np.abs(Z64).max())


def test_calibrate_threshold_takes_metric_learns_keyword_names(pairs_iris):
    X, idx, labels = pairs_iris
    mmc = MMC(preprocessor=X).fit(idx, labels)
    by_keyword = mmc.calibrate_threshold(pairs_valid=idx, y_valid=labels,
                                         strategy="max_tpr", min_rate=0.9).threshold_
    # metric-learn's max_tpr: the largest true positive rate with TNR ≥ min_rate
    d = mmc.pair_distance(idx)
    pred = d <= by_keyword
    tnr = np.mean(~pred[labels == -1])
    assert tnr >= 0.9
    best_tpr = max(np.mean(d[labels == 1] <= t) for t in np.unique(d)
                   if np.mean(d[labels == -1] > t) >= 0.9)
    assert np.mean(pred[labels == 1]) == best_tpr


def test_exceptions_reachable_from_the_package():
    code = ("import mahal; from numpy.linalg import LinAlgError; "
            "print(issubclass(mahal.exceptions.NonPSDError, LinAlgError))")
    out = fresh_output(code).strip()
    assert out == "True"


# ---------------------------------------------------------------------------
# LMNN: regularization weighs the pull term (metric_learn/lmnn.py, _loss_grad:
# ``G = dfG * reg + df * (1 - reg)``, objective ``total_active * (1 - reg) + <G, L>``)


def _lmnn_problem():
    rng = np.random.default_rng(3)
    y = np.repeat([0, 1], 10)
    X = rng.normal(size=(20, 2)) + np.array([[0.0, 0.0], [1.2, 0.3]])[y]
    targets = np.full((20, 2), -1)
    for i in range(20):
        same = [j for j in range(20) if y[j] == y[i] and j != i]
        d = [np.sum((X[i] - X[j]) ** 2) for j in same]
        targets[i] = np.array(same)[np.argsort(d)[:2]]
    return X, y, targets


def _metric_learn_objective(M, X, y, targets, reg):
    """metric-learn 0.7's LMNN objective, one triplet at a time:
    reg · Σ d_ij + (1 − reg) · Σ [1 + d_ij − d_il]_+ (squared distances in M)."""
    d = lambda a, b: float((X[a] - X[b]) @ M @ (X[a] - X[b]))  # noqa: E731
    pull = push = 0.0
    for i in range(X.shape[0]):
        for j in targets[i]:
            pull += d(i, j)
            for l in np.flatnonzero(y != y[i]):
                push += max(0.0, 1.0 + d(i, j) - d(i, l))
    return reg * pull + (1 - reg) * push


def _metric_learn_optimum(X, y, targets, reg):
    """The minimum of metric-learn's objective over PSD M, by cvxpy."""
    cp = pytest.importorskip("cvxpy")
    M = cp.Variable((X.shape[1], X.shape[1]), PSD=True)
    d = lambda a, b: cp.quad_form(X[a] - X[b], M)  # noqa: E731
    pull = sum(d(i, j) for i in range(X.shape[0]) for j in targets[i])
    push = sum(cp.pos(1 + d(i, j) - d(i, l)) for i in range(X.shape[0])
               for j in targets[i] for l in np.flatnonzero(y != y[i]))
    problem = cp.Problem(cp.Minimize(reg * pull + (1 - reg) * push))
    problem.solve()
    return problem.value


@pytest.mark.parametrize("reg", [0.2, 0.8])
def test_lmnn_regularization_is_metric_learns_pull_weight(reg):
    X, y, targets = _lmnn_problem()
    f_opt = _metric_learn_optimum(X, y, targets, reg)
    lmnn = LMNN(n_neighbors=2, regularization=reg, init="identity", max_iter=500,
                tol=1e-12).fit(X, y)
    np.testing.assert_array_equal(lmnn.target_neighbors_, targets)
    f = _metric_learn_objective(lmnn.get_mahalanobis_matrix(), X, y, targets, reg)
    assert f == pytest.approx(f_opt, rel=2e-3)
    # the other meaning (regularization weighing the push term) is far from it
    swapped = LMNN(n_neighbors=2, regularization=1 - reg, init="identity",
                   max_iter=500, tol=1e-12).fit(X, y)
    assert _metric_learn_objective(swapped.get_mahalanobis_matrix(), X, y, targets,
                                   reg) > f_opt * 1.02


def test_lmnn_weight_push_loss_is_pylmnns_mu():
    X, y, _ = _lmnn_problem()
    a = LMNN(n_neighbors=2, regularization=0.3, max_iter=30).fit(X, y)
    b = LMNN(n_neighbors=2, weight_push_loss=0.7, max_iter=30).fit(X, y)
    np.testing.assert_allclose(a.components_, b.components_, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match="disagree"):
        LMNN(regularization=0.3, weight_push_loss=0.5).fit(X, y)
    c = LMNN(n_neighbors=2, regularization=0.3, weight_push_loss=0.7,
             max_iter=30).fit(X, y)  # both given and consistent: fine
    np.testing.assert_array_equal(a.components_, c.components_)


def test_lmnn_energy_regularization_is_the_pull_weight():
    from mahal import LMNNEnergyClassifier

    X, y, _ = _lmnn_problem()
    a = LMNNEnergyClassifier(n_neighbors=2, regularization=0.3).fit(X, y)
    b = LMNNEnergyClassifier(n_neighbors=2, weight_push_loss=0.7).fit(X, y)
    np.testing.assert_allclose(a.energy(X), b.energy(X), rtol=1e-10)
    np.testing.assert_allclose(a.metric_learner_.components_,
                               b.metric_learner_.components_, rtol=1e-12, atol=1e-14)


def test_lmnn_k_is_n_neighbors_with_a_future_warning():
    X, y, _ = _lmnn_problem()
    lmnn = LMNN(k=2)
    with pytest.warns(FutureWarning, match="'k'.*n_neighbors"):
        lmnn.fit(X, y)
    assert lmnn.target_neighbors_.shape == (20, 2)
    assert lmnn.get_params()["k"] == 2 and lmnn.n_neighbors == 3  # as the user set
    reference = LMNN(n_neighbors=2).fit(X, y)
    np.testing.assert_array_equal(lmnn.components_, reference.components_)
    assert clone(lmnn).k == 2


@pytest.mark.parametrize("name, value", [("learn_rate", 1e-6), ("min_iter", 10),
                                         ("convergence_tol", 1e-3)])
def test_lmnn_gradient_descent_parameters_are_accepted_and_ignored(name, value):
    X, y, _ = _lmnn_problem()
    with pytest.warns(UserWarning, match=f"{name}=.*no effect"):
        lmnn = LMNN(n_neighbors=2, **{name: value}).fit(X, y)
    reference = LMNN(n_neighbors=2).fit(X, y)
    np.testing.assert_array_equal(lmnn.components_, reference.components_)


def test_energy_classifier_warns_once_about_a_small_class():
    import warnings

    from mahal import LMNNEnergyClassifier

    X, y, _ = _lmnn_problem()
    y = y.copy()
    y[:2] = 2  # a class of two members: fewer than n_neighbors + 1
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        LMNNEnergyClassifier(n_neighbors=2).fit(X, y)
    small = [w for w in caught if "fewer than n_neighbors" in str(w.message)]
    assert len(small) == 1
