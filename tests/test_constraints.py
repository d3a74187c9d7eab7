"""Tests of mahal.constraints (pairs, chunks, k-NN triplets, wrap_pairs)."""

import itertools
import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mahal.constraints import Constraints, wrap_pairs


def _pair_set(first, second):
    return {(min(i, j), max(i, j)) for i, j in zip(first.tolist(),
                                                    second.tolist())}


def _brute_pairs(labels, unknown=-1):
    """All similar / dissimilar unordered pairs by a plain double loop."""
    labels = list(labels)
    sim, dis = set(), set()
    for i, j in itertools.combinations(range(len(labels)), 2):
        if labels[i] == unknown or labels[j] == unknown:
            continue
        (sim if labels[i] == labels[j] else dis).add((i, j))
    return sim, dis


def _check_pairs(labels, a, b, c, d):
    """Assert pair validity: labels, no self pairs, no duplicates."""
    labels = np.asarray(labels)
    for first, second, same in ((a, b, True), (c, d, False)):
        assert first.shape == second.shape
        assert np.all(first != second)
        assert np.all((labels[first] == labels[second]) == same)
        assert len(_pair_set(first, second)) == len(first)


# ------------------------------------------------------------------- basics
def test_attributes_numeric_and_unknown():
    y = np.array([2, -1, 0, 2, -1, 5])
    c = Constraints(y)
    np.testing.assert_array_equal(c.partial_labels, y)
    np.testing.assert_array_equal(c.known_label_idx, [0, 2, 3, 5])
    np.testing.assert_array_equal(c.known_labels, [2, 0, 2, 5])


def test_string_labels_are_all_known():
    y = np.array(["b", "a", "-1", "a"])
    c = Constraints(y)
    np.testing.assert_array_equal(c.known_label_idx, [0, 1, 2, 3])


@pytest.mark.parametrize("bad", [np.zeros((3, 2)), 5])
def test_labels_must_be_1d(bad):
    with pytest.raises(ValueError, match="partial_labels must be a 1-D"):
        Constraints(bad)


def test_nan_labels_rejected():
    with pytest.raises(ValueError, match="partial_labels must not contain"):
        Constraints([0.0, np.nan, 1.0])


@pytest.mark.parametrize("bad", [0, -3, 2.5, "10", None, True])
def test_n_constraints_validation(bad):
    c = Constraints([0, 0, 1, 1])
    with pytest.raises(ValueError, match="n_constraints' parameter of Constraints must be "):
        c.positive_negative_pairs(bad)


# -------------------------------------------------------------------- pairs
@pytest.mark.parametrize("n_samples, n_constraints", [
    (30, 20),       # exact enumeration path
    (3000, 500),    # sampling path (> 10**6 pairs)
])
def test_pairs_valid_and_counts(n_samples, n_constraints):
    rng = np.random.RandomState(0)
    y = rng.randint(0, 4, n_samples)
    y[rng.rand(n_samples) < 0.2] = -1
    a, b, c, d = Constraints(y).positive_negative_pairs(
        n_constraints, random_state=1)
    assert len(a) == len(c) == n_constraints
    _check_pairs(y, a, b, c, d)
    used = np.concatenate([a, b, c, d])
    assert np.all(y[used] != -1)
    # returned pairs are canonical (i < j)
    assert np.all(a < b) and np.all(c < d)


def test_pairs_deterministic_and_seed_dependent():
    y = np.random.RandomState(3).randint(0, 3, 200)
    cons = Constraints(y)
    p1 = cons.positive_negative_pairs(50, random_state=7)
    p2 = cons.positive_negative_pairs(50, random_state=7)
    p3 = cons.positive_negative_pairs(50, random_state=8)
    for u, v in zip(p1, p2):
        np.testing.assert_array_equal(u, v)
    assert any(not np.array_equal(u, v) for u, v in zip(p1, p3))


def test_pairs_accepts_randomstate_instance():
    y = np.repeat([0, 1, 2], 20)
    cons = Constraints(y)
    p1 = cons.positive_negative_pairs(10, random_state=np.random.RandomState(4))
    p2 = cons.positive_negative_pairs(10, random_state=4)
    for u, v in zip(p1, p2):
        np.testing.assert_array_equal(u, v)


def test_all_pairs_matches_brute_force():
    rng = np.random.RandomState(5)
    y = rng.randint(-1, 4, 40)
    a, b, c, d = Constraints(y).all_pairs()
    sim, dis = _brute_pairs(y)
    assert list(zip(a.tolist(), b.tolist())) == sorted(sim)
    assert list(zip(c.tolist(), d.tolist())) == sorted(dis)


