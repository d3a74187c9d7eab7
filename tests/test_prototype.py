"""Tests of PrototypeClassifier and the few-shot episode helpers against hand-computed
rules."""

import pickle

import numpy as np
import pytest
from scipy.special import logsumexp
from sklearn.base import clone
from sklearn.datasets import load_iris, load_wine
from sklearn.exceptions import NotFittedError
from sklearn.neighbors import KNeighborsClassifier
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import NCMML, Covariance, PrototypeClassifier
from mahal.fewshot import confidence_interval, evaluate_episodes, sample_episodes


@pytest.fixture(scope="module")
def wine():
    X, y = load_wine(return_X_y=True)
    return StandardScaler().fit_transform(X), y


def hand_distance(a, b, metric, A=None):
    if metric == "cosine":
        return 1.0 - a @ b / (np.linalg.norm(a) * np.linalg.norm(b))
    diff = a - b
    return diff @ (np.eye(a.shape[0]) if A is None else A) @ diff


def hand_prototypes(X, y, metric):
    """Class means, one class and one point at a time (cosine: mean of unit
    vectors)."""
    protos = {}
    for c in sorted(set(y.tolist())):
        pts = [x / np.linalg.norm(x) if metric == "cosine" else x
               for x, label in zip(X, y) if label == c]
        protos[c] = sum(pts) / len(pts)
    return protos


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_equals_hand_nearest_mean_rule(wine, metric):
    X, y = wine
    Xtr, ytr, Xte = X[::2], y[::2], X[1::2]
    clf = PrototypeClassifier(metric=metric).fit(Xtr, ytr)
    protos = hand_prototypes(Xtr, ytr, metric)
    expected = [min(protos, key=lambda c: hand_distance(x, protos[c], metric))
                for x in Xte]
    np.testing.assert_array_equal(clf.predict(Xte), expected)
    # probabilities: softmax of −distance / T
    T = clf.temperature_
    x = Xte[0]
    logits = np.array([-hand_distance(x, protos[c], metric) / T for c in protos])
    np.testing.assert_allclose(clf.predict_proba(Xte[:1])[0],
                               np.exp(logits - logsumexp(logits)), rtol=1e-10)


def test_learned_metric_is_the_mahalanobis_nearest_mean(wine):
    X, y = wine
    Xtr, ytr, Xte = X[::2], y[::2], X[1::2]
    learner = NCMML(n_components=3, random_state=0).fit(Xtr, ytr)
    clf = PrototypeClassifier(metric_learner=learner, prefit=True).fit(Xtr, ytr)
    assert clf.metric_learner_ is learner
    A = learner.get_mahalanobis_matrix()
    means = {c: Xtr[ytr == c].mean(axis=0) for c in range(3)}
    expected = [min(means, key=lambda c: hand_distance(x, means[c], "euclidean", A))
                for x in Xte]
    np.testing.assert_array_equal(clf.predict(Xte), expected)
    # prefit=False clones and fits the learner on the training data
    cloned = PrototypeClassifier(metric_learner=NCMML(n_components=3, random_state=0))
    cloned.fit(Xtr, ytr)
    np.testing.assert_array_equal(cloned.predict(Xte), expected)
    np.testing.assert_allclose(cloned.metric_learner_.components_, learner.components_)


def loo_nll(X, y, T, metric, aggregate):
    """The leave-one-out negative log-likelihood, one point at a time."""
    total, n = 0.0, 0
    for i in range(X.shape[0]):
        others = np.arange(X.shape[0]) != i
        if np.sum(y[others] == y[i]) == 0:
            continue
        if aggregate == "mean":
            protos = hand_prototypes(X[others], y[others], metric)
            protos.update({c: p for c, p in hand_prototypes(X, y, metric).items()
                           if c != y[i]})
            logits = {c: -hand_distance(X[i], p, metric) / T for c, p in protos.items()}
            own = logits[y[i]]
            all_ = np.array(list(logits.values()))
        else:
            all_ = np.array([-hand_distance(X[i], X[j], metric) / T
                             for j in np.flatnonzero(others)])
            own = logsumexp(all_[y[others] == y[i]])
        total += logsumexp(all_) - own
        n += 1
    return total / n


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize("aggregate", ["mean", "attention"])
def test_temperature_maximises_the_leave_one_out_likelihood(wine, metric, aggregate):
    X, y = wine[0][::6], wine[1][::6]
    clf = PrototypeClassifier(metric=metric, aggregate=aggregate).fit(X, y)
    T = clf.temperature_
    best = loo_nll(X, y, T, metric, aggregate)
    assert best <= loo_nll(X, y, 1.05 * T, metric, aggregate) + 1e-9
    assert best <= loo_nll(X, y, T / 1.05, metric, aggregate) + 1e-9


