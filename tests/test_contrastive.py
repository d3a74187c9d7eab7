"""Contrastive and Contrastive_Supervised: the loss against a naive loop, finite
differences and the cvxpy optimum; zero loss on a separable toy; sampling."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import Contrastive, Contrastive_Supervised
from mahal._contrastive_solver import contrastive_loss_grad
from mahal.constraints import Constraints


def naive_loss(L, diffs, similar, margin):
    total = 0.0
    for delta, s in zip(diffs, similar):
        d = np.sqrt(np.sum((L @ delta) ** 2))
        total += d ** 2 if s else max(0.0, margin - d) ** 2
    return total / len(diffs)


def naive_grad(L, diffs, similar, margin):
    G = np.zeros_like(L)
    for delta, s in zip(diffs, similar):
        z = L @ delta
        d = np.linalg.norm(z)
        if s:
            G += 2 * np.outer(z, delta)
        elif 0 < d < margin:
            # d/dL (margin − ‖Lδ‖)² = −2 (margin − d) (Lδ δᵀ) / d
            G += -2 * (margin - d) / d * np.outer(z, delta)
    return G / len(diffs)


def central_difference(fun, L, h=1e-6):
    G = np.zeros_like(L)
    for idx in np.ndindex(*L.shape):
        E = np.zeros_like(L)
        E[idx] = h
        G[idx] = (fun(L + E) - fun(L - E)) / (2 * h)
    return G


def pair_problem(seed, n=30, d=5, m=60):
    rng = np.random.default_rng(seed)
    diffs = rng.normal(size=(m, d))
    similar = rng.random(m) < 0.5
    return diffs, similar


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("r", [2, 5])
def test_loss_and_gradient_against_naive_loop_and_finite_differences(seed, r):
    diffs, similar = pair_problem(seed)
    rng = np.random.default_rng(100 + seed)
    L = rng.normal(size=(r, diffs.shape[1])) * 0.4
    margin = 2.0
    f, G = contrastive_loss_grad(L, diffs, similar, margin)
    # some dissimilar pairs on each side of the margin: both branches are tested
    d = np.linalg.norm(diffs @ L.T, axis=1)
    assert (d[~similar] < margin).any() and (d[~similar] > margin).any()
    assert f == pytest.approx(naive_loss(L, diffs, similar, margin), rel=1e-12)
    np.testing.assert_allclose(G, naive_grad(L, diffs, similar, margin), rtol=1e-10,
                               atol=1e-12)
    fd = central_difference(lambda M: naive_loss(M, diffs, similar, margin), L)
    np.testing.assert_allclose(G, fd, rtol=1e-5, atol=1e-7)


def test_gradient_at_the_margin_kink_is_the_derivative():
    # (margin − d)₊² is differentiable at d = margin (both one-sided derivatives
    # are 0): finite differences agree there too
    diffs, similar = pair_problem(7, m=10)
    similar[:] = False
    L = np.eye(5)
    margin = float(np.linalg.norm(diffs[0]))  # pair 0 sits exactly on the margin
    f, G = contrastive_loss_grad(L, diffs, similar, margin)
    fd = central_difference(lambda M: naive_loss(M, diffs, similar, margin), L)
    np.testing.assert_allclose(G, fd, rtol=1e-5, atol=1e-7)


def test_zero_length_dissimilar_pair_gives_the_least_norm_subgradient():
    # d = 0: (margin − ‖Lδ‖)² is a cone in L, with 0 in its subdifferential; the
    # loss stays finite (no 0/0) and the other pairs' gradient is unchanged
    diffs, similar = pair_problem(3, m=8)
    diffs[0] = 0.0
    similar[0] = False
    L = np.random.default_rng(0).normal(size=(3, 5))
    f, G = contrastive_loss_grad(L, diffs, similar, 1.5)
    assert np.isfinite(f) and np.all(np.isfinite(G))
    f_rest, G_rest = contrastive_loss_grad(L, diffs[1:], similar[1:], 1.5)
    assert f == pytest.approx((f_rest * 7 + 1.5 ** 2) / 8, rel=1e-12)
    np.testing.assert_allclose(G, G_rest * 7 / 8, rtol=1e-12)
    # a dissimilar pair in the null space of L (δ ≠ 0, Lδ = 0) likewise
    L2 = np.array([[1.0, 0, 0, 0, 0]])
    diffs2 = np.array([[0, 1.0, 0, 0, 0], [2.0, 0, 0, 0, 0]])
    f2, G2 = contrastive_loss_grad(L2, diffs2, np.array([False, True]), 1.0)
    assert f2 == pytest.approx((1.0 + 4.0) / 2)
    np.testing.assert_allclose(G2, [[4.0, 0, 0, 0, 0]])  # (2 · 2 · 2) / 2


def separable_toy():
    # two classes apart along x0 and mixed along x1: a similar pair differs only
    # in x1, a dissimilar one by at least 2 in x0
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 10)
    X = np.column_stack([2.0 * y + rng.uniform(-0.1, 0.1, 20),
                         rng.normal(size=20) * 3])
    X[:, 0] = 2.0 * y  # exactly separable along x0, no spread inside a class
    return X, y


def test_separable_toy_reaches_zero_loss():
    X, y = separable_toy()
    a, b, c, d = Constraints(y).all_pairs()
    pairs = np.concatenate([np.stack([X[a], X[b]], 1), np.stack([X[c], X[d]], 1)])
    labels = np.r_[np.ones(len(a)), -np.ones(len(c))]
    losses = []
    model = Contrastive(margin=1.0, init="identity", tol=0.0, max_iter=500,
                        callback=lambda L, it: losses.append(contrastive_loss_grad(
                            L, pairs[:, 0] - pairs[:, 1], labels == 1, 1.0)[0]))
    model.fit(pairs, labels)
    f, _ = contrastive_loss_grad(model.components_, pairs[:, 0] - pairs[:, 1],
                                 labels == 1, 1.0)
    assert f < 1e-12
    # similar pairs collapse, dissimilar ones are at least the margin apart
    dist = model.pair_distance(pairs)
    assert np.all(dist[labels == 1] < 1e-6) and np.all(dist[labels == -1] >= 1 - 1e-6)
    assert model.score(pairs, labels) == 1.0
    f0, _ = contrastive_loss_grad(np.eye(2), pairs[:, 0] - pairs[:, 1], labels == 1, 1.0)
    assert f0 > 1.0 and losses[-1] == pytest.approx(f) and len(losses) == model.n_iter_


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("seed", range(3))
def test_full_rank_optimum_matches_cvxpy(seed):
    cvxpy = pytest.importorskip("cvxpy")  # noqa: F841
    from mahal import reference

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(25, 4)) * rng.uniform(0.5, 2.0, 4)
    labels = rng.integers(0, 3, 25)
    i, j = rng.integers(0, 25, 60), rng.integers(0, 25, 60)
    keep = i != j
    pairs = np.stack([X[i[keep]], X[j[keep]]], 1)
    y = np.where(labels[i[keep]] == labels[j[keep]], 1, -1)
    margin = 1.5
    M_ref, ref_value = reference.contrastive(pairs, y, margin=margin)
    assert reference.contrastive_objective(M_ref, pairs, y, margin) == pytest.approx(
        ref_value, rel=1e-5, abs=1e-7)
    model = Contrastive(margin=margin, init="identity", tol=1e-12, max_iter=2000)
    with np.errstate(all="raise"):
        model.fit(pairs, y)
    value = reference.contrastive_objective(model.get_mahalanobis_matrix(), pairs, y,
                                            margin)
    assert value == pytest.approx(ref_value, rel=1e-4, abs=1e-6)


def test_supervised_samples_n_constraints_pairs_of_each_kind_deterministically():
    X, y = load_iris(return_X_y=True)
    a = Contrastive_Supervised(n_constraints=40, random_state=3).fit(X, y)
    b = Contrastive_Supervised(n_constraints=40, random_state=3).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    # the same as Contrastive on the pairs Constraints samples with this seed
    rng = np.random.RandomState(3)
    ia, ib, ic, id_ = Constraints(np.unique(y, return_inverse=True)[1]
                                  ).positive_negative_pairs(40, random_state=rng)
    assert len(ia) == len(ic) == 40
    pairs = np.concatenate([np.stack([X[ia], X[ib]], 1), np.stack([X[ic], X[id_]], 1)])
    labels = np.r_[np.ones(40), -np.ones(40)]
    from mahal.base import initialize_components

    L0 = initialize_components(4, X, np.unique(y, return_inverse=True)[1], "auto")
    c = Contrastive(init=L0).fit(pairs, labels)
    np.testing.assert_allclose(a.components_, c.components_, rtol=1e-10, atol=1e-12)


def test_supervised_learns_a_useful_metric():
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline

    X, y = load_iris(return_X_y=True)
    X = X * [1.0, 30.0, 1.0, 1.0]  # a noisy feature that dominates Euclidean
    base = cross_val_score(KNeighborsClassifier(3), X, y, cv=5).mean()
    learned = cross_val_score(make_pipeline(Contrastive_Supervised(random_state=0),
                                            KNeighborsClassifier(3)), X, y, cv=5).mean()
    assert learned > base + 0.05


def test_bad_input():
    X, y = load_iris(return_X_y=True)
    with pytest.raises(ValueError, match="at least two samples"):
        Contrastive_Supervised().fit(X[[0, 60, 120]], y[[0, 60, 120]])
    with pytest.raises(ValueError, match="2 classes"):
        Contrastive_Supervised().fit(X[:20], y[:20])
    with pytest.raises(ValueError, match="margin"):
        Contrastive_Supervised(margin=0.0).fit(X, y)
    with pytest.raises(ValueError, match="n_components"):
        Contrastive_Supervised(n_components=5).fit(X, y)
    pairs = np.stack([X[:10], X[10:20]], 1)
    with pytest.raises(ValueError, match="at least one dissimilar pair"):
        Contrastive().fit(pairs, np.ones(10))
    with pytest.raises(ValueError, match="at least one similar pair"):
        Contrastive().fit(pairs, -np.ones(10))
    with pytest.raises(ValueError, match="lda"):
        Contrastive(init="lda").fit(pairs, np.r_[np.ones(5), -np.ones(5)])


def test_low_rank_verbose_and_pickle(capsys):
    X, y = load_iris(return_X_y=True)
    m = Contrastive_Supervised(n_components=2, verbose=True, random_state=0).fit(X, y)
    assert m.components_.shape == (2, 4)
    out = capsys.readouterr().out
    assert "[Contrastive_Supervised]" in out and "Objective Value" in out
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.transform(X), m.transform(X))
    np.testing.assert_array_equal(clone(m).fit(X, y).components_, m.components_)


@parametrize_with_checks([Contrastive_Supervised(random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)
