"""Predicting on dask arrays, lazily: a fitted classifier's NumPy methods mapped over
row chunks, and the exact k nearest references when the references are a dask array.

Imported only when a ``dask.array.Array`` arrives (:func:`mahal._validation.is_dask_array`),
so that the core install never needs dask. Nothing is computed until the caller
computes the result.

- :func:`map_row_blocks` runs a classifier's own method (``predict``,
  ``predict_proba``, ...) on each row chunk of ``X``: the training side stays in
  memory after ``fit`` and goes to the workers once (one key of the graph), and each
  block is computed by the same NumPy code as an in-memory array, so a block holding
  NaN raises the in-memory message when it is computed.
- :func:`nearest_blocks` finds the ``k`` nearest references of each query block,
  with one task per (query block × reference chunk) tile giving that chunk's
  neighbour list (:func:`mahal._nearest.nearest_references`, which itself works in
  tiles of bounded size) and the lists merged in a tree of tasks
  (:func:`mahal._nearest.merge_neighbors`), in the order of the chunks so that ties
  keep the lower index.
"""

import copy

import dask
import dask.array as da
import numpy as np

from ._dask_arrays import _no_preprocessor, check_dask_points
from ._nearest import merge_neighbors, nearest_references

SPLIT_EVERY = 4  # neighbour lists merged by one task of the tree


def map_row_blocks(estimator, method, X, columns):
    """``estimator.method(X)`` of a dask array ``X``, one task per row chunk.

    Parameters
    ----------
    estimator : fitted classifier
        With ``n_features_in_`` and ``classes_``; neither it nor its
        ``metric_learner_`` may have a ``preprocessor``.
    method : str
        The method's name; it is called on each block (an ndarray).
    X : dask.array.Array of shape (n_samples, n_features)
    columns : int or None
        The number of float64 columns of the method's result, or None for one label
        per row (of ``classes_``'s dtype).

    Returns
    -------
    result : dask.array.Array
        With ``X``'s row chunks.
    """
    learner = getattr(estimator, "metric_learner_", None)
    if learner is not None:
        _no_preprocessor(learner, "X")
    X = check_dask_points(estimator, X, n_features=estimator.n_features_in_)
    # one key for the fitted estimator (sent to each worker once); a shallow copy,
    # so that a later fit does not change what this result computes
    fitted = dask.delayed(copy.copy(estimator), pure=False)
    if columns is None:
        dtype = estimator.classes_.dtype
        return X.map_blocks(_call, fitted, method, drop_axis=1, chunks=(X.chunks[0],),
                            dtype=dtype, meta=np.empty(0, dtype=dtype))
    return X.map_blocks(_call, fitted, method, chunks=(X.chunks[0], (columns,)),
                        dtype=np.float64, meta=np.empty((0, 0)))


def _call(block, estimator, method):
    return getattr(estimator, method)(block)


def nearest_blocks(Z, references, labels, k, results):
    """Results computed from the neighbour lists of each row block of the queries
    ``Z``, lazily.

    Parameters
    ----------
    Z : ndarray or dask.array.Array of shape (n_queries, n_dims)
        Queries in the learned space (an ndarray is one block).
    references : ndarray or dask.array.Array of shape (n_references, n_dims)
        An ndarray is one chunk.
    labels : ndarray of shape (n_references,)
        Class codes of the references.
    k : int
    results : sequence of (finish, columns, dtype)
        ``finish`` maps a block's neighbour list ``(dist, index, label)`` to that
        block of the result, with ``columns`` columns (None: one value per query)
        of ``dtype``.

    Returns
    -------
    results : list of dask.array.Array of shape (n_queries,) or (n_queries, columns)
        With ``Z``'s row chunks; they share the search (computed together, e.g. by
        ``dask.compute``, it runs once).
    """
    Z, references = _rows(Z), _rows(references)
    chunks = references.chunks[0]
    starts = np.concatenate(([0], np.cumsum(chunks)))[:-1].tolist()
    pieces = list(zip(references.to_delayed().ravel(),
                      da.from_array(labels, chunks=(chunks,)).to_delayed().ravel(),
                      starts))
    tile = dask.delayed(nearest_references, pure=True)
    merge = dask.delayed(merge_neighbors, pure=True)
    blocks = [[] for _ in results]
    for query, m in zip(Z.to_delayed().ravel(), Z.chunks[0]):
        lists = [tile(query, ref, lab, k, start) for ref, lab, start in pieces]
        while len(lists) > 1:  # (a tree: SPLIT_EVERY lists per task, in order)
            lists = [merge(lists[i:i + SPLIT_EVERY], k)
                     for i in range(0, len(lists), SPLIT_EVERY)]
        for out, (finish, columns, dtype) in zip(blocks, results):
            shape = (m,) if columns is None else (m, columns)
            out.append(da.from_delayed(dask.delayed(finish, pure=True)(lists[0]),
                                       shape=shape, dtype=dtype,
                                       meta=np.empty((0,) * len(shape), dtype=dtype)))
    return [da.concatenate(out) for out in blocks]


def _rows(A):
    """A dask array with one chunk across the columns (an ndarray: one chunk)."""
    if isinstance(A, da.Array):
        return A.rechunk({1: -1})
    return da.from_array(A, chunks=A.shape)