def test_attention_is_matching_networks_rule(wine):
    X, y = wine
    Xtr, ytr, Xte = X[::3], y[::3], X[1::3][:10]
    clf = PrototypeClassifier(metric="cosine", aggregate="attention",
                              temperature=0.1).fit(Xtr, ytr)
    for x, proba in zip(Xte, clf.predict_proba(Xte)):
        cos = np.array([x @ s / (np.linalg.norm(x) * np.linalg.norm(s)) for s in Xtr])
        a = np.exp(cos / 0.1) / np.exp(cos / 0.1).sum()   # softmax over the support
        np.testing.assert_allclose(proba, [a[ytr == c].sum() for c in range(3)],
                                   rtol=1e-9)
    np.testing.assert_array_equal(clf.predict(Xte),
                                  np.argmax(clf.predict_proba(Xte), axis=1))


@pytest.mark.parametrize("aggregate", ["mean", "attention"])
def test_add_classes_equals_fitting_on_all(wine, aggregate):
    X, y = wine
    old, new = y < 2, y == 2
    clf = PrototypeClassifier(aggregate=aggregate, temperature=2.0).fit(X[old], y[old])
    assert clf.add_classes(X[new][:3], y[new][:3]) is clf
    full = PrototypeClassifier(aggregate=aggregate, temperature=2.0).fit(
        np.vstack([X[old], X[new][:3]]), np.concatenate([y[old], y[new][:3]]))
    np.testing.assert_array_equal(clf.classes_, [0, 1, 2])
    np.testing.assert_allclose(clf.prototypes_, full.prototypes_)
    np.testing.assert_allclose(clf.predict_proba(X), full.predict_proba(X))
    assert np.any(clf.predict(X) == 2)


def test_add_classes_keeps_class_order_and_rejects_known_classes():
    X = np.array([[0.0, 0.0], [0.0, 1.0], [9.0, 9.0]])
    clf = PrototypeClassifier().fit(X[1:], ["b", "d"])
    clf.add_classes(X[:1], ["a"])
    assert clf.classes_.tolist() == ["a", "b", "d"]
    np.testing.assert_allclose(clf.prototypes_, X)
    assert clf.predict([[0.1, -0.2]]).tolist() == ["a"]
    with pytest.raises(ValueError, match=r"already are classes"):
        clf.add_classes([[1.0, 1.0]], ["b"])
    with pytest.raises(ValueError, match="one label per row"):
        clf.add_classes([[1.0, 1.0]], ["x", "y"])
    with pytest.raises(ValueError, match="2 features"):
        clf.add_classes([[1.0, 1.0, 1.0]], ["x"])


def test_one_shot_temperature_falls_back_to_the_distance_scale():
    X = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 4.0]])
    clf = PrototypeClassifier().fit(X, [0, 1, 2])
    # mean squared distance to the other prototypes: (9 + 16 + 9 + 25 + 16 + 25) / 6
    assert clf.temperature_ == pytest.approx(100 / 6)


def test_bad_input_and_prefit():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(NotFittedError):
        PrototypeClassifier(metric_learner=Covariance(), prefit=True).fit(X, y)
    with pytest.raises(ValueError, match="metric"):
        PrototypeClassifier(metric="manhattan").fit(X, y)
    with pytest.raises(ValueError, match="NaN"):
        PrototypeClassifier().fit(np.where(X > 7, np.nan, X), y)
    with pytest.raises(NotFittedError):
        PrototypeClassifier().predict(X)
    with pytest.raises(ValueError, match="temperature"):
        PrototypeClassifier(temperature=0.0).fit(X, y)


def test_pickle_and_determinism(wine):
    X, y = wine
    clf = PrototypeClassifier(metric="cosine", aggregate="attention").fit(X, y)
    again = clone(clf).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    restored = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(restored.predict_proba(X), clf.predict_proba(X))