def test_requesting_all_existing_pairs_returns_exactly_them():
    y = np.array([0, 0, 0, 1, 1, -1, 2])
    sim, dis = _brute_pairs(y)
    with pytest.warns(UserWarning, match=r"Only 4 distinct similar pairs"):
        a, b, c, d = Constraints(y).positive_negative_pairs(
            len(dis), random_state=0)
    assert _pair_set(a, b) == sim and len(a) == 4
    assert _pair_set(c, d) == dis and len(c) == len(dis)


def test_warning_when_too_few_pairs_and_same_length():
    y = ["x", "x", "y", "z"]  # 1 similar pair, 5 dissimilar
    cons = Constraints(y)
    with pytest.warns(UserWarning) as record:
        a, b, c, d = cons.positive_negative_pairs(10, random_state=0)
    messages = [str(w.message) for w in record]
    assert any("Only 1 distinct similar pairs" in m and "10 requested" in m
               for m in messages)
    assert any("Only 5 distinct dissimilar pairs" in m for m in messages)
    assert (len(a), len(c)) == (1, 5)
    with pytest.warns(UserWarning):
        a, b, c, d = cons.positive_negative_pairs(10, same_length=True,
                                                  random_state=0)
    assert len(a) == len(b) == len(c) == len(d) == 1
    _check_pairs(np.array(y), a, b, c, d)


def test_single_class_has_no_dissimilar_pairs():
    with pytest.warns(UserWarning, match="Only 0 distinct dissimilar"):
        a, b, c, d = Constraints([1, 1, 1]).positive_negative_pairs(
            2, random_state=0)
    assert len(a) == 2 and len(c) == 0 and c.dtype.kind == "i"


