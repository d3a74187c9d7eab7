"""TripletMargin and TripletMargin_Supervised: each mining rule against a
brute-force reading of its definition, the losses against naive loops and finite
differences, the fixed-triplet optimum against cvxpy, determinism, bad input, and
scikit-learn's checks (the triplet learner's as tests, as tests/test_tuple_learners.py
does for pairs)."""

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_iris
from sklearn.exceptions import NotFittedError
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from mahal import TripletMargin, TripletMargin_Supervised
from mahal import _triplet_kernels as K
from mahal import _triplet_small as S
from mahal import _triplet_solver
from mahal._triplet_solver import MINING, PKSampler, batch_loss_grad, triplet_loss_grad

# ---------------------------------------------------------------------------
# Mining: brute force from the definitions


def brute_force(D, codes, margin, rule):
    """(triplets, n_units) by the definitions, one loop per reading of the rule."""
    B = len(codes)
    pos = {a: [p for p in range(B) if p != a and codes[p] == codes[a]] for a in range(B)}
    neg = {a: [n for n in range(B) if codes[n] != codes[a]] for a in range(B)}
    out, units = [], 0
    for a in range(B):
        if rule == "all":
            units += len(pos[a]) * len(neg[a])
            out += [(a, p, n) for p in pos[a] for n in neg[a]]
        elif rule == "hard":
            if pos[a] and neg[a]:
                units += 1
                # hardest positive: largest distance; hardest negative: smallest
                # (ties: the lowest index, as min/max over a sorted list give)
                p = max(pos[a], key=lambda j: (D[a, j], -j))
                n = min(neg[a], key=lambda j: (D[a, j], j))
                out.append((a, p, n))
        else:
            if not neg[a]:
                continue
            for p in pos[a]:
                units += 1
                farther = [n for n in neg[a] if D[a, n] > D[a, p]]
                if farther:
                    n = min(farther, key=lambda j: (D[a, j], j))
                    if D[a, n] < D[a, p] + margin:   # semi-hard: inside the margin
                        out.append((a, p, n))
                else:                                # fallback: farthest negative
                    out.append((a, p, max(neg[a], key=lambda j: (D[a, j], -j))))
    return np.array(out, dtype=np.int64).reshape(-1, 3), units


def random_batch(seed, B=14, n_classes=4, integer=False):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, n_classes, B).astype(np.int64)
    codes[:2] = 0  # at least one class with a positive
    if integer:  # small integer coordinates: many tied distances
        Z = rng.integers(0, 3, size=(B, 2)).astype(float)
    else:
        Z = rng.normal(size=(B, 3))
    return K.pairwise_sq_distances(Z), codes, Z


@pytest.mark.parametrize("integer", [False, True], ids=["generic", "ties"])
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("rule", ["all", "hard", "semihard"])
@pytest.mark.parametrize("impl", [K, S], ids=["kernels", "numpy"])
def test_mining_selects_exactly_the_triplets_of_the_definition(rule, seed, integer, impl):
    D, codes, Z = random_batch(seed, integer=integer)
    np.testing.assert_allclose(D, ((Z[:, None] - Z[None]) ** 2).sum(-1), atol=1e-12)
    np.testing.assert_allclose(S.pairwise_sq_distances(Z), D, rtol=1e-14, atol=1e-14)
    margin = 1.5
    got, units = impl.select_triplets(D, codes, margin, MINING[rule])
    want, want_units = brute_force(D, codes, margin, rule)
    np.testing.assert_array_equal(got, want)
    assert units == want_units


def test_semihard_batches_exercise_every_branch():
    # across the batches above: triplets inside the margin, pairs whose nearest
    # farther negative is beyond it (no triplet), and the fallback
    inside = beyond = fallback = 0
    for seed in range(6):
        D, codes, _ = random_batch(seed)
        for a in range(len(codes)):
            neg = codes != codes[a]
            for p in np.flatnonzero(codes == codes[a]):
                if p == a or not neg.any():
                    continue
                farther = D[a, neg][D[a, neg] > D[a, p]]
                if farther.size == 0:
                    fallback += 1
                elif farther.min() < D[a, p] + 1.5:
                    inside += 1
                else:
                    beyond += 1
    assert inside and beyond and fallback


# ---------------------------------------------------------------------------
# Losses and gradients


def naive_batch_loss(L, Xb, codes, margin, triplets, units):
    total = 0.0
    for a, p, n in triplets:
        dap = np.sum((L @ (Xb[a] - Xb[p])) ** 2)
        dan = np.sum((L @ (Xb[a] - Xb[n])) ** 2)
        total += max(0.0, dap - dan + margin)
    return total / units


