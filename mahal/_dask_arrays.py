"""Dask arrays in the metric API: checks, and ``transform`` and ``pair_distance``
computed lazily, block by block.

Imported only when a ``dask.array.Array`` arrives (:func:`mahal._validation.is_dask_array`
recognises one without importing dask), so that the core install never needs dask.
The results are dask arrays with the input's row chunks: nothing is computed until the
caller computes them, each block is mapped by the same NumPy code as an in-memory
array, and a block holding NaN or infinity raises the in-memory message when it is
computed.
"""

import numpy as np
from sklearn.utils import column_or_1d
from sklearn.utils.validation import assert_all_finite

from ._tuple_mixins import _row_norms
from ._validation import _check_finite, check_classes, is_dask_array


def _no_preprocessor(estimator, name):
    if getattr(estimator, "preprocessor", None) is not None:
        raise ValueError(f"{name} is a dask array, but a preprocessor is set: give the "
                         f"points themselves (a preprocessor is not applied to dask "
                         f"arrays).")


def _known_rows(X, name):
    if any(np.isnan(c) for c in X.chunks[0]):
        raise ValueError(f"{name} is a dask array of unknown chunk sizes: call "
                         f"{name}.compute_chunk_sizes() first.")


def check_dask_points(estimator, X, *, n_features=None, dtypes=(np.float64,),
                      name="X"):
    """A 2-D dask array of points with whole rows in each chunk.

    Parameters
    ----------
    estimator : estimator
        Its ``preprocessor`` must be None.
    X : dask.array.Array of shape (n_samples, n_features)
    n_features : int, optional
        The number of features expected (a fitted estimator's ``n_features_in_``).
    dtypes : tuple of dtypes
        Kept as they are; any other dtype becomes the first.
    name : str

    Returns
    -------
    X : dask.array.Array
        Rechunked to one chunk across the features.
    """
    _no_preprocessor(estimator, name)
    if X.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (n_samples, n_features); "
                         f"got a dask array of shape {X.shape}.")
    _known_rows(X, name)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but {type(estimator).__name__} "
                         f"is expecting {n_features} features as input.")
    if X.dtype not in dtypes:
        X = X.astype(dtypes[0])
    return X.rechunk({1: -1})


def check_dask_fit(estimator, X, y, *, classification=False, ensure_min_samples=1):
    """Check a dask array ``X`` and its labels ``y`` for ``fit`` (the in-memory
    messages); ``y`` is computed, ``X`` stays lazy.

    Parameters
    ----------
    estimator : estimator
        Gets ``n_features_in_``.
    X : dask.array.Array of shape (n_samples, n_features)
    y : array-like or dask.array.Array of shape (n_samples,)
    classification : bool
        Check that ``y`` holds class labels of at least 2 classes.
    ensure_min_samples : int

    Returns
    -------
    X : dask.array.Array
        As :func:`check_dask_points` returns it.
    y : ndarray of shape (n_samples,)
    """
    X = check_dask_points(estimator, X)
    n, d = X.shape
    if n < ensure_min_samples or d == 0:
        raise ValueError(f"Found array with {n} sample(s) and {d} feature(s) (shape="
                         f"{X.shape}) while a minimum of {ensure_min_samples} sample(s) "
                         f"and 1 feature is required.")
    y = column_or_1d(y.compute() if is_dask_array(y) else np.asarray(y), warn=True)
    if y.shape[0] != n:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: "
                         f"[{n}, {y.shape[0]}]")
    if y.dtype.kind in "fc":
        assert_all_finite(y, input_name="y")
    if classification:
        check_classes(estimator, y)
    estimator.n_features_in_ = d
    if hasattr(estimator, "feature_names_in_"):
        del estimator.feature_names_in_
    return X, y


def transform_blocks(estimator, X):
    """``X Gᵀ`` of a dask array ``X``, lazily (one task per row chunk).

    Parameters
    ----------
    estimator : MahalanobisMixin
        Fitted.
    X : dask.array.Array of shape (n_samples, n_features)

    Returns
    -------
    X_new : dask.array.Array of shape (n_samples, n_components)
        float32 when ``X`` is float32, else float64; ``X``'s row chunks.
    """
    X = check_dask_points(estimator, X, n_features=estimator.n_features_in_,
                          dtypes=(np.float64, np.float32))
    G = np.ascontiguousarray(estimator.components_, dtype=X.dtype)
    return X.map_blocks(_transform_block, G, chunks=(X.chunks[0], (G.shape[0],)),
                        dtype=X.dtype, meta=np.empty((0, 0), dtype=X.dtype))


def _transform_block(block, G):
    _check_finite(block, "X")
    return block @ G.T


def pair_distance_blocks(estimator, pairs):
    """Learned distances of a dask array of pairs, lazily (one task per chunk of
    pairs).

    Parameters
    ----------
    estimator : MahalanobisMixin
        Fitted.
    pairs : dask.array.Array of shape (n_pairs, 2, n_features)

    Returns
    -------
    distances : dask.array.Array of shape (n_pairs,)
    """
    _no_preprocessor(estimator, "pairs")
    if pairs.ndim != 3 or pairs.shape[1] != 2:
        raise ValueError(f"pairs must be a 3-D array of shape (n_pairs, 2, "
                         f"n_features); got a dask array of shape {pairs.shape}.")
    _known_rows(pairs, "pairs")
    if pairs.shape[2] != estimator.n_features_in_:
        raise ValueError(f"pairs have {pairs.shape[2]} features, but this estimator "
                         f"was fitted with {estimator.n_features_in_} features.")
    pairs = pairs.astype(np.float64).rechunk({1: -1, 2: -1})
    return pairs.map_blocks(_pair_distance_block, estimator.components_,
                            drop_axis=[1, 2], chunks=(pairs.chunks[0],),
                            dtype=np.float64, meta=np.empty(0))


def _pair_distance_block(block, G):
    _check_finite(block, "pairs")
    return _row_norms((block[:, 0] - block[:, 1]) @ G.T)
