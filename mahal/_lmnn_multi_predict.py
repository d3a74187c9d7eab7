"""Classification with one LMNN metric per class: the k nearest training points and
the energies, each training point measured in its class's metric (the reference
code's ``MMknnclassify.m`` and ``MMenergyclassify.m``)."""

import numpy as np

from ._lazy import lazy_module
from ._lmnn_multi_solver import target_distances
from ._nearest import merge_neighbors, nearest_references, squared_distances
from ._parallel import RowChunkPool, blas_threads

kernels = lazy_module("mahal._lmnn_multi_kernels")  # (numba: imported on first use)
search_kernels = lazy_module("mahal._lmnn_search_kernels")

_BLOCK_ELEMS = 1 << 22  # test-to-training distances in one block (32 MB)


def neighbors(X_train, members, Ls, X, k):
    """The neighbour list (squared distances, indices, class codes) of the ``k``
    nearest training points of every row of ``X``, training point ``l`` measured in
    the metric ``Ls[y_l]`` (``members[c]``: the indices of class ``c``); among equal
    distances a lower class, then a lower index, first."""
    lists = []
    for c, (idx, L) in enumerate(zip(members, Ls)):
        dist, index, _ = nearest_references(X @ L.T, X_train[idx] @ L.T,
                                            np.full(idx.shape[0], c), k)
        lists.append((dist, idx[index], np.full(index.shape, c)))
    return merge_neighbors(lists, k)


def energies(X_train, members, targets, Ls, X, k, mu, n_threads=1):
    """Energies ``E(x, c)``, ``(n_samples, n_classes)``:

        (1 − μ) Σ_{j ∈ kNN_c(x)} d_c(x, x_j)
        + μ Σ_{j ∈ kNN_c(x)} Σ_{l: y_l ≠ c} [1 + d_c(x, x_j) − d_{y_l}(x, x_l)]_+
        + μ Σ_{i: y_i ≠ c} Σ_{j(i)} [1 + d_{y_i}(x_i, x_j) − d_c(x_i, x)]_+

    with ``d_c`` the squared distance in class ``c``'s metric, ``kNN_c(x)`` the
    ``k`` nearest training points of class ``c`` (in metric ``c``) and ``j(i)`` the
    target neighbours of training point ``i``: the loss ``x`` would add as a
    training point of class ``c``, every distance in the metric training gives it
    (a pair's in its training point's class; ``x`` as an impostor of ``x_i`` in
    ``x``'s assumed class ``c``)."""
    C = len(Ls)
    order = np.concatenate(members)
    y_sorted = np.repeat(np.arange(C), [m.shape[0] for m in members]).astype(np.int64)
    class_start = np.concatenate(([0], np.cumsum([m.shape[0] for m in members])))
    references = [X_train[m] @ L.T for m, L in zip(members, Ls)]
    y_train = np.empty(X_train.shape[0], dtype=np.int64)
    y_train[order] = y_sorted
    # margins 1 + d_ij of the training triplets, in the training point's metric
    margin = 1.0 + target_distances(X_train, members, targets, Ls)
    n, m_test = X_train.shape[0], X.shape[0]
    E = np.empty((m_test, C))
    # (LMNN's energy kernel without target neighbours: no third term)
    no_targets, no_dist = np.full((n, 1), -1, dtype=np.int64), np.zeros((n, 1))
    pool = RowChunkPool(n_threads)
    step = max(1, _BLOCK_ELEMS // max(1, n))
    try:
        with blas_threads(n_threads):
            for s in range(0, m_test, step):
                Xb = X[s:s + step]
                out = E[s:s + step]
                # pull and push of x: its distances to every training point, each in
                # that point's class's metric (LMNN's kernel, without its third term)
                D = np.hstack([squared_distances(Xb @ L.T, R)
                               for L, R in zip(Ls, references)])
                pool.map(lambda ch: search_kernels.energy_block(
                    D, y_sorted, class_start, k, no_dist, no_targets, mu,
                    ch[0], ch[1], out), pool.ranges(D.shape[0], 64))
            # x as an impostor of the training points of the other classes, in the
            # metric of x's assumed class
            for c, L in enumerate(Ls):
                others = np.flatnonzero(y_train != c)
                A = X_train[others] @ L.T
                M = np.ascontiguousarray(margin[others])
                for s in range(0, m_test, step):
                    D = squared_distances(X[s:s + step] @ L.T, A)
                    third = np.empty(D.shape[0])
                    pool.map(lambda ch: kernels.impostor_energy(D, M, ch[0], ch[1],
                                                                third),
                             pool.ranges(D.shape[0], 64))
                    E[s:s + step, c] += mu * third
    finally:
        pool.close()
    return E