@parametrize_with_checks([PrototypeClassifier(), PrototypeClassifier(metric="cosine"),
                          PrototypeClassifier(aggregate="attention"),
                          PrototypeClassifier(metric_learner=Covariance())])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------- episodes


def test_sample_episodes_are_deterministic_disjoint_and_balanced():
    y = np.repeat(np.array(["a", "b", "c", "d", "e", "f"]), [5, 6, 7, 8, 9, 10])
    ep = sample_episodes(y, n_way=4, n_shot=2, n_query=3, n_episodes=50, random_state=1)
    again = sample_episodes(y, n_way=4, n_shot=2, n_query=3, n_episodes=50,
                            random_state=1)
    np.testing.assert_array_equal(ep.support, again.support)
    np.testing.assert_array_equal(ep.query, again.query)
    assert len(ep) == 50
    for e in range(50):
        assert len(set(ep.classes[e])) == 4
        np.testing.assert_array_equal(y[ep.support[e]], np.repeat(ep.classes[e], 2))
        np.testing.assert_array_equal(y[ep.query[e]], np.repeat(ep.classes[e], 3))
        assert not set(ep.support[e]) & set(ep.query[e])
        assert len(set(ep.query[e])) == 12
    # every class and every point is drawn
    assert set(ep.classes.ravel()) == set("abcdef")
    other = sample_episodes(y, n_way=4, n_shot=2, n_query=3, n_episodes=50,
                            random_state=2)
    assert not np.array_equal(other.support, ep.support)


@pytest.mark.parametrize("kwargs, match", [
    (dict(n_way=4), "need at least 4 classes"),
    (dict(n_shot=3, n_query=2), r"need 5 points per class; 1 class\(es\) have fewer "
                                r"\(e.g. class 'c' has 4\)"),
    (dict(n_shot=0), "n_shot must be an int"),
    (dict(n_episodes=2.5), "n_episodes must be an int"),
])
def test_sample_episodes_bad_input(kwargs, match):
    y = np.repeat(np.array(["a", "b", "c"]), [6, 5, 4])
    params = dict(n_way=3, n_shot=1, n_query=2, n_episodes=3) | kwargs
    with pytest.raises(ValueError, match=match):
        sample_episodes(y, **params)


def test_evaluate_episodes_equals_a_hand_loop():
    X, y = load_iris(return_X_y=True)
    ep = sample_episodes(y, n_way=3, n_shot=2, n_query=5, n_episodes=15, random_state=0)
    acc = evaluate_episodes(KNeighborsClassifier(1), X, y, ep)
    for e in range(15):
        s, q = ep.support[e], ep.query[e]
        nearest = [s[np.argmin(((X[s] - x) ** 2).sum(axis=1))] for x in X[q]]
        assert acc[e] == pytest.approx(np.mean(y[nearest] == y[q]))
    no_query = sample_episodes(y, n_way=3, n_shot=2, n_query=0, n_episodes=2)
    with pytest.raises(ValueError, match="no queries"):
        evaluate_episodes(KNeighborsClassifier(1), X, y, no_query)


def test_confidence_interval_is_the_normal_approximation():
    a = np.random.default_rng(0).uniform(size=40)
    mean, half = confidence_interval(a)
    assert mean == pytest.approx(a.mean())
    assert half == pytest.approx(1.959964 * a.std(ddof=1) / np.sqrt(40), rel=1e-6)


def test_evaluate_episodes_with_a_frozen_learner_equals_prefit_fits(wine):
    from sklearn.frozen import FrozenEstimator

    X, y = wine
    base = y < 2
    learner = NCMML(n_components=2, random_state=0).fit(X[base], y[base])
    ep = sample_episodes(y, n_way=3, n_shot=2, n_query=8, n_episodes=6, random_state=0)
    acc = evaluate_episodes(PrototypeClassifier(metric_learner=FrozenEstimator(learner)),
                            X, y, ep)
    for e in range(6):
        s, q = ep.support[e], ep.query[e]
        clf = PrototypeClassifier(metric_learner=learner, prefit=True).fit(X[s], y[s])
        assert acc[e] == pytest.approx(np.mean(clf.predict(X[q]) == y[q]))
