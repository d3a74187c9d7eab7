"""LMNN's neighbour computations: target neighbours, impostor search, energies.

Everything that finds near points for LMNN (in blocks, never an ``n × n`` distance
matrix): the target neighbours (nearest classmates), the directed impostor
candidates within given radii, and the energies of energy-based classification.
Used by the solver (:mod:`mahal._lmnn_solver`) and the estimators.
"""

import numpy as np

from . import _lmnn_dense
from ._lazy import lazy_module
from ._nearest import squared_distances, squared_norms
from ._parallel import SERIAL, RowChunkPool, blas_threads

kernels = lazy_module("mahal._lmnn_search_kernels")  # (numba: imported on first use)

_BLOCK_ELEMS = 1 << 22  # entries of one distance block (32 MB of float64)
_SEARCH_BLOCK = 1 << 20  # entries of one float32 search block (4 MB: stays in cache)
_SMALL_SEARCH = 1 << 18  # n² r up to this: one compiled pass (kernels.search_small)


# ---------------------------------------------------------------------------
# Target neighbours, impostor search, loss


def select_target_neighbors(X, y, n_neighbors):
    """The ``n_neighbors`` nearest same-class points of every point (input space).

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features) or DistributedPoints
        (a :class:`mahal._dask_cluster.DistributedPoints`: searched on the cluster,
        :mod:`mahal._dask_lmnn`)
    y : ndarray of shape (n_samples,), int labels
    n_neighbors : int

    Returns
    -------
    targets : ndarray of shape (n_samples, n_neighbors), int64
        Indices; a point whose class has ``m ≤ n_neighbors`` members gets its ``m − 1``
        classmates and ``−1`` in the remaining columns.
    """
    if hasattr(X, "client"):  # X on a dask cluster
        from ._dask_lmnn import select_target_neighbors_on_cluster

        return select_target_neighbors_on_cluster(X, y, n_neighbors)
    X = np.asarray(X, dtype=np.float64)
    targets = _lmnn_dense.select_target_neighbors(X, y, n_neighbors)  # (small)
    if targets is not None:
        return targets
    targets = np.full((X.shape[0], n_neighbors), -1, dtype=np.int64)
    for members, kc, kk in target_classes(y, n_neighbors):
        targets[members, :kc] = class_targets(X, members, 0, members.shape[0], kc, kk)
    return targets


def target_classes(y, n_neighbors):
    """``(members, kc, kk)`` of every class with target neighbours: its points (by
    index), their number of target neighbours and of candidates ranked."""
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        m = members.shape[0]
        kc = min(n_neighbors, m - 1)
        if kc >= 1:
            yield members, kc, min(m - 1, kc + 4)


