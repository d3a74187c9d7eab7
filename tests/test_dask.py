"""Dask arrays: NCA and MLKR (LMNN: test_dask_lmnn.py) fitted on a
``distributed.LocalCluster`` (2 worker processes: the ``client`` fixture of
conftest.py) against the in-memory fit, and ``transform`` / ``pair_distance`` of
dask arrays, lazily, against NumPy's."""

import numpy as np
import pytest
from _fresh_process import fresh_output

da = pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from mahal import LMNN, MLKR, NCA  # noqa: E402
from mahal._nca_solver import nca_problem  # noqa: E402
from mahal._softmax_blocks import chunk_ranges  # noqa: E402

# (fits cut short by max_iter are compared all the same)
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def _classes(n=240, d=5, seed=0):
    """Three classes; the first 40 points all of class 0 (so a first chunk of 40
    rows holds a single class, in the input's order and in the class order)."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.zeros(40, int), rng.integers(0, 3, n - 40)])
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(3, d)[y]
    return X, y


def _assert_same_fit(dist, ref):
    assert dist.n_iter_ == ref.n_iter_
    assert abs(dist.objective_ - ref.objective_) <= 1e-8 * abs(ref.objective_)
    np.testing.assert_allclose(dist.components_, ref.components_, rtol=1e-6,
                               atol=1e-7)


def test_chunk_shares_sum_to_the_in_memory_evaluation():
    # No cluster: the shares of mahal._softmax_blocks.SoftmaxProblem.chunk_loss_grad
    # over the in-memory chunks, each chunk keeping its own shift, give the in-memory
    # loss (to the bit: same rows, same blocks) and gradient, evaluation after
    # evaluation (the second one reads the first one's shifts).
    X, y = _classes(n=1100)
    memory = nca_problem(X, y, block_rows=64)
    chunked = nca_problem(X, y, block_rows=64)
    chunks = chunk_ranges(1100, 3)
    assert len(chunks) == 2
    shifts = [None] * len(chunks)
    rng = np.random.default_rng(1)
    for scale in (1.0, 3.0):  # (the second L moves far: some rows need exact shifts)
        L = scale * rng.normal(size=(3, 5))
        f, G = memory.loss_grad(L)
        shares = [chunked.chunk_loss_grad(L, c, s) for c, s in zip(chunks, shifts)]
        shifts = [s[2] for s in shares]
        assert sum(s[0] for s in shares) == f
        np.testing.assert_allclose(sum(s[1] for s in shares), G, rtol=1e-12,
                                   atol=1e-12 * np.abs(G).max())
        np.testing.assert_array_equal(np.concatenate(shifts), memory.shift)


@pytest.mark.parametrize("chunks", [
    (60, 60, 60, 60),          # even
    (40, 7, 1, 120, 72),       # uneven, a chunk of one point; the first all class 0
    (240,),                    # one chunk
])
def test_nca_on_the_cluster_equals_the_in_memory_fit(client, chunks):
    X, y = _classes()
    ref = NCA(n_components=3, init="pca").fit(X, y)
    dist = NCA(n_components=3, init="pca").fit(da.from_array(X, chunks=(chunks, 5)),
                                               y)
    _assert_same_fit(dist, ref)
    assert dist.n_features_in_ == 5
    np.testing.assert_array_equal(dist.classes_, ref.classes_)


def test_nca_dask_labels_and_lda_init(client):
    X, y = _classes(seed=3)
    labels = np.array(["a", "b", "c"])[y]
    ref = NCA(n_components=2).fit(X, labels)  # ('auto': LDA)
    dist = NCA(n_components=2).fit(da.from_array(X, chunks=(70, 5)),
                                   da.from_array(labels, chunks=50))
    _assert_same_fit(dist, ref)
    np.testing.assert_array_equal(dist.classes_, ref.classes_)


def test_mlkr_on_the_cluster_equals_the_in_memory_fit(client):
    rng = np.random.default_rng(2)
    X = rng.normal(size=(200, 4))
    target = X[:, 0] - 2.0 * X[:, 1] + 0.1 * rng.normal(size=200)
    ref = MLKR(max_iter=60).fit(X, target)
    dist = MLKR(max_iter=60).fit(da.from_array(X, chunks=(90, 4)), target)
    _assert_same_fit(dist, ref)


@pytest.mark.parametrize("learner", [NCA, LMNN])
def test_without_a_client_the_default_scheduler_computes_x(monkeypatch, learner):
    from mahal import _dask_cluster

    monkeypatch.setattr(_dask_cluster, "active_client", lambda: None)
    X, y = _classes(seed=4)
    ref = learner(n_components=2, max_iter=20).fit(X, y)
    dist = learner(n_components=2, max_iter=20).fit(da.from_array(X, chunks=(50, 5)),
                                                    da.from_array(y, chunks=50))
    np.testing.assert_array_equal(dist.components_, ref.components_)
    assert dist.n_iter_ == ref.n_iter_


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_in_a_dask_array_is_refused_at_fit(client, bad):
    X, y = _classes()
    X[130, 2] = bad
    what = "NaN" if np.isnan(bad) else "infinity"
    with pytest.raises(ValueError, match=f"Input X contains {what}"):
        NCA().fit(da.from_array(X, chunks=(60, 5)), y)


def test_bad_dask_input_is_refused_at_fit(client):
    X, y = _classes()
    Xd = da.from_array(X, chunks=(60, 5))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        NCA().fit(Xd, y[:-1])
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        NCA().fit(Xd, np.zeros(240, int))
    with pytest.raises(ValueError, match="2-D array"):
        NCA().fit(da.from_array(X[:, 0], chunks=60), y)
    with pytest.raises(ValueError, match="overflow float64"):
        NCA().fit(Xd * 1e160, y)
    with pytest.raises(ValueError, match="preprocessor is set"):
        NCA(preprocessor=X).fit(Xd, y)


def test_broadcast_budget_is_stated_and_checked():
    from mahal._dask_cluster import check_budget
    from mahal._dask_softmax import bytes_per_point

    class FakeClient:
        def __init__(self, limit):
            self.limit = limit

        def scheduler_info(self):
            return {"workers": {"a": {"memory_limit": self.limit},
                                "b": {"memory_limit": 2 * self.limit}}}

    n, d = 10_000, 50
    need = 8 * n * (10 * d + 12)
    assert n * bytes_per_point(d) == need
    check_budget(FakeClient(2 * need), n, d, need // n)   # half of the smallest: fits
    check_budget(FakeClient(0), n, d, need // n)          # no limit: not checked
    with pytest.raises(MemoryError, match="each worker holds all the points"):
        check_budget(FakeClient(2 * need - 8), n, d, need // n)


def test_transform_and_pair_distance_of_dask_arrays_are_lazy_and_equal_numpy(client):
    X, y = _classes()
    nca = NCA(n_components=3, max_iter=10).fit(X, y)
    Xd = da.from_array(X, chunks=((100, 17, 123), 5))
    T = nca.transform(Xd)
    assert isinstance(T, da.Array) and T.chunks == ((100, 17, 123), (3,))
    np.testing.assert_allclose(T.compute(), nca.transform(X), rtol=1e-13, atol=1e-13)
    T32 = nca.transform(Xd.astype(np.float32))
    assert T32.dtype == np.float32 and T32.compute().dtype == np.float32
    pairs = np.stack([X[:120], X[120:]], axis=1)
    pd = da.from_array(pairs, chunks=(50, 2, 5))
    dist, score = nca.pair_distance(pd), nca.pair_score(pd)
    assert isinstance(dist, da.Array) and isinstance(score, da.Array)
    np.testing.assert_allclose(dist.compute(), nca.pair_distance(pairs), rtol=1e-13)
    np.testing.assert_allclose(score.compute(), nca.pair_score(pairs), rtol=1e-13)


def test_transform_of_a_dask_array_checks_its_input(client):
    X, y = _classes()
    nca = NCA(n_components=3, max_iter=5).fit(X, y)
    with pytest.raises(ValueError, match="expecting 5 features"):
        nca.transform(da.from_array(X[:, :4], chunks=(60, 4)))
    X[200, 1] = np.nan
    lazy = nca.transform(da.from_array(X, chunks=(60, 5)))  # (nothing computed yet)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        lazy.compute()


def test_the_core_install_does_not_import_dask():
    code = ("import sys, numpy as np\nfrom mahal import NCA, MLKR\n"
            "X = np.random.default_rng(0).normal(size=(60, 3)); y = np.arange(60) % 2\n"
            "m = NCA(max_iter=5).fit(X, y); m.transform(X)\n"
            "m.pair_distance(np.stack([X[:30], X[30:]], axis=1))\n"
            "MLKR(max_iter=5).fit(X, X[:, 0])\n"
            "from mahal import LMNN\nLMNN(max_iter=5).fit(X, y)\n"
            "print(any(k.split('.')[0] in ('dask', 'distributed') for k in sys.modules))")
    out = fresh_output(code).strip()
    assert out == "False"


def test_a_worker_killed_in_the_middle_of_a_fit_is_survived(client, worker_killer):
    # Kill one worker process (the nanny starts another) after the third iteration:
    # the lost shares (and the per-row shifts they carry) are recomputed by dask
    # from their inputs, so the fit ends exactly where it ends without the kill.
    X, y = _classes(seed=5)
    Xd = da.from_array(X, chunks=(60, 5))
    undisturbed = NCA(n_components=3, init="pca").fit(Xd, y)
    kill = worker_killer(3)
    disturbed = NCA(n_components=3, init="pca", callback=kill).fit(Xd, y)
    assert kill.killed == [3]
    assert disturbed.n_iter_ == undisturbed.n_iter_ > 3
    np.testing.assert_array_equal(disturbed.components_, undisturbed.components_)
    assert disturbed.objective_ == undisturbed.objective_
