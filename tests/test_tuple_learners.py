"""scikit-learn's estimator checks that apply to tuple input, for every pair learner.

``check_estimator`` feeds 2-D arrays, which pair learners do not take; these are the
checks that make sense for ``(n_pairs, 2, n_features)`` input, written as tests.
"""

import pickle

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.preprocessing import StandardScaler

from mahal import MMC
from mahal import Contrastive
from mahal import ITML
from mahal import SDML
from mahal.constraints import Constraints, wrap_pairs

from test_base import FixedPairs

PAIR_LEARNERS = [
    FixedPairs(),
    MMC(random_state=0),
    MMC(diagonal=True, random_state=0),
    Contrastive(random_state=0),
    ITML(random_state=0),
    SDML(balance_param=1e-3, random_state=0),
]


def _ids(est):
    return f"{type(est).__name__}({', '.join(f'{k}={v}' for k, v in est.get_params().items() if k == 'diagonal')})"


@pytest.fixture(scope="module")
def pair_data():
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    pairs, yp = wrap_pairs(X, Constraints(y).positive_negative_pairs(60, random_state=0))
    return X, pairs, yp


pytestmark = pytest.mark.parametrize("estimator", PAIR_LEARNERS, ids=_ids)


def test_unfitted_raises(estimator, pair_data):
    X, pairs, _ = pair_data
    est = clone(estimator)
    for method in ("predict", "decision_function", "pair_distance"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(pairs)
    with pytest.raises(NotFittedError):
        est.transform(X)


def test_fit_returns_self_and_keeps_params(estimator, pair_data):
    _, pairs, yp = pair_data
    est = clone(estimator)
    params = est.get_params()
    assert est.fit(pairs, yp) is est
    assert est.get_params() == params
    assert est.n_features_in_ == pairs.shape[2]
    np.testing.assert_array_equal(est.classes_, [-1, 1])


def test_outputs_shapes_and_consistency(estimator, pair_data):
    X, pairs, yp = pair_data
    est = clone(estimator).fit(pairs, yp)
    dec = est.decision_function(pairs)
    assert dec.shape == (len(pairs),)
    np.testing.assert_array_equal(est.predict(pairs), np.where(dec >= 0, 1, -1))
    Z = est.transform(X)
    assert Z.shape == (len(X), est.components_.shape[0])
    np.testing.assert_allclose(
        est.pair_distance(pairs),
        np.linalg.norm(est.transform(pairs[:, 0]) - est.transform(pairs[:, 1]), axis=1),
        rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="features"):
        est.predict(pairs[:, :, :2])


def test_deterministic_idempotent_and_picklable(estimator, pair_data):
    _, pairs, yp = pair_data
    a = clone(estimator).fit(pairs, yp)
    b = clone(estimator).fit(pairs, yp)
    np.testing.assert_array_equal(a.components_, b.components_)
    a.fit(pairs, yp)  # refitting gives the same model
    np.testing.assert_array_equal(a.components_, b.components_)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.decision_function(pairs), a.decision_function(pairs))


def test_bad_input(estimator, pair_data):
    _, pairs, yp = pair_data
    est = clone(estimator)
    bad = pairs.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(bad, yp)
    with pytest.raises(ValueError, match=r"\+1 \(similar\) or -1"):
        est.fit(pairs, np.where(yp > 0, 1, 0))
    with pytest.raises(ValueError, match="3-D array"):
        est.fit(pairs[:, 0], yp)


def test_classifier_in_model_selection(estimator, pair_data):
    _, pairs, yp = pair_data
    assert is_classifier(estimator)
    scores = cross_val_score(clone(estimator), pairs, yp, scoring="roc_auc", cv=3)
    assert np.all((scores > 0.5) & (scores <= 1.0))
    if "diagonal_c" in estimator.get_params():
        grid = GridSearchCV(clone(estimator), {"diagonal_c": [0.5, 1.0]}, cv=2,
                            scoring="roc_auc").fit(pairs, yp)
        assert grid.best_params_["diagonal_c"] in (0.5, 1.0)


def test_preprocessor_gives_the_same_model(estimator, pair_data):
    X, pairs, yp = pair_data
    idx = np.array([[np.flatnonzero((X == p).all(1))[0] for p in pair] for pair in pairs])
    by_points = clone(estimator).fit(pairs, yp)
    by_index = clone(estimator).set_params(preprocessor=X).fit(idx, yp)
    np.testing.assert_allclose(by_index.components_, by_points.components_)
    np.testing.assert_allclose(by_index.decision_function(idx),
                               by_points.decision_function(pairs))