def class_targets(X, members, s, e, kc, kk):
    """Target neighbours (indices into ``X``) of the class members at positions
    ``s ≤ a < e`` of ``members`` (one class's points): ``kk`` candidates from the
    Gram-trick distances of the class's centred points (blocks of rows), then ranked
    by exact distances (ties: lower index first; :func:`kernels.nearest_in_class`)."""
    Xc = np.asarray(X, dtype=np.float64)[members]
    Xm = Xc - Xc.mean(axis=0)
    nc = squared_norms(Xm)
    out = np.empty((e - s, kc), dtype=np.int64)
    step = max(1, _BLOCK_ELEMS // members.shape[0])
    for a in range(s, e, step):
        b = min(a + step, e)
        kernels.nearest_in_class(Xc, Xm[a:b] @ Xm.T, nc, a, kk, kc, out[a - s:b - s])
    return members[out]


def find_impostors(Z, y, rho2, pool=SERIAL, low_precision=False, max_pairs=None):
    """Directed impostor candidates: ``i → l`` with ``y_l ≠ y_i`` and
    ``‖z_i − z_l‖² < rho2[i]``.

    Each unordered pair of classes is visited once, in blocks of (class-c rows) ×
    (points of the classes after c).

    Parameters
    ----------
    Z : ndarray of shape (n, r)
        Points in the transformed space.
    y : ndarray of shape (n,), int64
    rho2 : ndarray of shape (n,)
        Squared search radius of every point.
    pool : RowChunkPool
        Threads for the blocks.
    low_precision : bool, default=False
        Compute the dot products in float32 (twice as fast). Only for enlarged
        radii: a pair's squared distance may then be off by ~1e-6 of the squared
        norms, which the solver's margin of safety (``slack``) absorbs; the loss
        kernel recomputes every candidate's distance in float64.
    max_pairs : int, optional
        Give up (return None) as soon as more pairs than this are found.

    Returns
    -------
    src, dst : ndarray of int64
        (None if ``max_pairs`` was exceeded.)
    """
    Z = np.ascontiguousarray(Z, dtype=np.float64)
    y = np.asarray(y, dtype=np.int64)
    rho2 = np.asarray(rho2, dtype=np.float64)
    n = Z.shape[0]
    if n * n * Z.shape[1] <= _SMALL_SEARCH:
        src, dst = kernels.search_small(Z, y, rho2)
        if max_pairs is not None and src.shape[0] > max_pairs:
            return None
        return src, dst
    # Class-sorted copy: the rows of class c and the points of the classes after c
    # are contiguous slices (no gathers per block).
    order = np.argsort(y, kind="stable").astype(np.int64)
    Zs = Z[order]
    norms = squared_norms(Zs)
    rs = rho2[order]
    Zg = Zs.astype(np.float32) if low_precision else Zs
    bounds = np.searchsorted(y[order], np.unique(y), side="right")
    tasks = []
    start = 0
    for end in bounds[:-1]:
        step = max(64, _SEARCH_BLOCK // max(1, n - end))
        for s in range(start, end, step):
            tasks.append((s, min(s + step, end), end, n))
        start = end

    def run(task):
        a0, a1, b0, b1 = task
        G = Zg[a0:a1] @ Zg[b0:b1].T
        return kernels.scan_block(G, norms[a0:a1], norms[b0:b1], order[a0:a1],
                                  order[b0:b1], rs[a0:a1], rs[b0:b1])

    if max_pairs is not None:
        import threading

        lock = threading.Lock()
        found = [0]
        inner = run

        def run(task):
            if found[0] > max_pairs:
                return None
            res = inner(task)
            with lock:
                found[0] += res[0].shape[0]
            return res

    out = pool.map(run, tasks)
    if max_pairs is not None and found[0] > max_pairs:
        return None
    if not out:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return (np.concatenate([o[0] for o in out]),
            np.concatenate([o[1] for o in out]))


# ---------------------------------------------------------------------------
# Energy-based classification


def prepare_energy(Z, y, target_neighbors, n_classes):
    """The training side of the LMNN energy, in the learned space.

    Parameters
    ----------
    Z : ndarray of shape (n, r)
        Training points in the learned space.
    y : ndarray of shape (n,), int64 class codes in ``[0, n_classes)``
    target_neighbors : ndarray of shape (n, k), int64 (−1 = none)
    n_classes : int

    Returns
    -------
    training_side : tuple
        ``(Z, y, target_neighbors, target_dist, class_start)`` with the points
        sorted by class (``class_start[c]`` is the first row of class ``c``), the
        target neighbours as indices into that order, and their squared distances.
    """
    order = np.argsort(y, kind="stable")
    Z_sorted = np.ascontiguousarray(Z[order])
    y_sorted = np.ascontiguousarray(y[order])
    position = np.empty_like(order)
    position[order] = np.arange(order.shape[0])
    targets = target_neighbors[order]
    targets_sorted = np.ascontiguousarray(
        np.where(targets >= 0, position[np.maximum(targets, 0)], -1), dtype=np.int64)
    to_target = Z_sorted[:, None, :] - Z_sorted[np.maximum(targets_sorted, 0)]
    target_dist = np.where(targets_sorted >= 0,
                           np.einsum("nkr,nkr->nk", to_target, to_target), 0.0)
    counts = np.bincount(y_sorted, minlength=n_classes)
    class_start = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    return Z_sorted, y_sorted, targets_sorted, target_dist, class_start


def lmnn_energy(training_side, Z_test, n_neighbors, mu, n_threads=1):
    """Energies ``E(x_t, c)`` of test points ``Z_test`` (learned space) for every
    class, against ``training_side`` from :func:`prepare_energy`; in row blocks of
    the test-to-training distances, never ``n_test × n`` at once for large data."""
    E = _lmnn_dense.energy(training_side, Z_test, n_neighbors, mu)  # (small)
    if E is not None:
        return E
    Z, y, target_neighbors, target_dist, class_start = training_side
    E = np.empty((Z_test.shape[0], class_start.shape[0] - 1))
    pool = RowChunkPool(n_threads)
    try:
        # (BLAS's block products and the kernels' passes alternate here and never
        # overlap, so BLAS keeps its threads unless there is only one)
        with blas_threads(n_threads):
            _energy_blocks(Z, y, target_neighbors, target_dist, class_start, Z_test,
                           n_neighbors, mu, pool, E)
    finally:
        pool.close()
    return E


def _energy_blocks(Z, y, target_neighbors, target_dist, class_start, Z_test,
                   n_neighbors, mu, pool, E):
    m, n = Z_test.shape[0], Z.shape[0]
    train_norms = squared_norms(Z)
    step = max(1, _BLOCK_ELEMS // max(1, n))
    for s in range(0, m, step):
        Z_block = Z_test[s:s + step]
        D = squared_distances(Z_block, Z, train_norms)
        out = E[s:s + step]
        pool.map(lambda chunk: kernels.energy_block(
            D, y, class_start, n_neighbors, target_dist, target_neighbors, mu,
            chunk[0], chunk[1], out), pool.ranges(D.shape[0], 64))
