"""Exact nearest points in blocks: squared distances, the ``k`` nearest of one block,
the merge of such lists, and the vote.

The ``k`` nearest references of a query are kept as a *neighbour list*, three arrays
of shape ``(n_queries, k)``: squared distances, the references' indices and their
labels, each row sorted by distance and, among equal distances, by index (a lower
index first, as scikit-learn's brute-force search keeps it). The list over a set of
references is the merge of the lists over any split of it into consecutive pieces
(:func:`merge_neighbors`), so the search runs in tiles of (query block × reference
block) and never holds more than one tile of distances: in memory by
:func:`nearest_references`, on a dask array of references by
:mod:`mahal._dask_predict` (one task per tile, the lists merged in a tree).
"""

import numpy as np

_TILE_ELEMS = 1 << 18  # distances in one tile (2 MB of float64: stays in cache)
_TILE_COLUMNS = 1 << 11  # references per tile, at most


def squared_norms(Z):
    """``‖z_i‖²`` of every row."""
    return np.einsum("ij,ij->i", Z, Z)


def squared_distances(A, B, B_norms=None):
    """``‖a_i − b_j‖²`` of every pair of rows, ``(len(A), len(B))``, by the Gram
    trick (clipped at zero: rounding may make a tiny distance negative)."""
    if B_norms is None:
        B_norms = squared_norms(B)
    D = squared_norms(A)[:, None] + B_norms[None, :] - 2.0 * (A @ B.T)
    return np.maximum(D, 0.0, out=D)


def block_nearest(D, k):
    """Positions of the ``min(k, n)`` smallest entries of each row of ``D`` (m, n),
    sorted by value and, among equal values, by position."""
    m, n = D.shape
    if k >= n:
        return np.argsort(D, axis=1, kind="stable")
    nearest = np.argpartition(D, k - 1, axis=1)[:, :k]
    kth = np.take_along_axis(D, nearest, axis=1).max(axis=1)
    # argpartition picks any of the entries tied with the k-th value: rows with
    # such a tie take the lowest positions among them (a full sort of the row)
    tied = np.count_nonzero(D <= kth[:, None], axis=1) > k
    for i in np.flatnonzero(tied):
        nearest[i] = np.argsort(D[i], kind="stable")[:k]
    nearest.sort(axis=1)
    order = np.argsort(np.take_along_axis(D, nearest, axis=1), axis=1, kind="stable")
    return np.take_along_axis(nearest, order, axis=1)


def merge_neighbors(lists, k):
    """Merge neighbour lists (tuples of arrays of shape ``(n_queries, ≤ k)``,
    distances first, then indices, then anything that goes with them) over
    consecutive pieces of the references, given in the order of the pieces, into
    the list of the ``k`` nearest over all of them.

    A stable sort by distance of the concatenated lists keeps equal distances in
    the order of the pieces, which is the order of the indices.
    """
    if len(lists) == 1:
        return lists[0]
    merged = [np.concatenate([part[a] for part in lists], axis=1)
              for a in range(len(lists[0]))]
    order = np.argsort(merged[0], axis=1, kind="stable")[:, :k]
    return tuple(np.take_along_axis(a, order, axis=1) for a in merged)


def _add_tile(best, D, k, start):
    """The list ``best`` (distances, indices) updated with a tile ``D`` of
    distances to the references ``start, start + 1, ...`` (after those of
    ``best``).

    Once ``best`` holds ``k`` neighbours, only entries below its ``k``-th distance
    can enter (an equal one has a higher index): a pass over the tile finds them,
    and they are sorted with ``best``'s by (distance, index) per row.
    """
    if best is None or best[0].shape[1] < k:
        near = block_nearest(D, k)
        part = (np.take_along_axis(D, near, axis=1), near + start)
        return part if best is None else merge_neighbors([best, part], k)
    kth = best[0][:, -1]
    hit = np.flatnonzero(D.min(axis=1) < kth)  # (the rows with a candidate: few)
    if hit.size == 0:
        return best
    rows, cols = np.divmod(np.flatnonzero(D[hit] < kth[hit, None]), D.shape[1])
    rows = hit[rows]
    m = D.shape[0]
    row = np.concatenate([np.repeat(np.arange(m), k), rows])
    dist = np.concatenate([best[0].ravel(), D[rows, cols]])
    index = np.concatenate([best[1].ravel(), cols + start])
    order = np.lexsort((index, dist, row))
    row = row[order]
    rank = np.arange(row.shape[0]) - np.searchsorted(row, np.arange(m))[row]
    keep = order[rank < k]  # (every row has at least k entries: exactly k kept)
    return dist[keep].reshape(m, k), index[keep].reshape(m, k)


def nearest_references(Z, references, labels, k, offset=0):
    """The neighbour list of the ``k`` nearest references of every query.

    Parameters
    ----------
    Z : ndarray of shape (n_queries, n_dims)
        Queries.
    references : ndarray of shape (n_references, n_dims)
    labels : ndarray of shape (n_references,)
    k : int
    offset : int, default=0
        Index of ``references[0]`` (when it is one piece of a larger set).

    Returns
    -------
    dist : ndarray of shape (n_queries, min(k, n_references))
        Squared distances, each row ascending (by the Gram trick: one that rounds
        below zero is kept so; :func:`distances` clips).
    index : ndarray of the same shape, int64
        The references' indices (plus ``offset``); among equal distances, the lower
        index comes first.
    label : ndarray of the same shape
        Their labels.
    """
    m, n = Z.shape[0], references.shape[0]
    columns = min(n, _TILE_COLUMNS)
    rows = max(1, _TILE_ELEMS // columns)
    # ‖q − r‖² = ‖q‖² + ‖r‖² − 2 q·r as one product of [−2q, ‖q‖², 1] and
    # [r, 1, ‖r‖²] (not clipped at zero: a distance rounded below zero ranks the
    # same in every tile and merge; :func:`distances` clips)
    norms = squared_norms(references)[:, None]
    kk = min(k, n)
    dist = np.empty((m, kk))
    index = np.empty((m, kk), dtype=np.int64)
    for r0 in range(0, m, rows):
        Q = Z[r0:r0 + rows]
        Q = np.hstack([-2.0 * Q, squared_norms(Q)[:, None], np.ones((Q.shape[0], 1))])
        best = None
        for c0 in range(0, n, columns):
            c1 = min(c0 + columns, n)
            R = np.hstack([references[c0:c1], np.ones((c1 - c0, 1)), norms[c0:c1]])
            best = _add_tile(best, Q @ R.T, k, c0)
        dist[r0:r0 + rows], index[r0:r0 + rows] = best
    return dist, index + offset, labels[index]


def vote(neighbors, n_classes):
    """Class frequencies among the neighbours, ``(n_queries, n_classes)``: the
    uniform vote of a k-nearest-neighbour classifier (labels are class codes)."""
    label = neighbors[2]
    m = label.shape[0]
    slots = (np.arange(m)[:, None] * n_classes + label).ravel()
    counts = np.bincount(slots, minlength=m * n_classes).reshape(m, n_classes)
    return counts / label.shape[1]


def vote_labels(neighbors, classes):
    """The class of most votes (the first in ``classes`` among equal counts, as
    scikit-learn's ``KNeighborsClassifier``)."""
    return classes[np.argmax(vote(neighbors, classes.shape[0]), axis=1)]


def distances(neighbors):
    """The neighbours' Euclidean distances, ``(n_queries, k)``."""
    return np.sqrt(np.maximum(neighbors[0], 0.0))


def indices(neighbors):
    """The neighbours' indices, ``(n_queries, k)``."""
    return neighbors[1]