def test_no_warning_when_enough_pairs():
    y = np.repeat([0, 1], 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Constraints(y).positive_negative_pairs(20, random_state=0)


def test_string_labels_pairs():
    rng = np.random.RandomState(2)
    y = rng.choice(np.array(["cat", "dog", "-1"]), 60)
    a, b, c, d = Constraints(y).positive_negative_pairs(30, random_state=0)
    _check_pairs(y, a, b, c, d)
    # "-1" is an ordinary class for string labels
    assert "-1" in set(y[np.concatenate([a, b])])


def test_deprecated_num_constraints():
    y = np.repeat([0, 1], 10)
    with pytest.warns(FutureWarning, match="num_constraints"):
        p = Constraints(y).positive_negative_pairs(num_constraints=5,
                                                   random_state=0)
    q = Constraints(y).positive_negative_pairs(5, random_state=0)
    for u, v in zip(p, q):
        np.testing.assert_array_equal(u, v)


def test_large_n_sampling_is_fast_and_valid():
    rng = np.random.RandomState(0)
    y = rng.randint(0, 10, 50000)
    y[:500] = -1
    cons = Constraints(y)
    start = time.perf_counter()
    a, b, c, d = cons.positive_negative_pairs(10000, random_state=0)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0
    assert len(a) == len(c) == 10000
    _check_pairs(y, a, b, c, d)
    assert np.all(y[np.concatenate([a, b, c, d])] != -1)


def test_sampling_path_is_uniform_over_pairs():
    # class 0 has C(3000, 2) similar pairs, class 1 has C(1000, 2): uniform
    # sampling over pairs gives class 0 a fraction ~0.9 of similar pairs
    y = np.repeat([0, 1], [3000, 1000])
    a, b, c, d = Constraints(y).positive_negative_pairs(20000, random_state=0)
    expected = 3000 * 2999 / (3000 * 2999 + 1000 * 999)
    assert abs(np.mean(y[a] == 0) - expected) < 0.01
    # every point is equally likely in a dissimilar pair (each pair has one
    # point of each class): points of class 1 appear 3x as often
    counts = np.bincount(np.concatenate([c, d]), minlength=4000)
    assert abs(counts[3000:].mean() / counts[:3000].mean() - 3.0) < 0.15


@settings(max_examples=40, deadline=None)
@given(labels=st.lists(st.integers(-1, 3), min_size=0, max_size=25),
       n_constraints=st.integers(1, 40), seed=st.integers(0, 2 ** 31 - 1))
def test_pairs_property(labels, n_constraints, seed):
    y = np.array(labels, dtype=int)
    sim, dis = _brute_pairs(y)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        a, b, c, d = Constraints(y).positive_negative_pairs(
            n_constraints, random_state=seed)
    assert len(a) == min(n_constraints, len(sim))
    assert len(c) == min(n_constraints, len(dis))
    assert _pair_set(a, b) <= sim and len(_pair_set(a, b)) == len(a)
    assert _pair_set(c, d) <= dis and len(_pair_set(c, d)) == len(c)


# ------------------------------------------------------------------- chunks
def _check_chunks(labels, chunks, n_chunks, chunk_size):
    labels = np.asarray(labels)
    ids = np.unique(chunks[chunks >= 0])
    np.testing.assert_array_equal(ids, np.arange(n_chunks))
    for k in ids:
        members = np.flatnonzero(chunks == k)
        assert len(members) == chunk_size
        assert len(set(labels[members].tolist())) == 1


def test_chunks_use_every_class():
    y = np.array([0, 0, 1, 1, 2, 2])
    for seed in range(10):
        chunks = Constraints(y).chunks(n_chunks=3, chunk_size=2,
                                       random_state=seed)
        _check_chunks(y, chunks, 3, 2)
        assert np.all(chunks >= 0)  # all three classes used


def test_chunks_can_draw_last_class():
    # metric-learn never draws the last class; here it must appear
    y = np.repeat([0, 1, 2], 10)
    seen = set()
    for seed in range(20):
        chunks = Constraints(y).chunks(n_chunks=1, chunk_size=2,
                                       random_state=seed)
        seen.update(y[chunks >= 0].tolist())
    assert seen == {0, 1, 2}


def test_chunks_string_labels_unknown_and_determinism():
    y = np.array(["a"] * 7 + ["b"] * 5 + ["c"] * 4)
    c1 = Constraints(y).chunks(n_chunks=3, chunk_size=3, random_state=0)
    c2 = Constraints(y).chunks(n_chunks=3, chunk_size=3, random_state=0)
    np.testing.assert_array_equal(c1, c2)
    _check_chunks(y, c1, 3, 3)
    assert any(not np.array_equal(
        c1, Constraints(y).chunks(n_chunks=3, chunk_size=3, random_state=s))
        for s in range(1, 5))

    z = np.array([0, -1, 0, -1, 1, 1, -1])
    chunks = Constraints(z).chunks(n_chunks=2, chunk_size=2, random_state=0)
    np.testing.assert_array_equal(chunks[z == -1], -1)
    _check_chunks(z, chunks, 2, 2)


def test_chunks_too_many_raises_with_maximum():
    y = np.array([0, 0, 0, 1, 1, -1, -1])  # 3//2 + 2//2 = 2 chunks of 2
    with pytest.raises(ValueError, match="at most 2 chunks"):
        Constraints(y).chunks(n_chunks=3, chunk_size=2)
    chunks = Constraints(y).chunks(n_chunks=2, chunk_size=2, random_state=0)
    _check_chunks(y, chunks, 2, 2)


@pytest.mark.parametrize("kwargs, name", [
    ({"n_chunks": 0}, "n_chunks"), ({"chunk_size": 1.5}, "chunk_size")])
def test_chunks_argument_validation(kwargs, name):
    with pytest.raises(ValueError, match=f"{name}' parameter of Constraints must be an int "):
        Constraints([0, 0, 1, 1]).chunks(**kwargs)


def test_chunks_deprecated_num_chunks():
    y = np.repeat([0, 1], 4)
    with pytest.warns(FutureWarning, match="num_chunks"):
        a = Constraints(y).chunks(num_chunks=2, random_state=0)
    np.testing.assert_array_equal(
        a, Constraints(y).chunks(n_chunks=2, random_state=0))


# ----------------------------------------------------------------- triplets
def _brute_triplets(X, y, k_genuine, k_impostor):
    """Reference triplets from a full distance matrix (small data only)."""
    known = np.flatnonzero(y != -1)
    dist = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)
    rows = []
    for label in np.unique(y[known]):
        members = known[y[known] == label]
        others = known[y[known] != label]
        kg = min(k_genuine, len(members) - 1)
        ki = min(k_impostor, len(others))
        for i in members:
            same = members[members != i]
            gen = same[np.argsort(dist[i, same], kind="stable")[:kg]]
            imp = others[np.argsort(dist[i, others], kind="stable")[:ki]]
            for g in gen:
                for m in imp:
                    rows.append((i, g, m))
    return np.array(rows, dtype=int).reshape(-1, 3)


