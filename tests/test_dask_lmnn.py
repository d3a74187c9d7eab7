"""Dask arrays: LMNN fitted on a ``distributed.LocalCluster`` (2 worker processes:
the ``client`` fixture of conftest.py) against the in-memory fit.

The distributed evaluation forms every sum as the in-memory one does, so the fits
are compared for equality (a fit equal only to rounding would not do: LMNN's line
searches on the exact hinge amplify rounding into different iterates)."""

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
pytest.importorskip("distributed")

from mahal import LMNN  # noqa: E402
from mahal._lmnn_problem import lmnn_loss_grad  # noqa: E402

# (fits cut short by max_iter are compared all the same)
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


def _classes(n=600, d=5, seed=0):
    """Three overlapping classes (many impostors); the first 40 points all of class
    0, so that a first chunk of 40 rows holds a single class. 600 points: above
    the in-memory dense path's bound, so that the fit runs on the cluster."""
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.zeros(40, int), rng.integers(0, 3, n - 40)])
    X = rng.normal(size=(n, d)) + 1.5 * np.eye(3, d)[y]
    return X, y


def _objective(lmnn, X, y):
    return lmnn_loss_grad(lmnn.components_, X, np.searchsorted(lmnn.classes_, y),
                          lmnn.target_neighbors_)[0]


def _assert_same_fit(dist, ref, X, y):
    assert dist.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(dist.target_neighbors_, ref.target_neighbors_)
    f_dist, f_ref = _objective(dist, X, y), _objective(ref, X, y)
    assert abs(f_dist - f_ref) <= 1e-8 * abs(f_ref)
    np.testing.assert_allclose(dist.components_, ref.components_, rtol=1e-6,
                               atol=1e-7)


def test_lmnn_on_the_cluster_equals_the_in_memory_fit(client):
    # to convergence (tol met), in uneven chunks: a first chunk of a single class,
    # a chunk of one point
    X, y = _classes()
    ref = LMNN(n_components=3, init="pca").fit(X, y)
    dist = LMNN(n_components=3, init="pca").fit(
        da.from_array(X, chunks=((40, 7, 1, 300, 252), 5)), y)
    assert ref.n_iter_ < ref.max_iter
    _assert_same_fit(dist, ref, X, y)
    assert dist.n_features_in_ == 5
    np.testing.assert_array_equal(dist.classes_, ref.classes_)


@pytest.mark.parametrize("chunks", [(150, 150, 150, 150), (600,)])
def test_lmnn_chunkings_give_the_in_memory_fit(client, chunks):
    X, y = _classes(seed=1)
    ref = LMNN(n_components=3, init="pca", max_iter=12).fit(X, y)
    dist = LMNN(n_components=3, init="pca", max_iter=12).fit(
        da.from_array(X, chunks=(chunks, 5)), y)
    _assert_same_fit(dist, ref, X, y)


def test_many_classes_searched_in_class_blocks(client):
    # 20 classes of about 30 points: a search task takes several classes (blocks of
    # at least n / 16 points), each row's candidates still in the in-memory order
    from mahal._dask_lmnn import _class_blocks

    rng = np.random.default_rng(7)
    y = rng.integers(0, 20, 600)
    X = rng.normal(size=(600, 5)) + 0.7 * rng.normal(size=(20, 5))[y]
    assert max(len(b) for b in _class_blocks(np.bincount(y), 600)) > 1
    ref = LMNN(n_components=4, init="pca", max_iter=10).fit(X, y)
    dist = LMNN(n_components=4, init="pca", max_iter=10).fit(
        da.from_array(X, chunks=(250, 5)), y)
    _assert_same_fit(dist, ref, X, y)


def test_lmnn_dask_labels_two_passes_and_lda_init(client):
    # y a dask array of strings; the second pass selects target neighbours in the
    # learned space on the cluster
    X, y = _classes(seed=2)
    labels = np.array(["a", "b", "c"])[y]
    ref = LMNN(n_components=2, n_passes=2, max_iter=8).fit(X, labels)  # ('auto': LDA)
    dist = LMNN(n_components=2, n_passes=2, max_iter=8).fit(
        da.from_array(X, chunks=(130, 5)), da.from_array(labels, chunks=100))
    assert dist.n_passes_ == ref.n_passes_ == 2
    _assert_same_fit(dist, ref, X, labels)
    np.testing.assert_array_equal(dist.classes_, ref.classes_)


def test_small_problems_are_fitted_by_the_in_memory_dense_path(client):
    # (at most 500 points: gathered and fitted in this process, exactly as in memory)
    X, y = _classes(n=200, seed=3)
    ref = LMNN(n_components=3, init="pca").fit(X, y)
    dist = LMNN(n_components=3, init="pca").fit(da.from_array(X, chunks=(70, 5)), y)
    assert dist.n_iter_ == ref.n_iter_
    np.testing.assert_array_equal(dist.components_, ref.components_)


def test_a_worker_killed_in_the_middle_of_a_fit_is_survived(client, worker_killer):
    # Kill one worker process (the nanny starts another) after the second
    # iteration: the candidates, U and points it held are recomputed by dask from
    # their inputs, so the fit ends exactly where it ends without the kill.
    X, y = _classes(seed=5)
    Xd = da.from_array(X, chunks=(150, 5))
    undisturbed = LMNN(n_components=3, init="pca", max_iter=6).fit(Xd, y)
    kill = worker_killer(2)
    disturbed = LMNN(n_components=3, init="pca", max_iter=6, callback=kill).fit(Xd, y)
    assert kill.killed == [2]
    assert disturbed.n_iter_ == undisturbed.n_iter_ == 6
    np.testing.assert_array_equal(disturbed.components_, undisturbed.components_)


def test_bad_dask_input_is_refused_at_fit(client):
    X, y = _classes()
    Xd = da.from_array(X, chunks=(150, 5))
    with pytest.raises(ValueError, match="preprocessor is set"):
        LMNN(preprocessor=X).fit(Xd, y)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        LMNN().fit(Xd[Xd[:, 0] > -np.inf], y)
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        LMNN().fit(Xd, y[:-1])
    with pytest.raises(ValueError, match="needs at least 2 classes"):
        LMNN().fit(Xd, np.zeros(600, int))
    X[333, 1] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        LMNN().fit(da.from_array(X, chunks=(150, 5)), y)


def test_streamed_evaluations_equal_the_in_memory_ones(client):
    # More candidates than max_candidates: the in-memory solver streams over
    # blocks of distances, the distributed one runs the same lanes as tasks.
    from mahal._dask_cluster import DistributedPoints
    from mahal._lmnn_neighbors import select_target_neighbors
    from mahal._lmnn_solver import lmnn_solve

    X, y = _classes(seed=6)
    points = DistributedPoints(da.from_array(X, chunks=(300, 5)), client)
    targets = select_target_neighbors(points, y, 3)
    np.testing.assert_array_equal(targets, select_target_neighbors(X, y, 3))
    L0 = np.eye(3, 5)
    ref = lmnn_solve(X, y, targets, L0, max_iter=6, max_candidates=100)
    dist = lmnn_solve(points, y, targets, L0, max_iter=6, max_candidates=100)
    assert ref[3]["n_streamed"] > 0 and dist[3]["n_streamed"] == ref[3]["n_streamed"]
    assert dist[1] == ref[1]
    np.testing.assert_array_equal(dist[0], ref[0])
