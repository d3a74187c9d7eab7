"""Predicting on dask arrays, lazily: LMNNEnergyClassifier's and
PrototypeClassifier's methods block by block, and MetricKNeighborsClassifier over
dask references, each against the NumPy result on the same data. Most tests use
dask's default scheduler; one runs on the LocalCluster of conftest.py."""

import warnings

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from dask.callbacks import Callback  # noqa: E402
from sklearn.decomposition import PCA  # noqa: E402

from mahal import (LMNN, NCA, LMNNEnergyClassifier,  # noqa: E402
                   MetricKNeighborsClassifier, PrototypeClassifier)

# (short fits, compared all the same)
pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

UNEVEN = (70, 1, 13, 96)  # row chunks of the 180 queries (one of a single row)


def _classes(n, d=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.normal(size=(n, d)) + 1.5 * np.eye(3, d)[y], y


@pytest.fixture(scope="module")
def data():
    X, y = _classes(240)
    Xq, _ = _classes(180, seed=1)
    nca = NCA(n_components=3, max_iter=30, random_state=0).fit(X, y)
    return X, y, Xq, nca


@pytest.fixture(scope="module")
def energy(data):
    X, y, _, _ = data
    return LMNNEnergyClassifier(LMNN(max_iter=30)).fit(X, y)


def _lazy_equals(method, Xq):
    """``method`` of a dask Xq (uneven chunks) is lazy, keeps the row chunks and
    equals ``method`` of the NumPy Xq: labels exactly, numbers to rounding (BLAS
    may round a product of a block in other ways than of the whole array)."""
    lazy = method(da.from_array(Xq, chunks=(UNEVEN, Xq.shape[1])))
    assert isinstance(lazy, da.Array) and lazy.chunks[0] == UNEVEN
    want = method(Xq)
    got = lazy.compute()
    assert got.shape == want.shape and got.dtype == want.dtype
    if got.dtype.kind != "f":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------- energy and prototypes


def test_energy_classifier_on_dask_equals_numpy(data, energy):
    _, _, Xq, _ = data
    _lazy_equals(energy.energy, Xq)
    _lazy_equals(energy.predict, Xq)


@pytest.mark.parametrize("params", [
    dict(),
    dict(metric="cosine"),
    dict(aggregate="attention"),
    dict(metric="cosine", aggregate="attention"),
])
def test_prototype_classifier_on_dask_equals_numpy(data, params):
    X, y, Xq, nca = data
    labels = np.array(["x", "yy", "z"])[y]  # (string classes keep their dtype)
    clf = PrototypeClassifier(metric_learner=nca, prefit=True, **params).fit(X, labels)
    for method in (clf.predict, clf.predict_proba, clf.predict_log_proba):
        _lazy_equals(method, Xq)


def test_a_lazy_result_keeps_the_fit_it_was_made_from(data):
    # (the estimator is refitted before the result is computed)
    X, y, Xq, _ = data
    clf = PrototypeClassifier().fit(X, y)
    lazy = clf.predict_proba(da.from_array(Xq, chunks=(60, 4)))
    want = clf.predict_proba(Xq)
    clf.fit(X[:60] * 3.0, y[:60])
    np.testing.assert_array_equal(lazy.compute(), want)


def test_nan_in_one_block_raises_the_in_memory_message(data, energy):
    X, y, Xq, nca = data
    Xq = Xq.copy()
    Xq[100, 2] = np.nan
    proto = PrototypeClassifier(metric_learner=nca, prefit=True).fit(X, y)
    knn = MetricKNeighborsClassifier(nca, prefit=True).fit(X, y)
    for method in (energy.predict, energy.energy, proto.predict, proto.predict_proba,
                   knn.predict):
        with pytest.raises(ValueError, match="Input X contains NaN") as numpy_error:
            method(Xq)
        lazy = method(da.from_array(Xq, chunks=(UNEVEN, 4)))  # (nothing computed)
        with pytest.raises(ValueError, match="Input X contains NaN") as dask_error:
            lazy.compute()
        if method != knn.predict:  # (its dask queries meet the learner's transform)
            assert str(dask_error.value) == str(numpy_error.value)


def test_dask_input_is_checked_up_front(data, energy):
    X, y, Xq, nca = data
    proto = PrototypeClassifier(metric_learner=nca, prefit=True).fit(X, y)
    knn = MetricKNeighborsClassifier(nca, prefit=True).fit(X, y)
    for method in (energy.predict, proto.predict_proba, knn.predict):
        with pytest.raises(ValueError, match="expecting 4 features"):
            method(da.from_array(Xq[:, :3], chunks=(60, 3)))
        with pytest.raises(ValueError, match="2-D array"):
            method(da.from_array(Xq[:, 0], chunks=60))
    # a metric learner with a preprocessor: the dask path refuses (as transform does)
    with_pre = NCA(n_components=3, max_iter=5, preprocessor=X).fit(X, y)
    for clf in (PrototypeClassifier(metric_learner=with_pre, prefit=True),
                LMNNEnergyClassifier(LMNN(max_iter=5, preprocessor=X)),
                MetricKNeighborsClassifier(with_pre, prefit=True)):
        clf.fit(X, y)
        clf.predict(Xq)  # (points: fine in memory)
        with pytest.raises(ValueError, match="X is a dask array, but a preprocessor"):
            clf.predict(da.from_array(Xq, chunks=(60, 4)))


# ---------------------------------------------------------- k nearest neighbours


REFERENCE_CHUNKS = (100, 2, 1, 37, 100)  # (chunks smaller than k among them)


@pytest.mark.parametrize("k", [1, 4, 5])
def test_knn_over_dask_references_equals_numpy(data, k):
    X, y, Xq, nca = data
    memory = MetricKNeighborsClassifier(nca, n_neighbors=k, prefit=True).fit(X, y)
    Xd = da.from_array(X, chunks=(REFERENCE_CHUNKS, 4))
    lazy = MetricKNeighborsClassifier(nca, n_neighbors=k, prefit=True).fit(Xd, y)
    assert lazy.n_samples_fit_ == 240 and lazy.n_features_in_ == 4
    _lazy_equals(lazy.predict, Xq)
    _lazy_equals(lazy.predict_proba, Xq)
    np.testing.assert_array_equal(lazy.predict(Xq), memory.predict(Xq))  # NumPy out
    np.testing.assert_array_equal(lazy.predict_proba(Xq), memory.predict_proba(Xq))
    # queries as dask arrays, references in memory
    _lazy_equals(memory.predict, Xq)
    # the neighbours themselves; distances and indices from one search
    dist, ind = lazy.kneighbors(da.from_array(Xq, chunks=(UNEVEN, 4)))
    dist, ind = dask.compute(dist, ind)
    want_dist, want_ind = memory.kneighbors(Xq)
    np.testing.assert_array_equal(ind, want_ind)
    np.testing.assert_allclose(dist, want_dist, rtol=1e-12, atol=1e-12)
    ind_only = lazy.kneighbors(Xq, return_distance=False)
    assert isinstance(ind_only, np.ndarray)
    np.testing.assert_array_equal(ind_only, want_ind)


def test_exact_ties_across_reference_chunks_keep_the_lower_index():
    # references on an integer grid and integer components (exact distances, many
    # ties) split into uneven chunks: the neighbours are those of the in-memory
    # search, which keeps the lower index among equal distances
    # (tests/test_neighbors.py)
    rng = np.random.default_rng(7)
    X = rng.integers(-2, 3, size=(300, 3)).astype(float)
    Xq = rng.integers(-2, 3, size=(50, 3)).astype(float)
    y = rng.integers(0, 3, 300)
    learner = NCA(max_iter=1).fit(X, y)
    learner.components_ = np.array([[1.0, 1.0, 0.0], [0.0, 1.0, -1.0]])
    memory = MetricKNeighborsClassifier(learner, n_neighbors=6, prefit=True).fit(X, y)
    lazy = MetricKNeighborsClassifier(learner, n_neighbors=6, prefit=True).fit(
        da.from_array(X, chunks=((7, 150, 3, 140), 3)), y)
    np.testing.assert_array_equal(lazy.kneighbors(Xq)[1], memory.kneighbors(Xq)[1])
    np.testing.assert_array_equal(lazy.predict_proba(Xq), memory.predict_proba(Xq))


class _TaskSizes(Callback):
    """Records the size of every task's result (dask's local schedulers)."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def _posttask(self, key, result, dsk, state, worker_id):
        parts = result if isinstance(result, tuple) else (result,)
        self.sizes.append(sum(getattr(p, "size", 0) for p in parts))


def test_no_task_holds_more_than_a_neighbour_list_or_a_chunk(data):
    # 180 queries × 240 references: a task that returned distances of more than one
    # chunk of references, or all of them, would show here; each task's result is
    # a row block's neighbour list (3 × 180 × k), a chunk or a block of results
    X, y, Xq, nca = data
    k = 3
    knn = MetricKNeighborsClassifier(nca, n_neighbors=k, prefit=True).fit(
        da.from_array(X, chunks=(60, 4)), y)
    lazy = knn.predict_proba(da.from_array(Xq, chunks=(90, 4)))
    with _TaskSizes() as sizes:
        lazy.compute(scheduler="sync")
    biggest = max(3 * 90 * k, 60 * 4, 90 * 4, 240)
    assert len(sizes.sizes) > 8  # (2 query blocks × 4 reference chunks, at least)
    assert max(sizes.sizes) <= biggest


def test_knn_dask_fit_checks_and_errors(data):
    X, y, Xq, nca = data
    Xd = da.from_array(X, chunks=(60, 4))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        MetricKNeighborsClassifier(nca, prefit=True).fit(Xd, y[:-1])
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        MetricKNeighborsClassifier(nca, prefit=True).fit(Xd, np.zeros(240))
    with pytest.raises(ValueError, match="Expected n_neighbors <= n_samples_fit"):
        MetricKNeighborsClassifier(nca, n_neighbors=241, prefit=True).fit(Xd, y)
    pca = PCA(n_components=2).fit(X)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # (sklearn may warn converting the array)
        with pytest.raises(TypeError, match="transforms them lazily"):
            MetricKNeighborsClassifier(pca, prefit=True).fit(Xd, y)
    # a NaN among the references: found when a prediction is computed
    Xn = X.copy()
    Xn[150, 0] = np.nan
    knn = MetricKNeighborsClassifier(nca, prefit=True).fit(
        da.from_array(Xn, chunks=(60, 4)), da.from_array(y, chunks=60))
    with pytest.raises(ValueError, match="Input X contains NaN"):
        knn.predict(Xq)


def test_knn_fits_its_learner_on_dask_references_without_a_client(data):
    X, y, Xq, _ = data
    Xd = da.from_array(X, chunks=(50, 4))
    memory = MetricKNeighborsClassifier(NCA(max_iter=10), n_neighbors=3).fit(X, y)
    lazy = MetricKNeighborsClassifier(NCA(max_iter=10), n_neighbors=3).fit(Xd, y)
    np.testing.assert_array_equal(lazy.metric_learner_.components_,
                                  memory.metric_learner_.components_)
    np.testing.assert_array_equal(lazy.predict(Xq), memory.predict(Xq))


def test_knn_and_energy_on_the_cluster_equal_numpy(client, data, energy):
    X, y, Xq, nca = data
    memory = MetricKNeighborsClassifier(nca, n_neighbors=4, prefit=True).fit(X, y)
    lazy = MetricKNeighborsClassifier(nca, n_neighbors=4, prefit=True).fit(
        da.from_array(X, chunks=(REFERENCE_CHUNKS, 4)), y)
    Xqd = da.from_array(Xq, chunks=(UNEVEN, 4))
    proba, labels = client.compute([lazy.predict_proba(Xqd), lazy.predict(Xqd)],
                                   sync=True)
    np.testing.assert_array_equal(proba, memory.predict_proba(Xq))
    np.testing.assert_array_equal(labels, memory.predict(Xq))
    np.testing.assert_array_equal(energy.predict(Xqd).compute(), energy.predict(Xq))


def test_threaded_blocks_leave_blas_threads_as_they_were():
    # each block's energy (above the small problems' dense path) limits BLAS to one
    # thread; with dask's threaded scheduler blocks overlap, and BLAS must get its
    # threads back at the end
    from threadpoolctl import threadpool_info

    def blas_threads():
        return [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]

    before = blas_threads()
    if max(before) < 2:
        pytest.skip("BLAS runs one thread here: no limit to see")
    X, y = _classes(3000, d=5, seed=2)
    clf = LMNNEnergyClassifier(LMNN(max_iter=5)).fit(X, y)
    for _ in range(3):
        clf.predict(da.from_array(X, chunks=(100, 5))).compute(scheduler="threads")
        assert blas_threads() == before