def naive_batch_grad(L, Xb, margin, triplets, units):
    G = np.zeros_like(L)
    for a, p, n in triplets:
        u, v = Xb[a] - Xb[p], Xb[a] - Xb[n]
        if np.sum((L @ u) ** 2) - np.sum((L @ v) ** 2) + margin > 0:
            G += 2 * (np.outer(L @ u, u) - np.outer(L @ v, v))
    return G / units


def central_difference(fun, L, h=1e-6):
    G = np.zeros_like(L)
    for idx in np.ndindex(*L.shape):
        E = np.zeros_like(L)
        E[idx] = h
        G[idx] = (fun(L + E) - fun(L - E)) / (2 * h)
    return G


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("rule", ["all", "hard", "semihard"])
def test_batch_loss_and_gradient(rule, seed):
    rng = np.random.default_rng(seed)
    Xb = rng.normal(size=(16, 5))
    codes = np.repeat(np.arange(4), 4).astype(np.int64)
    L = rng.normal(size=(3, 5)) * 0.5
    margin = 1.0
    f, G, n_active = batch_loss_grad(L, Xb, codes, margin, MINING[rule])
    triplets, units = brute_force(K.pairwise_sq_distances(Xb @ L.T), codes, margin,
                                  rule)
    assert 0 < n_active <= len(triplets)
    assert f == pytest.approx(naive_batch_loss(L, Xb, codes, margin, triplets, units),
                              rel=1e-12)
    np.testing.assert_allclose(G, naive_batch_grad(L, Xb, margin, triplets, units),
                               rtol=1e-10, atol=1e-12)
    # the selection is piecewise constant in L: finite differences of the whole
    # mined loss at a generic L give the gradient
    fd = central_difference(
        lambda M: batch_loss_grad(M, Xb, codes, margin, MINING[rule])[0], L)
    np.testing.assert_allclose(G, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("seed", range(4))
def test_all_triplets_kernel_equals_the_listed_triplets(seed):
    D, codes, _ = random_batch(seed)
    listed, units = K.select_triplets(D, codes, 2.0, K.MINE_ALL)
    total, n_active, C = K.triplet_hinge(D, listed, 2.0)
    for impl in (K, S):
        total2, n_active2, C2, units2 = impl.all_triplets_hinge(D, codes, 2.0)
        assert (total2, n_active2, units2) == pytest.approx((total, n_active, units))
        np.testing.assert_allclose(C2, C, atol=1e-12)


@pytest.mark.parametrize("integer", [False, True], ids=["generic", "ties"])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rule", ["all", "hard", "semihard"])
def test_numpy_twins_equal_the_kernels(rule, seed, integer):
    # mahal._triplet_small (small fits, no numba) against mahal._triplet_kernels
    _, codes, Z = random_batch(seed, B=20, integer=integer)
    D = K.pairwise_sq_distances(Z)
    triplets, _ = K.select_triplets(D, codes, 1.5, MINING[rule])
    want = K.triplet_hinge(D, triplets, 1.5)
    got = S.triplet_hinge(D, triplets, 1.5)
    assert got[:2] == pytest.approx(want[:2], rel=1e-13)
    np.testing.assert_array_equal(got[2], want[2])
    want = S.mined_hinge(Z, codes, 1.5, MINING[rule], in_numpy=False)
    got = S.mined_hinge(Z, codes, 1.5, MINING[rule], in_numpy=True)
    assert got[0] == pytest.approx(want[0], rel=1e-13)
    assert got[1:2] + got[3:] == want[1:2] + want[3:]
    np.testing.assert_array_equal(got[2], want[2])


def test_numpy_budget_is_the_process_s():
    # small batches are mined in NumPy without numba until the process has spent
    # its NumPy budget; then the kernels take over (a process fitting again and
    # again pays numba's start-up once)
    from _fresh_process import fresh_output

    code = """
import sys, warnings
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler
from mahal import TripletMargin_Supervised, _triplet_small
warnings.simplefilter("ignore")
X, y = load_wine(return_X_y=True)
X = StandardScaler().fit_transform(X)
seen = []
for _ in range(3):
    TripletMargin_Supervised(random_state=0).fit(X, y)
    seen.append("mahal._triplet_kernels" in sys.modules)
print(seen[0], seen[-1], _triplet_small._numpy.done >= _triplet_small._NUMPY_WORK)
"""
    out = fresh_output(code).split()
    assert out == ["False", "True", "True"]


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_small_fit_in_numpy_equals_the_kernel_fit(mining, monkeypatch):
    X, y = load_iris(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    fits = {}
    for in_numpy in (False, True):
        monkeypatch.setattr(_triplet_solver, "use_numpy", lambda b, v=in_numpy: v)
        est = TripletMargin_Supervised(mining=mining, max_iter=15, random_state=0)
        fits[in_numpy] = est.fit(X, y)
    np.testing.assert_allclose(fits[True].components_, fits[False].components_,
                               rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(fits[True].loss_curve_, fits[False].loss_curve_,
                               rtol=1e-8)


def fixed_triplets(seed, m=50, d=4):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(30, d)) * rng.uniform(0.5, 2, d)
    idx = rng.integers(0, 30, size=(m, 3))
    return X[idx]


@pytest.mark.parametrize("seed", range(3))
def test_fixed_triplet_loss_and_gradient(seed):
    t = fixed_triplets(seed)
    ap, an = t[:, 0] - t[:, 1], t[:, 0] - t[:, 2]
    L = np.random.default_rng(seed).normal(size=(2, 4)) * 0.5
    f, G = triplet_loss_grad(L, ap, an, 1.0)
    rows = [(0, 1, 2)]
    naive = [naive_batch_loss(L, t[i], None, 1.0, rows, 1) for i in range(len(t))]
    assert 0 < np.count_nonzero(naive) < len(t)
    assert f == pytest.approx(np.mean(naive), rel=1e-12)
    naive_g = sum(naive_batch_grad(L, t[i], 1.0, rows, 1) for i in range(len(t)))
    np.testing.assert_allclose(G, naive_g / len(t), rtol=1e-10, atol=1e-12)
    fd = central_difference(lambda M: triplet_loss_grad(M, ap, an, 1.0)[0], L)
    np.testing.assert_allclose(G, fd, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:Solution may be inaccurate")
@pytest.mark.parametrize("seed", range(3))
def test_fixed_triplets_full_rank_optimum_matches_cvxpy(seed):
    pytest.importorskip("cvxpy")
    from mahal import reference

    t = fixed_triplets(seed)
    M_ref, ref_value = reference.triplet_margin(t, margin=1.0)
    model = TripletMargin(init="identity", tol=1e-10, max_iter=2000).fit(t)
    ap, an = t[:, 0] - t[:, 1], t[:, 0] - t[:, 2]
    # the reference's M, read by our loss through L = M^½, gives its value
    from mahal.linalg import components_from_metric

    ref_again, _ = triplet_loss_grad(components_from_metric(M_ref, tol=1e-8), ap, an, 1.0)
    assert ref_again == pytest.approx(ref_value, rel=1e-5, abs=1e-7)
    value, _ = triplet_loss_grad(model.components_, ap, an, 1.0)
    # L-BFGS on a piecewise quadratic: close to the optimum, never below it
    assert value >= ref_value - 1e-6
    assert value <= ref_value + 1e-3 * max(1.0, ref_value)


# ---------------------------------------------------------------------------
# The sampler and the supervised fit


def test_pk_sampler_draws_distinct_classes_and_cycles_their_points():
    codes = np.repeat(np.arange(5), [3, 7, 2, 9, 4])
    sampler = PKSampler(codes, 3, 4, np.random.RandomState(0))
    seen = {c: [] for c in range(5)}
    for _ in range(60):
        idx, batch_codes = sampler.batch()
        np.testing.assert_array_equal(codes[idx], batch_codes)
        classes = np.unique(batch_codes)
        assert len(classes) == 3
        for c in classes:
            members = idx[batch_codes == c]
            assert len(members) == min(4, np.sum(codes == c))
            assert len(set(members)) == len(members)
            seen[c].extend(members)
    for c in range(5):  # every point of a class comes up
        assert set(seen[c]) == set(np.flatnonzero(codes == c))


@pytest.fixture(scope="module")
def iris():
    X, y = load_iris(return_X_y=True)
    return StandardScaler().fit_transform(X), y


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
@pytest.mark.parametrize("mining", ["all", "hard", "semihard"])
def test_supervised_is_deterministic_and_picklable(iris, mining):
    X, y = iris
    est = TripletMargin_Supervised(mining=mining, max_iter=5, random_state=4)
    a = clone(est).fit(X, y)
    b = clone(est).fit(X, y)
    np.testing.assert_array_equal(a.components_, b.components_)
    assert a.loss_curve_ == b.loss_curve_
    c = clone(est).set_params(random_state=5).fit(X, y)
    assert not np.array_equal(a.components_, c.components_)
    d = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(d.transform(X), a.transform(X))


def test_supervised_follows_the_mined_loss(iris):
    # the callback's L after each epoch, and the loss curve, come from the Adam
    # steps on the mined batch loss: the semi-hard loss falls, and the learned
    # metric separates iris at least as well as the start
    X, y = iris
    seen = []
    est = TripletMargin_Supervised(random_state=0, init="identity",
                                   callback=lambda L, it: seen.append(it))
    est.fit(X, y)
    assert seen == list(range(1, est.n_iter_ + 1))
    assert est.loss_curve_[-1] < 0.5 * est.loss_curve_[0]
    from sklearn.model_selection import cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    Z = est.transform(X)
    assert (cross_val_score(KNeighborsClassifier(1), Z, y, cv=5).mean()
            >= cross_val_score(KNeighborsClassifier(1), X, y, cv=5).mean() - 0.02)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_supervised_verbose(iris, capsys):
    X, y = iris
    TripletMargin_Supervised(max_iter=2, verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out
    assert "[TripletMargin_Supervised]" in out and "Mean batch loss" in out


def test_supervised_bad_input(iris):
    X, y = iris
    y1 = y.copy()
    y1[0] = 7  # a class with one point
    with pytest.raises(ValueError, match="at least 2 points in every class.*7"):
        TripletMargin_Supervised().fit(X, y1)
    with pytest.raises(ValueError, match="classes_per_batch=4 but y has only 3"):
        TripletMargin_Supervised(classes_per_batch=4).fit(X, y)
    with pytest.raises(ValueError, match="2 classes"):
        TripletMargin_Supervised().fit(X[:50], y[:50])
    with pytest.raises(ValueError, match="mining"):
        TripletMargin_Supervised(mining="hardest").fit(X, y)
    with pytest.raises(ValueError, match="samples_per_class"):
        TripletMargin_Supervised(samples_per_class=1).fit(X, y)
    with pytest.raises(ValueError, match="classes_per_batch"):
        TripletMargin_Supervised(classes_per_batch=1).fit(X, y)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        TripletMargin_Supervised().fit(bad, y)


@parametrize_with_checks([TripletMargin_Supervised(random_state=0),
                          TripletMargin_Supervised(mining="all", random_state=0)])
def test_sklearn_compatible(estimator, check):
    check(estimator)


# ---------------------------------------------------------------------------
# The triplet learner: scikit-learn's checks that apply to triplet input


@pytest.fixture(scope="module")
def triplet_data(iris):
    from mahal.constraints import Constraints

    X, y = iris
    idx = Constraints(y).generate_knntriplets(X, 2, 2)
    return X, idx, X[idx]


def test_triplets_unfitted_raises(triplet_data):
    X, _, t = triplet_data
    for method in ("predict", "decision_function"):
        with pytest.raises(NotFittedError):
            getattr(TripletMargin(), method)(t)
    with pytest.raises(NotFittedError):
        TripletMargin().transform(X)


def test_triplets_fit_outputs_and_consistency(triplet_data):
    X, _, t = triplet_data
    est = TripletMargin()
    params = est.get_params()
    assert est.fit(t) is est and est.get_params() == params
    assert est.n_features_in_ == 4
    dec = est.decision_function(t)
    Z = est.transform(t.reshape(-1, 4)).reshape(t.shape[0], 3, -1)
    np.testing.assert_allclose(dec, np.linalg.norm(Z[:, 0] - Z[:, 2], axis=1)
                               - np.linalg.norm(Z[:, 0] - Z[:, 1], axis=1), atol=1e-12)
    np.testing.assert_array_equal(est.predict(t), np.where(dec > 0, 1, -1))
    assert est.score(t) == np.mean(dec > 0)
    # learning helps: more triplets ordered than by the Euclidean distance
    base = np.mean(np.linalg.norm(t[:, 0] - t[:, 2], axis=1)
                   > np.linalg.norm(t[:, 0] - t[:, 1], axis=1))
    assert est.score(t) > base
    with pytest.raises(ValueError, match="features"):
        est.predict(t[:, :, :2])


def test_triplets_deterministic_picklable_and_preprocessor(triplet_data):
    X, idx, t = triplet_data
    a = TripletMargin().fit(t)
    b = TripletMargin(preprocessor=X).fit(idx)
    np.testing.assert_allclose(b.components_, a.components_)
    np.testing.assert_allclose(b.decision_function(idx), a.decision_function(t))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.decision_function(t), a.decision_function(t))


def test_triplets_bad_input(triplet_data):
    _, _, t = triplet_data
    bad = t.copy()
    bad[0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        TripletMargin().fit(bad)
    with pytest.raises(ValueError, match="3 points per tuple"):
        TripletMargin().fit(t[:, :2])
    with pytest.raises(ValueError, match="lda"):
        TripletMargin(init="lda").fit(t)