@pytest.mark.parametrize("k_genuine, k_impostor", [(1, 1), (3, 2), (2, 5)])
def test_knntriplets_match_brute_force(k_genuine, k_impostor):
    rng = np.random.RandomState(0)
    X = rng.randn(40, 3)
    y = rng.randint(0, 3, 40)
    y[[4, 9, 17]] = -1
    triplets = Constraints(y).generate_knntriplets(X, k_genuine, k_impostor)
    np.testing.assert_array_equal(triplets,
                                  _brute_triplets(X, y, k_genuine, k_impostor))
    n_known = np.sum(y != -1)
    assert triplets.shape == (n_known * k_genuine * k_impostor, 3)


def test_knntriplets_small_class_reduces_k_with_warning():
    rng = np.random.RandomState(1)
    X = rng.randn(12, 2)
    y = np.array(["a"] * 2 + ["b"] * 10)
    with pytest.warns(UserWarning) as record:
        triplets = Constraints(y).generate_knntriplets(X, 3, 4)
    messages = sorted(str(w.message) for w in record)
    assert len(messages) == 2
    assert "'a' has 2 elements" in messages[0]
    assert "Will generate 1 genuine" in messages[0]
    assert "'b' has 2 elements of other classes" in messages[1]
    assert "Will generate 2 impostor" in messages[1]
    yi = np.where(y == "a", 0, 1)
    np.testing.assert_array_equal(triplets, _brute_triplets(X, yi, 3, 4))
    # class 'a': 2 anchors x 1 genuine x 4 impostors;
    # class 'b': 10 anchors x 3 genuine x 2 impostors (only 2 outside 'b')
    assert len(triplets) == 2 * 1 * 4 + 10 * 3 * 2


def test_knntriplets_singleton_class_yields_no_anchor():
    X = np.arange(10, dtype=float).reshape(5, 2)
    y = np.array([0, 0, 0, 0, 1])
    with pytest.warns(UserWarning):
        triplets = Constraints(y).generate_knntriplets(X, 1, 1)
    assert 4 not in triplets[:, 0]
    np.testing.assert_array_equal(triplets, _brute_triplets(X, y, 1, 1))


def test_knntriplets_validation():
    cons = Constraints([0, 0, 1, 1])
    with pytest.raises(ValueError, match="X has 3 samples"):
        cons.generate_knntriplets(np.zeros((3, 2)), 1, 1)
    with pytest.raises(ValueError, match="k_impostor' parameter of Constraints must be an int "):
        cons.generate_knntriplets(np.zeros((4, 2)), 1, 0)


# --------------------------------------------------------------- wrap_pairs
def test_wrap_pairs():
    X = np.arange(12, dtype=float).reshape(6, 2)
    a, b = np.array([0, 1]), np.array([2, 3])
    c, d = np.array([4]), np.array([5])
    pairs, y = wrap_pairs(X, (a, b, c, d))
    assert pairs.shape == (3, 2, 2)
    np.testing.assert_array_equal(y, [1, 1, -1])
    for k, (i, j) in enumerate([(0, 2), (1, 3), (4, 5)]):
        np.testing.assert_array_equal(pairs[k, 0], X[i])
        np.testing.assert_array_equal(pairs[k, 1], X[j])


def test_wrap_pairs_with_generated_pairs():
    rng = np.random.RandomState(0)
    X = rng.randn(50, 4)
    labels = rng.randint(0, 3, 50)
    cons = Constraints(labels).positive_negative_pairs(15, random_state=0)
    pairs, y = wrap_pairs(X, cons)
    assert pairs.shape == (30, 2, 4)
    np.testing.assert_array_equal(y, np.r_[np.ones(15), -np.ones(15)])
    # recover the indices from the rows and check the labels agree with y
    idx = [[int(np.flatnonzero((X == p).all(1))[0]) for p in pair]
           for pair in pairs]
    same = np.array([labels[i] == labels[j] for i, j in idx])
    np.testing.assert_array_equal(same, y == 1)


def test_wrap_pairs_validation():
    X = np.zeros((3, 2))
    with pytest.raises(ValueError, match="outside"):
        wrap_pairs(X, ([0], [3], [], []))
    with pytest.raises(ValueError, match="equal lengths"):
        wrap_pairs(X, ([0, 1], [2], [], []))
    with pytest.raises(ValueError, match="X must be a 2-D"):
        wrap_pairs(np.zeros(3), ([0], [1], [], []))
